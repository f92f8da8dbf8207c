/**
 * What a crash of the recording node loses, with video (dedicated nats-server, the Object Store):
 * a child process records a grainy, flashing 800 kbps program into 2-minute segments and is
 * SIGKILLed 8 s into its first one. Its open segment reached the bucket in chunks: read back
 * (from the chunks, by another connection), `age -d` opens it as far as it was stored and it
 * plays up to within a second or two of the kill — not the whole segment lost. Another recorder
 * then continues the recording as part 1: its first segment names the cut segment's stored hash
 * inside its encryption, and each part's MAC checks under the key inside its own segments.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { NatsBus } from '@mcu/control';
import { MixerEvent, programTapOf } from '@mcu/mixer';
import { NatsServerProcess } from '../../control/test/natsServer.js';
import { macMatches, ObjectStoreStore, parseSegmentComment, partMacMatches, Recorder } from '../src/index.js';
import { BeepFlashPresenter, flashClip, videoLuma } from './beepFlash.js';
import { sleep } from '../../mixer/test/videoMedia.js';

let world: { dir: string; server: NatsServerProcess } | undefined;
let child: ChildProcess | undefined;
const closers: (() => unknown)[] = [];
afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const c of closers.reverse()) await c();
  await world?.server.kill();
  if (world) rmSync(world.dir, { recursive: true, force: true });
});

/** One dedicated nats-server for the file. */
async function natsServer(): Promise<{ dir: string; server: NatsServerProcess }> {
  if (!world) {
    const dir = mkdtempSync(join(tmpdir(), 'mcu-rec-crash-'));
    world = { dir, server: await NatsServerProcess.start(['-js', '-sd', join(dir, 'nats')]) };
  }
  return world;
}

async function bytesOf(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(parts);
}

/** Decrypts with the age CLI; a cut segment makes age fail at its end, after writing what it could. */
function ageDecrypt(identity: string, bytes: Buffer, out: string): { status: number | null; plain: Buffer } {
  const enc = `${out}.age`;
  writeFileSync(enc, bytes);
  const r = spawnSync('age', ['-d', '-i', identity, '-o', out, enc]);
  let plain = Buffer.alloc(0);
  try {
    if (statSync(out).size > 0) plain = Buffer.from(spawnSync('cat', [out]).stdout);
  } catch {
    // nothing written
  }
  return { status: r.status, plain };
}

