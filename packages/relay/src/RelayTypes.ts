/** Types shared by the feed sender, the relay forwarder and their consumers. */
import type { RtpHeader, VideoCodec } from '@mcu/rtp';

/** A UDP address; `host` is an IP literal (no DNS on the media path). */
export interface UdpEndpoint {
  host: string;
  port: number;
}

/** What the mixer puts on one SSRC of the program feed. */
export type StreamInfo = { kind: 'audio'; codec: 'opus' } | { kind: 'video'; codec: VideoCodec };

/** SSRC → stream description, as the event's feed announces it. */
export type StreamMap = ReadonlyMap<number, StreamInfo> | Readonly<Record<number, StreamInfo>>;

/**
 * A local consumer of the plaintext feed (later: WHEP viewers). Called synchronously on the
 * forward path: `packet` is a scratch buffer valid only during the call (copy what must outlive
 * it), `header` describes it and is reused for the next packet. Must not throw.
 */
export interface RtpSink {
  onRtp(packet: Uint8Array, length: number, header: RtpHeader): void;
}

/** RTP clock rate of a stream (RFC 7587 §4.1 for Opus, RFC 7741/6184 for video). */
export function clockRateOf(info: StreamInfo | undefined): number {
  return info?.kind === 'audio' ? 48_000 : 90_000;
}

/** Accepts a Map or a plain object keyed by SSRC. */
export function toStreamMap(streams: StreamMap | undefined): Map<number, StreamInfo> {
  if (streams === undefined) return new Map();
  if (streams instanceof Map) return new Map(streams);
  const map = new Map<number, StreamInfo>();
  for (const [ssrc, info] of Object.entries(streams as Readonly<Record<number, StreamInfo>>)) map.set(Number(ssrc) >>> 0, info);
  return map;
}
