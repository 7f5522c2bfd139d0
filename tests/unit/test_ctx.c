/*
 * test_ctx.c - the asynchronous per-thread form (engine/ctx.c).
 *
 * With debug_defer = 0 every call completes inline: it returns TC_OK with
 * its callback already run once, with the right tc_result, and the fd
 * stays quiet. With debug_defer = 1 every call returns TC_PENDING, the fd
 * becomes readable, and tc_ctx_run runs the callbacks in submission order
 * with the results and views of the time of the call (a get's view stays
 * valid in its callback even if the key was deleted or overwritten in
 * between); tc_ctx_free drops what was not run, without leaks (ASan).
 */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tcutil.h"

#define SL(s) (s), (sizeof(s) - 1)

/* What one callback saw. */
typedef struct seen {
    int calls;
    int order;
    tc_status status;
    int has_view;
    char value[256];
    size_t value_len;
    char key[256];
    size_t key_len;
    uint32_t flags;
    int64_t exptime;
    uint64_t view_cas;
    uint64_t cas;
    uint64_t number;
    tc_item *ref; /* taken when keep is set */
    int keep;
} seen;

typedef struct rec {
    seen s[64];
    int next_order;
} rec;

static rec *rec_of; /* the recorder the callbacks below write to */

static void on_done(void *arg, const tc_result *r)
{
    seen *s = arg;
    s->calls++;
    s->order = rec_of->next_order++;
    s->status = r->status;
    s->cas = r->cas;
    s->number = r->number;
    s->has_view = r->view != NULL;
    if (r->view != NULL) {
        const tc_view *v = r->view;
        s->value_len = v->value_len;
        memcpy(s->value, v->value,
               v->value_len < sizeof(s->value) ? v->value_len
                                               : sizeof(s->value));
        s->key_len = v->key_len;
        memcpy(s->key, v->key, v->key_len);
        s->flags = v->flags;
        s->exptime = v->exptime;
        s->view_cas = v->cas;
        if (s->keep)
            s->ref = tc_item_ref(v->item);
    }
}

static int readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    TCT_CHECK(n >= 0);
    return n == 1 && (p.revents & POLLIN);
}

static tc_engine *open_defer(tcu_clock *clk, int defer)
{
    tc_config cfg;
    tcu_config(&cfg, clk);
    cfg.debug_defer = defer;
    cfg.item_size_max = 1000;
    cfg.mem_limit = 1 << 20;
    return tcu_open_cfg(&cfg);
}

#define SEEN_VALUE(x, want) TCT_EQ_MEM((x)->value, (x)->value_len, want)

static void ctx_lifecycle(void)
{
    tc_engine *e = open_defer(NULL, 0);
    tc_ctx *a = NULL, *b = NULL;
    TCT_EQ_ST(tc_ctx_new(e, &a), TC_OK);
    TCT_EQ_ST(tc_ctx_new(e, &b), TC_OK);
    TCT_CHECK(a != NULL && b != NULL);
    TCT_CHECK(tc_ctx_fd(a) >= 0 && tc_ctx_fd(b) >= 0);
    TCT_CHECK(tc_ctx_fd(a) != tc_ctx_fd(b));
    TCT_CHECK(!readable(tc_ctx_fd(a), 0));
    TCT_EQ_U64(tc_ctx_run(a), 0);
    tc_ctx_free(a);
    tc_ctx_free(b);
    tc_ctx_free(NULL);
    tc_close(e);
}

