/*
 * Anchor bench load generator (bench/peers.ts): JV1 sessions over UDP, HELLO then DATA, closed or open
 * loop, round-trip times from a timestamp carried in the payload. Loopback destinations only.
 *
 *   loadgen --target 127.0.0.1:P[,127.0.0.1:Q...] [--sessions N] [--single-socket]
 *           (--window W | --rate PPS) [--size BYTES] [--duration S] [--warmup S]
 *           [--max-packets N] [--timeout-ms T] [--seed X]
 *
 * Sessions: N (default 100) JV1 session ids (8 random seed bytes, then the session index). Each session
 * has its own connected UDP socket (the default: N client transports), or with --single-socket they all
 * share one socket (one client transport). Session i talks to target i mod (number of targets).
 * HELLO phase: every session sends HELLO (retried every 300 ms, for at most 5 s) until a HELLO comes
 * back; sessions never answered (or REJECTed) take no part in the DATA phase.
 * Closed loop, --window W: W DATA packets are outstanding in total, over all sessions. Each answer (or
 * a packet unanswered for --timeout-ms, counted lost) frees its slot, and the slot's next packet goes to
 * the next session in round-robin order: every session carries traffic, at most W packets in flight.
 * Open loop, --rate PPS: DATA at PPS packets/s in total, round robin over the sessions, paced per
 * millisecond (bursts of PPS/1000), whatever comes back.
 * Payload (after the 20-byte JV1 header), --size bytes (16..1400): u32 slot, u32 seq, u64 send time
 * (CLOCK_MONOTONIC ns), then filler. A backend echoes the JV1 packet, so the time comes back with it.
 * Timing: --warmup seconds (default 0.5) of traffic, then --duration seconds (default 3) measured; then
 * sending stops and answers are awaited for up to 0.5 s. Round trips/s = answers received in the
 * measured window / its length; loss = packets sent in the window whose answer never came (late
 * answers, after their slot timed out, count as lost) / packets sent in the window. RTTs: the answers to
 * packets sent in the window, 1 us buckets up to 200 ms, 1 ms above.
 * Hard bounds: --duration <= 600, --warmup <= 60, --max-packets (default 50,000,000) DATA packets.
 * It prints "phase measure" and "phase done" on stderr at the window's edges (the bench samples
 * process CPU there) and one JSON object on stdout at the end. It dies with its parent.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loopback.h"

#define MAX_SESSIONS 16384
#define MAX_TARGETS 16
#define MAX_WINDOW 65536
#define RX_BATCH 64
#define TX_BATCH 64
#define PKT_MAX (20 + 1400)
#define HIST_US 200000
#define HIST_MS 600000

typedef struct { struct sockaddr_storage a; socklen_t len; } addr_t;

static addr_t targets[MAX_TARGETS];
static int ntargets;
static int nsessions = 100, single_socket = 0, window = 0, size = 64;
static double rate = 0, duration = 3, warmup = 0.5;
static unsigned long long max_packets = 50000000ULL;
static double timeout_ms = 500;
static uint64_t seed;

static int *sess_fd;        /* per session: its socket */
static int *active;         /* sessions answered in the HELLO phase, compacted */
static int nactive;
static unsigned char *hello_ok;
static unsigned long long rejects[9];

static uint64_t *hist_us, *hist_ms, hist_over, hist_n;
static uint64_t rtt_max_ns, rtt_sum_ns;

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
static inline void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static inline uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v); }
static inline uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

static void record_rtt(uint64_t ns) {
  uint64_t us = ns / 1000;
  if (us < HIST_US) hist_us[us]++;
  else if (us / 1000 < HIST_MS) hist_ms[us / 1000]++;
  else hist_over++;
  hist_n++;
  rtt_sum_ns += ns;
  if (ns > rtt_max_ns) rtt_max_ns = ns;
}
static double percentile_us(double q) {
  if (hist_n == 0) return -1;
  uint64_t want = (uint64_t)(q * (double)hist_n);
  if (want >= hist_n) want = hist_n - 1;
  uint64_t c = 0;
  for (int i = 0; i < HIST_US; i++) if ((c += hist_us[i]) > want) return i + 0.5;
  for (int i = 0; i < HIST_MS; i++) if ((c += hist_ms[i]) > want) return i * 1000.0 + 500;
  return rtt_max_ns / 1000.0;
}


