/**
 * A DTLS server that answers both copies of the client's first ClientHello (as a stateless server
 * does when its answer takes longer than the client's 500 ms retransmission) sends two
 * HelloVerifyRequests. werift's client failed the handshake on the second; with DtlsHello.ts it
 * drops it and connects. Likewise a resent flight 4 that arrives after flight 5 went out. Real
 * werift peers on loopback; the server's HelloVerifyRequest, or its flight 4, is sent twice.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { RtpHeader, RtpPacket } from 'werift';
import type { RTCPeerConnection } from 'werift';
import { dtlsHelloGuardStats, dtlsTimerStats, setDtlsHelloGuard } from '../src/index.js';
import { isFlight4, isHelloVerifyRequest, withDtlsPair } from './dtlsPair.js';

afterAll(() => setDtlsHelloGuard(true));

/** The server's HelloVerifyRequests each leave twice; resolves with what the client's far side decrypted, or the client's DTLS state when it did not connect. */
async function handshakeWithRepeatedHvr(): Promise<{ connected: boolean; received: number; repeated: number; dtlsState: string }> {
  let repeated = 0;
  let received = 0;
  const serverSend = async (d: Buffer, send: (d: Buffer) => Promise<void>) => {
    await send(d);
    if (isHelloVerifyRequest(d)) {
      repeated++;
      await send(d);
    }
  };
  const onClient = (client: RTCPeerConnection) => client.onTrack.subscribe((track) => track.onReceiveRtp.subscribe(() => void received++));
  return withDtlsPair({ serverSend, onClient }, async ({ client, audio, connected }) => {
    for (let i = 0; connected && i < 100 && received < 5; i++) {
      audio.sender.sendRtp(new RtpPacket(new RtpHeader({ payloadType: 111, sequenceNumber: 10 + i, timestamp: i * 960, ssrc: 9 }), Buffer.from('x')));
      await new Promise((r) => setTimeout(r, 20));
    }
    const dtlsState = (client as unknown as { dtlsTransports: { state: string }[] }).dtlsTransports[0]?.state ?? 'none';
    return { connected, received, repeated, dtlsState };
  });
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

/** The server sends its flight 4 again 300 ms later (as a server whose resend timer fired does): the client's DTLS state 1.5 s after connecting. */
async function handshakeWithRepeatedFlight4(): Promise<{ connected: boolean; resent: number; clientFlight: number; retransmits: number }> {
  let resent = 0;
  const serverSend = async (d: Buffer, send: (d: Buffer) => Promise<void>) => {
    await send(d);
    if (isFlight4(d)) {
      resent++;
      setTimeout(() => void send(d).catch(() => undefined), 300);
    }
  };
  return withDtlsPair({ serverSend }, async ({ client, connected }) => {
    const before = dtlsTimerStats().retransmits;
    await new Promise((r) => setTimeout(r, 1500));
    const dtls = (client as unknown as { dtlsTransports: { dtls: { dtls: { flight: number } } }[] }).dtlsTransports[0].dtls.dtls;
    return { connected, resent, clientFlight: dtls.flight, retransmits: dtlsTimerStats().retransmits - before };
  });
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
