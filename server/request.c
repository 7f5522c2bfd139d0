/*
 * request.c - executing parsed requests (see request.h).
 *
 * The get path is the hot one: the engine calls on_get() with the item
 * while its shard is locked, and on_get() writes "VALUE key flags bytes
 * [cas]\r\n<data>\r\n" straight into the reply buffer: no allocation, no
 * reference count, one copy. Values of CONN_REF_MIN bytes or more are not
 * copied but sent from the item, which the queue holds a reference to.
 */
#include "request.h"

#include <stdlib.h>
#include <string.h>

#define REQ_REF_MIN ((size_t)8 * 1024)
#define REQ_VERSION "1.6.18-tiercache-" TC_VERSION_STRING

/* OP_CONCAT is append/prepend: growing past the size limit is NOT_STORED
 * there, as in memcached. */
enum { OP_GET, OP_GETS, OP_STORE, OP_CONCAT, OP_DELETE, OP_ARITH, OP_TOUCH };

/* ---- operation records ---- */

static srv_op *op_take(conn *c, int kind, bool noreply)
{
    worker *w = c->w;
    srv_op *op = w->free_ops;
    if (op != NULL)
        w->free_ops = op->next;
    else if ((op = malloc(sizeof(*op))) == NULL)
        return NULL;
    op->c = c;
    op->kind = (uint8_t)kind;
    op->noreply = noreply;
    op->in_call = true;
    return op;
}

static void op_put(worker *w, srv_op *op)
{
    op->next = w->free_ops;
    w->free_ops = op;
}

void request_free_ops(worker *w)
{
    while (w->free_ops != NULL) {
        srv_op *op = w->free_ops;
        w->free_ops = op->next;
        free(op);
    }
}

/* After the engine call returned st: a pending call keeps its record and
 * gets a placeholder; a finished one gives the record back. */
static void op_after(srv_op *op, tc_status st)
{
    conn *c = op->c;
    op->in_call = false;
    if (st == TC_PENDING) {
        op->seq = out_wait(&c->out);
        c->pending++;
    } else {
        op_put(c->w, op);
    }
}

/* At the start of a callback: false if the reply is not wanted any more
 * (the connection closed while the call was pending). */
static bool op_live(srv_op *op)
{
    conn *c = op->c;
    if (!c->dead)
        return true;
    c->pending--;
    op_put(c->w, op);
    conn_release(c);
    return false;
}

/* At the end of a callback: the bytes since mark are its reply. */
static void op_done(srv_op *op, size_t mark)
{
    conn *c = op->c;
    if (op->in_call) {
        out_commit(&c->out, mark);
        return;
    }
    out_fill(&c->out, op->seq, mark);
    c->pending--;
    op_put(c->w, op);
    conn_ready(c);
}

/* ---- composing ---- */

static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

#define PUT_LIT(p, lit) (memcpy((p), lit, sizeof(lit) - 1), (p) + sizeof(lit) - 1)

static void on_get(void *arg, const tc_result *r)
{
    srv_op *op = arg;
    if (!op_live(op))
        return;
    out_queue *q = &op->c->out;
    size_t mark = out_mark(q);
    if (r->status == TC_OK) {
        const tc_view *v = r->view;
        /* Send big values from the item itself, when the reply is composed
         * at the end of the queue (a placeholder holds bytes only). */
        bool by_ref = op->in_call && v->value_len >= REQ_REF_MIN;
        size_t head = 6 + v->key_len + 1 + 10 + 1 + 20 + 1 + 20 + 2;
        char *p = out_reserve(q, head + (by_ref ? 0 : v->value_len + 2));
        if (p != NULL) {
            p = PUT_LIT(p, "VALUE ");
            memcpy(p, v->key, v->key_len);
            p += v->key_len;
            *p++ = ' ';
            p = put_u64(p, v->flags);
            *p++ = ' ';
            p = put_u64(p, v->value_len);
            if (op->kind == OP_GETS) {
                *p++ = ' ';
                p = put_u64(p, v->cas);
            }
            p = PUT_LIT(p, "\r\n");
            if (by_ref) {
                q->len = (size_t)(p - q->buf);
                out_commit(q, mark);
                out_ref_value(q, v->item);
                mark = out_mark(q);
                out_put(q, "\r\n", 2);
            } else {
                memcpy(p, v->value, v->value_len);
                p += v->value_len;
                p = PUT_LIT(p, "\r\n");
                q->len = (size_t)(p - q->buf);
            }
        }
    }
    /* A miss, or an error on one key of a multi-get, adds nothing: the
     * client sees the key as absent, as memcached does. */
    op_done(op, mark);
}

