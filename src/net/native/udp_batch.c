/*
 * udp_batch.c — Anchor's optional native addon: batched UDP I/O for Node (Linux, Node-API, plain C).
 *
 * Owns: one non-blocking UDP socket per UdpSocket object, its registration with libuv (a uv_poll_t on
 * the fd), recvmmsg into a receive slab and sendmmsg from a send slab. The slabs are ArrayBuffers
 * shared with JavaScript: fixed-size slots for the bytes, and a metadata Int32Array with META_INTS
 * int32 per slot (length, flags / gather source, family, port, address). JS is called once per
 * received batch with the count; it reads lengths, addresses and bytes straight from the slabs and
 * writes replies into the send slab, then calls flush(n). Nothing is allocated per datagram on
 * either side. With options.gso, flush() sends a run of consecutive datagrams to one destination and of
 * one size (the last may be shorter) as one UDP_SEGMENT (GSO) message: the kernel's send path runs once
 * for the run and the receiver still gets separate datagrams, the same bytes in the same order.
 * Never: parses or decides anything about the datagrams (that is the director's), blocks the event
 * loop, or keeps a datagram across flush() calls (UDP: a send that would block is counted as a drop).
 *
 * Metadata slot (int32 each; META_INTS = 12):
 *   [0] LEN     rx: bytes stored in the slot (≤ slotSize); tx: bytes to send from the own tx slot (≤ txSlotSize)
 *   [1] FLAGS   rx: FLAG_TRUNCATED when the datagram was larger than the slot (LEN = slotSize, the rest
 *               is lost); tx: SOURCE: 0, or 1 + an rx slot index of the `source` socket passed to
 *               flush(): that slot's bytes are sent after the own tx bytes (a gather send, no copy)
 *   [2] FAMILY  4 or 6 (tx: 0 = no destination, for a connected socket)
 *   [3] PORT
 *   [4..7] ADDR IPv4: [4] = the address as a u32 (127.0.0.1 = 0x7f000001; read it with `>>> 0`);
 *               IPv6: four u32 words, most significant first
 *   [8..11] LOCAL (as ADDR) rx: the address the datagram was sent to, with options.pktinfo (a socket bound
 *               to a wildcard address receives for every address of the host); all 0 otherwise.
 *               tx: the source address to send from (IP_PKTINFO / IPV6_PKTINFO); all 0: the kernel's
 *               choice (the bound address, or the route's)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define META_INTS 12
#define M_LEN 0
#define M_FLAGS 1
#define M_FAMILY 2
#define M_PORT 3
#define M_ADDR 4
#define M_LOCAL 8
#define FLAG_TRUNCATED 1

/* stats: a Float64Array shared with JS (counters exact up to 2^53). */
enum {
  S_RX_DATAGRAMS,
  S_RX_BATCHES,
  S_RX_TRUNCATED,
  S_RX_ERRORS,
  S_TX_DATAGRAMS,
  S_TX_WOULDBLOCK_DROPS,
  S_TX_ERRORS,
  S_LAST_ERRNO,
  S_RX_SYSCALLS,
  S_TX_SYSCALLS,
  S_TX_GSO_SENDS,     /* messages that carried more than one datagram (UDP_SEGMENT) */
  S_TX_GSO_DATAGRAMS, /* the datagrams sent in them */
  S_TX_GSO_FALLBACKS, /* GSO messages the kernel refused: their datagrams went again one by one */
  S_COUNT
};
static const char *const STAT_NAMES[S_COUNT] = {
    "RX_DATAGRAMS", "RX_BATCHES",  "RX_TRUNCATED", "RX_ERRORS",    "TX_DATAGRAMS",
    "TX_WOULDBLOCK_DROPS", "TX_ERRORS", "LAST_ERRNO", "RX_SYSCALLS", "TX_SYSCALLS",
    "TX_GSO_SENDS", "TX_GSO_DATAGRAMS", "TX_GSO_FALLBACKS"};

#define DEFAULT_SLOTS 64
#define MAX_SLOTS 1024
#define DEFAULT_SLOT_SIZE 2048
#define MIN_SLOT_SIZE 64
#define MAX_SLOT_SIZE 65536
/* Batches read per readiness event at most, so one busy socket cannot starve the loop. */
#define MAX_BATCHES_PER_EVENT 16
/* A GSO message: at most this many datagrams (the kernel's UDP_MAX_SEGMENTS is 64, 128 on recent ones) and
 * bytes (it is one UDP datagram to the stack until it is cut: its payload must stay under 65,507). */
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 65000
#define GSO_CTRL CMSG_SPACE(sizeof(uint16_t))
/* A datagram's local address (in6_pktinfo is the larger of the two families'). */
#define PKT_CTRL CMSG_SPACE(sizeof(struct in6_pktinfo))
/* A message's control buffer: UDP_SEGMENT and the source address. */
#define TX_CTRL (GSO_CTRL + PKT_CTRL)

typedef union {
  struct sockaddr sa;
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
} sockaddr_any;

typedef struct udp_sock {
  napi_env env;
  int fd;
  int family; /* 4 or 6 */
  int connected;
  int closed;      /* close() was called (or the constructor failed after creating the fd) */
  int in_callback; /* inside napi_make_callback: the async context is destroyed after it returns */
  int hooked;      /* an env cleanup hook is registered (removed on close) */
  int in_cleanup;  /* the env is being torn down: the cleanup hook is closing the socket */
  int poll_active; /* the uv_poll_t was initialised and not yet closed by libuv */
  int finalized;   /* the JS object was garbage-collected */
  uint32_t slots;
  uint32_t slot_size;    /* rx slots */
  uint32_t tx_slot_size; /* tx slots (options.txSlotSize, default slot_size): room for a header before a body as large as an rx slot's */
  uv_poll_t poll;
  napi_ref self;    /* strong while open: an open socket is never collected */
  napi_ref on_batch;
  napi_async_context async_ctx;
  uint8_t *rx;
  int32_t *rx_meta;
  uint8_t *tx;
  int32_t *tx_meta;
  double *stats;
  /* Preallocated syscall arguments (malloc'ed once). */
  struct mmsghdr *rx_msgs;
  struct iovec *rx_iov;
  sockaddr_any *rx_names;
  struct mmsghdr *tx_msgs;
  struct iovec *tx_iov; /* two per slot: own bytes, gathered source bytes */
  sockaddr_any *tx_names;
  /* GSO (options.gso): on while the kernel takes it. Per message of a flush: the first tx slot it sends,
   * how many datagrams it carries, their size, its control buffer (GSO_CTRL bytes). Datagrams larger than
   * gso_max are sent alone (one less than the size of a GSO message the kernel refused with EINVAL or
   * EMSGSIZE: e.g. over the path MTU). */
  int gso;
  uint32_t gso_max;
  uint32_t *tx_first;
  uint32_t *tx_segs;
  uint32_t *tx_seg;
  uint8_t *tx_ctrl;
  /* options.pktinfo: each datagram's local address is read (rx_ctrl: PKT_CTRL bytes per rx slot). */
  int pktinfo;
  uint8_t *rx_ctrl;
} udp_sock;

