/**
 * BindingCache (draft 3.3 / 3.3.2: (connection, ath) cache, purged on close; NOTES decision 2) and
 * MemoryReplayStore (draft 2.3.2.2 jti). Pure data structures: the connection is a hand-written
 * ConnectionContext.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BindingCache, MemoryReplayStore, type BindingEntry } from '@tether/core';
import { FakeConnection } from './support/connection.js';

const FAR = 1e12;
const entry = (proof: string, expiresAt = FAR): BindingEntry => ({ proof, expiresAt });

/** Every (connection, ath, proof) the test stored and expects to be retrievable. */
function retrievable(cache: BindingCache, stored: Array<[FakeConnection, string, string]>): number {
  return stored.filter(([c, ath, proof]) => cache.get(c.id, ath, proof, 0) !== undefined).length;
}

test('hit only for the same connection, the same ath and the exact proof string', () => {
  const cache = new BindingCache();
  const a = new FakeConnection();
  const b = new FakeConnection();
  cache.set(a, 'ath1', { proof: 'proof-1', expiresAt: FAR, htm: 'GET', htu: '/x' });
  assert.deepEqual(cache.get(a.id, 'ath1', 'proof-1', 0), { proof: 'proof-1', expiresAt: FAR, htm: 'GET', htu: '/x' });
  assert.equal(cache.get(a.id, 'ath1', 'proof-2', 0), undefined, 'another proof for the same token re-verifies');
  assert.equal(cache.get(a.id, 'ath2', 'proof-1', 0), undefined, 'another token');
  assert.equal(cache.get(b.id, 'ath1', 'proof-1', 0), undefined, 'another connection (T1)');
  // A miss on a different proof leaves the verified entry in place.
  assert.ok(cache.get(a.id, 'ath1', 'proof-1', 0));
  assert.equal(cache.size, 1);
  assert.equal(cache.connections, 1);
  // Several tokens on one connection (draft 3.3.2), and replacing a token's entry.
  cache.set(a, 'ath2', entry('proof-2'));
  cache.set(a, 'ath1', entry('proof-1b'));
  assert.equal(cache.size, 2);
  assert.equal(cache.get(a.id, 'ath1', 'proof-1', 0), undefined);
  assert.ok(cache.get(a.id, 'ath1', 'proof-1b', 0));
  assert.ok(cache.get(a.id, 'ath2', 'proof-2', 0));
});

test('an entry is used strictly before expiresAt and dropped at it', () => {
  const cache = new BindingCache();
  const a = new FakeConnection();
  cache.set(a, 'ath', entry('p', 1000));
  assert.ok(cache.get(a.id, 'ath', 'p', 999.999));
  assert.equal(cache.get(a.id, 'ath', 'p', 1000), undefined);
  assert.equal(cache.size, 0);
  assert.equal(cache.connections, 0);
  assert.equal(cache.get(a.id, 'ath', 'p', 0), undefined, 'gone, not just hidden');
  // An expired entry is dropped even when looked up with a different proof.
  cache.set(a, 'ath', entry('p', 1000));
  assert.equal(cache.get(a.id, 'ath', 'other', 1001), undefined);
  assert.equal(cache.size, 0);
});

test('per-connection bound evicts that connection oldest entries only', () => {
  const cache = new BindingCache({ maxEntriesPerConnection: 3 });
  const a = new FakeConnection();
  const b = new FakeConnection();
  cache.set(b, 'b0', entry('p'));
  for (let i = 0; i < 5; i++) cache.set(a, `a${i}`, entry('p'));
  assert.equal(cache.size, 4);
  assert.deepEqual(
    ['a0', 'a1', 'a2', 'a3', 'a4'].map((ath) => cache.get(a.id, ath, 'p', 0) !== undefined),
    [false, false, true, true, true],
  );
  assert.ok(cache.get(b.id, 'b0', 'p', 0));
  // Re-setting an existing ath does not evict anything.
  cache.set(a, 'a3', entry('p'));
  assert.equal(cache.size, 4);
  assert.ok(cache.get(a.id, 'a2', 'p', 0));
});

