/**
 * DTLS flights are resent on RFC 6347's timer (1 s, doubled each time) instead of werift's
 * (0.5 s, then +0.5 s each time), and not at all once their transport is closed. Real werift
 * DTLS clients: one that is never answered, and a peer connection whose server answers slowly.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { DtlsClient } from 'werift';
import { DTLS_INITIAL_TIMEOUT_MS, dtlsTimerStats, setDtlsRfcTimer } from '../src/index.js';
import { isClientHello, isHelloVerifyRequest, withDtlsPair } from './dtlsPair.js';

afterAll(() => setDtlsRfcTimer(true));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A DTLS client whose ClientHellos go nowhere: the times (ms after connect) it sent them. */
function unanswered(): { sent: number[]; transport: { closed: boolean } } {
  const sent: number[] = [];
  const t0 = performance.now();
  const transport = {
    closed: false,
    type: 'test',
    address: {},
    onData: () => undefined,
    send: async (d: Buffer) => {
      if (isClientHello(d)) sent.push(performance.now() - t0);
      return d.length;
    },
    close: async () => undefined,
  };
  const client = new (DtlsClient as unknown as new (o: object) => { connect(): Promise<void> })({ transport, extendedMasterSecret: true });
  client.connect().catch(() => undefined);
  return { sent, transport };
}

describe('the DTLS retransmission timer', () => {
  it('resends an unanswered flight after 1 s and then 2 s more, and not once the transport is closed; werift resent after 0.5 s', async () => {
    setDtlsRfcTimer(true);
    const before = dtlsTimerStats().retransmits;
    const rfc = unanswered();
    const closed = unanswered();
    await sleep(200);
    closed.transport.closed = true;
    await sleep(3200);
    expect(rfc.sent.length).toBe(3);
    const gaps = [rfc.sent[1] - rfc.sent[0], rfc.sent[2] - rfc.sent[1]];
    expect(gaps[0]).toBeGreaterThanOrEqual(DTLS_INITIAL_TIMEOUT_MS - 20);
    expect(gaps[1]).toBeGreaterThanOrEqual(2 * DTLS_INITIAL_TIMEOUT_MS - 20);
    expect(closed.sent.length).toBe(1);
    expect(dtlsTimerStats().retransmits - before).toBe(2);
    rfc.transport.closed = true;

    setDtlsRfcTimer(false);
    const werift = unanswered();
    await sleep(1100);
    werift.transport.closed = true;
    setDtlsRfcTimer(true);
    expect(werift.sent.length).toBeGreaterThanOrEqual(2);
    expect(werift.sent[1] - werift.sent[0]).toBeLessThan(DTLS_INITIAL_TIMEOUT_MS - 200);
  }, 15_000);

  it('lets a server that answers after 700 ms complete the handshake with one ClientHello; werift sent two', async () => {
    const run = async (rfcTimer: boolean) => {
      setDtlsRfcTimer(rfcTimer);
      let firstHellos = 0;
      // A busy server: its HelloVerifyRequest leaves 700 ms late.
      const serverSend = async (d: Buffer, send: (d: Buffer) => Promise<void>) => {
        if (isHelloVerifyRequest(d)) await sleep(700);
        await send(d);
      };
      const clientSend = async (d: Buffer, send: (d: Buffer) => Promise<void>) => {
        // The first ClientHello carries an empty cookie. After the record (13 bytes) and handshake
        // (12) headers: version (2), random (32), session id (length at 59), cookie length.
        if (isClientHello(d) && d[60 + d[59]] === 0) firstHellos++;
        await send(d);
      };
      return withDtlsPair({ serverSend, clientSend, timeoutMs: 8000 }, async ({ connected }) => ({ connected, firstHellos }));
    };
    const rfc = await run(true);
    expect(rfc.connected).toBe(true);
    expect(rfc.firstHellos).toBe(1);
    const werift = await run(false);
    expect(werift.connected).toBe(true);
    expect(werift.firstHellos).toBe(2);
    setDtlsRfcTimer(true);
  }, 30_000);
});
