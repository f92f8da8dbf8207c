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

const state = { connected: false, session: null, error: null, probe: null, stats: null };
window.mcu = state;
let pc = null;

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

async function start() {
  document.getElementById('start').disabled = true;
  try {
    const source = document.getElementById('source').value;
    const freq = Number(document.getElementById('tone').value);
    const stream = source === 'test' ? testStream(freq, q.get('color') ?? '#c0392b') : await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    document.getElementById('preview').srcObject = stream;
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
    pc.onconnectionstatechange = () => {
      state.connected = pc.connectionState === 'connected';
      show(status, pc.connectionState, state.connected ? 'ok' : pc.connectionState === 'failed' ? 'err' : 'muted');
    };
    state.session = await negotiate(pc, endpointWithName(), token);
    document.getElementById('stop').disabled = false;
  } catch (err) {
    state.error = String(err.message ?? err);
    show(status, state.error, 'err');
    document.getElementById('start').disabled = false;
  }
}

async function stop() {
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
