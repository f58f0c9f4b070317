/*
 * Anchor bench node: a fast C stand-in for the reference node (src/refnode/node.ts + core.ts) over UDP,
 * for the drain bench (bench/drain.ts), whose Node.js reference nodes are starved under its load.
 *
 *   node --id NAME --listen 127.0.0.1:PORT [--record FILE] [--secret TEXT] [--sessions N]
 *        [--rcvbuf BYTES] [--max-seconds S]
 *
 * One thread, one UDP socket (loopback only; PORT 0 picks one), poll + recvmmsg/sendmmsg in batches of
 * 64. It prints "node NAME listening on ADDR:PORT rcvbuf=B" on stdout once ready, and its counters as
 * one JSON line on exit. The receive buffer asked (--rcvbuf, default 8 MiB) is set with SO_RCVBUFFORCE
 * (CAP_NET_ADMIN, e.g. root) or else SO_RCVBUF, which the kernel caps at net.core.rmem_max (often 4 MiB
 * or less); the "rcvbuf=" it prints is what the kernel reports (twice the data bytes it grants).
 * It exits on SIGTERM/SIGINT, when its parent dies (PR_SET_PDEATHSIG, SIGTERM so
 * that the record file is flushed), or after --max-seconds (default 3600).
 *
 * Per datagram it takes the same decisions as the reference node's UDP path (NodeCore.handle):
 *   - PROXY v2 (validated like src/codec/ppv2.ts decodePpv2: version/command, family/transport, length,
 *     address block, TLVs E0 16 / E1 8 / E2 <=64 valid UTF-8 / E3 1 / E4 8, no Anchor TLV twice; a
 *     malformed header: dropped, counted, not recorded). LOCAL (a health probe): echoed whole.
 *     PROXY: the header is stripped; version (E1), owner (E2), flags (E3), seq (E4) and the destination
 *     (the director address, the record's `dst`) and source (the client transport, for BIND) are kept.
 *     Without the signature the datagram is bare JV1 (no version: nothing is fenced or stale).
 *   - JV1 validated like checkJv1 (>= 20 bytes, version 1, a known type, non-zero session id, REVOKE
 *     payload exactly 8 bytes); otherwise, and for REJECT/BIND (never sent to a node): dropped, counted,
 *     not recorded.
 *   - REVOKE(V): acknowledged (the same 28 bytes back) and recorded accepted with revoke=V only when a
 *     PROXY v2 header names this node (E2 == --id); otherwise recorded accepted=false,
 *     drop=misaddressed, no answer. The fence is max(fence, V), kept for the node's lifetime; the
 *     session is forgotten (not live, its ownership-since cleared).
 *   - HELLO/DATA/CLOSE with a version v: refused 'fenced' when v < the session's fence, else 'stale'
 *     when v < the version at which this node began to own the live session (recorded accepted=false,
 *     no answer). Otherwise accepted (the session becomes live here, ownership-since = v if unset):
 *       HELLO: answered with header || key, key = HMAC-SHA256(secret, id)[:16] (src/refnode/keys.ts)
 *              computed with libcrypto (OpenSSL: build with -lcrypto; headers from libssl-dev);
 *       DATA:  from an UNBOUND_SOURCE (E3 bit0): its MAC (last 16 bytes, HMAC-SHA256(key, header ||
 *              app)[:16]) must verify, else dropped 'forged'; then, with a version and a PROXY source,
 *              a BIND(v, source) goes before the echo. The echo is the JV1 packet unchanged, except an
 *              app payload starting with "!close": the session is forgotten and a CLOSE is answered;
 *       CLOSE: from an UNBOUND_SOURCE it is accepted but ignored; else the session is forgotten. No answer.
 * Records (--record): one JSON line per recorded datagram, in the RecordLine shape of
 * src/refnode/checker.ts and the key order of node.ts (node, session, version, seq, flags, type, t,
 * accepted, drop?, revoke?, dst), appended to a 1 MiB buffer written out when it fills, when the socket
 * is idle (a poll timeout) and on exit.
 * Not implemented (not needed by the drain bench): TCP (the reference node also serves TCP on the UDP
 * port), IPv6/IPv4 dual sockets, jumps validated over TCP. Sessions live in an open-addressing hash
 * table keyed by the 16 id bytes (never shrinks: fences are kept for the node's lifetime, as in
 * core.ts), sized for --sessions (default 262,144) at <= 50% load and doubled when it fills past that.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loopback.h"

#define BATCH 64
#define BUFSZ 2048
#define SCRATCH 64
#define REC_BUF (1 << 20)
#define REC_LINE_MAX 512

enum { T_HELLO = 1, T_DATA = 2, T_CLOSE = 3, T_REVOKE = 4, T_REJECT = 0x10, T_BIND = 0x20 };
enum { F_UNBOUND = 1 };

static const uint8_t PP2_SIG[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char DEV_SECRET[] = "anchor-refnode-dev-secret/v1 (public, for tests only)";
static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

/* ------------------------------------------------------------------------------------------ HMAC */

