/**
 * Where a restream goes: an RTMP(S) ingest URL `rtmp[s]://host[:port]/app[/…]/streamKey`, as
 * YouTube, Twitch and every RTMP server hand them out. The last path segment (and any query) is
 * the stream key: a secret that lets anyone publish on the producer's channel. It is kept in this
 * object only; everything shown or logged uses `masked`, and `scrubSecrets` takes it (and any
 * other RTMP URL) out of a line of ffmpeg's stderr before the line is kept.
 */
import { z } from 'zod';
import { ValidationError } from '@mcu/control';

export interface RestreamTarget {
  /** The full URL, key included: handed to ffmpeg and to nothing else. */
  readonly url: string;
  readonly protocol: 'rtmp' | 'rtmps';
  readonly host: string;
  readonly port: number;
  /** The RTMP application: the path before the stream key (`live2`, `app/instance`). */
  readonly app: string;
  /** The stream key, query included. Never shown. */
  readonly key: string;
  /** `rtmp://host/app/••••wxyz`: safe to show and log. */
  readonly masked: string;
  /** The path before the key as written (not decoded): what ffmpeg is given before the placeholder. */
  readonly rawAppPath: string;
  /** The key as ffmpeg sends it as the stream name: the last path segment as written, query included. */
  readonly wireKey: string;
  /** The tcUrl ffmpeg would send for this URL (`rtmp://host:port/app`): no key in it. */
  readonly tcUrl: string;
}

/** Longest stream key accepted (bytes): every RTMP command naming it stays inside one chunk (see RtmpKeyProxy). */
export const MAX_KEY_BYTES = 1024;

/** Longest URL accepted: stream keys are tens of characters; anything near this is not a key. */
const MAX_URL_LENGTH = 2048;

/** The body of POST /api/events/:id/restreams. The URL is checked in depth by `parseRestreamUrl`. */
export const restreamBody = z.object({ url: z.string().min(1).max(MAX_URL_LENGTH) }).strict();
export type RestreamBody = z.infer<typeof restreamBody>;

/** The key hidden: its last four characters when it is long enough for them to give nothing away. */
export function maskKey(key: string): string {
  return key.length >= 16 ? `••••${key.slice(-4)}` : '••••';
}

/** Parses and checks an ingest URL; a ValidationError (400) says what is wrong without echoing the key. */
export function parseRestreamUrl(input: string): RestreamTarget {
  const fail = (why: string): never => {
    throw new ValidationError(`url: ${why} (expected rtmp://host/app/streamKey or rtmps://…)`, 'url', 'invalid_restream_url');
  };
  if (/[\s\u0000-\u001f\u007f]/.test(input)) fail('contains whitespace or control characters');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(input)?.[1]?.toLowerCase();
  if (scheme !== 'rtmp' && scheme !== 'rtmps') fail(scheme ? `scheme ${scheme}:// is not rtmp:// or rtmps://` : 'not a URL');
  let u: URL;
  try {
    u = new URL(input);
  } catch {
    return fail('not a valid URL');
  }
  if (u.username || u.password) fail('credentials in the URL are not supported: put the stream key in the path');
  const host = u.hostname;
  if (!host) fail('the host is missing');
  if (u.hash) fail('a #fragment has no meaning in an RTMP URL');
  const segments = u.pathname.split('/').filter((s) => s.length > 0);
  if (segments.length === 0) fail('the application (e.g. /live2/) is missing');
  if (segments.length === 1) fail('the stream key is missing after the application');
  const key = decodeURIComponent(segments[segments.length - 1]) + u.search;
  const app = segments.slice(0, -1).join('/');
  const protocol = scheme as 'rtmp' | 'rtmps';
  const port = u.port ? Number(u.port) : protocol === 'rtmps' ? 443 : 1935;
  const hostPort = u.port ? `${host}:${u.port}` : host;
  // The path as written (ffmpeg does not decode it): the key is what follows the last '/', and a
  // query must come after it, else ffmpeg would put the query in the RTMP app and the tcUrl, which
  // the proxy that keeps the key off ffmpeg's command line (RtmpKeyProxy) does not rewrite.
  const rawPath = input.slice(input.indexOf('/', input.indexOf('://') + 3));
  const lastSlash = rawPath.lastIndexOf('/');
  const qmark = rawPath.indexOf('?');
  if (qmark >= 0 && qmark < lastSlash) fail('a ?query before the stream key would put it in the RTMP application: put any query after the key');
  const rawSegments = rawPath.slice(0, lastSlash).split('/').filter((s) => s.length > 0);
  const wireKey = rawPath.slice(lastSlash + 1);
  if (Buffer.byteLength(wireKey) > MAX_KEY_BYTES) fail(`the stream key is longer than ${MAX_KEY_BYTES} bytes`);
  // ffmpeg rewrites a stream name ending so (strips .flv, prefixes mp4:), which the proxy's byte swap cannot follow.
  if (/\.(flv|mp4|f4v)$/.test(wireKey)) fail('a stream key ending in .flv, .mp4 or .f4v is not supported');
  if (rawPath.startsWith('/ondemand/')) fail('the /ondemand/ application is not supported');
  // ffmpeg's own split (rtmpproto.c): the app is the first segment, or the first two when there are
  // more and the second has no ':' (an application instance); the rest is the stream name.
  const ffApp = rawSegments.length >= 2 && !rawSegments[1].includes(':') ? `${rawSegments[0]}/${rawSegments[1]}` : rawSegments[0];
  const tcUrl = `${protocol}://${host}:${port}/${ffApp}`;
  return { url: input, protocol, host, port, app, key, masked: `${protocol}://${hostPort}/${app}/${maskKey(key)}`, rawAppPath: rawSegments.join('/'), wireKey, tcUrl };
}

const ANY_RTMP_URL = /rtmps?:\/\/[^\s'"]+/gi;

/**
 * A line from ffmpeg (or an error message) with the secrets taken out: the exact key and URL of
 * this target, then any RTMP URL at all (ffmpeg writes the URL it opened in its own spellings,
 * e.g. with the port added), which is reduced to its masked form.
 */
export function scrubSecrets(line: string, target: RestreamTarget): string {
  let out = line.split(target.url).join(target.masked);
  out = out.replace(ANY_RTMP_URL, (m) => {
    try {
      return parseRestreamUrl(m.replace(/[.,;:)\]]+$/, '')).masked;
    } catch {
      return 'rtmp://…';
    }
  });
  if (target.key.length >= 4) out = out.split(target.key).join(maskKey(target.key));
  const bare = target.key.split('?')[0];
  if (bare.length >= 4) out = out.split(bare).join(maskKey(bare));
  return out;
}
