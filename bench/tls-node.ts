/** Child of bench:tls: one McuNode (HTTPS when given a certificate), reporting its own CPU on request. */
import { createLogger } from '@mcu/control';
import { McuNode } from '@mcu/server';

// The bench's stdout is its JSON line and table: the node logs errors only, to stderr.
const logger = createLogger({ level: 'error', name: 'bench-tls', destination: process.stderr });

let node: McuNode | undefined;
let mark = process.cpuUsage();
process.on('message', async (msg: { cmd: string; tlsCert?: string; tlsKey?: string }) => {
  if (msg.cmd === 'start') {
    await node?.close();
    node = new McuNode({ port: 0, tlsCert: msg.tlsCert, tlsKey: msg.tlsKey, tlsReloadIntervalMs: 0 }, { logger });
    const { url } = await node.listen();
    process.send!({ cmd: 'started', url });
  } else if (msg.cmd === 'mark') {
    mark = process.cpuUsage();
    process.send!({ cmd: 'marked' });
  } else if (msg.cmd === 'cpu') {
    const d = process.cpuUsage(mark);
    process.send!({ cmd: 'cpu', ms: (d.user + d.system) / 1000 });
  } else if (msg.cmd === 'close') {
    await node?.close();
    process.exit(0);
  }
});
process.send!({ cmd: 'ready' });
