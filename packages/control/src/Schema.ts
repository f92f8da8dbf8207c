/**
 * Validation at process boundaries: HTTP bodies, NATS messages, config.
 *
 * One zod schema per message; the TypeScript type is inferred from it. A
 * failure becomes a `ValidationError` whose message names the first bad field
 * and says what was expected, e.g.
 *   `event: maxSpeakers: expected integer between 1 and 16, got "x"`.
 * The expectation is read from the schema (via its JSON Schema form, a public
 * zod API), so `.describe('…')` on a field overrides the generated wording.
 */
import { z } from 'zod';
import { ValidationError } from './Errors.js';

export function parseWith<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const { field, text } = explainIssue(schema, value, issue);
  throw new ValidationError(field ? `${what}: ${field}: ${text}` : `${what}: ${text}`, field || undefined);
}

export function parseJsonBody<T>(text: string, schema: z.ZodType<T>, what = 'body'): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ValidationError(`${what} is not valid JSON`);
  }
  return parseWith(schema, value, what);
}

type PathKey = PropertyKey;

/** `a.b[0].c`; keys that are not identifiers are quoted: `labels["x y"]`. */
export function formatPath(path: readonly PathKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_$][\w$]*$/.test(key)) out += out ? `.${key}` : key;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

function explainIssue(schema: z.ZodType, input: unknown, issue: z.core.$ZodIssue): { field: string; text: string } {
  if (issue.code === 'unrecognized_keys') {
    const field = formatPath([...issue.path, issue.keys[0]]);
    return { field, text: 'unexpected field' };
  }
  const field = formatPath(issue.path);
  if (issue.code === 'custom') return { field, text: issue.message };
  const expected = describeAt(schema, issue.path);
  const got = describeValue(valueAt(input, issue.path));
  if (expected) return { field, text: `expected ${expected}, got ${got}` };
  return { field, text: `${issue.message.replace(/^Invalid input: /, '')}` };
}

function valueAt(value: unknown, path: readonly PathKey[]): unknown {
  let v = value;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  switch (typeof v) {
    case 'string': {
      const s = JSON.stringify(v);
      return s.length > 42 ? `${s.slice(0, 40)}…"` : s;
    }
    case 'number':
    case 'boolean':
      return String(v);
    case 'object':
      return 'object';
    default:
      return typeof v;
  }
}

// ---- expectation from the schema's JSON Schema (input side) ----

interface JsonSchemaNode {
  type?: string | string[];
  description?: string;
  const?: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
  minItems?: number;
  maxItems?: number;
  items?: JsonSchemaNode | false;
  prefixItems?: JsonSchemaNode[];
  properties?: Record<string, JsonSchemaNode>;
  additionalProperties?: JsonSchemaNode | boolean;
  anyOf?: JsonSchemaNode[];
  oneOf?: JsonSchemaNode[];
  allOf?: JsonSchemaNode[];
  $ref?: string;
  $defs?: Record<string, JsonSchemaNode>;
}

function describeAt(schema: z.ZodType, path: readonly PathKey[]): string | undefined {
  let root: JsonSchemaNode;
  try {
    root = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode;
  } catch {
    return undefined;
  }
  let node: JsonSchemaNode | undefined = resolve(root, root);
  for (const key of path) {
    if (!node) return undefined;
    node = child(root, node, key);
  }
  return node ? describeNode(root, node, 0) : undefined;
}

function resolve(root: JsonSchemaNode, node: JsonSchemaNode | undefined): JsonSchemaNode | undefined {
  for (let hops = 0; node?.$ref && hops < 8; hops++) {
    const ref: string = node.$ref;
    if (ref === '#') node = root;
    else if (ref.startsWith('#/$defs/')) node = root.$defs?.[decodeURIComponent(ref.slice(8))];
    else return undefined;
  }
  return node;
}

