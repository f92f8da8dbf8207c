/**
 * Feed-key rotation on real NATS (a dedicated nats-server) and real UDP: a mixer rotating every
 * event key each second (250 ms grace, 400 ms overlap), three relays in a chain (fan-out 1), a
 * plain-RTP presenter, plain-RTP viewers on the relay two hops down and on the third relay, whose
 * bus drops every key announcement (the network's misbehaviour) so that it can only learn keys by
 * fetching them when it meets an unknown key id.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NatsBus, type Bus, type BusMessage, type BusSubscription, type KvOptions, type KvStore, type BusStatus } from '@mcu/control';
import { McuNode } from '@mcu/server';
import { buildPli } from '@mcu/rtp';
import { FEED_OVERHEAD_BYTES, FeedCipher, type FeedKey } from '@mcu/relay';
import { MixerRole, RelayRole, requestFeedKeys, type FeedKeyRotationReason } from '../src/index.js';
import { NatsServerProcess } from '../../control/test/natsServer.js';
import { LOOPBACK } from '../../webrtc/test/client.js';
import { SimViewer } from './simViewer.js';
import { sleep, TonePresenter, waitFor } from './harness.js';

const SECRET = 'rotation-test-secret-0123456789abcdef-xyz';
const ADMIN = 'rotation-test-admin-token-0123456789';
const CLUSTER = `kr${Date.now().toString(36)}`;

/** A bus whose subscriptions to key announcements receive them and throw them away (a lossy link). */
class DropAnnouncementsBus implements Bus {
  dropped = 0;
  constructor(readonly inner: Bus) {}
  publish(subject: string, data: Uint8Array | object): void {
    this.inner.publish(subject, data);
  }
  subscribe(subject: string, opts?: { queue?: string; signal?: AbortSignal }): BusSubscription {
    const sub = this.inner.subscribe(subject, opts);
    if (!subject.endsWith('.feedkey.announce')) return sub;
    const self = this;
    return {
      subject: sub.subject,
      unsubscribe: () => sub.unsubscribe(),
      async *[Symbol.asyncIterator](): AsyncIterator<BusMessage> {
        for await (const _m of sub) self.dropped++;
      },
    };
  }
  request(subject: string, data: Uint8Array | object, opts?: { timeoutMs?: number }): Promise<BusMessage> {
    return this.inner.request(subject, data, opts);
  }
  kv(bucket: string, opts?: KvOptions): Promise<KvStore> {
    return this.inner.kv(bucket, opts);
  }
  status(): AsyncIterable<BusStatus> {
    return this.inner.status();
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  get connected(): boolean {
    return this.inner.connected;
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

describe('feed-key rotation: mixer + 3 relays in a chain over NATS and UDP', () => {
  let server: NatsServerProcess;
  let storeDir: string;
  const buses: Bus[] = [];
  let node: McuNode;
  let mixer: MixerRole;
  const relays: RelayRole[] = [];
  let lossy: DropAnnouncementsBus;
  let presenter: TonePresenter | undefined;
  const viewers: SimViewer[] = [];
  let event: { id: string };
  const rotations: { keyId: number; reason: FeedKeyRotationReason; at: number }[] = [];
  let firstKey: FeedKey;

  const connect = () => NatsBus.connect({ servers: server.url, name: 'rotation-test', reconnectTimeWaitMs: 100 }).then((b) => (buses.push(b), b));
  const feedOf = (r: RelayRole) => r.feeds.get(event.id)!;
  const byDepth = (d: number) => relays.find((r) => r.feeds.get(event.id)?.client.assignment?.depth === d)!;

  beforeAll(async () => {
    storeDir = await mkdtemp(join(tmpdir(), 'mcu-keyrot-'));
    server = await NatsServerProcess.start(['-js', '-sd', storeDir]);
    node = new McuNode({ port: 0, adminToken: ADMIN, tokenSecret: SECRET, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses });
    await node.listen();
    mixer = await MixerRole.start({
      node,
      bus: await connect(),
      cluster: CLUSTER,
      nodeId: 'mixer',
      tokenSecret: SECRET,
      relayFanOut: 1,
      feedKeyRotationMs: 1000,
      feedKeyGraceMs: 250,
      feedKeyOverlapMs: 400,
    });
    mixer.on('feedKeyRotated', (_e, keyId, reason) => rotations.push({ keyId, reason, at: performance.now() }));
    lossy = new DropAnnouncementsBus(await connect());
    for (let i = 1; i <= 3; i++) {
      relays.push(await RelayRole.start({ bus: i === 3 ? lossy : await connect(), cluster: CLUSTER, nodeId: `r${i}`, tokenSecret: SECRET, adminToken: ADMIN, feedKeyOverlapMs: 400 }));
    }
  });

  afterAll(async () => {
    await presenter?.stop();
    for (const v of viewers) v.close();
    for (const r of relays) await r.close();
    await mixer?.close();
    await node?.close();
    for (const b of buses) await b.close().catch(() => undefined);
    await server?.kill();
    await rm(storeDir, { recursive: true, force: true });
  });

  it('the feed reaches a chain of three relays, the third one two hops below the first', async () => {
    const res = await fetch(`${node.url}/api/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'rotating' }),
    });
    event = (await res.json()) as typeof event;
    await waitFor(() => mixer.clusteredEvents.includes(event.id), 5000, 'the event to be clustered');
    // The key the feed starts with (the test holds the cluster secret, as a node would).
    const bus = await connect();
    firstKey = (await requestFeedKeys(bus, CLUSTER, SECRET, event.id, { timeoutMs: 1000 }))!.current;
    presenter = await TonePresenter.join(node.url, event.id, ADMIN);
    await waitFor(() => relays.every((r) => (r.feeds.get(event.id)?.forwarder.stats.packetsIn ?? 0) > 10), 8000, 'the feed at every relay');
    expect(relays.map((r) => feedOf(r).client.assignment?.depth).sort()).toEqual([1, 2, 3]);
    expect(byDepth(3)).toBe(relays[2]); // the relay that misses announcements is the leaf
  });

  it('rotating every second for 5 s: viewers two hops down see no gap over 250 ms, every relay moves through ≥ 3 keys; the relay that misses announcements keeps up by fetching', async () => {
    const middle = byDepth(2);
    const leaf = byDepth(3);
    for (const r of [middle, leaf]) {
      for (let i = 0; i < 3; i++) {
        const v = await SimViewer.open({ url: '', token: '' });
        r.addRtpViewer(event.id, '127.0.0.1', v.port);
        viewers.push(v);
      }
    }
    await waitFor(() => viewers.every((v) => v.packets > 5), 3000, 'the viewers to receive');
    for (const v of viewers) v.resetGap();
    const before = relays.map((r) => ({ switches: feedOf(r).forwarder.stats.keySwitches, follower: feedOf(r).keys.stats.switches }));
    const rotationsBefore = rotations.length;
    const mixerKeyBefore = mixer.feedKeyId(event.id);
    await sleep(5000);

    const onMiddle = viewers.slice(0, 3);
    const onLeaf = viewers.slice(3);
    const worstMiddle = Math.max(...onMiddle.map((v) => v.maxGapMs));
    const worstLeaf = Math.max(...onLeaf.map((v) => v.maxGapMs));
    const leafFeed = feedOf(leaf);
    console.log(
      `rotation: ${rotations.length - rotationsBefore} rotations in 5 s; longest viewer gap ${worstMiddle.toFixed(0)} ms two hops down, ` +
        `${worstLeaf.toFixed(0)} ms on the relay without announcements (${leafFeed.keys.stats.fetches} fetches, ` +
        `${leafFeed.forwarder.stats.dropped.unknown_key} unknown_key drops, ${lossy.dropped} announcements dropped)`,
    );
    expect(rotations.length - rotationsBefore).toBeGreaterThanOrEqual(4);
    expect(mixer.feedKeyId(event.id)).not.toBe(mixerKeyBefore);
    expect(worstMiddle).toBeLessThan(250);
    relays.forEach((r, i) => {
      const f = feedOf(r);
      // The key of the packets the relay authenticated moved on at least 3 times.
      expect(f.forwarder.stats.keySwitches - before[i].switches).toBeGreaterThanOrEqual(3);
      expect(f.keys.stats.switches - before[i].follower).toBeGreaterThanOrEqual(3);
      expect(f.forwarder.stats.dropped.bad_tag).toBe(0);
    });
    // The relays that hear announcements never meet a key they do not hold.
    for (const r of [relays[0], middle]) expect(feedOf(r).forwarder.stats.dropped.unknown_key).toBe(0);
    // The leaf heard none: it met each new key id in the feed, dropped (and counted) those packets,
    // fetched the keys, and its viewers went on.
    expect(lossy.dropped).toBeGreaterThanOrEqual(6);
    expect(leafFeed.keys.stats.announcements).toBe(0);
    expect(leafFeed.keys.stats.fetches).toBeGreaterThanOrEqual(3);
    expect(leafFeed.forwarder.stats.dropped.unknown_key).toBeGreaterThan(0);
    expect(worstLeaf).toBeLessThan(1000);
    expect(onLeaf.every((v) => performance.now() - v.lastAt < 100)).toBe(true);
    // Every relay holds the mixer's current key, and the first key is retired everywhere.
    await waitFor(() => relays.every((r) => feedOf(r).forwarder.keyIds.includes(mixer.feedKeyId(event.id)!)), 2000, 'the relays to hold the current key');
    for (const r of relays) expect(feedOf(r).forwarder.keyIds).not.toContain(firstKey.id);
  });

  it('RTCP sealed with a retired key is dropped as unknown_key, a forgery under the current key id as bad_tag, and neither reaches the mixer', async () => {
    const middle = byDepth(2);
    const f = feedOf(middle);
    // A stand-in child of the middle relay (RTCP is accepted from children only).
    const tap = dgram.createSocket('udp4');
    tap.bind(0, '127.0.0.1');
    await once(tap, 'listening');
    f.forwarder.setChildren([...f.forwarder.children, { host: '127.0.0.1', port: tap.address().port }], { replayGop: false });
    try {
      const seal = (key: FeedKey) => {
        const pli = buildPli(0x1234, 0x5678);
        const out = Buffer.alloc(pli.length + FEED_OVERHEAD_BYTES);
        const n = new FeedCipher(key).protectRtcp(pli, pli.length, out);
        return out.subarray(0, n);
      };
      const to = f.forwarder.address;
      const unknownBefore = f.forwarder.stats.dropped.unknown_key;
      const badTagBefore = f.forwarder.stats.dropped.bad_tag;
      const pliBefore = f.forwarder.stats.pliForwarded;
      tap.send(seal(firstKey), to.port, to.host);
      const current = f.keys.current;
      tap.send(seal({ ...current, key: new Uint8Array(16).fill(7) }), to.port, to.host);
      await waitFor(() => f.forwarder.stats.dropped.unknown_key > unknownBefore && f.forwarder.stats.dropped.bad_tag > badTagBefore, 2000, 'both drops to be counted');
      expect(f.forwarder.stats.dropped.unknown_key - unknownBefore).toBe(1);
      expect(f.forwarder.stats.dropped.bad_tag - badTagBefore).toBe(1);
      expect(f.forwarder.stats.pliForwarded).toBe(pliBefore);
      // The drops show on the relay's metrics, by reason.
      const metrics = await (await fetch(`${middle.url}/metrics`)).text();
      expect(metrics).toMatch(/mcu_feed_dropped_total\{reason="unknown_key"\} [1-9]/);
      expect(metrics).toMatch(/mcu_feed_dropped_total\{reason="bad_tag"\} [1-9]/);
    } finally {
      f.forwarder.setChildren(f.client.children.map((c) => c.media), { replayGop: false });
      tap.close();
    }
  });

  it('a relay declared dead: the keys rotate at once, to a key the dead relay never held; the live relays follow', async () => {
    const leaf = byDepth(3);
    const held = new Set(feedOf(leaf).forwarder.keyIds);
    const keyAtCrash = mixer.feedKeyId(event.id)!;
    const dead = new Promise<number>((resolve) => mixer.controller.registry.once('nodeDead', () => resolve(performance.now())));
    const crashedAt = performance.now();
    await leaf.crash();
    relays.splice(relays.indexOf(leaf), 1);
    const deadAt = await dead;
    await waitFor(() => rotations.some((r) => r.reason === 'node_dead'), 2000, 'a rotation for the dead relay');
    const rotation = rotations.find((r) => r.reason === 'node_dead')!;
    console.log(`dead relay: declared dead ${(deadAt - crashedAt).toFixed(0)} ms after the crash, new key in use ${(rotation.at - deadAt).toFixed(0)} ms later`);
    expect(rotation.keyId).not.toBe(keyAtCrash);
    expect(held.has(rotation.keyId)).toBe(false);
    // The grace period only: the rotation started when the relay was declared dead.
    expect(rotation.at - deadAt).toBeLessThan(250 + 150);
    await waitFor(() => relays.every((r) => feedOf(r).forwarder.feedKeyId !== keyAtCrash && feedOf(r).keys.keyId === mixer.feedKeyId(event.id)), 2000, 'the live relays to follow');
  });
});
