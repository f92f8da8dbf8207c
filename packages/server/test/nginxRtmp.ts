/**
 * A real RTMP server for tests: Debian's nginx with libnginx-mod-rtmp, one process (no daemon, no
 * master), its own config, logs and recordings in a temp dir, on a free loopback port. Every
 * stream published to `live` is recorded to `<dir>/<stream name>.flv` by nginx itself.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const NGINX_BIN = process.env.NGINX_BIN ?? '/usr/sbin/nginx';
export const RTMP_MODULE = '/usr/lib/nginx/modules/ngx_rtmp_module.so';

async function freeTcpPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export class NginxRtmp {
  private child: ChildProcess | null = null;

  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  static async start(): Promise<NginxRtmp> {
    const dir = mkdtempSync(join(tmpdir(), 'mcu-rtmp-'));
    const port = await freeTcpPort();
    writeFileSync(
      join(dir, 'nginx.conf'),
      [
        'daemon off;',
        'master_process off;',
        'worker_processes 1;',
        `error_log ${join(dir, 'error.log')} info;`,
        `pid ${join(dir, 'nginx.pid')};`,
        `load_module ${RTMP_MODULE};`,
        'events { worker_connections 64; }',
        'rtmp {',
        '  server {',
        `    listen 127.0.0.1:${port};`,
        '    chunk_size 4096;',
        '    application live {',
        '      live on;',
        '      record all;',
        `      record_path ${dir};`,
        '      allow publish 127.0.0.1;',
        '      deny publish all;',
        '      allow play 127.0.0.1;',
        '      deny play all;',
        '    }',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    const n = new NginxRtmp(dir, port);
    await n.run();
    return n;
  }

  /** `rtmp://127.0.0.1:<port>/live/<key>` */
  url(key: string): string {
    return `rtmp://127.0.0.1:${this.port}/live/${key}`;
  }

  recording(key: string): string {
    return join(this.dir, `${key}.flv`);
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** Starts nginx (again, after `kill`) on the same port; resolves once it accepts connections. */
  async run(): Promise<void> {
    if (this.child) return;
    const child = spawn(NGINX_BIN, ['-p', this.dir, '-c', join(this.dir, 'nginx.conf'), '-e', join(this.dir, 'error.log')], { stdio: 'ignore' });
    this.child = child;
    // A test or bench that dies before close() must not leave nginx running.
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    child.once('exit', () => {
      process.off('exit', killOnExit);
      if (this.child === child) this.child = null;
    });
    const end = performance.now() + 10_000;
    while (performance.now() < end) {
      if (await accepts(this.port)) return;
      if (!this.child) throw new Error('nginx exited at start');
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('nginx did not listen within 10 s');
  }

  /** SIGKILL: the server vanishes mid-stream, connections reset. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = null;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  async close(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
