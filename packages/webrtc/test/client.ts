/**
 * A werift WHIP/WHEP client for tests and benchmarks: a real peer connection on loopback that
 * speaks RFC 9725 over HTTP to the node.
 */
import { ReceiverEstimatedMaxBitrate, RTCPeerConnection, RtcpPayloadSpecificFeedback, RtpPacket } from 'werift';
import type { RTCRtpTransceiver } from 'werift';
import { buildRtp } from '@mcu/rtp';
import { OpusDecoder, OpusEncoder } from '@mcu/codec';
import { addressAllowList, disableDefaultStun, filterCandidates, peerConfig } from '../src/index.js';
import type { ProgramSource, WebRtcEdge, WhepSession } from '../src/index.js';
import type { MixerEvent } from '@mcu/mixer';
import { isAlive, until } from '../../mixer/test/videoMedia.js';

/** A viewer's REMB (draft-alvestrand-rmcat-remb) for `mediaSsrc`: bitrate = mantissa (18 bits) << exponent. */
export function rembPacket(bitrate: number, mediaSsrc: number): RtcpPayloadSpecificFeedback {
  let exp = 0;
  while (bitrate >> exp >= 1 << 18) exp++;
  return new RtcpPayloadSpecificFeedback({
    feedback: new ReceiverEstimatedMaxBitrate({ senderSsrc: 1, mediaSsrc: 0, uniqueID: 'REMB', ssrcNum: 1, brExp: exp, brMantissa: bitrate >> exp, ssrcFeedbacks: [mediaSsrc] }),
  });
}

export const LOOPBACK = { iceAllow: ['127.0.0.0/8'], additionalHostAddresses: ['127.0.0.1'] };
const allow = addressAllowList(LOOPBACK.iceAllow);

export interface Received {
  seq: number;
  ts: number;
  payload: Buffer;
}

export class WebRtcClient {
  readonly pc = new RTCPeerConnection(peerConfig(LOOPBACK));
  readonly received: Received[] = [];
  audio!: RTCRtpTransceiver;
  location: string | null = null;
  private encoder: OpusEncoder | null = null;
  private frame = 0;
  private seq = 1000;
  /** How it talks HTTP to the node (a test over HTTPS passes a fetch that trusts its CA). */
  private fetch: (url: string, init?: { method?: string; headers?: Record<string, string>; body?: string }) => Promise<Response> = (url, init) => fetch(url, init);
  private ts = 0;
  private readonly pcm = new Int16Array(960);
  private readonly out = new Uint8Array(1500);

  private constructor(
    readonly base: string,
    readonly token: string,
  ) {}

