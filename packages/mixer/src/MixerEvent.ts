import { randomUUID } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { AudioMixer } from './AudioMixer.js';
import type { AudioMixerOptions } from './AudioMixer.js';
import { MixingClock, systemTimer } from './MixingClock.js';
import type { Timer } from './MixingClock.js';
import type { VideoLayout } from './Layouts.js';
import { RtpEndpoint } from './RtpEndpoint.js';
import { OwnRtpSockets, SharedPortIo, SharedRtpPort } from './RtpSockets.js';
import type { RtpSocketIo } from './RtpSockets.js';
import { TickStats } from './TickStats.js';
import { DropCounters } from './DropCounters.js';
import type { Participant, Stage } from './Participant.js';
import { renditionBitrateKbps, VIDEO_MIXER_DEFAULTS, VideoMixer } from './VideoMixer.js';
import type { VideoMixerOptions, VideoRendition, VideoRenditionOptions } from './VideoMixer.js';
import type { VideoCodec } from '@mcu/rtp';
import { LipSync } from './LipSync.js';
import type { LipSyncStats } from './LipSync.js';
import { systemMediaClock } from './MediaClock.js';
import type { MediaClock } from './MediaClock.js';

export interface MixerEventOptions {
  id: string;
  maxSpeakers?: number;
  /** Address the event's RTP sockets bind to and advertise. */
  rtpHost?: string;
  /** Address advertised to participants when it differs from the bind address (1:1 NAT). */
  rtpAdvertiseHost?: string;
  tickMs?: number;
  timer?: Timer;
  mixer?: Omit<AudioMixerOptions, 'maxSpeakers' | 'tickMs' | 'now'>;
  /** Options of the event's video mixer, created when the first video source is added (VideoMixer defaults otherwise). */
  video?: VideoMixerOptions;
  /** The one clock audio and video output timestamps derive from (default: `video.mediaClock`, else the system's). */
  mediaClock?: MediaClock;
  /** Most delay lip sync adds to a presenter's audio or video (0: measure only, never compensate). */
  maxLipSyncDelayMs?: number;
  /** Where presenters join when their token names no stage (default live). */
  presentersJoin?: Stage;
  /**
   * Plain-RTP participants' sockets in one native set, read once per tick, their mixes sent in one
   * batch (default: where the addon is built; false: a dgram socket each, the baseline).
   */
  nativeUdp?: boolean;
  /**
   * One UDP port for every plain-RTP participant instead of a port each (native addon only): a
   * number (0: any free one) for a port the event opens on `rtpHost`, or a node's `SharedRtpPort`
   * that its events share. Registration returns it; replies leave from it (symmetric RTP holds).
   */
  rtpPort?: number | SharedRtpPort;
  /**
   * Native path: each tick's mixes leave from a native sender thread while the next tick mixes,
   * instead of within the tick (default false). The tick is shorter by its sends; the process
   * spends a little more CPU (a thread wake-up and a copy per tick), and on a machine short of
   * cores the tick may wait for the previous batch instead (docs/performance.md).
   */
  sendThread?: boolean;
}

/** What an RTCP sender report says about one stream (RFC 3550 §6.4.1). */
export interface SenderReportInfo {
  rtpTimestamp: number;
  ntpSec: number;
  ntpFrac: number;
}

/** Receives the program video of one rendition. */
export type VideoProgramSink = (packet: Uint8Array, length: number, rendition: VideoRendition) => void;

export interface RtpParticipantRequest {
  host: string;
  port: number;
  payloadType: number;
  audioLevelExtId?: number;
  /** Where it joins (default: the event's `presentersJoin`). */
  stage?: Stage;
  /** Display name, already validated. */
  name?: string;
  /** Its participant id (a resume grant's `pid`: the same participant again); random by default. */
  id?: string;
}

