/**
 * A recording survives its mixer (dedicated nats-server, the cluster's Object Store): a presenter
 * publishes a 660 Hz tone over WHIP (werift) to mixer m1 (a child process), which records the
 * program audio in 3-second segments; m1 is SIGKILLed mid-segment, m2 takes the event over and
 * continues the recording as its part 1 (the presenter re-publishes to it); then a planned move
 * to m3, which continues it as part 2 after m2 closed its segment. The recording is stopped
 * through a mixer that does not hold the event (307), and the real `mcu recording verify` /
 * `download --identity` read it through any mixer: every segment decrypts with `age -d -i`, plays
 * in ffprobe, the tone is in every part, verify passes and reports the parts, and a swapped,
 * removed or replaced segment in any part is detected. What the crash lost is measured.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsBus } from '@mcu/control';
import { McuNode } from '@mcu/server';
import { parseManifest, type Manifest } from '@mcu/recording';
import { MixerRole } from '../src/index.js';
import { NatsServerProcess } from '../../control/test/natsServer.js';
import { LOOPBACK, tonePower, WebRtcClient } from '../../webrtc/test/client.js';
import { cleanEnv, killAll, run } from '../../cli/test/cli.js';
import { sleep, spawnMixerChild, waitFor } from './harness.js';

const SECRET = 'recfail-test-secret-0123456789abcdef-xyz';
const ADMIN = 'recfail-test-admin-token-0123456789';
const TONE_HZ = 660;
const OTHER_HZ = 1230;

/** The program audio of a decrypted segment as 48 kHz mono PCM (ffmpeg). */
function decodePcm(file: string): Int16Array {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', file, '-f', 's16le', '-ac', '1', '-ar', '48000', '-'], { maxBuffer: 256 << 20 });
  const b = r.stdout;
  return new Int16Array(b.buffer, b.byteOffset, Math.floor(b.length / 2));
}

/** Seconds of 0.5 s windows in which the tone stands 100× above another frequency. */
function toneSeconds(pcm: Int16Array): number {
  let n = 0;
  for (let off = 0; off + 24_000 <= pcm.length; off += 24_000) {
    const w = pcm.subarray(off, off + 24_000);
    if (tonePower(w, TONE_HZ) > 100 * Math.max(1, tonePower(w, OTHER_HZ)) && tonePower(w, TONE_HZ) > 1e9) n++;
  }
  return n / 2;
}

function ffprobeSeconds(file: string): number {
  const r = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'packet=pts_time,duration_time', '-of', 'csv=p=0', file], { maxBuffer: 64 << 20 });
  let end = 0;
  for (const line of r.stdout.toString().split('\n')) {
    const [pts, dur] = line.split(',').map(Number);
    if (Number.isFinite(pts)) end = Math.max(end, pts + (Number.isFinite(dur) ? dur : 0));
  }
  return end;
}

/** A presenter that sends the tone every 20 ms to whichever WHIP session it has now. */
class Presenter {
  client: WebRtcClient | null = null;
  #running = true;
  readonly #pacing: Promise<void>;

  constructor() {
    this.#pacing = (async () => {
      const start = performance.now();
      for (let frame = 0; this.#running && frame < 120 * 50; frame++) {
        this.client?.sendTone(TONE_HZ);
        await new Promise((r) => setTimeout(r, Math.max(0, start + (frame + 1) * 20 - performance.now())));
      }
    })();
  }

  async publish(whip: string, token: string): Promise<void> {
    const old = this.client;
    this.client = null;
    await old?.pc.close().catch(() => undefined);
    const c = await WebRtcClient.connect('whip', whip, token);
    await c.connected();
    this.client = c;
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#pacing;
    await this.client?.pc.close().catch(() => undefined);
  }
}

