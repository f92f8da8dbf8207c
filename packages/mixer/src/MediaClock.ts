/**
 * One media clock per event, shared by audio and video: every RTP timestamp the mixer writes is
 * derived from it, so that the sender reports of both streams (RFC 3550 §6.4.1: an NTP time and
 * the RTP timestamp of the same instant) put audio and video on one timeline and receivers can
 * lip-sync them.
 *
 * `nowMs()` is milliseconds since the Unix epoch that never jump (a monotonic clock anchored once
 * to wall time), so the NTP side of a sender report is simply that time in NTP format.
 */
import { ntpFromUnixMs } from '@mcu/rtp';
import type { NtpTime } from '@mcu/rtp';

export interface MediaClock {
  /** Milliseconds since the Unix epoch, monotonic. */
  nowMs(): number;
}

/** performance.timeOrigin + performance.now(): wall time at process start, then monotonic. */
export const systemMediaClock: MediaClock = {
  nowMs: () => performance.timeOrigin + performance.now(),
};

const TWO_32 = 0x1_0000_0000;

/** The RTP timestamp of media time `mediaMs` for a stream with `clockRate` and random offset `base` (RFC 3550 §5.1). */
export function rtpTimestampAt(mediaMs: number, clockRate: number, base: number): number {
  const ticks = Math.round((mediaMs * clockRate) / 1000);
  return (((base + ticks) % TWO_32) + TWO_32) % TWO_32;
}

/**
 * The media time (Unix ms) whose RTP timestamp is `rtpTimestamp` (the inverse of rtpTimestampAt),
 * taking of the times 2^32 ticks apart the one nearest `nearMs` (a timestamp wraps every 24.9 h
 * at 48 kHz, 13.3 h at 90 kHz).
 */
export function mediaMsAt(rtpTimestamp: number, clockRate: number, base: number, nearMs: number): number {
  const ticks = (((rtpTimestamp - base) % TWO_32) + TWO_32) % TWO_32;
  const ms = (ticks * 1000) / clockRate;
  const periodMs = (TWO_32 * 1000) / clockRate;
  return ms + Math.round((nearMs - ms) / periodMs) * periodMs;
}

/** The two clocks of a sender report for the same instant: NTP (wall) time and the stream's RTP timestamp. */
export interface SenderReportTimes {
  ntp: NtpTime;
  rtpTimestamp: number;
}

/** What to put in a sender report sent now (or at `mediaMs`) for a stream timed by `rtpTimestampAt(·, clockRate, base)`. */
export function senderReportTimes(clock: MediaClock, clockRate: number, base: number, mediaMs: number = clock.nowMs()): SenderReportTimes {
  return { ntp: ntpFromUnixMs(mediaMs), rtpTimestamp: rtpTimestampAt(mediaMs, clockRate, base) };
}