/* HMAC-SHA256(key, a || b), by libcrypto (OpenSSL). a || b fits in one datagram. */
static void hmac_sha256(const uint8_t *key, size_t klen, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, uint8_t out[32]) {
  static uint8_t msg[70000];
  unsigned int olen = 32;
  if (alen + blen > sizeof msg) alen = blen = 0; /* never: a datagram is smaller */
  memcpy(msg, a, alen);
  if (blen > 0) memcpy(msg + alen, b, blen);
  if (HMAC(EVP_sha256(), key, (int)klen, msg, alen + blen, out, &olen) == NULL) memset(out, 0, 32);
}

/* --------------------------------------------------------------------------------- session table */

typedef struct {
  uint8_t id[16];
  uint64_t fence;      /* valid when has_fence */
  uint64_t since;      /* valid when has_since */
  uint8_t used, has_fence, has_since, live;
} entry_t;

static entry_t *tab;
static size_t tab_cap, tab_used, live_count;

static uint64_t rd64(const uint8_t *p) { uint64_t v = 0; for (int i = 0; i < 8; i++) v = v << 8 | p[i]; return v; }
static uint64_t mix64(uint64_t x) { x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL; x ^= x >> 27; x *= 0x94d049bb133111ebULL; return x ^ (x >> 31); }
static size_t slot_of(const uint8_t id[16], size_t cap) { return (size_t)(mix64(rd64(id) ^ mix64(rd64(id + 8) + 0x9e3779b97f4a7c15ULL)) & (cap - 1)); }

static void tab_alloc(size_t cap) {
  tab = calloc(cap, sizeof *tab);
  if (tab == NULL) { fprintf(stderr, "node: out of memory for %zu sessions\n", cap); exit(1); }
  tab_cap = cap;
}
static void tab_grow(void) {
  entry_t *old = tab;
  size_t old_cap = tab_cap;
  tab_alloc(old_cap * 2);
  for (size_t i = 0; i < old_cap; i++) {
    if (!old[i].used) continue;
    size_t j = slot_of(old[i].id, tab_cap);
    while (tab[j].used) j = (j + 1) & (tab_cap - 1);
    tab[j] = old[i];
  }
  free(old);
}
/* The entry of a session, or NULL when absent and !create. */
static entry_t *tab_get(const uint8_t id[16], int create) {
  size_t j = slot_of(id, tab_cap);
  for (;;) {
    entry_t *e = &tab[j];
    if (!e->used) break;
    if (memcmp(e->id, id, 16) == 0) return e;
    j = (j + 1) & (tab_cap - 1);
  }
  if (!create) return NULL;
  if ((tab_used + 1) * 2 > tab_cap) { tab_grow(); return tab_get(id, 1); }
  entry_t *e = &tab[j];
  memcpy(e->id, id, 16);
  e->used = 1;
  tab_used++;
  return e;
}
static void sess_accept(const uint8_t id[16], int has_v, uint64_t v) {
  entry_t *e = tab_get(id, 1);
  if (!e->live) { e->live = 1; live_count++; }
  if (has_v && !e->has_since) { e->has_since = 1; e->since = v; }
}
static void sess_forget(entry_t *e) {
  if (e == NULL) return;
  if (e->live) { e->live = 0; live_count--; }
  e->has_since = 0;
}

