/**
 * `/healthz` and `/readyz` of every node. Healthz: the process is alive (200 while the HTTP server
 * runs). Readyz: the node takes new participants and viewers now; otherwise 503 with the first
 * reason that holds, so a load balancer or Kubernetes stops sending it traffic.
 */
import { json } from './HttpFront.js';
import type { Router } from './Router.js';

export type NotReadyReason =
  /** close() was called */
  | 'closing'
  /** drain() was called: existing sessions end or move, new ones go elsewhere */
  | 'draining'
  /** the node runs its maximum of events */
  | 'events_full'
  /** the node serves its maximum of WebRTC sessions */
  | 'sessions_full'
  /** cluster roles: the NATS connection is down */
  | 'bus_disconnected'
  /** cluster roles: the node has not registered with the cluster (or left it) */
  | 'not_registered';

export interface NotReady {
  reason: NotReadyReason;
  message: string;
}

/** One condition; null when it does not stop the node from taking traffic. */
export type ReadinessCheck = () => NotReady | null;

/** The first check that fails, or null (ready). */
export function firstNotReady(checks: Iterable<ReadinessCheck>): NotReady | null {
  for (const check of checks) {
    const r = check();
    if (r) return r;
  }
  return null;
}

/**
 * Registers `GET /healthz` and `GET /readyz`. The 503 is answered here rather than thrown, so a
 * probe polling a draining node does not fill the log with refused requests.
 */
export function healthRoutes(router: Router, checks: () => Iterable<ReadinessCheck>, readyBody: () => Record<string, unknown> = () => ({})): void {
  router.on('GET', '/healthz', ({ res }) => json(res, 200, { status: 'ok' }));
  router.on('GET', '/readyz', ({ res }) => {
    const notReady = firstNotReady(checks());
    if (notReady) {
      res.setHeader('retry-after', '1');
      json(res, 503, { status: 'unavailable', ...notReady });
    } else json(res, 200, { status: 'ready', ...readyBody() });
  });
}
