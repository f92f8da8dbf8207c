/*
 * SRTP protection of outgoing RTP with AEAD_AES_128_GCM (RFC 7714) for the per-viewer send path,
 * and the opening of incoming SRTCP (SrtcpGcmOpen: a viewer's receiver reports, NACKs and PLIs).
 *
 * werift (and node:crypto generally) builds a new cipher for every packet: createCipheriv expands
 * the AES key, allocates a context and several Buffers, about 7 us per packet on the development
 * box, the largest per-viewer cost after the sendto itself. Here one OpenSSL context per session
 * keeps the expanded key; per packet only the IV is set and the payload sealed in place into the
 * caller's buffer. The output is byte for byte what werift's CipherAesGcm produces (tested).
 *
 * OpenSSL comes from the Node binary itself (its headers ship with Node's, its symbols are exported
 * by the node executable), so nothing is downloaded or linked besides Node.
 *
 * Error policy: bad arguments throw (TypeError/RangeError); a cipher failure returns -1 (the caller
 * counts it and falls back): the media path never throws per packet.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <openssl/evp.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "srtp_fanout.h"

#define KEY_LEN 16
#define SALT_LEN 12
#define TAG_LEN 16

typedef struct {
  EVP_CIPHER_CTX *ctx; /* NULL once closed */
  uint8_t salt[SALT_LEN];
} GcmSession;

static int bytes_arg(napi_env env, napi_value v, const char *what, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  size_t length;
  void *ptr;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, &ab, &offset) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  *data = (uint8_t *)ptr;
  *len = length;
  return 1;
}

static int u32_arg(napi_env env, napi_value v, const char *what, uint32_t *out) {
  if (napi_get_value_uint32(env, v, out) != napi_ok) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  return 1;
}

static void finalize(napi_env env, void *data, void *hint) {
  GcmSession *s = (GcmSession *)data;
  if (s->ctx) EVP_CIPHER_CTX_free(s->ctx);
  free(s);
}

/*
 * The constructors' shared body: one AES-128-GCM context for sealing (SrtpGcm) or opening
 * (SrtcpGcmOpen), keyed once, wrapped onto `this`.
 */
static napi_value new_session(napi_env env, napi_callback_info info, int open, const char *usage) {
  size_t argc = 2;
  napi_value argv[2], self;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  uint8_t *key, *salt;
  size_t key_len, salt_len;
  if (argc < 2) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (!bytes_arg(env, argv[0], "key must be a Uint8Array", &key, &key_len)) return NULL;
  if (!bytes_arg(env, argv[1], "salt must be a Uint8Array", &salt, &salt_len)) return NULL;
  if (key_len != KEY_LEN || salt_len != SALT_LEN) {
    napi_throw_range_error(env, NULL, "AEAD_AES_128_GCM needs a 16-byte key and a 12-byte salt");
    return NULL;
  }
  GcmSession *s = (GcmSession *)calloc(1, sizeof(GcmSession));
  if (!s) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  s->ctx = EVP_CIPHER_CTX_new();
  int ok = s->ctx != NULL;
  if (ok) ok = (open ? EVP_DecryptInit_ex(s->ctx, EVP_aes_128_gcm(), NULL, NULL, NULL) : EVP_EncryptInit_ex(s->ctx, EVP_aes_128_gcm(), NULL, NULL, NULL)) == 1;
  if (ok) ok = EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_SET_IVLEN, SALT_LEN, NULL) == 1;
  if (ok) ok = (open ? EVP_DecryptInit_ex(s->ctx, NULL, NULL, key, NULL) : EVP_EncryptInit_ex(s->ctx, NULL, NULL, key, NULL)) == 1;
  if (!ok) {
    if (s->ctx) EVP_CIPHER_CTX_free(s->ctx);
    free(s);
    napi_throw_error(env, NULL, "OpenSSL could not set up AES-128-GCM");
    return NULL;
  }
  memcpy(s->salt, salt, SALT_LEN);
  if (napi_wrap(env, self, s, finalize, NULL, NULL) != napi_ok) {
    EVP_CIPHER_CTX_free(s->ctx);
    free(s);
    napi_throw_error(env, NULL, "could not wrap the session");
    return NULL;
  }
  return self;
}

