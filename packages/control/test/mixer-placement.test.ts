import { describe, expect, it } from 'vitest';
import { leastLoadedMixer, rankMixers, type MixerCandidate } from '../src/index.js';

const mixer = (id: string, load: Partial<MixerCandidate> = {}): MixerCandidate => ({ info: { id, role: 'mixer' }, ...load });

describe('mixer placement', () => {
  it('puts a new event on the mixer with the fewest participants and video sources', () => {
    const nodes = [mixer('a', { events: 1, participants: 40 }), mixer('b', { events: 1, participants: 5 }), mixer('c', { events: 1, participants: 5, videoSources: 3 })];
    expect(leastLoadedMixer(nodes)?.info.id).toBe('b');
    expect(rankMixers(nodes).map((n) => n.info.id)).toEqual(['b', 'c', 'a']);
  });

  it('weighs a video source heavier than an audio participant', () => {
    expect(leastLoadedMixer([mixer('a', { participants: 6 }), mixer('b', { videoSources: 1 })])?.info.id).toBe('a');
  });

  it('counts CPU from the heartbeats', () => {
    expect(leastLoadedMixer([mixer('a', { cpu: 0.7 }), mixer('b', { cpu: 0.1, participants: 10 })])?.info.id).toBe('b');
  });

  it('skips relays, draining, full, overloaded and excluded mixers', () => {
    const nodes: MixerCandidate[] = [
      { info: { id: 'r', role: 'relay' } },
      mixer('drain', { draining: true }),
      mixer('full', { events: 4 }),
      mixer('hot', { cpu: 0.95 }),
      mixer('dead'),
      mixer('ok', { events: 3, participants: 100 }),
    ];
    expect(leastLoadedMixer(nodes, { maxEvents: 4, exclude: new Set(['dead']) })?.info.id).toBe('ok');
    expect(leastLoadedMixer(nodes, { maxEvents: 3, exclude: new Set(['dead']) })).toBeNull();
  });

  it('breaks ties by id so that every node ranks alike', () => {
    expect(rankMixers([mixer('b'), mixer('a'), mixer('c')]).map((n) => n.info.id)).toEqual(['a', 'b', 'c']);
  });
});
