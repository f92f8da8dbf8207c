import type { IncomingMessage, ServerResponse } from 'node:http';
import { MethodNotAllowedError, NotFoundError } from '@mcu/control';

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: Record<string, string>;
}

export type RouteHandler = (ctx: RouteContext) => Promise<void> | void;

/**
 * Runs before a matched route's handler: true when it answered the request itself (e.g. a mixer
 * that does not hold the event redirects to the one that does), false to go on to the handler.
 */
export type RouteGuard = (ctx: RouteContext, route: RouteEntry) => Promise<boolean> | boolean;

/** A registered route, as the OpenAPI document lists it. */
export interface RouteEntry {
  method: string;
  /** The pattern as registered, e.g. `/api/events/:id`. */
  path: string;
}

interface Route {
  path: string;
  pattern: RegExp;
  keys: string[];
  methods: Map<string, RouteHandler>;
}

/** Path patterns like `/api/events/:id`; a known path with an unknown method is a 405. */
export class Router {
  private readonly table: Route[] = [];
  private readonly guards: RouteGuard[] = [];

  /** Adds a guard run before every matched route (in the order added). */
  guard(g: RouteGuard): () => void {
    this.guards.push(g);
    return () => {
      const i = this.guards.indexOf(g);
      if (i >= 0) this.guards.splice(i, 1);
    };
  }

  on(method: string, path: string, handler: RouteHandler): this {
    let route = this.table.find((r) => r.pattern.source === Router.compile(path).pattern.source);
    if (!route) {
      route = { path, ...Router.compile(path), methods: new Map() };
      this.table.push(route);
    }
    route.methods.set(method.toUpperCase(), handler);
    return this;
  }

  /** Every (method, path) registered, in registration order. */
  routes(): RouteEntry[] {
    const out: RouteEntry[] = [];
    for (const route of this.table) for (const method of route.methods.keys()) out.push({ method, path: route.path });
    return out;
  }

  match(method: string, pathname: string): { handler: RouteHandler; params: Record<string, string> } {
    for (const route of this.table) {
      const m = route.pattern.exec(pathname);
      if (!m) continue;
      const handler = route.methods.get(method.toUpperCase());
      if (!handler) throw new MethodNotAllowedError([...route.methods.keys()]);
      const params: Record<string, string> = {};
      route.keys.forEach((k, i) => {
        params[k] = decodeURIComponent(m[i + 1]);
      });
      if (this.guards.length === 0) return { handler, params };
      const entry: RouteEntry = { method: method.toUpperCase(), path: route.path };
      const guards = [...this.guards];
      const guarded: RouteHandler = async (ctx) => {
        for (const g of guards) if (await g(ctx, entry)) return;
        await handler(ctx);
      };
      return { handler: guarded, params };
    }
    throw new NotFoundError(`no route for ${pathname}`);
  }

  private static compile(path: string): { pattern: RegExp; keys: string[] } {
    const keys: string[] = [];
    const source = path
      .split('/')
      .map((seg) => {
        if (seg.startsWith(':')) {
          keys.push(seg.slice(1));
          return '([^/]+)';
        }
        return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      })
      .join('/');
    return { pattern: new RegExp(`^${source}/?$`), keys };
  }
}
