/**
 * docs/api.md, rendered from the OpenAPI documents the nodes serve at `GET /api/openapi.json`: the
 * all-in-one node's (`mcu up`), what a cluster's mixer adds to it, and a relay's. Nothing here is
 * written by hand about a route: a route, parameter, body field or status appears in the page
 * because it is in the document, so the page cannot drift from the code (`npm run docs:api`
 * rewrites it; packages/cli/test/docs.test.ts fails when it differs from a fresh rendering).
 */
import { nodeOperations, openApiDocument, type OperationTable } from '@mcu/server';
import { mixerOperations, relayOperations } from '@mcu/cluster';

type OpenApiDocument = ReturnType<typeof openApiDocument>;
interface Operation {
  summary: string;
  description?: string;
  security: unknown[];
  parameters?: { name: string; in: 'path' | 'query'; required: boolean; description?: string }[];
  requestBody?: { content: Record<string, { schema?: JsonSchema }> };
  responses: Record<string, { description: string; content?: Record<string, unknown>; headers?: Record<string, unknown> }>;
}
interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  maxItems?: number;
  format?: string;
  description?: string;
}

const methodOrder = ['get', 'post', 'put', 'patch', 'delete'];

/** One operation per `METHOD /path`, in the document's path order. */
function operations(doc: OpenApiDocument): [string, Operation][] {
  const out: [string, Operation][] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    const sorted = Object.entries(methods).sort(([a], [b]) => methodOrder.indexOf(a) - methodOrder.indexOf(b));
    for (const [method, op] of sorted) out.push([`${method.toUpperCase()} ${path}`, op as Operation]);
  }
  return out;
}

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes. */
export function headingAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function tokens(op: Operation): string {
  if (op.security.length === 0) return 'none';
  const m = /Tokens: ([^.]*)\./.exec(op.description ?? '');
  return m ? m[1] : 'bearer';
}

function schemaText(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => `\`${String(v)}\``).join(' \\| ');
  const parts: string[] = [];
  if (s.type === 'array' && s.items) {
    const inner = s.items.type === 'object' && s.items.properties ? `{${Object.keys(s.items.properties).join(', ')}}` : schemaText(s.items);
    parts.push(`array of ${inner}`);
    if (s.maxItems !== undefined) parts.push(`at most ${s.maxItems}`);
  } else {
    parts.push(s.format ?? s.type ?? 'any');
  }
  if (s.minimum !== undefined || s.maximum !== undefined) parts.push(`${s.minimum ?? '…'}–${s.maximum ?? '…'}`);
  if (s.minLength !== undefined || s.maxLength !== undefined) parts.push(`${s.minLength ?? 0}–${s.maxLength ?? '…'} characters`);
  return parts.join(', ');
}

