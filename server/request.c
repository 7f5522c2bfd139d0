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
#include <time.h>

#define REQ_REF_MIN ((size_t)8 * 1024)
#define REQ_VERSION "1.6.18-tiercache-" TC_VERSION_STRING

/* OP_CONCAT is append/prepend: growing past the size limit is NOT_STORED
 * there, as in memcached. */
enum {
    OP_GET,
    OP_GETS,
    OP_STORE,
    OP_CONCAT,
    OP_DELETE,
    OP_ARITH,
    OP_TOUCH,
    OP_MG,
    OP_MS,
    OP_MD,
    OP_MA,
    OP_ME,
};

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

/* ---- meta commands ---- */

/*
 * A meta reply: the status (or a VA line), then the flags the request
 * asked to see, in its order, then the win/stale flags. The bytes that
 * may be needed are copied into the operation when the request is taken
 * (meta_prepare), so the reply can be composed once the engine answers.
 */

/* The head room of a meta reply line: the longest echoed key in base64
 * and every other flag. */
#define META_LINE_MAX 1024

static void meta_prepare(srv_op *op, const mc_request *req)
{
    const mc_meta *m = &req->meta;

    op->quiet = (m->seen & MC_MF('q')) != 0;
    op->value = (m->seen & MC_MF('v')) != 0;
    op->b64 = (m->seen & MC_MF('b')) != 0;
    /* T among them marks where the new TTL applies: a t before it shows
     * the old one, as memcached, which walks the flags in order. */
    op->nret = m->nret;
    memcpy(op->ret, m->ret, m->nret);
    op->ttl = m->ttl;
    op->olen = (uint8_t)m->olen;
    if (m->olen > 0)
        memcpy(op->opaque, m->opaque, m->olen);
    op->klen = (uint8_t)req->klen;
    memcpy(op->key, req->key, req->klen);
}

static char *put_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

static char *meta_key(char *p, bool b64, const void *key, size_t klen)
{
    p = PUT_LIT(p, " k");
    if (!b64) {
        memcpy(p, key, klen);
        return p + klen;
    }
    p += mc_base64_encode(key, klen, p);
    return PUT_LIT(p, " b");
}

static char *meta_ttl(char *p, int64_t exptime)
{
    p = PUT_LIT(p, " t");
    if (exptime == 0)
        return PUT_LIT(p, "-1");
    int64_t left = exptime - (int64_t)time(NULL);
    return put_i64(p, left > 0 ? left : 0);
}

/* The expiry a T token sets (a memcached expiry time), made absolute. */
static int64_t meta_ttl_abs(int64_t tok)
{
    if (tok <= 0)
        return tok == 0 ? 0 : 1;
    return tok <= 60 * 60 * 24 * 30 ? (int64_t)time(NULL) + tok : tok;
}

/*
 * The echoed flags. Only O and k when there is no item (v NULL, and no
 * CAS to say); c, f, s, t, h, l from the item and the result otherwise.
 */
static char *meta_echo(char *p, const srv_op *op, const tc_result *r,
                       const tc_view *v, bool item)
{
    bool ttl_set = false; /* past the T flag */
    for (unsigned i = 0; i < op->nret; i++) {
        switch (op->ret[i]) {
        case 'T':
            ttl_set = true;
            break;
        case 'O':
            *p++ = ' ';
            memcpy(p, op->opaque, op->olen);
            p += op->olen;
            break;
        case 'k':
            /* A hit says how its item was stored; the rest, the
             * request. */
            p = meta_key(p, v != NULL ? (r->meta & TC_META_KEY64) != 0
                                      : op->b64,
                         op->key, op->klen);
            break;
        case 'c':
            if (!item)
                break;
            p = PUT_LIT(p, " c");
            p = put_u64(p, v != NULL ? v->cas : r->cas);
            break;
        case 'f':
            if (v != NULL) {
                p = PUT_LIT(p, " f");
                p = put_u64(p, v->flags);
            }
            break;
        case 's':
            if (v != NULL) {
                p = PUT_LIT(p, " s");
                p = put_u64(p, v->value_len);
            }
            break;
        case 't':
            if (v != NULL)
                p = meta_ttl(p, ttl_set ? v->exptime : r->exptime);
            else if (item && op->kind == OP_MA)
                p = meta_ttl(p, ttl_set ? meta_ttl_abs(op->ttl)
                                        : r->exptime);
            break;
        case 'h':
            if (v != NULL) {
                p = PUT_LIT(p, " h");
                *p++ = (r->meta & TC_META_FETCHED) ? '1' : '0';
            }
            break;
        case 'l':
            if (v != NULL) {
                p = PUT_LIT(p, " l");
                p = put_u64(p, r->last_access);
            }
            break;
        default:
            break;
        }
    }
    return p;
}

