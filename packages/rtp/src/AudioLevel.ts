/**
 * Client-to-mixer audio level, RFC 6464.
 *
 * The element's first data byte is `V(1) | level(7)`: V is the sender's voice-activity flag and
 * level is the audio level in -dBov (0 = loudest, 127 = quietest). With it the mixer ranks
 * speakers without decoding anyone (DESIGN.md: "silent participants need no decoding").
 *
 * `readAudioLevel` returns that byte unchanged, i.e. `(vad << 7) | level`, or -1 when absent;
 * split it with `audioLevelOf` / `voiceActivityOf`. One number keeps the per-packet path free of
 * result objects and fits the jitter buffer's typed-array slots.
 */
import { ExtensionLocation, findHeaderExtension } from './HeaderExtensions.js';
import type { HeaderExtension } from './HeaderExtensions.js';
import type { RtpHeader } from './RtpPacket.js';

/** Module-private scratch: lookups run to completion synchronously, so one instance serves all. */
const scratch = new ExtensionLocation();

/**
 * The RFC 6464 byte of a parsed packet, `(vad << 7) | level`, or -1 when the packet has no
 * element `extId` (or it is empty/malformed). The RFC's one-byte form carries 1 byte; some
 * senders pad it to more, so only the first data byte is read.
 */
export function readAudioLevel(buf: Uint8Array, header: RtpHeader, extId: number): number {
  const offset = findHeaderExtension(buf, header, extId, scratch);
  if (offset < 0 || scratch.length < 1) return -1;
  return buf[offset];
}

/** The level in -dBov (0..127) from a `readAudioLevel` result. */
export function audioLevelOf(x: number): number {
  return x & 0x7f;
}

/** The voice-activity flag from a `readAudioLevel` result. */
export function voiceActivityOf(x: number): boolean {
  return (x & 0x80) !== 0;
}

/**
 * The element a sender attaches (one data byte); `level` is clamped to 0..127 -dBov. The id is
 * whatever `a=extmap` negotiated for `urn:ietf:params:rtp-hdrext:ssrc-audio-level`; browsers
 * commonly offer 1, hence the default.
 */
export function audioLevelExtension(level: number, vad: boolean, id = 1): HeaderExtension {
  const clamped = Math.min(127, Math.max(0, Math.round(level)));
  return { id, data: Uint8Array.of((vad ? 0x80 : 0) | clamped) };
}

/**
 * Linear amplitude (1 = full scale) for a level in -dBov: 10^(-level/20). Level 127 is the
 * bottom of the scale, which senders use for silence, so it maps to exactly 0.
 */
export function dBovToLinear(level: number): number {
  if (level >= 127) return 0;
  if (level <= 0) return 1;
  return 10 ** (-level / 20);
}
