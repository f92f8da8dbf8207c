import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ValidationError, errorBody, parseJsonBody, parseWith } from '../src/index.js';

const eventConfig = z
  .object({
    name: z.string().min(1).max(80),
    maxSpeakers: z.number().int().min(1).max(16),
    mode: z.enum(['audio', 'video']),
    renditions: z.array(z.object({ height: z.number().int().positive(), fps: z.number().int().min(1).max(60) })).min(1),
    labels: z.record(z.string(), z.string().max(10)).optional(),
    region: z.string().describe('region code such as "eu-west"').optional(),
    startsAt: z.number().nullable().optional(),
  })
  .strict();

const good = { name: 'Keynote', maxSpeakers: 4, mode: 'video', renditions: [{ height: 720, fps: 30 }] };

function failure(value: unknown): ValidationError {
  try {
    parseWith(eventConfig, value, 'event');
  } catch (err) {
    if (err instanceof ValidationError) return err;
    throw err;
  }
  throw new Error('expected a ValidationError');
}

describe('parseWith', () => {
  it('returns the typed value when it matches', () => {
    const v = parseWith(eventConfig, good, 'event');
    expect(v.maxSpeakers).toBe(4);
  });

  it('names the field, what was expected and what was given', () => {
    const err = failure({ ...good, maxSpeakers: 'x' });
    expect(err.message).toBe('event: maxSpeakers: expected integer between 1 and 16, got "x"');
    expect(err.field).toBe('maxSpeakers');
    expect(err.status).toBe(400);
    expect(errorBody(err).error.field).toBe('maxSpeakers');
  });

  it('describes ranges, lengths, enums, nesting, records, nullables and missing fields', () => {
    const cases: Array<[unknown, string]> = [
      [{ ...good, maxSpeakers: 17 }, 'maxSpeakers: expected integer between 1 and 16, got 17'],
      [{ ...good, maxSpeakers: 1.5 }, 'maxSpeakers: expected integer between 1 and 16, got 1.5'],
      [{ ...good, name: '' }, 'name: expected string of 1 to 80 characters, got ""'],
      [{ maxSpeakers: 4, mode: 'video', renditions: [] }, 'name: expected string of 1 to 80 characters, got nothing'],
      [{ ...good, mode: 'hologram' }, 'mode: expected one of "audio", "video", got "hologram"'],
      [{ ...good, renditions: [] }, 'renditions: expected array of at least 1 item, got array'],
      [{ ...good, renditions: [{ height: 720, fps: 30 }, { height: 0, fps: 30 }] }, 'renditions[1].height: expected integer >= 1, got 0'],
      [{ ...good, labels: { 'a b': 'x'.repeat(11) } }, 'labels["a b"]: expected string of at most 10 characters, got "xxxxxxxxxxx"'],
      [{ ...good, region: 7 }, 'region: expected region code such as "eu-west", got 7'],
      [{ ...good, startsAt: 'soon' }, 'startsAt: expected number or null, got "soon"'],
      [{ ...good, extra: 1 }, 'extra: unexpected field'],
      [[good], 'expected object, got array'],
    ];
    for (const [value, message] of cases) expect(failure(value).message).toBe(`event: ${message}`);
    expect(failure(null).field).toBeUndefined();
  });

  it('keeps custom refinement messages and truncates long values', () => {
    const s = z.object({ a: z.number(), b: z.number() }).refine((v) => v.a < v.b, { message: 'a must be below b', path: ['a'] });
    expect(() => parseWith(s, { a: 2, b: 1 }, 'range')).toThrow('range: a: a must be below b');
    const long = failure({ ...good, mode: 'y'.repeat(500) });
    expect(long.message.length).toBeLessThan(120);
  });
});

describe('parseJsonBody', () => {
  it('rejects text that is not JSON', () => {
    expect(() => parseJsonBody('{"name":', eventConfig)).toThrow(new ValidationError('body is not valid JSON'));
    expect(() => parseJsonBody('', eventConfig)).toThrow(ValidationError);
  });

  it('validates parsed JSON against the schema', () => {
    expect(parseJsonBody(JSON.stringify(good), eventConfig).name).toBe('Keynote');
    expect(() => parseJsonBody(JSON.stringify({ ...good, maxSpeakers: 0 }), eventConfig)).toThrow(
      'body: maxSpeakers: expected integer between 1 and 16, got 0',
    );
  });
});
