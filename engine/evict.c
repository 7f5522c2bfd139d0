/*
 * evict.c - S3-FIFO eviction for the memory tier (the design is in
 * mem_int.h).
 *
 * Choices measured with bench/hitratio against an exact LRU:
 *   - the small FIFO holds about a tenth of the shard's bytes;
 *   - while the tier is below EVICT_FILL_PERCENT of its limit, nothing is
 *     evicted and FIFO order has no use yet: new items join the small
 *     FIFO as fill items, marked but not in the ring, so a cache that is
 *     filling does not pay 8 bytes of ring per item; when eviction starts
 *     they leave the small FIFO first, as the oldest, found by a hand
 *     over the table;
 *   - an item leaving the small FIFO moves to main if it was read at
 *     least once while there, and starts main with a clean count;
 *   - the ghost is a direct-mapped array of 16-bit hash fingerprints, half
 *     as many as table slots (about 1.5 bytes per item): a collision
 *     forgets an older ghost, which ages the ghost as a FIFO would.
 *
 * Everything here runs under the shard's lock.
 */
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "mem_int.h"

#define EVICT_SMALL_PERCENT 10
/* Below this share of the limit, new items join the small FIFO as fill
 * items rather than in its ring. */
#define EVICT_FILL_PERCENT 80
#define EVICT_RING_MIN 16u
/* How far back from the ring's tail an unlinked item is looked for. */
#define EVICT_FORGET_SCAN 64u

static uint32_t ghost_index(uint64_t h, uint32_t cap)
{
    return (uint32_t)(((h & 0xffffffffu) * cap) >> 32);
}

static uint16_t ghost_fp(uint64_t h)
{
    uint16_t fp = (uint16_t)(h >> 40);
    return fp != 0 ? fp : 1;
}

void evict_ghost_resize(mem_shard *sh, uint32_t cap)
{
    uint32_t gcap = cap / 2 > 32 ? cap / 2 : 32;
    uint16_t *g = calloc(gcap, sizeof(*g));
    if (g == NULL)
        return; /* keep the old ghost: it still works, only smaller */
    free(sh->ghost);
    sh->ghost = g;
    sh->ghost_cap = gcap;
}

void evict_shard_free(mem_shard *sh)
{
    free(sh->ghost);
    sh->ghost = NULL;
    sh->ghost_cap = 0;
}

static uint32_t ring_len(const mem_shard *sh)
{
    return sh->ring_tail - sh->ring_head;
}

bool evict_ring_push(mem_shard *sh, struct tc_item *it)
{
    uint32_t cap = sh->ring == NULL ? 0 : sh->ring_mask + 1;
    if (ring_len(sh) == cap) {
        uint32_t ncap = cap == 0 ? EVICT_RING_MIN : cap * 2;
        struct tc_item **nr = malloc((size_t)ncap * sizeof(*nr));
        if (nr == NULL)
            return false;
        uint32_t n = ring_len(sh);
        for (uint32_t i = 0; i < n; i++)
            nr[i] = sh->ring[(sh->ring_head + i) & sh->ring_mask];
        free(sh->ring);
        sh->ring = nr;
        sh->ring_mask = ncap - 1;
        sh->ring_head = 0;
        sh->ring_tail = n;
    }
    sh->ring[sh->ring_tail & sh->ring_mask] = it;
    sh->ring_tail++;
    it->bits |= ITEM_RING;
    sh->small_bytes += mem_item_cost(it);
    return true;
}

/* Drops holes (entries of items already freed) at the ring's head. */
static void ring_skip_holes(mem_shard *sh)
{
    while (ring_len(sh) > 0 &&
           sh->ring[sh->ring_head & sh->ring_mask] == NULL) {
        sh->ring_head++;
        sh->ring_holes--;
    }
}

static struct tc_item *ring_pop(mem_shard *sh)
{
    ring_skip_holes(sh);
    if (ring_len(sh) == 0)
        return NULL;
    struct tc_item *it = sh->ring[sh->ring_head & sh->ring_mask];
    sh->ring_head++;
    it->bits &= (uint8_t)~ITEM_RING;
    sh->small_bytes -= mem_item_cost(it);
    if (!(it->bits & ITEM_LINKED))
        sh->ring_dead--;
    return it;
}