describe('a crash of the recording node', () => {
  it('loses about a second of video, not the segment; the next part continues the chain', async () => {
    const { dir, server } = await natsServer();
    const identity = join(dir, 'key.txt');
    expect(spawnSync('age-keygen', ['-o', identity]).status).toBe(0);
    const recipient = spawnSync('age-keygen', ['-y', identity]).stdout.toString().trim();
    const bucket = 'mcu-recordings-crash';
    const eventId = 'crash-event';
    const script = fileURLToPath(new URL('./crashChild.ts', import.meta.url));
    const c = spawn(process.execPath, ['--import', 'tsx', script, server.url, bucket, join(dir, 'spool-a'), recipient, eventId], { stdio: ['ignore', 'pipe', 'inherit'] });
    child = c;
    let out = '';
    const started = new Promise<{ id: string; startedAt: string }>((resolve, reject) => {
      c.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /recording (\S+) (\S+)/.exec(out);
        if (m) resolve({ id: m[1], startedAt: m[2] });
      });
      c.once('exit', (code) => reject(new Error(`recording child exited ${code}`)));
    });
    const { id, startedAt } = await started;
    // 8 s into its first segment (two minutes long), with video flowing.
    await sleep(8000);
    const killedAtMediaMs = performance.timeOrigin + performance.now();
    c.kill('SIGKILL');
    await new Promise((r) => c.once('exit', r));

    // Another node: its own connection, none of the child's files.
    const bus = await NatsBus.connect({ servers: server.url, name: 'crash-reader' });
    closers.push(() => bus.close());
    const store = new ObjectStoreStore(await bus.objectStore(bucket), join(dir, 'spool-b'));
    const recorder = new Recorder({ store, segmentMs: 120_000 });
    const before = (await recorder.manifest(eventId, id))!;
    // (Under load the first keyframe can come after the 1.5 s wait: a short segment without video first.)
    expect(before.segments.length).toBeLessThanOrEqual(2);
    const cut = before.segments.at(-1)!;
    expect(cut).toMatchObject({ video: true, complete: false });
    const cutBytes = await bytesOf((await store.readSegment(eventId, id, cut.name))!.stream);
    const cutPlain = join(dir, 'cut.webm');
    const dec = ageDecrypt(identity, cutBytes, cutPlain);
    expect(dec.status).not.toBe(0);
    const luma = videoLuma(cutPlain);
    const keptMs = luma.at(-1)![0] * 1000;
    const lostMs = killedAtMediaMs - (cut.startMediaMs + keptMs);
    const kbps = (cutBytes.length * 8) / keptMs;
    console.log(JSON.stringify({ test: 'recording-crash', storedBytes: cutBytes.length, keptMs: Math.round(keptMs), lostOnCrashMs: Math.round(lostMs), kbps: Math.round(kbps) }));
    expect(keptMs).toBeGreaterThan(4000);
    expect(lostMs).toBeGreaterThan(0);
    // At most the last chunk interval (1 s) and one 64 KiB age chunk at this bitrate, and a second of slack.
    expect(lostMs).toBeLessThan(1000 + (65_536 * 8) / kbps + 1000);

    // The recording goes on here as part 1.
    const event = new MixerEvent({ id: eventId, video: { renditions: [{ id: 'v', width: 320, height: 180, bitrateKbps: 800 }], fps: 30, keyframeIntervalMs: 1000 } });
    closers.push(() => event.close());
    const presenter = new BeepFlashPresenter(event, 'p1', flashClip(320, 180)).start();
    closers.push(() => presenter.stop());
    const rec = await recorder.resume(programTapOf(event), { id, recipients: [recipient], rendition: 'v', segmentMinutes: 10, startedAt }, 0);
    expect(rec.partNumber).toBe(1);
    await sleep(3000);
    const final = await recorder.stop(eventId, id);
    expect(final.state).toBe('stopped');
    expect(final.parts!.map((p) => [p.part, p.closed])).toEqual([
      [0, false],
      [1, true],
    ]);
    const sha = createHash('sha256').update(cutBytes).digest('hex');
    expect(final.parts![1].prev).toEqual({ segment: cut.index, size: cutBytes.length, sha256: sha });
    const next = final.segments[cut.index + 1];
    expect(next).toMatchObject({ part: 1, complete: true });
    const nextBytes = await bytesOf((await store.readSegment(eventId, id, next.name))!.stream);
    const nextDec = ageDecrypt(identity, nextBytes, join(dir, 'next.webm'));
    expect(nextDec.status).toBe(0);
    expect(videoLuma(join(dir, 'next.webm')).length).toBeGreaterThan(30);
    // The chain across the parts, and each part's MAC under the key inside its own segments.
    const link0 = parseSegmentComment(dec.plain.subarray(0, 65_536).toString('latin1'))!;
    const link1 = parseSegmentComment(nextDec.plain.subarray(0, 65_536).toString('latin1'))!;
    expect(link0).toMatchObject({ recording: id, segment: cut.index, part: 0, prev: cut.index === 0 ? '-' : before.segments[0].sha256 });
    expect(link1).toMatchObject({ recording: id, segment: cut.index + 1, part: 1, prev: sha });
    expect(link1.key).not.toBe(link0.key);
    expect(partMacMatches(final, final.parts![0], Buffer.from(link0.key, 'hex'))).toBe(true);
    expect(partMacMatches(final, final.parts![1], Buffer.from(link1.key, 'hex'))).toBe(true);
    expect(macMatches(final, Buffer.from(link1.key, 'hex'))).toBe(true);
    // A forger without the identity cannot rewrite part 0's record: its MAC no longer checks.
    const forged = { ...final, parts: [{ ...final.parts![0], closed: true }, final.parts![1]] };
    expect(partMacMatches(forged, forged.parts[0], Buffer.from(link0.key, 'hex'))).toBe(false);
    await recorder.close();
  }, 90_000);

  it('a node that lost the event (cut off, then seeing the new holder) stops writing at once; the next part follows what was stored', async () => {
    const { dir, server } = await natsServer();
    const identity = join(dir, 'key2.txt');
    expect(spawnSync('age-keygen', ['-o', identity]).status).toBe(0);
    const recipient = spawnSync('age-keygen', ['-y', identity]).stdout.toString().trim();
    const bus = await NatsBus.connect({ servers: server.url, name: 'abandon-test' });
    closers.push(() => bus.close());
    const os = await bus.objectStore('mcu-recordings-abandon');
    const eventId = 'abandon-event';
    const event = new MixerEvent({ id: eventId, video: { renditions: [{ id: 'v', width: 320, height: 180, bitrateKbps: 800 }], fps: 30, keyframeIntervalMs: 1000 } });
    closers.push(() => event.close());
    const presenter = new BeepFlashPresenter(event, 'p1', flashClip(320, 180)).start();
    closers.push(() => presenter.stop());
    const a = new Recorder({ store: new ObjectStoreStore(os, join(dir, 'spool-c')), segmentMs: 120_000 });
    const rec = await a.start(programTapOf(event), { recipients: [recipient], rendition: 'v' });
    await sleep(4000);
    a.abandon(eventId);
    expect(a.runningOf(eventId)).toEqual([]);
    const objects = async () => (await os.list()).filter((o) => !o.deleted).map((o) => `${o.name} ${o.size}`).sort();
    await sleep(300);
    const left = await objects();
    const manifestLeft = (await a.manifest(eventId, rec.id))!;
    // Nothing more reaches the store: no chunk, no manifest, no whole segment.
    await sleep(2500);
    expect(await objects()).toEqual(left);
    expect(left.some((o) => o.includes('.chunk-'))).toBe(true);
    expect(manifestLeft.parts![0].closed).toBe(false);
    const b = new Recorder({ store: new ObjectStoreStore(os, join(dir, 'spool-d')), segmentMs: 120_000 });
    const next = await b.resume(programTapOf(event), rec.definition(), 0);
    expect(next.partNumber).toBe(1);
    await sleep(2500);
    const final = await b.stop(eventId, rec.id);
    const cut = manifestLeft.segments.at(-1)!;
    const stored = await bytesOf((await b.store.readSegment(eventId, rec.id, cut.name))!.stream);
    expect(stored.length).toBeGreaterThan(100_000);
    expect(final.parts![1].prev).toEqual({ segment: cut.index, size: stored.length, sha256: createHash('sha256').update(stored).digest('hex') });
    await a.close();
    await b.close();
  }, 60_000);
});
