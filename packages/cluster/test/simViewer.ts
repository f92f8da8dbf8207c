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
 *
 * `SimViewer.open` gives a viewer a dgram socket of its own (tests); `SimViewer.openMany` gives many
 * viewers one native UdpReceivers set (the benchmark's load generator), read by the watchdog just
 * before it checks for stalls, each packet with its kernel arrival time.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import http from 'node:http';
import { UdpReceivers } from '@mcu/rtp';

export interface SimViewerOptions {
  /** The mixer's plain-RTP viewer URL of the event: `${mixer}/rtp-viewers/${id}`. */
  url: string;
  token: string;
  /** No packet for this long: the relay is gone, join again. */
  stallMs?: number;
  /** Each packet's RTP sequence number and arrival (performance.now() ms). */
  onPacket?: (seq: number, at: number) => void;
  /** Receive only the packets whose sequence number leaves `phase` (default 0) divided by this (the relay thins the feed). */
  everyNth?: number;
  phase?: number;
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

/**
 * How often the shared receiver sets are read while no viewer looks stalled (ms). At 10 packets/s
 * a read then finds about four datagrams per socket, and recvmmsg costs a third as much per
 * datagram as with one (bench:receivers); the arrival times are the kernel's either way. A viewer
 * that looks stalled has the sets read at once, so stall detection keeps the watchdog's period
 * (with the benchmark's 700 ms, a viewer whose packets keep coming never looks stalled between
 * two reads: its last packet is at most 500 ms old).
 */
const READ_PERIOD_MS = 400;

/** Where a viewer's packets arrive: its own dgram socket, or one socket of a shared UdpReceivers set. */
interface Inlet {
  readonly port: number;
  close(): void;
}

/** Viewers sharing one UdpReceivers set: read by the watchdog, closed with its last viewer. */
class SharedInlets {
  readonly viewers: SimViewer[] = [];
  #open = 0;
  constructor(readonly receivers: UdpReceivers) {}

  inlet(index: number): Inlet {
    this.#open++;
    let closed = false;
    return {
      port: this.receivers.ports[index],
      close: () => {
        if (closed) return;
        closed = true;
        if (--this.#open === 0) {
          this.receivers.close();
          watch.inlets.delete(this);
          watch.stopIfIdle();
        }
      },
    };
  }

  readonly #deliver = (index: number, _length: number, seq: number, _ts: number, at: number): void => {
    if (seq >= 0) this.viewers[index]?.received(seq, at);
  };

  read(): void {
    this.receivers.read(this.#deliver);
  }
}

/** The process's stall watchdog, shared by every open viewer; reads the shared receiver sets first. */
const watch = {
  viewers: new Set<SimViewer>(),
  inlets: new Set<SharedInlets>(),
  timer: undefined as NodeJS.Timeout | undefined,
  lastReadAt: 0,
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => setImmediate(() => this.check()), WATCH_PERIOD_MS);
  },
  check(): void {
    const before = performance.now();
    let read = before - this.lastReadAt >= READ_PERIOD_MS;
    if (!read) {
      for (const viewer of this.viewers) {
        if (viewer.stalled(before)) {
          read = true;
          break;
        }
      }
    }
    if (read) {
      this.lastReadAt = before;
      for (const set of this.inlets) set.read();
    }
    // Without a read nobody looked stalled at `before`: nothing to decide at a later instant.
    const now = read ? performance.now() : before;
    for (const viewer of this.viewers) viewer.checkStall(now);
  },
  add(v: SimViewer): void {
    this.viewers.add(v);
    this.start();
  },
  remove(v: SimViewer): void {
    this.viewers.delete(v);
    this.stopIfIdle();
  },
  stopIfIdle(): void {
    if (this.viewers.size === 0 && this.inlets.size === 0 && this.timer) {
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
  /** Failed join attempts by reason: `http <status>`, an error code (ECONNREFUSED) or `timeout`. */
  readonly joinFailureReasons: Record<string, number> = {};
  relay: string | null = null;
  /** Where its plain-RTP viewer resource lives on the relay (to delete it when leaving). */
  location: string | null = null;
  /** How long each join took (ms), and when each stall was called (performance.now() ms). */
  readonly joinMs: number[] = [];
  readonly stallAt: number[] = [];

  get joinFailures(): number {
    let n = 0;
    for (const k in this.joinFailureReasons) n += this.joinFailureReasons[k];
    return n;
  }

  /** Rejoins because the feed stalled. */
  get stallRejoins(): number {
    return this.stallAt.length;
  }
  #rejoining = false;
  #joinedAt = 0;
  #closed = false;

  private constructor(
    readonly inlet: Inlet,
    readonly opts: SimViewerOptions,
  ) {}

  /** A viewer with a dgram socket of its own. */
  static async open(opts: SimViewerOptions): Promise<SimViewer> {
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
    s.bind(0, '127.0.0.1');
    await once(s, 'listening');
    const v = new SimViewer({ port: s.address().port, close: () => s.close() }, opts);
    s.on('message', (msg) => {
      if (msg.length >= 4) v.received((msg[2] << 8) | msg[3], performance.now());
    });
    return v;
  }

  /**
   * `count` viewers on one UdpReceivers set (native where built: batched reads, kernel arrival
   * times), `opts(i)` each viewer's options; the set closes with the last of them.
   */
  static async openMany(count: number, opts: (index: number) => SimViewerOptions): Promise<SimViewer[]> {
    const shared = new SharedInlets(await UdpReceivers.open({ count, bufferBytes: 1 << 18 }));
    for (let i = 0; i < count; i++) shared.viewers.push(new SimViewer(shared.inlet(i), opts(i)));
    watch.inlets.add(shared);
    watch.start();
    return shared.viewers;
  }

  /** Reads every shared receiver set now (before a report: the watchdog reads only every READ_PERIOD_MS). */
  static readAll(): void {
    for (const set of watch.inlets) set.read();
  }

  get port(): number {
    return this.inlet.port;
  }

  /** A packet for this viewer: its sequence number and arrival (performance.now() ms). */
  received(seq: number, at: number): void {
    if (this.#closed) return;
    if (this.lastAt > 0) this.maxGapMs = Math.max(this.maxGapMs, at - this.lastAt);
    this.lastAt = Math.max(this.lastAt, at);
    this.packets++;
    this.opts.onPacket?.(seq, at);
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
    const { everyNth, phase } = this.opts;
    const body = JSON.stringify({ host: '127.0.0.1', port: this.port, ...(everyNth && everyNth > 1 && { everyNth }), ...(phase && { phase }) });
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
        this.#failed(`http ${res.status}`);
      } catch (err) {
        // the relay died under us (connection refused) or a timeout: ask again
        this.#failed((err as NodeJS.ErrnoException).code ?? 'timeout');
      }
      await new Promise((r) => setTimeout(r, backoffMs * (0.5 + Math.random())));
      backoffMs = Math.min(1000, backoffMs * 2);
    }
    throw new Error(`viewer could not join within ${timeoutMs} ms`);
  }

  #failed(reason: string): void {
    this.joinFailureReasons[reason] = (this.joinFailureReasons[reason] ?? 0) + 1;
  }

  /** Silent beyond `stallMs` (and not already rejoining). */
  stalled(now: number): boolean {
    if (this.#closed || this.#rejoining || this.lastAt === 0) return false;
    return now - Math.max(this.lastAt, this.#joinedAt) >= (this.opts.stallMs ?? 300);
  }

  /** Called by the watchdog after a poll for I/O: silence beyond `stallMs` rejoins. */
  checkStall(now: number): void {
    if (!this.stalled(now)) return;
    this.#rejoining = true;
    this.stallAt.push(now);
    // The old resource is deleted after the new join, not before: its relay is most likely dead, and
    // a request to it (a refused connection) would only delay the join that ends the silence.
    const old = this.location;
    this.join(10_000)
      .catch(() => undefined)
      .finally(() => {
        this.#rejoining = false;
        if (old && old !== this.location) void httpRequest('DELETE', old, { authorization: `Bearer ${this.opts.token}` }, undefined, 500).catch(() => undefined);
      });
  }

  close(): void {
    this.#closed = true;
    watch.remove(this);
    try {
      this.inlet.close();
    } catch {
      // closed
    }
  }
}
