import { describe, expect, it } from 'vitest';
import {
  ValidationError,
  assertValidTree,
  childrenOf,
  depthsOf,
  findCycle,
  leastLoadedRelay,
  reparent,
  shallowestWithRoom,
  subtreeOf,
  treeDepth,
  validateTree,
  type LoadedNode,
  type Tree,
} from '../src/index.js';

function node(id: string, opts: { role?: 'mixer' | 'relay'; viewers?: number; capacity?: number; children?: number } = {}): LoadedNode {
  return {
    info: { id, role: opts.role ?? 'relay', capacity: { viewers: opts.capacity ?? 100, children: opts.children ?? 16 } },
    viewers: opts.viewers ?? 0,
  };
}

const tree = (entries: Array<[string, string | null]>): Map<string, string | null> => new Map(entries);

/** Adds relays one by one the way the controller does, returning the tree. */
function grow(relays: string[], fanOut: number, root = 'm'): Map<string, string | null> {
  const t = tree([[root, null]]);
  const nodes = [node(root, { role: 'mixer' }), ...relays.map((r) => node(r))];
  for (const r of relays) {
    const parent = shallowestWithRoom(t, nodes, fanOut, { exclude: new Set([r]) });
    if (parent === null) throw new Error(`no room for ${r}`);
    t.set(r, parent);
  }
  return t;
}

describe('tree helpers', () => {
  const t: Tree = tree([
    ['m', null],
    ['a', 'm'],
    ['b', 'm'],
    ['c', 'a'],
    ['d', 'c'],
  ]);

  it('derive depths from parent links', () => {
    expect([...depthsOf(t)].sort()).toEqual([
      ['a', 1],
      ['b', 1],
      ['c', 2],
      ['d', 3],
      ['m', 0],
    ]);
    expect(treeDepth(t)).toBe(3);
    expect(treeDepth(tree([['m', null]]))).toBe(0);
    expect(treeDepth(new Map())).toBe(0);
  });

  it('list children and subtrees', () => {
    expect(childrenOf(t, 'm')).toEqual(['a', 'b']);
    expect([...subtreeOf(t, 'a')].sort()).toEqual(['a', 'c', 'd']);
    expect([...subtreeOf(t, 'b')]).toEqual(['b']);
    expect(subtreeOf(t, 'nope').size).toBe(0);
  });

  it('find cycles, missing parents and root problems', () => {
    expect(findCycle(t)).toBeNull();
    expect(validateTree(t)).toEqual([]);
    const cyclic = tree([
      ['m', null],
      ['a', 'c'],
      ['b', 'a'],
      ['c', 'b'],
      ['x', 'a'],
    ]);
    expect(findCycle(cyclic)?.sort()).toEqual(['a', 'b', 'c']);
    expect(validateTree(cyclic).map((p) => p.kind)).toEqual(['cycle']);
    // Nodes on or below a cycle have no depth: they do not reach the root.
    expect([...depthsOf(cyclic).keys()]).toEqual(['m']);
    expect(() => assertValidTree(cyclic)).toThrow(ValidationError);
    expect(validateTree(tree([['a', 'ghost']])).map((p) => p.kind)).toEqual(['no_root', 'missing_parent']);
    expect(validateTree(tree([['a', null], ['b', null]]))[0]).toEqual({ kind: 'multiple_roots', nodes: ['a', 'b'] });
    expect(findCycle(tree([['a', 'a']]))).toEqual(['a']);
  });
});

