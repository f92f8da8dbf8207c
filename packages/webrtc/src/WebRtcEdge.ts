import { ConflictError, createLogger, NotFoundError, ServiceUnavailableError, ValidationError, type Logger } from '@mcu/control';
import type { MixerEvent } from '@mcu/mixer';
import type { VideoCodec } from '@mcu/rtp';
import { withOnlyVideoCodec } from './PresenterPreview.js';
import type { PeerConfig } from 'werift';
import { peerConfig } from './PeerConfig.js';
import type { WebRtcOptions } from './PeerConfig.js';
import { addressAllowList, summarizeOffer } from './Sdp.js';
import { SharedUdpPort } from './SharedUdpPort.js';
import type { SharedUdpPortStats } from './SharedUdpPort.js';
import { sumFanOutStats } from './NativeFanOut.js';
import type { NativeFanOutStats } from './NativeFanOut.js';
import type { WebRtcSession } from './WebRtcSession.js';
import { ProgramFanOut, WhepSession } from './WhepSession.js';
import type { ProgramSource, SendPath } from './WhepSession.js';
import { WhipSession, type WhipParticipant } from './WhipSession.js';

export interface EdgeStats {
  whipSessions: number;
  whepSessions: number;
  created: number;
  closedByReason: Record<string, number>;
  rejected: number;
  /** The shared UDP port's demultiplexing (null: a port per session). */
  rtcPort: SharedUdpPortStats | null;
  /** The native fan-out groups of every program feed, summed (null: the addon is not built). */
  fanOut: NativeFanOutStats | null;
  /** The same for the program video's rendition groups (null: none, or no addon). */
  videoFanOut: NativeFanOutStats | null;
}

/**
 * The node's WebRTC edge: creates WHIP (ingest) and WHEP (playback) sessions from SDP offers,
 * enforces the session limit, and tears sessions down on request or failure.
 */
/** A mixer event's program feed as a WHEP source. */
export function programSourceOf(event: MixerEvent): ProgramSource {
  return {
    id: event.id,
    addProgramSink: (sink) => event.mixer.addProgramSink(sink),
    video: {
      addVideoProgramSink: (rendition, sink) => event.addVideoProgramSink(rendition, (packet, length, r) => sink(packet, length, r.frameMediaMs)),
      requestKeyframe: (rendition) => event.requestVideoKeyframe(rendition),
      renditions: () => event.videoRenditions,
    },
  };
}

export interface WebRtcEdgeOptions extends WebRtcOptions {
  /** Sessions opened and closed (with why) are logged here; default: a logger at MCU_LOG_LEVEL / info. */
  log?: Logger;
}

/**
 * A session closed for a reason of the node's (its event ended, the node drains or shuts down, a
 * newer session replaced it), not because its own connection failed or closed (the offer's fault).
 */
function closedByNode(reason: string | null): boolean {
  return reason !== null && reason !== 'peer_closed' && reason !== 'ice_failed' && reason !== 'negotiation_failed';
}

/** How a session is named in the logs: WHIP sessions are participants, WHEP sessions viewers. */
const sessionNoun = { whip: 'WHIP participant', whep: 'WHEP viewer' } as const;

export class WebRtcEdge {
  private readonly sessions = new Map<string, WebRtcSession>();
  private readonly config: Partial<PeerConfig>;
  private readonly allow: (address: string) => boolean;
  private readonly mediaTimeoutMs: number;
  private readonly maxSessions: number;
  private readonly answerTimeoutMs: number;
  private readonly fanOuts = new Map<string, ProgramFanOut>();
  /** Per-viewer send path for new and existing viewers ('fast' unless benchmarking the baseline). */
  private path: SendPath = 'fast';
  private readonly counters = { created: 0, rejected: 0, closedByReason: {} as Record<string, number> };
  private readonly log: Logger;
  /** The one UDP port of every session (`rtcPort`), bound with the first session. */
  private sharedPort: Promise<SharedUdpPort> | null = null;
  private openedPort: SharedUdpPort | null = null;
  private closed = false;

  constructor(private readonly opts: WebRtcEdgeOptions = {}) {
    this.log = opts.log ?? createLogger({ name: 'webrtc' });
    this.config = peerConfig({ iceLite: true, ...opts });
    this.allow = addressAllowList(opts.iceAllow);
    this.mediaTimeoutMs = opts.mediaTimeoutMs ?? 30_000;
    this.maxSessions = opts.maxSessions ?? 500;
    this.answerTimeoutMs = opts.answerTimeoutMs ?? 10_000;
  }

