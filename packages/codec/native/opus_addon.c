/*
 * Opus decoder/encoder bindings for the mixing hot path.
 *
 * @discordjs/opus allocates a Buffer per call, always conceals 120 ms and has no
 * in-band FEC decode. This addon links the same libopus sources (its deps/binding.gyp
 * `libopus` target) and exposes what a 20 ms mixing tick needs: decode into a caller's
 * Int16Array, FEC decode of the previous frame from the next packet, PLC of an exact
 * duration, and encode into a caller's Uint8Array. Nothing is allocated per call.
 *
 * Error policy: bad arguments (wrong types, sizes, a closed object) throw TypeError /
 * RangeError / Error; encoder and ctl failures throw an Error whose message is
 * opus_strerror() and whose `code` is the OPUS_* name. Bad *packets* are data, not
 * programming errors, so decode() and decodeFec() return the negative libopus error
 * code instead of throwing: the media path never throws per packet (STYLE.md).
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <opus.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
  OpusDecoder *dec; /* NULL once closed */
  int channels;
  int sample_rate;
  int64_t external_bytes;
} Decoder;

typedef struct {
  OpusEncoder *enc; /* NULL once closed */
  int channels;
  int64_t external_bytes;
} Encoder;

/* ---- errors ---------------------------------------------------------------- */

static const char *opus_error_name(int code) {
  switch (code) {
    case OPUS_BAD_ARG: return "OPUS_BAD_ARG";
    case OPUS_BUFFER_TOO_SMALL: return "OPUS_BUFFER_TOO_SMALL";
    case OPUS_INTERNAL_ERROR: return "OPUS_INTERNAL_ERROR";
    case OPUS_INVALID_PACKET: return "OPUS_INVALID_PACKET";
    case OPUS_UNIMPLEMENTED: return "OPUS_UNIMPLEMENTED";
    case OPUS_INVALID_STATE: return "OPUS_INVALID_STATE";
    case OPUS_ALLOC_FAIL: return "OPUS_ALLOC_FAIL";
    default: return "OPUS_UNKNOWN_ERROR";
  }
}

static napi_value throw_opus(napi_env env, int code) {
  napi_throw_error(env, opus_error_name(code), opus_strerror(code));
  return NULL;
}

/* ---- argument helpers (each throws and returns 0 on failure) ---------------- */

static int typed_array_arg(napi_env env, napi_value value, napi_typedarray_type want,
                           const char *what, void **data, size_t *length) {
  napi_typedarray_type type;
  /* napi_get_typedarray_info fails on anything that is not a TypedArray; `data` is
   * already offset by byteOffset. */
  if (napi_get_typedarray_info(env, value, &type, length, data, NULL, NULL) != napi_ok ||
      type != want) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
    return 0;
  }
  return 1;
}

static int int_arg(napi_env env, napi_value value, const char *what, int32_t *out) {
  if (napi_get_value_int32(env, value, out) != napi_ok) { /* napi_number_expected */
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
    return 0;
  }
  return 1;
}

static int bool_arg(napi_env env, napi_value value, const char *what, int32_t *out) {
  bool b;
  if (napi_get_value_bool(env, value, &b) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
    return 0;
  }
  *out = b ? 1 : 0;
  return 1;
}

static napi_value int_result(napi_env env, int32_t v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

static napi_value undefined_result(napi_env env) {
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}

/* Fetches `this`, its wrapped state and up to `n` arguments; throws if too few. */
static void *this_state(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  napi_value self;
  void *state = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, &self, NULL) != napi_ok) return NULL;
  if (argc < n) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "missing arguments");
    return NULL;
  }
  if (napi_unwrap(env, self, &state) != napi_ok || state == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_THIS", "not an Opus object");
    return NULL;
  }
  return state;
}

/* libopus accepts only these output rates. */
static int valid_rate(int32_t rate) {
  return rate == 8000 || rate == 12000 || rate == 16000 || rate == 24000 || rate == 48000;
}

/* ---- packet inspection ------------------------------------------------------- */

/*
 * Whether the first frame of `packet` carries SILK LBRR (in-band FEC) data for the
 * frame before it. libopus 1.5 added opus_packet_has_lbrr(); the bundled 1.3.1 lacks
 * it, so this is the same test: in SILK and hybrid packets the first range-coded
 * symbols are one VAD flag per 20 ms SILK frame and then the LBRR flag (RFC 6716
 * §4.2.3), each coded with probability 1/2, which puts them in the top bits of the
 * first byte.
 */
