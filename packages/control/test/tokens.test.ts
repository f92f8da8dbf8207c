import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ForbiddenError,
  TokenError,
  TokenIssuer,
  ValidationError,
  bearerToken,
  generateSecret,
  httpStatusOf,
  type Role,
} from '../src/index.js';

const secret = generateSecret();
const t0 = Date.UTC(2030, 0, 1, 12, 0, 0);

function manualClock(start = t0) {
  let now = start;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** A token signed with `key` over arbitrary header and payload, to reach checks behind the signature. */
function signRaw(header: unknown, payload: unknown, key: string | Buffer = secret): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`;
}

function tokenErrorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof TokenError) return err.code;
    throw err;
  }
  throw new Error('expected a TokenError, but nothing was thrown');
}

describe('TokenIssuer.issue / verify', () => {
  it('round-trips the claims of a signed token', () => {
    const clock = manualClock();
    const issuer = new TokenIssuer({ secret, clock: clock.now });
    const token = issuer.issue({ event: 'keynote-2030', role: 'presenter', subject: 'alice', ttlSeconds: 600 });
    expect(token.split('.')).toHaveLength(3);
    expect(JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString())).toEqual({ alg: 'HS256', typ: 'JWT' });
    const claims = issuer.verify(token);
    expect(claims).toMatchObject({ evt: 'keynote-2030', role: 'presenter', sub: 'alice', iat: t0 / 1000, exp: t0 / 1000 + 600 });
    expect(claims.jti.length).toBeGreaterThan(8);
    expect(issuer.verify(issuer.issue({ event: 'keynote-2030', role: 'presenter' })).jti).not.toBe(claims.jti);
  });

  it('defaults to a 24 h lifetime', () => {
    const issuer = new TokenIssuer({ secret, clock: manualClock().now });
    const claims = issuer.verify(issuer.issue({ event: 'e1', role: 'viewer' }));
    expect(claims.exp - claims.iat).toBe(24 * 3600);
  });

  it('expires exactly at exp (no tolerance) and within the tolerance otherwise', () => {
    const clock = manualClock();
    const strict = new TokenIssuer({ secret, clock: clock.now, clockToleranceSeconds: 0 });
    const lenient = new TokenIssuer({ secret, clock: clock.now });
    const token = strict.issue({ event: 'e1', role: 'viewer', ttlSeconds: 60 });
    clock.advance(59_999);
    expect(strict.verify(token).evt).toBe('e1');
    clock.advance(1);
    expect(tokenErrorCode(() => strict.verify(token))).toBe('token_expired');
    clock.advance(29_000);
    expect(lenient.verify(token).evt).toBe('e1');
    clock.advance(1_000);
    expect(tokenErrorCode(() => lenient.verify(token))).toBe('token_expired');
  });

  it('rejects a token issued in the future beyond the clock tolerance', () => {
    const ahead = new TokenIssuer({ secret, clock: () => t0 + 120_000 });
    const here = new TokenIssuer({ secret, clock: () => t0 });
    const slightlyAhead = new TokenIssuer({ secret, clock: () => t0 + 10_000 });
    expect(tokenErrorCode(() => here.verify(ahead.issue({ event: 'e1', role: 'viewer' })))).toBe('token_not_yet_valid');
    expect(here.verify(slightlyAhead.issue({ event: 'e1', role: 'viewer' })).evt).toBe('e1');
  });

  it('rejects a tampered payload', () => {
    const issuer = new TokenIssuer({ secret });
    const [h, p, s] = issuer.issue({ event: 'e1', role: 'viewer' }).split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    const forged = `${h}.${b64({ ...claims, role: 'admin', evt: '*' })}.${s}`;
    expect(tokenErrorCode(() => issuer.verify(forged))).toBe('token_bad_signature');
  });

  it('rejects a tampered signature, including one that differs only in unused trailing bits', () => {
    const issuer = new TokenIssuer({ secret });
    const token = issuer.issue({ event: 'e1', role: 'viewer' });
    const [h, p, s] = token.split('.');
    const flip = (c: string) => (c === 'A' ? 'B' : 'A');
    const middle = `${s.slice(0, 10)}${flip(s[10])}${s.slice(11)}`;
    expect(tokenErrorCode(() => issuer.verify(`${h}.${p}.${middle}`))).toBe('token_bad_signature');
    // 32 bytes → 43 base64url chars; the last char's two low bits are padding.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet[alphabet.indexOf(s[42]) ^ 1];
    const sameBytes = `${s.slice(0, 42)}${last}`;
    expect(Buffer.from(sameBytes, 'base64url').equals(Buffer.from(s, 'base64url'))).toBe(true);
    expect(tokenErrorCode(() => issuer.verify(`${h}.${p}.${sameBytes}`))).toBe('token_bad_signature');
    expect(tokenErrorCode(() => issuer.verify(`${h}.${p}.${s}A`))).toBe('token_bad_signature');
    expect(tokenErrorCode(() => issuer.verify(`${h}.${p}.`))).toBe('token_bad_signature');
  });

  it('rejects alg "none" and every algorithm but HS256', () => {
    const issuer = new TokenIssuer({ secret, clock: () => t0 });
    const claims = { evt: 'e1', role: 'admin', iat: t0 / 1000, exp: t0 / 1000 + 60, jti: 'x1' };
    expect(tokenErrorCode(() => issuer.verify(`${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`))).toBe('token_bad_alg');
    expect(tokenErrorCode(() => issuer.verify(`${b64({ alg: 'none' })}.${b64(claims)}.c2ln`))).toBe('token_bad_alg');
    for (const alg of ['HS512', 'RS256', 'hs256', 'ES256', '']) {
      expect(tokenErrorCode(() => issuer.verify(signRaw({ alg, typ: 'JWT' }, claims)))).toBe('token_bad_alg');
    }
    expect(tokenErrorCode(() => issuer.verify(signRaw({ typ: 'JWT' }, claims)))).toBe('token_malformed');
    expect(tokenErrorCode(() => issuer.verify(signRaw({ alg: 'HS256', crit: ['exp'] }, claims)))).toBe('token_malformed');
    expect(issuer.verify(signRaw({ alg: 'HS256', typ: 'JWT' }, claims)).role).toBe('admin');
  });

  it('rejects a token signed with another secret', () => {
    const other = new TokenIssuer({ secret: generateSecret() });
    const issuer = new TokenIssuer({ secret });
    expect(tokenErrorCode(() => issuer.verify(other.issue({ event: 'e1', role: 'viewer' })))).toBe('token_bad_signature');
  });

  it('validates claims with the schema after the signature checks out', () => {
    const issuer = new TokenIssuer({ secret, clock: () => t0 });
    const ok = { evt: 'e1', role: 'viewer', iat: t0 / 1000, exp: t0 / 1000 + 60, jti: 'j' };
    const header = { alg: 'HS256', typ: 'JWT' };
    for (const bad of [
      { ...ok, evt: '*' }, // a viewer for every event
      { ...ok, role: 'root' },
      { ...ok, exp: String(ok.exp) },
      { ...ok, exp: undefined },
      { ...ok, evt: 'has.dot' },
      { ...ok, exp: ok.iat },
      [ok],
      'a string',
      null,
    ]) {
      expect(tokenErrorCode(() => issuer.verify(signRaw(header, bad)))).toBe('token_malformed');
    }
    expect(tokenErrorCode(() => issuer.verify(`${b64(header)}.${b64('{not json')}.${signRaw(header, ok).split('.')[2]}`))).toBe(
      'token_bad_signature',
    );
    const notJson = `${b64(header)}.${b64('{not json')}`;
    expect(tokenErrorCode(() => issuer.verify(`${notJson}.${createHmac('sha256', secret).update(notJson).digest('base64url')}`))).toBe(
      'token_malformed',
    );
    expect(issuer.verify(signRaw(header, { ...ok, evt: '*', role: 'node' })).evt).toBe('*');
  });

  it('binds tokens to the issuer name when one is configured', () => {
    const a = new TokenIssuer({ secret, issuer: 'cluster-a' });
    const b = new TokenIssuer({ secret, issuer: 'cluster-b' });
    const token = a.issue({ event: 'e1', role: 'viewer' });
    expect(a.verify(token).iss).toBe('cluster-a');
    expect(tokenErrorCode(() => b.verify(token))).toBe('token_malformed');
  });

  it('never throws anything but TokenError on 10,000 garbage and mutated tokens', () => {
    const issuer = new TokenIssuer({ secret });
    const valid = issuer.issue({ event: 'e1', role: 'producer' });
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}"\\\u0000é€😀';
    // Seeded PRNG (mulberry32) so a failure reproduces.
    let seed = 0x5eed;
    const rand = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const pick = (s: string) => s[Math.floor(rand() * s.length)];
    const randomString = (n: number) => Array.from({ length: n }, () => pick(chars)).join('');
    const generators: Array<() => string> = [
      () => randomString(Math.floor(rand() * 200)),
      () => [0, 1, 2].map(() => randomBytes(Math.floor(rand() * 60)).toString('base64url')).join('.'),
      () => `${b64(randomString(20))}.${b64(randomString(40))}.${randomBytes(32).toString('base64url')}`,
      () => {
        const i = Math.floor(rand() * valid.length);
        let c = pick(chars);
        while (c === valid[i]) c = pick(chars);
        return valid.slice(0, i) + c + valid.slice(i + 1);
      },
      () => valid.slice(0, Math.floor(rand() * valid.length)),
      () => valid + randomString(1 + Math.floor(rand() * 5)),
      () => `${b64({ alg: pick('NHR') + randomString(4) })}.${b64({ evt: randomString(3) })}.`,
      () => 'x'.repeat(9000),
    ];
    for (let i = 0; i < 10_000; i++) {
      const garbage = generators[i % generators.length]();
      let thrown: unknown;
      try {
        issuer.verify(garbage);
      } catch (err) {
        thrown = err;
      }
      if (!(thrown instanceof TokenError) || httpStatusOf(thrown) !== 401) {
        throw new Error(`verify(${JSON.stringify(garbage).slice(0, 200)}) ${thrown ? `threw ${String(thrown)}` : 'succeeded'}`);
      }
    }
  });
});

describe('TokenIssuer.authorize', () => {
  const issuer = new TokenIssuer({ secret });
  const token = (role: Role, event = 'e1') => issuer.issue({ event, role });

  it('401 without a token or with an invalid or expired one', () => {
    const expired = new TokenIssuer({ secret, clock: () => t0 - 48 * 3600_000 }).issue({ event: 'e1', role: 'viewer', ttlSeconds: 60 });
    for (const t of [undefined, '', 'garbage', `${token('viewer')}x`, expired]) {
      let err: unknown;
      try {
        new TokenIssuer({ secret, clock: () => t0 }).authorize(t, { event: 'e1', roles: ['viewer'] });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TokenError);
      expect(httpStatusOf(err)).toBe(401);
    }
    expect(tokenErrorCode(() => issuer.authorize(undefined, { roles: ['viewer'] }))).toBe('token_missing');
  });

  it('403 for a valid token with the wrong role', () => {
    expect(() => issuer.authorize(token('viewer'), { event: 'e1', roles: ['producer', 'presenter'] })).toThrow(ForbiddenError);
    const err = (() => {
      try {
        issuer.authorize(token('node', '*'), { roles: ['producer'] });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ForbiddenError);
    expect(httpStatusOf(err)).toBe(403);
    expect((err as ForbiddenError).code).toBe('forbidden_role');
  });

  it('403 for a valid token for another event', () => {
    let err: unknown;
    try {
      issuer.authorize(token('producer', 'e1'), { event: 'e2', roles: ['producer'] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ForbiddenError);
    expect((err as ForbiddenError).code).toBe('forbidden_event');
  });

  it('passes the right role for the right event, and node tokens for every event', () => {
    expect(issuer.authorize(token('viewer'), { event: 'e1', roles: ['viewer'] }).role).toBe('viewer');
    expect(issuer.authorize(token('presenter'), { roles: ['presenter'] }).evt).toBe('e1');
    expect(issuer.authorize(token('node', '*'), { event: 'any-event', roles: ['node'] }).role).toBe('node');
  });

  it('admin passes every check for any event', () => {
    for (const admin of [token('admin', '*'), token('admin', 'e9')]) {
      expect(issuer.authorize(admin, { event: 'e1', roles: ['viewer'] }).role).toBe('admin');
      expect(issuer.authorize(admin, { roles: [] }).role).toBe('admin');
    }
  });
});

describe('token configuration and issuing', () => {
  it('requires a secret of at least 32 bytes', () => {
    expect(() => new TokenIssuer({ secret: 'short' })).toThrow(ValidationError);
    expect(() => new TokenIssuer({ secret: Buffer.alloc(31) })).toThrow(ValidationError);
    expect(() => new TokenIssuer({ secret: Buffer.alloc(32, 7) })).not.toThrow();
    expect(generateSecret()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(generateSecret()).not.toBe(generateSecret());
  });

  it('refuses to issue "*" event tokens except to admin and node, and unsafe ids', () => {
    const issuer = new TokenIssuer({ secret });
    expect(() => issuer.issue({ event: '*', role: 'viewer' })).toThrow(ValidationError);
    expect(() => issuer.issue({ event: 'a.b', role: 'viewer' })).toThrow(/event/);
    expect(() => issuer.issue({ event: 'e1', role: 'viewer', ttlSeconds: 0 })).toThrow(/ttlSeconds/);
    expect(() => issuer.issue({ event: 'e1', role: 'superuser' as Role })).toThrow(/role/);
    expect(issuer.verify(issuer.issue({ event: '*', role: 'node' })).evt).toBe('*');
  });

  it('does not expose the secret when the issuer is logged', () => {
    const issuer = new TokenIssuer({ secret });
    expect(JSON.stringify(issuer)).not.toContain(secret);
    expect(Object.values(issuer)).toEqual([]);
  });
});

describe('bearerToken', () => {
  it('parses "Bearer <token>" with any case of the scheme', () => {
    expect(bearerToken('Bearer abc.def.ghi')).toBe('abc.def.ghi');
    expect(bearerToken('bearer abc.def-_')).toBe('abc.def-_');
    expect(bearerToken('BEARER   abc  ')).toBe('abc');
  });

  it('returns undefined for anything else', () => {
    for (const h of [undefined, '', 'Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz', 'abc.def.ghi', 'Bearer a b', 'Bearerabc']) {
      expect(bearerToken(h)).toBeUndefined();
    }
  });
});

describe('optional grant claims', () => {
  const issuer = new TokenIssuer({ secret: 'x'.repeat(32) });
  it('carries name, participant and stage when issued with them', () => {
    const t = issuer.issue({ event: 'ev1', role: 'presenter', name: 'Ada Lovelace', participant: 'guest-1', stage: 'backstage' });
    const c = issuer.verify(t);
    expect(c).toMatchObject({ name: 'Ada Lovelace', pid: 'guest-1', stage: 'backstage' });
  });
  it('refuses a name with control characters and an unknown stage', () => {
    expect(() => issuer.issue({ event: 'ev1', role: 'viewer', name: 'a\u0000b' })).toThrow(/name/);
    expect(() => issuer.issue({ event: 'ev1', role: 'presenter', stage: 'wings' as never })).toThrow(/stage/);
  });
});