function renderOperation(key: string, op: Operation): string[] {
  const lines = [`### \`${key}\``, '', `${op.summary}. Tokens: ${tokens(op)}.`, ''];
  const detail = (op.description ?? '').replace(/\s*Tokens: [^.]*\.$/, '').trim();
  if (detail) lines.push(detail, '');
  const params = op.parameters ?? [];
  if (params.length > 0) {
    lines.push('| parameter | in | required | meaning |', '| --- | --- | --- | --- |');
    for (const p of params) lines.push(`| \`${p.name}\` | ${p.in} | ${p.required ? 'yes' : 'no'} | ${cell(p.description ?? (p.in === 'path' ? 'id' : ''))} |`);
    lines.push('');
  }
  for (const [type, { schema }] of Object.entries(op.requestBody?.content ?? {})) {
    if (!schema?.properties) {
      lines.push(`Body: \`${type}\`${schema?.description ? ` (${schema.description})` : ''}.`, '');
      continue;
    }
    lines.push(`Body: \`${type}\`, unknown fields refused.`, '', '| field | required | type |', '| --- | --- | --- |');
    for (const [name, s] of Object.entries(schema.properties)) lines.push(`| \`${name}\` | ${schema.required?.includes(name) ? 'yes' : 'no'} | ${cell(schemaText(s))} |`);
    lines.push('');
  }
  lines.push('| status | meaning |', '| --- | --- |');
  for (const [status, r] of Object.entries(op.responses)) {
    const headers = r.headers ? ` (headers: ${Object.keys(r.headers).join(', ')})` : '';
    const type = r.content ? Object.keys(r.content)[0] : undefined;
    lines.push(`| ${status} | ${cell(r.description)}${headers}${type && !/^4|^5|default/.test(status) ? `, \`${type}\`` : ''} |`);
  }
  lines.push('');
  return lines;
}

function renderSection(title: string, intro: string, ops: [string, Operation][]): string[] {
  const lines = [`## ${title}`, '', intro, '', '| method and path | tokens | does |', '| --- | --- | --- |'];
  for (const [key, op] of ops) lines.push(`| [\`${key}\`](#${headingAnchor(`\`${key}\``)}) | ${cell(tokens(op))} | ${cell(op.summary)} |`);
  lines.push('');
  for (const [key, op] of ops) lines.push(...renderOperation(key, op));
  return lines;
}

/** The whole of docs/api.md. */
export function renderApiDocs(tables: { node: OperationTable; mixer: OperationTable; relay: OperationTable } = { node: nodeOperations, mixer: mixerOperations, relay: relayOperations }): string {
  const node = openApiDocument(tables.node, { title: 'mcu node' });
  const mixer = openApiDocument({ ...tables.node, ...tables.mixer }, { title: 'mcu mixer' });
  const relay = openApiDocument(tables.relay, { title: 'mcu relay' });
  const nodeOps = operations(node);
  const nodeKeys = new Set(nodeOps.map(([k]) => k));
  const mixerOnly = operations(mixer).filter(([k]) => !nodeKeys.has(k));
  const errorCodes = (node.components.schemas.Error.properties.error.properties.code as { description: string }).description;
  const lines = [
    '# HTTP API',
    '',
    '<!-- Generated by `npm run docs:api` (packages/cli/src/ApiDocs.ts) from the OpenAPI documents the nodes serve. Do not edit: packages/cli/test/docs.test.ts fails when this file differs from a fresh rendering. -->',
    '',
    'Every node serves its API as an OpenAPI 3.1 document at `GET /api/openapi.json` (no token); this page is rendered from those documents.',
    'The routes are declared in one table per role (`nodeOperations` in `packages/server/src/OpenApi.ts`, `mixerOperations` and `relayOperations` in `packages/cluster/src/ClusterApi.ts`), and a test fails when a route the server registers is missing from its table.',
    'Request bodies are JSON Schema generated from the zod schemas the handlers validate with.',
    '',
    '**Tokens.** `Authorization: Bearer <token>`: the admin token (`MCU_ADMIN_TOKEN`) or an event token signed with `MCU_TOKEN_SECRET` for one event and one role (`producer`, `presenter`, `viewer`); see [the security model](security.md). Routes marked with a `token` query parameter also take it as `?token=` (EventSource, and WHEP viewers after a 307 to a relay, since clients drop `Authorization` on a cross-origin redirect).',
    '',
    `**Errors** are JSON \`{"error": {"code", "message", "field"?}}\`: \`code\` is ${errorCodes}; \`field\` names the offending field of a 400. A 503 carries \`Retry-After\`.`,
    '',
    '## Contents',
    '',
    `- [Node (\`mcu up\`, and a cluster's mixer)](#${headingAnchor("Node (`mcu up`, and a cluster's mixer)")})`,
    `- [What a cluster's mixer adds](#${headingAnchor("What a cluster's mixer adds")})`,
    `- [Relay (\`mcu relay\`)](#${headingAnchor('Relay (`mcu relay`)')})`,
    '',
    ...renderSection("Node (`mcu up`, and a cluster's mixer)", 'The all-in-one node serves all of these; a cluster\'s mixer serves the same, and answers `POST /whep/:id` with a 307 to a relay when one has room.', nodeOps),
    ...renderSection("What a cluster's mixer adds", 'Besides the node\'s routes, a mixer places plain-RTP viewers on its relays.', mixerOnly),
    ...renderSection('Relay (`mcu relay`)', 'A relay serves only these: viewers placed on it by the mixer, and its operations endpoints.', operations(relay)),
  ];
  // Headings of the three sections repeat operation keys (e.g. `GET /healthz` on node and relay):
  // each later duplicate heading gets GitHub's "-1" suffix, which the section tables must use.
  return dedupeAnchors(lines).join('\n').replace(/\n{3,}/g, '\n\n').trimEnd() + '\n';
}

/**
 * GitHub numbers repeated headings (`x`, `x-1`, `x-2`): rewrite each section's links to its own
 * operation headings so that the relay's `GET /healthz` link goes to the relay's heading.
 */
function dedupeAnchors(lines: string[]): string[] {
  const seen = new Map<string, number>();
  const out = [...lines];
  // Headings in order, with the anchor each gets.
  const headingAt = new Map<number, string>();
  out.forEach((line, i) => {
    const m = /^#{1,6} (.*)$/.exec(line);
    if (!m) return;
    const base = headingAnchor(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    headingAt.set(i, n === 0 ? base : `${base}-${n}`);
  });
  // A section's table rows come before its operation headings: link each row to the first heading
  // with that base anchor after the row.
  out.forEach((line, i) => {
    const m = /^\| \[`([^`]+)`\]\(#([^)]+)\)/.exec(line);
    if (!m) return;
    for (let j = i + 1; j < out.length; j++) {
      const anchor = headingAt.get(j);
      if (anchor !== undefined && /^### /.test(out[j]) && (anchor === m[2] || new RegExp(`^${m[2]}-\\d+$`).test(anchor))) {
        out[i] = line.replace(`(#${m[2]})`, `(#${anchor})`);
        break;
      }
    }
  });
  return out;
}