void evict_ring_forget(mem_shard *sh, struct tc_item *it)
{
    uint32_t n = ring_len(sh);
    uint32_t look = n < EVICT_FORGET_SCAN ? n : EVICT_FORGET_SCAN;

    for (uint32_t i = 1; i <= look; i++) {
        uint32_t idx = (sh->ring_tail - i) & sh->ring_mask;
        if (sh->ring[idx] == it) {
            sh->ring[idx] = NULL;
            sh->ring_holes++;
            it->bits &= (uint8_t)~ITEM_RING;
            sh->small_bytes -= mem_item_cost(it);
            return;
        }
    }
    sh->ring_dead++;
}

void evict_ring_tidy(mem *m, mem_shard *sh)
{
    uint32_t waste = sh->ring_dead + sh->ring_holes;
    if (waste == 0 || (uint64_t)waste * 4 < ring_len(sh))
        return;
    uint32_t w = sh->ring_head;
    for (uint32_t r = sh->ring_head; r != sh->ring_tail; r++) {
        struct tc_item *it = sh->ring[r & sh->ring_mask];
        if (it == NULL)
            continue;
        if (!(it->bits & ITEM_LINKED)) {
            it->bits &= (uint8_t)~ITEM_RING;
            sh->small_bytes -= mem_item_cost(it);
            mem_release(m, sh, it);
            continue;
        }
        sh->ring[w & sh->ring_mask] = it;
        w++;
    }
    sh->ring_tail = w;
    sh->ring_dead = 0;
    sh->ring_holes = 0;
}

/* Puts a linked item into the small FIFO: into the ring, or, while the
 * tier is far from its limit, as a fill item (see mem_int.h). If the ring
 * cannot grow, the item goes to main instead, which is always correct. */
static void evict_to_small(mem *m, mem_shard *sh, struct tc_item *it)
{
    if (atomic_load_explicit(&m->used, memory_order_relaxed) <
        m->cfg.limit / 100 * EVICT_FILL_PERCENT) {
        it->bits |= ITEM_SMALL;
        sh->small_count++;
        sh->fill_count++;
        sh->fill_bytes += mem_item_cost(it);
        return;
    }
    if (evict_ring_push(sh, it)) {
        it->bits |= ITEM_SMALL;
        sh->small_count++;
    }
}

void evict_leave_small(mem_shard *sh, struct tc_item *it)
{
    it->bits &= (uint8_t)~ITEM_SMALL;
    sh->small_count--;
    if (!(it->bits & ITEM_RING)) {
        sh->fill_count--;
        sh->fill_bytes -= mem_item_cost(it);
    }
}

bool evict_admit(mem *m, mem_shard *sh, uint64_t h, struct tc_item *it)
{
    uint32_t gi = ghost_index(h, sh->ghost_cap);
    if (sh->ghost[gi] == ghost_fp(h)) {
        sh->ghost[gi] = 0;
        sh->st.ghost_hits++;
        return true;
    }
    evict_to_small(m, sh, it);
    return true;
}

bool evict_inherit(mem *m, mem_shard *sh, struct tc_item *old,
                   struct tc_item *it)
{
    it->bits |= old->bits & ITEM_FREQ_MASK;
    if (old->bits & ITEM_SMALL)
        evict_to_small(m, sh, it);
    return true;
}

/* Records an evicted key in the ghost. */
static void ghost_remember(mem *m, mem_shard *sh, const struct tc_item *it)
{
    uint64_t h = hash_key(item_key(it), item_klen(it), m->cfg.seed);
    sh->ghost[ghost_index(h, sh->ghost_cap)] = ghost_fp(h);
}

enum { SMALL_NONE, SMALL_MOVED, SMALL_FREED };

#define SMALL_POS_UNKNOWN UINT32_MAX

/*
 * The S3-FIFO decision for an item that has just left the small FIFO: read
 * again while there, it stays, in main, with a clean count (SMALL_MOVED);
 * otherwise it is evicted and its key remembered in the ghost, or, expired,
 * reclaimed (SMALL_FREED). pos is its slot, or SMALL_POS_UNKNOWN.
 */
static int small_exit(mem *m, mem_shard *sh, struct tc_item *it, uint32_t now,
                      uint32_t pos)
{
    /* A pinned item (its change is not in the index yet) cannot go: it
     * waits in main until it is unpinned. */
    if (it->bits & ITEM_PINNED)
        return SMALL_MOVED;
    bool expired = item_expired(it, now);
    if (!expired && (it->bits & ITEM_FREQ_MASK) != 0) {
        it->bits &= (uint8_t)~ITEM_FREQ_MASK;
        return SMALL_MOVED;
    }
    if (pos == SMALL_POS_UNKNOWN && !mem_table_find_ptr(m, sh, it, &pos)) {
        /* Unreachable: a linked item is in the table. Keep it in main. */
        return SMALL_MOVED;
    }
    if (expired) {
        sh->st.reclaimed++;
    } else {
        ghost_remember(m, sh, it);
        sh->st.evictions++;
    }
    mem_unlink_at(m, sh, it, pos);
    return SMALL_FREED;
}

