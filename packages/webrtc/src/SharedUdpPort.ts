/**
 * One UDP port for every WebRTC session of a node (`--rtc-port 40000`), as mediasoup's
 * WebRtcServer and LiveKit's single-port mode do: operators open one port, not a range.
 *
 * werift keeps doing ICE (ice-lite), DTLS, SRTP keys and RTCP per session; only its socket is
 * replaced. Each session's ICE protocol gets a `SharedPortTransport` (werift's `Transport`
 * interface: `send`, `onData`, `address`, `close`) instead of a `UdpTransport` on a port of its
 * own, and the shared socket hands each datagram to the right one:
 *
 * 1. by remote address, once that address has proved itself (a route);
 * 2. otherwise (and for every STUN request, so that a new session from a known address, or an ICE
 *    restart, moves the route) by the ICE username: the first half of a Binding request's USERNAME
 *    is our session's ufrag, and the request's MESSAGE-INTEGRITY must verify with that session's
 *    password (RFC 8445 §7.3, RFC 5389 §10.1.2). Only then is the address routed to it.
 *
 * Everything else is dropped and counted by reason: a datagram from an unknown address that is not
 * a STUN Binding request (`unknown_source`), one without USERNAME (`no_username`), with a ufrag
 * no session has (`unknown_ufrag`), or whose MESSAGE-INTEGRITY fails (`bad_integrity`).
 */
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { classes, methods, UdpTransport } from 'werift';
import { stunRequestRefusal } from './StunGuard.js';
import { ipv4ToInt, isRtcpPacket, nativeUdp, socketFd, UdpSendBatch } from '@mcu/rtp';
import type { NativeUdp } from '@mcu/rtp';

type Address = [string, number];

export interface SharedUdpPortOptions {
  port: number;
  /** Address to bind (default 0.0.0.0: every interface the host candidates name). */
  host?: string;
  /** Send and receive buffer of the socket (default 4 MiB: every viewer's packets of a tick pass through it). */
  bufferBytes?: number;
}

export interface SharedUdpPortStats {
  port: number;
  /** Sessions' transports on the port, and remote addresses routed to them. */
  transports: number;
  routes: number;
  datagramsIn: number;
  /** STUN requests that verified and (re)routed an address. */
  stunRouted: number;
  /** Datagrams read by the native drain (recvmmsg) rather than one by one by libuv. */
  drained: number;
  /** Datagrams sent in sendmmsg batches (the program's and werift's own: STUN, DTLS, RTCP), the batches, and datagrams left to dgram.send (full buffer). */
  batchedSent: number;
  batches: number;
  batchFallbacks: number;
  dropped: Record<string, number>;
  /** The `unknown_source` drops by what they were: stun (a response or indication), dtls, rtp, rtcp, other. */
  unrouted: Record<string, number>;
}

const STUN_MAGIC_COOKIE = 0x2112a442;
/** Bytes kept of a datagram read natively (above: too large for any MTU, dropped), and datagrams per native read. */
const SLOT_BYTES = 1504;
const DRAIN_BATCH = 256;
/** Native reads per libuv wake-up at most, so that one busy port cannot hold the event loop. */
const DRAIN_ROUNDS = 8;

