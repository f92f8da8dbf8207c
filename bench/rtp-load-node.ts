/** Child of bench:rtp-load: one mixer event with N plain-RTP participants; reports its own CPU. */
import { MixerEvent } from '@mcu/mixer';

let event: MixerEvent | null = null;
process.on('message', async (msg: { cmd: string; native?: boolean; shared?: boolean; sendThread?: boolean; peers?: { port: number }[]; ms?: number }) => {
  if (msg.cmd === 'add') {
    event = new MixerEvent({ id: 'load', maxSpeakers: 3, nativeUdp: msg.native, sendThread: msg.sendThread === true, ...(msg.shared ? { rtpPort: 0 } : {}) });
    const infos = [];
    for (const p of msg.peers!) infos.push(await event.addRtpParticipant({ host: '127.0.0.1', port: p.port, payloadType: 111, audioLevelExtId: 1 }));
    process.send!({ cmd: 'added', ports: infos.map((i) => i.port) });
  } else if (msg.cmd === 'measure') {
    const ev = event!;
    ev.mixer.tickStats.reset();
    ev.ioTickStats.reset();
    const sent0 = ev.mixer.stats.packetsOut;
    const start = process.cpuUsage();
    const t0 = performance.now();
    const ticks0 = ev.clock.executedTicks;
    const skipped0 = ev.clock.skippedTicks;
    await new Promise((r) => setTimeout(r, msg.ms));
    const d = process.cpuUsage(start);
    const elapsed = performance.now() - t0;
    const s = ev.stats();
    process.send!({
      cmd: 'measured',
      native: ev.nativeRtp,
      cpuPct: ((d.user + d.system) / 1000 / elapsed) * 100,
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
