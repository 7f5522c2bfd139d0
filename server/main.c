/*
 * main.c - tiercached: settings, the engine, the listening sockets, the
 * acceptor, signals and a clean shutdown.
 *
 * The main thread runs libev's default loop: it accepts connections and
 * hands each to the next worker (round robin). A connection over -c gets
 * "ERROR Too many open connections" and is closed, as in memcached. On
 * SIGTERM or SIGINT it stops accepting, lets every worker finish and
 * close its connections, then closes the engine and exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server.h"

#define SRV_BACKLOG 1024
#define SRV_SPARE_FDS 64 /* beyond -c: listeners, engine, loops, logs */
#define SRV_MAX_LISTEN 16

void srv_log(server *srv, int level, const char *fmt, ...)
{
    if (atomic_load_explicit(&srv->verbose, memory_order_relaxed) < level)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fprintf(stderr, "tiercached: %s\n", buf);
}

/* Raises the open-file limit to fit -c connections and our own files:
 * the disk tier keeps each segment open, disk-size/16 each (at least 1
 * MiB, at most 64 MiB: a large disk has many). */
static void srv_raise_nofile(server *srv)
{
    struct rlimit rl;
    rlim_t segs = 0;
    if (srv->set.dir[0] != '\0')
        segs = 20 + (rlim_t)(srv->set.disk_size >> 26);
    rlim_t want = (rlim_t)srv->set.max_conns + SRV_SPARE_FDS + segs;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    if (rl.rlim_max < want) {
        struct rlimit up = {want, want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return;
        want = rl.rlim_max;
    }
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 ||
        want < (rlim_t)srv->set.max_conns + SRV_SPARE_FDS + segs)
        fprintf(stderr,
                "tiercached: warning: open-file limit %llu is below -c %u "
                "plus %llu; connections may be refused\n",
                (unsigned long long)want, srv->set.max_conns,
                (unsigned long long)(SRV_SPARE_FDS + segs));
}

static int srv_listen_one(server *srv, const char *host)
{
    struct addrinfo hints, *res = NULL;
    char port[16];
    int fd = -1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", srv->set.port);
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "tiercached: cannot resolve '%s': %s\n", host,
                gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
                                       SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, SRV_BACKLOG) == 0)
            break;
        fprintf(stderr, "tiercached: cannot listen on %s port %d: %s\n", host,
                srv->set.port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static void srv_on_accept(struct ev_loop *loop, ev_io *io, int revents);

static int srv_listen(server *srv)
{
    char list[sizeof(srv->set.listen)];
    char *save = NULL;

    snprintf(list, sizeof(list), "%s", srv->set.listen);
    srv->listen_fds = calloc(SRV_MAX_LISTEN, sizeof(int));
    srv->listen_io = calloc(SRV_MAX_LISTEN, sizeof(ev_io));
    if (srv->listen_fds == NULL || srv->listen_io == NULL)
        return -1;
    for (char *h = strtok_r(list, ",", &save); h != NULL;
         h = strtok_r(NULL, ",", &save)) {
        if (srv->nlisten == SRV_MAX_LISTEN) {
            fprintf(stderr, "tiercached: at most %d listen addresses\n",
                    SRV_MAX_LISTEN);
            return -1;
        }
        size_t n = strlen(h);
        if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
            h[n - 1] = '\0';
            h++;
        }
        int fd = srv_listen_one(srv, h);
        if (fd < 0)
            return -1;
        srv->listen_fds[srv->nlisten] = fd;
        ev_io_init(&srv->listen_io[srv->nlisten], srv_on_accept, fd, EV_READ);
        srv->listen_io[srv->nlisten].data = srv;
        srv->nlisten++;
    }
    return srv->nlisten > 0 ? 0 : -1;
}

static void srv_accepting(server *srv, bool on)
{
    for (unsigned i = 0; i < srv->nlisten; i++) {
        if (on)
            ev_io_start(srv->loop, &srv->listen_io[i]);
        else
            ev_io_stop(srv->loop, &srv->listen_io[i]);
    }
}

