import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { ConflictError, NotFoundError, ServiceUnavailableError, type Logger } from '@mcu/control';
import { DropCounters, MixerEvent, SharedRtpPort } from '@mcu/mixer';
import type { Stage, VideoRenditionOptions } from '@mcu/mixer';
import { EventModeration } from './Moderation.js';

export interface EventRecord {
  id: string;
  name: string;
  maxSpeakers: number;
  /** Where presenters join when their token names no stage. */
  presentersJoin: Stage;
  createdAt: string;
  mixer: MixerEvent;
  /** The producer's mutes and kicks by participant id (they outlive sessions and holders). */
  moderation: EventModeration;
  /** Set when the event ends here because another node holds it now (failover, handover): that node's id. */
  movedTo?: string;
}

export interface EventRegistryOptions {
  maxEvents: number;
  rtpHost: string;
  rtpAdvertiseHost?: string;
  /** One UDP port for every plain-RTP participant of the node (see NodeConfig.rtpPort). */
  rtpPort?: number;
  onTick?: (seconds: number) => void;
  videoRenditions?: VideoRenditionOptions[];
  /** See MixerEventOptions.maxLipSyncDelayMs. */
  maxLipSyncDelayMs?: number;
  /** libopus complexity of the mixer's encoders (NodeConfig.opusComplexity); the codec's default when unset. */
  opusComplexity?: number;
  /** Each event's ffmpeg deaths and restarts are logged here (with the event's id). */
  log?: Logger;
}

export interface EventRegistryEvents {
  created: [EventRecord];
  /** Just before an event's resources are released (its counters are still readable). */
  ending: [EventRecord];
  ended: [EventRecord];
}

/**
 * Base64url ids are safe as URL segments and as NATS subject tokens; one never starts with "-" or
 * "_", so that it is never taken for an option on a command line (`mcu event end <id>`).
 */
function newEventId(): string {
  for (;;) {
    const id = randomBytes(9).toString('base64url');
    if (/^[A-Za-z0-9]/.test(id)) return id;
  }
}

/** The events running on this node. */
export class EventRegistry extends EventEmitter<EventRegistryEvents> {
  private readonly events = new Map<string, EventRecord>();
  /** The node's shared plain-RTP port, when configured; its events read it in their ticks. */
  readonly rtpPort: SharedRtpPort | null = null;

  /** Throws when the shared RTP port cannot be bound, or is asked for without the native addon. */
  constructor(private readonly opts: EventRegistryOptions) {
    super();
    if (opts.rtpPort !== undefined) {
      this.rtpPort = SharedRtpPort.open({ host: opts.rtpHost, port: opts.rtpPort, drops: new DropCounters() });
      if (this.rtpPort === null) throw new Error('rtpPort (one UDP port for plain RTP) needs the native UDP addon (Linux; not with MCU_NATIVE_UDP=0)');
    }
  }

  /** `id`: an event the cluster already knows, taken over by this node (failover, handover). */
  create(input: { name?: string; maxSpeakers: number; presentersJoin?: Stage; id?: string }): EventRecord {
    if (this.events.size >= this.opts.maxEvents) {
      throw new ServiceUnavailableError(`this node runs its maximum of ${this.opts.maxEvents} events`, 30);
    }
    if (input.id !== undefined && this.events.has(input.id)) throw new ConflictError(`event ${input.id} already runs on this node`);
    let id = input.id ?? newEventId();
    while (input.id === undefined && this.events.has(id)) id = newEventId();
    if (input.name !== undefined && [...this.events.values()].some((e) => e.name === input.name)) {
      throw new ConflictError(`an event named "${input.name}" is already running`);
    }
    const mixer = new MixerEvent({
      id,
      maxSpeakers: input.maxSpeakers,
      presentersJoin: input.presentersJoin,
      rtpHost: this.opts.rtpHost,
      rtpAdvertiseHost: this.opts.rtpAdvertiseHost,
      ...(this.rtpPort !== null ? { rtpPort: this.rtpPort } : {}),
      mixer: { onTick: this.opts.onTick, ...(this.opts.opusComplexity !== undefined ? { encoder: { complexity: this.opts.opusComplexity } } : {}) },
      maxLipSyncDelayMs: this.opts.maxLipSyncDelayMs,
      video: { compositor: { labels: true }, ...(this.opts.videoRenditions ? { renditions: this.opts.videoRenditions } : {}), log: this.opts.log?.child({ event: id }) },
    });
    const record: EventRecord = {
      id,
      name: input.name ?? `event-${id.slice(0, 6)}`,
      maxSpeakers: input.maxSpeakers,
      presentersJoin: mixer.presentersJoin,
      createdAt: new Date().toISOString(),
      mixer,
      moderation: new EventModeration(),
    };
    this.events.set(id, record);
    this.emit('created', record);
    return record;
  }

  get(id: string): EventRecord {
    const e = this.events.get(id);
    if (!e) throw new NotFoundError(`event ${id} not found`, 'event_not_found');
    return e;
  }

  has(id: string): boolean {
    return this.events.has(id);
  }

  list(): EventRecord[] {
    return [...this.events.values()];
  }

  /** Stops the event and frees every socket, timer and codec it holds. */
  end(id: string): EventRecord {
    const e = this.get(id);
    this.events.delete(id);
    this.emit('ending', e);
    e.mixer.close();
    this.emit('ended', e);
    return e;
  }

  close(): void {
    for (const id of [...this.events.keys()]) this.end(id);
    this.rtpPort?.close();
  }
}
