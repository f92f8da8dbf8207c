import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseRtp, RtpHeader } from '@mcu/rtp';
import { OpusDecoder, OpusEncoder } from '@mcu/codec';
import { AudioMixer, VideoMixer } from '../src/index.js';
import type { Participant, Stage } from '../src/index.js';
import { FRAME, toneFrame, tonePower } from './peer.js';
import { ClipSender, lavfiClip, sleep, until, Viewer } from './videoMedia.js';
import type { Clip } from './videoMedia.js';

/**
 * Backstage and on air, driven tick by tick (a manual clock), so that "the next tick" is exact:
 * each tick every talker's next Opus frame (with its RFC 6464 level) goes into its jitter buffer,
 * then the mixer ticks; what each participant and the program receive is decoded per tick.
 */
const TICK_MS = 20;
const LIVE_TONE = 440;
const B1_TONE = 1250;
const B2_TONE = 2100;

interface Talker {
  p: Participant;
  freq: number;
  /** Decoded audio this participant received, one frame per tick. */
  heard: Int16Array[];
  decoder: OpusDecoder;
  encoder: OpusEncoder;
  seq: number;
  /** Stops sending (a stream that stops: the jitter buffer runs dry). */
  silent?: boolean;
}

class Rig {
  readonly mixer: AudioMixer;
  readonly program: Int16Array[] = [];
  private readonly programDecoder = new OpusDecoder({ sampleRate: 48_000, channels: 1 });
  private readonly talkers = new Map<string, Talker>();
  private readonly header = new RtpHeader();
  private readonly encoded = new Uint8Array(1500);
  nowMs = 0;
  tickIndex = 0;

  constructor() {
    this.mixer = new AudioMixer(
      (p, packet, length) => {
        const t = this.talkers.get(p.id)!;
        const buf = Buffer.from(packet.subarray(0, length));
        parseRtp(buf, this.header);
        const pcm = new Int16Array(FRAME);
        t.decoder.decode(buf.subarray(this.header.payloadOffset, this.header.payloadOffset + this.header.payloadLength), pcm);
        t.heard.push(pcm);
      },
      { maxSpeakers: 3, now: () => this.nowMs },
    );
    this.mixer.addProgramSink((packet) => {
      parseRtp(packet, this.header);
      const pcm = new Int16Array(FRAME);
      this.programDecoder.decode(packet.subarray(this.header.payloadOffset, this.header.payloadOffset + this.header.payloadLength), pcm);
      this.program.push(pcm);
    });
  }

  add(id: string, freq: number, stage: Stage): Talker {
    const t: Talker = { p: this.mixer.addParticipant(id, { stage }), freq, heard: [], decoder: new OpusDecoder({ sampleRate: 48_000, channels: 1 }), encoder: new OpusEncoder({ sampleRate: 48_000, channels: 1 }), seq: 0 };
    this.talkers.set(id, t);
    return t;
  }

  /** One tick: every talker's frame in, the mixer's tick out. */
  tick(): void {
    for (const t of this.talkers.values()) {
      if (t.silent) continue;
      const pcm = toneFrame(t.freq, t.seq, t.freq === 0 ? 0 : 8000);
      const n = t.encoder.encode(pcm, this.encoded);
      // RFC 6464: -dBov of the frame; an 8000-amplitude sine is about -15 dBov.
      t.p.jitter.push(t.seq & 0xffff, (t.seq * FRAME) >>> 0, this.encoded.subarray(0, n), this.nowMs, t.freq === 0 ? 127 : 15);
      t.seq++;
    }
    this.mixer.tick(this.tickIndex++);
    this.nowMs += TICK_MS;
  }

  ticks(n: number): void {
    for (let i = 0; i < n; i++) this.tick();
  }

  close(): void {
    this.mixer.close();
    this.programDecoder.close();
    for (const t of this.talkers.values()) {
      t.decoder.close();
      t.encoder.close();
    }
  }
}

/** Tone power over frames [from, to) of a decoded stream. */
function power(frames: Int16Array[], freq: number, from: number, to = frames.length): number {
  const out = new Int16Array((to - from) * FRAME);
  for (let i = from; i < to; i++) out.set(frames[i], (i - from) * FRAME);
  return tonePower(out, freq);
}

const AUDIBLE = 1000;
const rigs: Rig[] = [];
afterEach(() => {
  for (const r of rigs.splice(0)) r.close();
});

function rig(): Rig {
  const r = new Rig();
  rigs.push(r);
  return r;
}

