/**
 * `npm run docs:api`: writes docs/api.md from the OpenAPI documents the nodes serve (see
 * packages/cli/src/ApiDocs.ts). `-- --check` writes nothing and exits 1 when the file is stale.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderApiDocs } from '../packages/cli/src/ApiDocs.ts';

const file = fileURLToPath(new URL('../docs/api.md', import.meta.url));
const fresh = renderApiDocs();
if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(file, 'utf8');
  } catch {}
  if (current !== fresh) {
    process.stderr.write('docs/api.md is out of date: run npm run docs:api\n');
    process.exitCode = 1;
  }
} else {
  writeFileSync(file, fresh);
  process.stdout.write(`wrote ${file}\n`);
}
