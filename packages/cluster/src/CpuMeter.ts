/**
 * This process's busy fraction of the machine's CPUs since the previous sample (0..1), for the
 * heartbeat that mixer placement reads.
 */
import { availableParallelism } from 'node:os';

export class CpuMeter {
  #lastUsage = process.cpuUsage();
  #lastAt = performance.now();
  readonly #cores = Math.max(1, availableParallelism());

  sample(): number {
    const usage = process.cpuUsage();
    const now = performance.now();
    const usedUs = usage.user - this.#lastUsage.user + (usage.system - this.#lastUsage.system);
    const elapsedMs = now - this.#lastAt;
    this.#lastUsage = usage;
    this.#lastAt = now;
    if (elapsedMs <= 0) return 0;
    return Math.min(1, Math.max(0, usedUs / 1000 / elapsedMs / this.#cores));
  }
}
