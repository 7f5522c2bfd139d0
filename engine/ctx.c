/*
 * ctx.c - the asynchronous per-thread form of the engine API.
 *
 * A context owns an eventfd and a queue of jobs. The common call answers
 * at once: the operation runs against the memory tier and the callback is
 * called before the call returns (a get hit's callback runs under the
 * shard lock and writes its reply straight from the item). A call that
 * cannot answer at once becomes a job:
 *   - the key is only on disk (MEM_ON_DISK): the job asks the disk tier
 *     to load it; the load's completion, on a reader thread, queues the
 *     job back here; tc_ctx_run() then answers a get with the value read,
 *     or runs any other operation again (the key is in memory now);
 *   - sync durability: the job waits for its record's wake; whichever of
 *     the call's return and the wake comes last queues it to be answered;
 *   - debug_defer: every job is answered through the queue.
 * Jobs are queued from other threads under a mutex; the eventfd is written
 * only when the queue turns non-empty, so a burst costs one wakeup.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine_int.h"
#include "item.h"

#define CTX_LOAD_TRIES 3

enum { JOB_ANSWER, JOB_LOADED };

typedef struct ctx_job {
    struct ctx_job *next;
    tc_ctx *ctx;
    tc_done_fn fn;
    void *arg;
    engine_op op;
    char key[TC_KEY_MAX];
    void *value;         /* a copy of a store's value, for a second run */
    int stage;           /* what tc_ctx_run does with the job */
    unsigned tries;
    bool disk_checked;
    tc_status load_st;
    tc_item *item;       /* the answer's item, or what a load read */
    tc_result res;
    _Atomic int waits;   /* sync durability: the return and the wake */
    tc_status wake_st;
} ctx_job;

