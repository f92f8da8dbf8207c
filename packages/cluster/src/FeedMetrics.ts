/**
 * Counters of the feed nodes a process runs (a relay's forwarders, a mixer's feed senders) as
 * Prometheus metrics, read from their plain stats objects at scrape time: the forward path pays
 * nothing for them.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { forwardQuantileMs, type FeedStats } from '@mcu/relay';

const counters: [name: string, help: string, pick: (s: FeedStats) => number][] = [
  ['mcu_feed_packets_in_total', 'Feed datagrams received (before any check)', (s) => s.packetsIn],
  ['mcu_feed_packets_out_total', 'Feed datagrams sent (forwards to children, retransmissions, RTCP)', (s) => s.packetsOut],
  ['mcu_feed_nack_sent_total', 'Sequence numbers NACKed upstream', (s) => s.nackSent],
  ['mcu_feed_nack_received_total', 'Sequence numbers child relays NACKed', (s) => s.nackReceived],
  ['mcu_feed_retransmitted_total', 'Packets resent to child relays from the retransmission buffer', (s) => s.retransmitted],
  ['mcu_feed_recovered_total', 'NACKed packets that then arrived', (s) => s.recovered],
  ['mcu_feed_pli_forwarded_total', 'Keyframe requests (PLI) sent upstream', (s) => s.pliForwarded],
  ['mcu_feed_pli_suppressed_total', 'Keyframe requests absorbed by an earlier one', (s) => s.pliSuppressed],
  ['mcu_feed_key_switches_total', 'Times the feed received moved to a newer key (feed-key rotation)', (s) => s.keySwitches],
];

/** Registers the feed counters, `mcu_feed_dropped_total{reason}` and `mcu_relay_children` (fan-out). */
export function feedMetrics(registry: Registry, stats: () => FeedStats[], children: () => number): void {
  for (const [name, help, pick] of counters) {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(stats().reduce((n, s) => n + pick(s), 0));
      },
    });
  }
  new Counter({
    name: 'mcu_feed_dropped_total',
    help: 'Feed datagrams dropped, by reason',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of stats()) for (const [reason, n] of Object.entries(s.dropped)) if (n > 0) this.inc({ reason }, n);
    },
  });
  new Gauge({
    name: 'mcu_feed_forward_seconds',
    help: 'Time from a feed packet reaching the process to its sends to child relays and viewers (latest samples), by quantile',
    labelNames: ['quantile'],
    registers: [registry],
    collect() {
      this.reset();
      const all = stats();
      for (const q of [0.5, 0.99]) {
        const ms = forwardQuantileMs(all, q);
        if (!Number.isNaN(ms)) this.set({ quantile: String(q) }, ms / 1000);
      }
    },
  });
  new Gauge({
    name: 'mcu_relay_children',
    help: 'Child relays this node feeds (its fan-out in the relay tree)',
    registers: [registry],
    collect() {
      this.set(children());
    },
  });
}
