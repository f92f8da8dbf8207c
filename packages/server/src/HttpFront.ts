/**
 * The HTTP front of every node (mixer and relay): CORS on every endpoint so that a page on another
 * origin can publish and play (RFC 9725 §4.6), OPTIONS preflight, routing, and the one place where
 * an error becomes a status and a JSON body (never a stack trace).
 */
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { once } from 'node:events';
import { errorBody, errorHeaders, httpStatusOf, McuError, type Logger } from '@mcu/control';
import type { Router, RouteContext } from './Router.js';
import type { ServerCertificate } from './ServerCertificate.js';

/** A node's HTTP front: plain HTTP, or HTTPS when it was given a certificate. */
export type HttpServer = http.Server | https.Server;

export interface HttpFrontTls {
  /** Serve HTTPS with this certificate (renewals picked up as it reloads). */
  certificate: ServerCertificate;
  /** Send Strict-Transport-Security with this max-age (seconds) on every answer; unset: none. */
  hstsMaxAgeSeconds?: number;
}

/**
 * `log`: where 5xx answers are logged, with the error (requests themselves are not logged at info).
 * `tls`: serve HTTPS (else plain HTTP).
 */
export function createHttpServer(router: Router, log?: Logger, tls?: HttpFrontTls): HttpServer {
  let server: HttpServer;
  if (tls) {
    const hsts = tls.hstsMaxAgeSeconds === undefined ? undefined : `max-age=${tls.hstsMaxAgeSeconds}`;
    server = https.createServer(tls.certificate.serverOptions, (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (hsts) res.setHeader('strict-transport-security', hsts);
      void handle(router, req, res, log);
    });
    tls.certificate.attach(server as https.Server);
    // A client that fails the handshake (a browser that does not trust the certificate yet, a
    // scanner) is its own problem, not the node's: debug only.
    server.on('tlsClientError', (err) => log?.debug({ err: err.message }, 'TLS handshake failed'));
  } else {
    server = http.createServer((req, res) => void handle(router, req, res, log));
  }
  server.keepAliveTimeout = 5_000;
  return server;
}

/** The scheme of the URLs a server hands out. */
export function schemeOf(server: HttpServer): 'http' | 'https' {
  return server instanceof https.Server ? 'https' : 'http';
}

export function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Connections the kernel may hold for a node before it accepts them. Node's default is 511: when
 * 1,000 viewers arrive together and the event loop is busy with their handshakes for a moment,
 * the rest overflow the accept queue, the kernel drops their ACKs, and each of those connections
 * waits for a SYN-ACK retransmission (1 s, then 3 s, 7 s …) before its WHEP POST is even read.
 * bench:webrtc saw it as one viewer process answered seconds after the other (1,158 listen
 * overflows over a few runs). Linux caps it at net.core.somaxconn (4,096 on current kernels).
 */
export const LISTEN_BACKLOG = 4096;

export async function listen(server: net.Server, port: number, host: string): Promise<number> {
  server.listen(port, host, LISTEN_BACKLOG);
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([err]) => {
      throw err;
    }),
  ]);
  const addr = server.address();
  return typeof addr === 'object' && addr ? addr.port : port;
}

export async function handle(router: Router, req: IncomingMessage, res: ServerResponse, log?: Logger): Promise<void> {
  res.setHeader('access-control-allow-origin', '*');
  res.setHeader('access-control-expose-headers', 'location, etag, link, accept-post, retry-after, x-mcu-resume-token');
  try {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'OPTIONS') {
      const headers: Record<string, string> = {
        'access-control-allow-methods': 'GET, POST, PUT, PATCH, DELETE, OPTIONS',
        'access-control-allow-headers': 'authorization, content-type, if-match',
        'access-control-max-age': '86400',
      };
      if (/^\/(whip|whep)\/[^/]+\/?$/.test(url.pathname)) headers['accept-post'] = 'application/sdp';
      res.writeHead(204, headers);
      res.end();
      return;
    }
    const { handler, params } = router.match(req.method ?? 'GET', url.pathname);
    const ctx: RouteContext = { req, res, url, params };
    await handler(ctx);
  } catch (err) {
    if (res.headersSent) {
      res.end();
      return;
    }
    const status = httpStatusOf(err);
    if (status >= 500) {
      // The path only: tokens may ride in the query string.
      const fields = { method: req.method, path: (req.url ?? '/').split('?')[0], status, err };
      // A refusal we chose (503 at capacity, draining) is a warning; anything else is a bug.
      if (log && err instanceof McuError) log.warn(fields, 'HTTP request refused');
      else if (log) log.error(fields, 'HTTP request failed');
      else if (!(err instanceof McuError)) process.emitWarning(`unhandled error on ${req.method} ${fields.path}: ${String(err)}`);
    }
    res.writeHead(status, { ...errorHeaders(err), 'content-type': 'application/json' });
    res.end(JSON.stringify(errorBody(err)));
    // Drain what the client still sends so that the connection can be reused.
    req.resume();
  }
}
