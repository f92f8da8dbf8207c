export { MixingClock, ManualTimer, systemTimer } from './MixingClock.js';
export type { Timer, MixingClockOptions, TickHandler } from './MixingClock.js';
export { SpeakerSelection, SILENCE_DBOV } from './Selection.js';
export type { SelectionOptions } from './Selection.js';
export { AudioMixer } from './AudioMixer.js';
export type { AudioMixerOptions, AudioMixerEvents, AudioMixerStats, MixerSink, ProgramSink } from './AudioMixer.js';
export { Participant } from './Participant.js';
export { ListenerLoss, LISTENER_LOSS_DEFAULTS } from './ListenerLoss.js';
export type { ParticipantAudioStats, MixTransport, Stage } from './Participant.js';
export { PresenterTaps } from './PresenterTaps.js';
export type { TapSink } from './PresenterTaps.js';
export { RtpEndpoint } from './RtpEndpoint.js';
export type { RtpEndpointOptions, RtpEndpointStats, RtpSocketHome, NativeSocket } from './RtpEndpoint.js';
export { OwnRtpSockets, SharedRtpPort, SharedPortIo } from './RtpSockets.js';
export type { RtpSocketIo, SharedRtpPortOptions } from './RtpSockets.js';
export { MixerEvent } from './MixerEvent.js';
export type { MixerEventOptions, SenderReportInfo, RtpParticipantRequest, RtpParticipantInfo, ExternalParticipant, ParticipantSummary, ParticipantLevel, VideoProgramSink } from './MixerEvent.js';
export { DropCounters } from './DropCounters.js';
export { TickStats } from './TickStats.js';
export { softLimitSample, frameLevelDbov, LIMIT_KNEE } from './Limiter.js';
export { computeLayout, parseLayout, fitInside, LAYOUT_DEFAULTS, MAX_GRID_TILES } from './Layouts.js';
export type { VideoLayout, LayoutRegion, RelativeRegion, LayoutOptions, CanvasSize } from './Layouts.js';
export { Compositor, rgbToYuv, BLACK } from './Compositor.js';
export type { Yuv, CompositorOptions, CompositorTile } from './Compositor.js';
export { glyphRows, textWidth, GLYPH_WIDTH, GLYPH_HEIGHT } from './BitmapFont.js';
export { systemMediaClock, rtpTimestampAt, mediaMsAt, senderReportTimes } from './MediaClock.js';
export type { MediaClock, SenderReportTimes } from './MediaClock.js';
export { LipSync, LIP_SYNC_DEFAULTS } from './LipSync.js';
export type { LipSyncOptions, LipSyncStats } from './LipSync.js';
export { VideoSource } from './VideoSource.js';
export type { VideoSourceStats } from './VideoSource.js';
export { VideoMixer, VIDEO_MIXER_DEFAULTS } from './VideoMixer.js';
export type {
  VideoMixerOptions,
  VideoMixerEvents,
  VideoMixerStats,
  VideoRendition,
  VideoRenditionOptions,
  VideoSink,
  VideoSourceStatsSnapshot,
  VideoRenditionStatsSnapshot,
} from './VideoMixer.js';
export { MixerProgramTap, programTapOf } from './ProgramTap.js';
export type { ProgramTap, ProgramTapSink, ProgramTapRtpSink, ProgramRtpSink, ProgramTapOptions, ProgramTapRendition, ProgramAudioFrame, ProgramVideoFrame } from './ProgramTap.js';
