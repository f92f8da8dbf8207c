import dgram from 'node:dgram';
import { once } from 'node:events';
import { networkInterfaces } from 'node:os';

/**
 * A free UDP port on `host`, for the media address in a mixer's NodeInfo (the schema wants one;
 * each event's feed socket binds a port of its own and advertises it in the `feeds` bucket).
 */
export async function freeUdpPort(host: string): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.bind(0, host);
  await once(s, 'listening');
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * The address other nodes reach a media socket bound to `bindHost` at: the bind address itself,
 * or for a wildcard bind (0.0.0.0, ::) this machine's first non-internal IPv4 address (a pod's IP).
 * Relays accept the feed only from their parent's advertised address, so it must be the address
 * packets leave from, not a NAT's public one.
 */
export function mediaAddressFor(bindHost: string): string {
  if (bindHost !== '0.0.0.0' && bindHost !== '::') return bindHost;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}
