/**
 * The native homes of plain-RTP participants' sockets (Linux, the `@mcu/rtp` addon): a socket of
 * their own each in one epoll set (`OwnRtpSockets`), or one UDP port shared by all of them
 * (`SharedRtpPort`). Either is read once per mixing tick, every datagram with its kernel arrival
 * time, and a tick's mixes leave in one `UdpSendBatch`.
 *
 * The shared port is what the kernel makes cheapest: one recvmmsg(2) takes many participants'
 * datagrams and one sendmmsg(2) sends a tick's mixes, where a port per participant costs a
 * system call per datagram each way (symmetric RTP: each mix must leave from its participant's
 * own port). Datagrams are demultiplexed by their source address: the address a participant
 * registered (where it gets its mix: symmetric RTP sends from there too), or one its latched
 * stream moved to since; several participants behind one address are told apart by SSRC.
 */
import { isRtcpPacket, UdpSendBatch, UdpSocketSet } from '@mcu/rtp';
import type { DropCounters } from './DropCounters.js';
import type { NativeSocket, RtpEndpoint, RtpSocketHome } from './RtpEndpoint.js';

/** What a mixer event needs of its native sockets: read them, send the tick's batch, let go. */
export interface RtpSocketIo extends RtpSocketHome {
  readonly sends: UdpSendBatch;
  /** Hands every datagram that arrived since the last call to its endpoint; returns how many were read. */
  read(): number;
  /** Sends the tick's batch; a datagram that failed is counted on its endpoint. */
  flush(): number;
  /** Datagrams read so far. */
  readonly datagrams: number;
  /** A shared port's number, null for a socket per participant. */
  readonly sharedPort: number | null;
  close(): void;
}

/** A socket per participant, all in one native epoll set (symmetric RTP from each participant's own port). */
export class OwnRtpSockets implements RtpSocketIo {
  readonly sharedPort = null;
  private readonly bySlot: (RtpEndpoint | undefined)[] = [];

  private constructor(
    private readonly sockets: UdpSocketSet,
    readonly sends: UdpSendBatch,
  ) {}

  /** Null where the addon is not built. `sendThread`: the tick's batch leaves from a native sender thread. */
  static open(sendThread: boolean): OwnRtpSockets | null {
    const sockets = UdpSocketSet.open({ bufferBytes: 1 << 20 });
    const sends = sockets !== null ? UdpSendBatch.create({ thread: sendThread }) : null;
    return sockets !== null && sends !== null ? new OwnRtpSockets(sockets, sends) : null;
  }

  attach(endpoint: RtpEndpoint, bindHost: string, bindPort: number): NativeSocket {
    const s = this.sockets.add(bindHost, bindPort);
    this.bySlot[s.slot] = endpoint;
    return {
      tag: s.slot,
      fd: s.fd,
      port: s.port,
      sends: this.sends,
      release: () => {
        this.bySlot[s.slot] = undefined;
        this.sockets.remove(s.slot);
      },
    };
  }

  get datagrams(): number {
    return this.sockets.datagrams;
  }

  read(): number {
    return this.sockets.read(this.visit);
  }

  private readonly visit = (slot: number, packet: Uint8Array, length: number, sourceIpv4: number, _sourcePort: number, atMs: number): void => {
    this.bySlot[slot]?.receive(packet, length, sourceIpv4, atMs);
  };

  flush(): number {
    return this.sends.flush(this.onSendFailure);
  }

  private readonly onSendFailure = (slot: number): void => {
    this.bySlot[slot]?.sendFailed();
  };

  close(): void {
    this.sends.close();
    this.sockets.close();
    this.bySlot.length = 0;
  }
}

export interface SharedRtpPortOptions {
  /** IPv4 literal to bind. */
  host: string;
  /** 0 (default): any free port. */
  port?: number;
  /** Send and receive buffer (default 4 MiB; the kernel caps it at net.core.rmem_max / wmem_max). */
  bufferBytes?: number;
  /** Where datagrams that belong to no participant are counted (`unknown_source`). */
  drops: DropCounters;
  /** false: null even where the addon is built. */
  native?: boolean;
}

/** Source addresses a participant may be latched to beyond the one it registered (the oldest learned one goes first). */
const MAX_LEARNED = 4;