/*
 * Takes the next fill item out of the small FIFO, found by a hand of its
 * own over the table (fill items are the oldest of the small FIFO, in no
 * particular order among themselves). Read again: moves to main; else
 * evicted to the ghost. SMALL_NONE when keep is the only fill item.
 */
static int evict_fill(mem *m, mem_shard *sh, uint32_t now, uintptr_t keep)
{
    for (uint32_t n = 0; n < sh->cap; n++) {
        if (sh->fill_hand >= sh->cap)
            sh->fill_hand = 0;
        uint64_t s = sh->slots[sh->fill_hand];
        struct tc_item *it = slot_item(s);
        if (s == 0 || (it->bits & (ITEM_SMALL | ITEM_RING)) != ITEM_SMALL ||
            (uintptr_t)it == keep) {
            sh->fill_hand++;
            continue;
        }
        evict_leave_small(sh, it);
        int r = small_exit(m, sh, it, now, sh->fill_hand);
        if (r == SMALL_MOVED)
            sh->fill_hand++;
        return r;
    }
    return SMALL_NONE;
}

/* Takes the next item out of the ring: read again, it moves to main;
 * else it is evicted to the ghost. */
static int evict_small(mem *m, mem_shard *sh, uint32_t now)
{
    struct tc_item *it = ring_pop(sh);

    if (it == NULL)
        return SMALL_NONE; /* only holes were left */
    if (!(it->bits & ITEM_LINKED)) {
        /* Deleted or replaced while in the FIFO: free it now. */
        mem_release(m, sh, it);
        return SMALL_FREED;
    }
    /* A ring item (ring_pop cleared ITEM_RING): no fill counts to mend. */
    it->bits &= (uint8_t)~ITEM_SMALL;
    sh->small_count--;
    return small_exit(m, sh, it, now, SMALL_POS_UNKNOWN);
}

/* Moves the CLOCK hand over main until it evicts one item. */
static bool evict_main(mem *m, mem_shard *sh, uint32_t now, uintptr_t keep)
{
    uint32_t main_items = sh->count - sh->small_count;
    /* Each main item is passed at most four times (its frequency is at
     * most 3), so this bound is never reached while main has items. */
    uint64_t budget = (uint64_t)sh->cap * 5;

    if (main_items == 0)
        return false;
    while (budget-- > 0) {
        if (sh->hand >= sh->cap)
            sh->hand = 0;
        uint64_t s = sh->slots[sh->hand];
        struct tc_item *it = slot_item(s);
        if (s == 0 || (it->bits & (ITEM_SMALL | ITEM_PINNED)) ||
            (uintptr_t)it == keep) {
            sh->hand++;
            continue;
        }
        if (item_expired(it, now)) {
            sh->st.reclaimed++;
        } else if ((it->bits & ITEM_FREQ_MASK) != 0) {
            it->bits--;
            sh->hand++;
            continue;
        } else {
            sh->st.evictions++;
        }
        mem_unlink_at(m, sh, it, sh->hand);
        return true;
    }
    return false;
}

bool evict_one(mem *m, mem_shard *sh, uint32_t now, uintptr_t keep)
{
    /* Main could give nothing: every item there is pinned (the index is
     * behind), or is keep. The small FIFO gives instead, however small,
     * or a shard whose main is all pinned would shield its small items
     * from eviction for as long as the index lags. */
    bool main_stuck = false;
    for (;;) {
        bool main_empty = sh->count == sh->small_count || main_stuck;
        bool small_due = (uint64_t)(sh->small_bytes + sh->fill_bytes) * 100 >=
                         (uint64_t)sh->bytes * EVICT_SMALL_PERCENT;
        if (!small_due && !main_empty) {
            if (evict_main(m, sh, now, keep))
                return true;
            main_stuck = true;
            continue;
        }
        int r = SMALL_NONE;
        /* The item just stored may be the only fill item: then there is
         * no need to scan the table to find that out. */
        const struct tc_item *k = (const struct tc_item *)keep;
        bool keep_only_fill = sh->fill_count == 1 && k != NULL &&
                              (k->bits & (ITEM_SMALL | ITEM_RING)) == ITEM_SMALL;
        if (sh->fill_count > 0 && !keep_only_fill)
            r = evict_fill(m, sh, now, keep);
        if (r == SMALL_NONE) {
            ring_skip_holes(sh);
            /* The item just stored is the newest in the small FIFO: at
             * its head it is alone there, and main must give instead. */
            if (ring_len(sh) == 0 ||
                (uintptr_t)sh->ring[sh->ring_head & sh->ring_mask] == keep)
                return !main_empty && evict_main(m, sh, now, keep);
            r = evict_small(m, sh, now);
        }
        if (r == SMALL_FREED)
            return true;
    }
}

