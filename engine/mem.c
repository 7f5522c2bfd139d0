/*
 * mem.c - the memory tier: shards, their Robin Hood tables, and the item
 * operations with memcached's semantics. The layout and the reference
 * rule are described in mem_int.h; the eviction policy is in evict.c.
 *
 * Every operation hashes outside the lock, locks one shard, and does all
 * its table work there. Lock order: shard, then slab class, then slab
 * pool; a thread never holds two shard locks.
 */
#include "mem_int.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "disk.h"
#include "hash.h"
#include "seg.h"

#define MEM_MIN_CAP 64u
#define MEM_MAX_SHARDS 256u
#define MEM_RECLAIM_BATCH 16
/* Values up to this size are copied under the shard lock. */
#define MEM_REWRITE_MAX ((size_t)4096)

/* ---- table ---- */

static uint64_t slot_make(const struct tc_item *it, unsigned tag,
                          unsigned dist)
{
    return ((uint64_t)tag << SLOT_TAG_SHIFT) |
           ((uint64_t)dist << SLOT_DIST_SHIFT) | (uint64_t)(uintptr_t)it;
}

static mem_shard *mem_shard_of(mem *m, uint64_t h)
{
    return &m->shards[(h >> 56) & (m->cfg.shards - 1)];
}

/* Installs a table. The stores are atomic because mem_prefetch() reads
 * the two fields without the lock; everything else reads them under it. */
static void mem_set_table(mem_shard *sh, uint64_t *slots, uint32_t cap)
{
    __atomic_store_n(&sh->slots, slots, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->cap, cap, __ATOMIC_RELAXED);
}

void mem_prefetch(mem *m, uint64_t h)
{
    mem_shard *sh = mem_shard_of(m, h);
    /* Without the lock: the table may be replaced meanwhile, and then
     * this loads a line of the old one for nothing; a prefetch of freed
     * memory does no harm. */
    uint64_t *slots = __atomic_load_n(&sh->slots, __ATOMIC_RELAXED);
    uint32_t cap = __atomic_load_n(&sh->cap, __ATOMIC_RELAXED);
    __builtin_prefetch(&slots[hash_home(h, cap)]);
}

/* The slots of hash h's probe sequence in a table kept in Robin Hood
 * order: from h's home on, each occupied slot where h's entry could
 * still be (none is past the first empty slot or the first entry nearer
 * its own home than the walk is from h's). The one walk of table_find,
 * mem_table_find_ptr and mem_prefetch_item. */
typedef struct probe {
    const uint64_t *slots;
    uint32_t cap, i; /* i: the position of the slot probe_next gave */
    unsigned d;
} probe;

static inline probe probe_of(const mem_shard *sh, uint64_t h)
{
    return (probe){sh->slots, sh->cap, hash_home(h, sh->cap), 0};
}

/* The next slot's value, or 0 when the walk is over. */
static inline uint64_t probe_next(probe *p)
{
    if (p->d > 0 && ++p->i == p->cap)
        p->i = 0;
    uint64_t s = p->slots[p->i];
    return s == 0 || slot_dist(s) < p->d++ ? 0 : s;
}

void mem_prefetch_item(mem *m, uint64_t h)
{
    mem_shard *sh = mem_shard_of(m, h);
    pthread_mutex_lock(&sh->lock);
    probe p = probe_of(sh, h);
    unsigned tag = hash_tag(h);
    for (uint64_t s; (s = probe_next(&p)) != 0;) {
        if ((s >> SLOT_TAG_SHIFT) == tag) {
            /* The header and key, and what a small value takes after
             * them: a reply copies it (100-byte values span three
             * lines; a prefetch past the item costs a line, no fault). */
            const char *it = (const char *)slot_item(s);
            __builtin_prefetch(it);
            __builtin_prefetch(it + 64);
            __builtin_prefetch(it + 128);
            break;
        }
    }
    pthread_mutex_unlock(&sh->lock);
}

uint64_t mem_hash(const mem *m, const void *key, size_t klen)
{
    return hash_key(key, klen, m->cfg.seed);
}

static struct tc_item *table_find(mem_shard *sh, uint64_t h, const void *key,
                                  size_t klen, uint32_t *pos)
{
    probe p = probe_of(sh, h);
    unsigned tag = hash_tag(h);
    for (uint64_t s; (s = probe_next(&p)) != 0;) {
        if ((s >> SLOT_TAG_SHIFT) != tag)
            continue;
        struct tc_item *it = slot_item(s);
        if (item_klen(it) == klen && memcmp(item_key(it), key, klen) == 0) {
            *pos = p.i;
            return it;
        }
    }
    return NULL;
}

/* Whether the item at ptr is in sh's table under hash h, and where (pos,
 * when not NULL); looks at the table only, never at the item (it may have
 * been freed). With sh's lock held. */
static bool table_has_ptr(const mem_shard *sh, uint64_t h,
                          const struct tc_item *ptr, uint32_t *pos)
{
    probe p = probe_of(sh, h);
    for (uint64_t s; (s = probe_next(&p)) != 0;) {
        if (slot_item(s) == ptr) {
            if (pos != NULL)
                *pos = p.i;
            return true;
        }
    }
    return false;
}

bool mem_table_find_ptr(const mem *m, mem_shard *sh, const struct tc_item *it,
                        uint32_t *pos)
{
    return table_has_ptr(sh, hash_key(item_key(it), item_klen(it), m->cfg.seed),
                         it, pos);
}

/*
 * Places an entry (without distance bits) whose home is home. Returns 0 on
 * success; when a probe distance would pass SLOT_DIST_MAX, returns the
 * entry left without a place (the table is then still consistent, minus
 * that entry).
 */
static uint64_t table_place(uint64_t *slots, uint32_t cap, uint32_t home,
                            uint64_t entry)
{
    const uint64_t dist_mask = (uint64_t)0xff << SLOT_DIST_SHIFT;
    uint32_t i = home;
    unsigned d = 0;

    for (;;) {
        uint64_t s = slots[i];
        if (s == 0) {
            slots[i] = entry | ((uint64_t)d << SLOT_DIST_SHIFT);
            return 0;
        }
        unsigned sd = slot_dist(s);
        if (sd < d) {
            slots[i] = entry | ((uint64_t)d << SLOT_DIST_SHIFT);
            entry = s & ~dist_mask;
            d = sd;
        }
        if (++i == cap)
            i = 0;
        if (++d > SLOT_DIST_MAX)
            return entry;
    }
}

