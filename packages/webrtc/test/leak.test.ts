import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { McuNode } from '@mcu/server';
import { LOOPBACK, WebRtcClient } from './client.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const ADMIN = 'webrtc-leak-admin-token-0123456789';
let node: McuNode;

beforeAll(async () => {
  node = new McuNode({ port: 0, adminToken: ADMIN, iceAllow: LOOPBACK.iceAllow, iceHostAddresses: LOOPBACK.additionalHostAddresses });
  await node.listen();
});
afterAll(async () => {
  await node.close();
});

function handles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 100));
    gc();
  }
}

it('50 publish/unpublish cycles leave no sockets, timers or memory behind', async () => {
  const res = await fetch(`${node.url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
  const ev = (await res.json()) as { whip: string; tokens: { presenter: string } };
  const cycle = async () => {
    const c = await WebRtcClient.connect('whip', ev.whip, ev.tokens.presenter);
    await c.connected();
    for (let i = 0; i < 5; i++) c.sendTone(440);
    expect(await c.hangUp()).toBe(200);
  };
  // Warm up (module caches, pools), then take the baseline.
  for (let i = 0; i < 5; i++) await cycle();
  await settle();
  const before = handles();
  const heapBefore = process.memoryUsage().heapUsed;
  for (let i = 0; i < 50; i++) await cycle();
  // werift's DTLS flight retransmission waits are bounded (at most ~30 s) and keep a timer each
  // until they run out; wait for them to drain instead of counting them as leaks.
  const grown = () => Object.entries(handles()).some(([type, n]) => n > (before[type] ?? 0) + 2);
  const drainStart = Date.now();
  while (grown() && Date.now() - drainStart < 40_000) await new Promise((r) => setTimeout(r, 250));
  console.log(`handles drained in ${Date.now() - drainStart} ms`);
  await settle();
  const after = handles();
  const heapAfter = process.memoryUsage().heapUsed;
  expect(node.edge.size).toBe(0);
  // Sockets (UDPWRAP), timers and DTLS state are all gone: no handle type grew.
  for (const [type, n] of Object.entries(after)) expect(n, `${type} handles`).toBeLessThanOrEqual((before[type] ?? 0) + 2);
  // Memory back near the baseline (50 sessions kept alive would be tens of MB).
  expect(heapAfter - heapBefore).toBeLessThan(15 * 1024 * 1024);
}, 120_000);
