/*
 * loopback.h — shared by the bench's C helpers (loadgen.c, backend.c, node.c): "HOST:PORT" parsing,
 * loopback addresses only (127.0.0.0/8, ::1), so that no helper can be pointed anywhere else.
 */
#ifndef ANCHOR_BENCH_LOOPBACK_H
#define ANCHOR_BENCH_LOOPBACK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* "127.0.0.1:P" or "[::1]:P" into *ss (*len: its size). 0; -1 when malformed (port 1..65535, or 0 when
 * allow_port0: let the kernel pick); -2 when the address is not a loopback one. */
static int loopback_addr(const char *s, int allow_port0, struct sockaddr_storage *ss, socklen_t *len) {
  char host[128];
  const char *colon = strrchr(s, ':');
  if (colon == NULL || colon - s >= (long)sizeof host) return -1;
  size_t hl = (size_t)(colon - s);
  if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
    memcpy(host, s + 1, hl - 2);
    host[hl - 2] = 0;
  } else {
    memcpy(host, s, hl);
    host[hl] = 0;
  }
  char *endp;
  long port = strtol(colon + 1, &endp, 10);
  if (colon[1] == 0 || *endp != 0 || port < (allow_port0 ? 0 : 1) || port > 65535) return -1;
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127) return -2;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    *len = sizeof *a4;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr)) return -2;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    *len = sizeof *a6;
    return 0;
  }
  return -1;
}

#endif
