import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, freePort, killAll, run, serve } from './cli.js';

const adminToken = 'cli-test-admin-token-0123456789';
let url = '';
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  const up = await serve(['up', '--port', '0'], cleanEnv({ MCU_ADMIN_TOKEN: adminToken }));
  url = up.info.url;
  // The client finds the node in MCU_URL and falls back to MCU_ADMIN_TOKEN for its token.
  env = cleanEnv({ MCU_URL: url, MCU_ADMIN_TOKEN: adminToken });
});
afterAll(killAll);

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function mcu(...args: string[]) {
  const r = await run(args, env);
  expect(r.code, `mcu ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

describe('mcu event against a running node', () => {
  it('create, list, show, layout and end change the node as the API shows', async () => {
    const [created, human] = await Promise.all([mcu('event', 'create', 'Town hall', '--max-speakers', '4', '--json'), mcu('event', 'create', 'Q&A')]);
    const ev = JSON.parse(created.stdout) as { id: string; whip: string; whep: string; tokens: Record<string, string> };
    expect(ev.whip).toBe(`${url}/whip/${ev.id}`);
    expect(ev.whep).toBe(`${url}/whep/${ev.id}`);
    expect(Object.keys(ev.tokens).sort()).toEqual(['presenter', 'producer', 'viewer']);
    expect((await api('GET', `/api/events/${ev.id}`)).json).toMatchObject({ name: 'Town hall', maxSpeakers: 4 });

    // Human output: URLs, the three tokens and where they go in OBS.
    const qa = /event (\S+) created \("Q&A"\)/.exec(human.stdout)![1];
    const presenter = /presenter token: (\S+)/.exec(human.stdout)![1];
    expect(human.stdout).toContain(`WHIP (presenters publish): ${url}/whip/${qa}`);
    expect(human.stdout).toMatch(/producer token: +\S+\n/);
    expect(human.stdout).toMatch(/viewer token: +\S+\n/);
    expect(human.stdout).toContain(`OBS: Settings → Stream → Service "WHIP", Server = ${url}/whip/${qa}, Bearer Token = the presenter token`);
    // The printed presenter token is a real one: the node accepts it for this event's stream.
    const stream = await fetch(`${url}/api/events/${qa}/stream?token=${presenter}`);
    expect(stream.status).toBe(200);
    await stream.body?.cancel();

    // Independent steps run side by side: a list, and a layout change on each event.
    const regions = [{ sourceId: 'a', x: 0, y: 0, width: 0.5, height: 1 }, { sourceId: 'b', x: 0.5, y: 0, width: 0.5, height: 1 }];
    const [listJson, listHuman, presentation, custom] = await Promise.all([
      mcu('event', 'list', '--json'),
      mcu('event', 'list'),
      mcu('event', 'layout', ev.id, 'presentation', '--source', 'p1', '--json'),
      mcu('event', 'layout', qa, 'custom', '--regions', JSON.stringify(regions)),
    ]);
    expect((JSON.parse(listJson.stdout).events as { id: string }[]).map((e) => e.id).sort()).toEqual([ev.id, qa].sort());
    expect(listHuman.stdout).toMatch(/^ID +NAME +PARTICIPANTS/);
    expect(listHuman.stdout).toMatch(new RegExp(`${ev.id} +Town hall +0`));
    expect(JSON.parse(presentation.stdout).layout).toEqual({ kind: 'presentation', sourceId: 'p1' });
    expect((await api('GET', `/api/events/${ev.id}`)).json.layout).toEqual({ kind: 'presentation', sourceId: 'p1' });
    expect(custom.stdout).toBe(`event ${qa} layout: custom (2 regions)\n`);
    expect((await api('GET', `/api/events/${qa}`)).json.layout).toEqual({ kind: 'custom', regions });

    const [shown] = await Promise.all([mcu('event', 'show', ev.id, '--json'), mcu('event', 'end', qa, '--json')]);
    expect(JSON.parse(shown.stdout)).toMatchObject({ id: ev.id, name: 'Town hall', layout: { kind: 'presentation', sourceId: 'p1' }, participants: [] });
    expect((await api('GET', `/api/events/${qa}`)).status).toBe(404);

    expect((await mcu('event', 'end', ev.id)).stdout).toBe(`event ${ev.id} ended\n`);
    expect((await api('GET', `/api/events/${ev.id}`)).status).toBe(404);
    const gone = await run(['event', 'show', ev.id], env);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(`mcu: GET /api/events/${ev.id}: the node answered 404 event_not_found`);
  });

  it('mute, unmute and kick a participant', async () => {
    const ev = JSON.parse((await mcu('event', 'create', '--json')).stdout) as { id: string };
    const p = (await api('POST', `/api/events/${ev.id}/rtp-participants`, { host: '127.0.0.1', port: await freePort(), payloadType: 111 })).json as { id: string };
    const mutedOf = async () => ((await api('GET', `/api/events/${ev.id}`)).json.participants as { id: string; muted?: boolean }[]).find((x) => x.id === p.id)?.muted;

    expect(JSON.parse((await mcu('event', 'mute', ev.id, p.id, '--json')).stdout)).toMatchObject({ id: p.id, muted: true });
    expect(await mutedOf()).toBe(true);
    expect((await mcu('event', 'show', ev.id)).stdout).toMatch(new RegExp(`${p.id} +rtp +no +yes`));
    expect((await mcu('event', 'mute', ev.id, p.id, '--off')).stdout).toBe(`participant ${p.id} of event ${ev.id} unmuted\n`);
    expect(await mutedOf()).toBe(false);

    expect((await mcu('event', 'kick', ev.id, p.id)).stdout).toBe(`participant ${p.id} removed from event ${ev.id}\n`);
    expect((await api('GET', `/api/events/${ev.id}/participants`)).json.participants).toEqual([]);
    const again = await run(['event', 'kick', ev.id, p.id], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`the node answered 404 participant_not_found: participant ${p.id} not found`);
  });

  it('creates an event whose presenters join backstage, and moves a participant live and back', async () => {
    const ev = JSON.parse((await mcu('event', 'create', '--presenters-join', 'backstage', '--json')).stdout) as { id: string; presentersJoin: string };
    expect(ev.presentersJoin).toBe('backstage');
    const p = (await api('POST', `/api/events/${ev.id}/rtp-participants`, { host: '127.0.0.1', port: await freePort(), payloadType: 111 })).json as { id: string; stage: string };
    expect(p.stage).toBe('backstage');
    expect((await mcu('event', 'show', ev.id)).stdout).toMatch(new RegExp(`${p.id} +rtp +no +no +backstage`));
    expect((await mcu('event', 'stage', ev.id, p.id, 'live')).stdout).toBe(`participant ${p.id} of event ${ev.id} is live (on air)\n`);
    expect((await api('GET', `/api/events/${ev.id}/participants`)).json.participants[0].stage).toBe('live');
    expect(JSON.parse((await mcu('event', 'stage', ev.id, p.id, 'backstage', '--json')).stdout)).toMatchObject({ id: p.id, stage: 'backstage' });
    const bad = await run(['event', 'stage', ev.id, p.id, 'onstage'], env);
    expect(bad.code).toBe(2);
    const badJoin = await run(['event', 'create', '--presenters-join', 'green-room'], env);
    expect(badJoin.code).toBe(2);
    expect(badJoin.stderr).toContain('--presenters-join');
    await mcu('event', 'end', ev.id);
  });

  it('lists raised hands and invites one on stage (backstage by default, --stage live)', async () => {
    const ev = JSON.parse((await mcu('event', 'create', '--json')).stdout) as { id: string; tokens: Record<string, string> };
    expect((await mcu('event', 'hands', ev.id)).stdout).toBe(`no raised hands in event ${ev.id}\n`);
    const raise = async (name: string) => {
      const res = await fetch(`${url}/api/events/${ev.id}/hands`, { method: 'POST', headers: { authorization: `Bearer ${ev.tokens.viewer}`, 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
      expect(res.status).toBe(201);
      return ((await res.json()) as { id: string }).id;
    };
    const own = async (name: string) => {
      const res = await fetch(`${url}/api/events/${ev.id}/viewer-tokens`, { method: 'POST', headers: { authorization: `Bearer ${ev.tokens.viewer}`, 'content-type': 'application/json' }, body: JSON.stringify({ name }) });
      return ((await res.json()) as { token: string }).token;
    };
    ev.tokens.viewer = await own('Ada');
    const ada = await raise('Ada');
    ev.tokens.viewer = await own('Grace Hopper');
    const grace = await raise('Grace Hopper');
    const table = (await mcu('event', 'hands', ev.id)).stdout.split('\n');
    expect(table[0]).toMatch(/^HAND +NAME +STATE +WAITING +STAGE +PARTICIPANT/);
    expect(table[1]).toMatch(new RegExp(`^${ada} +Ada +raised +\\d+ s +- +-`));
    expect(table[2]).toMatch(new RegExp(`^${grace} +Grace Hopper +raised`));
    const invited = (await mcu('event', 'invite', ev.id, ada)).stdout;
    expect(invited).toMatch(new RegExp(`^Ada \\(hand ${ada}\\) invited backstage as participant guest-`));
    const live = JSON.parse((await mcu('event', 'invite', ev.id, grace, '--stage', 'live', '--json')).stdout);
    expect(live).toMatchObject({ id: grace, state: 'invited', invitation: { stage: 'live' } });
    const listed = JSON.parse((await mcu('event', 'hands', ev.id, '--json')).stdout) as { hands: Array<{ id: string; invitation: { stage: string } }> };
    expect(listed.hands.map((h) => [h.id, h.invitation.stage])).toEqual([[ada, 'backstage'], [grace, 'live']]);
    const bad = await run(['event', 'invite', ev.id, ada, '--stage', 'green-room'], env);
    expect(bad.code).toBe(2);
    const unknown = await run(['event', 'invite', ev.id, 'no-such-hand'], env);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/404|not found/i);
    await mcu('event', 'end', ev.id);
  });

  it('a refused token, an unreachable node and a bad option each give a clear message and a non-zero exit', async () => {
    const closedPort = await freePort();
    const before = (await api('GET', '/api/events')).json.events.length;
    const [badToken, noToken, unreachable, badOption] = await Promise.all([
      run(['event', 'list', '--token', 'not-a-valid-token'], env),
      run(['event', 'list', '--url', url], cleanEnv()),
      run(['event', 'list', '--url', `http://127.0.0.1:${closedPort}`], env),
      run(['event', 'create', '--max-speakers', '99'], env),
    ]);
    expect(badToken.code).toBe(1);
    expect(badToken.stderr).toMatch(/^mcu: GET \/api\/events: the node answered 401 \S+: .+ \(check --token, MCU_TOKEN or MCU_ADMIN_TOKEN\)\n$/);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toContain('401');
    expect(noToken.stderr).toContain('no token was given');
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain(`cannot reach the node at http://127.0.0.1:${closedPort} (ECONNREFUSED)`);
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toContain('--max-speakers: "99" is not valid: expected an integer 1–16');
    // The refused create never reached the node.
    expect((await api('GET', '/api/events')).json.events.length).toBe(before);
  });
});