/** The SSRC of an RTP packet (bytes 8–11) or of an RTCP packet's sender (4–7); -1 when too short. */
function streamSsrc(packet: Uint8Array, length: number): number {
  const at = length >= 8 && isRtcpPacket(packet) ? 4 : length >= 12 ? 8 : -1;
  return at < 0 ? -1 : ((packet[at] << 24) | (packet[at + 1] << 16) | (packet[at + 2] << 8) | packet[at + 3]) >>> 0;
}

/**
 * One UDP port for every plain-RTP participant on it (an event's, or a node's: events read it in
 * their ticks, every datagram goes to its own participant whichever event reads it). Participants
 * are routed by source address: the one they registered (symmetric RTP: where they get their mix
 * from is where they send from), several on one address told apart by SSRC. A datagram from an
 * address no participant has goes to one that registered the same IP only when it carries that
 * participant's latched stream (its NAT binding moved), and the address is then latched to it.
 * Anything else is dropped and counted as `unknown_source`.
 */
export class SharedRtpPort {
  readonly host: string;
  readonly port: number;
  readonly drops: DropCounters;
  private readonly set: UdpSocketSet;
  private readonly fd: number;
  /** Endpoints by source address (IPv4 × 65536 + port): usually one. */
  private readonly byAddress = new Map<number, RtpEndpoint[]>();
  /** Endpoints by the IPv4 they registered. */
  private readonly byIp = new Map<number, RtpEndpoint[]>();
  /** Address keys routed to each endpoint: the registered one first, then the learned ones. */
  private readonly keysOf = new Map<RtpEndpoint, number[]>();
  private readonly byTag: (RtpEndpoint | undefined)[] = [];
  private readonly freeTags: number[] = [];

  private constructor(set: UdpSocketSet, bound: { fd: number; port: number }, opts: SharedRtpPortOptions) {
    this.set = set;
    this.fd = bound.fd;
    this.port = bound.port;
    this.host = opts.host;
    this.drops = opts.drops;
  }

  /** Binds the port; null without the native addon. Throws when it cannot bind. */
  static open(opts: SharedRtpPortOptions): SharedRtpPort | null {
    const set = opts.native === false ? null : UdpSocketSet.open({ bufferBytes: opts.bufferBytes ?? 4 << 20, batch: 1024 });
    if (set === null) return null;
    try {
      return new SharedRtpPort(set, set.add(opts.host, opts.port ?? 0), opts);
    } catch (err) {
      set.close();
      throw err;
    }
  }

  /** Participants on the port. */
  get size(): number {
    return this.keysOf.size;
  }

  get datagrams(): number {
    return this.set.datagrams;
  }

  get isClosed(): boolean {
    return this.set.isClosed;
  }

  /** Routes `remoteIpv4`:`remotePort` (where its mixes go) to `endpoint`; its mixes are queued in `sends`. */
  attach(endpoint: RtpEndpoint, sends: UdpSendBatch, remoteIpv4: number, remotePort: number): NativeSocket {
    if (this.set.isClosed) throw new Error('the shared RTP port is closed');
    const tag = this.freeTags.length > 0 ? this.freeTags.pop()! : this.byTag.length;
    this.byTag[tag] = endpoint;
    this.keysOf.set(endpoint, []);
    this.route(endpoint, remoteIpv4 * 65536 + remotePort);
    let sameIp = this.byIp.get(remoteIpv4);
    if (sameIp === undefined) this.byIp.set(remoteIpv4, (sameIp = []));
    sameIp.push(endpoint);
    return { tag, fd: this.fd, port: this.port, sends, release: () => this.detach(endpoint, tag, remoteIpv4) };
  }

  private route(endpoint: RtpEndpoint, key: number): void {
    const keys = this.keysOf.get(endpoint)!;
    if (keys.length > MAX_LEARNED) this.unroute(endpoint, keys.splice(1, 1)[0]);
    keys.push(key);
    const list = this.byAddress.get(key);
    if (list === undefined) this.byAddress.set(key, [endpoint]);
    else list.push(endpoint);
  }

  private unroute(endpoint: RtpEndpoint, key: number): void {
    const list = this.byAddress.get(key);
    if (list === undefined) return;
    const i = list.indexOf(endpoint);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.byAddress.delete(key);
  }