/* ----------------------------------------------------------------------------------------- records */

static int rec_fd = -1;
static char *rec_buf;
static size_t rec_len;
static char node_json[160]; /* the node id as a JSON string body (escaped) */
static unsigned long long rec_write_errors;

static void rec_flush(void) {
  size_t off = 0;
  while (off < rec_len) {
    ssize_t w = write(rec_fd, rec_buf + off, rec_len - off);
    if (w < 0) { if (errno == EINTR) continue; rec_write_errors++; break; }
    off += (size_t)w;
  }
  rec_len = 0;
}
static char *put_u64(char *p, uint64_t v) {
  char tmp[24]; int n = 0;
  do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v > 0);
  while (n > 0) *p++ = tmp[--n];
  return p;
}
static char *put_str(char *p, const char *s) { size_t n = strlen(s); memcpy(p, s, n); return p + n; }

/* Canonical address text as src/codec/ip.ts bytesToIp (libuv's inet_ntop). */
static char *put_ip(char *p, const uint8_t *b, int len) {
  if (len == 4) {
    for (int i = 0; i < 4; i++) { if (i) *p++ = '.'; p = put_u64(p, b[i]); }
    return p;
  }
  unsigned w[8];
  for (int i = 0; i < 8; i++) w[i] = (unsigned)b[2 * i] << 8 | b[2 * i + 1];
  int best = -1, bestLen = 0, cur = -1;
  for (int i = 0; i <= 8; i++) {
    if (i < 8 && w[i] == 0) { if (cur == -1) cur = i; }
    else if (cur != -1) { if (i - cur > bestLen) { best = cur; bestLen = i - cur; } cur = -1; }
  }
  if (bestLen < 2) best = -1;
  if (best == 0 && (bestLen == 6 || (bestLen == 5 && w[5] == 0xffff))) {
    p = put_str(p, bestLen == 5 ? "::ffff:" : "::");
    return put_ip(p, b + 12, 4);
  }
  static const char HEXD[] = "0123456789abcdef";
  for (int i = 0; i < 8; i++) {
    if (best != -1 && i >= best && i < best + bestLen) { if (i == best) { *p++ = ':'; *p++ = ':'; } continue; }
    if (i != 0 && !(best != -1 && i == best + bestLen)) *p++ = ':';
    char tmp[4]; int n = 0; unsigned x = w[i];
    do { tmp[n++] = HEXD[x & 15]; x >>= 4; } while (x);
    while (n > 0) *p++ = tmp[--n];
  }
  return p;
}

/* ------------------------------------------------------------------------------------------ parsing */

typedef struct {
  int present;          /* a PROXY v2 PROXY header came first */
  int has_v, has_seq, has_flags, has_owner, has_addr;
  uint64_t v, seq;
  uint8_t flags;
  const uint8_t *owner; size_t owner_len;
  int ip_len;           /* 4 or 16 when has_addr */
  const uint8_t *src_ip, *dst_ip;
  uint16_t src_port, dst_port;
} pp_t;

/* Strict UTF-8 (as TextDecoder with fatal: no overlongs, no surrogates, <= U+10FFFF). */
static int utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t k; uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) k = 1;
    else if (c >= 0xe0 && c <= 0xef) { k = 2; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 3; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else return 0;
    if (i + k >= n) return 0; /* truncated sequence */
    if (s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (size_t j = 2; j <= k; j++) if (s[i + j] < 0x80 || s[i + j] > 0xbf) return 0;
    i += k + 1;
  }
  return 1;
}

