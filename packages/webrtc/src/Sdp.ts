import { ValidationError } from '@mcu/control';
import { ipv4ToInt } from '@mcu/rtp';

/** What the edge needs to know of an SDP offer, checked before werift sees it. */
export interface OfferSummary {
  media: { kind: string; direction: 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive'; mid: string | null; bandwidthKbps?: number }[];
  /** Session-level bandwidth (b=AS or b=TIAS), kbps. */
  bandwidthKbps?: number;
}

const MAX_SDP_BYTES = 64 * 1024;

interface Section {
  kind: string;
  direction: OfferSummary['media'][number]['direction'];
  mid: string | null;
  ufrag: boolean;
  pwd: boolean;
  fingerprint: boolean;
  bandwidthKbps?: number;
  tias?: boolean;
}

/** b=AS:<kbps> (RFC 8866 §5.8) or b=TIAS:<bps> (RFC 3890); TIAS wins when both are given. */
function bandwidthLine(line: string, target: { bandwidthKbps?: number; tias?: boolean }): void {
  const m = /^b=(AS|TIAS):(\d{1,12})$/.exec(line);
  if (!m) return;
  const kbps = m[1] === 'AS' ? Number(m[2]) : Number(m[2]) / 1000;
  if (!(kbps > 0)) return;
  if (m[1] === 'TIAS') {
    target.bandwidthKbps = kbps;
    target.tias = true;
  } else if (!target.tias) target.bandwidthKbps = kbps;
}

/**
 * Validates an SDP offer enough to give a clear 400 instead of a werift exception: RFC 8866
 * structure (v=, o=, s=, at least one m= line), ICE credentials and a DTLS fingerprint (RFC 8842),
 * and at least one audio or video section.
 */
export function summarizeOffer(sdp: string): OfferSummary {
  if (typeof sdp !== 'string' || sdp.length === 0) throw new ValidationError('SDP offer is empty', 'sdp');
  if (sdp.length > MAX_SDP_BYTES) throw new ValidationError(`SDP offer is larger than ${MAX_SDP_BYTES} bytes`, 'sdp');
  const lines = sdp.split(/\r?\n/).filter((l) => l.length > 0);
  if (lines[0] !== 'v=0') throw new ValidationError('SDP offer must start with "v=0"', 'sdp');
  for (const l of lines) {
    if (!/^[a-z]=/.test(l)) throw new ValidationError(`SDP line is malformed: "${l.slice(0, 40)}"`, 'sdp');
  }
  if (!lines.some((l) => l.startsWith('o='))) throw new ValidationError('SDP offer has no o= line', 'sdp');
  const media: OfferSummary['media'] = [];
  const session: { ufrag: boolean; pwd: boolean; fingerprint: boolean; bandwidthKbps?: number; tias?: boolean } = { ufrag: false, pwd: false, fingerprint: false };
  let current: Section | null = null;
  const sections: Section[] = [];
  for (const l of lines) {
    if (l.startsWith('m=')) {
      const m = /^m=(\w+) (\d+) ([\w/]+) ?(.*)$/.exec(l);
      if (!m) throw new ValidationError(`SDP media line is malformed: "${l.slice(0, 60)}"`, 'sdp');
      current = { kind: m[1], direction: 'sendrecv', mid: null, ufrag: false, pwd: false, fingerprint: false };
      sections.push(current);
      continue;
    }
    const target = current ?? session;
    if (l.startsWith('a=ice-ufrag:')) target.ufrag = true;
    else if (l.startsWith('a=ice-pwd:')) target.pwd = true;
    else if (l.startsWith('a=fingerprint:')) target.fingerprint = true;
    else if (current && /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l)) current.direction = l.slice(2) as Section['direction'];
    else if (current && l.startsWith('a=mid:')) current.mid = l.slice(6);
    else if (l.startsWith('b=')) bandwidthLine(l, target);
  }
  for (const s of sections) {
    if (s.kind !== 'audio' && s.kind !== 'video') continue;
    if (!(s.ufrag || session.ufrag) || !(s.pwd || session.pwd)) throw new ValidationError(`SDP ${s.kind} section has no ICE credentials`, 'sdp');
    if (!(s.fingerprint || session.fingerprint)) throw new ValidationError(`SDP ${s.kind} section has no DTLS fingerprint`, 'sdp');
    media.push({ kind: s.kind, direction: s.direction, mid: s.mid, ...(s.bandwidthKbps !== undefined && { bandwidthKbps: s.bandwidthKbps }) });
  }
  if (media.length === 0) throw new ValidationError('SDP offer has no audio or video section', 'sdp');
  return { media, ...(session.bandwidthKbps !== undefined && { bandwidthKbps: session.bandwidthKbps }) };
}

/**
 * Keeps only the ICE candidates whose address passes `allow`, and rewrites host candidates to a
 * public address for a host behind 1:1 NAT. Applied to offers (which remote addresses we will
 * ever send to) and answers (which of our addresses we advertise).
 */
export function filterCandidates(sdp: string, allow: (address: string) => boolean, publicIp?: string): string {
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  return sdp
    .split(/\r?\n/)
    .filter((line) => {
      if (!line.startsWith('a=candidate:')) return true;
      const parts = line.split(' ');
      const address = parts[4];
      return address !== undefined && allow(address);
    })
    .map((line) => {
      if (!publicIp || !line.startsWith('a=candidate:')) return line;
      const parts = line.split(' ');
      if (parts[7] === 'host') parts[4] = publicIp;
      return parts.join(' ');
    })
    .join(eol);
}

/** Parses a CIDR-ish allow list ("127.0.0.0/8", "10.1.2.3") into a predicate on IPv4 addresses. */
export function addressAllowList(entries: string[] | undefined): (address: string) => boolean {
  if (!entries || entries.length === 0) return () => true;
  const nets = entries.map((e) => {
    const [ip, bitsText] = e.split('/');
    const bits = bitsText === undefined ? 32 : Number(bitsText);
    return { base: ipv4ToInt(ip), mask: bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0 };
  });
  return (address: string) => {
    const n = ipv4ToInt(address);
    if (n < 0) return false;
    return nets.some((net) => net.base >= 0 && ((n & net.mask) >>> 0) === ((net.base & net.mask) >>> 0));
  };
}

export { ipv4ToInt };
