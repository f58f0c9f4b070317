/*
 * tcp_splice.c — Anchor's optional native TCP pump (Linux, Node-API, plain C): moves the bytes of one
 * proxied TCP connection both ways with splice(2) through a pipe per direction, on the event loop of the
 * env that created it (a uv_poll_t per socket; no thread of its own).
 *
 * Owns: a dup() of each of the two connected sockets it is given (the client's and the upstream's; the
 * caller then closes its own descriptors, which does not close the connections), the pipes it borrows
 * from a small per-env pool while bytes are in flight, and the bytes handed to it at the start (what
 * JavaScript had read but not yet forwarded). A direction that cannot have a pipe (setMaxPipes' limit, or
 * the process or system out of descriptors) copies that round through memory (recv, then send) rather
 * than ending the connection. Backpressure: a side is read only while the pipe toward
 * the other side is empty, so a slow reader stops its peer's reads (the kernel socket buffers fill up
 * and TCP flow control does the rest). Half-close: EOF from one side becomes shutdown(SHUT_WR) of the
 * other once everything read before it was written. JavaScript is called once per connection, when the
 * pump ended it by itself (both directions ended, an error, or the end of finish()); close() from
 * JavaScript ends it silently.
 * Never: looks at the bytes (everything the front must parse is parsed before the handover), decides
 * anything, blocks the event loop, or touches descriptors it was not given.
 *
 * Directions: IN = client → upstream (read the client, write the upstream), OUT = upstream → client.
 * stats (a Float64Array shared with JS, exact up to 2^53): see the S_* names below.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

enum {
  S_IN_READ,      /* bytes read from the client */
  S_IN_WRITTEN,   /* bytes written to the upstream */
  S_OUT_READ,     /* bytes read from the upstream */
  S_OUT_WRITTEN,  /* bytes written to the client */
  S_SPLICES,      /* splice/send/read syscalls made */
  S_EVENTS,       /* readiness events handled */
  S_IN_DISCARDED, /* bytes the client sent after finish(), read and dropped (not in S_IN_READ) */
  S_COUNT
};
static const char *const STAT_NAMES[S_COUNT] = {"IN_READ", "IN_WRITTEN", "OUT_READ", "OUT_WRITTEN", "SPLICES", "EVENTS", "IN_DISCARDED"};

/* How a pump ended by itself (the first argument of onEnd). */
#define END_EOF 1      /* both directions ended (EOF read and passed on as a FIN, both ways) */
#define END_ERROR 2    /* a socket error (errno in the second argument), or out of memory */
#define END_FINISHED 3 /* finish(): the upstream was dropped, the client got its FIN and closed */

#define DIR_IN 1
#define DIR_OUT 2

/* Bytes asked of one splice from a socket into an empty pipe (the pipe's capacity caps it). */
#define SPLICE_MAX (1 << 20)
/* Fill/flush rounds per direction per event, so one busy connection cannot starve the loop. */
#define ROUNDS_PER_EVENT 16
/* Empty pipes kept for reuse per env (each is two descriptors). */
#define POOL_MAX 128
/* Bytes read per round when a direction has no pipe (copy fallback: recv into memory, then send). */
#define COPY_MAX (64 * 1024)

/* ---------- the pipe pool (per env: napi instance data) ---------- */

typedef struct {
  int fds[POOL_MAX][2];
  int count;
  int pipe_size; /* F_SETPIPE_SZ for new pipes; 0 = the kernel's default */
  int max_open;  /* pipes open at most (-1 = no limit): past it a direction copies instead of splicing */
  double open;   /* pipes open now (pooled + lent) */
  double copies; /* reads made by copying because no pipe could be had (limit, EMFILE, ENFILE, ENOMEM) */
} pipe_pool;

static void pool_free(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  pipe_pool *p = (pipe_pool *)data;
  for (int i = 0; i < p->count; i++) {
    close(p->fds[i][0]);
    close(p->fds[i][1]);
  }
  free(p);
}

static int pool_get(pipe_pool *p, int out[2]) {
  if (p->count > 0) {
    p->count--;
    out[0] = p->fds[p->count][0];
    out[1] = p->fds[p->count][1];
    return 0;
  }
  if (p->max_open >= 0 && p->open >= p->max_open) {
    errno = EMFILE;
    return -1;
  }
  if (pipe2(out, O_NONBLOCK | O_CLOEXEC) != 0) return -1;
  if (p->pipe_size > 0) (void)fcntl(out[1], F_SETPIPE_SZ, p->pipe_size); /* best effort */
  p->open += 1;
  return 0;
}

