/*
 * One program packet to many WebRTC viewers in one native call: per viewer the RTP header is
 * rewritten (SSRC, payload type, sequence/timestamp offsets, abs-send-time), the packet sealed
 * with that viewer's AEAD_AES_128_GCM context (RFC 7714), and the tick's datagrams sent with
 * sendmmsg(2), runs of the same socket in one call. No JavaScript and no Buffer per viewer.
 *
 * The per-viewer state lives in a Uint32Array owned by JavaScript (STATE_STRIDE words a viewer,
 * layout below), so the sender's counters and the SRTP rollover state are shared with werift's
 * own code (its RTCP sender reports and NACK retransmissions read and write the same words). The
 * keys live here: one OpenSSL context per slot, set with setKey and freed with clearKey.
 *
 * SrtpFanOut.send(state, slots, program, payloadOffset, payloadLength, marker, seq, ts,
 *   csrcCount, absSendTime, out, stride, status) → datagrams built.
 *   program[12, 12 + 4 * csrcCount) are the CSRCs copied into every header; the payload is
 *   program[payloadOffset, + payloadLength). absSendTime: 24 bits, or -1 for none (written only
 *   to viewers with an extension id). Datagram i is out[i * stride, + length); status[0] = the
 *   datagrams sent, and per datagram i: status[1 + 3i] = its slot, status[2 + 3i] = its length,
 *   status[3 + 3i] = 0 when sent, else -errno (EAGAIN: the socket buffer was full, for the caller
 *   to send through dgram, which queues). A failed datagram does not stop the rest.
 *
 * Error policy: bad arguments throw; OpenSSL failures and oversize packets are per-datagram
 * statuses (-EIO, -EMSGSIZE), never a throw on the media path.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <openssl/evp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "srtp_fanout.h"

#define KEY_LEN 16
#define SALT_LEN 12
#define TAG_LEN 16
#define MMSG_BATCH 256

/* Words of a slot in the state array (keep in step with FanOutSlot in NativeFanOut.ts). */
enum {
  S_FLAGS,       /* 1: active; 2: werift's rolloverHasProcessed */
  S_SSRC,
  S_PT,
  S_SEQ_OFFSET,
  S_TS_OFFSET,
  S_ROC,         /* werift's rolloverCounter */
  S_ROC_LAST,    /* werift's lastSequenceNumber */
  S_IPV4,
  S_PORT,
  S_FD,
  S_EXT_ID,      /* abs-send-time extension id, 0: none */
  S_PACKETS,     /* RTCP packet count */
  S_OCTETS,      /* RTCP octet count (payload bytes) */
  S_SEQ,         /* sequence number of the last packet sent */
  S_TS,          /* timestamp of the last packet sent */
  S_BYTES,       /* datagram bytes (wraps) */
  STATE_STRIDE
};
#define F_ACTIVE 1u
#define F_ROLLOVER_SEEN 2u

#define MAX_ROC_DISORDER 100u
#define MAX_SEQ 65535u

typedef struct {
  EVP_CIPHER_CTX **ctx;
  uint8_t *salt; /* SALT_LEN per slot */
  EVP_CIPHER_CTX **rtcp_ctx; /* SRTCP: its own session key and salt */
  uint8_t *rtcp_salt;
  uint32_t capacity;
} FanOut;

static void fanout_free(FanOut *f) {
  for (uint32_t i = 0; i < f->capacity; i++) {
    if (f->ctx[i]) EVP_CIPHER_CTX_free(f->ctx[i]);
    if (f->rtcp_ctx[i]) EVP_CIPHER_CTX_free(f->rtcp_ctx[i]);
  }
  free(f->ctx);
  free(f->salt);
  free(f->rtcp_ctx);
  free(f->rtcp_salt);
  free(f);
}

static void finalize(napi_env env, void *data, void *hint) { fanout_free((FanOut *)data); }

