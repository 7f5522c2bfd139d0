/*
 * stats.c - "stats", "stats settings", "stats slabs", "stats items",
 * "stats sizes" and "stats reset".
 *
 * The general stats are the server's own (process, connections, bytes on
 * the wire, summed over workers) followed by the engine's (tc_stats), with
 * memcached's names where memcached has the number.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "request.h"

static void stat_line(out_queue *q, const char *name, const char *value)
{
    size_t n = strlen(name), v = strlen(value);
    char *p = out_reserve(q, 5 + n + 1 + v + 2);
    if (p == NULL)
        return;
    memcpy(p, "STAT ", 5);
    memcpy(p + 5, name, n);
    p[5 + n] = ' ';
    memcpy(p + 6 + n, value, v);
    memcpy(p + 6 + n + v, "\r\n", 2);
    q->len += 5 + n + 1 + v + 2;
}

static void stat_fmt(out_queue *q, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void stat_fmt(out_queue *q, const char *name, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    stat_line(q, name, buf);
}

static void stat_engine(void *arg, const char *name, const char *value)
{
    stat_line(arg, name, value);
}

static uint64_t sum_workers(server *srv, size_t offset)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < srv->nworkers; i++) {
        const _Atomic uint64_t *f =
            (const _Atomic uint64_t *)((const char *)&srv->workers[i].st +
                                       offset);
        total += atomic_load_explicit(f, memory_order_relaxed);
    }
    return total;
}

#define WORKER_SUM(srv, field) sum_workers((srv), offsetof(worker_stats, field))

static void stats_general(conn *c)
{
    server *srv = c->w->srv;
    out_queue *q = &c->out;
    time_t now = time(NULL);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);

    stat_fmt(q, "pid", "%ld", (long)getpid());
    stat_fmt(q, "uptime", "%ld", (long)(now - srv->started));
    stat_fmt(q, "time", "%ld", (long)now);
    stat_fmt(q, "version", "1.6.18-tiercache-%s", TC_VERSION_STRING);
    stat_fmt(q, "libev", "%d.%d", ev_version_major(), ev_version_minor());
    stat_fmt(q, "pointer_size", "%d", (int)(8 * sizeof(void *)));
    stat_fmt(q, "rusage_user", "%ld.%06ld", (long)ru.ru_utime.tv_sec,
             (long)ru.ru_utime.tv_usec);
    stat_fmt(q, "rusage_system", "%ld.%06ld", (long)ru.ru_stime.tv_sec,
             (long)ru.ru_stime.tv_usec);
    stat_fmt(q, "max_connections", "%u", srv->set.max_conns);
    stat_fmt(q, "curr_connections", "%u", atomic_load(&srv->curr_conns));
    stat_fmt(q, "total_connections", "%" PRIu64,
             atomic_load(&srv->total_conns));
    stat_fmt(q, "rejected_connections", "%" PRIu64,
             atomic_load(&srv->rejected_conns));
    stat_fmt(q, "cmd_flush", "%" PRIu64, WORKER_SUM(srv, cmd_flush));
    tc_stats(srv->engine, stat_engine, q);
    stat_fmt(q, "journal_waits", "%" PRIu64, WORKER_SUM(srv, journal_waits));
    stat_fmt(q, "journal_wait_us", "%" PRIu64,
             WORKER_SUM(srv, journal_wait_us));
    stat_fmt(q, "bytes_read", "%" PRIu64, WORKER_SUM(srv, bytes_read));
    stat_fmt(q, "bytes_written", "%" PRIu64, WORKER_SUM(srv, bytes_written));
    stat_fmt(q, "threads", "%u", srv->nworkers);
}

static void stats_settings(conn *c)
{
    server *srv = c->w->srv;
    const srv_settings *s = &srv->set;
    out_queue *q = &c->out;

    stat_fmt(q, "maxbytes", "%zu", s->mem_limit);
    stat_fmt(q, "maxconns", "%u", s->max_conns);
    stat_fmt(q, "tcpport", "%d", s->port);
    stat_fmt(q, "udpport", "%d", 0);
    stat_fmt(q, "inter", "%s", s->listen);
    stat_fmt(q, "verbosity", "%d", atomic_load(&srv->verbose));
    stat_fmt(q, "evictions", "%s", "on");
    stat_fmt(q, "num_threads", "%u", s->threads);
    stat_fmt(q, "cas_enabled", "%s", "yes");
    stat_fmt(q, "item_size_max", "%zu", s->item_size_max);
    stat_fmt(q, "flush_enabled", "%s", "yes");
    stat_fmt(q, "binding_protocol", "%s", "ascii");
    stat_fmt(q, "debug_defer", "%s", s->debug_defer ? "yes" : "no");
}

static void stats_reset(server *srv)
{
    tc_stats_reset(srv->engine);
    atomic_store(&srv->total_conns, 0);
    atomic_store(&srv->rejected_conns, 0);
    for (unsigned i = 0; i < srv->nworkers; i++) {
        worker_stats *st = &srv->workers[i].st;
        atomic_store(&st->bytes_read, 0);
        atomic_store(&st->bytes_written, 0);
        atomic_store(&st->cmd_flush, 0);
        atomic_store(&st->journal_waits, 0);
        atomic_store(&st->journal_wait_us, 0);
    }
}

static bool arg_is(const mc_request *req, const char *s)
{
    return req->arg_len == strlen(s) && memcmp(req->arg, s, req->arg_len) == 0;
}

void stats_reply(conn *c, const mc_request *req)
{
    out_queue *q = &c->out;
    size_t mark = out_mark(q);

    if (req->arg_len == 0) {
        stats_general(c);
    } else if (arg_is(req, "settings")) {
        stats_settings(c);
    } else if (arg_is(req, "slabs")) {
        tc_stats_slabs(c->w->srv->engine, stat_engine, q);
    } else if (arg_is(req, "items")) {
        tc_stats_items(c->w->srv->engine, stat_engine, q);
    } else if (arg_is(req, "sizes")) {
        /* memcached's answer without -o track_sizes, which tiercached
         * does not have. */
        stat_line(q, "sizes_status", "disabled");
    } else if (arg_is(req, "reset")) {
        stats_reset(c->w->srv);
        out_reply(q, "RESET\r\n", 7);
        return;
    } else {
        out_reply(q, "ERROR\r\n", 7);
        return;
    }
    if (out_put(q, "END\r\n", 5))
        out_commit(q, mark);
}
