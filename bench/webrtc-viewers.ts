/**
 * Child process of bench:webrtc: N werift WHEP viewers on loopback. Connects them all at once,
 * then counts packets and sequence gaps per viewer, answering the parent's IPC requests.
 *
 * Every SRTP packet is counted (received, sequence gaps) from its header, which SRTP leaves in
 * the clear; one in VERIFY_EVERY is decrypted and authenticated by werift (`verified`, against
 * `sampled`). Decrypting all of them in JavaScript (about 20 µs a packet) for hundreds of viewers
 * would take the cores the node is measured on.
 */
import { RTCPeerConnection } from 'werift';
import { isRtcpPacket } from '@mcu/rtp';
import { addressAllowList, disableDefaultStun, filterCandidates, peerConfig } from '@mcu/webrtc';

const [whep, token, countText, kind] = process.argv.slice(2);
const count = Number(countText);
/** 'video': the viewers receive video only (the 720p phase); else audio. */
const media = kind === 'video' ? 'video' : 'audio';
const loopback = { iceAllow: ['127.0.0.0/8'], additionalHostAddresses: ['127.0.0.1'] };
const allow = addressAllowList(loopback.iceAllow);

interface Viewer {
  pc: RTCPeerConnection;
  connectMs: number;
  received: number;
  lost: number;
  /** Packets handed to werift's decryption, and those that decrypted and authenticated. */
  sampled: number;
  verified: number;
  lastSeq: number;
  location: string | null;
  phases: number[];
}

const viewers: Viewer[] = [];

/** Video viewers decrypt everything: werift's receiver would NACK every packet it did not see. */
const VERIFY_EVERY = media === 'video' ? 1 : Number(process.env.BENCH_VERIFY_EVERY ?? 25);
/**
 * Counts every RTP packet of the viewer from its header where it arrives (the UDP socket of each of
 * its ICE protocols) and hands werift only one in VERIFY_EVERY (and everything that is not RTP:
 * RTCP, STUN consent, DTLS). werift's own path for a packet it is given (ICE, demultiplexing, SRTP
 * in JavaScript) costs the load generator about 10 µs, on the cores the node is measured on.
 */
function countRtp(v: Viewer): void {
  let n = 0;
  const onRtp = (data: Buffer): boolean => {
    // Cumulative loss as RFC 3550 counts it: a packet older than the newest (a retransmission
    // answering a NACK, or reordered) fills a gap instead of opening one.
    const seq = data.readUInt16BE(2);
    const ahead = v.lastSeq < 0 ? 1 : (seq - v.lastSeq) & 0xffff;
    if (ahead > 0 && ahead < 0x8000) {
      if (v.lastSeq >= 0 && ahead < 1000) v.lost += ahead - 1;
      v.lastSeq = seq;
    } else if (v.lost > 0) v.lost--;
    v.received++;
    if (n++ % VERIFY_EVERY !== 0) return false;
    v.sampled++;
    return true;
  };
  type Listener = (msg: Buffer, rinfo: unknown) => void;
  const ice = (v.pc as unknown as { iceTransports: { connection: { protocols: { transport?: { socket?: import('node:dgram').Socket } }[] } }[] }).iceTransports;
  for (const it of ice) {
    for (const p of it.connection.protocols) {
      const socket = p.transport?.socket;
      if (!socket) continue;
      const werift = socket.listeners('message') as Listener[];
      socket.removeAllListeners('message');
      socket.on('message', (msg: Buffer, rinfo: unknown) => {
        // RTP (RFC 7983: first byte 128-191; RTCP packet types 192-223 in the second byte).
        const rtp = msg.length >= 12 && msg[0] >= 128 && msg[0] <= 191 && !isRtcpPacket(msg);
        if (rtp && !onRtp(msg)) return;
        for (const l of werift) l.call(socket, msg, rinfo);
      });
    }
  }
}

/**
 * A viewer that has not connected this long after its answer starts over, as the watch page does
 * (BENCH_STALL_MS). Each retry is a new handshake: on a loaded machine a short stall time makes
 * retries pile up faster than handshakes complete.
 */
const STALL_MS = Number(process.env.BENCH_STALL_MS ?? 8000);
/** Overall bound: a viewer not connected by then is counted as failed, never waited for. */
const GIVE_UP_MS = Number(process.env.BENCH_GIVE_UP_MS ?? 40_000);
/** One attempt's bound, whatever it waits on (the POST, gathering, negotiation): then it starts over. */
const ATTEMPT_MS = STALL_MS + 15_000;
let retries = 0;
/** Why attempts were started over, and how often. */
const retryReasons = new Map<string, number>();

/**
 * One viewer, retrying like a player: werift's client DTLS sometimes stalls for good when 100
 * handshakes share one process (ICE connected, DTLS "connecting", flight 3 retransmitted ten times
 * while the server's flight 4 is never taken), so a stalled attempt is torn down (DELETE) and
 * started again.
 */
