// The console's Restream panel: push the open event's program to an RTMP(S) ingest (YouTube,
// Twitch, any RTMP server), see each restream's state, bytes and reconnects, stop it.
// The URL field is a password field (the stream key stays hidden on a shared screen) and is
// cleared once sent; the node only ever answers with the key masked.
import { show } from './mcu-client.js';

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;
const panel = { eventId: null, api: null, timer: null };

function size(bytes) {
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} kB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function render(restreams) {
  const body = $('restreams').tBodies[0];
  body.replaceChildren(
    ...restreams.map((r) => {
      const row = document.createElement('tr');
      row.dataset.id = r.id;
      const stop = document.createElement('button');
      stop.type = 'button';
      stop.textContent = 'Stop';
      stop.dataset.testid = 'restream-stop';
      stop.onclick = () => stopRestream(r.id);
      const cells = [r.url, r.state, size(r.bytes), String(r.reconnects)].map((text, i) => {
        const td = document.createElement('td');
        td.textContent = text;
        if (i === 0) td.className = 'mono';
        if (i === 1) {
          td.className = `restream-${r.state}`;
          if (r.lastError && r.state !== 'live') td.title = r.lastError;
        }
        return td;
      });
      const last = document.createElement('td');
      last.append(stop);
      row.append(...cells, last);
      return row;
    }),
  );
  $('restreams').hidden = restreams.length === 0;
  const live = restreams.filter((r) => r.state === 'live').length;
  $('restream-summary').textContent = restreams.length === 0 ? '' : `${live} of ${restreams.length} live`;
}

async function refresh() {
  const id = panel.eventId;
  if (!id) return;
  try {
    const { restreams } = await panel.api('GET', `/api/events/${encodeURIComponent(id)}/restreams`);
    if (panel.eventId === id) render(restreams);
  } catch (err) {
    show($('restream-status'), String(err.message ?? err), 'err');
  }
}

async function startRestream() {
  const input = $('restream-url');
  const url = input.value.trim();
  if (!url) return show($('restream-status'), 'paste the RTMP URL with its stream key', 'err');
  try {
    const r = await panel.api('POST', `/api/events/${encodeURIComponent(panel.eventId)}/restreams`, { url });
    input.value = '';
    show($('restream-status'), `started: ${r.url}`, 'ok');
    await refresh();
  } catch (err) {
    show($('restream-status'), String(err.message ?? err), 'err');
  }
}

async function stopRestream(id) {
  try {
    const r = await panel.api('DELETE', `/api/events/${encodeURIComponent(panel.eventId)}/restreams/${encodeURIComponent(id)}`);
    show($('restream-status'), `stopped: ${r.url}`, 'ok');
    await refresh();
  } catch (err) {
    show($('restream-status'), String(err.message ?? err), 'err');
  }
}

/** Shows the panel for an event; `api(method, path, body)` is the console's authorized fetch. */
export function openRestreams(eventId, api) {
  closeRestreams();
  panel.eventId = eventId;
  panel.api = api;
  show($('restream-status'), '');
  render([]);
  refresh();
  panel.timer = setInterval(refresh, REFRESH_MS);
}

export function closeRestreams() {
  clearInterval(panel.timer);
  panel.timer = null;
  panel.eventId = null;
}

$('restream-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  startRestream();
});
