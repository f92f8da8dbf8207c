import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real sockets and native codecs: isolate test files in child processes.
    pool: 'forks',
    // Two cores: timing-sensitive tests (mixing clock, UDP loss) must not starve each other.
    maxWorkers: 2,
  },
});
