/**
 * Opening a UDP socket of the media path (RTP endpoints, feed nodes). Destinations are IP literals, so the
 * socket gets a lookup that answers synchronously: Node's default `dns.lookup` defers every send
 * to the next tick even for an IP, which costs measurably when one packet goes to hundreds of
 * children (see bench/fanout.ts).
 */
import dgram from 'node:dgram';
import { isIP } from 'node:net';

function ipLookup(address: string, family: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  callback(null, address, typeof family === 'number' ? family : isIP(address));
}

export interface OpenUdpSocketOptions {
  host: string;
  port?: number;
  bufferBytes?: number;
}

export async function openUdpSocket(opts: OpenUdpSocketOptions): Promise<dgram.Socket> {
  const type = isIP(opts.host) === 6 ? 'udp6' : 'udp4';
  const socket = dgram.createSocket({
    type,
    lookup: ipLookup as unknown as dgram.SocketOptions['lookup'],
    recvBufferSize: opts.bufferBytes,
    sendBufferSize: opts.bufferBytes,
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      socket.off('listening', onListening);
      try {
        socket.close();
      } catch {
        // already closed by the failed bind
      }
      reject(err);
    };
    const onListening = () => {
      socket.off('error', onError);
      resolve();
    };
    socket.once('error', onError);
    socket.once('listening', onListening);
    socket.bind(opts.port ?? 0, opts.host);
  });
  return socket;
}
