/**
 * From RTP packets of one video stream to whole encoded frames: VP8 frames (RFC 7741) or H.264
 * Annex-B access units (RFC 6184, packetization-mode 1).
 *
 * Packets are filed by extended sequence number into a ring of preallocated slots (the payload is
 * copied, so the caller's receive buffer can be reused at once) and consumed strictly in sequence
 * order, so packets reordered within the window cost nothing but a short wait. A frame is the
 * packets with one timestamp, from a packet that starts a frame (VP8: S = 1 and PID = 0; H.264:
 * an SPS/PPS/SEI/AUD or the first slice of a picture) to the one with the marker bit.
 *
 * A packet that has not arrived when `maxReorderPackets` later packets have, or `maxReorderMs`
 * after the gap was seen, is lost: the frame it belongs to is dropped and, because every later
 * frame references what is now missing, so is everything up to the next keyframe. While waiting,
 * `needKeyframe` is true and `onKeyframeNeeded` is called (on the loss and on every frame dropped
 * for want of a keyframe) so that the caller sends a PLI/FIR with its own rate limit. The stream
 * also starts in that state: a decoder can only begin at a keyframe.
 *
 * Hot path: `push` parses the header into a reused `RtpHeader`, copies the payload into its slot
 * and allocates nothing; a completed frame is handed out as a view of a reused buffer.
 */
import { RtpHeader, parseRtp } from '../RtpPacket.js';
import { SequenceUnwrapper } from '../Sequence.js';
import type { VideoCodec } from '../Keyframe.js';
import { Vp8Descriptor, parseVp8Descriptor, readVp8Dimensions } from './Vp8.js';
import { H264NalType, isFirstSliceOfPicture } from './H264.js';
import { readH264SpsDimensions } from './H264Sps.js';

export interface VideoFrameAssemblerOptions {
  codec: VideoCodec;
  /** Packets the reorder window can hold (a power of two); also bounds a gap's length. */
  capacity?: number;
  /** A missing packet is lost once this many packets after it have arrived. */
  maxReorderPackets?: number;
  /** ...or once it has been missing this long. */
  maxReorderMs?: number;
  /** Largest payload stored; larger packets are dropped (and count as loss). */
  maxPacketBytes?: number;
  /** Largest frame assembled; larger ones are dropped. */
  maxFrameBytes?: number;
  /** Monotonic milliseconds, used when `push`/`poll` get no time. */
  now?: () => number;
}

export const FRAME_ASSEMBLER_DEFAULTS = Object.freeze({
  capacity: 512,
  maxReorderPackets: 48,
  maxReorderMs: 50,
  maxPacketBytes: 1500,
  maxFrameBytes: 4 << 20,
});

/** A completed frame. Reused: valid during the `onFrame` call only. */
export class AssembledFrame {
  codec: VideoCodec = 'vp8';
  /** The frame is `data[0 .. length)`: a VP8 frame, or an H.264 access unit in Annex-B. */
  data: Uint8Array = new Uint8Array(0);
  length = 0;
  timestamp = 0;
  ssrc = 0;
  keyframe = false;
  /** From the keyframe header / SPS in this frame; 0 when the frame carries none. */
  width = 0;
  height = 0;
  firstSeq = 0;
  lastSeq = 0;
  packets = 0;
}

export type FrameDropReason = 'incomplete' | 'waiting_keyframe' | 'malformed' | 'too_large';

export interface FrameAssemblerStats {
  packets: number;
  /** RTP parse failures and payloads the codec cannot read. */
  malformedPackets: number;
  duplicates: number;
  /** Arrived after their place in sequence had been passed. */
  late: number;
  /** Sequence numbers given up on. */
  lost: number;
  frames: number;
  keyframes: number;
  framesDropped: number;
  dropped: Record<FrameDropReason, number>;
  /** Times the stream was restarted (SSRC change or a large sequence jump). */
  resets: number;
}

export type FrameSink = (frame: AssembledFrame) => void;

