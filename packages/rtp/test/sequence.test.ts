import { describe, expect, it } from 'vitest';
import { SequenceUnwrapper, TimestampUnwrapper, seqDiff, seqLessThan, seqNext, tsDiff, tsLessThan } from '../src/index.js';

describe('16-bit sequence arithmetic', () => {
  it('takes the short way round across 65535 → 0', () => {
    expect(seqDiff(0, 65535)).toBe(1);
    expect(seqDiff(65535, 0)).toBe(-1);
    expect(seqDiff(5, 65530)).toBe(11);
    expect(seqDiff(100, 50)).toBe(50);
    expect(seqDiff(50, 100)).toBe(-50);
    expect(seqDiff(32767, 0)).toBe(32767);
    expect(seqDiff(32768, 0)).toBe(-32768);
  });

  it('orders across the wrap', () => {
    expect(seqLessThan(65535, 0)).toBe(true);
    expect(seqLessThan(0, 65535)).toBe(false);
    expect(seqLessThan(65000, 100)).toBe(true);
    expect(seqLessThan(7, 7)).toBe(false);
  });

  it('steps from 65535 to 0', () => {
    expect(seqNext(65535)).toBe(0);
    expect(seqNext(41)).toBe(42);
  });
});

describe('32-bit timestamp arithmetic', () => {
  it('takes the short way round across 0xFFFFFFFF → 0', () => {
    expect(tsDiff(0, 0xffffffff)).toBe(1);
    expect(tsDiff(0xffffffff, 0)).toBe(-1);
    expect(tsDiff(960, 0xffffffff - 959)).toBe(1920);
    expect(tsDiff(0x7fffffff, 0)).toBe(0x7fffffff);
    expect(tsDiff(0x80000000, 0)).toBe(-0x80000000);
  });

  it('orders across the wrap', () => {
    expect(tsLessThan(0xfffffff0, 5)).toBe(true);
    expect(tsLessThan(5, 0xfffffff0)).toBe(false);
  });
});

describe('SequenceUnwrapper', () => {
  it('counts on across three wraps', () => {
    const u = new SequenceUnwrapper();
    let expected = 65000;
    let seq = 65000;
    expect(u.unwrap(seq)).toBe(expected);
    for (let i = 0; i < 3 * 65536; i += 1000) {
      seq = (seq + 1000) & 0xffff;
      expected += 1000;
      expect(u.unwrap(seq)).toBe(expected);
    }
    expect(expected).toBeGreaterThan(3 * 65536);
  });

  it('places reordered packets around the wrap', () => {
    const u = new SequenceUnwrapper();
    expect(u.unwrap(65534)).toBe(65534);
    expect(u.unwrap(0)).toBe(65536);
    expect(u.unwrap(65535)).toBe(65535);
    expect(u.unwrap(1)).toBe(65537);
    expect(u.unwrap(65533)).toBe(65533);
  });

  it('starts over after reset', () => {
    const u = new SequenceUnwrapper();
    u.unwrap(65535);
    u.unwrap(3);
    u.reset();
    expect(u.unwrap(3)).toBe(3);
  });
});

describe('TimestampUnwrapper', () => {
  it('counts on across 0xFFFFFFFF → 0 and keeps reordered timestamps behind', () => {
    const u = new TimestampUnwrapper();
    const start = 0xffffffff - 960 * 2 + 1;
    expect(u.unwrap(start)).toBe(start);
    expect(u.unwrap((start + 960) >>> 0)).toBe(start + 960);
    expect(u.unwrap((start + 1920) >>> 0)).toBe(start + 1920); // 2^32: the first value past the wrap
    expect(start + 1920).toBeGreaterThan(0xffffffff);
    expect(u.unwrap((start + 2880) >>> 0)).toBe(start + 2880);
    expect(u.unwrap((start + 960) >>> 0)).toBe(start + 960);
  });

  it('keeps counting over several wraps in big steps', () => {
    const u = new TimestampUnwrapper();
    let ts = 123;
    let expected = 123;
    u.unwrap(ts);
    for (let i = 0; i < 20; i++) {
      ts = (ts + 0x7000_0000) >>> 0;
      expected += 0x7000_0000;
      expect(u.unwrap(ts)).toBe(expected);
    }
  });
});
