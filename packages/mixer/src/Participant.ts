import { JitterBuffer } from '@mcu/rtp';
import type { JitterBufferOptions } from '@mcu/rtp';
import type { OpusDecoder, OpusEncoder } from '@mcu/codec';
import type { LipSync } from './LipSync.js';
import { ListenerLoss } from './ListenerLoss.js';
import { PresenterTaps } from './PresenterTaps.js';

/**
 * Where a presenter is: `live` (in the program mix and the composite) or `backstage` (connected,
 * hears the program and the other backstage presenters, in no mix the viewers get). The same
 * values as `@mcu/control`'s `Stage` (the token claim).
 */
export type Stage = 'live' | 'backstage';

/** Counters of one participant's audio path; exported to metrics and the API. */
/** Where a participant's mix goes. */
export interface MixTransport {
  send(packet: Uint8Array, length: number): void;
  /**
   * When present, the mixer hands over the RTP header alone and the payload beside it, so that a
   * transport sending in batches writes the shared mix once for all its listeners: `shared` says
   * the payload is the tick's shared mix (the same bytes for every listener, valid until the next
   * tick), not this participant's own mix-minus. `header` is valid during the call only (one
   * scratch row for every listener; a mix-minus may be copied behind the header in it, up to
   * 1500 bytes).
   */
  sendHeader?(header: Uint8Array, headerLength: number, payload: Uint8Array, payloadLength: number, shared: boolean): void;
}

export interface ParticipantAudioStats {
  decoded: number;
  fecRecovered: number;
  concealed: number;
  fadeOuts: number;
  corrupt: number;
  packetsSent: number;
}

/**
 * One participant as the mixer sees it: an input (jitter buffer, decoder while needed) and an
 * output stream with its own SSRC whose sequence numbers and timestamps stay continuous whether
 * it carries the shared mix or this participant's mix-minus.
 */
export class Participant {
  readonly jitter: JitterBuffer;
  /** Acquired from the pool while the participant must be decoded (speaker, or no RFC 6464 levels). */
  decoder: OpusDecoder | null = null;
  /** Acquired while the participant is a speaker and receives its own mix-minus. */
  encoder: OpusEncoder | null = null;
  /** This tick's decoded frame. */
  readonly pcm: Int16Array;
  /** Whether `pcm` holds audio to mix this tick. */
  hasPcm = false;
  /** Decoded this tick already (to measure energy when no level extension is present). */
  decodedThisTick = false;
  /** Whether RFC 6464 levels have been seen on this participant's stream. */
  levelsSeen = false;
  /** Whether the last mixed frame was audible (so that a stop must fade out). */
  audible = false;
  /** This tick's frame is the faded concealment of a stream that stopped. */
  stopped = false;
  /** Muted by the producer: out of speaker selection and every mix until unmuted. */
  muted = false;
  /** Backstage: out of the program's selection and mixes; in the backstage room's. */
  backstage = false;
  /** Whether the last frame mixed into the backstage room was audible (so that leaving it fades). */
  backstageAudible = false;
  /** This tick's `pcm` is in the program sum / in the backstage room's sum (mix-minus subtracts it). */
  inProgramMix = false;
  inBackstageMix = false;
  /** Leaving after one more tick, in which it fades out. */
  leaving = false;
  /** The loss this participant reports for the mix it receives (RTCP): what its mix-minus encoder expects. */
  readonly listenerLoss = new ListenerLoss();
  /** Expected loss % set on `encoder` (AudioMixer keeps it in step with `listenerLoss`). */
  encoderLossPercent = -1;
  /** This tick's encoded mix-minus (valid when `mixMinusLength` > 0). */
  readonly mixMinus: Uint8Array;
  mixMinusLength = 0;
  /** Two output buffers used alternately, so a packet in flight is never overwritten. */
  readonly sendBuffers: [Uint8Array, Uint8Array];
  sendFlip = 0;
  /** Where this participant's packets go (its RTP socket, later its WebRTC track). */
  transport: MixTransport | null = null;
  /** SSRC latched on the input stream; listed as a CSRC where this voice is in a mix. */
  inSsrc = 0;
  /** Its own packets as received, for a producer's preview (empty unless one is open). */
  readonly taps = new PresenterTaps();
  /** Lip sync with this participant's video (set when it presents video); measured every tick. */
  lipSync: LipSync | null = null;
  /** A plain-RTP participant's display name (WHIP sessions carry their own, with their video label). */
  name: string | undefined = undefined;
  outSeq: number;
  readonly outTimestampBase: number;
  readonly stats: ParticipantAudioStats = {
    decoded: 0,
    fecRecovered: 0,
    concealed: 0,
    fadeOuts: 0,
    corrupt: 0,
    packetsSent: 0,
  };

  get stage(): Stage {
    return this.backstage ? 'backstage' : 'live';
  }

  constructor(
    readonly id: string,
    readonly slot: number,
    /** SSRC of the stream this participant receives from the mixer. */
    readonly outSsrc: number,
    /** Whether this participant receives a mix at all (a listen-only input still mixes). */
    readonly receives: boolean,
    frameSamples: number,
    jitterOptions: JitterBufferOptions | undefined,
    random: () => number,
  ) {
    this.jitter = new JitterBuffer(jitterOptions);
    this.pcm = new Int16Array(frameSamples);
    this.mixMinus = new Uint8Array(1500);
    this.sendBuffers = [new Uint8Array(1500), new Uint8Array(1500)];
    // RFC 3550 §5.1: initial sequence number and timestamp are random.
    this.outSeq = Math.floor(random() * 0x10000);
    this.outTimestampBase = Math.floor(random() * 0x1_0000_0000);
  }
}
