/**
 * Node-to-node protection of the program feed: AES-128-GCM in the shape of SRTP AEAD (RFC 7714).
 *
 * RTP (RFC 7714 §7–8):
 * ```
 * | RTP header (12 + 4·CC + extension) |  payload (+ padding)  | tag (16) | key id (4) | ROC (4) |
 * |<------------ AAD, in clear ------->|<----- encrypted ----->|
 * IV = salt XOR (0x0000 ‖ SSRC ‖ ROC ‖ SEQ)                               (§8.1)
 * ```
 * The header stays readable so a relay can forward, buffer and NACK by (SSRC, seq) without
 * touching the payload. The rollover counter is carried in clear after the tag (as RFC 4771 does
 * for SRTP), so a relay that joins or re-parents in the middle of a long event can decrypt from the
 * first packet; estimating it from the sequence number alone (RFC 3711 §3.3.1) only works for a
 * receiver that has seen the stream since its start. It is authenticated through the IV: a wrong
 * ROC gives a wrong IV and the tag fails.
 *
 * RTCP (RFC 7714 §9, with the E flag always set):
 * ```
 * | V P RC PT length | sender SSRC |  rest of the compound  | tag (16) | key id (4) | E ‖ SRTCP index (4) |
 * |<------ AAD, in clear -------->|<----- encrypted ------>|                       |<------ AAD ------->|
 * IV = salt XOR (0x0000 ‖ SSRC ‖ 0x0000 ‖ 0 ‖ index)                     (§9.1)
 * ```
 *
 * The key id (big-endian u32, `FeedKey.id`) names the master key the packet is sealed with, as the
 * MKI of SRTP does (RFC 3711 §3.1, RFC 7714 §7): in clear and not itself authenticated, since the
 * key it selects authenticates the packet: a changed id selects another key (or none) and the
 * packet is refused. It lets a receiver pick the one key to try during a rotation, and tell a
 * packet under a key it does not hold (`unknown_key`: not learnt yet, or retired) from a forgery
 * (`bad_tag`).
 *
 * Replay protection per SSRC (RTP) and per sender SSRC (RTCP) with a sliding window (RFC 3711
 * §3.3.2); state is created only for packets that authenticated, so forged packets cannot fill it.
 *
 * Keys: RTP and RTCP use different session keys derived from the master key and salt with HKDF
 * (like the SRTP key derivation of RFC 3711 §4.3): with one key, an SR sent with a media SSRC as
 * sender SSRC would reuse the IV of an RTP packet of that SSRC, which breaks GCM.
 *
 * Node's crypto API creates a cipher context per call; that is one small allocation per packet
 * per hop (not per child), the price of having no native dependency.
 */
import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, randomInt } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { parseRtp } from '@mcu/rtp';
import type { RtpHeader } from '@mcu/rtp';
import { ReplayWindow } from './ReplayWindow.js';

/** A master key of the event's feed; `id` names it for rotation and logs. */
export interface FeedKey {
  id: number;
  /** 16 bytes. */
  key: Uint8Array;
  /** 12 bytes. */
  salt: Uint8Array;
}

/** Why a protected packet was refused. */
export type CipherDropReason =
  /** shorter than a header plus tag and trailer */
  | 'too_short'
  /** not RTP/RTCP version 2, or a header that does not fit */
  | 'bad_header'
  /** authentication failed under the key its key id names: tampered, truncated, or forged */
  | 'bad_tag'
  /** its key id names no key this cipher holds: not learnt yet, or retired */
  | 'unknown_key'
  /** authenticated before, or older than the replay window */
  | 'replay'
  /** authentic, but the plaintext is not valid RTP (bad padding) */
  | 'bad_rtp'
  /** more sources than `maxSources` */
  | 'too_many_sources';

export interface FeedCipherOptions {
  /** Packets in each replay window (RFC 3711 §3.3.2 asks for at least 64). */
  replayWindowPackets?: number;
  /** RTP SSRCs and RTCP senders tracked at most, each. */
  maxSources?: number;
}

/** GCM tag, RFC 7714 §7 (AEAD_AES_128_GCM, 16 octets). */
export const FEED_TAG_BYTES = 16;
/** Bytes of the key id after the tag. */
export const FEED_KEY_ID_BYTES = 4;
/** Bytes `protect`/`protectRtcp` add to a packet: tag, key id, and the ROC or SRTCP index word. */
export const FEED_OVERHEAD_BYTES = FEED_TAG_BYTES + FEED_KEY_ID_BYTES + 4;
/** Keys a cipher holds at once: the one it sends with, and those it still or already accepts. */
export const FEED_MAX_KEYS = 4;

