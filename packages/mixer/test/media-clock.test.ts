import { describe, expect, it } from 'vitest';
import { unixMsFromNtp } from '@mcu/rtp';
import { rtpTimestampAt, senderReportTimes } from '../src/index.js';

describe('shared media clock', () => {
  it('audio (48 kHz) and video (90 kHz) sender reports describe the same instant', () => {
    let now = 1_700_000_000_000.5;
    const clock = { nowMs: () => now };
    const audio = senderReportTimes(clock, 48_000, 0x1234_5678);
    const video = senderReportTimes(clock, 90_000, 0xfedc_ba98);
    expect(audio.ntp).toEqual(video.ntp);
    expect(Math.abs(unixMsFromNtp(video.ntp.sec, video.ntp.frac) - now)).toBeLessThan(0.001);
    now += 1000;
    const video2 = senderReportTimes(clock, 90_000, 0xfedc_ba98);
    const audio2 = senderReportTimes(clock, 48_000, 0x1234_5678);
    expect((video2.rtpTimestamp - video.rtpTimestamp) >>> 0).toBe(90_000);
    expect((audio2.rtpTimestamp - audio.rtpTimestamp) >>> 0).toBe(48_000);
  });

  it('RTP timestamps wrap modulo 2^32', () => {
    expect(rtpTimestampAt(0, 90_000, 0xffff_fff0)).toBe(0xffff_fff0);
    expect(rtpTimestampAt(1, 90_000, 0xffff_fff0)).toBe(90 - 16);
  });
});