/* new SrtpGcm(key: Uint8Array(16), salt: Uint8Array(12)) */
static napi_value ctor(napi_env env, napi_callback_info info) {
  return new_session(env, info, 0, "SrtpGcm(key, salt)");
}

static GcmSession *unwrap(napi_env env, napi_value self) {
  GcmSession *s = NULL;
  if (napi_unwrap(env, self, (void **)&s) != napi_ok || !s) {
    napi_throw_type_error(env, NULL, "not an SrtpGcm");
    return NULL;
  }
  if (!s->ctx) {
    napi_throw_error(env, NULL, "SrtpGcm is closed");
    return NULL;
  }
  return s;
}

/*
 * protect(packet: Uint8Array, headerLength, payloadLength, roc) → total length, or -1.
 * `packet` holds the RTP header (headerLength bytes, the AAD) followed by the payload; the payload
 * is encrypted in place and the 16-byte tag written after it, so `packet` must have room for it.
 * RFC 7714 §8.1: IV = (0x0000 || SSRC || ROC || SEQ) XOR salt, SSRC and SEQ read from the header.
 */
static napi_value protect(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], self, result;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  GcmSession *s = unwrap(env, self);
  if (!s) return NULL;
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "protect(packet, headerLength, payloadLength, roc)");
    return NULL;
  }
  uint8_t *packet;
  size_t packet_len;
  uint32_t header_len, payload_len, roc;
  if (!bytes_arg(env, argv[0], "packet must be a Uint8Array", &packet, &packet_len)) return NULL;
  if (!u32_arg(env, argv[1], "headerLength must be a number", &header_len)) return NULL;
  if (!u32_arg(env, argv[2], "payloadLength must be a number", &payload_len)) return NULL;
  if (!u32_arg(env, argv[3], "roc must be a number", &roc)) return NULL;
  if (header_len < 12 || (size_t)header_len + payload_len + TAG_LEN > packet_len) {
    napi_throw_range_error(env, NULL, "packet too small for header, payload and tag");
    return NULL;
  }
  uint8_t iv[SALT_LEN] = {0};
  memcpy(iv + 2, packet + 8, 4); /* SSRC */
  iv[6] = (uint8_t)(roc >> 24);
  iv[7] = (uint8_t)(roc >> 16);
  iv[8] = (uint8_t)(roc >> 8);
  iv[9] = (uint8_t)roc;
  memcpy(iv + 10, packet + 2, 2); /* sequence number */
  for (int i = 0; i < SALT_LEN; i++) iv[i] ^= s->salt[i];
  int n = 0, total = -1;
  uint8_t *payload = packet + header_len;
  if (EVP_EncryptInit_ex(s->ctx, NULL, NULL, NULL, iv) == 1 &&
      EVP_EncryptUpdate(s->ctx, NULL, &n, packet, (int)header_len) == 1 &&
      EVP_EncryptUpdate(s->ctx, payload, &n, payload, (int)payload_len) == 1 &&
      EVP_EncryptFinal_ex(s->ctx, payload + n, &n) == 1 &&
      EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, payload + payload_len) == 1) {
    total = (int)(header_len + payload_len + TAG_LEN);
  }
  napi_create_int32(env, total, &result);
  return result;
}

/* new SrtcpGcmOpen(key: Uint8Array(16), salt: Uint8Array(12)): the remote side's SRTCP session key. */
static napi_value open_ctor(napi_env env, napi_callback_info info) {
  return new_session(env, info, 1, "SrtcpGcmOpen(key, salt)");
}

/*
 * open(packet: Uint8Array, out: Uint8Array) → the plain compound RTCP's length in `out`, -1 when it
 * does not authenticate (or OpenSSL failed), -2 when the packet is not encrypted (E flag clear:
 * the caller leaves it to werift). RFC 7714 §9: packet = first 8 header bytes || ciphertext ||
 * 16-byte tag || E flag and 31-bit SRTCP index; IV = (0x0000 || SSRC || 0x0000 || index) XOR
 * salt; AAD = the 8 header bytes || E flag and index. `packet` is not changed.
 */
