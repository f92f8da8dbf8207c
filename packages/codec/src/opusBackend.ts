import { DiscordjsDecoder, DiscordjsEncoder } from './DiscordjsOpus.js';
import { loadNativeOpus } from './native.js';
import type { DecoderEngine, EncoderEngine, NativeOpus } from './native.js';

/*
 * Which libopus binding this process uses, chosen once at module load:
 *   - 'native': packages/codec's own addon (build/Release/mcu_opus.node): FEC decode,
 *     exact-length PLC, no allocation per call;
 *   - 'discordjs': @discordjs/opus, when the addon is missing or fails to load (see
 *     DiscordjsOpus.ts for what that costs).
 * MCU_OPUS_BACKEND=native|discordjs forces one (a forced 'native' that fails to load
 * throws here); unset or 'auto' prefers native.
 */

export type OpusBackendName = 'native' | 'discordjs';

function chooseBackend(): { backend: OpusBackendName; error: Error | null; binding: NativeOpus | null } {
  const requested = process.env.MCU_OPUS_BACKEND || 'auto';
  if (requested === 'discordjs') return { backend: 'discordjs', error: null, binding: null };
  if (requested !== 'native' && requested !== 'auto') {
    throw new Error(`MCU_OPUS_BACKEND must be 'native', 'discordjs' or 'auto', not '${requested}'`);
  }
  const { binding, error } = loadNativeOpus();
  if (binding) return { backend: 'native', error: null, binding };
  if (requested === 'native') {
    throw new Error(`MCU_OPUS_BACKEND=native but the Opus addon did not load: ${error?.message}`, {
      cause: error,
    });
  }
  return { backend: 'discordjs', error, binding: null };
}

const chosen = chooseBackend();

/** The binding in use; report it with metrics (e.g. a `backend` label). */
export const opusBackend: OpusBackendName = chosen.backend;
/** Why the native addon did not load, when it was wanted and the fallback is in use. */
export const opusBackendError: Error | null = chosen.error;

const nativeOpus = chosen.binding;

export function createDecoderEngine(sampleRate: number, channels: number): DecoderEngine {
  return nativeOpus ? new nativeOpus.Decoder(sampleRate, channels) : new DiscordjsDecoder(sampleRate, channels);
}

export function createEncoderEngine(sampleRate: number, channels: number, application: number): EncoderEngine {
  return nativeOpus
    ? new nativeOpus.Encoder(sampleRate, channels, application)
    : new DiscordjsEncoder(sampleRate, channels, application);
}