test('global bound: evicts from the oldest connection and never exceeds maxEntries', () => {
  const cache = new BindingCache({ maxEntries: 4, maxEntriesPerConnection: 10 });
  const a = new FakeConnection();
  const b = new FakeConnection();
  cache.set(a, 'a0', entry('p'));
  cache.set(a, 'a1', entry('p'));
  cache.set(b, 'b0', entry('p'));
  cache.set(b, 'b1', entry('p'));
  cache.set(b, 'b2', entry('p'));
  assert.equal(cache.size, 4);
  assert.equal(cache.get(a.id, 'a0', 'p', 0), undefined, 'oldest entry of the oldest connection went');
  assert.ok(cache.get(a.id, 'a1', 'p', 0));
  cache.set(b, 'b3', entry('p'));
  assert.equal(cache.size, 4);
  assert.equal(cache.connections, 1, 'a connection left without entries is dropped');
  assert.deepEqual(['b0', 'b1', 'b2', 'b3'].map((ath) => cache.get(b.id, ath, 'p', 0) !== undefined), [true, true, true, true]);
});

test('global bound when the connection being written is the oldest one: its new entry is kept and counted', () => {
  // One connection, one slot: every set must evict the previous entry and keep the new one.
  const single = new BindingCache({ maxEntries: 1 });
  const a = new FakeConnection();
  for (let i = 0; i < 4; i++) {
    single.set(a, `a${i}`, entry('p'));
    assert.equal(single.size, 1, `size after set ${i}`);
    assert.ok(single.get(a.id, `a${i}`, 'p', 0), `newest entry retrievable after set ${i}`);
  }
  // Two connections; the oldest connection holds one entry when it writes again.
  const cache = new BindingCache({ maxEntries: 2 });
  const b = new FakeConnection();
  const c = new FakeConnection();
  const stored: Array<[FakeConnection, string, string]> = [];
  const put = (conn: FakeConnection, ath: string) => {
    cache.set(conn, ath, entry('p'));
    stored.push([conn, ath, 'p']);
  };
  put(b, 'b0');
  put(c, 'c0');
  put(b, 'b1');
  assert.ok(cache.get(b.id, 'b1', 'p', 0), 'the entry just stored is retrievable');
  assert.equal(cache.size, 2);
  assert.equal(retrievable(cache, stored), cache.size, 'size counts only retrievable entries');
  for (let i = 2; i < 20; i++) {
    put(i % 3 === 0 ? c : b, `x${i}`);
    assert.ok(cache.size <= 2);
    assert.equal(retrievable(cache, stored), cache.size, `consistent after set ${i}`);
  }
});

test('a closed connection purges its entries; nothing is stored for a closed connection', () => {
  const cache = new BindingCache();
  const a = new FakeConnection();
  const b = new FakeConnection();
  cache.set(a, 'a0', entry('p'));
  cache.set(a, 'a1', entry('p'));
  cache.set(b, 'b0', entry('p'));
  assert.equal(a.onCloseCalls, 1, 'one close listener per connection, however many entries');
  a.close();
  assert.equal(cache.size, 1);
  assert.equal(cache.connections, 1);
  assert.equal(cache.get(a.id, 'a0', 'p', 0), undefined);
  assert.ok(cache.get(b.id, 'b0', 'p', 0));
  cache.set(a, 'a2', entry('p'));
  assert.equal(cache.size, 1, 'closed connection: not stored');
  assert.equal(cache.get(a.id, 'a2', 'p', 0), undefined);
  // Explicit purge, and purging an unknown connection is harmless.
  cache.purge(b.id);
  cache.purge(424242);
  assert.equal(cache.size, 0);
  assert.equal(cache.connections, 0);
  // The close listener survives the connection's entries being purged and re-created.
  cache.set(b, 'b1', entry('p'));
  assert.equal(b.onCloseCalls, 1);
  b.close();
  assert.equal(cache.size, 0);
});

