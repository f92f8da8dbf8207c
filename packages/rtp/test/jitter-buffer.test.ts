import { describe, expect, it } from 'vitest';
import { buildRtp, JitterBuffer, parseRtp, readAudioLevel, RtpHeader, audioLevelExtension } from '../src/index.js';
import type { PopKind } from '../src/index.js';
import { mulberry32 } from './random.js';

const FRAME_MS = 20;
const FRAME_TS = 960;

/** A recognisable payload: the sequence number in the first two bytes. */
function frame(seq: number): Uint8Array {
  return Uint8Array.of(seq >> 8, seq & 0xff, 0xab, 0xcd);
}

function seqOf(payload: Uint8Array): number {
  expect(payload.length).toBe(4);
  return (payload[0] << 8) | payload[1];
}

function push(jb: JitterBuffer, seq: number, atMs: number, level = -1): string {
  return jb.push(seq & 0xffff, (seq * FRAME_TS) >>> 0, frame(seq & 0xffff), atMs, level);
}

/**
 * Runs a 20 ms mixing clock over packets with given arrival times. Packets arriving at or
 * before a tick are pushed (in arrival order) before that tick's pop. Returns what each tick
 * produced: the sequence number played, or the pop kind.
 */
function runClock(jb: JitterBuffer, arrivals: { seq: number; atMs: number }[], ticks: number, firstTick = 0): (number | PopKind)[] {
  const ordered = [...arrivals].sort((a, b) => a.atMs - b.atMs);
  const out: (number | PopKind)[] = [];
  let k = 0;
  for (let t = firstTick; t < firstTick + ticks; t++) {
    const now = t * FRAME_MS;
    while (k < ordered.length && ordered[k].atMs <= now) {
      push(jb, ordered[k].seq, ordered[k].atMs);
      k++;
    }
    const kind = jb.pop(now);
    out.push(kind === 'frame' ? seqOf(jb.payload) : kind);
  }
  return out;
}

