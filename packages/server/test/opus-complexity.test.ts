/**
 * `opusComplexity` (node config) reaches the encoders of every event's mixer; the codec's own test
 * shows that the setting changes what libopus codes (packages/codec/test/opus-roundtrip.test.ts).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { McuNode } from '../src/index.js';
import { nodeConfigSchema } from '../src/Config.js';

const ADMIN = 'opus-complexity-admin-token-0123456789';
const nodes: McuNode[] = [];
afterAll(async () => {
  for (const n of nodes) await n.close();
});

async function eventComplexity(config: ConstructorParameters<typeof McuNode>[0]): Promise<number> {
  const node = new McuNode({ port: 0, adminToken: ADMIN, ...config });
  nodes.push(node);
  const { url } = await node.listen();
  const res = await fetch(`${url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
  expect(res.status).toBe(201);
  const { id } = (await res.json()) as { id: string };
  return node.registry.get(id).mixer.mixer.encoderComplexity;
}

describe('opusComplexity', () => {
  it('defaults to 5 and refuses values outside 0–10, naming the key', () => {
    expect(nodeConfigSchema.parse({}).opusComplexity).toBe(5);
    for (const bad of [-1, 11, 2.5, '3']) {
      const r = nodeConfigSchema.safeParse({ opusComplexity: bad });
      expect(r.success, String(bad)).toBe(false);
      expect(r.error!.issues[0].path).toEqual(['opusComplexity']);
    }
  });

  it("sets every event's mixer encoders", async () => {
    expect(await eventComplexity({ opusComplexity: 2 })).toBe(2);
    expect(await eventComplexity({})).toBe(5);
  });
});