/* A status line with the O and k flags: "EN", "NF", "NS", "EX", "HD". */
static void meta_status(out_queue *q, const srv_op *op, const char *code,
                        const tc_result *r, bool cas)
{
    char *p = out_reserve(q, META_LINE_MAX);
    if (p == NULL)
        return;
    memcpy(p, code, 2);
    p = meta_echo(p + 2, op, r, NULL, cas);
    p = PUT_LIT(p, "\r\n");
    q->len = (size_t)(p - q->buf);
}

static void meta_error(out_queue *q, const char *text)
{
    out_put(q, text, strlen(text));
}

static void on_mg(void *arg, const tc_result *r)
{
    srv_op *op = arg;
    if (!op_live(op))
        return;
    out_queue *q = &op->c->out;
    size_t mark = out_mark(q);
    if (r->status == TC_OK) {
        const tc_view *v = r->view;
        size_t vlen = op->value ? v->value_len + 2 : 0;
        char *p = out_reserve(q, META_LINE_MAX + vlen);
        if (p != NULL) {
            if (op->value) {
                p = PUT_LIT(p, "VA ");
                p = put_u64(p, v->value_len);
            } else {
                p = PUT_LIT(p, "HD");
            }
            p = meta_echo(p, op, r, v, true);
            /* As memcached: Z before X before W. */
            if (r->meta & TC_META_WON_BEFORE)
                p = PUT_LIT(p, " Z");
            if (r->meta & TC_META_STALE)
                p = PUT_LIT(p, " X");
            if (r->meta & TC_META_WIN)
                p = PUT_LIT(p, " W");
            p = PUT_LIT(p, "\r\n");
            if (op->value) {
                memcpy(p, v->value, v->value_len);
                p += v->value_len;
                p = PUT_LIT(p, "\r\n");
            }
            q->len = (size_t)(p - q->buf);
        }
    } else if (r->status == TC_ENOTFOUND) {
        if (!op->quiet)
            meta_status(q, op, "EN", r, false);
    } else {
        meta_error(q, simple_text(OP_GET, r->status));
    }
    op_done(op, mark);
}

static void on_me(void *arg, const tc_result *r)
{
    srv_op *op = arg;
    if (!op_live(op))
        return;
    out_queue *q = &op->c->out;
    size_t mark = out_mark(q);
    if (r->status == TC_OK) {
        const tc_view *v = r->view;
        char *p = out_reserve(q, META_LINE_MAX);
        if (p != NULL) {
            /* memcached 1.6.18's fields: exp is now - expiry, la the
             * seconds since the last access; size is the item's bytes in
             * memory here (no slab class: "cls" is left out). */
            p = PUT_LIT(p, "ME ");
            if (r->meta & TC_META_KEY64) {
                p += mc_base64_encode(v->key, v->key_len, p);
            } else {
                memcpy(p, v->key, v->key_len);
                p += v->key_len;
            }
            p = PUT_LIT(p, " exp=");
            p = put_i64(p, v->exptime == 0
                               ? -1
                               : (int64_t)time(NULL) - v->exptime);
            p = PUT_LIT(p, " la=");
            p = put_u64(p, r->last_access);
            p = PUT_LIT(p, " cas=");
            p = put_u64(p, v->cas);
            p = (r->meta & TC_META_FETCHED) ? PUT_LIT(p, " fetch=yes")
                                            : PUT_LIT(p, " fetch=no");
            p = PUT_LIT(p, " size=");
            p = put_u64(p, r->number);
            p = PUT_LIT(p, "\r\n");
            q->len = (size_t)(p - q->buf);
        }
    } else if (r->status == TC_ENOTFOUND) {
        out_put(q, "EN\r\n", 4);
    } else {
        meta_error(q, simple_text(OP_GET, r->status));
    }
    op_done(op, mark);
}

/* ms, md, ma. */
static void on_mchange(void *arg, const tc_result *r)
{
    srv_op *op = arg;
    if (!op_live(op))
        return;
    out_queue *q = &op->c->out;
    size_t mark = out_mark(q);
    switch (r->status) {
    case TC_OK:
        /* q hides a success, but not the creation of a counter. */
        if (op->quiet && !(op->kind == OP_MA &&
                           (r->meta & TC_META_CREATED)))
            break;
        if (op->kind == OP_MA && op->value) {
            char *p = out_reserve(q, META_LINE_MAX);
            if (p == NULL)
                break;
            char num[24];
            size_t n = (size_t)(put_u64(num, r->number) - num);
            p = PUT_LIT(p, "VA ");
            p = put_u64(p, n);
            p = meta_echo(p, op, r, NULL, true);
            p = PUT_LIT(p, "\r\n");
            memcpy(p, num, n);
            p = PUT_LIT(p + n, "\r\n");
            q->len = (size_t)(p - q->buf);
        } else {
            meta_status(q, op, "HD", r, op->kind != OP_MD);
        }
        break;
    case TC_ENOTFOUND:
        meta_status(q, op, "NF", r, op->kind == OP_MS);
        break;
    case TC_ENOTSTORED:
        meta_status(q, op, "NS", r, op->kind == OP_MS);
        break;
    case TC_EEXISTS:
        meta_status(q, op, "EX", r, op->kind == OP_MS);
        break;
    case TC_E2BIG:
        if (op->noreply) /* an append or prepend past the limit */
            meta_status(q, op, "NS", r, true);
        else
            meta_error(q, store_text(r->status));
        break;
    default:
        meta_error(q, op->kind == OP_MS ? store_text(r->status)
                                        : simple_text(OP_ARITH, r->status));
        break;
    }
    op_done(op, mark);
}