/* A write the journal could not make durable (sync durability): the
 * value is in memory, but the promise of an acknowledged write is not
 * met, so the client is told. */
static const char *disk_text(tc_status st)
{
    return st == TC_ENOSPC ? "SERVER_ERROR no space left on the data disk\r\n"
                           : "SERVER_ERROR data disk write failed\r\n";
}

static const char *store_text(tc_status st)
{
    switch (st) {
    case TC_OK:
        return "STORED\r\n";
    case TC_ENOTSTORED:
        return "NOT_STORED\r\n";
    case TC_EEXISTS:
        return "EXISTS\r\n";
    case TC_ENOTFOUND:
        return "NOT_FOUND\r\n";
    case TC_E2BIG:
        return "SERVER_ERROR object too large for cache\r\n";
    case TC_ENOMEM:
        return "SERVER_ERROR out of memory storing object\r\n";
    case TC_EKEY:
        return "CLIENT_ERROR bad command line format\r\n";
    case TC_EIO:
    case TC_ENOSPC:
        return disk_text(st);
    default:
        return "SERVER_ERROR unexpected engine error\r\n";
    }
}

static const char *simple_text(int kind, tc_status st)
{
    if (st == TC_ENOTFOUND)
        return "NOT_FOUND\r\n";
    if (st == TC_ENONNUMERIC)
        return "CLIENT_ERROR cannot increment or decrement non-numeric "
               "value\r\n";
    if (st == TC_ENOMEM)
        return "SERVER_ERROR out of memory\r\n";
    if (st == TC_EKEY)
        return "CLIENT_ERROR bad command line format\r\n";
    if (st == TC_EIO || st == TC_ENOSPC)
        return disk_text(st);
    if (st != TC_OK)
        return "SERVER_ERROR unexpected engine error\r\n";
    switch (kind) {
    case OP_DELETE:
        return "DELETED\r\n";
    case OP_TOUCH:
        return "TOUCHED\r\n";
    default:
        return store_text(st);
    }
}

/* Completion of every call but get: one line, or nothing for noreply. */
static void on_simple(void *arg, const tc_result *r)
{
    srv_op *op = arg;
    if (!op_live(op))
        return;
    out_queue *q = &op->c->out;
    size_t mark = out_mark(q);
    if (!op->noreply) {
        if (op->kind == OP_ARITH && r->status == TC_OK) {
            char *p = out_reserve(q, 22);
            if (p != NULL) {
                p = put_u64(p, r->number);
                p = PUT_LIT(p, "\r\n");
                q->len = (size_t)(p - q->buf);
            }
        } else {
            const char *t;
            if (op->kind == OP_CONCAT && r->status == TC_E2BIG)
                t = "NOT_STORED\r\n";
            else if (op->kind == OP_STORE || op->kind == OP_CONCAT)
                t = store_text(r->status);
            else
                t = simple_text(op->kind, r->status);
            out_put(q, t, strlen(t));
        }
    }
    op_done(op, mark);
}

/* ---- requests ---- */

static void reply_line(conn *c, const char *s)
{
    out_reply(&c->out, s, strlen(s));
}

static void exec_call(conn *c, const mc_request *req);

void request_error(conn *c, const mc_request *req, mc_error err)
{
    if (err == MC_E_TOO_LARGE && req->cmd == MC_SET) {
        /* A set that cannot be stored must not leave the old value to be
         * read back as if it were the new one: memcached deletes it. */
        mc_request del = *req;
        del.cmd = MC_DELETE;
        del.noreply = true;
        exec_call(c, &del);
    }
    if (req->noreply)
        return;
    const char *t = mc_error_text(err);
    size_t mark = out_mark(&c->out);
    if (out_put(&c->out, t, strlen(t)) && out_put(&c->out, "\r\n", 2))
        out_commit(&c->out, mark);
}

/*
 * The keys of a get, one engine call each, from where a previous call left
 * off (c->get_next). A get of many big values would build all its replies
 * in memory before any is written: it stops when the queue passes the
 * high-water mark and resumes when it drained.
 */
