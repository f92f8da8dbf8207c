/**
 * Placement decisions as small pure functions on plain data (like LiveKit's
 * `selector/*.go`): where a new relay joins the tree, which relay a new
 * viewer goes to, and how a dead relay's children re-parent. No bus, no
 * clock; the TreeController feeds them the registry's view and writes the
 * result.
 *
 * A tree is a map from node id to parent id; the root (the event's mixer) has
 * parent null. Depths are derived from the parent links, never trusted from
 * storage, so a corrupt tree cannot mislead placement.
 */
import type { NodeRole } from './ClusterMessages.js';
import { ValidationError } from './Errors.js';

/** node id → parent id (null for the root). */
export type Tree = ReadonlyMap<string, string | null>;

/** What placement needs to know about a node. `NodeInfo` fits. */
export interface PlacementCandidate {
  id: string;
  role: NodeRole;
  capacity: { viewers: number; children: number };
}

/** A live node. The registry's `LiveNode` fits. */
export interface CandidateNode {
  info: PlacementCandidate;
  /** Shutting down gracefully: takes no new viewers and no new child relays. */
  draining?: boolean;
}

/** A live node with its current viewer count. */
export interface LoadedNode extends CandidateNode {
  viewers: number;
}

export interface TreeMove {
  node: string;
  parent: string | null;
  depth: number;
}

export function treeFromAssignments(assignments: Iterable<{ node: string; parent: string | null }>): Map<string, string | null> {
  const tree = new Map<string, string | null>();
  for (const a of assignments) tree.set(a.node, a.parent);
  return tree;
}

/** Direct children of `id`, sorted by id. */
export function childrenOf(tree: Tree, id: string): string[] {
  const out: string[] = [];
  for (const [node, parent] of tree) if (parent === id) out.push(node);
  return out.sort();
}

/** node id → number of direct children (nodes without children are absent). */
export function childCounts(tree: Tree): Map<string, number> {
  const counts = new Map<string, number>();
  for (const parent of tree.values()) if (parent !== null) counts.set(parent, (counts.get(parent) ?? 0) + 1);
  return counts;
}

/**
 * Depth of every node that reaches a root through existing parents. Nodes on
 * a cycle, or below a parent that is not in the tree, are absent.
 */
export function depthsOf(tree: Tree): Map<string, number> {
  const depths = new Map<string, number>();
  const broken = new Set<string>();
  for (const start of tree.keys()) {
    if (depths.has(start) || broken.has(start)) continue;
    const path: string[] = [];
    const onPath = new Set<string>();
    let cur: string | null | undefined = start;
    let base = -1;
    // Walk up until a root, a node of known depth, or a dead end; at most tree.size steps.
    while (true) {
      if (cur === undefined || broken.has(cur) || onPath.has(cur) || !tree.has(cur)) break;
      const known = depths.get(cur);
      if (known !== undefined) {
        base = known;
        break;
      }
      path.push(cur);
      onPath.add(cur);
      const parent: string | null | undefined = tree.get(cur);
      if (parent === null) {
        base = -1;
        cur = null;
        break;
      }
      cur = parent;
    }
    const reachesRoot = cur === null || (cur !== undefined && depths.has(cur));
    if (!reachesRoot) {
      for (const n of path) broken.add(n);
      continue;
    }
    for (let i = path.length - 1, d = base + 1; i >= 0; i--, d++) depths.set(path[i], d);
  }
  return depths;
}

export function depthOf(tree: Tree, id: string): number | undefined {
  return depthsOf(tree).get(id);
}

/** Hops from the root to the deepest node: 0 for a root alone (or an empty tree). */
export function treeDepth(tree: Tree): number {
  let max = 0;
  for (const d of depthsOf(tree).values()) if (d > max) max = d;
  return max;
}

