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
#include <pthread.h>
#include <stdlib.h>
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

/*
 * A changing set of UDP sockets read with whole payloads and written in batches: a mixer's
 * plain-RTP participants, each on a port of its own (symmetric RTP), joining and leaving one by
 * one. Node gives every datagram its own recvmsg, Buffer, address object and callback, and every
 * outgoing mix its own send request; here one call reads what every socket holds (epoll +
 * recvmmsg, kernel arrival times) and one call sends a tick's mixes.
 *
 * setOpen() → epoll fd, or -errno.
 * setAdd(epfd, ipv4, port, bufferBytes, slot, out: Int32Array[2]) → 0 (out = [fd, bound port]) or
 *   -errno (nothing left open). `slot` comes back with each datagram read from the socket.
 * setRemove(epfd, fd) takes the socket out of the set and closes it.
 * setRead(epfd, out: Float64Array, data: Uint8Array, slotBytes) → datagrams read, up to
 *   min(out.length / SET_RECORD, data.length / slotBytes): datagram k is copied to
 *   data[k * slotBytes, …) and described by out[k * SET_RECORD, …) = [slot, length, source IPv4,
 *   source port, arrival ms on CLOCK_MONOTONIC]. The length is the datagram's real one (MSG_TRUNC):
 *   longer than slotBytes means truncated, for the caller to drop.
 * sendEach(count, fds: Int32Array, ipv4s: Uint32Array, ports: Uint32Array, heads: Uint8Array,
 *   headStride, headLengths: Uint32Array, tail: Uint8Array, tailLength, withTail: Uint8Array,
 *   results: Int32Array) → datagrams sent. Datagram i is heads[i * headStride, + headLengths[i])
 *   followed, when withTail[i], by tail[0, tailLength) (the one shared payload, never copied), sent
 *   from socket fds[i] to ipv4s[i]:ports[i]. Runs of the same socket go in one sendmmsg(2); one
 *   datagram per socket (symmetric RTP: every participant has its own) is one sendmsg each, all in
 *   this one call. results[i] = 0 or the errno of that datagram; a failed one does not stop the rest.
 */
#define SET_RECORD 5
/* Datagrams per recvmmsg(2) of a set: a shared port holds hundreds per tick. */
#define SET_RECV_BATCH 64

static napi_value set_open(napi_env env, napi_callback_info info) {
  napi_value result;
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  napi_create_int32(env, epfd < 0 ? -errno : epfd, &result);
  return result;
}

static napi_value set_add(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t epfd;
  uint32_t ipv4, port, buffer_bytes, slot;
  void *out_v;
  size_t n_out;
  if (argc < 6 || napi_get_value_int32(env, argv[0], &epfd) != napi_ok || napi_get_value_uint32(env, argv[1], &ipv4) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &port) != napi_ok || napi_get_value_uint32(env, argv[3], &buffer_bytes) != napi_ok ||
      napi_get_value_uint32(env, argv[4], &slot) != napi_ok || !typed_arg(env, argv[5], napi_int32_array, &out_v, &n_out) || n_out < 2 ||
      port > 65535) {
    napi_throw_type_error(env, NULL, "setAdd(epfd, ipv4, port 0..65535, bufferBytes, slot, out: Int32Array(2))");
    return NULL;
  }
  int32_t *out = out_v;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int err = fd < 0 ? errno : 0;
  if (err == 0) {
    int on = 1;
    int buf = (int)buffer_bytes;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(ipv4);
    socklen_t len = sizeof(addr);
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = ((uint64_t)slot << 32) | (uint32_t)fd;
    if ((buf > 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf)) < 0 || setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf)) < 0)) ||
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
      err = errno;
      close(fd);
    } else {
      out[0] = fd;
      out[1] = ntohs(addr.sin_port);
    }
  }
  napi_create_int32(env, -err, &result);
  return result;
}

static napi_value set_remove(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t epfd, fd;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &epfd) != napi_ok || napi_get_value_int32(env, argv[1], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "setRemove(epfd, fd)");
    return NULL;
  }
  if (fd >= 0) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
  }
  return NULL;
}

