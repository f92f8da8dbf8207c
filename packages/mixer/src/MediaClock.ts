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

/** The two clocks of a sender report for the same instant: NTP (wall) time and the stream's RTP timestamp. */
export interface SenderReportTimes {
  ntp: NtpTime;
  rtpTimestamp: number;
}

/** What to put in a sender report sent now (or at `mediaMs`) for a stream timed by `rtpTimestampAt(·, clockRate, base)`. */
export function senderReportTimes(clock: MediaClock, clockRate: number, base: number, mediaMs: number = clock.nowMs()): SenderReportTimes {
  return { ntp: ntpFromUnixMs(mediaMs), rtpTimestamp: rtpTimestampAt(mediaMs, clockRate, base) };
}