/** `id` and all its descendants (empty if `id` is not in the tree). */
export function subtreeOf(tree: Tree, id: string): Set<string> {
  const out = new Set<string>();
  if (!tree.has(id)) return out;
  const children = new Map<string, string[]>();
  for (const [node, parent] of tree) {
    if (parent === null) continue;
    const list = children.get(parent);
    if (list) list.push(node);
    else children.set(parent, [node]);
  }
  const stack = [id];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (out.has(n)) continue;
    out.add(n);
    for (const c of children.get(n) ?? []) stack.push(c);
  }
  return out;
}

/** The nodes of one cycle in the parent links (in parent order), or null if there is none. */
export function findCycle(tree: Tree): string[] | null {
  const done = new Set<string>();
  for (const start of tree.keys()) {
    if (done.has(start)) continue;
    const index = new Map<string, number>();
    const path: string[] = [];
    let cur: string | null | undefined = start;
    while (cur !== null && cur !== undefined && tree.has(cur) && !done.has(cur)) {
      const seen = index.get(cur);
      if (seen !== undefined) return path.slice(seen);
      index.set(cur, path.length);
      path.push(cur);
      cur = tree.get(cur);
    }
    for (const n of path) done.add(n);
  }
  return null;
}

export interface TreeProblem {
  kind: 'cycle' | 'missing_parent' | 'no_root' | 'multiple_roots';
  nodes: string[];
}

/** Everything that makes `tree` not a single tree: cycles, parents that are not in it, zero or several roots. */
export function validateTree(tree: Tree): TreeProblem[] {
  const problems: TreeProblem[] = [];
  if (tree.size === 0) return problems;
  const roots = [...tree].filter(([, p]) => p === null).map(([n]) => n).sort();
  if (roots.length === 0) problems.push({ kind: 'no_root', nodes: [] });
  if (roots.length > 1) problems.push({ kind: 'multiple_roots', nodes: roots });
  const missing = [...tree].filter(([, p]) => p !== null && !tree.has(p)).map(([n]) => n).sort();
  if (missing.length > 0) problems.push({ kind: 'missing_parent', nodes: missing });
  const cycle = findCycle(tree);
  if (cycle) problems.push({ kind: 'cycle', nodes: cycle });
  return problems;
}

export function assertValidTree(tree: Tree): void {
  const [first] = validateTree(tree);
  if (first) throw new ValidationError(`tree: ${first.kind.replace('_', ' ')}${first.nodes.length ? ` (${first.nodes.join(', ')})` : ''}`, 'tree');
}

/** How many more children `node` may take under the cluster fan-out and its own capacity. */
function roomOf(node: CandidateNode, children: number, fanOut: number): number {
  return Math.min(fanOut, node.info.capacity.children) - children;
}

function indexById<N extends CandidateNode>(nodes: Iterable<N>): Map<string, N> {
  const byId = new Map<string, N>();
  for (const n of nodes) byId.set(n.info.id, n);
  return byId;
}

/**
 * Parent for a new relay: the live node in the tree (mixer or relay) of
 * smallest depth that has room for another child; ties go to the one with
 * fewest children, then to the smallest id. Only nodes that reach the root
 * count (a node cut off from the feed cannot pass it on), and no draining
 * node. Null if none.
 */
export function shallowestWithRoom(
  tree: Tree,
  nodes: Iterable<CandidateNode>,
  fanOut: number,
  opts: { exclude?: ReadonlySet<string> } = {},
): string | null {
  const live = indexById(nodes);
  const counts = childCounts(tree);
  let best: { id: string; depth: number; children: number } | undefined;
  for (const [id, depth] of depthsOf(tree)) {
    if (opts.exclude?.has(id)) continue;
    const node = live.get(id);
    if (!node || node.draining) continue;
    const children = counts.get(id) ?? 0;
    if (roomOf(node, children, fanOut) <= 0) continue;
    if (
      !best ||
      depth < best.depth ||
      (depth === best.depth && (children < best.children || (children === best.children && id < best.id)))
    ) {
      best = { id, depth, children };
    }
  }
  return best ? best.id : null;
}