void mem_table_remove_at(mem_shard *sh, uint32_t pos)
{
    uint32_t cap = sh->cap;
    uint32_t i = pos;

    for (;;) {
        uint32_t j = i + 1 == cap ? 0 : i + 1;
        uint64_t s = sh->slots[j];
        if (s == 0 || slot_dist(s) == 0) {
            sh->slots[i] = 0;
            break;
        }
        sh->slots[i] = s - ((uint64_t)1 << SLOT_DIST_SHIFT);
        i = j;
    }
    sh->count--;
}

static uint32_t table_grow_at(uint32_t cap)
{
    return (uint32_t)((uint64_t)cap * 9 / 10);
}

/*
 * Rehashes the shard into a table half again as big. extra, if not 0, is
 * an entry that lost its place and is placed too. Returns false when out
 * of memory or when the table cannot grow (extra is then still homeless).
 */
static bool table_grow(mem *m, mem_shard *sh, uint64_t extra)
{
    uint64_t ncap = (uint64_t)sh->cap + sh->cap / 2;

    for (;;) {
        if (ncap > UINT32_MAX)
            return false;
        uint64_t *ns = calloc((size_t)ncap, sizeof(*ns));
        if (ns == NULL)
            return false;
        bool ok = true;
        for (uint32_t i = 0; i < sh->cap + (extra != 0) && ok; i++) {
            uint64_t s = i < sh->cap ? sh->slots[i] : extra;
            if (s == 0)
                continue;
            const struct tc_item *it = slot_item(s);
            uint64_t h = hash_key(item_key(it), item_klen(it), m->cfg.seed);
            uint64_t e = slot_make(it, hash_tag(h), 0);
            ok = table_place(ns, (uint32_t)ncap, hash_home(h, (uint32_t)ncap),
                             e) == 0;
        }
        if (!ok) {
            /* A probe chain longer than 255: only a broken hash does
             * this, but grow further rather than lose an item. */
            free(ns);
            ncap += ncap / 2;
            continue;
        }
        free(sh->slots);
        mem_set_table(sh, ns, (uint32_t)ncap);
        sh->grow_at = table_grow_at(sh->cap);
        sh->hand = 0;
        sh->fill_hand = 0;
        evict_ghost_resize(sh, sh->cap);
        return true;
    }
}

/* ---- item life ---- */

void mem_release(mem *m, mem_shard *sh, struct tc_item *it)
{
    size_t cost = mem_item_cost(it);
    sh->bytes -= cost;
    atomic_fetch_sub_explicit(&m->used, cost, memory_order_relaxed);
    item_unref(it);
}

/* Ends an item's membership of the table (it is no longer, or about to
 * no longer be, in a slot); drops the shard's reference unless the small
 * FIFO's ring still holds it, dead, until the FIFO reaches it. */
static void mem_drop_link(mem *m, mem_shard *sh, struct tc_item *it)
{
    if (it->bits & ITEM_TOMB) {
        sh->tombs--;
        sh->tomb_bytes -= mem_item_cost(it);
    }
    it->bits &= (uint8_t)~ITEM_LINKED;
    if (it->bits & ITEM_SMALL)
        evict_leave_small(sh, it);
    if (it->bits & ITEM_RING)
        evict_ring_forget(sh, it);
    if (!(it->bits & ITEM_RING))
        mem_release(m, sh, it);
    evict_ring_tidy(m, sh);
}

void mem_unlink_at(mem *m, mem_shard *sh, struct tc_item *it, uint32_t pos)
{
    mem_table_remove_at(sh, pos);
    mem_drop_link(m, sh, it);
}

/*
 * What the table holds for a key. it is the item in its slot, if any:
 * live, or (with a disk tier) a tombstone or an expired item still pinned,
 * which both say the key is absent and keep the slot for the next write.
 * An expired item that is not pinned is unlinked on the way. maybe_disk:
 * no item, and the disk may hold the key (the caller must load it before
 * deciding).
 */
typedef struct mem_found {
    struct tc_item *it;
    uint32_t pos;
    bool live;
    bool expired;
    bool maybe_disk;
} mem_found;

static void mem_find(mem *m, mem_shard *sh, uint64_t h, const void *key,
                     size_t klen, uint32_t now, bool check_disk,
                     mem_found *f)
{
    f->it = table_find(sh, h, key, klen, &f->pos);
    f->live = false;
    f->expired = false;
    f->maybe_disk = false;
    if (f->it == NULL) {
        f->maybe_disk = check_disk && m->dk != NULL && disk_maybe(m->dk, h);
        return;
    }
    if (f->it->bits & ITEM_TOMB)
        return;
    if (item_expired(f->it, now)) {
        f->expired = true;
        sh->st.reclaimed++;
        /* Pinned, its record is not in the index yet: the disk may still
         * hold an older, live value, so the slot must keep saying absent
         * until the index has caught up (mem_unpin). */
        if (!(f->it->bits & ITEM_PINNED)) {
            mem_unlink_at(m, sh, f->it, f->pos);
            f->it = NULL;
        }
        return;
    }
    f->live = true;
}

/* Logs a change to the disk tier, if there is one (disk.h). */
static void mem_log(mem *m, uint8_t type, struct tc_item *it, uint64_t h,
                    uint32_t exptime, mem_opt *o)
{
    if (m->dk == NULL)
        return;
    disk_log(m->dk, type, it, h, exptime, false, o != NULL ? o->wake : NULL,
             o != NULL ? o->wake_arg : NULL);
    if (o != NULL)
        o->logged = true;
}

static bool mem_check_disk(const mem_opt *o)
{
    return o == NULL || !o->disk_checked;
}

static uint64_t mem_next_cas(mem *m, mem_shard *sh)
{
    uint64_t cas = sh->cas_next;
    sh->cas_next += m->cfg.shards;
    return cas;
}

