/** A server-sent events client for tests: every event with its arrival time, parsed as JSON. */
import http from 'node:http';

export interface SseEvent {
  event: string;
  data: any;
  /** performance.now() at arrival */
  at: number;
}

export class SseClient {
  readonly events: SseEvent[] = [];
  status = 0;
  #req: http.ClientRequest | undefined;
  #waiters: (() => void)[] = [];

  private constructor() {}

  /** Opens `url` (token in the query string, as EventSource does); resolves once the headers are in. */
  static open(url: string): Promise<SseClient> {
    const c = new SseClient();
    return new Promise((resolve, reject) => {
      c.#req = http.get(url, { agent: false, headers: { accept: 'text/event-stream' } }, (res) => {
        c.status = res.statusCode ?? 0;
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (chunk: string) => {
          buffer += chunk;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let event = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (!data) continue;
            c.events.push({ event, data: JSON.parse(data), at: performance.now() });
            for (const w of c.#waiters.splice(0)) w();
          }
        });
        res.on('error', () => undefined);
        resolve(c);
      });
      c.#req.on('error', reject);
    });
  }

  /** Resolves with the first event (from now or already received) that `match` accepts. */
  async next(match: (e: SseEvent) => boolean, timeoutMs = 5000): Promise<SseEvent> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const hit = this.events.find(match);
      if (hit) return hit;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no matching event within ${timeoutMs} ms (got ${this.events.map((e) => e.event).join(', ')})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.#req?.destroy();
  }
}