static napi_value open_rtcp(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self, result;
  napi_get_cb_info(env, info, &argc, argv, &self, NULL);
  GcmSession *s = unwrap(env, self);
  if (!s) return NULL;
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "open(packet, out)");
    return NULL;
  }
  uint8_t *packet, *out;
  size_t packet_len, out_len;
  if (!bytes_arg(env, argv[0], "packet must be a Uint8Array", &packet, &packet_len)) return NULL;
  if (!bytes_arg(env, argv[1], "out must be a Uint8Array", &out, &out_len)) return NULL;
  int32_t total = -1;
  if (packet_len >= 8 + TAG_LEN + 4) {
    size_t index_off = packet_len - 4, tag_off = index_off - TAG_LEN;
    if (out_len < tag_off) {
      napi_throw_range_error(env, NULL, "out is smaller than the plain RTCP");
      return NULL;
    }
    if ((packet[index_off] & 0x80) == 0) {
      total = -2;
    } else {
      uint8_t iv[SALT_LEN] = {0};
      memcpy(iv + 2, packet + 4, 4); /* SSRC of the first packet */
      memcpy(iv + 8, packet + index_off, 4);
      iv[8] &= 0x7f; /* the index without the E flag */
      for (int i = 0; i < SALT_LEN; i++) iv[i] ^= s->salt[i];
      int n = 0, m = 0;
      if (EVP_DecryptInit_ex(s->ctx, NULL, NULL, NULL, iv) == 1 &&
          EVP_DecryptUpdate(s->ctx, NULL, &n, packet, 8) == 1 &&
          EVP_DecryptUpdate(s->ctx, NULL, &n, packet + index_off, 4) == 1 &&
          EVP_DecryptUpdate(s->ctx, out + 8, &n, packet + 8, (int)(tag_off - 8)) == 1 &&
          EVP_CIPHER_CTX_ctrl(s->ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, packet + tag_off) == 1 &&
          EVP_DecryptFinal_ex(s->ctx, out + 8 + n, &m) == 1) {
        memcpy(out, packet, 8);
        total = (int32_t)tag_off;
      }
    }
  }
  napi_create_int32(env, total, &result);
  return result;
}

static napi_value close_session(napi_env env, napi_callback_info info) {
  napi_value self;
  napi_get_cb_info(env, info, NULL, NULL, &self, NULL);
  GcmSession *s = NULL;
  if (napi_unwrap(env, self, (void **)&s) == napi_ok && s && s->ctx) {
    EVP_CIPHER_CTX_free(s->ctx);
    s->ctx = NULL;
  }
  return NULL;
}

/*
 * sendTo(fd, packet, length, ipv4, port) → bytes sent, or -errno.
 *
 * One sendto(2) on the socket libuv already owns (the viewer's ICE socket, found by its fd) with
 * MSG_DONTWAIT: no request object, no address lookup, no callback, which is most of what Node's
 * dgram.send costs per datagram beyond the system call. UDP datagrams are atomic, so these may
 * interleave with libuv's own sends on the socket. A full socket buffer returns -EAGAIN; the
 * caller then falls back to dgram.send, which queues.
 */
static napi_value send_to(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) {
    napi_throw_type_error(env, NULL, "sendTo(fd, packet, length, ipv4, port)");
    return NULL;
  }
  int32_t fd;
  uint8_t *packet;
  size_t packet_len;
  uint32_t length, ipv4, port;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "fd must be a number");
    return NULL;
  }
  if (!bytes_arg(env, argv[1], "packet must be a Uint8Array", &packet, &packet_len)) return NULL;
  if (!u32_arg(env, argv[2], "length must be a number", &length)) return NULL;
  if (!u32_arg(env, argv[3], "ipv4 must be a number", &ipv4)) return NULL;
  if (!u32_arg(env, argv[4], "port must be a number", &port)) return NULL;
  if (length > packet_len || port == 0 || port > 65535) {
    napi_throw_range_error(env, NULL, "length beyond the packet, or port outside 1-65535");
    return NULL;
  }
  struct sockaddr_in to;
  memset(&to, 0, sizeof(to));
  to.sin_family = AF_INET;
  to.sin_port = htons((uint16_t)port);
  to.sin_addr.s_addr = htonl(ipv4);
  ssize_t n = sendto(fd, packet, length, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof(to));
  napi_create_int32(env, n >= 0 ? (int32_t)n : -errno, &result);
  return result;
}

