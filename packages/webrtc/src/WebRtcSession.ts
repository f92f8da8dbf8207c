import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { RTCPeerConnection } from 'werift';
import type { PeerConfig } from 'werift';
import { filterCandidates } from './Sdp.js';
import { SharedPortTransport, sharedTransportsOf } from './SharedUdpPort.js';
import { guardIceRequests } from './StunGuard.js';
import { openSrtcpNatively } from './SrtpGcm.js';

export type SessionKind = 'whip' | 'whep';

/**
 * Gives the session's ICE agent a 64-bit ufrag before the answer carries it. werift makes 4 hex
 * digits (16 bits, where RFC 8445 §5.3 asks for at least 24): among 1,000 sessions on one shared
 * port about 8 pairs would share a ufrag, and the later of each pair could never connect (its
 * Binding requests checked against the other's password). werift keeps a ufrag → password history
 * for the checks it answers; the new ufrag is added to it.
 */
function widenIceUfrag(pc: RTCPeerConnection): void {
  for (const it of (pc as unknown as { iceTransports: { connection?: IceAgentCredentials }[] }).iceTransports) {
    const c = it.connection;
    if (!c || typeof c.localUsername !== 'string' || c.localUsername.length >= 16) continue;
    c.localUsername = randomBytes(8).toString('hex');
    c.userHistory[c.localUsername] = c.localPassword;
  }
}
interface IceAgentCredentials {
  localUsername: string;
  localPassword: string;
  userHistory: Record<string, string>;
}

/**
 * One timer for the watchdogs of every session with the same period, instead of an interval per
 * session: 1,000 sessions' intervals, each at its own phase, woke the node's event loop 1,000
 * times a second (about 40 µs of CPU a wake-up on the development VM), for a check of a few
 * nanoseconds each.
 */
class Watchdogs {
  readonly #byPeriod = new Map<number, { timer: NodeJS.Timeout; sessions: Set<() => void> }>();

  add(periodMs: number, check: () => void): () => void {
    let group = this.#byPeriod.get(periodMs);
    if (group === undefined) {
      const sessions = new Set<() => void>();
      const timer = setInterval(() => {
        for (const c of sessions) c();
      }, periodMs);
      timer.unref();
      group = { timer, sessions };
      this.#byPeriod.set(periodMs, group);
    }
    const g = group;
    g.sessions.add(check);
    return () => {
      g.sessions.delete(check);
      if (g.sessions.size === 0 && this.#byPeriod.get(periodMs) === g) {
        clearInterval(g.timer);
        this.#byPeriod.delete(periodMs);
      }
    };
  }
}
const watchdogs = new Watchdogs();

export interface SessionEvents {
  close: [reason: string];
}

export interface SessionStats {
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  dropped: number;
}

/**
 * One WHIP or WHEP session: a werift peer connection and its lifetime. Closed on DELETE, on ICE
 * or DTLS failure, or after `mediaTimeoutMs` without media; `close()` frees every socket, timer
 * and DTLS context and emits `close` once.
 */
export abstract class WebRtcSession extends EventEmitter<SessionEvents> {
  readonly id: string;
  readonly etag = `"${randomBytes(8).toString('hex')}"`;
  readonly createdAt = Date.now();
  readonly pc: RTCPeerConnection;
  readonly stats: SessionStats = { packetsIn: 0, packetsOut: 0, bytesIn: 0, dropped: 0 };
  protected lastMediaAt = performance.now();
  private readonly stopWatchdog: () => void;
  private closed = false;
  closeReason: string | null = null;

  constructor(
    readonly kind: SessionKind,
    readonly eventId: string,
    config: Partial<PeerConfig>,
    private readonly mediaTimeoutMs: number,
    /** The session's id (a WHIP session's is its participant's); random by default. */
    id?: string,
  ) {
    super();
    this.id = id ?? randomBytes(12).toString('base64url');
    this.pc = new RTCPeerConnection(config);
    this.pc.connectionStateChange.subscribe((state) => {
      if (state === 'failed') this.close('ice_failed');
      else if (state === 'closed') this.close('peer_closed');
      else if (state === 'connected') for (const d of this.pc.dtlsTransports) openSrtcpNatively(d);
    });
    this.stopWatchdog = watchdogs.add(Math.min(1000, this.mediaTimeoutMs), () => {
      this.beforeWatchdog();
      if (performance.now() - this.lastMediaAt > this.mediaTimeoutMs) this.close('media_timeout');
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get connectionState(): string {
    return this.pc.connectionState;
  }

  /**
   * Applies the offer, waits for ICE gathering (WHIP/WHEP are not trickled) and returns the answer.
   * May never settle if the session is closed meanwhile (werift's `setRemoteDescription` does not,
   * on a peer connection closed under it): callers wait through `unlessClosed`.
   */
  async answer(offer: string, allow: (address: string) => boolean, publicIp?: string): Promise<string> {
    await this.pc.setRemoteDescription({ type: 'offer', sdp: filterCandidates(offer, allow) });
    widenIceUfrag(this.pc);
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    if (this.pc.iceGatheringState !== 'complete') {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5000);
        this.pc.iceGatheringStateChange.subscribe((s) => {
          if (s === 'complete') {
            clearTimeout(timer);
            resolve();
          }
        });
      });
    }
    // On a shared port, the session's Binding requests are routed to it from now on (before the answer leaves).
    for (const { transport, ufrag, password } of sharedTransportsOf(this.pc as unknown as Parameters<typeof sharedTransportsOf>[0])) transport.bindCredentials(ufrag, password);
    // On a port of its own, werift would answer any Binding request: the same check goes in front of it.
    guardIceRequests(this.pc, (t) => t instanceof SharedPortTransport);
    const sdp = this.pc.localDescription?.sdp;
    if (!sdp) throw new Error('no local description');
    return filterCandidates(sdp, allow, publicIp);
  }

  /** `step`, or a rejection once the session closes (whichever comes first). */
  unlessClosed<T>(step: Promise<T>): Promise<T> {
    if (this.closed) {
      step.catch(() => undefined);
      return Promise.reject(new Error(`session closed (${this.closeReason})`));
    }
    return new Promise<T>((resolve, reject) => {
      const onClose = (reason: string) => reject(new Error(`session closed (${reason})`));
      this.once('close', onClose);
      step.then(
        (v) => {
          this.off('close', onClose);
          resolve(v);
        },
        (err: unknown) => {
          this.off('close', onClose);
          reject(err);
        },
      );
    });
  }

  /** Lets a session refresh its liveness from something other than received media. */
  protected beforeWatchdog(): void {}

  protected touch(): void {
    this.lastMediaAt = performance.now();
  }

  describe(): Record<string, unknown> {
    return {
      session: this.id,
      transport: this.kind,
      connectionState: this.pc.connectionState,
      packetsIn: this.stats.packetsIn,
      packetsOut: this.stats.packetsOut,
    };
  }

  protected abstract release(): void;

  close(reason = 'closed'): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.stopWatchdog();
    try {
      this.release();
    } finally {
      void this.pc.close().catch(() => undefined);
      this.emit('close', reason);
      this.removeAllListeners();
    }
  }
}
