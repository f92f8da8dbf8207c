/**
 * The documentation against the code. The rules (docs/contributing.md#documentation says them to writers):
 *
 * 1. Links: every relative link in README.md and docs/*.md resolves to a file of the repository, and
 *    a `#anchor` to a heading of the target page (GitHub's anchors: lower case, punctuation dropped,
 *    spaces to dashes, repeated headings numbered -1, -2) or an `<a id>`. Every page in docs/ is
 *    linked from README.md.
 * 2. The CLI reference is docs/cli.md: its "Commands" table names every `mcu` command and
 *    subcommand with its options (options or option sets from its "Option sets" table), and no
 *    other; its "Configuration keys" table names every key of the config schema
 *    (packages/cli/src/Config.ts) with the flag and environment variables it is read from, and no
 *    other key.
 * 3. Anywhere in README.md and docs/*.md, an `mcu …` command in code (a code block or an inline
 *    code span) names an existing command, and every `--option` it passes before a bare `--` is one
 *    that command takes; an `npm run <script>` in code names a script of package.json; every
 *    `MCU_*` environment variable named is one the code reads.
 * 4. docs/api.md is exactly what `npm run docs:api` renders from the OpenAPI documents.
 */
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { configKeys, keySources } from '../src/Config.js';
import { headingAnchor, renderApiDocs } from '../src/ApiDocs.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const docsDir = path.join(root, 'docs');
const pages = ['README.md', ...readdirSync(docsDir).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const read = (rel: string) => readFileSync(path.join(root, rel), 'utf8');

/** The text outside fenced code blocks, and the code (blocks and inline spans). */
function split(markdown: string): { prose: string; code: string[] } {
  const code: string[] = [];
  const prose = markdown
    .replace(/^(```|~~~)[^\n]*\n([\s\S]*?)^\1[ \t]*$/gm, (_, _f, body: string) => {
      code.push(...body.split('\n'));
      return '';
    })
    .replace(/`([^`\n]+)`/g, (_, span: string) => {
      code.push(span);
      return '``';
    });
  return { prose, code };
}

/** Anchors of a page: its headings' (numbered when repeated) and explicit `<a id|name="…">`. */
function anchorsOf(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  const withoutCode = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[ \t]*$/gm, '');
  for (const m of withoutCode.matchAll(/^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$/gm)) {
    const base = headingAnchor(m[1].replace(/\[([^\]]*)\]\([^)]*\)/g, '$1'));
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  for (const m of markdown.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) out.add(m[1]);
  return out;
}

/** Relative link targets of a page (inline links and images; code excluded). */
function linksOf(markdown: string): string[] {
  const { prose } = split(markdown);
  const out: string[] = [];
  for (const m of prose.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push(m[1]);
  for (const m of prose.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)) out.push(m[1]);
  for (const m of prose.matchAll(/<(?:img|a)\s[^>]*(?:src|href)="([^"]+)"/g)) out.push(m[1]);
  return out.filter((l) => !/^[a-z][a-z0-9+.-]*:/i.test(l));
}

// ---- the CLI: the real commander program of packages/cli/src/main.ts ----

interface CliCommand {
  options: Set<string>;
  subcommands: string[];
}

const cli = new Map<string, CliCommand>();

function walk(cmd: Command, name: string): void {
  cli.set(name, {
    options: new Set(cmd.options.map((o) => o.long).filter((l): l is string => l !== undefined && l !== '--help')),
    subcommands: cmd.commands.map((c) => c.name()),
  });
  for (const c of cmd.commands) walk(c, name ? `${name} ${c.name()}` : c.name());
}

beforeAll(async () => {
  // main.ts builds the program and parses process.argv at once: take the program instead of
  // parsing, so that the test sees every command and option exactly as commander holds them.
  let program: Command | undefined;
  const parse = vi.spyOn(Command.prototype, 'parseAsync').mockImplementation(async function (this: Command) {
    program = this;
    return this;
  });
  try {
    await import('../src/main.js');
  } finally {
    parse.mockRestore();
  }
  walk(program!, '');
});

// ---- docs/cli.md ----

/** The rows of the first table under the heading `title` (cells trimmed, header and rule dropped). */
function tableUnder(markdown: string, title: string): string[][] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => new RegExp(`^#{1,6}\\s+${title}\\s*$`).test(l));
  if (start < 0) throw new Error(`docs/cli.md has no "${title}" heading`);
  const rows: string[][] = [];
  let i = start + 1;
  while (i < lines.length && !lines[i].startsWith('|')) i++;
  for (; i < lines.length && lines[i].startsWith('|'); i++) {
    const cells = lines[i]
      .replace(/^\||\|$/g, '')
      .split(/(?<!\\)\|/)
      .map((c) => c.trim());
    rows.push(cells);
  }
  return rows.slice(2);
}

const codeSpans = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
const envVars = (cell: string) => codeSpans(cell).filter((s) => /^[A-Z][A-Z0-9_]*$/.test(s));

/** The words of `mcu a b <x> [y] --z`: the command path a b. */
function commandPath(invocation: string): string {
  const words = invocation.replace(/^mcu\s*/, '').split(/\s+/).filter(Boolean);
  const out: string[] = [];
  for (const w of words) {
    if (!/^[a-z][\w-]*$/.test(w)) break;
    out.push(w);
  }
  return out.join(' ');
}

