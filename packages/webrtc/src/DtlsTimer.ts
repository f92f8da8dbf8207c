/**
 * DTLS handshake retransmission on RFC 6347's timer instead of werift's.
 *
 * werift 0.24 resends an unanswered flight after 0.5 s, then 1, 1.5, 2 … 5.5 s (ten times). RFC
 * 6347 §4.2.4.1 says an implementation SHOULD start at 1 s and double the timer at each
 * retransmission. The difference matters when many handshakes run at once: a node that is busy
 * answers a flight after more than 0.5 s, the peer has already resent it, and the resent flight
 * costs both ends a second round of handshake work exactly when they have the least to spare.
 * Measured with 1,000 viewers arriving together (bench:webrtc): werift's timer gave 130 and 320
 * repeated HelloVerifyRequests (each one a resent ClientHello answered twice), and in the second run
 * 13.7 ms of node CPU per join and 809 viewers connected within 15 s; with 1 s first, none and 1,000.
 *
 * Here a flight waits 1, 2, 4, 8 and 16 s for its answer (six sends, 31 s in all, where werift
 * gave up after 33 s) and stops once its transport is closed: werift went on resending the
 * flights of a session closed mid-handshake. `MCU_DTLS_RFC_TIMER=0` keeps werift's timer.
 *
 * werift does not export its Flight class. Its prototype is reached once, at import, through a
 * DtlsClient that is never connected: handed a ServerHello it creates its flight 5 (a Flight)
 * before the message's parser throws. No socket is opened and nothing is sent. No werift file is
 * changed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DtlsClient } from 'werift';

/** First wait for an answer, then doubled at each retransmission (RFC 6347 §4.2.4.1). */
export const DTLS_INITIAL_TIMEOUT_MS = 1000;
/** Retransmissions before the handshake fails: 1 + 2 + 4 + 8 + 16 s of waiting. */
export const DTLS_MAX_RETRANSMITS = 5;

interface FlightLike {
  flight: number;
  nextFlight: number | undefined;
  dtls: { flight: number };
  /** werift's TransportContext around the session's IceTransport, around its ICE connection. */
  transport: { socket?: { closed?: boolean; ice?: { state?: string } } };
  send(buffers: Buffer[]): Promise<unknown>;
  setState(state: string): void;
}

interface FlightProto {
  transmit(this: FlightLike, buffers: Buffer[]): Promise<void>;
}

/** Flight.prototype, from a DtlsClient that is never connected (see the module comment). */
function findFlightPrototype(): FlightProto | null {
  try {
    const transport = { closed: true, onData: () => undefined, send: async () => 0, close: async () => undefined, address: {}, type: 'probe' };
    const client = new (DtlsClient as unknown as new (o: object) => { handleHandshakes(h: object[]): Promise<void>; flight5?: object })({
      transport,
      extendedMasterSecret: true,
    });
    // ServerHello (type 2) with an empty body: the client makes flight 5, then the parse throws.
    client.handleHandshakes([{ msg_type: 2, fragment: Buffer.alloc(0) }]).catch(() => undefined);
    const flight5 = client.flight5;
    const proto = flight5 ? Object.getPrototypeOf(Object.getPrototypeOf(flight5)) : null;
    return proto && typeof proto.transmit === 'function' && typeof proto.setState === 'function' ? (proto as FlightProto) : null;
  } catch {
    return null;
  }
}

const proto = findFlightPrototype();
const weriftTransmit = proto?.transmit ?? null;
/** Flights sent again because no answer came in time, and handshakes given up (all sessions). */
let retransmits = 0;
let gaveUp = 0;
let enabled = false;

/** The session is gone: its DTLS socket was closed, or (a peer connection closed) its ICE connection. */
function isClosed(t: FlightLike['transport']): boolean {
  return t.socket?.closed === true || t.socket?.ice?.state === 'closed';
}

async function transmit(this: FlightLike, buffers: Buffer[]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    this.setState('SENDING');
    // A failed send is a lost datagram: the timer below resends it.
    this.send(buffers).catch(() => undefined);
    this.setState('WAITING');
    if (this.nextFlight === undefined) break;
    await sleep(Math.min(DTLS_INITIAL_TIMEOUT_MS * 2 ** attempt, 60_000), undefined, { ref: false });
    if (this.dtls.flight >= this.nextFlight) break;
    // Closed mid-handshake (the session ended): nothing is waiting for this flight any more.
    if (isClosed(this.transport)) return;
    if (attempt >= DTLS_MAX_RETRANSMITS) {
      gaveUp++;
      throw new Error(`DTLS flight ${this.flight}: no answer after ${DTLS_MAX_RETRANSMITS} retransmissions`);
    }
    retransmits++;
  }
  this.setState('FINISHED');
}

/** RFC 6347's timer (the default) or werift's own (for comparison). */
export function setDtlsRfcTimer(on: boolean): void {
  if (!proto || !weriftTransmit) return;
  enabled = on;
  proto.transmit = on ? transmit : weriftTransmit;
}

export function dtlsTimerStats(): { enabled: boolean; retransmits: number; gaveUp: number } {
  return { enabled, retransmits, gaveUp };
}

setDtlsRfcTimer(process.env.MCU_DTLS_RFC_TIMER !== '0');
