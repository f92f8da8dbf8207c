/**
 * bench:restream — what pushing the program to an RTMP server costs, against encoding the video
 * it copies, in the same run.
 *
 * One event (a presenter: a moving camera clip as VP8 RTP and a 440 Hz tone over plain RTP; the
 * program in one VP8 rendition of the restream's size, as an event has by default) restreams to
 * a local nginx-rtmp (Debian's nginx + libnginx-mod-rtmp, started here on a loopback port). Over
 * `--seconds` of live streaming, from /proc/<pid>/stat:
 *  - restream: the restream's ffmpeg (RTP in, H.264 copied, Opus decoded + AAC encoded, FLV out
 *    over RTMP): the whole cost of one restream when the event already has an H.264 rendition;
 *  - h264-rendition: the H.264 encoder the restream added because the event had none (VP8 only):
 *    what a restream costs on top when it does — and what a restream that re-encoded the program
 *    itself would pay at the least (the baseline: the copy is what we save);
 *  - node: this process (mixer, RTP forwarding to ffmpeg, senders), for scale.
 *
 * Usage: npx tsx bench/restream.ts [--json] [--seconds 20] [--size 1280x720] [--fps 30] [--kbps 2500]
 * (BENCH_LOG=1 prints the restream's log lines: runs, drops, retries.)
 */
import { parseArgs } from 'node:util';
import { processCpuTimeMs, resolveFfmpeg } from '@mcu/codec';
import { MixerEvent } from '@mcu/mixer';
import { Restream, parseRestreamUrl, restreamProgramOf } from '@mcu/server';
import { RtpPeer } from '../packages/mixer/test/peer.js';
import { ClipSender, lavfiClip } from '../packages/mixer/test/videoMedia.js';
import { NginxRtmp } from '../packages/server/test/nginxRtmp.js';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    seconds: { type: 'string', default: '20' },
    size: { type: 'string', default: '1280x720' },
    fps: { type: 'string', default: '30' },
    kbps: { type: 'string', default: '2500' },
  },
});
const SECONDS = Number(values.seconds);
const [W, H] = values.size!.split('x').map(Number);
const FPS = Number(values.fps);
const KBPS = Number(values.kbps);
const ffmpeg = resolveFfmpeg();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const nginx = await NginxRtmp.start();
const event = new MixerEvent({ id: 'bench-restream', video: { renditions: [{ id: 'main', width: W, height: H, fps: FPS, bitrateKbps: 1500 }] } });
const peer = await RtpPeer.open({ freq: 440, audioLevelExtId: 1 });
const info = await event.addRtpParticipant({ host: '127.0.0.1', port: peer.port, payloadType: 111, audioLevelExtId: 1 });
peer.connect(info.host, info.port);
const t0 = performance.now();
let sent = 0;
const audioTimer = setInterval(() => {
  for (const due = Math.floor((performance.now() - t0) / 20); sent < due; sent++) peer.sendFrame();
}, 10);
event.addVideoSource(info.id, 'vp8', 'Presenter');
// A moving picture: the encoder has real work (a still one costs x264 almost nothing).
const clip = new ClipSender(lavfiClip({ source: 'testsrc2=duration=10', width: 640, height: 360, frames: 60, codec: 'vp8', gop: 30 }), (p) => event.pushVideoRtp(info.id, p)).start();
event.videoMixer!.on('keyframeRequest', () => clip.requestKeyframe());

const program = restreamProgramOf(event, { id: 'restream', width: W, height: H, fps: FPS, bitrateKbps: KBPS });
const startedAt = performance.now();
const restream = new Restream({ id: 'bench', event: event.id, target: parseRestreamUrl(nginx.url('bench-key-0123456789')), program, log: process.env.BENCH_LOG ? { info: (f, m) => console.error(m, JSON.stringify(f)), warn: (f, m) => console.error(m, JSON.stringify(f)) } : undefined });
const liveBy = performance.now() + 30_000;
while (restream.state !== 'live' && performance.now() < liveBy) await sleep(100);
const toLiveMs = Math.round(performance.now() - startedAt);
if (restream.state !== 'live') throw new Error(`restream not live after 30 s: ${restream.lastError ?? ''} ${restream.stderrTail().join(' | ')}`);
await sleep(2000); // past the start-up burst

