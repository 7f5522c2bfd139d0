/*
 * ctx.c - the asynchronous per-thread form of the engine API.
 *
 * A context owns an eventfd and a queue of completions. Operations that
 * can be answered at once call their callback before returning (TC_OK);
 * the others queue a completion and return TC_PENDING, and whoever
 * finishes the work (today only debug_defer mode; the disk tier later)
 * pushes the completion and signals the eventfd. tc_ctx_run() on the
 * owning thread runs the callbacks.
 *
 * The queue is a mutex-guarded list because completions may be pushed
 * from other threads; the eventfd is written only when the queue turns
 * non-empty, so a burst of completions costs one wakeup.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine_int.h"
#include "item.h"

typedef struct ctx_done {
    struct ctx_done *next;
    tc_done_fn fn;
    void *arg;
    tc_status status;
    tc_item *item; /* a reference, for get hits */
    uint64_t cas;
    uint64_t number;
} ctx_done;

struct tc_ctx {
    tc_engine *e;
    int efd;
    pthread_mutex_t lock;
    ctx_done *head;
    ctx_done *tail;
};

tc_status tc_ctx_new(tc_engine *e, tc_ctx **out)
{
    *out = NULL;
    tc_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return TC_ENOMEM;
    ctx->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ctx->efd < 0) {
        tc_status st = errno == ENOMEM ? TC_ENOMEM : TC_EINVAL;
        free(ctx);
        return st;
    }
    ctx->e = e;
    pthread_mutex_init(&ctx->lock, NULL);
    *out = ctx;
    return TC_OK;
}

