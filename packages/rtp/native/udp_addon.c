/*
 * Many receivers and one datagram to many receivers, in few system calls.
 *
 * One datagram to many IPv4 receivers: sendmmsg(2) on a socket libuv already
 * owns (found by its fd), MSG_DONTWAIT. Node's dgram.send costs a request object, a libuv
 * send and a completion per datagram; a relay copying each feed packet to hundreds of children
 * or plain-RTP viewers pays that hundreds of times per packet.
 *
 * sendMany(fd, packet, length, ipv4s, ports, count) → datagrams sent (0..count), or -errno when
 * the first one failed. Fewer than count: the socket buffer is full (EAGAIN) or a send failed; the
 * caller sends the rest with dgram.send, which queues. UDP datagrams are atomic, so these may
 * interleave with libuv's own sends on the socket.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <node_api.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 256

/* A typed array of `want` type: its data and element count. */
static int typed_arg(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *len) {
  bool is_typed = false;
  napi_is_typedarray(env, v, &is_typed);
  if (!is_typed) return 0;
  napi_typedarray_type type;
  size_t length, offset;
  void *base;
  napi_value buffer;
  if (napi_get_typedarray_info(env, v, &type, &length, &base, &buffer, &offset) != napi_ok || type != want) return 0;
  *data = base;
  *len = length;
  return 1;
}

static napi_value send_many(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  uint32_t length, count;
  void *packet, *ipv4s_v, *ports_v;
  size_t packet_len, n_ipv4s, n_ports;
  if (argc < 6 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || !typed_arg(env, argv[1], napi_uint8_array, &packet, &packet_len) ||
      napi_get_value_uint32(env, argv[2], &length) != napi_ok || !typed_arg(env, argv[3], napi_uint32_array, &ipv4s_v, &n_ipv4s) ||
      !typed_arg(env, argv[4], napi_uint32_array, &ports_v, &n_ports) || napi_get_value_uint32(env, argv[5], &count) != napi_ok) {
    napi_throw_type_error(env, NULL, "sendMany(fd, packet: Uint8Array, length, ipv4s: Uint32Array, ports: Uint32Array, count)");
    return NULL;
  }
  if (length > packet_len || count > n_ipv4s || count > n_ports) {
    napi_throw_range_error(env, NULL, "length beyond the packet, or count beyond the address arrays");
    return NULL;
  }
  const uint32_t *ipv4s = ipv4s_v, *ports = ports_v;
  struct mmsghdr msgs[BATCH];
  struct iovec iov = {.iov_base = packet, .iov_len = length};
  struct sockaddr_in to[BATCH];
  uint32_t sent = 0;
  int err = 0;
  while (sent < count) {
    uint32_t n = count - sent < BATCH ? count - sent : BATCH;
    for (uint32_t i = 0; i < n; i++) {
      memset(&to[i], 0, sizeof(to[i]));
      to[i].sin_family = AF_INET;
      to[i].sin_port = htons((uint16_t)ports[sent + i]);
      to[i].sin_addr.s_addr = htonl(ipv4s[sent + i]);
      memset(&msgs[i], 0, sizeof(msgs[i]));
      msgs[i].msg_hdr.msg_name = &to[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(to[i]);
      msgs[i].msg_hdr.msg_iov = &iov;
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(fd, msgs, n, MSG_DONTWAIT);
    if (r < 0) {
      err = errno;
      break;
    }
    sent += (uint32_t)r;
    if ((uint32_t)r < n) break;
  }
  napi_create_int32(env, sent == 0 && err != 0 ? -err : (int32_t)sent, &result);
  return result;
}

/*
 * Many UDP receivers in one process, read in batches (load generators and probes: thousands of
 * simulated viewers). Node gives every datagram of every socket its own recvmsg, Buffer, address
 * object and callback; a process holding 2,500 viewer sockets spent about 10 µs of a core per
 * datagram that way (bench:tree at 10,000 viewers: the viewer processes took a whole core).
 * Here the sockets belong to the addon, not libuv: one epoll set over all of them, polled without
 * blocking, each ready socket read with recvmmsg(2). Every datagram carries its kernel arrival
 * time (SO_TIMESTAMPNS), so when the process gets to read it does not change what is measured.
 *
 * receiversOpen(ipv4, count, bufferBytes, fds: Int32Array, ports: Uint32Array) → epoll fd, or
 *   -errno (nothing left open). Binds `count` sockets to ipv4:0, writes their fds and ports.
 * receiversRead(epfd, fds: Int32Array, out: Float64Array) → records written, RECORD doubles each:
 *   [index, length, RTP sequence number, RTP timestamp, arrival ms on CLOCK_MONOTONIC]; sequence
 *   and timestamp are -1 for a datagram shorter than an RTP header. Stops when `out` is full
 *   (what is left stays queued for the next call).
 * receiversClose(epfd, fds: Int32Array) closes all of them.
 */
#define RECORD 5
#define RECV_BATCH 16
#define HEAD_BYTES 16

static napi_value receivers_open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t ipv4, count, buffer_bytes;
  void *fds_v, *ports_v;
  size_t n_fds, n_ports;
  if (argc < 5 || napi_get_value_uint32(env, argv[0], &ipv4) != napi_ok || napi_get_value_uint32(env, argv[1], &count) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &buffer_bytes) != napi_ok || !typed_arg(env, argv[3], napi_int32_array, &fds_v, &n_fds) ||
      !typed_arg(env, argv[4], napi_uint32_array, &ports_v, &n_ports)) {
    napi_throw_type_error(env, NULL, "receiversOpen(ipv4, count, bufferBytes, fds: Int32Array, ports: Uint32Array)");
    return NULL;
  }
  if (count > n_fds || count > n_ports) {
    napi_throw_range_error(env, NULL, "count beyond the fd or port arrays");
    return NULL;
  }
  int32_t *fds = fds_v;
  uint32_t *ports = ports_v;
  int err = 0;
  uint32_t opened = 0;
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) err = errno;
  for (; err == 0 && opened < count; opened++) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = errno;
      break;
    }
    fds[opened] = fd;
    int on = 1;
    int buf = (int)buffer_bytes;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(ipv4);
    socklen_t len = sizeof(addr);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = opened};
    if ((buf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf)) < 0) || setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) < 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || getsockname(fd, (struct sockaddr *)&addr, &len) < 0 ||
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
      err = errno;
      opened++; /* so that this fd is closed below */
      break;
    }
    ports[opened] = ntohs(addr.sin_port);
  }
  if (err != 0) {
    for (uint32_t i = 0; i < opened; i++) close(fds[i]);
    if (epfd >= 0) close(epfd);
    napi_create_int32(env, -err, &result);
    return result;
  }
  napi_create_int32(env, epfd, &result);
  return result;
}

