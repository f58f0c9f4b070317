// The one errors module: every exception Anchor throws on purpose, each with a stable `code`.
// Only for failures that stop an operation; expected outcomes (a lost CAS, a reject reason) are values.

export const ErrorCode = {
  CONFIG_INVALID: 'ANCHOR_CONFIG_INVALID',
  USAGE: 'ANCHOR_USAGE',
  STORE_UNAVAILABLE: 'ANCHOR_STORE_UNAVAILABLE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class: a stable machine-readable `code`, a `name` equal to the class name, `cause` passed through. */
export class AnchorError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = new.target.name;
  }
}

/** One problem in a config file: the key path (`nodes[2].address`, `(root)`, `(yaml)`) and what is wrong. */
export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

/** The config file is unreadable or invalid. Carries every issue found, not just the first. */
export class ConfigError extends AnchorError {
  readonly issues: readonly ConfigIssue[];
  /** Where the config came from (a file path), for messages. */
  readonly source: string;

  constructor(issues: readonly ConfigIssue[], options?: { source?: string; cause?: unknown }) {
    const source = options?.source ?? '<config>';
    const lines = issues.map((i) => `  ${i.path}: ${i.message}`).join('\n');
    super(ErrorCode.CONFIG_INVALID, `config error in ${source}:\n${lines}`, options);
    this.issues = Object.freeze(issues.map((i) => Object.freeze({ path: i.path, message: i.message })));
    this.source = source;
  }
}

/** Bad command-line usage (unknown flag, missing argument). The entry point exits with status 2. */
export class UsageError extends AnchorError {
  readonly exitCode = 2;

  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.USAGE, message, options);
  }
}

/** The ownership store cannot be reached or did not answer in time; callers fail closed. */
export class StoreUnavailableError extends AnchorError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.STORE_UNAVAILABLE, message, options);
  }
}
