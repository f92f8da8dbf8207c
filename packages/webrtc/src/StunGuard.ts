/**
 * ICE Binding requests are answered only with the right credentials (RFC 8445 §7.3, RFC 5389
 * §10.1.3): the USERNAME must start with a ufrag of the session, and MESSAGE-INTEGRITY must verify
 * with that ufrag's password. werift checks neither on the requests it receives: it answers any
 * Binding request, signed with its own password, adds the sender as a peer-reflexive candidate and
 * starts checks towards it. On the shared port (SharedUdpPort) requests are verified before any
 * session sees them; a session on a port of its own gets the same check here, in front of werift's
 * ICE protocol. A request that fails is dropped and counted by reason: `no_username`,
 * `unknown_ufrag`, `bad_integrity`, `malformed_stun`.
 */
import { parseMessage } from 'werift';

/**
 * A STUN request (RFC 5389 §6: first two bits zero, the magic cookie, class bits 00). As wide as
 * werift's own `isStunMessage` (any first byte below 64), not RFC 7983's 0–3 that the shared port
 * demultiplexes by (SharedUdpPort's `looksLikeStun`): nothing werift would take for a request may
 * pass unchecked.
 */
export function isStunRequest(data: Uint8Array): boolean {
  return (
    data.length >= 20 &&
    (data[0] & 0xc0) === 0 &&
    (data[0] & 0x01) === 0 &&
    (data[1] & 0x10) === 0 &&
    data[4] === 0x21 &&
    data[5] === 0x12 &&
    data[6] === 0xa4 &&
    data[7] === 0x42
  );
}

/**
 * Checks a STUN request's USERNAME and MESSAGE-INTEGRITY. `passwordOf` gives the password of a
 * local ufrag, as text or its UTF-8 bytes (undefined or null: no such ufrag). Returns null when the request verifies, else why not.
 */
export function stunRequestRefusal(data: Buffer, passwordOf: (ufrag: string) => string | Buffer | null | undefined): string | null {
  const unverified = parseMessage(data);
  const username = unverified?.getAttributeValue('USERNAME') as unknown;
  if (typeof username !== 'string') return unverified ? 'no_username' : 'malformed_stun';
  const colon = username.indexOf(':');
  const password = passwordOf(colon < 0 ? username : username.slice(0, colon));
  if (password === undefined || password === null) return 'unknown_ufrag';
  return parseMessage(data, typeof password === 'string' ? Buffer.from(password, 'utf8') : password) ? null : 'bad_integrity';
}

const counters = { verified: 0, dropped: {} as Record<string, number> };

/** Binding requests on sessions' own ports: verified, and dropped by reason, since the process started. */
export function ownPortStunStats(): { verified: number; dropped: Record<string, number> } {
  return { verified: counters.verified, dropped: { ...counters.dropped } };
}

/** werift internals: an ICE agent and the protocols (one per local candidate) it reads. */
interface IceAgent {
  localUsername?: string;
  localPassword?: string;
  userHistory?: Record<string, string>;
  protocols?: IceProtocol[];
}
interface IceProtocol {
  transport?: unknown;
  datagramReceived?: (data: Buffer, addr: unknown) => void;
  [GUARDED]?: true;
}
const GUARDED = Symbol('mcu.stunGuard');

/**
 * Puts the check in front of every ICE protocol of the peer connection whose transport is not
 * `skip` (the shared port's, which checks for itself). Call once gathering is complete, before the
 * answer leaves: nothing can reach the ports before the peer knows the ufrag. Idempotent.
 */
export function guardIceRequests(pc: unknown, skip: (transport: unknown) => boolean): number {
  let guarded = 0;
  for (const it of (pc as { iceTransports?: { connection?: IceAgent }[] }).iceTransports ?? []) {
    const agent = it.connection;
    if (!agent) continue;
    // The ufrags werift itself answers for: the current one and those before an ICE restart.
    const passwordOf = (ufrag: string) => agent.userHistory?.[ufrag] ?? (ufrag === agent.localUsername ? agent.localPassword : undefined);
    for (const p of agent.protocols ?? []) {
      if (p[GUARDED] || skip(p.transport) || typeof p.datagramReceived !== 'function') continue;
      const received = p.datagramReceived.bind(p);
      p.datagramReceived = (data: Buffer, addr: unknown) => {
        if (isStunRequest(data)) {
          const refusal = stunRequestRefusal(data, passwordOf);
          if (refusal !== null) {
            counters.dropped[refusal] = (counters.dropped[refusal] ?? 0) + 1;
            return;
          }
          counters.verified++;
        }
        received(data, addr);
      };
      p[GUARDED] = true;
      guarded++;
    }
  }
  return guarded;
}
