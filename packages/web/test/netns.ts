/**
 * A network of the test's own: a network namespace joined to this machine by a veth pair on a
 * /30 of 10.213.0.0/16, so that a node runs at an address that is not loopback without touching
 * the machine's real interfaces. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); a test that uses it
 * fails, not skips, when it is not allowed.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

function ip(args: string[]): string {
  return execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

export class TestNetwork {
  /** The host's end of the veth pair (this side: the browser). */
  readonly hostAddress: string;
  /** The namespace's end (the node's address). */
  readonly nsAddress: string;
  /** The /30 both ends are in, for a node's `iceAllow`. */
  readonly subnet: string;
  readonly #children = new Set<ChildProcess>();
  #closed = false;

  private constructor(
    readonly name: string,
    readonly hostIf: string,
    readonly nsIf: string,
    third: number,
    fourth: number,
  ) {
    this.subnet = `10.213.${third}.${fourth}/30`;
    this.hostAddress = `10.213.${third}.${fourth + 1}`;
    this.nsAddress = `10.213.${third}.${fourth + 2}`;
  }

  /**
   * Creates the namespace, the veth pair and their addresses. The /30 is picked from the process
   * id so that two test processes at once do not share one; a subnet already routed on this
   * machine is refused rather than shadowed.
   */
  static create(label: string): TestNetwork {
    const id = process.pid % 16_384;
    const third = id >> 6;
    const fourth = (id & 63) * 4;
    const tag = `${label.slice(0, 4)}${id.toString(36)}`;
    const net = new TestNetwork(`mcu-${tag}`, `mh${tag}`, `mn${tag}`, third, fourth);
    try {
      const routes = ip(['-4', 'route', 'show', 'to', 'match', net.nsAddress]);
      if (/10\.213\./.test(routes)) throw new Error(`${net.subnet} is already routed on this machine (${routes.trim()}): a leftover of an earlier run? ip netns del ${net.name}`);
      // A leftover of a run that was killed before its cleanup.
      if (ip(['netns', 'list']).split('\n').some((l) => l.split(' ')[0] === net.name)) ip(['netns', 'del', net.name]);
      ip(['netns', 'add', net.name]);
    } catch (err) {
      const e = err as Error & { stderr?: Buffer };
      throw new Error(`cannot create network namespace ${net.name} (this test needs root: ip netns add, veth pairs): ${e.stderr?.toString().trim() || e.message}`);
    }
    try {
      ip(['link', 'add', net.hostIf, 'type', 'veth', 'peer', 'name', net.nsIf, 'netns', net.name]);
      ip(['addr', 'add', `${net.hostAddress}/30`, 'dev', net.hostIf]);
      ip(['link', 'set', net.hostIf, 'up']);
      ip(['-n', net.name, 'addr', 'add', `${net.nsAddress}/30`, 'dev', net.nsIf]);
      ip(['-n', net.name, 'link', 'set', net.nsIf, 'up']);
      ip(['-n', net.name, 'link', 'set', 'lo', 'up']);
    } catch (err) {
      net.close();
      const e = err as Error & { stderr?: Buffer };
      throw new Error(`cannot set up the veth pair ${net.hostIf}/${net.nsIf}: ${e.stderr?.toString().trim() || e.message}`);
    }
    return net;
  }

  /** Runs a command inside the namespace (`ip netns exec` execs it: the child is the command itself). */
  spawn(command: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  /** Stops what it started (SIGTERM, SIGKILL after 3 s), then deletes the namespace and with it the veth pair. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(
      [...this.#children].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
    for (const args of [['link', 'del', this.hostIf], ['netns', 'del', this.name]]) {
      try {
        ip(args);
      } catch {
        // already gone (deleting the namespace deletes its end of the pair, and with it both)
      }
    }
  }
}
