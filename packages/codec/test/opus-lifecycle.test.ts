import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { opusBackend } from '../src/index.js';

const addon = fileURLToPath(new URL('../build/Release/mcu_opus.node', import.meta.url));

// Runs in a fresh `node --expose-gc` so GC is deterministic and RSS is not the test runner's.
// One stereo decoder + encoder pair holds ~77 KB of libopus state: 10,000 leaked pairs
// would add ~770 MB.
const script = `
const { Decoder, Encoder } = require(process.env.ADDON);
const mb = () => process.memoryUsage().rss / 1048576;
const tick = () => new Promise((r) => setImmediate(r)); // N-API finalizers run after GC
(async () => {
  gc(); await tick();
  const base = mb();
  for (let i = 0; i < 10000; i++) {
    const d = new Decoder(48000, 2), e = new Encoder(48000, 2, 2048);
    d.close(); e.close(); d.close(); // close() frees at once, and twice is fine
  }
  const afterClose = mb() - base;
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 500; i++) { new Decoder(48000, 2); new Encoder(48000, 2, 2048); }
    gc(); await tick();
  }
  gc(); await tick();
  process.stdout.write(JSON.stringify({ afterClose, afterGc: mb() - base }));
})();
`;

describe.runIf(opusBackend === 'native')('native object lifetime', () => {
  it('close() frees libopus state at once, and so does GC for objects never closed', () => {
    const out = execFileSync(process.execPath, ['--expose-gc', '-e', script], {
      env: { ...process.env, ADDON: addon },
      encoding: 'utf8',
    });
    const { afterClose, afterGc } = JSON.parse(out) as { afterClose: number; afterGc: number };
    expect(afterClose).toBeLessThan(50); // MB; ~770 if close() leaked
    expect(afterGc).toBeLessThan(250); // MB; measured ~80 (one round's garbage), ~770 if leaked
  });
});
