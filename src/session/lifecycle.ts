// The session lifecycle (DESIGN §4) as one transition table. Pure: decides whether an event may move a
// session and to which state/version; it never mutates a record, reads a clock or does I/O.

export const SessionState = {
  ATTACHED: 'ATTACHED',
  FROZEN: 'FROZEN',
  TERMINATED: 'TERMINATED',
} as const;
export type SessionState = (typeof SessionState)[keyof typeof SessionState];

export const LifecycleEvent = {
  ADMIT: 'admit',
  REATTACH: 'reattach',
  FREEZE: 'freeze',
  TRANSFER: 'transfer',
  RESUME: 'resume',
  CLOSE: 'close',
  EXPIRE: 'expire',
  TERMINATE: 'terminate',
} as const;
export type LifecycleEvent = (typeof LifecycleEvent)[keyof typeof LifecycleEvent];

/** `null` stands for "no session yet". */
export type FromState = SessionState | null;

const T = SessionState;
/** The table: from-state → event → to-state. Anything absent is an invalid transition. */
export const TRANSITIONS: Readonly<Record<string, Readonly<Partial<Record<LifecycleEvent, SessionState>>>>> = {
  none: { admit: T.ATTACHED },
  ATTACHED: {
    reattach: T.ATTACHED,
    freeze: T.FROZEN,
    close: T.TERMINATED,
    expire: T.TERMINATED,
    terminate: T.TERMINATED,
  },
  FROZEN: {
    transfer: T.FROZEN,
    resume: T.ATTACHED,
    close: T.TERMINATED,
    expire: T.TERMINATED,
    terminate: T.TERMINATED,
  },
  TERMINATED: {},
};

export type TransitionResult =
  | { readonly ok: true; readonly state: SessionState; readonly version: bigint }
  | { readonly ok: false; readonly reason: 'invalid_transition' | 'stale_version' };

/** The version every session is admitted at. */
export const INITIAL_VERSION = 1n;

/**
 * May `event` move a session that is in `state` at `version`, given the version the caller expects?
 * Admission expects no version (pass `null` for both). Every accepted transition adds exactly 1.
 */
export function transition(
  state: FromState,
  version: bigint | null,
  event: LifecycleEvent,
  expectVersion: bigint | null,
): TransitionResult {
  const to = TRANSITIONS[state ?? 'none']?.[event];
  if (to === undefined) return { ok: false, reason: 'invalid_transition' };
  if (state === null) return { ok: true, state: to, version: INITIAL_VERSION };
  if (version === null || expectVersion !== version) return { ok: false, reason: 'stale_version' };
  return { ok: true, state: to, version: version + 1n };
}