/* Publishes nit in place of old (at pos), or as a new entry (old NULL).
 * Returns TC_ENOMEM only when the table must grow and cannot. */
static tc_status mem_publish(mem *m, mem_shard *sh, uint64_t h, uint32_t pos,
                             struct tc_item *old, struct tc_item *nit,
                             uint32_t now)
{
    nit->cas = mem_next_cas(m, sh);
    nit->bits = ITEM_LINKED;
    nit->atime = now;
    if (old != NULL) {
        uint64_t s = sh->slots[pos];
        sh->slots[pos] = (s & ~SLOT_PTR_MASK) | (uint64_t)(uintptr_t)nit;
        evict_inherit(m, sh, old, nit);
        mem_drop_link(m, sh, old);
    } else {
        if (sh->count + 1 > sh->grow_at && !table_grow(m, sh, 0))
            return TC_ENOMEM;
        uint64_t left = table_place(sh->slots, sh->cap, hash_home(h, sh->cap),
                                    slot_make(nit, hash_tag(h), 0));
        if (left != 0 && !table_grow(m, sh, left)) {
            /* Out of memory with an entry displaced: it loses its place,
             * as an eviction would take it. */
            struct tc_item *lost = slot_item(left);
            if (lost == nit)
                return TC_ENOMEM;
            sh->st.evictions++;
            sh->count--;
            mem_drop_link(m, sh, lost);
        }
        sh->count++;
        evict_admit(m, sh, h, nit);
    }
    size_t cost = mem_item_cost(nit);
    sh->bytes += cost;
    atomic_fetch_add_explicit(&m->used, cost, memory_order_relaxed);
    sh->st.total_items++;
    return TC_OK;
}

/*
 * Evicts while the tier is over its limit, sparing keep (the item just
 * stored; see evict_one). Called after a store with no shard locked.
 *
 * Shards are visited in turn, whichever stored: every shard gives items
 * up at the same pace, so memory flows to the shards that are written to
 * (were each shard to make room for its own stores, a shard that took
 * most writes would churn in its first share while the others kept old
 * items for ever). Within a shard, S3-FIFO picks the victim.
 */
static void mem_reclaim(mem *m, uint32_t now, uintptr_t keep, uint64_t h)
{
    unsigned n = m->cfg.shards;
    unsigned idle = 0;
    const mem_shard *keep_sh = mem_shard_of(m, h);

    while (mem_over_limit(m) && idle < n) {
        unsigned i = atomic_fetch_add_explicit(&m->reclaim_cursor, 1,
                                               memory_order_relaxed) % n;
        mem_shard *sh = &m->shards[i];
        int done = 0;
        pthread_mutex_lock(&sh->lock);
        /* keep is spared in its own shard, and only while it is still in
         * its table: evict_one reads its bits, which are written under
         * that shard's lock, and since the store let go of it another
         * thread may have replaced keep and freed it. */
        uintptr_t k = 0;
        if (sh == keep_sh &&
            table_has_ptr(sh, h, (const struct tc_item *)keep, NULL))
            k = keep;
        while (done < MEM_RECLAIM_BATCH && mem_over_limit(m) &&
               evict_one(m, sh, now, k))
            done++;
        pthread_mutex_unlock(&sh->lock);
        idle = done > 0 ? 0 : idle + 1;
    }
}

/* ---- operations ---- */

/* An access: the eviction policy's count, meta's fetched flag and last
 * access time (each written only when it changes). */
static inline void mem_bump(struct tc_item *it, uint32_t now)
{
    if ((it->bits & ITEM_FREQ_MASK) < ITEM_FREQ_MASK)
        it->bits++;
    if (!(it->meta & ITEM_M_FETCHED))
        it->meta |= ITEM_M_FETCHED;
    if (it->atime != now)
        it->atime = now;
}

tc_status mem_get(mem *m, uint64_t h, const void *key, size_t klen,
                  uint32_t now, uint64_t touch, mem_visit_fn fn, void *arg,
                  mem_opt *o)
{
    mem_shard *sh = mem_shard_of(m, h);
    mem_found f;

    pthread_mutex_lock(&sh->lock);
    mem_find(m, sh, h, key, klen, now, mem_check_disk(o), &f);
    if (f.maybe_disk) {
        pthread_mutex_unlock(&sh->lock);
        return MEM_ON_DISK;
    }
    /* As in memcached, a gat counts as a touch and not as a get. */
    if (!f.live) {
        if (touch != MEM_NO_TOUCH) {
            sh->st.touch_misses++;
        } else {
            sh->st.get_misses++;
            if (f.expired)
                sh->st.get_expired++;
        }
        pthread_mutex_unlock(&sh->lock);
        return TC_ENOTFOUND;
    }
    struct tc_item *it = f.it;
    if (touch != MEM_NO_TOUCH) {
        item_set_exptime(it, (uint32_t)touch);
        mem_log(m, SEG_TOUCH, it, h, (uint32_t)touch, o);
        sh->st.touch_hits++;
    } else {
        sh->st.get_hits++;
    }
    mem_bump(it, now);
    fn(arg, it);
    pthread_mutex_unlock(&sh->lock);
    return TC_OK;
}