const encoderPid = event.videoMixer!.processIds().encoders.restream!;
const ffmpegPid = restream.pid!;
const before = { restream: processCpuTimeMs(ffmpegPid), encoder: processCpuTimeMs(encoderPid), node: process.cpuUsage(), bytes: restream.bytes, proxyUp: restream.proxy?.counts.up ?? 0, at: performance.now() };
await sleep(SECONDS * 1000);
const wallMs = performance.now() - before.at;
const nodeUsage = process.cpuUsage(before.node);
const restreamCores = (processCpuTimeMs(ffmpegPid) - before.restream) / wallMs;
const encoderCores = (processCpuTimeMs(encoderPid) - before.encoder) / wallMs;
const nodeCores = (nodeUsage.user + nodeUsage.system) / 1000 / wallMs;
const kbps = ((restream.bytes - before.bytes) * 8) / wallMs;
// Bytes the key proxy relayed to nginx over the same interval (what ffmpeg wrote, the key swapped in).
const proxyKbps = (((restream.proxy?.counts.up ?? 0) - before.proxyUp) * 8) / wallMs;
const reconnects = restream.reconnects;
const stillLive = restream.state === 'live';

restream.close();
clearInterval(audioTimer);
clip.stop();
peer.close();
event.close();
await nginx.close();

const common = { bench: 'restream', rendition: `${W}x${H}@${FPS} ${KBPS}k H.264`, seconds: +(wallMs / 1000).toFixed(1), ffmpeg: `${ffmpeg.source} ${ffmpeg.version.split(' ')[2]}` };
const rows = [
  { ...common, measurement: 'restream', cores: +restreamCores.toFixed(4), what: 'ffmpeg: H.264 copied, Opus → AAC 128k, FLV over RTMP', sentKbps: Math.round(kbps), proxyKbps: Math.round(proxyKbps), toLiveMs, reconnects, stillLive },
  { ...common, measurement: 'h264-rendition', cores: +encoderCores.toFixed(4), what: 'the H.264 encoder added for the restream (baseline: encoding the video a copy avoids)' },
  { ...common, measurement: 'node', cores: +nodeCores.toFixed(4), what: 'this process: mixer, 1 presenter, RTP to ffmpeg, the key proxy relaying its RTMP' },
];
const ratio = encoderCores / Math.max(restreamCores, 1e-6);
if (values.json) {
  for (const r of rows) console.log(JSON.stringify(r));
  console.log(JSON.stringify({ ...common, measurement: 'summary', restreamCores: rows[0].cores, encoderCores: rows[1].cores, encodeOverCopy: +ratio.toFixed(1) }));
} else {
  console.log(`bench:restream — ffmpeg: ${ffmpeg.source} (${ffmpeg.path}), ${ffmpeg.version.split(' ').slice(0, 3).join(' ')}; live after ${toLiveMs} ms`);
  const table = rows.map((r) => ({ measurement: r.measurement, cores: r.cores.toFixed(3), what: r.what }));
  const widths = (['measurement', 'cores', 'what'] as const).map((k) => Math.max(k.length, ...table.map((t) => t[k].length)));
  const fmt = (row: Record<string, string>) => (['measurement', 'cores', 'what'] as const).map((k, i) => row[k].padEnd(widths[i])).join('  ');
  console.log(fmt({ measurement: 'measurement', cores: 'cores', what: 'what' }));
  for (const t of table) console.log(fmt(t));
  console.log(`sent ${Math.round(kbps)} kbit/s to the RTMP server; the H.264 encode costs ${ratio.toFixed(1)}× the restream itself`);
  for (const r of rows) console.log(JSON.stringify(r));
}