static tc_store_mode meta_store_mode(char mode)
{
    switch (mode) {
    case 'E':
        return TC_ADD;
    case 'A':
        return TC_APPEND;
    case 'P':
        return TC_PREPEND;
    case 'R':
        return TC_REPLACE;
    default:
        return TC_SET;
    }
}

static void exec_meta(conn *c, const mc_request *req)
{
    static const uint8_t kinds[] = {
        [MC_MG] = OP_MG, [MC_MS] = OP_MS, [MC_MD] = OP_MD,
        [MC_MA] = OP_MA, [MC_ME] = OP_ME,
    };
    const mc_meta *m = &req->meta;
    tc_ctx *ctx = c->w->ctx;
    srv_op *op = op_take(c, kinds[req->cmd], false);
    if (op == NULL) {
        c->out.oom = true;
        return;
    }
    meta_prepare(op, req);
    tc_meta_opts o = {0};
    if (m->seen & MC_MF('T')) {
        o.set |= TC_MO_TTL;
        o.ttl = m->ttl;
    }
    if (m->seen & MC_MF('N')) {
        o.set |= TC_MO_VIVIFY;
        o.vivify_ttl = m->vivify;
        o.initial = m->initial;
    }
    if (m->seen & MC_MF('R')) {
        o.set |= TC_MO_RECACHE;
        o.recache_ttl = m->recache;
    }
    if (m->seen & MC_MF('C')) {
        o.set |= TC_MO_CAS;
        o.cas = m->cas;
    }
    if (m->seen & MC_MF('I'))
        o.set |= TC_MO_INVALIDATE;
    if (m->seen & MC_MF('b'))
        o.set |= TC_MO_KEY64;
    if ((m->seen & MC_MF('u')) || req->cmd == MC_ME)
        o.set |= TC_MO_NO_BUMP;
    tc_status st;
    switch (req->cmd) {
    case MC_MS: {
        tc_store_mode mode = meta_store_mode(m->mode);
        /* Growing past the size limit is NS for an append or prepend. */
        op->noreply = mode == TC_APPEND || mode == TC_PREPEND;
        /* memcached's ms: no T means no expiry; I is for CAS stores. */
        if (!(o.set & TC_MO_CAS))
            o.set &= ~TC_MO_INVALIDATE;
        o.set &= ~TC_MO_TTL;
        st = tc_ctx_mstore(ctx, mode, req->key, req->klen, req->data,
                           req->vlen, m->client_flags,
                           (m->seen & MC_MF('T')) ? m->ttl : 0, &o,
                           on_mchange, op);
        break;
    }
    case MC_MD:
        st = tc_ctx_mdelete(ctx, req->key, req->klen, &o, on_mchange, op);
        break;
    case MC_MA:
        st = tc_ctx_marith(ctx, req->key, req->klen,
                           m->mode == 'D' || m->mode == '-', m->delta, &o,
                           on_mchange, op);
        break;
    case MC_ME:
        o.set = TC_MO_NO_BUMP;
        st = tc_ctx_mget(ctx, req->key, req->klen, &o, on_me, op);
        break;
    default:
        st = tc_ctx_mget(ctx, req->key, req->klen, &o, on_mg, op);
        break;
    }
    op_after(op, st);
}

/* ---- requests ---- */

static void reply_line(conn *c, const char *s)
{
    out_reply(&c->out, s, strlen(s));
}

static void exec_call(conn *c, const mc_request *req);

void request_error(conn *c, const mc_request *req, mc_error err)
{
    if (err == MC_E_TOO_LARGE && (req->cmd == MC_SET || req->cmd == MC_MS)) {
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

bool request_changes(const mc_request *req)
{
    switch (req->cmd) {
    case MC_GET:
    case MC_GETS:
    case MC_STATS:
    case MC_VERSION:
    case MC_VERBOSITY:
    case MC_QUIT:
    case MC_MN:
    case MC_ME:
        return false;
    case MC_MG:
        return (req->meta.seen & (MC_MF('T') | MC_MF('N') | MC_MF('R'))) != 0;
    default:
        return true;
    }
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
    case MC_MG:
    case MC_MS:
    case MC_MD:
    case MC_MA:
    case MC_ME:
        exec_meta(c, req);
        return true;
    case MC_MN:
        reply_line(c, "MN\r\n");
        return true;
    }
    return true;
}
