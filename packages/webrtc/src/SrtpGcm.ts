/**
 * The native SRTP protector (native/srtp_addon.c): AEAD_AES_128_GCM (RFC 7714) with one OpenSSL
 * context per session, so a packet costs an IV and one seal instead of werift's new cipher per
 * packet. Optional: when the addon is not built, or the session negotiated another profile,
 * FastSender uses werift's own encryption.
 */
import { loadNativeAddon, socketFd } from '@mcu/rtp';

export interface SrtpGcmSession {
  /**
   * Seals `packet[headerLength, headerLength + payloadLength)` in place with the header as AAD and
   * writes the 16-byte tag after it; returns the protected length, or -1 if OpenSSL failed.
   */
  protect(packet: Uint8Array, headerLength: number, payloadLength: number, roc: number): number;
  close(): void;
}

/** The remote side's SRTCP, AEAD_AES_128_GCM (RFC 7714 §9), opened with one OpenSSL context per session. */
export interface SrtcpGcmOpener {
  /** The plain compound RTCP written to `out` (its length), -1 when `packet` does not authenticate, -2 when it is not encrypted. */
  open(packet: Uint8Array, out: Uint8Array): number;
  close(): void;
}

interface Binding {
  SrtpGcm: new (key: Uint8Array, salt: Uint8Array) => SrtpGcmSession;
  SrtcpGcmOpen?: new (key: Uint8Array, salt: Uint8Array) => SrtcpGcmOpener;
  /** One sendto(2) with MSG_DONTWAIT on a socket's fd (IPv4): bytes sent, or -errno. */
  sendTo(fd: number, packet: Uint8Array, length: number, ipv4: number, port: number): number;
}

export { socketFd };

export const SRTP_GCM_TAG_BYTES = 16;

let loaded: { binding: Binding | null; error: Error | null } | undefined;

/** Loads the addon once; never throws (null and the reason when it is not there). */
export function loadSrtpGcm(): { binding: Binding | null; error: Error | null } {
  loaded ??= loadNativeAddon<Binding>(import.meta.url, 'mcu_srtp');
  return loaded;
}

let enabled = process.env.MCU_NATIVE_SRTP !== '0';

/** Whether outgoing SRTP is sealed natively now (MCU_NATIVE_SRTP=0, or setNativeSrtp(false), turns it off). */
export function nativeSrtpEnabled(): boolean {
  return enabled;
}

/** Turns the native path on or off for every session at once (the benchmark compares both in one run). */
export function setNativeSrtp(on: boolean): void {
  enabled = on;
}

/** werift's SRTCP session of a DTLS transport: `decrypt` is an instance property. */
interface WeriftSrtcp {
  decrypt: (packet: Buffer) => Buffer;
  remoteContext?: { cipher?: { srtcpSessionKey?: Buffer; srtcpSessionSalt?: Buffer; aeadAuthTagLen?: number } };
}

const srtcpIn = { opened: 0, toWerift: 0, sessions: 0 };
let srtcpInEnabled = process.env.MCU_NATIVE_SRTCP_IN !== '0';
/** werift SRTCP sessions whose decrypt is already the native one (a session can connect again). */
const openedNatively = new WeakSet<object>();

/** Turns the native opening of incoming SRTCP on or off for every session (bench:webrtc --ab-srtcp-in compares both). */
export function setNativeSrtcpIn(on: boolean): void {
  srtcpInEnabled = on;
}

/** Incoming SRTCP opened natively, and the packets left to werift (not encrypted, failing authentication, too short; not counted while turned off). */
export function srtcpInStats(): { opened: number; toWerift: number; sessions: number } {
  return { ...srtcpIn };
}

/**
 * Opens what the peer sends over SRTCP (a viewer's receiver reports, NACKs and PLIs; a presenter's
 * sender reports) natively, instead of werift's new AES-GCM cipher, IV and AAD buffers for every
 * packet: at 300 viewers, 3–8 % of the node's CPU on the fastest send path (measured). werift still
 * parses and handles the plain RTCP as before. A packet the native call does not open goes to
 * werift's own decrypt, which drops it as werift always did (or opens what is not encrypted).
 * false when the DTLS transport has no SRTCP yet, its profile is not AEAD_AES_128_GCM, the addon
 * is not built, or native SRTP is off (MCU_NATIVE_SRTP=0).
 */
export function openSrtcpNatively(dtls: { srtcp?: unknown }): boolean {
  const srtcp = dtls.srtcp as WeriftSrtcp | undefined;
  const Open = loadSrtpGcm().binding?.SrtcpGcmOpen;
  if (!srtcp || typeof srtcp.decrypt !== 'function' || openedNatively.has(srtcp) || !Open || !enabled) return false;
  const c = srtcp.remoteContext?.cipher;
  if (c?.aeadAuthTagLen !== SRTP_GCM_TAG_BYTES || c.srtcpSessionKey?.length !== 16 || !c.srtcpSessionSalt || c.srtcpSessionSalt.length < 12) return false;
  const opener = new Open(c.srtcpSessionKey, c.srtcpSessionSalt.subarray(0, 12));
  const werift = srtcp.decrypt;
  srtcp.decrypt = (packet: Buffer): Buffer => {
    if (srtcpInEnabled && packet.length >= 8 + SRTP_GCM_TAG_BYTES + 4) {
      const out = Buffer.allocUnsafe(packet.length - SRTP_GCM_TAG_BYTES - 4);
      const n = opener.open(packet, out);
      if (n >= 0) {
        srtcpIn.opened++;
        return out.subarray(0, n);
      }
    }
    if (srtcpInEnabled) srtcpIn.toWerift++;
    return werift(packet);
  };
  openedNatively.add(srtcp);
  srtcpIn.sessions++;
  return true;
}
