/**
 * One restream: the event's program pushed to an RTMP(S) ingest (YouTube, Twitch, any RTMP
 * server) as FLV with H.264 + AAC, by one ffmpeg child.
 *
 * What is copied and what is transcoded: the video is the H.264 rendition the mixer already
 * encodes, copied (`-c:v copy`), never decoded; the shared Opus mix is decoded and encoded to AAC
 * (FLV and the platforms take no Opus), which is the only codec work a restream costs.
 *
 * How the packets reach ffmpeg: as the RTP they already are, over loopback UDP, described by an
 * SDP that ffmpeg reads from its stdin (`-f sdp -i pipe:0`, bound to 127.0.0.1 only). We chose
 * this over depacketizing H.264 to an Annex-B pipe because RTP keeps each frame's own timestamp
 * from the event's media clock: ffmpeg's RTP demuxer depacketizes, reorders, and, with the RTCP
 * sender reports we send beside the media (NTP + RTP time of both streams from the same clock),
 * lines audio up with video exactly as a WebRTC viewer does. A raw Annex-B pipe has no timestamps
 * (ffmpeg would invent them from a nominal frame rate and drift whenever the mixer drops a frame)
 * and would need a second pipe and a muxer of ours for the audio.
 *
 * A run that ends (the RTMP server went away, refused us, ffmpeg died) is retried after a back-off
 * that doubles from `retryDelayMs` up to `maxRetryDelayMs`, counted in `reconnects`; a run that
 * was live for `healthyRunMs` resets the back-off. After `maxAttempts` runs in a row that never
 * went live, the restream gives up: state `failed`. A run that goes quiet (no progress for
 * `stallTimeoutMs`, or never live within `startTimeoutMs`) is killed and retried.
 *
 * The stream key is never on ffmpeg's command line (readable by every local user in
 * /proc/<pid>/cmdline): each run opens an `RtmpKeyProxy` on 127.0.0.1 and ffmpeg publishes to
 * `rtmp://127.0.0.1:<proxy>/<app>/<placeholder>`, a fresh random placeholder of the key's byte
 * length per run, which the proxy swaps for the key on its way to the ingest (TLS for rtmps://,
 * done by the proxy). It is never logged: every stderr line and error message is scrubbed
 * (`scrubSecrets`) before it is kept.
 */
import dgram from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import type { ChildProcess } from 'node:child_process';
import ffmpeg from 'fluent-ffmpeg';
import { buildSenderReport } from '@mcu/rtp';
import { processCpuTimeMs, resolveFfmpeg } from '@mcu/codec';
import type { ProcessLog } from '@mcu/codec';
import type { RestreamAllow } from './RestreamAllow.js';
import type { ProgramStream, RestreamProgram } from './RestreamProgram.js';
import { scrubSecrets } from './RestreamUrl.js';
import { RtmpKeyProxy } from './RtmpKeyProxy.js';
import type { RestreamTarget } from './RestreamUrl.js';

export type RestreamState = 'connecting' | 'live' | 'retrying' | 'failed' | 'stopped';

export interface RestreamOptions {
  id: string;
  event: string;
  target: RestreamTarget;
  program: RestreamProgram;
  audioBitrateKbps?: number;
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** Runs in a row that never went live before the restream gives up (0: never). */
  maxAttempts?: number;
  /** A run live this long resets the back-off. */
  healthyRunMs?: number;
  /** A run not live after this long is killed and retried. */
  startTimeoutMs?: number;
  /** A live run whose output has not grown for this long is killed and retried. */
  stallTimeoutMs?: number;
  stderrLines?: number;
  /** Extra CA certificates (PEM) trusted for an rtmps:// ingest besides the system's (tests, private ingests). */
  tlsCa?: string | Buffer;
  /** Where the node may connect (RestreamAllow.ts), checked at every run's connection after DNS; none: anywhere. */
  allow?: RestreamAllow;
  /** Runs, deaths and retries are logged here, the URL masked. */
  log?: ProcessLog;
}