describe('docs', () => {
  it('every relative link resolves to a file, and every #anchor to a heading of its page; every docs page is linked from the README', () => {
    const broken: string[] = [];
    for (const page of pages) {
      const dir = path.dirname(path.join(root, page));
      for (const link of linksOf(read(page))) {
        const [target, anchor] = link.split('#') as [string, string | undefined];
        const file = target === '' ? path.join(root, page) : path.resolve(dir, decodeURIComponent(target));
        if (!file.startsWith(root) || !existsSync(file)) {
          broken.push(`${page}: ${link} (no such file)`);
          continue;
        }
        if (anchor !== undefined && statSync(file).isFile() && file.endsWith('.md') && !anchorsOf(readFileSync(file, 'utf8')).has(anchor)) {
          broken.push(`${page}: ${link} (no heading #${anchor} in ${path.relative(root, file)})`);
        }
      }
    }
    expect(broken).toEqual([]);
    const fromReadme = new Set(linksOf(read('README.md')).map((l) => path.normalize(l.split('#')[0])));
    expect(pages.filter((p) => p.startsWith('docs/') && !fromReadme.has(p)), 'docs pages not linked from README.md').toEqual([]);
  });

  it('docs/cli.md lists every mcu command with exactly its options, and nothing the CLI does not have', () => {
    const md = read('docs/cli.md');
    const sets = new Map(tableUnder(md, 'Option sets').map(([name, options]) => [name.replace(/\*/g, '').trim(), codeSpans(options)]));
    const documented = new Map<string, Set<string>>();
    for (const [command, options] of tableUnder(md, 'Commands')) {
      const [invocation] = codeSpans(command);
      expect(invocation, `a Commands row names its command in code: ${command}`).toMatch(/^mcu\b/);
      const flags = new Set(codeSpans(options).filter((o) => o.startsWith('--')));
      for (const m of options.matchAll(/\*([^*]+)\*/g)) {
        const set = sets.get(m[1].trim());
        expect(set, `option set "${m[1]}" (used by ${invocation}) is in the Option sets table`).toBeDefined();
        for (const o of set!) flags.add(o);
      }
      documented.set(commandPath(invocation), flags);
    }
    expect([...documented.keys()].sort()).toEqual([...cli.keys()].sort());
    for (const [name, c] of cli) expect([...documented.get(name)!].sort(), `options of mcu ${name}`).toEqual([...c.options].sort());
  });

  it('docs/cli.md lists every config key with its flag and environment variables, and no other key', () => {
    const rows = tableUnder(read('docs/cli.md'), 'Configuration keys');
    const keys = rows.map(([key]) => codeSpans(key)[0]);
    expect([...keys].sort()).toEqual([...configKeys].sort());
    for (const [keyCell, flagCell, envCell] of rows) {
      const key = codeSpans(keyCell)[0] as keyof typeof keySources;
      const source = keySources[key] as { flag?: string; env: string[] } | undefined;
      expect(codeSpans(flagCell).filter((f) => f.startsWith('--')), `flag of ${key}`).toEqual(source?.flag ? [source.flag] : []);
      expect(envVars(envCell), `environment of ${key}`).toEqual(source?.env ?? []);
    }
  });

  it('every mcu command written in the docs exists with the options it passes, every npm run script exists, and every MCU_ variable named is read by the code', () => {
    const bad: string[] = [];
    const vars = new Set<string>();
    for (const page of pages) {
      const text = read(page);
      for (const m of text.matchAll(/\bMCU_[A-Z0-9_]+\b/g)) vars.add(m[0]);
      for (const line of split(text).code) {
        for (const m of line.matchAll(/(?:^|[\s($])(?:npx )?mcu(?=\s|$)([^|;&#`)]*)/g)) {
          const words = m[1].trim().split(/\s+/).filter(Boolean);
          let name = '';
          let i = 0;
          for (; i < words.length; i++) {
            const sub = cli.get(name)!.subcommands;
            const w = words[i];
            if (sub.includes(w)) name = name ? `${name} ${w}` : w;
            else if (sub.length > 0 && /^[a-z][a-z-]*$/.test(w)) {
              bad.push(`${page}: "mcu ${m[1].trim()}": no command "${w}" in mcu ${name}`.replace('mcu  ', 'mcu '));
              i = words.length;
            } else break;
          }
          for (; i < words.length && words[i] !== '--'; i++) {
            const flag = words[i].split('=')[0];
            if (flag.startsWith('--') && flag !== '--help' && !cli.get(name)!.options.has(flag)) bad.push(`${page}: "mcu ${m[1].trim()}": mcu ${name} has no option ${flag}`);
          }
        }
      }
    }
    // `npm run <script>` names a script of the root package.json (`bench:<name>` is a placeholder).
    const scripts = Object.keys((JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts);
    for (const page of pages) {
      for (const line of split(read(page)).code) {
        for (const m of line.matchAll(/\bnpm run (?:-s )?([\w:-]+)(<?)/g)) if (m[2] === '' && !scripts.includes(m[1])) bad.push(`${page}: "npm run ${m[1]}": no such script in package.json`);
      }
    }
    expect(bad).toEqual([]);
    const code = sourceText();
    expect([...vars].filter((v) => !code.includes(v)), 'MCU_ variables the docs name but no code reads').toEqual([]);
  });

  it('docs/api.md is what npm run docs:api renders from the OpenAPI documents (run it after changing a route)', () => {
    expect(read('docs/api.md'), 'docs/api.md is stale: run npm run docs:api').toBe(renderApiDocs());
  });
});

/** The source text of the packages, benchmarks, scripts and deployment files. */
function sourceText(): string {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.name === 'node_modules' || e.name === 'test' || e.name.startsWith('.')) continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|js|mjs|cjs|json|ya?ml|sh)$|^Dockerfile$/.test(e.name)) out.push(readFileSync(p, 'utf8'));
    }
  };
  for (const d of ['packages', 'bench', 'scripts', 'deploy']) walk(path.join(root, d));
  return out.join('\n');
}
