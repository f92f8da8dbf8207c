import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NatsBus } from '@mcu/control';
import { MixerEvent, programTapOf } from '@mcu/mixer';
import { ObjectStoreStore, Recorder } from '../src/index.js';
import { BeepFlashPresenter, audioPeaks, flashClip, onsets } from './beepFlash.js';
import { sleep } from '../../mixer/test/videoMedia.js';

/**
 * A recording made on one node into the cluster's JetStream Object Store (NATS on 127.0.0.1:4222)
 * outlives that node: another node, with its own connection and none of the first one's files,
 * lists it and serves its segments, which age opens.
 */
const buses: NatsBus[] = [];
const dirs: string[] = [];
let event: MixerEvent | null = null;
let presenter: BeepFlashPresenter | null = null;
afterAll(async () => {
  presenter?.stop();
  event?.close();
  for (const b of buses) await b.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('recordings in the JetStream Object Store', () => {
  it('are listed and served by another node after the recording node is gone', async () => {
    const bucket = `mcu-recordings-test-${randomBytes(4).toString('hex')}`;
    const dir = mkdtempSync(join(tmpdir(), 'mcu-os-'));
    dirs.push(dir);
    const identity = join(dir, 'key.txt');
    expect(spawnSync('age-keygen', ['-o', identity]).status).toBe(0);
    const recipient = spawnSync('age-keygen', ['-y', identity]).stdout.toString().trim();

    const busA = await NatsBus.connect({ servers: ['nats://127.0.0.1:4222'], name: 'recording-node-a' });
    buses.push(busA);
    const storeA = new ObjectStoreStore(await busA.objectStore(bucket), join(dir, 'spool-a'));
    const recorderA = new Recorder({ store: storeA, segmentMs: 1500 });
    event = new MixerEvent({ id: 'os-event' });
    presenter = new BeepFlashPresenter(event, 'p1', flashClip(160, 90)).start();
    const rec = await recorderA.start(programTapOf(event), { recipients: [recipient], rendition: false });
    await sleep(3500);
    const manifest = await recorderA.stop('os-event', rec.id);
    expect(manifest.segments.length).toBeGreaterThanOrEqual(2);
    await recorderA.close();
    await busA.close();
    // Node A is gone, and its disk with it.
    rmSync(join(dir, 'spool-a'), { recursive: true, force: true });

    const busB = await NatsBus.connect({ servers: ['nats://127.0.0.1:4222'], name: 'recording-node-b' });
    buses.push(busB);
    const os = await busB.objectStore(bucket);
    try {
      const recorderB = new Recorder({ store: new ObjectStoreStore(os, join(dir, 'spool-b')) });
      const list = await recorderB.list('os-event');
      expect(list.map((r) => r.id)).toEqual([rec.id]);
      expect(list[0].state).toBe('stopped');
      const view = await recorderB.get('os-event', rec.id);
      expect(view.segments).toEqual(manifest.segments);
      // Byte-exact: read segment 0 again as a buffer and open it with age.
      const seg0 = await recorderB.segment('os-event', rec.id, 0);
      const chunks: Buffer[] = [];
      for await (const c of seg0.stream) chunks.push(Buffer.from(c as Uint8Array));
      const bytes = Buffer.concat(chunks);
      expect(bytes.length).toBe(manifest.segments[0].size);
      writeFileSync(join(dir, 'seg0.age'), bytes);
      const dec = spawnSync('age', ['-d', '-i', identity, '-o', join(dir, 'seg0.webm'), join(dir, 'seg0.age')]);
      expect(dec.status, dec.stderr.toString()).toBe(0);
      expect(onsets(audioPeaks(join(dir, 'seg0.webm')), -12).length).toBeGreaterThanOrEqual(1);
      await recorderB.close();
    } finally {
      await os.destroy();
    }
  }, 40_000);
});
