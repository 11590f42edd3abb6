import { GoAwayCode } from './protocol/constants.js';

/**
 * Error classes with stable codes. A code is part of the public contract:
 * docs/API.md lists every one, and a test checks that it does.
 */
export const ErrorCodes = Object.freeze({
  USAGE: 'TCPIPE_ERR_USAGE',
  CONFIG: 'TCPIPE_ERR_CONFIG',
  PROTOCOL: 'TCPIPE_ERR_PROTOCOL',
  FRAME_TOO_LARGE: 'TCPIPE_ERR_FRAME_TOO_LARGE',
  LIMIT: 'TCPIPE_ERR_LIMIT',
  HANDSHAKE: 'TCPIPE_ERR_HANDSHAKE',
  HANDSHAKE_TIMEOUT: 'TCPIPE_ERR_HANDSHAKE_TIMEOUT',
  AUTH: 'TCPIPE_ERR_AUTH',
  PARTNER_BUSY: 'TCPIPE_ERR_PARTNER_BUSY',
  HEARTBEAT_TIMEOUT: 'TCPIPE_ERR_HEARTBEAT_TIMEOUT',
  LINK_CLOSED: 'TCPIPE_ERR_LINK_CLOSED',
  LISTEN: 'TCPIPE_ERR_LISTEN',
  RESUME_EXPIRED: 'TCPIPE_ERR_RESUME_EXPIRED',
  RESUME_FAILED: 'TCPIPE_ERR_RESUME_FAILED',
} as const);

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** The error a GOAWAY code from the partner becomes on this side (the one table; codes not listed are no error). */
const GOAWAY_ERRORS: Readonly<Record<number, ErrorCode>> = Object.freeze({
  [GoAwayCode.PARTNER_BUSY]: ErrorCodes.PARTNER_BUSY,
  [GoAwayCode.PROTOCOL_ERROR]: ErrorCodes.PROTOCOL,
  [GoAwayCode.LIMIT_EXCEEDED]: ErrorCodes.LIMIT,
  [GoAwayCode.HEARTBEAT_TIMEOUT]: ErrorCodes.HEARTBEAT_TIMEOUT,
  [GoAwayCode.UNSUPPORTED_VERSION]: ErrorCodes.HANDSHAKE,
  [GoAwayCode.AUTH_REQUIRED]: ErrorCodes.AUTH,
  [GoAwayCode.RESUME_REFUSED]: ErrorCodes.AUTH,
  [GoAwayCode.MISSING_CAPABILITY]: ErrorCodes.HANDSHAKE,
});

export class TcpipeError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A bad command line or configuration: the CLI exits with status 2. */
export class UsageError extends TcpipeError {
  constructor(message: string) {
    super(ErrorCodes.USAGE, message);
  }
}

/**
 * The partner broke the protocol. `goAwayCode` is the reason this side sends
 * in its GOAWAY frame before closing the link.
 */
export class ProtocolError extends TcpipeError {
  readonly goAwayCode: number;
  constructor(goAwayCode: number, message: string, code: ErrorCode = ErrorCodes.PROTOCOL) {
    super(code, message);
    this.goAwayCode = goAwayCode;
  }
}

/** The partner's GOAWAY as an error of this side, or null for a goodbye that is no error (normal, shutdown, its own failure). */
export function goAwayError(code: number, message: string): TcpipeError | null {
  const errorCode = GOAWAY_ERRORS[code];
  return errorCode === undefined ? null : new TcpipeError(errorCode, message);
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    // System codes (ECONNREFUSED) help a reader; tcpipe's own codes are for programs.
    const show = typeof code === 'string' && !code.startsWith('TCPIPE_') && !err.message.includes(code);
    return show ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
