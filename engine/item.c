/*
 * item.c - allocation, references and views of items (layout in item.h).
 */
#include "item.h"

#include <string.h>

#include "tiercache.h"

struct tc_item *item_new(slab *s, const void *key, size_t klen, size_t vlen)
{
    struct tc_item *it = slab_alloc(s, item_size(klen, vlen));
    if (it == NULL)
        return NULL;
    it->cas = 0;
    atomic_init(&it->exptime, 0);
    it->flags = 0;
    it->vlen = (uint32_t)vlen;
    it->klen = (uint8_t)klen;
    it->bits = 0;
    atomic_init(&it->refs, 1);
    memcpy(it->data, key, klen);
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
static struct tc_item *item_copy(const struct tc_item *it)
{
    size_t size = item_total(it);
    struct tc_item *c = slab_alloc_like(it, size);
    if (c == NULL)
        return NULL;
    c->cas = it->cas;
    atomic_init(&c->exptime, item_exptime(it));
    c->flags = it->flags;
    c->vlen = it->vlen;
    c->klen = it->klen;
    c->bits = 0;
    atomic_init(&c->refs, 1);
    memcpy(c->data, it->data, (size_t)it->klen + it->vlen);
    return c;
}

tc_item *tc_item_ref(tc_item *it)
{
    uint16_t n = atomic_load_explicit(&it->refs, memory_order_relaxed);
    do {
        if (n >= ITEM_REFS_MAX)
            return item_copy(it);
    } while (!atomic_compare_exchange_weak_explicit(
        &it->refs, &n, (uint16_t)(n + 1), memory_order_relaxed,
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
    v->key = it->data;
    v->key_len = it->klen;
    v->value = it->data + it->klen;
    v->value_len = it->vlen;
    v->flags = it->flags;
    v->exptime = t;
    v->cas = it->cas;
    v->item = (tc_item *)it;
}
