/**
 * Regression (issue 7 soak): MemoryReplayStore dropped expired ids only once it reached
 * `maxEntries` (default 1,000,000), so under steady per-request-claims traffic it kept every id it
 * had ever seen and the resource server's heap grew without end. Expired ids are now swept as the
 * store grows: it stays near the number of live ids, and live ids are never forgotten.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryReplayStore } from '@tether/core';

test('MemoryReplayStore: steady traffic with expiring ids keeps the store near the live set', () => {
  let now = 1000;
  const store = new MemoryReplayStore({ now: () => now });
  const lifetime = 10;
  const perSecond = 500;
  let peak = 0;
  for (let second = 0; second < 200; second++) {
    for (let i = 0; i < perSecond; i++) assert.equal(store.use(`s${second}-${i}`, now + lifetime), true);
    peak = Math.max(peak, store.size);
    now += 1;
  }
  const live = perSecond * lifetime;
  // 100,000 ids were used; at most ~2x the live ids (plus the minimum sweep threshold) are held.
  assert.ok(peak <= 2 * live + 1024, `peak ${peak} for ${live} live ids`);
  assert.ok(store.size <= 2 * live + 1024, `size ${store.size}`);
});

test('MemoryReplayStore: sweeping never forgets a live id', () => {
  let now = 0;
  const store = new MemoryReplayStore({ now: () => now });
  // Long-lived ids first, then many short-lived ones that force sweeps.
  for (let i = 0; i < 300; i++) store.use(`long-${i}`, 1e9);
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 1000; i++) store.use(`short-${round}-${i}`, now + 1);
    now += 2;
  }
  for (let i = 0; i < 300; i++) assert.equal(store.use(`long-${i}`, 1e9), false, `long-${i} still remembered`);
  assert.ok(store.size < 300 + 2048, `size ${store.size}`);
});