/* Inline: each call returns TC_OK with its callback already run once. */
static void inline_completions(void)
{
    tcu_clock clk;
    tc_engine *e = open_defer(&clk, 0);
    tc_ctx *c = NULL;
    TCT_EQ_ST(tc_ctx_new(e, &c), TC_OK);
    rec r;
    memset(&r, 0, sizeof(r));
    rec_of = &r;
    seen *s = r.s;

    TCT_EQ_ST(tc_ctx_store(c, TC_SET, SL("k"), SL("v1"), 42, 100, 0, on_done,
                           &s[0]),
              TC_OK);
    TCT_EQ_INT(s[0].calls, 1);
    TCT_EQ_ST(s[0].status, TC_OK);
    TCT_CHECK(!s[0].has_view);
    TCT_CHECK(s[0].cas != 0);

    s[1].keep = 1;
    TCT_EQ_ST(tc_ctx_get(c, SL("k"), on_done, &s[1]), TC_OK);
    TCT_EQ_INT(s[1].calls, 1);
    TCT_EQ_ST(s[1].status, TC_OK);
    TCT_CHECK(s[1].has_view);
    SEEN_VALUE(&s[1], "v1");
    TCT_EQ_MEM(s[1].key, s[1].key_len, "k");
    TCT_EQ_U64(s[1].flags, 42);
    TCT_EQ_INT(s[1].exptime, TCU_T0 + 100);
    TCT_EQ_U64(s[1].view_cas, s[0].cas);
    /* The reference taken in the callback outlives it. */
    TCT_CHECK(s[1].ref != NULL);
    tc_view v;
    tc_item_view(s[1].ref, &v);
    TCT_EQ_MEM(v.value, v.value_len, "v1");

    TCT_EQ_ST(tc_ctx_get(c, SL("nope"), on_done, &s[2]), TC_OK);
    TCT_EQ_INT(s[2].calls, 1);
    TCT_EQ_ST(s[2].status, TC_ENOTFOUND);
    TCT_CHECK(!s[2].has_view);

    TCT_EQ_ST(tc_ctx_gat(c, SL("k"), 500, on_done, &s[3]), TC_OK);
    TCT_EQ_ST(s[3].status, TC_OK);
    TCT_EQ_INT(s[3].exptime, TCU_T0 + 500);
    SEEN_VALUE(&s[3], "v1");

    TCT_EQ_ST(tc_ctx_store(c, TC_ADD, SL("k"), SL("x"), 0, 0, 0, on_done,
                           &s[4]),
              TC_OK);
    TCT_EQ_ST(s[4].status, TC_ENOTSTORED);
    TCT_EQ_ST(tc_ctx_store(c, TC_CAS, SL("k"), SL("x"), 0, 0, s[0].cas + 1,
                           on_done, &s[5]),
              TC_OK);
    TCT_EQ_ST(s[5].status, TC_EEXISTS);
    TCT_EQ_ST(tc_ctx_store(c, TC_CAS, SL("k"), SL("17"), 0, 0, s[0].cas,
                           on_done, &s[6]),
              TC_OK);
    TCT_EQ_ST(s[6].status, TC_OK);
    TCT_CHECK(s[6].cas != s[0].cas);

    TCT_EQ_ST(tc_ctx_arith(c, SL("k"), 0, 5, on_done, &s[7]), TC_OK);
    TCT_EQ_ST(s[7].status, TC_OK);
    TCT_EQ_U64(s[7].number, 22);
    TCT_EQ_ST(tc_ctx_arith(c, SL("k"), 1, 30, on_done, &s[8]), TC_OK);
    TCT_EQ_U64(s[8].number, 0);
    TCT_EQ_ST(tc_ctx_arith(c, SL("nope"), 0, 1, on_done, &s[9]), TC_OK);
    TCT_EQ_ST(s[9].status, TC_ENOTFOUND);

    TCT_EQ_ST(tc_ctx_touch(c, SL("k"), 50, on_done, &s[10]), TC_OK);
    TCT_EQ_ST(s[10].status, TC_OK);
    TCT_EQ_ST(tc_ctx_touch(c, SL("nope"), 50, on_done, &s[11]), TC_OK);
    TCT_EQ_ST(s[11].status, TC_ENOTFOUND);

    static char big[1001];
    TCT_EQ_ST(tc_ctx_store(c, TC_SET, SL("big"), big, sizeof(big), 0, 0, 0,
                           on_done, &s[12]),
              TC_OK);
    TCT_EQ_ST(s[12].status, TC_E2BIG);
    TCT_EQ_ST(tc_ctx_get(c, "", 0, on_done, &s[13]), TC_OK);
    TCT_EQ_ST(s[13].status, TC_EKEY);
    TCT_EQ_ST(tc_ctx_store(c, TC_SET, big, 251, SL("v"), 0, 0, 0, on_done,
                           &s[14]),
              TC_OK);
    TCT_EQ_ST(s[14].status, TC_EKEY);

    TCT_EQ_ST(tc_ctx_delete(c, SL("k"), on_done, &s[15]), TC_OK);
    TCT_EQ_ST(s[15].status, TC_OK);
    TCT_EQ_ST(tc_ctx_delete(c, SL("k"), on_done, &s[16]), TC_OK);
    TCT_EQ_ST(s[16].status, TC_ENOTFOUND);

    /* Each ran once, in order, and nothing waits. */
    for (int i = 0; i <= 16; i++) {
        TCT_EQ_INT(s[i].calls, 1);
        TCT_EQ_INT(s[i].order, i);
    }
    TCT_CHECK(!readable(tc_ctx_fd(c), 0));
    TCT_EQ_U64(tc_ctx_run(c), 0);
    /* The reference from the first get still reads after the delete. */
    tc_item_view(s[1].ref, &v);
    TCT_EQ_MEM(v.value, v.value_len, "v1");
    tc_item_release(s[1].ref);
    tc_ctx_free(c);
    tc_close(e);
}

