/**
 * The key proxy's matcher: the placeholder swapped for the key wherever the stream is cut into
 * reads (every split point, one byte at a time, several occurrences, near misses), nothing else
 * changed; and the URL checks that keep the key out of the RTMP app and tcUrl.
 */
import { describe, expect, it } from 'vitest';
import { KeySwapper, randomPlaceholder } from '../src/RtmpKeyProxy.js';
import { parseRestreamUrl } from '../src/RestreamUrl.js';

const KEY = Buffer.from('live_1234567890_secretKEYabc');
const PH = Buffer.from(randomPlaceholder(KEY.length));

/** Feeds `input` cut at `cuts` and returns what came out, flush included. */
function through(input: Buffer, cuts: number[]): { out: Buffer; swaps: number } {
  const s = new KeySwapper(PH, KEY);
  const parts: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, input.length]) {
    parts.push(s.push(input.subarray(at, c)));
    at = c;
  }
  parts.push(s.flush());
  return { out: Buffer.concat(parts), swaps: s.swaps };
}

/** An AMF0 publish command naming `name`, the way ffmpeg writes it. */
function publish(name: Buffer): Buffer {
  const str = (b: Buffer) => Buffer.concat([Buffer.from([0x02, b.length >> 8, b.length & 0xff]), b]);
  return Buffer.concat([str(Buffer.from('publish')), Buffer.from([0x00, 0x40, 0x14, 0, 0, 0, 0, 0, 0, 0x05]), str(name), str(Buffer.from('live'))]);
}

describe('KeySwapper', () => {
  it('a random placeholder is alphanumeric and of the asked length', () => {
    const p = randomPlaceholder(40);
    expect(p).toMatch(/^[A-Za-z0-9]{40}$/);
    expect(randomPlaceholder(40)).not.toBe(p);
  });

  it('swaps the placeholder in a command whatever the split, at every cut point', () => {
    const input = publish(PH);
    const expected = publish(KEY);
    for (let cut = 0; cut <= input.length; cut++) {
      const { out, swaps } = through(input, [cut]);
      expect(out.equals(expected), `cut at ${cut}`).toBe(true);
      expect(swaps).toBe(1);
    }
  });

  it('swaps it when the stream arrives one byte at a time, with several occurrences and near misses', () => {
    const near = Buffer.concat([PH.subarray(0, PH.length - 1), Buffer.from('#')]);
    const input = Buffer.concat([Buffer.from('xx'), PH, near, PH, PH.subarray(0, 5), PH, Buffer.from('tail')]);
    const expected = Buffer.concat([Buffer.from('xx'), KEY, near, KEY, PH.subarray(0, 5), KEY, Buffer.from('tail')]);
    const oneByOne = Array.from({ length: input.length - 1 }, (_, i) => i + 1);
    const { out, swaps } = through(input, oneByOne);
    expect(out.equals(expected)).toBe(true);
    expect(swaps).toBe(3);
    // Random cuts too.
    for (let t = 0; t < 200; t++) {
      const cuts = [...new Set(Array.from({ length: 4 }, () => Math.floor(Math.random() * input.length)))].sort((a, b) => a - b);
      expect(through(input, cuts).out.equals(expected), `cuts ${cuts}`).toBe(true);
    }
  });

  it('leaves a stream without the placeholder byte for byte, and holds back only what could start one', () => {
    const media = Buffer.alloc(100_000);
    for (let i = 0; i < media.length; i++) media[i] = (i * 7919) & 0xff;
    const { out, swaps } = through(media, [1000, 50_000, 99_999]);
    expect(out.equals(media)).toBe(true);
    expect(swaps).toBe(0);
    const s = new KeySwapper(PH, KEY);
    expect(s.push(Buffer.concat([Buffer.from('abc'), PH.subarray(0, 4)])).toString()).toBe('abc');
    expect(s.pending).toBe(4);
    expect(s.flush().equals(PH.subarray(0, 4))).toBe(true);
  });

  it('refuses a replacement of another length', () => {
    expect(() => new KeySwapper(Buffer.from('abc'), Buffer.from('abcd'))).toThrow(/same byte length/);
  });
});

describe('restream URLs and the proxy', () => {
  it('gives the key as ffmpeg sends it, the app path before it and a tcUrl without it', () => {
    const t = parseRestreamUrl('rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop');
    expect(t).toMatchObject({ wireKey: 'abcd-efgh-ijkl-mnop', rawAppPath: 'live2', tcUrl: 'rtmp://a.rtmp.youtube.com:1935/live2' });
    const q = parseRestreamUrl('rtmps://live-api-s.facebook.com:443/rtmp/FB-123?s_bl=1&a=Abc%20d');
    expect(q).toMatchObject({ wireKey: 'FB-123?s_bl=1&a=Abc%20d', rawAppPath: 'rtmp', tcUrl: 'rtmps://live-api-s.facebook.com:443/rtmp' });
    expect(q.tcUrl).not.toContain('FB-123');
    const inst = parseRestreamUrl('rtmp://host/app/inst/key123');
    expect(inst).toMatchObject({ wireKey: 'key123', rawAppPath: 'app/inst', tcUrl: 'rtmp://host:1935/app/inst' });
  });

  it('refuses (400) a query before the key, a key over 1024 bytes and names ffmpeg would rewrite', () => {
    expect(() => parseRestreamUrl('rtmp://host/app/inst?token=secret/key')).toThrow(/query before the stream key/);
    expect(() => parseRestreamUrl(`rtmp://host/app/${'k'.repeat(1025)}`)).toThrow(/longer than 1024 bytes/);
    expect(() => parseRestreamUrl('rtmp://host/app/key.flv')).toThrow(/\.flv/);
    expect(() => parseRestreamUrl('rtmp://host/app/key.mp4')).toThrow(/\.mp4/);
    try {
      parseRestreamUrl('rtmp://host/app/inst?token=secret/key');
    } catch (err) {
      expect((err as { status?: number }).status).toBe(400);
      expect((err as Error).message).not.toContain('secret');
    }
  });
});
