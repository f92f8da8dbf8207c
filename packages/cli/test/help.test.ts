import { afterAll, describe, expect, it } from 'vitest';
import { benches } from '../src/BenchCommand.js';
import { killAll, run } from './cli.js';

afterAll(killAll);

const commands = [
  [],
  ['up'],
  ['mixer'],
  ['relay'],
  ['cluster'],
  ['event'],
  ...['create', 'list', 'show', 'end', 'layout', 'move', 'mute', 'stage', 'kick', 'hands', 'invite'].map((c) => ['event', c]),
  ['restream'],
  ...['start', 'list', 'stop'].map((c) => ['restream', c]),
  ['recording'],
  ...['start', 'stop', 'list', 'download', 'verify'].map((c) => ['recording', c]),
  ['bench'],
  // Every bench the command knows (each branch that adds one adds it there, not in a second list here).
  ...Object.keys(benches).map((b) => ['bench', b]),
];

describe('mcu --help', () => {
  it('every command and subcommand describes itself and shows an example of itself', async () => {
    // Six at a time: thirty Node starts at once outlast run()'s 20 s on a loaded two-core machine.
    const results: Awaited<ReturnType<typeof run>>[] = [];
    for (let i = 0; i < commands.length; i += 6) results.push(...(await Promise.all(commands.slice(i, i + 6).map((c) => run([...c, '--help'])))));
    results.forEach((r, i) => {
      const cmd = ['mcu', ...commands[i]].join(' ');
      expect(r.code, cmd).toBe(0);
      expect(r.stdout, cmd).toMatch(new RegExp(`^Usage: ${cmd} `));
      expect(r.stdout, cmd).toContain('Examples:');
      // An example line runs this very command (after any VAR=value settings).
      expect(r.stdout, cmd).toMatch(new RegExp(`^  \\$ (\\S+=\\S+ )*${commands[i].length > 0 ? cmd : 'mcu up'}\\b`, 'm'));
    });
  }, 90_000);

  it('node commands document the flags other code starts them with, and their environment', async () => {
    const [up, mixer, relay, cluster] = await Promise.all(['up', 'mixer', 'relay', 'cluster'].map((c) => run([c, '--help'])));
    for (const help of [up.stdout, mixer.stdout, relay.stdout, cluster.stdout]) {
      for (const flag of ['--host', '--port', '--public-url', '--public-ip', '--rtc-ports', '--tls-cert', '--tls-key', '--config', '--log-level', '--json']) expect(help).toContain(flag);
      for (const env of ['MCU_PORT', 'MCU_ADMIN_TOKEN', 'MCU_TOKEN_SECRET', 'MCU_LOG_LEVEL', 'MCU_CONFIG', 'MCU_TLS_CERT', 'MCU_TLS_KEY']) expect(help).toContain(env);
    }
    for (const help of [mixer.stdout, relay.stdout, cluster.stdout]) {
      for (const flag of ['--nats', '--cluster', '--node-id', '--creds', '--nats-user', '--nats-pass', '--nats-token', '--nats-tls-ca', '--media-ip']) expect(help).toContain(flag);
    }
    // Nodes that restream say where they may connect.
    for (const help of [up.stdout, mixer.stdout, cluster.stdout]) {
      expect(help).toContain('--restream-allow');
      expect(help).toContain('MCU_RESTREAM_ALLOW');
    }
    expect(relay.stdout).not.toContain('--restream-allow');
    expect(mixer.stdout).toContain('--fan-out');
    expect(cluster.stdout).toContain('--relays');
  });

  it('an unknown command or option is a usage error (exit 2) that names it', async () => {
    const [cmd, opt, arg] = await Promise.all([run(['nope']), run(['up', '--prot', '80']), run(['event', 'layout', 'e1', 'mosaic'])]);
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toContain("unknown command 'nope'");
    expect(opt.code).toBe(2);
    expect(opt.stderr).toContain("unknown option '--prot'");
    expect(arg.code).toBe(2);
    expect(arg.stderr).toMatch(/mosaic.*grid, speaker, presentation, custom/s);
  });
});

describe('mcu bench', () => {
  it('passes its arguments through to the bench script and keeps its exit code', async () => {
    // The script's own parseArgs rejects the flag before any measuring starts.
    const r = await run(['bench', 'mix', '--', '--no-such-bench-flag']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("Unknown option '--no-such-bench-flag'");
  });
});
