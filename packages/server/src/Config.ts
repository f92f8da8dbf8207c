import { z } from 'zod';
import { restreamAllowEntryError } from './RestreamAllow.js';
import { defaultTlsReloadIntervalMs } from './ServerCertificate.js';

/** Settings of one node, with their defaults in one place (units in the names). */
export const nodeConfigSchema = z.object({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65_535).default(8080),
  /** Base of the absolute URLs handed out (whip, whep); defaults to http://host:port (https:// with a certificate). */
  publicUrl: z.url().optional(),
  /** Serve HTTPS with this PEM certificate (chain) file and `tlsKey`; re-read when it changes on disk. */
  tlsCert: z.string().min(1).optional(),
  /** The PEM private key file of `tlsCert` (a path: key material never goes on a command line). */
  tlsKey: z.string().min(1).optional(),
  /** How often the certificate files are checked for a renewal (0: never). */
  tlsReloadIntervalMs: z.number().int().min(0).max(86_400_000).default(defaultTlsReloadIntervalMs),
  /** With HTTPS, send Strict-Transport-Security with this max-age (e.g. 31536000); unset: not sent. */
  hstsMaxAgeSeconds: z.number().int().min(0).max(63_072_000).optional(),
  /** Address RTP sockets bind to; defaults to `host`. */
  rtpHost: z.string().min(1).optional(),
  /**
   * One UDP port for every plain-RTP participant of the node (every event's), routed by source
   * address then SSRC; unset: a port per participant. Needs the native UDP addon (Linux).
   */
  rtpPort: z.number().int().min(1024).max(65_535).optional(),
  /** Address advertised for RTP when behind a 1:1 NAT. */
  publicIp: z.string().min(1).optional(),
  /** Static admin bearer token; generated at start when unset. */
  adminToken: z.string().min(16).optional(),
  /** HMAC secret for event tokens (≥ 32 bytes); generated at start when unset. */
  tokenSecret: z.string().min(32).optional(),
  tokenTtlSeconds: z.number().int().positive().default(24 * 3600),
  maxEvents: z.number().int().positive().default(100),
  maxParticipantsPerEvent: z.number().int().positive().default(1000),
  defaultMaxSpeakers: z.number().int().min(1).max(16).default(3),
  maxBodyBytes: z.number().int().positive().default(64 * 1024),
  /** UDP port range for WebRTC ICE host candidates, e.g. [40000, 40999]. */
  rtcPorts: z.tuple([z.number().int().min(1024).max(65_535), z.number().int().min(1024).max(65_535)]).refine(([a, b]) => a < b, 'the first port must be below the second').optional(),
  /** One UDP port for every WebRTC session (demultiplexed by ICE username): takes precedence over rtcPorts. */
  rtcPort: z.number().int().min(1024).max(65_535).optional(),
  /** Restrict ICE to these addresses (CIDR); tests use 127.0.0.0/8. */
  iceAllow: z.array(z.string().min(1)).optional(),
  /** Extra host addresses for ICE (loopback is excluded by default). */
  iceHostAddresses: z.array(z.string().min(1)).optional(),
  /** Close a WebRTC session after this long without media. */
  rtcMediaTimeoutMs: z.number().int().positive().default(30_000),
  rtcAnswerTimeoutMs: z.number().int().positive().default(10_000),
  maxRtcSessions: z.number().int().positive().default(500),
  /**
   * libopus complexity of the mixer's encoders (the shared mix and each speaker's mix-minus), 0–10:
   * lower costs less CPU per encode for somewhat lower quality. 5 by default; 3 cost the whole node
   * 5–12 % less CPU at 150 participants on 2026-12-07 (docs/performance.md).
   */
  opusComplexity: z.number().int().min(0).max(10).default(5),
  /** Most delay lip sync adds to a presenter's audio or video to line them up (0: measure only). */
  maxLipSyncDelayMs: z.number().int().min(0).max(1000).default(200),
  /** Where recordings are stored (segments and manifests; ciphertext only). */
  recordingsDir: z.string().min(1).default('./data/recordings'),
  /** age recipients (age1…) used when a recording request names none. */
  recordingRecipients: z.array(z.string().regex(/^age1[02-9ac-hj-np-z]{58}$/, 'an X25519 age recipient (age1…)')).optional(),
  /** Program video renditions (default 1280x720 and 640x360 at 30 fps, VP8). */
  videoRenditions: z
    .array(
      z
        .object({
          id: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/),
          width: z.number().int().min(16).max(3840).multipleOf(2),
          height: z.number().int().min(16).max(2160).multipleOf(2),
          fps: z.number().int().min(1).max(60).optional(),
          codec: z.enum(['vp8', 'h264']).optional(),
          bitrateKbps: z.number().int().min(50).max(20_000).optional(),
        })
        .strict(),
    )
    .min(1)
    .optional(),
  /** The H.264 rendition a restream adds to an event that has none (YouTube asks 720p30 at 1.5–4 Mbps). */
  restreamRendition: z
    .object({
      width: z.number().int().min(16).max(3840).multipleOf(2).default(1280),
      height: z.number().int().min(16).max(2160).multipleOf(2).default(720),
      fps: z.number().int().min(1).max(60).default(30),
      bitrateKbps: z.number().int().min(50).max(20_000).default(2500),
    })
    .strict()
    .default({ width: 1280, height: 720, fps: 30, bitrateKbps: 2500 }),
  maxRestreamsPerEvent: z.number().int().min(0).max(20).default(4),
  /**
   * Where restreams may connect (RestreamAllow.ts): `public` (any public address), host[:port],
   * *.domain[:port], ip[:port], cidr[:port]. Default: public addresses only, so a producer cannot
   * make the node reach its loopback, private network or link-local (metadata) addresses.
   */
  restreamAllow: z
    .array(z.string().min(1))
    .superRefine((entries, ctx) => {
      const bad = entries.map(restreamAllowEntryError).find((e) => e !== null);
      if (bad) ctx.addIssue({ code: 'custom', message: bad });
    })
    .default(['public']),
});

export type NodeConfigInput = z.input<typeof nodeConfigSchema>;
export type NodeConfig = z.output<typeof nodeConfigSchema>;