enum { PP_BARE = 0, PP_PROXY = 1, PP_LOCAL = 2, PP_BAD = -1 };
/* Parses a PROXY v2 header at the start of p (as decodePpv2); *hl = its length. */
static int parse_ppv2(const uint8_t *p, size_t len, pp_t *pp, size_t *hl) {
  static const int ADDR_LEN[4] = {0, 12, 36, 216};
  memset(pp, 0, sizeof *pp);
  *hl = 0;
  for (size_t i = 0; i < 12 && i < len; i++) if (p[i] != PP2_SIG[i]) return PP_BARE;
  if (len < 16) return PP_BAD;
  if (p[12] != 0x20 && p[12] != 0x21) return PP_BAD;
  int af = p[13] >> 4, tr = p[13] & 15;
  if (af > 3 || tr > 2) return PP_BAD;
  size_t h = 16 + ((size_t)p[14] << 8 | p[15]);
  if (len < h) return PP_BAD;
  size_t al = (size_t)ADDR_LEN[af];
  if (16 + al > h) return PP_BAD;
  int proxy = p[12] == 0x21;
  if (proxy && (af == 1 || af == 2)) {
    int il = af == 1 ? 4 : 16;
    pp->has_addr = 1; pp->ip_len = il;
    pp->src_ip = p + 16; pp->dst_ip = p + 16 + il;
    pp->src_port = (uint16_t)(p[16 + 2 * il] << 8 | p[17 + 2 * il]);
    pp->dst_port = (uint16_t)(p[18 + 2 * il] << 8 | p[19 + 2 * il]);
  }
  int seen_id = 0;
  for (size_t at = 16 + al; at < h;) {
    if (h - at < 3) return PP_BAD;
    uint8_t type = p[at];
    size_t l = (size_t)p[at + 1] << 8 | p[at + 2];
    size_t end = at + 3 + l;
    if (end > h) return PP_BAD;
    const uint8_t *v = p + at + 3;
    switch (type) {
      case 0xe0: if (l != 16 || seen_id) return PP_BAD; seen_id = 1; break;
      case 0xe1: if (l != 8 || pp->has_v) return PP_BAD; pp->has_v = 1; pp->v = rd64(v); break;
      case 0xe2: if (l > 64 || pp->has_owner || !utf8_valid(v, l)) return PP_BAD; pp->has_owner = 1; pp->owner = v; pp->owner_len = l; break;
      case 0xe3: if (l != 1 || pp->has_flags) return PP_BAD; pp->has_flags = 1; pp->flags = v[0]; break;
      case 0xe4: if (l != 8 || pp->has_seq) return PP_BAD; pp->has_seq = 1; pp->seq = rd64(v); break;
      default: break;
    }
    at = end;
  }
  *hl = h;
  if (!proxy) return PP_LOCAL;
  pp->present = 1;
  return PP_PROXY;
}

/* As checkJv1 for the types a node may receive; REJECT and BIND (never sent to a node) are refused too. */
static int jv1_ok(const uint8_t *b, size_t n) {
  if (n < 20 || b[0] != 0x4a || b[1] != 0x56 || b[2] != 1) return 0;
  uint8_t t = b[3];
  if (t != T_HELLO && t != T_DATA && t != T_CLOSE && t != T_REVOKE) return 0;
  int zero = 1;
  for (int i = 4; i < 20; i++) if (b[i]) { zero = 0; break; }
  if (zero) return 0;
  if (t == T_REVOKE && n != 28) return 0;
  return 1;
}

/* ---------------------------------------------------------------------------------------------- main */


static double mono_s(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + ts.tv_nsec / 1e9; }
static uint64_t wall_ms(void) { struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts); return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000; }

