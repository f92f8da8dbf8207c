/**
 * Program video down the relay tree, and several clustered events at once, on real NATS (a
 * dedicated nats-server), real UDP and real ffmpeg: one mixer and two relays (fan-out 1, so the
 * second relay is fed by the first). A werift WHIP presenter sends a red VP8 clip and a 440 Hz
 * tone into event A; werift WHEP viewers placed through the mixer's 307 decode the composite on
 * a relay, and one that sends REMB is moved between the renditions by it. Event B (a plain-RTP
 * presenter's 1000 Hz tone) runs beside it on the same nodes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RTCPeerConnection } from 'werift';
import type { RTCRtpTransceiver, RtpPacket } from 'werift';
import { subjects } from '@mcu/control';
import { buildRtp, readVp8Dimensions } from '@mcu/rtp';
import { OpusDecoder, OpusEncoder } from '@mcu/codec';
import { addressAllowList, disableDefaultStun, filterCandidates, peerConfig, type WhepSession } from '@mcu/webrtc';
import type { RelayRole } from '../src/index.js';
import { RtpPeer } from '../../mixer/test/peer.js';
import { LOOPBACK, rembPacket, tonePower } from '../../webrtc/test/client.js';
import { ClipSender, Viewer, isAlive, lavfiClip, meanYuv } from '../../mixer/test/videoMedia.js';
import { ClusterWorld, sleep, waitFor, type CreatedEvent } from './harness.js';

const SECRET = 'cluster-video-secret-0123456789abcdef-xyz';
const ADMIN = 'cluster-video-admin-token-0123456789';
const CLUSTER = `cv${Date.now().toString(36)}`;
const RED = { y: 81, u: 90, v: 240 };
const RENDITIONS = [
  { id: 'main', width: 320, height: 180, bitrateKbps: 300 },
  { id: 'low', width: 160, height: 90, bitrateKbps: 100 },
];
const allow = addressAllowList(LOOPBACK.iceAllow);

async function offer(pc: RTCPeerConnection): Promise<string> {
  const o = await pc.createOffer();
  disableDefaultStun(pc as never);
  await pc.setLocalDescription(o);
  if (pc.iceGatheringState !== 'complete') {
    await new Promise<void>((resolve) => pc.iceGatheringStateChange.subscribe((s) => s === 'complete' && resolve()));
  }
  return filterCandidates(pc.localDescription!.sdp, allow);
}

async function connected(pc: RTCPeerConnection, timeoutMs = 10_000): Promise<void> {
  if (pc.connectionState === 'connected') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not connected after ${timeoutMs} ms (${pc.connectionState})`)), timeoutMs);
    pc.connectionStateChange.subscribe((s) => {
      if (s === 'connected') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** A werift WHEP viewer (audio, and video when asked) that POSTs its offer and follows a 307. */
class PlayerPeer {
  readonly pc = new RTCPeerConnection(peerConfig(LOOPBACK));
  readonly audio: { seq: number; payload: Buffer }[] = [];
  readonly video = new Viewer('vp8');
  readonly videoArrivals: number[] = [];
  /** Every video packet's SSRC and sequence number, in arrival order. */
  readonly videoPackets: { ssrc: number; seq: number }[] = [];
  videoTransceiver: RTCRtpTransceiver | null = null;
  videoSsrc: number | undefined;
  connectedAt = 0;
  /** Where the offer was answered (after the redirect), and the session's resource path. */
  answeredBy = '';
  location = '';
  #rembTimer: NodeJS.Timeout | undefined;

