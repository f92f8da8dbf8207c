export {
  RtpHeader,
  RTP_FIXED_HEADER_LENGTH,
  parseRtp,
  writeRtp,
  writeRtpHeader,
  buildRtp,
  rtpPacketLength,
  isRtcpPacket,
  rewriteRtpHeader,
} from './RtpPacket.js';
export type { RtpDropReason, RtpBuildFields, RtpRewrite } from './RtpPacket.js';

export {
  ONE_BYTE_PROFILE,
  TWO_BYTE_PROFILE,
  ExtensionLocation,
  findHeaderExtension,
  validateHeaderExtensions,
} from './HeaderExtensions.js';
export type { HeaderExtension } from './HeaderExtensions.js';

export { readAudioLevel, audioLevelOf, voiceActivityOf, audioLevelExtension, dBovToLinear } from './AudioLevel.js';

export {
  seqDiff,
  seqLessThan,
  seqNext,
  tsDiff,
  tsLessThan,
  SequenceUnwrapper,
  TimestampUnwrapper,
} from './Sequence.js';

export {
  RtcpPacketType,
  parseRtcp,
  buildSenderReport,
  buildReceiverReport,
  buildSdes,
  buildBye,
  buildNack,
  buildPli,
  buildFir,
  buildRemb,
  buildCompound,
  ntpFromUnixMs,
  unixMsFromNtp,
  middleNtp32,
  roundTripTimeMs,
} from './Rtcp.js';
export type {
  RtcpDropReason,
  RtcpPacket,
  RtcpParseResult,
  ReportBlock,
  SenderReport,
  SenderReportFields,
  ReceiverReport,
  Sdes,
  SdesChunk,
  Bye,
  Nack,
  Pli,
  Fir,
  FirEntry,
  Remb,
  UnknownRtcp,
  NtpTime,
} from './Rtcp.js';

export { ReceiverStats } from './ReceiverStats.js';
export { BitrateMeter } from './BitrateMeter.js';
export type { ReceiverStatsOptions } from './ReceiverStats.js';

export { JitterBuffer, JITTER_BUFFER_DEFAULTS } from './JitterBuffer.js';
export type { JitterBufferOptions, JitterBufferStats, PushResult, PopKind } from './JitterBuffer.js';

export { RetransmissionBuffer, RETRANSMISSION_BUFFER_DEFAULTS } from './RetransmissionBuffer.js';
export type { RetransmissionBufferOptions } from './RetransmissionBuffer.js';

export { isKeyframePacket, isVp8Keyframe, isH264Keyframe, type VideoCodec } from './Keyframe.js';

export { Vp8Descriptor, parseVp8Descriptor, isVp8KeyframeData, readVp8Dimensions, Vp8Packetizer } from './video/Vp8.js';
export type { Vp8PacketizerOptions, PayloadSink } from './video/Vp8.js';
export {
  H264NalType,
  ANNEX_B_START_CODE,
  AnnexBNalUnits,
  H264Packetizer,
  isFirstSliceOfPicture,
  splitAnnexBAccessUnits,
} from './video/H264.js';
export type { H264PacketizerOptions, H264PayloadSink } from './video/H264.js';
export { readH264SpsDimensions } from './video/H264Sps.js';
export { VideoFrameAssembler, AssembledFrame, FRAME_ASSEMBLER_DEFAULTS } from './video/FrameAssembler.js';
export type {
  VideoFrameAssemblerOptions,
  FrameDropReason,
  FrameAssemblerStats,
  FrameSink,
} from './video/FrameAssembler.js';

export { openUdpSocket } from './UdpSocket.js';
export { ipv4ToInt, loadNativeAddon, nativeUdp, socketFd } from './NativeUdp.js';
export type { NativeUdp } from './NativeUdp.js';
export { UdpReceivers, monotonicToPerformanceMs } from './UdpReceivers.js';
export type { UdpReceiversOptions, DatagramVisitor } from './UdpReceivers.js';
export type { OpenUdpSocketOptions } from './UdpSocket.js';
export { UdpSocketSet, UdpSendBatch } from './UdpSocketSet.js';
export type { UdpSocketSetOptions, PacketVisitor, SendFailure } from './UdpSocketSet.js';
