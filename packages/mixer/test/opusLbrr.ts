/**
 * Whether an Opus packet carries in-band FEC (SILK's LBRR frame of the packet before): the LBRR
 * flag of RFC 6716 §4.2.3, read with the range decoder of §4.1 (only as far as that flag). Mono,
 * one frame per packet (TOC code 0), as the mixer's encoders send; CELT-only packets have no
 * SILK layer and so no LBRR.
 */
export function opusHasLbrr(packet: Uint8Array): boolean {
  if (packet.length < 2) return false;
  const toc = packet[0];
  const config = toc >> 3;
  if (config >= 16) return false; // CELT only
  if ((toc & 0x04) !== 0 || (toc & 0x03) !== 0) throw new Error('opusHasLbrr reads mono single-frame packets only');
  const frameMs = config < 12 ? [10, 20, 40, 60][config & 3] : [10, 20][config & 1];
  const silkFrames = frameMs <= 20 ? 1 : frameMs / 20;
  // §4.1.1: ec_dec_init; §4.1.2: normalisation; §4.1.3.2: ec_dec_bit_logp.
  let pos = 1;
  const byte = () => (pos < packet.length ? packet[pos++] : 0);
  let rem = byte();
  let rng = 128;
  let val = 127 - (rem >> 1);
  const normalize = () => {
    while (rng <= 0x80_0000) {
      rng = rng * 256;
      const b = byte();
      const sym = ((rem << 8) | b) >> 1;
      val = (val * 256 + (255 & ~sym)) % 0x8000_0000;
      rem = b;
    }
  };
  const bit = (): boolean => {
    normalize();
    const s = Math.floor(rng / 2);
    const one = val < s;
    if (!one) val -= s;
    rng = one ? s : rng - s;
    return one;
  };
  normalize();
  for (let i = 0; i < silkFrames; i++) bit(); // VAD flags
  return bit(); // LBRR flag
}
