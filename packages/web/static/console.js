// The producer console: events, links and tokens, participants with live levels in Live and
// Backstage columns (go live / back to backstage, a preview of each presenter on its own, mute and
// kick), the layout, a WHEP preview of the program and the delivery tree. Plain DOM, no framework.
import { createProbe, hangUp, negotiate, show } from './mcu-client.js';
import { closeRestreams, openRestreams } from './restream-panel.js';
import { consoleHands } from './console-hands.js';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
const LIST_REFRESH_MS = 3000;
const TREE_REFRESH_MS = 2000;

// Tokens handed out at creation, kept in this tab only (sessionStorage) so links can carry them.
const issued = JSON.parse(sessionStorage.getItem('mcu.tokens') ?? '{}');
const state = {
  token: sessionStorage.getItem('mcu.token') ?? '',
  loggedIn: false,
  /** The open event (as GET /api/events/:id returned it), or null. */
  event: null,
  participants: [],
  dominantSpeaker: null,
  stream: null,
  preview: { pc: null, session: null, token: null },
  /** Previews of single presenters (WHEP ?source=), by participant id: { pc, session, token, video, stream, probe }. */
  sourcePreviews: new Map(),
  treeTimer: null,
  tree: [],
};
// For diagnostics and tests.
window.mcuConsole = state;

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${state.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {}
  if (!res.ok) {
    const err = new Error(json?.error?.message ?? `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return json;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function fail(err) {
  show($('status'), String(err.message ?? err), 'err');
}

// ---- login and the event list ----

async function login() {
  try {
    const { events } = await api('GET', '/api/events');
    state.loggedIn = true;
    $('logout').hidden = false;
    $('events-section').hidden = false;
    renderEvents(events);
    // Reopen the event this tab had open; a producer token lists exactly its own event.
    const open = sessionStorage.getItem('mcu.event');
    if (!state.event && open && events.some((e) => e.id === open)) openEvent(open);
    else if (!state.event && events.length === 1) openEvent(events[0].id);
  } catch (err) {
    state.loggedIn = false;
    fail(err.status === 401 ? new Error('that token is not valid') : err);
  }
}

function logout() {
  closeEvent();
  state.token = '';
  state.loggedIn = false;
  sessionStorage.removeItem('mcu.token');
  $('token').value = '';
  $('logout').hidden = true;
  $('create').hidden = true;
  $('events-section').hidden = true;
  show($('status'), 'logged out', 'muted');
}

async function refreshEvents() {
  if (!state.loggedIn) return;
  try {
    const { events } = await api('GET', '/api/events');
    renderEvents(events);
  } catch (err) {
    fail(err);
  }
}

function renderEvents(events) {
  show($('status'), `logged in · ${events.length} event(s)`, 'ok');
  // Creating needs the admin token; a producer who tries is told so by the API.
  $('create').hidden = false;
  $('events').tBodies[0].replaceChildren(
    ...events.map((e) =>
      el(
        'tr',
        { dataset: { id: e.id, testid: 'event-row' }, class: state.event?.id === e.id ? 'selected' : '' },
        el('td', {}, e.name, ' ', el('span', { class: 'mono muted' }, e.id)),
        el('td', {}, String(e.participants)),
        el('td', { class: 'muted' }, new Date(e.createdAt).toLocaleTimeString()),
        el('td', {}, el('button', { type: 'button', dataset: { testid: 'open-event' }, onclick: () => openEvent(e.id) }, 'Open')),
      ),
    ),
  );
  if (state.event && !events.some((e) => e.id === state.event.id)) {
    closeEvent();
    show($('status'), 'the event has ended', 'muted');
  }
}

async function createEvent() {
  try {
    const name = $('name').value.trim();
    const body = { maxSpeakers: Number($('speakers').value), presentersJoin: $('presenters-join').value };
    if (name) body.name = name;
    const e = await api('POST', '/api/events', body);
    issued[e.id] = e.tokens;
    sessionStorage.setItem('mcu.tokens', JSON.stringify(issued));
    $('name').value = '';
    await refreshEvents();
    await openEvent(e.id);
  } catch (err) {
    fail(err.status === 403 ? new Error('creating events needs the admin token') : err);
  }
}

// ---- one event ----

async function openEvent(id) {
  closeEvent();
  let e;
  try {
    e = await api('GET', `/api/events/${encodeURIComponent(id)}`);
  } catch (err) {
    return fail(err);
  }
  state.event = e;
  sessionStorage.setItem('mcu.event', id);
  $('event').hidden = false;
  $('event-name').textContent = e.name;
  $('event-id').textContent = e.id;
  for (const row of $('events').tBodies[0].rows) row.classList.toggle('selected', row.dataset.id === id);

  const t = issued[e.id];
  $('whip-url').value = e.whip;
  $('whep-url').value = e.whep;
  $('presenter-token').value = t?.presenter ?? '';
  $('viewer-token').value = t?.viewer ?? '';
  $('producer-token').value = t?.producer ?? '';
  $('tokens-missing').hidden = Boolean(t);
  $('publish-link').href = `/publish/${e.id}?token=${encodeURIComponent(t?.presenter ?? state.token)}`;
  $('watch-link').href = `/watch/${e.id}?token=${encodeURIComponent(t?.viewer ?? state.token)}`;

  showLayout(e.layout);
  state.participants = e.participants;
  state.dominantSpeaker = e.dominantSpeaker;
  renderParticipants();
  openStream(e.id);
  hands.open(e.id);
  startPreview();
  refreshTree();
  state.treeTimer = setInterval(refreshTree, TREE_REFRESH_MS);
  openRestreams(e.id, api);
}

function closeEvent() {
  state.stream?.close();
  state.stream = null;
  clearInterval(state.treeTimer);
  state.treeTimer = null;
  stopPreview();
  for (const id of [...state.sourcePreviews.keys()]) stopSourcePreview(id);
  closeRestreams();
  hands.close();
  state.event = null;
  state.participants = [];
  sessionStorage.removeItem('mcu.event');
  $('event').hidden = true;
  for (const row of $('events').tBodies[0].rows) row.classList.remove('selected');
}

async function endEvent() {
  const e = state.event;
  if (!e || !confirm(`End "${e.name}"? Every presenter and viewer is disconnected.`)) return;
  try {
    await api('DELETE', `/api/events/${encodeURIComponent(e.id)}`);
    closeEvent();
    show($('status'), `ended ${e.name}`, 'ok');
    await refreshEvents();
  } catch (err) {
    fail(err);
  }
}

// ---- live participants: `participants` and `levels` server-sent events ----

function openStream(id) {
  // EventSource cannot send headers: the token goes in the query string.
  const es = new EventSource(`/api/events/${encodeURIComponent(id)}/stream?token=${encodeURIComponent(state.token)}`);
  state.stream = es;
  es.addEventListener('participants', (m) => {
    state.participants = JSON.parse(m.data).participants;
    renderParticipants();
  });
  es.addEventListener('levels', (m) => updateLevels(JSON.parse(m.data)));
  es.addEventListener('hands', (m) => hands.update(JSON.parse(m.data).hands));
  es.addEventListener('hand-update', (m) => hands.change(JSON.parse(m.data)));
  es.addEventListener('ended', () => {
    closeEvent();
    show($('status'), 'the event has ended', 'muted');
    refreshEvents();
  });
  // Another mixer holds the event now (failover, handover): the same URL leads there.
  es.addEventListener('moved', (m) => {
    es.close();
    show($('status'), `the event moved to mixer ${JSON.parse(m.data).to}`, 'ok');
    openStream(id);
  });
}

function label(p) {
  return p.name ?? `${p.kind.toUpperCase()} ${p.id.slice(0, 8)}`;
}

function participantRow(p) {
  const backstage = p.stage === 'backstage';
  const previewing = state.sourcePreviews.has(p.id);
  return el(
    'tr',
    { dataset: { id: p.id, testid: 'participant', stage: p.stage ?? 'live', muted: String(p.muted), level: '0', speaker: 'false' } },
    el(
      'td',
      {},
      el('span', { class: 'name' }, label(p)),
      ' ',
      el('span', { class: 'badge', title: 'active speaker' }, 'speaking'),
      el('div', { class: 'source-preview', dataset: { testid: 'source-preview-slot' } }),
    ),
    el('td', {}, el('span', { class: 'meter-track' }, el('span', { class: 'meter-fill', dataset: { testid: 'level' } }))),
    el(
      'td',
      {},
      backstage
        ? el('button', { type: 'button', dataset: { testid: 'go-live' }, title: 'put on air: in the program from the next tick', onclick: () => setStage(p.id, 'live') }, 'Go live')
        : el('button', { type: 'button', dataset: { testid: 'to-backstage' }, title: 'take off air: out of the program, hears it still', onclick: () => setStage(p.id, 'backstage') }, 'Back to backstage'),
      ' ',
      el('button', { type: 'button', dataset: { testid: 'preview' }, title: 'this presenter alone, as it arrives', onclick: () => toggleSourcePreview(p.id) }, previewing ? 'Stop preview' : 'Preview'),
      ' ',
      el('button', { type: 'button', dataset: { testid: 'mute' }, onclick: () => setMuted(p.id) }, p.muted ? 'Unmute' : 'Mute'),
      ' ',
      el('button', { type: 'button', class: 'danger', dataset: { testid: 'kick' }, onclick: () => kick(p.id) }, 'Kick'),
    ),
  );
}

function renderParticipants() {
  const live = [];
  const backstage = [];
  for (const p of state.participants) (p.stage === 'backstage' ? backstage : live).push(participantRow(p));
  $('participants-live').tBodies[0].replaceChildren(...live);
  $('participants-backstage').tBodies[0].replaceChildren(...backstage);
  $('live-count').textContent = `(${live.length})`;
  $('backstage-count').textContent = `(${backstage.length})`;
  const n = live.length + backstage.length;
  $('no-participants').hidden = n > 0;
  $('participant-count').textContent = n ? `(${n})` : '';
  // Open previews follow their presenter into its new row; a presenter gone ends its preview.
  for (const id of [...state.sourcePreviews.keys()]) {
    if (state.participants.some((p) => p.id === id)) placeSourcePreview(id);
    else stopSourcePreview(id);
  }
  updateSourceChoices();
}

function rowOf(id) {
  return $('participants').querySelector(`tr[data-id="${CSS.escape(id)}"]`);
}

function updateLevels({ participants, dominantSpeaker }) {
  state.dominantSpeaker = dominantSpeaker;
  for (const p of participants) {
    const row = rowOf(p.id);
    if (!row) continue;
    if (p.stage && row.dataset.stage !== p.stage) {
      // Moved (by another console, the CLI): the participants event follows; show it now.
      const known = state.participants.find((q) => q.id === p.id);
      if (known) known.stage = p.stage;
      renderParticipants();
      return updateLevels({ participants, dominantSpeaker });
    }
    row.dataset.level = String(p.level);
    row.dataset.dbov = String(p.dbov);
    row.dataset.muted = String(p.muted);
    row.dataset.speaking = String(p.speaking);
    row.dataset.speaker = String(p.id === dominantSpeaker);
    row.classList.toggle('active-speaker', p.id === dominantSpeaker);
    row.classList.toggle('is-muted', p.muted);
    row.querySelector('.meter-fill').style.width = `${Math.round(p.level * 100)}%`;
    row.querySelector('[data-testid="mute"]').textContent = p.muted ? 'Unmute' : 'Mute';
  }
}

async function setMuted(id) {
  const row = rowOf(id);
  const muted = row?.dataset.muted !== 'true';
  try {
    const p = await api('PATCH', `/api/events/${encodeURIComponent(state.event.id)}/participants/${encodeURIComponent(id)}`, { muted });
    if (row) {
      row.dataset.muted = String(p.muted);
      row.classList.toggle('is-muted', p.muted);
      row.querySelector('[data-testid="mute"]').textContent = p.muted ? 'Unmute' : 'Mute';
    }
  } catch (err) {
    fail(err);
  }
}

/** Go live / back to backstage: the program changes on the next tick, nothing is renegotiated. */
async function setStage(id, stage) {
  try {
    const p = await api('PATCH', `/api/events/${encodeURIComponent(state.event.id)}/participants/${encodeURIComponent(id)}`, { stage });
    const known = state.participants.find((q) => q.id === id);
    if (known) Object.assign(known, { stage: p.stage, muted: p.muted });
    renderParticipants();
  } catch (err) {
    fail(err);
  }
}

// ---- one presenter on its own: WHEP ?source=<participant> (its own packets, as received) ----

function toggleSourcePreview(id) {
  if (state.sourcePreviews.has(id)) stopSourcePreview(id);
  else startSourcePreview(id);
}

async function startSourcePreview(id) {
  const e = state.event;
  if (!e || state.sourcePreviews.has(id)) return;
  const token = issued[e.id]?.producer ?? state.token;
  const pc = new RTCPeerConnection();
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const stream = new MediaStream();
  const video = el('video', { autoplay: '', playsinline: '', controls: '', dataset: { testid: 'source-preview' } });
  video.muted = true;
  const preview = { pc, session: null, token, video, stream, probe: null };
  state.sourcePreviews.set(id, preview);
  pc.ontrack = (ev) => {
    stream.addTrack(ev.track);
    video.srcObject = stream;
    // What the preview carries, for a glance (and for tests): power at a frequency, overall level.
    if (ev.track.kind === 'audio' && !preview.probe) preview.probe = createProbe(stream);
  };
  placeSourcePreview(id);
  const button = rowOf(id)?.querySelector('[data-testid="preview"]');
  if (button) button.textContent = 'Stop preview';
  try {
    preview.session = await negotiate(pc, `${e.whep}?source=${encodeURIComponent(id)}`, token);
  } catch (err) {
    fail(err);
    stopSourcePreview(id);
  }
}

/** Puts a preview's video into its presenter's row (rows are rebuilt when the list changes). */
function placeSourcePreview(id) {
  const preview = state.sourcePreviews.get(id);
  const slot = rowOf(id)?.querySelector('.source-preview');
  if (!preview || !slot || preview.video.parentElement === slot) return;
  slot.replaceChildren(preview.video);
  // A media element taken out of the document pauses: play on in its new place.
  void preview.video.play().catch(() => undefined);
}

function stopSourcePreview(id) {
  const preview = state.sourcePreviews.get(id);
  if (!preview) return;
  state.sourcePreviews.delete(id);
  void hangUp(preview.session, preview.token);
  preview.pc.close();
  void preview.probe?.ctx.close().catch(() => undefined);
  preview.video.srcObject = null;
  preview.video.remove();
  const button = rowOf(id)?.querySelector('[data-testid="preview"]');
  if (button) button.textContent = 'Preview';
}

async function kick(id) {
  if (!confirm(`Remove ${id.slice(0, 8)} from the event?`)) return;
  try {
    await api('DELETE', `/api/events/${encodeURIComponent(state.event.id)}/participants/${encodeURIComponent(id)}`);
    rowOf(id)?.remove();
  } catch (err) {
    fail(err);
  }
}

// ---- layout ----

function showLayout(layout) {
  $('layout-kind').value = layout.kind === 'custom' ? 'grid' : layout.kind;
  $('layout-current').textContent = `now: ${layout.kind}${layout.sourceId ? ` (${layout.sourceId.slice(0, 8)})` : ''}`;
  $('layout-source').dataset.selected = layout.sourceId ?? '';
  updateSourceChoices();
}

function updateSourceChoices() {
  const select = $('layout-source');
  const wanted = select.value || select.dataset.selected || '';
  select.replaceChildren(...state.participants.map((p) => el('option', { value: p.id }, label(p))));
  if (state.participants.some((p) => p.id === wanted)) select.value = wanted;
  select.disabled = $('layout-kind').value !== 'presentation';
}

async function applyLayout() {
  const kind = $('layout-kind').value;
  const body = { kind };
  if (kind === 'presentation') {
    if (!$('layout-source').value) return fail(new Error('pick the presentation source'));
    body.sourceId = $('layout-source').value;
  }
  try {
    const { layout } = await api('PUT', `/api/events/${encodeURIComponent(state.event.id)}/layout`, body);
    showLayout(layout);
  } catch (err) {
    fail(err);
  }
}

// ---- program preview over WHEP ----

async function startPreview() {
  const e = state.event;
  if (!e || state.preview.pc) return;
  const token = issued[e.id]?.viewer ?? state.token;
  const pc = new RTCPeerConnection();
  state.preview = { pc, session: null, token };
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.ontrack = (ev) => {
    stream.addTrack(ev.track);
    $('program').srcObject = stream;
  };
  pc.onconnectionstatechange = () => show($('preview-status'), pc.connectionState, pc.connectionState === 'connected' ? 'ok' : 'muted');
  $('preview-toggle').textContent = 'Stop preview';
  try {
    state.preview.session = await negotiate(pc, e.whep, token);
  } catch (err) {
    show($('preview-status'), String(err.message ?? err), 'err');
  }
}

function stopPreview() {
  const { pc, session, token } = state.preview;
  if (!pc) return;
  void hangUp(session, token);
  pc.close();
  state.preview = { pc: null, session: null, token: null };
  $('program').srcObject = null;
  $('preview-toggle').textContent = 'Start preview';
  show($('preview-status'), 'stopped', 'muted');
}

// ---- delivery tree ----

async function refreshTree() {
  const e = state.event;
  if (!e) return;
  try {
    const { nodes, holder } = await api('GET', `/api/events/${encodeURIComponent(e.id)}/tree`);
    if (state.event?.id !== e.id) return;
    state.tree = nodes;
    drawTree(nodes);
    // Several mixers: which one holds the event (its lease epoch) and who would take it over.
    const held = $('tree-holder');
    held.hidden = !holder;
    if (holder) held.textContent = `held by ${holder.id} (epoch ${holder.epoch}) · standby: ${holder.standby.length ? holder.standby.join(', ') : 'none'}`;
  } catch (err) {
    if (err.status === 404) return;
    fail(err);
  }
}

/** Nodes in rows by depth, each row spread evenly; a line from each node to its parent. */
function drawTree(nodes) {
  const svg = $('tree');
  const width = Math.max(320, svg.clientWidth || 800);
  const boxW = 150;
  const boxH = 44;
  const rowH = 76;
  const byDepth = new Map();
  for (const n of nodes) {
    if (!byDepth.has(n.depth)) byDepth.set(n.depth, []);
    byDepth.get(n.depth).push(n);
  }
  const pos = new Map();
  for (const [depth, row] of byDepth) {
    row.sort((a, b) => (a.parent ?? '').localeCompare(b.parent ?? '') || a.id.localeCompare(b.id));
    row.forEach((n, i) => pos.set(n.id, { x: ((i + 0.5) * width) / row.length, y: 12 + depth * rowH }));
  }
  const maxDepth = Math.max(0, ...byDepth.keys());
  svg.setAttribute('height', String(24 + (maxDepth + 1) * rowH - (rowH - boxH)));
  svg.setAttribute('viewBox', `0 0 ${width} ${24 + (maxDepth + 1) * rowH - (rowH - boxH)}`);
  const shapes = [];
  for (const n of nodes) {
    const p = n.parent === null ? null : pos.get(n.parent);
    const c = pos.get(n.id);
    if (p) shapes.push(svgEl('line', { x1: p.x, y1: p.y + boxH, x2: c.x, y2: c.y, class: 'edge' }));
  }
  for (const n of nodes) {
    const { x, y } = pos.get(n.id);
    const g = svgEl('g', { 'data-testid': 'tree-node', 'data-id': n.id, 'data-role': n.role, 'data-viewers': n.viewers, 'data-load': n.load, class: `node ${n.role}` });
    // Green to red with load.
    const hue = Math.round(120 * (1 - Math.min(1, n.load)));
    g.append(
      svgEl('rect', { x: x - boxW / 2, y, width: boxW, height: boxH, rx: 6, fill: `hsl(${hue} 60% 88%)`, stroke: `hsl(${hue} 50% 35%)` }),
      svgText(x, y + 17, `${n.role === 'mixer' ? '◆ ' : ''}${n.id.length > 18 ? `${n.id.slice(0, 17)}…` : n.id}`, 'title'),
      svgText(x, y + 35, `${n.viewers}/${n.capacity} viewers · ${Math.round(n.load * 100)}%${n.cpu !== undefined ? ` · cpu ${Math.round(n.cpu * 100)}%` : ''}`, 'detail'),
    );
    shapes.push(g);
  }
  svg.replaceChildren(...shapes);
  const viewers = nodes.reduce((s, n) => s + n.viewers, 0);
  $('tree-summary').textContent = `${nodes.length} node(s) · ${viewers} viewer(s) · depth ${maxDepth}`;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function svgText(x, y, text, cls) {
  const t = svgEl('text', { x, y, 'text-anchor': 'middle', class: cls });
  t.textContent = text;
  return t;
}

// ---- copy buttons ----

async function copy(button) {
  const input = $(button.dataset.copy);
  if (!input.value) return;
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    // Plain http on a non-local host is not a secure context: no Clipboard API there.
    input.select();
    document.execCommand('copy');
  }
  const before = button.textContent;
  button.textContent = 'Copied';
  setTimeout(() => (button.textContent = before), 1200);
}

// ---- wiring ----

const hands = consoleHands({ api, el, fail, state });

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  state.token = $('token').value.trim();
  sessionStorage.setItem('mcu.token', state.token);
  login();
});
$('logout').onclick = logout;
$('create-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  createEvent();
});
$('end-event').onclick = endEvent;
$('close-event').onclick = closeEvent;
$('layout-kind').onchange = () => updateSourceChoices();
$('layout-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  applyLayout();
});
$('preview-toggle').onclick = () => (state.preview.pc ? stopPreview() : startPreview());
$('preview-sound').onclick = () => {
  const v = $('program');
  v.muted = !v.muted;
  $('preview-sound').textContent = v.muted ? 'Sound on' : 'Sound off';
};
for (const b of document.querySelectorAll('[data-copy]')) b.onclick = () => copy(b);
addEventListener('pagehide', () => {
  stopPreview();
  for (const id of [...state.sourcePreviews.keys()]) stopSourcePreview(id);
});

$('token').value = state.token;
if (state.token) login();
setInterval(refreshEvents, LIST_REFRESH_MS);
