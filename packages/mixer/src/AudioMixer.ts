import { EventEmitter } from 'node:events';
import { RTP_FIXED_HEADER_LENGTH, writeRtp, writeRtpHeader } from '@mcu/rtp';
import type { JitterBufferOptions, RtpBuildFields } from '@mcu/rtp';
import { CodecPool, OPUS_ENCODER_DEFAULTS, OpusDecoder, OpusEncoder } from '@mcu/codec';
import type { OpusEncoderOptions } from '@mcu/codec';
import { Participant } from './Participant.js';
import type { Stage } from './Participant.js';
import { SpeakerSelection } from './Selection.js';
import type { SelectionOptions } from './Selection.js';
import { accumulate, accumulateRamp, applyRamp, frameLevelDbov, limitInto, limitMinusInto } from './Limiter.js';
import { TickStats } from './TickStats.js';
import { rtpTimestampAt, senderReportTimes, systemMediaClock } from './MediaClock.js';
import type { MediaClock, SenderReportTimes } from './MediaClock.js';

export interface AudioMixerOptions {
  sampleRate?: number;
  tickMs?: number;
  maxSpeakers?: number;
  payloadType?: number;
  selection?: Omit<SelectionOptions, 'maxSpeakers' | 'tickMs'>;
  jitter?: JitterBufferOptions;
  encoder?: OpusEncoderOptions;
  /** Monotonic milliseconds; the mixing clock's timer in production. */
  now?: () => number;
  /** The event's media clock: output RTP timestamps are its time at each tick (shared with video). */
  mediaClock?: MediaClock;
  random?: () => number;
  /** Called with each tick's duration in seconds (metrics). */
  onTick?: (seconds: number) => void;
  /**
   * A speaker's mix-minus expects the loss its listener reports (RTCP), so that its in-band FEC
   * runs only on a path that loses packets (ListenerLoss.ts). Default on; off: every encoder
   * keeps `encoder.expectedLossPercent`.
   */
  lossAdaptiveFec?: boolean;
}

/**
 * Receives each outgoing packet; `packet` is valid until this participant's next-but-one packet.
 * A participant whose transport has `sendHeader` gets its packets there instead.
 */
export type MixerSink = (participant: Participant, packet: Uint8Array, length: number) => void;

/** Receives each program-feed packet (the shared mix as its own RTP stream); the buffer is fresh per packet. */
/** A program packet and the media-clock time (Unix ms) of its tick, which its timestamp encodes. */
export type ProgramSink = (packet: Buffer, mediaMs: number) => void;

export interface AudioMixerEvents {
  speakers: [ids: string[]];
  dominantSpeaker: [id: string | null];
}

export interface AudioMixerStats {
  ticks: number;
  tickErrors: number;
  encodes: number;
  decodes: number;
  packetsOut: number;
}

const TWO_32 = 0x1_0000_0000;

/**
 * The audio mix of one event, one call to `tick` per 20 ms.
 *
 * Per tick it reads every participant's next RFC 6464 level from its jitter buffer without
 * decoding, selects the speakers, decodes only them (and participants without level extension),
 * sums them once, and encodes N_speakers + 1 streams: a mix-minus for each speaker and ONE shared
 * mix that every other participant receives. Each recipient's RTP header is then written around
 * the payload it gets, with its own SSRC and continuous sequence numbers.
 *
 * Backstage presenters are out of the program's selection (as if muted) and in a second selection,
 * the backstage room's: they hear the program plus the backstage talkers, never themselves. While
 * anyone talks backstage that costs one more shared encode (program + room) and one mix-minus per
 * backstage talker; with nobody backstage, nothing at all. Which room a presenter is in is a flag
 * read at selection time: a move takes effect on the next tick.
 */