/* ---- the hot keys (warm start) ---- */

/* An item's place in the snapshot's order: main before small, then by
 * frequency (the policy's own counter), so 7 is the hottest. */
#define EVICT_HOT_CLASSES 8
/* Slots looked at per hold of a shard's lock. */
#define EVICT_HOT_STEP 4096u

typedef struct hot_buf {
    unsigned char *p;
    size_t len;
    size_t cap;
    uint64_t cost; /* memory cost of the items named */
    uint32_t n;
} hot_buf;

static bool hot_add(hot_buf *b, const struct tc_item *it)
{
    size_t klen = item_klen(it);
    if (b->len + 1 + klen > b->cap) {
        size_t cap = b->cap != 0 ? b->cap * 2 : 4096;
        while (cap < b->len + 1 + klen)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (p == NULL)
            return false;
        b->p = p;
        b->cap = cap;
    }
    b->p[b->len] = (unsigned char)klen;
    memcpy(b->p + b->len + 1, item_key(it), klen);
    b->len += 1 + klen;
    b->cost += mem_item_cost(it);
    b->n++;
    return true;
}

tc_status mem_hot_keys(mem *m, uint32_t now, unsigned char **out,
                       size_t *out_len, uint32_t *nkeys)
{
    hot_buf cls[EVICT_HOT_CLASSES];
    tc_status st = TC_OK;
    memset(cls, 0, sizeof(cls));
    *out = NULL;
    *out_len = 0;
    *nkeys = 0;
    for (unsigned s = 0; s < m->cfg.shards && st == TC_OK; s++) {
        mem_shard *sh = &m->shards[s];
        /* In steps, so a get waits at most one step for the lock; a table
         * that grows between steps may show a key twice or not at all,
         * which a snapshot can afford. */
        for (uint32_t pos = 0; st == TC_OK;) {
            pthread_mutex_lock(&sh->lock);
            uint32_t end = pos + EVICT_HOT_STEP;
            if (end > sh->cap)
                end = sh->cap;
            for (; pos < end; pos++) {
                uint64_t v = sh->slots[pos];
                if (v == 0)
                    continue;
                const struct tc_item *it = slot_item(v);
                if ((it->bits & ITEM_TOMB) || item_expired(it, now))
                    continue;
                unsigned c = (it->bits & ITEM_FREQ_MASK) +
                             ((it->bits & ITEM_SMALL) ? 0u : 4u);
                if (!hot_add(&cls[c], it)) {
                    st = TC_ENOMEM;
                    break;
                }
            }
            bool done = pos >= sh->cap;
            pthread_mutex_unlock(&sh->lock);
            if (done)
                break;
        }
    }
    /* Hottest first, up to what fills the memory tier. */
    hot_buf all = {0};
    for (int c = EVICT_HOT_CLASSES - 1; c >= 0 && st == TC_OK; c--) {
        const unsigned char *p = cls[c].p;
        size_t off = 0;
        while (off < cls[c].len && all.cost < m->cfg.limit) {
            size_t klen = p[off];
            size_t need = 1 + klen;
            if (all.len + need > all.cap) {
                size_t cap = all.cap != 0 ? all.cap * 2 : 4096;
                while (cap < all.len + need)
                    cap *= 2;
                unsigned char *np = realloc(all.p, cap);
                if (np == NULL) {
                    st = TC_ENOMEM;
                    break;
                }
                all.p = np;
                all.cap = cap;
            }
            memcpy(all.p + all.len, p + off, need);
            all.len += need;
            /* The cost of a class's items is spread evenly. */
            all.cost += cls[c].cost / cls[c].n;
            all.n++;
            off += need;
        }
    }
    for (int c = 0; c < EVICT_HOT_CLASSES; c++)
        free(cls[c].p);
    if (st != TC_OK) {
        free(all.p);
        return st;
    }
    *out = all.p;
    *out_len = all.len;
    *nkeys = all.n;
    return TC_OK;
}
