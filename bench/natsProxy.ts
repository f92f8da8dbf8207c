/**
 * bench:failover's NATS proxy in a process of its own (the bench process is busy with its viewers,
 * and a proxy starved there would make its mixer look dead): prints `port <n>`, then obeys lines on
 * stdin: `blackhole` (a silent partition), `heal`. Args: <nats host> <nats port>.
 */
import { createInterface } from 'node:readline';
import { TcpProxy } from '../packages/cluster/test/tcpProxy.js';

const [host, port] = process.argv.slice(2);
const proxy = await TcpProxy.start({ host, port: Number(port) });
process.stdout.write(`port ${proxy.port}\n`);
for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'blackhole') proxy.blackhole();
  else if (line === 'heal') proxy.heal();
  process.stdout.write(`ok ${line}\n`);
}
await proxy.close();
process.exit(0);