describe('shallowestWithRoom', () => {
  it('fills the shallowest level first and respects the fan-out: 3 relays at fan-out 2 make depth 2', () => {
    const t = grow(['r1', 'r2', 'r3'], 2);
    expect(t.get('r1')).toBe('m');
    expect(t.get('r2')).toBe('m');
    expect(t.get('r3')).toBe('r1');
    expect(treeDepth(t)).toBe(2);
  });

  it('never gives a parent more children than the fan-out', () => {
    for (const fanOut of [1, 2, 3, 8]) {
      const relays = Array.from({ length: 40 }, (_, i) => `r${String(i).padStart(2, '0')}`);
      const t = grow(relays, fanOut);
      for (const id of t.keys()) expect(childrenOf(t, id).length).toBeLessThanOrEqual(fanOut);
      expect(validateTree(t)).toEqual([]);
      // Complete fill: the depth is the smallest that holds 41 nodes.
      let capacity = 1;
      let level = 1;
      let depth = 0;
      while (capacity < 41) {
        level *= fanOut;
        capacity += level;
        depth++;
      }
      if (fanOut > 1) expect(treeDepth(t)).toBe(depth);
      else expect(treeDepth(t)).toBe(40);
    }
  });

  it('breaks ties by fewest children, then by id', () => {
    const t = tree([
      ['m', null],
      ['b', 'm'],
      ['a', 'm'],
      ['c', 'm'],
      ['x', 'b'],
    ]);
    const nodes = ['m', 'a', 'b', 'c', 'x'].map((id) => node(id));
    // depth 0 is full at fan-out 3; at depth 1, a and c have no children: a wins on id.
    expect(shallowestWithRoom(t, nodes, 3)).toBe('a');
    t.set('y', 'a');
    nodes.push(node('y'));
    // a and b have one child each, c none: c wins on fewest children.
    expect(shallowestWithRoom(t, nodes, 3)).toBe('c');
  });

  it('skips dead nodes, nodes cut off from the root, excluded nodes and a node capacity below the fan-out', () => {
    const t = tree([
      ['m', null],
      ['a', 'm'],
      ['b', 'm'],
      ['orphan', 'ghost'],
    ]);
    const live = [node('m', { role: 'mixer' }), node('b', { children: 0 }), node('orphan')];
    // m is full (fan-out 2), a is not live, b takes no children, orphan is not attached.
    expect(shallowestWithRoom(t, live, 2)).toBeNull();
    expect(shallowestWithRoom(t, [...live, node('a')], 2)).toBe('a');
    expect(shallowestWithRoom(t, [...live, node('a')], 2, { exclude: new Set(['a']) })).toBeNull();
    expect(shallowestWithRoom(t, live, 3)).toBe('m');
  });
});

describe('leastLoadedRelay', () => {
  it('picks the smallest viewers/capacity ratio, ties by id, never the mixer', () => {
    const nodes = [
      node('m', { role: 'mixer', viewers: 0 }),
      node('b', { viewers: 50, capacity: 100 }),
      node('a', { viewers: 10, capacity: 20 }),
      node('c', { viewers: 20, capacity: 100 }),
    ];
    expect(leastLoadedRelay(nodes)?.info.id).toBe('c');
    nodes[3].viewers = 50;
    expect(leastLoadedRelay(nodes)?.info.id).toBe('a'); // a, b and c all at 0.5
  });

  it('spreads a burst evenly when placements count as pending load', () => {
    const nodes = ['r1', 'r2', 'r3'].map((id) => node(id, { capacity: 20 }));
    const pending = new Map<string, number>();
    for (let i = 0; i < 50; i++) {
      const r = leastLoadedRelay(nodes, { pending })!;
      pending.set(r.info.id, (pending.get(r.info.id) ?? 0) + 1);
    }
    expect([...pending.values()].sort()).toEqual([16, 17, 17]);
    // Capacities differ: the load follows the capacity.
    const mixed = [node('big', { capacity: 300 }), node('small', { capacity: 100 })];
    const p2 = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const r = leastLoadedRelay(mixed, { pending: p2 })!;
      p2.set(r.info.id, (p2.get(r.info.id) ?? 0) + 1);
    }
    expect(p2.get('big')).toBe(150);
    expect(p2.get('small')).toBe(50);
  });

  it('returns null when every relay is full, and only uses relays attached to the tree', () => {
    const nodes = [node('r1', { viewers: 20, capacity: 20 }), node('r2', { viewers: 19, capacity: 20 }), node('r0', { capacity: 0 })];
    expect(leastLoadedRelay(nodes)?.info.id).toBe('r2');
    expect(leastLoadedRelay(nodes, { pending: new Map([['r2', 1]]) })).toBeNull();
    expect(leastLoadedRelay([])).toBeNull();
    const t = tree([
      ['m', null],
      ['r1', 'm'],
      ['r2', 'gone'],
    ]);
    expect(leastLoadedRelay([node('r1', { viewers: 5 }), node('r2')], { within: t })?.info.id).toBe('r1');
    expect(leastLoadedRelay([node('r1'), node('r2')], { exclude: new Set(['r1', 'r2']) })).toBeNull();
  });
});

