import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { WebRtcEdge } from '@mcu/webrtc';
import { dtlsHelloGuardStats, dtlsTimerStats, ownPortStunStats } from '@mcu/webrtc';
import type { VideoMixerStats, VideoRenditionStatsSnapshot } from '@mcu/mixer';
import type { EventRecord, EventRegistry } from './EventRegistry.js';
import type { Restreams } from './Restreams.js';

type Totals = { packetsIn: number; packetsOut: number; dropped: Record<string, number>; lost: number; late: number; fec: number; plc: number; fades: number; decodes: number; encodes: number };

/** A counter whose total its source keeps: read at each scrape. */
function totalCounter(registry: Registry, name: string, help: string, total: () => number): Counter {
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(total());
    },
  });
}

function zero(): Totals {
  return { packetsIn: 0, packetsOut: 0, dropped: {}, lost: 0, late: 0, fec: 0, plc: 0, fades: 0, decodes: 0, encodes: 0 };
}

function add(into: Totals, t: Totals): void {
  for (const k of ['packetsIn', 'packetsOut', 'lost', 'late', 'fec', 'plc', 'fades', 'decodes', 'encodes'] as const) into[k] += t[k];
  for (const [r, n] of Object.entries(t.dropped)) into.dropped[r] = (into.dropped[r] ?? 0) + n;
}

function totalsOf(e: EventRecord): Totals {
  const t = zero();
  const s = e.mixer.stats();
  t.dropped = { ...s.dropped };
  t.decodes = s.mixer.decodes;
  t.encodes = s.mixer.encodes;
  for (const p of e.mixer.participants()) {
    t.packetsIn += p.stats.jitter.received;
    t.packetsOut += p.stats.packetsSent;
    t.lost += p.stats.jitter.lost;
    t.late += p.stats.jitter.late;
    t.fec += p.stats.fecRecovered;
    t.plc += p.stats.concealed;
    t.fades += p.stats.fadeOuts;
  }
  return t;
}

/**
 * Prometheus metrics of one node (`GET /metrics`). Counters of events that ended are kept so that
 * totals only grow; live values are read at scrape time from the events themselves, so the media
 * path pays nothing for metrics but one histogram observation per tick.
 */
export class Metrics {
  /** The video mixers' stats for the scrape being rendered (null: not read yet). */
  private videoSnapshot: { event: string; stats: VideoMixerStats }[] | null = null;
  readonly registry = new Registry();
  readonly tickSeconds: Histogram;
  private readonly ended = zero();

