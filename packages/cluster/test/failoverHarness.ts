/**
 * Pieces of the failover tests and bench: a plain-RTP presenter that re-registers through any
 * mixer's API when its mixer is gone, and a probe viewer on a relay that records what a viewer's
 * player would see (SSRCs, sequence numbers, timestamps, arrival times) and decodes the audio.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { OpusDecoder } from '@mcu/codec';
import { RtpPeer } from '../../mixer/test/peer.js';
import { tonePower } from '../../webrtc/test/client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A plain-RTP participant sending a tone every 20 ms. `register(url)` POSTs its address to an event's
 * `rtp-participants` on any mixer (redirects lead to the holder) and sends to the port it is given:
 * what a gateway does when its mixer is gone (docs/failover.md).
 */
export class ReRegisteringPresenter {
  registrations = 0;
  #sending = true;
  #pacing: Promise<void> = Promise.resolve();

  private constructor(
    readonly peer: RtpPeer,
    readonly eventId: string,
    readonly token: string,
  ) {}

  static async start(freq: number, eventId: string, token: string): Promise<ReRegisteringPresenter> {
    const peer = await RtpPeer.open({ freq, audioLevelExtId: 1 });
    const p = new ReRegisteringPresenter(peer, eventId, token);
    p.#pacing = (async () => {
      const start = performance.now();
      for (let frame = 0; p.#sending && frame < 9000; frame++) {
        if (p.registrations > 0) p.peer.sendFrame();
        await sleep(Math.max(0, start + (frame + 1) * 20 - performance.now()));
      }
    })();
    return p;
  }

  /** Registers with the event through `mixerUrl` (following redirects); throws on an error answer. */
  async register(mixerUrl: string): Promise<void> {
    const res = await fetch(`${mixerUrl}/api/events/${this.eventId}/rtp-participants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ host: '127.0.0.1', port: this.peer.port, payloadType: 111, audioLevelExtId: 1 }),
    });
    if (res.status !== 201) throw new Error(`registering answered ${res.status}: ${await res.text()}`);
    const info = (await res.json()) as { host: string; port: number };
    this.peer.connect(info.host, info.port);
    this.registrations++;
  }

  /** Tries `register` on each URL in turn until one answers, for up to `timeoutMs`; resolves with the time it took. */
  async reRegister(mixerUrls: string[], timeoutMs: number): Promise<number> {
    const start = performance.now();
    for (let attempt = 0; performance.now() - start < timeoutMs; attempt++) {
      try {
        await this.register(mixerUrls[attempt % mixerUrls.length]);
        return performance.now() - start;
      } catch {
        await sleep(Math.min(100 * 2 ** Math.min(attempt, 3), 500));
      }
    }
    throw new Error(`could not re-register within ${timeoutMs} ms`);
  }

  async stop(): Promise<void> {
    this.#sending = false;
    await this.#pacing;
    this.peer.close();
  }
}

export interface ProbePacket {
  at: number;
  ssrc: number;
  seq: number;
  ts: number;
  /** Tone power of the decoded frame at the probe's frequency. */
  power: number;
}

/** A plain-RTP viewer on one relay (no redirects, no rejoins): everything it received. */
export class ProbeViewer {
  readonly packets: ProbePacket[] = [];
  readonly #decoder = new OpusDecoder();
  readonly #pcm = new Int16Array(5760);
  joins = 0;

  private constructor(
    readonly socket: dgram.Socket,
    readonly freq: number,
  ) {
    socket.on('message', (msg) => this.#onPacket(msg));
  }

  static async open(freq: number): Promise<ProbeViewer> {
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
    s.bind(0, '127.0.0.1');
    await once(s, 'listening');
    return new ProbeViewer(s, freq);
  }

  /** Joins through `url` (a mixer's or a relay's `/rtp-viewers/<event>`), following the 307. */
  async join(url: string, token: string): Promise<void> {
    const res = await fetch(`${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ host: '127.0.0.1', port: this.socket.address().port }),
    });
    if (res.status !== 201) throw new Error(`viewer join answered ${res.status}: ${await res.text()}`);
    this.joins++;
  }

  #onPacket(msg: Buffer): void {
    if (msg.length < 12) return;
    const cc = msg[0] & 0x0f;
    let off = 12 + cc * 4;
    if (msg[0] & 0x10) off += 4 + msg.readUInt16BE(off + 2) * 4;
    let power = 0;
    try {
      const n = this.#decoder.decode(msg.subarray(off), this.#pcm);
      power = tonePower(this.#pcm.subarray(0, n), this.freq);
    } catch {
      power = -1;
    }
    this.packets.push({ at: performance.now(), ssrc: msg.readUInt32BE(8), seq: msg.readUInt16BE(2), ts: msg.readUInt32BE(4), power });
  }

  /** Longest silence between packets received after `from` (ms; from `from` itself if the first came later). */
  maxGapAfter(from: number): number {
    let last = from;
    let max = 0;
    for (const p of this.packets) {
      if (p.at < from) continue;
      max = Math.max(max, p.at - last);
      last = p.at;
    }
    return Math.max(max, performance.now() - last);
  }

  /** First time after `from` the tone is heard (power above `threshold`), or null. */
  toneBackAt(from: number, threshold: number): number | null {
    for (const p of this.packets) if (p.at > from && p.power > threshold) return p.at;
    return null;
  }

  /** Sequence-number steps other than +1 (mod 2^16) between consecutive packets. */
  seqJumps(): number {
    let jumps = 0;
    for (let i = 1; i < this.packets.length; i++) if (((this.packets[i].seq - this.packets[i - 1].seq) & 0xffff) !== 1) jumps++;
    return jumps;
  }

  close(): void {
    this.socket.close();
  }
}