tc_status mem_mget(mem *m, uint64_t h, const void *key, size_t klen,
                   uint32_t now, const mem_meta *mm, tc_result *res,
                   mem_visit_fn fn, void *arg, mem_opt *o)
{
    mem_shard *sh = mem_shard_of(m, h);
    unsigned mo = mm->set;
    uintptr_t stored = 0;
    mem_found f;

    res->meta = 0;
    res->last_access = 0;
    pthread_mutex_lock(&sh->lock);
    mem_find(m, sh, h, key, klen, now, mem_check_disk(o), &f);
    if (f.maybe_disk) {
        pthread_mutex_unlock(&sh->lock);
        return MEM_ON_DISK;
    }
    struct tc_item *it;
    /* Run again after a disk load, which counted the get already. */
    bool count = o == NULL || !o->after_load || (mo & TC_MO_TTL);
    if (!f.live) {
        if (mo & TC_MO_TTL) {
            sh->st.touch_misses++;
        } else if (count) {
            sh->st.get_misses++;
            if (f.expired)
                sh->st.get_expired++;
        }
        if (!(mo & TC_MO_VIVIFY)) {
            pthread_mutex_unlock(&sh->lock);
            return TC_ENOTFOUND;
        }
        /* Vivify: an empty item whose creator wins the recache. */
        it = item_new(m->slab, key, klen, 0);
        tc_status st = it == NULL ? TC_ENOMEM
                                  : mem_publish(m, sh, h, f.pos, f.it, it,
                                                now);
        if (st != TC_OK) {
            if (it != NULL)
                item_unref(it);
            pthread_mutex_unlock(&sh->lock);
            return st;
        }
        item_set_exptime(it, mm->vivify);
        it->meta = ITEM_M_WON | ((mo & TC_MO_KEY64) ? ITEM_M_KEY64 : 0);
        res->exptime = mm->vivify;
        mem_log(m, SEG_SET, it, h, 0, o);
        res->meta = TC_META_WIN;
        stored = (uintptr_t)it;
    } else {
        it = f.it;
        bool win = false, logged = false;
        if (it->meta & ITEM_M_FETCHED)
            res->meta |= TC_META_FETCHED;
        res->exptime = item_exptime(it); /* before a new TTL */
        res->last_access = now > it->atime ? now - it->atime : 0;
        if (mo & TC_MO_TTL) {
            item_set_exptime(it, mm->ttl);
            logged = true;
            sh->st.touch_hits++;
        } else if (count) {
            sh->st.get_hits++;
        }
        uint32_t exp = item_exptime(it);
        if ((mo & TC_MO_RECACHE) && !(it->meta & ITEM_M_WON) && exp != 0 &&
            exp < mm->recache)
            win = true;
        if (it->meta & ITEM_M_WON)
            res->meta |= TC_META_WON_BEFORE;
        if (it->meta & ITEM_M_STALE) {
            res->meta |= TC_META_STALE;
            if (!(it->meta & ITEM_M_WON))
                win = true;
        }
        if (win) {
            it->meta |= ITEM_M_WON;
            res->meta |= TC_META_WIN;
            logged = true;
        }
        /* One record carries a new expiry and a win to the disk. */
        if (logged)
            mem_log(m, SEG_TOUCH, it, h, exp, o);
        if (!(mo & TC_MO_NO_BUMP))
            mem_bump(it, now);
    }
    if (it->meta & ITEM_M_KEY64)
        res->meta |= TC_META_KEY64;
    res->number = item_total(it);
    fn(arg, it);
    pthread_mutex_unlock(&sh->lock);
    if (stored != 0 && mem_over_limit(m))
        mem_reclaim(m, now, stored, h);
    return TC_OK;
}

/* Whether a store may go ahead. *stale: it may, as the meta set of a
 * CAS lower than the item's with TC_MO_INVALIDATE, marked stale. */
static tc_status mem_store_check(mem_shard *sh, tc_store_mode mode,
                                 const struct tc_item *old, uint64_t cas,
                                 const mem_meta *mm, bool *stale)
{
    unsigned mo = mm != NULL ? mm->set : 0;
    *stale = false;
    switch (mode) {
    case TC_SET:
        return TC_OK;
    case TC_ADD:
        return old != NULL ? TC_ENOTSTORED : TC_OK;
    case TC_APPEND:
    case TC_PREPEND:
        if (old != NULL && (mo & TC_MO_CAS) && old->cas != mm->cas)
            return TC_EEXISTS;
        return old == NULL ? TC_ENOTSTORED : TC_OK;
    case TC_REPLACE:
        return old == NULL ? TC_ENOTSTORED : TC_OK;
    case TC_CAS:
        if (old == NULL) {
            sh->st.cas_misses++;
            return TC_ENOTFOUND;
        }
        if (old->cas != cas && (mo & TC_MO_INVALIDATE) && cas < old->cas) {
            *stale = true;
        } else if (old->cas != cas) {
            sh->st.cas_badval++;
            return TC_EEXISTS;
        }
        sh->st.cas_hits++;
        return TC_OK;
    }
    return TC_EINVAL;
}

/*
 * Overwrites old with a new value in place, under the shard lock: when
 * the shard holds the only reference, or refs with the journal record a
 * change is folded into (nobody is reading or sending it), and
 * the new item would take the same slab chunk. The item keeps its place,
 * its frequency and its cost; it gets a new CAS. Saves an allocation, a
 * free and the bookkeeping of a replaced item, which is most of an
 * overwrite of a small value.
 */
static bool mem_rewrite(mem *m, mem_shard *sh, struct tc_item *old,
                        const void *value, size_t vlen, uint32_t flags,
                        uint32_t exptime, uint8_t meta, uint32_t now,
                        unsigned refs)
{
    size_t klen = item_klen(old);
    size_t size = item_size(klen, vlen), old_size = item_total(old);
    /* Only slab chunks: a larger item is malloc'd to its exact size, and
     * a same-cost bucket of malloc's says nothing of the bytes we own. */
    if (atomic_load_explicit(&old->refs, memory_order_acquire) != refs ||
        size > SLAB_CHUNK_MAX || old_size > SLAB_CHUNK_MAX ||
        slab_cost(size) != slab_cost(old_size))
        return false;
    old->lens = (uint32_t)klen << 24 | (uint32_t)vlen;
    memcpy(item_value(old), value, vlen);
    old->flags = flags;
    item_set_exptime(old, exptime);
    old->cas = mem_next_cas(m, sh);
    old->meta = meta;
    old->atime = now;
    sh->st.total_items++;
    return true;
}

