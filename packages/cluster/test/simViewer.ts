/**
 * A simulated viewer for cluster tests and the tree benchmark: a real UDP socket placed through
 * the mixer (`POST /rtp-viewers/:id`, following the 307 to a relay) that records the program RTP
 * it receives and joins again, through the same placement path, when its feed stalls (its relay
 * died), as a WHEP player reconnects.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';

export interface SimViewerOptions {
  /** The mixer's plain-RTP viewer URL of the event: `${mixer}/rtp-viewers/${id}`. */
  url: string;
  token: string;
  /** No packet for this long: the relay is gone, join again. */
  stallMs?: number;
  onPacket?: (msg: Buffer, at: number) => void;
  /** Receive only the packets whose sequence number is a multiple of this (the relay thins the feed). */
  everyNth?: number;
}

export class SimViewer {
  packets = 0;
  lastAt = 0;
  /** Longest silence between two packets (ms), after the first packet. */
  maxGapMs = 0;
  joins = 0;
  joinFailures = 0;
  relay: string | null = null;
  /** Where its plain-RTP viewer resource lives on the relay (to delete it when leaving). */
  location: string | null = null;
  readonly joinMs: number[] = [];
  #rejoining = false;
  #joinedAt = 0;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;

  private constructor(
    readonly socket: dgram.Socket,
    readonly opts: SimViewerOptions,
  ) {
    socket.on('message', (msg) => {
      const at = performance.now();
      if (this.lastAt > 0) this.maxGapMs = Math.max(this.maxGapMs, at - this.lastAt);
      this.lastAt = at;
      this.packets++;
      opts.onPacket?.(msg, at);
    });
  }

  static async open(opts: SimViewerOptions): Promise<SimViewer> {
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
    s.bind(0, '127.0.0.1');
    await once(s, 'listening');
    return new SimViewer(s, opts);
  }

  get port(): number {
    return this.socket.address().port;
  }

  resetGap(): void {
    this.maxGapMs = 0;
  }

  /** Joins through the mixer (retrying for at most `timeoutMs`), then watches for stalls. */
  async join(timeoutMs = 5000): Promise<void> {
    const started = performance.now();
    while (!this.#closed && performance.now() - started < timeoutMs) {
      try {
        const res = await fetch(this.opts.url, {
          method: 'POST',
          headers: { authorization: `Bearer ${this.opts.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ host: '127.0.0.1', port: this.port, ...(this.opts.everyNth && this.opts.everyNth > 1 && { everyNth: this.opts.everyNth }) }),
          signal: AbortSignal.timeout(1000),
        });
        if (res.status === 201) {
          const body = (await res.json()) as { id: string; relay: string };
          this.relay = body.relay;
          this.location = new URL(res.headers.get('location')!, res.url).toString();
          this.joins++;
          this.#joinedAt = performance.now();
          this.joinMs.push(performance.now() - started);
          this.#timer ??= setInterval(() => this.#check(), 50);
          return;
        }
        await res.body?.cancel();
      } catch {
        // the relay died under us (connection refused) or a timeout: ask again
      }
      this.joinFailures++;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`viewer could not join within ${timeoutMs} ms`);
  }

  #check(): void {
    const stallMs = this.opts.stallMs ?? 300;
    if (this.#closed || this.#rejoining || this.lastAt === 0 || performance.now() - Math.max(this.lastAt, this.#joinedAt) < stallMs) return;
    this.#rejoining = true;
    const old = this.location;
    if (old) void fetch(old, { method: 'DELETE', headers: { authorization: `Bearer ${this.opts.token}` }, signal: AbortSignal.timeout(500) }).catch(() => undefined);
    this.join(10_000)
      .catch(() => undefined)
      .finally(() => {
        this.#rejoining = false;
      });
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    try {
      this.socket.close();
    } catch {
      // closed
    }
  }
}
