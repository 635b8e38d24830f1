/**
 * The soak's memory verdict (bench/soak-memory.ts): RSS growth is the least-squares trend of the
 * samples under load after warm-up; the bound is 5 MiB per hour after warm-up and never less than
 * 5 MiB. A steady leak fails it, a sawtooth (V8 heap, allocator) does not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveAllocator, rssGrowth, type TimedRss } from '../../bench/soak-memory.js';

const MiB = 1024 * 1024;
/** Samples every 5 s from `from` to `to` seconds, RSS given in MiB by `rss(t)`. */
function series(from: number, to: number, rss: (t: number) => number): TimedRss[] {
  const out: TimedRss[] = [];
  for (let t = from; t <= to; t += 5) out.push({ t, rss: rss(t) * MiB });
  return out;
}

test('an hour after warm-up: flat with a +-8 MiB sawtooth passes; a leak of 6 MiB/hour fails', () => {
  const sawtooth = (t: number) => 130 + (Math.floor(t / 60) % 2 === 0 ? 8 : -8);
  const flat = rssGrowth(series(360, 3960, sawtooth));
  assert.equal(flat.spanSeconds, 3600);
  assert.equal(flat.boundMiB, 5);
  assert.ok(flat.holds && Math.abs(flat.growthMiB) < 1, `growth ${flat.growthMiB}`);
  // A sawtooth of 35 MiB every 140 s (the V8 heap's, seen in the 10-minute runs) is no growth either.
  const v8 = rssGrowth(series(360, 3960, (t) => 100 + 35 * ((t % 140) / 140)));
  assert.ok(v8.holds && Math.abs(v8.growthMiB) < 2, `growth ${v8.growthMiB}`);
  const steady = rssGrowth(series(360, 3960, (t) => 130 + (t % 10 === 0 ? 0.5 : -0.5)));
  assert.ok(steady.holds && Math.abs(steady.growthMiB) <= 1, JSON.stringify(steady));
  const leak = rssGrowth(series(360, 3960, (t) => 130 + (6 * (t - 360)) / 3600));
  assert.equal(leak.holds, false);
  assert.ok(Math.abs(leak.growthMiB - 6) < 0.01, `leak growth ${leak.growthMiB}`);
});

test('shorter runs keep the 5 MiB floor; longer runs get 5 MiB per hour; an explicit bound wins', () => {
  const short = rssGrowth(series(60, 660, () => 120));
  assert.equal(short.boundMiB, 5);
  assert.equal(short.growthMiB, 0);
  assert.equal(short.holds, true);
  assert.equal(rssGrowth(series(60, 660, (t) => 120 + t / 100)).holds, false, '6 MiB in 10 minutes fails the 5 MiB floor');
  const long = rssGrowth(series(360, 360 + 2 * 3600, () => 120));
  assert.equal(long.boundMiB, 10);
  const explicit = rssGrowth(series(60, 660, (t) => 120 + t / 10), 256);
  assert.equal(explicit.boundMiB, 256);
  assert.equal(explicit.holds, true);
  assert.equal(rssGrowth([]).holds, false, 'no sample after warm-up is no verdict');
});

test('allocator: glibc needs nothing; jemalloc is preloaded when found; an unknown name is refused', () => {
  assert.deepEqual(resolveAllocator('glibc'), { name: 'glibc', env: {} });
  const auto = resolveAllocator('auto');
  if (auto.name === 'jemalloc') assert.match(auto.env.LD_PRELOAD ?? '', /libjemalloc\.so\.2$/);
  else assert.throws(() => resolveAllocator('jemalloc'), /libjemalloc\.so\.2 not found/);
  assert.throws(() => resolveAllocator('tcmalloc'), /--rs-allocator must be auto, jemalloc or glibc/);
});
