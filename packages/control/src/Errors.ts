/**
 * Errors thrown at API edges (HTTP handlers, NATS request handlers).
 *
 * Each class carries its HTTP status and a stable machine-readable `code`; the
 * message is written to be shown to clients, so it must never contain secrets,
 * stack traces or internal state. `httpStatusOf` and `errorBody` are the one
 * place where an error becomes a response; anything that is not an `McuError`
 * becomes a generic 500.
 */

export class McuError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
  }
}

/** 400: the request or message did not match its schema. `field` is the path of the first bad field (absent when the whole value is wrong). */
export class ValidationError extends McuError {
  readonly field: string | undefined;

  constructor(message: string, field?: string, code = 'invalid_request') {
    super(400, code, message);
    this.field = field;
  }
}

export type TokenErrorCode =
  | 'token_missing'
  | 'token_malformed'
  | 'token_bad_signature'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'token_bad_alg';

const tokenMessages: Record<TokenErrorCode, string> = {
  token_missing: 'a bearer token is required',
  token_malformed: 'token is malformed',
  token_bad_signature: 'token signature is invalid',
  token_expired: 'token has expired',
  token_not_yet_valid: 'token is not valid yet',
  token_bad_alg: 'token algorithm is not accepted (HS256 only)',
};

/** 401: no credentials, or credentials that cannot be trusted. */
export class TokenError extends McuError {
  declare readonly code: TokenErrorCode;

  constructor(code: TokenErrorCode, message: string = tokenMessages[code]) {
    super(401, code, message);
  }
}

/** 403: a valid token that does not grant this action (wrong role or wrong event). */
export class ForbiddenError extends McuError {
  constructor(message = 'forbidden', code = 'forbidden') {
    super(403, code, message);
  }
}

export class NotFoundError extends McuError {
  constructor(message = 'not found', code = 'not_found') {
    super(404, code, message);
  }
}

/** 405: `allow` lists the methods the resource does accept (sent as the Allow header). */
export class MethodNotAllowedError extends McuError {
  readonly allow: readonly string[];

  constructor(allow: readonly string[], message = 'method not allowed', code = 'method_not_allowed') {
    super(405, code, message);
    this.allow = allow;
  }
}

/** 409: the resource exists already, or changed since it was read (optimistic concurrency). */
export class ConflictError extends McuError {
  constructor(message = 'conflict', code = 'conflict') {
    super(409, code, message);
  }
}

export class PayloadTooLargeError extends McuError {
  constructor(message = 'payload too large', code = 'payload_too_large') {
    super(413, code, message);
  }
}

export class UnsupportedMediaTypeError extends McuError {
  constructor(message = 'unsupported media type', code = 'unsupported_media_type') {
    super(415, code, message);
  }
}

/** 503: try again later; `retryAfterSeconds` is sent as the Retry-After header. */
export class ServiceUnavailableError extends McuError {
  readonly retryAfterSeconds: number;

  constructor(message = 'service unavailable', retryAfterSeconds = 1, code = 'unavailable') {
    super(503, code, message);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** 429: over a rate limit; `retryAfterSeconds` is sent as the Retry-After header. */
export class TooManyRequestsError extends McuError {
  readonly retryAfterSeconds: number;

  constructor(message = 'too many requests', retryAfterSeconds = 1, code = 'rate_limited') {
    super(429, code, message);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export type BusErrorReason = 'timeout' | 'no_responders' | 'closed' | 'unavailable';

/**
 * A coordination-bus operation that could not complete. It is a 503 at the
 * API edge: the caller may retry once the cluster has settled.
 */
export class BusError extends ServiceUnavailableError {
  readonly reason: BusErrorReason;

  constructor(reason: BusErrorReason, message: string) {
    super(message, 1, `bus_${reason}`);
    this.reason = reason;
  }
}

export interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

const internalBody: ErrorBody = { error: { code: 'internal', message: 'internal server error' } };

export function httpStatusOf(err: unknown): number {
  return err instanceof McuError ? err.status : 500;
}

export function errorBody(err: unknown): ErrorBody {
  if (!(err instanceof McuError)) return { error: { ...internalBody.error } };
  const body: ErrorBody = { error: { code: err.code, message: err.message } };
  if (err instanceof ValidationError && err.field !== undefined) body.error.field = err.field;
  return body;
}

/** Response headers that HTTP requires or recommends for the error's status. */
export function errorHeaders(err: unknown): Record<string, string> {
  if (err instanceof TokenError) return { 'www-authenticate': 'Bearer' };
  if (err instanceof MethodNotAllowedError) return { allow: err.allow.join(', ') };
  if (err instanceof ServiceUnavailableError || err instanceof TooManyRequestsError) return { 'retry-after': String(Math.max(0, Math.ceil(err.retryAfterSeconds))) };
  return {};
}
