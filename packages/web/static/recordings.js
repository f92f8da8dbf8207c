// The console's recordings panel: a Record button (age recipients remembered per browser), the
// running recording's duration and size, and the event's recordings with download links (each
// segment as stored: age ciphertext, opened with `age -d -i key.txt`). It follows the event the
// console has open (window.mcuConsole) and talks to the same API with the same token.
const $ = (id) => document.getElementById(id);
const RECIPIENTS_KEY = 'mcu.recordingRecipients';
const REFRESH_MS = 1000;
let shownEvent = null;
let busy = false;

function consoleState() {
  return window.mcuConsole ?? null;
}

async function api(method, path, body) {
  const token = consoleState()?.token ?? '';
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {}
  if (!res.ok) throw new Error(json?.error?.message ?? `HTTP ${res.status}`);
  return json;
}

function sizeText(bytes) {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

function durationText(ms) {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function status(text, cls = 'muted') {
  const s = $('record-status');
  s.textContent = text;
  s.className = cls;
}

function recipients() {
  return $('record-recipients')
    .value.split(/[\s,]+/)
    .map((r) => r.trim())
    .filter(Boolean);
}

async function record() {
  const e = consoleState()?.event;
  if (!e || busy) return;
  busy = true;
  try {
    const running = (await api('GET', `/api/events/${encodeURIComponent(e.id)}/recordings`)).recordings.find((r) => r.state === 'recording');
    if (running) {
      await api('DELETE', `/api/events/${encodeURIComponent(e.id)}/recordings/${encodeURIComponent(running.id)}`);
      status('recording stopped', 'ok');
    } else {
      const list = recipients();
      localStorage.setItem(RECIPIENTS_KEY, list.join('\n'));
      await api('POST', `/api/events/${encodeURIComponent(e.id)}/recordings`, list.length > 0 ? { recipients: list } : {});
      status('recording', 'ok');
    }
  } catch (err) {
    status(String(err.message ?? err), 'err');
  } finally {
    busy = false;
  }
  await refresh();
}

function render(eventId, recordings) {
  const tbody = $('recordings').tBodies[0];
  tbody.replaceChildren();
  const token = consoleState()?.token ?? '';
  for (const r of [...recordings].reverse()) {
    const links = document.createElement('td');
    for (let n = 0; n < (r.segmentCount ?? 0); n++) {
      const a = document.createElement('a');
      a.href = `/api/events/${encodeURIComponent(eventId)}/recordings/${encodeURIComponent(r.id)}/segments/${n}?token=${encodeURIComponent(token)}`;
      a.textContent = `#${n}`;
      a.setAttribute('download', '');
      links.append(a, ' ');
    }
    const tr = document.createElement('tr');
    tr.dataset.id = r.id;
    for (const text of [r.startedAt.replace('T', ' ').slice(0, 19), r.state, durationText(r.durationMs ?? 0), sizeText(r.size ?? 0), r.rendition ?? 'audio only']) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    tr.append(links);
    tbody.append(tr);
  }
  $('no-recordings').hidden = recordings.length > 0;
  const running = recordings.find((r) => r.state === 'recording');
  $('record-toggle').textContent = running ? 'Stop recording' : 'Record';
  $('record-toggle').classList.toggle('danger', Boolean(running));
  $('record-running').textContent = running ? `● ${durationText(running.durationMs ?? 0)} · ${sizeText(running.size ?? 0)}` : '';
}

async function refresh() {
  const e = consoleState()?.event;
  $('recordings-section').hidden = !e;
  if (!e) {
    shownEvent = null;
    return;
  }
  if (shownEvent !== e.id) {
    shownEvent = e.id;
    status('');
  }
  try {
    render(e.id, (await api('GET', `/api/events/${encodeURIComponent(e.id)}/recordings`)).recordings);
  } catch (err) {
    status(String(err.message ?? err), 'err');
  }
}

$('record-recipients').value = localStorage.getItem(RECIPIENTS_KEY) ?? '';
$('record-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  record();
});
setInterval(refresh, REFRESH_MS);
refresh();
