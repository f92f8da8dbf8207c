/**
 * A relay process for the shutdown test: joins the cluster, installs `onShutdownSignals` and prints
 * `ready <nodeId> <url>`; its JSON log lines go to stdout. Args: <nats url> <cluster> <node id> <secret>.
 */
import { createLogger, NatsBus } from '@mcu/control';
import { onShutdownSignals, RelayRole } from '../src/index.js';

const [natsUrl, cluster, nodeId, secret] = process.argv.slice(2);
const logger = createLogger({ level: 'info', name: 'relay' });
const bus = await NatsBus.connect({ servers: natsUrl, name: nodeId, log: logger });
const role = await RelayRole.start({ bus, cluster, nodeId, tokenSecret: secret, logger, heartbeatIntervalMs: 200 });
onShutdownSignals(role, role.log, { drainTimeoutMs: 5000, after: () => bus.close() });
process.stdout.write(`ready ${nodeId} ${role.url}\n`);
