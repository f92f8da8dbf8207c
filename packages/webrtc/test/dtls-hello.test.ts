/**
 * A DTLS server that answers both copies of the client's first ClientHello (as a stateless server
 * does when its answer takes longer than the client's 500 ms retransmission) sends two
 * HelloVerifyRequests. werift's client failed the handshake on the second; with DtlsHello.ts it
 * drops it and connects. Likewise a resent flight 4 that arrives after flight 5 went out. Real
 * werift peers on loopback; the server's HelloVerifyRequest, or its flight 4, is sent twice.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { RTCPeerConnection, RtpHeader, RtpPacket } from 'werift';
import { dtlsHelloGuardStats, dtlsTimerStats, setDtlsHelloGuard } from '../src/index.js';

afterAll(() => setDtlsHelloGuard(true));

const isHelloVerifyRequest = (d: Buffer) => d.length > 13 && d[0] === 22 && d.readUInt16BE(3) === 0 && d[13] === 3;

/** Offerer (controlling: the DTLS server) and answerer (the DTLS client, as the node is); resolves with what the client's far side decrypted, or the client's DTLS state when it did not connect. */
async function handshakeWithRepeatedHvr(): Promise<{ connected: boolean; received: number; repeated: number; dtlsState: string }> {
  const config = { iceAdditionalHostAddresses: ['127.0.0.1'], iceUseIpv4: true, iceUseIpv6: false };
  const server = new RTCPeerConnection(config);
  const client = new RTCPeerConnection(config);
  let repeated = 0;
  try {
    const sender = server.addTransceiver('audio', { direction: 'sendonly' });
    client.addTransceiver('audio', { direction: 'recvonly' });
    let received = 0;
    client.onTrack.subscribe((track) => track.onReceiveRtp.subscribe(() => void received++));
    await server.setLocalDescription(await server.createOffer());
    // Every HelloVerifyRequest the server sends leaves twice.
    const conn = (server as unknown as { iceTransports: { connection: { send(d: Buffer): Promise<void> } }[] }).iceTransports[0].connection;
    const send = conn.send.bind(conn);
    conn.send = async (d: Buffer) => {
      await send(d);
      if (isHelloVerifyRequest(d)) {
        repeated++;
        await send(d);
      }
    };
    await client.setRemoteDescription(server.localDescription!);
    await client.setLocalDescription(await client.createAnswer());
    await server.setRemoteDescription(client.localDescription!);
    const dtls = () => (client as unknown as { dtlsTransports: { state: string }[] }).dtlsTransports[0]?.state ?? 'none';
    const connected = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 6000);
      client.connectionStateChange.subscribe((s) => {
        if (s === 'connected') (clearTimeout(t), resolve(true));
        if (s === 'failed') (clearTimeout(t), resolve(false));
      });
    });
    for (let i = 0; connected && i < 100 && received < 5; i++) {
      sender.sender.sendRtp(new RtpPacket(new RtpHeader({ payloadType: 111, sequenceNumber: 10 + i, timestamp: i * 960, ssrc: 9 }), Buffer.from('x')));
      await new Promise((r) => setTimeout(r, 20));
    }
    return { connected, received, repeated, dtlsState: dtls() };
  } finally {
    await Promise.all([server.close(), client.close()]);
  }
}

describe('a repeated HelloVerifyRequest', () => {
  it('is dropped by the guarded client, which connects and decrypts media; werift without the guard fails the handshake', async () => {
    setDtlsHelloGuard(true);
    const before = dtlsHelloGuardStats().droppedHelloVerifyRequests;
    const guarded = await handshakeWithRepeatedHvr();
    expect(guarded.repeated).toBeGreaterThanOrEqual(1);
    expect(guarded.connected).toBe(true);
    expect(guarded.received).toBeGreaterThanOrEqual(5);
    expect(dtlsHelloGuardStats().droppedHelloVerifyRequests).toBeGreaterThan(before);

    setDtlsHelloGuard(false);
    const unguarded = await handshakeWithRepeatedHvr();
    expect(unguarded.repeated).toBeGreaterThanOrEqual(1);
    expect(unguarded.connected).toBe(false);
    expect(unguarded.dtlsState).toBe('failed');
    setDtlsHelloGuard(true);
  }, 30_000);
});

/** A datagram of the server's flight 4 (a handshake record of epoch 0: ServerHello … ServerHelloDone). */
const isFlight4 = (d: Buffer) => d.length > 13 && d[0] === 22 && d.readUInt16BE(3) === 0 && [2, 11, 12, 13, 14].includes(d[13]);

/** The server sends its flight 4 again 300 ms later (as a server whose resend timer fired does): the client's DTLS state 1.5 s after connecting. */
async function handshakeWithRepeatedFlight4(): Promise<{ connected: boolean; resent: number; clientFlight: number; retransmits: number }> {
  const config = { iceAdditionalHostAddresses: ['127.0.0.1'], iceUseIpv4: true, iceUseIpv6: false };
  const server = new RTCPeerConnection(config);
  const client = new RTCPeerConnection(config);
  let resent = 0;
  try {
    server.addTransceiver('audio', { direction: 'sendonly' });
    client.addTransceiver('audio', { direction: 'recvonly' });
    await server.setLocalDescription(await server.createOffer());
    const conn = (server as unknown as { iceTransports: { connection: { send(d: Buffer): Promise<void> } }[] }).iceTransports[0].connection;
    const send = conn.send.bind(conn);
    conn.send = async (d: Buffer) => {
      await send(d);
      if (isFlight4(d)) {
        resent++;
        setTimeout(() => void send(d).catch(() => undefined), 300);
      }
    };
    await client.setRemoteDescription(server.localDescription!);
    await client.setLocalDescription(await client.createAnswer());
    await server.setRemoteDescription(client.localDescription!);
    const connected = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 6000);
      client.connectionStateChange.subscribe((s) => {
        if (s === 'connected') (clearTimeout(t), resolve(true));
        if (s === 'failed') (clearTimeout(t), resolve(false));
      });
    });
    const before = dtlsTimerStats().retransmits;
    await new Promise((r) => setTimeout(r, 1500));
    const dtls = (client as unknown as { dtlsTransports: { dtls: { dtls: { flight: number } } }[] }).dtlsTransports[0].dtls.dtls;
    return { connected, resent, clientFlight: dtls.flight, retransmits: dtlsTimerStats().retransmits - before };
  } finally {
    await Promise.all([server.close(), client.close()]);
  }
}

describe('a resent flight 4', () => {
  it('is dropped once flight 5 is out: the client stays finished (flight 7) and resends nothing; werift ran flight 5 again, set its flight back to 5 and kept resending it (and failed the session at the last)', async () => {
    setDtlsHelloGuard(true);
    const before = dtlsHelloGuardStats().droppedFlight4;
    const guarded = await handshakeWithRepeatedFlight4();
    expect(guarded.resent).toBeGreaterThanOrEqual(1);
    expect(guarded.connected).toBe(true);
    expect(guarded.clientFlight).toBe(7);
    expect(guarded.retransmits).toBe(0);
    expect(dtlsHelloGuardStats().droppedFlight4 - before).toBeGreaterThanOrEqual(1);

    setDtlsHelloGuard(false);
    const unguarded = await handshakeWithRepeatedFlight4();
    expect(unguarded.connected).toBe(true);
    expect(unguarded.clientFlight).toBe(5);
    expect(unguarded.retransmits).toBeGreaterThanOrEqual(1);
    setDtlsHelloGuard(true);
  }, 30_000);
});
