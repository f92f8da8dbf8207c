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
} as const;