/* ---------- small helpers ---------- */

#define NAPI_CALL(env, call)                                  \
  do {                                                        \
    if ((call) != napi_ok) {                                  \
      throw_last((env), #call);                               \
      return NULL;                                            \
    }                                                         \
  } while (0)

static void throw_last(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char msg[256];
  snprintf(msg, sizeof msg, "anchor_udp: %s failed: %s", what,
           info != NULL && info->error_message != NULL ? info->error_message : "unknown");
  napi_throw_error(env, "ANCHOR_NATIVE_UDP", msg);
}

/* Throws an Error with code = errno name (EADDRINUSE …), errno and syscall properties, like Node's. */
static void throw_errno(napi_env env, int err, const char *syscall) {
  char msg[256];
  const char *name = uv_err_name(uv_translate_sys_error(err));
  snprintf(msg, sizeof msg, "%s %s: %s", syscall, name, strerror(err));
  napi_value code, message, error, num, sc;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok ||
      napi_create_error(env, code, message, &error) != napi_ok) {
    napi_throw_error(env, NULL, msg);
    return;
  }
  if (napi_create_int32(env, -err, &num) == napi_ok) napi_set_named_property(env, error, "errno", num);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc) == napi_ok)
    napi_set_named_property(env, error, "syscall", sc);
  napi_throw(env, error);
}

static void free_sock(udp_sock *s) {
  free(s->rx_msgs);
  free(s->rx_iov);
  free(s->rx_names);
  free(s->tx_msgs);
  free(s->tx_iov);
  free(s->tx_names);
  free(s->tx_first);
  free(s->tx_segs);
  free(s->tx_seg);
  free(s->tx_ctrl);
  free(s->rx_ctrl);
  free(s);
}

static void on_poll_closed(uv_handle_t *h) {
  udp_sock *s = (udp_sock *)h->data;
  s->poll_active = 0;
  if (s->finalized) free_sock(s);
}

static void env_cleanup(void *arg);

/* Stops polling, closes the fd and drops the references that keep the JS object alive. Idempotent.
 * Safe inside the batch callback: the receive loop checks `closed` after every call into JS. */
static void do_close(udp_sock *s) {
  if (s->closed) return;
  s->closed = 1;
  if (s->hooked && !s->in_cleanup) napi_remove_env_cleanup_hook(s->env, env_cleanup, s);
  s->hooked = 0;
  if (s->poll_active) uv_close((uv_handle_t *)&s->poll, on_poll_closed); /* stops the poll first */
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
  if (s->on_batch != NULL) {
    napi_delete_reference(s->env, s->on_batch);
    s->on_batch = NULL;
  }
  if (s->async_ctx != NULL && !s->in_callback) {
    napi_async_destroy(s->env, s->async_ctx);
    s->async_ctx = NULL;
  }
  if (s->self != NULL) napi_reference_unref(s->env, s->self, NULL); /* now collectable */
}

/* The env is going away (process exit, a worker thread ending) with the socket still open. */
static void env_cleanup(void *arg) {
  udp_sock *s = (udp_sock *)arg;
  s->in_cleanup = 1;
  do_close(s);
}

static void finalize_sock(napi_env env, void *data, void *hint) {
  (void)hint;
  udp_sock *s = (udp_sock *)data;
  /* Reached only when the object is unreachable, i.e. after close() (or a failed constructor). */
  if (s->self != NULL) {
    napi_delete_reference(env, s->self);
    s->self = NULL;
  }
  s->finalized = 1;
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
  if (!s->poll_active) free_sock(s);
}

/* Parses "a.b.c.d" (family 4) or an IPv6 literal (family 6) and a port into `out`; 0 on success. */
static int make_sockaddr(int family, const char *addr, uint32_t port, sockaddr_any *out, socklen_t *len) {
  memset(out, 0, sizeof *out);
  if (family == 4) {
    out->v4.sin_family = AF_INET;
    out->v4.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &out->v4.sin_addr) != 1) return -1;
    *len = sizeof out->v4;
  } else {
    out->v6.sin6_family = AF_INET6;
    out->v6.sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, addr, &out->v6.sin6_addr) != 1) return -1;
    *len = sizeof out->v6;
  }
  return 0;
}

/* Writes family, port and address of `sa` into a metadata slot. */
static inline void meta_from_sockaddr(int32_t *m, const sockaddr_any *sa) {
  if (sa->sa.sa_family == AF_INET) {
    m[M_FAMILY] = 4;
    m[M_PORT] = ntohs(sa->v4.sin_port);
    m[M_ADDR] = (int32_t)ntohl(sa->v4.sin_addr.s_addr);
    m[M_ADDR + 1] = m[M_ADDR + 2] = m[M_ADDR + 3] = 0;
  } else if (sa->sa.sa_family == AF_INET6) {
    uint32_t w[4];
    memcpy(w, &sa->v6.sin6_addr, 16);
    m[M_FAMILY] = 6;
    m[M_PORT] = ntohs(sa->v6.sin6_port);
    for (int k = 0; k < 4; k++) m[M_ADDR + k] = (int32_t)ntohl(w[k]);
  } else {
    m[M_FAMILY] = 0;
    m[M_PORT] = 0;
    m[M_ADDR] = m[M_ADDR + 1] = m[M_ADDR + 2] = m[M_ADDR + 3] = 0;
  }
}

/* Builds a destination from a tx metadata slot for a socket of `family`; returns its length or 0 if the
 * slot's family cannot be sent on this socket (sockets are of one family: IPv6 ones are IPV6_V6ONLY). */
static inline socklen_t sockaddr_from_meta(int family, const int32_t *m, sockaddr_any *sa) {
  if (m[M_FAMILY] == 4 && family == 4) {
    sa->v4.sin_family = AF_INET;
    sa->v4.sin_port = htons((uint16_t)m[M_PORT]);
    sa->v4.sin_addr.s_addr = htonl((uint32_t)m[M_ADDR]);
    memset(sa->v4.sin_zero, 0, sizeof sa->v4.sin_zero);
    return sizeof sa->v4;
  }
  if (family == 6 && m[M_FAMILY] == 6) {
    uint32_t w[4];
    for (int k = 0; k < 4; k++) w[k] = htonl((uint32_t)m[M_ADDR + k]);
    memset(&sa->v6, 0, sizeof sa->v6);
    sa->v6.sin6_family = AF_INET6;
    sa->v6.sin6_port = htons((uint16_t)m[M_PORT]);
    memcpy(&sa->v6.sin6_addr, w, 16);
    return sizeof sa->v6;
  }
  return 0;
}