/* Takes back an empty pipe (one with bytes in it is closed: they are lost with the connection). */
static void pool_put(pipe_pool *p, int fds[2], int empty) {
  if (empty && p->count < POOL_MAX && (p->max_open < 0 || p->open <= p->max_open)) {
    p->fds[p->count][0] = fds[0];
    p->fds[p->count][1] = fds[1];
    p->count++;
  } else {
    close(fds[0]);
    close(fds[1]);
    p->open -= 1;
  }
  fds[0] = fds[1] = -1;
}

/* ---------- one connection ---------- */

typedef struct {
  int src, dst;     /* the pump's fds (aliases of pump.fd[]) */
  int pipe[2];      /* [0] read end, [1] write end; -1 when none is lent */
  size_t in_pipe;   /* bytes in the pipe */
  uint8_t *pend;    /* bytes handed over at the start, written before anything spliced */
  size_t pend_len, pend_off;
  int eof;          /* EOF read from src (or src dropped by finish()) */
  int shut;         /* shutdown(dst, SHUT_WR) done */
  int paused;       /* pause(): src not read */
  int stat_read, stat_written;
} dir_t;

typedef struct pump {
  napi_env env;
  pipe_pool *pool;
  int fd[2];          /* [0] client, [1] upstream; -1 once closed */
  uv_poll_t poll[2];
  int poll_open;      /* uv_poll handles initialised and not yet closed by libuv */
  int poll_closing[2]; /* uv_close was called on poll[i] */
  int mask[2];        /* the events each poll is started with (0 = stopped) */
  dir_t d[2];         /* [0] IN, [1] OUT */
  int finishing;      /* finish() was called: the upstream is gone; the client is flushed then drained */
  int closed;
  int in_callback;    /* inside onEnd: close() from JS must leave the async context alone */
  int hooked, in_cleanup, finalized;
  napi_ref self;      /* strong while open */
  napi_ref on_end;
  napi_async_context async_ctx;
  double *stats;
} pump;

static void throw_errno(napi_env env, int err, const char *syscall) {
  char msg[200];
  const char *name = uv_err_name(uv_translate_sys_error(err));
  snprintf(msg, sizeof msg, "anchor_tcp: %s %s: %s", syscall, name, strerror(err));
  napi_throw_error(env, name, msg);
}

static void free_pump(pump *p) {
  free(p->d[0].pend);
  free(p->d[1].pend);
  free(p);
}

static void on_poll_closed(uv_handle_t *h) {
  pump *p = (pump *)h->data;
  if (--p->poll_open == 0 && p->finalized) free_pump(p);
}

static void env_cleanup(void *arg);

/* Stops watching fd i and closes it. The handle is closed first: libuv removes the fd from its epoll set
 * by number, which must still be ours when it does. */
static void close_side(pump *p, int i) {
  if (!p->poll_closing[i] && p->poll_open > 0) {
    p->poll_closing[i] = 1;
    uv_close((uv_handle_t *)&p->poll[i], on_poll_closed);
  }
  p->mask[i] = 0;
  if (p->fd[i] >= 0) close(p->fd[i]);
  p->fd[i] = -1;
}

/* Closes everything the pump owns. Idempotent. Does not call JS. */
static void shut_all(pump *p) {
  if (p->closed) return;
  p->closed = 1;
  if (p->hooked && !p->in_cleanup) napi_remove_env_cleanup_hook(p->env, env_cleanup, p);
  p->hooked = 0;
  for (int i = 0; i < 2; i++) close_side(p, i);
  for (int i = 0; i < 2; i++) {
    dir_t *d = &p->d[i];
    if (d->pipe[0] >= 0) pool_put(p->pool, d->pipe, d->in_pipe == 0);
    d->in_pipe = 0;
    free(d->pend);
    d->pend = NULL;
    d->pend_len = d->pend_off = 0;
  }
  if (p->self != NULL) napi_reference_unref(p->env, p->self, NULL);
}

static void drop_js(pump *p) {
  if (p->in_callback) return; /* end_with drops them after the callback returns */
  if (p->on_end != NULL) {
    napi_delete_reference(p->env, p->on_end);
    p->on_end = NULL;
  }
  if (p->async_ctx != NULL) {
    napi_async_destroy(p->env, p->async_ctx);
    p->async_ctx = NULL;
  }
}

static void env_cleanup(void *arg) {
  pump *p = (pump *)arg;
  p->in_cleanup = 1;
  shut_all(p);
}

