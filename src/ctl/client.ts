// The admin API seen from `anchor ctl`: one request at a time with Node's fetch (undici), a deadline on
// each, the bearer token when there is one. Every outcome is a value: the body, the director's refusal
// ({error: {code, message}}), or why it could not be asked (unreachable, no answer in time).

export type ApiResult =
  | { readonly ok: true; readonly status: number; readonly body: unknown }
  /** `status` 0: the director was not reached or did not answer in time. `body`: the answer's JSON, if any. */
  | { readonly ok: false; readonly status: number; readonly code: string; readonly message: string; readonly body?: unknown };

export interface AdminClientOptions {
  readonly base: string;
  readonly token: string | undefined;
  readonly timeoutMs: number;
  /** Injected for tests; the global fetch by default. */
  readonly fetch?: typeof fetch;
}

export class AdminClient {
  readonly #o: AdminClientOptions;
  readonly #fetch: typeof fetch;

  constructor(opts: AdminClientOptions) {
    this.#o = opts;
    this.#fetch = opts.fetch ?? fetch;
  }

  get base(): string {
    return this.#o.base;
  }

  get(path: string): Promise<ApiResult> {
    return this.#request('GET', path, undefined);
  }

  post(path: string, body: Record<string, unknown> = {}): Promise<ApiResult> {
    return this.#request('POST', path, body);
  }

  async #request(method: string, path: string, body: Record<string, unknown> | undefined): Promise<ApiResult> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#o.token !== undefined) headers.authorization = `Bearer ${this.#o.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const url = `${this.#o.base}${path}`;
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.#o.timeoutMs),
        redirect: 'error',
      });
      const read = await boundedText(res, ANSWER_MAX);
      if (read === null) return { ok: false, status: res.status, code: 'bad_answer', message: `${method} ${path}: the answer is over ${ANSWER_MAX / 1024 / 1024} MiB (is ${this.#o.base} an Anchor admin API?)` };
      text = read;
    } catch (err) {
      const why = unreachable(err, this.#o.base, this.#o.timeoutMs);
      // A request that changes something may have been carried out although no answer came back in time.
      const timedOut = (err as { name?: string })?.name === 'TimeoutError' || (err as { name?: string })?.name === 'AbortError';
      const message = method === 'POST' && timedOut ? `${why}; ${method} ${path} may have been carried out all the same: check before trying again (anchor ctl status, session ID, drains)` : why;
      return { ok: false, status: 0, code: 'unreachable', message };
    }
    let json: unknown;
    try {
      json = text === '' ? null : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.ok) {
      if (json === undefined) return { ok: false, status: res.status, code: 'bad_answer', message: `${method} ${path}: the answer is not JSON (is ${this.#o.base} an Anchor admin API?)` };
      return { ok: true, status: res.status, body: json };
    }
    const e = typeof json === 'object' && json !== null ? (json as { error?: { code?: unknown; message?: unknown } }).error : undefined;
    const code = typeof e?.code === 'string' ? e.code : `http_${res.status}`;
    const message = typeof e?.message === 'string' ? e.message : `${method} ${path}: HTTP ${res.status} ${res.statusText}`.trim();
    return { ok: false, status: res.status, code, message, body: json };
  }
}

/** The most an answer may be (the largest the API gives, a page of 1,000, is well under 1 MiB). */
const ANSWER_MAX = 8 * 1024 * 1024;

/** The body's text, or null (reading stopped) when it is over `max` bytes. */
async function boundedText(res: Response, max: number): Promise<string | null> {
  if (res.body === null) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > max) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function unreachable(err: unknown, base: string, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer from the director at ${base} within ${timeoutMs / 1000} s`;
  const why = e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err);
  // fetch refuses ports browsers block (6000, 6665–6669, 10080, …: the Fetch standard's "bad ports").
  if (why === 'bad port') return `cannot reach the director at ${base}: its port is one fetch refuses to connect to (the Fetch standard's "bad ports"); give admin.listen another port`;
  return `cannot reach the director at ${base}: ${why}`;
}
