// Logger factory: pino JSON to a given destination. Nothing per packet is logged at `info`.
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createLogger(level: string, name: string, dest?: DestinationStream): Logger {
  return pino({ level, name, base: { name }, timestamp: pino.stdTimeFunctions.isoTime }, dest ?? pino.destination({ fd: 1, sync: false }));
}