static napi_value set_read(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t epfd;
  uint32_t slot_bytes;
  void *out_v, *data_v;
  size_t n_out, n_data;
  if (argc < 4 || napi_get_value_int32(env, argv[0], &epfd) != napi_ok || !typed_arg(env, argv[1], napi_float64_array, &out_v, &n_out) ||
      !typed_arg(env, argv[2], napi_uint8_array, &data_v, &n_data) || napi_get_value_uint32(env, argv[3], &slot_bytes) != napi_ok || slot_bytes == 0) {
    napi_throw_type_error(env, NULL, "setRead(epfd, out: Float64Array, data: Uint8Array, slotBytes > 0)");
    return NULL;
  }
  double *out = out_v;
  unsigned char *data = data_v;
  size_t capacity = n_out / SET_RECORD;
  if (n_data / slot_bytes < capacity) capacity = n_data / slot_bytes;
  size_t written = 0;
  double real_to_mono = clock_ms(CLOCK_MONOTONIC) - clock_ms(CLOCK_REALTIME);
  struct epoll_event events[256];
  struct mmsghdr msgs[SET_RECV_BATCH];
  struct iovec iovs[SET_RECV_BATCH];
  struct sockaddr_in from[SET_RECV_BATCH];
  union {
    struct cmsghdr align;
    unsigned char bytes[CMSG_SPACE(sizeof(struct timespec))];
  } controls[SET_RECV_BATCH];
  for (int round = 0; round < 64 && written < capacity; round++) {
    int ready = epoll_wait(epfd, events, 256, 0);
    if (ready <= 0) break;
    for (int e = 0; e < ready && written < capacity; e++) {
      uint32_t slot = (uint32_t)(events[e].data.u64 >> 32);
      int fd = (int)(uint32_t)events[e].data.u64;
      for (;;) {
        unsigned want = capacity - written < SET_RECV_BATCH ? (unsigned)(capacity - written) : SET_RECV_BATCH;
        for (unsigned i = 0; i < want; i++) {
          iovs[i].iov_base = data + (written + i) * slot_bytes;
          iovs[i].iov_len = slot_bytes;
          memset(&msgs[i], 0, sizeof(msgs[i]));
          msgs[i].msg_hdr.msg_name = &from[i];
          msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
          msgs[i].msg_hdr.msg_iov = &iovs[i];
          msgs[i].msg_hdr.msg_iovlen = 1;
          msgs[i].msg_hdr.msg_control = controls[i].bytes;
          msgs[i].msg_hdr.msg_controllen = sizeof(controls[i].bytes);
        }
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
          double *r = out + written * SET_RECORD;
          int v4 = msgs[i].msg_hdr.msg_namelen >= sizeof(struct sockaddr_in) && from[i].sin_family == AF_INET;
          r[0] = slot;
          r[1] = msgs[i].msg_len;
          r[2] = v4 ? (double)ntohl(from[i].sin_addr.s_addr) : -1;
          r[3] = v4 ? (double)ntohs(from[i].sin_port) : -1;
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

/*
 * The datagrams of send_each and of the plain-RTP sender thread: datagram i is the head at
 * base + (offsets ? offsets[i] : i * stride), head_lengths[i] bytes (cut to the stride when there
 * are no offsets), then the tail when with_tail[i], from fds[i] to ipv4s[i]:ports[i]. Runs on one
 * socket go in one sendmmsg(2). results[i] = 0 or the errno of datagram i. Returns how many were sent.
 */
static uint32_t send_rows(uint32_t count, const int32_t *fds, const uint32_t *ipv4s, const uint32_t *ports, unsigned char *base, uint32_t stride,
                          const uint32_t *offsets, const uint32_t *head_lengths, void *tail, uint32_t tail_length, const unsigned char *with_tail,
                          int32_t *results) {
  struct mmsghdr msgs[BATCH];
  struct iovec iovs[BATCH][2];
  struct sockaddr_in to[BATCH];
  uint32_t sent = 0, i = 0;
  while (i < count) {
    /* A run of datagrams on the same socket, at most BATCH. */
    int fd = fds[i];
    uint32_t n = 1;
    while (i + n < count && n < BATCH && fds[i + n] == fd) n++;
    for (uint32_t k = 0; k < n; k++) {
      uint32_t m = i + k;
      uint32_t hl = offsets != NULL || head_lengths[m] < stride ? head_lengths[m] : stride;
      memset(&to[k], 0, sizeof(to[k]));
      to[k].sin_family = AF_INET;
      to[k].sin_port = htons((uint16_t)ports[m]);
      to[k].sin_addr.s_addr = htonl(ipv4s[m]);
      iovs[k][0].iov_base = base + (offsets != NULL ? (size_t)offsets[m] : (size_t)m * stride);
      iovs[k][0].iov_len = hl;
      iovs[k][1].iov_base = tail;
      iovs[k][1].iov_len = tail_length;
      memset(&msgs[k], 0, sizeof(msgs[k]));
      msgs[k].msg_hdr.msg_name = &to[k];
      msgs[k].msg_hdr.msg_namelen = sizeof(to[k]);
      msgs[k].msg_hdr.msg_iov = iovs[k];
      msgs[k].msg_hdr.msg_iovlen = with_tail[m] ? 2 : 1;
    }
    uint32_t done = 0;
    while (done < n) {
      errno = 0;
      int r = n - done == 1 ? (int)(sendmsg(fd, &msgs[done].msg_hdr, MSG_DONTWAIT) >= 0) : sendmmsg(fd, msgs + done, n - done, MSG_DONTWAIT);
      if (r > 0) {
        for (int k = 0; k < r; k++) results[i + done + k] = 0;
        sent += (uint32_t)r;
        done += (uint32_t)r;
      } else {
        /* This datagram failed: note why and go on with the next. */
        results[i + done] = errno != 0 ? errno : EIO;
        done++;
      }
    }
    i += n;
  }
  return sent;
}

static napi_value send_each(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t count, head_stride, tail_length;
  void *fds_v, *ipv4s_v, *ports_v, *heads_v, *head_lengths_v, *tail_v, *with_tail_v, *results_v;
  size_t n_fds, n_ipv4s, n_ports, n_heads, n_head_lengths, n_tail, n_with_tail, n_results;
  if (argc < 11 || napi_get_value_uint32(env, argv[0], &count) != napi_ok || !typed_arg(env, argv[1], napi_int32_array, &fds_v, &n_fds) ||
      !typed_arg(env, argv[2], napi_uint32_array, &ipv4s_v, &n_ipv4s) || !typed_arg(env, argv[3], napi_uint32_array, &ports_v, &n_ports) ||
      !typed_arg(env, argv[4], napi_uint8_array, &heads_v, &n_heads) || napi_get_value_uint32(env, argv[5], &head_stride) != napi_ok ||
      !typed_arg(env, argv[6], napi_uint32_array, &head_lengths_v, &n_head_lengths) || !typed_arg(env, argv[7], napi_uint8_array, &tail_v, &n_tail) ||
      napi_get_value_uint32(env, argv[8], &tail_length) != napi_ok || !typed_arg(env, argv[9], napi_uint8_array, &with_tail_v, &n_with_tail) ||
      !typed_arg(env, argv[10], napi_int32_array, &results_v, &n_results)) {
    napi_throw_type_error(env, NULL,
                          "sendEach(count, fds: Int32Array, ipv4s: Uint32Array, ports: Uint32Array, heads: Uint8Array, headStride, headLengths: Uint32Array, "
                          "tail: Uint8Array, tailLength, withTail: Uint8Array, results: Int32Array)");
    return NULL;
  }
  if (count > n_fds || count > n_ipv4s || count > n_ports || count > n_head_lengths || count > n_with_tail || count > n_results ||
      tail_length > n_tail || (count > 0 && (size_t)(count - 1) * head_stride + head_stride > n_heads)) {
    napi_throw_range_error(env, NULL, "count beyond an array, or tailLength beyond the tail");
    return NULL;
  }
  uint32_t sent = send_rows(count, fds_v, ipv4s_v, ports_v, heads_v, head_stride, NULL, head_lengths_v, tail_v, tail_length, with_tail_v, results_v);
  napi_create_uint32(env, sent, &result);
  return result;
}

/*
 * A sender thread for a mixer's tick (plain RTP): the tick hands its batch over and goes on; the
 * thread sends it (send_rows) while the next tick mixes. The batch is copied (each head only as
 * long as it is, the shared tail once), so the caller may reuse its arrays at once. One batch at a
 * time: handing over the next waits until the previous one has left (a tick is 20 ms; sending one
 * takes a few). CPU is the process's as before; what moves is the wait off the tick.
 *
 * senderOpen() → a handle (an External), or throws.
 * senderSubmit(handle, count, fds, ipv4s, ports, heads, headStride, headLengths, tail, tailLength,
 *   withTail, results: Int32Array) → datagrams of the PREVIOUS batch that were sent; results[0, n)
 *   = 0 or the errno of each of them (n: that batch's count). Queues this batch unless count is 0
 *   (then it only waits for the previous one: a drain).
 * senderStats(handle, out: Float64Array(2)) → out = [batches, submits that had to wait].
 * senderClose(handle) lets the last batch leave and stops the thread (also when the handle is collected).
 */
typedef struct {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int busy, stop, closed;
  /* The batch: rows, their heads packed in `bytes`, the tail. */
  uint32_t count, cap_rows, tail_length;
  size_t cap_bytes, cap_tail;
  int32_t *fds, *results;
  uint32_t *ipv4s, *ports, *offsets, *lengths;
  unsigned char *with_tail, *bytes, *tail;
  uint32_t sent;
  double batches, waits;
} rtp_sender;

static void *sender_main(void *arg) {
  rtp_sender *s = arg;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->busy && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
    if (!s->busy) break; /* stopping, nothing queued */
    pthread_mutex_unlock(&s->mu);
    uint32_t sent = send_rows(s->count, s->fds, s->ipv4s, s->ports, s->bytes, 0, s->offsets, s->lengths, s->tail, s->tail_length, s->with_tail, s->results);
    pthread_mutex_lock(&s->mu);
    s->sent = sent;
    s->busy = 0;
    pthread_cond_broadcast(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

static int grow(void **p, size_t *cap, size_t want, size_t size) {
  if (want <= *cap) return 1;
  size_t next = *cap > 0 ? *cap : 64;
  while (next < want) next *= 2;
  void *q = realloc(*p, next * size);
  if (q == NULL) return 0;
  *p = q;
  *cap = next;
  return 1;
}

static void sender_stop(rtp_sender *s) {
  if (s->closed) return;
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->thread, NULL);
  s->closed = 1;
}

static void sender_finalize(napi_env env, void *data, void *hint) {
  rtp_sender *s = data;
  sender_stop(s);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->fds); free(s->results); free(s->ipv4s); free(s->ports); free(s->offsets); free(s->lengths); free(s->with_tail); free(s->bytes); free(s->tail);
  free(s);
}

static rtp_sender *sender_arg(napi_env env, napi_value v) {
  void *data = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  return data;
}

static napi_value sender_open(napi_env env, napi_callback_info info) {
  rtp_sender *s = calloc(1, sizeof(*s));
  if (s == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  int err = pthread_create(&s->thread, NULL, sender_main, s);
  if (err != 0) {
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    napi_throw_error(env, NULL, "could not start the sender thread");
    return NULL;
  }
  napi_value result;
  napi_create_external(env, s, sender_finalize, NULL, &result);
  return result;
}

static napi_value sender_submit(napi_env env, napi_callback_info info) {
  size_t argc = 12;
  napi_value argv[12], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t count, head_stride, tail_length;
  void *fds_v, *ipv4s_v, *ports_v, *heads_v, *head_lengths_v, *tail_v, *with_tail_v, *results_v;
  size_t n_fds, n_ipv4s, n_ports, n_heads, n_head_lengths, n_tail, n_with_tail, n_results;
  rtp_sender *s = argc >= 12 ? sender_arg(env, argv[0]) : NULL;
  if (s == NULL || napi_get_value_uint32(env, argv[1], &count) != napi_ok || !typed_arg(env, argv[2], napi_int32_array, &fds_v, &n_fds) ||
      !typed_arg(env, argv[3], napi_uint32_array, &ipv4s_v, &n_ipv4s) || !typed_arg(env, argv[4], napi_uint32_array, &ports_v, &n_ports) ||
      !typed_arg(env, argv[5], napi_uint8_array, &heads_v, &n_heads) || napi_get_value_uint32(env, argv[6], &head_stride) != napi_ok ||
      !typed_arg(env, argv[7], napi_uint32_array, &head_lengths_v, &n_head_lengths) || !typed_arg(env, argv[8], napi_uint8_array, &tail_v, &n_tail) ||
      napi_get_value_uint32(env, argv[9], &tail_length) != napi_ok || !typed_arg(env, argv[10], napi_uint8_array, &with_tail_v, &n_with_tail) ||
      !typed_arg(env, argv[11], napi_int32_array, &results_v, &n_results)) {
    napi_throw_type_error(env, NULL,
                          "senderSubmit(sender, count, fds: Int32Array, ipv4s: Uint32Array, ports: Uint32Array, heads: Uint8Array, headStride, "
                          "headLengths: Uint32Array, tail: Uint8Array, tailLength, withTail: Uint8Array, results: Int32Array)");
    return NULL;
  }
  if (s->closed) {
    napi_throw_error(env, NULL, "the sender is closed");
    return NULL;
  }
  if (count > n_fds || count > n_ipv4s || count > n_ports || count > n_head_lengths || count > n_with_tail || tail_length > n_tail ||
      (count > 0 && (size_t)(count - 1) * head_stride + head_stride > n_heads)) {
    napi_throw_range_error(env, NULL, "count beyond an array, or tailLength beyond the tail");
    return NULL;
  }
  pthread_mutex_lock(&s->mu);
  if (s->busy) s->waits++;
  while (s->busy) pthread_cond_wait(&s->cv, &s->mu);
  /* The previous batch's outcome. */
  uint32_t prev = s->count, sent = s->sent;
  if (prev > n_results) prev = (uint32_t)n_results;
  memcpy(results_v, s->results, (size_t)prev * sizeof(int32_t));
  s->count = 0;
  s->sent = 0;
  int ok = 1;
  if (count > 0) {
    const uint32_t *head_lengths = head_lengths_v;
    size_t bytes = 0;
    for (uint32_t i = 0; i < count; i++) bytes += head_lengths[i] < head_stride ? head_lengths[i] : head_stride;
    size_t cap_rows = s->cap_rows;
    ok = grow((void **)&s->fds, &cap_rows, count, sizeof(int32_t));
    cap_rows = s->cap_rows;
    ok = ok && grow((void **)&s->results, &cap_rows, count, sizeof(int32_t));
    cap_rows = s->cap_rows;
    ok = ok && grow((void **)&s->ipv4s, &cap_rows, count, sizeof(uint32_t));
    cap_rows = s->cap_rows;
    ok = ok && grow((void **)&s->ports, &cap_rows, count, sizeof(uint32_t));
    cap_rows = s->cap_rows;
    ok = ok && grow((void **)&s->offsets, &cap_rows, count, sizeof(uint32_t));
    cap_rows = s->cap_rows;
    ok = ok && grow((void **)&s->lengths, &cap_rows, count, sizeof(uint32_t));
    cap_rows = s->cap_rows;
    ok = ok && grow((void **)&s->with_tail, &cap_rows, count, 1);
    if (ok) s->cap_rows = (uint32_t)cap_rows;
    ok = ok && grow((void **)&s->bytes, &s->cap_bytes, bytes > 0 ? bytes : 1, 1) && grow((void **)&s->tail, &s->cap_tail, tail_length > 0 ? tail_length : 1, 1);
    if (ok) {
      memcpy(s->fds, fds_v, (size_t)count * sizeof(int32_t));
      memcpy(s->ipv4s, ipv4s_v, (size_t)count * sizeof(uint32_t));
      memcpy(s->ports, ports_v, (size_t)count * sizeof(uint32_t));
      memcpy(s->with_tail, with_tail_v, count);
      memcpy(s->tail, tail_v, tail_length);
      const unsigned char *heads = heads_v;
      uint32_t at = 0;
      for (uint32_t i = 0; i < count; i++) {
        uint32_t hl = head_lengths[i] < head_stride ? head_lengths[i] : head_stride;
        memcpy(s->bytes + at, heads + (size_t)i * head_stride, hl);
        s->offsets[i] = at;
        s->lengths[i] = hl;
        at += hl;
      }
      s->count = count;
      s->tail_length = tail_length;
      s->batches++;
      s->busy = 1;
      pthread_cond_broadcast(&s->cv);
    }
  }
  pthread_mutex_unlock(&s->mu);
  if (!ok) {
    napi_throw_error(env, NULL, "out of memory for the sender's batch");
    return NULL;
  }
  napi_create_uint32(env, sent, &result);
  return result;
}

static napi_value sender_stats(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  rtp_sender *s = argc >= 2 ? sender_arg(env, argv[0]) : NULL;
  void *out_v;
  size_t n_out;
  if (s == NULL || !typed_arg(env, argv[1], napi_float64_array, &out_v, &n_out) || n_out < 2) {
    napi_throw_type_error(env, NULL, "senderStats(sender, out: Float64Array(2))");
    return NULL;
  }
  double *out = out_v;
  pthread_mutex_lock(&s->mu);
  out[0] = s->batches;
  out[1] = s->waits;
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

static napi_value sender_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  rtp_sender *s = argc >= 1 ? sender_arg(env, argv[0]) : NULL;
  if (s == NULL) {
    napi_throw_type_error(env, NULL, "senderClose(sender)");
    return NULL;
  }
  sender_stop(s);
  return NULL;
}

/*
 * recvMany(fd, out: Float64Array, data: Uint8Array, slotBytes) → datagrams read from one socket
 * (libuv's, found by its fd) without blocking, up to min(out.length / 3, data.length / slotBytes):
 * datagram k copied to data[k * slotBytes, …) and described by out[k * 3, …) = [real length,
 * source IPv4 (-1: not IPv4), source port]. libuv reads a socket 32 datagrams per loop iteration;
 * one socket serving every WebRTC session of a node must be drained faster than that.
 */
static napi_value recv_many(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  uint32_t slot_bytes;
  void *out_v, *data_v;
  size_t n_out, n_data;
  if (argc < 4 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || !typed_arg(env, argv[1], napi_float64_array, &out_v, &n_out) ||
      !typed_arg(env, argv[2], napi_uint8_array, &data_v, &n_data) || napi_get_value_uint32(env, argv[3], &slot_bytes) != napi_ok || slot_bytes == 0) {
    napi_throw_type_error(env, NULL, "recvMany(fd, out: Float64Array, data: Uint8Array, slotBytes > 0)");
    return NULL;
  }
  double *out = out_v;
  unsigned char *data = data_v;
  size_t capacity = n_out / 3;
  if (n_data / slot_bytes < capacity) capacity = n_data / slot_bytes;
  size_t written = 0;
  struct mmsghdr msgs[RECV_BATCH];
  struct iovec iovs[RECV_BATCH];
  struct sockaddr_in from[RECV_BATCH];
  while (written < capacity) {
    unsigned want = capacity - written < RECV_BATCH ? (unsigned)(capacity - written) : RECV_BATCH;
    for (unsigned i = 0; i < want; i++) {
      iovs[i].iov_base = data + (written + i) * slot_bytes;
      iovs[i].iov_len = slot_bytes;
      memset(&msgs[i], 0, sizeof(msgs[i]));
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int got = recvmmsg(fd, msgs, want, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (got <= 0) break;
    for (int i = 0; i < got; i++) {
      double *r = out + written * 3;
      int v4 = msgs[i].msg_hdr.msg_namelen >= sizeof(struct sockaddr_in) && from[i].sin_family == AF_INET;
      r[0] = msgs[i].msg_len;
      r[1] = v4 ? (double)ntohl(from[i].sin_addr.s_addr) : -1;
      r[2] = v4 ? (double)ntohs(from[i].sin_port) : -1;
      written++;
    }
    if ((unsigned)got < want) break;
  }
  napi_create_uint32(env, (uint32_t)written, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {{"sendMany", send_many}, {"receiversOpen", receivers_open}, {"receiversRead", receivers_read}, {"receiversClose", receivers_close},
                    {"setOpen", set_open}, {"setAdd", set_add}, {"setRemove", set_remove}, {"setRead", set_read}, {"sendEach", send_each}, {"recvMany", recv_many},
                    {"senderOpen", sender_open}, {"senderSubmit", sender_submit}, {"senderStats", sender_stats}, {"senderClose", sender_close}};
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    napi_value fn;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &fn);
    napi_set_named_property(env, exports, fns[i].name, fn);
  }
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
