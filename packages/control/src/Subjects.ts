/**
 * NATS subject grammar and the namespaced subjects of the control plane.
 *
 * Subjects are dot-separated tokens. In a subscription pattern `*` matches
 * exactly one token and `>` (last token only) matches one or more tokens.
 * Both buses use these rules, so a pattern behaves the same in one process
 * and across a cluster.
 */
import { z } from 'zod';
import { ValidationError } from './Errors.js';

/**
 * Cluster, event and node ids become single subject tokens and parts of KV
 * bucket names, so they are held to the intersection of both grammars (NATS
 * buckets allow only [A-Za-z0-9_-]) — no dots, spaces or wildcards.
 */
const safeIdPattern = /^[A-Za-z0-9_-]{1,64}$/;

export const safeIdSchema = z
  .string()
  .regex(safeIdPattern)
  .describe('id of 1 to 64 characters from A-Z a-z 0-9 _ -');

export function isSafeId(value: unknown): value is string {
  return typeof value === 'string' && safeIdPattern.test(value);
}

export function assertSafeId(value: unknown, what: string): string {
  if (!isSafeId(value)) {
    throw new ValidationError(
      `${what}: expected id of 1 to 64 characters from A-Z a-z 0-9 _ -, got ${JSON.stringify(String(value)).slice(0, 80)}`,
      what,
    );
  }
  return value;
}

// Whitespace would split the NATS protocol line; the server rejects it too.
const badTokenChars = /[\s]/;

/** True for a subject that can be published to: non-empty tokens, no wildcards, no whitespace. */
export function isValidSubject(subject: string): boolean {
  return checkSubject(subject, false);
}

/** True for a subscription pattern: like a subject, but `*` tokens and a final `>` are allowed. */
export function isValidPattern(pattern: string): boolean {
  return checkSubject(pattern, true);
}

function checkSubject(subject: string, wildcards: boolean): boolean {
  if (typeof subject !== 'string' || subject.length === 0 || subject.length > 1024) return false;
  const tokens = subject.split('.');
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t.length === 0 || badTokenChars.test(t)) return false;
    if (t === '*' || t === '>') {
      if (!wildcards) return false;
      if (t === '>' && i !== tokens.length - 1) return false;
    }
  }
  return true;
}

export function assertSubject(subject: string, wildcards: boolean): void {
  if (!checkSubject(subject, wildcards)) {
    const kind = wildcards ? 'subject pattern' : 'subject (no wildcards)';
    throw new ValidationError(`invalid ${kind}: ${JSON.stringify(String(subject)).slice(0, 120)}`, 'subject');
  }
}

/** Whether `subject` (literal) is matched by `pattern` under NATS token rules. Invalid input never matches. */
export function subjectMatches(pattern: string, subject: string): boolean {
  if (!checkSubject(pattern, true) || !checkSubject(subject, false)) return false;
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

/** A safe id, or `'*'` to build a subscription pattern over all ids. */
export type IdOrAny = string;

function idToken(id: IdOrAny, what: string): string {
  return id === '*' ? id : assertSafeId(id, what);
}

/**
 * Subject and KV bucket names for one cluster. Pass `'*'` as an id to get a
 * pattern, e.g. `subjects('prod').node.heartbeat('*')`.
 */
export function subjects(cluster: string) {
  const root = `mcu.${assertSafeId(cluster, 'cluster')}`;
  const event = (eventId: IdOrAny) => {
    const base = `${root}.event.${idToken(eventId, 'eventId')}`;
    return {
      /** everything about this event */
      all: `${base}.>`,
      /** event lifecycle (created, started, ended) */
      state: `${base}.state`,
      /** current speaker set from the mixer */
      speaker: `${base}.speaker`,
      /** layout changes from the producer */
      layout: `${base}.layout`,
      /** aggregated keyframe requests travelling up the tree */
      keyframe: `${base}.keyframe`,
      /** relay tree changes (parent assignments) */
      tree: `${base}.tree`,
      /** request: which relay should a new viewer of this event connect to? */
      place: `${base}.place`,
      /** request: a viewer's hand (raise, lower, its own) forwarded by the node it is on to the event's mixer */
      hands: `${base}.hands`,
      /** what happened to a hand (invited, lowered, done), for the node holding its viewer's event stream */
      hand: `${base}.hand`,
    };
  };
  return {
    root,
    all: `${root}.>`,
    node: {
      /** request: a node announces itself with capacity */
      register: `${root}.node.register`,
      heartbeat: (nodeId: IdOrAny) => `${root}.node.heartbeat.${idToken(nodeId, 'nodeId')}`,
      /** a node leaving cleanly */
      leave: (nodeId: IdOrAny) => `${root}.node.leave.${idToken(nodeId, 'nodeId')}`,
      /** requests addressed to one node (assign parent, start mixing, …) */
      control: (nodeId: IdOrAny) => `${root}.node.control.${idToken(nodeId, 'nodeId')}`,
      /** a child relay reports that this node's feed to it went silent (a dead parent, sooner than its missed beats tell) */
      silent: (nodeId: IdOrAny) => `${root}.node.silent.${idToken(nodeId, 'nodeId')}`,
    },
    event,
    placement: {
      /** request: where should a new viewer of an event connect? */
      viewer: `${root}.placement.viewer`,
      /** request: which parent should a new relay join under? */
      relay: `${root}.placement.relay`,
    },
    /** JetStream KV buckets (state that must outlive any one node) */
    buckets: {
      events: `mcu_${cluster}_events`,
      nodes: `mcu_${cluster}_nodes`,
      tree: `mcu_${cluster}_tree`,
      /** per event and node: the media address of its feed socket, and the mixer's stream description */
      feeds: `mcu_${cluster}_feeds`,
      /** leases such as `tree.leader` (which controller acts) */
      leases: `mcu_${cluster}_leases`,
      /** raised hands, key `<event>.<hand>` (HandQueue) */
      hands: `mcu_${cluster}_hands`,
    },
  };
}

export type Subjects = ReturnType<typeof subjects>;
