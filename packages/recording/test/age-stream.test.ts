import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decrypter } from 'age-encryption';
import { AgeStreamWriter } from '../src/AgeStream.js';

/** Our streaming age writer against Debian's age and the age-encryption package, at chunk edges. */
let dir: string;
let identity: string;
let identityText: string;
let recipient: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mcu-age-'));
  identity = join(dir, 'key.txt');
  expect(spawnSync('age-keygen', ['-o', identity]).status).toBe(0);
  identityText = readFileSync(identity, 'utf8').split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  recipient = spawnSync('age-keygen', ['-y', identity]).stdout.toString().trim();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function encrypt(plain: Uint8Array, writes: number[]): Promise<Buffer> {
  const out: Buffer[] = [];
  const w = await AgeStreamWriter.open([recipient], async (c) => void out.push(Buffer.from(c)));
  let off = 0;
  for (const n of writes) {
    await w.write(plain.subarray(off, off + n));
    off += n;
  }
  await w.write(plain.subarray(off));
  await w.end();
  return Buffer.concat(out);
}

describe('AgeStreamWriter', () => {
  for (const size of [0, 1, 65_535, 65_536, 65_537, 131_072, 200_000]) {
    it(`${size} bytes in uneven writes open with age and with age-encryption`, async () => {
      const plain = randomBytes(size);
      const file = await encrypt(plain, [7, 1000, 65_536, 3]);
      const path = join(dir, `f${size}.age`);
      writeFileSync(path, file);
      const r = spawnSync('age', ['-d', '-i', identity, path], { maxBuffer: 1 << 24 });
      expect(r.status, r.stderr.toString()).toBe(0);
      expect(Buffer.compare(r.stdout, plain)).toBe(0);
      const d = new Decrypter();
      d.addIdentity(identityText);
      expect(Buffer.compare(Buffer.from(await d.decrypt(file)), plain)).toBe(0);
    });
  }

  it('a fresh file key per file: two encryptions of the same bytes share no header or payload', async () => {
    const plain = randomBytes(1000);
    const a = await encrypt(plain, []);
    const b = await encrypt(plain, []);
    expect(a.equals(b)).toBe(false);
    expect(a.subarray(-1000).equals(b.subarray(-1000))).toBe(false);
  });
});
