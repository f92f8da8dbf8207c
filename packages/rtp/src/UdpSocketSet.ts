/**
 * A changing set of UDP sockets read and written in batches: a mixer's plain-RTP participants,
 * each on a port of its own (symmetric RTP, RFC 4961), joining and leaving one at a time.
 *
 * The sockets belong to the native addon (Linux), not libuv: one epoll set over all of them, read
 * with recvmmsg(2) when `read` is called (once per mixing tick), whole datagrams copied into one
 * reused buffer with their source address and kernel arrival time (SO_TIMESTAMPNS). A tick's
 * outgoing packets are queued in a `UdpSendBatch` and leave in one call: each datagram's own head
 * (its RTP header) gathered with one shared payload (the shared mix, never copied per listener).
 * Node's dgram sockets cost a wake-up, a recvmsg, a Buffer, an address object and a callback per
 * datagram in, and a send request and its completion per datagram out.
 *
 * `UdpSocketSet.open()` is null where the addon is not built (or `MCU_NATIVE_UDP=0`): callers keep
 * their dgram sockets then.
 */
import { ipv4ToInt, nativeUdp, type NativeSender, type NativeUdp } from './NativeUdp.js';
import { monotonicToPerformanceMs } from './UdpReceivers.js';

/**
 * Called per datagram by `read`: the socket's slot, the datagram (`packet[0, length)`, a view
 * valid only during the call; `length` above the set's `slotBytes` means it was truncated), its
 * source (IPv4 as a number, -1 when not IPv4; port) and kernel arrival time (performance.now() ms).
 */
export type PacketVisitor = (slot: number, packet: Uint8Array, length: number, sourceIpv4: number, sourcePort: number, atMs: number) => void;

export interface UdpSocketSetOptions {
  /** Bytes kept of each datagram (default 1504: a 1500-byte MTU's worth, and a longer one is seen as longer). */
  slotBytes?: number;
  /** Datagrams per native read call (default 512; `read` calls again while it comes back full). */
  batch?: number;
  /** Send and receive buffer of each socket (default 256 KiB). */
  bufferBytes?: number;
  /** false: null even where the addon is built (tests of the fallback). */
  native?: boolean;
}

const RECORD = 5;

export class UdpSocketSet {
  readonly slotBytes: number;
  /** Datagrams read so far. */
  datagrams = 0;
  readonly #native: NativeUdp;
  readonly #epfd: number;
  readonly #bufferBytes: number;
  readonly #records: Float64Array;
  readonly #data: Uint8Array;
  /** One view per datagram position of `#data`, made once. */
  readonly #views: Uint8Array[];
  readonly #monoToPerf: number;
  /** fd by slot, -1 for a free slot. */
  #fds: number[] = [];
  #freeSlots: number[] = [];
  #size = 0;
  readonly #out = new Int32Array(2);
  #closed = false;

  private constructor(native: NativeUdp, epfd: number, opts: UdpSocketSetOptions) {
    this.#native = native;
    this.#epfd = epfd;
    this.slotBytes = opts.slotBytes ?? 1504;
    this.#bufferBytes = opts.bufferBytes ?? 256 * 1024;
    const batch = opts.batch ?? 512;
    this.#records = new Float64Array(batch * RECORD);
    this.#data = new Uint8Array(batch * this.slotBytes);
    this.#views = [];
    for (let k = 0; k < batch; k++) this.#views.push(this.#data.subarray(k * this.slotBytes, (k + 1) * this.slotBytes));
    this.#monoToPerf = monotonicToPerformanceMs();
  }

  /** An empty set, or null without the native addon. Throws when the epoll set cannot be made. */
  static open(opts: UdpSocketSetOptions = {}): UdpSocketSet | null {
    const native = opts.native === false ? null : nativeUdp();
    if (native === null) return null;
    const epfd = native.setOpen();
    if (epfd < 0) throw new Error(`could not open an epoll set: errno ${-epfd}`);
    return new UdpSocketSet(native, epfd, opts);
  }