/* ---------- receive path ---------- */

/* Calls the JS batch callback with `count`; returns 0 to go on reading, -1 to stop (closed, or it threw). */
static int deliver(udp_sock *s, int count) {
  napi_env env = s->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return -1;
  int rc = 0;
  napi_value fn, self, argv[1], result;
  if (napi_get_reference_value(env, s->on_batch, &fn) != napi_ok || fn == NULL ||
      napi_get_reference_value(env, s->self, &self) != napi_ok || self == NULL ||
      napi_create_uint32(env, (uint32_t)count, &argv[0]) != napi_ok) {
    rc = -1;
  } else {
    /* make_callback: nextTick queue and microtasks run after it, as for Node's own sockets. */
    s->in_callback = 1;
    napi_status st = napi_make_callback(env, s->async_ctx, self, fn, 1, argv, &result);
    s->in_callback = 0;
    if (s->closed && s->async_ctx != NULL) { /* close() ran inside the callback */
      napi_async_destroy(env, s->async_ctx);
      s->async_ctx = NULL;
    }
    if (st != napi_ok) {
      rc = -1;
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) {
        napi_value err;
        /* An exception thrown by the callback goes to process 'uncaughtException', like an emitter's. */
        if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
      }
    }
  }
  napi_close_handle_scope(env, scope);
  return s->closed ? -1 : rc;
}

/* Writes the local address a received message carries (IP_PKTINFO / IPV6_PKTINFO) into LOCAL; all 0
 * when it carries none. IPv4: the address a reply goes out from (ipi_spec_dst: the header's destination,
 * or for a broadcast the receiving interface's own address); IPv6: the header's destination, 0 for a
 * multicast one (a reply cannot leave from it). */
static void local_from_cmsgs(int32_t *m, struct msghdr *h) {
  m[M_LOCAL] = m[M_LOCAL + 1] = m[M_LOCAL + 2] = m[M_LOCAL + 3] = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
      struct in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      m[M_LOCAL] = (int32_t)ntohl(pi.ipi_spec_dst.s_addr);
      return;
    }
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
      struct in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      if (pi.ipi6_addr.s6_addr[0] == 0xff) return; /* multicast */
      uint32_t w[4];
      memcpy(w, &pi.ipi6_addr, sizeof w);
      for (int k = 0; k < 4; k++) m[M_LOCAL + k] = (int32_t)ntohl(w[k]);
      return;
    }
  }
}

static void on_readable(uv_poll_t *h, int status, int events) {
  udp_sock *s = (udp_sock *)h->data;
  if (s->closed) return;
  if (status < 0) {
    /* libuv stops the poll handle on POLLERR — a socket error pending, e.g. on a connected socket the ICMP
       port unreachable of a peer that was down for a moment (a node restarting) — and reports UV_EBADF.
       Reading SO_ERROR takes the error off the socket; the poll is started again and the socket read on
       (left stopped, it would never be read again: every reply of that node lost). */
    int soerr = 0;
    socklen_t soerr_len = sizeof soerr;
    s->stats[S_RX_ERRORS] += 1;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &soerr_len) != 0) {
      s->stats[S_LAST_ERRNO] = errno; /* the socket itself is gone: nothing to read on */
      return;
    }
    s->stats[S_LAST_ERRNO] = soerr != 0 ? soerr : -status;
    if (uv_poll_start(&s->poll, UV_READABLE, on_readable) != 0) return;
    events = UV_READABLE; /* and read what is waiting now */
  }
  if (!(events & UV_READABLE)) return;
  for (int batch = 0; batch < MAX_BATCHES_PER_EVENT && !s->closed; batch++) {
    for (uint32_t i = 0; i < s->slots; i++) {
      s->rx_msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_any);
      if (s->pktinfo) s->rx_msgs[i].msg_hdr.msg_controllen = PKT_CTRL; /* the kernel shortens it */
    }
    int n = recvmmsg(s->fd, s->rx_msgs, s->slots, MSG_DONTWAIT | MSG_TRUNC, NULL);
    s->stats[S_RX_SYSCALLS] += 1;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      /* e.g. ECONNREFUSED on a connected socket after an ICMP port unreachable: counted, read on. */
      s->stats[S_RX_ERRORS] += 1;
      s->stats[S_LAST_ERRNO] = errno;
      if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH) continue;
      return;
    }
    if (n == 0) return;
    for (int i = 0; i < n; i++) {
      int32_t *m = s->rx_meta + (size_t)i * META_INTS;
      unsigned int len = s->rx_msgs[i].msg_len; /* the datagram's real length (MSG_TRUNC) */
      int trunc = len > s->slot_size || (s->rx_msgs[i].msg_hdr.msg_flags & MSG_TRUNC);
      m[M_LEN] = (int32_t)(len > s->slot_size ? s->slot_size : len);
      m[M_FLAGS] = trunc ? FLAG_TRUNCATED : 0;
      if (trunc) s->stats[S_RX_TRUNCATED] += 1;
      meta_from_sockaddr(m, &s->rx_names[i]);
      if (s->pktinfo) local_from_cmsgs(m, &s->rx_msgs[i].msg_hdr);
    }
    s->stats[S_RX_DATAGRAMS] += n;
    s->stats[S_RX_BATCHES] += 1;
    if (deliver(s, n) != 0) return;
    if ((uint32_t)n < s->slots) return; /* the queue is (very likely) empty: spare the EAGAIN call */
  }
}

/* ---------- the class ---------- */

/* Tags UdpSocket objects: an object another addon wrapped (a TcpPump) is never taken for one. */
static const napi_type_tag UDP_SOCK_TAG = {0x7f3c2a9e51d04b86ULL, 0xa1e6c0d83b2f4957ULL};

/* The udp_sock `v` wraps, or NULL when it is not a UdpSocket. */
static udp_sock *unwrap_sock(napi_env env, napi_value v) {
  bool tagged = false;
  void *data = NULL;
  if (napi_check_object_type_tag(env, v, &UDP_SOCK_TAG, &tagged) != napi_ok || !tagged) return NULL;
  if (napi_unwrap(env, v, &data) != napi_ok) return NULL;
  return (udp_sock *)data;
}

static udp_sock *unwrap_this(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if ((data = unwrap_sock(env, self)) == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_THIS", "anchor_udp: `this` is not a UdpSocket");
    return NULL;
  }
  return (udp_sock *)data;
}

/* Reads option `key`: 1 with its value and type when present and not undefined, 0 when absent, -1 on a
 * Node-API failure (an exception may be pending). */