static int packet_has_lbrr(const unsigned char *packet, int32_t len) {
  const unsigned char *frames[48];
  opus_int16 sizes[48];
  int frame_samples, silk_frames = 1, lbrr, ret;
  if (len < 1) return OPUS_INVALID_PACKET;
  if (packet[0] & 0x80) return 0; /* CELT-only: no SILK layer, no LBRR */
  frame_samples = opus_packet_get_samples_per_frame(packet, 48000);
  if (frame_samples > 960) silk_frames = frame_samples / 960;
  ret = opus_packet_parse(packet, len, NULL, frames, sizes, NULL);
  if (ret <= 0) return ret < 0 ? ret : OPUS_INVALID_PACKET;
  if (sizes[0] == 0) return 0; /* DTX / empty frame */
  lbrr = (frames[0][0] >> (7 - silk_frames)) & 1;
  if (opus_packet_get_nb_channels(packet) == 2)
    lbrr = lbrr || ((frames[0][0] >> (6 - 2 * silk_frames)) & 1);
  return lbrr;
}

static napi_value HasLbrr(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data;
  size_t len;
  napi_value r;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "missing arguments");
    return NULL;
  }
  if (!typed_array_arg(env, argv[0], napi_uint8_array, "packet must be a Uint8Array", &data, &len))
    return NULL;
  napi_get_boolean(env, packet_has_lbrr((const unsigned char *)data, (int32_t)len) == 1, &r);
  return r;
}

/* ---- Decoder ----------------------------------------------------------------- */

static void decoder_release(napi_env env, Decoder *d) {
  if (d->dec == NULL) return;
  opus_decoder_destroy(d->dec);
  d->dec = NULL;
  int64_t ignored;
  napi_adjust_external_memory(env, -d->external_bytes, &ignored);
}

static void decoder_finalize(napi_env env, void *data, void *hint) {
  Decoder *d = (Decoder *)data;
  decoder_release(env, d);
  free(d);
}

static Decoder *open_decoder(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  Decoder *d = (Decoder *)this_state(env, info, n, argv);
  if (d != NULL && d->dec == NULL) {
    napi_throw_error(env, "ERR_CLOSED", "Opus decoder is closed");
    return NULL;
  }
  return d;
}

/* new Decoder(sampleRate, channels) */
static napi_value DecoderNew(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self;
  int32_t rate, channels;
  int err = OPUS_OK;
  if (napi_get_cb_info(env, info, &argc, argv, &self, NULL) != napi_ok) return NULL;
  if (argc < 2) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "new Decoder(sampleRate, channels)");
    return NULL;
  }
  if (!int_arg(env, argv[0], "sampleRate must be a number", &rate) ||
      !int_arg(env, argv[1], "channels must be a number", &channels))
    return NULL;
  if (!valid_rate(rate) || (channels != 1 && channels != 2)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "sampleRate must be 8000/12000/16000/24000/48000 and channels 1 or 2");
    return NULL;
  }
  Decoder *d = (Decoder *)calloc(1, sizeof(Decoder));
  if (d == NULL) return throw_opus(env, OPUS_ALLOC_FAIL);
  d->dec = opus_decoder_create(rate, channels, &err);
  if (err != OPUS_OK || d->dec == NULL) {
    free(d);
    return throw_opus(env, err != OPUS_OK ? err : OPUS_ALLOC_FAIL);
  }
  d->channels = channels;
  d->sample_rate = rate;
  if (napi_wrap(env, self, d, decoder_finalize, NULL, NULL) != napi_ok) {
    opus_decoder_destroy(d->dec);
    free(d);
    napi_throw_error(env, NULL, "napi_wrap failed");
    return NULL;
  }
  /* Tell the GC what each small JS object really holds (~18 KB mono, ~26 KB stereo). */
  d->external_bytes = opus_decoder_get_size(channels);
  int64_t ignored;
  napi_adjust_external_memory(env, d->external_bytes, &ignored);
  return self;
}

/* decode(packet: Uint8Array, out: Int16Array): samples per channel, or a negative
 * libopus error code for a packet libopus rejects. `out` bounds the frame size. */