export class VideoFrameAssembler {
  readonly codec: VideoCodec;
  readonly stats: FrameAssemblerStats = {
    packets: 0,
    malformedPackets: 0,
    duplicates: 0,
    late: 0,
    lost: 0,
    frames: 0,
    keyframes: 0,
    framesDropped: 0,
    dropped: { incomplete: 0, waiting_keyframe: 0, malformed: 0, too_large: 0 },
    resets: 0,
  };
  /** Called for each completed frame (only from a keyframe on). */
  onFrame: FrameSink | null = null;
  /** Called when a keyframe is needed: on a loss and on each frame dropped while waiting for one. */
  onKeyframeNeeded: (() => void) | null = null;

  private readonly capacity: number;
  private readonly mask: number;
  private readonly maxReorderPackets: number;
  private readonly maxReorderMs: number;
  private readonly maxPacketBytes: number;
  private readonly maxFrameBytes: number;
  private readonly now: () => number;

  private readonly header = new RtpHeader();
  private readonly vp8 = new Vp8Descriptor();
  private readonly unwrapper = new SequenceUnwrapper();
  private readonly pool: Uint8Array;
  private readonly slotSeq: Float64Array;
  private readonly slotLength: Int32Array;
  private readonly slotTimestamp: Uint32Array;
  private readonly slotFlags: Uint8Array; // bit 0 marker, bit 1 starts a frame
  private started = false;
  private ssrc = 0;
  private nextSeq = 0;
  private highestSeq = 0;
  private gapSinceMs = -1;
  /**
   * At the start of a stream, packets reordered before the first one received must not count as
   * late: consumption waits until the lowest packet held starts a frame (or the reorder limits pass).
   */
  private priming = false;
  private primeSinceMs = 0;
  private waitingForKeyframe = true;

  // The frame being assembled.
  private frameBuffer: Uint8Array;
  private frameLength = 0;
  private frameOpen = false;
  private frameTimestamp = 0;
  private frameKeyframe = false;
  private frameFirstSeq = 0;
  private framePackets = 0;
  private fuOpen = false;
  private readonly dims = new Int32Array(2);
  private frameWidth = 0;
  private frameHeight = 0;
  /** Timestamp whose remaining packets are discarded (a frame already given up on); -1 for none. */
  private discardTimestamp = -1;
  private readonly frame = new AssembledFrame();

  constructor(opts: VideoFrameAssemblerOptions) {
    const o = { ...FRAME_ASSEMBLER_DEFAULTS, ...opts };
    if (o.codec !== 'vp8' && o.codec !== 'h264') throw new RangeError(`unsupported video codec ${String(o.codec)}`);
    if (!Number.isInteger(o.capacity) || o.capacity < 16 || o.capacity > 32768 || (o.capacity & (o.capacity - 1)) !== 0) {
      throw new RangeError(`capacity ${o.capacity} must be a power of two between 16 and 32768`);
    }
    this.codec = o.codec;
    this.capacity = o.capacity;
    this.mask = o.capacity - 1;
    this.maxReorderPackets = Math.min(o.maxReorderPackets, o.capacity - 1);
    this.maxReorderMs = o.maxReorderMs;
    this.maxPacketBytes = o.maxPacketBytes;
    this.maxFrameBytes = o.maxFrameBytes;
    this.now = o.now ?? (() => performance.now());
    this.pool = new Uint8Array(o.capacity * o.maxPacketBytes);
    this.slotSeq = new Float64Array(o.capacity).fill(-1);
    this.slotLength = new Int32Array(o.capacity);
    this.slotTimestamp = new Uint32Array(o.capacity);
    this.slotFlags = new Uint8Array(o.capacity);
    this.frameBuffer = new Uint8Array(64 * 1024);
    this.frame.codec = o.codec;
  }

  /** True while frames are dropped until a keyframe arrives. */
  get needKeyframe(): boolean {
    return this.waitingForKeyframe;
  }

