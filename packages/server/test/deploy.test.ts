/**
 * No container engine runs here, so the deployment files are checked against the code they
 * describe: manifests parse, probes hit real routes, every metric the dashboard queries is one the
 * node exports, and every flag in a container command is one the CLI accepts.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { McuNode } from '../src/index.js';
import { issueCert, makeTestCa } from './tlsFixture.js';

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

interface Container {
  where: string;
  args: string[];
  probes: string[];
  /** The schemes of its HTTP probes (Kubernetes: HTTP unless `scheme: HTTPS`). */
  probeSchemes: string[];
  /** Environment variables with a literal value. */
  env: Record<string, string>;
  /** Where files are mounted into it, and from what (a Secret's name, or a host path). */
  mounts: { path: string; from: string }[];
}

/** Containers with their command arguments, from Kubernetes workloads and compose services. */
function containers(): Container[] {
  const out: Container[] = [];
  for (const { file, doc } of manifests) {
    const volumes = new Map<string, Doc>((doc?.spec?.template?.spec?.volumes ?? []).map((v: Doc) => [v.name, v]));
    for (const c of doc?.spec?.template?.spec?.containers ?? []) {
      if (!String(c.image).startsWith('cascading-mcu')) continue;
      const probeList = [c.readinessProbe, c.livenessProbe].filter(Boolean) as Doc[];
      const env = Object.fromEntries((c.env ?? []).filter((e: Doc) => typeof e.value === 'string').map((e: Doc) => [e.name, e.value]));
      const mounts = (c.volumeMounts ?? []).map((m: Doc) => ({ path: m.mountPath, from: volumes.get(m.name)?.secret ? `secret ${volumes.get(m.name)!.secret.secretName}` : `volume ${m.name}` }));
      out.push({ where: `${file}:${doc.metadata.name}`, args: c.args, probes: probeList.map((p) => p.httpGet.path), probeSchemes: probeList.map((p) => p.httpGet.scheme ?? 'HTTP'), env, mounts });
    }
    for (const [name, svc] of Object.entries<Doc>(doc?.services ?? {})) {
      if (!String(svc.image ?? '').startsWith('cascading-mcu')) continue;
      const mounts = (svc.volumes ?? []).map((v: string) => {
        const [from, path] = v.split(':');
        return { path, from: `host ${from}` };
      });
      out.push({ where: `${file}:${name}`, args: svc.command, probes: [], probeSchemes: [], env: { ...(svc.environment ?? {}) }, mounts });
    }
  }
  return out;
}

/** The certificate and key a container is told to serve HTTPS with, by flag or environment. */
function tlsFiles(c: Container): { cert?: string; key?: string } {
  const flag = (name: string) => (c.args.includes(name) ? c.args[c.args.indexOf(name) + 1] : undefined);
  return { cert: flag('--tls-cert') ?? c.env.MCU_TLS_CERT, key: flag('--tls-key') ?? c.env.MCU_TLS_KEY };
}

