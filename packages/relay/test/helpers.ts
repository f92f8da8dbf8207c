/** Shared test fixtures: keys, a synthetic program feed, plain UDP receivers, bounded waits. */
import dgram from 'node:dgram';
import { buildRtp, RtpHeader } from '@mcu/rtp';
import { FEED_OVERHEAD_BYTES, FeedCipher } from '../src/index.js';
import type { FeedKey, RtpSink, StreamInfo, UdpEndpoint } from '../src/index.js';

/** Deterministic PRNG (mulberry32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function makeKey(id: number): FeedKey {
  const key = new Uint8Array(16);
  const salt = new Uint8Array(12);
  for (let i = 0; i < 16; i++) key[i] = (id * 31 + i * 7) & 0xff;
  for (let i = 0; i < 12; i++) salt[i] = (id * 17 + i * 13) & 0xff;
  return { id, key, salt };
}

export const AUDIO_SSRC = 0xa0d10001;
export const VIDEO_SSRC = 0x71de0001;
export const STREAMS: Record<number, StreamInfo> = {
  [AUDIO_SSRC]: { kind: 'audio', codec: 'opus' },
  [VIDEO_SSRC]: { kind: 'video', codec: 'vp8' },
};

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` every 5 ms for at most `timeoutMs`; returns whether it became true. */
export async function waitFor(cond: () => boolean, timeoutMs = 3000): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    if (cond()) return true;
    await sleep(5);
  }
  return cond();
}

/**
 * A synthetic program feed: Opus-sized audio packets every 20 ms and 30 fps VP8 video of a few
 * packets per frame, with a keyframe every `keyframeEveryFrames` frames. Payloads are random bytes
 * behind a valid VP8 payload descriptor, so keyframe detection sees real structure.
 */
export class SyntheticFeed {
  audioSeq: number;
  videoSeq: number;
  #audioTs = 0;
  #videoTs = 0;
  #frame = 0;
  readonly #rnd: () => number;

  constructor(
    readonly opts: { seed?: number; keyframeEveryFrames?: number; packetsPerFrame?: number; keyframePackets?: number; audioSeq?: number; videoSeq?: number; videoBytes?: number } = {},
  ) {
    this.#rnd = mulberry32(opts.seed ?? 1);
    this.audioSeq = opts.audioSeq ?? 1000;
    this.videoSeq = opts.videoSeq ?? 5000;
  }