static napi_value DecoderDecode(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void *packet, *out;
  size_t packet_len, out_len;
  Decoder *d = open_decoder(env, info, 2, argv);
  if (d == NULL) return NULL;
  if (!typed_array_arg(env, argv[0], napi_uint8_array, "packet must be a Uint8Array", &packet, &packet_len) ||
      !typed_array_arg(env, argv[1], napi_int16_array, "out must be an Int16Array", &out, &out_len))
    return NULL;
  /* A zero-length packet would make opus_decode run PLC; an Opus packet has at least
   * its TOC byte (RFC 6716 §3.1), so an empty one is invalid input here. */
  if (packet_len == 0 || packet_len > INT32_MAX) return int_result(env, OPUS_INVALID_PACKET);
  int max_samples = (int)(out_len / (size_t)d->channels);
  int n = opus_decode(d->dec, (const unsigned char *)packet, (opus_int32)packet_len,
                      (opus_int16 *)out, max_samples, 0);
  return int_result(env, n);
}

static int check_frame(napi_env env, int channels, size_t out_len, int32_t frame_samples) {
  if (frame_samples <= 0 || (size_t)frame_samples * (size_t)channels > out_len) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "frameSamples must be > 0 and fit in out");
    return 0;
  }
  return 1;
}

/* FEC and PLC must cover whole 2.5 ms units (opus_decode returns OPUS_BAD_ARG otherwise). */
static int check_lost_frame(napi_env env, const Decoder *d, size_t out_len, int32_t frame_samples) {
  if (!check_frame(env, d->channels, out_len, frame_samples)) return 0;
  if (frame_samples % (d->sample_rate / 400) != 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "frameSamples must be a multiple of 2.5 ms");
    return 0;
  }
  return 1;
}

/* decodeFec(nextPacket, out, frameSamples): recovers the frame lost just before
 * nextPacket from nextPacket's LBRR data. Returns frameSamples, 0 when nextPacket
 * carries no LBRR for it (decoder state untouched: conceal instead), or a negative
 * libopus error code for a rejected packet. */
static napi_value DecoderDecodeFec(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  void *packet, *out;
  size_t packet_len, out_len;
  int32_t frame_samples;
  Decoder *d = open_decoder(env, info, 3, argv);
  if (d == NULL) return NULL;
  if (!typed_array_arg(env, argv[0], napi_uint8_array, "nextPacket must be a Uint8Array", &packet, &packet_len) ||
      !typed_array_arg(env, argv[1], napi_int16_array, "out must be an Int16Array", &out, &out_len) ||
      !int_arg(env, argv[2], "frameSamples must be a number", &frame_samples) ||
      !check_lost_frame(env, d, out_len, frame_samples))
    return NULL;
  if (packet_len == 0 || packet_len > INT32_MAX) return int_result(env, OPUS_INVALID_PACKET);
  int lbrr = packet_has_lbrr((const unsigned char *)packet, (int32_t)packet_len);
  if (lbrr < 0) return int_result(env, lbrr);
  /* libopus would silently conceal instead when the packet is CELT-only, has no LBRR,
   * or is longer than the gap; report "no FEC" so the caller knows which it got. */
  if (lbrr == 0) return int_result(env, 0);
  if (frame_samples < opus_packet_get_samples_per_frame((const unsigned char *)packet, d->sample_rate))
    return int_result(env, 0);
  int n = opus_decode(d->dec, (const unsigned char *)packet, (opus_int32)packet_len,
                      (opus_int16 *)out, frame_samples, 1);
  return int_result(env, n);
}

/* conceal(out, frameSamples): packet-loss concealment for exactly frameSamples
 * (a multiple of 2.5 ms), continuing from the decoder's last output and decaying. */
static napi_value DecoderConceal(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void *out;
  size_t out_len;
  int32_t frame_samples;
  Decoder *d = open_decoder(env, info, 2, argv);
  if (d == NULL) return NULL;
  if (!typed_array_arg(env, argv[0], napi_int16_array, "out must be an Int16Array", &out, &out_len) ||
      !int_arg(env, argv[1], "frameSamples must be a number", &frame_samples) ||
      !check_lost_frame(env, d, out_len, frame_samples))
    return NULL;
  int n = opus_decode(d->dec, NULL, 0, (opus_int16 *)out, frame_samples, 0);
  if (n < 0) return throw_opus(env, n);
  return int_result(env, n);
}

static napi_value DecoderReset(napi_env env, napi_callback_info info) {
  Decoder *d = open_decoder(env, info, 0, NULL);
  if (d == NULL) return NULL;
  int err = opus_decoder_ctl(d->dec, OPUS_RESET_STATE);
  if (err != OPUS_OK) return throw_opus(env, err);
  return undefined_result(env);
}

