/*
 * server.h - the server object and its worker threads.
 *
 * The main thread accepts connections (main.c) and hands each to a worker
 * in turn; a worker runs its own libev loop (worker.c) with its
 * connections (conn.c) and its engine context, whose completions it runs
 * when the context's fd is readable. All state hangs off the server
 * object: no globals.
 *
 * Counters a worker keeps are written by that worker only and read by
 * whichever worker answers "stats": relaxed atomics, so a plain load and
 * store on the write side.
 */
#ifndef TC_SERVER_H
#define TC_SERVER_H

#include <ev.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "settings.h"
#include "tiercache.h"

struct conn;
struct srv_op;
typedef struct server server;

typedef struct worker_stats {
    _Atomic uint64_t bytes_read;
    _Atomic uint64_t bytes_written;
    _Atomic uint64_t cmd_flush;
    _Atomic uint64_t cmd_total;
    /* Backpressure: times the worker stopped reading requests because
     * the journal was full (tc_congested), and the microseconds it
     * stayed stopped. */
    _Atomic uint64_t journal_waits;
    _Atomic uint64_t journal_wait_us;
} worker_stats;

#define STAT_ADD(field, n)                                                 \
    atomic_store_explicit(                                                 \
        &(field),                                                          \
        atomic_load_explicit(&(field), memory_order_relaxed) + (n),        \
        memory_order_relaxed)

typedef struct worker {
    server *srv;
    unsigned id;
    pthread_t thread;
    struct ev_loop *loop;
    ev_async wake;  /* new connections, or stop */
    ev_io ctx_io;   /* the engine context's completions */
    ev_idle resume; /* connections to go on with after completions */
    tc_ctx *ctx;

    pthread_mutex_t lock; /* guards the hand-over fields below */
    int *newfds;
    size_t nnew;
    size_t capnew;
    bool stop;

    struct conn *conns;  /* every open connection */
    struct conn *ready;  /* connections waiting to be resumed */
    struct conn *paused; /* connections waiting for the journal */
    ev_timer congest;    /* checks whether the journal caught up */
    ev_tstamp paused_at; /* when the first of them paused */
    struct srv_op *free_ops;
    worker_stats st;
} worker;

struct server {
    srv_settings set;
    tc_engine *engine;
    worker *workers;
    unsigned nworkers;
    unsigned next_worker;

    int *listen_fds;
    ev_io *listen_io;
    unsigned nlisten;
    struct ev_loop *loop; /* the main thread's */
    ev_signal sigterm;
    ev_signal sigint;
    ev_timer accept_retry;

    _Atomic unsigned curr_conns;
    _Atomic uint64_t total_conns;
    _Atomic uint64_t rejected_conns;
    _Atomic int verbose;
    time_t started;
};

/* Logs a line to stderr when the verbosity is at least level. */
void srv_log(server *srv, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* worker.c */
int worker_start(worker *w, server *srv, unsigned id);
/* Hands an accepted socket to w (any thread). */
void worker_give(worker *w, int fd);
/* Stops c from taking requests until the engine is no longer
 * congested (tc_congested). */
void worker_pause(worker *w, struct conn *c);

/* Asks w to finish its work, close its connections and return. */
void worker_stop(worker *w);
void worker_join(worker *w);

#endif /* TC_SERVER_H */