static int typed(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *len, const char *what) {
  bool is_typed = false;
  napi_is_typedarray(env, v, &is_typed);
  napi_typedarray_type type;
  size_t offset;
  napi_value ab;
  if (!is_typed || napi_get_typedarray_info(env, v, &type, len, data, &ab, &offset) != napi_ok || type != want) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  return 1;
}

static int u32(napi_env env, napi_value v, uint32_t *out, const char *what) {
  if (napi_get_value_uint32(env, v, out) != napi_ok) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  return 1;
}

static FanOut *unwrap(napi_env env, napi_value self) {
  FanOut *f = NULL;
  if (napi_unwrap(env, self, (void **)&f) != napi_ok || !f) {
    napi_throw_type_error(env, NULL, "not an SrtpFanOut");
    return NULL;
  }
  return f;
}

static napi_value ctor(napi_env env, napi_callback_info info) {
  napi_value self;
  napi_get_cb_info(env, info, NULL, NULL, &self, NULL);
  FanOut *f = (FanOut *)calloc(1, sizeof(FanOut));
  if (!f) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  if (napi_wrap(env, self, f, finalize, NULL, NULL) != napi_ok) {
    free(f);
    napi_throw_error(env, NULL, "could not wrap the fan-out");
    return NULL;
  }
  return self;
}

static int grow(FanOut *f, uint32_t need) {
  if (need <= f->capacity) return 1;
  uint32_t cap = f->capacity ? f->capacity : 64;
  while (cap < need) cap *= 2;
  EVP_CIPHER_CTX **ctx = (EVP_CIPHER_CTX **)realloc(f->ctx, cap * sizeof(*ctx));
  if (!ctx) return 0;
  f->ctx = ctx;
  memset(f->ctx + f->capacity, 0, (cap - f->capacity) * sizeof(*ctx));
  EVP_CIPHER_CTX **rctx = (EVP_CIPHER_CTX **)realloc(f->rtcp_ctx, cap * sizeof(*rctx));
  if (!rctx) return 0;
  f->rtcp_ctx = rctx;
  memset(f->rtcp_ctx + f->capacity, 0, (cap - f->capacity) * sizeof(*rctx));
  uint8_t *salt = (uint8_t *)realloc(f->salt, (size_t)cap * SALT_LEN);
  if (!salt) return 0;
  f->salt = salt;
  uint8_t *rsalt = (uint8_t *)realloc(f->rtcp_salt, (size_t)cap * SALT_LEN);
  if (!rsalt) return 0;
  f->rtcp_salt = rsalt;
  f->capacity = cap;
  return 1;
}

/* setKey(slot, key: Uint8Array(16), salt: Uint8Array(12)); setRtcpKey: the same for SRTCP. */
static napi_value set_any_key(napi_env env, napi_callback_info info, int rtcp) {
  size_t argc = 3;
  napi_value argv[3], self;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  FanOut *f = unwrap(env, self);
  if (!f) return NULL;
  uint32_t slot;
  void *key, *salt;
  size_t key_len, salt_len;
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "setKey(slot, key, salt)");
    return NULL;
  }
  if (!u32(env, argv[0], &slot, "slot must be a number")) return NULL;
  if (!typed(env, argv[1], napi_uint8_array, &key, &key_len, "key must be a Uint8Array")) return NULL;
  if (!typed(env, argv[2], napi_uint8_array, &salt, &salt_len, "salt must be a Uint8Array")) return NULL;
  if (key_len != KEY_LEN || salt_len != SALT_LEN || slot >= (1u << 20)) {
    napi_throw_range_error(env, NULL, "AEAD_AES_128_GCM needs a 16-byte key and a 12-byte salt (slot < 2^20)");
    return NULL;
  }
  if (!grow(f, slot + 1)) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  EVP_CIPHER_CTX **slots = rtcp ? f->rtcp_ctx : f->ctx;
  EVP_CIPHER_CTX *ctx = slots[slot];
  if (!ctx) ctx = EVP_CIPHER_CTX_new();
  if (!ctx || EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, NULL, NULL) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SALT_LEN, NULL) != 1 ||
      EVP_EncryptInit_ex(ctx, NULL, NULL, (const uint8_t *)key, NULL) != 1) {
    if (ctx) EVP_CIPHER_CTX_free(ctx);
    slots[slot] = NULL;
    napi_throw_error(env, NULL, "OpenSSL could not set up AES-128-GCM");
    return NULL;
  }
  slots[slot] = ctx;
  memcpy((rtcp ? f->rtcp_salt : f->salt) + (size_t)slot * SALT_LEN, salt, SALT_LEN);
  return NULL;
}