static napi_value DecoderClose(napi_env env, napi_callback_info info) {
  Decoder *d = (Decoder *)this_state(env, info, 0, NULL);
  if (d == NULL) return NULL;
  decoder_release(env, d);
  return undefined_result(env);
}

/* ---- Encoder ----------------------------------------------------------------- */

static void encoder_release(napi_env env, Encoder *e) {
  if (e->enc == NULL) return;
  opus_encoder_destroy(e->enc);
  e->enc = NULL;
  int64_t ignored;
  napi_adjust_external_memory(env, -e->external_bytes, &ignored);
}

static void encoder_finalize(napi_env env, void *data, void *hint) {
  Encoder *e = (Encoder *)data;
  encoder_release(env, e);
  free(e);
}

static Encoder *open_encoder(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  Encoder *e = (Encoder *)this_state(env, info, n, argv);
  if (e != NULL && e->enc == NULL) {
    napi_throw_error(env, "ERR_CLOSED", "Opus encoder is closed");
    return NULL;
  }
  return e;
}

/* new Encoder(sampleRate, channels, application) with application an
 * OPUS_APPLICATION_* value. */
static napi_value EncoderNew(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self;
  int32_t rate, channels, application;
  int err = OPUS_OK;
  if (napi_get_cb_info(env, info, &argc, argv, &self, NULL) != napi_ok) return NULL;
  if (argc < 3) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "new Encoder(sampleRate, channels, application)");
    return NULL;
  }
  if (!int_arg(env, argv[0], "sampleRate must be a number", &rate) ||
      !int_arg(env, argv[1], "channels must be a number", &channels) ||
      !int_arg(env, argv[2], "application must be a number", &application))
    return NULL;
  if (!valid_rate(rate) || (channels != 1 && channels != 2)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "sampleRate must be 8000/12000/16000/24000/48000 and channels 1 or 2");
    return NULL;
  }
  Encoder *e = (Encoder *)calloc(1, sizeof(Encoder));
  if (e == NULL) return throw_opus(env, OPUS_ALLOC_FAIL);
  e->enc = opus_encoder_create(rate, channels, application, &err);
  if (err != OPUS_OK || e->enc == NULL) {
    free(e);
    return throw_opus(env, err != OPUS_OK ? err : OPUS_ALLOC_FAIL);
  }
  e->channels = channels;
  if (napi_wrap(env, self, e, encoder_finalize, NULL, NULL) != napi_ok) {
    opus_encoder_destroy(e->enc);
    free(e);
    napi_throw_error(env, NULL, "napi_wrap failed");
    return NULL;
  }
  e->external_bytes = opus_encoder_get_size(channels);
  int64_t ignored;
  napi_adjust_external_memory(env, e->external_bytes, &ignored);
  return self;
}

/* encode(pcm, frameSamples, out): bytes written to out. Throws on a frame size libopus
 * does not support (2.5/5/10/20/40/60/80/100/120 ms) or an out buffer too small. */
static napi_value EncoderEncode(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  void *pcm, *out;
  size_t pcm_len, out_len;
  int32_t frame_samples;
  Encoder *e = open_encoder(env, info, 3, argv);
  if (e == NULL) return NULL;
  if (!typed_array_arg(env, argv[0], napi_int16_array, "pcm must be an Int16Array", &pcm, &pcm_len) ||
      !int_arg(env, argv[1], "frameSamples must be a number", &frame_samples) ||
      !typed_array_arg(env, argv[2], napi_uint8_array, "out must be a Uint8Array", &out, &out_len) ||
      !check_frame(env, e->channels, pcm_len, frame_samples))
    return NULL;
  if (out_len > INT32_MAX) out_len = INT32_MAX;
  int n = opus_encode(e->enc, (const opus_int16 *)pcm, frame_samples, (unsigned char *)out,
                      (opus_int32)out_len);
  if (n < 0) return throw_opus(env, n);
  return int_result(env, n);
}