export const RESTREAM_DEFAULTS = Object.freeze({
  audioBitrateKbps: 128,
  retryDelayMs: 1000,
  maxRetryDelayMs: 30_000,
  maxAttempts: 10,
  healthyRunMs: 10_000,
  startTimeoutMs: 20_000,
  stallTimeoutMs: 15_000,
  stderrLines: 20,
});

/**
 * Sender reports to ffmpeg this often (and before each stream's first packet of a run): often
 * enough that the first packets after ffmpeg binds its ports are already timed by one (those before
 * it are timed from the stream's start alone). 8 small datagrams a second on loopback.
 */
const SENDER_REPORT_INTERVAL_MS = 250;
/** Keyframe requests after a run starts: once ffmpeg listens (it probes the stream from the first one), and once more. */
const KEYFRAME_REQUEST_DELAYS_MS = [300, 1300, 2300];
/**
 * How long ffmpeg may read before it must know both streams (the video's size comes with its first
 * keyframe): 3 s covers a keyframe asked at 300 ms from an encoder that serves one per second at
 * most, or one that is only starting (a rendition added for this restream). `-fpsprobesize 0`
 * stops it from reading longer to guess a frame rate that RTP timestamps give anyway.
 */
const PROBE_US = 3_000_000;
const WATCHDOG_INTERVAL_MS = 1000;

export interface RestreamInfo {
  id: string;
  event: string;
  /** The target with its stream key masked. */
  url: string;
  state: RestreamState;
  rendition: string;
  /** Bytes ffmpeg wrote to the RTMP connection, all runs. */
  bytes: number;
  /** Runs started after the first (each a new RTMP connection). */
  reconnects: number;
  createdAt: string;
  /** When the current run went live, or null. */
  liveSince: string | null;
  /** Why the last run ended (scrubbed), or null. */
  lastError: string | null;
}

export interface RestreamEvents {
  state: [state: RestreamState];
  close: [];
}

interface Run {
  readonly n: number;
  command: ffmpeg.FfmpegCommand | null;
  child: ChildProcess | null;
  proxy: RtmpKeyProxy | null;
  ports: { audio: number; video: number } | null;
  startedAt: number;
  lastProgressAt: number;
  bytes: number;
  outTimeUs: number;
  live: boolean;
  liveAt: number;
  reportSent: { audio: boolean; video: boolean };
  /** Media is forwarded once ffmpeg listens and has had a sender report of each stream. */
  mediaOpen: boolean;
  timers: NodeJS.Timeout[];
  progressLine: string;
  /** Why the key proxy's relay ended, if it did before ffmpeg. */
  proxyEnd?: string;
}

export class Restream extends EventEmitter<RestreamEvents> {
  readonly id: string;
  readonly event: string;
  readonly target: RestreamTarget;
  readonly createdAt = new Date().toISOString();
  state: RestreamState = 'connecting';
  reconnects = 0;
  /** UDP sends to ffmpeg that failed (ffmpeg between runs, socket errors). */
  sendErrors = 0;
  lastError: string | null = null;

  private readonly o: Required<Omit<RestreamOptions, 'id' | 'event' | 'target' | 'program' | 'log' | 'tlsCa' | 'allow'>>;
  private readonly tlsCa: string | Buffer | undefined;
  private readonly allow: RestreamAllow | undefined;
  private readonly log: ProcessLog | undefined;
  private readonly program: RestreamProgram;
  private readonly socket: dgram.Socket;
  private readonly unsubscribe: (() => void)[] = [];
  private readonly stderrRing: string[] = [];
  private run: Run | null = null;
  private runs = 0;
  private bytesBefore = 0;
  private failuresInARow = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly reportTimer: NodeJS.Timeout;
  private readonly watchdog: NodeJS.Timeout;
  private closed = false;

