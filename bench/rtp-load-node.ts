/** Child of bench:rtp-load: one mixer event with N plain-RTP participants; reports its own CPU. */
import { MixerEvent } from '@mcu/mixer';

const event = new MixerEvent({ id: 'load', maxSpeakers: 3 });
process.on('message', async (msg: { cmd: string; peers?: { port: number }[]; ms?: number }) => {
  if (msg.cmd === 'add') {
    const infos = [];
    for (const p of msg.peers!) infos.push(await event.addRtpParticipant({ host: '127.0.0.1', port: p.port, payloadType: 111, audioLevelExtId: 1 }));
    process.send!({ cmd: 'added', ports: infos.map((i) => i.port) });
  } else if (msg.cmd === 'measure') {
    const start = process.cpuUsage();
    const t0 = performance.now();
    const ticks0 = event.clock.executedTicks;
    await new Promise((r) => setTimeout(r, msg.ms));
    const d = process.cpuUsage(start);
    const s = event.stats();
    process.send!({
      cmd: 'measured',
      cpuPct: ((d.user + d.system) / 1000 / (performance.now() - t0)) * 100,
      ticks: event.clock.executedTicks - ticks0,
      skipped: s.ticks.skipped,
      tickP99: s.tickMs.p99,
      speakers: s.speakers.length,
      dropped: s.dropped,
    });
  } else if (msg.cmd === 'close') {
    event.close();
    process.exit(0);
  }
});
process.send!({ cmd: 'ready' });
