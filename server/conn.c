/*
 * conn.c - a client connection's life (see conn.h).
 *
 * The read side: one read per event into the connection's buffer (again
 * if the read filled it), then every complete request is executed before
 * anything is written. The write side: out_flush() writes what is ready
 * with writev; a write watcher runs only while the socket is full.
 */
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parse.h"
#include "request.h"

#define CONN_RBUF_MIN ((size_t)16 * 1024)
#define CONN_RBUF_KEEP ((size_t)256 * 1024)
#define CONN_READ_MIN ((size_t)4096)
#define CONN_READS_PER_EVENT 4
#define CONN_BATCH 32

static void conn_on_read(struct ev_loop *loop, ev_io *io, int revents);
static void conn_on_write(struct ev_loop *loop, ev_io *io, int revents);

conn *conn_new(worker *w, int fd)
{
    conn *c = calloc(1, sizeof(*c));
    if (c != NULL)
        c->rbuf = malloc(CONN_RBUF_MIN);
    if (c == NULL || c->rbuf == NULL) {
        free(c);
        close(fd);
        return NULL;
    }
    c->w = w;
    c->fd = fd;
    c->rcap = CONN_RBUF_MIN;
    out_init(&c->out);
    ev_io_init(&c->rio, conn_on_read, fd, EV_READ);
    ev_io_init(&c->wio, conn_on_write, fd, EV_WRITE);
    c->rio.data = c;
    c->wio.data = c;
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    ev_io_start(w->loop, &c->rio);
    srv_log(w->srv, 1, "<%d new connection", fd);
    return c;
}

void conn_close(conn *c)
{
    worker *w = c->w;
    if (c->dead)
        return;
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    close(c->fd);
    srv_log(w->srv, 1, "<%d connection closed", c->fd);
    c->dead = true;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    out_free(&c->out);
    free(c->rbuf);
    c->rbuf = NULL;
    atomic_fetch_sub(&w->srv->curr_conns, 1);
    /* Not freed here: the caller may still look at c. Whoever called in
     * from the loop releases it on the way out (conn_release). */
}

void conn_release(conn *c)
{
    if (c->dead && c->pending == 0 && !c->in_ready && !c->paused)
        free(c);
}

void conn_ready(conn *c)
{
    if (c->in_ready)
        return;
    c->in_ready = true;
    c->next_ready = c->w->ready;
    c->w->ready = c;
}

/* Starts and stops the watchers to match what the connection can do. */
static void conn_watch(conn *c)
{
    struct ev_loop *loop = c->w->loop;
    if (c->dead)
        return;
    bool can_write = out_writable(&c->out);

    if (c->closing && c->pending == 0 && !can_write && c->out.waits == 0) {
        conn_close(c);
        return;
    }
    bool want_read = !c->closing && c->pending == 0 && !c->paused &&
                     c->out.pending < CONN_OUT_HIGH;
    if (want_read && !ev_is_active(&c->rio))
        ev_io_start(loop, &c->rio);
    else if (!want_read && ev_is_active(&c->rio))
        ev_io_stop(loop, &c->rio);
    if (can_write && !ev_is_active(&c->wio))
        ev_io_start(loop, &c->wio);
    else if (!can_write && ev_is_active(&c->wio))
        ev_io_stop(loop, &c->wio);
}

/* Writes what is ready, then fixes the watchers. */
static void conn_flush(conn *c)
{
    if (c->out.oom) {
        srv_log(c->w->srv, 0, "<%d out of memory for replies: closing", c->fd);
        conn_close(c);
        return;
    }
    if (out_writable(&c->out)) {
        ssize_t n = out_flush(&c->out, c->fd);
        if (n < 0) {
            srv_log(c->w->srv, 1, "<%d write: %s", c->fd, strerror(errno));
            conn_close(c);
            return;
        }
        STAT_ADD(c->w->st.bytes_written, (uint64_t)n);
    }
    conn_watch(c);
}

static void conn_log_request(conn *c, const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    size_t len = nl != NULL ? (size_t)(nl - p) : n;
    if (len > 0 && p[len - 1] == '\r')
        len--;
    srv_log(c->w->srv, 2, "<%d %.*s", c->fd, (int)(len > 200 ? 200 : len), p);
}

/* One request parsed ahead of its execution. */
typedef struct conn_parsed {
    mc_request req;
    size_t used;
    size_t swallow;
    mc_status st;
    mc_error err;
} conn_parsed;

