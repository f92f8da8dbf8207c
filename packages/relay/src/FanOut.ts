/**
 * The children of a node in the relay tree: where every feed packet is copied to. Kept as two
 * parallel arrays so the per-packet loop is a plain indexed `socket.send(buf, port, host)` with
 * the same Buffer for every child (no per-child copy, closure or address object).
 */
import { isIP } from 'node:net';
import type { Socket } from 'node:dgram';
import type { UdpEndpoint } from './RelayTypes.js';

export function endpointKey(host: string, port: number): string {
  return `${host}:${port}`;
}

/** Throws RangeError unless `ep` is an IP literal and a port 1..65535 (an API edge, not the media path). */
export function validateEndpoint(ep: UdpEndpoint): void {
  if (isIP(ep.host) === 0) throw new RangeError(`"${ep.host}" is not an IP address`);
  if (!Number.isInteger(ep.port) || ep.port < 1 || ep.port > 65535) throw new RangeError(`port ${ep.port} is outside 1..65535`);
}

export class FanOut {
  #hosts: string[] = [];
  #ports: number[] = [];
  #index = new Map<string, number>();

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
    for (let i = 0; i < n; i++) socket.send(datagram, ports[i], hosts[i]);
    return n;
  }
}