static void die(const char *m) { fprintf(stderr, "loadgen: %s\n", m); exit(2); }

static void session_id(uint8_t *id, uint32_t i) {
  put64(id, seed);
  put32(id + 8, 0x4a56ab00u);
  put32(id + 12, i + 1); /* never all zero */
}

/* ------------------------------------------------------------------------------------------ sending */

typedef struct { int session; uint32_t slot, seq; } pending_t;
static pending_t txq[TX_BATCH];
static int ntx;
static uint8_t txbuf[TX_BATCH][PKT_MAX];
static struct mmsghdr txm[TX_BATCH];
static struct iovec txiov[TX_BATCH];
static unsigned long long send_fail;

/* Builds and sends the queued packets (stamped now); returns how many went out. */
static int flush_tx(uint8_t type, size_t payload, uint64_t *stamp_out) {
  if (ntx == 0) return 0;
  uint64_t t = now_ns();
  if (stamp_out) *stamp_out = t;
  for (int k = 0; k < ntx; k++) {
    uint8_t *p = txbuf[k];
    p[0] = 0x4a; p[1] = 0x56; p[2] = 1; p[3] = type;
    session_id(p + 4, (uint32_t)txq[k].session);
    put32(p + 20, txq[k].slot);
    put32(p + 24, txq[k].seq);
    put64(p + 28, t);
    txiov[k].iov_base = p; txiov[k].iov_len = 20 + payload;
    memset(&txm[k].msg_hdr, 0, sizeof txm[k].msg_hdr);
    txm[k].msg_hdr.msg_iov = &txiov[k]; txm[k].msg_hdr.msg_iovlen = 1;
    if (single_socket) {
      addr_t *a = &targets[txq[k].session % ntargets];
      txm[k].msg_hdr.msg_name = &a->a; txm[k].msg_hdr.msg_namelen = a->len;
    }
  }
  int sent = 0;
  /* One sendmmsg per run of packets on the same socket. */
  for (int k = 0; k < ntx;) {
    int fd = sess_fd[txq[k].session], j = k + 1;
    while (j < ntx && sess_fd[txq[j].session] == fd) j++;
    int off = k;
    while (off < j) {
      int r = sendmmsg(fd, txm + off, (unsigned)(j - off), 0);
      if (r <= 0) { send_fail += (unsigned)(j - off); break; }
      off += r; sent += r;
    }
    k = j;
  }
  ntx = 0;
  return sent;
}

/* ------------------------------------------------------------------------------------------ receiving */

static int ep;
static uint8_t rxbuf[RX_BATCH][PKT_MAX + 64];
static struct mmsghdr rxm[RX_BATCH];
static struct iovec rxiov[RX_BATCH];

typedef void (*on_packet_fn)(const uint8_t *p, size_t len, uint64_t now);

/* Waits up to timeout_ms for readable sockets and hands every datagram to fn. Returns datagrams read. */
static int poll_rx(int timeout, on_packet_fn fn) {
  struct epoll_event evs[256];
  int n = epoll_wait(ep, evs, 256, timeout);
  int total = 0;
  for (int e = 0; e < n; e++) {
    int fd = evs[e].data.fd;
    for (int round = 0; round < 8; round++) {
      for (int i = 0; i < RX_BATCH; i++) {
        rxiov[i].iov_base = rxbuf[i]; rxiov[i].iov_len = sizeof rxbuf[i];
        memset(&rxm[i].msg_hdr, 0, sizeof rxm[i].msg_hdr);
        rxm[i].msg_hdr.msg_iov = &rxiov[i]; rxm[i].msg_hdr.msg_iovlen = 1;
      }
      int got = recvmmsg(fd, rxm, RX_BATCH, MSG_DONTWAIT, NULL);
      if (got <= 0) break;
      uint64_t t = now_ns();
      for (int i = 0; i < got; i++) fn(rxbuf[i], rxm[i].msg_len, t);
      total += got;
      if (got < RX_BATCH) break;
    }
  }
  return total;
}

