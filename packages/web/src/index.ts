import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The pages served by every node: console (/), publisher (/publish/:id), player (/watch/:id). */
const staticDir = fileURLToPath(new URL('../static/', import.meta.url));

const types: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

export interface StaticFile {
  body: Buffer;
  type: string;
}

const cache = new Map<string, StaticFile>();

/** Reads a file of the static folder; null for anything outside it or missing. */
export async function staticFile(name: string): Promise<StaticFile | null> {
  const normalized = path.posix.normalize(name).replace(/^\/+/, '');
  if (normalized.startsWith('..') || normalized.includes('\0')) return null;
  const type = types[path.extname(normalized)];
  if (!type) return null;
  const hit = cache.get(normalized);
  if (hit) return hit;
  try {
    const file = { body: await readFile(path.join(staticDir, normalized)), type };
    cache.set(normalized, file);
    return file;
  } catch {
    return null;
  }
}

/** The page for a path: '/', '/publish/:id', '/watch/:id'. */
export function pageFor(pathname: string): string | null {
  if (pathname === '/' || pathname === '/index.html') return 'index.html';
  if (/^\/publish\/[^/]+\/?$/.test(pathname)) return 'publish.html';
  if (/^\/watch\/[^/]+\/?$/.test(pathname)) return 'watch.html';
  return null;
}