function child(root: JsonSchemaNode, node: JsonSchemaNode, key: PathKey): JsonSchemaNode | undefined {
  // A nullable or union wrapper: follow the one branch that can hold the key.
  const branches = node.anyOf ?? node.oneOf;
  if (branches) {
    const found = branches.map((b) => resolve(root, b)).filter((b): b is JsonSchemaNode => !!b && !isNullOnly(b));
    return found.length === 1 ? child(root, found[0], key) : undefined;
  }
  if (typeof key === 'number') {
    const next = node.prefixItems?.[key] ?? (node.items === false ? undefined : node.items);
    return resolve(root, next);
  }
  if (typeof key !== 'string') return undefined;
  const prop = node.properties?.[key];
  if (prop) return resolve(root, prop);
  if (typeof node.additionalProperties === 'object') return resolve(root, node.additionalProperties);
  return undefined;
}

function isNullOnly(node: JsonSchemaNode): boolean {
  return node.type === 'null';
}

function describeNode(root: JsonSchemaNode, node: JsonSchemaNode, depth: number): string | undefined {
  if (depth > 4) return undefined;
  if (node.description) return node.description;
  if ('const' in node) return JSON.stringify(node.const);
  if (node.enum) return `one of ${node.enum.map((v) => JSON.stringify(v)).join(', ')}`;
  const branches = node.anyOf ?? node.oneOf;
  if (branches) {
    const parts = branches.map((b) => {
      const r = resolve(root, b);
      return r ? describeNode(root, r, depth + 1) : undefined;
    });
    if (parts.some((p) => p === undefined)) return undefined;
    return [...new Set(parts)].join(' or ');
  }
  if (Array.isArray(node.type)) return node.type.join(' or ');
  switch (node.type) {
    case 'integer':
    case 'number':
      return describeNumber(node);
    case 'string':
      return describeString(node);
    case 'boolean':
      return 'boolean';
    case 'null':
      return 'null';
    case 'object':
      return 'object';
    case 'array':
      return `array${countPhrase(node.minItems, node.maxItems, 'item')}`;
    default:
      return undefined;
  }
}

function describeNumber(node: JsonSchemaNode): string {
  const isInt = node.type === 'integer';
  const noise = (v: number | undefined) => (v === undefined || Math.abs(v) >= Number.MAX_SAFE_INTEGER ? undefined : v);
  let min = noise(node.minimum);
  let max = noise(node.maximum);
  let minOp = '>=';
  let maxOp = '<=';
  const exMin = noise(node.exclusiveMinimum);
  const exMax = noise(node.exclusiveMaximum);
  if (exMin !== undefined && (min === undefined || exMin >= min)) {
    if (isInt && Number.isInteger(exMin)) min = exMin + 1;
    else {
      min = exMin;
      minOp = '>';
    }
  }
  if (exMax !== undefined && (max === undefined || exMax <= max)) {
    if (isInt && Number.isInteger(exMax)) max = exMax - 1;
    else {
      max = exMax;
      maxOp = '<';
    }
  }
  const name = isInt ? 'integer' : 'number';
  if (min !== undefined && max !== undefined && minOp === '>=' && maxOp === '<=') return `${name} between ${min} and ${max}`;
  const parts = [name];
  if (min !== undefined) parts.push(`${minOp} ${min}`);
  if (max !== undefined) parts.push(`${parts.length > 1 ? 'and ' : ''}${maxOp} ${max}`);
  return parts.join(' ');
}

function describeString(node: JsonSchemaNode): string {
  let s = node.format ? `${node.format} string` : 'string';
  if (node.minLength === 1 && node.maxLength === undefined) s = `non-empty ${s}`;
  else s += countPhrase(node.minLength, node.maxLength, 'character');
  if (node.pattern) s += ` matching /${node.pattern}/`;
  return s;
}

function countPhrase(min: number | undefined, max: number | undefined, unit: string): string {
  const plural = (n: number) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (min !== undefined && min > 0 && max !== undefined) return min === max ? ` of exactly ${plural(min)}` : ` of ${min} to ${plural(max)}`;
  if (min !== undefined && min > 0) return ` of at least ${plural(min)}`;
  if (max !== undefined) return ` of at most ${plural(max)}`;
  return '';
}