export interface RtpParticipantInfo extends ParticipantSummary {
  id: string;
  kind: 'rtp';
  /** Where the participant sends its RTP. */
  host: string;
  port: number;
  /** Where the participant receives its mix. */
  remoteHost: string;
  remotePort: number;
  payloadType: number;
  speaking: boolean;
  stats: Participant['stats'] & {
    jitter: Participant['jitter']['stats'];
    packetsIn: number;
    rtcpIn: number;
    /** Loss % it reports for its mix (RTCP), null while unknown (no report in 30 s). */
    reportedLossPercent: number | null;
    /** Loss % its mix-minus encoder expects (in-band FEC above 0). */
    fecExpectedLossPercent: number;
  };
}

/** A participant whose transport lives elsewhere (a WHIP session): the event only tracks it. */
export interface ExternalParticipant {
  kind: string;
  /** Ends the participant's session; it detaches itself from the event. */
  close(): void;
  describe(): Record<string, unknown>;
}

export interface ParticipantSummary {
  id: string;
  kind: string;
  speaking: boolean;
  /** Muted by the producer (out of selection and every mix). */
  muted: boolean;
  /** Live (in the program and the composite) or backstage (hears the program, in no mix). */
  stage: Stage;
  stats: Participant['stats'] & { jitter: Participant['jitter']['stats'] };
  /** Lip sync of its audio with its video (skew, compensation), null until it sends a sender report. */
  avSync: LipSyncStats | null;
  [key: string]: unknown;
}

/** A meter shows 0..-90 dBov; quieter is empty. */
const LEVEL_FLOOR_DBOV = 90;

export interface ParticipantLevel {
  id: string;
  kind: string;
  /** Smoothed -dBov (0 = full scale, 127 = silence). */
  dbov: number;
  /** 0..1 for a meter: 1 - dbov / 90, clamped. */
  level: number;
  muted: boolean;
  speaking: boolean;
  stage: Stage;
}

/**
 * One running event on a mixer node: its mixing clock, its audio mixer and the sockets of its
 * plain-RTP participants. `close()` stops the clock and frees every socket and codec.
 */
export class MixerEvent {
  readonly id: string;
  readonly mixer: AudioMixer;
  readonly clock: MixingClock;
  readonly drops = new DropCounters();
  private readonly endpoints = new Map<string, RtpEndpoint>();
  /** Native path: the plain-RTP sockets (own or shared) and the tick's sends, made with the first participant. */
  private rtpIo: RtpSocketIo | null = null;
  private readonly nativeUdp: boolean;
  private readonly rtpPort: number | SharedRtpPort | undefined;
  private readonly sendThread: boolean;
  /** Whole tick on the native path: read every socket, mix, send the batch. */
  readonly ioTickStats = new TickStats();
  private readonly externals = new Map<string, ExternalParticipant>();
  private readonly rtpHost: string;
  private readonly advertiseHost: string;
  private readonly timer: Timer;
  private readonly maxLipSyncDelayMs: number | undefined;
  /** Where presenters join when their token names no stage. */
  readonly presentersJoin: Stage;
  private closed = false;
  private readonly videoOptions: VideoMixerOptions;
  private currentLayout: VideoLayout;
  private video: VideoMixer | null = null;
  /** Program video sinks per rendition id ('' = the first rendition). */
  private readonly videoSinks = new Map<string, Set<VideoProgramSink>>();
  /** Sinks of every rendition's program video (the cluster's feed to the relays). */
  private allVideoSinks: readonly VideoProgramSink[] = [];