export interface LeastLoadedOptions {
  /** Viewers sent to a relay since its last heartbeat (not in `viewers` yet). */
  pending?: ReadonlyMap<string, number>;
  /** Only relays attached to this tree (reaching its root) are eligible: others have no feed. */
  within?: Tree;
  exclude?: ReadonlySet<string>;
}

/**
 * Relay for a new viewer: the relay with room (viewers + pending below its
 * viewer capacity) and the smallest viewers/capacity ratio; ties go to the
 * smallest id; draining relays are skipped. Null if every relay is full:
 * serve locally or answer 503.
 */
export function leastLoadedRelay<N extends LoadedNode>(nodes: Iterable<N>, opts: LeastLoadedOptions = {}): N | null {
  const attached = opts.within ? depthsOf(opts.within) : undefined;
  let best: { node: N; load: number; cap: number } | undefined;
  for (const node of nodes) {
    const { id, role, capacity } = node.info;
    if (role !== 'relay' || node.draining || opts.exclude?.has(id)) continue;
    if (attached && !attached.has(id)) continue;
    const cap = capacity.viewers;
    const load = node.viewers + (opts.pending?.get(id) ?? 0);
    if (cap <= 0 || load >= cap) continue;
    // Compare load/cap ratios exactly, by cross-multiplying.
    const cmp = best ? load * best.cap - best.load * cap : -1;
    if (!best || cmp < 0 || (cmp === 0 && id < best.node.info.id)) best = { node, load, cap };
  }
  return best ? best.node : null;
}

export interface ReparentResult {
  /** The tree after the change (the dead node and any detached nodes removed). */
  tree: Map<string, string | null>;
  /** Nodes whose parent or depth changed: the moved children and their descendants. Shallowest first. */
  changed: TreeMove[];
  /** Nodes taken out of the tree because no parent had room for their subtree; place them again later. */
  detached: string[];
}

/**
 * New parents for the children of a dead node. Each child goes to the
 * shallowest live parent with room outside the dead node's subtree (a child
 * already moved is outside it, so a sibling may land under it); its own
 * subtree moves with it. Children with the largest subtrees are placed first,
 * so they get the shallowest slots. The rest of the tree is preserved. The
 * root is never re-parented: without the mixer there is no feed to heal.
 */
export function reparent(tree: Tree, deadId: string, nodes: Iterable<CandidateNode>, fanOut: number): ReparentResult {
  const next = new Map(tree);
  if (!tree.has(deadId) || tree.get(deadId) === null) return { tree: next, changed: [], detached: [] };
  const before = depthsOf(tree);
  const live = [...nodes];
  next.delete(deadId);

  const subtrees = new Map(childrenOf(tree, deadId).map((c) => [c, subtreeOf(tree, c)] as const));
  const order = [...subtrees.keys()].sort((a, b) => subtrees.get(b)!.size - subtrees.get(a)!.size || (a < b ? -1 : 1));
  const exclude = new Set<string>([deadId]);
  for (const s of subtrees.values()) for (const n of s) exclude.add(n);

  const detached: string[] = [];
  for (const child of order) {
    const own = subtrees.get(child)!;
    const parent = shallowestWithRoom(next, live, fanOut, { exclude });
    if (parent === null) {
      for (const n of own) {
        next.delete(n);
        detached.push(n);
      }
      continue;
    }
    next.set(child, parent);
    for (const n of own) exclude.delete(n);
  }

  const after = depthsOf(next);
  const changed: TreeMove[] = [];
  for (const [node, parent] of next) {
    const depth = after.get(node);
    if (depth === undefined) continue;
    if (tree.get(node) !== parent || before.get(node) !== depth) changed.push({ node, parent, depth });
  }
  changed.sort((a, b) => a.depth - b.depth || (a.node < b.node ? -1 : 1));
  return { tree: next, changed, detached: detached.sort() };
}