  /** Publishes over WHIP (sendrecv audio, so the mix-minus comes back) or plays over WHEP (recvonly). */
  static async connect(kind: 'whip' | 'whep', url: string, token: string, opts: { video?: boolean; fetch?: WebRtcClient['fetch'] } = {}): Promise<WebRtcClient> {
    const c = new WebRtcClient(new URL(url).origin, token);
    if (opts.fetch) c.fetch = opts.fetch;
    c.audio = c.pc.addTransceiver('audio', { direction: kind === 'whip' ? 'sendrecv' : 'recvonly' });
    if (opts.video) c.pc.addTransceiver('video', { direction: kind === 'whip' ? 'sendonly' : 'recvonly' });
    c.audio.onTrack.subscribe((track) => {
      track.onReceiveRtp.subscribe((rtp: RtpPacket) => {
        c.received.push({ seq: rtp.header.sequenceNumber, ts: rtp.header.timestamp, payload: Buffer.from(rtp.payload) });
      });
    });
    const offer = await c.pc.createOffer();
    disableDefaultStun(c.pc as never);
    await c.pc.setLocalDescription(offer);
    if (c.pc.iceGatheringState !== 'complete') {
      await new Promise<void>((resolve) => c.pc.iceGatheringStateChange.subscribe((s) => s === 'complete' && resolve()));
    }
    const res = await c.fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
      body: filterCandidates(c.pc.localDescription!.sdp, allow),
    });
    if (res.status !== 201) {
      await c.pc.close();
      throw new Error(`${kind} POST answered ${res.status}: ${await res.text()}`);
    }
    c.location = res.headers.get('location');
    await c.pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    return c;
  }

  async connected(timeoutMs = 10_000): Promise<void> {
    if (this.pc.connectionState === 'connected') return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not connected after ${timeoutMs} ms (${this.pc.connectionState})`)), timeoutMs);
      this.pc.connectionStateChange.subscribe((s) => {
        if (s === 'connected') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  /** Sends the next 20 ms of a tone (0 Hz: silence) as Opus RTP on the audio transceiver. */
  sendTone(freq: number): void {
    this.encoder ??= new OpusEncoder({ bitrate: 32_000 });
    for (let i = 0; i < 960; i++) this.pcm[i] = freq ? Math.round(8000 * Math.sin((2 * Math.PI * freq * (this.frame * 960 + i)) / 48_000)) : 0;
    const len = this.encoder.encode(this.pcm, this.out);
    const packet = buildRtp({ payloadType: 111, sequenceNumber: this.seq, timestamp: this.ts, ssrc: 1 }, this.out.subarray(0, len));
    this.frame++;
    this.seq = (this.seq + 1) & 0xffff;
    this.ts = (this.ts + 960) >>> 0;
    void this.audio.sender.sendRtp(packet);
  }

  decodeReceived(fromIndex = 0): Int16Array {
    const dec = new OpusDecoder();
    const frames = this.received.slice(fromIndex);
    const pcm = new Int16Array(frames.length * 960);
    const tmp = new Int16Array(5760);
    let off = 0;
    for (const f of frames) {
      const n = dec.decode(f.payload, tmp);
      if (n >= 960) {
        pcm.set(tmp.subarray(0, 960), off);
        off += 960;
      }
    }
    dec.close();
    return pcm.subarray(0, off);
  }

  async hangUp(): Promise<number> {
    let status = 0;
    if (this.location) {
      const res = await this.fetch(`${this.base}${this.location}`, { method: 'DELETE', headers: { authorization: `Bearer ${this.token}` } });
      status = res.status;
    }
    this.encoder?.close();
    this.encoder = null;
    await this.pc.close();
    return status;
  }
}

export function tonePower(pcm: ArrayLike<number>, freq: number, sampleRate = 48_000): number {
  const k = 2 * Math.cos((2 * Math.PI * freq) / sampleRate);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < pcm.length; i++) {
    const s0 = pcm[i] + k * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  return (s1 * s1 + s2 * s2 - k * s1 * s2) / Math.max(1, pcm.length);
}

export async function paceClients(clients: { client: WebRtcClient; freq: number }[], ms: number): Promise<void> {
  const start = performance.now();
  let frame = 0;
  while (performance.now() - start < ms) {
    for (const { client, freq } of clients) client.sendTone(freq);
    frame++;
    await new Promise((r) => setTimeout(r, Math.max(0, start + frame * 20 - performance.now())));
  }
}

/** Closes the edge, the event and the peers; resolves true once the event's ffmpeg processes have exited. */
export async function closeVideoEvent(event: MixerEvent | null, edge: WebRtcEdge | null, pcs: (RTCPeerConnection | null)[]): Promise<boolean> {
  const ids = event?.videoMixer?.processIds();
  const pids = ids ? [...Object.values(ids.decoders), ...Object.values(ids.encoders)].filter((p): p is number => p !== null) : [];
  edge?.close();
  event?.close();
  await Promise.all(pcs.map((pc) => pc?.close().catch(() => undefined)));
  return until(() => pids.every((pid) => !isAlive(pid)), 5000);
}

/** Offers from a werift viewer, lets the edge answer in process (no HTTP) and applies the answer. */
export async function playInProcess(pc: RTCPeerConnection, edge: WebRtcEdge, source: ProgramSource, opts: { rendition?: string } = {}): Promise<WhepSession> {
  const offer = await pc.createOffer();
  disableDefaultStun(pc as never);
  await pc.setLocalDescription(offer);
  if (pc.iceGatheringState !== 'complete') await new Promise<void>((r) => pc.iceGatheringStateChange.subscribe((s) => s === 'complete' && r()));
  const { session, answer } = await edge.play(source, filterCandidates(pc.localDescription!.sdp, addressAllowList(LOOPBACK.iceAllow)), opts);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  return session as WhepSession;
}
