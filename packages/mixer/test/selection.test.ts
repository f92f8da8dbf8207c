import { describe, expect, it } from 'vitest';
import { SpeakerSelection } from '../src/index.js';

function run(sel: SpeakerSelection, ms: number, levels: (t: number) => number[], start = 0): number {
  let changes = 0;
  for (let t = start; t < start + ms; t += 20) {
    levels(t).forEach((l, slot) => sel.setLevel(slot, l, t));
    if (sel.update(t)) changes++;
  }
  return changes;
}

const speakersOf = (sel: SpeakerSelection) => [...sel.speakers.subarray(0, sel.speakerCount)].sort();

describe('SpeakerSelection', () => {
  it('an excluded (muted) participant leaves the speakers at once and is never selected until readmitted', () => {
    const sel = new SpeakerSelection({ maxSpeakers: 2, holdMs: 400 });
    for (let i = 0; i < 3; i++) sel.add(i);
    run(sel, 600, () => [10, 30, 127]);
    expect(speakersOf(sel)).toEqual([0, 1]);
    expect(sel.dominant).toBe(0);
    // Within its hold, and louder than anyone: it still goes at once.
    expect(sel.setExcluded(0, true)).toBe(true);
    expect(speakersOf(sel)).toEqual([1]);
    expect(sel.dominant).toBe(-1);
    run(sel, 1000, () => [10, 30, 40], 600);
    expect(speakersOf(sel)).toEqual([1, 2]);
    expect(sel.dominant).toBe(1);
    expect(sel.isExcluded(0)).toBe(true);
    expect(sel.setExcluded(0, false)).toBe(false);
    run(sel, 1000, () => [10, 30, 40], 1600);
    expect(speakersOf(sel)).toContain(0);
  });

  it('selects the loudest N and leaves silent participants out', () => {
    const sel = new SpeakerSelection({ maxSpeakers: 3 });
    for (let i = 0; i < 10; i++) sel.add(i);
    // slots 2, 5, 7 talk (lower -dBov is louder), 9 murmurs below the threshold, the rest are silent
    run(sel, 1000, () => [127, 127, 20, 127, 127, 30, 127, 25, 127, 70]);
    expect(speakersOf(sel)).toEqual([2, 5, 7]);
    expect(sel.dominant).toBe(2);
  });

  it('does not flap: a speaker holds the floor for at least 400 ms', () => {
    const sel = new SpeakerSelection({ maxSpeakers: 1, holdMs: 400 });
    sel.add(0);
    sel.add(1);
    // Two talkers alternate being louder every 100 ms.
    const changes = run(sel, 4000, (t) => (Math.floor(t / 100) % 2 === 0 ? [20, 40] : [40, 20]));
    // Without hysteresis this would change ~40 times; with a 400 ms hold, at most 10.
    expect(changes).toBeLessThanOrEqual(10);
    // And a clearly louder talker does take over once the hold is over.
    const sel2 = new SpeakerSelection({ maxSpeakers: 1, holdMs: 400 });
    sel2.add(0);
    sel2.add(1);
    run(sel2, 500, () => [30, 127]);
    expect(speakersOf(sel2)).toEqual([0]);
    run(sel2, 1000, () => [30, 10], 500);
    expect(speakersOf(sel2)).toEqual([1]);
  });

  it('releases a speaker after it stays silent and gives the slot to the next talker', () => {
    const sel = new SpeakerSelection({ maxSpeakers: 2, releaseMs: 1000 });
    for (let i = 0; i < 3; i++) sel.add(i);
    run(sel, 600, () => [20, 25, 127]);
    expect(speakersOf(sel)).toEqual([0, 1]);
    run(sel, 2000, () => [127, 25, 127], 600);
    expect(speakersOf(sel)).toEqual([1]);
    run(sel, 600, () => [127, 25, 30], 2600);
    expect(speakersOf(sel)).toEqual([1, 2]);
  });

  it('forgets a removed participant', () => {
    const sel = new SpeakerSelection({ maxSpeakers: 2 });
    sel.add(0);
    sel.add(1);
    run(sel, 300, () => [20, 30]);
    sel.remove(0);
    expect(speakersOf(sel)).toEqual([1]);
    expect(sel.isSpeaker(0)).toBe(false);
  });
});