static int opt_value(napi_env env, napi_value obj, const char *key, napi_value *v, napi_valuetype *t) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok) return -1;
  if (!has) return 0;
  if (napi_get_named_property(env, obj, key, v) != napi_ok || napi_typeof(env, *v, t) != napi_ok) return -1;
  return *t == napi_undefined ? 0 : 1;
}

/* Reads an optional integer option in [lo, hi]; returns 1 if present, 0 if absent, -1 after throwing. */
static int opt_int(napi_env env, napi_value obj, const char *key, int64_t lo, int64_t hi, int64_t *out) {
  napi_value v;
  napi_valuetype t;
  char msg[200];
  int r = opt_value(env, obj, key, &v, &t);
  if (r <= 0) return r;
  if (t != napi_number) {
    snprintf(msg, sizeof msg, "anchor_udp: options.%s must be a number", key);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return -1;
  }
  double d;
  napi_get_value_double(env, v, &d);
  if (!(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d) {
    snprintf(msg, sizeof msg, "anchor_udp: options.%s must be an integer from %lld to %lld, got %g", key,
             (long long)lo, (long long)hi, d);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return -1;
  }
  *out = (int64_t)d;
  return 1;
}

/* Reads an optional string option into buf; returns 1 if present, 0 if absent, -1 after throwing. */
static int opt_str(napi_env env, napi_value obj, const char *key, char *buf, size_t cap) {
  napi_value v;
  napi_valuetype t;
  char msg[200];
  int r = opt_value(env, obj, key, &v, &t);
  if (r <= 0) return r;
  size_t len = 0;
  if (t != napi_string || napi_get_value_string_utf8(env, v, buf, cap, &len) != napi_ok || len + 1 >= cap) {
    snprintf(msg, sizeof msg, "anchor_udp: options.%s must be an IP address string", key);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return -1;
  }
  return 1;
}

/* Reads an optional boolean option; returns 1 if present, 0 if absent, -1 after throwing. */
static int opt_bool(napi_env env, napi_value obj, const char *key, bool *out) {
  napi_value v;
  napi_valuetype t;
  char msg[200];
  int r = opt_value(env, obj, key, &v, &t);
  if (r <= 0) return r;
  if (t != napi_boolean) {
    snprintf(msg, sizeof msg, "anchor_udp: options.%s must be a boolean", key);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return -1;
  }
  napi_get_value_bool(env, v, out);
  return 1;
}

/* Creates an ArrayBuffer of `bytes`, a typed array of `type` over it, sets it as property `name`. */
static void *attach_array(napi_env env, napi_value obj, const char *name, napi_typedarray_type type,
                          size_t elem, size_t bytes) {
  void *data = NULL;
  napi_value ab, ta;
  if (napi_create_arraybuffer(env, bytes, &data, &ab) != napi_ok ||
      napi_create_typedarray(env, type, bytes / elem, ab, 0, &ta) != napi_ok)
    return NULL;
  memset(data, 0, bytes);
  napi_property_descriptor d = {name, NULL, NULL, NULL, NULL, ta, napi_enumerable, NULL};
  if (napi_define_properties(env, obj, 1, &d) != napi_ok) return NULL;
  return data;
}

static void set_uint(napi_env env, napi_value obj, const char *name, uint32_t v) {
  napi_value x;
  napi_property_descriptor d = {name, NULL, NULL, NULL, NULL, NULL, napi_enumerable, NULL};
  if (napi_create_uint32(env, v, &x) != napi_ok) return;
  d.value = x;
  napi_define_properties(env, obj, 1, &d);
}

/* new UdpSocket(options, onBatch)
 *   options: { family: 4 | 6, address: string, port: number, recvBufferSize?, sendBufferSize?,
 *              connectAddress?, connectPort?, slots? (1..1024, 64), slotSize? (64..65536, 2048),
 *              txSlotSize? (64..65536, slotSize: tx slots may be larger, for a header before a body as
 *              large as an rx slot's) }
 *   onBatch(count): called with `this` = the socket after recvmmsg filled rx slots 0..count-1. */
static napi_value sock_new(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self, target;
  NAPI_CALL(env, napi_get_new_target(env, info, &target));
  if (target == NULL) {
    napi_throw_type_error(env, "ERR_CONSTRUCT_CALL_REQUIRED", "anchor_udp: UdpSocket must be called with new");
    return NULL;
  }
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  napi_valuetype t0 = napi_undefined, t1 = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t0);
  if (argc >= 2) napi_typeof(env, argv[1], &t1);
  if (t0 != napi_object) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "anchor_udp: new UdpSocket(options, onBatch): options must be an object");
    return NULL;
  }
  if (t1 != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "anchor_udp: new UdpSocket(options, onBatch): onBatch must be a function");
    return NULL;
  }
  napi_value opts = argv[0];
  int64_t family = 0, port = 0, rcvbuf = 0, sndbuf = 0, cport = 0, slots = DEFAULT_SLOTS, slot_size = DEFAULT_SLOT_SIZE, tx_slot_size = 0;
  char addr[INET6_ADDRSTRLEN + 8], caddr[INET6_ADDRSTRLEN + 8];
  int r;
  if ((r = opt_int(env, opts, "family", 4, 6, &family)) < 0) return NULL;
  if (r == 0 || (family != 4 && family != 6)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "anchor_udp: options.family must be 4 or 6");
    return NULL;
  }
  if ((r = opt_str(env, opts, "address", addr, sizeof addr)) < 0) return NULL;
  if (r == 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "anchor_udp: options.address (the bind address) is required");
    return NULL;
  }
  if ((r = opt_int(env, opts, "port", 0, 65535, &port)) < 0) return NULL;
  if (r == 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "anchor_udp: options.port is required (0 for any)");
    return NULL;
  }
  if (opt_int(env, opts, "recvBufferSize", 0, INT32_MAX, &rcvbuf) < 0) return NULL;
  if (opt_int(env, opts, "sendBufferSize", 0, INT32_MAX, &sndbuf) < 0) return NULL;
  if (opt_int(env, opts, "slots", 1, MAX_SLOTS, &slots) < 0) return NULL;
  if (opt_int(env, opts, "slotSize", MIN_SLOT_SIZE, MAX_SLOT_SIZE, &slot_size) < 0) return NULL;
  int has_tx_slot = opt_int(env, opts, "txSlotSize", MIN_SLOT_SIZE, MAX_SLOT_SIZE, &tx_slot_size);
  if (has_tx_slot < 0) return NULL;
  if (has_tx_slot == 0) tx_slot_size = slot_size;
  int has_caddr = opt_str(env, opts, "connectAddress", caddr, sizeof caddr);
  if (has_caddr < 0) return NULL;
  int has_cport = opt_int(env, opts, "connectPort", 1, 65535, &cport);
  if (has_cport < 0) return NULL;
  if (has_caddr != has_cport) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "anchor_udp: options.connectAddress and options.connectPort go together");
    return NULL;
  }
  bool gso = false, no_check = false, pktinfo = false;
  if (opt_bool(env, opts, "gso", &gso) < 0) return NULL;
  if (opt_bool(env, opts, "pktinfo", &pktinfo) < 0) return NULL;
  if (opt_bool(env, opts, "testNoChecksum", &no_check) < 0) return NULL;
  if (slot_size % 8 != 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "anchor_udp: options.slotSize must be a multiple of 8");
    return NULL;
  }
  if (tx_slot_size % 8 != 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "anchor_udp: options.txSlotSize must be a multiple of 8");
    return NULL;
  }
  sockaddr_any bind_sa, conn_sa;
  socklen_t bind_len = 0, conn_len = 0;
  if (make_sockaddr((int)family, addr, (uint32_t)port, &bind_sa, &bind_len) != 0) {
    char msg[200];
    snprintf(msg, sizeof msg, "anchor_udp: options.address %.60s is not an IPv%d address", addr, (int)family);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return NULL;
  }
  if (has_caddr && make_sockaddr((int)family, caddr, (uint32_t)cport, &conn_sa, &conn_len) != 0) {
    char msg[200];
    snprintf(msg, sizeof msg, "anchor_udp: options.connectAddress %.60s is not an IPv%d address", caddr, (int)family);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return NULL;
  }

  udp_sock *s = calloc(1, sizeof *s);
  if (s == NULL) {
    napi_throw_error(env, "ENOMEM", "anchor_udp: out of memory");
    return NULL;
  }
  s->env = env;
  s->fd = -1;
  s->family = (int)family;
  s->slots = (uint32_t)slots;
  s->slot_size = (uint32_t)slot_size;
  s->tx_slot_size = (uint32_t)tx_slot_size;
  s->rx_msgs = calloc(s->slots, sizeof *s->rx_msgs);
  s->rx_iov = calloc(s->slots, sizeof *s->rx_iov);
  s->rx_names = calloc(s->slots, sizeof *s->rx_names);
  s->tx_msgs = calloc(s->slots, sizeof *s->tx_msgs);
  s->tx_iov = calloc(2 * (size_t)s->slots, sizeof *s->tx_iov);
  s->tx_names = calloc(s->slots, sizeof *s->tx_names);
  s->tx_first = calloc(s->slots, sizeof *s->tx_first);
  s->tx_segs = calloc(s->slots, sizeof *s->tx_segs);
  s->tx_seg = calloc(s->slots, sizeof *s->tx_seg);
  s->tx_ctrl = calloc(s->slots, TX_CTRL);
  s->pktinfo = pktinfo;
  s->rx_ctrl = pktinfo ? calloc(s->slots, PKT_CTRL) : NULL;
  s->gso = gso;
  s->gso_max = UINT32_MAX;
  if (!s->rx_msgs || !s->rx_iov || !s->rx_names || !s->tx_msgs || !s->tx_iov || !s->tx_names || !s->tx_first || !s->tx_segs ||
      !s->tx_seg || !s->tx_ctrl || (pktinfo && !s->rx_ctrl)) {
    free_sock(s);
    napi_throw_error(env, "ENOMEM", "anchor_udp: out of memory");
    return NULL;
  }
  /* From here on the object owns `s`: the finalizer frees it whatever happens next. */
  if (napi_wrap(env, self, s, finalize_sock, NULL, NULL) != napi_ok) {
    free_sock(s);
    throw_last(env, "napi_wrap");
    return NULL;
  }
  if (napi_type_tag_object(env, self, &UDP_SOCK_TAG) != napi_ok) {
    s->closed = 1; /* the finalizer frees it */
    throw_last(env, "napi_type_tag_object");
    return NULL;
  }
  size_t slab = (size_t)s->slots * s->slot_size, tx_slab = (size_t)s->slots * s->tx_slot_size, meta = (size_t)s->slots * META_INTS * sizeof(int32_t);
  s->rx = attach_array(env, self, "rx", napi_uint8_array, 1, slab);
  s->rx_meta = s->rx ? attach_array(env, self, "rxMeta", napi_int32_array, 4, meta) : NULL;
  s->tx = s->rx_meta ? attach_array(env, self, "tx", napi_uint8_array, 1, tx_slab) : NULL;
  s->tx_meta = s->tx ? attach_array(env, self, "txMeta", napi_int32_array, 4, meta) : NULL;
  s->stats = s->tx_meta ? attach_array(env, self, "stats", napi_float64_array, 8, S_COUNT * sizeof(double)) : NULL;
  if (s->stats == NULL) {
    s->closed = 1;
    throw_last(env, "allocating the slabs");
    return NULL;
  }
  set_uint(env, self, "slots", s->slots);
  set_uint(env, self, "slotSize", s->slot_size);
  set_uint(env, self, "txSlotSize", s->tx_slot_size);
  set_uint(env, self, "family", (uint32_t)s->family);
  for (uint32_t i = 0; i < s->slots; i++) {
    s->rx_iov[i].iov_base = s->rx + (size_t)i * s->slot_size;
    s->rx_iov[i].iov_len = s->slot_size;
    s->rx_msgs[i].msg_hdr.msg_iov = &s->rx_iov[i];
    s->rx_msgs[i].msg_hdr.msg_iovlen = 1;
    s->rx_msgs[i].msg_hdr.msg_name = &s->rx_names[i];
    s->rx_msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_any);
    if (s->pktinfo) {
      s->rx_msgs[i].msg_hdr.msg_control = s->rx_ctrl + (size_t)i * PKT_CTRL;
      s->rx_msgs[i].msg_hdr.msg_controllen = PKT_CTRL;
    }
  }

  /* The socket. */
  s->fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) {
    int e = errno;
    s->closed = 1;
    throw_errno(env, e, "socket");
    return NULL;
  }
  int v;
  if (rcvbuf > 0 && (v = (int)rcvbuf, setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v) != 0)) goto sys_fail_rcvbuf;
  if (sndbuf > 0 && (v = (int)sndbuf, setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v) != 0)) goto sys_fail_sndbuf;
  /* Tests only: no UDP checksum on IPv4 sends, which makes the kernel refuse GSO messages (EINVAL). */
  if (no_check && (v = 1, setsockopt(s->fd, SOL_SOCKET, SO_NO_CHECK, &v, sizeof v) != 0)) goto sys_fail_nocheck;
  /* IPv6 only, as node:dgram's sockets are opened (ipv6Only): a `[::]` listener and a `0.0.0.0` one on one
     port are two sockets, and an IPv4 client never arrives on the IPv6 one as ::ffff:a.b.c.d. */
  if (family == 6 && (v = 1, setsockopt(s->fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v) != 0)) goto sys_fail_v6only;
  /* Each datagram's local address: on a wildcard bind, which of the host's addresses it was sent to. */
  if (pktinfo && family == 4 && (v = 1, setsockopt(s->fd, IPPROTO_IP, IP_PKTINFO, &v, sizeof v) != 0)) goto sys_fail_pktinfo;
  if (pktinfo && family == 6 && (v = 1, setsockopt(s->fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &v, sizeof v) != 0)) goto sys_fail_pktinfo;
  if (bind(s->fd, &bind_sa.sa, bind_len) != 0) goto sys_fail_bind;
  if (has_caddr) {
    if (connect(s->fd, &conn_sa.sa, conn_len) != 0) goto sys_fail_connect;
    s->connected = 1;
  }

  /* libuv: readable events on the loop of this env. */
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) {
    close(s->fd);
    s->fd = -1;
    s->closed = 1;
    throw_last(env, "napi_get_uv_event_loop");
    return NULL;
  }
  int uerr = uv_poll_init(loop, &s->poll, s->fd);
  if (uerr != 0) {
    close(s->fd);
    s->fd = -1;
    s->closed = 1;
    throw_errno(env, -uerr, "uv_poll_init");
    return NULL;
  }
  s->poll.data = s;
  s->poll_active = 1;
  napi_value name;
  if (napi_create_reference(env, argv[1], 1, &s->on_batch) != napi_ok ||
      napi_create_reference(env, self, 1, &s->self) != napi_ok ||
      napi_create_string_utf8(env, "anchor.UdpSocket", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, self, name, &s->async_ctx) != napi_ok) {
    throw_last(env, "creating references");
    do_close(s);
    return NULL;
  }
  if (napi_add_env_cleanup_hook(env, env_cleanup, s) == napi_ok) s->hooked = 1;
  uerr = uv_poll_start(&s->poll, UV_READABLE, on_readable);
  if (uerr != 0) {
    do_close(s);
    throw_errno(env, -uerr, "uv_poll_start");
    return NULL;
  }
  return self;

  {
    const char *what;
  sys_fail_rcvbuf:
    what = "setsockopt(SO_RCVBUF)";
    goto sys_fail;
  sys_fail_sndbuf:
    what = "setsockopt(SO_SNDBUF)";
    goto sys_fail;
  sys_fail_nocheck:
    what = "setsockopt(SO_NO_CHECK)";
    goto sys_fail;
  sys_fail_v6only:
    what = "setsockopt(IPV6_V6ONLY)";
    goto sys_fail;
  sys_fail_pktinfo:
    what = family == 4 ? "setsockopt(IP_PKTINFO)" : "setsockopt(IPV6_RECVPKTINFO)";
    goto sys_fail;
  sys_fail_bind:
    what = "bind";
    goto sys_fail;
  sys_fail_connect:
    what = "connect";
  sys_fail:;
    int e = errno;
    close(s->fd);
    s->fd = -1;
    s->closed = 1;
    throw_errno(env, e, what);
    return NULL;
  }
}

