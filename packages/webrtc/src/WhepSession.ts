import type { PeerConfig, RTCRtpSender } from 'werift';
import { parseRtp, RtpHeader as ParsedHeaderClass } from '@mcu/rtp';
import type { RtpHeader as ParsedHeader } from '@mcu/rtp';
import { WebRtcSession } from './WebRtcSession.js';
import { FastSender } from './FastSender.js';

/** How a program packet reaches each viewer: werift's generic sender, or the shared-parse fast path. */
export type SendPath = 'werift' | 'fast';

/**
 * Where a program feed comes from: the mixer's audio mixer on a mixer node, the relay forwarder's
 * decrypted feed on a relay. `subscribe` returns the unsubscribe function.
 */
export interface ProgramSource {
  readonly id: string;
  addProgramSink(sink: (packet: Buffer) => void): () => void;
}

/** One per event: subscribes once to the program feed, parses each packet once, fans out. */
export class ProgramFanOut {
  private readonly viewers = new Set<WhepSession>();
  private readonly parsed = new ParsedHeaderClass();
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly source: ProgramSource) {}

  add(viewer: WhepSession): () => void {
    this.viewers.add(viewer);
    this.unsubscribe ??= this.source.addProgramSink((packet) => {
      if (parseRtp(packet, this.parsed) !== null) return;
      for (const v of this.viewers) v.deliver(packet, this.parsed);
    });
    return () => {
      this.viewers.delete(viewer);
      if (this.viewers.size === 0) {
        this.unsubscribe?.();
        this.unsubscribe = null;
      }
    };
  }

  get size(): number {
    return this.viewers.size;
  }
}

/**
 * A viewer playing the program feed over WHEP: recvonly audio (and video once the video mixer
 * exists). The program packet is built once per tick by the mixer; per viewer only werift's
 * header rewrite and SRTP remain.
 */
export class WhepSession extends WebRtcSession {
  private unsubscribe: (() => void) | null = null;
  private audioSender: RTCRtpSender | null = null;
  private fast: FastSender | null = null;

  constructor(
    eventId: string,
    config: Partial<PeerConfig>,
    mediaTimeoutMs: number,
    program: ProgramFanOut,
    public sendPath: SendPath = 'fast',
  ) {
    super('whep', eventId, config, mediaTimeoutMs);
    this.pc.onRemoteTransceiverAdded.subscribe((t) => {
      t.setDirection('sendonly');
      if (t.kind === 'audio' && !this.audioSender) {
        this.audioSender = t.sender;
        this.fast = new FastSender(t.sender);
      }
    });
    this.unsubscribe = program.add(this);
  }

  /** Called by the event's fan-out once per program packet, parsed once for all viewers. */
  deliver(packet: Buffer, parsed: ParsedHeader): void {
    const sender = this.audioSender;
    if (!sender) return;
    this.stats.packetsOut++;
    if (this.sendPath === 'fast') this.fast!.send(packet, parsed);
    else void sender.sendRtp(packet).catch(() => undefined);
  }

  /** Viewers send no media: a viewer is alive while its connection (ICE consent) is up. */
  protected override beforeWatchdog(): void {
    if (this.pc.connectionState === 'connected') this.touch();
  }

  protected release(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }
}