/* Ends the connection and tells JS (once): onEnd(code, errno, errnoName). */
static void end_with(pump *p, int code, int err) {
  if (p->closed) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) {
    shut_all(p);
    drop_js(p);
    return;
  }
  /* The object and the callback are taken (held by this scope) before shut_all makes `self` weak. */
  napi_value fn = NULL, self = NULL, argv[3], result;
  if (p->on_end == NULL || napi_get_reference_value(env, p->on_end, &fn) != napi_ok ||
      napi_get_reference_value(env, p->self, &self) != napi_ok)
    fn = self = NULL;
  shut_all(p);
  const char *name = err != 0 ? uv_err_name(uv_translate_sys_error(err)) : "";
  if (fn != NULL && self != NULL && napi_create_int32(env, code, &argv[0]) == napi_ok &&
      napi_create_int32(env, err, &argv[1]) == napi_ok &&
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &argv[2]) == napi_ok) {
    p->in_callback = 1;
    napi_status st = napi_make_callback(env, p->async_ctx, self, fn, 3, argv, &result);
    p->in_callback = 0;
    if (st != napi_ok) {
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending) {
        napi_value e;
        if (napi_get_and_clear_last_exception(env, &e) == napi_ok) napi_fatal_exception(env, e);
      }
    }
  }
  drop_js(p);
  napi_close_handle_scope(env, scope);
}

/* The copy fallback of one round: recv up to COPY_MAX bytes from src into a new `pend` buffer (the
 * pending-bytes path writes it out, and nothing more is read until it is). Returns -1 when bytes were
 * read or EOF seen (the caller carries on), 0 when src has nothing now, or an errno. */
static int copy_in(pump *p, dir_t *d) {
  uint8_t *buf = malloc(COPY_MAX);
  if (buf == NULL) return ENOMEM;
  for (;;) {
    ssize_t n = recv(d->src, buf, COPY_MAX, MSG_DONTWAIT);
    p->stats[S_SPLICES] += 1;
    if (n > 0) {
      d->pend = buf;
      d->pend_len = (size_t)n;
      d->pend_off = 0;
      p->stats[d->stat_read] += (double)n;
      p->pool->copies += 1;
      return -1;
    }
    int e = n == 0 ? 0 : errno;
    if (n < 0 && e == EINTR) continue;
    free(buf);
    if (n == 0) {
      d->eof = 1;
      return -1;
    }
    return e == EAGAIN || e == EWOULDBLOCK ? 0 : e;
  }
}