static void srv_reject(server *srv, int fd)
{
    static const char msg[] = "ERROR Too many open connections\r\n";
    ssize_t n = write(fd, msg, sizeof(msg) - 1);
    (void)n; /* a fresh socket takes it; if not, the close says enough */
    close(fd);
    atomic_fetch_add(&srv->rejected_conns, 1);
    srv_log(srv, 1, "too many open connections: refused one");
}

static void srv_on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    server *srv = io->data;

    for (int i = 0; i < 64; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                /* Out of descriptors: pause accepting for a moment rather
                 * than spin on a listener that stays readable. */
                fprintf(stderr, "tiercached: accept: %s; pausing 100 ms\n",
                        strerror(errno));
                srv_accepting(srv, false);
                ev_timer_set(&srv->accept_retry, 0.1, 0.);
                ev_timer_start(loop, &srv->accept_retry);
            }
            return;
        }
        if (atomic_fetch_add(&srv->curr_conns, 1) >= srv->set.max_conns) {
            atomic_fetch_sub(&srv->curr_conns, 1);
            srv_reject(srv, fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        atomic_fetch_add(&srv->total_conns, 1);
        worker *w = &srv->workers[srv->next_worker];
        srv->next_worker = (srv->next_worker + 1) % srv->nworkers;
        worker_give(w, fd);
    }
}

static void srv_on_accept_retry(struct ev_loop *loop, ev_timer *t,
                                int revents)
{
    (void)loop;
    (void)revents;
    srv_accepting(t->data, true);
}

static void srv_on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)revents;
    server *srv = s->data;
    fprintf(stderr, "tiercached: %s: shutting down\n",
            s->signum == SIGTERM ? "SIGTERM" : "SIGINT");
    srv_accepting(srv, false);
    ev_timer_stop(loop, &srv->accept_retry);
    ev_break(loop, EVBREAK_ALL);
}

static void srv_stat_pick(void *arg, const char *name, const char *value)
{
    const char **want = arg;
    for (int i = 0; want[i] != NULL; i += 2)
        if (strcmp(want[i], name) == 0)
            snprintf((char *)want[i + 1], 32, "%s", value);
}

/* The engine's reports of disk problems (rate-limited by the engine),
 * logged whatever the verbosity: the operator must see them. */
static void srv_log_disk(void *arg, const char *msg)
{
    (void)arg;
    /* Warm start's progress lines have their own prefix. */
    if (strncmp(msg, "warm: ", 6) == 0)
        fprintf(stderr, "tiercached: warm: %s\n", msg + 6);
    else
        fprintf(stderr, "tiercached: disk: %s\n", msg);
}

/* The start-up line about the disk tier: backend and recovery. */
static void srv_log_engine(server *srv)
{
    if (srv->set.dir[0] == '\0') {
        fprintf(stderr, "tiercached: memory only (--memory-only)\n");
        return;
    }
    char backend[32] = "", recs[32] = "", cut[32] = "", skipped[32] = "",
         secs[32] = "", items[32] = "";
    const char *want[] = {"io_backend", backend, "recovery_records", recs,
                          "recovery_cut_bytes", cut, "recovery_skipped",
                          skipped, "recovery_seconds", secs, "disk_items",
                          items, NULL};
    tc_stats(srv->engine, srv_stat_pick, want);
    fprintf(stderr,
            "tiercached: data directory %s: %s items on disk; I/O backend "
            "%s; recovery replayed %s records, cut %s bytes of torn tail, "
            "skipped %s damaged records, in %s s\n",
            srv->set.dir, items, backend, recs, cut, skipped, secs);
}

