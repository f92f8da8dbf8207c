/**
 * A dedicated nats-server child process for fault tests, on a free loopback
 * port. Never used against the shared server on 4222.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect as tcpConnect, createServer } from 'node:net';
import { sleep } from './helpers.js';

export const natsServerBinary = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = tcpConnect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

export class NatsServerProcess {
  #child: ChildProcess | undefined;
  #log = '';

  private constructor(
    readonly port: number,
    readonly args: string[],
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get log(): string {
    return this.#log;
  }

  /** `extraArgs` e.g. ['-js', '-sd', dir] or ['--user', 'a', '--pass', 'b']. */
  static async start(extraArgs: string[], port?: number): Promise<NatsServerProcess> {
    const p = port ?? (await freePort());
    const server = new NatsServerProcess(p, ['-a', '127.0.0.1', '-p', String(p), ...extraArgs]);
    await server.restart();
    return server;
  }

  /** Starts the server (again) with the same port and arguments; resolves once it accepts connections. */
  async restart(timeoutMs = 10_000): Promise<void> {
    if (this.#child && this.#child.exitCode === null && this.#child.signalCode === null) {
      throw new Error('nats-server is still running');
    }
    const child = spawn(natsServerBinary, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    const append = (b: Buffer) => {
      this.#log = (this.#log + b.toString()).slice(-20_000);
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}:\n${this.#log}`);
      // JetStream is enabled before the client port opens, so accepting means ready.
      if (/Server is ready/.test(this.#log) && (await canConnect(this.port))) return;
      await sleep(50);
    }
    await this.kill();
    throw new Error(`nats-server did not start within ${timeoutMs} ms:\n${this.#log}`);
  }

  /** Kills the child (SIGKILL by default) and waits for it to exit. Safe to call twice. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await Promise.race([exited, sleep(5000)]);
  }
}