/* Builds the item of an append or prepend of value to old. */
static tc_status mem_concat(mem *m, tc_store_mode mode, const void *key,
                            size_t klen, struct tc_item *old,
                            const void *value, size_t vlen,
                            struct tc_item **out)
{
    size_t ovlen = item_vlen(old);
    if (ovlen + vlen > m->cfg.item_max)
        return TC_E2BIG;
    struct tc_item *nit = item_new(m->slab, key, klen, ovlen + vlen);
    if (nit == NULL)
        return TC_ENOMEM;
    char *v = item_value(nit);
    const char *ov = item_value(old);
    if (mode == TC_APPEND) {
        memcpy(v, ov, ovlen);
        memcpy(v + ovlen, value, vlen);
    } else {
        memcpy(v, value, vlen);
        memcpy(v + vlen, ov, ovlen);
    }
    nit->flags = old->flags;
    item_set_exptime(nit, item_exptime(old));
    *out = nit;
    return TC_OK;
}

static struct tc_item *mem_new_item(mem *m, const void *key, size_t klen,
                                    const void *value, size_t vlen,
                                    uint32_t flags, uint32_t exptime)
{
    struct tc_item *nit = item_new(m->slab, key, klen, vlen);
    if (nit != NULL) {
        memcpy(item_value(nit), value, vlen);
        nit->flags = flags;
        item_set_exptime(nit, exptime);
    }
    return nit;
}

/*
 * Takes the key of a live item out, at pos. Without a disk tier the item
 * is simply unlinked. With one, a tombstone takes its place until the
 * deletion is in the index, so that the disk's older value stays hidden.
 */
static tc_status mem_remove(mem *m, mem_shard *sh, uint64_t h,
                            struct tc_item *it, uint32_t pos, mem_opt *o)
{
    if (m->dk == NULL) {
        mem_unlink_at(m, sh, it, pos);
        return TC_OK;
    }
    struct tc_item *tomb = item_new(m->slab, item_key(it), item_klen(it), 0);
    if (tomb == NULL)
        return TC_ENOMEM;
    tc_status st = mem_publish(m, sh, h, pos, it, tomb, 0);
    if (st != TC_OK) {
        item_unref(tomb);
        return st;
    }
    tomb->bits |= ITEM_TOMB;
    /* A tombstone is no item to count (its memory counts in the limit). */
    sh->tombs++;
    sh->tomb_bytes += mem_item_cost(tomb);
    sh->st.total_items--;
    mem_log(m, SEG_DELETE, tomb, h, 0, o);
    return TC_OK;
}

tc_status mem_store(mem *m, uint64_t h, tc_store_mode mode, const void *key,
                    size_t klen, const void *value, size_t vlen,
                    uint32_t flags, uint32_t exptime, uint64_t cas,
                    uint32_t now, uint64_t *cas_out, mem_opt *o,
                    const mem_meta *mm)
{
    bool stale;
    bool concat = mode == TC_APPEND || mode == TC_PREPEND;
    struct tc_item *nit = NULL;
    uintptr_t stored = 0;
    tc_status st;
    mem_found f;

    if ((unsigned)mode > TC_CAS)
        return TC_EINVAL;
    if (vlen > m->cfg.item_max)
        return TC_E2BIG;
    /* An empty value may come as NULL, which memcpy must not be given. */
    if (vlen == 0)
        value = "";
    /* A big value is copied before the lock is taken; a small one is
     * copied under it, often into the item it replaces (mem_rewrite). */
    bool copy_early = !concat && vlen > MEM_REWRITE_MAX;
    if (copy_early) {
        nit = mem_new_item(m, key, klen, value, vlen, flags, exptime);
        if (nit == NULL)
            return TC_ENOMEM;
    }

    mem_shard *sh = mem_shard_of(m, h);
    pthread_mutex_lock(&sh->lock);
    /* A set does not care what was there; every other mode does, and a
     * key only on disk is loaded first (MEM_ON_DISK). */
    mem_find(m, sh, h, key, klen, now, mode != TC_SET && mem_check_disk(o),
             &f);
    if (f.maybe_disk) {
        pthread_mutex_unlock(&sh->lock);
        if (nit != NULL)
            item_unref(nit);
        return MEM_ON_DISK;
    }
    sh->st.set_cmds++;
    struct tc_item *old = f.live ? f.it : NULL;
    /* No one waits for this change's record: it may be folded into the
     * one of the item it replaces (disk.h). */
    bool may_fold = old != NULL && m->dk != NULL &&
                    (old->bits & ITEM_PINNED) && (o == NULL || o->wake == NULL);
    st = mem_store_check(sh, mode, old, cas, mm, &stale);
    /* A stale store keeps the item's expiry and a win handed out. */
    uint8_t meta = mm != NULL && (mm->set & TC_MO_KEY64) ? ITEM_M_KEY64 : 0;
    if (st == TC_OK && stale) {
        meta |= ITEM_M_STALE | (old->meta & ITEM_M_WON);
        exptime = item_exptime(old);
        if (nit != NULL)
            item_set_exptime(nit, exptime);
    }
    if (st == TC_OK && concat) {
        st = mem_concat(m, mode, key, klen, old, value, vlen, &nit);
    } else if (st == TC_OK && !copy_early) {
        /* Its record still queued: rewritten there too (disk_fold_begin;
         * the value, at most MEM_REWRITE_MAX, is copied with the queue
         * locked). */
        struct jr_fold *fold =
            may_fold ? disk_fold_begin(m->dk, h, old) : NULL;
        if (old != NULL && mem_rewrite(m, sh, old, value, vlen, flags,
                                       exptime, meta, now,
                                       fold != NULL ? 2 : 1)) {
            if (fold != NULL)
                disk_fold_end(m->dk, fold, old);
            else
                mem_log(m, SEG_SET, old, h, 0, o);
            if (cas_out != NULL)
                *cas_out = old->cas;
            pthread_mutex_unlock(&sh->lock);
            return TC_OK;
        }
        if (fold != NULL)
            disk_fold_cancel(m->dk);
        nit = mem_new_item(m, key, klen, value, vlen, flags, exptime);
        if (nit == NULL)
            st = TC_ENOMEM;
    }
    struct jr_fold *fold = NULL;
    if (st == TC_OK) {
        nit->meta = meta;
        /* The record of the item replaced, still queued, is to take the
         * new one: decided before the table lets go of old, which may
         * then be freed (its record's item may be a private copy). A
         * replacement in place (old not NULL) cannot fail, and takes no
         * disk lock: the queue may stay locked across it. */
        fold = may_fold ? disk_fold_begin(m->dk, h, old) : NULL;
        st = mem_publish(m, sh, h, f.pos, f.it, nit, now);
        if (st != TC_OK && fold != NULL) { /* not reached: see above */
            disk_fold_cancel(m->dk);
            fold = NULL;
        }
    }
    if (st == TC_OK) {
        if (fold != NULL)
            disk_fold_end(m->dk, fold, nit);
        else
            mem_log(m, SEG_SET, nit, h, 0, o);
        if (cas_out != NULL)
            *cas_out = nit->cas;
        stored = (uintptr_t)nit;
        nit = NULL;
    } else if (st == TC_ENOMEM && mode == TC_SET && old != NULL) {
        /* A set that could not be stored must not leave the old value to
         * be read as if it were the new one (memcached does the same). */
        mem_remove(m, sh, h, old, f.pos, o);
    }
    pthread_mutex_unlock(&sh->lock);

    if (nit != NULL)
        item_unref(nit);
    if (st == TC_OK && mem_over_limit(m))
        mem_reclaim(m, now, stored, h);
    return st;
}

