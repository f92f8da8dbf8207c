import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { FEED_OVERHEAD_BYTES, FeedCipher, RelayForwarder, totalDropped, type FeedKey } from '../src/index.js';
import { makeKey, mulberry32, PlainReceiver, RecordingSink, sleep, STREAMS, SyntheticFeed, waitFor } from './helpers.js';

const HOST = '127.0.0.1';
const key = makeKey(1);
const closers: Array<{ close(): void }> = [];
afterEach(() => {
  for (const c of closers.splice(0)) c.close();
});

function track<T extends { close(): void }>(x: T): T {
  closers.push(x);
  return x;
}

async function udp(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, HOST, r));
  closers.push({ close: () => s.close() });
  return s;
}

/** A stand-in parent whose bytes the test controls. */
async function setup(onUnknownKey?: (keyId: number) => void) {
  const parent = await udp();
  const cipher = new FeedCipher(key);
  const relay = track(await RelayForwarder.open({ bindHost: HOST, parent: { host: HOST, port: parent.address().port }, key, streams: STREAMS, onUnknownKey }));
  const child = track(await PlainReceiver.open(key));
  relay.setChildren([child.address]);
  const sink = new RecordingSink();
  relay.addConsumer(sink);
  const feed = new SyntheticFeed({ seed: 9 });
  const protect = (p: Buffer) => {
    const out = Buffer.alloc(p.length + FEED_OVERHEAD_BYTES);
    cipher.protect(p, p.length, out);
    return out;
  };
  const to = relay.address;
  const sendFrom = (s: dgram.Socket, b: Buffer) => s.send(b, to.port, to.host);
  return { parent, relay, child, sink, feed, protect, sendFrom, cipher };
}

describe('relay security', () => {
  it('a flipped bit is dropped as bad_tag, a stranger as unknown_source, a replay as replay; nothing of them is forwarded', async () => {
    const { parent, relay, child, sink, feed, protect, sendFrom } = await setup();
    const stranger = await udp();
    const good = protect(feed.audio());
    sendFrom(parent, good);
    await waitFor(() => child.plaintexts.length === 1);

    const tampered = protect(feed.audio());
    tampered[tampered.length - 30] ^= 0x01;
    sendFrom(parent, tampered);
    const fromStranger = protect(feed.audio());
    sendFrom(stranger, fromStranger);
    sendFrom(parent, good); // replay
    await waitFor(() => totalDropped(relay.stats) >= 3);
    await sleep(30);

    expect(relay.stats.dropped.bad_tag).toBe(1);
    expect(relay.stats.dropped.unknown_source).toBe(1);
    expect(relay.stats.dropped.replay).toBe(1);
    expect(child.plaintexts.length).toBe(1);
    expect(sink.packets.length).toBe(1);
    // Feedback from a stranger is refused as well.
    const rtcpLike = Buffer.alloc(40);
    rtcpLike[0] = 0x81;
    rtcpLike[1] = 206;
    sendFrom(stranger, rtcpLike);
    await waitFor(() => relay.stats.dropped.unknown_source === 2);
    expect(relay.stats.dropped.unknown_source).toBe(2);
  });

  it('key rotation on the wire: the next key opens before the switch, a retired key is dropped as unknown_key (and reported), a forgery under a known id as bad_tag', async () => {
    const unknown: number[] = [];
    const { parent, relay, child, sink, feed, protect, sendFrom, cipher } = await setup((id) => unknown.push(id));
    const key2 = makeKey(2);
    // The child is a plain receiver that learnt key 2 as well (it decrypts what is forwarded).
    child.setKeys(key2, [key]);
    // Announced: the relay accepts key 2 while still sealing its own RTCP with key 1.
    relay.setKeys(key, [key2]);
    sendFrom(parent, protect(feed.audio()));
    cipher.setKeys(key2, [key]); // the mixer switches
    sendFrom(parent, protect(feed.audio()));
    await waitFor(() => sink.packets.length === 2);
    expect(relay.feedKeyId).toBe(2);
    expect(relay.stats.keySwitches).toBe(1);
    // The relay switches too, and the overlap ends: key 1 is retired.
    relay.setKeys(key2);
    expect(relay.keyIds).toEqual([2]);
    const sealWith = (k: FeedKey) => {
      const p = feed.audio();
      const out = Buffer.alloc(p.length + FEED_OVERHEAD_BYTES);
      new FeedCipher(k).protect(p, p.length, out);
      return out;
    };
    sendFrom(parent, sealWith(key)); // retired
    sendFrom(parent, sealWith({ ...makeKey(9), id: 2 })); // forged under the current id
    await waitFor(() => relay.stats.dropped.unknown_key === 1 && relay.stats.dropped.bad_tag === 1);
    expect(unknown).toEqual([1]);
    sendFrom(parent, protect(feed.audio()));
    await waitFor(() => sink.packets.length === 3);
    await sleep(30);
    // Neither refused packet was forwarded nor handed to consumers.
    expect(child.plaintexts.length).toBe(3);
    expect(child.drops).toEqual([]);
  });

  it('10 000 random datagrams from the parent, a child and a stranger never throw, and forwarding goes on', async () => {
    const { parent, relay, child, sink, feed, protect, sendFrom } = await setup();
    const stranger = await udp();
    const rnd = mulberry32(1234);
    const sources = [parent, child.socket, stranger];
    const total = 10_000;
    for (let i = 0; i < total; i++) {
      const len = Math.floor(rnd() * (i % 10 === 0 ? 1700 : 200));
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = Math.floor(rnd() * 256);
      const shape = i % 4;
      if (len >= 2 && shape === 1) b[0] = 0x80 | (b[0] & 0x3f); // RTP-looking
      if (len >= 2 && shape === 2) {
        b[0] = 0x80 | (b[0] & 0x1f); // RTCP-looking
        b[1] = 200 + (b[1] % 7);
      }
      if (len >= 12 && shape === 3) {
        // A real header with a garbage body, length and trailer.
        const real = protect(feed.audio());
        real.copy(b, 0, 0, 12);
      }
      sendFrom(sources[i % 3], b);
      // Let the relay (same process) catch up, so the kernel buffer never overflows.
      if (i % 200 === 199) await waitFor(() => relay.stats.packetsIn >= i + 1, 2000);
    }
    await waitFor(() => relay.stats.packetsIn >= total, 5000);

    // Forwarding still works afterwards.
    const before = child.plaintexts.length;
    for (let i = 0; i < 10; i++) sendFrom(parent, protect(feed.audio()));
    await waitFor(() => child.plaintexts.length >= before + 10, 2000);
    expect(child.plaintexts.length - before).toBe(10);
    expect(sink.packets.length).toBeGreaterThanOrEqual(10);
    expect(relay.stats.packetsIn).toBe(total + 10);
    expect(totalDropped(relay.stats)).toBe(total); // every random datagram was refused and counted
    expect(relay.stats.dropped.unknown_source).toBeGreaterThan(0);
    expect(relay.stats.dropped.bad_tag + relay.stats.dropped.too_short + relay.stats.dropped.bad_header).toBeGreaterThan(0);
  });
});
