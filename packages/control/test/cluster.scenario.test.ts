import { InProcessBus, NatsBus } from '../src/index.js';
import { clusterScenarios } from './clusterScenarios.js';

/** The shared development server; every run uses its own random cluster name and deletes its buckets. */
const sharedNats = process.env.MCU_TEST_NATS ?? 'nats://127.0.0.1:4222';

clusterScenarios('InProcessBus', async () => new InProcessBus(), true);
clusterScenarios('NatsBus', () => NatsBus.connect({ servers: sharedNats, name: 'mcu-control-cluster-test' }), false);
