/**
 * Signed, expiring, scoped tokens: compact JWS (RFC 7515) with HS256 only.
 *
 * Only HS256 is accepted, whatever the header says, so `alg: none` and
 * algorithm-confusion tokens fail before any claim is read. The signature is
 * compared in constant time against the canonical base64url encoding, so a
 * signature with different trailing bits cannot pass. Claims are validated
 * with zod only after the signature checks out.
 */
import { createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { controlDefaults } from './Defaults.js';
import { ForbiddenError, TokenError, ValidationError } from './Errors.js';
import { parseWith } from './Schema.js';
import { safeIdSchema } from './Subjects.js';

export const roles = ['admin', 'producer', 'presenter', 'viewer', 'node'] as const;
export const roleSchema = z.enum(roles);
export type Role = z.infer<typeof roleSchema>;

/** Roles that may hold a token for every event (`evt: '*'`). */
const wildcardRoles: ReadonlySet<Role> = new Set<Role>(['admin', 'node']);

const maxTtlSeconds = 366 * 24 * 60 * 60;

/** A presenter's or viewer's display name: 1–64 printable characters, no control characters. */
export const displayNameSchema = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .regex(/^[^\p{Cc}\p{Cf}]+$/u, 'no control characters');

/** Where a presenter is: `live` (mixed, in the composite) or `backstage` (connected, hears the program, not mixed). */
export const stageSchema = z.enum(['live', 'backstage']);
export type Stage = z.infer<typeof stageSchema>;

export const tokenClaimsSchema = z
  .object({
    iss: z.string().max(256).optional(),
    sub: z.string().min(1).max(256).optional(),
    evt: z.union([safeIdSchema, z.literal('*')]),
    role: roleSchema,
    iat: z.number().int().nonnegative(),
    exp: z.number().int().positive(),
    jti: z.string().min(1).max(128),
    /** Display name of the holder (a viewer invited by name, a presenter's name in the composite). */
    name: displayNameSchema.optional(),
    /** A grant for one participant only (a viewer invited on stage): WHIP with it becomes this participant. */
    pid: safeIdSchema.optional(),
    /** The stage a presenter grant joins on (overrides the event's `presentersJoin`). */
    stage: stageSchema.optional(),
  })
  .refine((c) => c.evt !== '*' || wildcardRoles.has(c.role), { message: 'only admin and node tokens may cover every event' })
  .refine((c) => c.exp > c.iat, { message: 'exp must be after iat' });

export type TokenClaims = z.infer<typeof tokenClaimsSchema>;

const issueSchema = z
  .object({
    event: z.union([safeIdSchema, z.literal('*')]),
    role: roleSchema,
    ttlSeconds: z.number().int().min(1).max(maxTtlSeconds).optional(),
    subject: z.string().min(1).max(256).optional(),
    name: displayNameSchema.optional(),
    participant: safeIdSchema.optional(),
    stage: stageSchema.optional(),
  })
  .refine((c) => c.event !== '*' || wildcardRoles.has(c.role), {
    message: 'event "*" is only allowed for admin and node tokens',
    path: ['event'],
  });

const headerSchema = z.looseObject({ alg: z.string(), typ: z.string().optional() });

const base64urlPart = /^[A-Za-z0-9_-]+$/;
const headerPart = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');

export interface TokenIssuerOptions {
  /** HMAC key: at least 32 bytes (a string is taken as UTF-8). See `generateSecret()`. */
  secret: string | Buffer;
  /** When set, issued tokens carry `iss` and only tokens with this `iss` verify. */
  issuer?: string;
  /** Wall clock in milliseconds; inject a manual clock in tests. */
  clock?: () => number;
  defaultTtlSeconds?: number;
  clockToleranceSeconds?: number;
}

export class TokenIssuer {
  readonly #key: KeyObject;
  readonly #issuer: string | undefined;
  readonly #clock: () => number;
  readonly #defaultTtlSeconds: number;
  readonly #toleranceSeconds: number;

  constructor(opts: TokenIssuerOptions) {
    const secret = typeof opts.secret === 'string' ? Buffer.from(opts.secret, 'utf8') : opts.secret;
    if (!Buffer.isBuffer(secret) || secret.length < controlDefaults.tokenMinSecretBytes) {
      throw new ValidationError(`secret: expected at least ${controlDefaults.tokenMinSecretBytes} bytes`, 'secret');
    }
    this.#key = createSecretKey(Buffer.from(secret));
    this.#issuer = opts.issuer;
    this.#clock = opts.clock ?? Date.now;
    this.#defaultTtlSeconds = opts.defaultTtlSeconds ?? controlDefaults.tokenTtlSeconds;
    this.#toleranceSeconds = opts.clockToleranceSeconds ?? controlDefaults.tokenClockToleranceSeconds;
  }

  issue(claims: { event: string; role: Role; ttlSeconds?: number; subject?: string; name?: string; participant?: string; stage?: Stage }): string {
    const c = parseWith(issueSchema, claims, 'token claims');
    const iat = this.#nowSeconds();
    const payload: TokenClaims = {
      ...(this.#issuer !== undefined ? { iss: this.#issuer } : {}),
      ...(c.subject !== undefined ? { sub: c.subject } : {}),
      evt: c.event,
      role: c.role,
      iat,
      exp: iat + (c.ttlSeconds ?? this.#defaultTtlSeconds),
      jti: randomBytes(12).toString('base64url'),
      ...(c.name !== undefined ? { name: c.name } : {}),
      ...(c.participant !== undefined ? { pid: c.participant } : {}),
      ...(c.stage !== undefined ? { stage: c.stage } : {}),
    };
    const signingInput = `${headerPart}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
    return `${signingInput}.${this.#sign(signingInput)}`;
  }

  /** Checks signature, algorithm, claims and time; throws `TokenError` (401) for any failure. */
  verify(token: string): TokenClaims {
    if (typeof token !== 'string' || token.length === 0 || token.length > controlDefaults.tokenMaxLength) {
      throw new TokenError('token_malformed');
    }
    const parts = token.split('.');
    if (parts.length !== 3) throw new TokenError('token_malformed');
    const [h, p, s] = parts;
    // An empty signature is well-formed (alg "none" tokens look like that) and is then refused for its alg.
    if (!base64urlPart.test(h) || !base64urlPart.test(p) || !(s === '' || base64urlPart.test(s))) {
      throw new TokenError('token_malformed');
    }

    const header = headerSchema.safeParse(decodeJsonPart(h));
    if (!header.success) throw new TokenError('token_malformed');
    if (header.data.alg !== 'HS256') throw new TokenError('token_bad_alg');
    // RFC 7515 §4.1.11: a token with critical extensions we do not understand must be rejected.
    if ('crit' in header.data || (header.data.typ !== undefined && header.data.typ !== 'JWT')) {
      throw new TokenError('token_malformed');
    }

    const expected = Buffer.from(this.#sign(`${h}.${p}`));
    const given = Buffer.from(s);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new TokenError('token_bad_signature');

    const parsed = tokenClaimsSchema.safeParse(decodeJsonPart(p));
    if (!parsed.success) throw new TokenError('token_malformed', 'token claims are invalid');
    const claims = parsed.data;
    if (this.#issuer !== undefined && claims.iss !== this.#issuer) {
      throw new TokenError('token_malformed', 'token was issued by another issuer');
    }
    const now = this.#nowSeconds();
    if (claims.iat > now + this.#toleranceSeconds) throw new TokenError('token_not_yet_valid');
    if (now >= claims.exp + this.#toleranceSeconds) throw new TokenError('token_expired');
    return claims;
  }

  /**
   * The one check every entry point makes. No token or a bad one → `TokenError`
   * (401); a good token without the right role or for another event →
   * `ForbiddenError` (403). Admin tokens pass every check. Without
   * `need.event` only the role is checked.
   */
  authorize(token: string | undefined, need: { event?: string; roles: readonly Role[] }): TokenClaims {
    if (token === undefined || token === '') throw new TokenError('token_missing');
    const claims = this.verify(token);
    if (claims.role === 'admin') return claims;
    if (!need.roles.includes(claims.role)) {
      throw new ForbiddenError(`a ${claims.role} token does not allow this`, 'forbidden_role');
    }
    if (need.event !== undefined && claims.evt !== '*' && claims.evt !== need.event) {
      throw new ForbiddenError('token is for another event', 'forbidden_event');
    }
    return claims;
  }

  #sign(signingInput: string): string {
    return createHmac('sha256', this.#key).update(signingInput).digest('base64url');
  }

  #nowSeconds(): number {
    return Math.floor(this.#clock() / 1000);
  }
}

function decodeJsonPart(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

/** A random 32-byte HMAC secret, base64url-encoded (43 characters). */
export function generateSecret(bytes: number = controlDefaults.tokenMinSecretBytes): string {
  if (!Number.isInteger(bytes) || bytes < controlDefaults.tokenMinSecretBytes) {
    throw new ValidationError(`bytes: expected integer >= ${controlDefaults.tokenMinSecretBytes}`, 'bytes');
  }
  return randomBytes(bytes).toString('base64url');
}

/** The token from an `Authorization: Bearer <token>` header (RFC 6750 §2.1), or undefined. */
export function bearerToken(authorizationHeader: string | undefined): string | undefined {
  if (typeof authorizationHeader !== 'string') return undefined;
  const m = /^\s*bearer +([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(authorizationHeader);
  return m?.[1];
}