async function connect(start: number): Promise<Viewer> {
  let lastError: unknown;
  while (performance.now() - start < GIVE_UP_MS) {
    const held: { pc?: RTCPeerConnection } = {};
    let hung: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        attempt(start, Math.min(STALL_MS, GIVE_UP_MS - (performance.now() - start)), held),
        new Promise<never>((_, reject) => {
          hung = setTimeout(() => reject(new Error(`attempt unfinished after ${ATTEMPT_MS} ms (${held.pc?.connectionState ?? 'no connection'}; signaling ${held.pc?.signalingState ?? '-'})`)), ATTEMPT_MS);
        }),
      ]);
    } catch (err) {
      void held.pc?.close().catch(() => undefined);
      lastError = err;
      retries++;
      const why = String(err instanceof Error ? err.message : err).replace(/\d+ ms/, 'N ms');
      retryReasons.set(why, (retryReasons.get(why) ?? 0) + 1);
    } finally {
      clearTimeout(hung);
    }
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}

async function attempt(start: number, stallMs: number, held: { pc?: RTCPeerConnection }): Promise<Viewer> {
  const pc = new RTCPeerConnection(peerConfig(loopback));
  held.pc = pc;
  const v: Viewer = { pc, connectMs: -1, received: 0, lost: 0, sampled: 0, verified: 0, lastSeq: -1, location: null, phases: [] };
  const t = pc.addTransceiver(media, { direction: 'recvonly' });
  t.onTrack.subscribe((track) => {
    track.onReceiveRtp.subscribe(() => void v.verified++);
  });
  const connected = new Promise<void>((resolve) =>
    pc.connectionStateChange.subscribe((s) => {
      if (s === 'connected') resolve();
    }),
  );
  const offer = await pc.createOffer();
  disableDefaultStun(pc as never);
  await pc.setLocalDescription(offer);
  if (pc.iceGatheringState !== 'complete') {
    await new Promise<void>((resolve) => pc.iceGatheringStateChange.subscribe((s) => s === 'complete' && resolve()));
  }
  v.phases.push(performance.now() - start);
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(whep, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
      body: filterCandidates(pc.localDescription!.sdp, allow),
      signal: AbortSignal.timeout(ATTEMPT_MS),
    });
    if (res.status === 201) {
      v.location = res.headers.get('location');
      v.phases.push(performance.now() - start);
      await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
      break;
    }
    if (res.status !== 503 || attempt > 20) throw new Error(`WHEP answered ${res.status}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      connected,
      new Promise((_, reject) => {
        timer = setTimeout(() => {
          const dtls = (pc as unknown as { dtlsTransports: { state: string; iceTransport: { state: string } }[] }).dtlsTransports.map((d) => `dtls ${d.state}/ice ${d.iceTransport.state}`).join(', ');
          reject(new Error(`not connected ${stallMs} ms after the answer (${pc.connectionState}; ice ${pc.iceConnectionState}; ${dtls})`));
        }, stallMs);
      }),
    ]);
  } catch (err) {
    await pc.close().catch(() => undefined);
    if (v.location) await fetch(new URL(v.location, whep), { method: 'DELETE', headers: { authorization: `Bearer ${token}` } }).catch(() => undefined);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  v.connectMs = performance.now() - start;
  countRtp(v);
  return v;
}

process.on('message', async (msg: { cmd: string }) => {
  if (msg.cmd === 'connect') {
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    const results = await Promise.allSettled(Array.from({ length: count }, () => connect(start)));
    for (const r of results) if (r.status === 'fulfilled') viewers.push(r.value);
    const failures = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
    // Where the time went (ms after all started): offer gathered, WHEP answered, connected.
    const at = (f: (v: Viewer) => number | undefined, p: number) => {
      const xs = viewers.map(f).filter((x): x is number => x !== undefined).sort((a, b) => a - b);
      return xs.length ? xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))].toFixed(0) : '-';
    };
    const phase = (name: string, f: (v: Viewer) => number | undefined) => `${name} p50/p90/max ${at(f, 50)}/${at(f, 90)}/${at(f, 100)}`;
    process.stderr.write(`  child: ${phase('gathered', (v) => v.phases[0])}, ${phase('answered', (v) => v.phases[1])}, ${phase('connected', (v) => v.connectMs)} ms\n`);
    for (const [why, n] of retryReasons) process.stderr.write(`  child: ${n} started over: ${why}\n`);
    const cpu = process.cpuUsage(cpuStart);
    process.send!({ cmd: 'connected', connectMs: viewers.map((v) => v.connectMs), failures: failures.slice(0, 3), failed: failures.length, retries, cpuMs: (cpu.user + cpu.system) / 1000 });
  } else if (msg.cmd === 'reset') {
    for (const v of viewers) {
      v.received = 0;
      v.lost = 0;
      v.sampled = 0;
      v.verified = 0;
    }
    process.send!({ cmd: 'reset' });
  } else if (msg.cmd === 'count') {
    const sum = (f: (v: Viewer) => number) => viewers.reduce((a, v) => a + f(v), 0);
    process.send!({ cmd: 'count', received: viewers.map((v) => v.received), lost: viewers.map((v) => v.lost), sampled: sum((v) => v.sampled), verified: sum((v) => v.verified) });
  } else if (msg.cmd === 'close') {
    await Promise.allSettled(viewers.map((v) => v.pc.close()));
    process.send!({ cmd: 'closed' });
    setTimeout(() => process.exit(0), 100);
  }
});
// The parent is gone (it failed or was stopped): so are its viewers.
process.on('disconnect', () => process.exit(0));
process.send!({ cmd: 'ready' });
