/**
 * Many UDP receivers in one process, read in batches: the simulated viewers of a load generator
 * (thousands per process) and the probes that time a packet's arrival at each relay.
 *
 * With the native addon (Linux) the sockets belong to it, one epoll set over all of them, read
 * with recvmmsg(2) when `read` is called; each datagram comes with its kernel arrival time
 * (SO_TIMESTAMPNS), so a busy process that reads late still reports when the packet arrived.
 * Node's own sockets cost a recvmsg, a Buffer, an address object and a callback per datagram:
 * about 10 µs of a core each in a process holding 2,500 viewer sockets (bench:tree), which made
 * the load generator the bottleneck of the benchmark it drives. Without the addon (another OS,
 * `MCU_NATIVE_UDP=0`) the same interface runs on dgram sockets, timed when Node delivers them.
 *
 * Only the head of each datagram is read: the RTP sequence number and timestamp, and its length.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { ipv4ToInt, nativeUdp, type NativeUdp } from './NativeUdp.js';

export interface UdpReceiversOptions {
  /** How many sockets. */
  count: number;
  /** IPv4 literal to bind (default 127.0.0.1); each socket gets a free port. */
  host?: string;
  /** Receive buffer per socket (default 256 KiB). */
  bufferBytes?: number;
  /** false: dgram sockets even where the addon is built (tests, the baseline). */
  native?: boolean;
}

/** Called per datagram by `read`: socket index, length, RTP sequence number and timestamp (-1 when shorter than an RTP header), arrival (performance.now() ms). */
export type DatagramVisitor = (index: number, length: number, seq: number, timestamp: number, atMs: number) => void;

/**
 * Linux switches receive timestamps on for the whole system when the first socket asks, from a work
 * queue, and off again when the last such socket closes: a datagram that arrives in between is
 * stamped when it is read. So the first native set of the process opens one more socket, kept for
 * the process's life, and waits for the switch.
 */
let timestampsOn: Promise<void> | undefined;
function kernelTimestampsOn(native: NativeUdp): Promise<void> {
  timestampsOn ??= (async () => {
    native.receiversOpen(0x7f00_0001, 1, 0, new Int32Array(1), new Uint32Array(1));
    await new Promise((resolve) => setTimeout(resolve, 50));
  })();
  return timestampsOn;
}

const RECORD = 5;
/** Datagrams per native read call (the records array is reused). */
const BATCH = 4096;

/** Milliseconds to add to a CLOCK_MONOTONIC time (process.hrtime's clock) to get performance.now()'s: a constant of the process. */
export function monotonicToPerformanceMs(): number {
  let best = Infinity;
  let offset = 0;
  // The pair read closest together (the two calls can be split by a preemption).
  for (let i = 0; i < 5; i++) {
    const a = performance.now();
    const mono = Number(process.hrtime.bigint()) / 1e6;
    const b = performance.now();
    if (b - a < best) {
      best = b - a;
      offset = (a + b) / 2 - mono;
    }
  }
  return offset;
}

export class UdpReceivers {
  readonly ports: readonly number[];
  /** Datagrams read so far. */
  datagrams = 0;
  readonly #native: NativeUdp | null;
  readonly #epfd: number;
  readonly #fds: Int32Array;
  readonly #records: Float64Array;
  readonly #monoToPerf: number;
  /** Fallback: the dgram sockets and what they received since the last read. */
  readonly #sockets: dgram.Socket[];
  #queued: number[] = [];
  #closed = false;

  private constructor(native: NativeUdp | null, epfd: number, fds: Int32Array, ports: number[], sockets: dgram.Socket[]) {
    this.#native = native;
    this.#epfd = epfd;
    this.#fds = fds;
    this.ports = ports;
    this.#sockets = sockets;
    this.#records = new Float64Array(native ? BATCH * RECORD : 0);
    this.#monoToPerf = monotonicToPerformanceMs();
    sockets.forEach((s, index) =>
      s.on('message', (msg: Buffer) => {
        const rtp = msg.length >= 12;
        this.#queued.push(index, msg.length, rtp ? msg.readUInt16BE(2) : -1, rtp ? msg.readUInt32BE(4) : -1, performance.now());
      }),
    );
  }

  /** Opens the sockets; throws (with nothing left open) when they cannot all be bound. */
  static async open(opts: UdpReceiversOptions): Promise<UdpReceivers> {
    const host = opts.host ?? '127.0.0.1';
    const ipv4 = ipv4ToInt(host);
    if (ipv4 < 0) throw new RangeError(`"${host}" is not an IPv4 address`);
    if (!Number.isInteger(opts.count) || opts.count < 0) throw new RangeError(`count ${opts.count} is not a non-negative integer`);
    const bufferBytes = opts.bufferBytes ?? 256 * 1024;
    const native = opts.native === false ? null : nativeUdp();
    if (native) {
      await kernelTimestampsOn(native);
      const fds = new Int32Array(opts.count).fill(-1);
      const ports = new Uint32Array(opts.count);
      const epfd = native.receiversOpen(ipv4, opts.count, bufferBytes, fds, ports);
      if (epfd < 0) throw new Error(`could not open ${opts.count} UDP receivers on ${host}: errno ${-epfd}`);
      return new UdpReceivers(native, epfd, fds, [...ports], []);
    }
    const sockets: dgram.Socket[] = [];
    try {
      for (let i = 0; i < opts.count; i++) {
        const s = dgram.createSocket({ type: 'udp4', recvBufferSize: bufferBytes });
        sockets.push(s);
        s.bind(0, host);
        await once(s, 'listening');
      }
    } catch (err) {
      for (const s of sockets) s.close();
      throw err;
    }
    return new UdpReceivers(null, -1, new Int32Array(0), sockets.map((s) => s.address().port), sockets);
  }

  get native(): boolean {
    return this.#native !== null;
  }

  get size(): number {
    return this.ports.length;
  }

  /** Visits every datagram that arrived since the last read, oldest first per socket; returns how many. */
  read(visit: DatagramVisitor): number {
    if (this.#closed) return 0;
    let total = 0;
    const native = this.#native;
    if (native === null) {
      const q = this.#queued;
      this.#queued = [];
      for (let i = 0; i < q.length; i += RECORD) visit(q[i], q[i + 1], q[i + 2], q[i + 3], q[i + 4]);
      total = q.length / RECORD;
    } else {
      const r = this.#records;
      const offset = this.#monoToPerf;
      for (;;) {
        const n = native.receiversRead(this.#epfd, this.#fds, r);
        for (let i = 0; i < n * RECORD; i += RECORD) visit(r[i], r[i + 1], r[i + 2], r[i + 3], r[i + 4] + offset);
        total += n;
        if (n < BATCH || this.#closed) break;
      }
    }
    this.datagrams += total;
    return total;
  }

  /** Closes every socket; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#native !== null) this.#native.receiversClose(this.#epfd, this.#fds);
    for (const s of this.#sockets) s.close();
  }
}
