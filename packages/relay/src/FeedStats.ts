/**
 * Counters of a feed node (relay forwarder or feed sender), one plain object per node so the
 * forward path increments fields of a fixed shape. Exported as metrics by whoever owns the node
 * (`mcu_rtp_dropped_total{reason}` and friends).
 */
import type { CipherDropReason } from './FeedCipher.js';

/** Why a datagram was dropped on a feed socket. */
export type FeedDropReason =
  | CipherDropReason
  /** from an address that is neither the parent nor a child */
  | 'unknown_source'
  /** larger than `maxDatagramBytes` */
  | 'too_large'
  /** authentic RTCP that does not parse */
  | 'bad_rtcp'
  /** RTP sent to a node that only sends RTP (the feed sender) */
  | 'unexpected_rtp'
  /** more streams than `maxStreams` */
  | 'too_many_streams'
  /** the socket reported an error */
  | 'socket_error';

export const FEED_DROP_REASONS: readonly FeedDropReason[] = [
  'too_short',
  'bad_header',
  'bad_tag',
  'unknown_key',
  'replay',
  'bad_rtp',
  'too_many_sources',
  'unknown_source',
  'too_large',
  'bad_rtcp',
  'unexpected_rtp',
  'too_many_streams',
  'socket_error',
];

export interface FeedStats {
  /** Feed datagrams (RTP and RTCP) received, before any check. */
  packetsIn: number;
  /** Datagrams sent: forwards to each child, retransmissions, cached groups, RTCP. */
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
  dropped: Record<FeedDropReason, number>;
  /** Sequence numbers NACKed upstream (every attempt counts). */
  nackSent: number;
  /** NACKed packets that then arrived. */
  recovered: number;
  /** Missing packets given up after the last NACK attempt. */
  nackGaveUp: number;
  /** Sequence numbers children asked for. */
  nackReceived: number;
  /** Packets resent to a child from the retransmission buffer. */
  retransmitted: number;
  /** Sequence numbers a child asked for that were not in the buffer. */
  nackMisses: number;
  /** Keyframe requests sent upstream (or, on the feed sender, surfaced to the encoder). */
  pliForwarded: number;
  /** Keyframe requests absorbed by an earlier one. */
  pliSuppressed: number;
  /** Bytes in the group-of-pictures caches now. */
  gopBytes: number;
  /** Groups too large to cache. */
  gopOverflows: number;
  /** Times the feed moved to a newer key (key rotation), as seen in the packets authenticated. */
  keySwitches: number;
  /**
   * Time (ms) from a feed datagram's delivery to the process until it was sent to every child
   * relay and handed to every viewer sink, sampled once per FORWARD_SAMPLE_EVERY packets; a ring
   * of the latest FORWARD_SAMPLES (NaN: not filled yet).
   */
  forwardMs: Float64Array;
}

/** One forwarded packet in this many is timed (two clock reads on the hot path, rarely). */
export const FORWARD_SAMPLE_EVERY = 16;
export const FORWARD_SAMPLES = 512;

/** The q-quantile (0..1) of the forward-time samples of all `stats`, in ms; NaN without samples. */
export function forwardQuantileMs(stats: readonly FeedStats[], q: number): number {
  const all: number[] = [];
  for (const s of stats) for (const v of s.forwardMs) if (!Number.isNaN(v)) all.push(v);
  if (all.length === 0) return Number.NaN;
  all.sort((a, b) => a - b);
  return all[Math.min(all.length - 1, Math.floor(q * all.length))];
}

export function newFeedStats(): FeedStats {
  const dropped = {} as Record<FeedDropReason, number>;
  for (const r of FEED_DROP_REASONS) dropped[r] = 0;
  return {
    packetsIn: 0,
    packetsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    dropped,
    nackSent: 0,
    recovered: 0,
    nackGaveUp: 0,
    nackReceived: 0,
    retransmitted: 0,
    nackMisses: 0,
    pliForwarded: 0,
    pliSuppressed: 0,
    gopBytes: 0,
    gopOverflows: 0,
    keySwitches: 0,
    forwardMs: new Float64Array(FORWARD_SAMPLES).fill(Number.NaN),
  };
}

/** Total of all drop reasons. */
export function totalDropped(stats: FeedStats): number {
  let n = 0;
  for (const r of FEED_DROP_REASONS) n += stats.dropped[r];
  return n;
}
