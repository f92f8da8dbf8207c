/**
 * Lip sync of one presenter: its audio and its video reach the mixer with different delays
 * (capture, encode, network, jitter buffer, ffmpeg decode), and the program would carry that
 * difference. This measures it and delays the earlier stream.
 *
 * Each stream's sender reports (RFC 3550 §6.4.1) map its RTP timestamps to the presenter's NTP
 * clock. A stream's presentation delay is then (mixer media time at which a frame goes into the
 * program) − (sender NTP time of that frame): for audio when the frame is mixed (its tick), for
 * video when a decoded picture is first composed. Both are differences between the same two
 * clocks, so the unknown offset between them cancels in the skew D_v − D_a (> 0: video late).
 *
 * Compensation, bounded by `maxDelayMs`: early video is held before its decoder (encoded frames
 * are small); late video delays this presenter's audio in its jitter buffer (whole frames,
 * reached by concealing one frame at a time). The skew is the median over a few seconds, and the
 * delays change only after the previous change has had time to show in the measurement.
 */
import { tsDiff, unixMsFromNtp } from '@mcu/rtp';

export interface LipSyncOptions {
  /** Most delay added to either stream. */
  maxDelayMs?: number;
  /** Delay samples older than this are forgotten. */
  windowMs?: number;
  /** Samples of each stream needed before a decision. */
  minSamples?: number;
  /** A residual skew smaller than this is left alone (video is sampled once per 1/fps). */
  deadbandMs?: number;
  /**
   * After a change, samples are ignored for `settleMs` plus `stretchMsPerFrame` per audio frame
   * added or removed (the jitter buffer moves one frame per 200 ms), then collected for
   * `collectMs` before the next decision.
   */
  settleMs?: number;
  stretchMsPerFrame?: number;
  collectMs?: number;
  /** Audio delay comes in whole frames of this length. */
  audioFrameMs?: number;
  /**
   * Delay of the audio codec not visible in RTP timestamps: an Opus decoder's output lags the
   * encoder's input by its lookahead (312 samples, 6.5 ms), once in the presenter's encoder and
   * once in the program's. Without it the program's beeps came out 13–15 ms after its flashes
   * when this measurement said 0 (lip-sync test).
   */
  audioCodecDelayMs?: number;
}

export const LIP_SYNC_DEFAULTS = Object.freeze({
  maxDelayMs: 200,
  windowMs: 3000,
  minSamples: 15,
  deadbandMs: 12,
  settleMs: 500,
  stretchMsPerFrame: 250,
  collectMs: 1000,
  audioFrameMs: 20,
  audioCodecDelayMs: 13,
});

export interface LipSyncStats {
  /** Skew in the program at the last measurement, video minus audio (> 0: video late); null until measured. */
  avSkewMs: number | null;
  /** What that skew was without the compensation then in force. */
  avSkewUncompensatedMs: number | null;
  /** Compensation in force: encoded video held before decoding, and audio delay. */
  videoHoldMs: number;
  audioDelayMs: number;
  /** Whether sender reports of each stream have been seen. */
  audioSenderReports: boolean;
  videoSenderReports: boolean;
}

/** A stream's mapping from RTP timestamps to the sender's NTP clock, from its last sender report. */
class SenderClock {
  valid = false;
  private rtpTimestamp = 0;
  private ntpMs = 0;

  constructor(private readonly clockRate: number) {}

  update(rtpTimestamp: number, ntpMs: number): void {
    this.rtpTimestamp = rtpTimestamp >>> 0;
    this.ntpMs = ntpMs;
    this.valid = true;
  }

  /** Sender time (ms) of an RTP timestamp near the report's. */
  senderMs(rtpTimestamp: number): number {
    return this.ntpMs + (tsDiff(rtpTimestamp >>> 0, this.rtpTimestamp) * 1000) / this.clockRate;
  }
}

/** Delay samples of one stream in a ring (no allocation per sample). */
class DelayWindow {
  private readonly at: Float64Array;
  private readonly value: Float64Array;
  private next = 0;
  private size = 0;
  private readonly scratch: Float64Array;

  constructor(capacity: number) {
    this.at = new Float64Array(capacity);
    this.value = new Float64Array(capacity);
    this.scratch = new Float64Array(capacity);
  }

  add(nowMs: number, delayMs: number): void {
    this.at[this.next] = nowMs;
    this.value[this.next] = delayMs;
    this.next = (this.next + 1) % this.at.length;
    if (this.size < this.at.length) this.size++;
  }

  /** Samples held, old ones included. */
  get length(): number {
    return this.size;
  }

  /** Median of the samples not older than `sinceMs`, and how many there were. */
  median(sinceMs: number): { median: number; count: number } {
    let n = 0;
    const cap = this.at.length;
    for (let i = 0; i < this.size; i++) {
      const k = (this.next - 1 - i + cap) % cap;
      if (this.at[k] < sinceMs) break;
      this.scratch[n++] = this.value[k];
    }
    if (n === 0) return { median: NaN, count: 0 };
    const sorted = this.scratch.subarray(0, n).sort();
    return { median: n % 2 === 1 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2, count: n };
  }
}

