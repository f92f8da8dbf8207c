/**
 * One long-lived ffmpeg child driven through fluent-ffmpeg with raw pipes: we write its stdin
 * (`-i pipe:0`) and parse its stdout (a Writable given to fluent-ffmpeg as the output stream).
 *
 * The media path must survive ffmpeg: a child that dies (crash, OOM kill, a bad frame that makes
 * it bail out) is started again after a short, growing back-off and counted in `restarts`; the
 * owner hears `restart` and re-primes it (a decoder needs a keyframe). `reconfigure()` replaces
 * the child on purpose (a new scale), which is not a failure. The last stderr lines are kept for
 * diagnostics. `close()` kills the child (SIGKILL: there is nothing to flush) and stops restarts.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import type { ChildProcess } from 'node:child_process';
import ffmpeg from 'fluent-ffmpeg';
import type { FfmpegCommand } from 'fluent-ffmpeg';
import { niceAvailable, resolveFfmpeg } from './FfmpegBinary.js';

export interface FfmpegProcessOptions {
  /** For diagnostics ("decoder cam-1"). */
  name: string;
  /**
   * Adds this run's input format/options and output format/options to a command whose input is
   * already `pipe:0` and whose output is our stdout parser. Called on every (re)start, so it may
   * read current settings.
   */
  configure: (cmd: FfmpegCommand) => void;
  /** Each stdout chunk of the current run, in order. */
  onStdout: (chunk: Buffer) => void;
  /** The child is running; write stream headers here (before anything queued is flushed). */
  onSpawn?: () => void;
  /** stderr lines kept. */
  stderrLines?: number;
  /**
   * Runs the child under `nice -n` (Linux/macOS): video work yields the CPU to the audio mixing
   * tick and packet forwarding in this process, which have tighter deadlines. 0 = as is.
   */
  niceness?: number;
  /** Bytes that may wait for stdin (queued before spawn, or unflushed in the pipe); beyond that writes are refused. */
  maxQueuedBytes?: number;
  /** Back-off after a failure: first delay, doubled per failure in a row, up to the max. */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
  /** Deaths and restarts are logged here (one line each). */
  log?: ProcessLog;
}

/** Where a process logs its deaths and restarts; a pino Logger (from @mcu/control) fits. */
export interface ProcessLog {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
}

export interface FfmpegProcessEvents {
  spawn: [pid: number];
  exit: [reason: string];
  restart: [restarts: number];
  close: [];
}

const FFMPEG_PROCESS_DEFAULTS = {
  stderrLines: 40,
  niceness: 0,
  maxQueuedBytes: 8 << 20,
  restartDelayMs: 50,
  maxRestartDelayMs: 5000,
};

/** A run that lasted this long resets the back-off: the failure before it is history. */
const HEALTHY_RUN_MS = 10_000;

export class FfmpegProcess extends EventEmitter<FfmpegProcessEvents> {
  readonly name: string;
  /** Children that died and were started again. */
  restarts = 0;
  /** Children replaced on purpose (`reconfigure`). */
  reconfigures = 0;
  /** Writes refused because stdin was backed up or no child was running. */
  refusedWrites = 0;
  lastError: string | null = null;

  private readonly opts: Required<Omit<FfmpegProcessOptions, 'onSpawn' | 'log'>> & Pick<FfmpegProcessOptions, 'onSpawn' | 'log'>;
  private readonly stderrRing: string[] = [];
  private run = 0;
  private command: FfmpegCommand | null = null;
  private child: ChildProcess | null = null;
  private pending: { data: Uint8Array; done?: () => void }[] = [];
  private pendingBytes = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private failuresInARow = 0;
  private runStartedAt = 0;
  private closed = false;

  constructor(opts: FfmpegProcessOptions) {
    super();
    this.opts = { ...FFMPEG_PROCESS_DEFAULTS, ...opts };
    this.name = opts.name;
    resolveFfmpeg();
  }

