// The viewer's hand and its way on stage, on the watch page: a name when the token has none, Raise
// hand / Lower hand, the event stream of the node the viewer plays from (a relay in a cluster) that
// brings the invitation, then camera and microphone over WHIP with the invitation's single-use grant
// (hearing the program's mix-minus), and Leave stage back to watching over WHEP.
import { createProbe, hangUp, negotiate, show } from './mcu-client.js';
import { toneStream } from './test-source.js';

const $ = (id) => document.getElementById(id);

/** The claims of a token (read only for its name; the server checks the signature). */
function claimsOf(token) {
  try {
    return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
  } catch {
    return {};
  }
}

export function startHands({ state, eventId, token, stopWatching, watchAgain, q }) {
  const tokenName = claimsOf(token).name ?? null;
  // The token the hand goes with: a public link's token is shared by many viewers, so a viewer
  // without a name of its own asks its node for a token of its own (with the name it typed) first.
  const savedKey = `mcu.handToken.${eventId}`;
  let handToken = tokenName ? token : (sessionStorage.getItem(savedKey) ?? null);
  const status = $('hand-status');
  const nameInput = $('viewer-name');
  // Diagnostics and tests: the hand, the stage, the node's event stream.
  Object.assign(state, { hand: null, stage: null, handEvents: [], nodeOrigin: null, name: tokenName });
  let events = null;

  if (!tokenName) {
    $('name-row').hidden = false;
    nameInput.value = q.get('name') ?? localStorage.getItem('mcu.viewerName') ?? '';
    nameInput.onchange = () => localStorage.setItem('mcu.viewerName', nameInput.value.trim());
  }

  function render() {
    const onStage = state.stage !== null;
    $('raise').hidden = onStage || state.hand !== null;
    $('lower').hidden = onStage || state.hand === null;
    $('leave').hidden = !onStage;
    $('stage').hidden = !onStage;
    $('raise').disabled = state.nodeOrigin === null;
    if (onStage) show(status, state.stage.connected ? `on stage (${state.stage.stage})` : 'joining the stage…', 'ok');
    else if (state.hand?.state === 'invited') show(status, 'invited on stage…', 'ok');
    else if (state.hand) show(status, 'hand raised: the producer sees it', 'ok');
  }

  async function call(method, path, body, as = handToken ?? token) {
    const res = await fetch(`${state.nodeOrigin}${path}`, {
      method,
      headers: { authorization: `Bearer ${as}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    const json = text ? JSON.parse(text) : null;
    if (!res.ok) {
      const err = new Error(json?.error?.message ?? `HTTP ${res.status}`);
      err.status = res.status;
      err.retryAfter = Number(res.headers.get('retry-after') ?? 0);
      throw err;
    }
    return json;
  }

  async function raise() {
    const name = tokenName ?? nameInput.value.trim();
    if (!name) {
      show(status, 'type your name first', 'err');
      nameInput.focus();
      return;
    }
    try {
      if (!handToken) {
        handToken = (await call('POST', `/api/events/${encodeURIComponent(eventId)}/viewer-tokens`, { name }, token)).token;
        sessionStorage.setItem(savedKey, handToken);
        listen();
      }
      state.hand = await call('POST', `/api/events/${encodeURIComponent(eventId)}/hands`, {});
      render();
    } catch (err) {
      show(status, err.status === 429 ? `too many requests: try again in ${err.retryAfter} s` : String(err.message), 'err');
    }
  }

  async function lower() {
    if (!state.hand) return;
    try {
      await call('DELETE', `/api/events/${encodeURIComponent(eventId)}/hands/${encodeURIComponent(state.hand.id)}`);
    } catch (err) {
      if (err.status !== 404) return show(status, String(err.message), 'err');
    }
    state.hand = null;
    show(status, 'hand lowered', 'muted');
    render();
  }

  /** The node's event stream: the hand's state, invitations, lowered, moved, done. */
  function listen() {
    events?.close();
    events = new EventSource(`${state.nodeOrigin}/api/events/${encodeURIComponent(eventId)}/stream?events=hands&token=${encodeURIComponent(handToken ?? token)}`);
    const on = (name, fn) =>
      events.addEventListener(name, (m) => {
        const data = JSON.parse(m.data);
        state.handEvents.push({ event: name, at: Date.now() });
        fn(data);
      });
    on('hand', ({ hand }) => {
      if (!state.stage) state.hand = hand;
      render();
    });
    // Only for the hand this page raised (a stream on a shared token would hear another's).
    on('invited', ({ hand, invitation }) => {
      if (handToken && state.hand?.id === hand) void goOnStage(invitation);
    });
    // The producer moved this guest live or backstage (same session: nothing to renegotiate).
    on('moved', ({ hand, stage }) => {
      if (!state.stage || state.hand?.id !== hand) return;
      state.stage.stage = stage;
      $('stage-name').textContent = stage;
      render();
    });
    on('lowered', () => {
      state.hand = null;
      show(status, 'the producer lowered your hand', 'muted');
      render();
    });
    on('done', () => {
      state.hand = null;
      if (state.stage) void leaveStage('the producer ended your time on stage');
      render();
    });
  }

  async function goOnStage(invitation) {
    if (state.stage) return;
    state.stage = { ...invitation, pc: null, session: null, stream: null, connected: false };
    stopWatching();
    render();
    $('stage-name').textContent = invitation.stage;
    const stage = state.stage;
    try {
      const tone = Number(q.get('guestTone') ?? 0);
      stage.stream = tone > 0 ? toneStream(tone, { video: q.get('guestVideo') === '1' }) : await camera();
      $('self').srcObject = stage.stream;
      const pc = new RTCPeerConnection();
      stage.pc = pc;
      const audio = stage.stream.getAudioTracks()[0];
      // sendrecv: the node sends the guest its mix-minus (the program without itself).
      pc.addTransceiver(audio, { direction: 'sendrecv', streams: [stage.stream] });
      for (const t of stage.stream.getVideoTracks()) pc.addTransceiver(t, { direction: 'sendonly', streams: [stage.stream] });
      pc.ontrack = (e) => {
        if (e.track.kind !== 'audio') return;
        const s = new MediaStream([e.track]);
        $('mix').srcObject = s;
        state.probe = createProbe(s);
      };
      pc.onconnectionstatechange = () => {
        stage.connected = pc.connectionState === 'connected';
        if (pc.connectionState === 'failed') void leaveStage('the connection to the stage failed');
        render();
      };
      stage.session = await negotiate(pc, invitation.whip, invitation.grant);
      render();
    } catch (err) {
      await leaveStage(`could not go on stage: ${err.message ?? err}`);
    }
  }

  async function camera() {
    try {
      return await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    } catch {
      return navigator.mediaDevices.getUserMedia({ audio: true });
    }
  }

  /** Ends the WHIP session and goes back to watching. */
  async function leaveStage(why) {
    const stage = state.stage;
    if (!stage) return;
    state.stage = null;
    state.hand = null;
    await hangUp(stage.session, stage.grant);
    if (stage.pc) {
      stage.pc.onconnectionstatechange = null;
      stage.pc.close();
    }
    for (const t of stage.stream?.getTracks() ?? []) t.stop();
    stage.stream?.stopSource?.();
    $('mix').srcObject = null;
    $('self').srcObject = null;
    state.probe = null;
    state.leftStage = (state.leftStage ?? 0) + 1;
    render();
    show(status, why ?? 'you left the stage', 'muted');
    watchAgain();
  }

  $('raise').onclick = raise;
  $('lower').onclick = lower;
  $('leave').onclick = () => void leaveStage();
  addEventListener('pagehide', () => {
    if (state.stage) void hangUp(state.stage.session, state.stage.grant);
  });
  render();

  return {
    /** The node the viewer plays from answered (again): hands and the event stream go there. */
    nodeIs(origin) {
      if (origin === state.nodeOrigin && events) return;
      state.nodeOrigin = origin;
      listen();
      render();
    },
  };
}
