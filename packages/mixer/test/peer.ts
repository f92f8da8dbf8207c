/**
 * A real plain-RTP peer for tests and benchmarks: a UDP socket that sends Opus RTP (optionally
 * with RFC 6464 levels, loss and reordering) and records and decodes what it receives.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { audioLevelExtension, buildRtp, parseRtp, RtpHeader } from '@mcu/rtp';
import { OpusDecoder, OpusEncoder } from '@mcu/codec';

export const SAMPLE_RATE = 48_000;
export const FRAME = 960;

export function toneFrame(freq: number, frameIndex: number, amplitude = 8000, out = new Int16Array(FRAME)): Int16Array {
  const start = frameIndex * FRAME;
  for (let i = 0; i < FRAME; i++) out[i] = Math.round(amplitude * Math.sin((2 * Math.PI * freq * (start + i)) / SAMPLE_RATE));
  return out;
}

/** Goertzel: power of one frequency in a block of samples (normalised by length). */
export function tonePower(pcm: ArrayLike<number>, freq: number, sampleRate = SAMPLE_RATE): number {
  const k = (2 * Math.cos((2 * Math.PI * freq) / sampleRate));
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < pcm.length; i++) {
    const s0 = pcm[i] + k * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return (s1 * s1 + s2 * s2 - k * s1 * s2) / pcm.length;
}

export function rms(pcm: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < pcm.length; i++) e += pcm[i] * pcm[i];
  return Math.sqrt(e / Math.max(1, pcm.length));
}

export interface PeerOptions {
  /** Tone frequency in Hz; 0 sends silence. */
  freq?: number;
  amplitude?: number;
  /**
   * Speech-like: the tone rises and falls four times a second, as syllables do. SILK's voice
   * activity detector soon takes a steady tone for background noise (and then sends no in-band FEC).
   */
  syllables?: boolean;
  audioLevelExtId?: number;
  payloadType?: number;
  /** Probability of dropping an outgoing packet. */
  loss?: number;
  /** Probability of swapping an outgoing packet with the next one. */
  reorder?: number;
  bindHost?: string;
  random?: () => number;
}

/**
 * Encoded frames of one second of a tone, shared by every peer sending that tone: encoding 50
 * streams live would cost the test process more CPU than the mixer it is testing.
 */
/** Syllables: the envelope, at sample `x` (48 kHz), of a tone that rises and falls four times a second. */
export function syllableEnvelope(x: number): number {
  return 0.1 + 0.9 * Math.abs(Math.sin((2 * Math.PI * 2 * x) / SAMPLE_RATE));
}

const CYCLE_FRAMES = 50;
const encodedCycles = new Map<string, Buffer[]>();
function encodedCycle(freq: number, amplitude: number, syllables = false): Buffer[] {
  const key = `${freq}/${amplitude}/${syllables}`;
  let frames = encodedCycles.get(key);
  if (!frames) {
    const enc = new OpusEncoder({ bitrate: 32_000, fec: true, expectedLossPercent: 15 });
    const pcm = new Int16Array(FRAME);
    const out = new Uint8Array(1500);
    frames = [];
    for (let f = 0; f < CYCLE_FRAMES; f++) {
      if (freq > 0) toneFrame(freq, f, amplitude, pcm);
      else pcm.fill(0);
      if (syllables) for (let i = 0; i < FRAME; i++) pcm[i] = Math.round(pcm[i] * syllableEnvelope(f * FRAME + i));
      frames.push(Buffer.from(out.subarray(0, enc.encode(pcm, out))));
    }
    enc.close();
    encodedCycles.set(key, frames);
  }
  return frames;
}

export class RtpPeer {
  readonly socket: dgram.Socket;
  readonly received: { seq: number; ts: number; ssrc: number; csrcs: number[]; at: number; payload: Buffer }[] = [];
  private frame = 0;
  private seq = Math.floor(Math.random() * 65536);
  private ts = Math.floor(Math.random() * 2 ** 32);
  readonly ssrc = (Math.random() * 2 ** 32) >>> 0;
  private held: Buffer | null = null;
  private target: { host: string; port: number } | null = null;
  sent = 0;
  dropped = 0;

  private constructor(socket: dgram.Socket, readonly opts: PeerOptions) {
    this.socket = socket;
    const header = new RtpHeader();
    socket.on('message', (msg) => {
      if (parseRtp(msg, header) !== null) return;
      this.received.push({
        seq: header.sequenceNumber,
        ts: header.timestamp,
        ssrc: header.ssrc,
        csrcs: Array.from(header.csrcs.subarray(0, header.csrcCount)),
        at: performance.now(),
        payload: Buffer.from(msg.subarray(header.payloadOffset, header.payloadOffset + header.payloadLength)),
      });
    });
  }

  static async open(opts: PeerOptions = {}): Promise<RtpPeer> {
    const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
    socket.bind(0, opts.bindHost ?? '127.0.0.1');
    await once(socket, 'listening');
    return new RtpPeer(socket, opts);
  }

  get port(): number {
    return this.socket.address().port;
  }

  connect(host: string, port: number): void {
    this.target = { host, port };
  }

  /** Encodes and sends the next 20 ms frame. */
  sendFrame(): void {
    if (!this.target) throw new Error('peer not connected');
    const freq = this.opts.freq ?? 0;
    const payload = encodedCycle(freq, this.opts.amplitude ?? 8000, this.opts.syllables)[this.frame % CYCLE_FRAMES];
    const level = freq > 0 ? 10 : 127;
    const extensions = this.opts.audioLevelExtId
      ? [audioLevelExtension(level, freq > 0, this.opts.audioLevelExtId)]
      : undefined;
    const packet = buildRtp(
      { payloadType: this.opts.payloadType ?? 111, sequenceNumber: this.seq, timestamp: this.ts, ssrc: this.ssrc, extensions },
      payload,
    );
    this.frame++;
    this.seq = (this.seq + 1) & 0xffff;
    this.ts = (this.ts + FRAME) >>> 0;
    const random = this.opts.random ?? Math.random;
    if (this.opts.loss && random() < this.opts.loss) {
      this.dropped++;
      return;
    }
    if (this.opts.reorder && !this.held && random() < this.opts.reorder) {
      this.held = packet;
      return;
    }
    this.sendRaw(packet);
    if (this.held) {
      this.sendRaw(this.held);
      this.held = null;
    }
  }

  sendRaw(packet: Uint8Array, host = this.target!.host, port = this.target!.port): void {
    this.sent++;
    this.socket.send(packet, port, host);
  }

  /** Decodes everything received from `fromIndex` on into one PCM signal (in arrival order). */
  decodeReceived(fromIndex = 0): Int16Array {
    const dec = new OpusDecoder();
    const frames = this.received.slice(fromIndex);
    const pcm = new Int16Array(frames.length * FRAME);
    const tmp = new Int16Array(5760);
    let off = 0;
    for (const f of frames) {
      const n = dec.decode(f.payload, tmp);
      if (n > 0) {
        pcm.set(tmp.subarray(0, Math.min(n, FRAME)), off);
        off += FRAME;
      }
    }
    dec.close();
    return pcm.subarray(0, off);
  }

  close(): void {
    try {
      this.socket.close();
    } catch {
      // closed already
    }
  }
}

/** Sends one frame from every peer each 20 ms for `ms` milliseconds (bounded; stops by itself). */
export async function pace(peers: RtpPeer[], ms: number): Promise<void> {
  const start = performance.now();
  let frame = 0;
  while (performance.now() - start < ms) {
    for (const p of peers) p.sendFrame();
    frame++;
    const next = start + frame * 20;
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