describe('a recording across a mixer failover and a planned move', () => {
  let server: NatsServerProcess;
  let dir: string;
  const buses: NatsBus[] = [];
  let child: ChildProcess | undefined;
  const roles: MixerRole[] = [];
  const nodes: McuNode[] = [];
  const presenter = new Presenter();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mcu-recfail-'));
    server = await NatsServerProcess.start(['-js', '-sd', join(dir, 'nats')]);
  });

  afterAll(async () => {
    killAll();
    await presenter.stop();
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const r of roles.reverse()) await r.close().catch(() => undefined);
    for (const n of nodes) await n.close().catch(() => undefined);
    for (const b of buses) await b.close().catch(() => undefined);
    await server?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function mixer(cluster: string, id: string): Promise<MixerRole> {
    const bus = await NatsBus.connect({ servers: server.url, name: id, reconnectTimeWaitMs: 100 });
    buses.push(bus);
    const node = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses, recordingsDir: join(dir, id) });
    nodes.push(node);
    await node.listen();
    const role = await MixerRole.start({ node, bus, cluster, nodeId: id, tokenSecret: SECRET, relayFanOut: 4 });
    roles.push(role);
    return role;
  }

  it('continues on the new holder after a SIGKILL and after a move; verify and download join the parts', async () => {
    const identity = join(dir, 'key.txt');
    expect(spawnSync('age-keygen', ['-o', identity]).status).toBe(0);
    const recipient = spawnSync('age-keygen', ['-y', identity]).stdout.toString().trim();
    const cluster = `rf${Date.now().toString(36)}`;
    const m2 = await mixer(cluster, 'm2');
    const spawned = await spawnMixerChild({ natsUrl: server.url, cluster, nodeId: 'm1', secret: SECRET, adminToken: ADMIN, recordingsDir: join(dir, 'm1') });
    const m1 = spawned.child;
    child = m1;
    const m1Url = spawned.url;
    await waitFor(() => m2.controller.registry.has('m1'), 5000, 'm1 registered');
    const created = await fetch(`${m1Url}/api/events?placed=1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'recording-across-failover' }),
    });
    expect(created.status).toBe(201);
    const event = (await created.json()) as { id: string; tokens: { presenter: string; producer: string } };
    const api = (base: string, method: string, path: string, body?: unknown, init: RequestInit = {}) =>
      fetch(`${base}/api/events/${event.id}${path}`, {
        method,
        headers: { authorization: `Bearer ${event.tokens.producer}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        ...init,
      });
    await waitFor(async () => (await m2.events.get(event.id))?.mixer === 'm1', 5000, 'the event held by m1');
    await presenter.publish(`${m1Url}/whip/${event.id}`, event.tokens.presenter);

    // Part 0 on m1: audio only, 3-second segments.
    const started = await api(m1Url, 'POST', '/recordings', { recipients: [recipient], rendition: false, segmentMinutes: 0.05 });
    expect(started.status, await started.clone().text()).toBe(201);
    const rid = ((await started.json()) as { id: string }).id;
    // The recording's definition (public values only) is stored with the event.
    await waitFor(async () => (await m2.events.get(event.id))?.recordings?.[0]?.id === rid, 5000, 'the recording stored with the event');
    const def = (await m2.events.get(event.id))!.recordings![0];
    expect(def).toMatchObject({ id: rid, recipients: [recipient], rendition: false, segmentMinutes: 0.05 });
    const store = m2.node.recordings.recorder;
    const manifest = async (): Promise<Manifest | null> => store.manifest(event.id, rid);
    await waitFor(async () => ((await manifest())?.segments.length ?? 0) >= 3, 15_000, 'part 0 in its third segment');
    // Mid-segment: the open segment's chunks are in the bucket already.
    await sleep(2000);
    const killedAtMediaMs = performance.timeOrigin + performance.now();
    m1.kill('SIGKILL');
    await new Promise<void>((resolve) => m2.once('tookOver', () => resolve()));
    expect(m2.leases.held(event.id)).toBe(true);
    await presenter.publish(`${m2.node.url}/whip/${event.id}`, event.tokens.presenter);

    // m2 continues: part 1, from the next segment index.
    await waitFor(async () => (await manifest())?.parts?.some((p) => p.part === 1) === true, 5000, 'part 1 started on m2');
    const afterKill = (await manifest())!;
    const part0 = afterKill.parts![0];
    expect(part0.closed).toBe(false);
    const part1 = afterKill.parts![1];
    expect(part1.firstSegment).toBe(afterKill.segments.filter((s) => (s.part ?? 0) === 0).length);
    const cut = afterKill.segments[part1.firstSegment - 1];
    // The segment m1 was writing reached the bucket in chunks: the new part follows those bytes.
    expect(cut.complete).toBe(false);
    expect(part1.prev).toMatchObject({ segment: cut.index });
    expect(part1.prev!.size).toBeGreaterThan(0);
    await waitFor(async () => ((await manifest())?.segments.filter((s) => s.part === 1 && s.complete).length ?? 0) >= 2, 20_000, 'two segments of part 1');

    // A planned move to m3: m2 closes its segment, m3 opens the next one.
    const m3 = await mixer(cluster, 'm3');
    await waitFor(() => m2.controller.registry.has('m3'), 5000, 'm3 registered');
    const moved = await api(m2.node.url, 'POST', '/move', { to: 'm3' });
    expect(moved.status, await moved.clone().text()).toBe(200);
    await presenter.publish(`${m3.node.url}/whip/${event.id}`, event.tokens.presenter);
    await waitFor(async () => ((await manifest())?.segments.filter((s) => s.part === 2 && s.complete).length ?? 0) >= 1, 20_000, 'a segment of part 2');
    await sleep(1500);

    // Any mixer answers for the recording: m2 (not the holder) lists it from the Object Store,
    // and redirects the stop to m3, the token kept.
    const listed = await api(m2.node.url, 'GET', '/recordings', undefined, { redirect: 'manual' });
    expect(listed.status).toBe(200);
    expect(((await listed.json()) as { recordings: { id: string; state: string }[] }).recordings).toMatchObject([{ id: rid, state: 'recording' }]);
    const redirected = await api(m2.node.url, 'DELETE', `/recordings/${rid}`, undefined, { redirect: 'manual' });
    expect(redirected.status).toBe(307);
    expect(redirected.headers.get('location')).toContain(m3.node.url);
    expect(redirected.headers.get('location')).toContain('token=');
    const stopped = await api(m2.node.url, 'DELETE', `/recordings/${rid}`);
    expect(stopped.status, await stopped.clone().text()).toBe(200);
    const final = (await manifest())!;
    expect(final.state).toBe('stopped');
    expect(final.parts!.map((p) => [p.part, p.closed])).toEqual([
      [0, false],
      [1, true],
      [2, true],
    ]);
    // The move's part 1 ends cleanly: every segment of it complete, part 2 follows its last one.
    const seg1 = final.segments.filter((s) => s.part === 1);
    expect(seg1.every((s) => s.complete)).toBe(true);
    expect(final.parts![2].prev).toMatchObject({ segment: seg1.at(-1)!.index, sha256: seg1.at(-1)!.sha256 });

    // Every segment, fetched through a mixer that does not hold the event, opens with `age -d -i` and plays.
    const tone: number[] = [0, 0, 0];
    const played: number[] = [0, 0, 0];
    for (const s of final.segments) {
      const res = await api(m2.node.url, 'GET', `/recordings/${rid}/segments/${s.index}`);
      expect(res.status).toBe(200);
      const enc = join(dir, `${s.index}.age`);
      const plain = join(dir, `${s.index}.webm`);
      writeFileSync(enc, Buffer.from(await res.arrayBuffer()));
      const dec = spawnSync('age', ['-d', '-i', identity, '-o', plain, enc]);
      // The segment cut by the SIGKILL lacks its last age chunk: age says so, what it wrote plays.
      if (s.complete) expect(dec.status, dec.stderr.toString()).toBe(0);
      const seconds = ffprobeSeconds(plain);
      // (A cut segment holds what reached the bucket: whole 64 KiB age chunks, none if it was younger than one.)
      if (s.complete) expect(seconds, `segment ${s.index} plays its length`).toBeGreaterThan(Math.max(0.02, s.durationMs / 1000 - 0.2));
      else if (existsSync(plain) && statSync(plain).size > 0) expect(seconds, `segment ${s.index} plays as far as it was stored`).toBeGreaterThan(0.2);
      if (!existsSync(plain)) continue;
      played[s.part ?? 0] += seconds;
      tone[s.part ?? 0] += toneSeconds(decodePcm(plain));
    }
    // The presenter's tone before the crash, after the takeover, and after the move.
    expect(tone[0]).toBeGreaterThan(3);
    expect(tone[1]).toBeGreaterThan(2);
    expect(tone[2]).toBeGreaterThan(1);

    // The real CLI, through m2 (redirected to the holder): verify passes and reports the parts.
    const env = cleanEnv({ MCU_URL: m2.node.url, MCU_TOKEN: event.tokens.producer });
    const verified = await run(['recording', 'verify', event.id, rid, '--identity', identity, '--json'], env);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    const v = JSON.parse(verified.stdout) as { ok: boolean; manifestAuthentic: boolean; parts: { part: number; closed: boolean; endMediaMs: number | null; startMediaMs: number; gapBeforeMs: number | null; mac: string }[]; segments: { stored: string }[] };
    expect(v.ok).toBe(true);
    expect(v.manifestAuthentic).toBe(true);
    expect(v.parts.map((p) => p.mac)).toEqual(['ok', 'ok', 'ok']);
    expect(v.segments.filter((s) => s.stored === 'cut').length).toBe(1);
    const lostMs = killedAtMediaMs - v.parts[0].endMediaMs!;
    const takeoverGapMs = v.parts[1].gapBeforeMs!;
    const moveGapMs = v.parts[2].gapBeforeMs!;
    const kbps = (seg1.reduce((n, s) => n + s.size, 0) * 8) / seg1.reduce((n, s) => n + s.durationMs, 0);
    console.log(JSON.stringify({ test: 'recording-failover', lostOnCrashMs: Math.round(lostMs), takeoverGapMs, moveGapMs, kbps: Math.round(kbps), segments: final.segments.length, playedS: played.map((x) => Math.round(x * 10) / 10), toneS: tone }));
    // What the crash lost: at most the last chunk interval (1 s) and one 64 KiB age chunk at this bitrate, and a second of slack.
    expect(lostMs).toBeGreaterThan(0);
    expect(lostMs).toBeLessThan(1000 + (65_536 * 8) / kbps + 2000);
    expect(takeoverGapMs).toBeGreaterThanOrEqual(lostMs - 1);
    // The planned move: the recording pauses for the handover only (not a segment's worth).
    expect(moveGapMs).toBeLessThan(1500);
    const human = await run(['recording', 'verify', event.id, rid], env);
    expect(human.code, human.stdout + human.stderr).toBe(0);
    expect(human.stdout).toMatch(/part 0: segments 0–\d+, its node stopped while writing/);
    expect(human.stdout).toMatch(/part 2: segments \d+–\d+, closed by its node/);

    const out = join(dir, 'download');
    const dl = await run(['recording', 'download', event.id, rid, '--identity', identity, '--out', out, '--json'], env);
    expect(dl.code, dl.stdout + dl.stderr).toBe(0);
    const files = (JSON.parse(dl.stdout) as { files: string[] }).files;
    expect(files).toEqual([join(out, `${rid}.webm`)]);
    // One file with every part: its length is what the segments played.
    const joined = ffprobeSeconds(files[0]);
    const total = played.reduce((a, b) => a + b, 0);
    expect(joined).toBeGreaterThan(total - 1.5);
    expect(toneSeconds(decodePcm(files[0]))).toBeGreaterThan(tone[0] + tone[1] + tone[2] - 2);

    // Tampering, in any part, through the bucket as a writer of the store could.
    const os = await buses[0].objectStore(`mcu-recordings-${cluster}`);
    const key = (s: { name: string }) => `${event.id}/${rid}/${s.name}`;
    const a = seg1[0];
    const b = final.segments.find((s) => s.part === 2 && s.complete)!;
    const aBytes = (await os.getBlob(key(a)))!;
    await os.putBlob({ name: key(a) }, (await os.getBlob(key(b)))!);
    const swapped = await run(['recording', 'verify', event.id, rid], env);
    expect(swapped.code).toBe(1);
    expect(swapped.stdout).toMatch(new RegExp(`segment ${a.index} was changed or swapped`));
    // Removed: the whole object and the chunks it was written in (kept 30 s after it was put whole).
    for (const o of await os.list()) if (!o.deleted && o.name.startsWith(key(a))) await os.delete(o.name);
    const removed = await run(['recording', 'verify', event.id, rid], env);
    expect(removed.code).toBe(1);
    expect(removed.stdout).toMatch(new RegExp(`segment ${a.index} is missing`));
    await os.putBlob({ name: key(a) }, aBytes);
    // The segment the crash cut, replaced by another one: not what part 1 found stored after it.
    await os.putBlob({ name: key(cut) }, aBytes);
    const replaced = await run(['recording', 'verify', event.id, rid], env);
    expect(replaced.code).toBe(1);
    expect(replaced.stdout).toMatch(new RegExp(`segment ${cut.index} was changed or swapped: it is not what part 1 found stored`));
    await os.delete(key(cut));
    // A part's segment dropped from the manifest: its part's MAC and the chain fail (with the identity).
    const m = parseManifest((new TextDecoder().decode((await os.getBlob(`${event.id}/${rid}/manifest.json`))!)));
    const dropped = { ...m, segments: m.segments.filter((s) => s.index !== a.index).map((s, i) => ({ ...s, index: i })) };
    await os.putBlob({ name: `${event.id}/${rid}/manifest.json` }, new TextEncoder().encode(JSON.stringify(dropped)));
    const rewritten = await run(['recording', 'verify', event.id, rid, '--identity', identity], env);
    expect(rewritten.code).toBe(1);
    expect(rewritten.stdout).toMatch(/part 1's MAC does not match/);
    await presenter.stop();
  }, 150_000);

  it('an event created to record on its first presenter is armed again on the new holder after a SIGKILL, and records there', async () => {
    const identity = join(dir, 'armed-key.txt');
    expect(spawnSync('age-keygen', ['-o', identity]).status).toBe(0);
    const recipient = spawnSync('age-keygen', ['-y', identity]).stdout.toString().trim();
    const cluster = `ra${Date.now().toString(36)}`;
    const mb = await mixer(cluster, 'mb');
    const spawned = await spawnMixerChild({ natsUrl: server.url, cluster, nodeId: 'ma', secret: SECRET, adminToken: ADMIN, recordingsDir: join(dir, 'ma') });
    child = spawned.child;
    await waitFor(() => mb.controller.registry.has('ma'), 5000, 'ma registered');
    const created = await fetch(`${spawned.url}/api/events?placed=1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'armed-across-failover', record: { recipients: [recipient], rendition: false, segmentMinutes: 0.05 } }),
    });
    expect(created.status, await created.clone().text()).toBe(201);
    const event = (await created.json()) as { id: string; tokens: { presenter: string } };
    await waitFor(async () => (await mb.events.get(event.id))?.mixer === 'ma', 5000, 'the event held by ma');
    // Armed, nobody joined yet: the request (public recipients) is stored with the event.
    await waitFor(async () => (await mb.events.get(event.id))?.recordOnJoin?.recipients?.[0] === recipient, 5000, 'armed, stored with the event');
    spawned.child.kill('SIGKILL');
    await new Promise<void>((resolve) => mb.once('tookOver', () => resolve()));
    expect(mb.node.recordings.definitionsOf(event.id)).toEqual([]);
    const late = new Presenter();
    try {
      await late.publish(`${mb.node.url}/whip/${event.id}`, event.tokens.presenter);
      await waitFor(() => mb.node.recordings.definitionsOf(event.id).length === 1, 10_000, 'recording on the first presenter, on the new holder');
      const rid = mb.node.recordings.definitionsOf(event.id)[0].id;
      await waitFor(async () => (await mb.events.get(event.id))?.recordOnJoin === undefined, 5000, 'no longer armed in the stored definition');
      const store = mb.node.recordings.recorder;
      await waitFor(async () => ((await store.manifest(event.id, rid))?.segments.filter((x) => x.complete).length ?? 0) >= 1, 15_000, 'a complete segment');
      const seg = (await store.manifest(event.id, rid))!.segments.find((x) => x.complete)!;
      const res = await fetch(`${mb.node.url}/api/events/${event.id}/recordings/${rid}/segments/${seg.index}`, { headers: { authorization: `Bearer ${ADMIN}` } });
      expect(res.status).toBe(200);
      const enc = join(dir, 'armed.age');
      const plain = join(dir, 'armed.webm');
      writeFileSync(enc, Buffer.from(await res.arrayBuffer()));
      const dec = spawnSync('age', ['-d', '-i', identity, '-o', plain, enc]);
      expect(dec.status, dec.stderr.toString()).toBe(0);
      // Recorded to the recipient the event was created with; the presenter's tone is in it.
      expect(toneSeconds(decodePcm(plain))).toBeGreaterThan(1);
    } finally {
      await late.stop();
    }
  }, 90_000);
});
