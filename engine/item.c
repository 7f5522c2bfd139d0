/*
 * item.c - allocation, references and views of items (layout in item.h).
 */
#include "item.h"

#include <string.h>

#include "tiercache.h"

/* Sets the lengths of a new item (and writes a big value's length). */
static void item_set_lens(struct tc_item *it, size_t klen, size_t vlen)
{
    if (vlen >= ITEM_LEN_BIG) {
        uint32_t v = (uint32_t)vlen;
        it->lens = (uint32_t)klen << 24 | ITEM_LEN_BIG;
        memcpy(it->data, &v, 4);
    } else {
        it->lens = (uint32_t)klen << 24 | (uint32_t)vlen;
    }
}

struct tc_item *item_new(slab *s, const void *key, size_t klen, size_t vlen)
{
    struct tc_item *it = slab_alloc(s, item_size(klen, vlen));
    if (it == NULL)
        return NULL;
    it->cas = 0;
    atomic_init(&it->exptime, 0);
    it->flags = 0;
    item_set_lens(it, klen, vlen);
    it->atime = 0;
    it->bits = 0;
    atomic_init(&it->refs, 1);
    it->meta = 0;
    memcpy((char *)item_key(it), key, klen);
    return it;
}

void item_unref(struct tc_item *it)
{
    if (atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) == 1)
        slab_free(it, item_total(it));
}

/*
 * A private copy, for when the count is saturated. It is allocated from
 * the same allocator as the original (found through its page) when the
 * item is slab-sized; slab_free() finds it the same way.
 */
_Atomic unsigned item_copy_fail;

static struct tc_item *item_copy(const struct tc_item *it)
{
    unsigned fail = atomic_load_explicit(&item_copy_fail,
                                         memory_order_relaxed);
    while (fail > 0 && !atomic_compare_exchange_weak(&item_copy_fail, &fail,
                                                     fail - 1))
        ;
    if (fail > 0)
        return NULL;
    size_t size = item_total(it);
    struct tc_item *c = slab_alloc_like(it, size);
    if (c == NULL)
        return NULL;
    c->cas = it->cas;
    atomic_init(&c->exptime, item_exptime(it));
    c->flags = it->flags;
    c->lens = it->lens;
    c->atime = 0;
    c->bits = 0;
    atomic_init(&c->refs, 1);
    c->meta = 0;
    memcpy(c->data, it->data, size - ITEM_HDR_SIZE);
    return c;
}

tc_item *tc_item_ref(tc_item *it)
{
    uint8_t n = atomic_load_explicit(&it->refs, memory_order_relaxed);
    do {
        if (n >= ITEM_REFS_MAX)
            return item_copy(it);
    } while (!atomic_compare_exchange_weak_explicit(
        &it->refs, &n, (uint8_t)(n + 1), memory_order_relaxed,
        memory_order_relaxed));
    return it;
}

void tc_item_release(tc_item *it)
{
    if (it != NULL)
        item_unref(it);
}

void tc_item_view(const tc_item *it, tc_view *v)
{
    uint32_t t = item_exptime(it);
    v->key = item_key(it);
    v->key_len = item_klen(it);
    v->value = v->key_len + (const char *)v->key;
    v->value_len = item_vlen(it);
    v->flags = it->flags;
    v->exptime = t;
    v->cas = it->cas;
    v->item = (tc_item *)it;
}
