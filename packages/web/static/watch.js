import { createProbe, eventIdFromPath, hangUp, negotiate, params, show } from './mcu-client.js';
import { startHands } from './watch-hands.js';

const q = params();
const eventId = q.get('event') ?? eventIdFromPath();
const token = q.get('token') ?? '';
const endpoint = q.get('whep') ?? new URL(`/whep/${eventId}`, location.href).toString();
const status = document.getElementById('status');
const player = document.getElementById('player');
document.getElementById('event').textContent = eventId;

const state = { connected: false, session: null, error: null, probe: null, reconnects: 0, stalls: 0, retrying: null };
// The program audio never pauses (50 packets/s, silence included): nothing for this long while
// connected means the node or relay serving us is gone or drained us. Play again at once (the node
// places the viewer again) instead of waiting the browser's several seconds for ICE to give up.
const STALL_MS = 1500;
let lastPackets = -1;
let lastProgressAt = 0;
window.mcu = state;
let pc = null;
let retryTimer = null;

async function connect() {
  clearTimeout(retryTimer);
  // On stage the page publishes over WHIP and hears its mix-minus instead.
  if (state.onStage) return;
  lastPackets = -1;
  lastProgressAt = performance.now();
  pc?.close();
  pc = new RTCPeerConnection();
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.ontrack = (e) => {
    stream.addTrack(e.track);
    player.srcObject = stream;
    if (e.track.kind === 'audio') state.probe = createProbe(new MediaStream([e.track]));
  };
  pc.onconnectionstatechange = () => {
    state.connected = pc.connectionState === 'connected';
    show(status, pc.connectionState, state.connected ? 'ok' : 'muted');
    // Reconnect on failure: the node (or another relay) places the viewer again.
    if (pc.connectionState === 'failed' || pc.connectionState === 'disconnected') scheduleReconnect(1000);
  };
  try {
    state.session = await negotiate(pc, endpoint, token);
    state.error = null;
    state.retrying = null;
    // Hands and invitations go to the node this viewer plays from (a relay in a cluster).
    hands.nodeIs(new URL(state.session).origin);
  } catch (err) {
    const message = String(err.message ?? err);
    show(status, message, 'err');
    // A bad or expired link, or an event that does not exist: the page gives up (state.error).
    // Anything else is tried again (state.retrying), as the node's Retry-After says.
    if (err.status === 401 || err.status === 403 || err.status === 404) {
      state.error = message;
      return;
    }
    state.retrying = message;
    scheduleReconnect(err.retryAfter ? err.retryAfter * 1000 : 2000);
  }
}

function scheduleReconnect(ms) {
  clearTimeout(retryTimer);
  if (state.onStage) return;
  retryTimer = setTimeout(() => {
    state.reconnects++;
    void hangUp(state.session, token);
    connect();
  }, ms);
}

setInterval(() => {
  if (!state.probe) return;
  const db = state.probe.level();
  document.getElementById('meter').style.width = `${Math.max(0, Math.min(300, (db + 100) * 3))}px`;
}, 200);

setInterval(async () => {
  if (!pc || !state.connected) return;
  const { packetsReceived } = await state.getStats();
  const now = performance.now();
  if (packetsReceived !== lastPackets) {
    lastPackets = packetsReceived;
    lastProgressAt = now;
  } else if (now - lastProgressAt > STALL_MS) {
    state.stalls++;
    lastProgressAt = now;
    show(status, 'stalled: reconnecting', 'muted');
    scheduleReconnect(0);
  }
}, 250);

state.getStats = async () => {
  const out = { packetsReceived: 0, packetsLost: 0, framesDecoded: 0 };
  if (!pc) return out;
  (await pc.getStats()).forEach((r) => {
    if (r.type === 'inbound-rtp') {
      out.packetsReceived += r.packetsReceived;
      out.packetsLost += r.packetsLost;
      if (r.kind === 'video') out.framesDecoded += r.framesDecoded ?? 0;
    }
  });
  return out;
};

/** For tests and diagnostics: the mean colour (R, G, B) around points of the picture, in 0..1 coordinates. */
state.sample = (points) => {
  const w = player.videoWidth;
  const h = player.videoHeight;
  if (!w || !h) return { width: 0, height: 0, colors: [] };
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const g = canvas.getContext('2d');
  g.drawImage(player, 0, 0, w, h);
  const colors = points.map(([x, y]) => {
    const d = g.getImageData(Math.round(x * w) - 8, Math.round(y * h) - 8, 16, 16).data;
    const c = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) c[k] += d[i + k];
    return c.map((v) => Math.round(v / (d.length / 4)));
  });
  return { width: w, height: h, colors };
};

document.getElementById('unmute').onclick = () => {
  player.muted = false;
  state.probe?.ctx.resume();
};
addEventListener('pagehide', () => void hangUp(state.session, token));

/** Stops watching (going on stage): the WHEP session ends, the player stops. */
function stopWatching() {
  state.onStage = true;
  clearTimeout(retryTimer);
  void hangUp(state.session, token);
  state.session = null;
  if (pc) {
    pc.onconnectionstatechange = null;
    pc.close();
  }
  pc = null;
  state.connected = false;
  state.probe = null;
  player.srcObject = null;
  show(status, 'on stage', 'ok');
}

/** Back to watching the program over WHEP (left the stage). */
function watchAgain() {
  state.onStage = false;
  state.reconnects++;
  connect();
}

const hands = startHands({ state, eventId, token, stopWatching, watchAgain, q });
connect();
