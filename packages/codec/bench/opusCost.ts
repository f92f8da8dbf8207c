/**
 * Cost of one 20 ms Opus frame (48 kHz mono, 32 kb/s 'voip', FEC on, complexity 5):
 * native addon vs @discordjs/opus, same libopus 1.3.1, in one run.
 *
 *   npx tsx packages/codec/bench/opusCost.ts [frames]
 *
 * Prints a table and one JSON line (µs per frame, median of 7 interleaved rounds).
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import type { OpusEncoder as DiscordjsCodec } from '@discordjs/opus';
import { DiscordjsDecoder } from '../src/DiscordjsOpus.js';
import { loadNativeOpus } from '../src/native.js';
import { OpusDecoder, OpusEncoder } from '../src/index.js';
import { opusApplication, opusCtl } from '../src/opusConstants.js';
import { speechLike } from '../test/audio.js';

const frames = Number(process.argv[2] ?? 5000);
const frame = 960;
const native = loadNativeOpus().binding;
if (!native) throw new Error('native Opus addon not built: npm run build:native -w @mcu/codec');
const discordjs = createRequire(import.meta.url)('@discordjs/opus') as {
  OpusEncoder: new (rate: number, channels: number) => DiscordjsCodec;
};

const input = speechLike(1); // 50 frames, cycled
const pcmFrames = Array.from({ length: 50 }, (_, i) => input.subarray(i * frame, (i + 1) * frame));
const pcmBuffers = pcmFrames.map((f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength));

function discordjsEncoder(): DiscordjsCodec {
  const e = new discordjs.OpusEncoder(48000, 1);
  e.applyEncoderCTL(opusCtl.setApplication, opusApplication.voip);
  e.setBitrate(32000);
  e.applyEncoderCTL(opusCtl.setInbandFec, 1);
  e.applyEncoderCTL(opusCtl.setPacketLossPerc, 10);
  e.applyEncoderCTL(opusCtl.setComplexity, 5);
  return e;
}

const packets = (() => {
  const enc = new OpusEncoder();
  const out = new Uint8Array(1275);
  return pcmFrames.map((f) => out.slice(0, enc.encode(f, out)));
})();
const packetBuffers = packets.map((p) => Buffer.from(p));

type Run = (i: number) => void;

/**
 * µs per call of each run, median of 7 rounds. Rounds alternate between runs so that
 * load from other processes (this machine has two cores) hits every run alike.
 */
function perFrameUs<K extends string>(runs: Record<K, Run>): Record<K, number> {
  const entries = Object.entries(runs) as [K, Run][];
  for (const [, run] of entries) for (let i = 0; i < 500; i++) run(i); // warm up
  const rounds = new Map<K, number[]>(entries.map(([name]) => [name, []]));
  for (let r = 0; r < 7; r++) {
    for (const [name, run] of entries) {
      const t0 = performance.now();
      for (let i = 0; i < frames; i++) run(i);
      rounds.get(name)!.push(((performance.now() - t0) * 1000) / frames);
    }
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;
  return Object.fromEntries(entries.map(([name]) => [name, median(rounds.get(name)!)])) as Record<K, number>;
}

const pcmOut = new Int16Array(5760);
const byteOut = new Uint8Array(1275);
const nativeEnc = new OpusEncoder();
const nativeDec = new OpusDecoder();
const rawNativeDec = new native.Decoder(48000, 1);
const djsEnc = discordjsEncoder();
const djsDec = new discordjs.OpusEncoder(48000, 1);
const fallbackDec = new DiscordjsDecoder(48000, 1);
const plcDec = new OpusDecoder();
const djsPlc = new discordjs.OpusEncoder(48000, 1);
const empty = Buffer.alloc(0);

const results = {
  encode: perFrameUs({
    native: (i) => nativeEnc.encode(pcmFrames[i % 50]!, byteOut),
    discordjs: (i) => djsEnc.encode(pcmBuffers[i % 50]!),
  }),
  decode: perFrameUs({
    native: (i) => nativeDec.decode(packets[i % 50]!, pcmOut),
    nativeAddonOnly: (i) => rawNativeDec.decode(packets[i % 50]!, pcmOut),
    discordjs: (i) => djsDec.decode(packetBuffers[i % 50]!),
    discordjsFallbackWrapper: (i) => fallbackDec.decode(packets[i % 50]!, pcmOut),
  }),
  // One packet then four concealed frames, repeated. @discordjs/opus can only conceal
  // 120 ms per call.
  conceal20ms: perFrameUs({
    native: (i) => (i % 5 === 0 ? plcDec.decode(packets[i % 50]!, pcmOut) : plcDec.conceal(pcmOut, frame)),
    discordjs120ms: (i) => (i % 5 === 0 ? djsPlc.decode(packetBuffers[i % 50]!) : djsPlc.decode(empty)),
  }),
};

console.log(`Opus cost per 20 ms frame (µs, median of 7 × ${frames} frames), ${native.opusVersion}`);
console.table(
  Object.fromEntries(
    Object.entries(results).flatMap(([op, byBackend]) =>
      Object.entries(byBackend).map(([backend, us]) => [`${op} ${backend}`, { us: Number(us.toFixed(2)) }]),
    ),
  ),
);
console.log(JSON.stringify({ bench: 'opusCost', frames, node: process.version, results }));