static double clock_ms(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static napi_value receivers_read(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t epfd;
  void *fds_v, *out_v;
  size_t n_fds, n_out;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &epfd) != napi_ok || !typed_arg(env, argv[1], napi_int32_array, &fds_v, &n_fds) ||
      !typed_arg(env, argv[2], napi_float64_array, &out_v, &n_out)) {
    napi_throw_type_error(env, NULL, "receiversRead(epfd, fds: Int32Array, out: Float64Array)");
    return NULL;
  }
  const int32_t *fds = fds_v;
  double *out = out_v;
  size_t capacity = n_out / RECORD, written = 0;
  /* Kernel timestamps are CLOCK_REALTIME; the caller's clocks are monotonic. */
  double real_to_mono = clock_ms(CLOCK_MONOTONIC) - clock_ms(CLOCK_REALTIME);
  struct epoll_event events[256];
  struct mmsghdr msgs[RECV_BATCH];
  struct iovec iovs[RECV_BATCH];
  unsigned char heads[RECV_BATCH][HEAD_BYTES];
  /* Room for one SCM_TIMESTAMPNS per message, aligned for cmsghdr. */
  union {
    struct cmsghdr align;
    unsigned char bytes[CMSG_SPACE(sizeof(struct timespec))];
  } controls[RECV_BATCH];
  /* Level-triggered: a socket left unread (out is full) is reported again next time. Bounded rounds
     so that a socket in a persistent error state cannot hold the caller here. */
  for (int round = 0; round < 64 && written < capacity; round++) {
    int ready = epoll_wait(epfd, events, 256, 0);
    if (ready <= 0) break;
    for (int e = 0; e < ready && written < capacity; e++) {
      uint32_t index = events[e].data.u32;
      if (index >= n_fds) continue;
      int fd = fds[index];
      for (;;) {
        unsigned want = capacity - written < RECV_BATCH ? (unsigned)(capacity - written) : RECV_BATCH;
        for (unsigned i = 0; i < want; i++) {
          iovs[i].iov_base = heads[i];
          iovs[i].iov_len = HEAD_BYTES;
          memset(&msgs[i], 0, sizeof(msgs[i]));
          msgs[i].msg_hdr.msg_iov = &iovs[i];
          msgs[i].msg_hdr.msg_iovlen = 1;
          msgs[i].msg_hdr.msg_control = controls[i].bytes;
          msgs[i].msg_hdr.msg_controllen = sizeof(controls[i].bytes);
        }
        /* MSG_TRUNC: the datagram's real length, though only its head is copied. */
        int got = recvmmsg(fd, msgs, want, MSG_DONTWAIT | MSG_TRUNC, NULL);
        if (got <= 0) break;
        for (int i = 0; i < got; i++) {
          double at = -1;
          for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c != NULL; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
              struct timespec ts;
              memcpy(&ts, CMSG_DATA(c), sizeof(ts));
              at = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6 + real_to_mono;
            }
          }
          if (at < 0) at = clock_ms(CLOCK_MONOTONIC);
          unsigned len = msgs[i].msg_len;
          const unsigned char *h = heads[i];
          double *r = out + written * RECORD;
          r[0] = index;
          r[1] = len;
          r[2] = len >= 12 ? (double)((h[2] << 8) | h[3]) : -1;
          r[3] = len >= 12 ? (double)(((uint32_t)h[4] << 24) | ((uint32_t)h[5] << 16) | ((uint32_t)h[6] << 8) | h[7]) : -1;
          r[4] = at;
          written++;
        }
        if ((unsigned)got < want || written >= capacity) break;
      }
    }
  }
  napi_create_uint32(env, (uint32_t)written, &result);
  return result;
}

static napi_value receivers_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t epfd;
  void *fds_v;
  size_t n_fds;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &epfd) != napi_ok || !typed_arg(env, argv[1], napi_int32_array, &fds_v, &n_fds)) {
    napi_throw_type_error(env, NULL, "receiversClose(epfd, fds: Int32Array)");
    return NULL;
  }
  const int32_t *fds = fds_v;
  for (size_t i = 0; i < n_fds; i++)
    if (fds[i] >= 0) close(fds[i]);
  if (epfd >= 0) close(epfd);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {{"sendMany", send_many}, {"receiversOpen", receivers_open}, {"receiversRead", receivers_read}, {"receiversClose", receivers_close}};
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    napi_value fn;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &fn);
    napi_set_named_property(env, exports, fns[i].name, fn);
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
