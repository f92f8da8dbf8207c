import { InProcessBus, NatsBus } from '../src/index.js';
import { busContract } from './busContract.js';

/** The shared development server; every run namespaces its subjects and buckets. */
const sharedNats = process.env.MCU_TEST_NATS ?? 'nats://127.0.0.1:4222';

busContract('InProcessBus', async () => new InProcessBus());
busContract('NatsBus', () => NatsBus.connect({ servers: sharedNats, name: 'mcu-control-contract-test' }));
