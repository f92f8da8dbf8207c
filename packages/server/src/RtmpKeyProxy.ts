/**
 * Keeps the stream key off ffmpeg's command line. ffmpeg 5.1 takes an output URL on its argv only,
 * and argv is readable by every local user (`ps`, /proc/<pid>/cmdline). So each run of a restream
 * opens one of these proxies on 127.0.0.1 and ffmpeg is given
 * `rtmp://127.0.0.1:<proxy port>/<app>/<placeholder>`, where the placeholder is a random string of
 * exactly the key's byte length. The proxy accepts that one connection, connects to the real
 * ingest (plain TCP for rtmp://, TLS for rtmps://, the server's certificate verified against the
 * system CAs: ffmpeg itself speaks plain RTMP to the proxy and needs no TLS), and relays the bytes
 * both ways, replacing the placeholder by the key going up (the stream name travels in the
 * releaseStream, FCPublish, publish and FCUnpublish commands) and the key by the placeholder coming
 * down (a server's onStatus may name the stream: ffmpeg never sees the key at all).
 *
 * Why the lengths must match: the stream name is an AMF0 string (16-bit length before it) inside
 * an RTMP message whose length is in the chunk header. Same byte length, and not one length field
 * changes: the proxy is a byte substitution, no RTMP rewriting.
 *
 * Chunk boundaries: a message longer than the sender's chunk size is cut into chunks with a header
 * between them, and a placeholder cut by one would not match. ffmpeg sends commands as single
 * chunks when they fit its chunk size (128 bytes until it sends Set Chunk Size, which it does right
 * after the handshake when publishing: 4096, see `RTMP_OUT_CHUNK_SIZE_FLOOR`); a publish command is
 * 30 bytes + the stream name, so the key is refused (400) beyond `MAX_KEY_BYTES`, which keeps every
 * command carrying it in one chunk. The test restream-key.test.ts publishes with a 300-byte key and
 * checks nginx received it under the real key.
 *
 * What is matched: the bytes after the RTMP handshake (C0 + C1 + C2 = 3073 bytes up, S0 + S1 + S2
 * down, relayed as they are: their random bytes must not be held back waiting for a match that
 * cannot come, the peer would wait for them forever), by `KeySwapper`, a streaming matcher that
 * holds back at most placeholder-length − 1 bytes that could be the start of a placeholder split
 * across TCP reads. Held bytes are released after `HOLD_MS` if nothing follows (a command whose
 * last bytes happen to look like the placeholder's first ones, the peer waiting for its answer).
 * A false match in media needs the whole random placeholder to appear by chance: 62^-n per byte
 * position for an n-byte key (for a 20-byte key, once in 10^35 bytes).
 *
 * The proxy never logs; its errors name host and port, never the key.
 */
import { randomInt } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { EventEmitter } from 'node:events';
import { ForbiddenError } from '@mcu/control';
import type { RestreamAllow } from './RestreamAllow.js';
import { MAX_KEY_BYTES } from './RestreamUrl.js';

/** C0 (1) + C1 (1536) + C2 (1536), and the same for S0 + S1 + S2: relayed untouched. */
export const RTMP_HANDSHAKE_BYTES = 1 + 1536 + 1536;
/** The chunk size ffmpeg announces before its first command when publishing (rtmpproto.c). */
export const RTMP_OUT_CHUNK_SIZE_FLOOR = 4096;
/**
 * How long bytes that could begin a placeholder are held when nothing follows them. Long enough
 * that the rest of a placeholder cut across reads arrives first on a loaded machine (30 ms was
 * not, in a test with writes 15 ms apart under load); short, and rare (a command ending like the
 * placeholder's start, 1 in 62 per command), as a delay while connecting. Streaming media never
 * waits for it: the next write releases what was held.
 */
const HOLD_MS = 200;

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A random alphanumeric string of `n` bytes. */
export function randomPlaceholder(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[randomInt(ALPHABET.length)];
  return s;
}

/**
 * Replaces every occurrence of `from` by `to` (same length) in a byte stream that arrives in
 * pieces, an occurrence possibly split across pieces. `push` returns what can be sent now; bytes
 * that may be the beginning of an occurrence are held until the next push or `flush`.
 */
