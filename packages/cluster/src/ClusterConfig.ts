/** Cluster-role constants that matter, in one place, with units in their names. */
export const clusterDefaults = {
  /** Placement asked over the bus (when this mixer's controller is not the leader) gives up after this. */
  placementTimeoutMs: 1_000,
  /** A relay asks the mixer for an event's feed key again after this long without an answer. */
  feedKeyRetryMs: 250,
  /** The mixer replaces each event's feed key this often (and when a node leaves or dies). */
  feedKeyRotationMs: 600_000,
  /** A rotation's next key is announced this long before the feed is sealed with it. */
  feedKeyGraceMs: 2_000,
  /** A replaced key is still accepted this long (packets in flight, retransmissions), then retired. */
  feedKeyOverlapMs: 2_000,
  /** A relay that meets a key id it does not hold asks for the keys at most once per this long. */
  feedKeyFetchIntervalMs: 250,
  /** Child relays a mixer feeds directly (the tree controller's fan-out caps it further). */
  mixerChildren: 8,
  /** WebRTC viewers a relay takes before placement skips it. */
  relayViewers: 500,
  /** Plain-RTP viewers (benchmarks, gateways) per relay. */
  relayRtpViewers: 5_000,
  /**
   * An event's holder that could not renew its lease for this long stops sending the program, and
   * a standby takes the event after seeing the lease unchanged this long (or at once when the
   * registry declares the holder dead: 0.5–1.1 s). Also the tree leader's lease on mixers, so a
   * dead mixer that led the tree is replaced as fast. Four renewals per ttl.
   */
  eventLeaseTtlMs: 1_000,
  eventLeaseRenewIntervalMs: 250,
  /** A presenter's page that hears no mix for this long re-publishes (publish.js mirrors it). */
  presenterSilenceMs: 1_500,
} as const;

/** The shared HMAC secret every node of a cluster signs and checks tokens with. */
export function requireTokenSecret(secret: string | undefined): string {
  if (!secret) {
    throw new Error(
      'MCU_TOKEN_SECRET is required when clustering: every node must sign and check tokens with the same secret (≥ 32 characters), e.g. `export MCU_TOKEN_SECRET=$(openssl rand -base64 32)`',
    );
  }
  if (secret.length < 32) throw new Error(`MCU_TOKEN_SECRET must be at least 32 characters (got ${secret.length})`);
  return secret;
}