/* Deferred: TC_PENDING, a readable fd, then callbacks in order. */
static void deferred_completions(void)
{
    tcu_clock clk;
    tc_engine *e = open_defer(&clk, 1);
    tc_ctx *c = NULL;
    TCT_EQ_ST(tc_ctx_new(e, &c), TC_OK);
    rec r;
    memset(&r, 0, sizeof(r));
    rec_of = &r;
    seen *s = r.s;
    int fd = tc_ctx_fd(c);

    TCT_CHECK(!readable(fd, 0));
    TCT_EQ_ST(tc_ctx_store(c, TC_SET, SL("k"), SL("v1"), 7, 100, 0, on_done,
                           &s[0]),
              TC_PENDING);
    TCT_EQ_INT(s[0].calls, 0);
    TCT_CHECK(readable(fd, 1000));
    /* The store itself is done: a synchronous get sees it. */
    tcu_expect(e, "k", "v1");

    TCT_EQ_ST(tc_ctx_get(c, SL("k"), on_done, &s[1]), TC_PENDING);
    TCT_EQ_ST(tc_ctx_get(c, SL("nope"), on_done, &s[2]), TC_PENDING);
    TCT_EQ_ST(tc_ctx_gat(c, SL("k"), 300, on_done, &s[3]), TC_PENDING);
    TCT_EQ_ST(tc_ctx_arith(c, SL("k"), 0, 1, on_done, &s[4]), TC_PENDING);
    TCT_EQ_ST(tc_ctx_store(c, TC_SET, SL("n"), SL("10"), 0, 0, 0, on_done,
                           &s[5]),
              TC_PENDING);
    TCT_EQ_ST(tc_ctx_arith(c, SL("n"), 0, 5, on_done, &s[6]), TC_PENDING);
    TCT_EQ_ST(tc_ctx_arith(c, SL("n"), 1, 100, on_done, &s[7]), TC_PENDING);
    TCT_EQ_ST(tc_ctx_touch(c, SL("n"), 10, on_done, &s[8]), TC_PENDING);
    TCT_EQ_ST(tc_ctx_delete(c, SL("n"), on_done, &s[9]), TC_PENDING);
    TCT_EQ_ST(tc_ctx_delete(c, SL("n"), on_done, &s[10]), TC_PENDING);
    TCT_EQ_ST(tc_ctx_get(c, "", 0, on_done, &s[11]), TC_PENDING);
    TCT_EQ_ST(tc_ctx_store(c, TC_REPLACE, SL("zz"), SL("v"), 0, 0, 0,
                           on_done, &s[12]),
              TC_PENDING);
    for (int i = 0; i <= 12; i++)
        TCT_EQ_INT(s[i].calls, 0);
    TCT_CHECK(readable(fd, 1000));

    TCT_EQ_U64(tc_ctx_run(c), 13);
    for (int i = 0; i <= 12; i++) {
        TCT_EQ_INT(s[i].calls, 1);
        TCT_EQ_INT(s[i].order, i);
    }
    TCT_CHECK(!readable(fd, 0));
    TCT_EQ_U64(tc_ctx_run(c), 0);

    TCT_EQ_ST(s[0].status, TC_OK);
    TCT_CHECK(s[0].cas != 0);
    TCT_EQ_ST(s[1].status, TC_OK);
    TCT_CHECK(s[1].has_view);
    SEEN_VALUE(&s[1], "v1");
    TCT_EQ_U64(s[1].flags, 7);
    TCT_EQ_U64(s[1].view_cas, s[0].cas);
    /* The expiry is the one field that changes in place: the view shows
     * the item's expiry when the callback runs, after the gat below. */
    TCT_EQ_INT(s[1].exptime, TCU_T0 + 300);
    TCT_EQ_ST(s[2].status, TC_ENOTFOUND);
    TCT_CHECK(!s[2].has_view);
    TCT_EQ_ST(s[3].status, TC_OK);
    TCT_EQ_INT(s[3].exptime, TCU_T0 + 300);
    TCT_EQ_ST(s[4].status, TC_ENONNUMERIC);
    TCT_EQ_ST(s[5].status, TC_OK);
    TCT_EQ_U64(s[6].number, 15);
    TCT_EQ_ST(s[7].status, TC_OK);
    TCT_EQ_U64(s[7].number, 0);
    TCT_EQ_ST(s[8].status, TC_OK);
    TCT_EQ_ST(s[9].status, TC_OK);
    TCT_EQ_ST(s[10].status, TC_ENOTFOUND);
    TCT_EQ_ST(s[11].status, TC_EKEY);
    TCT_EQ_ST(s[12].status, TC_ENOTSTORED);
    tc_ctx_free(c);
    tc_close(e);
}

