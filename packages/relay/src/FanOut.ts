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
  /** The receivers as numbers for `sendMany` (0 where not IPv4), with room to grow. */
  #ipv4s = new Uint32Array(8);
  #portsU32 = new Uint32Array(8);
  /** Receivers that are not IPv4: while there is one, every send goes through `socket.send`. */
  #notIpv4 = 0;
  readonly #native: NativeUdp | null;
  /** Datagrams sent natively, and sent with `socket.send` (no addon, IPv6, or a full buffer). */
  nativeSent = 0;
  dgramSent = 0;

  /** `native: false` always uses `socket.send` (the benchmark's baseline). */
  constructor(opts: { native?: boolean } = {}) {
    this.#native = opts.native === false ? null : nativeUdp();
  }

  /** Replaces the list, in its order (duplicates collapse); throws RangeError on an invalid endpoint. */
  set(endpoints: readonly UdpEndpoint[]): void {
    for (const ep of endpoints) validateEndpoint(ep);
    this.#hosts = [];
    this.#ports = [];
    this.#index = new Map();
    this.#notIpv4 = 0;
    for (const ep of endpoints) this.#append(ep.host, ep.port);
  }

  /** Adds one receiver (false if it is there already); throws RangeError on an invalid endpoint. O(1). */
  add(ep: UdpEndpoint): boolean {
    validateEndpoint(ep);
    return this.#append(ep.host, ep.port);
  }

  /** Removes one receiver (false if it was not there); the last one takes its place. O(1). */
  remove(host: string, port: number): boolean {
    const key = endpointKey(host, port);
    const i = this.#index.get(key);
    if (i === undefined) return false;
    if (ipv4ToInt(host) < 0) this.#notIpv4--;
    const last = this.#hosts.length - 1;
    if (i !== last) {
      this.#hosts[i] = this.#hosts[last];
      this.#ports[i] = this.#ports[last];
      this.#ipv4s[i] = this.#ipv4s[last];
      this.#portsU32[i] = this.#portsU32[last];
      this.#index.set(endpointKey(this.#hosts[i], this.#ports[i]), i);
    }
    this.#hosts.pop();
    this.#ports.pop();
    this.#index.delete(key);
    return true;
  }

  #append(host: string, port: number): boolean {
    const key = endpointKey(host, port);
    if (this.#index.has(key)) return false;
    const i = this.#hosts.length;
    if (i === this.#ipv4s.length) {
      const ipv4s = new Uint32Array(2 * i);
      ipv4s.set(this.#ipv4s);
      const ports = new Uint32Array(2 * i);
      ports.set(this.#portsU32);
      this.#ipv4s = ipv4s;
      this.#portsU32 = ports;
    }
    const n = ipv4ToInt(host);
    if (n < 0) this.#notIpv4++;
    this.#ipv4s[i] = n < 0 ? 0 : n;
    this.#portsU32[i] = port;
    this.#index.set(key, i);
    this.#hosts.push(host);
    this.#ports.push(port);
    return true;
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
    if (this.#native !== null && this.#notIpv4 === 0 && n > 0) {
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