  get size(): number {
    return this.#size;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /**
   * Opens a socket bound to `host`:`port` (an IPv4 literal; port 0: a free one). Returns its slot
   * (given back with its datagrams), fd (for `UdpSendBatch.add`) and port; throws when it cannot bind.
   */
  add(host: string, port = 0): { slot: number; fd: number; port: number } {
    if (this.#closed) throw new Error('socket set is closed');
    const ipv4 = ipv4ToInt(host);
    if (ipv4 < 0) throw new RangeError(`"${host}" is not an IPv4 address`);
    const slot = this.#freeSlots.length > 0 ? this.#freeSlots.pop()! : this.#fds.length;
    const r = this.#native.setAdd(this.#epfd, ipv4, port, this.#bufferBytes, slot, this.#out);
    if (r < 0) {
      if (slot === this.#fds.length) this.#fds.length = slot;
      else this.#freeSlots.push(slot);
      throw new Error(`could not bind UDP ${host}:${port}: errno ${-r}`);
    }
    this.#fds[slot] = this.#out[0];
    this.#size++;
    return { slot, fd: this.#out[0], port: this.#out[1] };
  }

  /** Closes the socket of `slot`; what it still held is never read. Unknown slots are ignored. */
  remove(slot: number): void {
    const fd = this.#fds[slot];
    if (this.#closed || fd === undefined || fd < 0) return;
    this.#native.setRemove(this.#epfd, fd);
    this.#fds[slot] = -1;
    this.#freeSlots.push(slot);
    this.#size--;
  }

  /** Visits every datagram that arrived since the last read, oldest first per socket; returns how many. */
  read(visit: PacketVisitor): number {
    if (this.#closed) return 0;
    const r = this.#records;
    const views = this.#views;
    const batch = views.length;
    const offset = this.#monoToPerf;
    let total = 0;
    for (;;) {
      const n = this.#native.setRead(this.#epfd, r, this.#data, this.slotBytes);
      for (let k = 0, i = 0; k < n; k++, i += RECORD) {
        // A socket removed by an earlier visit in this batch: its slot may already be someone else's.
        if (this.#fds[r[i]] === -1) continue;
        visit(r[i], views[k], r[i + 1], r[i + 2], r[i + 3], r[i + 4] + offset);
      }
      total += n;
      if (n < batch || this.#closed) break;
    }
    this.datagrams += total;
    return total;
  }

  /** Closes every socket and the epoll set; idempotent. */
  close(): void {
    if (this.#closed) return;
    for (let slot = 0; slot < this.#fds.length; slot++) if (this.#fds[slot] >= 0) this.#native.setRemove(this.#epfd, this.#fds[slot]);
    this.#native.setRemove(-1, this.#epfd);
    this.#fds = [];
    this.#freeSlots = [];
    this.#size = 0;
    this.#closed = true;
  }
}

/** Called by `UdpSendBatch.flush` for each datagram that could not be sent: its tag and errno. */
export type SendFailure = (tag: number, errno: number) => void;

/**
 * The datagrams of one tick, each from its own socket to its own receiver, sent in one native
 * call: each one's head copied into a row of one buffer, the shared payload (`setTail`) gathered
 * after the heads that ask for it. Grows (by doubling) only when a tick has more datagrams than any before.
 *
 * With `thread`, `flush` hands the batch to a native sender thread and returns at once: the
 * datagrams leave while the caller goes on (a mixer's next tick), and what failed is reported by
 * the next `flush` (or `drain`). `close` lets the last batch leave and stops the thread.
 */
export class UdpSendBatch {
  readonly headStride: number;
  #count = 0;
  #capacity = 0;
  #fds = new Int32Array(0);
  #ipv4s = new Uint32Array(0);
  #ports = new Uint32Array(0);
  #tags = new Int32Array(0);
  #heads = new Uint8Array(0);
  #headLengths = new Uint32Array(0);
  #withTail = new Uint8Array(0);
  #results = new Int32Array(0);
  #tail: Uint8Array = new Uint8Array(0);
  #tailLength = 0;
  readonly #native: NativeUdp;
  /** Thread mode: the sender, and the tags and size of the batch it holds (its outcome comes back with the next hand-over). */
  #sender: NativeSender | null;
  #pendingTags = new Int32Array(0);
  #pending = 0;
  readonly #senderStats = new Float64Array(2);
  #closed = false;
  /** Datagrams sent, and failed, so far (thread mode: of the batches whose outcome is known). */
  sent = 0;
  failed = 0;

  constructor(native: NativeUdp, opts: { headStride?: number; capacity?: number; thread?: boolean } = {}) {
    this.#native = native;
    this.headStride = opts.headStride ?? 1504;
    this.#sender = opts.thread ? native.senderOpen() : null;
    this.#grow(opts.capacity ?? 64);
  }

  /** A batch on the native addon, or null where it is not built. `thread`: sent by a native sender thread. */
  static create(opts: { headStride?: number; capacity?: number; native?: boolean; thread?: boolean } = {}): UdpSendBatch | null {
    const native = opts.native === false ? null : nativeUdp();
    return native === null ? null : new UdpSendBatch(native, opts);
  }

  get length(): number {
    return this.#count;
  }

  /** The payload every datagram added with `withTail` ends with; read when `flush` runs. */
  setTail(tail: Uint8Array, length: number): void {
    this.#tail = tail;
    this.#tailLength = length;
  }

  /**
   * Queues `head[0, headLength)` (plus the tail when `withTail`) from socket `fd` to `ipv4`:`port`.
   * `tag` comes back with a failure. A head longer than the stride is cut to it.
   */
  add(tag: number, fd: number, ipv4: number, port: number, head: Uint8Array, headLength: number, withTail: boolean): void {
    const i = this.#count;
    if (i === this.#capacity) this.#grow(this.#capacity * 2);
    this.#fds[i] = fd;
    this.#ipv4s[i] = ipv4;
    this.#ports[i] = port;
    this.#tags[i] = tag;
    const n = headLength < this.headStride ? headLength : this.headStride;
    const heads = this.#heads;
    const base = i * this.headStride;
    // A byte loop for RTP headers (no view allocated); a copy for whole packets.
    if (n > 64) heads.set(n === head.length ? head : head.subarray(0, n), base);
    else for (let b = 0; b < n; b++) heads[base + b] = head[b];
    this.#headLengths[i] = n;
    this.#withTail[i] = withTail ? 1 : 0;
    this.#count = i + 1;
  }

  /** Whether batches leave from a sender thread. */
  get threaded(): boolean {
    return this.#sender !== null;
  }

  /** Thread mode: batches handed over, and hand-overs that had to wait for the previous batch to leave. */
  get threadStats(): { batches: number; waits: number } | null {
    if (this.#sender === null) return null;
    this.#native.senderStats(this.#sender, this.#senderStats);
    return { batches: this.#senderStats[0], waits: this.#senderStats[1] };
  }

  /**
   * Sends what was queued; calls `onFailure` per datagram not sent. Returns how many were sent.
   * Thread mode: hands the batch over and returns how many of the PREVIOUS batch were sent
   * (`onFailure` is called for that one's failures).
   */
  flush(onFailure?: SendFailure): number {
    const count = this.#count;
    if (this.#sender !== null) return this.#handOver(count, onFailure);
    if (count === 0 || this.#closed) return (this.#count = 0);
    this.#count = 0;
    const sent = this.#native.sendEach(
      count,
      this.#fds,
      this.#ipv4s,
      this.#ports,
      this.#heads,
      this.headStride,
      this.#headLengths,
      this.#tail,
      this.#tailLength,
      this.#withTail,
      this.#results,
    );
    return this.#account(sent, count, this.#tags, onFailure);
  }

  /** Thread mode: waits until the batch handed over last has left and reports it (as `flush` does). */
  drain(onFailure?: SendFailure): number {
    if (this.#sender === null) return 0;
    const queued = this.#count;
    this.#count = 0;
    const sent = this.#handOver(0, onFailure);
    this.#count = queued;
    return sent;
  }

  #handOver(count: number, onFailure: SendFailure | undefined): number {
    this.#count = 0;
    const pending = this.#pending;
    if (count === 0 && pending === 0) return 0;
    const sent = this.#native.senderSubmit(
      this.#sender!,
      count,
      this.#fds,
      this.#ipv4s,
      this.#ports,
      this.#heads,
      this.headStride,
      this.#headLengths,
      this.#tail,
      this.#tailLength,
      this.#withTail,
      this.#results,
    );
    // `results` now holds the previous batch's outcome, tagged by `#pendingTags`.
    this.#account(sent, pending, this.#pendingTags, onFailure);
    if (count > 0) {
      if (this.#pendingTags.length < count) this.#pendingTags = new Int32Array(this.#tags.length);
      this.#pendingTags.set(this.#tags.subarray(0, count));
    }
    this.#pending = count;
    return sent;
  }

  /** Counts a batch of `count` that left with `sent` sent; reports each failed datagram by its tag. */
  #account(sent: number, count: number, tags: Int32Array, onFailure: SendFailure | undefined): number {
    this.sent += sent;
    if (sent < count) {
      this.failed += count - sent;
      if (onFailure) for (let i = 0; i < count; i++) if (this.#results[i] !== 0) onFailure(tags[i], this.#results[i]);
    }
    return sent;
  }

  /** Forgets what was queued, unsent. */
  clear(): void {
    this.#count = 0;
  }

  /** Sends nothing more; thread mode: lets the last batch leave and stops the thread. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#count = 0;
    if (this.#sender === null) return;
    this.drain();
    this.#native.senderClose(this.#sender);
    this.#sender = null;
  }

  #grow(capacity: number): void {
    const grow = <T extends Int32Array | Uint32Array | Uint8Array>(old: T, make: (n: number) => T, per = 1): T => {
      const next = make(capacity * per);
      next.set(old);
      return next;
    };
    this.#fds = grow(this.#fds, (n) => new Int32Array(n));
    this.#ipv4s = grow(this.#ipv4s, (n) => new Uint32Array(n));
    this.#ports = grow(this.#ports, (n) => new Uint32Array(n));
    this.#tags = grow(this.#tags, (n) => new Int32Array(n));
    this.#heads = grow(this.#heads, (n) => new Uint8Array(n), this.headStride);
    this.#headLengths = grow(this.#headLengths, (n) => new Uint32Array(n));
    this.#withTail = grow(this.#withTail, (n) => new Uint8Array(n));
    this.#results = new Int32Array(capacity);
    this.#capacity = capacity;
  }
}
