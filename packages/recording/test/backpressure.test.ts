import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MixerEvent, programTapOf } from '@mcu/mixer';
import { DirectoryStore, Recording } from '../src/index.js';
import type { RecordingCounters, RecordingStore, SegmentSink } from '../src/index.js';
import { BeepFlashPresenter, flashClip } from './beepFlash.js';
import { sleep, until } from '../../mixer/test/videoMedia.js';

/**
 * A recording whose disk stalls or fails: frames it cannot queue are dropped, counted and logged
 * (never silently), a write error ends the segment and a new one is opened, and the mixer never
 * waits for any of it.
 */
const dirs: string[] = [];
const events: MixerEvent[] = [];
const presenters: BeepFlashPresenter[] = [];
afterAll(() => {
  for (const p of presenters) p.stop();
  for (const e of events) e.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function counters() {
  const c = { bytes: 0, segments: 0, errors: 0, dropped: {} as Record<string, number> };
  const impl: RecordingCounters = {
    bytesWritten: (n) => (c.bytes += n),
    segmentWritten: () => c.segments++,
    writeError: () => c.errors++,
    dropped: (reason, n = 1) => (c.dropped[reason] = (c.dropped[reason] ?? 0) + n),
  };
  return { c, impl };
}

function logger() {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => lines.push({ level, obj, msg });
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error') } as never };
}

function setup(id: string, video = false) {
  const dir = mkdtempSync(join(tmpdir(), 'mcu-rec-bp-'));
  dirs.push(dir);
  const identity = join(dir, 'key.txt');
  expect(spawnSync('age-keygen', ['-o', identity]).status).toBe(0);
  const recipient = spawnSync('age-keygen', ['-y', identity]).stdout.toString().trim();
  const event = new MixerEvent({ id, ...(video ? { video: { renditions: [{ id: 'v', width: 320, height: 180, bitrateKbps: 800 }] } } : {}) });
  events.push(event);
  presenters.push(new BeepFlashPresenter(event, 'p1', flashClip(320, 180)).start());
  return { dir, identity, recipient, event };
}

describe('a recording that cannot keep up', () => {
  it('drops what its queue cannot hold, counts and logs it, and the mix goes on', async () => {
    // With video: age writes 64 KiB chunks, which audio alone takes 20 s to fill.
    const { dir, identity, recipient, event } = setup('bp-stall', true);
    // A disk that stops answering until released.
    let release: () => void = () => undefined;
    const stalled = new Promise<void>((r) => (release = r));
    const disk = new DirectoryStore(join(dir, 'store'));
    const store: RecordingStore = Object.assign(Object.create(disk) as RecordingStore, {
      openSegment: async (e: string, r: string, n: string): Promise<SegmentSink> => {
        const sink = await disk.openSegment(e, r, n);
        return { write: async (chunk) => (await stalled, sink.write(chunk)), close: () => sink.close() };
      },
    });
    const { c, impl } = counters();
    const { lines, log } = logger();
    const rec = new Recording({ tap: programTapOf(event), store, recipients: [recipient], rendition: 'v', videoCodec: 'vp8', maxQueueFrames: 25, counters: impl, log });
    await rec.start();
    const ticks0 = event.mixer.stats.ticks;
    expect(await until(() => rec.summary().dropped.queueFull > 20, 15_000)).toBe(true);
    await sleep(1500);
    // The mixer kept its 20 ms ticks while the recording was stuck.
    expect(event.mixer.stats.ticks).toBeGreaterThan(ticks0 + 75);
    const s = rec.summary();
    expect(c.dropped.queue_full).toBe(s.dropped.queueFull);
    expect(lines.some((l) => l.level === 'warn' && /cannot keep up/.test(l.msg))).toBe(true);
    release();
    const manifest = await rec.stop();
    expect(manifest.segments[0].complete).toBe(true);
    expect(c.bytes).toBe(manifest.segments[0].size);
    const dec = spawnSync('age', ['-d', '-i', identity, '-o', join(dir, 'out.webm'), join(dir, 'store', 'bp-stall', rec.id, manifest.segments[0].name)]);
    expect(dec.status, dec.stderr.toString()).toBe(0);
  }, 40_000);

  it('a write error ends the segment, is counted and logged, and the next segment is opened', async () => {
    const { dir, recipient, event } = setup('bp-error', true);
    const disk = new DirectoryStore(join(dir, 'store'));
    let failNext = false;
    const store: RecordingStore = Object.assign(Object.create(disk) as RecordingStore, {
      openSegment: async (e: string, r: string, n: string): Promise<SegmentSink> => {
        const sink = await disk.openSegment(e, r, n);
        return {
          write: async (chunk) => {
            if (failNext) {
              failNext = false;
              throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
            }
            await sink.write(chunk);
          },
          close: () => sink.close(),
        };
      },
    });
    const { c, impl } = counters();
    const { lines, log } = logger();
    const rec = new Recording({ tap: programTapOf(event), store, recipients: [recipient], rendition: 'v', videoCodec: 'vp8', counters: impl, log });
    await rec.start();
    await sleep(1500);
    failNext = true;
    // Age writes in 64 KiB chunks: the failing write comes when the next chunk is due.
    expect(await until(() => c.errors === 1, 15_000)).toBe(true);
    expect(lines.some((l) => l.level === 'error' && /write failed/.test(l.msg) && /ENOSPC/.test(String(l.obj.err)))).toBe(true);
    expect(await until(() => rec.segmentList().length === 2, 5000)).toBe(true);
    await sleep(500);
    const manifest = await rec.stop();
    expect(manifest.state).toBe('stopped');
    expect(manifest.segments[0].complete).toBe(false);
    expect(manifest.segments[1].complete).toBe(true);
    expect(rec.summary().writeErrors).toBe(1);
  }, 40_000);
});