describe('backstage and on air: audio', () => {
  it("a backstage presenter's tone is in no program mix, but the other backstage presenters hear it with the program, never their own", () => {
    const r = rig();
    const live = r.add('live', LIVE_TONE, 'live');
    const listener = r.add('listener', 0, 'live');
    const b1 = r.add('b1', B1_TONE, 'backstage');
    const b2 = r.add('b2', B2_TONE, 'backstage');
    const quietBackstage = r.add('b3', 0, 'backstage');
    r.ticks(100);
    const from = 50;
    // The program and a live listener: the live tone, no backstage tone.
    expect(power(r.program, LIVE_TONE, from)).toBeGreaterThan(AUDIBLE);
    for (const heard of [r.program, listener.heard]) {
      expect(power(heard, B1_TONE, from)).toBeLessThan(power(heard, LIVE_TONE, from) / 1000);
      expect(power(heard, B2_TONE, from)).toBeLessThan(power(heard, LIVE_TONE, from) / 1000);
    }
    // The live speaker hears nobody (its own mix-minus, backstage excluded).
    expect(power(live.heard, B1_TONE, from)).toBeLessThan(AUDIBLE / 10);
    // Backstage: B1 hears the program and B2, not itself; B2 the program and B1, not itself.
    expect(power(b1.heard, LIVE_TONE, from)).toBeGreaterThan(AUDIBLE);
    expect(power(b1.heard, B2_TONE, from)).toBeGreaterThan(AUDIBLE);
    expect(power(b1.heard, B1_TONE, from)).toBeLessThan(power(b1.heard, B2_TONE, from) / 100);
    expect(power(b2.heard, LIVE_TONE, from)).toBeGreaterThan(AUDIBLE);
    expect(power(b2.heard, B1_TONE, from)).toBeGreaterThan(AUDIBLE);
    expect(power(b2.heard, B2_TONE, from)).toBeLessThan(power(b2.heard, B1_TONE, from) / 100);
    // A silent backstage presenter hears everything.
    for (const f of [LIVE_TONE, B1_TONE, B2_TONE]) expect(power(quietBackstage.heard, f, from)).toBeGreaterThan(AUDIBLE);
    expect(r.mixer.speakerIds).toEqual(['live']);
    expect(r.mixer.backstageSpeakerIds.sort()).toEqual(['b1', 'b2']);
  });

  it('going live puts the voice in the program on the next tick; going backstage takes it out on the next tick', () => {
    const r = rig();
    r.add('live', LIVE_TONE, 'live');
    const b1 = r.add('b1', B1_TONE, 'backstage');
    const b2 = r.add('b2', 0, 'backstage');
    r.ticks(60);
    // Absent: below a ten-thousandth of the live tone (a pure tone's leak into the other bin).
    const absent = (frames: Int16Array[], from: number, to?: number) => power(frames, LIVE_TONE, from, to) / 10_000;
    expect(power(r.program, B1_TONE, 40)).toBeLessThan(absent(r.program, 40));
    const before = r.program.length;
    r.mixer.setStage('b1', 'live');
    r.tick();
    // The very next program frame carries B1 (fading in over it), the one after at full level.
    expect(r.program.length).toBe(before + 1);
    expect(power(r.program, B1_TONE, before, before + 1)).toBeGreaterThan(AUDIBLE);
    r.ticks(30);
    expect(power(r.program, B1_TONE, before + 1)).toBeGreaterThan(AUDIBLE * 10);
    expect(r.mixer.speakerIds.sort()).toEqual(['b1', 'live']);
    // B2, still backstage, heard B1 without a gap across the move (room → program).
    for (let k = before - 5; k < before + 10; k++) expect(power(b2.heard, B1_TONE, k, k + 1), `B2 frame ${k - before}`).toBeGreaterThan(AUDIBLE);
    // Live, B1 hears the live presenter and not itself.
    const n = b1.heard.length;
    expect(power(b1.heard, LIVE_TONE, n - 20)).toBeGreaterThan(AUDIBLE);
    expect(power(b1.heard, B1_TONE, n - 20)).toBeLessThan(absent(b1.heard, n - 20));

    const back = r.program.length;
    r.mixer.setStage('b1', 'backstage');
    r.tick(); // fades out of the program
    r.tick();
    // From the second tick on, B1 is gone from the program (Opus leaves at most a trace).
    expect(power(r.program, B1_TONE, back + 1, back + 2)).toBeLessThan(power(r.program, B1_TONE, back - 1, back) / 100);
    r.ticks(30);
    expect(power(r.program, B1_TONE, back + 1)).toBeLessThan(absent(r.program, back + 1));
    expect(r.mixer.speakerIds).toEqual(['live']);
    // Back in the room: B2 hears B1 again; B1 never hears itself.
    expect(power(b2.heard, B1_TONE, b2.heard.length - 20)).toBeGreaterThan(AUDIBLE);
    expect(power(b1.heard, B1_TONE, b1.heard.length - 20)).toBeLessThan(absent(b1.heard, b1.heard.length - 20));
  });

  it("a backstage talker whose stream stops fades out of the room, as a live one fades out of the program", () => {
    const r = rig();
    r.add('live', LIVE_TONE, 'live');
    const b1 = r.add('b1', B1_TONE, 'backstage');
    const b2 = r.add('b2', 0, 'backstage');
    r.ticks(60);
    expect(power(b2.heard, B1_TONE, 40)).toBeGreaterThan(AUDIBLE);
    const fadesBefore = b1.p.stats.fadeOuts;
    b1.silent = true;
    r.ticks(30);
    // Concealed and faded to zero over one frame instead of cut (a click).
    expect(b1.p.stats.fadeOuts).toBe(fadesBefore + 1);
    expect(power(b2.heard, B1_TONE, b2.heard.length - 10)).toBeLessThan(power(b2.heard, LIVE_TONE, b2.heard.length - 10) / 10_000);
  });

  it('with nobody talking backstage the mixer encodes what it always did: speakers + 1 per tick', () => {
    const r = rig();
    r.add('live', LIVE_TONE, 'live');
    r.add('b1', 0, 'backstage');
    r.add('b2', 0, 'backstage');
    r.ticks(50);
    const encodes0 = r.mixer.stats.encodes;
    r.ticks(50);
    expect((r.mixer.stats.encodes - encodes0) / 50).toBe(2);
  });
});

