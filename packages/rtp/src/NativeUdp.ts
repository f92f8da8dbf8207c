/**
 * Native helpers of the media path's UDP sockets (native/udp_addon.c, Linux): `sendMany` copies one
 * datagram to many IPv4 receivers with sendmmsg(2) on the socket's own descriptor; `receivers*`
 * hold many receiving sockets read in batches (UdpReceivers.ts). Optional: when
 * the addon is not built (another OS, a failed build) callers use dgram.send. Also the shared
 * pieces of every native addon here: loading one from build/, finding a dgram socket's fd.
 */
import { createRequire } from 'node:module';

/**
 * Loads a node-gyp addon named `name` from build/Release (or build/Debug) beside the package.json
 * above the calling module (`from` = its import.meta.url, a file in src/). Never throws: null and
 * the reason when it is not there, so the caller can fall back.
 */
export function loadNativeAddon<T>(from: string, name: string): { binding: T | null; error: Error | null } {
  const require = createRequire(from);
  let firstError: Error | null = null;
  for (const path of [`../build/Release/${name}.node`, `../build/Debug/${name}.node`]) {
    try {
      return { binding: require(path) as T, error: null };
    } catch (err) {
      firstError ??= err instanceof Error ? err : new Error(String(err));
    }
  }
  return { binding: null, error: firstError };
}

/**
 * The file descriptor behind a dgram socket (libuv's), or -1: read through Node's internal state
 * symbol (the public `_handle` is deprecated and warns). Linux and macOS only.
 */
export function socketFd(socket: object): number {
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
  const fd = sym ? (socket as Record<symbol, { handle?: { fd?: unknown } } | undefined>)[sym]?.handle?.fd : undefined;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

/** A dotted IPv4 address as an unsigned 32-bit number, or -1 for anything else (IPv6, names). */
export function ipv4ToInt(ip: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return -1;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return -1;
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}

export interface NativeUdp {
  /**
   * Sends `packet[0, length)` to `count` receivers (IPv4 as numbers, ports) on socket `fd`, without
   * blocking: the number sent (fewer than `count` when the socket buffer filled), or -errno when
   * the first one failed.
   */
  sendMany(fd: number, packet: Uint8Array, length: number, ipv4s: Uint32Array, ports: Uint32Array, count: number): number;
  /**
   * Opens `count` UDP sockets bound to `ipv4`:0 (receive buffer `bufferBytes`, 0: the system's),
   * with kernel arrival timestamps, in one epoll set: its fd, or -errno (nothing left open). Writes
   * the sockets' fds and ports.
   */
  receiversOpen(ipv4: number, count: number, bufferBytes: number, fds: Int32Array, ports: Uint32Array): number;
  /**
   * Reads what the sockets hold without blocking, up to `out.length / 5` datagrams: records of
   * [index, length, RTP sequence number, RTP timestamp (both -1 under 12 bytes), kernel arrival
   * ms on CLOCK_MONOTONIC]. Returns the records written.
   */
  receiversRead(epfd: number, fds: Int32Array, out: Float64Array): number;
  receiversClose(epfd: number, fds: Int32Array): void;
  /**
   * Reads what socket `fd` (libuv's) holds without blocking: datagram k copied to
   * `data[k * slotBytes, …)` and described by `out[k * 3, …)` = [real length, source IPv4 (-1: not
   * IPv4), source port]. Returns the datagrams read.
   */
  recvMany(fd: number, out: Float64Array, data: Uint8Array, slotBytes: number): number;
  /** An empty epoll set for `setAdd`: its fd, or -errno. */
  setOpen(): number;
  /**
   * Opens a UDP socket bound to `ipv4`:`port` (0: any free one; send and receive buffers
   * `bufferBytes`, 0: the system's), with kernel arrival timestamps, into set `epfd`; `slot` comes
   * back with each of its datagrams. 0 and `out` = [fd, bound port], or -errno (nothing left open).
   */
  setAdd(epfd: number, ipv4: number, port: number, bufferBytes: number, slot: number, out: Int32Array): number;
  /** Takes socket `fd` out of set `epfd` and closes it. */
  setRemove(epfd: number, fd: number): void;
  /**
   * Reads what the set's sockets hold without blocking: datagram k copied whole to
   * `data[k * slotBytes, …)` and described by `out[k * 5, …)` = [slot, real length (above
   * slotBytes: truncated), source IPv4 (-1: not IPv4), source port, kernel arrival ms on
   * CLOCK_MONOTONIC]. Returns the datagrams read (at most the room in `out` and `data`).
   */
  setRead(epfd: number, out: Float64Array, data: Uint8Array, slotBytes: number): number;
  /**
   * Sends `count` datagrams, each from its own socket `fds[i]` to `ipv4s[i]`:`ports[i]`:
   * `heads[i * headStride, + headLengths[i])` then, when `withTail[i]`, `tail[0, tailLength)`
   * (one shared payload, gathered by the kernel). Runs on one socket go in one sendmmsg(2).
   * `results[i]` = 0 or the errno of datagram i. Returns the datagrams sent.
   */
  sendEach(
    count: number,
    fds: Int32Array,
    ipv4s: Uint32Array,
    ports: Uint32Array,
    heads: Uint8Array,
    headStride: number,
    headLengths: Uint32Array,
    tail: Uint8Array,
    tailLength: number,
    withTail: Uint8Array,
    results: Int32Array,
  ): number;
  /** A sender thread (`senderSubmit`): an opaque handle; throws when the thread cannot start. */
  senderOpen(): NativeSender;
  /**
   * Hands `sendEach`'s arguments to the sender thread (copied: the arrays may be reused at once)
   * after the previous batch has left; returns how many of the PREVIOUS batch were sent and writes
   * its per-datagram outcome (0 or errno) into `results`. `count` 0: only waits for the previous one.
   */
  senderSubmit(
    sender: NativeSender,
    count: number,
    fds: Int32Array,
    ipv4s: Uint32Array,
    ports: Uint32Array,
    heads: Uint8Array,
    headStride: number,
    headLengths: Uint32Array,
    tail: Uint8Array,
    tailLength: number,
    withTail: Uint8Array,
    results: Int32Array,
  ): number;
  /** out = [batches handed over, hand-overs that waited for the previous batch]. */
  senderStats(sender: NativeSender, out: Float64Array): void;
  /** Lets the last batch leave and stops the thread. */
  senderClose(sender: NativeSender): void;
}

/** A native sender thread's handle. */
export type NativeSender = { readonly __nativeSender: unique symbol };

let loaded: { binding: NativeUdp | null; error: Error | null } | undefined;

/** The addon, loaded once (null when not built; `MCU_NATIVE_UDP=0` turns it off). */
export function nativeUdp(): NativeUdp | null {
  loaded ??= process.env.MCU_NATIVE_UDP === '0' ? { binding: null, error: null } : loadNativeAddon<NativeUdp>(import.meta.url, 'mcu_udp');
  return loaded.binding;
}