export class LipSync {
  private readonly o: Required<LipSyncOptions>;
  private readonly audioClock = new SenderClock(48_000);
  private readonly videoClock = new SenderClock(90_000);
  private readonly audio: DelayWindow;
  private readonly video: DelayWindow;
  private hold = 0;
  private audioDelay = 0;
  private decideAfterMs = -Infinity;
  /** Samples older than this were taken before the last change had taken effect. */
  private samplesFromMs = -Infinity;
  private skew: number | null = null;
  private uncompensated: number | null = null;

  constructor(opts: LipSyncOptions = {}) {
    const o: Required<LipSyncOptions> = { ...LIP_SYNC_DEFAULTS };
    // An option given as undefined keeps its default.
    for (const [k, v] of Object.entries(opts)) if (v !== undefined) o[k as keyof LipSyncOptions] = v;
    this.o = o;
    if (!(this.o.maxDelayMs >= 0)) throw new RangeError(`maxDelayMs ${this.o.maxDelayMs} must be >= 0`);
    // 20 ms audio frames and up to 120 fps video over the window.
    this.audio = new DelayWindow(Math.ceil(this.o.windowMs / 20) + 1);
    this.video = new DelayWindow(Math.ceil((this.o.windowMs * 120) / 1000) + 1);
  }

  /** A sender report of this presenter's audio (48 kHz) or video (90 kHz) stream. */
  onSenderReport(kind: 'audio' | 'video', rtpTimestamp: number, ntpSec: number, ntpFrac: number): void {
    (kind === 'audio' ? this.audioClock : this.videoClock).update(rtpTimestamp, unixMsFromNtp(ntpSec, ntpFrac));
  }

  /** An audio frame with RTP timestamp `rtpTimestamp` is mixed at media time `mediaMs`. */
  audioMixed(rtpTimestamp: number, mediaMs: number, nowMs: number): void {
    if (this.audioClock.valid) this.audio.add(nowMs, mediaMs + this.o.audioCodecDelayMs - this.audioClock.senderMs(rtpTimestamp));
  }

  /** A decoded picture with RTP timestamp `rtpTimestamp` is composed for the first time at media time `mediaMs`. */
  videoComposed(rtpTimestamp: number, mediaMs: number, nowMs: number): void {
    if (this.videoClock.valid) this.video.add(nowMs, mediaMs - this.videoClock.senderMs(rtpTimestamp));
  }

  /** How long to hold this presenter's encoded video before decoding it. */
  get videoHoldMs(): number {
    return this.hold;
  }

  /** Extra delay for this presenter's audio (whole frames). */
  get audioDelayMs(): number {
    return this.audioDelay;
  }

  /**
   * Re-estimates the skew and, when it is outside the dead band and the last change has settled,
   * moves the compensation by it. Cheap when nothing is due: call it once per audio tick.
   */
  update(nowMs: number): void {
    if (nowMs < this.decideAfterMs || this.audio.length < this.o.minSamples || this.video.length < this.o.minSamples) return;
    const since = Math.max(nowMs - this.o.windowMs, this.samplesFromMs);
    const a = this.audio.median(since);
    const v = this.video.median(since);
    this.decideAfterMs = nowMs + this.o.collectMs / 4;
    if (a.count < this.o.minSamples || v.count < this.o.minSamples) return;
    const skew = v.median - a.median;
    this.skew = skew;
    this.uncompensated = skew - this.hold + this.audioDelay;
    if (Math.abs(skew) < this.o.deadbandMs) return;
    // Net delay of video relative to audio that cancels the measured skew.
    const max = this.o.maxDelayMs;
    const net = Math.max(-max, Math.min(max, this.hold - this.audioDelay - skew));
    const frame = this.o.audioFrameMs;
    let audioDelay = 0;
    let hold = net;
    if (net < 0) {
      // Audio comes in whole frames; the video hold makes up the rest.
      audioDelay = Math.min(Math.floor(max / frame) * frame, Math.ceil(-net / frame) * frame);
      hold = Math.max(0, Math.min(max, audioDelay + net));
    }
    hold = Math.round(hold);
    if (hold === this.hold && audioDelay === this.audioDelay) return;
    const framesMoved = Math.abs(audioDelay - this.audioDelay) / frame;
    this.hold = hold;
    this.audioDelay = audioDelay;
    // Samples taken before the change has taken effect do not describe the program.
    this.samplesFromMs = nowMs + this.o.settleMs + framesMoved * this.o.stretchMsPerFrame;
    this.decideAfterMs = this.samplesFromMs + this.o.collectMs;
  }

  stats(): LipSyncStats {
    return {
      avSkewMs: this.skew === null ? null : Math.round(this.skew),
      avSkewUncompensatedMs: this.uncompensated === null ? null : Math.round(this.uncompensated),
      videoHoldMs: this.hold,
      audioDelayMs: this.audioDelay,
      audioSenderReports: this.audioClock.valid,
      videoSenderReports: this.videoClock.valid,
    };
  }
}
