/**
 * In-band FEC follows the loss a listener reports: a speaker's mix-minus carries LBRR while its
 * plain-RTP listener reports loss (RTCP), none once it reports none for 10 s, and the configured
 * default (FEC at 10 %) while it reports nothing. The shared mix keeps the default throughout.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { OpusEncoder } from '@mcu/codec';
import { buildReceiverReport, buildSenderReport, ntpFromUnixMs } from '@mcu/rtp';
import { ListenerLoss, MixerEvent } from '../src/index.js';
import { pace, RtpPeer, syllableEnvelope, toneFrame } from './peer.js';
import { opusHasLbrr } from './opusLbrr.js';

const EXT = 1;
let event: MixerEvent | null = null;
const closers: { close(): void }[] = [];
afterEach(() => {
  event?.close();
  event = null;
  for (const c of closers.splice(0)) c.close();
});

describe('ListenerLoss', () => {
  it('goes up at once, down only after 10 s of lower reports, and is unknown without reports for 30 s', () => {
    const l = new ListenerLoss();
    expect(l.percent(0)).toBe(-1);
    l.report(0, 1000);
    expect(l.percent(1000)).toBe(0);
    l.report(26, 2000); // 26/256 = 10.2 %
    expect(l.percent(2000)).toBe(11);
    l.report(1, 3000); // one packet in 256 is already 1 %
    l.report(0, 4000);
    expect(l.percent(11_999)).toBe(11);
    expect(l.percent(12_001)).toBe(1);
    expect(l.percent(13_001)).toBe(0);
    expect(l.percent(34_001)).toBe(-1);
    l.report(300, 40_000); // out of range: clamped to 255/256
    expect(l.percent(40_000)).toBe(100);
  });
});

/** A 440 Hz tone rising and falling four times a second: SILK's VAD takes a steady tone for noise after ~0.6 s. */
function syllable(f: number): Int16Array {
  const pcm = toneFrame(440, f);
  for (let i = 0; i < pcm.length; i++) pcm[i] = Math.round(pcm[i] * syllableEnvelope(f * 960 + i));
  return pcm;
}

describe('opusHasLbrr', () => {
  it('sees LBRR in packets of an encoder told to expect loss, and none at 0 %', () => {
    const frames = (loss: number) => {
      const enc = new OpusEncoder({ expectedLossPercent: loss });
      const out = new Uint8Array(1500);
      const flags: boolean[] = [];
      for (let f = 0; f < 100; f++) flags.push(opusHasLbrr(out.subarray(0, enc.encode(syllable(f), out))));
      enc.close();
      return flags.slice(10).filter(Boolean).length;
    };
    // Not every frame: LBRR goes with frames the VAD finds active (about 2 in 3 of these).
    expect(frames(20)).toBeGreaterThan(40);
    expect(frames(0)).toBe(0);
  });
});

describe('loss-adaptive FEC on plain RTP', () => {
  /** Share of the last `n` packets `peer` received that carry LBRR (with FEC on: 0.6–0.8 of these syllables). */
  const lbrrShare = (peer: RtpPeer, n = 25) => {
    const last = peer.received.slice(-n);
    return last.filter((r) => opusHasLbrr(r.payload)).length / Math.max(1, last.length);
  };
  /** A receiver report about the mix `peer` gets (or about `about`); as a sender report's block with `asSender`, as an endpoint that sends media reports. */
  const report = (peer: RtpPeer, fractionLost: number, opts: { asSender?: boolean; about?: number } = {}) => {
    const ssrc = opts.about ?? peer.received.at(-1)!.ssrc;
    const highestSeq = peer.received.at(-1)!.seq;
    const reports = [{ ssrc, fractionLost, cumulativeLost: 0, highestSeq, jitter: 0, lsr: 0, dlsr: 0 }];
    const ntp = ntpFromUnixMs(Date.now());
    peer.sendRaw(
      opts.asSender
        ? buildSenderReport({ ssrc: peer.ssrc, ntpSec: ntp.sec, ntpFrac: ntp.frac, rtpTimestamp: 0, packetCount: 1, octetCount: 100, reports })
        : buildReceiverReport({ ssrc: peer.ssrc, reports }),
    );
  };

  /** A plain-RTP participant of `event` talking in syllables (0 Hz: silent). */
  const join = async (freq: number) => {
    const peer = await RtpPeer.open({ freq, syllables: true, audioLevelExtId: EXT });
    closers.push(peer);
    const info = await event!.addRtpParticipant({ host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: EXT });
    peer.connect(info.host, info.port);
    return { peer, id: info.id };
  };

  it('a speaker reporting no loss gets its mix-minus without LBRR, one reporting loss or nothing with it; the shared mix keeps it', async () => {
    event = new MixerEvent({ id: 'fec', maxSpeakers: 3, rtpPort: 0 });
    const clean = await join(440);
    const lossy = await join(620);
    const silent = await join(880); // sends no RTCP
    const listener = await join(0);
    const all = [clean.peer, lossy.peer, silent.peer, listener.peer];
    await pace(all, 600);
    for (const p of all) expect(p.received.length).toBeGreaterThan(10);
    // Before any report every encoder runs at the default: LBRR everywhere.
    for (const p of all) expect(lbrrShare(p)).toBeGreaterThan(0.4);

    report(clean.peer, 0);
    report(clean.peer, 200, { about: 0x1234_5678 }); // about another stream: not its mix
    report(lossy.peer, 13, { asSender: true }); // 13/256 = 5.1 %: the encoder is told 6
    await pace(all, 600);
    expect(lbrrShare(clean.peer)).toBe(0);
    expect(lbrrShare(lossy.peer)).toBeGreaterThan(0.4);
    expect(lbrrShare(silent.peer)).toBeGreaterThan(0.4);
    expect(lbrrShare(listener.peer)).toBeGreaterThan(0.4);
    const info = (id: string) => event!.participantInfo(id)!.stats;
    expect(info(clean.id)).toMatchObject({ reportedLossPercent: 0, fecExpectedLossPercent: 0 });
    expect(info(lossy.id)).toMatchObject({ reportedLossPercent: 6, fecExpectedLossPercent: 6 });
    expect(info(silent.id)).toMatchObject({ reportedLossPercent: null, fecExpectedLossPercent: 10 });

    // The clean path starts losing packets: FEC is back from the next tick.
    report(clean.peer, 51); // 20 %
    await pace(all, 300);
    expect(lbrrShare(clean.peer, 10)).toBeGreaterThan(0.4);
    expect(info(clean.id).fecExpectedLossPercent).toBe(20);
  });

  it('with lossAdaptiveFec off every encoder keeps the configured expected loss', async () => {
    event = new MixerEvent({ id: 'fec-off', maxSpeakers: 3, rtpPort: 0, mixer: { lossAdaptiveFec: false } });
    const a = await join(440);
    const b = await join(620);
    await pace([a.peer, b.peer], 600);
    report(a.peer, 0);
    await pace([a.peer, b.peer], 600);
    expect(lbrrShare(a.peer)).toBeGreaterThan(0.4);
    expect(event.participantInfo(a.id)!.stats).toMatchObject({ reportedLossPercent: 0, fecExpectedLossPercent: 10 });
  });
});