/* One setter per encoder ctl; each takes a single int (or bool) argument. */
#define ENCODER_SETTER(NAME, ARG, CTL)                                              \
  static napi_value NAME(napi_env env, napi_callback_info info) {                  \
    napi_value argv[1];                                                            \
    int32_t v;                                                                     \
    Encoder *e = open_encoder(env, info, 1, argv);                                 \
    if (e == NULL || !ARG(env, argv[0], #NAME ": invalid argument", &v)) return NULL; \
    int err = opus_encoder_ctl(e->enc, CTL(v));                                    \
    if (err != OPUS_OK) return throw_opus(env, err);                               \
    return undefined_result(env);                                                  \
  }

ENCODER_SETTER(EncoderSetBitrate, int_arg, OPUS_SET_BITRATE)
ENCODER_SETTER(EncoderSetInbandFec, bool_arg, OPUS_SET_INBAND_FEC)
ENCODER_SETTER(EncoderSetPacketLossPerc, int_arg, OPUS_SET_PACKET_LOSS_PERC)
ENCODER_SETTER(EncoderSetComplexity, int_arg, OPUS_SET_COMPLEXITY)
ENCODER_SETTER(EncoderSetDtx, bool_arg, OPUS_SET_DTX)
ENCODER_SETTER(EncoderSetApplication, int_arg, OPUS_SET_APPLICATION)
ENCODER_SETTER(EncoderSetSignal, int_arg, OPUS_SET_SIGNAL)
ENCODER_SETTER(EncoderSetVbr, bool_arg, OPUS_SET_VBR)
ENCODER_SETTER(EncoderSetMaxBandwidth, int_arg, OPUS_SET_MAX_BANDWIDTH)

static napi_value EncoderLookahead(napi_env env, napi_callback_info info) {
  Encoder *e = open_encoder(env, info, 0, NULL);
  if (e == NULL) return NULL;
  opus_int32 v = 0;
  int err = opus_encoder_ctl(e->enc, OPUS_GET_LOOKAHEAD(&v));
  if (err != OPUS_OK) return throw_opus(env, err);
  return int_result(env, v);
}

static napi_value EncoderReset(napi_env env, napi_callback_info info) {
  Encoder *e = open_encoder(env, info, 0, NULL);
  if (e == NULL) return NULL;
  int err = opus_encoder_ctl(e->enc, OPUS_RESET_STATE);
  if (err != OPUS_OK) return throw_opus(env, err);
  return undefined_result(env);
}

static napi_value EncoderClose(napi_env env, napi_callback_info info) {
  Encoder *e = (Encoder *)this_state(env, info, 0, NULL);
  if (e == NULL) return NULL;
  encoder_release(env, e);
  return undefined_result(env);
}

/* ---- module ------------------------------------------------------------------ */

#define METHOD(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_default, NULL }

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor decoder_methods[] = {
    METHOD("decode", DecoderDecode),
    METHOD("decodeFec", DecoderDecodeFec),
    METHOD("conceal", DecoderConceal),
    METHOD("reset", DecoderReset),
    METHOD("close", DecoderClose),
  };
  napi_property_descriptor encoder_methods[] = {
    METHOD("encode", EncoderEncode),
    METHOD("setBitrate", EncoderSetBitrate),
    METHOD("setInbandFec", EncoderSetInbandFec),
    METHOD("setPacketLossPerc", EncoderSetPacketLossPerc),
    METHOD("setComplexity", EncoderSetComplexity),
    METHOD("setDtx", EncoderSetDtx),
    METHOD("setApplication", EncoderSetApplication),
    METHOD("setSignal", EncoderSetSignal),
    METHOD("setVbr", EncoderSetVbr),
    METHOD("setMaxBandwidth", EncoderSetMaxBandwidth),
    METHOD("lookahead", EncoderLookahead),
    METHOD("reset", EncoderReset),
    METHOD("close", EncoderClose),
  };
  napi_value decoder_class, encoder_class, has_lbrr, version;
  if (napi_define_class(env, "Decoder", NAPI_AUTO_LENGTH, DecoderNew, NULL,
                        sizeof(decoder_methods) / sizeof(decoder_methods[0]), decoder_methods,
                        &decoder_class) != napi_ok ||
      napi_define_class(env, "Encoder", NAPI_AUTO_LENGTH, EncoderNew, NULL,
                        sizeof(encoder_methods) / sizeof(encoder_methods[0]), encoder_methods,
                        &encoder_class) != napi_ok ||
      napi_create_function(env, "hasLbrr", NAPI_AUTO_LENGTH, HasLbrr, NULL, &has_lbrr) != napi_ok ||
      napi_create_string_utf8(env, opus_get_version_string(), NAPI_AUTO_LENGTH, &version) != napi_ok)
    return NULL;
  napi_set_named_property(env, exports, "Decoder", decoder_class);
  napi_set_named_property(env, exports, "Encoder", encoder_class);
  napi_set_named_property(env, exports, "hasLbrr", has_lbrr);
  napi_set_named_property(env, exports, "opusVersion", version);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