/* Moves what it can in one direction. Returns 0, or an errno that ends the connection. */
static int run_dir(pump *p, dir_t *d) {
  for (int round = 0; round < ROUNDS_PER_EVENT; round++) {
    if (d->pend != NULL) {
      if (d->pend_off < d->pend_len) {
        ssize_t n = send(d->dst, d->pend + d->pend_off, d->pend_len - d->pend_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        p->stats[S_SPLICES] += 1;
        if (n > 0) {
          d->pend_off += (size_t)n;
          p->stats[d->stat_written] += (double)n;
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return n < 0 ? errno : EIO;
      }
      free(d->pend);
      d->pend = NULL;
    }
    if (d->in_pipe > 0) {
      ssize_t n = splice(d->pipe[0], NULL, d->dst, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      p->stats[S_SPLICES] += 1;
      if (n > 0) {
        d->in_pipe -= (size_t)n;
        p->stats[d->stat_written] += (double)n;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0; /* dst full: wait until writable */
      return n < 0 ? errno : EIO;
    }
    /* Nothing in flight. */
    if (d->pipe[0] >= 0 && (d->eof || d->paused)) pool_put(p->pool, d->pipe, 1);
    if (d->eof) {
      if (!d->shut) {
        d->shut = 1;
        if (shutdown(d->dst, SHUT_WR) != 0 && errno != ENOTCONN) return errno;
      }
      return 0;
    }
    if (d->paused) return 0;
    if (d->pipe[0] < 0 && pool_get(p->pool, d->pipe) != 0) {
      int e = errno;
      if (e != EMFILE && e != ENFILE && e != ENOMEM) return e;
      /* No pipe to be had (the limit, or out of descriptors): this round copies through memory. */
      int r = copy_in(p, d);
      if (r < 0) continue; /* read something (or EOF): send it / pass the EOF on */
      return r;
    }
    ssize_t n = splice(d->src, NULL, d->pipe[1], NULL, SPLICE_MAX, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    p->stats[S_SPLICES] += 1;
    if (n > 0) {
      d->in_pipe = (size_t)n;
      p->stats[d->stat_read] += (double)n;
      continue;
    }
    if (n == 0) {
      d->eof = 1;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      /* splice stops at TCP urgent data (MSG_OOB) and says EAGAIN while the socket stays readable: the
         poll would bring us straight back, forever, the bytes after the mark never moved. At the mark one
         round reads through memory: recv steps over the urgent byte as read() does (the Node streams path
         drops it the same way). */
      int at_mark = 0;
      if (ioctl(d->src, SIOCATMARK, &at_mark) == 0 && at_mark) {
        int r = copy_in(p, d);
        if (r < 0) continue; /* read something (or EOF): send it / pass the EOF on */
        if (r != 0) return r;
      }
      pool_put(p->pool, d->pipe, 1); /* idle: the pipe goes back to the pool */
      return 0;
    }
    return errno;
  }
  return 0; /* budget used up: the (level-triggered) poll brings us back */
}

static int has_output(const dir_t *d) { return (d->pend != NULL && d->pend_off < d->pend_len) || d->in_pipe > 0; }
static int wants_read(const dir_t *d) { return !d->eof && !d->paused && !has_output(d); }

static void on_event(uv_poll_t *h, int status, int events);

/* Starts each poll with the events the directions need now (only when that changed). */
static int update_polls(pump *p) {
  int want[2];
  dir_t *in = &p->d[0], *out = &p->d[1];
  if (p->finishing) {
    /* Client only: flush what the upstream had sent, then read (and discard) until the client's EOF. */
    want[0] = has_output(out) ? UV_WRITABLE : (out->shut ? UV_READABLE : 0);
    want[1] = 0;
  } else {
    want[0] = (wants_read(in) ? UV_READABLE : 0) | (has_output(out) ? UV_WRITABLE : 0);
    want[1] = (wants_read(out) ? UV_READABLE : 0) | (has_output(in) ? UV_WRITABLE : 0);
  }
  for (int i = 0; i < 2; i++) {
    if (p->fd[i] < 0 || want[i] == p->mask[i]) continue;
    int r = want[i] == 0 ? uv_poll_stop(&p->poll[i]) : uv_poll_start(&p->poll[i], want[i], on_event);
    if (r != 0) return -r;
    p->mask[i] = want[i];
  }
  return 0;
}

/* After finish(): reads and discards what the client still sends; returns 1 at its EOF, or -errno. */
static int drain_client(pump *p) {
  char scratch[16384];
  for (int round = 0; round < ROUNDS_PER_EVENT; round++) {
    ssize_t n = read(p->fd[0], scratch, sizeof scratch);
    p->stats[S_SPLICES] += 1;
    if (n > 0) {
      p->stats[S_IN_DISCARDED] += (double)n;
      continue;
    }
    if (n == 0) return 1;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -errno;
  }
  return 0;
}

/* Runs both directions (or the finishing steps) and repolls; ends the connection when it is over. */
static void step(pump *p) {
  int err = 0;
  if (p->finishing) {
    dir_t *out = &p->d[1];
    err = run_dir(p, out);
    if (err == 0 && out->shut) {
      int r = drain_client(p);
      if (r < 0) err = -r;
      else if (r == 1) {
        end_with(p, END_FINISHED, 0);
        return;
      }
    }
  } else {
    err = run_dir(p, &p->d[0]);
    if (err == 0) err = run_dir(p, &p->d[1]);
    if (err == 0 && p->d[0].shut && p->d[1].shut) {
      end_with(p, END_EOF, 0);
      return;
    }
  }
  if (err == 0) err = update_polls(p);
  if (err != 0) end_with(p, END_ERROR, err);
}

static void on_event(uv_poll_t *h, int status, int events) {
  pump *p = (pump *)h->data;
  if (p->closed) return;
  p->stats[S_EVENTS] += 1;
  if (status < 0) {
    /* POLLERR (libuv reports UV_EBADF and stops the handle): the socket's own error says what. */
    int fd = h == &p->poll[0] ? p->fd[0] : p->fd[1];
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr == 0) soerr = -status;
    end_with(p, END_ERROR, soerr);
    return;
  }
  if (p->finishing) {
    step(p);
    return;
  }
  /* The client's fd: readable feeds IN, writable drains OUT; the upstream's the other way round. */
  int side = h == &p->poll[0] ? 0 : 1, err = 0;
  if (events & (UV_READABLE | UV_DISCONNECT)) err = run_dir(p, &p->d[side]);
  if (err == 0 && (events & UV_WRITABLE)) err = run_dir(p, &p->d[1 - side]);
  if (err == 0 && p->d[0].shut && p->d[1].shut) {
    end_with(p, END_EOF, 0);
    return;
  }
  if (err == 0) err = update_polls(p);
  if (err != 0) end_with(p, END_ERROR, err);
}

/* ---------- the class ---------- */

/* Tags TcpPump objects: an object another addon wrapped (a UdpSocket) is never taken for one. */
static const napi_type_tag PUMP_TAG = {0x2d8b5e17c9a04f33ULL, 0x96f1b0e4d7c25a68ULL};

static pump *unwrap_this(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *data = NULL;
  bool tagged = false;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_check_object_type_tag(env, self, &PUMP_TAG, &tagged) != napi_ok || !tagged || napi_unwrap(env, self, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_THIS", "anchor_tcp: `this` is not a TcpPump");
    return NULL;
  }
  return (pump *)data;
}

static void finalize_pump(napi_env env, void *data, void *hint) {
  (void)hint;
  pump *p = (pump *)data;
  /* Reached only when the object is unreachable: after the pump closed (or its constructor failed). */
  if (p->self != NULL) {
    napi_delete_reference(env, p->self);
    p->self = NULL;
  }
  shut_all(p);
  drop_js(p);
  p->finalized = 1;
  if (p->poll_open == 0) free_pump(p);
}

static pipe_pool *get_pool(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) == napi_ok && data != NULL) return (pipe_pool *)data;
  pipe_pool *pp = calloc(1, sizeof *pp);
  if (pp == NULL) return NULL;
  pp->max_open = -1;
  if (napi_set_instance_data(env, pp, pool_free, NULL) != napi_ok) {
    free(pp);
    return NULL;
  }
  return pp;
}

/* Reads a non-negative integer argument; -1 after throwing. */
static int64_t arg_fd(napi_env env, napi_value v, const char *what) {
  napi_valuetype t;
  double d;
  char msg[160];
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, &d) != napi_ok ||
      !(d >= 0 && d <= INT32_MAX) || d != (double)(int32_t)d) {
    snprintf(msg, sizeof msg, "anchor_tcp: new TcpPump(clientFd, upstreamFd, …): %s must be a file descriptor (an integer ≥ 0)", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return -1;
  }
  return (int64_t)d;
}

/* Copies an optional Uint8Array argument (null/undefined: none). Returns 0, or -1 after throwing. */
static int arg_bytes(napi_env env, napi_value v, uint8_t **out, size_t *len) {
  napi_valuetype t;
  *out = NULL;
  *len = 0;
  if (napi_typeof(env, v, &t) != napi_ok) return -1;
  if (t == napi_undefined || t == napi_null) return 0;
  bool is = false;
  napi_typedarray_type tt;
  size_t n = 0, off = 0;
  void *data = NULL;
  napi_value ab;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &tt, &n, &data, &ab, &off) != napi_ok || tt != napi_uint8_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "anchor_tcp: pending bytes must be a Uint8Array, null or undefined");
    return -1;
  }
  if (n == 0) return 0;
  *out = malloc(n);
  if (*out == NULL) {
    napi_throw_error(env, "ENOMEM", "anchor_tcp: out of memory");
    return -1;
  }
  memcpy(*out, data, n);
  *len = n;
  return 0;
}

