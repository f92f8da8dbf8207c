/**
 * One rendition of the program video for every viewer that plays it: subscribed once, each packet
 * parsed once, sent to the viewers in the native group in one addon call (NativeFanOut, as the
 * program audio is), and from JavaScript to the others (a viewer whose transport is not ready,
 * not AES-GCM, or not IPv4; every viewer when the addon is not built). The last HISTORY packets
 * are kept: a viewer in the native group has no werift history of its own, and its NACKs are
 * answered from here (ViewerVideo).
 */
import { parseRtp, RtpHeader as ParsedHeaderClass } from '@mcu/rtp';
import { NativeFanOut, sumFanOutStats } from './NativeFanOut.js';
import type { FanOutMember, NativeFanOutStats } from './NativeFanOut.js';
import type { ProgramVideoSource } from './WhepSession.js';

/** Packets kept for NACKs: about 1.7 s of a 2.5 Mb/s rendition, longer than any RTT worth repairing. */
const HISTORY = 512;
const SLOT_BYTES = 1500;

export interface VideoGroupMember extends FanOutMember {
  /** A program packet for a member not in the native group (`parsed` is the group's: read it, do not keep it). */
  groupPacket(packet: Buffer, length: number, mediaMs?: number): void;
}

export class VideoGroup {
  /** The native group (null: the addon is not built). */
  readonly native: NativeFanOut | null = NativeFanOut.create({ absSendTime: true });
  private readonly members = new Set<VideoGroupMember>();
  /** Members not in the native group. */
  private readonly js = new Set<VideoGroupMember>();
  readonly parsed = new ParsedHeaderClass();
  private unsubscribe: (() => void) | null = null;
  /** Program sequence number and timestamp of the last packet (-1: none yet), and when that timestamp began. */
  lastSeq = -1;
  lastTs = 0;
  lastTsAt = 0;
  private readonly history: Buffer[] = [];
  private readonly historyLength = new Int32Array(HISTORY).fill(-1);
  private readonly historySeq = new Int32Array(HISTORY).fill(-1);

  constructor(
    private readonly source: ProgramVideoSource,
    /** The rendition (undefined: the source's default). */
    readonly rendition: string | undefined,
    private readonly onEmpty: () => void,
  ) {}

  get size(): number {
    return this.members.size;
  }

  /** Adds a member (from JavaScript until it joins the native group); returns its removal. */
  add(member: VideoGroupMember): () => void {
    this.members.add(member);
    this.js.add(member);
    this.unsubscribe ??= this.source.addVideoProgramSink(this.rendition, (packet, length, mediaMs) => this.onPacket(packet, length, mediaMs));
    return () => {
      if (!this.members.delete(member)) return;
      this.native?.detach(member);
      this.js.delete(member);
      if (this.members.size > 0) return;
      this.unsubscribe?.();
      this.unsubscribe = null;
      this.onEmpty();
    };
  }

  /** `member` moved to the native group (true) or back to JavaScript (false). */
  setNative(member: VideoGroupMember, native: boolean): void {
    if (native) this.js.delete(member);
    else if (this.members.has(member)) this.js.add(member);
  }

  /** The kept packet with this program sequence number, or null (too old, or never seen). */
  packetAt(seq: number): Buffer | null {
    const i = seq % HISTORY;
    return this.historySeq[i] === seq ? this.history[i].subarray(0, this.historyLength[i]) : null;
  }

  nativeStats(): NativeFanOutStats | null {
    return this.native?.stats() ?? null;
  }

  private onPacket(packet: Uint8Array, length: number, mediaMs?: number): void {
    const buf = Buffer.from(packet.buffer, packet.byteOffset, length);
    const h = this.parsed;
    if (parseRtp(buf, h) !== null) return;
    this.keep(buf, h.sequenceNumber);
    if (h.timestamp !== this.lastTs || this.lastSeq < 0) {
      this.lastTs = h.timestamp;
      this.lastTsAt = performance.now();
    }
    this.lastSeq = h.sequenceNumber;
    this.native?.send(buf, h, mediaMs);
    for (const m of this.js) m.groupPacket(buf, length, mediaMs);
  }

  private keep(packet: Buffer, seq: number): void {
    const i = seq % HISTORY;
    let slot = this.history[i];
    if (slot === undefined || slot.length < packet.length) {
      slot = Buffer.allocUnsafe(Math.max(SLOT_BYTES, packet.length));
      this.history[i] = slot;
    }
    packet.copy(slot);
    this.historyLength[i] = packet.length;
    this.historySeq[i] = seq;
  }

  close(): void {
    this.native?.close();
    this.unsubscribe?.();
    this.unsubscribe = null;
  }
}

/** The program video's groups of one feed, one per rendition, made on first use and dropped when empty. */
export class VideoGroups {
  private readonly groups = new Map<string, VideoGroup>();

  constructor(readonly source: ProgramVideoSource) {}

  /** Adds `member` to the rendition's group; returns the group and the member's removal. */
  join(rendition: string | undefined, member: VideoGroupMember): { group: VideoGroup; leave: () => void } {
    const key = rendition ?? '';
    let group = this.groups.get(key);
    if (!group) {
      const made: VideoGroup = new VideoGroup(this.source, rendition, () => {
        if (this.groups.get(key) === made) this.groups.delete(key);
      });
      group = made;
      this.groups.set(key, group);
    }
    return { group, leave: group.add(member) };
  }

  /** The native groups' counters, summed (null: no group has the addon). */
  nativeStats(): NativeFanOutStats | null {
    return sumFanOutStats([...this.groups.values()].map((g) => g.nativeStats()));
  }
}