/** Packets `from..to-1` sent every 20 ms, arriving `delayMs` after tick `seq - from + startTick`. */
function paced(from: number, to: number, startTick = 0, delayMs = 0): { seq: number; atMs: number }[] {
  return Array.from({ length: to - from }, (_, i) => ({ seq: from + i, atMs: (startTick + i) * FRAME_MS + delayMs }));
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

describe('JitterBuffer playout', () => {
  it('buffers the initial 40 ms, then plays one frame per pop in order', () => {
    const jb = new JitterBuffer();
    expect(jb.targetDelayMs).toBe(40);
    expect(push(jb, 1000, 0)).toBe('accepted');
    expect(jb.pop(0)).toBe('buffering');
    expect(jb.depthMs).toBe(20);
    expect(jb.payload.length).toBe(0);
    const played = runClock(jb, paced(1001, 1050, 1), 49, 1);
    expect(played).toEqual(range(1000, 1049));
    expect(jb.stats).toMatchObject({ received: 50, lost: 0, underruns: 0, late: 0, duplicate: 0, discarded: 0 });
  });

  it('yields in-order frames from packets reordered within the window', () => {
    const jb = new JitterBuffer();
    // Arrival order 0, 2, 1, 3, 5, 4, 6, 8, 7, …: every third pair swapped.
    const order = range(0, 60);
    for (let i = 1; i + 1 < order.length; i += 3) [order[i], order[i + 1]] = [order[i + 1], order[i]];
    const arrivals = order.map((seq, i) => ({ seq, atMs: i * FRAME_MS }));
    const played = runClock(jb, arrivals, 60);
    expect(played.slice(0, 1)).toEqual(['buffering']);
    expect(played.slice(1)).toEqual(range(0, 59));
    expect(jb.stats.lost).toBe(0);
    expect(jb.stats.late).toBe(0);
  });

  it('lets a packet that arrives before the first one still play first', () => {
    const jb = new JitterBuffer();
    push(jb, 501, 0);
    push(jb, 500, 5);
    expect(jb.pop(20)).toBe('frame');
    expect(seqOf(jb.payload)).toBe(500);
    push(jb, 502, 20);
    expect(jb.pop(40)).toBe('frame');
    expect(seqOf(jb.payload)).toBe(501);
  });

  it('reports a missing frame as lost, with the next payload for FEC when it is here', () => {
    const jb = new JitterBuffer();
    const arrivals = paced(0, 40).filter((a) => a.seq !== 10 && a.seq !== 20 && a.seq !== 21);
    const played: (number | PopKind)[] = [];
    const fec: (number | null)[] = [];
    const ordered = arrivals;
    let k = 0;
    for (let t = 0; t < 40; t++) {
      while (k < ordered.length && ordered[k].atMs <= t * FRAME_MS) push(jb, ordered[k].seq, ordered[k++].atMs);
      const kind = jb.pop(t * FRAME_MS);
      played.push(kind === 'frame' ? seqOf(jb.payload) : kind);
      if (kind === 'lost') fec.push(jb.nextPayload === null ? null : seqOf(jb.nextPayload));
    }
    // Seq 10: 11 is already buffered → lost with FEC from 11.
    expect(played.slice(9, 13)).toEqual([8, 9, 'lost', 11]);
    // Seqs 20 and 21: the buffer runs dry first (the playout point waits), then both are
    // given up, the first without FEC (21 is missing too), the second with FEC from 22.
    expect(played.slice(20, 26)).toEqual([19, 'underrun', 'lost', 'lost', 22, 23]);
    expect(fec).toEqual([11, null, 22]);
    expect(jb.stats.lost).toBe(3);
    expect(jb.stats.underruns).toBe(1);
  });

  it('does not wait forever for a missing frame when the sender stops right after the hole', () => {
    const jb = new JitterBuffer({ initialDelayMs: 100 });
    const played = runClock(jb, paced(0, 12).filter((a) => a.seq !== 10), 30);
    expect(jb.targetDelayMs).toBeGreaterThan(40); // deeper than what is buffered behind the hole
    // After 9 it waits a little for 10 (it might be reordered), then gives it up and plays 11.
    const after9 = played.slice(played.indexOf(9) + 1);
    const waits = after9.indexOf('lost');
    expect(waits).toBeGreaterThanOrEqual(1);
    expect(waits * FRAME_MS).toBeLessThan(jb.targetDelayMs);
    expect(after9.slice(0, waits + 2)).toEqual([...new Array(waits).fill('underrun'), 'lost', 11]);
    const after11 = after9.slice(waits + 2);
    expect(after11.slice(0, 4)).toEqual(['underrun', 'underrun', 'underrun', 'buffering']);
    expect(after11.every((x) => x === 'underrun' || x === 'buffering')).toBe(true);
  });

  it('counts and drops a packet that arrives after its frame was concealed or played', () => {
    const jb = new JitterBuffer();
    runClock(jb, paced(0, 20).filter((a) => a.seq !== 10), 20);
    expect(jb.stats.lost).toBe(1);
    expect(push(jb, 10, 400)).toBe('late');
    expect(push(jb, 3, 401)).toBe('late');
    expect(jb.stats.late).toBe(2);
    // Neither comes out later.
    push(jb, 20, 400);
    expect(jb.pop(400)).toBe('frame');
    expect(seqOf(jb.payload)).toBe(19);
  });

  it('counts a duplicate of a buffered packet and plays it once', () => {
    const jb = new JitterBuffer();
    expect(push(jb, 30, 0)).toBe('accepted');
    expect(push(jb, 30, 1)).toBe('duplicate');
    push(jb, 31, 20);
    expect(jb.stats.duplicate).toBe(1);
    expect(jb.pop(20)).toBe('frame');
    expect(seqOf(jb.payload)).toBe(30);
    expect(jb.pop(40)).toBe('frame');
    expect(seqOf(jb.payload)).toBe(31);
  });

  it('returns to buffering after consecutive underruns and re-syncs on the next packet', () => {
    const jb = new JitterBuffer();
    const first = runClock(jb, paced(0, 10), 15);
    expect(first).toEqual(['buffering', ...range(0, 10), 'underrun', 'underrun', 'underrun', 'buffering']);
    // The sender comes back 20 packets later (e.g. after a network outage): no losses are
    // reported for the gap, playout restarts from the first new packet after the initial delay.
    const second = runClock(jb, paced(30, 40, 30), 10, 30);
    expect(second).toEqual(['buffering', ...range(30, 39)]);
    expect(jb.stats.lost).toBe(0);
    expect(jb.stats.underruns).toBe(3);
  });

  it('re-syncs on a large forward sequence jump instead of reporting hundreds of losses', () => {
    const jb = new JitterBuffer();
    const played = runClock(jb, [...paced(0, 20), ...paced(5000, 5020, 20)], 40);
    expect(played.slice(0, 20)).toEqual(['buffering', ...range(0, 19)]);
    // Seq 19 was still buffered when the new stream started: discarded with the old stream.
    // On this perfectly paced network the target has settled at one frame, so the new stream
    // plays at once.
    expect(jb.targetDelayMs).toBe(FRAME_MS);
    expect(played.slice(20)).toEqual(range(5000, 5020));
    expect(jb.stats.lost).toBe(0);
    expect(jb.stats.discarded).toBe(1);
  });

  it('re-syncs on a backward jump once the next packet confirms it', () => {
    const jb = new JitterBuffer();
    runClock(jb, paced(40000, 40010), 10);
    expect(push(jb, 30000, 200)).toBe('late'); // one stray packet is not believed…
    expect(push(jb, 30001, 220)).toBe('accepted'); // …but one that follows it is
    push(jb, 30002, 240);
    expect(jb.pop(240)).toBe('frame');
    expect(seqOf(jb.payload)).toBe(30001);
    expect(jb.stats.lost).toBe(0);
  });

  it('plays across the 65535 → 0 wrap, with the packets around the wrap reordered', () => {
    const jb = new JitterBuffer();
    const arrivals = paced(65530, 65550).map((a) => ({ seq: a.seq & 0xffff, atMs: a.atMs }));
    // 65535 and 0 swap places.
    [arrivals[5].atMs, arrivals[6].atMs] = [arrivals[6].atMs, arrivals[5].atMs];
    const played = runClock(jb, arrivals, 20);
    expect(played).toEqual(['buffering', ...range(65530, 65549).map((s) => s & 0xffff)]);
    expect(jb.stats.lost).toBe(0);
    expect(jb.stats.late).toBe(0);
  });
});

describe('JitterBuffer adaptation', () => {
  /** Packets every 20 ms with 40 ms base delay and uniform ±amplitude jitter, from a seeded PRNG. */
  function jittered(from: number, count: number, amplitudeMs: number, seed: number): { seq: number; atMs: number }[] {
    const random = mulberry32(seed);
    return Array.from({ length: count }, (_, i) => ({
      seq: from + i,
      atMs: (from + i) * FRAME_MS + 40 + (random() * 2 - 1) * amplitudeMs,
    }));
  }

  it('raises the target delay under ±30 ms jitter and stops concealing once adapted', () => {
    const jb = new JitterBuffer();
    const played = runClock(jb, jittered(0, 600, 30, 1), 600);
    expect(jb.targetDelayMs).toBeGreaterThan(40);
    expect(jb.jitterMs).toBeGreaterThan(10);
    // After the first second of adaptation, every tick plays a real frame.
    const settled = played.slice(100, 590);
    expect(settled.filter((x) => typeof x !== 'number')).toEqual([]);
  });

  it('brings the target back down when the jitter disappears', () => {
    const jb = new JitterBuffer();
    runClock(jb, [...jittered(0, 500, 30, 2), ...jittered(500, 500, 0, 3)], 990);
    expect(jb.targetDelayMs).toBeLessThanOrEqual(40);
    expect(jb.jitterMs).toBeLessThan(1);
  });

  it('discards frames to catch up after a delay spike leaves the buffer deep', () => {
    const jb = new JitterBuffer();
    // Steady stream, except packets 100..109 are held up by a 200 ms stall and arrive in a burst.
    const arrivals = paced(0, 300).map((a) => (a.seq >= 100 && a.seq < 110 ? { seq: a.seq, atMs: 110 * FRAME_MS } : a));
    const played = runClock(jb, arrivals, 300);
    expect(jb.stats.discarded).toBeGreaterThan(0);
    expect(jb.stats.lost).toBe(0);
    // Catching up only ever skips frames, in order, and converges near the target.
    const frames = played.filter((x): x is number => typeof x === 'number');
    for (let i = 1; i < frames.length; i++) expect(frames[i]).toBeGreaterThan(frames[i - 1]);
    expect(frames.length + jb.stats.discarded).toBe(frames[frames.length - 1] + 1);
    expect(jb.depthMs).toBeLessThanOrEqual(jb.targetDelayMs + FRAME_MS);
    // Without catching up, the stall would have left the last frame played ~10 frames behind.
    expect(frames[frames.length - 1]).toBeGreaterThanOrEqual(296);
  });
});

describe('JitterBuffer memory and input handling', () => {
  it('copies the payload: mutating the caller buffer after push does not change the popped frame', () => {
    const jb = new JitterBuffer();
    const buf = Uint8Array.of(1, 2, 3);
    jb.push(0, 0, buf, 0);
    buf.fill(9);
    jb.push(1, FRAME_TS, buf, 20);
    expect(jb.pop(20)).toBe('frame');
    expect([...jb.payload]).toEqual([1, 2, 3]);
  });

  it('takes the payload straight out of a received datagram by offset and length', () => {
    const jb = new JitterBuffer();
    const header = new RtpHeader();
    for (let seq = 0; seq < 2; seq++) {
      const datagram = buildRtp(
        { payloadType: 111, sequenceNumber: seq, timestamp: seq * FRAME_TS, ssrc: 1, extensions: [audioLevelExtension(20 + seq, true)], paddingLength: 4 },
        Uint8Array.of(0xfc, seq, 0x77),
      );
      expect(parseRtp(datagram, header)).toBeNull();
      const level = readAudioLevel(datagram, header, 1);
      jb.push(header.sequenceNumber, header.timestamp, datagram, seq * 20, level, header.payloadOffset, header.payloadLength);
    }
    expect(jb.pop(20)).toBe('frame');
    expect([...jb.payload]).toEqual([0xfc, 0, 0x77]);
    expect(jb.audioLevel).toBe(0x80 | 20);
  });

  it('refuses a payload larger than a slot', () => {
    const jb = new JitterBuffer({ maxPayloadBytes: 100 });
    expect(jb.push(0, 0, new Uint8Array(101), 0)).toBe('too_large');
    expect(jb.push(1, FRAME_TS, new Uint8Array(100), 0)).toBe('accepted');
    expect(jb.stats.tooLarge).toBe(1);
  });

  it('keeps buffered payloads intact when a larger one widens the slots', () => {
    const jb = new JitterBuffer({ initialDelayMs: 20 });
    const sizes = [3, 200, 1400, 40, 1500, 7];
    const payloadOf = (seq: number) => Uint8Array.from({ length: sizes[seq] }, (_, i) => (seq * 31 + i) & 0xff);
    // Both ways in: a small one buffered before the large ones, and a payload inside a datagram (offset).
    for (let seq = 0; seq < sizes.length; seq++) {
      const datagram = new Uint8Array(12 + sizes[seq]);
      datagram.set(payloadOf(seq), 12);
      expect(jb.push(seq, seq * FRAME_TS, datagram, seq * FRAME_MS, -1, 12, sizes[seq])).toBe('accepted');
    }
    for (let seq = 0; seq < sizes.length; seq++) {
      expect(jb.pop(100 + seq * FRAME_MS)).toBe('frame');
      expect([...jb.payload]).toEqual([...payloadOf(seq)]);
    }
  });

  it('discards the oldest packets when more than capacity are buffered', () => {
    const jb = new JitterBuffer({ capacity: 64 });
    for (let seq = 0; seq < 70; seq++) push(jb, seq, 0);
    expect(jb.stats.discarded).toBe(6);
    expect(jb.depthMs).toBe(64 * FRAME_MS);
    expect(jb.pop(0)).toBe('frame');
    expect(seqOf(jb.payload)).toBe(6);
    expect(push(jb, 3, 1)).toBe('late');
  });

  it('exposes the audio level of the next frame before popping it, and of the popped frame', () => {
    const jb = new JitterBuffer();
    expect(jb.peekAudioLevel()).toBe(-1);
    push(jb, 0, 0, 0x80 | 12);
    push(jb, 1, 20, 90);
    push(jb, 3, 40, 0x80 | 5);
    expect(jb.peekAudioLevel()).toBe(0x80 | 12);
    expect(jb.pop(40)).toBe('frame');
    expect(jb.audioLevel).toBe(0x80 | 12);
    expect(jb.peekAudioLevel()).toBe(90);
    jb.pop(60);
    expect(jb.audioLevel).toBe(90);
    expect(jb.peekAudioLevel()).toBe(-1); // seq 2 is missing
    expect(jb.pop(80)).toBe('lost');
    expect(jb.audioLevel).toBe(-1);
    expect(jb.peekAudioLevel()).toBe(0x80 | 5);
  });

  it('starts a new stream on reset and keeps its counters monotonic', () => {
    const jb = new JitterBuffer();
    runClock(jb, paced(0, 10), 10);
    jb.reset();
    expect(jb.stats.received).toBe(10);
    expect(jb.depthMs).toBe(0);
    expect(jb.pop(990)).toBe('buffering');
    expect(jb.targetDelayMs).toBe(40);
    // An older sequence number is a fresh start, not a late packet.
    expect(push(jb, 2, 1000)).toBe('accepted');
    expect(jb.pop(1000)).toBe('buffering');
  });

  it('validates its options', () => {
    expect(() => new JitterBuffer({ capacity: 1 })).toThrow(RangeError);
    expect(() => new JitterBuffer({ minDelayMs: 300, maxDelayMs: 200 })).toThrow(RangeError);
  });
});

describe('JitterBuffer lip-sync delay', () => {
  it('grows by concealed frames and shrinks by skipped frames, one per catchUpAfterMs, never losing one', () => {
    const jb = new JitterBuffer();
    const arrivals = paced(2000, 2200, 0);
    const first = runClock(jb, arrivals.slice(0, 30), 30);
    expect(jb.timestamp).toBe(((first[29] as number) * FRAME_TS) >>> 0);
    const lagBefore = 29 - ((first[29] as number) - 2000);

    jb.syncDelayMs = 70; // rounds to whole frames
    expect(jb.syncDelayMs).toBe(80);
    const grow = runClock(jb, arrivals.slice(30, 100), 70, 30);
    const stretchTicks = grow.flatMap((k, i) => (k === 'stretch' ? [i] : []));
    expect(stretchTicks.length).toBe(4);
    for (let i = 1; i < stretchTicks.length; i++) expect((stretchTicks[i] - stretchTicks[i - 1]) * FRAME_MS).toBeGreaterThanOrEqual(200);
    const played = grow.filter((k): k is number => typeof k === 'number');
    // Every frame played, in order: the delay came from concealment, not from dropping audio.
    expect(played).toEqual(range(played[0], played[0] + played.length));
    expect(jb.syncDelayAppliedMs).toBe(80);
    expect(jb.stats.stretched).toBe(4);
    const lagAfter = 99 - ((grow[69] as number) - 2000);
    expect(lagAfter - lagBefore).toBe(4);

    jb.syncDelayMs = 0;
    const discardedBefore = jb.stats.discarded;
    const shrink = runClock(jb, arrivals.slice(100, 200), 100, 100);
    expect(shrink).not.toContain('lost');
    expect(shrink).not.toContain('underrun');
    expect(jb.stats.discarded - discardedBefore).toBe(4);
    expect(jb.syncDelayAppliedMs).toBe(0);
    expect(199 - ((shrink[99] as number) - 2000)).toBe(lagBefore);
  });
});