static int dup_fd(int fd) { return fcntl(fd, F_DUPFD_CLOEXEC, 3); }

/* new TcpPump(clientFd, upstreamFd, pendingIn, pendingOut, onEnd)
 *   Duplicates both descriptors (the caller closes its own afterwards: the connections stay open) and
 *   starts moving bytes at once. pendingIn is written to the upstream and pendingOut to the client
 *   before anything else (bytes JS had read and not forwarded yet). onEnd(code, errno, errnoName) is
 *   called once, with `this` = the pump, when the pump ended the connection by itself. */
static napi_value pump_new(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], self, target;
  if (napi_get_new_target(env, info, &target) != napi_ok || target == NULL) {
    napi_throw_type_error(env, "ERR_CONSTRUCT_CALL_REQUIRED", "anchor_tcp: TcpPump must be called with new");
    return NULL;
  }
  if (napi_get_cb_info(env, info, &argc, argv, &self, NULL) != napi_ok) return NULL;
  if (argc < 5) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "anchor_tcp: new TcpPump(clientFd, upstreamFd, pendingIn, pendingOut, onEnd)");
    return NULL;
  }
  int64_t cfd = arg_fd(env, argv[0], "clientFd");
  if (cfd < 0) return NULL;
  int64_t ufd = arg_fd(env, argv[1], "upstreamFd");
  if (ufd < 0) return NULL;
  if (cfd == ufd) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "anchor_tcp: clientFd and upstreamFd must differ");
    return NULL;
  }
  napi_valuetype ft;
  if (napi_typeof(env, argv[4], &ft) != napi_ok || ft != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "anchor_tcp: onEnd must be a function");
    return NULL;
  }
  pipe_pool *pool = get_pool(env);
  if (pool == NULL) {
    napi_throw_error(env, "ENOMEM", "anchor_tcp: no pipe pool");
    return NULL;
  }
  /* Both must be stream sockets (a wrong fd here would be spliced into). */
  for (int i = 0; i < 2; i++) {
    int type = 0;
    socklen_t len = sizeof type;
    int fd = (int)(i == 0 ? cfd : ufd);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
      throw_errno(env, errno, "getsockopt(SO_TYPE)");
      return NULL;
    }
    if (type != SOCK_STREAM) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "anchor_tcp: both descriptors must be stream sockets");
      return NULL;
    }
  }
  pump *p = calloc(1, sizeof *p);
  if (p == NULL) {
    napi_throw_error(env, "ENOMEM", "anchor_tcp: out of memory");
    return NULL;
  }
  p->env = env;
  p->pool = pool;
  p->fd[0] = p->fd[1] = -1;
  for (int i = 0; i < 2; i++) p->d[i].pipe[0] = p->d[i].pipe[1] = -1;
  p->d[0].stat_read = S_IN_READ;
  p->d[0].stat_written = S_IN_WRITTEN;
  p->d[1].stat_read = S_OUT_READ;
  p->d[1].stat_written = S_OUT_WRITTEN;
  if (arg_bytes(env, argv[2], &p->d[0].pend, &p->d[0].pend_len) != 0 ||
      arg_bytes(env, argv[3], &p->d[1].pend, &p->d[1].pend_len) != 0) {
    free_pump(p);
    return NULL;
  }
  if (napi_wrap(env, self, p, finalize_pump, NULL, NULL) != napi_ok) {
    free_pump(p);
    napi_throw_error(env, NULL, "anchor_tcp: napi_wrap failed");
    return NULL;
  }
  /* From here on the object owns `p`; a failure marks it closed and the finalizer frees it. */
  if (napi_type_tag_object(env, self, &PUMP_TAG) != napi_ok) {
    p->closed = 1;
    napi_throw_error(env, NULL, "anchor_tcp: napi_type_tag_object failed");
    return NULL;
  }
  void *sdata = NULL;
  napi_value ab, ta;
  /* Read-only and not configurable: the pump writes into this buffer while it is open. */
  napi_property_descriptor prop = {"stats", NULL, NULL, NULL, NULL, NULL, napi_enumerable, NULL};
  if (napi_create_arraybuffer(env, S_COUNT * sizeof(double), &sdata, &ab) != napi_ok ||
      napi_create_typedarray(env, napi_float64_array, S_COUNT, ab, 0, &ta) != napi_ok ||
      (prop.value = ta, napi_define_properties(env, self, 1, &prop)) != napi_ok) {
    p->closed = 1;
    napi_throw_error(env, NULL, "anchor_tcp: allocating stats failed");
    return NULL;
  }
  p->stats = (double *)sdata;
  memset(p->stats, 0, S_COUNT * sizeof(double));
  p->fd[0] = dup_fd((int)cfd);
  p->fd[1] = p->fd[0] < 0 ? -1 : dup_fd((int)ufd);
  if (p->fd[0] < 0 || p->fd[1] < 0) {
    int e = errno;
    if (p->fd[0] >= 0) close(p->fd[0]);
    p->fd[0] = -1;
    p->closed = 1;
    throw_errno(env, e, "dup");
    return NULL;
  }
  p->d[0].src = p->fd[0];
  p->d[0].dst = p->fd[1];
  p->d[1].src = p->fd[1];
  p->d[1].dst = p->fd[0];
  uv_loop_t *loop = NULL;
  int uerr = 0;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) uerr = UV_EINVAL;
  if (uerr == 0) uerr = uv_poll_init(loop, &p->poll[0], p->fd[0]);
  if (uerr == 0) {
    uerr = uv_poll_init(loop, &p->poll[1], p->fd[1]);
    if (uerr != 0) {
      p->poll_open = 1;
      p->poll[0].data = p;
      p->poll_closing[0] = p->poll_closing[1] = 1;
      uv_close((uv_handle_t *)&p->poll[0], on_poll_closed);
    }
  }
  if (uerr != 0) {
    close(p->fd[0]);
    close(p->fd[1]);
    p->fd[0] = p->fd[1] = -1;
    p->closed = 1;
    p->poll_closing[0] = p->poll_closing[1] = 1;
    throw_errno(env, -uerr, "uv_poll_init");
    return NULL;
  }
  p->poll[0].data = p->poll[1].data = p;
  p->poll_open = 2;
  napi_value name;
  if (napi_create_reference(env, argv[4], 1, &p->on_end) != napi_ok ||
      napi_create_reference(env, self, 1, &p->self) != napi_ok ||
      napi_create_string_utf8(env, "anchor.TcpPump", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, self, name, &p->async_ctx) != napi_ok) {
    shut_all(p);
    drop_js(p);
    napi_throw_error(env, NULL, "anchor_tcp: creating references failed");
    return NULL;
  }
  if (napi_add_env_cleanup_hook(env, env_cleanup, p) == napi_ok) p->hooked = 1;
  /* Nothing is read or written here: the first step runs from the loop (polls for what is needed). */
  int r = update_polls(p);
  if (r != 0) {
    shut_all(p);
    drop_js(p);
    throw_errno(env, r, "uv_poll_start");
    return NULL;
  }
  return self;
}

