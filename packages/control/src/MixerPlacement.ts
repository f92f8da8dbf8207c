/**
 * Which mixer holds a new event, and which take over an event when its holder goes: small pure
 * selectors on plain data (the registry's live mixers and their latest heartbeats), like
 * Placement.ts does for relays. No bus, no clock.
 *
 * A mixer's load is a weighted sum of what its heartbeat says it carries: each participant costs
 * a decode candidate and possibly a mix-minus encode, each video source a decoder process (far
 * heavier), and its CPU busy fraction counts as the tie-breaker that sees everything else. A
 * mixer is full when it holds `maxEvents` events or its CPU is above `maxCpu`; a draining mixer
 * takes nothing.
 */

/** What mixer placement needs to know about a live mixer. The registry's `LiveNode` fits. */
export interface MixerCandidate {
  info: { id: string; role: string };
  draining?: boolean;
  events?: number;
  participants?: number;
  videoSources?: number;
  /** Busy fraction of its CPUs, 0..1, when measured. */
  cpu?: number;
}

export interface MixerSelectorOptions {
  /** Events a mixer holds at most (its `maxEvents`); default unlimited. */
  maxEvents?: number;
  /** A mixer busier than this fraction of its CPUs takes no new event (default 0.85). */
  maxCpu?: number;
  /** Mixers to leave out (the dead holder, the one an event moves away from). */
  exclude?: ReadonlySet<string>;
}

/** Load weights: a video source (an ffmpeg decoder) costs as much as this many audio participants. */
export const mixerLoadWeights = { participant: 1, videoSource: 8, event: 2, cpu: 50 } as const;

export function mixerLoad(m: MixerCandidate): number {
  const w = mixerLoadWeights;
  return (m.participants ?? 0) * w.participant + (m.videoSources ?? 0) * w.videoSource + (m.events ?? 0) * w.event + (m.cpu ?? 0) * w.cpu;
}

/** Mixers with room, least loaded first (ties by id, so every node ranks them alike). */
export function rankMixers<M extends MixerCandidate>(nodes: Iterable<M>, opts: MixerSelectorOptions = {}): M[] {
  const maxCpu = opts.maxCpu ?? 0.85;
  const out: M[] = [];
  for (const n of nodes) {
    if (n.info.role !== 'mixer' || n.draining || opts.exclude?.has(n.info.id)) continue;
    if (opts.maxEvents !== undefined && (n.events ?? 0) >= opts.maxEvents) continue;
    if ((n.cpu ?? 0) > maxCpu) continue;
    out.push(n);
  }
  return out.sort((a, b) => mixerLoad(a) - mixerLoad(b) || (a.info.id < b.info.id ? -1 : a.info.id > b.info.id ? 1 : 0));
}

/** The least-loaded mixer with room, or null. */
export function leastLoadedMixer<M extends MixerCandidate>(nodes: Iterable<M>, opts: MixerSelectorOptions = {}): M | null {
  return rankMixers(nodes, opts)[0] ?? null;
}