  constructor(events: EventRegistry, edge: WebRtcEdge, draining: () => boolean = () => false) {
    collectDefaultMetrics({ register: this.registry, prefix: 'mcu_' });
    drainingGauge(this.registry, draining);
    this.tickSeconds = new Histogram({
      name: 'mcu_mixer_tick_seconds',
      help: 'Duration of one 20 ms mixing tick',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.05],
      registers: [this.registry],
    });
    events.on('ending', (e) => add(this.ended, totalsOf(e)));
    const live = () => {
      const t = zero();
      add(t, this.ended);
      for (const e of events.list()) add(t, totalsOf(e));
      // The node's shared RTP port counts what belongs to no participant (unknown_source).
      if (events.rtpPort) add(t, { ...zero(), dropped: events.rtpPort.drops.snapshot() });
      return t;
    };
    const counter = (name: string, help: string, pick: (t: Totals) => number) => totalCounter(this.registry, name, help, () => pick(live()));
    counter('mcu_rtp_packets_in_total', 'Audio packets accepted into jitter buffers', (t) => t.packetsIn);
    counter('mcu_rtp_packets_out_total', 'Mixed audio packets sent to participants', (t) => t.packetsOut);
    counter('mcu_jitter_lost_total', 'Frames missing at playout (recovered by FEC or concealed)', (t) => t.lost);
    counter('mcu_jitter_late_total', 'Packets that arrived after their playout time', (t) => t.late);
    counter('mcu_opus_fec_total', 'Frames recovered with Opus in-band FEC', (t) => t.fec);
    counter('mcu_opus_plc_total', 'Frames concealed (PLC)', (t) => t.plc);
    counter('mcu_mixer_fadeouts_total', 'One-frame fades of streams that stopped or left', (t) => t.fades);
    counter('mcu_opus_decodes_total', 'Opus frames decoded by mixers', (t) => t.decodes);
    counter('mcu_opus_encodes_total', 'Opus frames encoded by mixers (N speakers + 1 per tick)', (t) => t.encodes);
    new Counter({
      name: 'mcu_rtp_dropped_total',
      help: 'Packets dropped on the media path, by reason',
      labelNames: ['reason'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(live().dropped)) this.inc({ reason }, n);
      },
    });
    new Gauge({
      name: 'mcu_events',
      help: 'Events running on this node',
      registers: [this.registry],
      collect() {
        this.set(events.list().length);
      },
    });
    new Gauge({
      name: 'mcu_participants',
      help: 'Participants by transport',
      labelNames: ['kind'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const e of events.list()) for (const p of e.mixer.participants()) this.inc({ kind: p.kind });
      },
    });
    new Gauge({
      name: 'mcu_speakers',
      help: 'Selected speakers across events',
      registers: [this.registry],
      collect() {
        this.set(events.list().reduce((n, e) => n + e.mixer.mixer.speakerIds.length, 0));
      },
    });
    // The video mixers' stats are read once per scrape, however many metrics use them.
    const videoStats = () => (this.videoSnapshot ??= events.list().flatMap((e) => (e.mixer.videoMixer ? [{ event: e.id, stats: e.mixer.videoMixer.stats() }] : [])));
    new Gauge({
      name: 'mcu_video_encode_latency_seconds',
      help: 'Smoothed time from handing a composed frame to its encoder to getting it back encoded, by rendition',
      labelNames: ['event', 'rendition'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const v of videoStats()) for (const [rendition, r] of Object.entries(v.stats.renditions)) this.set({ event: v.event, rendition }, r.encodeLatencyAvgMs / 1000);
      },
    });
    const perRendition: [name: string, help: string, pick: (r: VideoRenditionStatsSnapshot) => number][] = [
      ['mcu_video_frames_encoded_total', 'Program frames encoded, by rendition', (r) => r.framesEncoded],
      ['mcu_video_frames_dropped_total', 'Composed frames an encoder refused (behind or restarting), by rendition', (r) => r.dropped],
    ];
    for (const [name, help, pick] of perRendition) {
      new Counter({
        name,
        help,
        labelNames: ['rendition'],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const v of videoStats()) for (const [rendition, r] of Object.entries(v.stats.renditions)) this.inc({ rendition }, pick(r));
        },
      });
    }
    totalCounter(this.registry, 'mcu_video_process_restarts_total', 'ffmpeg decoders and encoders restarted after a crash', () => videoStats().reduce((n, v) => n + v.stats.restarts, 0));
    webrtcMetrics(this.registry, edge);
  }

  /** A cluster role attached the node to a bus: `mcu_nats_connected` from now on. */
  watchBus(connected: () => boolean): void {
    if (this.registry.getSingleMetric('mcu_nats_connected')) this.registry.removeSingleMetric('mcu_nats_connected');
    natsConnectedGauge(this.registry, connected);
  }

  async render(): Promise<{ body: string; type: string }> {
    this.videoSnapshot = null;
    try {
      return await renderMetrics(this.registry);
    } finally {
      this.videoSnapshot = null;
    }
  }
}

export async function renderMetrics(registry: Registry): Promise<{ body: string; type: string }> {
  return { body: await registry.metrics(), type: registry.contentType };
}

/** `mcu_draining`, every node's: 1 while it drains (or closes). */
export function drainingGauge(registry: Registry, draining: () => boolean): void {
  new Gauge({
    name: 'mcu_draining',
    help: '1 while the node drains (or closes): it takes no new participants or viewers',
    registers: [registry],
    collect() {
      this.set(draining() ? 1 : 0);
    },
  });
}

/** `mcu_nats_connected`, cluster roles': 1 while the bus is connected. */
export function natsConnectedGauge(registry: Registry, connected: () => boolean): void {
  new Gauge({
    name: 'mcu_nats_connected',
    help: '1 while the connection to NATS (the cluster control plane) is up',
    registers: [registry],
    collect() {
      this.set(connected() ? 1 : 0);
    },
  });
}

