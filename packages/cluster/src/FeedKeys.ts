/**
 * The event's feed key, handed from the mixer to its relays over the control plane.
 *
 * The mixer generates one key per event (AES-128-GCM master key and salt for FeedCipher) and
 * answers requests on `mcu.<cluster>.event.<id>.feedkey`. The key never crosses NATS in clear: the
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

export const feedKeyRequestSchema = z.object({ v: z.literal(1) });
export const feedKeyReplySchema = z.object({
  v: z.literal(1),
  event: safeIdSchema,
  /** The sealed key (absent with `error`). */
  sealed: z.object({ id: z.number().int().nonnegative(), iv: b64, data: b64, tag: b64 }).optional(),
  error: z.enum(['unknown_event']).optional(),
});
export type FeedKeyReply = z.infer<typeof feedKeyReplySchema>;

export function feedKeySubject(cluster: string, event: string): string {
  return `${subjects(cluster).root}.event.${event === '*' ? '*' : assertSafeId(event, 'event')}.feedkey`;
}

export function generateFeedKey(): FeedKey {
  return { id: randomInt(1, 2 ** 31 - 1), key: new Uint8Array(randomBytes(16)), salt: new Uint8Array(randomBytes(12)) };
}

function wrappingKey(secret: string, event: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(secret), Buffer.from('mcu feed key wrap v1'), Buffer.from(event), 32));
}

export function sealFeedKey(secret: string, event: string, key: FeedKey): NonNullable<FeedKeyReply['sealed']> {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', wrappingKey(secret, event), iv);
  cipher.setAAD(Buffer.from(`${event}/${key.id}`));
  const data = Buffer.concat([cipher.update(Buffer.concat([key.key, key.salt])), cipher.final()]);
  return { id: key.id, iv: iv.toString('base64url'), data: data.toString('base64url'), tag: cipher.getAuthTag().toString('base64url') };
}

/** Throws if the seal does not authenticate (another secret, another event, tampering). */
export function openFeedKey(secret: string, event: string, sealed: NonNullable<FeedKeyReply['sealed']>): FeedKey {
  const decipher = createDecipheriv('aes-256-gcm', wrappingKey(secret, event), Buffer.from(sealed.iv, 'base64url'));
  decipher.setAAD(Buffer.from(`${event}/${sealed.id}`));
  decipher.setAuthTag(Buffer.from(sealed.tag, 'base64url'));
  const plain = Buffer.concat([decipher.update(Buffer.from(sealed.data, 'base64url')), decipher.final()]);
  if (plain.length !== 28) throw new Error('sealed feed key has the wrong length');
  return { id: sealed.id, key: new Uint8Array(plain.subarray(0, 16)), salt: new Uint8Array(plain.subarray(16)) };
}

/** Mixer side: answers feed-key requests for the events `keyOf` knows. Returns the stop function. */
export function serveFeedKeys(bus: Bus, cluster: string, secret: string, keyOf: (event: string) => FeedKey | undefined): () => void {
  const drops = new DropCounter();
  const sub: BusSubscription = bus.subscribe(feedKeySubject(cluster, '*'));
  void (async () => {
    try {
      for await (const m of sub) {
        if (!readMessage(feedKeyRequestSchema, m.data, drops)) continue;
        const event = m.subject.split('.')[3];
        const key = keyOf(event);
        const reply: FeedKeyReply = key ? { v: 1, event, sealed: sealFeedKey(secret, event, key) } : { v: 1, event, error: 'unknown_event' };
        m.respond(reply);
      }
    } catch {
      // the bus closed
    }
  })();
  return () => sub.unsubscribe();
}

/**
 * Relay side: asks until the mixer answers with the key (it may not have created the feed yet, or
 * NATS may be reconnecting). Bounded by `signal`; rejects when aborted.
 */
export async function fetchFeedKey(bus: Bus, cluster: string, secret: string, event: string, opts: { signal: AbortSignal; retryMs: number; timeoutMs: number }): Promise<FeedKey> {
  const drops = new DropCounter();
  while (!opts.signal.aborted) {
    try {
      const reply = readMessage(feedKeyReplySchema, (await bus.request(feedKeySubject(cluster, event), { v: 1 }, { timeoutMs: opts.timeoutMs })).data, drops);
      if (reply?.sealed) return openFeedKey(secret, event, reply.sealed);
    } catch {
      // no mixer answering yet, or NATS unavailable: ask again
    }
    await new Promise((r) => setTimeout(r, opts.retryMs));
  }
  throw new Error(`feed key request for ${event} aborted`);
}
