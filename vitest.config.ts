import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real processes and sockets; keep the two cores from being oversubscribed.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
