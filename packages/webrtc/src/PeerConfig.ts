import {
  RTCRtpCodecParameters,
  useAbsSendTime,
  useAudioLevelIndication,
  useSdesMid,
} from 'werift';
import type { PeerConfig } from 'werift';
import { addressAllowList } from './Sdp.js';
import { sharedPortRange } from './SharedUdpPort.js';
import type { RenditionChooserOptions } from './RenditionChooser.js';

export interface WebRtcOptions {
  /** UDP ports for ICE host candidates, e.g. [40000, 40999]: a port per session. */
  portRange?: [number, number];
  /**
   * One UDP port for every session of the node (SharedUdpPort: demultiplexed by ICE username, then
   * by remote address); takes precedence over `portRange`.
   */
  rtcPort?: number;
  /** Address the shared port binds (default 0.0.0.0). */
  rtcHost?: string;
  /** Address advertised in host candidates for a host behind 1:1 NAT. */
  publicIp?: string;
  /**
   * Only these addresses (CIDR) are used for ICE: our advertised candidates and the remote
   * candidates we will send to. Tests use ["127.0.0.0/8"]; production leaves it unset.
   */
  iceAllow?: string[];
  /** Extra host addresses to gather (loopback is excluded by ICE otherwise). */
  additionalHostAddresses?: string[];
  /**
   * STUN/TURN servers for ICE. None by default: werift would otherwise query a public Google STUN
   * server on every gathering (and wait 5 s for it where the network is closed).
   */
  iceServers?: { urls: string; username?: string; credential?: string }[];
  /**
   * ICE-lite (RFC 8445 §2.5), as media servers with a reachable address run it: no candidate
   * gathering beyond host candidates, controlled role. The node's endpoints use it; clients don't.
   */
  iceLite?: boolean;
  /** A session with no media for this long is closed. */
  mediaTimeoutMs?: number;
  /** At most this many WebRTC sessions per node; beyond it, 503 with Retry-After. */
  maxSessions?: number;
  /** An offer not answered within this long (a stuck negotiation) closes its session: 503 with Retry-After. Default 10 s. */
  answerTimeoutMs?: number;
  /** How WHEP viewers are moved between renditions by their bandwidth (RenditionChooser's defaults otherwise). */
  renditionChooser?: RenditionChooserOptions;
}

export const OPUS_PT = 111;
export const VP8_PT = 96;
export const H264_PT = 102;

/**
 * werift's ICE agent queries stun.l.google.com whenever no STUN server is configured, even with
 * `iceServers: []`, and waits up to 5 s for it. A full-ICE agent that must not do that (a test or
 * benchmark client on a closed network) calls this after creating its transceivers, before
 * setLocalDescription.
 */
export function disableDefaultStun(pc: { iceTransports: { connection?: { stunServer?: unknown } }[] }): void {
  for (const t of pc.iceTransports) if (t.connection) t.connection.stunServer = undefined;
}

/** werift's peer configuration for our endpoints: Opus, VP8 and H.264 (packetization-mode 1). */
export function peerConfig(opts: WebRtcOptions): Partial<PeerConfig> {
  const allow = addressAllowList(opts.iceAllow);
  return {
    codecs: {
      audio: [
        new RTCRtpCodecParameters({
          mimeType: 'audio/opus',
          clockRate: 48_000,
          channels: 2,
          payloadType: OPUS_PT,
          parameters: 'minptime=10;useinbandfec=1',
        }),
      ],
      video: [
        new RTCRtpCodecParameters({
          mimeType: 'video/VP8',
          clockRate: 90_000,
          payloadType: VP8_PT,
          rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }, { type: 'goog-remb' }],
        }),
        new RTCRtpCodecParameters({
          mimeType: 'video/H264',
          clockRate: 90_000,
          payloadType: H264_PT,
          parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
          rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }, { type: 'goog-remb' }],
        }),
      ],
    },
    headerExtensions: {
      audio: [useSdesMid(), useAudioLevelIndication()],
      video: [useSdesMid(), useAbsSendTime()],
    },
    iceServers: opts.iceServers ?? [],
    iceLite: opts.iceLite ?? false,
    iceUseIpv4: true,
    iceUseIpv6: false,
    // The shared port's marker range: werift's UdpTransport.init hands out that port's transports for it.
    icePortRange: opts.rtcPort !== undefined ? sharedPortRange(opts.rtcPort) : opts.portRange,
    iceAdditionalHostAddresses: opts.additionalHostAddresses,
    // Never answer or check an address outside the allow list (see iceAllow).
    iceFilterStunResponse: opts.iceAllow ? (_msg, addr) => allow(addr[0]) : undefined,
    iceFilterCandidatePair: opts.iceAllow ? (pair) => allow(pair.remoteCandidate.host) && allow(pair.localCandidate.host) : undefined,
  };
}
