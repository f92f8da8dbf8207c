import { afterEach, describe, expect, it } from 'vitest';
import { MixerEvent } from '../src/index.js';
import { pace, RtpPeer, sleep, tonePower } from './peer.js';

const EXT = 1;
let event: MixerEvent | null = null;
const peers: RtpPeer[] = [];

async function join(ev: MixerEvent, opts: Parameters<typeof RtpPeer.open>[0] = {}) {
  const peer = await RtpPeer.open(opts);
  const info = await ev.addRtpParticipant({ host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: opts?.audioLevelExtId });
  peer.connect(info.host, info.port);
  peers.push(peer);
  return { peer, info };
}

afterEach(() => {
  event?.close();
  event = null;
  for (const p of peers.splice(0)) p.close();
});

describe('audio mix over real UDP', () => {
  it("a speaker hears the other speaker and not itself; a listener hears both", async () => {
    event = new MixerEvent({ id: 'mix', maxSpeakers: 3 });
    const a = await join(event, { freq: 440, audioLevelExtId: EXT });
    const b = await join(event, { freq: 1250, audioLevelExtId: EXT });
    const listener = await join(event, { freq: 0, audioLevelExtId: EXT });
    await pace([a.peer, b.peer, listener.peer], 2000);
    await sleep(100);
    expect(event.mixer.speakerIds.sort()).toEqual([a.info.id, b.info.id].sort());

    // Look at the last second, once selection and jitter buffers have settled.
    const last = (p: RtpPeer) => p.decodeReceived(Math.max(0, p.received.length - 50));
    const aHears = last(a.peer);
    const bHears = last(b.peer);
    const lHears = last(listener.peer);
    expect(aHears.length).toBeGreaterThan(40 * 960);
    // A's mix-minus: B's tone, at least 20 dB above any trace of A's own tone.
    expect(tonePower(aHears, 1250)).toBeGreaterThan(100 * tonePower(aHears, 440));
    expect(tonePower(bHears, 440)).toBeGreaterThan(100 * tonePower(bHears, 1250));
    // The listener's shared mix carries both tones at comparable strength.
    const l440 = tonePower(lHears, 440);
    const l1250 = tonePower(lHears, 1250);
    expect(l440).toBeGreaterThan(1000);
    expect(l1250).toBeGreaterThan(1000);
    expect(l440 / l1250).toBeGreaterThan(0.25);
    expect(l440 / l1250).toBeLessThan(4);
    // CSRCs name the contributing speakers (RFC 3550 §5.1), never the recipient itself.
    const aCsrcs = new Set(a.peer.received.slice(-10).flatMap((r) => r.csrcs));
    expect(aCsrcs.has(b.peer.ssrc)).toBe(true);
    expect(aCsrcs.has(a.peer.ssrc)).toBe(false);
    const lCsrcs = new Set(listener.peer.received.slice(-10).flatMap((r) => r.csrcs));
    expect(lCsrcs).toEqual(new Set([a.peer.ssrc, b.peer.ssrc]));
    // Silent participants with levels were never decoded: only the two speakers' frames were.
    const info = event.participants().find((p) => p.id === listener.info.id)!;
    expect(info.stats.decoded).toBe(0);
    // N_speakers + 1 encodes per tick, not N.
    const s = event.stats();
    expect(s.mixer.encodes / s.mixer.ticks).toBeLessThanOrEqual(3.01);
  });

  it('selects speakers from decoded energy when the level extension is absent', async () => {
    event = new MixerEvent({ id: 'nolevels', maxSpeakers: 1 });
    const talker = await join(event, { freq: 700 });
    const quiet = await join(event, { freq: 0 });
    await pace([talker.peer, quiet.peer], 1200);
    expect(event.mixer.speakerIds).toEqual([talker.info.id]);
    const heard = quiet.peer.decodeReceived(Math.max(0, quiet.peer.received.length - 25));
    expect(tonePower(heard, 700)).toBeGreaterThan(1000);
  });

  it('keeps the output stream continuous across speaker changes', async () => {
    event = new MixerEvent({ id: 'cont', maxSpeakers: 1 });
    const a = await join(event, { freq: 500, audioLevelExtId: EXT });
    const b = await join(event, { freq: 0, audioLevelExtId: EXT });
    await pace([a.peer, b.peer], 800);
    // B starts talking and A stops: A goes from speaker (mix-minus) to the shared mix.
    a.peer.opts.freq = 0;
    b.peer.opts.freq = 900;
    await pace([a.peer, b.peer], 2500);
    expect(event.mixer.speakerIds).toEqual([b.info.id]);
    for (const p of [a.peer, b.peer]) {
      const r = p.received;
      expect(new Set(r.map((x) => x.ssrc)).size).toBe(1);
      let skippedTicks = 0;
      for (let i = 1; i < r.length; i++) {
        expect((r[i].seq - r[i - 1].seq) & 0xffff).toBe(1);
        // Timestamps follow the mixing clock: one frame per packet, more only if a tick was skipped.
        const dt = (r[i].ts - r[i - 1].ts) >>> 0;
        expect(dt % 960).toBe(0);
        expect(dt).toBeGreaterThanOrEqual(960);
        if (dt !== 960) skippedTicks++;
      }
      expect(skippedTicks).toBeLessThanOrEqual(2);
    }
    expect(tonePower(a.peer.decodeReceived(a.peer.received.length - 25), 900)).toBeGreaterThan(1000);
  });
});