export class KeySwapper {
  private held: Buffer = Buffer.alloc(0);
  /** Occurrences replaced so far. */
  swaps = 0;

  constructor(
    private readonly from: Buffer,
    private readonly to: Buffer,
  ) {
    if (from.length !== to.length) throw new Error('KeySwapper: the replacement must have the same byte length');
    if (from.length === 0) throw new Error('KeySwapper: empty pattern');
  }

  /** Bytes held back, waiting to know whether they start an occurrence. */
  get pending(): number {
    return this.held.length;
  }

  push(chunk: Buffer): Buffer {
    const buf = this.held.length ? Buffer.concat([this.held, chunk]) : Buffer.from(chunk);
    const n = this.from.length;
    let at = buf.indexOf(this.from);
    let searchedTo = 0;
    while (at >= 0) {
      this.to.copy(buf, at);
      this.swaps++;
      searchedTo = at + n;
      at = buf.indexOf(this.from, searchedTo);
    }
    // The longest tail (after the last occurrence) that is a proper prefix of the pattern.
    let keep = 0;
    for (let k = Math.min(n - 1, buf.length - searchedTo); k > 0; k--) {
      const start = buf.length - k;
      if (buf[start] === this.from[0] && buf.subarray(start).equals(this.from.subarray(0, k))) {
        keep = k;
        break;
      }
    }
    this.held = keep ? Buffer.from(buf.subarray(buf.length - keep)) : Buffer.alloc(0);
    return keep ? buf.subarray(0, buf.length - keep) : buf;
  }

  /** Releases the held bytes as they are (no occurrence came). */
  flush(): Buffer {
    const out = this.held;
    this.held = Buffer.alloc(0);
    return out;
  }
}

/** One direction of the relay: the handshake untouched, then the swapper, with the hold timer. */
class Direction {
  private handshakeLeft = RTMP_HANDSHAKE_BYTES;
  private timer: NodeJS.Timeout | null = null;
  bytes = 0;

  constructor(
    readonly swapper: KeySwapper,
    private readonly out: net.Socket,
  ) {}

