import { describe, expect, it } from "vitest";
import { backoffDelay, FINAL_CODES, RECONNECT_CODES, shouldReconnect } from "../src/backoff.js";

describe("backoffDelay (full jitter, 0.5 s doubling to 20 s)", () => {
  it("draws from [0, min(20 s, 0.5 s * 2^attempt))", () => {
    const ceilings = [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000];
    ceilings.forEach((ceiling, attempt) => {
      expect(backoffDelay(attempt, () => 0)).toBe(0);
      expect(backoffDelay(attempt, () => 0.5)).toBe(ceiling / 2);
      expect(backoffDelay(attempt, () => 0.999999)).toBeLessThan(ceiling);
      expect(backoffDelay(attempt, () => 0.999999)).toBeGreaterThan(ceiling * 0.99);
    });
  });

  it("stays capped for very large attempts", () => {
    expect(backoffDelay(10_000, () => 0.5)).toBe(10_000);
  });

  it("spreads delays with Math.random", () => {
    const delays = Array.from({ length: 200 }, () => backoffDelay(3));
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...delays)).toBeLessThan(4000);
    expect(new Set(delays).size).toBeGreaterThan(150);
  });
});

describe("close codes (PROTOCOL.md)", () => {
  it("reconnects after the transient codes only", () => {
    for (const code of [1001, 1006, 1011, 1012, 1013, 4408, 4429, 4503]) {
      expect(shouldReconnect(code)).toBe(true);
    }
    for (const code of [4400, 4401, 4403, 4404, 4410, 1009, 1000, 4999]) {
      expect(shouldReconnect(code)).toBe(false);
    }
    for (const code of FINAL_CODES) expect(RECONNECT_CODES.has(code)).toBe(false);
  });
});
