/** Child of bench:rtp-load: one mixer event with N plain-RTP participants; reports its own CPU. */
import { readdirSync, readFileSync } from 'node:fs';
import { MixerEvent } from '@mcu/mixer';
import { gcSince, gcSnapshot } from './gc.js';

/** CPU µs of each thread of this process (Linux: the scheduler's own runtime, /proc/self/task/N/schedstat); null elsewhere. */
function threadCpuUs(): Map<number, number> | null {
  try {
    const m = new Map<number, number>();
    for (const t of readdirSync('/proc/self/task')) m.set(+t, +readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ')[0] / 1000);
    return m;
  } catch {
    return null;
  }
}

let event: MixerEvent | null = null;
process.on('message', async (msg: { cmd: string; complexity?: number; native?: boolean; shared?: boolean; sendThread?: boolean; peers?: { port: number }[]; ms?: number }) => {
  if (msg.cmd === 'add') {
    event = new MixerEvent({ id: 'load', maxSpeakers: 3, ...(msg.complexity !== undefined ? { mixer: { encoder: { complexity: msg.complexity } } } : {}), nativeUdp: msg.native, sendThread: msg.sendThread === true, ...(msg.shared ? { rtpPort: 0 } : {}) });
    const infos = [];
    for (const p of msg.peers!) infos.push(await event.addRtpParticipant({ host: '127.0.0.1', port: p.port, payloadType: 111, audioLevelExtId: 1 }));
    process.send!({ cmd: 'added', ports: infos.map((i) => i.port) });
  } else if (msg.cmd === 'measure') {
    const ev = event!;
    ev.mixer.tickStats.reset();
    ev.ioTickStats.reset();
    const sent0 = ev.mixer.stats.packetsOut;
    const threads0 = threadCpuUs();
    const gc0 = gcSnapshot();
    const start = process.cpuUsage();
    const t0 = performance.now();
    const ticks0 = ev.clock.executedTicks;
    const skipped0 = ev.clock.skippedTicks;
    await new Promise((r) => setTimeout(r, msg.ms));
    const d = process.cpuUsage(start);
    const elapsed = performance.now() - t0;
    const threads1 = threadCpuUs();
    // The main thread (its id is the process's) against V8's and libuv's helper threads.
    let mainUs = 0;
    let helpersUs = 0;
    for (const [tid, us] of threads1 ?? []) {
      const d = us - (threads0?.get(tid) ?? 0);
      if (tid === process.pid) mainUs += d;
      else helpersUs += d;
    }
    const s = ev.stats();
    process.send!({
      cmd: 'measured',
      native: ev.nativeRtp,
      cpuPct: ((d.user + d.system) / 1000 / elapsed) * 100,
      mainThreadCpuPct: threads1 ? mainUs / 1000 / elapsed * 100 : null,
      helperThreadsCpuPct: threads1 ? helpersUs / 1000 / elapsed * 100 : null,
      gc: gcSince(gc0),
      ticks: ev.clock.executedTicks - ticks0,
      skipped: ev.clock.skippedTicks - skipped0,
      tickP99: s.tickMs.p99,
      ioTickP99: s.ioTickMs?.p99 ?? null,
      sent: ev.mixer.stats.packetsOut - sent0,
      speakers: s.speakers.length,
      // What the speakers' mix-minus encoders expect (their listeners' reported loss, or the default).
      mixMinusExpectedLossPercent: s.speakers.map((id) => ev.mixer.expectedLossPercent(ev.mixer.participant(id)!)),
      dropped: s.dropped,
    });
  } else if (msg.cmd === 'stop') {
    event!.clock.stop();
    process.send!({ cmd: 'stopped', packetsOut: event!.mixer.stats.packetsOut });
  } else if (msg.cmd === 'close') {
    event?.close();
    process.exit(0);
  }
});
process.send!({ cmd: 'ready' });