/* Whether a send error is about the peer or the path (an ICMP error reported back, or the route), not
 * about the message: such a message may go through when sent again, and says nothing about GSO. */
static inline int peer_error(int e) {
  return e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH || e == EHOSTDOWN || e == ENETDOWN || e == EPERM || e == EACCES;
}

/* Whether tx metadata slot `m` names a destination this socket can send to: one of its family, or none
 * (FAMILY 0) on a connected socket. */
static inline int dest_ok(const udp_sock *s, const int32_t *m) {
  if (m[M_FAMILY] == 0) return s->connected;
  return (m[M_FAMILY] == 4 || m[M_FAMILY] == 6) && m[M_FAMILY] == s->family;
}

/* Whether tx metadata slots `a` and `b` name the same destination (FAMILY 0: the connected peer). */
static inline int same_dest(const int32_t *a, const int32_t *b) {
  if (a[M_FAMILY] != b[M_FAMILY] || a[M_PORT] != b[M_PORT]) return 0;
  /* And from the same source address (one message has one). */
  if (a[M_LOCAL] != b[M_LOCAL] || a[M_LOCAL + 1] != b[M_LOCAL + 1] || a[M_LOCAL + 2] != b[M_LOCAL + 2] || a[M_LOCAL + 3] != b[M_LOCAL + 3]) return 0;
  if (a[M_FAMILY] == 4) return a[M_ADDR] == b[M_ADDR];
  if (a[M_FAMILY] == 6) return a[M_ADDR] == b[M_ADDR] && a[M_ADDR + 1] == b[M_ADDR + 1] && a[M_ADDR + 2] == b[M_ADDR + 2] && a[M_ADDR + 3] == b[M_ADDR + 3];
  return 1;
}

