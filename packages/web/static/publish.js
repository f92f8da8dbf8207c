import { createProbe, eventIdFromPath, hangUp, negotiate, params, show } from './mcu-client.js';

const q = params();
const eventId = q.get('event') ?? eventIdFromPath();
const token = q.get('token') ?? '';
// The WHIP URL may point at another origin (the node's), e.g. when this page is hosted elsewhere.
const endpoint = q.get('whip') ?? new URL(`/whip/${eventId}`, location.href).toString();
const status = document.getElementById('status');
document.getElementById('event').textContent = eventId;
if (q.get('tone')) document.getElementById('tone').value = q.get('tone');
if (q.get('source')) document.getElementById('source').value = q.get('source');
if (q.get('name')) document.getElementById('name').value = q.get('name');

/** The WHIP URL with the display name the presenter typed (the node checks it; a named token wins). */
function endpointWithName() {
  const name = document.getElementById('name').value.trim();
  if (!name) return endpoint;
  const u = new URL(endpoint);
  u.searchParams.set('name', name);
  return u.toString();
}

const state = { connected: false, session: null, error: null, probe: null, stats: null, reconnects: 0, reconnecting: false, resume: null, kicked: false, retrying: null };
window.mcu = state;
let pc = null;
let stream = null;
let watchdog = null;

/**
 * A presenter's session can end under it: its mixer died or the event moved to another mixer
 * (docs/failover.md). No mix for this long, or ICE/DTLS failing, means the session is gone: the page
 * re-POSTs its offer to the event's WHIP URL (any mixer leads to the event's holder), with backoff.
 */
const NO_MIX_MS = 1500;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000];

/** A test source: an oscillator at the chosen frequency and a canvas in a solid colour. */
function testStream(freq, color) {
  const ctx = new AudioContext();
  const osc = ctx.createOscillator();
  osc.frequency.value = freq;
  const gain = ctx.createGain();
  gain.gain.value = 0.3;
  const dest = ctx.createMediaStreamDestination();
  osc.connect(gain).connect(dest);
  osc.start();
  const canvas = document.createElement('canvas');
  const [w, h] = (q.get('size') ?? '640x360').split('x').map(Number);
  canvas.width = w || 640;
  canvas.height = h || 360;
  const g = canvas.getContext('2d');
  let frame = 0;
  setInterval(() => {
    g.fillStyle = color;
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.fillStyle = '#fff';
    g.font = `${Math.round(canvas.height / 11)}px sans-serif`;
    g.fillText(`${freq} Hz · ${frame++}`, canvas.width / 32, canvas.height / 7);
  }, 1000 / 30);
  const video = canvas.captureStream(30);
  return new MediaStream([...dest.stream.getAudioTracks(), ...video.getVideoTracks()]);
}

/** Browsers give cameras and microphones to secure pages only: https, or http on localhost. */
function cameraAndMicrophone() {
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
    throw new Error(`the camera and microphone need a secure page: open this page over https (${location.origin} is not secure)`);
  }
  return navigator.mediaDevices.getUserMedia({ audio: true, video: true });
}

async function start() {
  document.getElementById('start').disabled = true;
  try {
    const source = document.getElementById('source').value;
    const freq = Number(document.getElementById('tone').value);
    stream = source === 'test' ? testStream(freq, q.get('color') ?? '#c0392b') : await cameraAndMicrophone();
    document.getElementById('preview').srcObject = stream;
    // A 503 (the node is draining, its event moving or ending as the offer arrived) says when to
    // try again; anything else is for the presenter to read.
    for (let attempt = 1; ; attempt++) {
      try {
        await connect();
        state.retrying = null;
        break;
      } catch (err) {
        pc?.close();
        pc = null;
        if (err.status !== 503 || attempt >= BACKOFF_MS.length) throw err;
        // Not state.error: that is for a failure the page gave up on.
        state.retrying = String(err.message ?? err);
        show(status, `retrying (attempt ${attempt}: ${state.retrying})…`, 'muted');
        await new Promise((r) => setTimeout(r, Math.max(BACKOFF_MS[attempt], (err.retryAfter ?? 0) * 1000)));
      }
    }
    document.getElementById('stop').disabled = false;
    watch();
  } catch (err) {
    state.error = String(err.message ?? err);
    show(status, state.error, 'err');
    document.getElementById('start').disabled = false;
  }
}