  /**
   * Takes one RTP packet (`packet[0 .. length)`); completed frames are delivered to `onFrame`
   * before this returns. Never throws on bad input: it is counted and dropped.
   */
  push(packet: Uint8Array, length: number = packet.length, nowMs: number = this.now()): void {
    const h = this.header;
    this.stats.packets++;
    if (parseRtp(packet, h, length) !== null || h.payloadLength <= 0) {
      this.stats.malformedPackets++;
      return;
    }
    if (this.started && h.ssrc !== this.ssrc) this.reset();
    let ext = this.unwrapper.unwrap(h.sequenceNumber);
    if (this.started) {
      const ahead = ext - this.nextSeq;
      if (ahead > 3000 || ahead < -3000) {
        // A restarted sender or a long outage: a new stream, not loss or reordering.
        this.reset();
        ext = this.unwrapper.unwrap(h.sequenceNumber);
      } else if (ahead < 0) {
        if (!this.priming || this.highestSeq - ext >= this.capacity) {
          this.stats.late++;
          return;
        }
        this.nextSeq = ext; // still looking for the stream's first packet
      } else {
        // Beyond the window: what the window cannot hold is lost.
        while (ext - this.nextSeq >= this.capacity) this.skipLost();
      }
    }
    if (!this.started) {
      this.started = true;
      this.priming = true;
      this.primeSinceMs = nowMs;
      this.ssrc = h.ssrc;
      this.nextSeq = ext;
      this.highestSeq = ext - 1;
    }
    const slot = ext & this.mask;
    if (this.slotSeq[slot] === ext) {
      this.stats.duplicates++;
      return;
    }
    if (h.payloadLength > this.maxPacketBytes) {
      this.stats.malformedPackets++;
      return; // never filed: the gap it leaves is declared lost in time
    }
    const base = slot * this.maxPacketBytes;
    this.pool.set(packet.subarray(h.payloadOffset, h.payloadOffset + h.payloadLength), base);
    this.slotSeq[slot] = ext;
    this.slotLength[slot] = h.payloadLength;
    this.slotTimestamp[slot] = h.timestamp;
    this.slotFlags[slot] = (h.marker ? 1 : 0) | (this.startsFrame(this.pool, base, h.payloadLength) ? 2 : 0);
    if (ext > this.highestSeq) this.highestSeq = ext;
    this.drain(nowMs);
  }

  /** Declares overdue gaps lost without a new packet (call it from a timer, e.g. every video tick). */
  poll(nowMs: number = this.now()): void {
    if (this.started) this.drain(nowMs);
  }

  /** Forgets everything: the next packet starts a new stream, which must begin with a keyframe. */
  reset(): void {
    this.stats.resets++;
    this.slotSeq.fill(-1);
    this.unwrapper.reset();
    this.started = false;
    this.gapSinceMs = -1;
    this.discardTimestamp = -1;
    this.closeFrame();
    this.enterWaiting();
  }

  private drain(nowMs: number): void {
    if (this.priming) {
      const first = this.nextSeq & this.mask;
      const startsFrame = this.slotSeq[first] === this.nextSeq && (this.slotFlags[first] & 2) !== 0;
      if (!startsFrame && this.highestSeq - this.nextSeq < this.maxReorderPackets && nowMs - this.primeSinceMs < this.maxReorderMs) return;
      this.priming = false;
    }
    for (;;) {
      const slot = this.nextSeq & this.mask;
      if (this.slotSeq[slot] === this.nextSeq) {
        this.slotSeq[slot] = -1;
        this.gapSinceMs = -1;
        this.nextSeq++;
        this.consume(slot);
        continue;
      }
      if (this.highestSeq < this.nextSeq) return; // nothing missing, nothing buffered
      if (this.gapSinceMs < 0) this.gapSinceMs = nowMs;
      if (this.highestSeq - this.nextSeq >= this.maxReorderPackets || nowMs - this.gapSinceMs >= this.maxReorderMs) {
        // Keep gapSinceMs: the rest of a burst loss goes in the same pass.
        this.skipLost();
        continue;
      }
      return;
    }
  }

  private skipLost(): void {
    this.slotSeq[this.nextSeq & this.mask] = -1;
    this.nextSeq++;
    this.stats.lost++;
    if (this.frameOpen) {
      this.discardTimestamp = this.frameTimestamp;
      this.dropFrame('incomplete');
    } else {
      this.enterWaiting();
    }
  }

  private enterWaiting(): void {
    this.waitingForKeyframe = true;
    this.onKeyframeNeeded?.();
  }

