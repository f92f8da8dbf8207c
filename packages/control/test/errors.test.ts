import { describe, expect, it } from 'vitest';
import {
  BusError,
  ConflictError,
  ForbiddenError,
  McuError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  ServiceUnavailableError,
  TokenError,
  UnsupportedMediaTypeError,
  ValidationError,
  errorBody,
  errorHeaders,
  httpStatusOf,
} from '../src/index.js';

describe('API-edge errors', () => {
  it('map each class to its one HTTP status', () => {
    const cases: Array<[McuError, number, string]> = [
      [new ValidationError('maxSpeakers: expected integer', 'maxSpeakers'), 400, 'invalid_request'],
      [new TokenError('token_expired'), 401, 'token_expired'],
      [new ForbiddenError(), 403, 'forbidden'],
      [new NotFoundError('event e1 not found'), 404, 'not_found'],
      [new MethodNotAllowedError(['GET', 'POST']), 405, 'method_not_allowed'],
      [new ConflictError('event e1 exists'), 409, 'conflict'],
      [new PayloadTooLargeError(), 413, 'payload_too_large'],
      [new UnsupportedMediaTypeError(), 415, 'unsupported_media_type'],
      [new ServiceUnavailableError('draining', 5), 503, 'unavailable'],
      [new BusError('timeout', 'request to mcu.c.node.register: no reply within 2000 ms'), 503, 'bus_timeout'],
    ];
    for (const [err, status, code] of cases) {
      expect(err).toBeInstanceOf(McuError);
      expect(err).toBeInstanceOf(Error);
      expect(httpStatusOf(err)).toBe(status);
      expect(err.status).toBe(status);
      expect(err.code).toBe(code);
      expect(err.name).toBe(err.constructor.name);
      expect(errorBody(err)).toEqual({ error: { code, message: err.message, ...(err instanceof ValidationError ? { field: err.field } : {}) } });
    }
  });

  it('a validation error names the failing field in the body', () => {
    const body = errorBody(new ValidationError('layout.tiles[2].x: expected integer >= 0, got -1', 'layout.tiles[2].x'));
    expect(body).toEqual({
      error: { code: 'invalid_request', message: 'layout.tiles[2].x: expected integer >= 0, got -1', field: 'layout.tiles[2].x' },
    });
  });

  it('anything else becomes a generic 500 that reveals nothing', () => {
    const leaky = new Error('ECONNREFUSED postgres://admin:hunter2@db');
    for (const err of [leaky, new TypeError('x is undefined'), 'a string', null, undefined, { status: 400, code: 'fake', message: 'spoof' }]) {
      expect(httpStatusOf(err)).toBe(500);
      const body = errorBody(err);
      expect(body).toEqual({ error: { code: 'internal', message: 'internal server error' } });
      expect(JSON.stringify(body)).not.toMatch(/hunter2|at .*\.ts|undefined/);
    }
  });

  it('supplies the headers HTTP expects for 401, 405 and 503', () => {
    expect(errorHeaders(new TokenError('token_missing'))).toEqual({ 'www-authenticate': 'Bearer' });
    expect(errorHeaders(new MethodNotAllowedError(['GET', 'HEAD']))).toEqual({ allow: 'GET, HEAD' });
    expect(errorHeaders(new ServiceUnavailableError('busy', 2.5))).toEqual({ 'retry-after': '3' });
    expect(errorHeaders(new BusError('no_responders', 'x'))).toEqual({ 'retry-after': '1' });
    expect(errorHeaders(new Error('x'))).toEqual({});
  });
});
