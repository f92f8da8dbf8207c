/**
 * Two werift peers on loopback for the DTLS tests: the offerer (controlling, so werift's DTLS
 * server) and the answerer (controlled, the DTLS client, as the node is), each side's outgoing
 * datagrams open to interception; and predicates for the DTLS handshake records they carry.
 */
import { RTCPeerConnection } from 'werift';
import type { RTCRtpTransceiver } from 'werift';

/** The handshake message type of a plaintext handshake record (type 22, epoch 0), else -1. */
const handshakeType = (d: Buffer): number => (d.length > 13 && d[0] === 22 && d.readUInt16BE(3) === 0 ? d[13] : -1);
export const isClientHello = (d: Buffer): boolean => handshakeType(d) === 1;
export const isHelloVerifyRequest = (d: Buffer): boolean => handshakeType(d) === 3;
/** A datagram of the server's flight 4: ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone. */
export const isFlight4 = (d: Buffer): boolean => [2, 11, 12, 13, 14].includes(handshakeType(d));

type Send = (d: Buffer) => Promise<void>;

export interface DtlsPairOptions {
  /** Every datagram the server sends goes through here; `send` lets it leave. */
  serverSend?: (d: Buffer, send: Send) => Promise<void>;
  /** Every datagram the client sends goes through here; `send` lets it leave. */
  clientSend?: (d: Buffer, send: Send) => Promise<void>;
  /** Called with the client before negotiation (to subscribe to its tracks). */
  onClient?: (client: RTCPeerConnection) => void;
  /** How long to wait for the client to connect (default 6 s). */
  timeoutMs?: number;
}

export interface DtlsPair {
  server: RTCPeerConnection;
  client: RTCPeerConnection;
  /** The server's audio transceiver (sendonly). */
  audio: RTCRtpTransceiver;
  /** Whether the client connected: false when it failed or did not within the timeout. */
  connected: boolean;
}

function intercept(pc: RTCPeerConnection, wrap: DtlsPairOptions['serverSend']): void {
  if (!wrap) return;
  const conn = (pc as unknown as { iceTransports: { connection: { send: Send } }[] }).iceTransports[0].connection;
  const send = conn.send.bind(conn);
  conn.send = (d: Buffer) => wrap(d, send);
}

/** Negotiates a pair, waits for the client to connect (or not), runs `body`, then closes both. */
export async function withDtlsPair<T>(opts: DtlsPairOptions, body: (pair: DtlsPair) => Promise<T>): Promise<T> {
  const config = { iceAdditionalHostAddresses: ['127.0.0.1'], iceUseIpv4: true, iceUseIpv6: false };
  const server = new RTCPeerConnection(config);
  const client = new RTCPeerConnection(config);
  try {
    const audio = server.addTransceiver('audio', { direction: 'sendonly' });
    client.addTransceiver('audio', { direction: 'recvonly' });
    opts.onClient?.(client);
    await server.setLocalDescription(await server.createOffer());
    intercept(server, opts.serverSend);
    await client.setRemoteDescription(server.localDescription!);
    intercept(client, opts.clientSend);
    await client.setLocalDescription(await client.createAnswer());
    await server.setRemoteDescription(client.localDescription!);
    const connected = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), opts.timeoutMs ?? 6000);
      client.connectionStateChange.subscribe((s) => {
        if (s === 'connected') (clearTimeout(t), resolve(true));
        if (s === 'failed') (clearTimeout(t), resolve(false));
      });
    });
    return await body({ server, client, audio, connected });
  } finally {
    await Promise.all([server.close(), client.close()]);
  }
}