/** One WHIP session with the stream: a new PeerConnection, the offer POSTed to the event's WHIP URL. */
async function connect() {
  {
    pc = new RTCPeerConnection();
    const audioTrack = stream.getAudioTracks()[0];
    // sendrecv: the node sends this presenter its mix-minus (everyone but itself) back.
    pc.addTransceiver(audioTrack, { direction: 'sendrecv', streams: [stream] });
    for (const t of stream.getVideoTracks()) pc.addTransceiver(t, { direction: 'sendonly', streams: [stream] });
    pc.ontrack = (e) => {
      if (e.track.kind !== 'audio') return;
      const s = new MediaStream([e.track]);
      document.getElementById('mix').srcObject = s;
      state.probe = createProbe(s);
    };
    const own = pc;
    pc.onconnectionstatechange = () => {
      if (pc !== own) return;
      state.connected = own.connectionState === 'connected';
      if (state.reconnecting && !state.connected) return;
      show(status, state.connected && state.reconnects > 0 ? `connected (reconnected ${state.reconnects}×)` : own.connectionState, state.connected ? 'ok' : own.connectionState === 'failed' ? 'err' : 'muted');
    };
    // Re-publishing, the session's resume grant joins as the same participant (the producer's
    // mute follows it, on any mixer after a failover); refused (expired), the page's own token.
    const resume = state.resume;
    try {
      state.session = await negotiate(pc, endpointWithName(), resume ?? token, (headers) => {
        state.resume = headers.get('x-mcu-resume-token') ?? state.resume;
      });
    } catch (err) {
      if (err.code === 'participant_kicked') state.kicked = true;
      else if (resume !== null && resume === state.resume && (err.status === 401 || err.status === 403)) state.resume = null;
      throw err;
    }
  }
}

/** Mix packets received so far (the node sends the presenter its mix-minus all the time). */
async function mixPackets() {
  let n = 0;
  if (!pc) return n;
  (await pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'audio') n += r.packetsReceived;
  });
  return n;
}

/**
 * The event's stream says when the event moves to another mixer (a planned handover): re-publish
 * at once instead of waiting for the mix to stop. Opened again (on the event's URL, which leads to
 * the new holder) after each move.
 */
function followEvent() {
  const es = new EventSource(new URL(`/api/events/${encodeURIComponent(eventId)}/stream?token=${encodeURIComponent(token)}`, endpoint).toString());
  es.addEventListener('moved', () => {
    es.close();
    if (watchdog !== null && !state.reconnecting) void reconnect().then(() => watchdog !== null && followEvent());
  });
  es.addEventListener('ended', () => es.close());
  es.onerror = () => {
    // The mixer died: the watchdog notices the session is gone; follow again once reconnected.
    if (es.readyState === EventSource.CLOSED && watchdog !== null) setTimeout(() => watchdog !== null && !state.reconnecting && followEvent(), 2000);
  };
  state.events = es;
}

/** Notices a session that is gone (no mix for NO_MIX_MS, or ICE/DTLS failed) and re-publishes. */
function watch() {
  followEvent();
  let last = -1;
  let lastChange = performance.now();
  watchdog = setInterval(async () => {
    if (!pc || state.reconnecting) return;
    const failed = ['failed', 'closed'].includes(pc.connectionState);
    const n = await mixPackets();
    if (n !== last) {
      last = n;
      lastChange = performance.now();
    }
    if (failed || (pc.connectionState !== 'new' && pc.connectionState !== 'connecting' && performance.now() - lastChange > NO_MIX_MS)) {
      await reconnect();
      last = -1;
      lastChange = performance.now();
    }
  }, 250);
}

async function reconnect() {
  state.reconnecting = true;
  show(status, 'the session was lost: reconnecting…', 'muted');
  const old = pc;
  pc = null;
  old?.close();
  // The old session is ended first (if its mixer still answers): the resume grant re-joins under
  // the same participant id, which the node refuses (409) while that session lingers.
  let stale = state.session;
  state.session = null;
  for (let attempt = 0; stream && watchdog !== null; attempt++) {
    try {
      if (stale !== null) await Promise.race([hangUp(stale, token), new Promise((r) => setTimeout(r, 1000))]);
      await connect();
      stale = null;
      state.reconnects++;
      state.reconnecting = false;
      state.error = null;
      show(status, `reconnected (${state.reconnects}×)`, 'ok');
      return;
    } catch (err) {
      pc?.close();
      pc = null;
      state.error = String(err.message ?? err);
      if (state.kicked) {
        // The producer removed this presenter: no coming back.
        clearInterval(watchdog);
        watchdog = null;
        state.events?.close();
        show(status, 'removed from the event by its producer', 'err');
        break;
      }
      const wait = Math.max(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)], (err.retryAfter ?? 0) * 1000);
      show(status, `reconnecting (attempt ${attempt + 1}: ${state.error})…`, 'muted');
      await new Promise((r) => setTimeout(r, wait));
    }
  }
  state.reconnecting = false;
}

async function stop() {
  clearInterval(watchdog);
  watchdog = null;
  state.events?.close();
  await hangUp(state.session, token);
  pc?.close();
  pc = null;
  state.connected = false;
  state.session = null;
  show(status, 'stopped', 'muted');
  document.getElementById('start').disabled = false;
  document.getElementById('stop').disabled = true;
}

/** For tests and diagnostics: packets and loss as the browser sees them. */
state.getStats = async () => {
  const out = { packetsSent: 0, packetsReceived: 0, packetsLost: 0 };
  if (!pc) return out;
  (await pc.getStats()).forEach((r) => {
    if (r.type === 'outbound-rtp' && r.kind === 'audio') out.packetsSent += r.packetsSent;
    if (r.type === 'inbound-rtp' && r.kind === 'audio') {
      out.packetsReceived += r.packetsReceived;
      out.packetsLost += r.packetsLost;
    }
  });
  return out;
};

document.getElementById('start').onclick = start;
document.getElementById('stop').onclick = stop;
addEventListener('pagehide', () => void hangUp(state.session, token));
if (q.get('autostart') === '1') start();
