/**
 * The mixer's side of raised hands in a cluster: the queue moves to the cluster's store (the
 * `hands` JetStream KV bucket), viewers' hand requests forwarded by relays over NATS
 * (`event.<id>.hands`) are answered for the events this node holds, and what happens to a hand
 * (invited, lowered, done) is published on `event.<id>.hand` for the relays holding the viewers'
 * event streams. Control plane only: nothing here touches the media path.
 */
import {
  DropCounter,
  errorBody,
  HandQueue,
  handRequestSchema,
  httpStatusOf,
  readMessage,
  subjects,
  TooManyRequestsError,
  ServiceUnavailableError,
  type Bus,
  type BusMessage,
  type HandNotice,
  type HandReply,
  type HandRequest,
  type Logger,
} from '@mcu/control';
import { handView, type McuNode } from '@mcu/server';

export interface HandServiceOptions {
  bus: Bus;
  cluster: string;
  node: McuNode;
  log: Logger;
}

export class HandService {
  readonly drops = new DropCounter();
  /** Requests answered, by op. */
  readonly answered = { raise: 0, lower: 0, mine: 0 };
  readonly #opts: HandServiceOptions;
  readonly #abort = new AbortController();
  readonly #onNotice: (n: HandNotice) => void;
  #closed = false;

  private constructor(opts: HandServiceOptions) {
    this.#opts = opts;
    const s = subjects(opts.cluster);
    this.#onNotice = (n) => {
      // Built by the desk from validated parts; the relays validate what they receive.
      if (!this.#closed) opts.bus.publish(s.event(n.event).hand, n);
    };
  }

  static async start(opts: HandServiceOptions): Promise<HandService> {
    const service = new HandService(opts);
    await opts.node.hands.useQueue(await HandQueue.open(opts.bus, opts.cluster));
    opts.node.hands.on('notice', service.#onNotice);
    service.#serve();
    return service;
  }

  #serve(): void {
    const { bus, cluster } = this.#opts;
    const sub = bus.subscribe(subjects(cluster).event('*').hands, { signal: this.#abort.signal });
    void (async () => {
      for await (const m of sub) void this.#answer(m);
    })();
  }

  async #answer(m: BusMessage): Promise<void> {
    const req = readMessage(handRequestSchema, m.data, this.drops);
    if (!req) {
      m.respond({ v: 1, status: 400, body: { error: { code: 'invalid_request', message: 'invalid hand request' } } } satisfies HandReply);
      return;
    }
    // Another mixer's event: its holder answers.
    if (!this.#opts.node.registry.has(req.event)) return;
    m.respond(await this.#handle(req));
  }

  async #handle(req: HandRequest): Promise<HandReply> {
    const node = this.#opts.node;
    try {
      const roles = req.op === 'lower' ? (['admin', 'producer', 'viewer'] as const) : (['viewer'] as const);
      const claims = node.auth.authorize(`Bearer ${req.token}`, { event: req.event, roles: [...roles] });
      this.answered[req.op]++;
      if (req.op === 'raise') {
        const { hand, created } = await node.hands.raise(req.event, claims, req.name);
        return { v: 1, status: created ? 201 : 200, body: handView(hand) };
      }
      if (req.op === 'lower') {
        await node.hands.lower(req.event, req.hand, claims);
        return { v: 1, status: 204, body: null };
      }
      return { v: 1, status: 200, body: await node.hands.stateOf(req.event, claims) };
    } catch (err) {
      const status = httpStatusOf(err);
      if (status >= 500) this.#opts.log.warn({ err, event: req.event, op: req.op }, 'hand request failed');
      const retry = err instanceof TooManyRequestsError || err instanceof ServiceUnavailableError ? { retryAfterSeconds: Math.ceil(err.retryAfterSeconds) } : {};
      return { v: 1, status, body: errorBody(err), ...retry };
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    this.#opts.node.hands.off('notice', this.#onNotice);
  }
}