/** Whether a request path goes to an Ingress path (pathType Prefix: whole path elements). */
function prefixMatches(prefix: string, p: string): boolean {
  if (prefix === '/') return true;
  const base = prefix.replace(/\/$/, '');
  return p === base || p.startsWith(`${base}/`);
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

  it('an Ingress with TLS in front of the mixer: the API, WHIP/WHEP and the console; the mixer hands out its https URL', () => {
    const ingresses = manifests.filter((m) => m.doc.kind === 'Ingress').map((m) => m.doc);
    expect(ingresses.length).toBe(1);
    const ing = ingresses[0];
    expect(ing.metadata.namespace).toBe('mcu');
    const tlsHosts = (ing.spec.tls ?? []).flatMap((t: Doc) => {
      expect(t.secretName, 'every TLS entry names its certificate Secret').toBeTruthy();
      return t.hosts;
    });
    expect(tlsHosts.length).toBeGreaterThan(0);
    const services = manifests.filter((m) => m.doc.kind === 'Service').map((m) => m.doc);
    for (const rule of ing.spec.rules) {
      expect(tlsHosts, `${rule.host} is served over TLS`).toContain(rule.host);
      for (const p of rule.http.paths) {
        const svc = services.find((s) => s.metadata.name === p.backend.service.name && s.metadata.namespace === ing.metadata.namespace);
        expect(svc, `the Ingress backend ${p.backend.service.name} is a Service`).toBeDefined();
        const port = p.backend.service.port;
        expect(svc!.spec.ports.some((sp: Doc) => sp.name === port.name || sp.port === port.number), `port ${JSON.stringify(port)} of ${svc!.metadata.name}`).toBe(true);
        expect(svc!.spec.selector.app).toBe('mcu-mixer');
      }
      // Every route of the node (API, WHIP, WHEP, console pages, static files) reaches the mixer.
      for (const route of node.router.routes()) {
        const concrete = route.path.replace(/:[a-z]+/g, 'x');
        expect(rule.http.paths.some((p: Doc) => p.pathType === 'Prefix' && prefixMatches(p.path, concrete)), `${route.method} ${route.path} through the Ingress`).toBe(true);
      }
    }
    // The mixer behind it hands out the Ingress's https URL.
    const mixer = containers().find((c) => c.where === 'k8s/mixer.yaml:mcu-mixer')!;
    expect(mixer.env.MCU_PUBLIC_URL).toBe(`https://${ing.spec.rules[0].host}`);
  });

  it('every node a browser reaches directly serves HTTPS with a mounted certificate; every public URL is https', () => {
    const list = containers();
    for (const c of list) {
      const url = c.env.MCU_PUBLIC_URL;
      expect(url, `${c.where}: MCU_PUBLIC_URL`).toMatch(/^https:\/\//);
      if (c.where === 'k8s/mixer.yaml:mcu-mixer') continue; // behind the Ingress
      const { cert, key } = tlsFiles(c);
      expect(cert, `${c.where}: a certificate`).toBeDefined();
      expect(key, `${c.where}: a key`).toBeDefined();
      for (const file of [cert!, key!]) {
        const mount = c.mounts.find((m) => file.startsWith(`${m.path.replace(/\/$/, '')}/`));
        expect(mount, `${c.where}: ${file} is in a mounted volume`).toBeDefined();
        if (c.where.startsWith('k8s/')) expect(mount!.from, `${c.where}: ${file} comes from a Secret`).toMatch(/^secret /);
      }
      // Kubernetes probes speak the scheme the node serves.
      for (const scheme of c.probeSchemes) expect(scheme, `${c.where}: probe scheme`).toBe('HTTPS');
      // The port it listens on is the port of its public URL.
      const port = c.args.includes('--port') ? c.args[c.args.indexOf('--port') + 1] : c.env.MCU_PORT;
      expect(new URL(url.replace(/\$\([A-Z_]+\)|\$\{[^}]+\}/g, 'host')).port, `${c.where}: port of ${url}`).toBe(port);
    }
    expect(list.filter((c) => tlsFiles(c).cert).map((c) => c.where).sort()).toEqual(['docker-compose.yml:mixer', 'docker-compose.yml:relay-1', 'docker-compose.yml:relay-2', 'k8s/relay.yaml:mcu-relay']);
  });

  it("the image's HEALTHCHECK checks the node on its own port and scheme (HTTPS with MCU_TLS_CERT, else HTTP)", async () => {
    const dockerfile = readFileSync(path.join(deploy, 'Dockerfile'), 'utf8');
    const script = /^HEALTHCHECK .* CMD node -e "(.*)"$/m.exec(dockerfile)?.[1];
    expect(script).toBeDefined();
    const ca = makeTestCa();
    const cert = issueCert(ca, 'health');
    const tlsNode = new McuNode({ port: 0, tlsCert: cert.certFile, tlsKey: cert.keyFile });
    try {
      const tlsPort = new URL((await tlsNode.listen()).url).port;
      const plainPort = new URL(node.url).port;
      const check = (env: Record<string, string>) =>
        new Promise<number | null>((resolve) => {
          const child = spawn(process.execPath, ['-e', script!], { env: { PATH: process.env.PATH, ...env }, stdio: 'ignore' });
          child.on('exit', (code) => resolve(code));
        });
      expect(await check({ MCU_PORT: tlsPort, MCU_TLS_CERT: '/etc/mcu/tls/cert.pem' })).toBe(0);
      expect(await check({ MCU_PORT: plainPort })).toBe(0);
      // And it can fail: the wrong scheme for the port.
      expect(await check({ MCU_PORT: tlsPort })).toBe(1);
    } finally {
      await tlsNode.close();
      ca.remove();
    }
  });

  it('every MCU_ variable the deployment files set is one the CLI reads', () => {
    const help = execFileSync(process.execPath, [mcu, 'relay', '--help'], { encoding: 'utf8' });
    const names = new Set(containers().flatMap((c) => Object.keys(c.env)).filter((n) => n.startsWith('MCU_')));
    expect(names.has('MCU_TLS_CERT')).toBe(true);
    for (const n of names) expect(help, n).toContain(n);
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
