/**
 * Which ffmpeg binary the video pipeline runs. The system `ffmpeg` on PATH is preferred (it is
 * what the distribution patches and what CI installs); `@ffmpeg-installer/ffmpeg`'s static build
 * is the fallback. `MCU_FFMPEG_PATH` overrides both. The choice is made once, handed to
 * fluent-ffmpeg (`setFfmpegPath`) and exported so that logs and benchmarks can say which one ran.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { delimiter, join } from 'node:path';
import ffmpeg from 'fluent-ffmpeg';

export type FfmpegSource = 'env' | 'system' | 'ffmpeg-installer';

export interface FfmpegBinary {
  path: string;
  source: FfmpegSource;
  /** First line of `ffmpeg -version`. */
  version: string;
  /** Release numbers; 0.0 for a git snapshot build ("N-12345-g…"), treated as the oldest. */
  major: number;
  minor: number;
}

let resolved: FfmpegBinary | null = null;

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

function installerPath(): string | null {
  try {
    const require = createRequire(import.meta.url);
    const installer = require('@ffmpeg-installer/ffmpeg') as { path: string };
    return isExecutable(installer.path) ? installer.path : null;
  } catch {
    return null; // no binary for this platform
  }
}

function describe(path: string, source: FfmpegSource): FfmpegBinary {
  let version = 'unknown';
  try {
    version = execFileSync(path, ['-hide_banner', '-version'], { encoding: 'utf8', timeout: 10_000 }).split('\n')[0].trim();
  } catch {
    // Still usable; the version only selects option spellings.
  }
  const m = /^ffmpeg version n?(\d+)\.(\d+)/.exec(version);
  return { path, source, version, major: m ? Number(m[1]) : 0, minor: m ? Number(m[2]) : 0 };
}

/** Resolves (once) the ffmpeg binary and points fluent-ffmpeg at it. Throws when there is none. */
export function resolveFfmpeg(): FfmpegBinary {
  if (resolved) return resolved;
  const env = process.env.MCU_FFMPEG_PATH;
  let found: FfmpegBinary | null = null;
  if (env && isExecutable(env)) found = describe(env, 'env');
  if (!found) {
    const system = onPath('ffmpeg');
    if (system) found = describe(system, 'system');
  }
  if (!found) {
    const bundled = installerPath();
    if (bundled) found = describe(bundled, 'ffmpeg-installer');
  }
  if (!found) throw new Error('no ffmpeg binary: install ffmpeg on PATH, or @ffmpeg-installer/ffmpeg, or set MCU_FFMPEG_PATH');
  ffmpeg.setFfmpegPath(found.path);
  resolved = found;
  return found;
}

/**
 * "Pass frames through without duplicating or dropping any": `-fps_mode` since ffmpeg 5.1,
 * `-vsync` before (deprecated after, but the static fallback build is 4.x).
 */
export function passthroughTimingArgs(bin: FfmpegBinary = resolveFfmpeg()): string[] {
  return bin.major > 5 || (bin.major === 5 && bin.minor >= 1) ? ['-fps_mode', 'passthrough'] : ['-vsync', 'passthrough'];
}

let niceFound: boolean | null = null;

/** Whether `nice` (which fluent-ffmpeg uses for a niceness) is on PATH; without it niceness is ignored. */
export function niceAvailable(): boolean {
  if (niceFound === null) niceFound = process.platform !== 'win32' && onPath('nice') !== null;
  return niceFound;
}