/* Builds the messages that send tx slots from..count-1 into tx_msgs[0..]; returns how many. A slot that
 * cannot be sent is skipped (counted in TX_ERRORS when `count_errors`: a rebuild does not count again).
 * With `gso`, a datagram joins the message before it when that message goes to the same destination, its
 * datagrams are of this one's size (a shorter one may end a message: none joins after it), and the limits
 * allow (GSO_MAX_SEGS, GSO_MAX_BYTES, gso_max): then the message's iovecs run on into this datagram's
 * (they are consecutive in tx_iov), and it carries UDP_SEGMENT = that size. */
static uint32_t build_msgs(udp_sock *s, udp_sock *src, uint32_t from, uint32_t count, int gso, int count_errors) {
  uint32_t k = 0;
  size_t v = 0;             /* iovecs used */
  int open = 0;             /* the last message may take more datagrams */
  uint32_t bytes = 0;       /* the last message's bytes */
  const int32_t *head = NULL; /* the metadata of the last message's first datagram */
  for (uint32_t i = from; i < count; i++) {
    const int32_t *m = s->tx_meta + (size_t)i * META_INTS;
    int32_t len = m[M_LEN], from_slot = m[M_FLAGS];
    struct iovec *iov = &s->tx_iov[v];
    int bad = len < 0 || (uint32_t)len > s->tx_slot_size;
    size_t iovlen = 0;
    uint32_t total = 0;
    if (!bad && len > 0) {
      iov[iovlen].iov_base = s->tx + (size_t)i * s->tx_slot_size;
      iov[iovlen++].iov_len = (size_t)len;
      total += (uint32_t)len;
    }
    if (!bad && from_slot != 0) {
      /* Gather: the bytes of rx slot from-1 of `src` (as its last batch left them). */
      if (src == NULL || src->closed || from_slot < 1 || (uint32_t)from_slot > src->slots) {
        bad = 1;
      } else {
        /* rxMeta is writable from JS: its LEN is checked, never trusted. */
        int32_t rlen = src->rx_meta[(size_t)(from_slot - 1) * META_INTS + M_LEN];
        if (rlen < 0 || (uint32_t)rlen > src->slot_size) {
          bad = 1;
        } else {
          iov[iovlen].iov_base = src->rx + (size_t)(from_slot - 1) * src->slot_size;
          iov[iovlen++].iov_len = (size_t)rlen;
          total += (uint32_t)rlen;
        }
      }
    }
    if (!bad && !dest_ok(s, m)) bad = 1;
    if (bad) {
      if (count_errors) {
        s->stats[S_TX_ERRORS] += 1;
        s->stats[S_LAST_ERRNO] = EINVAL;
      }
      continue;
    }
    if (gso && open && total > 0 && total <= s->tx_seg[k - 1] && s->tx_segs[k - 1] < GSO_MAX_SEGS && bytes + total <= GSO_MAX_BYTES &&
        same_dest(head, m)) {
      struct msghdr *h = &s->tx_msgs[k - 1].msg_hdr;
      h->msg_iovlen += iovlen;
      s->tx_segs[k - 1] += 1;
      bytes += total;
      if (total < s->tx_seg[k - 1]) open = 0; /* a shorter datagram ends the message */
      v += iovlen;
      continue;
    }
    struct msghdr *h = &s->tx_msgs[k].msg_hdr;
    socklen_t nl = m[M_FAMILY] != 0 ? sockaddr_from_meta(s->family, m, &s->tx_names[k]) : 0;
    h->msg_name = nl != 0 ? &s->tx_names[k] : NULL;
    h->msg_namelen = nl;
    h->msg_iov = iov;
    h->msg_iovlen = iovlen;
    h->msg_control = NULL;
    h->msg_controllen = 0;
    h->msg_flags = 0;
    s->tx_first[k] = i;
    s->tx_segs[k] = 1;
    s->tx_seg[k] = total;
    head = m;
    bytes = total;
    open = gso && total > 0 && total <= s->gso_max;
    v += iovlen;
    k++;
  }
  /* Control messages: UDP_SEGMENT on each message that carries more than one datagram; the source
     address on each whose datagrams name one (LOCAL). */
  for (uint32_t j = 0; j < k; j++) {
    const int32_t *m = s->tx_meta + (size_t)s->tx_first[j] * META_INTS;
    int seg = gso && s->tx_segs[j] >= 2;
    int local = m[M_LOCAL] != 0 || m[M_LOCAL + 1] != 0 || m[M_LOCAL + 2] != 0 || m[M_LOCAL + 3] != 0;
    if (!seg && !local) continue;
    struct msghdr *h = &s->tx_msgs[j].msg_hdr;
    uint8_t *ctrl = s->tx_ctrl + (size_t)j * TX_CTRL;
    memset(ctrl, 0, TX_CTRL);
    h->msg_control = ctrl;
    h->msg_controllen = (seg ? GSO_CTRL : 0) + (local ? (s->family == 4 ? CMSG_SPACE(sizeof(struct in_pktinfo)) : CMSG_SPACE(sizeof(struct in6_pktinfo))) : 0);
    struct cmsghdr *c = CMSG_FIRSTHDR(h);
    if (seg) {
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t size = (uint16_t)s->tx_seg[j];
      memcpy(CMSG_DATA(c), &size, sizeof size);
      c = CMSG_NXTHDR(h, c);
    }
    if (local && c != NULL) {
      if (s->family == 4) {
        struct in_pktinfo pi;
        memset(&pi, 0, sizeof pi);
        pi.ipi_spec_dst.s_addr = htonl((uint32_t)m[M_LOCAL]);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof pi);
        memcpy(CMSG_DATA(c), &pi, sizeof pi);
      } else {
        struct in6_pktinfo pi;
        memset(&pi, 0, sizeof pi);
        uint32_t w[4];
        for (int q = 0; q < 4; q++) w[q] = htonl((uint32_t)m[M_LOCAL + q]);
        memcpy(&pi.ipi6_addr, w, sizeof w);
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof pi);
        memcpy(CMSG_DATA(c), &pi, sizeof pi);
      }
    }
  }
  return k;
}

