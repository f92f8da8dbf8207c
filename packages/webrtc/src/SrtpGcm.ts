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

interface Binding {
  SrtpGcm: new (key: Uint8Array, salt: Uint8Array) => SrtpGcmSession;
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