/* Keys of one get hinted to the engine at most, and items of a batch
 * (tc_prefetch_item). */
#define CONN_PREFETCH_KEYS 16
#define CONN_PREFETCH_ITEMS 64

/* The keys a batch hinted to the engine, for tc_prefetch_item. */
typedef struct conn_hints {
    uint64_t tokens[CONN_PREFETCH_ITEMS]; /* tc_prefetch's */
    size_t n;
} conn_hints;

static void conn_hint(tc_engine *e, conn_hints *h, const char *key,
                      size_t klen)
{
    uint64_t t = tc_prefetch(e, key, klen);
    if (h->n < CONN_PREFETCH_ITEMS)
        h->tokens[h->n++] = t;
}

/*
 * Parses the complete requests at rpos, up to n of them, without
 * consuming anything, and hints the engine of their keys so that the
 * table lines they need load while earlier ones execute (a batch of
 * lookups then waits for memory about once instead of once each).
 * Returns how many entries b holds; the last may be an MC_NEED_MORE or
 * MC_CLOSE that ends the batch.
 */
static size_t conn_parse_batch(conn *c, conn_parsed *b, size_t n)
{
    tc_engine *e = c->w->srv->engine;
    size_t item_max = c->w->srv->set.item_size_max;
    size_t off = c->rpos, i = 0;
    conn_hints hints;
    hints.n = 0;

    while (i < n && off < c->rlen) {
        conn_parsed *p = &b[i++];
        p->st = mc_parse_from(c->rbuf + off, c->rlen - off,
                              off == c->rpos ? c->rscan : 0, item_max,
                              &p->req, &p->used, &p->err, &p->swallow);
        if (p->st == MC_NEED_MORE) {
            /* No newline in what is there, if the line is incomplete. */
            if (off == c->rpos && p->used == 0)
                c->rscan = c->rlen - off;
            break;
        }
        if (p->st == MC_CLOSE)
            break;
        off += p->used;
        if (p->st == MC_ERROR) {
            if (p->swallow > 0)
                break; /* what follows is data to discard */
            continue;
        }
        const mc_request *r = &p->req;
        if (r->keys != NULL) {
            size_t kp = 0, klen;
            const char *key;
            for (int k = 0; k < CONN_PREFETCH_KEYS &&
                            mc_next_key(r, &kp, &key, &klen);
                 k++)
                conn_hint(e, &hints, key, klen);
        } else if (r->key != NULL) {
            conn_hint(e, &hints, r->key, r->klen);
        }
        if (r->cmd == MC_QUIT)
            break;
    }
    /* The table lines have been loading meanwhile: now the items. */
    for (size_t k = 0; k < hints.n; k++)
        tc_prefetch_item(e, hints.tokens[k]);
    return i;
}

static bool conn_may_go_on(conn *c)
{
    return !(c->closing || c->dead || c->pending > 0 || c->paused ||
             c->out.pending >= CONN_OUT_HIGH);
}

/* Whether req must wait for the journal: a change, while it is
 * congested (the connection pauses; reads before it went on). Before,
 * every request waited, stats too. */
static bool conn_must_wait(conn *c, const mc_request *req)
{
    if (!request_changes(req) || !tc_congested(c->w->srv->engine))
        return false;
    worker_pause(c->w, c);
    return true;
}

/* Executes the complete requests in the buffer while it may. A request
 * parsed ahead but not executed (the connection had to stop) is parsed
 * again when it goes on. */
static void conn_execute(conn *c)
{
    bool log = atomic_load_explicit(&c->w->srv->verbose,
                                    memory_order_relaxed) >= 2;
    conn_parsed batch[CONN_BATCH];

    while (conn_may_go_on(c)) {
        if (c->swallow > 0) {
            size_t avail = c->rlen - c->rpos;
            size_t n = avail < c->swallow ? avail : c->swallow;
            c->rpos += n;
            c->swallow -= n;
            if (c->swallow > 0)
                break;
            continue;
        }
        size_t n = conn_parse_batch(c, batch, CONN_BATCH);
        if (n == 0)
            break;
        bool stop = false;
        for (size_t i = 0; i < n && !stop; i++) {
            conn_parsed *p = &batch[i];
            if (!conn_may_go_on(c))
                return;
            if (p->st == MC_NEED_MORE) {
                c->rneed = p->used;
                return;
            }
            c->rneed = 0;
            if (p->st == MC_CLOSE) {
                srv_log(c->w->srv, 1, "<%d line too long: closing", c->fd);
                c->closing = true;
                return;
            }
            if (p->st != MC_ERROR && conn_must_wait(c, &p->req))
                return; /* parsed again when it goes on */
            if (log)
                conn_log_request(c, c->rbuf + c->rpos, p->used);
            STAT_ADD(c->w->st.cmd_total, 1);
            if (p->st == MC_ERROR) {
                request_error(c, &p->req, p->err);
                c->rpos += p->used;
                c->rscan = 0;
                c->swallow = p->swallow;
                stop = p->swallow > 0;
                continue;
            }
            if (!request_exec(c, &p->req))
                return; /* a multi-get waits for its replies to drain */
            c->rpos += p->used;
            c->rscan = 0;
        }
    }
}