  /**
   * `who`: from a presenter grant: the participant id it names (a guest invited on stage), the
   * display name, and the stage it joins on (its `stage` claim; else the event's presentersJoin).
   */
  async publish(event: MixerEvent, offer: string, who: WhipParticipant = {}): Promise<{ session: WebRtcSession; answer: string }> {
    const summary = summarizeOffer(offer);
    if (!summary.media.some((m) => m.kind === 'audio' && (m.direction === 'sendonly' || m.direction === 'sendrecv'))) {
      throw new ValidationError('a WHIP offer must send audio (sendonly or sendrecv)', 'sdp');
    }
    const pid = who.participantId;
    if (pid !== undefined && (this.sessions.has(pid) || !(await event.mixer.departed(pid)))) {
      throw new ConflictError(`participant ${pid} is connected already`, 'participant_exists');
    }
    this.checkRoom();
    return this.start(new WhipSession(event, this.config, this.mediaTimeoutMs, summary, who), offer);
  }

  /**
   * Plays a program feed: a mixer event's (`programSourceOf`), a relay's forwarded feed, or one
   * presenter's own (`presenterPreviewOf`, with `eventId` the event it belongs to and
   * `videoCodec` the one its packets are in: the answer offers no other).
   */
  async play(source: ProgramSource, offer: string, opts: { rendition?: string; eventId?: string; videoCodec?: VideoCodec } = {}): Promise<{ session: WebRtcSession; answer: string }> {
    const summary = summarizeOffer(offer);
    if (!summary.media.some((m) => m.direction === 'recvonly' || m.direction === 'sendrecv')) {
      throw new ValidationError('a WHEP offer must receive media (recvonly)', 'sdp');
    }
    this.checkRoom();
    let fanOut = this.fanOuts.get(source.id);
    // An idle fan-out is replaced: its source may be gone (a presenter that left and came back).
    if (!fanOut || fanOut.size === 0) {
      fanOut = new ProgramFanOut(source);
      this.fanOuts.set(source.id, fanOut);
    }
    const videoSection = summary.media.find((m) => m.kind === 'video' && (m.direction === 'recvonly' || m.direction === 'sendrecv'));
    // The fan-out's own video source: its rendition groups serve every viewer of the feed.
    const video = fanOut.video && videoSection ? { source: fanOut.video.source, rendition: opts.rendition, initialKbps: videoSection.bandwidthKbps ?? summary.bandwidthKbps, chooser: this.opts.renditionChooser } : undefined;
    const config = opts.videoCodec ? withOnlyVideoCodec(this.config, opts.videoCodec) : this.config;
    return this.start(new WhepSession(opts.eventId ?? source.id, config, this.mediaTimeoutMs, fanOut, this.path, video), offer);
  }

  /** Switches every viewer's send path (the benchmark compares both in one run). */
  setSendPath(path: SendPath): void {
    this.path = path;
    for (const s of this.sessions.values()) if (s instanceof WhepSession) s.sendPath = path;
  }

  get(kind: 'whip' | 'whep', eventId: string, sessionId: string): WebRtcSession {
    const s = this.sessions.get(sessionId);
    if (!s || s.kind !== kind || s.eventId !== eventId) throw new NotFoundError(`session ${sessionId} not found`, 'session_not_found');
    return s;
  }

  end(kind: 'whip' | 'whep', eventId: string, sessionId: string): void {
    this.get(kind, eventId, sessionId).close('deleted');
  }