static napi_value set_key(napi_env env, napi_callback_info info) { return set_any_key(env, info, 0); }
static napi_value set_rtcp_key(napi_env env, napi_callback_info info) { return set_any_key(env, info, 1); }

/*
 * sealRtcp(slot, packet: Uint8Array, length, index) → protected length, or -1 (no key, OpenSSL).
 * RFC 7714 §9: packet[0, 8) and the E-flagged SRTCP index are the AAD, packet[8, length) is sealed
 * in place, then the tag and the index word are appended: `packet` needs length + 20 bytes.
 * IV = (0x0000 || SSRC || 0x0000 || index) XOR salt. Byte for byte werift's encryptRTCP (tested).
 */
static napi_value seal_rtcp(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], self, result;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  FanOut *f = unwrap(env, self);
  if (!f) return NULL;
  uint32_t slot, length, index;
  uint8_t *pkt;
  size_t pkt_len;
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "sealRtcp(slot, packet, length, index)");
    return NULL;
  }
  if (!u32(env, argv[0], &slot, "slot must be a number")) return NULL;
  if (!typed(env, argv[1], napi_uint8_array, (void **)&pkt, &pkt_len, "packet must be a Uint8Array")) return NULL;
  if (!u32(env, argv[2], &length, "length must be a number") || !u32(env, argv[3], &index, "index must be a number")) return NULL;
  if (length < 8 || (size_t)length + TAG_LEN + 4 > pkt_len || index > 0x7fffffffu) {
    napi_throw_range_error(env, NULL, "packet too small for the RTCP header, tag and index (index < 2^31)");
    return NULL;
  }
  int32_t total = -1;
  if (slot < f->capacity && f->rtcp_ctx[slot]) {
    const uint8_t *salt = f->rtcp_salt + (size_t)slot * SALT_LEN;
    uint8_t iv[SALT_LEN] = {0};
    memcpy(iv + 2, pkt + 4, 4);
    iv[8] = (uint8_t)(index >> 24);
    iv[9] = (uint8_t)(index >> 16);
    iv[10] = (uint8_t)(index >> 8);
    iv[11] = (uint8_t)index;
    for (int i = 0; i < SALT_LEN; i++) iv[i] ^= salt[i];
    uint8_t word[4] = {(uint8_t)(0x80 | (index >> 24)), (uint8_t)(index >> 16), (uint8_t)(index >> 8), (uint8_t)index};
    EVP_CIPHER_CTX *ctx = f->rtcp_ctx[slot];
    int n = 0;
    uint8_t *body = pkt + 8;
    int body_len = (int)length - 8;
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) == 1 && EVP_EncryptUpdate(ctx, NULL, &n, pkt, 8) == 1 &&
        EVP_EncryptUpdate(ctx, NULL, &n, word, 4) == 1 && EVP_EncryptUpdate(ctx, body, &n, body, body_len) == 1 &&
        EVP_EncryptFinal_ex(ctx, body + n, &n) == 1 && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, pkt + length) == 1) {
      memcpy(pkt + length + TAG_LEN, word, 4);
      total = (int32_t)(length + TAG_LEN + 4);
    }
  }
  napi_create_int32(env, total, &result);
  return result;
}

