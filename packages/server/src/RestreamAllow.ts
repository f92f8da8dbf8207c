/**
 * Where a restream may connect (node setting `restreamAllow`, `--restream-allow`,
 * `MCU_RESTREAM_ALLOW`). A restream URL makes this node open an outbound TCP connection to a host
 * and port a producer chose: without a limit, a producer token could reach the node's loopback,
 * its private network or a cloud metadata address. So the node connects only where a rule allows:
 *
 *   public            any host whose address is public unicast (the default, alone)
 *   host[:port]       that DNS name (`ingest.example.com`) or any name under `*.example.com`,
 *                     whatever it resolves to (the operator named it), on that port or any
 *   ip[:port]         that address: `127.0.0.1:1935`, `[::1]:1935`
 *   cidr[:port]       addresses in that network: `10.0.0.0/8`, `[fd00::/8]:1935`
 *
 * Not public: loopback, private (RFC 1918, IPv6 ULA), link-local (cloud metadata at 169.254.169.254),
 * carrier-grade NAT, unspecified, multicast, reserved and documentation ranges, and IPv4-mapped
 * IPv6 forms of them. A list without `public` allows only what it names.
 *
 * Checked when the restream is created (POST: 403 `restream_target_refused`, or 400
 * `restream_host_unresolved`) and again at every connection of every run, on the addresses the
 * name resolves to then (`lookup`): a name that resolved to a public address at POST and to a
 * private one later (DNS rebinding) is refused at that connection, and only allowed addresses are
 * ever dialled.
 */
import dns from 'node:dns';
import net from 'node:net';
import { ForbiddenError, ValidationError } from '@mcu/control';

export const RESTREAM_ALLOW_DEFAULT: readonly string[] = Object.freeze(['public']);

type Rule = { kind: 'public' } | { kind: 'name'; name: string; wildcard: boolean; port: number | null } | { kind: 'net'; list: net.BlockList; port: number | null };

const notPublic = new net.BlockList();
for (const [a, p] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  notPublic.addSubnet(a, p, 'ipv4');
for (const [a, p] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96],
  ['100::', 64],
  ['2001:db8::', 32],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
] as const)
  notPublic.addSubnet(a, p, 'ipv6');

/** `::ffff:10.0.0.1` → `10.0.0.1`, `[::1]` (a URL's hostname) → `::1`; other addresses as they are. */
function unmapped(address: string): string {
  const a = address.replace(/^\[(.*)\]$/, '$1');
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return m ? m[1] : a;
}

/** Whether an address is public unicast (not loopback, private, link-local, multicast, reserved…). */
export function isPublicAddress(address: string): boolean {
  const a = unmapped(address);
  const family = net.isIP(a);
  if (family === 0) return false;
  return !notPublic.check(a, family === 4 ? 'ipv4' : 'ipv6');
}

function parseRule(input: string): Rule {
  const s = input.trim();
  const bad = (why: string): never => {
    throw new RangeError(`restreamAllow: ${JSON.stringify(input)} ${why} (expected public, host[:port], *.domain[:port], ip[:port], cidr[:port]; IPv6 in [brackets])`);
  };
  if (s === 'public') return { kind: 'public' };
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6) {
    host = v6[1];
    portText = v6[2];
  } else {
    if (s.split(':').length > 2) bad('is an IPv6 address without [brackets]');
    [host, portText] = s.split(':');
  }
  let port: number | null = null;
  if (portText !== undefined) {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || port < 1 || port > 65_535) bad('has a bad port');
  }
  const cidr = /^(.+)\/(\d+)$/.exec(host);
  const ip = cidr ? cidr[1] : host;
  const family = net.isIP(ip);
  if (family !== 0) {
    const bits = cidr ? Number(cidr[2]) : family === 4 ? 32 : 128;
    if (bits > (family === 4 ? 32 : 128)) bad('has a bad prefix length');
    const list = new net.BlockList();
    list.addSubnet(ip, bits, family === 4 ? 'ipv4' : 'ipv6');
    return { kind: 'net', list, port };
  }
  if (cidr) bad('is a network without an IP address');
  const wildcard = host.startsWith('*.');
  const name = (wildcard ? host.slice(2) : host).toLowerCase().replace(/\.$/, '');
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(name)) bad('is not a host name, address or network');
  return { kind: 'name', name, wildcard, port };
}