  constructor(opts: RestreamOptions) {
    super();
    this.id = opts.id;
    this.event = opts.event;
    this.target = opts.target;
    this.program = opts.program;
    this.log = opts.log;
    const { id: _i, event: _e, target: _t, program: _p, log: _l, tlsCa, allow, ...rest } = opts;
    this.tlsCa = tlsCa;
    this.allow = allow;
    this.o = { ...RESTREAM_DEFAULTS, ...rest };
    resolveFfmpeg();
    this.socket = dgram.createSocket('udp4');
    this.socket.on('error', () => this.sendErrors++);
    this.socket.bind(0, '127.0.0.1');
    this.unsubscribe.push(this.program.audio.subscribe((p, n) => this.forward('audio', p, n)));
    this.unsubscribe.push(this.program.video.subscribe((p, n) => this.forward('video', p, n)));
    this.reportTimer = setInterval(() => this.sendReports(), SENDER_REPORT_INTERVAL_MS);
    this.watchdog = setInterval(() => this.checkRun(), WATCHDOG_INTERVAL_MS);
    void this.startRun();
  }

  get bytes(): number {
    return this.bytesBefore + (this.run?.bytes ?? 0);
  }

  /** The running run's key proxy (its placeholder and byte counts), or null. */
  get proxy(): RtmpKeyProxy | null {
    return this.run?.proxy ?? null;
  }

  /** Pid of the running ffmpeg, or null. */
  get pid(): number | null {
    return this.run?.child?.pid ?? null;
  }

  /** CPU time (user + system) of the running ffmpeg in ms, NaN when none runs. */
  cpuTimeMs(): number {
    const pid = this.pid;
    return pid === null ? NaN : processCpuTimeMs(pid);
  }

  /** The last stderr lines of ffmpeg, stream key masked. */
  stderrTail(): string[] {
    return [...this.stderrRing];
  }

  get isClosed(): boolean {
    return this.closed;
  }

  describe(): RestreamInfo {
    const run = this.run;
    return {
      id: this.id,
      event: this.event,
      url: this.target.masked,
      state: this.state,
      rendition: this.program.video.rendition,
      bytes: this.bytes,
      reconnects: this.reconnects,
      createdAt: this.createdAt,
      liveSince: run?.live ? new Date(Date.now() - (performance.now() - run.liveAt)).toISOString() : null,
      lastError: this.lastError,
    };
  }