  private detach(endpoint: RtpEndpoint, tag: number, remoteIpv4: number): void {
    const keys = this.keysOf.get(endpoint);
    if (keys === undefined) return;
    for (const key of keys) this.unroute(endpoint, key);
    this.keysOf.delete(endpoint);
    const sameIp = this.byIp.get(remoteIpv4);
    if (sameIp !== undefined) {
      sameIp.splice(sameIp.indexOf(endpoint), 1);
      if (sameIp.length === 0) this.byIp.delete(remoteIpv4);
    }
    this.byTag[tag] = undefined;
    this.freeTags.push(tag);
  }

  /** Hands every datagram the port holds to its participant; returns how many were read. */
  read(): number {
    return this.set.read(this.visit);
  }

  private readonly visit = (_slot: number, packet: Uint8Array, length: number, sourceIpv4: number, sourcePort: number, atMs: number): void => {
    const key = sourceIpv4 * 65536 + sourcePort;
    const list = this.byAddress.get(key);
    let endpoint: RtpEndpoint | undefined;
    if (list !== undefined) {
      endpoint = list.length === 1 ? list[0] : SharedRtpPort.pick(list, streamSsrc(packet, length), atMs, 1);
    } else {
      // A new address of a registered IP (a NAT rebinding): the participant whose stream it carries
      // keeps it. Never one without a stream yet: a kicked participant still sending from its old
      // address would take a newcomer's place.
      const sameIp = sourceIpv4 >= 0 ? this.byIp.get(sourceIpv4) : undefined;
      const ssrc = sameIp !== undefined ? streamSsrc(packet, length) : -1;
      if (ssrc >= 0) {
        endpoint = SharedRtpPort.pick(sameIp!, ssrc, atMs, 2);
        if (endpoint !== undefined) this.route(endpoint, key);
      }
    }
    if (endpoint === undefined) return this.drops.drop('unknown_source');
    endpoint.receive(packet, length, sourceIpv4, atMs);
  };

  /** The endpoint whose stream `ssrc` is, else (`least` 1) the first that may take it; undefined when none. */
  private static pick(list: RtpEndpoint[], ssrc: number, atMs: number, least: 1 | 2): RtpEndpoint | undefined {
    let best: RtpEndpoint | undefined;
    let bestClaim = least - 1;
    for (let i = 0; i < list.length; i++) {
      const claim = list[i].claims(ssrc, atMs);
      if (claim > bestClaim) {
        best = list[i];
        bestClaim = claim;
        if (claim === 2) break;
      }
    }
    return best;
  }

  /** A send of the participant with `tag` failed. */
  sendFailed(tag: number): void {
    this.byTag[tag]?.sendFailed();
  }

  /** Closes the socket; participants still on it get nothing more. Idempotent. */
  close(): void {
    this.set.close();
    this.byAddress.clear();
    this.byIp.clear();
    this.keysOf.clear();
    this.byTag.length = 0;
    this.freeTags.length = 0;
  }
}

/** An event's participants on a shared port (its own, or its node's): the port's routes, the event's batch. */
export class SharedPortIo implements RtpSocketIo {
  private constructor(
    readonly port: SharedRtpPort,
    readonly sends: UdpSendBatch,
    /** The event opened the port (and closes it). */
    private readonly owned: boolean,
  ) {}

  /** Null without the native addon. `sendThread`: the tick's batch leaves from a native sender thread. */
  static open(port: SharedRtpPort, owned: boolean, sendThread: boolean): SharedPortIo | null {
    const sends = UdpSendBatch.create({ thread: sendThread });
    return sends === null ? null : new SharedPortIo(port, sends, owned);
  }

  get sharedPort(): number {
    return this.port.port;
  }

  get datagrams(): number {
    return this.port.datagrams;
  }

  attach(endpoint: RtpEndpoint, _bindHost: string, _bindPort: number, remoteIpv4: number, remotePort: number): NativeSocket {
    return this.port.attach(endpoint, this.sends, remoteIpv4, remotePort);
  }

  read(): number {
    return this.port.read();
  }

  flush(): number {
    return this.sends.flush(this.onSendFailure);
  }

  private readonly onSendFailure = (tag: number): void => this.port.sendFailed(tag);

  close(): void {
    this.sends.close();
    if (this.owned) this.port.close();
  }
}