/* pause(mask = IN): stops reading the client (IN) and/or the upstream (OUT); bytes already read are
 * still written. resume(mask = IN) reads again. */
static napi_value set_paused(napi_env env, napi_callback_info info, int on) {
  size_t argc = 1;
  napi_value argv[1];
  pump *p = unwrap_this(env, info, &argc, argv);
  if (p == NULL) return NULL;
  int32_t mask = DIR_IN;
  if (argc >= 1) {
    napi_valuetype t;
    napi_typeof(env, argv[0], &t);
    if (t != napi_undefined && (t != napi_number || napi_get_value_int32(env, argv[0], &mask) != napi_ok || mask < 1 || mask > 3)) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "anchor_tcp: pause/resume(mask): mask must be 1 (IN), 2 (OUT) or 3");
      return NULL;
    }
  }
  if (p->closed) return NULL;
  if (mask & DIR_IN) p->d[0].paused = on;
  if (mask & DIR_OUT) p->d[1].paused = on;
  /* Resuming may find bytes waiting in the socket: level-triggered polls pick them up. */
  int r = update_polls(p);
  if (r != 0) end_with(p, END_ERROR, r);
  return NULL;
}
static napi_value pump_pause(napi_env env, napi_callback_info info) { return set_paused(env, info, 1); }
static napi_value pump_resume(napi_env env, napi_callback_info info) { return set_paused(env, info, 0); }