/*
 * Replaces it (at pos) by a copy marked stale, with a new CAS and the
 * given expiry; a win handed out for it is forgotten, so the next meta
 * get wins (memcached's "md <key> I").
 */
static tc_status mem_mark_stale(mem *m, mem_shard *sh, uint64_t h,
                                struct tc_item *it, uint32_t pos,
                                uint32_t exptime, uint32_t now, mem_opt *o)
{
    size_t vlen = item_vlen(it);
    struct tc_item *nit = item_new(m->slab, item_key(it), item_klen(it), vlen);
    if (nit == NULL)
        return TC_ENOMEM;
    memcpy(item_value(nit), item_value(it), vlen);
    nit->flags = it->flags;
    item_set_exptime(nit, exptime);
    nit->meta = ITEM_M_STALE | (it->meta & (ITEM_M_FETCHED | ITEM_M_KEY64));
    uint32_t atime = it->atime;
    tc_status st = mem_publish(m, sh, h, pos, it, nit, now);
    if (st != TC_OK) {
        item_unref(nit);
        return st;
    }
    nit->atime = atime; /* marking is no access */
    mem_log(m, SEG_SET, nit, h, 0, o);
    return TC_OK;
}

tc_status mem_delete(mem *m, uint64_t h, const void *key, size_t klen,
                     uint32_t now, mem_opt *o, const mem_meta *mm)
{
    mem_shard *sh = mem_shard_of(m, h);
    unsigned mo = mm != NULL ? mm->set : 0;
    mem_found f;
    tc_status st = TC_OK;

    pthread_mutex_lock(&sh->lock);
    mem_find(m, sh, h, key, klen, now, mem_check_disk(o), &f);
    if (f.maybe_disk) {
        st = MEM_ON_DISK;
    } else if (!f.live) {
        sh->st.delete_misses++;
        st = TC_ENOTFOUND;
    } else if ((mo & TC_MO_CAS) && f.it->cas != mm->cas) {
        sh->st.delete_misses++;
        st = TC_EEXISTS;
    } else if (mo & TC_MO_INVALIDATE) {
        uint32_t exptime =
            (mo & TC_MO_TTL) ? mm->ttl : item_exptime(f.it);
        st = mem_mark_stale(m, sh, h, f.it, f.pos, exptime, now, o);
    } else if ((st = mem_remove(m, sh, h, f.it, f.pos, o)) == TC_OK) {
        sh->st.delete_hits++;
    }
    pthread_mutex_unlock(&sh->lock);
    return st;
}

int mem_parse_u64(const char *s, size_t len, uint64_t *out)
{
    size_t i = 0;
    bool neg = false;
    uint64_t v = 0;

    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    size_t start = i;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        i++;
    }
    if (i == start)
        return -1;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' ||
                       s[i] == '\n'))
        i++;
    if (i != len)
        return -1;
    if (neg && v != 0)
        return -1;
    *out = v;
    return 0;
}

static size_t u64_to_dec(uint64_t v, char *buf)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

tc_status mem_arith(mem *m, uint64_t h, const void *key, size_t klen,
                    int decr, uint64_t delta, uint32_t now, tc_result *res,
                    mem_opt *o, const mem_meta *mm)
{
    mem_shard *sh = mem_shard_of(m, h);
    unsigned mo = mm != NULL ? mm->set : 0;
    mem_found f;
    tc_status st = TC_OK;
    uintptr_t stored = 0;
    uint64_t v;
    char buf[20];

    pthread_mutex_lock(&sh->lock);
    mem_find(m, sh, h, key, klen, now, mem_check_disk(o), &f);
    if (f.maybe_disk) {
        st = MEM_ON_DISK;
        goto out;
    }
    struct tc_item *it = f.live ? f.it : NULL;
    uint32_t exptime;
    if (it == NULL && (mo & TC_MO_VIVIFY)) {
        /* Created holding the initial number, not changed by delta. */
        v = mm->initial;
        exptime = mm->vivify;
    } else if (it == NULL) {
        if (decr)
            sh->st.decr_misses++;
        else
            sh->st.incr_misses++;
        st = TC_ENOTFOUND;
        goto out;
    } else if ((mo & TC_MO_CAS) && it->cas != mm->cas) {
        st = TC_EEXISTS;
        goto out;
    } else if (mem_parse_u64(item_value(it), item_vlen(it), &v) != 0) {
        st = TC_ENONNUMERIC;
        goto out;
    } else {
        if (decr) {
            v = delta > v ? 0 : v - delta;
            sh->st.decr_hits++;
        } else {
            v += delta; /* wraps at 2^64, as memcached does */
            sh->st.incr_hits++;
        }
        exptime = item_exptime(it);
    }
    uint32_t exptime_before = exptime;
    if (mo & TC_MO_TTL)
        exptime = mm->ttl;
    size_t n = u64_to_dec(v, buf);
    struct tc_item *nit = item_new(m->slab, key, klen, n);
    if (nit == NULL) {
        st = TC_ENOMEM;
        goto out;
    }
    memcpy(item_value(nit), buf, n);
    if (it != NULL) {
        /* The item changed in place, as far as anyone can tell. */
        nit->flags = it->flags;
        nit->meta = it->meta;
    } else if (mo & TC_MO_KEY64) {
        nit->meta = ITEM_M_KEY64;
    }
    item_set_exptime(nit, exptime);
    st = mem_publish(m, sh, h, f.pos, f.it, nit, now);
    if (st != TC_OK) {
        item_unref(nit);
        goto out;
    }
    mem_log(m, SEG_SET, nit, h, 0, o);
    if (res != NULL) {
        res->number = v;
        res->cas = nit->cas;
        res->exptime = exptime_before;
        res->meta = it == NULL ? TC_META_CREATED : 0;
    }
    /* The new number may cost more than the old: evict as a store does. */
    stored = (uintptr_t)nit;
out:
    pthread_mutex_unlock(&sh->lock);
    if (st == TC_OK && mem_over_limit(m))
        mem_reclaim(m, now, stored, h);
    return st;
}

