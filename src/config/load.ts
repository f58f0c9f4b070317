// Turns a YAML file (plus the environment passed in) into a validated, defaulted, deep-frozen AnchorConfig,
// or a ConfigError listing every problem by key path. Never reads process.env; only loadConfig touches the disk.

import { readFile } from 'node:fs/promises';
import { YAMLException, loadAll } from 'js-yaml';
import type { z } from 'zod';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { type AnchorConfig, AnchorConfigSchema } from './schema.js';

export { type AnchorConfig, type HostPort, parseHostPortLiteral } from './schema.js';

/** Environment variable that sets (or overrides) `admin.token`, so the secret can stay out of the file. */
export const ADMIN_TOKEN_ENV = 'ANCHOR_ADMIN_TOKEN';

export type Env = Readonly<Record<string, string | undefined>>;

export interface ParseConfigOptions {
  /** Environment to read overrides from (pass `process.env` from the entry point). */
  env?: Env;
  /** Where the text came from (a file path), for error messages. */
  source?: string;
}

/** Validate YAML text. Throws ConfigError with every issue found. */
export function parseConfig(yamlText: string, opts: ParseConfigOptions = {}): AnchorConfig {
  const source = opts.source ?? '<config>';
  const doc = parseYaml(yamlText, source);

  const envToken = opts.env?.[ADMIN_TOKEN_ENV];
  // Set but empty is most often a secret that did not expand ($(cat …) of a missing file, an
  // EnvironmentFile without the line): refused, rather than an admin API started without its token.
  if (envToken === '') {
    throw new ConfigError([{ path: 'admin.token', message: `${ADMIN_TOKEN_ENV} is set but empty: unset it (then admin.token from the file applies), or set a token of at least 16 characters` }], { source });
  }
  const tokenFromEnv = envToken !== undefined;
  const raw = tokenFromEnv ? withAdminToken(doc, envToken) : doc;

  const result = AnchorConfigSchema.safeParse(raw);
  if (!result.success) {
    throw new ConfigError(issuesFromZod(result.error.issues, { tokenFromEnv }), { source });
  }
  return deepFreeze(result.data);
}

/** Read and validate a config file. A missing or unreadable file is a ConfigError naming the path. */
export async function loadConfig(path: string, env: Env = {}): Promise<AnchorConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new ConfigError([{ path: '(file)', message: `cannot read ${JSON.stringify(path)}: ${describeFsError(cause)}` }], {
      source: path,
      cause,
    });
  }
  return parseConfig(text, { env, source: path });
}

/** The text the entry point prints to stderr before exiting with status 2. */
export function formatConfigError(e: ConfigError): string {
  return [`config error in ${e.source}:`, ...e.issues.map((i) => `  ${i.path}: ${i.message}`)].join('\n');
}

/** A key path as operators write it: `nodes[2].address`; `(root)` for the document itself. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') {
      out += `[${key}]`;
    } else {
      const s = String(key);
      if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(s)) out += out === '' ? s : `.${s}`;
      else out += `[${JSON.stringify(s)}]`;
    }
  }
  return out === '' ? '(root)' : out;
}

/** Keys that existed once and were replaced: what a config that still has one is told instead of "unknown key". */
const REPLACED_KEYS: Readonly<Record<string, string>> = {
  'drain.max_loop_busy':
    'no longer exists: use drain.max_loop_lag_ms (how late, in milliseconds, the event loop may run before a drain slows to a tenth of drain.rate; default 50)',
};

/** Zod issues → one line per problem; one line per unknown key, with its full path. */
export function issuesFromZod(
  zodIssues: readonly z.core.$ZodIssue[],
  opts: { tokenFromEnv?: boolean } = {},
): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const seen = new Set<string>();
  const push = (path: string, message: string): void => {
    const k = `${path}\0${message}`;
    if (seen.has(k)) return; // one bad value can fail several checks with the same text
    seen.add(k);
    out.push({ path, message });
  };
  for (const iss of zodIssues) {
    if (iss.code === 'unrecognized_keys') {
      for (const key of iss.keys) {
        const path = formatPath([...iss.path, key]);
        // Own keys only: a top-level `constructor` or `toString` is an unknown key, not Object's function.
        push(path, Object.hasOwn(REPLACED_KEYS, path) ? (REPLACED_KEYS[path] as string) : 'unknown key');
      }
      continue;
    }
    const path = formatPath(iss.path);
    const fromEnv = opts.tokenFromEnv === true && path === 'admin.token';
    push(path, fromEnv ? `${iss.message} (from ${ADMIN_TOKEN_ENV})` : iss.message);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

function parseYaml(text: string, source: string): unknown {
  let docs: unknown[];
  try {
    docs = loadAll(text.startsWith('\uFEFF') ? text.slice(1) : text);
  } catch (cause) {
    throw new ConfigError([{ path: '(yaml)', message: describeYamlError(cause) }], { source, cause });
  }
  // An empty file (or comments only) is an empty config: the schema then names what it must have (nodes).
  if (docs.length === 0) return {};
  if (docs.length > 1) {
    throw new ConfigError([{ path: '(yaml)', message: `expected one document, found ${docs.length}` }], { source });
  }
  return docs[0];
}

function describeYamlError(e: unknown): string {
  if (e instanceof YAMLException) {
    const at = e.mark === undefined ? '' : ` at line ${e.mark.line + 1}, column ${e.mark.column + 1}`;
    return `${e.reason}${at}`;
  }
  return e instanceof Error ? e.message : String(e);
}

function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'no such file (ENOENT)';
    case 'EACCES':
      return 'permission denied (EACCES)';
    case 'EISDIR':
      return 'is a directory (EISDIR)';
    default:
      return e instanceof Error ? e.message : String(e);
  }
}

const isMapping = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Put the env token in place of `admin.token`. A non-mapping document or `admin` is left for the schema to report. */
function withAdminToken(doc: unknown, token: string): unknown {
  if (!isMapping(doc)) return doc;
  if (doc.admin === undefined) return { ...doc, admin: { token } };
  if (!isMapping(doc.admin)) return doc;
  return { ...doc, admin: { ...doc.admin, token } };
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