  constructor(opts: MixerEventOptions) {
    this.id = opts.id;
    this.timer = opts.timer ?? systemTimer;
    this.rtpHost = opts.rtpHost ?? '127.0.0.1';
    this.advertiseHost = opts.rtpAdvertiseHost ?? this.rtpHost;
    this.nativeUdp = opts.nativeUdp !== false;
    this.rtpPort = opts.rtpPort;
    this.sendThread = opts.sendThread === true;
    // A shared port only exists natively: fail here (a port in use, no addon), not with the first participant.
    if (this.rtpPort !== undefined && !this.nativeRtp) {
      throw new Error('a shared plain-RTP port (rtpPort) needs the native UDP addon (Linux; not with MCU_NATIVE_UDP=0)');
    }
    const tickMs = opts.tickMs ?? 20;
    const mediaClock = opts.mediaClock ?? opts.video?.mediaClock ?? systemMediaClock;
    this.maxLipSyncDelayMs = opts.maxLipSyncDelayMs;
    this.presentersJoin = opts.presentersJoin ?? 'live';
    this.mixer = new AudioMixer((p, packet, length) => p.transport?.send(packet, length), {
      ...opts.mixer,
      mediaClock,
      maxSpeakers: opts.maxSpeakers,
      tickMs,
      now: () => this.timer.now(),
    });
    this.clock = new MixingClock((i) => this.tick(i), { tickMs, timer: this.timer });
    this.clock.start();
    this.videoOptions = { ...opts.video, mediaClock };
    this.currentLayout = opts.video?.layout ?? { kind: 'grid' };
    this.mixer.on('dominantSpeaker', (id) => this.video?.setActiveSpeaker(id));
  }

  /**
   * One tick. On the native path the tick reads what every plain-RTP socket holds first (each
   * datagram with its kernel arrival time, so the jitter buffers see when it came, not when it was
   * read) and sends every mix in one batch after mixing.
   */
  private tick(tickIndex: number): void {
    const io = this.rtpIo;
    if (io === null) {
      this.mixer.tick(tickIndex);
      return;
    }
    const t0 = performance.now();
    io.read();
    this.mixer.tick(tickIndex);
    io.flush();
    this.ioTickStats.record(performance.now() - t0);
  }

  /** The native sockets (own or shared), made on first need; null where the addon is not built or it is turned off. */
  private socketIo(): RtpSocketIo | null {
    if (this.rtpIo === null && this.nativeUdp && !this.closed) {
      const port = this.rtpPort;
      if (port === undefined) this.rtpIo = OwnRtpSockets.open(this.sendThread);
      else if (typeof port !== 'number') this.rtpIo = SharedPortIo.open(port, false, this.sendThread);
      else {
        const own = SharedRtpPort.open({ host: this.rtpHost, port, drops: this.drops });
        this.rtpIo = own !== null ? SharedPortIo.open(own, true, this.sendThread) : null;
      }
    }
    return this.rtpIo;
  }

  /** Whether plain-RTP participants are on native sockets (false: a dgram socket each). */
  get nativeRtp(): boolean {
    return this.socketIo() !== null;
  }

  /** The one port every plain-RTP participant of the event uses, or null (a port each). */
  get sharedRtpPort(): number | null {
    return this.socketIo()?.sharedPort ?? null;
  }

  /** The producer's layout; applied on the next composed frame (and to a video mixer created later). */
  get layout(): VideoLayout {
    return this.currentLayout;
  }

  setLayout(layout: VideoLayout): void {
    this.currentLayout = layout;
    this.video?.setLayout(layout);
  }

  /** The event's video mixer, or null until the first video source is added. */
  get videoMixer(): VideoMixer | null {
    return this.video;
  }

  private ensureVideo(): VideoMixer {
    if (this.closed) throw new Error('event is closed');
    if (!this.video) {
      const first = () => this.video?.renditions[0]?.id;
      const v = new VideoMixer((rendition, packet, length) => {
        const named = this.videoSinks.get(rendition.id);
        if (named) for (const sink of named) sink(packet, length, rendition);
        if (rendition.id === first()) {
          const dflt = this.videoSinks.get('');
          if (dflt) for (const sink of dflt) sink(packet, length, rendition);
        }
        const all = this.allVideoSinks;
        for (let i = 0; i < all.length; i++) all[i](packet, length, rendition);
      }, this.videoOptions);
      this.video = v;
      v.setActiveSpeaker(this.mixer.dominantSpeaker);
      v.setLayout(this.currentLayout);
    }
    return this.video;
  }

  /**
   * Starts the video mixer now rather than with the first camera: a consumer of the program video
   * (a restream) needs pictures even before a presenter shows one.
   */
  startVideo(): VideoMixer {
    return this.ensureVideo();
  }