/* A deferred get's view is the item at the time of the call, valid in
 * the callback although the key was deleted, overwritten or flushed
 * before tc_ctx_run. */
static void deferred_view_outlives_key(void)
{
    tc_engine *e = open_defer(NULL, 1);
    tc_ctx *c = NULL;
    TCT_EQ_ST(tc_ctx_new(e, &c), TC_OK);
    rec r;
    memset(&r, 0, sizeof(r));
    rec_of = &r;
    seen *s = r.s;

    tcu_set(e, "del", "deleted value");
    tcu_set(e, "over", "old value");
    tcu_set(e, "fl", "flushed value");
    TCT_EQ_ST(tc_ctx_get(c, SL("del"), on_done, &s[0]), TC_PENDING);
    TCT_EQ_ST(tc_ctx_get(c, SL("over"), on_done, &s[1]), TC_PENDING);
    s[2].keep = 1;
    TCT_EQ_ST(tc_ctx_get(c, SL("fl"), on_done, &s[2]), TC_PENDING);
    TCT_EQ_ST(tc_delete(e, SL("del")), TC_OK);
    tcu_set(e, "over", "new value");
    tcu_expect(e, "over", "new value");
    TCT_EQ_ST(tc_flush(e, 0), TC_OK);
    /* Churn the allocator so freed chunks would be reused. */
    char key[64];
    for (unsigned i = 0; i < 200; i++) {
        size_t kl = tcu_key(key, "churn:", i);
        TCT_EQ_ST(tc_store(e, TC_SET, key, kl, SL("xxxxxxxxxxxxx"), 0, 0, 0,
                           NULL),
                  TC_OK);
    }
    TCT_EQ_U64(tc_ctx_run(c), 3);
    SEEN_VALUE(&s[0], "deleted value");
    TCT_EQ_MEM(s[0].key, s[0].key_len, "del");
    SEEN_VALUE(&s[1], "old value");
    SEEN_VALUE(&s[2], "flushed value");
    TCT_CHECK(s[2].ref != NULL);
    tc_view v;
    tc_item_view(s[2].ref, &v);
    TCT_EQ_MEM(v.value, v.value_len, "flushed value");
    tc_item_release(s[2].ref);
    tcu_expect_missing(e, "over");
    tc_ctx_free(c);
    tc_close(e);
}

