/*
 * One datagram to many IPv4 receivers in few system calls: sendmmsg(2) on a socket libuv already
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
#include <sys/socket.h>

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

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "sendMany", NAPI_AUTO_LENGTH, send_many, NULL, &fn);
  napi_set_named_property(env, exports, "sendMany", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
