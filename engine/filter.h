/*
 * filter.h - the filter of keys on disk: an approximate set of key hashes
 * that answers "could this key be on disk?" from memory, so that a get
 * for a key that exists nowhere (a cache's common miss) costs no index
 * lookup and no disk access.
 *
 * Design: a chain of cuckoo filters (partial-key cuckoo hashing) with
 * 16-bit fingerprints in buckets of four, one 64-bit word per bucket.
 *
 *   - Size. A level of n buckets takes 8n bytes and holds up to about
 *     0.95 * 4n keys; filter_new() sizes the first level so that the
 *     expected keys fill it to 90%: 2.2 bytes per key. After the chain
 *     has grown, up to twice that (see Growth).
 *   - False positives. A lookup compares the fingerprint with the eight
 *     slots of two buckets per level: at most 8 / 65535 = 0.012% per
 *     full level; measured 0.011% at 90% load, 0.012% when the level is
 *     full (97% of its slots). That is twenty times below the 0.2% that
 *     12-bit fingerprints would give at 1.6 bytes per key: the extra 0.6
 *     byte per key buys room to grow (below) with the rate still far
 *     under 0.5%, and 16-bit slots keep a bucket in one atomic word.
 *   - No false negatives. A hash added and not removed is always found,
 *     while the filter has memory to grow (on TC_ENOMEM it turns into
 *     "everything may be on disk", see filter_add()).
 *   - Growth. When no room can be made for a fingerprint (no free slot
 *     in its buckets in any level, and no path of cuckoo moves found
 *     within a level by a search of at most 512 buckets), a new level twice the size of the newest is
 *     added. Lookups check every level, so each full level adds its
 *     0.012%: measured 0.11% after growing from 1024 buckets to 2M keys
 *     (9 levels); twenty doublings (a millionfold growth) stay under
 *     0.25%. Memory is 2.1 to 4.2 bytes per key while the chain grows
 *     (measured). Size the filter at open from the index (and the disk
 *     budget), so that the chain stays short.
 *   - Cost (measured on the build machine, 2M-4M keys): an add 100-250
 *     ns, a lookup 20-90 ns per level (two bucket words; one cache miss
 *     each once the filter outgrows the caches).
 *   - Removal. Removing a hash removes one copy of its fingerprint from
 *     the first level, newest first, whose buckets for that hash hold
 *     it. That copy may belong to another key with the same fingerprint
 *     and buckets; this never causes a false negative as long as adds
 *     and removes are balanced per key (see filter_remove()).
 *   - Deterministic: the same hashes added in the same order give the
 *     same filter (no random kicks).
 *
 * Thread safety: any number of threads may call filter_maybe(),
 * filter_count(), filter_bytes() and filter_levels() at once, together
 * with writers. Writers (filter_add, filter_remove, filter_clear) are
 * serialized by an internal mutex, so the index writer and a deleting
 * thread may both write. filter_new() and filter_free() must not run
 * concurrently with any other call.
 *
 * Readers take no lock. A lookup reads one sequence counter (one of 64,
 * chosen by the fingerprint) and two bucket words per level; when it
 * finds nothing, it reads the counter again. Writers bump the counter of
 * a fingerprint around any change that takes it out of a slot (a
 * removal, the moves of a cuckoo path): a write section of a few stores.
 * An add into a free slot, the common case, needs no section. So:
 *   - a lookup costs no atomic read-modify-write and no shared write;
 *   - a lookup retries only when a section on its stripe overlapped it
 *     (one in 64 of all sections); after 4 retries, or when a
 *     section lasts more than about a microsecond (its writer was
 *     preempted), it sleeps on the writers' mutex and does one lookup
 *     under it. Readers thus never spin long, and never hold a writer up
 *     for more than one lookup;
 *   - writers wait for readers only in that last case, for one lookup.
 */
#ifndef TC_FILTER_H
#define TC_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tiercache.h"

typedef struct filter filter;

/*
 * Creates a filter whose first level holds expected_keys at 90% load, and
 * at least 1024 buckets (8 KiB, 3686 keys): tiny levels would each add a
 * full level's false positives for next to no keys. The filter grows as
 * needed. On TC_OK *out is a new filter to be freed with filter_free().
 * Errors: TC_ENOMEM.
 */
tc_status filter_new(size_t expected_keys, filter **out);

/* Frees the filter; *f becomes NULL. filter_free of a NULL *f does
 * nothing. */
void filter_free(filter **f);

/*
 * Adds h, the hash of a key that is now on disk (hash_key() with the
 * engine's seed). Add each key once when it arrives on disk and remove
 * it once when it leaves: an overwrite of a key already on disk adds
 * nothing (or removes the old hash and adds the new one). The same hash
 * may be added more than once (it is then held as many times), but a
 * bucket pair holds at most eight copies per level, so adding one hash
 * without bound grows the chain without bound.
 *
 * Returns TC_OK, or TC_ENOMEM when a new level was needed and could not
 * be allocated (or the chain is at its limit of levels). From then on
 * filter_maybe() answers true for every hash, so no key is ever missed,
 * until filter_clear().
 */
tc_status filter_add(filter *f, uint64_t h);

/*
 * Removes one copy of h, which must have been added and not yet removed
 * as often. Removing a hash that was never added may remove another
 * key's fingerprint and make that key a false negative: don't. Removing
 * an absent fingerprint does nothing.
 */
void filter_remove(filter *f, uint64_t h);

/* False when no key with hash h is on disk; true when one may be. */
bool filter_maybe(const filter *f, uint64_t h);

/* Hashes held: adds minus removes that found their fingerprint. */
size_t filter_count(const filter *f);

/* Bytes of memory the filter holds (buckets and bookkeeping). */
size_t filter_bytes(const filter *f);

/* Levels in the chain, 1 until the filter first grows. */
size_t filter_levels(const filter *f);

/*
 * Empties the filter (and ends the "everything may be on disk" state of
 * a failed add). The levels stay allocated, so the filter's memory does
 * not shrink: to start small again, build a new filter. Readers running
 * meanwhile may or may not see the hashes being cleared.
 */
void filter_clear(filter *f);

#endif /* TC_FILTER_H */
