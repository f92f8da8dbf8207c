/** Control-plane constants that matter, in one place, with units in their names. */
export const controlDefaults = {
  /** Tokens live a day unless the issuer says otherwise (one live event plus rehearsal). */
  tokenTtlSeconds: 24 * 60 * 60,
  /** Accepted clock skew between the node that issued a token and the node checking it. */
  tokenClockToleranceSeconds: 30,
  /** Longer tokens are rejected before any parsing or HMAC work. */
  tokenMaxLength: 8 * 1024,
  /** HMAC-SHA256 keys shorter than the hash output weaken it (RFC 2104 §3). */
  tokenMinSecretBytes: 32,
  /** Control requests are small and local to a data centre; seconds mean something is wrong. */
  requestTimeoutMs: 2_000,
  /** Pause between NATS reconnect attempts (nats.js default is 2 s). */
  reconnectTimeWaitMs: 2_000,
  /** How long the first NATS connect may take before it fails. */
  connectTimeoutMs: 5_000,

  // ---- cluster liveness: a killed relay's viewers must be re-placed within 3 s ----
  /**
   * Each node publishes its load this often. Four beats fit in `deadAfterMs`,
   * so one or two lost or late beats (a GC pause, a busy event loop) do not
   * kill a node; 100 nodes make 400 small messages a second, nothing for NATS.
   */
  heartbeatIntervalMs: 250,
  /**
   * A node silent this long is dead. With the check below, death is detected
   * 1.0–1.1 s after the last beat, leaving ~1.9 s of the 3 s budget for
   * re-parenting (a few KV writes) and for viewers to reconnect over WHEP.
   */
  deadAfterMs: 1_000,
  /**
   * A child relay whose feed from its parent is silent this long reports it (the program audio is
   * 50 packets/s and never pauses: 300 ms is 15 packets missing), again `parentSilentReportIntervalMs`
   * later, then after twice as long each time while it lasts, up to `parentSilentReportMaxIntervalMs`.
   */
  parentSilentMs: 300,
  parentSilentReportIntervalMs: 250,
  parentSilentReportMaxIntervalMs: 4_000,
  /**
   * A node a child reported silent is dead once its last beat is this old: two beats missed
   * (`heartbeatIntervalMs`), where `deadAfterMs` waits for four. A killed relay's subtree gets a
   * new parent about 0.5 s after the kill instead of 1.1 s: under the 0.7–1.5 s players wait
   * before they call a stall and reconnect.
   */
  suspectDeadAfterMs: 500,
  /** How often the registry looks for silent nodes (adds at most this much to detection). */
  livenessCheckIntervalMs: 100,
  /** A registry asks an unknown node that keeps beating to register again at most this often. */
  reregisterRequestIntervalMs: 1_000,
  /** Retry backoff of a node's registration while the bus or JetStream is unavailable. */
  registerRetryMinMs: 100,
  registerRetryMaxMs: 2_000,

  // ---- relay tree ----
  /**
   * Children per parent in the relay tree. Depth grows as log_F(relays): with
   * F = 8, 72 relays (10,000 viewers at ~150 per relay) sit within two hops
   * of the mixer, and a parent sends at most 8 copies of the feed.
   */
  relayFanOut: 8,
  /**
   * A viewer sent to a relay counts against it until its heartbeats show the
   * viewer arrived, or for this long at most (WHEP setup takes well under a
   * second; a viewer that never shows up must not hold a seat for ever).
   */
  placementHoldMs: 2_000,
  /** The tree controller re-checks every tree this often, besides reacting at once to joins and deaths. */
  treeReconcileIntervalMs: 500,

  // ---- leader lease (`tree.leader`): one tree controller acts per cluster ----
  /**
   * A holder that could not renew for this long stops acting; a standby that
   * saw the lease unchanged for this long takes it. Controller failover is not
   * on the viewer's 3 s path (relay deaths are), so it can be slower.
   */
  leaseTtlMs: 2_000,
  /** Renewals (and a standby's checks) per lease: four per ttl. */
  leaseRenewIntervalMs: 500,
} as const;