  private startsFrame(buf: Uint8Array, offset: number, length: number): boolean {
    if (this.codec === 'vp8') {
      return parseVp8Descriptor(buf, offset, length, this.vp8) > 0 && this.vp8.startsFrame;
    }
    const type = buf[offset] & 0x1f;
    const end = offset + length;
    if (type === H264NalType.stapA) return offset + 3 < end && h264NalStartsPicture(buf, offset + 3, end);
    if (type === H264NalType.fuA) {
      if (offset + 2 >= end || (buf[offset + 1] & 0x80) === 0) return false;
      const original = buf[offset + 1] & 0x1f;
      return (original === H264NalType.slice || original === H264NalType.idr) && (buf[offset + 2] & 0x80) !== 0;
    }
    return h264NalStartsPicture(buf, offset, end);
  }

  private consume(slot: number): void {
    const ts = this.slotTimestamp[slot];
    const flags = this.slotFlags[slot];
    if (this.frameOpen && ts !== this.frameTimestamp) {
      // The previous frame never got its marker (the marker packet was lost or the sender omitted it).
      this.dropFrame('incomplete');
    }
    if (!this.frameOpen) {
      if (this.discardTimestamp >= 0 && ts === this.discardTimestamp) return;
      this.discardTimestamp = -1;
      if ((flags & 2) === 0) {
        // Joined mid-frame, or the frame's first packet was lost: nothing of this frame is usable.
        this.discardTimestamp = ts;
        return;
      }
      this.openFrame(ts);
    }
    const base = slot * this.maxPacketBytes;
    const ok =
      this.codec === 'vp8'
        ? this.appendVp8(this.pool, base, this.slotLength[slot])
        : this.appendH264(this.pool, base, this.slotLength[slot]);
    this.framePackets++;
    if (ok !== null) {
      this.discardTimestamp = ts;
      this.dropFrame(ok);
      return;
    }
    if ((flags & 1) !== 0) this.completeFrame();
  }

  private openFrame(ts: number): void {
    this.frameOpen = true;
    this.frameTimestamp = ts;
    this.frameLength = 0;
    this.frameKeyframe = false;
    this.frameWidth = 0;
    this.frameHeight = 0;
    this.framePackets = 0;
    this.fuOpen = false;
    this.frameFirstSeq = (this.nextSeq - 1) & 0xffff; // drain advanced past this packet already
  }

  private closeFrame(): void {
    this.frameOpen = false;
    this.frameLength = 0;
    this.fuOpen = false;
  }

  private dropFrame(reason: FrameDropReason): void {
    this.closeFrame();
    this.stats.framesDropped++;
    this.stats.dropped[reason]++;
    if (reason !== 'waiting_keyframe') this.waitingForKeyframe = true;
    this.onKeyframeNeeded?.();
  }

  private completeFrame(): void {
    if (this.codec === 'h264' && this.fuOpen) {
      this.dropFrame('incomplete');
      return;
    }
    const keyframe = this.frameKeyframe;
    if (this.waitingForKeyframe && !keyframe) {
      this.dropFrame('waiting_keyframe');
      return;
    }
    this.waitingForKeyframe = false;
    const f = this.frame;
    f.data = this.frameBuffer;
    f.length = this.frameLength;
    f.timestamp = this.frameTimestamp;
    f.ssrc = this.ssrc;
    f.keyframe = keyframe;
    f.width = this.frameWidth;
    f.height = this.frameHeight;
    f.firstSeq = this.frameFirstSeq;
    f.lastSeq = (this.nextSeq - 1) & 0xffff;
    f.packets = this.framePackets;
    this.closeFrame();
    this.stats.frames++;
    if (keyframe) this.stats.keyframes++;
    this.onFrame?.(f);
  }

  /** Makes room for `n` more bytes in the frame buffer; false when the frame would be too large. */
  private reserve(n: number): boolean {
    const need = this.frameLength + n;
    if (need <= this.frameBuffer.length) return true;
    if (need > this.maxFrameBytes) return false;
    let size = this.frameBuffer.length * 2;
    while (size < need) size *= 2;
    const grown = new Uint8Array(Math.min(size, this.maxFrameBytes));
    grown.set(this.frameBuffer.subarray(0, this.frameLength));
    this.frameBuffer = grown;
    return true;
  }

  private append(src: Uint8Array, start: number, end: number): void {
    this.frameBuffer.set(src.subarray(start, end), this.frameLength);
    this.frameLength += end - start;
  }

