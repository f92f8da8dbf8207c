import { show } from './mcu-client.js';

const status = document.getElementById('status');
const tokenInput = document.getElementById('token');
const tbody = document.querySelector('#events tbody');
// Tokens handed out at creation, kept in this tab only so that links can carry them.
const issued = JSON.parse(sessionStorage.getItem('mcu.tokens') ?? '{}');
let token = sessionStorage.getItem('mcu.token') ?? '';
tokenInput.value = token;

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error(json?.error?.message ?? `HTTP ${res.status}`);
  return json;
}

function cell(content) {
  const td = document.createElement('td');
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  return td;
}

function link(text, href) {
  const a = document.createElement('a');
  a.href = href;
  a.textContent = text;
  a.target = '_blank';
  return a;
}

async function refresh() {
  try {
    const { events } = await api('GET', '/api/events');
    show(status, `logged in · ${events.length} event(s)`, 'ok');
    document.getElementById('create').hidden = false;
    tbody.replaceChildren(
      ...events.map((e) => {
        const tr = document.createElement('tr');
        tr.dataset.id = e.id;
        const t = issued[e.id];
        const links = document.createElement('div');
        if (t) {
          links.append(link('publish', `/publish/${e.id}?token=${t.presenter}`), ' · ', link('watch', `/watch/${e.id}?token=${t.viewer}`));
          const urls = document.createElement('div');
          urls.className = 'mono muted';
          urls.textContent = `WHIP ${e.whip} · WHEP ${e.whep} · OBS: Settings → Stream → Service "WHIP", Server = WHIP URL, Bearer Token = presenter token`;
          links.append(urls);
        } else {
          links.append(`WHIP ${e.whip} · WHEP ${e.whep}`);
        }
        const end = document.createElement('button');
        end.textContent = 'End';
        end.onclick = async () => {
          await api('DELETE', `/api/events/${e.id}`);
          refresh();
        };
        tr.append(cell(`${e.name} (${e.id})`), cell(String(e.participants)), cell(e.speakers.length ? e.speakers.join(', ') : '—'), cell(links), cell(end));
        return tr;
      }),
    );
  } catch (err) {
    show(status, String(err.message), 'err');
  }
}

document.getElementById('login').onclick = () => {
  token = tokenInput.value.trim();
  sessionStorage.setItem('mcu.token', token);
  refresh();
};
document.getElementById('createBtn').onclick = async () => {
  try {
    const name = document.getElementById('name').value.trim();
    const body = { maxSpeakers: Number(document.getElementById('speakers').value) };
    if (name) body.name = name;
    const e = await api('POST', '/api/events', body);
    issued[e.id] = e.tokens;
    sessionStorage.setItem('mcu.tokens', JSON.stringify(issued));
    refresh();
  } catch (err) {
    show(status, String(err.message), 'err');
  }
};
if (token) refresh();
setInterval(() => token && refresh(), 3000);
