import { pino, type Logger } from 'pino';
import { LOG_LEVELS, SidecarConfigError, type LogLevel } from './config.js';

export interface LogOptions {
  /** Log level (default `info`). */
  level?: LogLevel;
  /** Where JSON log lines go (default: standard error). */
  destination?: NodeJS.WritableStream;
  /** A ready logger; overrides `level` and `destination`. */
  logger?: Logger;
}

export type { Logger };

export function createLogger(name: string, options: LogOptions = {}): Logger {
  if (options.logger !== undefined) return options.logger.child({ sidecar: name });
  const level = options.level ?? 'info';
  if (!LOG_LEVELS.includes(level)) throw new SidecarConfigError(`log level must be one of ${LOG_LEVELS.join(', ')}`);
  const destination = options.destination ?? pino.destination({ fd: 2, sync: true });
  return pino({ level, base: { sidecar: name }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
