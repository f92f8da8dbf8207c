import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VideoMixer, rtpTimestampAt } from '../src/index.js';
import type { VideoMixerOptions } from '../src/index.js';
import { ClipSender, Viewer, isAlive, lavfiClip, meanYuv, sleep, until } from './videoMedia.js';
import type { Clip } from './videoMedia.js';

// ffmpeg's lavfi colours in BT.601 limited range.
const RED = { y: 81, u: 90, v: 240 };
const BLUE = { y: 41, u: 240, v: 110 };
const BLACK = { y: 16, u: 128, v: 128 };
const W = 320;
const H = 180;

function expectColour(actual: { y: number; u: number; v: number }, expected: { y: number; u: number; v: number }, what: string): void {
  const close = Math.abs(actual.y - expected.y) <= 8 && Math.abs(actual.u - expected.u) <= 8 && Math.abs(actual.v - expected.v) <= 8;
  expect(close, `${what}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`).toBe(true);
}

let red: Clip;
let blue: Clip;
beforeAll(() => {
  // One second of each, keyframe every 15 frames; looped by the senders.
  red = lavfiClip({ source: 'color=red', width: 320, height: 240, frames: 30, codec: 'vp8', gop: 15 });
  blue = lavfiClip({ source: 'color=blue', width: 320, height: 240, frames: 30, codec: 'h264', gop: 15 });
});

interface Rig {
  mixer: VideoMixer;
  viewer: Viewer;
  senders: Map<string, ClipSender>;
  pids: Set<number>;
}

const rigs: Rig[] = [];
afterEach(async () => {
  for (const rig of rigs.splice(0)) {
    for (const s of rig.senders.values()) s.stop();
    const ids = rig.mixer.processIds();
    for (const pid of [...Object.values(ids.decoders), ...Object.values(ids.encoders)]) if (pid !== null) rig.pids.add(pid);
    rig.mixer.close();
    // Every ffmpeg child is gone after close().
    expect(await until(() => [...rig.pids].every((pid) => !isAlive(pid)))).toBe(true);
  }
});

/** A mixer with a red VP8 source and a blue H.264 source, one 320×180 VP8 rendition, senders answering PLIs. */
function rig(opts: VideoMixerOptions = {}, names: { red?: string; blue?: string } = {}): Rig {
  const viewer = new Viewer();
  const mixer = new VideoMixer((_r, packet, length) => viewer.push(packet, length), {
    renditions: [{ id: 'main', width: W, height: H, bitrateKbps: 400 }],
    ...opts,
  });
  const senders = new Map<string, ClipSender>();
  mixer.addSource('red', { codec: 'vp8', name: names.red });
  mixer.addSource('blue', { codec: 'h264', name: names.blue });
  senders.set('red', new ClipSender(red, (p) => mixer.pushRtp('red', p, p.length)));
  senders.set('blue', new ClipSender(blue, (p) => mixer.pushRtp('blue', p, p.length)));
  mixer.on('keyframeRequest', (id) => senders.get(id)?.requestKeyframe());
  for (const s of senders.values()) s.start();
  const r = { mixer, viewer, senders, pids: new Set<number>() };
  rigs.push(r);
  return r;
}

/** Index of the last keyframe at or before frame k. */
function keyframeBefore(viewer: Viewer, k: number): number {
  for (let i = k; i >= 0; i--) if (viewer.frames[i].keyframe) return i;
  return -1;
}

