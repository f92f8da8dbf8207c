import { afterEach, describe, expect, it } from 'vitest';
import { buildFir, buildPli, isKeyframePacket, parseRtp, RtpHeader, seqDiff } from '@mcu/rtp';
import { FeedSender, RelayForwarder } from '../src/index.js';
import { AUDIO_SSRC, makeKey, PlainReceiver, playFeed, RecordingSink, sleep, STREAMS, SyntheticFeed, VIDEO_SSRC, waitFor } from './helpers.js';

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

async function chain() {
  const mixer = track(await FeedSender.open({ bindHost: HOST, key, streams: STREAMS }));
  const a = track(await RelayForwarder.open({ bindHost: HOST, parent: mixer.address, key, streams: STREAMS }));
  const b = track(await RelayForwarder.open({ bindHost: HOST, parent: a.address, key, streams: STREAMS }));
  mixer.setChildren([a.address]);
  a.setChildren([b.address]);
  return { mixer, a, b };
}

describe('keyframe requests', () => {
  it('PLIs from 100 consumers within 100 ms reach the mixer as one request per 500 ms', async () => {
    const { mixer, a, b } = await chain();
    const consumers = await Promise.all(Array.from({ length: 20 }, () => PlainReceiver.open(key)));
    consumers.forEach(track);
    b.setChildren(consumers.map((c) => c.address));
    const feed = new SyntheticFeed({ keyframeEveryFrames: 1_000_000 });
    // A few packets so the streams exist along the chain.
    await playFeed(feed, (p) => mixer.send(p), 100);

    const requestsAtMixer: number[] = [];
    const t0 = performance.now();
    mixer.on('keyframeRequest', (ssrc) => {
      expect(ssrc).toBe(VIDEO_SSRC);
      requestsAtMixer.push(performance.now() - t0);
      // The encoder answers with a keyframe.
      for (const p of feed.videoFrame()) mixer.send(p);
    });
    // 100 requests spread over 100 ms: 20 consumers × 5, PLI and FIR mixed.
    for (let round = 0; round < 5; round++) {
      consumers.forEach((c, i) => {
        const rtcp = i % 4 === 0 ? buildFir(1000 + i, [{ ssrc: VIDEO_SSRC, seqNr: round }]) : buildPli(1000 + i, VIDEO_SSRC);
        c.sendRtcp(rtcp, b.address);
      });
      await sleep(20);
    }
    await waitFor(() => b.stats.pliSuppressed >= 99, 2000);
    await sleep(1200 - (performance.now() - t0));

    // 1 forwarded at once + 99 absorbed (+ possibly 1 trailing request for the absorbed ones).
    expect(b.stats.pliSuppressed).toBe(99);
    // One at once; the requests that came after its keyframe had passed get one more, 500 ms later.
    expect(requestsAtMixer.filter((t) => t < 450).length).toBe(1);
    expect(requestsAtMixer.length).toBeLessThanOrEqual(2);
    // 500 ms apart at the relay; seen at the mixer's socket with a few ms of event-loop jitter.
    for (let i = 1; i < requestsAtMixer.length; i++) expect(requestsAtMixer[i] - requestsAtMixer[i - 1]).toBeGreaterThanOrEqual(490);
    expect(b.stats.pliForwarded).toBe(requestsAtMixer.length);
    expect(a.stats.pliForwarded).toBe(requestsAtMixer.length);
  });

  it('requestKeyframe from local consumers is aggregated the same way', async () => {
    const { mixer, b } = await chain();
    let atMixer = 0;
    mixer.on('keyframeRequest', () => atMixer++);
    for (let i = 0; i < 100; i++) b.requestKeyframe(VIDEO_SSRC);
    await waitFor(() => atMixer > 0, 1000);
    await sleep(100);
    expect(atMixer).toBe(1);
    expect(b.stats.pliSuppressed).toBe(99);
  });
});

describe('GOP cache', () => {
  it('a consumer attached mid-stream gets the cached keyframe packets first, then the live stream without a gap', async () => {
    const { mixer, b } = await chain();
    const feed = new SyntheticFeed({ keyframeEveryFrames: 30, keyframePackets: 8, packetsPerFrame: 3 });
    const early = new RecordingSink();
    b.addConsumer(early);
    const sent = await playFeed(feed, (p) => mixer.send(p), 1400); // keyframes at 0 ms and 1000 ms
    await waitFor(() => early.packets.length >= sent.length, 1000);

    const late = new RecordingSink();
    b.addConsumer(late);
    expect(b.stats.gopBytes).toBeGreaterThan(0);
    const header = new RtpHeader();
    expect(parseRtp(late.packets[0], header)).toBeNull();
    expect(header.ssrc).toBe(VIDEO_SSRC);
    expect(isKeyframePacket(late.packets[0], 'vp8', header.payloadOffset, header.payloadLength)).toBe(true);
    // It is the latest keyframe, not the first one.
    const videoSent = sent.filter((p) => p.readUInt32BE(8) === VIDEO_SSRC);
    const keyframeStarts = videoSent.filter((p) => {
      const h = new RtpHeader();
      parseRtp(p, h);
      return isKeyframePacket(p, 'vp8', h.payloadOffset, h.payloadLength);
    });
    expect(keyframeStarts.length).toBe(2);
    expect(late.packets[0].equals(keyframeStarts[1])).toBe(true);
    const replayed = late.packets.length;
    expect(late.ssrcs.every((s) => s === VIDEO_SSRC)).toBe(true); // only video is cached
    expect(replayed).toBe(videoSent.length - videoSent.indexOf(keyframeStarts[1]));

    // The live stream follows on without a gap.
    await playFeed(feed, (p) => mixer.send(p), 300);
    await sleep(50);
    const videoSeqs = late.seqs.filter((_, i) => late.ssrcs[i] === VIDEO_SSRC);
    for (let i = 1; i < videoSeqs.length; i++) expect(seqDiff(videoSeqs[i], videoSeqs[i - 1])).toBe(1);
    expect(late.ssrcs.includes(AUDIO_SSRC)).toBe(true);
  });

  it('a new child relay gets the cached group of pictures (protected) as soon as it is added', async () => {
    const { mixer, b } = await chain();
    const feed = new SyntheticFeed({ keyframeEveryFrames: 30, keyframePackets: 5 });
    await playFeed(feed, (p) => mixer.send(p), 500);
    await sleep(30);
    const child = track(await PlainReceiver.open(key));
    b.setChildren([child.address]);
    await waitFor(() => child.plaintexts.length > 0, 1000);
    await sleep(30);
    const h = new RtpHeader();
    parseRtp(child.plaintexts[0], h);
    expect(h.ssrc).toBe(VIDEO_SSRC);
    expect(isKeyframePacket(child.plaintexts[0], 'vp8', h.payloadOffset, h.payloadLength)).toBe(true);
    expect(child.drops).toEqual([]);
  });
});