struct tc_ctx {
    tc_engine *e;
    int efd;
    pthread_mutex_t lock;
    ctx_job *head;
    ctx_job *tail;
    disk_fast *fast;  /* this thread's disk reads (made at first use) */
    bool fast_failed; /* it could not be made: do without */
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

static void job_free(ctx_job *j)
{
    tc_item_release(j->item);
    free(j->value);
    free(j);
}

void tc_ctx_free(tc_ctx *ctx)
{
    if (ctx == NULL)
        return;
    ctx_job *j = ctx->head;
    while (j != NULL) {
        ctx_job *next = j->next;
        job_free(j);
        j = next;
    }
    disk_fast_free(&ctx->fast);
    close(ctx->efd);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

int tc_ctx_fd(const tc_ctx *ctx)
{
    return ctx->efd;
}

/* Queues a job to be run by tc_ctx_run (any thread). */
static void ctx_push(ctx_job *j)
{
    tc_ctx *ctx = j->ctx;
    j->next = NULL;
    pthread_mutex_lock(&ctx->lock);
    bool was_empty = ctx->head == NULL;
    if (was_empty)
        ctx->head = j;
    else
        ctx->tail->next = j;
    ctx->tail = j;
    pthread_mutex_unlock(&ctx->lock);
    if (was_empty) {
        uint64_t one = 1;
        /* Cannot fail short of a bug: the counter never nears overflow. */
        ssize_t n = write(ctx->efd, &one, sizeof(one));
        (void)n;
    }
}

/* Calls the job's callback with its result and frees it. */
static void job_answer(ctx_job *j)
{
    tc_view view;
    if (j->item != NULL && j->res.status == TC_OK) {
        tc_item_view(j->item, &view);
        j->res.view = &view;
    } else {
        j->res.view = NULL;
    }
    j->fn(j->arg, &j->res);
    job_free(j);
}

static ctx_job *job_new(tc_ctx *ctx, const engine_op *op, tc_done_fn fn,
                        void *arg)
{
    ctx_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->ctx = ctx;
    j->fn = fn;
    j->arg = arg;
    j->op = *op;
    memcpy(j->key, op->key, op->klen);
    j->op.key = j->key;
    atomic_init(&j->waits, 0);
    return j;
}

/* Keeps a store's value for a second run (the caller's buffer goes). */
static bool job_keep_value(ctx_job *j)
{
    if (j->op.kind != OP_STORE || j->value != NULL || j->op.vlen == 0)
        return true;
    j->value = malloc(j->op.vlen);
    if (j->value == NULL)
        return false;
    memcpy(j->value, j->op.value, j->op.vlen);
    j->op.value = j->value;
    return true;
}

static void job_wait_done(ctx_job *j)
{
    if (atomic_fetch_sub(&j->waits, 1) == 1) {
        if (j->wake_st != TC_OK && j->res.status == TC_OK)
            j->res.status = j->wake_st;
        j->stage = JOB_ANSWER;
        ctx_push(j);
    }
}

static void job_on_wake(void *arg, tc_status st)
{
    ctx_job *j = arg;
    j->wake_st = st;
    job_wait_done(j);
}

static void job_on_load(void *arg, tc_status st, struct tc_item *it)
{
    ctx_job *j = arg;
    j->load_st = st;
    j->item = it;
    j->stage = JOB_LOADED;
    ctx_push(j);
}

static void job_take_ref(void *arg, struct tc_item *it)
{
    ctx_job *j = arg;
    j->item = tc_item_ref(it);
}

/*
 * Runs a job's operation. Returns TC_PENDING when it waits for the disk
 * tier (it is queued back later), else TC_OK: the result is in j->res and
 * the caller answers it.
 */
static tc_status job_run(ctx_job *j)
{
    tc_engine *e = j->ctx->e;
    mem_opt o = {.disk_checked = j->disk_checked, .after_load = j->tries > 0};
    bool sync = e->dk != NULL && disk_durability(e->dk) == TC_DURABILITY_SYNC;
    if (sync) {
        /* Two events end the wait: this run returning, and the wake. */
        atomic_store(&j->waits, 2);
        o.wake = job_on_wake;
        o.wake_arg = j;
    }
    tc_item_release(j->item);
    j->item = NULL;
    tc_status st = engine_run(e, &j->op, engine_now(e), &o, job_take_ref, j,
                              &j->res);
    if (st == MEM_ON_DISK) {
        if (!job_keep_value(j)) {
            j->res.status = TC_ENOMEM;
            return TC_OK;
        }
        j->tries++;
        disk_load(e->dk, j->op.h, j->op.key, j->op.klen, job_on_load, j);
        return TC_PENDING;
    }
    if ((j->op.kind == OP_GET || j->op.kind == OP_GAT ||
         j->op.kind == OP_MGET) &&
        st == TC_OK && j->item == NULL)
        j->res.status = TC_ENOMEM;
    if (o.logged && sync) {
        job_wait_done(j);
        return TC_PENDING;
    }
    return TC_OK;
}

/* A load completed: answer a get with what it read, or run again. */
static void job_loaded(ctx_job *j)
{
    tc_engine *e = j->ctx->e;
    if (j->op.kind == OP_GET) {
        /* The value read (whether it stayed in memory or not), or its
         * absence, as of the load. */
        engine_count_disk_get(e, j->load_st == TC_OK);
        j->res.status = j->load_st;
        job_answer(j);
        return;
    }
    if (j->load_st != TC_OK && j->load_st != TC_ENOTFOUND) {
        j->res.status = j->load_st;
        job_answer(j);
        return;
    }
    /* A meta get counts as a get answered by the disk (or not); the run
     * after the load does not count it again. */
    if (j->op.kind == OP_MGET && !(j->op.mm.set & TC_MO_TTL) &&
        j->tries == 1)
        engine_count_disk_get(e, j->load_st == TC_OK);
    j->disk_checked = j->load_st == TC_ENOTFOUND ||
                      j->tries >= CTX_LOAD_TRIES;
    if (job_run(j) == TC_OK)
        job_answer(j);
}

unsigned tc_ctx_run(tc_ctx *ctx)
{
    uint64_t v;
    ssize_t n = read(ctx->efd, &v, sizeof(v));
    (void)n; /* EAGAIN when there was no wakeup: the list decides */

    pthread_mutex_lock(&ctx->lock);
    ctx_job *j = ctx->head;
    ctx->head = ctx->tail = NULL;
    pthread_mutex_unlock(&ctx->lock);

    unsigned ran = 0;
    while (j != NULL) {
        ctx_job *next = j->next;
        if (j->stage == JOB_LOADED)
            job_loaded(j);
        else
            job_answer(j);
        j = next;
        ran++;
    }
    return ran;
}

/*
 * Starts an operation as a job (the slow path, or every call under
 * debug_defer): TC_PENDING, or TC_OK with the callback already called.
 */
static tc_status ctx_job_start(tc_ctx *ctx, const engine_op *op,
                               tc_done_fn fn, void *arg)
{
    ctx_job *j = job_new(ctx, op, fn, arg);
    if (j == NULL) {
        tc_result r = {.status = TC_ENOMEM};
        fn(arg, &r);
        return TC_OK;
    }
    if (job_run(j) == TC_PENDING)
        return TC_PENDING;
    if (ctx->e->cfg.debug_defer) {
        j->stage = JOB_ANSWER;
        ctx_push(j);
        return TC_PENDING;
    }
    job_answer(j);
    return TC_OK;
}

/* The visitor of the fast path: answers a hit under the shard lock,
 * with what the operation put in res before (a meta get's state). */
typedef struct ctx_visit_arg {
    tc_done_fn fn;
    void *arg;
    const tc_result *res;
} ctx_visit_arg;

static void ctx_visit(void *a, struct tc_item *it)
{
    ctx_visit_arg *c = a;
    tc_view view;
    tc_item_view(it, &view);
    tc_result r = *c->res;
    r.status = TC_OK;
    r.view = &view;
    c->fn(c->arg, &r);
}

/*
 * A get of a key only on disk, read on this thread when that needs no
 * wait (disk_load_fast): saves the trip to the reader thread and back,
 * which is most of the cost of a read the page cache holds. TC_PENDING
 * when it must be a job after all.
 */
static bool ctx_fast_ready(tc_ctx *ctx)
{
    if (ctx->fast == NULL && !ctx->fast_failed &&
        disk_fast_new(ctx->e->dk, &ctx->fast) != TC_OK)
        ctx->fast_failed = true;
    return ctx->fast != NULL;
}

static tc_status ctx_get_inline(tc_ctx *ctx, const engine_op *op,
                                tc_done_fn fn, void *arg)
{
    tc_engine *e = ctx->e;
    if (!ctx_fast_ready(ctx))
        return TC_PENDING;
    struct tc_item *it;
    tc_status st = disk_load_fast(e->dk, ctx->fast, op->h, op->key,
                                  op->klen, &it);
    if (st == TC_PENDING)
        return TC_PENDING;
    engine_count_disk_get(e, st == TC_OK);
    tc_view view;
    tc_result r = {.status = st};
    if (st == TC_OK) {
        tc_item_view(it, &view);
        r.view = &view;
    }
    fn(arg, &r);
    tc_item_release(it);
    return TC_OK;
}

/* A meta get of a key only on disk: loaded on this thread as a get is
 * (ctx_get_inline), then run against memory, where the load put it. */
static tc_status ctx_mget_inline(tc_ctx *ctx, const engine_op *op,
                                 tc_done_fn fn, void *arg)
{
    tc_engine *e = ctx->e;
    if (!ctx_fast_ready(ctx))
        return TC_PENDING;
    struct tc_item *it;
    tc_status st = disk_load_fast(e->dk, ctx->fast, op->h, op->key,
                                  op->klen, &it);
    if (st != TC_OK && st != TC_ENOTFOUND)
        return TC_PENDING;
    tc_result r = {0};
    mem_opt o = {.disk_checked = st == TC_ENOTFOUND, .after_load = true};
    ctx_visit_arg va = {fn, arg, &r};
    tc_status rs = engine_run(e, op, engine_now(e), &o, ctx_visit, &va, &r);
    tc_item_release(it);
    if (rs == MEM_ON_DISK)
        return TC_PENDING; /* evicted at once: the job loads it again */
    /* Counted as a get the disk answered, as a job counts it. */
    if (!(op->mm.set & TC_MO_TTL))
        engine_count_disk_get(e, st == TC_OK);
    if (rs != TC_OK) /* a hit was answered by ctx_visit */
        fn(arg, &r);
    return TC_OK;
}

/* Runs op on the fast path: answered at once unless it needs the disk
 * tier or sync durability, which make it a job. */
static tc_status ctx_start(tc_ctx *ctx, engine_op *op, tc_done_fn fn,
                           void *arg)
{
    tc_engine *e = ctx->e;
    /* A meta get's changes (a touch, a win) do not wait for the disk
     * under sync durability, as a gat's do not. */
    bool read = op->kind == OP_GET || op->kind == OP_GAT ||
                op->kind == OP_MGET;
    if (e->cfg.debug_defer ||
        (!read && e->dk != NULL &&
         disk_durability(e->dk) == TC_DURABILITY_SYNC))
        return ctx_job_start(ctx, op, fn, arg);
    tc_result r = {0};
    mem_opt o = {0};
    ctx_visit_arg va = {fn, arg, &r};
    tc_status st = engine_run(e, op, engine_now(e), &o, ctx_visit, &va, &r);
    if (st == MEM_ON_DISK && op->kind == OP_GET &&
        ctx_get_inline(ctx, op, fn, arg) == TC_OK)
        return TC_OK;
    if (st == MEM_ON_DISK && op->kind == OP_MGET &&
        ctx_mget_inline(ctx, op, fn, arg) == TC_OK)
        return TC_OK;
    if (st == MEM_ON_DISK)
        return ctx_job_start(ctx, op, fn, arg);
    if (!(read && st == TC_OK)) /* a hit was answered by ctx_visit */
        fn(arg, &r);
    return TC_OK;
}

static tc_status ctx_bad_key(tc_ctx *ctx, tc_done_fn fn, void *arg)
{
    tc_result r = {.status = TC_EKEY};
    if (ctx->e->cfg.debug_defer) {
        ctx_job *j = calloc(1, sizeof(*j));
        if (j != NULL) {
            j->ctx = ctx;
            j->fn = fn;
            j->arg = arg;
            j->res = r;
            j->stage = JOB_ANSWER;
            ctx_push(j);
            return TC_PENDING;
        }
    }
    fn(arg, &r);
    return TC_OK;
}

static void ctx_op(tc_ctx *ctx, engine_op *op, engine_opk kind,
                   const void *key, size_t klen)
{
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->key = key;
    op->klen = klen;
    op->h = mem_hash(ctx->e->mem, key, klen);
}

tc_status tc_ctx_get(tc_ctx *ctx, const void *key, size_t klen, tc_done_fn fn,
                     void *arg)
{
    engine_op op;
    if (!engine_key_ok(klen))
        return ctx_bad_key(ctx, fn, arg);
    ctx_op(ctx, &op, OP_GET, key, klen);
    return ctx_start(ctx, &op, fn, arg);
}

tc_status tc_ctx_gat(tc_ctx *ctx, const void *key, size_t klen,
                     int64_t exptime, tc_done_fn fn, void *arg)
{
    engine_op op;
    if (!engine_key_ok(klen))
        return ctx_bad_key(ctx, fn, arg);
    ctx_op(ctx, &op, OP_GAT, key, klen);
    op.exptime = engine_exptime(exptime, engine_now(ctx->e));
    return ctx_start(ctx, &op, fn, arg);
}

tc_status tc_ctx_store(tc_ctx *ctx, tc_store_mode mode, const void *key,
                       size_t klen, const void *value, size_t vlen,
                       uint32_t flags, int64_t exptime, uint64_t cas,
                       tc_done_fn fn, void *arg)
{
    engine_op op;
    if (!engine_key_ok(klen))
        return ctx_bad_key(ctx, fn, arg);
    ctx_op(ctx, &op, OP_STORE, key, klen);
    op.mode = mode;
    op.value = value;
    op.vlen = vlen;
    op.flags = flags;
    op.exptime = engine_exptime(exptime, engine_now(ctx->e));
    op.cas = cas;
    return ctx_start(ctx, &op, fn, arg);
}

tc_status tc_ctx_delete(tc_ctx *ctx, const void *key, size_t klen,
                        tc_done_fn fn, void *arg)
{
    engine_op op;
    if (!engine_key_ok(klen))
        return ctx_bad_key(ctx, fn, arg);
    ctx_op(ctx, &op, OP_DELETE, key, klen);
    return ctx_start(ctx, &op, fn, arg);
}

tc_status tc_ctx_arith(tc_ctx *ctx, const void *key, size_t klen, int decr,
                       uint64_t delta, tc_done_fn fn, void *arg)
{
    engine_op op;
    if (!engine_key_ok(klen))
        return ctx_bad_key(ctx, fn, arg);
    ctx_op(ctx, &op, OP_ARITH, key, klen);
    op.decr = decr;
    op.delta = delta;
    return ctx_start(ctx, &op, fn, arg);
}

tc_status tc_ctx_touch(tc_ctx *ctx, const void *key, size_t klen,
                       int64_t exptime, tc_done_fn fn, void *arg)
{
    engine_op op;
    if (!engine_key_ok(klen))
        return ctx_bad_key(ctx, fn, arg);
    ctx_op(ctx, &op, OP_TOUCH, key, klen);
    op.exptime = engine_exptime(exptime, engine_now(ctx->e));
    return ctx_start(ctx, &op, fn, arg);
}

tc_status tc_ctx_mget(tc_ctx *ctx, const void *key, size_t klen,
                      const tc_meta_opts *o, tc_done_fn fn, void *arg)
{
    engine_op op;
    if (!engine_key_ok(klen))
        return ctx_bad_key(ctx, fn, arg);
    ctx_op(ctx, &op, OP_MGET, key, klen);
    engine_meta(ctx->e, &op, o);
    return ctx_start(ctx, &op, fn, arg);
}

tc_status tc_ctx_mstore(tc_ctx *ctx, tc_store_mode mode, const void *key,
                        size_t klen, const void *value, size_t vlen,
                        uint32_t flags, int64_t exptime,
                        const tc_meta_opts *o, tc_done_fn fn, void *arg)
{
    engine_op op;
    if (!engine_key_ok(klen))
        return ctx_bad_key(ctx, fn, arg);
    ctx_op(ctx, &op, OP_STORE, key, klen);
    engine_mstore_op(ctx->e, &op, mode, o);
    op.value = value;
    op.vlen = vlen;
    op.flags = flags;
    op.exptime = engine_exptime(exptime, engine_now(ctx->e));
    return ctx_start(ctx, &op, fn, arg);
}

tc_status tc_ctx_mdelete(tc_ctx *ctx, const void *key, size_t klen,
                         const tc_meta_opts *o, tc_done_fn fn, void *arg)
{
    engine_op op;
    if (!engine_key_ok(klen))
        return ctx_bad_key(ctx, fn, arg);
    ctx_op(ctx, &op, OP_DELETE, key, klen);
    engine_meta(ctx->e, &op, o);
    return ctx_start(ctx, &op, fn, arg);
}

tc_status tc_ctx_marith(tc_ctx *ctx, const void *key, size_t klen, int decr,
                        uint64_t delta, const tc_meta_opts *o, tc_done_fn fn,
                        void *arg)
{
    engine_op op;
    if (!engine_key_ok(klen))
        return ctx_bad_key(ctx, fn, arg);
    ctx_op(ctx, &op, OP_ARITH, key, klen);
    engine_meta(ctx->e, &op, o);
    op.decr = decr;
    op.delta = delta;
    return ctx_start(ctx, &op, fn, arg);
}
