export { McuNode } from './McuNode.js';
export type { McuNodeInfo } from './McuNode.js';
export { nodeConfigSchema } from './Config.js';
export type { NodeConfig, NodeConfigInput } from './Config.js';
export { EventRegistry } from './EventRegistry.js';
export type { EventRecord } from './EventRegistry.js';
export { Router } from './Router.js';