  /** Pid of the running child, or null. */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get isRunning(): boolean {
    return this.child !== null;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes waiting to reach the child. */
  get queuedBytes(): number {
    return this.pendingBytes + (this.child?.stdin?.writableLength ?? 0);
  }

  start(): void {
    if (this.closed || this.command !== null) return;
    this.spawnRun();
  }

  /** Replaces the child with a fresh one (new settings from `configure`), not counted as a failure. */
  reconfigure(): void {
    if (this.closed) return;
    this.reconfigures++;
    this.killRun();
    this.clearPending();
    this.spawnRun();
  }

  /**
   * Queues bytes for the child's stdin. `done` runs once the bytes are handed to the pipe (the
   * caller may then reuse `data`) or dropped. Returns false, calling `done` at once, when the
   * queue is over `maxQueuedBytes`.
   */
  write(data: Uint8Array, done?: () => void): boolean {
    if (this.closed || this.queuedBytes + data.length > this.opts.maxQueuedBytes) {
      this.refusedWrites++;
      done?.();
      return false;
    }
    const stdin = this.child?.stdin;
    if (stdin && this.pending.length === 0) {
      stdin.write(data, done ? () => done() : undefined);
    } else {
      this.pending.push({ data, done });
      this.pendingBytes += data.length;
    }
    return true;
  }

  /** The last stderr lines, oldest first. */
  stderrTail(): string[] {
    return [...this.stderrRing];
  }

  /** CPU time (user + system) of the running child in ms, from /proc; NaN when unavailable. */
  cpuTimeMs(): number {
    const pid = this.pid;
    return pid === null ? NaN : processCpuTimeMs(pid);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    this.killRun();
    this.clearPending();
    this.emit('close');
    this.removeAllListeners();
  }

  private clearPending(): void {
    const pending = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    for (const p of pending) p.done?.();
  }

  private killRun(): void {
    this.run++; // whatever the old run reports from now on is stale
    // A run not spawned yet (fluent-ffmpeg still checking capabilities) is killed in its 'start' handler.
    const child = this.child;
    this.child = null;
    this.command = null;
    if (child) {
      child.stdin?.destroy();
      child.kill('SIGKILL');
    }
  }

  private spawnRun(): void {
    const run = ++this.run;
    const output = new Writable({
      highWaterMark: 1 << 20,
      write: (chunk: Buffer, _encoding, callback) => {
        if (run === this.run) {
          try {
            this.opts.onStdout(chunk);
          } catch (err) {
            this.lastError = `stdout parser: ${(err as Error).message}`;
          }
        }
        callback();
      },
    });
    // `nice` execs ffmpeg, so the pid we get is ffmpeg's.
    const niceness = this.opts.niceness !== 0 && niceAvailable() ? this.opts.niceness : 0;
    const cmd = ffmpeg({ stdoutLines: this.opts.stderrLines, niceness }).input('pipe:0');
    this.opts.configure(cmd);
    cmd.output(output);
    this.command = cmd;
    cmd.on('start', () => {
      const child = (cmd as unknown as { ffmpegProc?: ChildProcess }).ffmpegProc ?? null;
      if (run !== this.run || this.closed || !child) {
        child?.kill('SIGKILL');
        return;
      }
      this.child = child;
      this.runStartedAt = performance.now();
      // EPIPE when the child dies mid-write: the exit handler deals with the death itself.
      child.stdin?.on('error', () => {});
      child.stdout?.on('error', () => {});
      // Stream headers written by onSpawn go first, then what was queued while there was no child.
      const pending = this.pending;
      this.pending = [];
      this.pendingBytes = 0;
      this.emit('spawn', child.pid ?? -1);
      this.opts.onSpawn?.();
      for (const p of pending) child.stdin?.write(p.data, p.done ? () => p.done!() : undefined);
    });
    cmd.on('stderr', (line: string) => {
      if (run !== this.run) return;
      this.stderrRing.push(line);
      if (this.stderrRing.length > this.opts.stderrLines) this.stderrRing.shift();
    });
    cmd.on('error', (err: Error) => this.finished(run, err.message));
    cmd.on('end', () => this.finished(run, 'exited'));
    cmd.run();
  }

  private finished(run: number, reason: string): void {
    if (run !== this.run || this.closed) return;
    this.lastError = reason;
    const ranMs = this.child ? performance.now() - this.runStartedAt : 0;
    // Fails the writes still queued on the dead pipe now, so their owners get their buffers back.
    this.child?.stdin?.destroy();
    this.child = null;
    this.command = null;
    this.run++;
    this.emit('exit', reason);
    this.failuresInARow = ranMs >= HEALTHY_RUN_MS ? 1 : this.failuresInARow + 1;
    const delay = Math.min(this.opts.maxRestartDelayMs, this.opts.restartDelayMs * 2 ** (this.failuresInARow - 1));
    this.opts.log?.warn({ process: this.name, reason, ranMs: Math.round(ranMs), restartInMs: delay, stderr: this.stderrRing.slice(-3) }, 'ffmpeg process died');
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.closed) return;
      this.restarts++;
      this.spawnRun();
      this.opts.log?.info({ process: this.name, restarts: this.restarts }, 'ffmpeg process restarted');
      this.emit('restart', this.restarts);
    }, delay);
  }
}

/** utime + stime of a process in ms from /proc/<pid>/stat (Linux); NaN elsewhere or when it is gone. */
export function processCpuTimeMs(pid: number | 'self'): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start at the state, field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime (14), stime (15)
    return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/** CPU time of this process's waited-for children (cutime + cstime) in ms: ffmpeg runs that have ended. */
export function reapedChildrenCpuTimeMs(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[13]) + Number(fields[14])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/** USER_HZ: 100 on every Linux architecture we run on (sysconf(_SC_CLK_TCK)). */
const CLOCK_TICKS_PER_SECOND = 100;