  /** Stops the push (ffmpeg killed, the RTMP connection dropped) and frees every socket and timer. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    clearInterval(this.reportTimer);
    clearInterval(this.watchdog);
    this.endRun();
    this.releaseProgram();
    this.socket.close();
    if (this.state !== 'failed') this.setState('stopped');
    this.log?.info({ restream: this.id, event: this.event, url: this.target.masked, bytes: this.bytes, reconnects: this.reconnects }, 'restream stopped');
    this.emit('close');
    this.removeAllListeners();
  }

  private releaseProgram(): void {
    for (const u of this.unsubscribe.splice(0)) u();
    this.program.release();
  }

  private setState(state: RestreamState): void {
    if (state === this.state) return;
    this.state = state;
    this.emit('state', state);
  }

  private async startRun(): Promise<void> {
    if (this.closed) return;
    const n = ++this.runs;
    if (n > 1) this.reconnects++;
    const run: Run = {
      n,
      command: null,
      child: null,
      proxy: null,
      ports: null,
      startedAt: performance.now(),
      lastProgressAt: performance.now(),
      bytes: 0,
      outTimeUs: 0,
      live: false,
      liveAt: 0,
      reportSent: { audio: false, video: false },
      mediaOpen: false,
      timers: [],
      progressLine: '',
    };
    this.run = run;
    let ports: { audio: number; video: number };
    try {
      const audio = await freeUdpPortPair();
      const video = await freeUdpPortPair([audio]);
      ports = { audio, video };
    } catch (err) {
      this.runEnded(run, `no free UDP ports: ${(err as Error).message}`);
      return;
    }
    if (this.run !== run || this.closed) return;
    // A fresh proxy and placeholder per run: ffmpeg's argv carries the placeholder, never the key.
    const t = this.target;
    const proxy = new RtmpKeyProxy({ protocol: t.protocol, host: t.host.replace(/^\[|\]$/g, ''), port: t.port, key: t.wireKey, ca: this.tlsCa, allow: this.allow });
    run.proxy = proxy;
    let proxyPort: number;
    try {
      proxyPort = await proxy.listen();
    } catch (err) {
      this.runEnded(run, `no local port for the key proxy: ${(err as Error).message}`);
      return;
    }
    if (this.run !== run || this.closed) return;
    proxy.on('end', (reason) => {
      if (this.run === run && run.live) this.runEnded(run, reason);
      else if (this.run === run) run.proxyEnd = reason;
    });
    const { audio, video } = this.program;
    const cmd = ffmpeg({ stdoutLines: 0 })
      .input(Readable.from([sdpOf(ports, audio, video)]))
      // '-f sdp' as a plain option: fluent-ffmpeg's inputFormat() would first run `ffmpeg -formats` to check it.
      .inputOptions(['-f', 'sdp', '-protocol_whitelist', 'pipe,udp,rtp', '-localaddr', '127.0.0.1', '-buffer_size', String(4 << 20), '-analyzeduration', String(PROBE_US), '-fpsprobesize', '0'])
      .outputOptions([
        '-map', '0:v:0',
        '-map', '0:a:0',
        '-c:v', 'copy',
        // A gap in the mix's timestamps (a tick the mixer skipped, a datagram lost on the way)
        // becomes silence of its length: the AAC encoder counts samples, so a gap closed up would
        // move the rest of the audio earlier against the video (20 ms per lost frame, measured).
        '-af', 'aresample=async=1:min_hard_comp=0.015',
        '-c:a', 'aac',
        '-b:a', `${this.o.audioBitrateKbps}k`,
        '-ac', '2',
        '-ar', '48000',
        '-f', 'flv',
        '-flvflags', 'no_duration_filesize',
        '-nostdin',
        '-nostats',
        '-loglevel', 'warning',
        '-progress', 'pipe:1',
        '-stats_period', '1',
        // The tcUrl ffmpeg would send for the real URL (it would name the proxy otherwise): no key in it.
        '-rtmp_tcurl', t.tcUrl,
      ])
      .output(`rtmp://127.0.0.1:${proxyPort}/${t.rawAppPath}/${proxy.placeholder}`);
    run.command = cmd;
    cmd.on('start', () => {
      const child = (cmd as unknown as { ffmpegProc?: ChildProcess }).ffmpegProc ?? null;
      if (this.run !== run || this.closed || !child) {
        child?.kill('SIGKILL');
        return;
      }
      run.child = child;
      run.ports = ports;
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (chunk: string) => this.onProgress(run, chunk));
      child.stdout?.on('error', () => {});
      for (const delay of KEYFRAME_REQUEST_DELAYS_MS) run.timers.push(setTimeout(() => this.program.video.requestKeyframe(), delay));
      void this.openMedia(run, ports);
      this.log?.info({ restream: this.id, event: this.event, url: this.target.masked, pid: child.pid, run: run.n }, 'restream connecting');
    });
    cmd.on('stderr', (line: string) => {
      if (this.run !== run) return;
      this.stderrRing.push(scrubSecrets(line, this.target));
      if (this.stderrRing.length > this.o.stderrLines) this.stderrRing.shift();
    });
    // The proxy's reason (the ingest refused TLS, closed on us) says more than ffmpeg's "I/O error".
    cmd.on('error', (err: Error) => this.runEnded(run, run.proxyEnd ? `${run.proxyEnd}; ${firstLine(err.message)}` : firstLine(err.message)));
    cmd.on('end', () => this.runEnded(run, run.proxyEnd ?? 'ffmpeg ended'));
    cmd.run();
  }

  /**
   * Waits until ffmpeg has bound its RTCP ports, sends each stream's sender report, and only then
   * lets media through. ffmpeg times packets that come before a stream's first report from the
   * stream's start alone and jumps when the report comes; copied video follows the jump, but the
   * AAC encoder keeps counting samples from the first frame, so audio would keep that start-up
   * error for the whole run (measured: a constant offset of −60 to +33 ms, differing per run).
   */
  private async openMedia(run: Run, ports: { audio: number; video: number }): Promise<void> {
    const deadline = performance.now() + 3000;
    while (this.run === run && performance.now() < deadline) {
      if (await udpPortsBound([ports.audio + 1, ports.video + 1])) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    if (this.run !== run || this.closed) return;
    this.sendReport('audio');
    this.sendReport('video');
    // RTCP and RTP are separate sockets in ffmpeg: give the reports a head start.
    run.timers.push(setTimeout(() => (run.mediaOpen = true), 20));
  }

  /** `-progress` blocks: key=value lines, each block closed by `progress=continue|end`. */
  private onProgress(run: Run, chunk: string): void {
    if (this.run !== run) return;
    const lines = (run.progressLine + chunk).split('\n');
    run.progressLine = lines.pop() ?? '';
    for (const line of lines) {
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      const key = line.slice(0, eq);
      const value = line.slice(eq + 1).trim();
      if (key === 'total_size') {
        const bytes = Number(value);
        if (Number.isFinite(bytes) && bytes > run.bytes) {
          run.bytes = bytes;
          run.lastProgressAt = performance.now();
        }
      } else if (key === 'out_time_us') {
        const us = Number(value);
        if (Number.isFinite(us)) run.outTimeUs = us;
      } else if (key === 'progress' && !run.live && run.bytes > 0 && run.outTimeUs > 0) {
        run.live = true;
        run.liveAt = performance.now();
        this.setState('live');
        this.log?.info({ restream: this.id, event: this.event, url: this.target.masked, run: run.n }, 'restream live');
      }
    }
  }

  /** Kills a run that never went live in time, or whose output stopped growing. */
  private checkRun(): void {
    const run = this.run;
    if (!run || !run.child || this.closed) return;
    const now = performance.now();
    if (!run.live && now - run.startedAt > this.o.startTimeoutMs) this.runEnded(run, `not live after ${this.o.startTimeoutMs} ms`);
    else if (run.live && now - run.lastProgressAt > this.o.stallTimeoutMs) this.runEnded(run, `no output for ${this.o.stallTimeoutMs} ms`);
  }

  private runEnded(run: Run, reason: string): void {
    if (this.run !== run || this.closed) return;
    const why = scrubSecrets(reason, this.target);
    this.lastError = why;
    const liveMs = run.live ? performance.now() - run.liveAt : 0;
    this.endRun();
    this.failuresInARow = liveMs >= this.o.healthyRunMs ? 1 : this.failuresInARow + 1;
    if (!run.live && this.o.maxAttempts > 0 && this.failuresInARow >= this.o.maxAttempts) {
      this.log?.warn({ restream: this.id, event: this.event, url: this.target.masked, reason: why, attempts: this.failuresInARow, stderr: this.stderrRing.slice(-3) }, 'restream failed');
      this.setState('failed');
      // Listed until stopped, but it holds nothing: no subscription, no rendition kept for it.
      this.releaseProgram();
      return;
    }
    const delay = Math.min(this.o.maxRetryDelayMs, this.o.retryDelayMs * 2 ** (this.failuresInARow - 1));
    this.log?.warn({ restream: this.id, event: this.event, url: this.target.masked, reason: why, wasLiveMs: Math.round(liveMs), retryInMs: delay, stderr: this.stderrRing.slice(-3) }, 'restream dropped');
    this.setState('retrying');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.closed) return;
      this.setState('connecting');
      void this.startRun();
    }, delay);
  }

  /** Kills the current run's ffmpeg and timers; its bytes are kept. */
  private endRun(): void {
    const run = this.run;
    if (!run) return;
    this.run = null;
    this.bytesBefore += run.bytes;
    for (const t of run.timers) clearTimeout(t);
    run.ports = null;
    run.proxy?.close();
    const child = run.child;
    run.child = null;
    if (child) {
      child.stdin?.destroy();
      child.kill('SIGKILL');
    } else if (run.command) {
      // Not spawned yet (fluent-ffmpeg checking capabilities): its 'start' handler kills it.
    }
  }

  private forward(kind: 'audio' | 'video', packet: Uint8Array, length: number): void {
    const ports = this.run?.ports;
    if (!ports || !this.run!.mediaOpen) return;
    if (!this.run!.reportSent[kind]) this.sendReport(kind);
    this.socket.send(packet, 0, length, ports[kind], '127.0.0.1', (err) => {
      if (err) this.sendErrors++;
    });
  }

  private sendReports(): void {
    if (!this.run?.ports) return;
    this.sendReport('audio');
    this.sendReport('video');
  }

  /** RFC 3550 sender report to ffmpeg's RTCP port (RTP port + 1): what lines audio and video up there. */
  private sendReport(kind: 'audio' | 'video'): void {
    const run = this.run;
    if (!run?.ports) return;
    const stream: ProgramStream = this.program[kind];
    let times;
    try {
      times = stream.senderReport();
    } catch {
      return; // the rendition went away with the event
    }
    const sr = buildSenderReport({ ssrc: stream.ssrc, ntpSec: times.ntp.sec, ntpFrac: times.ntp.frac, rtpTimestamp: times.rtpTimestamp, packetCount: 0, octetCount: 0 });
    run.reportSent[kind] = true;
    this.socket.send(sr, run.ports[kind] + 1, '127.0.0.1', (err) => {
      if (err) this.sendErrors++;
    });
  }
}

