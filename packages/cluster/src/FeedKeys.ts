/**
 * The event's feed keys, handed from the mixer to its relays over the control plane.
 *
 * The mixer keeps a key set per event (AES-128-GCM master keys and salts for FeedCipher): the key
 * the feed is sealed with now and, during a rotation (FeedKeyRotation), the next one. It answers
 * requests on `mcu.<cluster>.event.<id>.feedkey` with that set, and publishes the same message
 * unasked on `….feedkey.announce` whenever the set changes. The keys never cross NATS in clear: the
 * reply is sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the cluster's shared
 * token secret (`MCU_TOKEN_SECRET`), bound to the event id, so a NATS user without the secret who
 * subscribes to the reply inbox learns nothing. NATS auth (user/pass, token, creds) and TLS
 * (`--nats-tls-ca`) protect the control plane itself; the sealing keeps the key safe even when
 * the NATS deployment is shared.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, randomInt } from 'node:crypto';
import { z } from 'zod';
import { assertSafeId, readMessage, safeIdSchema, subjects, DropCounter } from '@mcu/control';
import type { Bus, BusSubscription } from '@mcu/control';
import type { FeedKey } from '@mcu/relay';

const b64 = z.string().regex(/^[A-Za-z0-9_-]+$/).max(200);
const sealedKeySchema = z.object({ id: z.number().int().min(0).max(0xffff_ffff), iv: b64, data: b64, tag: b64 });
export type SealedFeedKey = z.infer<typeof sealedKeySchema>;

export const feedKeyRequestSchema = z.object({ v: z.literal(1) });
/** The reply to a feed-key request, and the announcement the mixer publishes when the set changes. */
export const feedKeyReplySchema = z.object({
  v: z.literal(1),
  event: safeIdSchema,
  /** The key the feed is sealed with now (absent with `error`). */
  sealed: sealedKeySchema.optional(),
  /** During a rotation: the key the feed is sealed with after the grace period. */
  next: sealedKeySchema.optional(),
  error: z.enum(['unknown_event']).optional(),
});
export type FeedKeyReply = z.infer<typeof feedKeyReplySchema>;

/** An event's keys as the mixer hands them out: the current one, and the next during a rotation. */
export interface FeedKeySet {
  current: FeedKey;
  next?: FeedKey;
}

export function feedKeySubject(cluster: string, event: string): string {
  return `${subjects(cluster).root}.event.${event === '*' ? '*' : assertSafeId(event, 'event')}.feedkey`;
}

/** Where the mixer publishes an event's key set when it changes (not matched by `feedKeySubject(…, '*')`). */
export function feedKeyAnnounceSubject(cluster: string, event: string): string {
  return `${feedKeySubject(cluster, event)}.announce`;
}

/** A fresh random key; `id` (a u32) names it on the wire, random unless given. */
export function generateFeedKey(id: number = randomInt(1, 2 ** 31 - 1)): FeedKey {
  return { id, key: new Uint8Array(randomBytes(16)), salt: new Uint8Array(randomBytes(12)) };
}

function wrappingKey(secret: string, event: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret), Buffer.from('mcu feed key wrap v1'), Buffer.from(event), 32));
}

export function sealFeedKey(secret: string, event: string, key: FeedKey): SealedFeedKey {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', wrappingKey(secret, event), iv);
  cipher.setAAD(Buffer.from(`${event}/${key.id}`));
  const data = Buffer.concat([cipher.update(Buffer.concat([key.key, key.salt])), cipher.final()]);
  return { id: key.id, iv: iv.toString('base64url'), data: data.toString('base64url'), tag: cipher.getAuthTag().toString('base64url') };
}