/* finish(): ends the connection gracefully from the director's side: the upstream is closed at once;
 * what it had sent is written to the client, then the client gets a FIN; what the client sends after
 * that is read and discarded until its EOF, then onEnd(FINISHED). Idempotent. */
static napi_value pump_finish(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pump *p = unwrap_this(env, info, &argc, NULL);
  if (p == NULL || p->closed || p->finishing) return NULL;
  p->finishing = 1;
  close_side(p, 1);
  dir_t *in = &p->d[0], *out = &p->d[1];
  if (in->pipe[0] >= 0) pool_put(p->pool, in->pipe, in->in_pipe == 0);
  in->in_pipe = 0;
  in->eof = in->shut = 1;
  free(in->pend);
  in->pend = NULL;
  out->eof = 1; /* nothing more comes from the upstream */
  out->paused = 0;
  /* The rest happens from the loop (the client may not be writable now). */
  int r = update_polls(p);
  if (r == 0 && p->mask[0] == 0) {
    /* Nothing to write and not shut yet: run one step now to send the FIN and start draining. */
    step(p);
    return NULL;
  }
  if (r != 0) end_with(p, END_ERROR, r);
  return NULL;
}

/* close(): closes both connections now (no FIN is waited for; unread bytes make the kernel send a
 * reset, as for any close). Idempotent; onEnd is not called. */
static napi_value pump_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pump *p = unwrap_this(env, info, &argc, NULL);
  if (p == NULL) return NULL;
  shut_all(p);
  drop_js(p);
  return NULL;
}

static napi_value pump_closed(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pump *p = unwrap_this(env, info, &argc, NULL);
  if (p == NULL) return NULL;
  napi_value out;
  napi_get_boolean(env, p->closed != 0, &out);
  return out;
}

/* pipePool(): { pooled, open, copies } — empty pipes kept for reuse, all pipes open (pooled + in use),
 * and the reads made by copying because no pipe could be had. */
static napi_value pipe_pool_info(napi_env env, napi_callback_info info) {
  (void)info;
  pipe_pool *pool = get_pool(env);
  napi_value out, a, b, c;
  napi_create_object(env, &out);
  napi_create_int32(env, pool ? pool->count : 0, &a);
  napi_create_double(env, pool ? pool->open : 0, &b);
  napi_create_double(env, pool ? pool->copies : 0, &c);
  napi_set_named_property(env, out, "pooled", a);
  napi_set_named_property(env, out, "open", b);
  napi_set_named_property(env, out, "copies", c);
  return out;
}

