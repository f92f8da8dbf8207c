/** Relay data-plane constants that matter, in one place, with units in their names. */
export const relayDefaults = {
  /**
   * A missing sequence number is NACKed only after this long, so that packets merely reordered
   * on the way (a few ms at most between nodes in one region) do not cause a retransmission.
   */
  nackDelayMs: 5,
  /** Between two NACKs for the same packet: longer than a node-to-node round trip inside a region. */
  nackRetryIntervalMs: 30,
  /** NACKs per missing packet before giving up (the decoder then conceals or asks for a keyframe). */
  nackMaxAttempts: 4,
  /**
   * A jump ahead by more than this many packets is a restarted or switched source, not loss:
   * asking for all of them would only flood the parent.
   */
  nackMaxGapPackets: 500,
  /** Missing packets tracked per stream at most; the oldest are given up first. */
  nackMaxPending: 1000,
  /** At most one keyframe request per stream goes upstream in this interval (DESIGN.md: "aggregated and rate-limited at each hop"). */
  keyframeRequestIntervalMs: 500,
  /**
   * Bytes of the current group of pictures kept per video stream: 2 s between keyframes at
   * 6 Mbit/s is 1.5 MB. A longer group stops being cached until the next keyframe.
   */
  gopCacheBytes: 2 * 1024 * 1024,
  /** Packets kept per stream to answer NACKs (power of two): 512 is ~3 s of 1.5 Mbit/s video. */
  retransmissionPackets: 512,
  /**
   * Largest datagram accepted on the feed: an Ethernet-MTU RTP packet plus the 24 bytes of feed
   * protection. Anything larger is dropped ('too_large').
   */
  maxDatagramBytes: 1600,
  /** Streams (SSRCs) per feed; more would only come from a misbehaving mixer. */
  maxStreams: 64,
  /**
   * Kernel socket buffers. A relay bursts one video frame (~6 packets) to every child at once; 2 MiB
   * absorbs that burst for a few hundred children (Linux caps it at net.core.[rw]mem_max).
   */
  socketBufferBytes: 2 * 1024 * 1024,
} as const;

export type RelayConfig = { -readonly [K in keyof typeof relayDefaults]: number };
