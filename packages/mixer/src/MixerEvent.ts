import { randomUUID } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { AudioMixer } from './AudioMixer.js';
import type { AudioMixerOptions } from './AudioMixer.js';
import { MixingClock, systemTimer } from './MixingClock.js';
import type { Timer } from './MixingClock.js';
import { RtpEndpoint } from './RtpEndpoint.js';
import { DropCounters } from './DropCounters.js';
import type { Participant } from './Participant.js';

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
}

export interface RtpParticipantRequest {
  host: string;
  port: number;
  payloadType: number;
  audioLevelExtId?: number;
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
  stats: Participant['stats'] & { jitter: Participant['jitter']['stats']; packetsIn: number; rtcpIn: number };
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
  stats: Participant['stats'] & { jitter: Participant['jitter']['stats'] };
  [key: string]: unknown;
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
  private readonly externals = new Map<string, ExternalParticipant>();
  private readonly rtpHost: string;
  private readonly advertiseHost: string;
  private readonly timer: Timer;
  private closed = false;

  constructor(opts: MixerEventOptions) {
    this.id = opts.id;
    this.timer = opts.timer ?? systemTimer;
    this.rtpHost = opts.rtpHost ?? '127.0.0.1';
    this.advertiseHost = opts.rtpAdvertiseHost ?? this.rtpHost;
    const tickMs = opts.tickMs ?? 20;
    this.mixer = new AudioMixer((p, packet, length) => p.transport?.send(packet, length), {
      ...opts.mixer,
      maxSpeakers: opts.maxSpeakers,
      tickMs,
      now: () => this.timer.now(),
    });
    this.clock = new MixingClock((i) => this.mixer.tick(i), { tickMs, timer: this.timer });
    this.clock.start();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async addRtpParticipant(req: RtpParticipantRequest): Promise<RtpParticipantInfo> {
    if (this.closed) throw new Error('event is closed');
    const remoteHost = isIP(req.host) ? req.host : (await lookup(req.host, { family: 4 })).address;
    const id = randomUUID();
    const participant = this.mixer.addParticipant(id);
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
        },
        this.drops,
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
      host: this.advertiseHost,
      port: ep.port,
      remoteHost: ep.remoteHost,
      remotePort: ep.remotePort,
      payloadType: ep.payloadType,
      speaking: this.mixer.selection.isSpeaker(p.slot),
      stats: { ...p.stats, jitter: { ...p.jitter.stats }, packetsIn: ep.stats.packetsIn, rtcpIn: ep.stats.rtcpIn },
    };
  }

  participants(): ParticipantSummary[] {
    const out: ParticipantSummary[] = [];
    for (const id of this.endpoints.keys()) {
      const info = this.participantInfo(id);
      if (info) out.push(info);
    }
    for (const [id, ext] of this.externals) {
      const p = this.mixer.participant(id);
      if (!p) continue;
      out.push({
        ...ext.describe(),
        id,
        kind: ext.kind,
        speaking: this.mixer.selection.isSpeaker(p.slot),
        stats: { ...p.stats, jitter: { ...p.jitter.stats } },
      });
    }
    return out;
  }

  /** Adds a participant whose media arrives through another transport (WebRTC). */
  attachParticipant(id: string, external: ExternalParticipant): Participant {
    if (this.closed) throw new Error('event is closed');
    const p = this.mixer.addParticipant(id);
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
    for (const ext of [...this.externals.values()]) ext.close();
    this.externals.clear();
    this.mixer.close();
  }
}
