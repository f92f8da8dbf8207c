// The producer console's raised hands: the queue in order with each viewer's name and waiting
// time, Invite (live or backstage) and Lower buttons, and invitation links (named viewer tokens).
// The queue comes on the event stream (`hands`), the waiting times tick here.

const $ = (id) => document.getElementById(id);

function waiting(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

/**
 * `api(method, path, body)` is the console's API call, `el` its element builder; returns the
 * handlers the console wires to the event's stream and lifetime.
 */
export function consoleHands({ api, el, fail, state }) {
  state.hands = [];
  let eventId = null;
  let timer = null;
  /** Server clock minus ours, from the waiting times the server computed. */
  let skewMs = 0;

  function render() {
    const now = Date.now();
    const rows = state.hands.map((h) => {
      const invited = h.state !== 'raised';
      return el(
        'tr',
        { dataset: { testid: 'hand', id: h.id, state: h.state } },
        el('td', {}, el('span', { class: 'name', dataset: { testid: 'hand-name' } }, h.name)),
        el('td', { class: 'muted', dataset: { testid: 'hand-waiting', raisedAt: String(h.raisedAt) } }, waiting(now + skewMs - h.raisedAt)),
        el(
          'td',
          {},
          invited ? el('span', { class: 'badge' }, h.state === 'on_stage' ? 'on stage' : `invited (${h.invitation.stage})`) : '',
          ' ',
          el('button', { type: 'button', dataset: { testid: 'invite', stage: 'live' }, onclick: () => invite(h.id, 'live') }, 'Invite live'),
          ' ',
          el('button', { type: 'button', dataset: { testid: 'invite', stage: 'backstage' }, onclick: () => invite(h.id, 'backstage') }, 'Invite backstage'),
          ' ',
          el('button', { type: 'button', class: 'danger', dataset: { testid: 'lower-hand' }, onclick: () => lower(h.id) }, 'Lower'),
        ),
      );
    });
    // A guest on stage cannot be invited again.
    // A guest on stage cannot be lowered either: Kick in the participants list ends its time on stage.
    for (const row of rows) {
      const onStage = row.dataset.state === 'on_stage';
      for (const b of row.querySelectorAll('[data-testid="invite"], [data-testid="lower-hand"]')) b.disabled = onStage;
      if (onStage) row.querySelector('[data-testid="lower-hand"]').title = 'on stage: Kick the guest in the participants list to end it';
    }
    $('hands').tBodies[0].replaceChildren(...rows);
    $('no-hands').hidden = rows.length > 0;
    $('hand-count').textContent = rows.length ? `(${rows.length})` : '';
  }

  function tick() {
    const now = Date.now();
    for (const cell of $('hands').querySelectorAll('[data-testid="hand-waiting"]')) cell.textContent = waiting(now + skewMs - Number(cell.dataset.raisedAt));
  }

  function update(hands) {
    state.hands = hands;
    if (hands.length > 0) skewMs = hands[0].raisedAt + hands[0].waitingMs - Date.now();
    render();
  }

  async function invite(id, stage) {
    try {
      await api('POST', `/api/events/${encodeURIComponent(eventId)}/hands/${encodeURIComponent(id)}/invite`, { stage });
    } catch (err) {
      fail(err);
    }
  }

  async function lower(id) {
    try {
      await api('DELETE', `/api/events/${encodeURIComponent(eventId)}/hands/${encodeURIComponent(id)}`);
    } catch (err) {
      if (err.status !== 404) fail(err);
    }
  }

  async function inviteLink() {
    const name = $('invite-name').value.trim();
    try {
      const { watch } = await api('POST', `/api/events/${encodeURIComponent(eventId)}/viewer-tokens`, name ? { name } : {});
      $('invite-link').value = watch;
    } catch (err) {
      fail(err);
    }
  }

  $('invite-link-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    inviteLink();
  });

  return {
    /** The console opened an event: its queue now, then from the stream. */
    async open(id) {
      eventId = id;
      $('invite-link').value = '';
      clearInterval(timer);
      timer = setInterval(tick, 1000);
      try {
        update((await api('GET', `/api/events/${encodeURIComponent(id)}/hands`)).hands);
      } catch (err) {
        if (err.status !== 404) fail(err);
      }
    },
    /** `hands` from the event stream: the whole queue. */
    update,
    /** `hand-update` from the event stream: one hand changed (`hand`) or went (`hand: null`). */
    change({ id, hand }) {
      const rest = state.hands.filter((h) => h.id !== id);
      if (hand) {
        rest.push(hand);
        rest.sort((a, b) => a.raisedAt - b.raisedAt || (a.id < b.id ? -1 : 1));
      }
      update(rest);
    },
    close() {
      eventId = null;
      clearInterval(timer);
      timer = null;
      state.hands = [];
      render();
    },
  };
}
