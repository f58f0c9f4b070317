// The longest a Node timer waits (2^31 − 1 ms, about 24.8 days): Node fires a longer one after 1 ms — the
// opposite of what was asked — so every setting that becomes a timer is bounded by it (config/schema.ts),
// and a computed wait is clamped to it (then armed again).
export const MAX_TIMER_MS = 2_147_483_647;