  static async play(url: string, token: string, opts: { video: boolean }): Promise<PlayerPeer> {
    const p = new PlayerPeer();
    const a = p.pc.addTransceiver('audio', { direction: 'recvonly' });
    a.onTrack.subscribe((track) =>
      track.onReceiveRtp.subscribe((rtp: RtpPacket) => p.audio.push({ seq: rtp.header.sequenceNumber, payload: Buffer.from(rtp.payload) })),
    );
    if (opts.video) {
      const v = p.pc.addTransceiver('video', { direction: 'recvonly' });
      p.videoTransceiver = v;
      v.onTrack.subscribe((track) =>
        track.onReceiveRtp.subscribe((rtp: RtpPacket) => {
          p.videoSsrc = rtp.header.ssrc;
          p.videoArrivals.push(performance.now());
          p.videoPackets.push({ ssrc: rtp.header.ssrc, seq: rtp.header.sequenceNumber });
          const buf = rtp.serialize();
          p.video.push(buf, buf.length);
        }),
      );
    }
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` }, body: await offer(p.pc) });
    if (res.status !== 201) {
      await p.pc.close();
      throw new Error(`WHEP POST answered ${res.status}: ${await res.text()}`);
    }
    p.answeredBy = res.url;
    p.location = res.headers.get('location') ?? '';
    await p.pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    await connected(p.pc);
    p.connectedAt = performance.now();
    return p;
  }

  sendPli(): void {
    if (this.videoTransceiver && this.videoSsrc !== undefined) void this.videoTransceiver.receiver.sendRtcpPLI(this.videoSsrc).catch(() => undefined);
  }

  /** Sends a REMB with `estimate()` bits per second every 200 ms (once video arrives), until closed. */
  sendRemb(estimate: () => number): void {
    this.#rembTimer ??= setInterval(() => {
      if (this.videoTransceiver && this.videoSsrc !== undefined) {
        void this.videoTransceiver.receiver.dtlsTransport.sendRtcp([rembPacket(estimate(), this.videoSsrc)]).catch(() => undefined);
      }
    }, 200);
  }

  /** The picture size of each keyframe received, in order (`320x180`). */
  keyframeSizes(): string[] {
    const sizes: string[] = [];
    const size = [0, 0];
    for (const f of this.video.frames) if (f.keyframe && readVp8Dimensions(f.data, 0, f.data.length, size)) sizes.push(`${size[0]}x${size[1]}`);
    return sizes;
  }

  lastKeyframe(): number {
    const f = this.video.frames;
    for (let i = f.length - 1; i >= 0; i--) if (f[i].keyframe) return i;
    return -1;
  }

  decodeAudio(last: number): Int16Array {
    const dec = new OpusDecoder();
    const frames = this.audio.slice(-last);
    const pcm = new Int16Array(frames.length * 960);
    const tmp = new Int16Array(5760);
    let off = 0;
    for (const f of frames) {
      if (dec.decode(f.payload, tmp) >= 960) {
        pcm.set(tmp.subarray(0, 960), off);
        off += 960;
      }
    }
    dec.close();
    return pcm.subarray(0, off);
  }

  close(): Promise<void> {
    clearInterval(this.#rembTimer);
    return this.pc.close().catch(() => undefined);
  }
}

describe('video and several events down a relay tree over NATS', () => {
  let world: ClusterWorld;
  const players: PlayerPeer[] = [];
  const timers: NodeJS.Timeout[] = [];
  let presenterPc: RTCPeerConnection | undefined;
  let clip: ClipSender | undefined;
  let opus: OpusEncoder | undefined;
  let toneB: RtpPeer | undefined;
  let a: CreatedEvent;
  let b: CreatedEvent;

  const createEvent = (name: string): Promise<CreatedEvent> => world.createEvent(name);
  const feedOf = (r: RelayRole, id: string) => r.feeds.get(id);

  beforeAll(async () => {
    world = await ClusterWorld.start({
      name: 'cluster-video',
      cluster: CLUSTER,
      secret: SECRET,
      adminToken: ADMIN,
      relayFanOut: 1,
      relays: 2,
      node: { videoRenditions: RENDITIONS },
      // Quick decisions, as in the mixer's rendition-switch test: settle, move down and up within a second or so.
      relay: { maxChildren: 1, renditionChooser: { settleMs: 500, downAfterMs: 500, upAfterMs: 1000, probeAfterMs: 600_000 } },
    });
  });

  afterAll(async () => {
    for (const t of timers) clearInterval(t);
    clip?.stop();
    toneB?.close();
    opus?.close();
    const pids: number[] = [];
    const ids = a ? world.node.registry.get(a.id).mixer.videoMixer?.processIds() : undefined;
    if (ids) for (const pid of [...Object.values(ids.decoders), ...Object.values(ids.encoders)]) if (pid !== null) pids.push(pid);
    for (const p of players) await p.close();
    await presenterPc?.close().catch(() => undefined);
    await world?.close();
    await waitFor(() => pids.every((pid) => !isAlive(pid)), 5000, 'the ffmpeg children to exit');
  });

  it('a VP8 presenter in event A: a viewer placed on a relay through the 307 decodes the composite, a later one starts from the relay’s GOP cache', async () => {
    a = await createEvent('video-a');
    await waitFor(() => world.mixer.clusteredEvents.includes(a.id), 5000, 'event A to be clustered');

    // The presenter: WHIP to the mixer, a red VP8 clip (answering PLIs with a keyframe) and a 440 Hz tone.
    presenterPc = new RTCPeerConnection(peerConfig(LOOPBACK));
    const audioT = presenterPc.addTransceiver('audio', { direction: 'sendonly' });
    const videoT = presenterPc.addTransceiver('video', { direction: 'sendonly' });
    const res = await fetch(`${world.node.url}/whip/${a.id}`, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', authorization: `Bearer ${a.tokens.presenter}` },
      body: await offer(presenterPc),
    });
    expect(res.status).toBe(201);
    await presenterPc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    await connected(presenterPc);
    const red = lavfiClip({ source: 'color=red', width: 320, height: 240, frames: 30, codec: 'vp8', gop: 15 });
    clip = new ClipSender(red, (packet) => void videoT.sender.sendRtp(packet).catch(() => undefined)).start();
    videoT.sender.onPictureLossIndication.subscribe(() => clip!.requestKeyframe());
    opus = new OpusEncoder({ bitrate: 32_000 });
    const pcm = new Int16Array(960);
    const out = new Uint8Array(1500);
    let frame = 0;
    timers.push(
      setInterval(() => {
        for (let i = 0; i < 960; i++) pcm[i] = Math.round(6000 * Math.sin((2 * Math.PI * 440 * (frame * 960 + i)) / 48_000));
        const len = opus!.encode(pcm, out);
        void audioT.sender.sendRtp(buildRtp({ payloadType: 111, sequenceNumber: frame & 0xffff, timestamp: (frame * 960) >>> 0, ssrc: 1 }, out.subarray(0, len))).catch(() => undefined);
        frame++;
      }, 20),
    );

    // Both renditions reach both relays (the second one hop further down), described by the mixer.
    await waitFor(
      () => world.relays.every((r) => feedOf(r, a.id)?.renditions.length === 2 && (feedOf(r, a.id)?.forwarder.stats.gopBytes ?? 0) > 0),
      15_000,
      'both renditions and a cached GOP at every relay',
    );
    expect(world.relays.map((r) => feedOf(r, a.id)!.client.assignment?.depth).sort()).toEqual([1, 2]);
    expect(world.mixer.feedStreams(a.id)!.map((s) => (s.kind === 'video' ? `${s.rendition} ${s.width}x${s.height} ${s.codec}` : s.kind)).sort()).toEqual([
      'audio',
      'low 160x90 vp8',
      'main 320x180 vp8',
    ]);
    expect(feedOf(world.relays[0], a.id)!.renditions.map((r) => r.id)).toEqual(['main', 'low']);

    // The relay recovers each packet's media-clock time from the described timestamp base (its
    // viewers' sender reports pair timestamps with it): frames composed moments ago, on the
    // mixer's clock (the same machine's here).
    const times: { mediaMs: number | undefined; at: number }[] = [];
    const stopTimes = feedOf(world.relays[1], a.id)!.video.addVideoProgramSink(undefined, (_p, _l, mediaMs) => times.push({ mediaMs, at: performance.timeOrigin + performance.now() }));
    await waitFor(() => times.length >= 20, 5000, 'video packets on the deeper relay');
    stopTimes();
    for (const t of times) {
      expect(t.mediaMs).toBeDefined();
      expect(t.at - t.mediaMs!).toBeGreaterThanOrEqual(-2);
      expect(t.at - t.mediaMs!).toBeLessThan(1000);
    }

    // Viewer 1 through the mixer: 307 to a relay, the default (largest) rendition.
    const v1 = await PlayerPeer.play(a.whep, a.tokens.viewer, { video: true });
    players.push(v1);
    expect(world.node.edge.stats().whepSessions).toBe(0);
    const relay1 = world.relays.find((r) => v1.answeredBy.startsWith(r.url))!;
    expect(relay1).toBeDefined();
    await waitFor(() => v1.lastKeyframe() >= 0 && v1.video.frames.length - v1.lastKeyframe() >= 10, 10_000, 'viewer 1 to receive a keyframe and 10 frames');
    const pictures = v1.video.decode(320, 180, v1.lastKeyframe());
    expect(pictures.length).toBeGreaterThan(5);
    const c = meanYuv(pictures[pictures.length - 1], 320, 180, { x: 120, y: 60, w: 80, h: 60 });
    expect(Math.abs(c.y - RED.y) <= 12 && Math.abs(c.u - RED.u) <= 12 && Math.abs(c.v - RED.v) <= 12, `centre ${JSON.stringify(c)}`).toBe(true);
    // Its audio is the presenter's tone (the video can come at once from the relay's GOP cache;
    // the audio at 50 packets/s: wait for a second of it).
    await waitFor(() => v1.audio.length > 60, 8000, 'viewer 1 to receive 60 audio packets');
    const tone = v1.decodeAudio(50);
    expect(tone.length).toBeGreaterThan(30 * 960);
    expect(tonePower(tone, 440)).toBeGreaterThan(50 * tonePower(tone, 1000));

    // Keyframe requests go up the tree, aggregated: a burst of PLIs from the viewer costs the
    // relay one upstream request per 500 ms, and reaches the rendition's encoder.
    const sender = world.mixer.feedSender(a.id)!;
    const video = () => world.node.registry.get(a.id).mixer.videoMixer!.stats().renditions.main;
    const before = { relay: feedOf(relay1, a.id)!.forwarder.stats.pliForwarded, tree: world.mixer.keyframeRequestsFromTree(a.id), forced: video().forcedKeyframes };
    for (let i = 0; i < 8; i++) {
      v1.sendPli();
      await sleep(25);
    }
    await waitFor(() => world.mixer.keyframeRequestsFromTree(a.id) > before.tree, 3000, 'the PLI to reach the mixer');
    await sleep(700);
    const relayForwarded = feedOf(relay1, a.id)!.forwarder.stats.pliForwarded - before.relay;
    expect(relayForwarded).toBeGreaterThanOrEqual(1);
    expect(relayForwarded).toBeLessThanOrEqual(2);
    expect(feedOf(relay1, a.id)!.forwarder.stats.pliSuppressed).toBeGreaterThan(0);
    expect(world.mixer.keyframeRequestsFromTree(a.id) - before.tree).toBeLessThanOrEqual(2);
    await waitFor(() => video().forcedKeyframes > before.forced, 3000, 'the encoder to force a keyframe');

    // Viewer 2 joins later, on the small rendition, and asks for nothing: its first frame is the
    // relay's cached keyframe, sent as one burst, and the mixer hears of no new request.
    await sleep(1200);
    const quiet = { tree: world.mixer.keyframeRequestsFromTree(a.id), senderPli: sender.stats.pliForwarded, forced: video().forcedKeyframes };
    const relayPli = world.relays.map((r) => feedOf(r, a.id)!.forwarder.stats.pliForwarded);
    const replaysBefore = world.relays.map((r) => feedOf(r, a.id)!.gopReplays);
    const v2 = await PlayerPeer.play(`${a.whep}?rendition=low`, a.tokens.viewer, { video: true });
    players.push(v2);
    await waitFor(() => v2.video.frames.length >= 3, 5000, 'viewer 2 to receive frames');
    expect(v2.video.frames[0].keyframe).toBe(true);
    // The cached group arrives at once: several frames within the first 100 ms.
    const burst = v2.video.frames.filter((f) => f.arrivalMs - v2.video.frames[0].arrivalMs < 100).length;
    expect(burst).toBeGreaterThanOrEqual(3);
    expect(world.relays.reduce((n, r, i) => n + feedOf(r, a.id)!.gopReplays - replaysBefore[i], 0)).toBe(1);
    await waitFor(() => v2.video.frames.length >= 15, 5000, 'viewer 2 to receive 15 frames');
    const small = v2.video.decode(160, 90, 0);
    expect(small.length).toBeGreaterThan(5);
    const cs = meanYuv(small[small.length - 1], 160, 90, { x: 60, y: 30, w: 40, h: 30 });
    expect(Math.abs(cs.y - RED.y) <= 12 && Math.abs(cs.u - RED.u) <= 12 && Math.abs(cs.v - RED.v) <= 12, `centre ${JSON.stringify(cs)}`).toBe(true);
    await sleep(600);
    expect(world.mixer.keyframeRequestsFromTree(a.id)).toBe(quiet.tree);
    expect(sender.stats.pliForwarded).toBe(quiet.senderPli);
    expect(video().forcedKeyframes).toBe(quiet.forced);
    expect(world.relays.map((r) => feedOf(r, a.id)!.forwarder.stats.pliForwarded)).toEqual(relayPli);
    // An unknown rendition is refused by the relay with a clear error.
    const bad = await fetch(`${relay1.url}/whep/${a.id}?rendition=4k`, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', authorization: `Bearer ${a.tokens.viewer}` },
      body: 'v=0\r\n',
    });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('unknown rendition');
    // A presenter preview is the mixer's to serve: a relay refuses it rather than play the program.
    const preview = await fetch(`${relay1.url}/whep/${a.id}?source=someone`, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', authorization: `Bearer ${a.tokens.viewer}` },
      body: 'v=0\r\n',
    });
    expect(preview.status).toBe(400);
    expect(await preview.text()).toContain('served by the mixer');
  }, 60_000);

  it('two clustered events at once: each relay carries both, viewers of each on the same relay hear their own tone', async () => {
    b = await createEvent('audio-b');
    await waitFor(() => world.mixer.clusteredEvents.includes(b.id), 5000, 'event B to be clustered');
    expect(world.mixer.clusteredEvents.sort()).toEqual([a.id, b.id].sort());
    toneB = await RtpPeer.open({ freq: 1000, audioLevelExtId: 1 });
    const p = (await (
      await fetch(`${world.node.url}/api/events/${b.id}/rtp-participants`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ host: '127.0.0.1', port: toneB.port, payloadType: 111, audioLevelExtId: 1 }),
      })
    ).json()) as { host: string; port: number };
    toneB.connect(p.host, p.port);
    timers.push(setInterval(() => toneB!.sendFrame(), 20));

    await waitFor(() => world.relays.every((r) => (feedOf(r, b.id)?.forwarder.stats.packetsIn ?? 0) > 20), 8000, 'event B at every relay');
    // One socket per event per node: the two feeds arrive on different ports, from different mixer ports.
    for (const r of world.relays) {
      const fa = feedOf(r, a.id)!;
      const fb = feedOf(r, b.id)!;
      expect(fa.forwarder.address.port).not.toBe(fb.forwarder.address.port);
      expect(fa.forwarder.parent.port).not.toBe(fb.forwarder.parent.port);
      expect(fb.forwarder.stats.dropped.unknown_source + fb.forwarder.stats.dropped.bad_tag).toBe(0);
    }

    // Both viewers on the deeper relay (two hops from the mixer).
    const deep = world.relays.find((r) => feedOf(r, a.id)!.client.assignment?.depth === 2)!;
    const va = await PlayerPeer.play(`${deep.url}/whep/${a.id}?token=${encodeURIComponent(a.tokens.viewer)}`, a.tokens.viewer, { video: false });
    const vb = await PlayerPeer.play(`${deep.url}/whep/${b.id}?token=${encodeURIComponent(b.tokens.viewer)}`, b.tokens.viewer, { video: false });
    players.push(va, vb);
    await waitFor(() => va.audio.length > 60 && vb.audio.length > 60, 8000, 'both viewers to receive 60 packets');
    const pa = va.decodeAudio(50);
    const pb = vb.decodeAudio(50);
    expect(pa.length).toBeGreaterThan(30 * 960);
    expect(pb.length).toBeGreaterThan(30 * 960);
    expect(tonePower(pa, 440)).toBeGreaterThan(1000);
    expect(tonePower(pb, 1000)).toBeGreaterThan(1000);
    // No cross-talk: each hears its own event's tone and not the other's.
    expect(tonePower(pa, 440)).toBeGreaterThan(50 * tonePower(pa, 1000));
    expect(tonePower(pb, 1000)).toBeGreaterThan(50 * tonePower(pb, 440));
    for (const v of [va, vb]) {
      const r = v.audio.slice(-40);
      for (let i = 1; i < r.length; i++) expect((r[i].seq - r[i - 1].seq) & 0xffff).toBe(1);
    }

    // A malformed stream description (an unknown codec, an impossible size) is dropped and
    // counted by every relay; what the mixer described before stays in force.
    const dropsBefore = world.relays.map((r) => feedOf(r, a.id)!.client.drops.total);
    const feeds = await world.buses[0].kv(subjects(CLUSTER).buckets.feeds);
    const real = await feeds.get(`${a.id}.mixer`);
    await feeds.put(`${a.id}.mixer`, {
      v: 1,
      event: a.id,
      node: 'mixer',
      media: { host: '127.0.0.1', port: 9 },
      streams: [{ ssrc: 5, kind: 'video', codec: 'theora', rendition: 'x', width: 100_000, height: 1 }],
    });
    await waitFor(() => world.relays.every((r, i) => feedOf(r, a.id)!.client.drops.total > dropsBefore[i]), 3000, 'the relays to drop the bad description');
    for (const r of world.relays) expect(feedOf(r, a.id)!.renditions.map((x) => x.id)).toEqual(['main', 'low']);
    await feeds.put(`${a.id}.mixer`, real!.value);

    // Ending B frees its feed on every relay; A plays on.
    const ended = await fetch(`${world.node.url}/api/events/${b.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(ended.status).toBeLessThan(300);
    await waitFor(() => world.relays.every((r) => !r.feeds.has(b.id)), 5000, 'event B to leave every relay');
    const n = va.audio.length;
    await waitFor(() => va.audio.length > n + 20, 3000, 'event A to play on');
  }, 60_000);