  private appendVp8(buf: Uint8Array, offset: number, length: number): FrameDropReason | null {
    const d = this.vp8;
    const n = parseVp8Descriptor(buf, offset, length, d);
    if (n < 0) {
      this.stats.malformedPackets++;
      return 'malformed';
    }
    const start = offset + n;
    const end = offset + length;
    if (this.frameLength === 0) {
      // The first packet holds the VP8 payload header (RFC 7741 §4.3): P = 0 is a keyframe.
      this.frameKeyframe = (buf[start] & 0x01) === 0;
      if (this.frameKeyframe && readVp8Dimensions(buf, start, end - start, this.dims)) {
        this.frameWidth = this.dims[0];
        this.frameHeight = this.dims[1];
      }
    }
    if (!this.reserve(end - start)) return 'too_large';
    this.append(buf, start, end);
    return null;
  }

  /** Appends one NAL unit (header included) with a 4-byte start code. */
  private appendNal(buf: Uint8Array, start: number, end: number): FrameDropReason | null {
    if (end <= start) return 'malformed';
    if (!this.reserve(4 + end - start)) return 'too_large';
    this.noteNal(buf, start, end);
    const fb = this.frameBuffer;
    const o = this.frameLength;
    fb[o] = 0;
    fb[o + 1] = 0;
    fb[o + 2] = 0;
    fb[o + 3] = 1;
    this.frameLength += 4;
    this.append(buf, start, end);
    return null;
  }

  private noteNal(buf: Uint8Array, start: number, end: number): void {
    const type = buf[start] & 0x1f;
    if (type === H264NalType.idr) this.frameKeyframe = true;
    else if (type === H264NalType.sps && readH264SpsDimensions(buf, start, end - start, this.dims)) {
      this.frameWidth = this.dims[0];
      this.frameHeight = this.dims[1];
    }
  }

  private appendH264(buf: Uint8Array, offset: number, length: number): FrameDropReason | null {
    const end = offset + length;
    const type = buf[offset] & 0x1f;
    if (type >= 1 && type <= 23) {
      if (this.fuOpen) return 'incomplete';
      return this.appendNal(buf, offset, end);
    }
    if (type === H264NalType.stapA) {
      if (this.fuOpen) return 'incomplete';
      let o = offset + 1;
      let count = 0;
      while (o + 2 <= end) {
        const size = (buf[o] << 8) | buf[o + 1];
        o += 2;
        if (size === 0 || o + size > end) break;
        const r = this.appendNal(buf, o, o + size);
        if (r !== null) return r;
        o += size;
        count++;
      }
      if (count === 0 || o !== end) {
        this.stats.malformedPackets++;
        return 'malformed';
      }
      return null;
    }
    if (type === H264NalType.fuA) {
      if (length < 3) {
        this.stats.malformedPackets++;
        return 'malformed';
      }
      const fu = buf[offset + 1];
      const startBit = (fu & 0x80) !== 0;
      const endBit = (fu & 0x40) !== 0;
      if (startBit) {
        if (this.fuOpen) return 'incomplete';
        if (!this.reserve(5 + length - 2)) return 'too_large';
        const fb = this.frameBuffer;
        const o = this.frameLength;
        fb[o] = 0;
        fb[o + 1] = 0;
        fb[o + 2] = 0;
        fb[o + 3] = 1;
        fb[o + 4] = (buf[offset] & 0xe0) | (fu & 0x1f); // the original NAL header (§5.8)
        this.frameLength += 5;
        if ((fu & 0x1f) === H264NalType.idr) this.frameKeyframe = true;
        this.fuOpen = true;
      } else if (!this.fuOpen) {
        return 'incomplete';
      }
      if (!this.reserve(length - 2)) return 'too_large';
      this.append(buf, offset + 2, end);
      if (endBit) this.fuOpen = false;
      return null;
    }
    // STAP-B, MTAP, FU-B: interleaved mode, not negotiated.
    this.stats.malformedPackets++;
    return 'malformed';
  }
}

/** Whether a NAL unit can be the first of an access unit (§7.4.1.2.3), judged from its header and first byte. */
function h264NalStartsPicture(buf: Uint8Array, start: number, end: number): boolean {
  const type = buf[start] & 0x1f;
  if (type === H264NalType.sps || type === H264NalType.pps || type === H264NalType.sei || type === H264NalType.aud) return true;
  return isFirstSliceOfPicture(buf, start, end);
}