/* flush(count, source?): sends tx slots 0..count-1 with one sendmmsg (more if the kernel takes fewer).
 * Returns the number sent. A datagram the kernel refuses (ECONNREFUSED, EMSGSIZE …) is counted in
 * TX_ERRORS and skipped; when the socket buffer is full (EAGAIN) the rest are dropped and counted in
 * TX_WOULDBLOCK_DROPS (UDP: the sender must not block; slots are free again after flush returns). A
 * slot with LEN outside 0..txSlotSize, a SOURCE slot outside the source's rx, or a destination of another
 * family is counted in TX_ERRORS (EINVAL) and skipped. */
static napi_value sock_flush(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  udp_sock *s = unwrap_this(env, info, &argc, argv);
  if (s == NULL) return NULL;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_number) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "anchor_udp: flush(count): count must be a number");
    return NULL;
  }
  double d;
  napi_get_value_double(env, argv[0], &d);
  if (!(d >= 0 && d <= s->slots) || d != (double)(uint32_t)d) {
    char msg[160];
    snprintf(msg, sizeof msg, "anchor_udp: flush(count): count must be an integer from 0 to %u, got %g", s->slots, d);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return NULL;
  }
  udp_sock *src = NULL;
  if (argc >= 2) {
    napi_valuetype st;
    napi_typeof(env, argv[1], &st);
    if (st != napi_undefined && st != napi_null) {
      void *data = NULL;
      if (st != napi_object || (data = unwrap_sock(env, argv[1])) == NULL) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "anchor_udp: flush(count, source): source must be a UdpSocket");
        return NULL;
      }
      src = (udp_sock *)data;
    }
  }
  if (s->closed) {
    napi_throw_error(env, "ANCHOR_SOCKET_CLOSED", "anchor_udp: flush() on a closed socket");
    return NULL;
  }
  uint32_t count = (uint32_t)d;
  uint32_t k = build_msgs(s, src, 0, count, s->gso, 1);
  uint32_t done = 0, sent = 0;
  uint32_t retried = UINT32_MAX; /* the message sent again after a peer error (once each) */
  while (done < k) {
    int n = sendmmsg(s->fd, s->tx_msgs + done, k - done, MSG_DONTWAIT);
    s->stats[S_TX_SYSCALLS] += 1;
    if (n > 0) {
      for (uint32_t j = done; j < done + (uint32_t)n; j++) {
        uint32_t segs = s->tx_segs[j];
        sent += segs;
        if (segs > 1) {
          s->stats[S_TX_GSO_SENDS] += 1;
          s->stats[S_TX_GSO_DATAGRAMS] += segs;
        }
      }
      done += (uint32_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    int e = n < 0 ? errno : EIO;
    s->stats[S_LAST_ERRNO] = e;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
      for (uint32_t j = done; j < k; j++) s->stats[S_TX_WOULDBLOCK_DROPS] += s->tx_segs[j];
      break;
    }
    if (peer_error(e)) {
      /* About the peer or the path, not this message (a connected socket's pending ICMP error, e.g. the
       * port unreachable of a node that was down a moment, comes back from the next send and is taken
       * off the socket by it): the message goes once more; refused again, its datagrams are counted and
       * the next message tried. Never a reason to give GSO up. */
      if (retried != done) {
        retried = done;
        continue;
      }
      s->stats[S_TX_ERRORS] += s->tx_segs[done];
      done++;
      continue;
    }
    if (s->tx_segs[done] > 1) {
      /* The kernel refused a GSO message (e.g. EINVAL: its datagrams exceed the path MTU; EIO: the device
       * cannot checksum them; ENOPROTOOPT: no UDP_SEGMENT): what is left goes again, this message's
       * datagrams one by one. After EINVAL/EMSGSIZE datagrams of this size or larger are not grouped
       * again; after any other refusal (about GSO itself: not a peer error, above) GSO stays off on this
       * socket. */
      s->stats[S_TX_GSO_FALLBACKS] += 1;
      uint32_t seg = s->tx_seg[done];
      if (e == EINVAL || e == EMSGSIZE) {
        if (seg <= s->gso_max) s->gso_max = seg - 1;
      } else {
        s->gso = 0;
      }
      k = build_msgs(s, src, s->tx_first[done], count, 0, 0);
      done = 0;
      continue;
    }
    s->stats[S_TX_ERRORS] += 1; /* this datagram; the next ones are tried */
    done++;
  }
  s->stats[S_TX_DATAGRAMS] += sent;
  napi_value out;
  NAPI_CALL(env, napi_create_uint32(env, sent, &out));
  return out;
}

