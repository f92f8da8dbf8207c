/** Pieces shared by the cluster tests: polling with a deadline, a plain-RTP presenter, a WHEP viewer that reconnects. */
import { RtpPeer } from '../../mixer/test/peer.js';
import { WebRtcClient } from '../../webrtc/test/client.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 20 ms; resolves with the time it took, throws after `timeoutMs`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await cond()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** A plain-RTP participant added through the API that sends a 440 Hz tone every 20 ms until `stop()` (at most 2 minutes). */
export class TonePresenter {
  #presenting = true;
  #pacing: Promise<void> = Promise.resolve();

  private constructor(readonly peer: RtpPeer) {}

  static async join(nodeUrl: string, eventId: string, token: string): Promise<TonePresenter> {
    const peer = await RtpPeer.open({ freq: 440, audioLevelExtId: 1 });
    const res = await fetch(`${nodeUrl}/api/events/${eventId}/rtp-participants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: 1 }),
    });
    const p = (await res.json()) as { host: string; port: number };
    peer.connect(p.host, p.port);
    const presenter = new TonePresenter(peer);
    presenter.#pacing = (async () => {
      const start = performance.now();
      for (let frame = 0; presenter.#presenting && frame < 6000; frame++) {
        peer.sendFrame();
        await sleep(Math.max(0, start + (frame + 1) * 20 - performance.now()));
      }
    })();
    return presenter;
  }

  async stop(): Promise<void> {
    this.#presenting = false;
    await this.#pacing;
    this.peer.close();
  }
}

/** A werift WHEP viewer that reconnects through the mixer when its audio stalls (its relay died). */
export class WhepViewer {
  client!: WebRtcClient;
  reconnects = 0;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #lastCount = 0;
  #lastChange = 0;
  #busy = false;
  constructor(
    readonly url: string,
    readonly token: string,
  ) {}
  async connect(): Promise<void> {
    this.client = await WebRtcClient.connect('whep', this.url, this.token);
    await this.client.connected();
    this.#lastChange = performance.now();
    this.#lastCount = 0;
    this.#timer ??= setInterval(() => this.#check(), 50);
  }
  #check(): void {
    if (this.#closed || this.#busy) return;
    const n = this.client.received.length;
    if (n !== this.#lastCount) {
      this.#lastCount = n;
      this.#lastChange = performance.now();
      return;
    }
    if (performance.now() - this.#lastChange < 400) return;
    this.#busy = true;
    void (async () => {
      await this.client.pc.close().catch(() => undefined);
      for (let attempt = 0; attempt < 50 && !this.#closed; attempt++) {
        try {
          await this.connect();
          this.reconnects++;
          break;
        } catch {
          await sleep(100);
        }
      }
      this.#busy = false;
    })();
  }
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.client?.pc.close().catch(() => undefined);
  }
}
