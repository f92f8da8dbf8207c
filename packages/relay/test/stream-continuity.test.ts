import { describe, expect, it } from 'vitest';
import { buildRtp, parseRtp, RtpHeader } from '@mcu/rtp';
import { StreamContinuity } from '../src/index.js';

const OUT_SSRC = 0x0ea7_0001;

/** Feeds one packet through `c` and returns what a viewer would see. */
function pass(c: StreamContinuity, fields: { seq: number; ts: number; ssrc: number }, nowMs: number) {
  const p = buildRtp({ payloadType: 111, sequenceNumber: fields.seq, timestamp: fields.ts, ssrc: fields.ssrc }, Uint8Array.of(1, 2, 3));
  const h = new RtpHeader();
  expect(parseRtp(p, h)).toBeNull();
  const ok = c.rewrite(p, h, nowMs);
  const seen = new RtpHeader();
  parseRtp(p, seen);
  expect(seen.sequenceNumber).toBe(h.sequenceNumber);
  expect(seen.timestamp).toBe(h.timestamp);
  return { ok, seq: seen.sequenceNumber, ts: seen.timestamp, ssrc: seen.ssrc, payload: [...p.subarray(seen.payloadOffset)] };
}

describe('StreamContinuity', () => {
  it('a mixer restart mid-stream (new SSRC, new numbers): sequence goes on by +1, timestamp by the elapsed wall time in whole frames', () => {
    const c = new StreamContinuity({ outputSsrc: OUT_SSRC, clockRate: 48_000, frameSamples: 960 });
    let now = 0;
    let last = { seq: 0, ts: 0 };
    for (let i = 0; i < 50; i++, now += 20) {
      const r = pass(c, { seq: 100 + i, ts: 5000 + i * 960, ssrc: 0xaaaa }, now);
      expect(r.ssrc).toBe(OUT_SSRC);
      expect(r.payload).toEqual([1, 2, 3]);
      if (i > 0) {
        expect(r.seq).toBe((last.seq + 1) & 0xffff);
        expect(r.ts).toBe((last.ts + 960) >>> 0);
      }
      last = r;
    }
    // The mixer restarts: 730 ms pass, then a new SSRC with random numbers.
    now += 730 - 20;
    const first = pass(c, { seq: 40_000, ts: 3_000_000_000, ssrc: 0xbbbb }, now);
    expect(first.ok).toBe(true);
    expect(first.seq).toBe(last.seq + 1);
    // 730 ms = 35040 samples = 36.5 frames, rounded to whole frames.
    expect(first.ts).toBe(last.ts + Math.round(35_040 / 960) * 960);
    expect(c.switches).toBe(1);
    // The new source then continues normally.
    now += 20;
    const second = pass(c, { seq: 40_001, ts: 3_000_000_960, ssrc: 0xbbbb }, now);
    expect(second.seq).toBe(first.seq + 1);
    expect(second.ts).toBe(first.ts + 960);
    // A late packet of the old source is refused, not mistaken for another switch.
    expect(pass(c, { seq: 150, ts: 5000 + 50 * 960, ssrc: 0xaaaa }, now).ok).toBe(false);
    expect(c.switches).toBe(1);
  });

  it('a big jump with the same SSRC is a switch too; ordinary loss and reordering are not', () => {
    const c = new StreamContinuity({ outputSsrc: OUT_SSRC, clockRate: 90_000 });
    const a = pass(c, { seq: 10, ts: 90_000, ssrc: 1 }, 0);
    const lossy = pass(c, { seq: 15, ts: 90_000 + 3000 * 5, ssrc: 1 }, 166); // 4 lost
    expect(lossy.seq).toBe(a.seq + 5);
    const late = pass(c, { seq: 12, ts: 90_000 + 3000 * 2, ssrc: 1 }, 170);
    expect(late.seq).toBe(a.seq + 2);
    expect(c.switches).toBe(0);
    const jumped = pass(c, { seq: 30_000, ts: 12_345, ssrc: 1 }, 200);
    expect(c.switches).toBe(1);
    expect(jumped.seq).toBe(lossy.seq + 1);
    expect(jumped.ts).toBe(lossy.ts + Math.round(((200 - 166) * 90_000) / 1000));
    // A timestamp jump alone (sequence plausible) also counts.
    const tsJump = pass(c, { seq: 30_001, ts: 12_345 + 90_000 * 60, ssrc: 1 }, 233);
    expect(c.switches).toBe(2);
    expect(tsJump.seq).toBe(jumped.seq + 1);
  });

  it('output numbers wrap around 65535 and 2^32 across a switch', () => {
    const c = new StreamContinuity({ outputSsrc: OUT_SSRC, clockRate: 48_000, frameSamples: 960 });
    let now = 0;
    let r = pass(c, { seq: 65_534, ts: 0xffff_ffff - 960 * 2 + 1, ssrc: 7 }, now);
    expect(r.seq).toBe(65_534);
    now += 20;
    r = pass(c, { seq: 65_535, ts: 0xffff_ffff - 960 + 1, ssrc: 7 }, now);
    // Switch right at the edge: next seq wraps to 0, ts wraps past 2^32.
    now += 100;
    const s = pass(c, { seq: 123, ts: 777, ssrc: 8 }, now);
    expect(s.seq).toBe(0);
    expect(s.ts).toBe((r.ts + 5 * 960) % 2 ** 32);
    now += 20;
    const t = pass(c, { seq: 124, ts: 777 + 960, ssrc: 8 }, now);
    expect(t.seq).toBe(1);
    expect(t.ts).toBe((s.ts + 960) % 2 ** 32);
    // And an input that wraps by itself maps through the offset.
    const w = new StreamContinuity({ outputSsrc: OUT_SSRC, clockRate: 90_000 });
    pass(w, { seq: 100, ts: 1000, ssrc: 1 }, 0);
    pass(w, { seq: 101, ts: 4000, ssrc: 2 }, 1000); // switch: offset applied from here
    const before = pass(w, { seq: 65_535, ts: 4000, ssrc: 2 }, 1010);
    const after = pass(w, { seq: 0, ts: 4000, ssrc: 2 }, 1020);
    expect(after.seq).toBe((before.seq + 1) & 0xffff);
    expect(w.switches).toBe(1);
  });

  it('a switch in the same millisecond still advances the timestamp', () => {
    const c = new StreamContinuity({ outputSsrc: OUT_SSRC, clockRate: 90_000 });
    const a = pass(c, { seq: 1, ts: 1, ssrc: 1 }, 5);
    const b = pass(c, { seq: 999, ts: 99_999_999, ssrc: 2 }, 5);
    expect(b.seq).toBe(a.seq + 1);
    expect(b.ts).toBe(a.ts + 1);
  });
});
