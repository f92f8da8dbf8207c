/**
 * Pieces shared by the cluster tests: a cluster on a dedicated nats-server (ClusterWorld), polling
 * with a deadline, a plain-RTP presenter, a WHEP viewer that reconnects.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NatsBus, type Bus, type Logger } from '@mcu/control';
import { McuNode, type NodeConfigInput } from '@mcu/server';
import { MixerRole, RelayRole, type RelayRoleOptions } from '../src/index.js';
import { NatsServerProcess } from '../../control/test/natsServer.js';
import { RtpPeer } from '../../mixer/test/peer.js';
import { LOOPBACK, WebRtcClient } from '../../webrtc/test/client.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 20 ms; resolves with the time it took, throws after `timeoutMs`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (await cond()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** A plain-RTP participant added through the API that sends a 440 Hz tone every 20 ms until `stop()` (at most 2 minutes). */
export class TonePresenter {
  #presenting = true;
  #pacing: Promise<void> = Promise.resolve();

  private constructor(readonly peer: RtpPeer) {}

  static async join(nodeUrl: string, eventId: string, token: string): Promise<TonePresenter> {
    const peer = await RtpPeer.open({ freq: 440, audioLevelExtId: 1 });
    const res = await fetch(`${nodeUrl}/api/events/${eventId}/rtp-participants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: 1 }),
    });
    const p = (await res.json()) as { host: string; port: number };
    peer.connect(p.host, p.port);
    const presenter = new TonePresenter(peer);
    presenter.#pacing = (async () => {
      const start = performance.now();
      for (let frame = 0; presenter.#presenting && frame < 6000; frame++) {
        peer.sendFrame();
        await sleep(Math.max(0, start + (frame + 1) * 20 - performance.now()));
      }
    })();
    return presenter;
  }

  async stop(): Promise<void> {
    this.#presenting = false;
    await this.#pacing;
    this.peer.close();
  }
}

/** A werift WHEP viewer that reconnects through the mixer when its audio stalls (its relay died). */
export class WhepViewer {
  client!: WebRtcClient;
  reconnects = 0;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #lastCount = 0;
  #lastChange = 0;
  #busy = false;
  constructor(
    readonly url: string,
    readonly token: string,
  ) {}
  async connect(): Promise<void> {
    this.client = await WebRtcClient.connect('whep', this.url, this.token);
    await this.client.connected();
    this.#lastChange = performance.now();
    this.#lastCount = 0;
    this.#timer ??= setInterval(() => this.#check(), 50);
  }
  #check(): void {
    if (this.#closed || this.#busy) return;
    const n = this.client.received.length;
    if (n !== this.#lastCount) {
      this.#lastCount = n;
      this.#lastChange = performance.now();
      return;
    }
    if (performance.now() - this.#lastChange < 400) return;
    this.#busy = true;
    void (async () => {
      await this.client.pc.close().catch(() => undefined);
      for (let attempt = 0; attempt < 50 && !this.#closed; attempt++) {
        try {
          await this.connect();
          this.reconnects++;
          break;
        } catch {
          await sleep(100);
        }
      }
      this.#busy = false;
    })();
  }
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.client?.pc.close().catch(() => undefined);
  }
}

export interface ClusterWorldOptions {
  /** Names the temp dir (`mcu-<name>-`) and the NATS connections (`<name>-test`). */
  name: string;
  cluster: string;
  secret: string;
  adminToken: string;
  /** The mixer's fan-out (relays directly under it). */
  relayFanOut: number;
  /** Relays `r1`…`rN` started at once (more with `startRelay`); default 0. */
  relays?: number;
  /** Extra options of every relay (child count, rendition chooser, logger). */
  relay?: Partial<RelayRoleOptions>;
  /** Extra configuration of the mixer's node (e.g. its video renditions). */
  node?: NodeConfigInput;
  mixerLogger?: Logger;
}

export interface CreatedEvent {
  id: string;
  whep: string;
  tokens: { viewer: string; presenter: string };
}

/**
 * A cluster for a test file: a dedicated nats-server with JetStream in a temp dir, a listening
 * McuNode with its MixerRole (node id `mixer`), and relays, each node on a NATS connection of its
 * own. `close()` stops all of it, relays first, and removes the temp dir.
 */
export class ClusterWorld {
  readonly cluster: string;
  readonly buses: Bus[] = [];
  /** The relays started and not yet closed by the test (tests remove those they kill). */
  readonly relays: RelayRole[] = [];
  node!: McuNode;
  mixer!: MixerRole;
  #server: NatsServerProcess | undefined;
  #storeDir = '';

  private constructor(readonly opts: ClusterWorldOptions) {
    this.cluster = opts.cluster;
  }

  static async start(opts: ClusterWorldOptions): Promise<ClusterWorld> {
    const w = new ClusterWorld(opts);
    try {
      await w.#start();
    } catch (err) {
      await w.close();
      throw err;
    }
    return w;
  }

  get server(): NatsServerProcess {
    return this.#server!;
  }

  async #start(): Promise<void> {
    const o = this.opts;
    this.#storeDir = await mkdtemp(join(tmpdir(), `mcu-${o.name}-`));
    this.#server = await NatsServerProcess.start(['-js', '-sd', this.#storeDir]);
    this.node = new McuNode({
      port: 0,
      adminToken: o.adminToken,
      tokenSecret: o.secret,
      iceAllow: LOOPBACK.iceAllow,
      iceHostAddresses: LOOPBACK.additionalHostAddresses,
      ...o.node,
    });
    await this.node.listen();
    this.mixer = await MixerRole.start({ node: this.node, bus: await this.bus(), cluster: this.cluster, nodeId: 'mixer', tokenSecret: o.secret, relayFanOut: o.relayFanOut, logger: o.mixerLogger });
    for (let i = 1; i <= (o.relays ?? 0); i++) await this.startRelay(`r${i}`);
  }

  /** A new NATS connection to the world's server (closed with the world). */
  async bus(): Promise<Bus> {
    const b = await NatsBus.connect({ servers: this.server.url, name: `${this.opts.name}-test`, reconnectTimeWaitMs: 100 });
    this.buses.push(b);
    return b;
  }

  async startRelay(nodeId: string): Promise<RelayRole> {
    const o = this.opts;
    const r = await RelayRole.start({
      bus: await this.bus(),
      cluster: this.cluster,
      nodeId,
      tokenSecret: o.secret,
      adminToken: o.adminToken,
      iceAllow: LOOPBACK.iceAllow,
      iceHostAddresses: LOOPBACK.additionalHostAddresses,
      ...o.relay,
    });
    this.relays.push(r);
    return r;
  }

  /** Creates an event through the mixer's API (admin token). */
  async createEvent(name: string): Promise<CreatedEvent> {
    const res = await fetch(`${this.node.url}/api/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.opts.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    if (res.status !== 201) throw new Error(`creating event ${name} answered ${res.status}: ${await res.text()}`);
    return (await res.json()) as CreatedEvent;
  }

  /** Closes the relays, the mixer and its node, the NATS connections and server; removes the temp dir. */
  async close(): Promise<void> {
    for (const r of this.relays) await r.close();
    await this.mixer?.close();
    await this.node?.close();
    for (const b of this.buses) await b.close().catch(() => undefined);
    await this.#server?.kill();
    if (this.#storeDir) await rm(this.#storeDir, { recursive: true, force: true });
  }
}

/** A mixer in a child process of its own (mixerChild.ts), to be SIGKILLed: resolves once it listens, with its URL. */
export async function spawnMixerChild(args: { natsUrl: string; cluster: string; nodeId: string; secret: string; adminToken: string; recordingsDir?: string }): Promise<{ child: ChildProcess; url: string }> {
  const script = fileURLToPath(new URL('./mixerChild.ts', import.meta.url));
  const argv = [script, args.natsUrl, args.cluster, args.nodeId, args.secret, args.adminToken, ...(args.recordingsDir ? [args.recordingsDir] : [])];
  const child = spawn(process.execPath, ['--import', 'tsx', ...argv], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = new RegExp(`ready ${args.nodeId} (\\S+)`).exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`mixer child exited ${code}`)));
  });
  return { child, url };
}
