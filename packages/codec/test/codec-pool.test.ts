import { describe, expect, it } from 'vitest';
import { CodecPool, OpusDecoder, OpusEncoder } from '../src/index.js';
import { decodeAll, dominantHz, encodeFrames, sine } from './audio.js';

describe('CodecPool', () => {
  it('hands released decoders out again, reset for their next participant', () => {
    let created = 0;
    const pool = new CodecPool(() => {
      created++;
      return new OpusDecoder();
    });
    const a = pool.acquire();
    const b = pool.acquire();
    expect(pool.size).toBe(2);
    expect(pool.idle).toBe(0);

    decodeAll(a, encodeFrames(new OpusEncoder(), sine(1000, 0.2)));
    pool.release(a);
    expect(pool.idle).toBe(1);
    const again = pool.acquire();
    expect(again).toBe(a);
    expect(created).toBe(2);

    // Reused for a new participant: decodes their stream from a clean state.
    const out = decodeAll(again, encodeFrames(new OpusEncoder(), sine(440, 0.5)));
    expect(dominantHz(out.subarray(4800))).toBe(440);
    pool.release(again);
    pool.release(b);
    expect(pool.size).toBe(2);
    expect(pool.idle).toBe(2);
    pool.close();
  });

  it('keeps at most `max` idle items and closes the rest', () => {
    const closed: number[] = [];
    let next = 0;
    const pool = new CodecPool(
      () => {
        const id = next++;
        return { close: () => closed.push(id) };
      },
      { max: 1 },
    );
    const items = [pool.acquire(), pool.acquire(), pool.acquire()];
    for (const item of items) pool.release(item);
    expect(pool.idle).toBe(1);
    expect(pool.size).toBe(1);
    expect(closed).toEqual([1, 2]);
  });

  it('rejects a double release', () => {
    const pool = new CodecPool(() => ({ close() {} }));
    const item = pool.acquire();
    pool.release(item);
    expect(() => pool.release(item)).toThrow(/released twice/);
  });

  it('close() closes every item, idle and in use, once', () => {
    const pool = new CodecPool(() => new OpusEncoder());
    const busy = pool.acquire();
    const idle = pool.acquire();
    pool.release(idle);
    pool.close();
    pool.close();
    expect(pool.size).toBe(0);
    const pcm = new Int16Array(960);
    const out = new Uint8Array(1275);
    expect(() => busy.encode(pcm, out)).toThrow(/closed/);
    expect(() => idle.encode(pcm, out)).toThrow(/closed/);
    expect(() => pool.acquire()).toThrow(/closed/);
    pool.release(busy); // a late release after close is harmless
  });

  it('drops an item that was closed before release instead of reusing it', () => {
    const pool = new CodecPool(() => new OpusDecoder());
    const d = pool.acquire();
    d.close();
    pool.release(d);
    expect(pool.idle).toBe(0);
    expect(pool.acquire()).not.toBe(d);
  });
});