static int srv_run(server *srv)
{
    tc_config cfg;
    tc_status st;
    int rc = 1;

    char why[600] = "";
    tc_config_init(&cfg);
    cfg.mem_limit = srv->set.mem_limit;
    cfg.item_size_max = srv->set.item_size_max;
    cfg.debug_defer = srv->set.debug_defer;
    if (srv->set.dir[0] != '\0') {
        cfg.dir = srv->set.dir;
        cfg.disk_size = srv->set.disk_size;
        cfg.durability = (tc_durability)srv->set.durability;
        cfg.flush_ms = srv->set.flush_ms;
        cfg.compress_level = srv->set.compress_level;
        cfg.io_backend = srv->set.io_backend;
        cfg.direct_writes = (tc_direct)srv->set.direct_writes;
        cfg.log = srv_log_disk;
        cfg.warm = (tc_warm)srv->set.warm;
        cfg.hot_snapshot_s = srv->set.hot_snapshot_s;
    }
    cfg.errbuf = why;
    cfg.errbuf_len = sizeof(why);
    srv_raise_nofile(srv); /* before the engine opens its segments */
    st = tc_open(&cfg, &srv->engine);
    if (st != TC_OK) {
        fprintf(stderr, "tiercached: cannot open %s: %s%s%s\n",
                srv->set.dir[0] != '\0' ? srv->set.dir : "the engine",
                tc_strerror(st), why[0] != '\0' ? ": " : "", why);
        return 1;
    }
    srv_log_engine(srv);
    srv->loop = ev_default_loop(EVFLAG_AUTO);
    if (srv->loop == NULL || srv_listen(srv) != 0)
        goto out;

    srv->workers = calloc(srv->set.threads, sizeof(*srv->workers));
    if (srv->workers == NULL)
        goto out;
    for (unsigned i = 0; i < srv->set.threads; i++) {
        if (worker_start(&srv->workers[i], srv, i) != 0) {
            fprintf(stderr, "tiercached: cannot start worker %u\n", i);
            goto out;
        }
        srv->nworkers++;
    }

    ev_signal_init(&srv->sigterm, srv_on_signal, SIGTERM);
    ev_signal_init(&srv->sigint, srv_on_signal, SIGINT);
    srv->sigterm.data = srv->sigint.data = srv;
    ev_signal_start(srv->loop, &srv->sigterm);
    ev_signal_start(srv->loop, &srv->sigint);
    ev_timer_init(&srv->accept_retry, srv_on_accept_retry, 0.1, 0.);
    srv->accept_retry.data = srv;
    srv_accepting(srv, true);

    fprintf(stderr,
            "tiercached %s: listening on %s port %d; %u threads, %zu MiB, "
            "item size max %zu, max connections %u\n",
            TC_VERSION_STRING, srv->set.listen, srv->set.port, srv->nworkers,
            srv->set.mem_limit >> 20, srv->set.item_size_max,
            srv->set.max_conns);
    ev_run(srv->loop, 0);
    rc = 0;
out:
    for (unsigned i = 0; i < srv->nworkers; i++)
        worker_stop(&srv->workers[i]);
    for (unsigned i = 0; i < srv->nworkers; i++)
        worker_join(&srv->workers[i]);
    for (unsigned i = 0; i < srv->nlisten; i++)
        close(srv->listen_fds[i]);
    free(srv->listen_fds);
    free(srv->listen_io);
    free(srv->workers);
    tc_close(srv->engine);
    if (srv->loop != NULL)
        ev_loop_destroy(srv->loop);
    if (rc == 0)
        fprintf(stderr, "tiercached: stopped\n");
    return rc;
}

int main(int argc, char **argv)
{
    server srv;

    memset(&srv, 0, sizeof(srv));
    srv_settings_init(&srv.set);
    switch (srv_settings_parse(&srv.set, argc, argv)) {
    case SRV_PARSE_EXIT:
        return 0;
    case SRV_PARSE_FAIL:
        return 1;
    case SRV_PARSE_RUN:
        break;
    }
    atomic_store(&srv.verbose, srv.set.verbose);
    srv.started = time(NULL);
    signal(SIGPIPE, SIG_IGN);
    return srv_run(&srv);
}