  #random(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.#rnd() * 256);
    return b;
  }

  audio(): Buffer {
    const p = buildRtp({ payloadType: 111, sequenceNumber: this.audioSeq, timestamp: this.#audioTs, ssrc: AUDIO_SSRC }, this.#random(60 + Math.floor(this.#rnd() * 60)));
    this.audioSeq = (this.audioSeq + 1) & 0xffff;
    this.#audioTs = (this.#audioTs + 960) >>> 0;
    return p;
  }

  /** The packets of the next video frame. */
  videoFrame(): Buffer[] {
    const key = this.#frame % (this.opts.keyframeEveryFrames ?? 30) === 0;
    const n = key ? (this.opts.keyframePackets ?? 6) : (this.opts.packetsPerFrame ?? 3);
    const packets: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const body = this.#random(this.opts.videoBytes ?? 400);
      // RFC 7741 descriptor: X=1, S on the first packet, PID 0; I with a 15-bit PictureID.
      body[0] = 0x80 | (i === 0 ? 0x10 : 0);
      body[1] = 0x80;
      body[2] = 0x80 | ((this.#frame >> 8) & 0x7f);
      body[3] = this.#frame & 0xff;
      if (i === 0) body[4] = key ? 0x10 : 0x11; // VP8 payload header: P = 0 on keyframes
      packets.push(buildRtp({ payloadType: 96, sequenceNumber: this.videoSeq, timestamp: this.#videoTs, ssrc: VIDEO_SSRC, marker: i === n - 1 }, body));
      this.videoSeq = (this.videoSeq + 1) & 0xffff;
    }
    this.#videoTs = (this.#videoTs + 3000) >>> 0;
    this.#frame++;
    return packets;
  }
}

/**
 * Drives `send` with the synthetic feed in real time for `durationMs`: audio every 20 ms, a video
 * frame every 33 ms. Returns every packet sent, in order.
 */
export async function playFeed(feed: SyntheticFeed, send: (p: Buffer) => void, durationMs: number, opts: { video?: boolean } = {}): Promise<Buffer[]> {
  const sent: Buffer[] = [];
  const start = performance.now();
  let audioDue = 0;
  let videoDue = 0;
  for (let guard = 0; guard < 100_000; guard++) {
    const t = performance.now() - start;
    if (t >= durationMs) break;
    while (audioDue <= t) {
      const p = feed.audio();
      sent.push(p);
      send(p);
      audioDue += 20;
    }
    while (opts.video !== false && videoDue <= t) {
      for (const p of feed.videoFrame()) {
        sent.push(p);
        send(p);
      }
      videoDue += 1000 / 30;
    }
    await sleep(Math.max(1, Math.min(audioDue, opts.video === false ? Infinity : videoDue) - (performance.now() - start)));
  }
  return sent;
}

/** Records what a local consumer got: copies of each plaintext packet. */
export class RecordingSink implements RtpSink {
  readonly packets: Buffer[] = [];
  readonly seqs: number[] = [];
  readonly ssrcs: number[] = [];
  onRtp(packet: Uint8Array, length: number, header: RtpHeader): void {
    this.packets.push(Buffer.from(packet.subarray(0, length)));
    this.seqs.push(header.sequenceNumber);
    this.ssrcs.push(header.ssrc);
  }
}

/**
 * A plain UDP socket standing in for a child relay or viewer: it unprotects what it receives
 * with the shared key and can send protected RTCP back.
 */
export class PlainReceiver {
  readonly plaintexts: Buffer[] = [];
  readonly drops: string[] = [];
  rtcpIn = 0;
  readonly #cipher: FeedCipher;
  readonly #out = Buffer.alloc(2000);

  private constructor(
    readonly socket: dgram.Socket,
    key: FeedKey,
  ) {
    this.#cipher = new FeedCipher(key);
    socket.on('message', (msg) => {
      if (msg.length >= 2 && msg[1] >= 192 && msg[1] <= 223) {
        this.rtcpIn++;
        return;
      }
      const r = this.#cipher.unprotect(msg, msg.length, this.#out);
      if (typeof r === 'number') this.plaintexts.push(Buffer.from(this.#out.subarray(0, r)));
      else this.drops.push(r);
    });
  }

  static async open(key: FeedKey): Promise<PlainReceiver> {
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    return new PlainReceiver(s, key);
  }

  get address(): UdpEndpoint {
    return { host: '127.0.0.1', port: this.socket.address().port };
  }

  setKeys(current: FeedKey, accepted: readonly FeedKey[] = []): void {
    this.#cipher.setKeys(current, accepted);
  }

  sendRtcp(rtcp: Buffer, to: UdpEndpoint): void {
    const out = Buffer.alloc(rtcp.length + FEED_OVERHEAD_BYTES);
    const n = this.#cipher.protectRtcp(rtcp, rtcp.length, out);
    this.socket.send(out, 0, n, to.port, to.host);
  }

  close(): void {
    this.socket.close();
  }
}

/** A UDP hop that drops a share of the packets going one way (the network's misbehaviour). */
export class LossyHop {
  forwardedDown = 0;
  droppedDown = 0;
  #rnd: () => number;

  private constructor(
    readonly socket: dgram.Socket,
    public upstream: UdpEndpoint,
    public downstream: UdpEndpoint,
    lossDown: number,
    seed: number,
  ) {
    this.#rnd = mulberry32(seed);
    socket.on('message', (msg, rinfo) => {
      if (rinfo.port === this.upstream.port) {
        // Lose media only; feedback and its answers get through (the NACK path is tested, not RTCP loss).
        const isRtcp = msg.length >= 2 && msg[1] >= 192 && msg[1] <= 223;
        if (!isRtcp && this.#rnd() < lossDown) {
          this.droppedDown++;
          return;
        }
        this.forwardedDown++;
        socket.send(msg, this.downstream.port, this.downstream.host);
      } else if (rinfo.port === this.downstream.port) {
        socket.send(msg, this.upstream.port, this.upstream.host);
      }
    });
  }

  static async open(upstream: UdpEndpoint, downstream: UdpEndpoint, lossDown: number, seed = 42): Promise<LossyHop> {
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    return new LossyHop(s, upstream, downstream, lossDown, seed);
  }

  get address(): UdpEndpoint {
    return { host: '127.0.0.1', port: this.socket.address().port };
  }

  close(): void {
    this.socket.close();
  }
}

/** Key of an RTP packet for exactly-once checks: "ssrc/seq". */
export function packetId(p: Uint8Array): string {
  return `${Buffer.from(p.buffer, p.byteOffset, p.length).readUInt32BE(8)}/${(p[2] << 8) | p[3]}`;
}