/** WHIP/WHEP sessions of a node's WebRTC edge (mixer and relay): open, closed by reason, refused. */
export function webrtcMetrics(registry: Registry, edge: WebRtcEdge): void {
  new Gauge({
    name: 'mcu_webrtc_sessions',
    help: 'WebRTC sessions by kind (whip = presenters, whep = viewers)',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const s = edge.stats();
      this.set({ kind: 'whip' }, s.whipSessions);
      this.set({ kind: 'whep' }, s.whepSessions);
    },
  });
  new Counter({
    name: 'mcu_webrtc_sessions_closed_total',
    help: 'WebRTC sessions closed, by reason',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(edge.stats().closedByReason)) this.inc({ reason }, n);
    },
  });
  new Gauge({
    name: 'mcu_webrtc_native_fanout_viewers',
    help: "WHEP viewers the native fan-out sends for (one addon call a packet for all of them), by media; the rest are sent to from JavaScript (transport not ready, not AES-GCM, not IPv4, or the addon not built)",
    labelNames: ['media'],
    registers: [registry],
    collect() {
      const s = edge.stats();
      this.set({ media: 'audio' }, s.fanOut?.viewers ?? 0);
      this.set({ media: 'video' }, s.videoFanOut?.viewers ?? 0);
    },
  });
  totalCounter(registry, 'mcu_webrtc_sessions_rejected_total', 'WebRTC sessions refused because the node was full', () => edge.stats().rejected);
  totalCounter(registry, 'mcu_webrtc_dtls_repeated_hello_dropped_total', 'Repeated DTLS HelloVerifyRequests the node dropped (a slow or distant server answered a resent ClientHello too; werift failed the handshake on them)', () => dtlsHelloGuardStats().droppedHelloVerifyRequests);
  totalCounter(registry, 'mcu_webrtc_dtls_repeated_flight4_dropped_total', "Messages of a DTLS server's resent flight 4 the node dropped once its flight 5 was out (werift ran flight 5 again on them and failed the session 30 s later)", () => dtlsHelloGuardStats().droppedFlight4);
  totalCounter(registry, 'mcu_webrtc_dtls_retransmits_total', 'DTLS handshake flights the node sent again because no answer came in time (1 s, then doubled)', () => dtlsTimerStats().retransmits);
  totalCounter(registry, 'mcu_webrtc_dtls_handshakes_abandoned_total', 'DTLS handshakes the node gave up after its last retransmission went unanswered (31 s)', () => dtlsTimerStats().gaveUp);
  new Counter({
    name: 'mcu_webrtc_port_dropped_total',
    help: "Datagrams the node's shared WebRTC port (--rtc-port) dropped, by reason (unknown_source, unknown_ufrag, bad_integrity, …)",
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      const port = edge.stats().rtcPort;
      if (port) for (const [reason, n] of Object.entries(port.dropped)) this.inc({ reason }, n);
    },
  });
  new Counter({
    name: 'mcu_webrtc_stun_dropped_total',
    help: 'ICE Binding requests dropped on sessions with a UDP port of their own (no --rtc-port), by reason (unknown_ufrag, bad_integrity, no_username, malformed_stun)',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(ownPortStunStats().dropped)) this.inc({ reason }, n);
    },
  });
}

/** Restreams (RTMP pushes of the program): running by state, reconnects and bytes sent, stopped ones included. */
export function restreamMetrics(registry: Registry, restreams: Restreams): void {
  new Gauge({
    name: 'mcu_restreams',
    help: 'Restreams by state (connecting, live, retrying, failed)',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [state, n] of Object.entries(restreams.totals().byState)) if (state !== 'stopped') this.set({ state }, n);
    },
  });
  totalCounter(registry, 'mcu_restream_reconnects_total', 'RTMP connections of restreams started again after a drop or a failure', () => restreams.totals().reconnects);
  totalCounter(registry, 'mcu_restream_bytes_total', 'Bytes restreams wrote to RTMP servers (FLV)', () => restreams.totals().bytes);
}
