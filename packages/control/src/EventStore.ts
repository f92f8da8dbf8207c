/**
 * Event definitions in the `events` JetStream KV bucket (key = event id), so
 * they outlive any one node: a restarted controller or mixer reads them back.
 * Values are validated on the way in (`ValidationError`) and on the way out
 * (invalid entries are counted and skipped).
 */
import type { Bus, KvEntry, KvStore } from './Bus.js';
import { eventDefinitionSchema, type EventDefinition } from './ClusterMessages.js';
import { DropCounter, readMessage } from './Drops.js';
import { ConflictError, NotFoundError } from './Errors.js';
import { parseWith } from './Schema.js';
import { assertSafeId, subjects } from './Subjects.js';

/** One change seen by `watch()`: the new definition, or null when the key was deleted. */
export interface EventChange {
  id: string;
  event: EventDefinition | null;
  revision: number;
}

/** Bounded retries of a read-modify-write that lost a race with another writer. */
const maxUpdateAttempts = 8;

export class EventStore {
  readonly drops = new DropCounter();
  readonly #kv: KvStore;

  private constructor(kv: KvStore) {
    this.#kv = kv;
  }

  static async open(bus: Bus, cluster: string): Promise<EventStore> {
    return new EventStore(await bus.kv(subjects(cluster).buckets.events));
  }

  /** Stores a new event; `ConflictError` if one with this id exists. */
  async create(def: EventDefinition): Promise<EventDefinition> {
    const value = parseWith(eventDefinitionSchema, def, 'event');
    await this.#kv.create(value.id, value);
    return value;
  }

  /** Stores (or replaces) an event definition. */
  async put(def: EventDefinition): Promise<EventDefinition> {
    const value = parseWith(eventDefinitionSchema, def, 'event');
    await this.#kv.put(value.id, value);
    return value;
  }

  async get(id: string): Promise<EventDefinition | null> {
    assertSafeId(id, 'eventId');
    const entry = await this.#kv.get(id);
    return entry ? this.#read(entry) : null;
  }

  /** Every stored event (ended ones too unless `live`), oldest first. */
  async list(opts: { live?: boolean } = {}): Promise<EventDefinition[]> {
    const out: EventDefinition[] = [];
    for (const key of await this.#kv.keys()) {
      const entry = await this.#kv.get(key);
      const def = entry ? this.#read(entry) : null;
      if (def && !(opts.live && def.ended)) out.push(def);
    }
    return out.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Marks the event ended (kept, so its history survives); `NotFoundError` if there is no such event. */
  async end(id: string): Promise<EventDefinition> {
    assertSafeId(id, 'eventId');
    for (let attempt = 0; ; attempt++) {
      const entry = await this.#kv.get(id);
      const def = entry ? this.#read(entry) : null;
      if (!entry || !def) throw new NotFoundError(`no event ${id}`, 'event_not_found');
      if (def.ended) return def;
      const ended: EventDefinition = { ...def, ended: true };
      try {
        await this.#kv.update(id, ended, entry.revision);
        return ended;
      } catch (err) {
        if (!(err instanceof ConflictError) || attempt + 1 >= maxUpdateAttempts) throw err;
      }
    }
  }

  /** Removes the definition entirely (watchers see `event: null`). */
  async delete(id: string): Promise<void> {
    assertSafeId(id, 'eventId');
    await this.#kv.delete(id);
  }

  /** Every current definition, then every change. Ends on abort, on `return()` and when the bus closes. */
  async *watch(opts: { signal?: AbortSignal } = {}): AsyncGenerator<EventChange> {
    for await (const entry of this.#kv.watch({ key: '>', signal: opts.signal })) {
      if (entry.operation === 'DEL') {
        yield { id: entry.key, event: null, revision: entry.revision };
        continue;
      }
      const def = this.#read(entry);
      if (def) yield { id: def.id, event: def, revision: entry.revision };
    }
  }

  #read(entry: KvEntry): EventDefinition | null {
    const def = readMessage(eventDefinitionSchema, entry.value, this.drops);
    if (!def) return null;
    if (def.id !== entry.key) {
      this.drops.count('id_mismatch');
      return null;
    }
    return def;
  }
}