static bool exec_get(conn *c, const mc_request *req)
{
    tc_ctx *ctx = c->w->ctx;
    bool touch = req->cmd == MC_GAT || req->cmd == MC_GATS;
    int kind = req->cmd == MC_GETS || req->cmd == MC_GATS ? OP_GETS : OP_GET;
    size_t pos = c->get_next;
    const char *key;
    size_t klen;

    while (mc_next_key(req, &pos, &key, &klen)) {
        srv_op *op = op_take(c, kind, false);
        if (op == NULL) {
            c->out.oom = true;
            return true;
        }
        tc_status st = touch ? tc_ctx_gat(ctx, key, klen, req->exptime,
                                          on_get, op)
                             : tc_ctx_get(ctx, key, klen, on_get, op);
        op_after(op, st);
        /* Keys that completed later count too: at most CONN_GET_PENDING
         * replies of unknown size are in flight per connection. */
        if ((c->out.pending >= CONN_OUT_HIGH ||
             c->pending >= CONN_GET_PENDING) &&
            pos < req->keys_len) {
            c->get_next = pos;
            return false;
        }
    }
    c->get_next = 0;
    reply_line(c, "END\r\n");
    return true;
}

static tc_store_mode store_mode(mc_cmd cmd)
{
    switch (cmd) {
    case MC_ADD:
        return TC_ADD;
    case MC_REPLACE:
        return TC_REPLACE;
    case MC_APPEND:
        return TC_APPEND;
    case MC_PREPEND:
        return TC_PREPEND;
    case MC_CAS:
        return TC_CAS;
    default:
        return TC_SET;
    }
}

static void exec_call(conn *c, const mc_request *req)
{
    tc_ctx *ctx = c->w->ctx;
    int kind;
    switch (req->cmd) {
    case MC_INCR:
    case MC_DECR:
        kind = OP_ARITH;
        break;
    case MC_DELETE:
        kind = OP_DELETE;
        break;
    case MC_TOUCH:
        kind = OP_TOUCH;
        break;
    case MC_APPEND:
    case MC_PREPEND:
        kind = OP_CONCAT;
        break;
    default:
        kind = OP_STORE;
        break;
    }
    srv_op *op = op_take(c, kind, req->noreply);
    if (op == NULL) {
        c->out.oom = true;
        return;
    }
    tc_status st;
    switch (req->cmd) {
    case MC_INCR:
    case MC_DECR:
        st = tc_ctx_arith(ctx, req->key, req->klen, req->cmd == MC_DECR,
                          req->delta, on_simple, op);
        break;
    case MC_DELETE:
        st = tc_ctx_delete(ctx, req->key, req->klen, on_simple, op);
        break;
    case MC_TOUCH:
        st = tc_ctx_touch(ctx, req->key, req->klen, req->exptime, on_simple,
                          op);
        break;
    default:
        st = tc_ctx_store(ctx, store_mode(req->cmd), req->key, req->klen,
                          req->data, req->vlen, req->flags, req->exptime,
                          req->cas, on_simple, op);
        break;
    }
    op_after(op, st);
}

bool request_exec(conn *c, const mc_request *req)
{
    server *srv = c->w->srv;
    switch (req->cmd) {
    case MC_GET:
    case MC_GETS:
    case MC_GAT:
    case MC_GATS:
        return exec_get(c, req);
    case MC_SET:
    case MC_ADD:
    case MC_REPLACE:
    case MC_APPEND:
    case MC_PREPEND:
    case MC_CAS:
    case MC_INCR:
    case MC_DECR:
    case MC_DELETE:
    case MC_TOUCH:
        exec_call(c, req);
        return true;
    case MC_FLUSH_ALL:
        tc_flush(srv->engine, req->exptime);
        STAT_ADD(c->w->st.cmd_flush, 1);
        if (!req->noreply)
            reply_line(c, "OK\r\n");
        return true;
    case MC_STATS:
        stats_reply(c, req);
        return true;
    case MC_VERSION:
        reply_line(c, "VERSION " REQ_VERSION "\r\n");
        return true;
    case MC_VERBOSITY:
        atomic_store(&srv->verbose, (int)req->level);
        if (!req->noreply)
            reply_line(c, "OK\r\n");
        return true;
    case MC_QUIT:
        c->closing = true;
        return true;
    }
    return true;
}
