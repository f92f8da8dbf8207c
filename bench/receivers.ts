/**
 * bench:receivers — what it costs a load generator to receive on thousands of UDP sockets: the
 * native UdpReceivers set (one epoll set, recvmmsg per ready socket, kernel arrival times) against
 * Node's dgram sockets (a recvmsg, a Buffer, an address object and a callback per datagram),
 * side by side in one process, over the same sockets' count and the same traffic.
 *
 * Each round sends K datagrams to every socket (one sendmmsg per K, from this process), lets them
 * arrive, and reads them; the CPU of the round minus that of the sends is the receiving's. K is
 * the datagrams a socket holds when it is read: bench:tree's viewers read every 400 ms at 10
 * packets/s, so about four. Medians over rounds; every datagram must arrive (loopback, buffers
 * sized for it), or the round says how many were lost.
 *
 * Usage: npm run bench:receivers -- [--sockets 2500] [--per-socket 1,2,4,8] [--rounds 15] [--json]
 */
import { parseArgs } from 'node:util';
import { nativeUdp, openUdpSocket, socketFd, UdpReceivers } from '@mcu/rtp';

const { values } = parseArgs({
  options: {
    sockets: { type: 'string', default: '2500' },
    'per-socket': { type: 'string', default: '1,2,4,8' },
    rounds: { type: 'string', default: '15' },
    json: { type: 'boolean', default: false },
  },
});
const SOCKETS = Number(values.sockets);
const PER_SOCKET = values['per-socket']!.split(',').map(Number);
const ROUNDS = Number(values.rounds);
if (![SOCKETS, ROUNDS, ...PER_SOCKET].every((n) => Number.isInteger(n) && n > 0)) {
  process.stderr.write('bench:receivers: --sockets, --per-socket and --rounds take positive whole numbers\n');
  process.exit(2);
}
const native = nativeUdp();
if (native === null) {
  process.stderr.write('bench:receivers: the native UDP addon is not built (Linux only; npm install builds it)\n');
  process.exit(2);
}

const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const sender = await openUdpSocket({ host: '127.0.0.1', bufferBytes: 16 << 20 });
const fd = socketFd(sender);
const packet = Buffer.alloc(160);
packet[0] = 0x80;
packet[1] = 111;

interface Row {
  perSocket: number;
  nativeUsPerDatagram: number;
  dgramUsPerDatagram: number;
  ratio: number;
  lost: number;
}

/** µs of CPU per datagram received, median over the rounds, and datagrams lost. */
async function measure(r: UdpReceivers, perSocket: number): Promise<{ us: number; lost: number }> {
  const ips = new Uint32Array(r.size).fill(0x7f00_0001);
  const ports = new Uint32Array(r.ports);
  const perRound: number[] = [];
  let lost = 0;
  let seq = 0;
  r.read(() => undefined);
  const visit = () => undefined;
  for (let round = 0; round < ROUNDS + 1; round++) {
    const start = cpuMs();
    let sendMs = 0;
    for (let k = 0; k < perSocket; k++) {
      packet.writeUInt16BE(seq++ & 0xffff, 2);
      const s0 = cpuMs();
      let sent = 0;
      while (sent < r.size) {
        const n = native!.sendMany(fd, packet, packet.length, ips.subarray(sent), ports.subarray(sent), r.size - sent);
        if (n <= 0) await sleep(1);
        else sent += n;
      }
      sendMs += cpuMs() - s0;
    }
    // Node's sockets read in the event loop while this waits; the native set when read below.
    await sleep(40);
    const got = r.read(visit);
    const spent = cpuMs() - start - sendMs;
    const want = perSocket * r.size;
    lost += Math.max(0, want - got);
    // The first round warms both paths up (JIT, socket buffers).
    if (round > 0) perRound.push((spent * 1000) / want);
  }
  return { us: Number(median(perRound).toFixed(2)), lost };
}

const rows: Row[] = [];
const receivers = { native: await UdpReceivers.open({ count: SOCKETS, bufferBytes: 1 << 18 }), dgram: await UdpReceivers.open({ count: SOCKETS, bufferBytes: 1 << 18, native: false }) };
for (const perSocket of PER_SOCKET) {
  // Alternated, so that the machine's noise falls on both.
  const n1 = await measure(receivers.native, perSocket);
  const d1 = await measure(receivers.dgram, perSocket);
  const n2 = await measure(receivers.native, perSocket);
  const d2 = await measure(receivers.dgram, perSocket);
  const nativeUs = Math.min(n1.us, n2.us);
  const dgramUs = Math.min(d1.us, d2.us);
  rows.push({ perSocket, nativeUsPerDatagram: nativeUs, dgramUsPerDatagram: dgramUs, ratio: Number((dgramUs / nativeUs).toFixed(2)), lost: n1.lost + n2.lost + d1.lost + d2.lost });
}
receivers.native.close();
receivers.dgram.close();
sender.close();

process.stdout.write(`${JSON.stringify({ sockets: SOCKETS, rounds: ROUNDS, rows })}\n`);
if (!values.json) {
  process.stdout.write(
    [
      `| datagrams per socket per read | native µs per datagram | dgram µs per datagram | dgram / native | lost |`,
      `| ---: | ---: | ---: | ---: | ---: |`,
      ...rows.map((r) => `| ${r.perSocket} | ${r.nativeUsPerDatagram} | ${r.dgramUsPerDatagram} | ${r.ratio}× | ${r.lost} |`),
      '',
    ].join('\n'),
  );
}
