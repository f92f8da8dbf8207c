/**
 * The key proxy's matcher: the placeholder swapped for the key wherever the stream is cut into
 * reads (every split point, one byte at a time, several occurrences, near misses), nothing else
 * changed; and the URL checks that keep the key out of the RTMP app and tcUrl.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KeySwapper, RTMP_HANDSHAKE_BYTES, RtmpKeyProxy, randomPlaceholder } from '../src/RtmpKeyProxy.js';
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

/** A TCP "ingest" on loopback that keeps what it receives and sends `reply` on connect. */
async function ingest(reply: Buffer): Promise<{ port: number; received: () => Buffer; connections: () => number; close: () => Promise<void> }> {
  const got: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((s) => {
    connections++;
    sockets.add(s);
    s.on('data', (d) => got.push(d));
    s.on('error', () => {});
    s.write(reply);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    received: () => Buffer.concat(got),
    connections: () => connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('RtmpKeyProxy over real sockets', () => {
  it('relays the handshake untouched, swaps the placeholder split across writes both ways, releases a held tail, takes one connection, closes idempotently', async () => {
    const key = 'proxy-test-key-0123456789';
    // The ingest's handshake (S0+S1+S2) contains bytes that look like the key's start; then it names the stream.
    const s012 = randomBytes(RTMP_HANDSHAKE_BYTES);
    Buffer.from(key.slice(0, 10)).copy(s012, RTMP_HANDSHAKE_BYTES - 10);
    const server = await ingest(Buffer.concat([s012, publish(Buffer.from(key))]));
    const proxy = new RtmpKeyProxy({ protocol: 'rtmp', host: '127.0.0.1', port: server.port, key });
    const port = await proxy.listen();
    const ph = Buffer.from(proxy.placeholder);
    expect(ph.length).toBe(key.length);
    const ffmpeg = net.connect(port, '127.0.0.1');
    const down: Buffer[] = [];
    ffmpeg.on('data', (d) => down.push(d));
    await new Promise((r) => ffmpeg.once('connect', r));

    // C0+C1+C2 ending in the placeholder's first bytes: relayed as is, not held (the server waits for them).
    const c012 = randomBytes(RTMP_HANDSHAKE_BYTES);
    ph.copy(c012, RTMP_HANDSHAKE_BYTES - 5, 0, 5);
    ffmpeg.write(c012);
    await wait(20);
    expect(server.received().equals(c012)).toBe(true);
    // A command naming the placeholder, cut inside it across two writes 15 ms apart.
    const cmd = publish(ph);
    const cut = cmd.indexOf(ph) + 7;
    ffmpeg.write(cmd.subarray(0, cut));
    await wait(15);
    ffmpeg.write(cmd.subarray(cut));
    // Then bytes that end like the placeholder's start, and nothing after: released after the hold.
    const tail = Buffer.concat([Buffer.from('abc'), ph.subarray(0, 3)]);
    ffmpeg.write(tail);
    await wait(500);
    expect(server.received().equals(Buffer.concat([c012, publish(Buffer.from(key)), tail]))).toBe(true);
    // Down: the handshake as sent, the key in the server's command turned into the placeholder.
    expect(Buffer.concat(down).equals(Buffer.concat([s012, publish(ph)]))).toBe(true);
    expect(proxy.counts).toMatchObject({ up: c012.length + cmd.length + tail.length, swapsUp: 1, swapsDown: 1, refused: 0 });

    // A second connection is not relayed.
    const other = net.connect(port, '127.0.0.1');
    const otherClosed = await new Promise<boolean>((r) => {
      other.once('error', () => r(true));
      other.once('close', () => r(true));
      setTimeout(() => r(false), 1000);
    });
    other.destroy();
    expect(otherClosed).toBe(true);
    expect(server.connections()).toBe(1);

    const ended = new Promise<string>((r) => proxy.once('end', r));
    ffmpeg.destroy();
    expect(await ended).toMatch(/closed the connection/);
    proxy.close();
    proxy.close();
    expect(proxy.isClosed).toBe(true);
    await server.close();
  });

  it('ends with a reason that names host and port, not the key, when the ingest is not there', async () => {
    const key = 'unreachable-key-0123456789';
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const deadPort = (dead.address() as net.AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const proxy = new RtmpKeyProxy({ protocol: 'rtmp', host: '127.0.0.1', port: deadPort, key });
    const port = await proxy.listen();
    const ended = new Promise<string>((r) => proxy.once('end', r));
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    const reason = await ended;
    expect(reason).toContain(`127.0.0.1:${deadPort}`);
    expect(reason).not.toContain(key);
    expect(await new Promise((r) => (c.destroyed ? r(true) : c.once('close', () => r(true))))).toBe(true);
    proxy.close();
  });
});
