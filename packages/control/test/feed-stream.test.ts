import { describe, expect, it } from 'vitest';
import { eventFeedSchema, feedStreamSchema } from '../src/index.js';

const video = { ssrc: 1234, kind: 'video', codec: 'vp8', rendition: 'main', width: 320, height: 180 } as const;

describe('a feed stream description carries the rendition’s target bitrate', () => {
  it('keeps a valid target bitrate', () => {
    expect(feedStreamSchema.parse({ ...video, bitrateKbps: 300 })).toEqual({ ...video, bitrateKbps: 300 });
  });

  it('still parses an older mixer’s description without one', () => {
    const feed = eventFeedSchema.parse({ v: 1, event: 'e1', node: 'mixer', media: { host: '127.0.0.1', port: 5000 }, streams: [video, { ssrc: 1, kind: 'audio', codec: 'opus' }] });
    expect(feed.streams?.[0]).toEqual(video);
    expect(feed.streams?.[0]).not.toHaveProperty('bitrateKbps');
  });

  it('rejects a bitrate that is not a positive whole number of kbps within reason', () => {
    for (const bitrateKbps of [0, -5, 1.5, 100_001, '300', null]) {
      expect(feedStreamSchema.safeParse({ ...video, bitrateKbps }).success, String(bitrateKbps)).toBe(false);
    }
  });
});