describe('reparent', () => {
  it('moves the dead node’s children to the shallowest parents with room, their subtrees with them', () => {
    // m → a, b; a → c, d; c → e
    const t = tree([
      ['m', null],
      ['a', 'm'],
      ['b', 'm'],
      ['c', 'a'],
      ['d', 'a'],
      ['e', 'c'],
    ]);
    const live = ['m', 'b', 'c', 'd', 'e'].map((id) => node(id));
    const r = reparent(t, 'a', live, 2);
    expect(r.tree.has('a')).toBe(false);
    expect(r.detached).toEqual([]);
    // c has the larger subtree: it takes the slot a left at the root; d goes under b.
    expect(r.tree.get('c')).toBe('m');
    expect(r.tree.get('d')).toBe('b');
    expect(r.tree.get('e')).toBe('c');
    expect(r.changed).toEqual([
      { node: 'c', parent: 'm', depth: 1 },
      { node: 'd', parent: 'b', depth: 2 },
      { node: 'e', parent: 'c', depth: 2 },
    ]);
    expect(validateTree(r.tree)).toEqual([]);
    // The input is not modified.
    expect(t.get('c')).toBe('a');
  });

  it('never puts a child under a node of the dead subtree that has not moved yet (no cycles)', () => {
    // m (fan-out 1 for the mixer) → a → x, y; x → x1; y → y1. Only the dead subtree has room.
    const t = tree([
      ['m', null],
      ['a', 'm'],
      ['x', 'a'],
      ['y', 'a'],
      ['x1', 'x'],
      ['y1', 'y'],
    ]);
    const live = [node('m', { role: 'mixer', children: 1 }), ...['x', 'y', 'x1', 'y1'].map((id) => node(id))];
    const r = reparent(t, 'a', live, 2);
    expect(findCycle(r.tree)).toBeNull();
    expect(validateTree(r.tree)).toEqual([]);
    // x (first by id among equal subtrees) takes the mixer's slot; y then joins under the moved x.
    expect(r.tree.get('x')).toBe('m');
    expect(r.tree.get('y')).toBe('x');
    // Nothing sits under a node of its own former subtree, and the subtrees moved intact.
    expect(r.tree.get('x1')).toBe('x');
    expect(r.tree.get('y1')).toBe('y');
  });

  it('detaches a subtree that finds no room anywhere, and leaves the root alone', () => {
    const t = tree([
      ['m', null],
      ['a', 'm'],
      ['b', 'a'],
      ['c', 'a'],
      ['b1', 'b'],
    ]);
    const live = [node('m', { role: 'mixer', children: 1 }), node('b', { children: 1 }), node('c', { children: 0 }), node('b1', { children: 0 })];
    const r = reparent(t, 'a', live, 4);
    expect(r.tree.get('b')).toBe('m');
    expect(r.detached).toEqual(['c']);
    expect(r.tree.has('c')).toBe(false);
    expect(validateTree(r.tree)).toEqual([]);

    const same = reparent(t, 'm', live, 4);
    expect(same.changed).toEqual([]);
    expect(same.tree).toEqual(t);
    expect(reparent(t, 'nobody', live, 4).changed).toEqual([]);
  });

  it('keeps the fan-out over many random deaths and never creates a cycle', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const relays = Array.from({ length: 30 }, (_, i) => `r${i}`);
    let t: Map<string, string | null> = grow(relays, 3);
    let live = [node('m', { role: 'mixer' }), ...relays.map((r) => node(r))];
    for (let round = 0; round < 20; round++) {
      const candidates = [...t.keys()].filter((n) => n !== 'm');
      const dead = candidates[Math.floor(random() * candidates.length)];
      live = live.filter((n) => n.info.id !== dead);
      const r = reparent(t, dead, live, 3);
      t = r.tree;
      expect(validateTree(t)).toEqual([]);
      for (const id of t.keys()) expect(childrenOf(t, id).length).toBeLessThanOrEqual(3);
      expect(t.size + r.detached.length).toBe(live.length);
    }
  });
});

describe('draining nodes', () => {
  it('a draining relay gets no viewer and no child relay, even when it is the least loaded', () => {
    const draining = { ...node('a', { viewers: 0 }), draining: true };
    const nodes = [node('m', { role: 'mixer' }), draining, node('b', { viewers: 50 })];
    expect(leastLoadedRelay(nodes)?.info.id).toBe('b');
    expect(leastLoadedRelay([draining])).toBeNull();
    const t = tree([
      ['m', null],
      ['a', 'm'],
      ['b', 'm'],
    ]);
    // 'a' has fewer children at the same depth, but drains.
    t.set('c', 'b');
    expect(shallowestWithRoom(t, nodes, 2, { exclude: new Set(['d']) })).toBe('b');
    expect(shallowestWithRoom(t, nodes.map((n) => (n.info.id === 'b' ? { ...n, draining: true } : n)), 2)).toBeNull();
  });

  it("a draining relay's children move as a dead node's would (the controller keeps the draining relay itself)", () => {
    const t = tree([
      ['m', null],
      ['a', 'm'],
      ['c', 'a'],
    ]);
    const nodes = [node('m', { role: 'mixer' }), { ...node('a'), draining: true }, node('c')];
    const r = reparent(t, 'a', nodes, 1);
    expect(r.detached).toEqual([]);
    expect(r.changed).toEqual([{ node: 'c', parent: 'm', depth: 1 }]);
  });
});