  /** Adds a program rendition while the event runs (the video mixer starts if needed); see VideoMixer.addRendition. */
  addVideoRendition(rendition: VideoRenditionOptions): VideoRendition {
    return this.ensureVideo().addRendition(rendition);
  }

  /** Removes a rendition added with `addVideoRendition`; false when unknown. */
  removeVideoRendition(id: string): boolean {
    return this.video?.removeRendition(id) ?? false;
  }

  /** Adds a video source (a presenter's camera) to the event's video mixer, creating it when needed. */
  addVideoSource(id: string, codec: VideoCodec, name?: string): void {
    const v = this.ensureVideo();
    if (!v.hasSource(id)) v.addSource(id, { codec, name, lipSync: this.lipSyncOf(id) ?? undefined, backstage: this.mixer.participant(id)?.backstage ?? false });
  }

  /**
   * An RTCP sender report of a participant's audio or video stream: lip sync maps that stream's
   * RTP timestamps to the participant's clock with it. Unknown participants are ignored.
   */
  senderReport(id: string, kind: 'audio' | 'video', sr: SenderReportInfo): void {
    this.lipSyncOf(id)?.onSenderReport(kind, sr.rtpTimestamp, sr.ntpSec, sr.ntpFrac);
  }

  /** The participant's lip sync, created on first need (its first sender report or its video). */
  private lipSyncOf(id: string): LipSync | null {
    const p = this.mixer.participant(id);
    if (!p) return null;
    p.lipSync ??= new LipSync({ maxDelayMs: this.maxLipSyncDelayMs });
    return p.lipSync;
  }

  removeVideoSource(id: string): boolean {
    return this.video?.removeSource(id) ?? false;
  }

  pushVideoRtp(id: string, packet: Uint8Array, length: number = packet.length): void {
    this.video?.pushRtp(id, packet, length);
  }

  /**
   * Subscribes to the program video of a rendition (by id; the first, largest, when omitted).
   * The sink may be added before the video mixer exists. Returns the unsubscribe function.
   */
  addVideoProgramSink(rendition: string | undefined, sink: VideoProgramSink): () => void {
    const key = rendition ?? '';
    let set = this.videoSinks.get(key);
    if (!set) {
      set = new Set();
      this.videoSinks.set(key, set);
    }
    set.add(sink);
    return () => {
      const s = this.videoSinks.get(key);
      if (!s) return;
      s.delete(sink);
      if (s.size === 0) this.videoSinks.delete(key);
    };
  }

  /**
   * The program video renditions (id, codec, target bitrate and what each actually sends), largest
   * first, known before the video mixer starts: a viewer that joins before any presenter can still
   * be given a rendition.
   */
  get videoRenditions(): { id: string; codec: VideoCodec; bitrateKbps: number; sendingKbps: number | null }[] {
    if (this.video) return this.video.renditions.map(({ id, codec, bitrateKbps }, i) => ({ id, codec, bitrateKbps, sendingKbps: this.video!.sendingKbps(i) }));
    const d = VIDEO_MIXER_DEFAULTS;
    return (this.videoOptions.renditions ?? d.renditions).map((r) => ({
      id: r.id,
      codec: r.codec ?? this.videoOptions.codec ?? d.codec,
      bitrateKbps: renditionBitrateKbps(r),
      sendingKbps: null,
    }));
  }

  /**
   * Subscribes to the program video of every rendition (each packet comes with its rendition:
   * SSRC, codec, size). May be added before the video mixer exists. Returns the unsubscribe function.
   */
  addAllVideoProgramSink(sink: VideoProgramSink): () => void {
    this.allVideoSinks = [...this.allVideoSinks, sink];
    return () => {
      this.allVideoSinks = this.allVideoSinks.filter((s) => s !== sink);
    };
  }

