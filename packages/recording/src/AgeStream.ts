/**
 * An age file (age-encryption.org/v1) written as a stream: the header from the `age-encryption`
 * package, the payload (the STREAM construction: ChaCha20-Poly1305 over 64 KiB chunks, nonce = an
 * 11-byte big-endian counter and a last-chunk flag, key = HKDF-SHA256(file key, 16-byte nonce,
 * "payload")) with Node's native cipher, which costs a fraction of the package's JavaScript one on
 * a recording's megabits; no web streams in between. Tested against Debian's `age` and the
 * package's Decrypter (test/age-stream.test.ts).
 *
 * The header comes from `Encrypter.encrypt` of an empty stream, with one extra recipient that
 * wraps nothing and only sees the file key, so that the stanzas, the header MAC and the payload
 * nonce are the package's own; its one empty payload chunk (16 bytes) is dropped.
 */
import { createCipheriv, hkdfSync } from 'node:crypto';
import { Encrypter } from 'age-encryption';
import type { Recipient, Stanza } from 'age-encryption';

const CHUNK = 64 * 1024;
const TAG = 16;

/** Where the ciphertext goes, in order. */
export type AgeSink = (chunk: Uint8Array) => Promise<void>;

export class AgeStreamWriter {
  private readonly buffer = Buffer.allocUnsafe(CHUNK);
  private used = 0;
  private counter = 0;
  private ended = false;
  private readonly nonce = Buffer.alloc(12);

  private constructor(
    private readonly key: Buffer,
    private readonly sink: AgeSink,
  ) {}

  /** Writes the header (a fresh file key wrapped for each recipient) and returns the writer. */
  static async open(recipients: readonly string[], sink: AgeSink): Promise<AgeStreamWriter> {
    let fileKey: Uint8Array | null = null;
    const keySeer: Recipient = {
      wrapFileKey(k: Uint8Array): Stanza[] {
        fileKey = k;
        return [];
      },
    };
    const e = new Encrypter();
    e.addRecipient(keySeer);
    for (const r of recipients) e.addRecipient(r);
    const empty = new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    const parts: Uint8Array[] = [];
    for await (const c of (await e.encrypt(empty)) as unknown as AsyncIterable<Uint8Array>) parts.push(c);
    const whole = Buffer.concat(parts);
    if (fileKey === null || whole.length < 16 + TAG) throw new Error('age: no file key was wrapped');
    const headerAndNonce = whole.subarray(0, whole.length - TAG);
    const payloadNonce = headerAndNonce.subarray(headerAndNonce.length - 16);
    const key = Buffer.from(hkdfSync('sha256', fileKey, payloadNonce, 'payload', 32));
    const w = new AgeStreamWriter(key, sink);
    await sink(Buffer.from(headerAndNonce));
    return w;
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.ended) throw new Error('age stream already ended');
    let off = 0;
    while (off < data.length) {
      // A full chunk is sealed only when more data follows: the last chunk must carry the flag.
      if (this.used === CHUNK) await this.seal(false);
      const n = Math.min(CHUNK - this.used, data.length - off);
      this.buffer.set(data.subarray(off, off + n), this.used);
      this.used += n;
      off += n;
    }
  }

  /** Seals the last chunk (the only empty one allowed is that of an empty payload). Idempotent. */
  async end(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.seal(true);
  }

  private async seal(last: boolean): Promise<void> {
    const nonce = this.nonce;
    nonce.fill(0);
    // 11-byte big-endian counter; 2^53 chunks is beyond any recording.
    nonce.writeUIntBE(this.counter, 5, 6);
    nonce[11] = last ? 1 : 0;
    this.counter++;
    const cipher = createCipheriv('chacha20-poly1305', this.key, nonce, { authTagLength: TAG });
    const body = cipher.update(this.buffer.subarray(0, this.used));
    cipher.final();
    const out = Buffer.concat([body, cipher.getAuthTag()]);
    this.used = 0;
    await this.sink(out);
  }
}