/* clearKey(slot): frees the slot's context (its viewer left). */
static napi_value clear_key(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  FanOut *f = unwrap(env, self);
  if (!f) return NULL;
  uint32_t slot;
  if (argc < 1 || !u32(env, argv[0], &slot, "slot must be a number")) return NULL;
  if (slot < f->capacity) {
    if (f->ctx[slot]) EVP_CIPHER_CTX_free(f->ctx[slot]);
    if (f->rtcp_ctx[slot]) EVP_CIPHER_CTX_free(f->rtcp_ctx[slot]);
    f->ctx[slot] = NULL;
    f->rtcp_ctx[slot] = NULL;
  }
  return NULL;
}

/* werift's SrtpContext.updateRolloverCount, word for word, on the shared state. */
static void update_roc(uint32_t *s, uint32_t seq) {
  uint32_t last = s[S_ROC_LAST];
  if (!(s[S_FLAGS] & F_ROLLOVER_SEEN)) {
    s[S_FLAGS] |= F_ROLLOVER_SEEN;
  } else if (seq == 0) {
    if (last > MAX_ROC_DISORDER) s[S_ROC]++;
  } else if (last < MAX_ROC_DISORDER && seq > MAX_SEQ - MAX_ROC_DISORDER) {
    if (s[S_ROC] > 0) s[S_ROC]--;
  } else if (seq < MAX_ROC_DISORDER && last > MAX_SEQ - MAX_ROC_DISORDER) {
    s[S_ROC]++;
  }
  s[S_ROC_LAST] = seq;
}

static int seal(EVP_CIPHER_CTX *ctx, const uint8_t *salt, uint8_t *pkt, int header_len, const uint8_t *payload, int payload_len, uint32_t roc) {
  uint8_t iv[SALT_LEN] = {0};
  memcpy(iv + 2, pkt + 8, 4);
  iv[6] = (uint8_t)(roc >> 24);
  iv[7] = (uint8_t)(roc >> 16);
  iv[8] = (uint8_t)(roc >> 8);
  iv[9] = (uint8_t)roc;
  memcpy(iv + 10, pkt + 2, 2);
  for (int i = 0; i < SALT_LEN; i++) iv[i] ^= salt[i];
  int n = 0;
  uint8_t *dst = pkt + header_len;
  if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, iv) != 1 || EVP_EncryptUpdate(ctx, NULL, &n, pkt, header_len) != 1 ||
      EVP_EncryptUpdate(ctx, dst, &n, payload, payload_len) != 1 || EVP_EncryptFinal_ex(ctx, dst + n, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, dst + payload_len) != 1)
    return -1;
  return header_len + payload_len + TAG_LEN;
}

