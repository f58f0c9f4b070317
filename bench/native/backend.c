/*
 * Anchor bench backend: a fast UDP echo node for the peers bench (bench/peers.ts).
 *
 *   backend --listen 127.0.0.1:P1[,127.0.0.1:P2...] [--max-seconds S]
 *
 * One thread, one socket per listen address, epoll + recvmmsg/sendmmsg in batches of 64. Per datagram:
 *   - PROXY v2 LOCAL (a director's health probe): echoed whole (the probe contract: answer = echo);
 *   - PROXY v2 PROXY: the header (16 + the length in bytes 14-15) is stripped, the rest handled below;
 *   - JV1 ("JV", version 1): echoed back to the sender unchanged (HELLO -> the HELLO answer the director
 *     relays to the client; DATA -> its echo; REVOKE -> its acknowledgement, which is the same packet);
 *   - anything else: dropped (counted).
 * Replies go out of the socket the datagram came in on, to its source: through a director that is the
 * director's upstream socket for this node, so the reply goes back through the director.
 * Only loopback addresses are accepted. It exits on SIGTERM/SIGINT, when its parent dies, or after
 * --max-seconds (default 3600), printing its counters as one JSON line on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loopback.h"

#define BATCH 64
#define MAXSOCK 16
#define BUFSZ 2048

static const uint8_t PP2_SIG[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}


int main(int argc, char **argv) {
  const char *listen = NULL;
  double max_s = 3600;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--listen") && i + 1 < argc) listen = argv[++i];
    else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) max_s = atof(argv[++i]);
    else { fprintf(stderr, "usage: backend --listen 127.0.0.1:PORT[,...] [--max-seconds S]\n"); return 2; }
  }
  if (listen == NULL) { fprintf(stderr, "backend: --listen is required\n"); return 2; }
  if (max_s <= 0 || max_s > 86400) max_s = 3600;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);

  int fds[MAXSOCK], nfd = 0;
  int ep = epoll_create1(0);
  char list[1024];
  snprintf(list, sizeof list, "%s", listen);
  for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    struct sockaddr_storage ss; socklen_t sl;
    int r = loopback_addr(tok, 0, &ss, &sl);
    if (r != 0 || nfd == MAXSOCK) { fprintf(stderr, "backend: bad or non-loopback address %s\n", tok); return 2; }
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int buf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0) { fprintf(stderr, "backend: bind %s: %s\n", tok, strerror(errno)); return 1; }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)nfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    fds[nfd++] = fd;
  }
  printf("backend listening on %s\n", listen);
  fflush(stdout);

  static uint8_t bufs[BATCH][BUFSZ];
  static struct mmsghdr in[BATCH], out[BATCH];
  static struct iovec iov_in[BATCH], iov_out[BATCH];
  static struct sockaddr_storage from[BATCH];
  unsigned long long rx = 0, tx = 0, probes = 0, ppv2 = 0, dropped = 0, send_err = 0;
  double t0 = now_s();
  while (!stop_flag && now_s() - t0 < max_s) {
    struct epoll_event evs[MAXSOCK];
    int n = epoll_wait(ep, evs, MAXSOCK, 100);
    for (int e = 0; e < n; e++) {
      int fd = fds[evs[e].data.u32];
      for (int round = 0; round < 16; round++) { /* bounded per wakeup: fairness between sockets */
        for (int i = 0; i < BATCH; i++) {
          iov_in[i].iov_base = bufs[i]; iov_in[i].iov_len = BUFSZ;
          memset(&in[i].msg_hdr, 0, sizeof in[i].msg_hdr);
          in[i].msg_hdr.msg_iov = &iov_in[i]; in[i].msg_hdr.msg_iovlen = 1;
          in[i].msg_hdr.msg_name = &from[i]; in[i].msg_hdr.msg_namelen = sizeof from[i];
        }
        int got = recvmmsg(fd, in, BATCH, MSG_DONTWAIT, NULL);
        if (got <= 0) break;
        rx += (unsigned)got;
        int k = 0;
        for (int i = 0; i < got; i++) {
          uint8_t *p = bufs[i];
          size_t len = in[i].msg_len, off = 0;
          if (len >= 16 && memcmp(p, PP2_SIG, 12) == 0) {
            if (p[12] == 0x20) { probes++; off = 0; goto reply; } /* LOCAL: echo the probe whole */
            size_t hl = 16 + (((size_t)p[14] << 8) | p[15]);
            if (p[12] != 0x21 || hl > len) { dropped++; continue; }
            ppv2++;
            off = hl;
          }
          if (len - off < 20 || p[off] != 0x4a || p[off + 1] != 0x56 || p[off + 2] != 1) { dropped++; continue; }
        reply:
          iov_out[k].iov_base = p + off; iov_out[k].iov_len = len - off;
          memset(&out[k].msg_hdr, 0, sizeof out[k].msg_hdr);
          out[k].msg_hdr.msg_iov = &iov_out[k]; out[k].msg_hdr.msg_iovlen = 1;
          out[k].msg_hdr.msg_name = &from[i]; out[k].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
          k++;
        }
        for (int sent = 0; sent < k;) {
          int r = sendmmsg(fd, out + sent, (unsigned)(k - sent), 0);
          if (r <= 0) { send_err += (unsigned)(k - sent); break; }
          sent += r; tx += (unsigned)r;
        }
        if (got < BATCH) break;
      }
    }
  }
  printf("{\"rx\":%llu,\"tx\":%llu,\"probes\":%llu,\"ppv2\":%llu,\"dropped\":%llu,\"send_errors\":%llu}\n", rx, tx, probes, ppv2, dropped, send_err);
  return 0;
}
