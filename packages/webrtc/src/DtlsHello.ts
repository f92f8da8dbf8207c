/**
 * A repeated HelloVerifyRequest no longer fails werift's DTLS client.
 *
 * The node is the DTLS client of every WHIP and WHEP session (it answers, so its ICE agent is
 * controlled, and werift then takes the client role). werift 0.24 resends its first ClientHello
 * after 500 ms without an answer; a server that answers both copies sends two
 * HelloVerifyRequests (DTLS servers are stateless at that point, RFC 6347 §4.2.1, so every
 * browser does). werift's client handles the first, and for the second throws from its flight-3
 * code ("already at flight 3"), which its transport takes as a failed handshake: the session
 * stays "connecting" until the viewer gives up. That happens whenever the server needs more than
 * 500 ms to answer: a round trip that long, or a loaded machine. Measured with 1,000 werift
 * viewers arriving at once: every session that failed its handshake (49–391 per run) had had two
 * HelloVerifyRequests, and every one that connected exactly one.
 *
 * Here a HelloVerifyRequest that reaches a client already past flight 1 is dropped, as RFC 6347
 * lets a client do (its retransmitted ClientHello with the cookie carries on).
 *
 * The same goes for the server's flight 4 once the client has sent flight 5. A server resends
 * flight 4 when flight 5 is late; werift's server sends it as one datagram a message, and a
 * resent ServerHelloDone that arrived without its ServerHello (werift ignores a ServerHello once
 * connected, but not the rest) made werift run flight 5 again and set its flight back to 5 after
 * the server's Finished had set it to 7. Flight 5 then never saw its answer: resent for half a
 * minute, and at the last one the DTLS transport failed, closing a session that had been playing
 * all along. bench:webrtc met it on 78 of 1,000 sessions. Flight 5's own timer (DtlsTimer.ts)
 * resends it when its answer does not come.
 *
 * Installed on RTCDtlsTransport.start, which werift exports; no file of werift is changed.
 */
import { RTCDtlsTransport } from 'werift';

/** DTLS handshake type of HelloVerifyRequest (RFC 6347 §4.2.1). */
const HELLO_VERIFY_REQUEST = 3;
/** The server's flight 4: ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone. */
const FLIGHT_4 = new Set([2, 11, 12, 13, 14]);

interface ClientSocket {
  dtls: { flight: number };
  onHandleHandshakes: (assembled: { msg_type: number }[]) => Promise<void>;
}

const proto = (RTCDtlsTransport as unknown as { prototype: { start(): Promise<void>; dtls?: unknown; role?: string } }).prototype;
const originalStart = proto.start;
/** HelloVerifyRequests dropped because the client had already answered one (all sessions). */
let dropped = 0;
/** Messages of a resent flight 4 dropped because flight 5 had gone out (all sessions). */
let droppedFlight4 = 0;

function guard(socket: ClientSocket): void {
  const handle = socket.onHandleHandshakes;
  socket.onHandleHandshakes = (assembled) => {
    if (socket.dtls.flight >= 3 && assembled.some((h) => h.msg_type === HELLO_VERIFY_REQUEST)) {
      dropped++;
      assembled = assembled.filter((h) => h.msg_type !== HELLO_VERIFY_REQUEST);
      if (assembled.length === 0) return Promise.resolve();
    }
    // A resent flight 4 once flight 5 is out (see the module comment).
    if (socket.dtls.flight >= 5 && assembled.some((h) => FLIGHT_4.has(h.msg_type))) {
      droppedFlight4++;
      assembled = assembled.filter((h) => !FLIGHT_4.has(h.msg_type));
      if (assembled.length === 0) return Promise.resolve();
    }
    return handle(assembled);
  };
}

let enabled = false;

/** Turns the guard on (the default) or off (werift's own behaviour, for comparison). */
export function setDtlsHelloGuard(on: boolean): void {
  enabled = on;
  proto.start = on
    ? function (this: { dtls?: unknown; role?: string }) {
        // start() makes the DTLS socket synchronously, before its first await; the client's first
        // flight leaves 100 ms later.
        const started = originalStart.call(this);
        if (this.role === 'client' && this.dtls) guard(this.dtls as ClientSocket);
        return started;
      }
    : originalStart;
}

export function dtlsHelloGuardStats(): { enabled: boolean; droppedHelloVerifyRequests: number; droppedFlight4: number } {
  return { enabled, droppedHelloVerifyRequests: dropped, droppedFlight4 };
}

setDtlsHelloGuard(process.env.MCU_DTLS_HELLO_GUARD !== '0');