  /** A viewer lost a picture: ask the rendition's encoder (all when omitted) for a keyframe. */
  requestVideoKeyframe(rendition?: string): void {
    this.video?.requestKeyframe(rendition);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async addRtpParticipant(req: RtpParticipantRequest): Promise<RtpParticipantInfo> {
    if (this.closed) throw new Error('event is closed');
    const remoteHost = isIP(req.host) ? req.host : (await lookup(req.host, { family: 4 })).address;
    const id = req.id ?? randomUUID();
    const participant = this.mixer.addParticipant(id, { stage: req.stage ?? this.presentersJoin });
    participant.name = req.name;
    try {
      const endpoint = await RtpEndpoint.open(
        participant,
        {
          bindHost: this.rtpHost,
          remoteHost,
          remotePort: req.port,
          payloadType: req.payloadType,
          audioLevelExtId: req.audioLevelExtId,
          now: () => this.timer.now(),
          // Kernel arrival times are on performance.now()'s clock: the event's own when it runs on the system timer.
          kernelArrivalTimes: this.timer === systemTimer,
          onSenderReport: (sr) => this.senderReport(id, 'audio', sr),
          onReceiverReport: (block) => this.mixer.reportLoss(id, block.fractionLost),
        },
        this.drops,
        this.socketIo(),
      );
      if (this.closed) {
        endpoint.close();
        throw new Error('event is closed');
      }
      this.endpoints.set(id, endpoint);
    } catch (err) {
      this.mixer.removeParticipant(id);
      throw err;
    }
    return this.participantInfo(id)!;
  }

  participantInfo(id: string): RtpParticipantInfo | undefined {
    const p = this.mixer.participant(id);
    const ep = this.endpoints.get(id);
    if (!p || !ep) return undefined;
    return {
      id,
      kind: 'rtp',
      ...(p.name !== undefined ? { name: p.name } : {}),
      host: this.advertiseHost,
      port: ep.port,
      remoteHost: ep.remoteHost,
      remotePort: ep.remotePort,
      payloadType: ep.payloadType,
      speaking: this.mixer.selection.isSpeaker(p.slot),
      muted: p.muted,
      stage: p.stage,
      stats: {
        ...p.stats,
        jitter: { ...p.jitter.stats },
        packetsIn: ep.stats.packetsIn,
        rtcpIn: ep.stats.rtcpIn,
        reportedLossPercent: this.mixer.reportedLossPercent(p),
        fecExpectedLossPercent: this.mixer.expectedLossPercent(p),
      },
      avSync: p.lipSync?.stats() ?? null,
    };
  }

  /** One participant of either kind (plain RTP or an attached WebRTC session), or undefined. */
  participantSummary(id: string): ParticipantSummary | undefined {
    const rtp = this.participantInfo(id);
    if (rtp) return rtp;
    const ext = this.externals.get(id);
    const p = this.mixer.participant(id);
    if (!ext || !p) return undefined;
    return {
      ...ext.describe(),
      id,
      kind: ext.kind,
      speaking: this.mixer.selection.isSpeaker(p.slot),
      muted: p.muted,
      stage: p.stage,
      stats: { ...p.stats, jitter: { ...p.jitter.stats } },
      avSync: p.lipSync?.stats() ?? null,
    };
  }

  participants(): ParticipantSummary[] {
    const out: ParticipantSummary[] = [];
    for (const id of [...this.endpoints.keys(), ...this.externals.keys()]) {
      const info = this.participantSummary(id);
      if (info) out.push(info);
    }
    return out;
  }

  /**
   * Mutes or unmutes a participant of either kind; the mute holds until unmuted. Returns the
   * participant's summary, or undefined when it is unknown.
   */
  setMuted(id: string, muted: boolean): ParticipantSummary | undefined {
    if (!this.endpoints.has(id) && !this.externals.has(id)) return undefined;
    if (!this.mixer.setMuted(id, muted)) return undefined;
    return this.participantSummary(id);
  }

  /**
   * Moves a participant of either kind live or backstage: its voice leaves or enters the program
   * on the next tick, its video the composite on the next composed frame (one keyframe request for
   * a tile that appears). Nothing is renegotiated. Returns the participant's summary, or undefined
   * when it is unknown.
   */
  setStage(id: string, stage: Stage): ParticipantSummary | undefined {
    if (!this.endpoints.has(id) && !this.externals.has(id)) return undefined;
    if (!this.mixer.setStage(id, stage)) return undefined;
    this.video?.setBackstage(id, stage === 'backstage');
    return this.participantSummary(id);
  }

  /**
   * Every participant's smoothed audio level as speaker selection sees it (from RFC 6464 or the
   * energy of frames already decoded; nothing is decoded for this). `dbov` is -dBov, 0 = full
   * scale, 127 = silence; `level` maps 0..-90 dBov linearly onto 1..0 for a meter.
   */
  levels(): ParticipantLevel[] {
    const out: ParticipantLevel[] = [];
    const sel = this.mixer.selection;
    for (const id of [...this.endpoints.keys(), ...this.externals.keys()]) {
      const p = this.mixer.participant(id);
      if (!p) continue;
      const dbov = Math.round(sel.levelOf(p.slot) * 10) / 10;
      out.push({
        id,
        kind: this.externals.get(id)?.kind ?? 'rtp',
        dbov,
        level: Math.round(Math.max(0, Math.min(1, (LEVEL_FLOOR_DBOV - dbov) / LEVEL_FLOOR_DBOV)) * 1000) / 1000,
        muted: p.muted,
        speaking: sel.isSpeaker(p.slot),
        stage: p.stage,
      });
    }
    return out;
  }

  /**
   * Adds a participant whose media arrives through another transport (WebRTC), on `stage`
   * (default: the event's `presentersJoin`).
   */
  attachParticipant(id: string, external: ExternalParticipant, opts: { stage?: Stage } = {}): Participant {
    if (this.closed) throw new Error('event is closed');
    const p = this.mixer.addParticipant(id, { stage: opts.stage ?? this.presentersJoin });
    this.externals.set(id, external);
    return p;
  }

  /** Called by the external transport when its session ends. */
  detachParticipant(id: string): void {
    if (!this.externals.delete(id)) return;
    this.mixer.removeParticipant(id);
  }

  removeParticipant(id: string): boolean {
    const ext = this.externals.get(id);
    if (ext) {
      ext.close();
      this.detachParticipant(id);
      return true;
    }
    const ep = this.endpoints.get(id);
    if (!ep) return false;
    this.endpoints.delete(id);
    ep.close();
    this.mixer.removeParticipant(id);
    return true;
  }

  stats() {
    const t = this.mixer.tickStats;
    return {
      participants: this.mixer.size,
      speakers: this.mixer.speakerIds,
      dominantSpeaker: this.mixer.dominantSpeaker,
      ticks: { executed: this.clock.executedTicks, skipped: this.clock.skippedTicks, late: this.clock.lateTicks },
      tickMs: { p50: t.percentile(50), p99: t.percentile(99), max: t.maxMs },
      /** Native path only: read + mix + send, the whole tick. */
      ioTickMs: this.rtpIo ? { p50: this.ioTickStats.percentile(50), p99: this.ioTickStats.percentile(99), max: this.ioTickStats.maxMs } : null,
      rtpSockets: this.rtpIo
        ? {
            native: true,
            sharedPort: this.rtpIo.sharedPort,
            datagramsIn: this.rtpIo.datagrams,
            sent: this.rtpIo.sends.sent,
            sendFailed: this.rtpIo.sends.failed,
            /** The sender thread's batches, and those that had to wait for the previous one (null: sent within the tick). */
            sendThread: this.rtpIo.sends.threadStats,
          }
        : { native: false, sharedPort: null },
      mixer: { ...this.mixer.stats },
      dropped: this.drops.snapshot(),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.clock.stop();
    for (const ep of this.endpoints.values()) ep.close();
    this.endpoints.clear();
    this.rtpIo?.close();
    this.rtpIo = null;
    for (const ext of [...this.externals.values()]) ext.close();
    this.externals.clear();
    this.mixer.close();
    this.video?.close();
    this.video = null;
    this.videoSinks.clear();
  }
}