  it('a viewer on a relay that pins no rendition follows its REMB: down to the small rendition, back up to the large one, in one continuous stream', async () => {
    // Two hops down: the relay measures what each rendition sends and knows its target from the mixer.
    const deep = world.relays.find((r) => feedOf(r, a.id)!.client.assignment?.depth === 2)!;
    const feed = feedOf(deep, a.id)!;
    await waitFor(() => feed.adaptiveRenditions().every((r) => (r.sendingKbps ?? 0) > 0), 5000, 'the relay to measure both renditions');
    const offered = feed.video.renditions!();
    expect(offered.map((r) => `${r.id} ${r.codec} ${r.bitrateKbps}`)).toEqual(['main vp8 300', 'low vp8 100']);
    // What the relay measures is what the mixer's encoders send (the same RTP bytes, a hop later).
    const atMixer = new Map(world.node.registry.get(a.id).mixer.videoRenditions.map((r) => [r.id, r.sendingKbps ?? 0]));
    for (const r of offered) {
      expect(r.sendingKbps!, `${r.id}: relay ${r.sendingKbps} kbps, mixer ${atMixer.get(r.id)} kbps`).toBeGreaterThan(0.5 * atMixer.get(r.id)!);
      expect(r.sendingKbps!).toBeLessThan(2 * atMixer.get(r.id)!);
    }
    const measured = offered.map((r) => `${r.id} ${r.sendingKbps!.toFixed(1)} kbps`).join(', ');

    let estimate = 5_000_000;
    const v = await PlayerPeer.play(`${deep.url}/whep/${a.id}?token=${encodeURIComponent(a.tokens.viewer)}`, a.tokens.viewer, { video: true });
    players.push(v);
    v.sendRemb(() => estimate);
    const session = deep.edge.get('whep', a.id, v.location.split('/').pop()!) as WhepSession;
    await waitFor(() => v.keyframeSizes().includes('320x180'), 10_000, 'the large rendition’s keyframe');
    expect(session.viewerVideo?.rendition).toBe('main');

    // The link degrades: 2 kbps is below what even a still picture sends, so the smallest.
    estimate = 2_000;
    const requestsBefore = world.mixer.keyframeRequestsFromTree(a.id);
    await waitFor(() => session.viewerVideo?.rendition === 'low' && v.keyframeSizes().includes('160x90'), 10_000, `the small rendition (${JSON.stringify(session.describe())})`);
    // Its keyframe was asked of the mixer, up two hops.
    expect(world.mixer.keyframeRequestsFromTree(a.id)).toBeGreaterThan(requestsBefore);

    // It recovers.
    estimate = 5_000_000;
    await waitFor(
      () => session.viewerVideo?.rendition === 'main' && v.keyframeSizes().lastIndexOf('320x180') > v.keyframeSizes().indexOf('160x90'),
      10_000,
      `the large rendition again (${JSON.stringify(session.describe())})`,
    );
    expect(session.describe()).toMatchObject({ rendition: 'main', renditionSwitches: 2, adaptive: true, estimateKbps: 5000 });
    await waitFor(() => v.video.frames.length - v.lastKeyframe() >= 5, 5000, 'frames after the last keyframe');
    const pictures = v.video.decode(320, 180, v.lastKeyframe());
    expect(pictures.length).toBeGreaterThanOrEqual(5);

    // One stream for the viewer: one SSRC, sequence numbers going on by one across both switches.
    expect(new Set(v.videoPackets.map((p) => p.ssrc)).size).toBe(1);
    let gaps = 0;
    for (let i = 1; i < v.videoPackets.length; i++) if (((v.videoPackets[i].seq - v.videoPackets[i - 1].seq) & 0xffff) !== 1) gaps++;
    expect(gaps, 'sequence gaps').toBe(0);
    console.log(`relay viewer: keyframes ${v.keyframeSizes().join(' → ')} over ${v.videoPackets.length} packets; measured on the relay: ${measured}`);
  }, 60_000);
});