const RTCP_HEADER_BYTES = 8;
const E_FLAG = 0x8000_0000;

interface SessionKeys {
  id: number;
  rtpKey: KeyObject;
  rtpSalt: Uint8Array;
  rtcpKey: KeyObject;
  rtcpSalt: Uint8Array;
}

function deriveSessionKeys(master: FeedKey): SessionKeys {
  if (master.key.length !== 16) throw new RangeError(`feed key ${master.id}: key must be 16 bytes, got ${master.key.length}`);
  if (master.salt.length !== 12) throw new RangeError(`feed key ${master.id}: salt must be 12 bytes, got ${master.salt.length}`);
  const derive = (label: string) => new Uint8Array(hkdfSync('sha256', master.key, master.salt, `mcu feed ${label}`, 28));
  const rtp = derive('rtp');
  const rtcp = derive('rtcp');
  return {
    id: master.id,
    rtpKey: createSecretKey(rtp.subarray(0, 16)),
    rtpSalt: rtp.slice(16, 28),
    rtcpKey: createSecretKey(rtcp.subarray(0, 16)),
    rtcpSalt: rtcp.slice(16, 28),
  };
}

/** The sealing key first; ids must be distinct u32s. Throws RangeError otherwise. */
function deriveKeySet(current: FeedKey, accepted: readonly FeedKey[]): SessionKeys[] {
  const all = [current, ...accepted];
  if (all.length > FEED_MAX_KEYS) throw new RangeError(`a feed cipher holds at most ${FEED_MAX_KEYS} keys, got ${all.length}`);
  const ids = new Set<number>();
  for (const k of all) {
    if (!Number.isInteger(k.id) || k.id < 0 || k.id > 0xffff_ffff) throw new RangeError(`feed key id ${k.id} is not a u32`);
    if (ids.has(k.id)) throw new RangeError(`feed key id ${k.id} given twice`);
    ids.add(k.id);
  }
  return all.map(deriveSessionKeys);
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

function putU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

/** Bytes of the RTP header (fixed part, CSRCs, extension) that fit in `length`, or -1. */
function rtpHeaderLength(b: Uint8Array, length: number): number {
  if (length < 12 || b[0] >> 6 !== 2) return -1;
  let h = 12 + (b[0] & 0x0f) * 4;
  if ((b[0] & 0x10) !== 0) {
    if (h + 4 > length) return -1;
    h += 4 + ((b[h + 2] << 8) | b[h + 3]) * 4;
  }
  return h <= length ? h : -1;
}

/** IV = salt XOR (0x0000 ‖ ssrc ‖ high ‖ low16), RFC 7714 §8.1 (RTP) and §9.1 (RTCP). */
function writeIv(iv: Uint8Array, salt: Uint8Array, ssrc: number, high: number, low: number, lowBytes: 2 | 4): void {
  iv[0] = salt[0];
  iv[1] = salt[1];
  iv[2] = salt[2] ^ (ssrc >>> 24);
  iv[3] = salt[3] ^ ((ssrc >>> 16) & 0xff);
  iv[4] = salt[4] ^ ((ssrc >>> 8) & 0xff);
  iv[5] = salt[5] ^ (ssrc & 0xff);
  if (lowBytes === 2) {
    // ROC (32) ‖ SEQ (16)
    iv[6] = salt[6] ^ (high >>> 24);
    iv[7] = salt[7] ^ ((high >>> 16) & 0xff);
    iv[8] = salt[8] ^ ((high >>> 8) & 0xff);
    iv[9] = salt[9] ^ (high & 0xff);
    iv[10] = salt[10] ^ ((low >>> 8) & 0xff);
    iv[11] = salt[11] ^ (low & 0xff);
  } else {
    // 0x0000 ‖ 0 ‖ 31-bit index
    iv[6] = salt[6];
    iv[7] = salt[7];
    iv[8] = salt[8] ^ ((low >>> 24) & 0x7f);
    iv[9] = salt[9] ^ ((low >>> 16) & 0xff);
    iv[10] = salt[10] ^ ((low >>> 8) & 0xff);
    iv[11] = salt[11] ^ (low & 0xff);
  }
}

/** The sender's side of one RTP stream: the rollover counter, RFC 3711 §3.3.1. */
interface SendState {
  lastSeq: number;
  roc: number;
}

export class FeedCipher {
  readonly #replayWindowPackets: number;
  readonly #maxSources: number;
  /** `#keys[0]` seals; every entry opens what carries its id. */
  #keys: SessionKeys[];
  #lastUnknownKeyId = -1;
  /** The key ids of the last two RTP packets authenticated under different keys. */
  #receivedKeyId = -1;
  #priorReceivedKeyId = -1;
  /** Times the RTP packets authenticated moved to a key id other than the last two. */
  keySwitches = 0;
  readonly #iv = new Uint8Array(12);
  readonly #rtcpAad = new Uint8Array(RTCP_HEADER_BYTES + 4);
  readonly #send = new Map<number, SendState>();
  readonly #rtpReplay = new Map<number, ReplayWindow>();
  readonly #rtcpReplay = new Map<number, ReplayWindow>();
  readonly #rtcpIndex = new Map<number, number>();

  /** `accepted`: further keys `unprotect` opens (the previous one during a rotation, the announced next one). */
  constructor(current: FeedKey, accepted: readonly FeedKey[] = [], opts: FeedCipherOptions = {}) {
    this.#replayWindowPackets = opts.replayWindowPackets ?? 1024;
    this.#maxSources = opts.maxSources ?? 4096;
    ReplayWindow.validateSize(this.#replayWindowPackets); // now, rather than on the first packet
    this.#keys = deriveKeySet(current, accepted);
  }

  /**
   * Key rotation: `protect` seals with `current` from now on; `unprotect` opens packets whose key
   * id names `current` or one of `accepted` (at most FEED_MAX_KEYS in all), and refuses any other
   * id as `unknown_key`. Replay state is kept.
   */
  setKeys(current: FeedKey, accepted: readonly FeedKey[] = []): void {
    this.#keys = deriveKeySet(current, accepted);
  }

  /** Id of the key `protect` uses. */
  get currentKeyId(): number {
    return this.#keys[0].id;
  }

  /** Ids of every key this cipher opens, the sealing one first. */
  get keyIds(): number[] {
    return this.#keys.map((k) => k.id);
  }

  /** Id of the key the last authenticated RTP packet was sealed with, -1 before the first. */
  get receivedKeyId(): number {
    return this.#receivedKeyId;
  }

  /** The key id of the last packet refused as `unknown_key`, -1 before the first. */
  get lastUnknownKeyId(): number {
    return this.#lastUnknownKeyId;
  }

  /** The key a packet's id names, or null (remembered for `lastUnknownKeyId`). */
  #keyFor(id: number): SessionKeys | null {
    const keys = this.#keys;
    for (let i = 0; i < keys.length; i++) if (keys[i].id === id) return keys[i];
    this.#lastUnknownKeyId = id;
    return null;
  }

  // -------------------------------------------------------------------------------------------
  // RTP

  /**
   * Protects the first `length` bytes of a plaintext RTP packet into `out` (which may be
   * `packet` itself) and returns the protected length, `length + FEED_OVERHEAD_BYTES`.
   * Throws RangeError when the input is not an RTP packet or `out` is too small: this encrypts
   * our own output, which the caller has parsed already.
   */
  protect(packet: Uint8Array, length: number, out: Uint8Array): number {
    const h = rtpHeaderLength(packet, length);
    if (h < 0 || length > packet.length) throw new RangeError('protect: not an RTP packet');
    const total = length + FEED_OVERHEAD_BYTES;
    if (out.length < total) throw new RangeError(`protect: the output needs ${total} bytes, has ${out.length}`);
    const seq = (packet[2] << 8) | packet[3];
    const ssrc = u32(packet, 8);
    const roc = this.#rolloverCounter(ssrc, seq);
    const keys = this.#keys[0];
    writeIv(this.#iv, keys.rtpSalt, ssrc, roc, seq, 2);
    const cipher = createCipheriv('aes-128-gcm', keys.rtpKey, this.#iv, { authTagLength: FEED_TAG_BYTES });
    cipher.setAAD(packet.subarray(0, h));
    const body = cipher.update(packet.subarray(h, length));
    cipher.final();
    const tag = cipher.getAuthTag();
    if (out !== packet) out.set(packet.subarray(0, h), 0);
    out.set(body, h);
    out.set(tag, length);
    putU32(out, length + FEED_TAG_BYTES, keys.id);
    putU32(out, length + FEED_TAG_BYTES + FEED_KEY_ID_BYTES, roc);
    return total;
  }

  /** RFC 3711 §3.3.1 on the sending side: the ROC counts wraps of the sequence number. */
  #rolloverCounter(ssrc: number, seq: number): number {
    let s = this.#send.get(ssrc);
    if (s === undefined) {
      s = { lastSeq: seq, roc: 0 };
      this.#send.set(ssrc, s);
      return 0;
    }
    const d = ((seq - s.lastSeq) << 16) >> 16;
    if (d > 0) {
      if (seq < s.lastSeq) s.roc = (s.roc + 1) >>> 0;
      s.lastSeq = seq;
      return s.roc;
    }
    // A packet from before the latest one (a resend of an older seq): the ROC it was sent with.
    return seq > s.lastSeq && s.roc > 0 ? s.roc - 1 : s.roc;
  }

  /**
   * Authenticates and decrypts a protected RTP packet (the first `length` bytes of `packet`) into
   * `out` and returns the plaintext length, or why it was refused. With `header`, the plaintext
   * is also parsed into it. Never throws.
   */
  unprotect(packet: Uint8Array, length: number, out: Uint8Array, header?: RtpHeader): number | CipherDropReason {
    return this.#unprotectRtp(packet, length, out, header, true);
  }

  /**
   * Decrypts a copy of a packet this cipher has accepted before (a cached group of pictures
   * replayed to a new local consumer): authenticated like `unprotect`, without the replay check.
   */
  unprotectCached(packet: Uint8Array, length: number, out: Uint8Array, header?: RtpHeader): number | CipherDropReason {
    return this.#unprotectRtp(packet, length, out, header, false);
  }

  #unprotectRtp(packet: Uint8Array, length: number, out: Uint8Array, header: RtpHeader | undefined, replay: boolean): number | CipherDropReason {
    const len = length < packet.length ? length : packet.length;
    if (!(len >= 12 + FEED_OVERHEAD_BYTES)) return 'too_short';
    const end = len - FEED_OVERHEAD_BYTES;
    const h = rtpHeaderLength(packet, end);
    if (h < 0) return 'bad_header';
    if (out.length < end) return 'too_short';
    const seq = (packet[2] << 8) | packet[3];
    const ssrc = u32(packet, 8);
    const roc = u32(packet, len - 4);
    const index = roc * 65536 + seq;
    const window = this.#rtpReplay.get(ssrc);
    if (replay && window !== undefined && !window.check(index)) return 'replay';

    const keys = this.#keyFor(u32(packet, len - 8));
    if (keys === null) return 'unknown_key';
    const aad = packet.subarray(0, h);
    const body = packet.subarray(h, end);
    const tag = packet.subarray(end, end + FEED_TAG_BYTES);
    writeIv(this.#iv, keys.rtpSalt, ssrc, roc, seq, 2);
    const plain = open(keys.rtpKey, this.#iv, aad, body, tag);
    if (plain === null) return 'bad_tag';
    if (keys.id !== this.#receivedKeyId) {
      // Neither the first packet nor a late one from before the switch is a switch.
      if (this.#receivedKeyId !== -1 && keys.id !== this.#priorReceivedKeyId) this.keySwitches++;
      this.#priorReceivedKeyId = this.#receivedKeyId;
      this.#receivedKeyId = keys.id;
    }

    if (replay) {
      if (window !== undefined) window.accept(index);
      else {
        if (this.#rtpReplay.size >= this.#maxSources) return 'too_many_sources';
        const w = new ReplayWindow(this.#replayWindowPackets);
        w.accept(index);
        this.#rtpReplay.set(ssrc, w);
      }
    }
    if (out !== packet) out.set(aad, 0);
    out.set(plain, h);
    if (header !== undefined && parseRtp(out, header, end) !== null) return 'bad_rtp';
    return end;
  }

  // -------------------------------------------------------------------------------------------
  // RTCP

  /**
   * Protects an RTCP (compound) packet into `out` and returns the protected length,
   * `length + FEED_OVERHEAD_BYTES`. The SRTCP index counts per sender SSRC (bytes 4..7) from a
   * random start, so a restarted sender that kept its SSRC and key is unlikely to reuse an IV.
   * Throws RangeError when the input is not RTCP or `out` is too small.
   */
  protectRtcp(packet: Uint8Array, length: number, out: Uint8Array): number {
    if (length < RTCP_HEADER_BYTES || length > packet.length || packet[0] >> 6 !== 2) throw new RangeError('protectRtcp: not an RTCP packet');
    const total = length + FEED_OVERHEAD_BYTES;
    if (out.length < total) throw new RangeError(`protectRtcp: the output needs ${total} bytes, has ${out.length}`);
    const ssrc = u32(packet, 4);
    let index = this.#rtcpIndex.get(ssrc);
    index = index === undefined ? randomInt(0, 0x4000_0000) : (index + 1) & 0x7fff_ffff;
    this.#rtcpIndex.set(ssrc, index);
    const keys = this.#keys[0];
    writeIv(this.#iv, keys.rtcpSalt, ssrc, 0, index, 4);
    const aad = this.#rtcpAad;
    aad.set(packet.subarray(0, RTCP_HEADER_BYTES), 0);
    putU32(aad, RTCP_HEADER_BYTES, (E_FLAG | index) >>> 0);
    const cipher = createCipheriv('aes-128-gcm', keys.rtcpKey, this.#iv, { authTagLength: FEED_TAG_BYTES });
    cipher.setAAD(aad);
    const body = cipher.update(packet.subarray(RTCP_HEADER_BYTES, length));
    cipher.final();
    if (out !== packet) out.set(packet.subarray(0, RTCP_HEADER_BYTES), 0);
    out.set(body, RTCP_HEADER_BYTES);
    out.set(cipher.getAuthTag(), length);
    putU32(out, length + FEED_TAG_BYTES, keys.id);
    putU32(out, length + FEED_TAG_BYTES + FEED_KEY_ID_BYTES, (E_FLAG | index) >>> 0);
    return total;
  }

  /** Authenticates and decrypts a protected RTCP packet into `out`; returns its length or why not. Never throws. */
  unprotectRtcp(packet: Uint8Array, length: number, out: Uint8Array): number | CipherDropReason {
    const len = length < packet.length ? length : packet.length;
    if (!(len >= RTCP_HEADER_BYTES + FEED_OVERHEAD_BYTES)) return 'too_short';
    if (packet[0] >> 6 !== 2) return 'bad_header';
    const end = len - FEED_OVERHEAD_BYTES;
    if (out.length < end) return 'too_short';
    const word = u32(packet, len - 4);
    if ((word & E_FLAG) === 0) return 'bad_header'; // we always encrypt
    const index = word & 0x7fff_ffff;
    const ssrc = u32(packet, 4);
    const window = this.#rtcpReplay.get(ssrc);
    if (window !== undefined && !window.check(index)) return 'replay';

    const aad = this.#rtcpAad;
    aad.set(packet.subarray(0, RTCP_HEADER_BYTES), 0);
    putU32(aad, RTCP_HEADER_BYTES, word);
    const keys = this.#keyFor(u32(packet, len - 8));
    if (keys === null) return 'unknown_key';
    const body = packet.subarray(RTCP_HEADER_BYTES, end);
    const tag = packet.subarray(end, end + FEED_TAG_BYTES);
    writeIv(this.#iv, keys.rtcpSalt, ssrc, 0, index, 4);
    const plain = open(keys.rtcpKey, this.#iv, aad, body, tag);
    if (plain === null) return 'bad_tag';

    if (window !== undefined) window.accept(index);
    else {
      if (this.#rtcpReplay.size >= this.#maxSources) return 'too_many_sources';
      const w = new ReplayWindow(this.#replayWindowPackets);
      w.accept(index);
      this.#rtcpReplay.set(ssrc, w);
    }
    if (out !== packet) out.set(packet.subarray(0, RTCP_HEADER_BYTES), 0);
    out.set(plain, RTCP_HEADER_BYTES);
    return end;
  }

  /** Forgets the replay and rollover state of an RTP stream that ended (BYE, new SSRC). */
  forgetStream(ssrc: number): void {
    this.#send.delete(ssrc >>> 0);
    this.#rtpReplay.delete(ssrc >>> 0);
  }
}

/** GCM decryption; null when the tag does not verify (OpenSSL reports that by throwing in `final`). */
function open(key: KeyObject, iv: Uint8Array, aad: Uint8Array, body: Uint8Array, tag: Uint8Array): Buffer | null {
  try {
    const d = createDecipheriv('aes-128-gcm', key, iv, { authTagLength: FEED_TAG_BYTES });
    d.setAAD(aad);
    d.setAuthTag(tag);
    const plain = d.update(body);
    d.final();
    return plain;
  } catch {
    return null;
  }
}