/* tc_ctx_free drops completions not yet run: no callback, no leak (the
 * deferred gets hold references that must be released). */
static void free_drops_pending(void)
{
    tc_engine *e = open_defer(NULL, 1);
    tc_ctx *c = NULL;
    TCT_EQ_ST(tc_ctx_new(e, &c), TC_OK);
    rec r;
    memset(&r, 0, sizeof(r));
    rec_of = &r;
    seen *s = r.s;
    tcu_set(e, "k", "v");
    for (int i = 0; i < 40; i++) {
        if (i % 2 == 0)
            TCT_EQ_ST(tc_ctx_get(c, SL("k"), on_done, &s[i]), TC_PENDING);
        else
            TCT_EQ_ST(tc_ctx_store(c, TC_APPEND, SL("k"), SL("+"), 0, 0, 0,
                                   on_done, &s[i]),
                      TC_PENDING);
    }
    TCT_EQ_ST(tc_delete(e, SL("k")), TC_OK);
    tc_ctx_free(c);
    for (int i = 0; i < 40; i++)
        TCT_EQ_INT(s[i].calls, 0);
    tc_close(e);
}

/* A callback may submit more calls: they complete in a later run, and
 * the fd turns readable again. */
static int resubmits;
static tc_ctx *resubmit_ctx;

static void on_resubmit(void *arg, const tc_result *res)
{
    seen *s = arg;
    on_done(arg, res);
    if (resubmits > 0) {
        resubmits--;
        tc_status st = tc_ctx_get(resubmit_ctx, SL("k"), on_resubmit, s + 1);
        if (st != TC_PENDING)
            s[1].status = (tc_status)-100;
    }
}

static void callback_resubmits(void)
{
    tc_engine *e = open_defer(NULL, 1);
    tc_ctx *c = NULL;
    TCT_EQ_ST(tc_ctx_new(e, &c), TC_OK);
    rec r;
    memset(&r, 0, sizeof(r));
    rec_of = &r;
    seen *s = r.s;
    tcu_set(e, "k", "v");
    resubmit_ctx = c;
    resubmits = 5;
    TCT_EQ_ST(tc_ctx_get(c, SL("k"), on_resubmit, &s[0]), TC_PENDING);
    for (int round = 0; round <= 5; round++) {
        TCT_CHECK(readable(tc_ctx_fd(c), 1000));
        TCT_EQ_U64(tc_ctx_run(c), 1);
        TCT_EQ_INT(s[round].calls, 1);
        TCT_EQ_ST(s[round].status, TC_OK);
        SEEN_VALUE(&s[round], "v");
    }
    TCT_CHECK(!readable(tc_ctx_fd(c), 0));
    TCT_EQ_U64(tc_ctx_run(c), 0);
    tc_ctx_free(c);
    tc_close(e);
}

/* Many completions: one run takes them all, in order. */
static int burst_next;
static int burst_bad;

static void on_burst(void *arg, const tc_result *res)
{
    intptr_t i = (intptr_t)arg;
    if (i != burst_next++ || res->status != TC_OK ||
        (i % 2 == 0 && res->view == NULL))
        burst_bad++;
    else if (i % 2 == 0 && res->view != NULL) {
        char want[64];
        size_t wl = tcu_key(want, "v", (uint64_t)i - 1);
        if (res->view->value_len != wl ||
            memcmp(res->view->value, want, wl) != 0)
            burst_bad++;
    }
}