function firstLine(message: string): string {
  // fluent-ffmpeg appends ffmpeg's whole stderr to its error: the first line says enough.
  return message.split('\n')[0].slice(0, 300);
}

/** The SDP ffmpeg reads from stdin: two RTP streams on loopback (RFC 7587 Opus, RFC 6184 H.264). */
function sdpOf(ports: { audio: number; video: number }, audio: ProgramStream, video: ProgramStream): string {
  return [
    'v=0',
    'o=- 0 0 IN IP4 127.0.0.1',
    's=mcu restream',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    `m=audio ${ports.audio} RTP/AVP ${audio.payloadType}`,
    `a=rtpmap:${audio.payloadType} opus/${audio.clockRate}/2`,
    `m=video ${ports.video} RTP/AVP ${video.payloadType}`,
    `a=rtpmap:${video.payloadType} H264/${video.clockRate}`,
    `a=fmtp:${video.payloadType} packetization-mode=1`,
    '',
  ].join('\r\n');
}

/**
 * Whether something listens on each of these UDP ports of 127.0.0.1, from /proc/net/udp (Linux):
 * asking by binding them ourselves could take a port from under ffmpeg. Elsewhere: true (no wait).
 */
async function udpPortsBound(ports: number[]): Promise<boolean> {
  let table: string;
  try {
    table = await readFile('/proc/net/udp', 'utf8');
  } catch {
    return true;
  }
  return ports.every((p) => table.includes(`0100007F:${p.toString(16).toUpperCase().padStart(4, '0')} `));
}

/** An even port whose odd neighbour is free too (RTP and RTCP), on 127.0.0.1, not in `avoid`. */
async function freeUdpPortPair(avoid: number[] = []): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + 2 * Math.floor(Math.random() * 20_000);
    if (avoid.some((a) => Math.abs(a - port) < 2)) continue;
    const sockets: dgram.Socket[] = [];
    try {
      for (const p of [port, port + 1]) {
        const s = dgram.createSocket('udp4');
        sockets.push(s);
        await new Promise<void>((resolve, reject) => {
          s.once('error', reject);
          s.bind(p, '127.0.0.1', () => resolve());
        });
      }
      return port;
    } catch {
      // taken: try another
    } finally {
      await Promise.all(
        sockets.map(
          (s) =>
            new Promise<void>((resolve) => {
              try {
                s.close(() => resolve());
              } catch {
                resolve(); // never bound
              }
            }),
        ),
      );
    }
  }
  throw new Error('none found after 50 attempts');
}
