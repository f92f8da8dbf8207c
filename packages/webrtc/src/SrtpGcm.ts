/**
 * The native SRTP protector (native/srtp_addon.c): AEAD_AES_128_GCM (RFC 7714) with one OpenSSL
 * context per session, so a packet costs an IV and one seal instead of werift's new cipher per
 * packet. Optional: when the addon is not built, or the session negotiated another profile,
 * FastSender uses werift's own encryption.
 */
import { createRequire } from 'node:module';

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

/**
 * The file descriptor behind a dgram socket (libuv's), or -1: read through Node's internal state
 * symbol (the public `_handle` is deprecated and warns). Linux and macOS only.
 */
export function socketFd(socket: object): number {
  const sym = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
  const fd = sym ? (socket as Record<symbol, { handle?: { fd?: unknown } } | undefined>)[sym]?.handle?.fd : undefined;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

export const SRTP_GCM_TAG_BYTES = 16;

// node-gyp writes the addon to build/<configuration>/ beside package.json.
const addonPaths = ['../build/Release/mcu_srtp.node', '../build/Debug/mcu_srtp.node'];

let loaded: { binding: Binding | null; error: Error | null } | undefined;

/** Loads the addon once; never throws (null and the reason when it is not there). */
export function loadSrtpGcm(): { binding: Binding | null; error: Error | null } {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  let firstError: Error | null = null;
  for (const path of addonPaths) {
    try {
      loaded = { binding: require(path) as Binding, error: null };
      return loaded;
    } catch (err) {
      firstError ??= err instanceof Error ? err : new Error(String(err));
    }
  }
  loaded = { binding: null, error: firstError };
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