describe('VideoMixer (ffmpeg interop)', () => {
  it('composes a VP8 and an H.264 source into a grid: red on the left, blue on the right, letterboxed', async () => {
    const { mixer, viewer, senders } = rig();
    expect(await until(() => mixer.stats().sources.red.framesDecoded > 10 && mixer.stats().sources.blue.framesDecoded > 10, 8000)).toBe(true);
    await sleep(500);
    const stats = mixer.stats();
    expect(stats.sources.red).toMatchObject({ visible: true, width: 320, height: 240, decodeWidth: 160, decodeHeight: 120 });
    expect(stats.sources.blue).toMatchObject({ visible: true, width: 320, height: 240, decodeWidth: 160, decodeHeight: 120 });
    expect(senders.get('red')!.keyframeRequests + senders.get('blue')!.keyframeRequests).toBeGreaterThan(0);
    expect(stats.renditions.main.framesEncoded).toBeGreaterThan(10);
    expect(stats.restarts).toBe(0);

    const last = viewer.frames.length;
    const pictures = viewer.decode(W, H, keyframeBefore(viewer, last - 1), last);
    const p = pictures[pictures.length - 1];
    // Grid of two 160×180 tiles; each 4:3 picture is 160×120 at y 30..149.
    expectColour(meanYuv(p, W, H, { x: 40, y: 60, w: 80, h: 60 }), RED, 'left tile');
    expectColour(meanYuv(p, W, H, { x: 200, y: 60, w: 80, h: 60 }), BLUE, 'right tile');
    expectColour(meanYuv(p, W, H, { x: 40, y: 0, w: 80, h: 24 }), BLACK, 'letterbox bar above');
    expectColour(meanYuv(p, W, H, { x: 200, y: 156, w: 80, h: 24 }), BLACK, 'letterbox bar below');
  });

  it("labels a presenter's tiles with its display name, and a presenter without one not at all", async () => {
    const { mixer, viewer } = rig({ compositor: { labels: true } }, { red: 'Alice' });
    expect(await until(() => mixer.stats().sources.red.framesDecoded > 10 && mixer.stats().sources.blue.framesDecoded > 10, 8000)).toBe(true);
    await sleep(500);
    expect(mixer.stats().sources.red.label).toBe('Alice');
    expect(mixer.stats().sources.blue.label).toBeNull();
    const last = viewer.frames.length;
    const pictures = viewer.decode(W, H, keyframeBefore(viewer, last - 1), last);
    const p = pictures[pictures.length - 1];
    /** Brightest luma in a rectangle of the decoded picture. */
    const brightest = (x: number, y: number, w: number, h: number) => {
      let max = 0;
      for (let row = y; row < y + h; row++) for (let col = x; col < x + w; col++) max = Math.max(max, p[row * W + col]);
      return max;
    };
    // At 180 lines the label is 1× scale: a black box at (4, 164), 12 high, white 5×7 glyphs
    // inside, over the black letterbox bar of each 160×180 tile.
    expect(brightest(6, 166, 28, 8), 'white text on the named tile').toBeGreaterThan(150);
    expect(brightest(166, 166, 28, 8), 'nothing on the unnamed tile').toBeLessThan(60);
  });

  it('switches layout mid-stream within a couple of frames, without restarting the encoder or a gap in frames or keyframes', async () => {
    const { mixer, viewer } = rig({ keyframeIntervalMs: 1000 });
    expect(await until(() => mixer.stats().sources.red.framesDecoded > 10 && mixer.stats().sources.blue.framesDecoded > 10, 8000)).toBe(true);
    await sleep(300);
    const encoderPid = mixer.processIds().encoders.main;
    const switchAt = viewer.frames.length;
    const switchTs = viewer.frames[switchAt - 1].timestamp;
    mixer.setLayout({ kind: 'presentation', sourceId: 'blue' });
    await sleep(1600);
    expect(mixer.processIds().encoders.main).toBe(encoderPid);
    expect(mixer.stats().renditions.main.restarts).toBe(0);
    expect(mixer.stats().sources.blue.decodeHeight).toBe(144);

    const frames = viewer.frames;
    const pictures = viewer.decode(W, H, 0, frames.length);
    expect(pictures.length).toBe(frames.length);
    // Before: the grid. Two frames after the switch: blue large (192×144 at x 64), red in the strip below.
    const before = pictures[switchAt - 1];
    expectColour(meanYuv(before, W, H, { x: 40, y: 60, w: 80, h: 60 }), RED, 'grid, left');
    const first = frames.findIndex((f, i) => i >= switchAt && f.timestamp - switchTs > 0);
    const after = pictures[first + 2];
    expectColour(meanYuv(after, W, H, { x: 80, y: 20, w: 160, h: 100 }), BLUE, 'presentation, main');
    expectColour(meanYuv(after, W, H, { x: 140, y: 150, w: 40, h: 24 }), RED, 'presentation, strip');
    expectColour(meanYuv(after, W, H, { x: 0, y: 20, w: 48, h: 100 }), BLACK, 'presentation, bar');
    // Frames kept flowing, and keyframes came at least every second.
    let maxGapMs = 0;
    for (let i = 1; i < frames.length; i++) maxGapMs = Math.max(maxGapMs, frames[i].arrivalMs - frames[i - 1].arrivalMs);
    expect(maxGapMs).toBeLessThan(300);
    const keyTs = frames.filter((f) => f.keyframe).map((f) => f.timestamp);
    expect(keyTs.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < keyTs.length; i++) expect((keyTs[i] - keyTs[i - 1]) >>> 0).toBeLessThanOrEqual(90_000 * 1.1);
  });

  it('restarts a killed decoder or encoder and keeps producing frames, sequence numbers continuous', async () => {
    const { mixer, viewer } = rig();
    expect(await until(() => mixer.stats().sources.red.framesDecoded > 10, 8000)).toBe(true);
    const pid = mixer.processIds().decoders.red!;
    const before = mixer.stats();
    process.kill(pid, 'SIGKILL');
    expect(await until(() => mixer.stats().sources.red.restarts === 1, 5000)).toBe(true);
    const decodedAtRestart = mixer.stats().sources.red.framesDecoded;
    expect(await until(() => mixer.stats().sources.red.framesDecoded > decodedAtRestart + 10, 5000)).toBe(true);
    const after = mixer.stats();
    expect(after.restarts).toBe(1);
    expect(after.framesComposed).toBeGreaterThan(before.framesComposed + 10);
    expect(after.renditions.main.framesEncoded).toBeGreaterThan(before.renditions.main.framesEncoded + 10);
    expect(mixer.processIds().decoders.red).not.toBe(pid);
    // The picture is red again.
    const last = viewer.frames.length;
    const pictures = viewer.decode(W, H, keyframeBefore(viewer, last - 1), last);
    expectColour(meanYuv(pictures[pictures.length - 1], W, H, { x: 40, y: 60, w: 80, h: 60 }), RED, 'left tile after restart');

    // Now the encoder: the stream goes on (same SSRC, no sequence gap), starting again at a keyframe.
    const encoderPid = mixer.processIds().encoders.main!;
    const framesBefore = viewer.frames.length;
    process.kill(encoderPid, 'SIGKILL');
    expect(await until(() => mixer.stats().renditions.main.restarts === 1, 5000)).toBe(true);
    expect(await until(() => viewer.frames.length > framesBefore + 15, 5000)).toBe(true);
    expect(mixer.processIds().encoders.main).not.toBe(encoderPid);
    const resumed = viewer.frames.slice(framesBefore);
    expect(resumed.some((f) => f.keyframe)).toBe(true);
    expect(viewer.assembler.stats.lost).toBe(0);
    expect(viewer.assembler.stats.resets).toBe(0);
  });

  it('stops decoding a source the layout hides, and shows a placeholder for a stalled one', async () => {
    const { mixer, senders } = rig({ stallMs: 400 });
    expect(await until(() => mixer.stats().sources.red.framesDecoded > 5 && mixer.stats().sources.blue.framesDecoded > 5, 8000)).toBe(true);
    const redPid = mixer.processIds().decoders.red!;
    mixer.setLayout({ kind: 'custom', regions: [{ sourceId: 'blue', x: 0, y: 0, width: 1, height: 1 }] });
    expect(mixer.stats().sources.red.visible).toBe(false);
    expect(mixer.processIds().decoders.red).toBeUndefined();
    expect(await until(() => !isAlive(redPid))).toBe(true);
    let stalled = '';
    mixer.on('sourceStalled', (id) => (stalled = id));
    senders.get('blue')!.stop();
    expect(await until(() => stalled === 'blue', 3000)).toBe(true);
    expect(mixer.stats().sources.blue.stalled).toBe(true);
  });

  it('serves an H.264 rendition beside VP8, scaled in its encoder, with keyframes on demand and shared-clock timestamps', async () => {
    const offsetMs = 5_000_000; // any monotonic media clock will do
    const mediaClock = { nowMs: () => performance.now() + offsetMs };
    const viewers: Record<string, Viewer> = { main: new Viewer('vp8'), small: new Viewer('h264') };
    const mixer = new VideoMixer((r, p, n) => viewers[r.id].push(p, n), {
      renditions: [
        { id: 'main', width: W, height: H, bitrateKbps: 300 },
        { id: 'small', width: 160, height: 90, codec: 'h264', bitrateKbps: 150 },
      ],
      mediaClock,
      layout: { kind: 'speaker' },
    });
    const sender = new ClipSender(red, (p) => mixer.pushRtp('red', p, p.length));
    mixer.addSource('red', { codec: 'vp8', name: 'Red' });
    mixer.on('keyframeRequest', () => sender.requestKeyframe());
    sender.start();
    rigs.push({ mixer, viewer: viewers.main, senders: new Map([['red', sender]]), pids: new Set() });
    const [main, small] = mixer.renditions;
    expect([main.payloadType, small.payloadType, main.ssrc === small.ssrc]).toEqual([96, 102, false]);
    expect(await until(() => viewers.small.frames.length > 40 && mixer.stats().sources.red.framesDecoded > 10, 8000)).toBe(true);
    // Frames of both renditions composed at the same tick carry the same media time.
    const mediaOf = (ts: number, base: number) => (ts - base) >>> 0;
    const mainTimes = new Set(viewers.main.frames.map((f) => mediaOf(f.timestamp, main.rtpTimestampBase)));
    const shared = viewers.small.frames.filter((f) => mainTimes.has(mediaOf(f.timestamp, small.rtpTimestampBase))).length;
    expect(shared).toBeGreaterThan(viewers.small.frames.length * 0.8);
    // The newest frame's timestamp is a few frames behind the sender-report clock of "now".
    const sr = mixer.senderReport('small');
    const lagTicks = (sr.rtpTimestamp - viewers.small.frames[viewers.small.frames.length - 1].timestamp) >>> 0;
    expect(lagTicks / 90).toBeLessThan(300);
    expect((rtpTimestampAt(mediaClock.nowMs(), 90_000, small.rtpTimestampBase) - sr.rtpTimestamp) >>> 0).toBeLessThan(90 * 5);

    // Keyframe on demand on one rendition only, at once (the first keyframe was over a second ago).
    const before = viewers.small.frames.length;
    const mainKeyframes = mixer.stats().renditions.main.keyframes;
    mixer.requestKeyframe('small');
    expect(await until(() => viewers.small.frames.slice(before).some((f) => f.keyframe), 1000)).toBe(true);
    const k = before + viewers.small.frames.slice(before).findIndex((f) => f.keyframe);
    expect(k - before).toBeLessThanOrEqual(3);
    expect(mixer.stats().renditions.small.forcedKeyframes).toBe(1);
    expect(mixer.stats().renditions.main.keyframes).toBe(mainKeyframes);

    // Both decode to the red source, pillarboxed (4:3 in 16:9).
    const hd = viewers.main.decode(W, H);
    expectColour(meanYuv(hd[hd.length - 1], W, H, { x: 120, y: 60, w: 80, h: 60 }), RED, 'main, centre');
    expectColour(meanYuv(hd[hd.length - 1], W, H, { x: 0, y: 60, w: 20, h: 60 }), BLACK, 'main, pillar');
    const sd = viewers.small.decode(160, 90, k);
    expect(sd.length).toBe(viewers.small.frames.length - k);
    expectColour(meanYuv(sd[sd.length - 1], 160, 90, { x: 60, y: 30, w: 40, h: 30 }), RED, 'small, centre');
  });
  it('adds an H.264 rendition at runtime (a restream) without restarting the others, and removes it', async () => {
    const viewers: Record<string, Viewer> = { main: new Viewer('vp8'), added: new Viewer('h264'), wide: new Viewer('h264') };
    const mixer = new VideoMixer((r, p, n) => viewers[r.id].push(p, n), { renditions: [{ id: 'main', width: W, height: H, bitrateKbps: 300 }] });
    const sender = new ClipSender(red, (p) => mixer.pushRtp('red', p, p.length));
    mixer.addSource('red', { codec: 'vp8' });
    mixer.on('keyframeRequest', () => sender.requestKeyframe());
    sender.start();
    const pids = new Set<number>();
    rigs.push({ mixer, viewer: viewers.main, senders: new Map([['red', sender]]), pids });
    expect(await until(() => viewers.main.frames.length > 10, 8000)).toBe(true);
    const mainPid = mixer.processIds().encoders.main!;
    // Same aspect (joins the 320x180 canvas) and another aspect (a canvas of its own).
    const added = mixer.addRendition({ id: 'added', width: 160, height: 90, codec: 'h264', bitrateKbps: 150 });
    mixer.addRendition({ id: 'wide', width: 160, height: 120, codec: 'h264', bitrateKbps: 150 });
    expect(added).toMatchObject({ id: 'added', codec: 'h264', payloadType: 102, width: 160, height: 90 });
    expect(() => mixer.addRendition({ id: 'added', width: 160, height: 90 })).toThrow(/duplicate/);
    expect(mixer.renditions.map((r) => r.id)).toEqual(['main', 'added', 'wide']);
    expect(await until(() => viewers.added.frames.length > 20 && viewers.wide.frames.length > 20, 8000)).toBe(true);
    expect(viewers.added.frames[0].keyframe).toBe(true);
    const small = viewers.added.decode(160, 90);
    expectColour(meanYuv(small[small.length - 1], 160, 90, { x: 60, y: 30, w: 40, h: 30 }), RED, 'added, centre');
    const wide = viewers.wide.decode(160, 120);
    expectColour(meanYuv(wide[wide.length - 1], 160, 120, { x: 60, y: 40, w: 40, h: 40 }), RED, 'wide, centre');
    // The first rendition's encoder went on untouched.
    expect(mixer.processIds().encoders.main).toBe(mainPid);
    expect(mixer.stats().renditions.main.restarts).toBe(0);
    const addedPid = mixer.processIds().encoders.added!;
    pids.add(addedPid);
    expect(mixer.removeRendition('added')).toBe(true);
    expect(mixer.removeRendition('added')).toBe(false);
    expect(mixer.renditions.map((r) => r.id)).toEqual(['main', 'wide']);
    expect(await until(() => !isAlive(addedPid))).toBe(true);
    const n = viewers.added.frames.length;
    const m = viewers.main.frames.length;
    expect(await until(() => viewers.main.frames.length > m + 10, 4000)).toBe(true);
    expect(viewers.added.frames.length).toBe(n);
  });
});
