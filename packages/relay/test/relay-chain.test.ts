import { afterEach, describe, expect, it } from 'vitest';
import { buildSenderReport } from '@mcu/rtp';
import { FeedSender, RelayForwarder } from '../src/index.js';
import { AUDIO_SSRC, LossyHop, makeKey, packetId, PlainReceiver, playFeed, RecordingSink, sleep, STREAMS, SyntheticFeed, VIDEO_SSRC, waitFor } from './helpers.js';

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

/** Every sent packet arrived exactly once and byte for byte. */
function expectExactlyOnce(sent: readonly Buffer[], got: readonly Buffer[]): void {
  const byId = new Map(sent.map((p) => [packetId(p), p]));
  const seen = new Set<string>();
  for (const p of got) {
    const id = packetId(p);
    expect(seen.has(id), `duplicate ${id}`).toBe(false);
    seen.add(id);
    expect(byId.get(id)?.equals(p), `bytes of ${id}`).toBe(true);
  }
  expect(seen.size).toBe(sent.length);
}

describe('relay chain over UDP: mixer → relay A → relay B → 20 receivers', () => {
  it('every receiver gets every packet exactly once, bytes and sequence numbers unchanged end to end', async () => {
    const mixer = track(await FeedSender.open({ bindHost: HOST, key, streams: STREAMS }));
    const a = track(await RelayForwarder.open({ bindHost: HOST, parent: mixer.address, key, streams: STREAMS }));
    const b = track(await RelayForwarder.open({ bindHost: HOST, parent: a.address, key, streams: STREAMS }));
    const receivers = await Promise.all(Array.from({ length: 20 }, () => PlainReceiver.open(key)));
    receivers.forEach(track);
    mixer.setChildren([a.address]);
    a.setChildren([b.address]);
    b.setChildren(receivers.map((r) => r.address));
    const atB = new RecordingSink();
    b.addConsumer(atB);

    const feed = new SyntheticFeed({ keyframeEveryFrames: 30, packetsPerFrame: 3, keyframePackets: 8, videoBytes: 1000 });
    const sent = await playFeed(feed, (p) => mixer.send(p), 2000);
    expect(sent.length).toBeGreaterThan(250);
    await waitFor(() => receivers.every((r) => r.plaintexts.length >= sent.length) && atB.packets.length >= sent.length, 3000);
    await sleep(50); // time for a duplicate to show up, were there one

    for (const r of receivers) {
      expect(r.drops).toEqual([]);
      expectExactlyOnce(sent, r.plaintexts);
    }
    expectExactlyOnce(sent, atB.packets);
    expect(a.stats.packetsOut).toBe(sent.length);
    expect(b.stats.packetsOut).toBe(sent.length * 20);
    expect(a.stats.dropped.bad_tag + b.stats.dropped.bad_tag + b.stats.dropped.unknown_source).toBe(0);
    expect(b.stats.nackSent).toBe(0);
    expect(b.receiverStats(VIDEO_SSRC)?.cumulativeLost).toBe(0);

    // RTCP from the mixer (sender reports, for lip sync downstream) travels the same tree.
    mixer.sendRtcp(buildSenderReport({ ssrc: AUDIO_SSRC, ntpSec: 1, ntpFrac: 2, rtpTimestamp: 3, packetCount: 4, octetCount: 5 }));
    expect(await waitFor(() => receivers.every((r) => r.rtcpIn === 1), 1000)).toBe(true);
  });

  it('5 % loss between A and B is repaired by NACKs answered from A’s retransmission buffer', async () => {
    const mixer = track(await FeedSender.open({ bindHost: HOST, key, streams: STREAMS }));
    const a = track(await RelayForwarder.open({ bindHost: HOST, parent: mixer.address, key, streams: STREAMS }));
    const hop = track(await LossyHop.open(a.address, { host: HOST, port: 1 }, 0.05));
    const b = track(await RelayForwarder.open({ bindHost: HOST, parent: hop.address, key, streams: STREAMS }));
    hop.downstream = b.address;
    const viewer = track(await PlainReceiver.open(key));
    mixer.setChildren([a.address]);
    a.setChildren([hop.address]);
    b.setChildren([viewer.address]);
    const atB = new RecordingSink();
    b.addConsumer(atB);

    const sent = await playFeed(new SyntheticFeed({ seed: 3 }), (p) => mixer.send(p), 2000);
    await waitFor(() => atB.packets.length >= sent.length, 2000);
    await sleep(50);

    expect(hop.droppedDown).toBeGreaterThan(sent.length * 0.02);
    expect(b.stats.nackSent).toBeGreaterThan(0);
    expect(b.stats.recovered).toBeGreaterThan(0);
    expect(a.stats.retransmitted).toBeGreaterThan(0);
    expect(a.stats.nackReceived).toBeGreaterThan(0);
    expect(atB.packets.length / sent.length).toBeGreaterThanOrEqual(0.999);
    expectExactlyOnce(sent, atB.packets); // recovered packets come once, never twice
    // B forwards what it recovered, so its children see no loss either.
    expect(new Set(viewer.plaintexts.map(packetId)).size / sent.length).toBeGreaterThanOrEqual(0.999);
    // The mixer was not bothered: A answered every NACK itself.
    expect(mixer.stats.nackReceived).toBe(0);
  });

  it('setParent mid-stream: B switches from A1 to A2 and forwarding continues without loss', async () => {
    const mixer = track(await FeedSender.open({ bindHost: HOST, key, streams: STREAMS }));
    const a1 = track(await RelayForwarder.open({ bindHost: HOST, parent: mixer.address, key, streams: STREAMS }));
    const a2 = track(await RelayForwarder.open({ bindHost: HOST, parent: mixer.address, key, streams: STREAMS }));
    const b = track(await RelayForwarder.open({ bindHost: HOST, parent: a1.address, key, streams: STREAMS }));
    const viewer = track(await PlainReceiver.open(key));
    mixer.setChildren([a1.address, a2.address]);
    a1.setChildren([b.address]);
    b.setChildren([viewer.address]);
    const atB = new RecordingSink();
    b.addConsumer(atB);

    const feed = new SyntheticFeed({ seed: 5 });
    const switchAt = setTimeout(() => {
      // Tree healing: A1 is going away; B is re-parented under A2.
      a1.setChildren([]);
      a2.setChildren([b.address], { replayGop: false });
      b.setParent(a2.address);
    }, 700);
    closers.push({ close: () => clearTimeout(switchAt) });
    const sent = await playFeed(feed, (p) => mixer.send(p), 1500);
    await waitFor(() => atB.packets.length >= sent.length, 2000);
    await sleep(30);

    expect(b.parent).toEqual(a2.address);
    expectExactlyOnce(sent, atB.packets);
    expectExactlyOnce(sent, viewer.plaintexts);
    expect(a2.stats.packetsOut).toBeGreaterThan(0);
    // After the switch, the old parent's packets would be strangers.
    const before = b.stats.dropped.unknown_source;
    a1.setChildren([b.address], { replayGop: false });
    mixer.send(feed.audio());
    await waitFor(() => b.stats.dropped.unknown_source > before, 1000);
    expect(b.stats.dropped.unknown_source).toBeGreaterThan(before);
  });
});
