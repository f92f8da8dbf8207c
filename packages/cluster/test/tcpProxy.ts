/**
 * A TCP proxy on 127.0.0.1 the test controls: a node's NATS connection goes through it, and
 * `cut()` partitions that node from NATS (every connection dropped, new ones refused) while the
 * rest of the cluster keeps its own connections. `close()` frees it.
 */
import net from 'node:net';

export class TcpProxy {
  readonly #sockets = new Set<net.Socket>();
  #server: net.Server | undefined;
  #cut = false;
  #blackhole = false;

  private constructor(
    readonly port: number,
    readonly target: { host: string; port: number },
  ) {}

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const proxy = new TcpProxy((server.address() as net.AddressInfo).port, target);
    proxy.#server = server;
    server.on('connection', (client) => proxy.#accept(client));
    return proxy;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  #accept(client: net.Socket): void {
    if (this.#cut) {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    for (const s of [client, upstream]) {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
      s.on('error', () => undefined);
    }
    // Bytes are dropped instead of forwarded while black-holed (a silent partition: no FIN, no RST).
    client.on('data', (d) => {
      if (!this.#blackhole) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!this.#blackhole) client.write(d);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  /** Partition: drops every connection through the proxy and refuses new ones until `heal()`. */
  cut(): void {
    this.#cut = true;
    for (const s of this.#sockets) s.destroy();
  }

  /** Silent partition: connections stay open but carry nothing either way (the peer notices only by its pings). */
  blackhole(): void {
    this.#blackhole = true;
  }

  heal(): void {
    this.#cut = false;
    this.#blackhole = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server?.close(() => resolve()) ?? resolve());
  }
}
