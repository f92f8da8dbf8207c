import dgram from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { FeedSender, RelayForwarder } from '../src/index.js';
import { makeKey, PlainReceiver, sleep, STREAMS, SyntheticFeed, VIDEO_SSRC, waitFor } from './helpers.js';

const HOST = '127.0.0.1';
const key = makeKey(1);

function resources(): { timers: number; udp: number } {
  const info = process.getActiveResourcesInfo();
  return { timers: info.filter((r) => r === 'Timeout').length, udp: info.filter((r) => r === 'UDPWrap' || r === 'UDPWRAP').length };
}

/** Resources once sockets closed by earlier tests are gone (a close completes on a later tick). */
async function settledResources(): Promise<{ timers: number; udp: number }> {
  let last = resources();
  for (let i = 0; i < 20; i++) {
    await sleep(10);
    const now = resources();
    if (now.udp === last.udp && now.timers === last.timers) return now;
    last = now;
  }
  return last;
}

/**
 * Once the sockets are closed (a close completes on a later tick), no more timers may be open than at
 * `baseline`, at once (a leaked timer would fire later, so waiting would hide it). Fewer is fine: the
 * test runner's own timers (its batched reports to the main process) come and go in
 * getActiveResourcesInfo, and one alive at the baseline that has fired since is not ours (a flake
 * under load: timers 1 → 0).
 */
async function expectNothingBeyond(baseline: { timers: number; udp: number }): Promise<void> {
  await waitFor(() => resources().udp <= baseline.udp, 1000);
  expect(resources().udp).toBe(baseline.udp);
  expect(resources().timers).toBeLessThanOrEqual(baseline.timers);
}

async function canBind(port: number): Promise<boolean> {
  const s = dgram.createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(port, HOST, () => resolve());
    });
    return true;
  } catch {
    return false;
  } finally {
    s.close();
  }
}

describe('lifecycle', () => {
  it('close() frees the sockets and every timer (pending NACKs, absorbed keyframe requests), is idempotent and emits close once', async () => {
    const baseline = await settledResources();
    const mixer = await FeedSender.open({ bindHost: HOST, key, streams: STREAMS });
    const relay = await RelayForwarder.open({ bindHost: HOST, parent: mixer.address, key, streams: STREAMS });
    const child = await PlainReceiver.open(key);
    mixer.setChildren([relay.address]);
    relay.setChildren([child.address]);

    // Leave work in flight: a gap (NACK timer) and absorbed keyframe requests (trailing timer).
    const feed = new SyntheticFeed();
    mixer.send(feed.audio());
    feed.audio(); // never sent: a gap
    mixer.send(feed.audio());
    for (const p of feed.videoFrame()) mixer.send(p);
    await waitFor(() => relay.stats.nackSent > 0, 1000);
    relay.requestKeyframe(VIDEO_SSRC);
    relay.requestKeyframe(VIDEO_SSRC);
    mixer.setChildren([relay.address]);
    expect(resources().udp).toBeGreaterThan(baseline.udp);
    expect(resources().timers).toBeGreaterThanOrEqual(baseline.timers + 2); // NACK retry + trailing keyframe request

    let closes = 0;
    relay.on('close', () => closes++);
    mixer.on('close', () => closes++);
    const relayPort = relay.address.port;
    const mixerPort = mixer.address.port;
    relay.close();
    relay.close();
    mixer.close();
    mixer.close();
    child.close();
    expect(closes).toBe(2);
    expect(relay.closed).toBe(true);

    await expectNothingBeyond(baseline);
    expect(await canBind(relayPort)).toBe(true);
    expect(await canBind(mixerPort)).toBe(true);
    // Calls after close are harmless no-ops.
    relay.requestKeyframe(VIDEO_SSRC);
    relay.addConsumer({ onRtp: () => undefined });
    expect(mixer.send(feed.audio())).toBe(false);
    expect(resources().timers).toBeLessThanOrEqual(baseline.timers);
  });

  it('open() fails cleanly when the port is taken, leaving nothing behind', async () => {
    const taken = dgram.createSocket('udp4');
    await new Promise<void>((r) => taken.bind(0, HOST, r));
    const baseline = await settledResources();
    await expect(RelayForwarder.open({ bindHost: HOST, bindPort: taken.address().port, parent: { host: HOST, port: 9 }, key })).rejects.toThrow();
    await expectNothingBeyond(baseline);
    taken.close();
  });

  it('rejects invalid endpoints at the API edge', async () => {
    await expect(RelayForwarder.open({ bindHost: HOST, parent: { host: 'example.com', port: 5000 }, key })).rejects.toThrow(RangeError);
    const relay = await RelayForwarder.open({ bindHost: HOST, parent: { host: HOST, port: 5000 }, key });
    expect(() => relay.setChildren([{ host: HOST, port: 0 }])).toThrow(RangeError);
    expect(() => relay.setParent({ host: '::1x', port: 1 })).toThrow(RangeError);
    relay.close();
  });
});
