import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

// The bundled static ffmpeg (@ffmpeg-installer, a 2018 build) is the fallback when no system
// ffmpeg is installed: the encoder and decoder tests run against it too, since CI has the system one.
const bundledFfmpeg = (createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path: string }).path;

// Tests whose assertions depend on wall-clock cadence (50 packets/s to 50 participants, the real
// 20 ms timer, the browser composite at ≥ 25 fps) run in a group of their own after everything else, one file at a time: on a 2-core
// machine, ffmpeg or Chromium in a parallel test would otherwise starve them.
const timing = [
  'packages/mixer/test/load.test.ts',
  'packages/mixer/test/clock.test.ts',
  'packages/mixer/test/mix.test.ts',
  // Plain-RTP participants on the native socket set and on dgram sockets, at the real 20 ms tick.
  'packages/mixer/test/rtp-sockets.test.ts',
  // Tones measured 60 dB apart (a backstage voice out of the program) and a composite's colours from
  // real-time VP8: concealment on a starved machine blurs both.
  'packages/server/test/hands-stage.test.ts',
  'packages/webrtc/test/video.test.ts',
  'packages/web/test/browser.test.ts',
  // Chromium publishing and watching through the node's one WebRTC UDP port.
  'packages/web/test/browser-rtc-port.test.ts',
  'packages/web/test/console.test.ts',
  // Headless Firefox (firefox-esr over WebDriver BiDi) publishing and watching.
  'packages/web/test/firefox.test.ts',
  // Lip sync: beep-to-flash skew measured on the decoded program, in milliseconds.
  'packages/mixer/test/lip-sync.test.ts',
  // Chromium publishing its microphone over HTTPS to a node in a network namespace of the test's own.
  'packages/web/test/https.test.ts',
  // Restream to nginx-rtmp: played-back duration and reconnect timing, beside ffmpeg encoders.
  'packages/server/test/restream-rtmp.test.ts',
  'packages/server/test/restream-av-sync.test.ts',
  // The key proxy: live restreams through it (nginx-rtmp, and TLS in front of it), beside ffmpeg encoders.
  'packages/server/test/restream-key.test.ts',
  // The console's Restream panel in Chromium, pushing to nginx-rtmp.
  'packages/web/test/restream-panel.test.ts',
  // The producer's workflow (#14): backstage, on air, a viewer's hand brought on stage; four Chromium pages, tones heard.
  'packages/web/test/production.test.ts',
  // Mixer failover: takeover time, program gaps and the old holder's silence, in milliseconds.
  'packages/cluster/test/failover.test.ts',
  // Mutes and kicks across a failover: a presenter's tone in another's mix, paced in real time.
  'packages/cluster/test/resume.test.ts',
  // A recording across a mixer SIGKILL and a planned move: what the crash lost and the gaps between parts, in milliseconds.
  'packages/cluster/test/recording-failover.test.ts',
  // A recording node SIGKILLed mid-segment: the milliseconds of video lost, measured in the decrypted segment.
  'packages/recording/test/crash.test.ts',
  // A presenter page and a relay viewer page across a mixer SIGKILL (Chromium).
  'packages/web/test/failover-browser.test.ts',
  // Recording: beep-to-flash skew measured in the decrypted, decoded segments.
  'packages/recording/test/recording.test.ts',
  'packages/server/test/recording-api.test.ts',
  'packages/cli/test/recording.test.ts',
  'packages/web/test/console-recording.test.ts',
  'packages/recording/test/backpressure.test.ts',
  'packages/recording/test/object-store.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real sockets and native codecs: isolate test files in child processes.
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: {
          name: 'main',
          include: ['packages/*/test/**/*.test.ts'],
          exclude: timing,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'bundled-ffmpeg',
          include: ['packages/codec/test/video-process.test.ts'],
          env: { MCU_FFMPEG_PATH: bundledFfmpeg },
          maxWorkers: 1,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'timing',
          include: timing,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
