/**
 * A cluster over HTTPS: the mixer and a relay each serve TLS with the operator's certificate, the
 * relay registers an https URL, the mixer's placement 307 sends the viewer to it, and the viewer
 * hears the presenter's tone through WHEP over HTTPS on the relay (the test's CA trusted, nothing
 * insecure accepted).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCert, makeTestCa, tlsFetch, type TestCa } from '../../server/test/tlsFixture.js';
import { tonePower, WebRtcClient } from '../../webrtc/test/client.js';
import { ClusterWorld, sleep, waitFor } from './harness.js';

const SECRET = 'https-test-secret-0123456789abcdef-xyz';
const ADMIN = 'https-test-admin-token-0123456789';
const CLUSTER = `tls${Date.now().toString(36)}`;

describe('a cluster over HTTPS', () => {
  let ca: TestCa;
  let world: ClusterWorld;
  let f: ReturnType<typeof tlsFetch>;
  const clients: WebRtcClient[] = [];
  let pacing: NodeJS.Timeout | undefined;

  beforeAll(async () => {
    ca = makeTestCa();
    const mixerCert = issueCert(ca, 'mixer');
    const relayCert = issueCert(ca, 'relay');
    f = tlsFetch(ca.pem);
    world = await ClusterWorld.start({
      name: 'https',
      cluster: CLUSTER,
      secret: SECRET,
      adminToken: ADMIN,
      relayFanOut: 2,
      relays: 1,
      node: { tlsCert: mixerCert.certFile, tlsKey: mixerCert.keyFile },
      relay: { tlsCert: relayCert.certFile, tlsKey: relayCert.keyFile },
    });
  }, 60_000);

  afterAll(async () => {
    clearInterval(pacing);
    for (const c of clients) await c.hangUp().catch(() => undefined);
    await world?.close();
    ca?.remove();
  });

  it('the relay registers an https URL; the 307 sends the viewer there; the viewer hears the tone over WHEP on HTTPS', async () => {
    expect(world.node.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const relay = world.relays[0];
    expect(relay.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(relay.agent.info.http).toBe(relay.url);
    expect((await f(`${relay.url}/healthz`)).status).toBe(200);

    const res = await f(`${world.node.url}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{"name":"tls"}' });
    expect(res.status).toBe(201);
    const event = (await res.json()) as { id: string; whip: string; whep: string; tokens: { presenter: string; viewer: string } };
    expect(event.whip).toBe(`${world.node.url}/whip/${event.id}`);

    const presenter = await WebRtcClient.connect('whip', event.whip, event.tokens.presenter, { fetch: f });
    clients.push(presenter);
    await presenter.connected();
    pacing = setInterval(() => presenter.sendTone(440), 20);
    await waitFor(() => (relay.feeds.get(event.id)?.forwarder.stats.packetsIn ?? 0) > 10, 10_000, 'the feed at the relay');

    // The mixer places the viewer before it reads the offer: the 307 alone.
    const placed = await f(event.whep, { method: 'POST', headers: { authorization: `Bearer ${event.tokens.viewer}`, 'content-type': 'application/sdp' }, body: '' });
    expect(placed.status).toBe(307);
    const location = new URL(placed.headers.get('location')!);
    expect(location.origin).toBe(relay.url);
    expect(location.pathname).toBe(`/whep/${event.id}`);

    const viewer = await WebRtcClient.connect('whep', location.toString(), event.tokens.viewer, { fetch: f });
    clients.push(viewer);
    await viewer.connected();
    await waitFor(() => viewer.received.length > 60, 10_000, 'audio at the viewer');
    await sleep(500);
    const pcm = viewer.decodeReceived(Math.max(0, viewer.received.length - 50));
    expect(pcm.length).toBeGreaterThan(30 * 960);
    expect(tonePower(pcm, 440)).toBeGreaterThan(1000);
    expect(tonePower(pcm, 440)).toBeGreaterThan(50 * tonePower(pcm, 1250));
    expect(relay.edge.stats().whepSessions).toBe(1);
    expect(world.node.edge.stats().whepSessions).toBe(0);
  }, 60_000);
});
