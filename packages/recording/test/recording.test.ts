import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MixerEvent, programTapOf } from '@mcu/mixer';
import { DirectoryStore, Recording, macMatches, parseManifest, parseSegmentComment } from '../src/index.js';
import { BeepFlashPresenter, audioPeaks, flashClip, median, onsets, skewsMs, videoLuma } from './beepFlash.js';
import { isAlive, sleep, until } from '../../mixer/test/videoMedia.js';

/**
 * A real event (mixer, VP8 encoder) with a presenter who beeps and flashes once a second, recorded
 * into 3-second segments; every segment is opened with Debian's `age` and the producer's identity
 * file, and decoded by ffmpeg.
 */
const W = 320;
const H = 180;
let dir: string;
let identity: string;
let recipient: string;
let otherIdentity: string;

function keygen(path: string): string {
  const r = spawnSync('age-keygen', ['-o', path]);
  expect(r.status).toBe(0);
  return spawnSync('age-keygen', ['-y', path]).stdout.toString().trim();
}

function ageDecrypt(file: string, id: string, out: string): { status: number | null; stderr: string } {
  const r = spawnSync('age', ['-d', '-i', id, '-o', out, file]);
  return { status: r.status, stderr: r.stderr.toString() };
}

function ffprobe(file: string): { streams: { codec_name: string; codec_type: string }[]; format: { tags?: Record<string, string>; duration?: string } } {
  const r = spawnSync('ffprobe', ['-v', 'error', '-show_streams', '-show_format', '-of', 'json', file]);
  expect(r.status, r.stderr.toString()).toBe(0);
  return JSON.parse(r.stdout.toString());
}

