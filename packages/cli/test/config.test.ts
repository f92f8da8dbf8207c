import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanEnv, freePort, killAll, listening, run, serve } from './cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'mcu-cli-config-'));
afterAll(async () => {
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});

function file(name: string, text: string): string {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
}

const portOf = (url: string) => Number(new URL(url).port);

describe('configuration: flags > environment > config file', () => {
  it('the node listens on, and reports, the value from the highest source that sets it', async () => {
    const [pFlag, pEnv, pLegacyEnv, pJson] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const json = file('node.json', JSON.stringify({ port: pJson, logLevel: 'debug', maxEvents: 5 }));
    const yaml = file('node.yaml', `# a comment\nport: 1\nlogLevel: trace\n`);
    const [flag, env, legacyEnv, fromJson] = await Promise.all([
      serve(['up', '--config', json, '--port', String(pFlag), '--log-level', 'error'], cleanEnv({ MCU_PORT: String(pEnv), MCU_LOG_LEVEL: 'warn' })),
      serve(['up', '--config', json], cleanEnv({ MCU_PORT: String(pEnv), MCU_LOG_LEVEL: 'warn' })),
      // The older PORT still works; MCU_CONFIG names a YAML file.
      serve(['up'], cleanEnv({ PORT: String(pLegacyEnv), MCU_CONFIG: yaml })),
      serve(['up', '--config', json]),
    ]);
    expect([portOf(flag.info.url), flag.info.logLevel]).toEqual([pFlag, 'error']);
    expect([portOf(env.info.url), env.info.logLevel]).toEqual([pEnv, 'warn']);
    expect([portOf(legacyEnv.info.url), legacyEnv.info.logLevel]).toEqual([pLegacyEnv, 'trace']);
    expect([portOf(fromJson.info.url), fromJson.info.logLevel]).toEqual([pJson, 'debug']);
    for (const p of [pFlag, pEnv, pLegacyEnv, pJson]) expect((await fetch(`http://127.0.0.1:${p}/healthz`)).status).toBe(200);
    // A file-only node setting reaches the node: maxEvents 5 lets the sixth event fail.
    const admin = { authorization: `Bearer ${fromJson.info.adminToken}` };
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await fetch(`${fromJson.info.url}/api/events`, { method: 'POST', headers: admin })).status);
    expect(statuses).toEqual([201, 201, 201, 201, 201, 503]);
    await killAll();
  });
});

describe('configuration: bad values stop the command before anything starts', () => {
  it('names the key, where it came from, the value and what is allowed; exits 2; nothing listens', async () => {
    const [p1, p2, p3, p4, p5] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    const badFile = file('bad.json', JSON.stringify({ port: p3, rtcPorts: [41000, 40000] }));
    const unknownKey = file('unknown.yaml', `port: ${p4}\nprot: 8080\n`);
    const notYaml = file('broken.yaml', `port: ${p5}\nhost: [unclosed\n`);
    const [flag, env, fromFile, unknown, broken, envPort] = await Promise.all([
      run(['up', '--port', String(p1), '--rtc-ports', '5-3']),
      run(['up', '--port', String(p2)], cleanEnv({ MCU_LOG_LEVEL: 'loud' })),
      run(['up', '--config', badFile]),
      run(['up'], cleanEnv({ MCU_CONFIG: unknownKey })),
      run(['up', '--config', notYaml]),
      run(['up'], cleanEnv({ MCU_PORT: 'abc' })),
    ]);
    expect(flag.stderr).toContain('mcu: config "rtcPorts" (from --rtc-ports): "5-3" is not valid: expected a UDP port range like 40000-40999');
    expect(env.stderr).toContain('mcu: config "logLevel" (from MCU_LOG_LEVEL): "loud" is not valid: expected one of trace, debug, info, warn, error, silent');
    expect(fromFile.stderr).toContain(`mcu: config "rtcPorts" (from file ${badFile}): [41000,40000] is not valid`);
    expect(unknown.stderr).toContain(`mcu: config file ${unknownKey}: unknown key "prot"`);
    expect(broken.stderr).toContain(`mcu: config file ${notYaml}: not valid YAML`);
    expect(envPort.stderr).toContain('mcu: config "port" (from MCU_PORT): "abc" is not valid: expected an integer 0–65535');
    for (const r of [flag, env, fromFile, unknown, broken, envPort]) {
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
    }
    for (const p of [p1, p2, p3, p4, p5]) expect(await listening(p)).toBe(false);
  });

  it('a feed-key rotation shorter than 10 s is refused (a rotation announces its key 2 s before use)', async () => {
    const r = await run(['mixer', '--feed-key-rotation-ms', '500', '--nats', 'nats://127.0.0.1:1'], cleanEnv({ MCU_TOKEN_SECRET: 'a-cluster-secret-of-at-least-32-characters' }));
    expect(r.stderr).toContain('mcu: config "feedKeyRotationMs" (from --feed-key-rotation-ms): "500" is not valid: expected milliseconds, 10000–86400000');
    expect(r.code).toBe(2);
  });

  it('a secret is named but never echoed', async () => {
    const r = await run(['up', '--port', '0'], cleanEnv({ MCU_TOKEN_SECRET: 'too-short-secret' }));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('config "tokenSecret" (from MCU_TOKEN_SECRET): (a value of 16 characters) is not valid: expected a secret of at least 32 characters');
    expect(r.stderr).not.toContain('too-short-secret');
  });
});