static napi_value send_all(napi_env env, napi_callback_info info) {
  size_t argc = 13;
  napi_value argv[13], self, result;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  FanOut *f = unwrap(env, self);
  if (!f) return NULL;
  if (argc < 13) {
    napi_throw_type_error(env, NULL, "send(state, slots, program, payloadOffset, payloadLength, marker, seq, ts, csrcCount, absSendTime, out, stride, status)");
    return NULL;
  }
  uint32_t *state, *status_u;
  uint8_t *program, *out;
  size_t state_len, program_len, out_len, status_len;
  uint32_t slots, payload_offset, payload_len, marker, seq, ts, csrc_count, stride;
  int32_t abs_send_time;
  if (!typed(env, argv[0], napi_uint32_array, (void **)&state, &state_len, "state must be a Uint32Array")) return NULL;
  if (!u32(env, argv[1], &slots, "slots must be a number")) return NULL;
  if (!typed(env, argv[2], napi_uint8_array, (void **)&program, &program_len, "program must be a Uint8Array")) return NULL;
  if (!u32(env, argv[3], &payload_offset, "payloadOffset must be a number") || !u32(env, argv[4], &payload_len, "payloadLength must be a number") ||
      !u32(env, argv[5], &marker, "marker must be a number") || !u32(env, argv[6], &seq, "seq must be a number") ||
      !u32(env, argv[7], &ts, "ts must be a number") || !u32(env, argv[8], &csrc_count, "csrcCount must be a number"))
    return NULL;
  if (napi_get_value_int32(env, argv[9], &abs_send_time) != napi_ok) {
    napi_throw_type_error(env, NULL, "absSendTime must be a number");
    return NULL;
  }
  if (!typed(env, argv[10], napi_uint8_array, (void **)&out, &out_len, "out must be a Uint8Array")) return NULL;
  if (!u32(env, argv[11], &stride, "stride must be a number")) return NULL;
  if (!typed(env, argv[12], napi_int32_array, (void **)&status_u, &status_len, "status must be an Int32Array")) return NULL;
  int32_t *status = (int32_t *)status_u;
  if ((size_t)slots * STATE_STRIDE > state_len || (size_t)payload_offset + payload_len > program_len || csrc_count > 15 ||
      12 + 4 * (size_t)csrc_count > program_len || (size_t)slots * stride > out_len || 1 + 3 * (size_t)slots > status_len || stride < 64) {
    napi_throw_range_error(env, NULL, "state, program, out or status too small for the slots");
    return NULL;
  }
  const uint8_t *payload = program + payload_offset;
  const uint8_t *csrcs = program + 12;
  uint32_t built = 0;
  for (uint32_t k = 0; k < slots && k < f->capacity; k++) {
    uint32_t *s = state + (size_t)k * STATE_STRIDE;
    if (!(s[S_FLAGS] & F_ACTIVE) || !f->ctx[k]) continue;
    uint8_t *p = out + (size_t)built * stride;
    uint32_t ext = abs_send_time >= 0 ? s[S_EXT_ID] : 0;
    int header_len = 12 + 4 * (int)csrc_count + (ext ? 8 : 0);
    int32_t *st = status + 1 + 3 * built;
    st[0] = (int32_t)k;
    built++;
    if ((size_t)header_len + payload_len + TAG_LEN > stride) {
      st[1] = 0;
      st[2] = -EMSGSIZE;
      continue;
    }
    uint32_t vseq = (seq + s[S_SEQ_OFFSET]) & 0xffff;
    uint32_t vts = ts + s[S_TS_OFFSET];
    p[0] = (uint8_t)(0x80 | (ext ? 0x10 : 0) | csrc_count);
    p[1] = (uint8_t)((marker ? 0x80 : 0) | (s[S_PT] & 0x7f));
    p[2] = (uint8_t)(vseq >> 8);
    p[3] = (uint8_t)vseq;
    p[4] = (uint8_t)(vts >> 24);
    p[5] = (uint8_t)(vts >> 16);
    p[6] = (uint8_t)(vts >> 8);
    p[7] = (uint8_t)vts;
    uint32_t ssrc = s[S_SSRC];
    p[8] = (uint8_t)(ssrc >> 24);
    p[9] = (uint8_t)(ssrc >> 16);
    p[10] = (uint8_t)(ssrc >> 8);
    p[11] = (uint8_t)ssrc;
    memcpy(p + 12, csrcs, 4 * csrc_count);
    if (ext) {
      uint8_t *e = p + 12 + 4 * csrc_count;
      e[0] = 0xbe; /* RFC 8285 one-byte header, one word */
      e[1] = 0xde;
      e[2] = 0;
      e[3] = 1;
      e[4] = (uint8_t)(((ext & 0x0f) << 4) | 2);
      e[5] = (uint8_t)(abs_send_time >> 16);
      e[6] = (uint8_t)(abs_send_time >> 8);
      e[7] = (uint8_t)abs_send_time;
    }
    update_roc(s, vseq);
    int len = seal(f->ctx[k], f->salt + (size_t)k * SALT_LEN, p, header_len, payload, (int)payload_len, s[S_ROC]);
    if (len < 0) {
      st[1] = 0;
      st[2] = -EIO;
      continue;
    }
    st[1] = len;
    st[2] = 1; /* built, not yet sent */
    s[S_SEQ] = vseq;
    s[S_TS] = vts;
    s[S_PACKETS]++;
    s[S_OCTETS] += payload_len;
    s[S_BYTES] += (uint32_t)len;
  }

  /* The datagrams, runs of one socket in one sendmmsg each. */
  struct mmsghdr msgs[MMSG_BATCH];
  struct iovec iov[MMSG_BATCH];
  struct sockaddr_in to[MMSG_BATCH];
  uint32_t sent = 0, i = 0;
  while (i < built) {
    uint32_t n = 0, first = i;
    int fd = -1;
    while (i < built && n < MMSG_BATCH) {
      int32_t *st = status + 1 + 3 * i;
      if (st[2] != 1) {
        i++;
        if (n == 0) first = i;
        continue;
      }
      const uint32_t *s = state + (size_t)st[0] * STATE_STRIDE;
      if (n > 0 && (int)s[S_FD] != fd) break;
      fd = (int)s[S_FD];
      memset(&to[n], 0, sizeof(to[n]));
      to[n].sin_family = AF_INET;
      to[n].sin_port = htons((uint16_t)s[S_PORT]);
      to[n].sin_addr.s_addr = htonl(s[S_IPV4]);
      iov[n].iov_base = out + (size_t)i * stride;
      iov[n].iov_len = (size_t)st[1];
      memset(&msgs[n], 0, sizeof(msgs[n]));
      msgs[n].msg_hdr.msg_name = &to[n];
      msgs[n].msg_hdr.msg_namelen = sizeof(to[n]);
      msgs[n].msg_hdr.msg_iov = &iov[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
      n++;
      i++;
    }
    /* msgs[0, n) are the datagrams with status 1 in [first, i), in order. */
    int errs[MMSG_BATCH];
    uint32_t done = 0;
    while (done < n) {
      int r = sendmmsg(fd, msgs + done, n - done, MSG_DONTWAIT);
      if (r > 0) {
        for (int q = 0; q < r; q++) errs[done + q] = 0;
        done += (uint32_t)r;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      int err = r < 0 ? errno : EIO;
      /* A full buffer: the rest of this run is the caller's (dgram.send queues). */
      if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) break;
      /* One datagram refused (an unreachable address): mark it, go on with the next. */
      errs[done++] = err;
    }
    uint32_t m = 0;
    for (uint32_t j = first; j < i; j++) {
      int32_t *st = status + 1 + 3 * j;
      if (st[2] != 1) continue;
      if (m < done && errs[m] == 0) {
        st[2] = 0;
        sent++;
      } else {
        st[2] = m < done ? -errs[m] : -EAGAIN;
      }
      m++;
    }
  }
  status[0] = (int32_t)sent;
  napi_create_uint32(env, built, &result);
  return result;
}

void mcu_srtp_fanout_init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"setKey", NULL, set_key, NULL, NULL, NULL, napi_default, NULL},
      {"setRtcpKey", NULL, set_rtcp_key, NULL, NULL, NULL, napi_default, NULL},
      {"clearKey", NULL, clear_key, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, send_all, NULL, NULL, NULL, napi_default, NULL},
      {"sealRtcp", NULL, seal_rtcp, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  napi_define_class(env, "SrtpFanOut", NAPI_AUTO_LENGTH, ctor, NULL, 5, methods, &cls);
  napi_set_named_property(env, exports, "SrtpFanOut", cls);
  napi_value stride;
  napi_create_uint32(env, STATE_STRIDE, &stride);
  napi_set_named_property(env, exports, "FANOUT_STATE_STRIDE", stride);
}