const events: MixerEvent[] = [];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mcu-rec-'));
  identity = join(dir, 'key.txt');
  recipient = keygen(identity);
  otherIdentity = join(dir, 'other.txt');
  keygen(otherIdentity);
});
afterAll(async () => {
  for (const e of events.splice(0)) {
    const ids = e.videoMixer?.processIds();
    e.close();
    const pids = ids ? [...Object.values(ids.decoders), ...Object.values(ids.encoders)].filter((p): p is number => p !== null) : [];
    expect(await until(() => pids.every((pid) => !isAlive(pid)))).toBe(true);
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('recording the program', () => {
  it('remuxes beep and flash into age-encrypted WebM segments that age and ffmpeg open, in sync', async () => {
    const event = new MixerEvent({ id: 'rec-test', maxLipSyncDelayMs: 200, video: { renditions: [{ id: 'main', width: W, height: H, bitrateKbps: 500 }], fps: 30, keyframeIntervalMs: 1000 } });
    events.push(event);
    const store = new DirectoryStore(join(dir, 'store'));
    const presenter = new BeepFlashPresenter(event, 'p1', flashClip(W, H)).start();
    await sleep(1500);
    const recording = new Recording({ tap: programTapOf(event), store, recipients: [recipient], rendition: 'main', videoCodec: 'vp8', segmentMs: 3000 });
    await recording.start();
    await sleep(2700);
    // A crash now: the segment being written, as it is on disk, still opens up to its last whole chunk.
    const segDir = join(dir, 'store', 'rec-test', recording.id);
    const partial = readdirSync(segDir).filter((n) => n.endsWith('.age')).sort().at(-1)!;
    const crashCopy = join(dir, 'crash.age');
    copyFileSync(join(segDir, partial), crashCopy);
    await sleep(5300);
    presenter.stop();
    const manifest = await recording.stop();
    expect(recording.summary().dropped.queueFull).toBe(0);

    // Three segments of about 3 s, each stored as listed in the manifest.
    expect(manifest.state).toBe('stopped');
    expect(manifest.segments.length).toBeGreaterThanOrEqual(2);
    const stored = parseManifest(readFileSync(join(segDir, 'manifest.json'), 'utf8'));
    expect(stored).toEqual(manifest);
    let prev = '-';
    let key = '';
    const allSkews: number[] = [];
    const totals = { seconds: 0, beeps: 0, flashes: 0 };
    for (const seg of manifest.segments) {
      expect(seg.complete).toBe(true);
      expect(seg.video).toBe(true);
      const bytes = readFileSync(join(segDir, seg.name));
      expect(bytes.length).toBe(seg.size);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(seg.sha256);
      expect(bytes.subarray(0, 21).toString()).toBe('age-encryption.org/v1');
      // No plaintext container on disk: no EBML magic anywhere in the stored bytes.
      expect(bytes.includes(Buffer.from([0x1a, 0x45, 0xdf, 0xa3]))).toBe(false);

      const plain = join(dir, `${seg.name}.webm`);
      const dec = ageDecrypt(join(segDir, seg.name), identity, plain);
      expect(dec.status, dec.stderr).toBe(0);
      const probe = ffprobe(plain);
      expect(probe.streams.map((s) => s.codec_name).sort()).toEqual(['opus', 'vp8']);
      // Append-only WebM has no duration element: the decoded frames tell it.
      const luma = videoLuma(plain);
      const peaks = audioPeaks(plain);
      const duration = Math.max(luma.at(-1)![0] + 1 / 30, peaks.at(-1)![0] + 0.001);
      expect(duration).toBeGreaterThan(seg.index < manifest.segments.length - 1 ? 2.5 : 0.5);
      expect(Math.abs(duration * 1000 - seg.durationMs)).toBeLessThan(150);
      // The chain inside the encryption: previous segment's hash and the recording's key.
      const comment = Object.entries(probe.format.tags ?? {}).find(([k]) => k.toLowerCase().endsWith('comment'))?.[1] ?? '';
      const link = parseSegmentComment(comment);
      expect(link, comment).not.toBeNull();
      expect(link!.segment).toBe(seg.index);
      expect(link!.prev).toBe(prev);
      if (key) expect(link!.key).toBe(key);
      key = link!.key;
      prev = seg.sha256!;

      // The tone and the pictures: beeps (-6 dBFS) and flashes (white), in sync.
      const beeps = onsets(peaks, -12);
      const flashes = onsets(luma, 120);
      totals.seconds += duration;
      totals.beeps += beeps.length;
      totals.flashes += flashes.length;
      allSkews.push(...skewsMs(flashes, beeps));
    }
    // One beep and one flash a second (a flash the loaded compositor skipped may be missing).
    expect(totals.beeps).toBeGreaterThanOrEqual(Math.floor(totals.seconds) - 2);
    expect(totals.flashes).toBeGreaterThanOrEqual(Math.floor(totals.seconds) - 3);
    expect(macMatches(manifest, Buffer.from(key, 'hex'))).toBe(true);
    console.log(`recorded skew (flash − beep): ${allSkews.map((s) => s.toFixed(0)).join(', ')} ms`);
    expect(allSkews.length).toBeGreaterThanOrEqual(4);
    expect(Math.abs(median(allSkews))).toBeLessThan(45);

    // A wrong identity cannot open a segment; a flipped byte is detected.
    const first = join(segDir, manifest.segments[0].name);
    expect(ageDecrypt(first, otherIdentity, join(dir, 'wrong.webm')).status).not.toBe(0);
    const flipped = Buffer.from(readFileSync(first));
    flipped[flipped.length - 100] ^= 0x01;
    writeFileSync(join(dir, 'flipped.age'), flipped);
    expect(ageDecrypt(join(dir, 'flipped.age'), identity, join(dir, 'flipped.webm')).status).not.toBe(0);

    // The crash copy: age reports the missing end, but what it wrote to stdout plays (frames and tone).
    const crashed = spawnSync('age', ['-d', '-i', identity, crashCopy], { maxBuffer: 1 << 26 });
    expect(crashed.status).not.toBe(0);
    expect(crashed.stdout.length).toBeGreaterThan(10_000);
    writeFileSync(join(dir, 'crash.webm'), crashed.stdout);
    const crashFrames = videoLuma(join(dir, 'crash.webm'));
    expect(crashFrames.length).toBeGreaterThan(10);
    expect(onsets(audioPeaks(join(dir, 'crash.webm')), -12).length).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('remuxes an H.264 rendition into fragmented MP4 segments (H.264 + Opus) that age and ffmpeg open', async () => {
    const event = new MixerEvent({ id: 'rec-h264', maxLipSyncDelayMs: 200, video: { renditions: [{ id: 'h', width: W, height: H, bitrateKbps: 500, codec: 'h264' }], fps: 30, keyframeIntervalMs: 1000 } });
    events.push(event);
    const store = new DirectoryStore(join(dir, 'store-h264'));
    const presenter = new BeepFlashPresenter(event, 'p1', flashClip(W, H)).start();
    await sleep(1500);
    const recording = new Recording({ tap: programTapOf(event), store, recipients: [recipient], rendition: 'h', videoCodec: 'h264', segmentMs: 2500 });
    await recording.start();
    await sleep(5500);
    presenter.stop();
    const manifest = await recording.stop();
    expect(manifest.segments.length).toBeGreaterThanOrEqual(2);
    const skews: number[] = [];
    for (const seg of manifest.segments) {
      expect(seg).toMatchObject({ container: 'mp4', video: true, complete: true });
      expect(seg.name).toMatch(/\.mp4\.age$/);
      const plain = join(dir, `${seg.name}.mp4`);
      const dec = ageDecrypt(join(dir, 'store-h264', 'rec-h264', recording.id, seg.name), identity, plain);
      expect(dec.status, dec.stderr).toBe(0);
      const probe = ffprobe(plain);
      expect(probe.streams.map((s) => s.codec_name).sort()).toEqual(['h264', 'opus']);
      const luma = videoLuma(plain);
      const peaks = audioPeaks(plain);
      expect(luma.length).toBeGreaterThan(20);
      const flashes = onsets(luma, 120);
      const beeps = onsets(peaks, -12);
      expect(flashes.length).toBeGreaterThanOrEqual(1);
      expect(beeps.length).toBeGreaterThanOrEqual(1);
      skews.push(...skewsMs(flashes, beeps));
    }
    console.log(`recorded H.264 skew (flash − beep): ${skews.map((s) => s.toFixed(0)).join(', ')} ms`);
    expect(skews.length).toBeGreaterThanOrEqual(2);
    expect(Math.abs(median(skews))).toBeLessThan(45);
  }, 40_000);
});