let slow: Clip;
beforeAll(() => {
  // A keyframe every 2 s only (60 frames, gop 60): keyframe requests are what the test counts.
  slow = lavfiClip({ source: 'color=green', width: 320, height: 240, frames: 60, codec: 'vp8', gop: 60 });
});

describe('backstage and on air: video', () => {
  it('a backstage source is in no composite; going live shows it with exactly one keyframe request, none for tiles already shown', async () => {
    const viewer = new Viewer();
    const mixer = new VideoMixer((_r, packet, length) => viewer.push(packet, length), {
      renditions: [{ id: 'main', width: 320, height: 180, bitrateKbps: 300 }],
      // Long enough that, even on a loaded machine, A's tile is resized at its own next keyframe.
      stageResizeDelayMs: 30_000,
    });
    const senders = new Map<string, ClipSender>();
    const requests: string[] = [];
    try {
      mixer.addSource('a', { codec: 'vp8' });
      mixer.addSource('b', { codec: 'vp8', backstage: true });
      for (const id of ['a', 'b']) senders.set(id, new ClipSender(slow, (p) => mixer.pushRtp(id, p, p.length)).start());
      mixer.on('keyframeRequest', (id) => {
        requests.push(id);
        senders.get(id)?.requestKeyframe();
      });
      expect(await until(() => mixer.stats().sources.a.framesDecoded > 10, 8000)).toBe(true);
      await sleep(300);
      expect(mixer.regions.map((r) => r.sourceId)).toEqual(['a']);
      expect(mixer.stats().sources.b).toMatchObject({ visible: false, framesDecoded: 0 });
      requests.length = 0;

      expect(mixer.setBackstage('b', false)).toBe(true);
      // The next composed frame has two tiles.
      expect(mixer.regions.map((r) => r.sourceId)).toEqual(['a', 'b']);
      expect(mixer.stats().sources.a).toMatchObject({ decodeWidth: 240, decodeHeight: 180 });
      expect(await until(() => mixer.stats().sources.b.framesDecoded > 5, 8000)).toBe(true);
      // A's tile shrank to half the canvas: its decoder is resized at A's next keyframe (every 2 s), unasked.
      expect(await until(() => mixer.stats().sources.a.decodeWidth === 160, 6000)).toBe(true);
      // ... and decodes on from that keyframe.
      const decoded = mixer.stats().sources.a.framesDecoded;
      expect(await until(() => mixer.stats().sources.a.framesDecoded > decoded + 10, 4000)).toBe(true);
      await sleep(500);
      expect(requests).toEqual(['b']);

      // And back: out of the composite at once, its decoder stopped, no request for anyone.
      requests.length = 0;
      mixer.setBackstage('b', true);
      expect(mixer.regions.map((r) => r.sourceId)).toEqual(['a']);
      await sleep(500);
      expect(mixer.stats().sources.b.visible).toBe(false);
      expect(requests).toEqual([]);
    } finally {
      for (const s of senders.values()) s.stop();
      mixer.close();
    }
  });
});

describe('a participant leaving while audible', () => {
  it('fades out over the next tick: until then it is still there, `departed` waits for it, and its id can join again after', async () => {
    const r = rig();
    const a = r.add('a', LIVE_TONE, 'live');
    r.add('listener', 0, 'live');
    r.ticks(30);
    expect(power(r.program, LIVE_TONE, 20)).toBeGreaterThan(AUDIBLE);
    a.silent = true;
    expect(r.mixer.removeParticipant('a')).toBe(true);
    // Audible when removed: it leaves at the end of the next tick (a fade, not a click).
    expect(r.mixer.participant('a')).toBeDefined();
    expect(await r.mixer.departed('a', 30)).toBe(false);
    const gone = r.mixer.departed('a', 2000);
    r.tick();
    expect(await gone).toBe(true);
    expect(r.mixer.participant('a')).toBeUndefined();
    expect(await r.mixer.departed('listener', 30)).toBe(false);
    expect(r.mixer.addParticipant('a').id).toBe('a');
  });
});