  /** Sessions of one kind, of one event or of all. */
  sessionCount(kind: 'whip' | 'whep', eventId?: string): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.kind === kind && (eventId === undefined || s.eventId === eventId)) n++;
    return n;
  }

  /** Ends every session of an event (the event ended). */
  endEvent(eventId: string): void {
    for (const s of [...this.sessions.values()]) if (s.eventId === eventId) s.close('event_ended');
    this.fanOuts.delete(eventId);
    for (const id of [...this.fanOuts.keys()]) if (id.startsWith(`${eventId}/`)) this.fanOuts.delete(id);
  }

  stats(): EdgeStats {
    let whip = 0;
    let whep = 0;
    for (const s of this.sessions.values()) (s.kind === 'whip' ? whip++ : whep++);
    const feeds = [...this.fanOuts.values()];
    const fanOut = sumFanOutStats(feeds.map((f) => f.nativeStats()));
    const videoFanOut = sumFanOutStats(feeds.map((f) => f.video?.nativeStats() ?? null));
    return { whipSessions: whip, whepSessions: whep, ...this.counters, closedByReason: { ...this.counters.closedByReason }, rtcPort: this.openedPort?.stats() ?? null, fanOut, videoFanOut };
  }

  get size(): number {
    return this.sessions.size;
  }

  close(): void {
    this.closed = true;
    for (const s of [...this.sessions.values()]) s.close('shutdown');
    this.openedPort?.close();
    this.openedPort = null;
  }

  /** Binds the shared port on first need (`rtcPort`); a no-op with a port per session. Throws when the port is taken. */
  async listen(): Promise<void> {
    const port = this.opts.rtcPort;
    if (port === undefined || this.openedPort !== null) return;
    this.sharedPort ??= SharedUdpPort.open({ port, host: this.opts.rtcHost });
    try {
      const opened = await this.sharedPort;
      if (this.closed) opened.close();
      else this.openedPort = opened;
    } catch (err) {
      this.sharedPort = null;
      throw new ServiceUnavailableError(`the WebRTC port ${port} could not be bound: ${(err as Error).message}`, 5);
    }
  }

  /** Ends every WHEP session (the node is draining: its viewers reconnect elsewhere). Returns how many. */
  endViewers(reason = 'draining'): number {
    let n = 0;
    for (const s of [...this.sessions.values()]) {
      if (s.kind !== 'whep') continue;
      s.close(reason);
      n++;
    }
    return n;
  }

  private checkRoom(): void {
    if (this.sessions.size >= this.maxSessions) {
      this.counters.rejected++;
      throw new ServiceUnavailableError(`this node serves its maximum of ${this.maxSessions} WebRTC sessions`, 5);
    }
  }

  private async start(session: WebRtcSession, offer: string): Promise<{ session: WebRtcSession; answer: string }> {
    try {
      await this.listen();
    } catch (err) {
      session.close('port_unavailable');
      throw err;
    }
    this.sessions.set(session.id, session);
    this.counters.created++;
    let answered = false;
    session.once('close', (reason) => {
      this.sessions.delete(session.id);
      this.counters.closedByReason[reason] = (this.counters.closedByReason[reason] ?? 0) + 1;
      if (answered) {
        const fields = { event: session.eventId, session: session.id, kind: session.kind, reason };
        // A failure of the network or the peer is worth a warning; a DELETE or an ended event is not.
        const level = reason === 'ice_failed' || reason === 'media_timeout' ? 'warn' : 'info';
        this.log[level](fields, `${sessionNoun[session.kind]} left`);
      }
    });
    let answer: string;
    // A negotiation that never ends (werift waiting on something that will not come) must not
    // hold the request and the session forever.
    const timer = setTimeout(() => session.close('negotiation_timeout'), this.answerTimeoutMs);
    try {
      answer = await session.unlessClosed(session.answer(offer, this.allow, this.opts.publicIp));
    } catch (err) {
      if (closedByNode(session.closeReason)) throw this.closedWhileAnswering(session);
      session.close('negotiation_failed');
      throw new ValidationError(`SDP offer could not be negotiated: ${(err as Error).message}`.slice(0, 300), 'sdp');
    } finally {
      clearTimeout(timer);
    }
    // An answer to a session that is gone would send the peer to connect to nothing.
    if (closedByNode(session.closeReason)) throw this.closedWhileAnswering(session);
    if (session.closeReason !== null) throw new ValidationError(`SDP offer could not be negotiated: the connection ${session.closeReason === 'ice_failed' ? 'failed' : 'closed'} while it was answered`, 'sdp');
    answered = true;
    this.log.info({ event: session.eventId, session: session.id, kind: session.kind }, `${sessionNoun[session.kind]} joined`);
    return { session, answer };
  }

  /**
   * The node closed a session while its offer was being answered (the event ended, the node is
   * draining, a newer session took the presenter's place): the offer was fine, so the peer is
   * told why and when to try again, not that its SDP was bad.
   */
  private closedWhileAnswering(session: WebRtcSession): ServiceUnavailableError {
    const reason = session.closeReason;
    this.log.info({ event: session.eventId, session: session.id, kind: session.kind, reason }, `${sessionNoun[session.kind]} closed while negotiating`);
    return new ServiceUnavailableError(`the session was closed while its offer was being answered (${reason}); try again`, 1, 'session_closed');
  }
}
