/**
 * The receivers one packet is copied to: a node's children in the relay tree, or a relay's
 * plain-RTP viewers. Kept as parallel arrays so that the same Buffer goes to every receiver with
 * no per-receiver copy, closure or address object. With the native addon (`nativeUdp`, Linux) and
 * IPv4 receivers, one `sendMany` call (sendmmsg(2), up to 256 datagrams per system call) replaces
 * a `socket.send` per receiver; what it could not send (a full socket buffer) goes through
 * `socket.send`, which queues.
 */
import { isIP } from 'node:net';
import type { Socket } from 'node:dgram';
import { ipv4ToInt, nativeUdp, socketFd, type NativeUdp } from '@mcu/rtp';
import type { UdpEndpoint } from './RelayTypes.js';

export function endpointKey(host: string, port: number): string {
  return `${host}:${port}`;
}

/** Throws RangeError unless `ep` is an IP literal and a port 1..65535 (an API edge, not the media path). */
export function validateEndpoint(ep: UdpEndpoint): void {
  if (isIP(ep.host) === 0) throw new RangeError(`"${ep.host}" is not an IP address`);
  if (!Number.isInteger(ep.port) || ep.port < 1 || ep.port > 65535) throw new RangeError(`port ${ep.port} is outside 1..65535`);
}

/** Descriptors of the sockets sent on, found once per socket. */
const fds = new WeakMap<Socket, number>();

function fdOf(socket: Socket): number {
  let fd = fds.get(socket);
  if (fd === undefined) {
    fd = socketFd(socket);
    fds.set(socket, fd);
  }
  return fd;
}

export class FanOut {
  #hosts: string[] = [];
  #ports: number[] = [];
  #index = new Map<string, number>();
  /** The receivers as numbers for `sendMany`; null when one of them is not IPv4. */
  #ipv4s: Uint32Array | null = new Uint32Array(0);
  #portsU32 = new Uint32Array(0);
  readonly #native: NativeUdp | null;
  /** Datagrams sent natively, and sent with `socket.send` (no addon, IPv6, or a full buffer). */
  nativeSent = 0;
  dgramSent = 0;

  /** `native: false` always uses `socket.send` (the benchmark's baseline). */
  constructor(opts: { native?: boolean } = {}) {
    this.#native = opts.native === false ? null : nativeUdp();
  }

  /** Replaces the list (duplicates collapse); throws RangeError on an invalid endpoint. */
  set(endpoints: readonly UdpEndpoint[]): void {
    const hosts: string[] = [];
    const ports: number[] = [];
    const index = new Map<string, number>();
    for (const ep of endpoints) {
      validateEndpoint(ep);
      const key = endpointKey(ep.host, ep.port);
      if (index.has(key)) continue;
      index.set(key, hosts.length);
      hosts.push(ep.host);
      ports.push(ep.port);
    }
    this.#hosts = hosts;
    this.#ports = ports;
    this.#index = index;
    const ipv4s = hosts.map(ipv4ToInt);
    this.#ipv4s = ipv4s.every((n) => n >= 0) ? Uint32Array.from(ipv4s) : null;
    this.#portsU32 = Uint32Array.from(ports);
  }

  get size(): number {
    return this.#hosts.length;
  }

  has(host: string, port: number): boolean {
    return this.#index.has(endpointKey(host, port));
  }

  list(): UdpEndpoint[] {
    return this.#hosts.map((host, i) => ({ host, port: this.#ports[i] }));
  }

  /**
   * Sends `datagram` (exactly the bytes to send) to every child and returns how many sends were
   * issued. No callback: Node then tries a synchronous send first and allocates no completion.
   */
  send(socket: Socket, datagram: Buffer): number {
    const hosts = this.#hosts;
    const ports = this.#ports;
    const n = hosts.length;
    let from = 0;
    if (this.#native !== null && this.#ipv4s !== null && n > 0) {
      const fd = fdOf(socket);
      if (fd >= 0) {
        const sent = this.#native.sendMany(fd, datagram, datagram.length, this.#ipv4s, this.#portsU32, n);
        if (sent > 0) from = sent;
      }
    }
    this.nativeSent += from;
    this.dgramSent += n - from;
    for (let i = from; i < n; i++) socket.send(datagram, ports[i], hosts[i]);
    return n;
  }
}
