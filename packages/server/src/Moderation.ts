import { ForbiddenError, type Stage, type TokenIssuer } from '@mcu/control';

/** Response header of a WHIP session's creation: its resume grant (see `resumeGrant`). */
export const RESUME_TOKEN_HEADER = 'x-mcu-resume-token';
/** How long a resume grant is good for: long enough for a failover and a page's backoff. */
export const RESUME_GRANT_TTL_SECONDS = 600;
/** Ids kept per list (the cluster's stored definition takes this many): the oldest go first. */
export const MODERATION_MAX_IDS = 10_000;

/** Drops the oldest ids (insertion order) of a set or map past MODERATION_MAX_IDS. */
function keepNewest(ids: Set<string> | Map<string, unknown>): void {
  for (const oldest of ids.keys()) {
    if (ids.size <= MODERATION_MAX_IDS) break;
    ids.delete(oldest);
  }
}

function addBounded(set: Set<string>, pid: string): void {
  set.delete(pid);
  set.add(pid);
  keepNewest(set);
}

/**
 * The producer's mutes and kicks of one event, by participant id. They outlive the participant's
 * session (a presenter that re-publishes under the same id with its resume grant is muted again,
 * a kicked one is refused) and the holder (the cluster stores them in the event's definition).
 */
export class EventModeration {
  readonly #muted = new Set<string>();
  readonly #kicked = new Set<string>();
  /** The stage the producer last moved each participant to (insertion order: oldest first). */
  readonly #stages = new Map<string, Stage>();

  get muted(): string[] {
    return [...this.#muted];
  }

  get kicked(): string[] {
    return [...this.#kicked];
  }

  setMuted(pid: string, muted: boolean): void {
    if (muted) addBounded(this.#muted, pid);
    else this.#muted.delete(pid);
  }

  isMuted(pid: string): boolean {
    return this.#muted.has(pid);
  }

  kick(pid: string): void {
    addBounded(this.#kicked, pid);
    this.#muted.delete(pid);
    this.#stages.delete(pid);
  }

  get stages(): Record<string, Stage> {
    return Object.fromEntries(this.#stages);
  }

  /** The producer moved `pid` live or backstage: it comes back there under the same id. */
  setStage(pid: string, stage: Stage): void {
    this.#stages.delete(pid);
    this.#stages.set(pid, stage);
    keepNewest(this.#stages);
  }

  stageOf(pid: string | undefined): Stage | undefined {
    return pid === undefined ? undefined : this.#stages.get(pid);
  }

  isKicked(pid: string): boolean {
    return this.#kicked.has(pid);
  }

  /** A participant joining as `pid` (a grant's `pid` claim): refused when the producer kicked it. */
  admit(pid: string | undefined): void {
    if (pid !== undefined && this.#kicked.has(pid)) {
      throw new ForbiddenError(`participant ${pid} was removed from this event by its producer`, 'participant_kicked');
    }
  }

  /** Rebuilt from the cluster's stored definition (a new holder). */
  load(stored: { muted?: string[]; kicked?: string[]; stages?: Record<string, Stage> }): void {
    for (const pid of stored.muted ?? []) addBounded(this.#muted, pid);
    for (const pid of stored.kicked ?? []) addBounded(this.#kicked, pid);
    for (const [pid, stage] of Object.entries(stored.stages ?? {})) this.setStage(pid, stage);
  }
}

/**
 * A WHIP session's resume grant: a presenter token for the event that joins as the same
 * participant (`pid`) with its name and stage, so that its mutes and kicks still apply after it
 * re-publishes (a failover, a dropped connection).
 */
export function resumeGrant(issuer: TokenIssuer, event: string, participant: { id: string; name?: string; stage?: Stage }): string {
  return issuer.issue({ event, role: 'presenter', ttlSeconds: RESUME_GRANT_TTL_SECONDS, participant: participant.id, ...(participant.name ? { name: participant.name } : {}), ...(participant.stage ? { stage: participant.stage } : {}) });
}
