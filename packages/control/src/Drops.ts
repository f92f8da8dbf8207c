/**
 * Reading messages that crossed the bus: bad input is counted by reason and
 * dropped, never thrown, so one misbehaving node (or an older version of this
 * code) cannot crash the control plane of the others.
 */
import type { z } from 'zod';
import { decodeJson } from './Bus.js';

export type DropReason =
  /** not JSON at all */
  | 'not_json'
  /** JSON with a `v` other than 1 (or none) */
  | 'wrong_version'
  /** v1, but a field is missing or malformed */
  | 'invalid'
  /** a valid message about another cluster */
  | 'wrong_cluster'
  /** the id in the subject and the id in the payload differ */
  | 'id_mismatch'
  /** a report from a node the registry does not know */
  | 'unknown_reporter';

export class DropCounter {
  readonly #counts = new Map<DropReason, number>();
  #total = 0;

  count(reason: DropReason): void {
    this.#counts.set(reason, (this.#counts.get(reason) ?? 0) + 1);
    this.#total++;
  }

  get total(): number {
    return this.#total;
  }

  of(reason: DropReason): number {
    return this.#counts.get(reason) ?? 0;
  }

  /** e.g. `{ not_json: 1, invalid: 2 }` */
  byReason(): Partial<Record<DropReason, number>> {
    return Object.fromEntries(this.#counts) as Partial<Record<DropReason, number>>;
  }
}

export const messageVersion = 1;

/**
 * Decodes and validates one v1 message. Returns undefined (after counting why)
 * when the bytes are not JSON, carry another version, or do not match.
 */
export function readMessage<T>(schema: z.ZodType<T>, data: Uint8Array, drops: DropCounter): T | undefined {
  let value: unknown;
  try {
    value = decodeJson(data);
  } catch {
    drops.count('not_json');
    return undefined;
  }
  return checkMessage(schema, value, drops);
}

/** Like `readMessage` for a value that is already parsed. */
export function checkMessage<T>(schema: z.ZodType<T>, value: unknown, drops: DropCounter): T | undefined {
  if (typeof value !== 'object' || value === null || (value as { v?: unknown }).v !== messageVersion) {
    drops.count(typeof value === 'object' && value !== null && 'v' in value ? 'wrong_version' : 'invalid');
    return undefined;
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    drops.count('invalid');
    return undefined;
  }
  return parsed.data;
}