/* Resets an emptied input buffer, giving back one grown for a big value. */
static void conn_input_reset(conn *c)
{
    if (c->rbuf != NULL && c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
        if (c->rcap > CONN_RBUF_KEEP) {
            char *b = realloc(c->rbuf, CONN_RBUF_MIN);
            if (b != NULL) {
                c->rbuf = b;
                c->rcap = CONN_RBUF_MIN;
            }
        }
    }
}

static void conn_process(conn *c)
{
    conn_execute(c);
    conn_input_reset(c);
}

/*
 * Makes room to read: at least CONN_READ_MIN free bytes, and room for the
 * whole of an incomplete request whose size is known. Returns false when
 * out of memory.
 */
static bool conn_room(conn *c)
{
    size_t unread = c->rlen - c->rpos;
    size_t need = unread + CONN_READ_MIN;

    if (c->rneed > need)
        need = c->rneed;
    if (c->rcap - c->rpos >= need && c->rcap - c->rlen >= CONN_READ_MIN)
        return true;
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, unread);
        c->rlen = unread;
        c->rpos = 0;
    }
    if (c->rcap >= need && c->rcap - c->rlen >= CONN_READ_MIN)
        return true;
    size_t cap = c->rcap * 2;
    while (cap < need || cap - c->rlen < CONN_READ_MIN)
        cap *= 2;
    char *b = realloc(c->rbuf, cap);
    if (b == NULL)
        return false;
    c->rbuf = b;
    c->rcap = cap;
    return true;
}

/*
 * Writes, and executes buffered requests, for as long as that makes
 * progress: a write that drains the queue below the high-water mark lets
 * requests already read (and waiting only for room) go on, though no new
 * read event will come for them.
 */
static void conn_pump(conn *c)
{
    if (c->dead)
        return;
    for (;;) {
        conn_process(c);
        bool was_full = c->out.pending >= CONN_OUT_HIGH;
        conn_flush(c);
        if (!was_full || c->dead || c->closing || c->pending > 0 ||
            c->out.pending >= CONN_OUT_HIGH || c->rpos == c->rlen)
            return;
    }
}

static void conn_read(conn *c)
{
    for (int i = 0; i < CONN_READS_PER_EVENT; i++) {
        if (!conn_room(c)) {
            srv_log(c->w->srv, 0, "<%d out of memory for a request", c->fd);
            conn_close(c);
            return;
        }
        size_t space = c->rcap - c->rlen;
        ssize_t n = read(c->fd, c->rbuf + c->rlen, space);
        if (n > 0) {
            c->rlen += (size_t)n;
            STAT_ADD(c->w->st.bytes_read, (uint64_t)n);
            conn_process(c);
            if ((size_t)n < space || c->pending > 0 || c->closing ||
                c->out.pending >= CONN_OUT_HIGH)
                break;
            continue;
        }
        if (n == 0) {
            /* The client is done sending: answer what it sent, then close. */
            c->closing = true;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            srv_log(c->w->srv, 1, "<%d read: %s", c->fd, strerror(errno));
            conn_close(c);
            return;
        }
        break;
    }
    conn_pump(c);
}

void conn_resume(conn *c)
{
    conn_pump(c);
}

static void conn_on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    conn *c = io->data;
    conn_read(c);
    conn_release(c);
}

static void conn_on_write(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    conn *c = io->data;
    conn_pump(c);
    conn_release(c);
}

void conn_shutdown(conn *c)
{
    if (!c->dead && out_writable(&c->out)) {
        ssize_t n = out_flush(&c->out, c->fd);
        (void)n; /* best effort: the server is going away */
    }
    conn_close(c);
    conn_release(c);
}