void tc_ctx_free(tc_ctx *ctx)
{
    if (ctx == NULL)
        return;
    ctx_done *d = ctx->head;
    while (d != NULL) {
        ctx_done *next = d->next;
        tc_item_release(d->item);
        free(d);
        d = next;
    }
    close(ctx->efd);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

int tc_ctx_fd(const tc_ctx *ctx)
{
    return ctx->efd;
}

static void ctx_push(tc_ctx *ctx, ctx_done *d)
{
    d->next = NULL;
    pthread_mutex_lock(&ctx->lock);
    bool was_empty = ctx->head == NULL;
    if (was_empty)
        ctx->head = d;
    else
        ctx->tail->next = d;
    ctx->tail = d;
    pthread_mutex_unlock(&ctx->lock);
    if (was_empty) {
        uint64_t one = 1;
        /* Cannot fail short of a bug: the counter never nears overflow. */
        ssize_t n = write(ctx->efd, &one, sizeof(one));
        (void)n;
    }
}

unsigned tc_ctx_run(tc_ctx *ctx)
{
    uint64_t v;
    ssize_t n = read(ctx->efd, &v, sizeof(v));
    (void)n; /* EAGAIN when there was no wakeup: the list decides */

    pthread_mutex_lock(&ctx->lock);
    ctx_done *d = ctx->head;
    ctx->head = ctx->tail = NULL;
    pthread_mutex_unlock(&ctx->lock);

    unsigned ran = 0;
    while (d != NULL) {
        ctx_done *next = d->next;
        tc_view view;
        tc_result r = {
            .status = d->status,
            .view = NULL,
            .cas = d->cas,
            .number = d->number,
        };
        if (d->item != NULL) {
            tc_item_view(d->item, &view);
            r.view = &view;
        }
        d->fn(d->arg, &r);
        tc_item_release(d->item);
        free(d);
        d = next;
        ran++;
    }
    return ran;
}

/*
 * Delivers a result: now, or through the queue in debug_defer mode. item
 * is a reference the completion takes over (get hits in defer mode).
 */
static tc_status ctx_finish(tc_ctx *ctx, tc_done_fn fn, void *arg,
                            const tc_result *r, tc_item *item)
{
    if (ctx->e->cfg.debug_defer) {
        ctx_done *d = malloc(sizeof(*d));
        if (d != NULL) {
            d->fn = fn;
            d->arg = arg;
            d->status = r->status;
            d->item = item;
            d->cas = r->cas;
            d->number = r->number;
            ctx_push(ctx, d);
            return TC_PENDING;
        }
        /* No memory to defer: deliver now, which is always correct. */
    }
    tc_view view;
    tc_result now = *r;
    if (item != NULL) {
        tc_item_view(item, &view);
        now.view = &view;
    }
    fn(arg, &now);
    tc_item_release(item);
    return TC_OK;
}

static tc_status ctx_status(tc_ctx *ctx, tc_done_fn fn, void *arg,
                            tc_status st)
{
    tc_result r = {.status = st};
    return ctx_finish(ctx, fn, arg, &r, NULL);
}

typedef struct ctx_get {
    tc_ctx *ctx;
    tc_done_fn fn;
    void *arg;
    bool defer;
    tc_item *ref;
} ctx_get;

static void ctx_visit(void *a, struct tc_item *it)
{
    ctx_get *g = a;
    if (g->defer) {
        g->ref = tc_item_ref(it);
        return;
    }
    tc_view view;
    tc_item_view(it, &view);
    tc_result r = {.status = TC_OK, .view = &view};
    g->fn(g->arg, &r);
}

static tc_status ctx_lookup(tc_ctx *ctx, const void *key, size_t klen,
                            uint64_t touch, tc_done_fn fn, void *arg)
{
    tc_engine *e = ctx->e;
    if (!engine_key_ok(klen))
        return ctx_status(ctx, fn, arg, TC_EKEY);
    uint32_t now = engine_now(e);
    ctx_get g = {ctx, fn, arg, e->cfg.debug_defer != 0, NULL};
    tc_status st = mem_get(e->mem, mem_hash(e->mem, key, klen), key, klen,
                           now, touch, ctx_visit, &g);
    if (st == TC_OK && !g.defer)
        return TC_OK; /* the callback ran under the shard lock */
    if (st == TC_OK && g.ref == NULL)
        st = TC_ENOMEM;
    tc_result r = {.status = st};
    return ctx_finish(ctx, fn, arg, &r, g.ref);
}

tc_status tc_ctx_get(tc_ctx *ctx, const void *key, size_t klen, tc_done_fn fn,
                     void *arg)
{
    return ctx_lookup(ctx, key, klen, MEM_NO_TOUCH, fn, arg);
}

tc_status tc_ctx_gat(tc_ctx *ctx, const void *key, size_t klen,
                     int64_t exptime, tc_done_fn fn, void *arg)
{
    uint32_t t = engine_exptime(exptime, engine_now(ctx->e));
    return ctx_lookup(ctx, key, klen, t, fn, arg);
}

tc_status tc_ctx_store(tc_ctx *ctx, tc_store_mode mode, const void *key,
                       size_t klen, const void *value, size_t vlen,
                       uint32_t flags, int64_t exptime, uint64_t cas,
                       tc_done_fn fn, void *arg)
{
    tc_result r = {.status = TC_OK};
    r.status = tc_store(ctx->e, mode, key, klen, value, vlen, flags, exptime,
                        cas, &r.cas);
    return ctx_finish(ctx, fn, arg, &r, NULL);
}

tc_status tc_ctx_delete(tc_ctx *ctx, const void *key, size_t klen,
                        tc_done_fn fn, void *arg)
{
    return ctx_status(ctx, fn, arg, tc_delete(ctx->e, key, klen));
}

tc_status tc_ctx_arith(tc_ctx *ctx, const void *key, size_t klen, int decr,
                       uint64_t delta, tc_done_fn fn, void *arg)
{
    tc_result r = {.status = TC_OK};
    r.status = decr ? tc_decr(ctx->e, key, klen, delta, &r.number)
                    : tc_incr(ctx->e, key, klen, delta, &r.number);
    return ctx_finish(ctx, fn, arg, &r, NULL);
}

tc_status tc_ctx_touch(tc_ctx *ctx, const void *key, size_t klen,
                       int64_t exptime, tc_done_fn fn, void *arg)
{
    return ctx_status(ctx, fn, arg, tc_touch(ctx->e, key, klen, exptime));
}