export class AudioMixer extends EventEmitter<AudioMixerEvents> {
  readonly frameSamples: number;
  readonly selection: SpeakerSelection;
  /** Speaker selection of the backstage room (only backstage presenters compete). */
  readonly backstageSelection: SpeakerSelection;
  readonly tickStats = new TickStats();
  readonly stats: AudioMixerStats = { ticks: 0, tickErrors: 0, encodes: 0, decodes: 0, packetsOut: 0 };

  private readonly byId = new Map<string, Participant>();
  private readonly list: Participant[] = [];
  private bySlot: (Participant | undefined)[] = [];
  private readonly freeSlots: number[] = [];
  private readonly decoders: CodecPool<OpusDecoder>;
  private readonly encoders: CodecPool<OpusEncoder>;
  private readonly sharedEncoder: OpusEncoder;
  /** The encoders' configured expected loss: the shared mix's, and a mix-minus's while its listener's is unknown. */
  private readonly defaultLossPercent: number;
  private readonly lossAdaptiveFec: boolean;
  private readonly sum: Int32Array;
  private readonly mixPcm: Int16Array;
  private readonly shared = new Uint8Array(1500);
  private sharedLength = 0;
  private readonly sharedCsrcs = new Uint32Array(15);
  private sharedCsrcCount = 0;
  private readonly minusCsrcs = new Uint32Array(15);
  private readonly fields: RtpBuildFields & { csrcs: Uint32Array; csrcCount: number };
  /** Participants mixed this tick: speakers plus those fading out. */
  private readonly mixSet: Participant[] = [];
  private mixCount = 0;
  /** Backstage room: its talkers' sum, the program plus it, their shared encode and CSRCs. */
  private readonly backstageSum: Int32Array;
  private readonly roomSum: Int32Array;
  private roomEncoder: OpusEncoder | null = null;
  private readonly roomShared = new Uint8Array(1500);
  private roomSharedLength = 0;
  private readonly roomCsrcs = new Uint32Array(15);
  private roomCsrcCount = 0;
  /** Voices in the backstage room's sum this tick (in place, or fading out towards the program). */
  private readonly backstageSet: Participant[] = [];
  private backstageMixCount = 0;
  /** Participants backstage now. */
  private backstageCount = 0;
  private dominant: string | null = null;
  private readonly programSinks = new Set<ProgramSink>();
  /** SSRC of the program feed (the shared mix sent to viewers). */
  readonly programSsrc: number;
  private programSeq: number;
  /** Program RTP timestamp = rtpTimestampAt(media time of the tick, sampleRate, programTimestampBase). */
  readonly programTimestampBase: number;
  readonly sampleRate: number;
  private readonly tickMs: number;
  private readonly mediaClock: MediaClock;
  /** Media time of tick 0, whole ms (so that every tick's timestamp is exact); NaN before the first tick. */
  private mediaStartMs = NaN;
  private readonly programBuffer = new Uint8Array(1500);
  /** Native transports: each recipient's header is written here (a mix-minus behind it) and copied into the send batch at once. */
  private readonly headerScratch = new Uint8Array(RTP_FIXED_HEADER_LENGTH + 15 * 4 + 1500);
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly jitterOptions: JitterBufferOptions | undefined;
  private readonly onTick: ((seconds: number) => void) | undefined;
  private closed = false;