static void deferred_burst(void)
{
    tc_engine *e = open_defer(NULL, 1);
    tc_ctx *c = NULL;
    TCT_EQ_ST(tc_ctx_new(e, &c), TC_OK);
    burst_next = 0;
    burst_bad = 0;
    enum { N = 5000 };
    char val[64];
    for (intptr_t i = 0; i < N; i++) {
        /* odd: store "v<i>"; even (after the first): get it back. */
        if (i % 2 == 1) {
            size_t vl = tcu_key(val, "v", (uint64_t)i);
            TCT_EQ_ST(tc_ctx_store(c, TC_SET, SL("k"), val, vl, 0, 0, 0,
                                   on_burst, (void *)i),
                      TC_PENDING);
        } else if (i == 0) {
            /* The value the check of get 0 expects: "v<i - 1>". */
            size_t vl = tcu_key(val, "v", (uint64_t)i - 1);
            TCT_EQ_ST(tc_store(e, TC_SET, SL("k"), val, vl, 0, 0, 0, NULL),
                      TC_OK);
            TCT_EQ_ST(tc_ctx_get(c, SL("k"), on_burst, (void *)i),
                      TC_PENDING);
        } else {
            TCT_EQ_ST(tc_ctx_get(c, SL("k"), on_burst, (void *)i),
                      TC_PENDING);
        }
    }
    TCT_CHECK(readable(tc_ctx_fd(c), 1000));
    TCT_EQ_U64(tc_ctx_run(c), N);
    TCT_EQ_INT(burst_next, N);
    TCT_EQ_INT(burst_bad, 0);
    tc_ctx_free(c);
    tc_close(e);
}

/* Contexts on several threads, one engine: each sees only its own
 * completions. */
typedef struct ctx_thread {
    tc_engine *e;
    unsigned tid;
    unsigned ran;
    unsigned bad;
} ctx_thread;

static void on_thread_done(void *arg, const tc_result *res)
{
    ctx_thread *t = arg;
    t->ran++;
    if (res->status != TC_OK)
        t->bad++;
}

static void *ctx_worker(void *p)
{
    ctx_thread *t = p;
    tc_ctx *c = NULL;
    if (tc_ctx_new(t->e, &c) != TC_OK) {
        t->bad++;
        return NULL;
    }
    char key[64];
    for (unsigned round = 0; round < 200; round++) {
        for (unsigned i = 0; i < 10; i++) {
            size_t kl = tcu_key(key, t->tid == 0 ? "a:" : "b:",
                                t->tid * 100000 + round * 10 + i);
            if (tc_ctx_store(c, TC_SET, key, kl, "v", 1, 0, 0, 0,
                             on_thread_done, t) != TC_PENDING)
                t->bad++;
            if (tc_ctx_get(c, key, kl, on_thread_done, t) != TC_PENDING)
                t->bad++;
        }
        struct pollfd pfd = {.fd = tc_ctx_fd(c), .events = POLLIN};
        if (poll(&pfd, 1, 1000) != 1)
            t->bad++;
        if (tc_ctx_run(c) != 20)
            t->bad++;
    }
    tc_ctx_free(c);
    return NULL;
}

static void contexts_per_thread(void)
{
    tc_engine *e = open_defer(NULL, 1);
    enum { T = 4 };
    pthread_t th[T];
    ctx_thread ct[T];
    for (unsigned i = 0; i < T; i++) {
        ct[i] = (ctx_thread){e, i, 0, 0};
        TCT_EQ_INT(pthread_create(&th[i], NULL, ctx_worker, &ct[i]), 0);
    }
    for (unsigned i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 0; i < T; i++) {
        TCT_EQ_U64(ct[i].bad, 0);
        TCT_EQ_U64(ct[i].ran, 200 * 20);
    }
    tc_close(e);
}

TCT_MAIN(TCT(ctx_lifecycle), TCT(inline_completions),
         TCT(deferred_completions), TCT(deferred_view_outlives_key),
         TCT(free_drops_pending), TCT(callback_resubmits),
         TCT(deferred_burst), TCT(contexts_per_thread))