tc_status mem_touch(mem *m, uint64_t h, const void *key, size_t klen,
                    uint32_t exptime, uint32_t now, mem_opt *o)
{
    mem_shard *sh = mem_shard_of(m, h);
    mem_found f;
    tc_status st = TC_OK;

    pthread_mutex_lock(&sh->lock);
    mem_find(m, sh, h, key, klen, now, mem_check_disk(o), &f);
    if (f.maybe_disk) {
        st = MEM_ON_DISK;
    } else if (!f.live) {
        sh->st.touch_misses++;
        st = TC_ENOTFOUND;
    } else {
        item_set_exptime(f.it, exptime);
        mem_log(m, SEG_TOUCH, f.it, h, exptime, o);
        mem_bump(f.it, now);
        sh->st.touch_hits++;
    }
    pthread_mutex_unlock(&sh->lock);
    return st;
}

/* ---- the disk tier's side ---- */

void mem_set_disk(mem *m, disk *d)
{
    m->dk = d;
}

void mem_set_cas_base(mem *m, uint64_t base)
{
    uint64_t k = base / m->cfg.shards + 1;
    for (unsigned i = 0; i < m->cfg.shards; i++) {
        mem_shard *sh = &m->shards[i];
        pthread_mutex_lock(&sh->lock);
        uint64_t next = k * m->cfg.shards + i + 1;
        if (next > sh->cas_next)
            sh->cas_next = next;
        pthread_mutex_unlock(&sh->lock);
    }
}

struct tc_item *mem_item_alloc(mem *m, const void *key, size_t klen,
                               size_t vlen)
{
    return item_new(m->slab, key, klen, vlen);
}

void mem_unpin(mem *m, struct tc_item *it, uint64_t h, bool copy)
{
    mem_shard *sh = mem_shard_of(m, h);
    uint32_t pos;

    pthread_mutex_lock(&sh->lock);
    /* Found by pointer: an item no longer in the table (replaced, deleted,
     * flushed) is left alone; its bits may be another thread's. A record
     * that holds a private copy (copy: the item's count was saturated
     * when it was logged) pinned the table's item of the same key and
     * CAS: a CAS names one version (a pointer may be reused once the item
     * it named is freed). */
    bool found;
    if (copy) {
        struct tc_item *t = table_find(sh, h, item_key(it), item_klen(it),
                                       &pos);
        found = t != NULL && t->cas == it->cas;
        it = t;
    } else {
        found = mem_table_find_ptr(m, sh, it, &pos);
    }
    if (found) {
        it->bits &= (uint8_t)~ITEM_PINNED;
        /* The index has the deletion: the tombstone is not needed. (An
         * expired item, now unpinned, goes at its next lookup.) */
        if (it->bits & ITEM_TOMB)
            mem_unlink_at(m, sh, it, pos);
    }
    pthread_mutex_unlock(&sh->lock);
}

uint64_t mem_relog(mem *m, uint64_t h, const void *key, size_t klen,
                   uint32_t now)
{
    mem_shard *sh = mem_shard_of(m, h);
    uint32_t pos;
    uint64_t lsn = 0;

    pthread_mutex_lock(&sh->lock);
    struct tc_item *it = table_find(sh, h, key, klen, &pos);
    if (it != NULL &&
        !(it->bits & (ITEM_TOMB | ITEM_PINNED)) &&
        (it->bits & ITEM_FREQ_MASK) != 0 && !item_expired(it, now))
        lsn = disk_log(m->dk, SEG_SET, it, h, 0, false, NULL, NULL);
    pthread_mutex_unlock(&sh->lock);
    return lsn;
}

bool mem_promote(mem *m, uint64_t h, struct tc_item *it, uint32_t now,
                 bool (*current)(void *arg), void *arg)
{
    mem_shard *sh = mem_shard_of(m, h);
    uint32_t pos;
    bool done = false;

    pthread_mutex_lock(&sh->lock);
    if (table_find(sh, h, item_key(it), item_klen(it), &pos) == NULL &&
        current(arg)) {
        /* Keeps the CAS the value was stored with. */
        uint64_t cas = it->cas;
        it = tc_item_ref(it); /* the shard's reference */
        if (it != NULL && mem_publish(m, sh, h, 0, NULL, it, now) == TC_OK) {
            it->cas = cas;
            done = true;
        } else if (it != NULL) {
            item_unref(it);
        }
    }
    pthread_mutex_unlock(&sh->lock);
    if (done && mem_over_limit(m))
        mem_reclaim(m, now, (uintptr_t)it, h);
    return done;
}

/* ---- flush ---- */

/* Drops the references of a detached table and ring. The items can no
 * longer be reached through the shard, only through references others
 * hold, which touch nothing but the count. */
static void mem_drop_detached(uint64_t *slots, uint32_t cap,
                              struct tc_item **ring, uint32_t mask,
                              uint32_t head, uint32_t tail)
{
    for (uint32_t i = 0; i < cap; i++) {
        if (slots[i] == 0)
            continue;
        struct tc_item *it = slot_item(slots[i]);
        it->bits &= (uint8_t)~ITEM_LINKED;
        if (!(it->bits & ITEM_RING))
            item_unref(it);
    }
    for (uint32_t i = head; i != tail; i++) {
        struct tc_item *it = ring[i & mask];
        if (it == NULL)
            continue; /* a hole: freed already */
        it->bits &= (uint8_t)~ITEM_RING;
        if (!(it->bits & ITEM_LINKED))
            item_unref(it);
    }
}

