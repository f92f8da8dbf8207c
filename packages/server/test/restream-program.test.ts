/**
 * The program leaves through one door: a restream takes its RTP packets through the event's
 * ProgramTap, beside a recording's frames, so the mixer has one listener per stream whatever the
 * number of consumers, none once they are gone, and the restream gets every packet the frames were
 * made of.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MixerEvent, programTapOf } from '@mcu/mixer';
import { VideoFrameAssembler } from '@mcu/rtp';
import { restreamProgramOf } from '../src/index.js';
import { BeepFlashPresenter, flashClip } from '../../recording/test/beepFlash.js';
import { sleep } from '../../codec/test/videoMedia.js';

const W = 320;
const H = 180;
const event = new MixerEvent({ id: 'one-door', video: { renditions: [{ id: 'main', width: W, height: H, bitrateKbps: 300 }], fps: 30, keyframeIntervalMs: 1000 } });
// Listeners on the mixer, counted as they are added and removed.
const live = { audio: 0, video: 0 };
const addAudio = event.mixer.addProgramSink.bind(event.mixer);
event.mixer.addProgramSink = (sink) => {
  live.audio++;
  const off = addAudio(sink);
  return () => (live.audio--, off());
};
const addVideo = event.addVideoProgramSink.bind(event);
event.addVideoProgramSink = (rendition, sink) => {
  live.video++;
  const off = addVideo(rendition, sink);
  return () => (live.video--, off());
};
const presenter = new BeepFlashPresenter(event, 'p1', flashClip(W, H)).start();
beforeAll(async () => {
  // The program is mixed and sent once the presenter's first pictures are in.
  let got = 0;
  const off = programTapOf(event).subscribe({ video: () => got++ }, { rendition: 'main' });
  for (const end = performance.now() + 15_000; got < 5 && performance.now() < end; ) await sleep(100);
  off();
  expect(live).toEqual({ audio: 0, video: 0 });
}, 20_000);
afterAll(() => {
  presenter.stop();
  event.close();
});

describe('restream through the ProgramTap', () => {
  it('shares the tap with a recording: one listener per stream, every packet of the frames, none left after', async () => {
    const program = restreamProgramOf(event, { id: 'restream', width: W, height: H, fps: 30, bitrateKbps: 400 });
    const rendition = program.video.rendition;
    const tap = programTapOf(event);
    // A frame consumer (as a recording) and the restream's packet consumer on the same rendition.
    const frames = { video: 0, keyframes: 0, audio: 0 };
    const stopFrames = tap.subscribe({ audio: () => frames.audio++, video: (f) => (frames.video++, f.keyframe && frames.keyframes++) }, { rendition });
    const rtp = { audio: 0, video: 0, frames: 0, keyframes: 0, pt: new Set<number>() };
    const assembler = new VideoFrameAssembler({ codec: 'h264', maxReorderPackets: 4 });
    assembler.onFrame = (f) => (rtp.frames++, f.keyframe && rtp.keyframes++);
    const stopAudio = program.audio.subscribe((p, n) => (rtp.audio++, rtp.pt.add(p[1] & 0x7f), expect(n).toBeGreaterThan(12)));
    const stopVideo = program.video.subscribe((p, n) => (rtp.video++, rtp.pt.add(p[1] & 0x7f), assembler.push(p, n)));
    expect(live).toEqual({ audio: 1, video: 1 });
    program.video.requestKeyframe();
    await sleep(4000);
    stopFrames();
    stopAudio();
    stopVideo();
    // The restream's packets make the frames the recording got (the edges differ by a frame at most).
    expect(frames.video).toBeGreaterThan(30);
    expect(Math.abs(rtp.frames - frames.video)).toBeLessThanOrEqual(2);
    expect(rtp.keyframes).toBeGreaterThanOrEqual(1);
    expect(Math.abs(rtp.audio - frames.audio)).toBeLessThanOrEqual(2);
    expect(rtp.audio).toBeGreaterThan(100);
    expect([...rtp.pt].sort()).toEqual([program.audio.payloadType, program.video.payloadType].sort());
    expect(assembler.stats.framesDropped).toBe(0);
    // Nobody left: the tap has let go of the mixer, nothing more arrives.
    expect(live).toEqual({ audio: 0, video: 0 });
    const after = { ...rtp };
    await sleep(300);
    expect(rtp.audio).toBe(after.audio);
    expect(rtp.video).toBe(after.video);
    program.release();
  }, 20_000);

  it('a restream alone listens once and does not depacketize; a recording that joins gets whole frames from a keyframe', async () => {
    const program = restreamProgramOf(event, { id: 'restream', width: W, height: H, fps: 30, bitrateKbps: 400 });
    const rendition = program.video.rendition;
    const tap = programTapOf(event);
    let packets = 0;
    const stopA = program.audio.subscribe(() => undefined);
    const stopV = program.video.subscribe(() => packets++);
    const second = program.video.subscribe(() => undefined);
    expect(live).toEqual({ audio: 1, video: 1 });
    // The rendition was added again for this restream: its encoder starts.
    for (const end = performance.now() + 10_000; packets <= 5 && performance.now() < end; ) await sleep(100);
    expect(packets).toBeGreaterThan(5);
    // Packets only: the tap assembled no frame.
    expect(tap.stats().videoFrames[rendition]).toBe(0);
    let first: boolean | null = null;
    let got = 0;
    const stopRec = tap.subscribe({ video: (f) => (first ??= f.keyframe, got++) }, { rendition });
    await sleep(1500);
    expect(first).toBe(true);
    expect(got).toBeGreaterThan(10);
    expect(live).toEqual({ audio: 1, video: 1 });
    for (const s of [stopRec, stopA, stopV, second]) s();
    expect(live).toEqual({ audio: 0, video: 0 });
    program.release();
  }, 20_000);
});