/* address(): { family: 4 | 6, address, port } of the bound socket (not a hot-path call). */
static napi_value sock_address(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udp_sock *s = unwrap_this(env, info, &argc, NULL);
  if (s == NULL) return NULL;
  if (s->closed) {
    napi_throw_error(env, "ANCHOR_SOCKET_CLOSED", "anchor_udp: address() on a closed socket");
    return NULL;
  }
  sockaddr_any sa;
  socklen_t len = sizeof sa;
  if (getsockname(s->fd, &sa.sa, &len) != 0) {
    throw_errno(env, errno, "getsockname");
    return NULL;
  }
  char text[INET6_ADDRSTRLEN];
  int port;
  if (sa.sa.sa_family == AF_INET) {
    inet_ntop(AF_INET, &sa.v4.sin_addr, text, sizeof text);
    port = ntohs(sa.v4.sin_port);
  } else {
    inet_ntop(AF_INET6, &sa.v6.sin6_addr, text, sizeof text);
    port = ntohs(sa.v6.sin6_port);
  }
  napi_value out, f, a, p;
  NAPI_CALL(env, napi_create_object(env, &out));
  NAPI_CALL(env, napi_create_uint32(env, (uint32_t)s->family, &f));
  NAPI_CALL(env, napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &a));
  NAPI_CALL(env, napi_create_uint32(env, (uint32_t)port, &p));
  NAPI_CALL(env, napi_set_named_property(env, out, "family", f));
  NAPI_CALL(env, napi_set_named_property(env, out, "address", a));
  NAPI_CALL(env, napi_set_named_property(env, out, "port", p));
  return out;
}

/* close(): stops receiving and closes the fd at once (the port is free when it returns). Idempotent;
 * allowed inside the batch callback (no further batch is delivered). */
static napi_value sock_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udp_sock *s = unwrap_this(env, info, &argc, NULL);
  if (s == NULL) return NULL;
  do_close(s);
  return NULL;
}

static napi_value sock_closed(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udp_sock *s = unwrap_this(env, info, &argc, NULL);
  if (s == NULL) return NULL;
  napi_value out;
  NAPI_CALL(env, napi_get_boolean(env, s->closed != 0, &out));
  return out;
}

/* ref() / unref(): whether this open socket keeps the event loop alive (it does by default). */
static napi_value sock_ref(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udp_sock *s = unwrap_this(env, info, &argc, NULL);
  if (s == NULL) return NULL;
  if (!s->closed && s->poll_active) uv_ref((uv_handle_t *)&s->poll);
  return NULL;
}

static napi_value sock_unref(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  udp_sock *s = unwrap_this(env, info, &argc, NULL);
  if (s == NULL) return NULL;
  if (!s->closed && s->poll_active) uv_unref((uv_handle_t *)&s->poll);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"flush", NULL, sock_flush, NULL, NULL, NULL, napi_default_method, NULL},
      {"address", NULL, sock_address, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, sock_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"ref", NULL, sock_ref, NULL, NULL, NULL, napi_default_method, NULL},
      {"unref", NULL, sock_unref, NULL, NULL, NULL, napi_default_method, NULL},
      {"closed", NULL, NULL, sock_closed, NULL, NULL, napi_enumerable | napi_configurable, NULL},
  };
  napi_value cls, stats, v;
  NAPI_CALL(env, napi_define_class(env, "UdpSocket", NAPI_AUTO_LENGTH, sock_new, NULL,
                                   sizeof methods / sizeof methods[0], methods, &cls));
  NAPI_CALL(env, napi_set_named_property(env, exports, "UdpSocket", cls));
  NAPI_CALL(env, napi_create_object(env, &stats));
  for (int i = 0; i < S_COUNT; i++) {
    NAPI_CALL(env, napi_create_int32(env, i, &v));
    NAPI_CALL(env, napi_set_named_property(env, stats, STAT_NAMES[i], v));
  }
  NAPI_CALL(env, napi_set_named_property(env, exports, "STATS", stats));
  const struct { const char *name; int32_t value; } consts[] = {
      {"META_INTS", META_INTS}, {"M_LEN", M_LEN}, {"M_FLAGS", M_FLAGS}, {"M_FAMILY", M_FAMILY},
      {"M_PORT", M_PORT}, {"M_ADDR", M_ADDR}, {"M_LOCAL", M_LOCAL}, {"FLAG_TRUNCATED", FLAG_TRUNCATED},
      {"MAX_SLOTS", MAX_SLOTS}, {"MAX_SLOT_SIZE", MAX_SLOT_SIZE},
  };
  for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
    NAPI_CALL(env, napi_create_int32(env, consts[i].value, &v));
    NAPI_CALL(env, napi_set_named_property(env, exports, consts[i].name, v));
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
