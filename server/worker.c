/*
 * worker.c - a worker thread: its libev loop, its connections, and its
 * engine context (see server.h).
 *
 * The acceptor hands sockets over through a mutex-guarded array and an
 * ev_async. Engine completions arrive on the context's fd; after running
 * them the worker resumes the connections they unblocked, in one pass.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "request.h"

static void worker_resume_ready(worker *w)
{
    while (w->ready != NULL) {
        conn *c = w->ready;
        w->ready = c->next_ready;
        c->in_ready = false;
        conn_resume(c);
        conn_release(c);
    }
}

void worker_pause(worker *w, conn *c)
{
    if (c->paused)
        return;
    c->paused = true;
    c->next_paused = w->paused;
    w->paused = c;
    if (!ev_is_active(&w->congest)) {
        w->paused_at = ev_now(w->loop);
        ev_timer_again(w->loop, &w->congest);
    }
}

/* Every millisecond while connections are paused: resumes them all once
 * the journal has caught up. */
static void worker_on_congest(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    worker *w = t->data;
    if (tc_congested(w->srv->engine))
        return;
    ev_timer_stop(loop, t);
    ev_tstamp waited = ev_now(loop) - w->paused_at;
    STAT_ADD(w->st.journal_waits, 1);
    STAT_ADD(w->st.journal_wait_us, waited > 0 ? (uint64_t)(waited * 1e6) : 0);
    conn *c = w->paused;
    w->paused = NULL;
    while (c != NULL) {
        conn *next = c->next_paused;
        c->paused = false;
        conn_resume(c);
        conn_release(c);
        c = next;
    }
}

static void worker_on_ctx(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    worker *w = io->data;
    tc_ctx_run(w->ctx);
    worker_resume_ready(w);
}

/* Closes every connection, writing what is queued as far as the sockets
 * take it. Completions still pending are run first so their replies go
 * out too. */
static void worker_close_all(worker *w)
{
    /* No request is executed from now on; replies already due still go. */
    for (conn *c = w->conns; c != NULL; c = c->next)
        c->closing = true;
    for (int i = 0; i < 100 && tc_ctx_run(w->ctx) > 0; i++)
        worker_resume_ready(w);
    /* Paused connections are closed with the others; their list goes
     * (freeing those closed already, which only the list held). */
    conn *p = w->paused;
    w->paused = NULL;
    while (p != NULL) {
        conn *next = p->next_paused;
        p->paused = false;
        conn_release(p);
        p = next;
    }
    while (w->conns != NULL)
        conn_shutdown(w->conns);
    /* Completions of closed connections free what waited for them. */
    for (int i = 0; i < 100 && tc_ctx_run(w->ctx) > 0; i++)
        worker_resume_ready(w);
    worker_resume_ready(w);
}

static void worker_on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    worker *w = a->data;
    int *fds;
    size_t n;
    bool stop;

    pthread_mutex_lock(&w->lock);
    fds = w->newfds;
    n = w->nnew;
    stop = w->stop;
    w->newfds = NULL;
    w->nnew = w->capnew = 0;
    pthread_mutex_unlock(&w->lock);

    for (size_t i = 0; i < n; i++) {
        if (stop || conn_new(w, fds[i]) == NULL) {
            if (stop)
                close(fds[i]);
            atomic_fetch_sub(&w->srv->curr_conns, 1);
        }
    }
    free(fds);
    if (stop) {
        worker_close_all(w);
        ev_break(loop, EVBREAK_ALL);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    ev_run(w->loop, 0);
    return NULL;
}

int worker_start(worker *w, server *srv, unsigned id)
{
    memset(w, 0, sizeof(*w));
    w->srv = srv;
    w->id = id;
    pthread_mutex_init(&w->lock, NULL);
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (w->loop == NULL)
        return -1;
    tc_status st = tc_ctx_new(srv->engine, &w->ctx);
    if (st != TC_OK) {
        ev_loop_destroy(w->loop);
        return -1;
    }
    ev_async_init(&w->wake, worker_on_wake);
    w->wake.data = w;
    ev_async_start(w->loop, &w->wake);
    ev_timer_init(&w->congest, worker_on_congest, 0., 0.001);
    w->congest.data = w;
    ev_io_init(&w->ctx_io, worker_on_ctx, tc_ctx_fd(w->ctx), EV_READ);
    w->ctx_io.data = w;
    ev_io_start(w->loop, &w->ctx_io);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        tc_ctx_free(w->ctx);
        ev_loop_destroy(w->loop);
        return -1;
    }
    char name[16];
    snprintf(name, sizeof(name), "tc-worker-%u", w->id);
    pthread_setname_np(w->thread, name); /* for top -H, perf */
    return 0;
}

void worker_give(worker *w, int fd)
{
    pthread_mutex_lock(&w->lock);
    if (w->nnew == w->capnew) {
        size_t cap = w->capnew == 0 ? 16 : w->capnew * 2;
        int *fds = realloc(w->newfds, cap * sizeof(*fds));
        if (fds == NULL) {
            pthread_mutex_unlock(&w->lock);
            close(fd);
            atomic_fetch_sub(&w->srv->curr_conns, 1);
            return;
        }
        w->newfds = fds;
        w->capnew = cap;
    }
    w->newfds[w->nnew++] = fd;
    pthread_mutex_unlock(&w->lock);
    ev_async_send(w->loop, &w->wake);
}

void worker_stop(worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_mutex_unlock(&w->lock);
    ev_async_send(w->loop, &w->wake);
}

void worker_join(worker *w)
{
    pthread_join(w->thread, NULL);
    ev_io_stop(w->loop, &w->ctx_io);
    ev_async_stop(w->loop, &w->wake);
    ev_timer_stop(w->loop, &w->congest);
    tc_ctx_free(w->ctx);
    request_free_ops(w);
    ev_loop_destroy(w->loop);
    pthread_mutex_destroy(&w->lock);
}
