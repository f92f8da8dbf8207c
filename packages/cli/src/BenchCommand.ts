import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { constants } from 'node:os';
import { CliError } from './CliError.js';

/** The benchmarks under bench/, one question each (see README "Benchmarks"). */
export const benches = {
  mix: { file: 'mix.ts', description: 'mixing hot path: participants per core at a 20 ms tick, against the naive per-participant mix-minus', example: 'mcu bench mix -- --n 100,500 --ticks 300 --json' },
  video: { file: 'video.ts', description: 'video: compositor alone and decode+compose+encode, against ffmpeg\'s compositor', example: 'mcu bench video -- --seconds 5 --skip-pipeline' },
  tree: { file: 'tree.ts', description: 'relay tree end to end over NATS: join time, delivery, latency per hop, recovery after a relay is killed', example: 'mcu bench tree -- --viewers 1000 --relays 6 --fan-out 3 --seconds 12' },
  fanout: { file: 'fanout.ts', description: 'UDP receivers one relay process feeds at full rate, against raw dgram.send', example: 'mcu bench fanout -- --budget-s 60 --json' },
  receivers: { file: 'receivers.ts', description: 'a load generator\'s UDP receive: native receiver sets against Node\'s dgram sockets, CPU per datagram', example: 'mcu bench receivers -- --sockets 2500 --json' },
  webrtc: { file: 'webrtc.ts', description: 'WHEP viewers served by one node process (connect time, CPU per viewer, loss)', example: 'mcu bench webrtc -- --viewers 200 --seconds 10' },
  stage: { file: 'stage.ts', description: 'what backstage presenters cost the mixing tick (quiet, talking, moving), against the same event all live', example: 'mcu bench stage -- --n 100 --backstage 8 --json' },
  tls: { file: 'tls.ts', description: 'what HTTPS costs a node per new connection (ECDSA, RSA) and per kept-alive request, against plain HTTP', example: 'mcu bench tls -- --connections 1000 --rounds 3 --json' },
  restream: { file: 'restream.ts', description: 'restream to a local nginx-rtmp: CPU of the restream\'s ffmpeg (copy + AAC), against the H.264 encode it avoids', example: 'mcu bench restream -- --seconds 20 --size 1280x720 --json' },
  hands: { file: 'hands.ts', description: 'raised hands over relays: raise → producer queue and invite → viewer page p99, the mixer\'s tick before and during', example: 'mcu bench hands -- --viewers 2000 --relays 4 --hands 1000' },
  failover: { file: 'failover.ts', description: 'mixer failover over NATS: program gap when the holding mixer is killed, a planned move, a partitioned holder; viewers reconnected, split-brain packets', example: 'mcu bench failover -- --viewers 1000 --relays 3 --json' },
  record: { file: 'record.ts', description: 'CPU per concurrent recording (remux + age) of one event\'s program, against a decode-and-re-encode recorder', example: 'mcu bench record -- --counts 1,5,20 --seconds 8 --json' },
  'rtp-load': { file: 'rtp-load.ts', description: 'the whole node under plain-RTP load (N participants, 3 talking), against Janus AudioBridge', example: 'mcu bench rtp-load -- --n 150 --seconds 10 --json' },
} as const;

export type BenchName = keyof typeof benches;

const root = new URL('../../../', import.meta.url);

/**
 * Runs bench/<name>.ts under tsx exactly as `npm run bench:<name>` does (from the repository root),
 * with `args` passed through; resolves with the exit code to leave with (128 + n for a signal).
 */
export async function runBench(name: BenchName, args: string[]): Promise<number> {
  const script = fileURLToPath(new URL(`bench/${benches[name].file}`, root));
  if (!existsSync(script)) throw new CliError(`bench ${name}: ${script} not found (benchmarks run from a checkout of the repository)`);
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), script, ...args], { cwd: fileURLToPath(root), stdio: 'inherit' });
  // Ctrl-C reaches the child through the terminal's process group; a SIGTERM sent to us alone is passed on.
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGTERM', forward);
  process.on('SIGINT', () => undefined);
  return new Promise((resolve, reject) => {
    child.on('error', (err) => reject(new CliError(`bench ${name}: cannot start: ${err.message}`)));
    child.on('exit', (code, signal) => {
      process.off('SIGTERM', forward);
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}
