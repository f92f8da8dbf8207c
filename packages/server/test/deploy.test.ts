/**
 * No container engine runs here, so the deployment files are checked against the code they
 * describe: manifests parse, probes hit real routes, every metric the dashboard queries is one the
 * node exports, and every flag in a container command is one the CLI accepts.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { McuNode } from '../src/index.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const deploy = path.join(root, 'deploy');
const mcu = path.join(root, 'packages/cli/bin/mcu.js');

type Doc = Record<string, any>;
const manifests: { file: string; doc: Doc }[] = [];
for (const file of [...readdirSync(path.join(deploy, 'k8s')).map((f) => `k8s/${f}`), 'docker-compose.yml']) {
  for (const d of parseAllDocuments(readFileSync(path.join(deploy, file), 'utf8'))) {
    expect(d.errors, `${file} parses`).toEqual([]);
    manifests.push({ file, doc: d.toJS() });
  }
}

/** Containers with their command arguments, from Kubernetes workloads and compose services. */
function containers(): { where: string; args: string[]; probes: string[] }[] {
  const out: { where: string; args: string[]; probes: string[] }[] = [];
  for (const { file, doc } of manifests) {
    for (const c of doc?.spec?.template?.spec?.containers ?? []) {
      if (!String(c.image).startsWith('cascading-mcu')) continue;
      const probes = [c.readinessProbe, c.livenessProbe].filter(Boolean).map((p: Doc) => p.httpGet.path);
      out.push({ where: `${file}:${doc.metadata.name}`, args: c.args, probes });
    }
    for (const [name, svc] of Object.entries<Doc>(doc?.services ?? {})) {
      if (String(svc.image ?? '').startsWith('cascading-mcu')) out.push({ where: `${file}:${name}`, args: svc.command, probes: [] });
    }
  }
  return out;
}

let node: McuNode;
beforeAll(async () => {
  node = new McuNode({ port: 0, adminToken: 'deploy-test-admin-token-0123' });
  await node.listen();
});
afterAll(async () => {
  await node.close();
});

describe('deployment files', () => {
  it('Kubernetes workloads have images, ports, probes and resources', () => {
    const workloads = manifests.filter((m) => ['Deployment', 'StatefulSet'].includes(m.doc.kind));
    expect(workloads.map((w) => w.doc.metadata.name).sort()).toEqual(['mcu-mixer', 'mcu-relay', 'nats']);
    for (const { doc } of workloads) {
      for (const c of doc.spec.template.spec.containers) {
        expect(c.image, doc.metadata.name).toMatch(/:/);
        expect(c.readinessProbe, doc.metadata.name).toBeDefined();
        expect(c.livenessProbe, doc.metadata.name).toBeDefined();
        expect(c.resources?.requests?.cpu, doc.metadata.name).toBeDefined();
        expect(c.ports?.length, doc.metadata.name).toBeGreaterThan(0);
      }
    }
    const hpa = manifests.find((m) => m.doc.kind === 'HorizontalPodAutoscaler')!.doc;
    expect(hpa.spec.scaleTargetRef.name).toBe('mcu-relay');
  });

  it('probes point at routes that answer 200', async () => {
    const paths = new Set(containers().flatMap((c) => c.probes));
    expect(paths.size).toBeGreaterThan(0);
    for (const p of paths) expect((await fetch(`${node.url}${p}`)).status, p).toBe(200);
  });

  it('every metric the Grafana dashboard queries is exported by the node', async () => {
    const dash = JSON.parse(readFileSync(path.join(deploy, 'grafana/mcu-dashboard.json'), 'utf8'));
    const exprs: string[] = dash.panels.flatMap((p: Doc) => p.targets.map((t: Doc) => t.expr));
    const used = new Set(exprs.flatMap((e) => e.match(/mcu_[a-z0-9_]+/g) ?? []));
    const exported = await (await fetch(`${node.url}/metrics`)).text();
    for (const m of used) {
      const base = m.replace(/_(bucket|sum|count)$/, '');
      expect(exported, m).toMatch(new RegExp(`^# TYPE ${base} `, 'm'));
    }
  });

  it('every container command uses a subcommand and flags the CLI accepts', () => {
    const list = containers();
    expect(list.length).toBeGreaterThanOrEqual(4);
    const helpOf = new Map<string, string>();
    for (const { where, args } of list) {
      const [sub, ...rest] = args;
      if (!helpOf.has(sub)) helpOf.set(sub, execFileSync(process.execPath, [mcu, sub, '--help'], { encoding: 'utf8' }));
      const help = helpOf.get(sub)!;
      for (const flag of rest.filter((a) => a.startsWith('--'))) expect(help, `${where}: ${sub} ${flag}`).toContain(flag);
    }
  });
});