/** Throws if the seal does not authenticate (another secret, another event, tampering). */
export function openFeedKey(secret: string, event: string, sealed: SealedFeedKey): FeedKey {
  const decipher = createDecipheriv('aes-256-gcm', wrappingKey(secret, event), Buffer.from(sealed.iv, 'base64url'));
  decipher.setAAD(Buffer.from(`${event}/${sealed.id}`));
  decipher.setAuthTag(Buffer.from(sealed.tag, 'base64url'));
  const plain = Buffer.concat([decipher.update(Buffer.from(sealed.data, 'base64url')), decipher.final()]);
  if (plain.length !== 28) throw new Error('sealed feed key has the wrong length');
  return { id: sealed.id, key: new Uint8Array(plain.subarray(0, 16)), salt: new Uint8Array(plain.subarray(16)) };
}

/** The message (reply or announcement) that hands out `set`, sealed. */
export function sealFeedKeySet(secret: string, event: string, set: FeedKeySet): FeedKeyReply {
  return { v: 1, event, sealed: sealFeedKey(secret, event, set.current), ...(set.next ? { next: sealFeedKey(secret, event, set.next) } : {}) };
}

/**
 * The key set of a validated reply or announcement; null when it carries none (`error`).
 * Throws when a seal does not open (another secret or event, tampering).
 */
export function openFeedKeySet(secret: string, event: string, reply: FeedKeyReply): FeedKeySet | null {
  if (!reply.sealed || reply.event !== event) return null;
  const current = openFeedKey(secret, event, reply.sealed);
  return reply.next ? { current, next: openFeedKey(secret, event, reply.next) } : { current };
}

/** Mixer side: answers feed-key requests for the events `keysOf` knows. Returns the stop function. */
export function serveFeedKeys(bus: Bus, cluster: string, secret: string, keysOf: (event: string) => FeedKeySet | undefined, quietOnUnknown = true): () => void {
  const drops = new DropCounter();
  const sub: BusSubscription = bus.subscribe(feedKeySubject(cluster, '*'));
  void (async () => {
    try {
      for await (const m of sub) {
        if (!readMessage(feedKeyRequestSchema, m.data, drops)) continue;
        const event = m.subject.split('.')[3];
        const keys = keysOf(event);
        // With several mixers in a cluster only the event's holder answers: another mixer's quick
        // `unknown_event` would win the race against the holder's keys.
        if (keys) m.respond(sealFeedKeySet(secret, event, keys));
        else if (!quietOnUnknown) m.respond({ v: 1, event, error: 'unknown_event' });
      }
    } catch {
      // the bus closed
    }
  })();
  return () => sub.unsubscribe();
}

/**
 * One request for an event's key set: null when the mixer does not know the event (yet) or the
 * reply is malformed (counted in `drops`). Throws when no mixer answers, the bus fails, or a seal
 * does not open.
 */
export async function requestFeedKeys(bus: Bus, cluster: string, secret: string, event: string, opts: { timeoutMs: number; drops?: DropCounter }): Promise<FeedKeySet | null> {
  const m = await bus.request(feedKeySubject(cluster, event), { v: 1 }, { timeoutMs: opts.timeoutMs });
  const reply = readMessage(feedKeyReplySchema, m.data, opts.drops ?? new DropCounter());
  return reply ? openFeedKeySet(secret, event, reply) : null;
}

/**
 * Relay side: asks until the mixer answers with the keys (it may not have created the feed yet,
 * or NATS may be reconnecting). Bounded by `signal`; rejects when aborted.
 */
export async function fetchFeedKeys(bus: Bus, cluster: string, secret: string, event: string, opts: { signal: AbortSignal; retryMs: number; timeoutMs: number }): Promise<FeedKeySet> {
  while (!opts.signal.aborted) {
    try {
      const keys = await requestFeedKeys(bus, cluster, secret, event, opts);
      if (keys) return keys;
    } catch {
      // no mixer answering yet, NATS unavailable, or a seal that does not open: ask again
    }
    await new Promise((r) => setTimeout(r, opts.retryMs));
  }
  throw new Error(`feed key request for ${event} aborted`);
}