/*
 * X25519 (RFC 7748) for the DTLS handshakes, with OpenSSL's raw keys: no KeyObject, no PEM or
 * DER. node:crypto's generateKeyPairSync('x25519') followed by a JWK export of the key deadlocks
 * Node 20 now and then: the export holds the key's mutex while it allocates, the allocation runs
 * the garbage collector, and the collector destroys the key-generation job, which takes the same
 * mutex (seen in a node answering 300 viewers, and in 2,000 plain generate-and-export calls).
 *
 * x25519KeyPair(publicOut: Uint8Array(32), secretOut: Uint8Array(32)) → 0, or -1 if OpenSSL failed.
 */
static napi_value x25519_key_pair(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *pub, *sec;
  size_t pub_len, sec_len;
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "x25519KeyPair(publicOut, secretOut)");
    return NULL;
  }
  if (!bytes_arg(env, argv[0], "publicOut must be a Uint8Array", &pub, &pub_len)) return NULL;
  if (!bytes_arg(env, argv[1], "secretOut must be a Uint8Array", &sec, &sec_len)) return NULL;
  if (pub_len != 32 || sec_len != 32) {
    napi_throw_range_error(env, NULL, "X25519 keys are 32 bytes");
    return NULL;
  }
  int32_t rc = -1;
  EVP_PKEY *pkey = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
  size_t pl = 32, sl = 32;
  if (ctx && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &pkey) == 1 &&
      EVP_PKEY_get_raw_public_key(pkey, pub, &pl) == 1 && EVP_PKEY_get_raw_private_key(pkey, sec, &sl) == 1 && pl == 32 && sl == 32)
    rc = 0;
  EVP_PKEY_free(pkey);
  EVP_PKEY_CTX_free(ctx);
  napi_create_int32(env, rc, &result);
  return result;
}

/* x25519(secret: Uint8Array(32), peer: Uint8Array(32), out: Uint8Array(32)) → 0, or -1 (OpenSSL refused: e.g. a low-order peer key). */
static napi_value x25519_derive(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *secret, *peer, *out;
  size_t secret_len, peer_len, out_len;
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "x25519(secret, peer, out)");
    return NULL;
  }
  if (!bytes_arg(env, argv[0], "secret must be a Uint8Array", &secret, &secret_len)) return NULL;
  if (!bytes_arg(env, argv[1], "peer must be a Uint8Array", &peer, &peer_len)) return NULL;
  if (!bytes_arg(env, argv[2], "out must be a Uint8Array", &out, &out_len)) return NULL;
  if (secret_len != 32 || peer_len != 32 || out_len != 32) {
    napi_throw_range_error(env, NULL, "X25519 keys and secrets are 32 bytes");
    return NULL;
  }
  int32_t rc = -1;
  EVP_PKEY *priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
  EVP_PKEY *pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
  EVP_PKEY_CTX *ctx = priv ? EVP_PKEY_CTX_new(priv, NULL) : NULL;
  size_t len = 32;
  if (ctx && pub && EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer(ctx, pub) == 1 && EVP_PKEY_derive(ctx, out, &len) == 1 && len == 32)
    rc = 0;
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(pub);
  EVP_PKEY_free(priv);
  napi_create_int32(env, rc, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"protect", NULL, protect, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, close_session, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  napi_define_class(env, "SrtpGcm", NAPI_AUTO_LENGTH, ctor, NULL, 2, methods, &cls);
  napi_set_named_property(env, exports, "SrtpGcm", cls);
  napi_property_descriptor open_methods[] = {
      {"open", NULL, open_rtcp, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, close_session, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value open_cls;
  napi_define_class(env, "SrtcpGcmOpen", NAPI_AUTO_LENGTH, open_ctor, NULL, 2, open_methods, &open_cls);
  napi_set_named_property(env, exports, "SrtcpGcmOpen", open_cls);
  napi_value fn;
  napi_create_function(env, "sendTo", NAPI_AUTO_LENGTH, send_to, NULL, &fn);
  napi_set_named_property(env, exports, "sendTo", fn);
  napi_create_function(env, "x25519KeyPair", NAPI_AUTO_LENGTH, x25519_key_pair, NULL, &fn);
  napi_set_named_property(env, exports, "x25519KeyPair", fn);
  napi_create_function(env, "x25519", NAPI_AUTO_LENGTH, x25519_derive, NULL, &fn);
  napi_set_named_property(env, exports, "x25519", fn);
  mcu_srtp_fanout_init(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
