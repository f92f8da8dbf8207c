/**
 * A recording node for the crash test: an event with a grainy, flashing presenter (video and
 * sound), recorded into the JetStream Object Store in 2-minute segments; prints `recording <id>
 * <startedAt>` once recording. The test SIGKILLs it. Args: <nats url> <bucket> <spool dir> <recipient> <event id>.
 */
import { NatsBus } from '@mcu/control';
import { MixerEvent, programTapOf } from '@mcu/mixer';
import { ObjectStoreStore, Recorder } from '../src/index.js';
import { BeepFlashPresenter, flashClip } from './beepFlash.js';

const [natsUrl, bucket, spool, recipient, eventId] = process.argv.slice(2);
const bus = await NatsBus.connect({ servers: natsUrl, name: 'crash-child' });
const event = new MixerEvent({ id: eventId, video: { renditions: [{ id: 'v', width: 320, height: 180, bitrateKbps: 800 }], fps: 30, keyframeIntervalMs: 1000 } });
new BeepFlashPresenter(event, 'p1', flashClip(320, 180)).start();
const recorder = new Recorder({ store: new ObjectStoreStore(await bus.objectStore(bucket), spool), segmentMs: 120_000 });
await new Promise((r) => setTimeout(r, 500));
const rec = await recorder.start(programTapOf(event), { recipients: [recipient], rendition: 'v' });
process.stdout.write(`recording ${rec.id} ${rec.startedAt}\n`);