/* The session index of a JV1 packet of ours, or -1. */
static int session_of(const uint8_t *p, size_t len) {
  if (len < 20 || p[0] != 0x4a || p[1] != 0x56 || p[2] != 1) return -1;
  if (get64(p + 4) != seed || get32(p + 12) != 0x4a56ab00u) return -1;
  uint32_t i = get32(p + 16);
  return i >= 1 && (int)i <= nsessions ? (int)i - 1 : -1;
}

/* HELLO phase */
static int hello_answered;
static void on_hello(const uint8_t *p, size_t len, uint64_t now) {
  (void)now;
  int s = session_of(p, len);
  if (s < 0) return;
  if (p[3] == 0x01 && !hello_ok[s]) { hello_ok[s] = 1; hello_answered++; }
  else if (p[3] == 0x10 && len > 20 && p[20] >= 1 && p[20] <= 8 && !hello_ok[s]) { rejects[p[20]]++; hello_ok[s] = 2; hello_answered++; }
}

/* DATA phase */
typedef struct { uint32_t seq; uint64_t sent; int live; } slot_t;
static slot_t *slots;
static uint32_t next_seq = 1;
static int rr;
static uint64_t m_start, m_end;
static unsigned long long m_sent, m_answered_of_sent, m_received, m_lost, m_late, m_other, total_sent;

static void queue(int session, uint32_t slot, uint32_t seq) {
  txq[ntx].session = session; txq[ntx].slot = slot; txq[ntx].seq = seq; ntx++;
}

static void account_sent(int n, uint64_t stamp);
/* Sends the queued DATA packets and counts them. */
static void flush_data(void) {
  uint64_t st = 0;
  int n = flush_tx(0x02, (size_t)size, &st);
  account_sent(n, st);
}

static void on_data(const uint8_t *p, size_t len, uint64_t now) {
  int s = session_of(p, len);
  if (s < 0 || p[3] != 0x02 || len < 36) { m_other++; return; }
  uint32_t slot = get32(p + 20), seq = get32(p + 24);
  uint64_t ts = get64(p + 28);
  int in_window_sent = m_start != 0 && ts >= m_start && (m_end == 0 || ts < m_end);
  if (window > 0) {
    if (slot >= (uint32_t)window || slots[slot].seq != seq || !slots[slot].live) { m_late++; return; }
    slots[slot].live = 0;
  }
  if (m_start != 0 && now >= m_start && (m_end == 0 || now < m_end)) m_received++;
  if (in_window_sent) { m_answered_of_sent++; record_rtt(now - ts); }
  if (window > 0 && m_end == 0 && total_sent < max_packets) {
    /* The slot's next packet, on the next session. */
    if (ntx == TX_BATCH) flush_data();
    uint32_t q = next_seq++;
    slots[slot].seq = q; slots[slot].live = 1; slots[slot].sent = now;
    queue(active[rr], slot, q);
    rr = (rr + 1) % nactive;
  }
}

static void account_sent(int n, uint64_t stamp) {
  total_sent += (unsigned)n;
  if (m_start != 0 && stamp >= m_start && m_end == 0) m_sent += (unsigned)n;
}