static struct {
  unsigned long long received, answered, malformed, probes, binds, revokes, fenced, forged, stale, misaddressed, ignored, send_errors;
} st;

int main(int argc, char **argv) {
  const char *id = NULL, *listen_s = NULL, *record = NULL, *secret = DEV_SECRET;
  double max_s = 3600;
  long sessions = 262144, rcvbuf = 8 << 20;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--id") && i + 1 < argc) id = argv[++i];
    else if (!strcmp(argv[i], "--listen") && i + 1 < argc) listen_s = argv[++i];
    else if (!strcmp(argv[i], "--record") && i + 1 < argc) record = argv[++i];
    else if (!strcmp(argv[i], "--secret") && i + 1 < argc) secret = argv[++i];
    else if (!strcmp(argv[i], "--sessions") && i + 1 < argc) sessions = atol(argv[++i]);
    else if (!strcmp(argv[i], "--rcvbuf") && i + 1 < argc) rcvbuf = atol(argv[++i]);
    else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) max_s = atof(argv[++i]);
    else {
      fprintf(stderr, "usage: node --id NAME --listen 127.0.0.1:PORT [--record FILE] [--secret TEXT] [--sessions N] [--rcvbuf BYTES] [--max-seconds S]\n");
      return 2;
    }
  }
  if (id == NULL || listen_s == NULL) { fprintf(stderr, "node: --id and --listen are required\n"); return 2; }
  size_t id_len = strlen(id);
  if (id_len == 0 || id_len > 64) { fprintf(stderr, "node: --id must be 1-64 bytes\n"); return 2; }
  if (max_s <= 0 || max_s > 86400) max_s = 3600;
  if (sessions < 16) sessions = 16;
  if (sessions > (1L << 26)) sessions = 1L << 26;
  if (rcvbuf < 65536) rcvbuf = 65536;
  {
    char *q = node_json;
    for (const char *c = id; *c; c++) {
      unsigned char u = (unsigned char)*c;
      if (u == '"' || u == '\\') { *q++ = '\\'; *q++ = (char)u; }
      else if (u < 0x20) q += sprintf(q, "\\u%04x", u);
      else *q++ = (char)u;
    }
    *q = 0;
  }
  size_t cap = 16;
  while (cap < (size_t)sessions * 2) cap *= 2;
  tab_alloc(cap);

  prctl(PR_SET_PDEATHSIG, SIGTERM);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: poll returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  if (getppid() == 1) return 0; /* the parent is gone already */

  if (record != NULL) {
    rec_fd = open(record, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (rec_fd < 0) { fprintf(stderr, "node: open %s: %s\n", record, strerror(errno)); return 1; }
    rec_buf = malloc(REC_BUF);
    if (rec_buf == NULL) return 1;
  }

  struct sockaddr_storage ss; socklen_t sl;
  if (loopback_addr(listen_s, 1, &ss, &sl) != 0) { fprintf(stderr, "node: bad or non-loopback address %s\n", listen_s); return 2; }
  int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) { fprintf(stderr, "node: socket: %s\n", strerror(errno)); return 1; }
  if (ss.ss_family == AF_INET6) { int on = 1; setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on); }
  /* SO_RCVBUFFORCE passes net.core.rmem_max with CAP_NET_ADMIN; else SO_RCVBUF, capped at rmem_max. */
  int want = (int)rcvbuf;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) != 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof want) != 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
  int got_rcv = 0; socklen_t gl = sizeof got_rcv;
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got_rcv, &gl); /* the kernel reports twice what it grants for data */
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0) { fprintf(stderr, "node: bind %s: %s\n", listen_s, strerror(errno)); return 1; }
  struct sockaddr_storage bound; socklen_t bl = sizeof bound;
  getsockname(fd, (struct sockaddr *)&bound, &bl);
  char host[64];
  int port;
  if (bound.ss_family == AF_INET6) {
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&bound;
    host[0] = '['; inet_ntop(AF_INET6, &a6->sin6_addr, host + 1, sizeof host - 3); strcat(host, "]");
    port = ntohs(a6->sin6_port);
  } else {
    struct sockaddr_in *a4 = (struct sockaddr_in *)&bound;
    inet_ntop(AF_INET, &a4->sin_addr, host, sizeof host);
    port = ntohs(a4->sin_port);
  }
  printf("node %s listening on %s:%d rcvbuf=%d (asked %ld)\n", id, host, port, got_rcv, rcvbuf);
  fflush(stdout);

  static uint8_t bufs[BATCH][BUFSZ];
  static uint8_t scratch[BATCH][2][SCRATCH];
  static struct mmsghdr in[BATCH], out[2 * BATCH];
  static struct iovec iov_in[BATCH], iov_out[2 * BATCH];
  static struct sockaddr_storage from[BATCH];
  const uint8_t *sec = (const uint8_t *)secret;
  size_t sec_len = strlen(secret);
  char dst_cache[64];
  uint8_t dst_cache_key[19];
  size_t dst_cache_len = 0;
  int dst_cache_ok = 0;
  double t0 = mono_s();

  while (!stop_flag && mono_s() - t0 < max_s) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int pr = poll(&pfd, 1, 100);
    if (pr <= 0) {
      if (rec_len > 0) rec_flush(); /* idle: put the records on disk */
      continue;
    }
    for (int round = 0; round < 64 && !stop_flag; round++) {
      for (int i = 0; i < BATCH; i++) {
        iov_in[i].iov_base = bufs[i]; iov_in[i].iov_len = BUFSZ;
        memset(&in[i].msg_hdr, 0, sizeof in[i].msg_hdr);
        in[i].msg_hdr.msg_iov = &iov_in[i]; in[i].msg_hdr.msg_iovlen = 1;
        in[i].msg_hdr.msg_name = &from[i]; in[i].msg_hdr.msg_namelen = sizeof from[i];
      }
      int got = recvmmsg(fd, in, BATCH, MSG_DONTWAIT, NULL);
      if (got <= 0) break;
      st.received += (unsigned)got;
      uint64_t now = rec_fd >= 0 ? wall_ms() : 0;
      int k = 0;
      for (int i = 0; i < got; i++) {
        uint8_t *p = bufs[i];
        size_t len = in[i].msg_len;
        if (in[i].msg_hdr.msg_flags & MSG_TRUNC) { st.malformed++; continue; }
        pp_t pp;
        size_t hl;
        int kind = parse_ppv2(p, len, &pp, &hl);
        if (kind == PP_BAD) { st.malformed++; continue; }
        /* Replies for this datagram: up to two (BIND, then the echo). */
        const uint8_t *r_ptr[2]; size_t r_len[2]; int nr = 0;
        if (kind == PP_LOCAL) {
          st.probes++;
          r_ptr[0] = p; r_len[0] = len; nr = 1;
          goto reply;
        }
        const uint8_t *b = p + hl;
        size_t bn = len - hl;
        if (!jv1_ok(b, bn)) { st.malformed++; continue; }
        uint8_t type = b[3];
        const uint8_t *sid = b + 4;
        int has_v = pp.present && pp.has_v;
        uint64_t v = pp.v;
        int accepted = 1, has_revoke = 0;
        uint64_t revoke = 0;
        const char *drop = NULL;
        if (type == T_REVOKE) {
          uint64_t rv = rd64(b + 20);
          if (!pp.present || !pp.has_owner || pp.owner_len != id_len || memcmp(pp.owner, id, id_len) != 0) {
            accepted = 0; drop = "misaddressed"; st.misaddressed++;
          } else {
            entry_t *e = tab_get(sid, 1);
            if (!e->has_fence || rv > e->fence) { e->has_fence = 1; e->fence = rv; }
            sess_forget(e);
            has_revoke = 1; revoke = rv;
            st.revokes++;
            r_ptr[0] = b; r_len[0] = bn; nr = 1; /* REVOKE(V) back: the same 28 bytes */
          }
        } else {
          entry_t *e = has_v ? tab_get(sid, 0) : NULL;
          if (e != NULL && e->has_fence && v < e->fence) { accepted = 0; drop = "fenced"; st.fenced++; }
          else if (e != NULL && e->has_since && v < e->since) { accepted = 0; drop = "stale"; st.stale++; }
          else {
            int unbound = pp.present && (pp.flags & F_UNBOUND) != 0;
            if (type == T_HELLO) {
              sess_accept(sid, has_v, v);
              uint8_t *o = scratch[i][0], mac[32];
              memcpy(o, b, 20);
              hmac_sha256(sec, sec_len, sid, 16, NULL, 0, mac);
              memcpy(o + 20, mac, 16);
              r_ptr[0] = o; r_len[0] = 36; nr = 1;
            } else if (type == T_DATA) {
              if (unbound) {
                uint8_t key[32], mac[32];
                int ok = bn >= 36;
                if (ok) {
                  hmac_sha256(sec, sec_len, sid, 16, NULL, 0, key);
                  hmac_sha256(key, 16, b, 20, b + 20, bn - 36, mac);
                  uint8_t diff = 0;
                  for (int j = 0; j < 16; j++) diff |= (uint8_t)(mac[j] ^ b[bn - 16 + j]);
                  ok = diff == 0;
                }
                if (!ok) { accepted = 0; drop = "forged"; st.forged++; goto record; }
                if (has_v && pp.has_addr) {
                  uint8_t *o = scratch[i][1];
                  memcpy(o, b, 20); o[3] = T_BIND;
                  for (int j = 0; j < 8; j++) o[20 + j] = (uint8_t)(v >> (56 - 8 * j));
                  o[28] = pp.ip_len == 4 ? 4 : 6;
                  memcpy(o + 29, pp.src_ip, (size_t)pp.ip_len);
                  o[29 + pp.ip_len] = (uint8_t)(pp.src_port >> 8); o[30 + pp.ip_len] = (uint8_t)pp.src_port;
                  r_ptr[nr] = o; r_len[nr] = 31 + (size_t)pp.ip_len; nr++;
                  st.binds++;
                }
              }
              sess_accept(sid, has_v, v);
              if (bn - 20 >= 6 && memcmp(b + 20, "!close", 6) == 0) {
                sess_forget(tab_get(sid, 0));
                uint8_t *o = scratch[i][0];
                memcpy(o, b, 20); o[3] = T_CLOSE;
                r_ptr[nr] = o; r_len[nr] = 20; nr++;
              } else {
                r_ptr[nr] = b; r_len[nr] = bn; nr++;
              }
            } else { /* CLOSE */
              if (unbound) st.ignored++;
              else sess_forget(tab_get(sid, 0));
            }
          }
        }
      record:
        if (rec_fd >= 0) {
          if (rec_len + REC_LINE_MAX > REC_BUF) rec_flush();
          char *q = rec_buf + rec_len;
          static const char HEXD[] = "0123456789abcdef";
          q = put_str(q, "{\"node\":\""); q = put_str(q, node_json); q = put_str(q, "\",\"session\":\"");
          for (int j = 0; j < 16; j++) { *q++ = HEXD[sid[j] >> 4]; *q++ = HEXD[sid[j] & 15]; }
          q = put_str(q, "\",\"version\":");
          if (has_v) { *q++ = '"'; q = put_u64(q, v); *q++ = '"'; } else q = put_str(q, "null");
          q = put_str(q, ",\"seq\":");
          if (pp.present && pp.has_seq) { *q++ = '"'; q = put_u64(q, pp.seq); *q++ = '"'; } else q = put_str(q, "null");
          q = put_str(q, ",\"flags\":"); q = put_u64(q, pp.present ? pp.flags : 0);
          q = put_str(q, ",\"type\":"); q = put_u64(q, type);
          q = put_str(q, ",\"t\":"); q = put_u64(q, now);
          q = put_str(q, accepted ? ",\"accepted\":true" : ",\"accepted\":false");
          if (drop != NULL) { q = put_str(q, ",\"drop\":\""); q = put_str(q, drop); *q++ = '"'; }
          if (has_revoke) { q = put_str(q, ",\"revoke\":\""); q = put_u64(q, revoke); *q++ = '"'; }
          q = put_str(q, ",\"dst\":");
          if (pp.present && pp.has_addr) {
            uint8_t key[19];
            key[0] = (uint8_t)pp.ip_len;
            memcpy(key + 1, pp.dst_ip, (size_t)pp.ip_len);
            key[1 + pp.ip_len] = (uint8_t)(pp.dst_port >> 8); key[2 + pp.ip_len] = (uint8_t)pp.dst_port;
            size_t kl = 3 + (size_t)pp.ip_len;
            if (!dst_cache_ok || memcmp(dst_cache_key, key, kl) != 0) {
              char *c = dst_cache;
              *c++ = '"';
              if (pp.ip_len == 16) *c++ = '[';
              c = put_ip(c, pp.dst_ip, pp.ip_len);
              if (pp.ip_len == 16) *c++ = ']';
              *c++ = ':'; c = put_u64(c, pp.dst_port); *c++ = '"';
              dst_cache_len = (size_t)(c - dst_cache);
              memcpy(dst_cache_key, key, kl);
              dst_cache_ok = 1;
            }
            memcpy(q, dst_cache, dst_cache_len); q += dst_cache_len;
          } else q = put_str(q, "null");
          q = put_str(q, "}\n");
          rec_len = (size_t)(q - rec_buf);
        }
      reply:
        for (int j = 0; j < nr; j++) {
          iov_out[k].iov_base = (void *)r_ptr[j]; iov_out[k].iov_len = r_len[j];
          memset(&out[k].msg_hdr, 0, sizeof out[k].msg_hdr);
          out[k].msg_hdr.msg_iov = &iov_out[k]; out[k].msg_hdr.msg_iovlen = 1;
          out[k].msg_hdr.msg_name = &from[i]; out[k].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
          k++;
        }
      }
      for (int sent = 0, tries = 0; sent < k;) {
        int r = sendmmsg(fd, out + sent, (unsigned)(k - sent), 0);
        if (r > 0) { sent += r; st.answered += (unsigned)r; continue; }
        if (r < 0 && (errno == EAGAIN || errno == ENOBUFS) && tries++ < 20) {
          struct pollfd w = {.fd = fd, .events = POLLOUT};
          poll(&w, 1, 5);
          continue;
        }
        if (r < 0 && errno != EAGAIN && errno != ENOBUFS && errno != EINTR) { st.send_errors++; sent++; continue; } /* skip the one that failed */
        st.send_errors += (unsigned)(k - sent);
        break;
      }
      if (got < BATCH) break;
    }
  }
  if (rec_fd >= 0) { rec_flush(); close(rec_fd); }
  printf("{\"node\":\"%s\",\"received\":%llu,\"answered\":%llu,\"malformed\":%llu,\"probes\":%llu,\"sessions\":%zu,\"binds\":%llu,"
         "\"revokes\":%llu,\"fenced\":%llu,\"forged\":%llu,\"stale\":%llu,\"misaddressed\":%llu,\"ignored\":%llu,\"send_errors\":%llu,"
         "\"record_write_errors\":%llu,\"table\":{\"used\":%zu,\"capacity\":%zu}}\n",
         node_json, st.received, st.answered, st.malformed, st.probes, live_count, st.binds, st.revokes, st.fenced, st.forged, st.stale,
         st.misaddressed, st.ignored, st.send_errors, rec_write_errors, tab_used, tab_cap);
  fflush(stdout);
  return 0;
}