/* trimPipePool(): closes the pooled (empty) pipes; returns how many. */
static napi_value pipe_pool_trim(napi_env env, napi_callback_info info) {
  (void)info;
  pipe_pool *pool = get_pool(env);
  int n = 0;
  if (pool != NULL) {
    n = pool->count;
    for (int i = 0; i < pool->count; i++) {
      close(pool->fds[i][0]);
      close(pool->fds[i][1]);
    }
    pool->open -= pool->count;
    pool->count = 0;
  }
  napi_value out;
  napi_create_int32(env, n, &out);
  return out;
}

/* The one integer argument (>= min) of a pool setter, and the pool; NULL after throwing `msg`. */
static pipe_pool *pool_setter(napi_env env, napi_callback_info info, int32_t min, const char *msg, int32_t *v) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], v) != napi_ok || *v < min) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return NULL;
  }
  return get_pool(env);
}

/* setPipeSize(bytes): the capacity asked for new pipes (F_SETPIPE_SZ, best effort); 0 = the default. */
static napi_value pipe_size_set(napi_env env, napi_callback_info info) {
  int32_t v = 0;
  pipe_pool *pool = pool_setter(env, info, 0, "anchor_tcp: setPipeSize(bytes): bytes must be an integer ≥ 0", &v);
  if (pool != NULL) pool->pipe_size = v;
  return NULL;
}

/* setMaxPipes(n): pipes open at most (pooled + in use), -1 = no limit (the default), 0 = none. Past it a
 * direction copies its bytes through memory (recv/send) instead of splicing, as it does when the system
 * has no descriptor left. Pipes already open above a new limit are closed as they come back. */
static napi_value max_pipes_set(napi_env env, napi_callback_info info) {
  int32_t v = 0;
  pipe_pool *pool = pool_setter(env, info, -1, "anchor_tcp: setMaxPipes(n): n must be an integer ≥ -1 (-1: no limit)", &v);
  if (pool != NULL) pool->max_open = v;
  return NULL;
}

#define CHECK(call)                                                 \
  do {                                                              \
    if ((call) != napi_ok) {                                        \
      napi_throw_error(env, NULL, "anchor_tcp: init: " #call);      \
      return NULL;                                                  \
    }                                                               \
  } while (0)

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"pause", NULL, pump_pause, NULL, NULL, NULL, napi_default_method, NULL},
      {"resume", NULL, pump_resume, NULL, NULL, NULL, napi_default_method, NULL},
      {"finish", NULL, pump_finish, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, pump_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"closed", NULL, NULL, pump_closed, NULL, NULL, napi_enumerable | napi_configurable, NULL},
  };
  napi_value cls, stats, v, fn;
  CHECK(napi_define_class(env, "TcpPump", NAPI_AUTO_LENGTH, pump_new, NULL, sizeof methods / sizeof methods[0], methods, &cls));
  CHECK(napi_set_named_property(env, exports, "TcpPump", cls));
  CHECK(napi_create_object(env, &stats));
  for (int i = 0; i < S_COUNT; i++) {
    CHECK(napi_create_int32(env, i, &v));
    CHECK(napi_set_named_property(env, stats, STAT_NAMES[i], v));
  }
  CHECK(napi_set_named_property(env, exports, "STATS", stats));
  const struct { const char *name; int32_t value; } consts[] = {
      {"END_EOF", END_EOF}, {"END_ERROR", END_ERROR}, {"END_FINISHED", END_FINISHED},
      {"DIR_IN", DIR_IN}, {"DIR_OUT", DIR_OUT},
  };
  for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
    CHECK(napi_create_int32(env, consts[i].value, &v));
    CHECK(napi_set_named_property(env, exports, consts[i].name, v));
  }
  CHECK(napi_create_function(env, "pipePool", NAPI_AUTO_LENGTH, pipe_pool_info, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "pipePool", fn));
  CHECK(napi_create_function(env, "trimPipePool", NAPI_AUTO_LENGTH, pipe_pool_trim, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "trimPipePool", fn));
  CHECK(napi_create_function(env, "setPipeSize", NAPI_AUTO_LENGTH, pipe_size_set, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "setPipeSize", fn));
  CHECK(napi_create_function(env, "setMaxPipes", NAPI_AUTO_LENGTH, max_pipes_set, NULL, &fn));
  CHECK(napi_set_named_property(env, exports, "setMaxPipes", fn));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