  constructor(
    private readonly sink: MixerSink,
    opts: AudioMixerOptions = {},
  ) {
    super();
    const sampleRate = opts.sampleRate ?? 48_000;
    const tickMs = opts.tickMs ?? 20;
    this.sampleRate = sampleRate;
    this.tickMs = tickMs;
    this.mediaClock = opts.mediaClock ?? systemMediaClock;
    this.frameSamples = (sampleRate * tickMs) / 1000;
    this.now = opts.now ?? (() => performance.now());
    this.random = opts.random ?? Math.random;
    this.onTick = opts.onTick;
    this.jitterOptions = { frameDurationMs: tickMs, clockRate: sampleRate, ...opts.jitter };
    this.selection = new SpeakerSelection({ ...opts.selection, maxSpeakers: opts.maxSpeakers ?? 3, tickMs });
    this.backstageSelection = new SpeakerSelection({ ...opts.selection, maxSpeakers: opts.maxSpeakers ?? 3, tickMs });
    const encoderOptions: OpusEncoderOptions = { sampleRate: 48_000, channels: 1, ...opts.encoder };
    this.decoders = new CodecPool(() => new OpusDecoder({ sampleRate: 48_000, channels: 1 }));
    this.encoders = new CodecPool(() => new OpusEncoder(encoderOptions));
    this.sharedEncoder = new OpusEncoder(encoderOptions);
    this.defaultLossPercent = encoderOptions.expectedLossPercent ?? OPUS_ENCODER_DEFAULTS.expectedLossPercent;
    this.lossAdaptiveFec = opts.lossAdaptiveFec ?? true;
    this.programSsrc = (this.random() * TWO_32) >>> 0;
    this.programSeq = Math.floor(this.random() * 0x10000);
    this.programTimestampBase = Math.floor(this.random() * TWO_32);
    this.sum = new Int32Array(this.frameSamples);
    this.backstageSum = new Int32Array(this.frameSamples);
    this.roomSum = new Int32Array(this.frameSamples);
    this.mixPcm = new Int16Array(this.frameSamples);
    this.fields = {
      payloadType: opts.payloadType ?? 111,
      sequenceNumber: 0,
      timestamp: 0,
      ssrc: 0,
      marker: false,
      csrcs: this.sharedCsrcs,
      csrcCount: 0,
    };
  }

  /** libopus complexity of every encoder of this mixer (the shared mix's and the mix-minus', made with the same options). */
  get encoderComplexity(): number {
    return this.sharedEncoder.complexity;
  }

  get size(): number {
    return this.list.length;
  }

  /** RTP payload type of every packet sent, the program feed's included. */
  get payloadType(): number {
    return this.fields.payloadType;
  }

  get speakerIds(): string[] {
    const ids: string[] = [];
    for (let i = 0; i < this.selection.speakerCount; i++) {
      const p = this.bySlot[this.selection.speakers[i]];
      if (p) ids.push(p.id);
    }
    return ids;
  }

  get dominantSpeaker(): string | null {
    return this.dominant;
  }

  participant(id: string): Participant | undefined {
    return this.byId.get(id);
  }

  /**
   * A report block from participant `id` about the mix it receives (its `outSsrc`): `fractionLost`
   * in 1/256, as RTCP carries it. Its mix-minus encoder expects that loss from its next encode.
   * Unknown participants are ignored.
   */
  reportLoss(id: string, fractionLost: number): void {
    this.byId.get(id)?.listenerLoss.report(fractionLost, this.now());
  }

  /** The loss % participant `p` reports for its mix (highest of the last 10 s), or null while unknown. */
  reportedLossPercent(p: Participant): number | null {
    const reported = p.listenerLoss.percent(this.now());
    return reported < 0 ? null : reported;
  }

  /** The expected loss % this participant's mix-minus is encoded for: its reported loss, else the default. */
  expectedLossPercent(p: Participant): number {
    if (!this.lossAdaptiveFec) return this.defaultLossPercent;
    return this.reportedLossPercent(p) ?? this.defaultLossPercent;
  }

