export {
  McuError,
  ValidationError,
  TokenError,
  ForbiddenError,
  NotFoundError,
  MethodNotAllowedError,
  ConflictError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
  ServiceUnavailableError,
  BusError,
  httpStatusOf,
  errorBody,
  errorHeaders,
} from './Errors.js';
export type { TokenErrorCode, BusErrorReason, ErrorBody } from './Errors.js';

export { TokenIssuer, generateSecret, bearerToken, roles, roleSchema, tokenClaimsSchema } from './Tokens.js';
export type { Role, TokenClaims, TokenIssuerOptions } from './Tokens.js';

export { parseWith, parseJsonBody, formatPath } from './Schema.js';

export {
  subjects,
  subjectMatches,
  isValidSubject,
  isValidPattern,
  safeIdSchema,
  isSafeId,
  assertSafeId,
} from './Subjects.js';
export type { Subjects } from './Subjects.js';

export { encodePayload, decodeJson } from './Bus.js';
export type {
  Bus,
  BusMessage,
  BusSubscription,
  BusStatus,
  BusStatusType,
  KvEntry,
  KvStore,
  KvOptions,
  KvWatchOptions,
} from './Bus.js';
export { InProcessBus } from './InProcessBus.js';
export type { InProcessBusOptions } from './InProcessBus.js';
export { NatsBus, BusConnectError } from './NatsBus.js';
export type { NatsBusOptions, BusConnectErrorReason } from './NatsBus.js';

export { controlDefaults } from './Defaults.js';
