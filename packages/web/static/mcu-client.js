// WHIP/WHEP client for the pages (RFC 9725): non-trickle, one POST with the complete offer.
export function params() {
  return new URLSearchParams(location.search);
}

/** The event id from /publish/:id or /watch/:id. */
export function eventIdFromPath() {
  const parts = location.pathname.split('/').filter(Boolean);
  return parts[1] ?? '';
}

function waitForIceGathering(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === 'complete') {
        pc.removeEventListener('icegatheringstatechange', done);
        resolve();
      }
    };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, timeoutMs);
  });
}

/** Sends the offer to a WHIP/WHEP endpoint and applies the answer; returns the session URL. */
/** `onCreated(headers)`: the 201's headers (a WHIP session's resume grant, `x-mcu-resume-token`). */
export async function negotiate(pc, endpoint, token, onCreated) {
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIceGathering(pc);
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/sdp', authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  if (res.status !== 201) {
    let message = `${res.status}`;
    let code;
    try {
      const { error } = await res.json();
      message += ` ${error.message}`;
      code = error.code;
    } catch {}
    const err = new Error(`the server answered ${message}`);
    err.status = res.status;
    err.code = code;
    err.retryAfter = Number(res.headers.get('retry-after') ?? 0);
    throw err;
  }
  // After a 307 to a relay the session lives there: resolve against the URL that answered.
  const location = new URL(res.headers.get('location'), res.url || endpoint).toString();
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  onCreated?.(res.headers);
  return location;
}

export async function hangUp(sessionUrl, token) {
  if (!sessionUrl) return;
  try {
    await fetch(sessionUrl, { method: 'DELETE', headers: { authorization: `Bearer ${token}` }, keepalive: true });
  } catch {}
}

/**
 * Spectral probe of a received stream: power at given frequencies from an AnalyserNode, so tests
 * (and people) can check what is heard. Returns dB values.
 */
export function createProbe(stream) {
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0.5;
  source.connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  return {
    ctx,
    powerAt(freq) {
      analyser.getFloatFrequencyData(bins);
      const i = Math.round((freq / ctx.sampleRate) * analyser.fftSize);
      let best = -Infinity;
      for (let k = Math.max(0, i - 2); k <= Math.min(bins.length - 1, i + 2); k++) best = Math.max(best, bins[k]);
      return best;
    },
    level() {
      analyser.getFloatFrequencyData(bins);
      let max = -Infinity;
      for (const b of bins) max = Math.max(max, b);
      return max;
    },
  };
}

export function show(el, text, cls = '') {
  el.textContent = text;
  el.className = cls;
}