  /**
   * Whether participant `id` is gone: at once, or once it has faded out (one removed while audible
   * leaves at the end of the next tick); false while it is connected, or still leaving after
   * `timeoutMs`. A participant that leaves and comes straight back (its resume grant) waits here
   * instead of finding itself still connected.
   */
  async departed(id: string, timeoutMs = 500): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = this.byId.get(id);
      if (!p) return true;
      if (!p.leaving || Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  participants(): readonly Participant[] {
    return this.list;
  }

  /** `stage`: where the participant starts (default live). */
  addParticipant(id: string, opts: { receives?: boolean; outSsrc?: number; stage?: Stage } = {}): Participant {
    if (this.closed) throw new Error('mixer is closed');
    if (this.byId.has(id)) throw new Error(`participant ${id} already exists`);
    const slot = this.freeSlots.length > 0 ? this.freeSlots.pop()! : this.bySlot.length;
    const outSsrc = opts.outSsrc ?? ((this.random() * TWO_32) >>> 0);
    const p = new Participant(id, slot, outSsrc, opts.receives ?? true, this.frameSamples, this.jitterOptions, this.random);
    this.byId.set(id, p);
    this.list.push(p);
    this.bySlot[slot] = p;
    this.selection.add(slot);
    this.backstageSelection.add(slot);
    p.backstage = opts.stage === 'backstage';
    if (p.backstage) this.backstageCount++;
    this.applyExclusion(p);
    return p;
  }

  /** Backstage talkers, for a console. */
  get backstageSpeakerIds(): string[] {
    const ids: string[] = [];
    const bsel = this.backstageSelection;
    for (let i = 0; i < bsel.speakerCount; i++) {
      const p = this.bySlot[bsel.speakers[i]];
      if (p) ids.push(p.id);
    }
    return ids;
  }

  /**
   * Moves a participant on stage (`live`) or backstage. Read by the next tick's selection: going
   * live, a talking presenter fades into the program on the next tick (and out of the backstage
   * room in the same tick); going backstage, it fades out of the program on the next tick and
   * joins the backstage room on the one after. Returns false for an unknown participant.
   */
  setStage(id: string, stage: Stage): boolean {
    const p = this.byId.get(id);
    if (!p) return false;
    const backstage = stage === 'backstage';
    if (p.backstage === backstage) return true;
    p.backstage = backstage;
    this.backstageCount += backstage ? 1 : -1;
    this.applyExclusion(p);
    return true;
  }

  /** Who competes where: the program excludes the muted and the backstage, the room the muted and the live. */
  private applyExclusion(p: Participant): void {
    const dropped = this.selection.setExcluded(p.slot, p.muted || p.backstage);
    this.backstageSelection.setExcluded(p.slot, p.muted || !p.backstage);
    if (dropped && !this.closed) this.emit('speakers', this.speakerIds);
  }

  /**
   * Removes a participant. If its voice is in the mix, it fades out during the next tick and is
   * removed after it, so that the others never hear a click.
   */
  removeParticipant(id: string): boolean {
    const p = this.byId.get(id);
    if (!p) return false;
    // Its transport is gone: a preview of it ends now, not after the fade.
    p.taps.end();
    if ((p.audible || p.backstageAudible) && !this.closed) {
      p.leaving = true;
      return true;
    }
    this.detach(p);
    return true;
  }

  /**
   * Mutes or unmutes a participant. A muted participant is never selected and never decoded for
   * mixing (a speaker fades out during the next tick); its RFC 6464 level is still read, so a
   * console can show that it talks. Returns false for an unknown participant.
   */
  setMuted(id: string, muted: boolean): boolean {
    const p = this.byId.get(id);
    if (!p) return false;
    p.muted = muted;
    this.applyExclusion(p);
    return true;
  }

  /** One 20 ms tick. `tickIndex` counts wall-clock ticks since the clock started. */
  tick(tickIndex: number): void {
    if (this.closed) return;
    const t0 = performance.now();
    try {
      this.runTick(tickIndex);
    } catch {
      this.stats.tickErrors++;
    }
    this.stats.ticks++;
    const ms = performance.now() - t0;
    this.tickStats.record(ms);
    this.onTick?.(ms / 1000);
  }

  /** NTP and RTP times for a sender report on the program audio, from the shared media clock. */
  senderReport(): SenderReportTimes {
    return senderReportTimes(this.mediaClock, this.sampleRate, this.programTimestampBase);
  }

  /** Media time of a tick: the clock's time at the first tick, then exactly `tickMs` per tick. */
  private tickMediaMs(tickIndex: number): number {
    if (Number.isNaN(this.mediaStartMs)) this.mediaStartMs = Math.round(this.mediaClock.nowMs() - tickIndex * this.tickMs);
    return this.mediaStartMs + tickIndex * this.tickMs;
  }

  private runTick(tickIndex: number): void {
    const now = this.now();
    const mediaMs = this.tickMediaMs(tickIndex);
    const list = this.list;
    const sel = this.selection;
    const bsel = this.backstageSelection;
    const n = list.length;

    // 1. Levels: from RFC 6464 when present (no decoding), else from the decoded frame.
    for (let i = 0; i < n; i++) {
      const p = list[i];
      p.hasPcm = false;
      p.decodedThisTick = false;
      p.mixMinusLength = 0;
      let level = 127;
      if (!p.leaving) {
        const peeked = p.jitter.peekAudioLevel();
        if (peeked >= 0) {
          p.levelsSeen = true;
          level = peeked;
        } else if (!p.levelsSeen && !p.muted) {
          this.decodeFrame(p, now);
          p.decodedThisTick = true;
          if (p.hasPcm) level = frameLevelDbov(p.pcm, this.frameSamples);
        }
      }
      sel.setLevel(p.slot, level, now);
      bsel.setLevel(p.slot, level, now);
    }
    if (sel.update(now)) this.emit('speakers', this.speakerIds);
    if (this.backstageCount > 0 || bsel.speakerCount > 0) bsel.update(now);
    const dom = sel.dominant >= 0 ? (this.bySlot[sel.dominant]?.id ?? null) : null;
    if (dom !== this.dominant) {
      this.dominant = dom;
      this.emit('dominantSpeaker', dom);
    }

    // 2. Decode the speakers and those fading out; only advance everyone else's buffer.
    this.mixCount = 0;
    this.backstageMixCount = 0;
    const samples = this.frameSamples;
    this.backstageSum.fill(0);
    for (let i = 0; i < n; i++) {
      const p = list[i];
      const speaking = !p.leaving && sel.isSpeaker(p.slot);
      const fadingOut = !speaking && p.audible;
      const roomSpeaking = !p.leaving && bsel.isSpeaker(p.slot);
      const roomFadingOut = !roomSpeaking && p.backstageAudible;
      p.inProgramMix = false;
      p.inBackstageMix = false;
      if (speaking || fadingOut || roomSpeaking || roomFadingOut) {
        if (!p.decodedThisTick) this.decodeFrame(p, now);
        // The backstage room first: a voice leaving it for the program fades out of the room
        // aside, before its frame is ramped into the program in place. A voice leaving the
        // program for the room enters the room on the next tick, once it is out of the program.
        if (p.hasPcm && (roomSpeaking || roomFadingOut) && !(roomSpeaking && p.audible)) {
          if (roomFadingOut && speaking) {
            if (p.stopped) accumulate(this.backstageSum, p.pcm, samples);
            else accumulateRamp(this.backstageSum, p.pcm, samples, 1, 0);
          } else {
            if (p.stopped) {
              // decodeFrame already concealed and faded the frame of a stream that stopped.
            } else if (roomFadingOut) {
              applyRamp(p.pcm, samples, 1, 0);
              p.stats.fadeOuts++;
            } else if (!p.backstageAudible) {
              applyRamp(p.pcm, samples, 0, 1);
            }
            accumulate(this.backstageSum, p.pcm, samples);
            p.inBackstageMix = true;
          }
          this.backstageSet[this.backstageMixCount++] = p;
        }
        p.backstageAudible = roomSpeaking && p.hasPcm && !p.stopped && !p.audible;
        if ((speaking || fadingOut) && p.hasPcm) {
          if (p.stopped) {
            // decodeFrame already concealed and faded the frame of a stream that stopped.
          } else if (fadingOut) {
            applyRamp(p.pcm, samples, 1, 0);
            p.stats.fadeOuts++;
          } else if (!p.audible) {
            applyRamp(p.pcm, samples, 0, 1);
          }
          this.mixSet[this.mixCount++] = p;
          p.inProgramMix = true;
        }
        p.audible = speaking && p.hasPcm && !p.stopped;
        if ((speaking || roomSpeaking) && p.receives && !p.encoder) {
          p.encoder = this.encoders.acquire();
          p.encoderLossPercent = this.defaultLossPercent;
        }
      } else {
        if (!p.decodedThisTick) p.jitter.pop(now);
        this.releaseCodecs(p);
      }
      const sync = p.lipSync;
      if (sync !== null) {
        // Every participant popped exactly one frame this tick; it enters the program now.
        const ts = p.jitter.timestamp;
        if (ts >= 0) sync.audioMixed(ts, mediaMs, now);
        sync.update(now);
        if (p.jitter.syncDelayMs !== sync.audioDelayMs) p.jitter.syncDelayMs = sync.audioDelayMs;
      }
    }

    // 3. Mix once; encode the shared mix once and one mix-minus per speaker.
    this.sum.fill(0);
    this.sharedCsrcCount = 0;
    for (let i = 0; i < this.mixCount; i++) {
      const p = this.mixSet[i];
      accumulate(this.sum, p.pcm, samples);
      if (this.sharedCsrcCount < 15) this.sharedCsrcs[this.sharedCsrcCount++] = p.inSsrc;
    }
    limitInto(this.sum, this.mixPcm, samples);
    this.sharedLength = this.sharedEncoder.encode(this.mixPcm, this.shared);
    this.stats.encodes++;
    for (let i = 0; i < sel.speakerCount; i++) {
      const p = this.bySlot[sel.speakers[i]];
      if (!p || !p.receives || p.leaving || !p.encoder) continue;
      if (p.hasPcm) limitMinusInto(this.sum, p.pcm, this.mixPcm, samples);
      else limitInto(this.sum, this.mixPcm, samples);
      this.tuneFec(p, p.encoder);
      p.mixMinusLength = p.encoder.encode(this.mixPcm, p.mixMinus);
      this.stats.encodes++;
    }
    const room = this.backstageMixCount > 0 || bsel.speakerCount > 0;
    if (room) this.mixRoom();

    // 4. Packetize: each recipient's own header around the payload it gets.
    const fields = this.fields;
    const timestampOffset = rtpTimestampAt(mediaMs, this.sampleRate, 0);
    if (this.programSinks.size > 0) this.sendProgram(timestampOffset, mediaMs);
    for (let i = 0; i < n; i++) {
      const p = list[i];
      if (!p.receives || p.leaving) continue;
      let payload: Uint8Array = this.shared;
      let length = this.sharedLength;
      fields.csrcs = this.sharedCsrcs;
      fields.csrcCount = this.sharedCsrcCount;
      if (p.mixMinusLength > 0) {
        payload = p.mixMinus;
        length = p.mixMinusLength;
        let c = 0;
        for (let k = 0; k < this.mixCount; k++) {
          const q = this.mixSet[k];
          if (q !== p && c < 15) this.minusCsrcs[c++] = q.inSsrc;
        }
        if (p.backstage) {
          for (let k = 0; k < this.backstageMixCount; k++) {
            const q = this.backstageSet[k];
            if (q !== p && c < 15) this.minusCsrcs[c++] = q.inSsrc;
          }
        }
        fields.csrcs = this.minusCsrcs;
        fields.csrcCount = c;
      } else if (room && p.backstage) {
        payload = this.roomShared;
        length = this.roomSharedLength;
        fields.csrcs = this.roomCsrcs;
        fields.csrcCount = this.roomCsrcCount;
      }
      const seq = p.outSeq;
      const timestamp = (p.outTimestampBase + timestampOffset) % TWO_32;
      const marker = p.stats.packetsSent === 0;
      p.outSeq = (seq + 1) & 0xffff;
      p.stats.packetsSent++;
      this.stats.packetsOut++;
      const transport = p.transport;
      if (transport !== null && transport.sendHeader !== undefined) {
        // The header alone, in one scratch row the transport copies at once: it gathers the
        // header with the payload, written once per tick.
        const buf = this.headerScratch;
        transport.sendHeader(buf, writeRtpHeader(buf, fields.payloadType, marker, seq, timestamp, p.outSsrc, fields.csrcs, fields.csrcCount), payload, length, payload === this.shared);
      } else {
        fields.sequenceNumber = seq;
        fields.timestamp = timestamp;
        fields.ssrc = p.outSsrc;
        fields.marker = marker;
        p.sendFlip ^= 1;
        const buf = p.sendBuffers[p.sendFlip];
        this.sink(p, buf, writeRtp(buf, fields, payload, length));
      }
    }

    // 5. Participants that faded out on their way out leave now.
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i].leaving) this.detach(list[i]);
    }
  }

  /**
   * The backstage room: the program plus the backstage talkers, encoded once for the backstage
   * presenters who do not talk, and once per backstage talker without its own voice.
   */
  private mixRoom(): void {
    const samples = this.frameSamples;
    const room = this.roomSum;
    const sum = this.sum;
    const backstage = this.backstageSum;
    for (let i = 0; i < samples; i++) room[i] = sum[i] + backstage[i];
    let c = 0;
    for (let k = 0; k < this.sharedCsrcCount && c < 15; k++) this.roomCsrcs[c++] = this.sharedCsrcs[k];
    for (let k = 0; k < this.backstageMixCount && c < 15; k++) this.roomCsrcs[c++] = this.backstageSet[k].inSsrc;
    this.roomCsrcCount = c;
    limitInto(room, this.mixPcm, samples);
    this.roomEncoder ??= this.encoders.acquire();
    this.roomSharedLength = this.roomEncoder.encode(this.mixPcm, this.roomShared);
    this.stats.encodes++;
    const bsel = this.backstageSelection;
    for (let i = 0; i < bsel.speakerCount; i++) {
      const p = this.bySlot[bsel.speakers[i]];
      if (!p || !p.receives || p.leaving || !p.encoder) continue;
      // Its own voice is in the room's sum (or, on the tick it leaves the program, in the program's).
      if (p.inBackstageMix || p.inProgramMix) limitMinusInto(room, p.pcm, this.mixPcm, samples);
      else limitInto(room, this.mixPcm, samples);
      this.tuneFec(p, p.encoder);
      p.mixMinusLength = p.encoder.encode(this.mixPcm, p.mixMinus);
      this.stats.encodes++;
    }
  }

  /** Subscribes to the program feed: the shared mix, once per tick, as one RTP stream for viewers. */
  addProgramSink(sink: ProgramSink): () => void {
    this.programSinks.add(sink);
    return () => this.programSinks.delete(sink);
  }

  private sendProgram(timestampOffset: number, mediaMs: number): void {
    const fields = this.fields;
    fields.csrcs = this.sharedCsrcs;
    fields.csrcCount = this.sharedCsrcCount;
    fields.sequenceNumber = this.programSeq;
    fields.timestamp = (this.programTimestampBase + timestampOffset) % TWO_32;
    fields.ssrc = this.programSsrc;
    fields.marker = false;
    this.programSeq = (this.programSeq + 1) & 0xffff;
    const written = writeRtp(this.programBuffer, fields, this.shared, this.sharedLength);
    // One packet for all viewers, built once; a fresh buffer because transports may hold it.
    const packet = Buffer.from(this.programBuffer.subarray(0, written));
    for (const sink of this.programSinks) {
      try {
        sink(packet, mediaMs);
      } catch {
        this.stats.tickErrors++;
      }
    }
  }

  /** Pops this tick's frame and turns it into PCM: decode, FEC, PLC, or a fade-out on a stop. */
  private decodeFrame(p: Participant, now: number): void {
    const kind = p.jitter.pop(now);
    if (!p.decoder) {
      p.decoder = this.decoders.acquire();
      p.decoder.reset();
    }
    const dec = p.decoder;
    const samples = this.frameSamples;
    p.hasPcm = false;
    p.stopped = false;
    if (kind === 'frame') {
      const got = dec.decode(p.jitter.payload, p.pcm);
      this.stats.decodes++;
      if (got === samples) {
        p.stats.decoded++;
        p.hasPcm = true;
      } else {
        p.stats.corrupt++;
        p.hasPcm = dec.conceal(p.pcm, samples) === samples;
      }
    } else if (kind === 'stretch') {
      // Lip sync deepens the buffer by a frame: conceal one without fading (the stream goes on).
      dec.conceal(p.pcm, samples);
      p.stats.concealed++;
      p.hasPcm = true;
    } else if (kind === 'lost') {
      const next = p.jitter.nextPayload;
      if (next && dec.decodeFec(next, p.pcm, samples) === samples) {
        p.stats.fecRecovered++;
      } else {
        dec.conceal(p.pcm, samples);
        p.stats.concealed++;
      }
      p.hasPcm = true;
    } else if (p.audible || p.backstageAudible) {
      // The stream stopped (underrun): conceal one frame and fade it to zero instead of a click.
      dec.conceal(p.pcm, samples);
      applyRamp(p.pcm, samples, 1, 0);
      p.stats.fadeOuts++;
      p.hasPcm = true;
      p.stopped = true;
    }
  }

  private releaseCodecs(p: Participant): void {
    // Participants without level extension keep their decoder: they are decoded every tick
    // (unless muted).
    if (p.decoder && (p.levelsSeen || p.muted)) {
      this.decoders.release(p.decoder);
      p.decoder = null;
    }
    if (p.encoder) this.releaseEncoder(p);
  }

  /** Sets the expected loss of `p`'s mix-minus encoder when it changed (a call into libopus only then). */
  private tuneFec(p: Participant, encoder: OpusEncoder): void {
    const want = this.expectedLossPercent(p);
    if (p.encoderLossPercent === want) return;
    encoder.setExpectedLossPercent(want);
    p.encoderLossPercent = want;
  }

  /** Back to the pool at the default expected loss: the pool also serves the backstage room's shared mix. */
  private releaseEncoder(p: Participant): void {
    const encoder = p.encoder!;
    if (p.encoderLossPercent !== this.defaultLossPercent) encoder.setExpectedLossPercent(this.defaultLossPercent);
    this.encoders.release(encoder);
    p.encoder = null;
  }

  private detach(p: Participant): void {
    if (!this.byId.delete(p.id)) return;
    p.taps.end();
    const idx = this.list.indexOf(p);
    if (idx >= 0) this.list.splice(idx, 1);
    this.bySlot[p.slot] = undefined;
    this.freeSlots.push(p.slot);
    const wasSpeaker = this.selection.isSpeaker(p.slot);
    this.selection.remove(p.slot);
    this.backstageSelection.remove(p.slot);
    if (p.backstage) this.backstageCount--;
    if (p.decoder) this.decoders.release(p.decoder);
    if (p.encoder) this.releaseEncoder(p);
    p.decoder = null;
    if (wasSpeaker && !this.closed) this.emit('speakers', this.speakerIds);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of [...this.list]) this.detach(p);
    this.decoders.close();
    this.encoders.close();
    this.sharedEncoder.close();
    this.roomEncoder = null;
    this.programSinks.clear();
    this.removeAllListeners();
  }
}