/** Why an entry is not a rule (for config validation), or null. */
export function restreamAllowEntryError(entry: string): string | null {
  try {
    parseRule(entry);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

export class RestreamAllow {
  private readonly rules: Rule[];

  /** Throws a RangeError naming a bad entry. */
  constructor(readonly entries: readonly string[] = RESTREAM_ALLOW_DEFAULT) {
    this.rules = entries.map(parseRule);
  }

  /** A rule names this host (a DNS name, not an address) and port: it is allowed whatever it resolves to. */
  allowsName(host: string, port: number): boolean {
    const h = host.toLowerCase().replace(/\.$/, '');
    return this.rules.some((r) => r.kind === 'name' && (r.port === null || r.port === port) && (r.wildcard ? h.endsWith(`.${r.name}`) : h === r.name));
  }

  /** An address (as resolved, or written in the URL) and port that a rule allows. */
  allowsAddress(address: string, port: number): boolean {
    const a = unmapped(address);
    const family = net.isIP(a);
    if (family === 0) return false;
    return this.rules.some((r) => (r.kind === 'public' ? isPublicAddress(a) : r.kind === 'net' && (r.port === null || r.port === port) && r.list.check(a, family === 4 ? 'ipv4' : 'ipv6')));
  }

  private refusal(host: string, port: number, addresses: string[]): ForbiddenError {
    const what = net.isIP(host) ? `${host}:${port}` : `${host}:${port} (${addresses.join(', ')})`;
    const kind = addresses.some((a) => !isPublicAddress(a)) ? 'a loopback, private, link-local or reserved address' : 'not in the allowed list';
    return new ForbiddenError(`url: this node does not restream to ${what}: ${kind}; its operator allows ingests with the restreamAllow setting (--restream-allow, MCU_RESTREAM_ALLOW; now: ${this.entries.join(', ') || 'nothing'})`, 'restream_target_refused');
  }

  /**
   * Checks a target before a restream is created: a name is resolved (400 when it does not
   * resolve), and refused (403) unless a rule names it or allows one of its addresses.
   */
  async check(host: string, port: number): Promise<void> {
    const refused = this.checkAddress(host, port);
    if (refused) throw refused;
    if (net.isIP(unmapped(host)) || this.allowsName(host, port)) return;
    let addresses: string[];
    try {
      addresses = (await dns.promises.lookup(host, { all: true })).map((a) => a.address);
    } catch (err) {
      throw new ValidationError(`url: the host ${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, 'url', 'restream_host_unresolved');
    }
    if (!addresses.some((a) => this.allowsAddress(a, port))) throw this.refusal(host, port, addresses);
  }

  /**
   * A `lookup` for net.connect / tls.connect to the ingest: resolves the name now and hands back
   * only the addresses a rule allows (all of them when a rule names the host), or fails with the
   * refusal. Addresses written in the URL never reach a lookup: `checkAddress` covers them.
   */
  lookupFor(port: number): net.LookupFunction {
    return (hostname, options, callback) => {
      dns.lookup(hostname, { ...options, all: true }, (err, found) => {
        const cb = callback as (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;
        if (err) return cb(err, options.all ? [] : '');
        const named = this.allowsName(hostname, port);
        const ok = named ? found : found.filter((a) => this.allowsAddress(a.address, port));
        if (ok.length === 0) return cb(this.refusal(hostname, port, found.map((a) => a.address)), options.all ? [] : '');
        if (options.all) cb(null, ok);
        else cb(null, ok[0].address, ok[0].family);
      });
    };
  }

  /** For an address written in the URL: the refusal, or null when allowed (or when `host` is a name). */
  checkAddress(host: string, port: number): ForbiddenError | null {
    const a = unmapped(host);
    if (!net.isIP(a) || this.allowsAddress(a, port)) return null;
    return this.refusal(a, port, [a]);
  }
}