function intToIpv4(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 0xff}.${(ip >>> 8) & 0xff}.${ip & 0xff}`;
}

/** A remote address routed to a session, and the address tuple handed to werift with its datagrams. */
interface Route {
  transport: SharedPortTransport;
  addr: Address;
}

/** RFC 7983: a first byte 0-3 with the magic cookie is STUN (DTLS is 20-63, RTP/RTCP 128-191). */
function looksLikeStun(msg: Buffer): boolean {
  return msg.length >= 20 && msg[0] < 4 && msg.readUInt32BE(4) === STUN_MAGIC_COOKIE;
}

/** What an unrouted datagram was (RFC 7983 demultiplexing), for the drop counters. */
function kindOf(msg: Buffer): string {
  const b = msg[0];
  if (b < 4) return looksLikeStun(msg) ? 'stun' : 'other';
  if (b >= 20 && b <= 63) return 'dtls';
  if (b >= 128 && b <= 191) return isRtcpPacket(msg) ? 'rtcp' : 'rtp';
  return 'other';
}

/** A session's view of the shared socket: what werift's StunProtocol expects of a UDP transport. */
export class SharedPortTransport {
  readonly type = 'udp';
  closed = false;
  onData: (data: Buffer, addr: Address) => void = () => {};
  /** ICE credentials of the session, known once it has gathered (`SharedUdpPort.bind`). */
  ufrag: string | null = null;
  password: Buffer | null = null;

  constructor(private readonly port: SharedUdpPort) {}

  /**
   * Queues a sealed packet to `ipv4`:`port` (numbers) for the port's next batch, which leaves in
   * one sendmmsg(2) when the current synchronous run (a tick's loop over viewers) is over. false
   * when the port cannot batch (no native addon): then the caller sends it itself.
   */
  queue(packet: Buffer, ipv4: number, port: number, host: string): boolean {
    return !this.closed && this.port.queue(packet, ipv4, port, host);
  }

  /** The session's ICE credentials, once it has gathered (see `SharedUdpPort.bind`). */
  bindCredentials(ufrag: string, password: string): void {
    this.port.bind(this, ufrag, password);
  }

  /** The shared socket (FastSender writes the program to it directly). */
  get socket(): dgram.Socket {
    return this.port.socket;
  }

  get address(): AddressInfo {
    return this.port.socket.address();
  }

  /** The last host werift sent to, as a number for the batch (a session talks to one or two). */
  #host = '';
  #hostIpv4 = -1;

  /**
   * werift's own datagrams (STUN, DTLS, its RTCP) join the port's next sendmmsg batch like the
   * program's: dgram.send costs a DNS-lookup round (a next tick) and a system call each, which
   * 1,000 handshakes at once paid for thousands of times. dgram where the batch cannot take it.
   */
  send = async (data: Buffer, addr?: Address): Promise<void> => {
    if (this.closed || !addr) return;
    if (!batchWeriftSends) return void this.port.socket.send(data, addr[1], addr[0]);
    if (addr[0] !== this.#host) {
      this.#host = addr[0];
      this.#hostIpv4 = ipv4ToInt(addr[0]);
    }
    if (this.#hostIpv4 >= 0 && this.port.queue(data, this.#hostIpv4, addr[1], addr[0])) return;
    this.port.socket.send(data, addr[1], addr[0]);
  };

  close = async (): Promise<void> => {
    if (this.closed) return;
    this.closed = true;
    this.port.detach(this);
  };
}

let batchWeriftSends = true;

/**
 * Whether werift's own datagrams leave in the port's batches (the default) or by a dgram.send
 * each, as werift sends them on a socket of its own. bench:webrtc turns it off while it measures
 * werift's send path, its baseline: werift's sendRtp reaches the same transport, and batched it
 * would not be werift's own path any more.
 */
export function setBatchWeriftSends(on: boolean): void {
  batchWeriftSends = on;
}

/** Shared ports by port number: werift's `UdpTransport.init` is pointed at them (see `installHook`). */
const openPorts = new Map<number, SharedUdpPort>();
let hooked = false;

/**
 * The ICE port range that names shared port `port` to werift: [port, 65536 + port]. werift passes
 * a peer's range unchanged to `UdpTransport.init` (and refuses [port, port]); no real range ends
 * above 65535, so it cannot be confused with one.
 */
export function sharedPortRange(port: number): [number, number] {
  return [port, 0x1_0000 + port];
}

/**
 * werift creates each ICE protocol's socket with `UdpTransport.init(type, { portRange })`. The
 * range of a port a SharedUdpPort holds (`sharedPortRange`) gets that port's transport instead;
 * any other call (client peers in tests and benchmarks, a real range) is werift's own.
 */
function installHook(): void {
  if (hooked) return;
  hooked = true;
  const target = UdpTransport as unknown as { init: (type: string, opts?: { portRange?: [number, number] }) => Promise<unknown> };
  const original = target.init.bind(UdpTransport);
  target.init = async (type, opts) => {
    const range = opts?.portRange;
    const shared = type === 'udp4' && range && range[1] === 0x1_0000 + range[0] ? openPorts.get(range[0]) : undefined;
    if (shared && !shared.isClosed) return shared.createTransport();
    return original(type, opts);
  };
}

/** Datagrams a batch holds before it is sent without waiting for the end of the synchronous run. */
const FLUSH_AT = 1024;

export class SharedUdpPort {
  readonly socket: dgram.Socket;
  readonly #byUfrag = new Map<string, SharedPortTransport>();
  /** By remote IPv4 × 65536 + port. */
  readonly #routes = new Map<number, Route>();
  /** libuv reads a socket 32 datagrams per loop iteration: too few for every session of a node; the rest is drained natively. */
  readonly #native: NativeUdp | null = nativeUdp();
  readonly #records = new Float64Array(DRAIN_BATCH * 3);
  readonly #data = new Uint8Array(DRAIN_BATCH * SLOT_BYTES);
  #draining = false;
  /** Datagrams read by the native drain (the rest came through libuv). */
  drained = 0;
  readonly #transports = new Set<SharedPortTransport>();
  readonly #dropped: Record<string, number> = {};
  /** The `unknown_source` drops by what they were (stun, dtls, rtp, rtcp, other). */
  readonly #unrouted: Record<string, number> = {};
  #datagramsIn = 0;
  #stunRouted = 0;
  #closed = false;
  /** The datagrams of the current tick, each sealed for its viewer, sent in one native call (null: no addon). */
  readonly #batch: UdpSendBatch | null;
  readonly #fd: number;
  /** What was queued, for dgram.send when the batch cannot send it (a full socket buffer). */
  #queued: { packet: Buffer; port: number; host: string }[] = [];
  #flushScheduled = false;
  /** Datagrams sent in batches, batches, and datagrams the batch left to dgram.send. */
  batchedSent = 0;
  batches = 0;
  batchFallbacks = 0;

  private constructor(socket: dgram.Socket) {
    this.socket = socket;
    this.#fd = socketFd(socket);
    this.#batch = this.#fd >= 0 ? UdpSendBatch.create({ headStride: 1536, capacity: 256 }) : null;
    socket.on('message', this.#onMessage);
    // A send to a vanished peer (ICMP unreachable) must not take the port down.
    socket.on('error', () => this.#drop('socket_error'));
  }

  /** Binds the port; throws when it is taken. */
  static async open(opts: SharedUdpPortOptions): Promise<SharedUdpPort> {
    if (openPorts.has(opts.port)) throw new Error(`UDP port ${opts.port} is already this process's shared WebRTC port`);
    const bufferBytes = opts.bufferBytes ?? 4 << 20;
    const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: bufferBytes, sendBufferSize: bufferBytes });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(opts.port, opts.host ?? '0.0.0.0', () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const port = new SharedUdpPort(socket);
    installHook();
    openPorts.set(opts.port, port);
    return port;
  }

  get port(): number {
    return this.socket.address().port;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** A transport for one ICE protocol of a session (called through werift's UdpTransport.init). */
  createTransport(): SharedPortTransport {
    const t = new SharedPortTransport(this);
    this.#transports.add(t);
    return t;
  }

  /**
   * Gives a session's transports its ICE credentials, once it has gathered and before its answer
   * leaves: from then on its Binding requests are routed to it.
   */
  bind(transport: SharedPortTransport, ufrag: string, password: string): void {
    if (transport.closed || !this.#transports.has(transport)) return;
    transport.ufrag = ufrag;
    transport.password = Buffer.from(password, 'utf8');
    // Several protocols of one session (one per local address) share its ufrag: the first holds it.
    if (!this.#byUfrag.has(ufrag)) this.#byUfrag.set(ufrag, transport);
  }

  /** Forgets a closed transport: its ufrag and every address routed to it. */
  detach(transport: SharedPortTransport): void {
    this.#transports.delete(transport);
    if (transport.ufrag !== null && this.#byUfrag.get(transport.ufrag) === transport) this.#byUfrag.delete(transport.ufrag);
    for (const [key, r] of this.#routes) if (r.transport === transport) this.#routes.delete(key);
  }

  /** See `SharedPortTransport.queue`. */
  queue(packet: Buffer, ipv4: number, port: number, host: string): boolean {
    const batch = this.#batch;
    if (batch === null || this.#closed || ipv4 < 0 || packet.length > batch.headStride) return false;
    batch.add(this.#queued.length, this.#fd, ipv4, port, packet, packet.length, false);
    this.#queued.push({ packet, port, host });
    // A caller that queues without end in one synchronous run (a late source catching up) sends
    // as it goes: the batch stays bounded (1,024 datagrams, 1.5 MiB) instead of growing.
    if (batch.length >= FLUSH_AT) {
      this.flush();
      return true;
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.flush);
    }
    return true;
  }

  /** Sends what was queued: runs by itself after the synchronous run that queued it. */
  readonly flush = (): void => {
    this.#flushScheduled = false;
    const batch = this.#batch;
    if (batch === null || batch.length === 0) return;
    const queued = this.#queued;
    this.#queued = [];
    if (this.#closed) return void batch.clear();
    this.batchedSent += batch.flush(this.#onBatchFailure(queued));
    this.batches++;
  };

  #onBatchFailure(queued: { packet: Buffer; port: number; host: string }[]) {
    return (tag: number): void => {
      // dgram.send queues where sendmmsg found the buffer full.
      const q = queued[tag];
      this.batchFallbacks++;
      if (q && !this.#closed) this.socket.send(q.packet, q.port, q.host);
    };
  }

  stats(): SharedUdpPortStats {
    return {
      port: this.#closed ? 0 : this.port,
      transports: this.#transports.size,
      routes: this.#routes.size,
      datagramsIn: this.#datagramsIn,
      stunRouted: this.#stunRouted,
      drained: this.drained,
      batchedSent: this.batchedSent,
      batches: this.batches,
      batchFallbacks: this.batchFallbacks,
      dropped: { ...this.#dropped },
      unrouted: { ...this.#unrouted },
    };
  }

  #drop(reason: string): void {
    this.#dropped[reason] = (this.#dropped[reason] ?? 0) + 1;
  }

  readonly #onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    this.#dispatch(msg, ipv4ToInt(rinfo.address), rinfo.address, rinfo.port);
    this.#drain();
  };

  /** Reads what else the socket holds in a few native calls (recvmmsg) and hands it out. */
  #drain(): void {
    const native = this.#native;
    if (native === null || this.#fd < 0 || this.#draining) return;
    this.#draining = true;
    try {
      for (let round = 0; round < DRAIN_ROUNDS && !this.#closed; round++) {
        const n = native.recvMany(this.#fd, this.#records, this.#data, SLOT_BYTES);
        const r = this.#records;
        for (let k = 0; k < n && !this.#closed; k++) {
          const length = r[k * 3];
          if (length > SLOT_BYTES) {
            this.#datagramsIn++;
            this.#drop('too_large');
            continue;
          }
          // A copy: werift's DTLS and SRTP may keep what they are given.
          const msg = Buffer.from(this.#data.subarray(k * SLOT_BYTES, k * SLOT_BYTES + length));
          this.#dispatch(msg, r[k * 3 + 1], null, r[k * 3 + 2]);
        }
        this.drained += n;
        if (n < DRAIN_BATCH) break;
      }
    } finally {
      this.#draining = false;
    }
  }

  #dispatch(msg: Buffer, ipv4: number, host: string | null, port: number): void {
    this.#datagramsIn++;
    if (ipv4 < 0) return this.#drop('unknown_source');
    const key = ipv4 * 0x1_0000 + port;
    let route = this.#routes.get(key);
    if (looksLikeStun(msg) && msg.readUInt16BE(0) === (classes.REQUEST | methods.BINDING)) {
      // Every Binding request proves its session again (a new session may reuse an address).
      const t = this.#verify(msg);
      if (t === null) return;
      if (route === undefined || route.transport !== t) {
        route = { transport: t, addr: [host ?? intToIpv4(ipv4), port] };
        this.#routes.set(key, route);
        this.#stunRouted++;
      }
      t.onData(msg, route.addr);
      return;
    }
    if (route === undefined) {
      const kind = kindOf(msg);
      this.#unrouted[kind] = (this.#unrouted[kind] ?? 0) + 1;
      return this.#drop('unknown_source');
    }
    route.transport.onData(msg, route.addr);
  }

  /** The transport a Binding request is for, when its USERNAME and MESSAGE-INTEGRITY say so; null (counted) otherwise. */
  #verify(msg: Buffer): SharedPortTransport | null {
    let t: SharedPortTransport | undefined;
    const refusal = stunRequestRefusal(msg, (ufrag) => (t = this.#byUfrag.get(ufrag))?.password);
    if (refusal !== null || t === undefined) {
      this.#drop(refusal ?? 'unknown_ufrag');
      return null;
    }
    return t;
  }

  /** Closes the socket and forgets every transport; idempotent. */
  close(): void {
    if (this.#closed) return;
    const port = this.port;
    this.#closed = true;
    this.#batch?.clear();
    this.#queued = [];
    if (openPorts.get(port) === this) openPorts.delete(port);
    for (const t of this.#transports) t.closed = true;
    this.#transports.clear();
    this.#byUfrag.clear();
    this.#routes.clear();
    this.socket.close();
  }
}

/** The shared transports of a session's peer connection (werift internals: its ICE protocols' transports). */
export function sharedTransportsOf(pc: { iceTransports: { connection?: unknown }[] }): { transport: SharedPortTransport; ufrag: string; password: string }[] {
  const out: { transport: SharedPortTransport; ufrag: string; password: string }[] = [];
  for (const it of pc.iceTransports) {
    const c = it.connection as { localUsername?: string; localPassword?: string; protocols?: { transport?: unknown }[] } | undefined;
    if (!c?.localUsername || !c.localPassword) continue;
    for (const p of c.protocols ?? []) if (p.transport instanceof SharedPortTransport) out.push({ transport: p.transport, ufrag: c.localUsername, password: c.localPassword });
  }
  return out;
}