  write(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.handshakeLeft > 0) {
      const n = Math.min(this.handshakeLeft, chunk.length);
      this.handshakeLeft -= n;
      this.out.write(chunk.subarray(0, n));
      chunk = chunk.subarray(n);
      if (chunk.length === 0) return;
    }
    const ready = this.swapper.push(chunk);
    if (ready.length) this.out.write(ready);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.swapper.pending) this.timer = setTimeout(() => this.release(), HOLD_MS);
  }

  release(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const rest = this.swapper.flush();
    if (rest.length && !this.out.destroyed) this.out.write(rest);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

export interface RtmpKeyProxyOptions {
  protocol: 'rtmp' | 'rtmps';
  host: string;
  port: number;
  /** The stream key as ffmpeg would send it (the URL's last path segment, query included). */
  key: string;
  /** Extra CA certificates (PEM) trusted for rtmps:// besides the system's: for tests and private ingests. */
  ca?: string | Buffer;
  /** Connect timeout to the ingest. */
  connectTimeoutMs?: number;
  /** Where the node may connect (RestreamAllow.ts): checked at this connection, on the addresses the host resolves to now. */
  allow?: RestreamAllow;
}

export interface RtmpKeyProxyEvents {
  /** The relay ended (either side closed, or an error): `reason` names no secret. */
  end: [reason: string];
}

/**
 * The local end ffmpeg publishes to, for one run of a restream. `listen()` gives the port;
 * `placeholder` is what ffmpeg's URL carries instead of the key. One connection, then the
 * listener closes; `close()` (idempotent) destroys both sockets and the listener.
 */
export class RtmpKeyProxy extends EventEmitter<RtmpKeyProxyEvents> {
  readonly placeholder: string;
  private readonly server: net.Server;
  private client: net.Socket | null = null;
  private upstream: net.Socket | null = null;
  private up: Direction | null = null;
  private down: Direction | null = null;
  private closed = false;
  private ended = false;
  private listenPort: number | null = null;
  private secured = false;
  /** Bytes relayed ffmpeg → ingest and ingest → ffmpeg, and connections refused (not the first). */
  readonly counts = { up: 0, down: 0, refused: 0, swapsUp: 0, swapsDown: 0 };

  constructor(private readonly o: RtmpKeyProxyOptions) {
    super();
    const keyBytes = Buffer.byteLength(o.key);
    if (keyBytes === 0 || keyBytes > MAX_KEY_BYTES) throw new Error(`stream key of ${keyBytes} bytes (1 to ${MAX_KEY_BYTES})`);
    this.placeholder = randomPlaceholder(keyBytes);
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    this.server.on('error', () => this.finish('proxy listener error'));
  }

  /** Listens on 127.0.0.1, a free port; resolves to it. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.server.off('error', reject);
        if (this.closed) {
          // closed while binding: do not leave the listener behind
          this.server.close();
          reject(new Error('key proxy closed'));
          return;
        }
        this.listenPort = (this.server.address() as net.AddressInfo).port;
        resolve(this.listenPort);
      });
    });
  }

  /** The loopback port ffmpeg is given (kept after the listener closes on its one connection). */
  get port(): number | null {
    return this.listenPort;
  }

  private accept(socket: net.Socket): void {
    if (this.client || this.closed || socket.remoteAddress !== '127.0.0.1') {
      this.counts.refused++;
      socket.destroy();
      return;
    }
    this.client = socket;
    this.server.close(); // one connection per proxy: nobody else gets in
    socket.pause();
    const key = Buffer.from(this.o.key);
    const placeholder = Buffer.from(this.placeholder);
    // An address in the URL is checked here; a name, on what it resolves to for this connection.
    const refused = this.o.allow?.checkAddress(this.o.host, this.o.port);
    if (refused) {
      this.finish(refused.message);
      return;
    }
    const opts = { host: this.o.host, port: this.o.port, ...(this.o.allow ? { lookup: this.o.allow.lookupFor(this.o.port) } : {}) };
    const upstream =
      this.o.protocol === 'rtmps'
        ? tls.connect({ ...opts, servername: net.isIP(this.o.host) ? undefined : this.o.host, ca: this.o.ca ? [...tls.rootCertificates, this.o.ca.toString()] : undefined, rejectUnauthorized: true })
        : net.connect(opts);
    this.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.setTimeout(this.o.connectTimeoutMs ?? 10_000, () => this.finish(`no answer from ${this.o.host}:${this.o.port}`));
    this.up = new Direction(new KeySwapper(placeholder, key), upstream);
    this.down = new Direction(new KeySwapper(key, placeholder), socket);
    upstream.once(this.o.protocol === 'rtmps' ? 'secureConnect' : 'connect', () => {
      this.secured = true;
      upstream.setTimeout(0);
      socket.resume();
    });
    socket.on('data', (d: Buffer) => {
      this.up!.write(d);
      this.counts.up = this.up!.bytes;
      this.counts.swapsUp = this.up!.swapper.swaps;
    });
    upstream.on('data', (d: Buffer) => {
      this.down!.write(d);
      this.counts.down = this.down!.bytes;
      this.counts.swapsDown = this.down!.swapper.swaps;
    });
    socket.on('end', () => {
      this.up?.release();
      upstream.end();
    });
    upstream.on('end', () => {
      this.down?.release();
      socket.end();
    });
    socket.on('close', () => this.finish('ffmpeg closed the connection'));
    upstream.on('close', () => this.finish(`${this.o.host}:${this.o.port} closed the connection`));
    socket.on('error', () => {});
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof ForbiddenError) return this.finish(err.message);
      const code = err.code ?? err.message;
      // Before the handshake completed on rtmps://, an error is the TLS handshake's: say so.
      const tlsFailed = this.o.protocol === 'rtmps' && !this.secured && /CERT|VERIFY|SELF_SIGNED|TLS|SSL|ALTNAME/i.test(code);
      this.finish(tlsFailed ? `TLS to ${this.o.host}:${this.o.port}: certificate not accepted (${code})` : `${this.o.host}:${this.o.port}: ${code}`);
    });
  }

  private finish(reason: string): void {
    if (!this.ended) {
      this.ended = true;
      this.emit('end', reason);
    }
    this.close();
  }

  /** Drops both connections and the listener. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.up?.stop();
    this.down?.stop();
    this.client?.destroy();
    this.upstream?.destroy();
    if (this.server.listening) this.server.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }
}
