/**
 * A simulated viewer for cluster tests and the tree benchmark: a real UDP socket placed through
 * the mixer (`POST /rtp-viewers/:id`, following the 307 to a relay) that records the program RTP
 * it receives and joins again, through the same placement path, when its feed stalls (its relay
 * died), as a WHEP player reconnects.
 *
 * One watchdog per process checks every viewer, and checks after reading its sockets: the timer
 * only schedules the check (setImmediate), which runs after the event loop's next poll for I/O.
 * Checked in the timer itself, a process holding thousands of viewers that was starved of CPU for a
 * second (say, by the rejoin storm after a relay died) would take the packets still unread in its
 * sockets for silence, and every one of its viewers would rejoin at once: a storm that feeds itself.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import http from 'node:http';

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

/**
 * Requests go through node:http with keep-alive connections, not fetch: a process holding thousands
 * of viewers re-places hundreds of them at once after a relay dies, and fetch's per-request cost
 * (a new connection, an AbortSignal and its timer, a DOMException per timeout) starved its own
 * sockets for seconds, so the benchmark measured its load generator instead of the tree.
 */
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** The process's HTTP client: sockets open and requests waiting for one (diagnostics for the benchmark). */
export function simViewerHttpStats(): { sockets: number; queued: number } {
  const count = (m: NodeJS.ReadOnlyDict<unknown[]>) => Object.values(m).reduce((n, list) => n + (list?.length ?? 0), 0);
  return { sockets: count(agent.sockets), queued: count(agent.requests) };
}

interface HttpReply {
  status: number;
  location: string | null;
  /** The URL that answered (after redirects). */
  url: string;
  body: string;
}

function httpRequest(method: string, url: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number, redirects = 3): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    // Settles exactly once: on the reply, an error, an early close, or the deadline (which also
    // covers time spent waiting for one of the agent's sockets).
    let settled = false;
    const settle = (err: Error | null, reply?: HttpReply) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      if (err) reject(err);
      else resolve(reply!);
    };
    const deadline = setTimeout(() => {
      req.destroy();
      settle(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const req = http.request(url, { method, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => settle(err));
      res.on('close', () => {
        if (!res.complete) settle(new Error(`${method} ${url}: the connection closed mid-reply`));
      });
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const location = res.headers.location ? new URL(res.headers.location, url).toString() : null;
        // 307/308 keep the method and body (a WHEP client follows the mixer's redirect the same way).
        if ((status === 307 || status === 308) && location && redirects > 0) {
          clearTimeout(deadline);
          httpRequest(method, location, headers, body, timeoutMs, redirects - 1).then(
            (reply) => settle(null, reply),
            (err: Error) => settle(err),
          );
          return;
        }
        settle(null, { status, location, url, body: Buffer.concat(chunks).toString() });
      });
    });
    req.on('error', (err) => settle(err));
    req.end(body);
  });
}

/** How often the watchdog checks (ms). */
const WATCH_PERIOD_MS = 50;

/** The process's stall watchdog, shared by every open viewer. */
const watch = {
  viewers: new Set<SimViewer>(),
  timer: undefined as NodeJS.Timeout | undefined,
  add(v: SimViewer): void {
    this.viewers.add(v);
    if (this.timer) return;
    this.timer = setInterval(() => {
      setImmediate(() => {
        const now = performance.now();
        for (const viewer of this.viewers) viewer.checkStall(now);
      });
    }, WATCH_PERIOD_MS);
  },
  remove(v: SimViewer): void {
    this.viewers.delete(v);
    if (this.viewers.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  },
};

export class SimViewer {
  packets = 0;
  lastAt = 0;
  /** Longest silence between two packets (ms), after the first packet. */
  maxGapMs = 0;
  joins = 0;
  joinFailures = 0;
  /** Rejoins because the feed stalled. */
  stallRejoins = 0;
  relay: string | null = null;
  /** Where its plain-RTP viewer resource lives on the relay (to delete it when leaving). */
  location: string | null = null;
  readonly joinMs: number[] = [];
  #rejoining = false;
  #joinedAt = 0;
  #closed = false;

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

  /**
   * Joins through the mixer (retrying for at most `timeoutMs`, backing off with jitter so that the
   * viewers of a dead relay do not retry in step), then watches for stalls.
   */
  async join(timeoutMs = 5000): Promise<void> {
    const started = performance.now();
    const body = JSON.stringify({ host: '127.0.0.1', port: this.port, ...(this.opts.everyNth && this.opts.everyNth > 1 && { everyNth: this.opts.everyNth }) });
    let backoffMs = 100;
    while (!this.#closed && performance.now() - started < timeoutMs) {
      try {
        const res = await httpRequest('POST', this.opts.url, { authorization: `Bearer ${this.opts.token}`, 'content-type': 'application/json' }, body, 5000);
        if (res.status === 201) {
          const reply = JSON.parse(res.body) as { id: string; relay: string };
          this.relay = reply.relay;
          this.location = new URL(res.location!, res.url).toString();
          this.joins++;
          this.#joinedAt = performance.now();
          this.joinMs.push(performance.now() - started);
          if (!this.#closed) watch.add(this);
          return;
        }
      } catch {
        // the relay died under us (connection refused) or a timeout: ask again
      }
      this.joinFailures++;
      await new Promise((r) => setTimeout(r, backoffMs * (0.5 + Math.random())));
      backoffMs = Math.min(1000, backoffMs * 2);
    }
    throw new Error(`viewer could not join within ${timeoutMs} ms`);
  }

  /** Called by the watchdog after a poll for I/O: silence beyond `stallMs` rejoins. */
  checkStall(now: number): void {
    const stallMs = this.opts.stallMs ?? 300;
    if (this.#closed || this.#rejoining || this.lastAt === 0) return;
    if (now - Math.max(this.lastAt, this.#joinedAt) < stallMs) return;
    this.#rejoining = true;
    this.stallRejoins++;
    const old = this.location;
    if (old) void httpRequest('DELETE', old, { authorization: `Bearer ${this.opts.token}` }, undefined, 500).catch(() => undefined);
    this.join(10_000)
      .catch(() => undefined)
      .finally(() => {
        this.#rejoining = false;
      });
  }

  close(): void {
    this.#closed = true;
    watch.remove(this);
    try {
      this.socket.close();
    } catch {
      // closed
    }
  }
}
