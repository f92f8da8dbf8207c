/**
 * The picture of an event's delivery tree for the producer console (`GET /api/events/:id/tree`):
 * the mixer at the root, relays below it. A single node is a tree of one; the cluster's mixer
 * role supplies the real tree from its controller's state.
 */
export interface TreeNodeView {
  id: string;
  role: 'mixer' | 'relay';
  /** The node this one receives the program feed from; null for the root. */
  parent: string | null;
  /** Hops from the mixer (0 for the mixer). */
  depth: number;
  /**
   * Viewers the node serves: on a single node this event's WHEP sessions; in a cluster what the
   * node's latest heartbeat reports (WHEP and plain RTP, all events).
   */
  viewers: number;
  /** Viewers (WebRTC sessions) it can serve. */
  capacity: number;
  /** Fraction of that capacity in use by all its sessions, 0..1. */
  load: number;
  /** Busy fraction of its CPUs, when the node measures it. */
  cpu?: number;
}

export interface EventTreeView {
  nodes: TreeNodeView[];
  /** In a cluster of several mixers: the mixer holding the event, its lease epoch, and the standby mixers in the order they would take it over. */
  holder?: { id: string; epoch: number; standby: string[] };
}

/** Supplies an event's tree, or null to let the node describe itself alone. */
export type EventTreeProvider = (eventId: string) => Promise<EventTreeView | null>;

/** `viewers / capacity`, clamped to 0..1 and rounded for display. */
export function viewerLoad(viewers: number, capacity: number): number {
  if (capacity <= 0) return viewers > 0 ? 1 : 0;
  return Math.round(Math.min(1, viewers / capacity) * 1000) / 1000;
}
