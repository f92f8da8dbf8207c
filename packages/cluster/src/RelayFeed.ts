/**
 * One event's program feed on a relay: a RelayForwarder whose parent and children follow the
 * event's relay tree (ClusterClient), and a ProgramSource over its plaintext so that WHEP viewers
 * (WebRtcEdge.play) and plain-RTP viewers play it.
 *
 * Viewers see one continuous stream for the life of their session: a StreamContinuity rewrites
 * SSRC, sequence numbers and timestamps when the feed's source changes under them (the mixer
 * restarted with a new SSRC and random sequence numbers).
 */
import { ClusterClient, type Bus } from '@mcu/control';
import { RelayForwarder, StreamContinuity, type FeedKey, type UdpEndpoint } from '@mcu/relay';
import type { RtpHeader } from '@mcu/rtp';
import type { ProgramSource } from '@mcu/webrtc';
import { randomInt } from 'node:crypto';

export interface RelayFeedOptions {
  bus: Bus;
  cluster: string;
  event: string;
  nodeId: string;
  key: FeedKey;
  bindHost: string;
  bindPort: number;
}

/** Where the forwarder listens before the tree names a parent: nothing is accepted from it. */
const NO_PARENT: UdpEndpoint = { host: '127.0.0.1', port: 9 };

export class RelayFeed implements ProgramSource {
  readonly id: string;
  readonly forwarder: RelayForwarder;
  readonly client: ClusterClient;
  readonly continuity: StreamContinuity;
  #sinks: ReadonlyArray<(packet: Buffer) => void> = [];
  /** Packets handed to viewers (after continuity). */
  packetsOut = 0;
  #closed = false;

  private constructor(id: string, forwarder: RelayForwarder, client: ClusterClient) {
    this.id = id;
    this.forwarder = forwarder;
    this.client = client;
    this.continuity = new StreamContinuity({ outputSsrc: randomInt(1, 0xffff_ffff), clockRate: 48_000, frameSamples: 960 });
    forwarder.addConsumer({ onRtp: this.#onRtp });
    client.on('parent', (p) => {
      if (!this.#closed) forwarder.setParent(p ? p.media : NO_PARENT);
    });
    client.on('children', (children) => {
      if (!this.#closed) forwarder.setChildren(children.map((c) => c.media));
    });
  }

  static async open(opts: RelayFeedOptions): Promise<RelayFeed> {
    const forwarder = await RelayForwarder.open({ bindHost: opts.bindHost, bindPort: opts.bindPort, parent: NO_PARENT, key: opts.key });
    const client = new ClusterClient({ bus: opts.bus, cluster: opts.cluster, event: opts.event, nodeId: opts.nodeId });
    const feed = new RelayFeed(opts.event, forwarder, client);
    try {
      await client.start();
    } catch (err) {
      feed.close();
      throw err;
    }
    if (client.parent) forwarder.setParent(client.parent.media);
    forwarder.setChildren(client.children.map((c) => c.media));
    return feed;
  }

  /** ProgramSource: `sink` gets each program packet (a Buffer of its own, shared by all sinks). */
  addProgramSink(sink: (packet: Buffer) => void): () => void {
    this.#sinks = [...this.#sinks, sink];
    return () => {
      this.#sinks = this.#sinks.filter((s) => s !== sink);
    };
  }

  get sinkCount(): number {
    return this.#sinks.length;
  }

  readonly #onRtp = (packet: Uint8Array, length: number, header: RtpHeader): void => {
    const sinks = this.#sinks;
    if (sinks.length === 0) return;
    // One copy per packet per relay (not per viewer): the forwarder's buffer is scratch.
    const out = Buffer.from(packet.subarray(0, length));
    if (!this.continuity.rewrite(out, header)) return;
    this.packetsOut++;
    for (let i = 0; i < sinks.length; i++) {
      try {
        sinks[i](out);
      } catch {
        // a viewer's send path must not stop the others
      }
    }
  };

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sinks = [];
    this.forwarder.close();
    void this.client.close();
  }
}