test('in-flight verifications are shared only for the exact proof and unregister when settled', async () => {
  const cache = new BindingCache();
  let resolve!: (v: string) => void;
  const running = new Promise<string>((r) => (resolve = r));
  cache.trackVerification(7, 'ath', 'proof-a', running);
  assert.equal(cache.inflight<string>(7, 'ath', 'proof-a'), running);
  assert.equal(cache.inflight(7, 'ath', 'proof-b'), undefined);
  assert.equal(cache.inflight(8, 'ath', 'proof-a'), undefined);
  assert.equal(cache.inflight(7, 'other', 'proof-a'), undefined);
  resolve('ok');
  await running;
  await new Promise((r) => setImmediate(r));
  assert.equal(cache.inflight(7, 'ath', 'proof-a'), undefined);

  const failing = Promise.reject(new Error('bad proof'));
  failing.catch(() => undefined);
  cache.trackVerification(7, 'ath', 'proof-c', failing);
  await new Promise((r) => setImmediate(r));
  assert.equal(cache.inflight(7, 'ath', 'proof-c'), undefined, 'a rejected verification is not shared later');
});

test('MemoryReplayStore: first use true, reuse false, other ids independent', () => {
  const store = new MemoryReplayStore({ now: () => 100 });
  assert.equal(store.use('a', 200), true);
  assert.equal(store.use('a', 200), false);
  assert.equal(store.use('a', 9999), false);
  assert.equal(store.use('b', 200), true);
  assert.equal(store.size, 2);
});

test('MemoryReplayStore: an id is refused until its expiry, reusable at it', () => {
  let now = 100;
  const store = new MemoryReplayStore({ now: () => now });
  assert.equal(store.use('jti', 150), true);
  now = 149.999;
  assert.equal(store.use('jti', 300), false);
  now = 150;
  assert.equal(store.use('jti', 300), true, 'expired: the token it protected is gone');
  now = 299;
  assert.equal(store.use('jti', 400), false);
});

test('MemoryReplayStore: full of live ids it throws (fails closed) instead of forgetting', () => {
  let now = 100;
  const store = new MemoryReplayStore({ maxEntries: 3, now: () => now });
  assert.equal(store.use('a', 200), true);
  assert.equal(store.use('b', 300), true);
  assert.equal(store.use('c', 300), true);
  assert.throws(() => store.use('d', 300), /replay store full/);
  assert.equal(store.use('a', 200), false, 'known ids are still answered');
  assert.equal(store.size, 3);
  now = 200;
  assert.equal(store.use('d', 300), true, 'expired ids are swept to make room');
  assert.equal(store.size, 3);
  assert.throws(() => store.use('e', 300));
  now = 300;
  assert.equal(store.use('a', 400), true, 'once the others expire, a swept id is usable again');
  assert.equal(store.size, 1);
});

test('MemoryReplayStore: concurrent uses of one jti yield exactly one true', async () => {
  const store = new MemoryReplayStore();
  const exp = Date.now() / 1000 + 60;
  const results = await Promise.all(Array.from({ length: 200 }, () => Promise.resolve().then(() => store.use('same', exp))));
  assert.equal(results.filter(Boolean).length, 1);
  // Interleaved with other ids and async hops.
  const ids = Array.from({ length: 300 }, (_, i) => `id-${i % 30}`);
  const mixed = await Promise.all(
    ids.map(async (id, i) => {
      await new Promise((r) => (i % 2 === 0 ? setImmediate(r) : queueMicrotask(() => r(undefined))));
      return [id, await store.use(id, exp)] as const;
    }),
  );
  const firsts = new Map<string, number>();
  for (const [id, fresh] of mixed) if (fresh) firsts.set(id, (firsts.get(id) ?? 0) + 1);
  assert.equal(firsts.size, 30);
  assert.ok([...firsts.values()].every((n) => n === 1));
});
