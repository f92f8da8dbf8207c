/** Runs the real `mcu` (node packages/cli/bin/mcu.js) as a child process; every child is killed by `killAll`. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const bin = fileURLToPath(new URL('../bin/mcu.js', import.meta.url));

/** The environment without any setting of ours, so that a test sets exactly what it means to. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MCU_') && k !== 'PORT' && k !== 'HOST') env[k] = v;
  return { ...env, ...extra };
}

const children = new Set<ChildProcess>();

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `mcu args…` to its end (at most 20 s); `onStdout` sees what it has printed so far, as it prints. */
export function run(args: string[], env: NodeJS.ProcessEnv = cleanEnv(), onStdout?: (soFar: string) => void): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => {
      stdout += b.toString();
      onStdout?.(stdout);
    });
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface Serving<T> {
  child: ChildProcess;
  /** The one JSON line it printed once listening. */
  info: T;
}

/** Starts a serving command (`up --json`, …) and resolves with its start line. */
export function serve<T = { url: string; logLevel: string; adminToken: string | null }>(args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Promise<Serving<T>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args, '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`mcu ${args.join(' ')} did not start: ${out}${err}`)), 15_000);
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line && out.includes('\n')) {
        clearTimeout(timer);
        resolve({ child, info: JSON.parse(line) as T });
      }
    });
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    child.on('exit', (code) => {
      children.delete(child);
      clearTimeout(timer);
      reject(new Error(`mcu ${args.join(' ')} exited (${code}): ${err}`));
    });
  });
}

/** SIGTERM, then SIGKILL after 2 s, for every child still running; resolves when all are gone. */
export async function killAll(): Promise<void> {
  await Promise.all(
    [...children].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), 2_000);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill('SIGTERM');
        }),
    ),
  );
  children.clear();
}

/** A TCP port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export async function listening(port: number): Promise<boolean> {
  try {
    await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
    return true;
  } catch {
    return false;
  }
}
