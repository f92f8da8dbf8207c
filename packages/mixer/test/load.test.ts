import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { buildRtp, audioLevelExtension } from '@mcu/rtp';
import { MixerEvent } from '../src/index.js';
import { pace, RtpPeer, sleep, tonePower } from './peer.js';

let event: MixerEvent | null = null;
const peers: RtpPeer[] = [];

afterEach(() => {
  event?.close();
  event = null;
  for (const p of peers.splice(0)) p.close();
});

async function join(ev: MixerEvent, opts: Parameters<typeof RtpPeer.open>[0] = {}) {
  const peer = await RtpPeer.open(opts);
  const info = await ev.addRtpParticipant({ host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: opts.audioLevelExtId });
  peer.connect(info.host, info.port);
  peers.push(peer);
  return { peer, info };
}

/** A seeded generator so that a failure can be replayed. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('mixer under load and bad networks', () => {
  it('50 participants for 5 s: each receives ≥ 95 % of its packets with continuous sequence numbers', async () => {
    event = new MixerEvent({ id: 'fifty', maxSpeakers: 3 });
    const all: RtpPeer[] = [];
    for (let i = 0; i < 50; i++) {
      const talking = i < 3;
      all.push((await join(event, { freq: talking ? 300 + i * 200 : 0, audioLevelExtId: 1 })).peer);
    }
    const marks = all.map((p) => p.received.length);
    const t0 = performance.now();
    await pace(all, 5000);
    const elapsed = performance.now() - t0;
    const expected = elapsed / 20;
    for (const [i, p] of all.entries()) {
      const got = p.received.slice(marks[i]);
      expect(got.length).toBeGreaterThanOrEqual(0.95 * expected);
      let gaps = 0;
      for (let k = 1; k < got.length; k++) if (((got[k].seq - got[k - 1].seq) & 0xffff) !== 1) gaps++;
      expect(gaps).toBe(0);
    }
    expect(event.mixer.speakerIds).toHaveLength(3);
    expect(event.stats().mixer.tickErrors).toBe(0);
  });

  it('10 % loss and reordering on input: the output stays continuous and FEC/PLC do the work', async () => {
    event = new MixerEvent({ id: 'lossy', maxSpeakers: 2 });
    const random = lcg(7);
    const a = await join(event, { freq: 440, audioLevelExtId: 1, loss: 0.1, reorder: 0.1, random });
    const b = await join(event, { freq: 0, audioLevelExtId: 1, loss: 0.1, reorder: 0.1, random });
    await pace([a.peer, b.peer], 3000);
    await sleep(60);
    const infoA = event.participants().find((p) => p.id === a.info.id)!;
    expect(infoA.stats.jitter.lost).toBeGreaterThan(5);
    expect(infoA.stats.fecRecovered + infoA.stats.concealed).toBeGreaterThan(5);
    // B hears A's tone continuously: no gap in its stream, and the tone is there in every 200 ms block.
    const r = b.peer.received;
    for (let k = 1; k < r.length; k++) expect((r[k].seq - r[k - 1].seq) & 0xffff).toBe(1);
    const pcm = b.peer.decodeReceived(r.length - 100);
    for (let blk = 0; blk + 9600 <= pcm.length; blk += 9600) {
      expect(tonePower(pcm.subarray(blk, blk + 9600), 440)).toBeGreaterThan(1000);
    }
  });

  it('a fuzz of 100,000 random and mutated packets never stops the mix, and every drop is counted', async () => {
    event = new MixerEvent({ id: 'fuzz', maxSpeakers: 2 });
    const talker = await join(event, { freq: 600, audioLevelExtId: 1 });
    const listener = await join(event, { freq: 0, audioLevelExtId: 1 });
    // The attacker sends from the talker's own address (passes the source check) and from an unknown one.
    const stranger = dgram.createSocket('udp4');
    stranger.bind(0, '127.0.0.2');
    await once(stranger, 'listening');
    const random = lcg(1234);
    const valid = buildRtp(
      { payloadType: 111, sequenceNumber: 1, timestamp: 1, ssrc: 99, extensions: [audioLevelExtension(5, true, 1)] },
      Buffer.from([0xfc, 0xff, 0xfe]),
    );
    const mutate = (): Buffer => {
      const kind = random();
      if (kind < 0.4) {
        const b = Buffer.alloc(Math.floor(random() * 200));
        for (let i = 0; i < b.length; i++) b[i] = Math.floor(random() * 256);
        if (b.length > 0 && random() < 0.5) b[0] = 0x80 | (b[0] & 0x3f); // looks like RTP v2
        return b;
      }
      const b = Buffer.from(valid);
      const flips = 1 + Math.floor(random() * 4);
      for (let i = 0; i < flips; i++) b[Math.floor(random() * b.length)] = Math.floor(random() * 256);
      if (random() < 0.3) return b.subarray(0, Math.floor(random() * b.length));
      return b;
    };
    const before = event.drops.total;
    const received = () => listener.peer.received.length;
    const listenStart = received();
    const fuzzStart = performance.now();
    let sent = 0;
    const talk = pace([talker.peer, listener.peer], 4000);
    while (sent < 100_000) {
      for (let i = 0; i < 400 && sent < 100_000; i++, sent++) {
        const pkt = mutate();
        if (sent % 10 === 0) stranger.send(pkt, talker.info.port, '127.0.0.1');
        else talker.peer.sendRaw(pkt);
      }
      await new Promise((r) => setImmediate(r));
    }
    await talk;
    const fuzzMs = performance.now() - fuzzStart;
    stranger.close();
    const s = event.stats();
    expect(s.mixer.tickErrors).toBe(0);
    expect(event.drops.total - before).toBeGreaterThan(10_000);
    expect(event.drops.get('unknown_source')).toBeGreaterThan(1000);
    // The mix kept flowing to the listener during the whole fuzz (≥ 80 % of real time at 50 pkt/s).
    expect(received() - listenStart).toBeGreaterThanOrEqual(0.8 * (fuzzMs / 20));
    // And still carries the talker's tone afterwards.
    await pace([talker.peer, listener.peer], 1500);
    const heard = listener.peer.decodeReceived(listener.peer.received.length - 25);
    expect(tonePower(heard, 600)).toBeGreaterThan(1000);
  });
});