void mem_flush(mem *m)
{
    for (unsigned i = 0; i < m->cfg.shards; i++) {
        mem_shard *sh = &m->shards[i];
        uint64_t *fresh = calloc(MEM_MIN_CAP, sizeof(*fresh));

        pthread_mutex_lock(&sh->lock);
        uint64_t *slots = sh->slots;
        uint32_t cap = sh->cap;
        struct tc_item **ring = sh->ring;
        uint32_t mask = sh->ring_mask, head = sh->ring_head;
        uint32_t tail = sh->ring_tail;

        if (fresh == NULL) {
            /* No memory for a new table: empty this one in place. */
            mem_drop_detached(slots, cap, ring, mask, head, tail);
            memset(slots, 0, (size_t)cap * sizeof(*slots));
            sh->ring_head = sh->ring_tail = 0;
        } else {
            mem_set_table(sh, fresh, MEM_MIN_CAP);
            sh->grow_at = table_grow_at(sh->cap);
            sh->ring = NULL;
            sh->ring_mask = 0;
            sh->ring_head = sh->ring_tail = 0;
            evict_ghost_resize(sh, sh->cap);
        }
        sh->count = 0;
        sh->hand = 0;
        atomic_fetch_sub_explicit(&m->used, sh->bytes, memory_order_relaxed);
        sh->bytes = 0;
        sh->small_bytes = 0;
        sh->small_count = 0;
        sh->ring_dead = 0;
        sh->ring_holes = 0;
        sh->fill_count = 0;
        sh->fill_bytes = 0;
        sh->fill_hand = 0;
        sh->tombs = 0;
        sh->tomb_bytes = 0;
        pthread_mutex_unlock(&sh->lock);

        if (fresh != NULL) {
            mem_drop_detached(slots, cap, ring, mask, head, tail);
            free(slots);
            free(ring);
        }
    }
}

/* ---- life of the tier ---- */

static tc_status mem_shard_init(mem_shard *sh, unsigned index)
{
    memset(sh, 0, sizeof(*sh));
    sh->index = index;
    sh->cas_next = index + 1;
    uint64_t *slots = calloc(MEM_MIN_CAP, sizeof(*slots));
    if (slots == NULL)
        return TC_ENOMEM;
    mem_set_table(sh, slots, MEM_MIN_CAP);
    sh->grow_at = table_grow_at(sh->cap);
    evict_ghost_resize(sh, sh->cap);
    if (sh->ghost == NULL) {
        free(sh->slots);
        sh->slots = NULL;
        return TC_ENOMEM;
    }
    pthread_mutex_init(&sh->lock, NULL);
    return TC_OK;
}

tc_status mem_new(const mem_config *cfg, mem **out)
{
    if (cfg->shards == 0 || cfg->shards > MEM_MAX_SHARDS ||
        (cfg->shards & (cfg->shards - 1)) != 0 || cfg->limit == 0 ||
        cfg->item_max == 0)
        return TC_EINVAL;
    mem *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return TC_ENOMEM;
    m->cfg = *cfg;
    m->slab = slab_new();
    m->shards = calloc(cfg->shards, sizeof(*m->shards));
    if (m->slab == NULL || m->shards == NULL)
        goto fail;
    for (unsigned i = 0; i < cfg->shards; i++) {
        if (mem_shard_init(&m->shards[i], i) != TC_OK) {
            /* Shards past i are zeroed and need no cleanup. */
            m->cfg.shards = i + 1;
            goto fail;
        }
    }
    *out = m;
    return TC_OK;
fail:
    mem_destroy(&m);
    return TC_ENOMEM;
}

void mem_destroy(mem **mp)
{
    mem *m = *mp;
    if (m == NULL)
        return;
    if (m->shards != NULL) {
        for (unsigned i = 0; i < m->cfg.shards; i++) {
            mem_shard *sh = &m->shards[i];
            if (sh->slots == NULL)
                continue;
            mem_drop_detached(sh->slots, sh->cap, sh->ring, sh->ring_mask,
                              sh->ring_head, sh->ring_tail);
            free(sh->slots);
            free(sh->ring);
            evict_shard_free(sh);
            pthread_mutex_destroy(&sh->lock);
        }
        free(m->shards);
    }
    slab_destroy(&m->slab);
    free(m);
    *mp = NULL;
}

/* ---- stats ---- */

void mem_stats_get(mem *m, mem_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < m->cfg.shards; i++) {
        mem_shard *sh = &m->shards[i];
        pthread_mutex_lock(&sh->lock);
#define MEM_COUNTER_SUM_(name) out->c.name += sh->st.name;
        MEM_COUNTERS(MEM_COUNTER_SUM_)
#undef MEM_COUNTER_SUM_
        out->curr_items += sh->count - sh->tombs;
        out->bytes += sh->bytes - sh->tomb_bytes;
        out->small_items += sh->small_count;
        out->table_slots += sh->cap;
        pthread_mutex_unlock(&sh->lock);
    }
}

void mem_slab_stats(mem *m, slab_stats_fn fn, void *arg)
{
    slab_stats(m->slab, fn, arg);
}

size_t mem_slab_bytes(mem *m)
{
    return slab_page_bytes(m->slab);
}

void mem_stats_reset(mem *m)
{
    for (unsigned i = 0; i < m->cfg.shards; i++) {
        mem_shard *sh = &m->shards[i];
        pthread_mutex_lock(&sh->lock);
        /* memcached's "stats reset" zeroes total_items too. */
        memset(&sh->st, 0, sizeof(sh->st));
        pthread_mutex_unlock(&sh->lock);
    }
}

size_t mem_used(const mem *m)
{
    return atomic_load_explicit(&m->used, memory_order_relaxed);
}

size_t mem_limit(const mem *m)
{
    return m->cfg.limit;
}
