import { describe, expect, it } from 'vitest';
import { ValidationError, isValidPattern, isValidSubject, subjectMatches, subjects } from '../src/index.js';

describe('subjectMatches (NATS token rules)', () => {
  it.each([
    ['a.b.c', 'a.b.c', true],
    ['a.b.c', 'a.b', false],
    ['a.b', 'a.b.c', false],
    ['a.*.c', 'a.b.c', true],
    ['a.*.c', 'a.b.d', false],
    ['a.*', 'a.b.c', false],
    ['a.*', 'a', false],
    ['*', 'a', true],
    ['*', 'a.b', false],
    ['a.>', 'a.b', true],
    ['a.>', 'a.b.c.d', true],
    ['a.>', 'a', false],
    ['>', 'a', true],
    ['>', 'a.b', true],
    ['*.>', 'a', false],
    ['*.>', 'a.b', true],
    ['a.*.>', 'a.b.c', true],
    ['ab*', 'abc', false],
    ['a.>.c', 'a.b.c', false],
    ['a..b', 'a..b', false],
    ['a.b', 'a.*', false],
  ])('%s vs %s → %s', (pattern, subject, expected) => {
    expect(subjectMatches(pattern, subject)).toBe(expected);
  });

  it('tells subjects from patterns', () => {
    expect(isValidSubject('mcu.c1.node.register')).toBe(true);
    expect(isValidSubject('mcu.*')).toBe(false);
    expect(isValidSubject('mcu.c 1')).toBe(false);
    expect(isValidSubject('mcu.')).toBe(false);
    expect(isValidPattern('mcu.*.node.>')).toBe(true);
    expect(isValidPattern('mcu.>.node')).toBe(false);
  });
});

describe('subjects(cluster)', () => {
  const s = subjects('prod-eu');

  it('namespaces every subject under mcu.<cluster>', () => {
    expect(s.node.register).toBe('mcu.prod-eu.node.register');
    expect(s.node.heartbeat('relay-7')).toBe('mcu.prod-eu.node.heartbeat.relay-7');
    expect(s.event('keynote').speaker).toBe('mcu.prod-eu.event.keynote.speaker');
    expect(s.event('keynote').all).toBe('mcu.prod-eu.event.keynote.>');
    expect(s.all).toBe('mcu.prod-eu.>');
    expect(s.buckets.events).toBe('mcu_prod-eu_events');
  });

  it('builds patterns with "*" ids that match the concrete subjects', () => {
    expect(subjectMatches(s.node.heartbeat('*'), s.node.heartbeat('relay-7'))).toBe(true);
    expect(subjectMatches(s.event('*').speaker, s.event('keynote').speaker)).toBe(true);
    expect(subjectMatches(s.event('*').speaker, s.event('keynote').layout)).toBe(false);
    expect(subjectMatches(s.all, s.event('keynote').tree)).toBe(true);
    expect(subjectMatches(subjects('other').all, s.node.register)).toBe(false);
  });

  it('rejects ids that are not safe subject tokens', () => {
    for (const bad of ['', 'a.b', 'a b', '*', '>', 'a*', 'é', 'x'.repeat(65), 'tab\t']) {
      expect(() => subjects(bad)).toThrow(ValidationError);
    }
    for (const bad of ['a.b', 'a b', '>', '']) {
      expect(() => s.event(bad)).toThrow(ValidationError);
      expect(() => s.node.heartbeat(bad)).toThrow(/nodeId/);
    }
  });
});