int main(int argc, char **argv) {
  const char *target = NULL;
  seed = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ now_ns();
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--single-socket")) { single_socket = 1; continue; }
    if (v == NULL) die("missing value");
    if (!strcmp(a, "--target")) target = v;
    else if (!strcmp(a, "--sessions")) nsessions = atoi(v);
    else if (!strcmp(a, "--window")) window = atoi(v);
    else if (!strcmp(a, "--rate")) rate = atof(v);
    else if (!strcmp(a, "--size")) size = atoi(v);
    else if (!strcmp(a, "--duration")) duration = atof(v);
    else if (!strcmp(a, "--warmup")) warmup = atof(v);
    else if (!strcmp(a, "--max-packets")) max_packets = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--timeout-ms")) timeout_ms = atof(v);
    else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 0);
    else die("unknown flag (see the comment at the top of loadgen.c)");
    i++;
  }
  if (target == NULL) die("--target is required");
  if (nsessions < 1 || nsessions > MAX_SESSIONS) die("--sessions must be 1..16384");
  if ((window > 0) == (rate > 0)) die("exactly one of --window W (1..65536) or --rate PPS is required");
  if (window < 0 || window > MAX_WINDOW) die("--window must be 1..65536");
  if (rate < 0 || rate > 10e6) die("--rate must be <= 10,000,000");
  if (size < 16 || size > 1400) die("--size must be 16..1400");
  if (!(duration > 0 && duration <= 600)) die("--duration must be in (0, 600]");
  if (!(warmup >= 0 && warmup <= 60)) die("--warmup must be in [0, 60]");
  if (!(timeout_ms >= 1)) die("--timeout-ms must be >= 1");
  if (seed == 0) seed = 1;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  alarm((unsigned)(duration + warmup + 30)); /* hard bound on wall time, whatever happens */

  char list[2048];
  snprintf(list, sizeof list, "%s", target);
  for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    if (ntargets == MAX_TARGETS) die("too many targets");
    int r = loopback_addr(tok, 0, &targets[ntargets].a, &targets[ntargets].len);
    if (r == -2) die("only loopback targets are allowed");
    if (r != 0) die("bad --target address");
    ntargets++;
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }

  hist_us = calloc(HIST_US, sizeof *hist_us);
  hist_ms = calloc(HIST_MS, sizeof *hist_ms);
  sess_fd = calloc((size_t)nsessions, sizeof *sess_fd);
  active = calloc((size_t)nsessions, sizeof *active);
  hello_ok = calloc((size_t)nsessions, 1);
  slots = calloc(window > 0 ? (size_t)window : 1, sizeof *slots);
  if (!hist_us || !hist_ms || !sess_fd || !active || !hello_ok || !slots) die("out of memory");
  ep = epoll_create1(0);
  int nsock = single_socket ? 1 : nsessions;
  for (int i = 0; i < nsock; i++) {
    addr_t *t = &targets[i % ntargets];
    int fd = socket(t->a.ss_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket() failed (too many sessions for the fd limit?)");
    int buf = single_socket ? (4 << 20) : (256 << 10);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (!single_socket && connect(fd, (struct sockaddr *)&t->a, t->len) != 0) die("connect() failed");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    if (single_socket) for (int s = 0; s < nsessions; s++) sess_fd[s] = fd;
    else sess_fd[i] = fd;
  }

  /* HELLO phase: at most 5 s, unanswered sessions retried every 300 ms, 256 HELLOs per burst. */
  uint64_t h0 = now_ns();
  while (hello_answered < nsessions && now_ns() - h0 < 5000000000ULL) {
    for (int s = 0; s < nsessions; s++) {
      if (hello_ok[s]) continue;
      queue(s, 0xffffffffu, 0);
      if (ntx == TX_BATCH) { flush_tx(0x01, 16, NULL); poll_rx(0, on_hello); }
    }
    flush_tx(0x01, 16, NULL);
    uint64_t until = now_ns() + 300000000ULL;
    while (hello_answered < nsessions && now_ns() < until) poll_rx(5, on_hello);
  }
  uint64_t hello_ns = now_ns() - h0;
  for (int s = 0; s < nsessions; s++) if (hello_ok[s] == 1) active[nactive++] = s;
  if (nactive == 0) {
    printf("{\"error\":\"no session was answered in the HELLO phase\",\"sessions\":%d,\"rejects_by_reason\":[%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu]}\n",
           nsessions, rejects[1], rejects[2], rejects[3], rejects[4], rejects[5], rejects[6], rejects[7], rejects[8]);
    return 1;
  }

  /* DATA phase. */
  struct rusage ru0, ru1;
  uint64_t t0 = now_ns();
  uint64_t warm_end = t0 + (uint64_t)(warmup * 1e9), end = warm_end + (uint64_t)(duration * 1e9);
  uint64_t last_scan = t0, open_sent = 0, open_start = t0;
  if (window > 0) {
    for (int k = 0; k < window && (unsigned long long)k < max_packets; k++) {
      slots[k].seq = next_seq++; slots[k].live = 1; slots[k].sent = t0;
      queue(active[rr], (uint32_t)k, slots[k].seq);
      rr = (rr + 1) % nactive;
      if (ntx == TX_BATCH) flush_data();
    }
    flush_data();
  }
  for (;;) {
    uint64_t now = now_ns();
    if (m_start == 0 && now >= warm_end) {
      m_start = now;
      getrusage(RUSAGE_SELF, &ru0);
      fprintf(stderr, "phase measure\n");
    }
    if (now >= end || total_sent >= max_packets) break;
    if (window > 0) {
      poll_rx(1, on_data);
      flush_data();
      now = now_ns();
      if (now - last_scan > 2000000ULL) { /* re-arm slots whose packet timed out: counted lost */
        last_scan = now;
        uint64_t limit = (uint64_t)(timeout_ms * 1e6);
        for (int k = 0; k < window; k++) {
          if (slots[k].live && now - slots[k].sent > limit) {
            if (slots[k].sent >= m_start && m_start != 0) m_lost++;
            slots[k].seq = next_seq++; slots[k].sent = now;
            queue(active[rr], (uint32_t)k, slots[k].seq);
            rr = (rr + 1) % nactive;
            if (ntx == TX_BATCH) flush_data();
          }
        }
        flush_data();
      }
    } else {
      uint64_t due = (uint64_t)((double)(now - open_start) / 1e9 * rate);
      while (open_sent < due && total_sent < max_packets) {
        int burst = 0;
        while (open_sent + (uint64_t)burst < due && burst < TX_BATCH) {
          queue(active[rr], 0xfffffffeu, next_seq++);
          rr = (rr + 1) % nactive;
          burst++;
        }
        uint64_t st = 0;
        flush_tx(0x02, (size_t)size, &st);
        open_sent += (uint64_t)burst; /* a failed send is a lost packet, not a retry */
        account_sent(burst, st);
      }
      poll_rx(1, on_data);
    }
  }
  m_end = now_ns();
  getrusage(RUSAGE_SELF, &ru1);
  fprintf(stderr, "phase done\n");
  /* Answers still in flight: at most 0.5 s (closed loop: until every slot is answered). */
  uint64_t drain_until = m_end + 500000000ULL;
  ntx = 0;
  while (now_ns() < drain_until) {
    poll_rx(5, on_data);
    ntx = 0; /* nothing more is sent */
    if (window > 0) {
      int live = 0;
      for (int k = 0; k < window; k++) live += slots[k].live;
      if (live == 0) break;
    } else if (m_answered_of_sent >= m_sent) break;
  }
  double secs = (double)(m_end - m_start) / 1e9;
  double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
               (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
  unsigned long long lost = m_sent > m_answered_of_sent ? m_sent - m_answered_of_sent : 0;
  unsigned long long nrej = 0;
  for (int r = 1; r <= 8; r++) nrej += rejects[r];
  printf("{\"mode\":\"%s\",\"sockets\":\"%s\",\"sessions\":%d,\"sessions_ok\":%d,\"hello_rejected\":%llu,\"hello_ms\":%.1f,"
         "\"window\":%d,\"rate\":%.0f,\"size\":%d,\"duration_s\":%.3f,\"sent\":%llu,\"received\":%llu,\"answered\":%llu,"
         "\"lost\":%llu,\"timeouts\":%llu,\"late\":%llu,\"other\":%llu,\"send_failures\":%llu,"
         "\"round_trips_per_s\":%.1f,\"loss_pct\":%.4f,"
         "\"rtt_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"mean\":%.1f,\"max\":%.1f},\"cpu_s\":%.3f,\"cpu_pct\":%.1f}\n",
         window > 0 ? "closed" : "open", single_socket ? "single" : "per-session", nsessions, nactive, nrej, hello_ns / 1e6,
         window, rate, size, secs, m_sent, m_received, m_answered_of_sent, lost, m_lost, m_late, m_other, send_fail,
         secs > 0 ? (double)m_received / secs : 0, m_sent > 0 ? 100.0 * (double)lost / (double)m_sent : 0,
         percentile_us(0.5), percentile_us(0.99), percentile_us(0.999), hist_n ? (double)rtt_sum_ns / (double)hist_n / 1000 : -1,
         rtt_max_ns / 1000.0, cpu, secs > 0 ? 100 * cpu / secs : 0);
  return 0;
}
