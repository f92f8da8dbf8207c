/**
 * A mixer process for the failover tests: an McuNode and its MixerRole on the given NATS, printing
 * `ready <nodeId> <url>`; the test SIGKILLs it. Args: <nats url> <cluster> <node id> <secret> <admin token> [recordings dir].
 */
import { NatsBus } from '@mcu/control';
import { McuNode } from '@mcu/server';
import { MixerRole } from '../src/index.js';

const [natsUrl, cluster, nodeId, secret, adminToken, recordingsDir] = process.argv.slice(2);
const bus = await NatsBus.connect({ servers: natsUrl, name: nodeId, reconnectTimeWaitMs: 100 });
// WebRTC on loopback only (browser tests publish to it).
const node = new McuNode({ port: 0, adminToken, tokenSecret: secret, iceAllow: ['127.0.0.0/8'], iceHostAddresses: ['127.0.0.1'], ...(recordingsDir ? { recordingsDir } : {}) });
await node.listen();
await MixerRole.start({ node, bus, cluster, nodeId, tokenSecret: secret, relayFanOut: 4 });
process.stdout.write(`ready ${nodeId} ${node.url}\n`);
