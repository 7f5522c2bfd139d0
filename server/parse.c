/*
 * parse.c - the memcached text protocol parser (contract in parse.h).
 *
 * Replies to bad input follow memcached 1.6.18: an unknown command or a
 * wrong number of arguments is "ERROR"; a malformed argument or key is a
 * CLIENT_ERROR; a value over the item size limit is a SERVER_ERROR whose
 * data block is swallowed. Unlike memcached, keys holding control
 * characters are refused.
 */
#include "parse.h"

#include <stddef.h>
#include <string.h>

#define MC_MAX_TOKENS 8

typedef struct mc_tok {
    const char *p;
    size_t n;
} mc_tok;

const char *mc_error_text(mc_error e)
{
    switch (e) {
#define MC_ERROR_TEXT_(name, text) \
    case MC_E_##name:              \
        return text;
        MC_ERRORS(MC_ERROR_TEXT_)
#undef MC_ERROR_TEXT_
    }
    return "ERROR";
}

/* Splits [p, end) at spaces into at most max tokens; returns how many
 * there are, or max + 1 when there are more. */
static size_t mc_tokenize(const char *p, const char *end, mc_tok *t,
                          size_t max)
{
    size_t n = 0;
    for (;;) {
        while (p < end && *p == ' ')
            p++;
        if (p == end)
            return n;
        if (n == max)
            return max + 1;
        t[n].p = p;
        while (p < end && *p != ' ')
            p++;
        t[n].n = (size_t)(p - t[n].p);
        n++;
    }
}

static bool tok_is(const mc_tok *t, const char *s, size_t n)
{
    return t->n == n && memcmp(t->p, s, n) == 0;
}

#define TOK_IS(t, lit) tok_is((t), lit, sizeof(lit) - 1)

static bool mc_key_ok(const char *k, size_t n)
{
    if (n == 0 || n > MC_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Decimal digits with an optional '+', as strtoull takes them, within
 * 64 bits. */
static bool mc_u64(const mc_tok *t, uint64_t *out)
{
    size_t i = 0;
    uint64_t v = 0;
    if (t->n > 0 && t->p[0] == '+')
        i++;
    if (i == t->n)
        return false;
    for (; i < t->n; i++) {
        unsigned d = (unsigned)(t->p[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool mc_u32(const mc_tok *t, uint32_t *out)
{
    uint64_t v;
    if (!mc_u64(t, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* A signed decimal that fits 32 bits, as memcached's safe_strtol. */
static bool mc_i32(const mc_tok *t, int64_t *out)
{
    uint64_t v;
    if (t->n > 0 && t->p[0] == '-') {
        mc_tok rest = {t->p + 1, t->n - 1};
        if (rest.n == 0 || rest.p[0] == '+' || !mc_u64(&rest, &v) ||
            v > (uint64_t)INT32_MAX + 1)
            return false;
        *out = -(int64_t)v;
        return true;
    }
    if (!mc_u64(t, &v) || v > INT32_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

static bool mc_is_noreply(const mc_tok *t)
{
    return TOK_IS(t, "noreply");
}

/* Validates every key of a get-family key list. */
static bool mc_keys_ok(const char *p, const char *end)
{
    bool any = false;
    for (;;) {
        while (p < end && *p == ' ')
            p++;
        if (p == end)
            return any;
        const char *k = p;
        while (p < end && *p != ' ')
            p++;
        if (!mc_key_ok(k, (size_t)(p - k)))
            return false;
        any = true;
    }
}

bool mc_next_key(const mc_request *req, size_t *pos, const char **key,
                 size_t *klen)
{
    const char *p = req->keys + *pos;
    const char *end = req->keys + req->keys_len;
    while (p < end && *p == ' ')
        p++;
    if (p == end)
        return false;
    *key = p;
    while (p < end && *p != ' ')
        p++;
    *klen = (size_t)(p - *key);
    *pos = (size_t)(p - req->keys);
    return true;
}

static bool mc_is_keylist_cmd(const char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && buf[i] == ' ')
        i++;
    buf += i;
    len -= i;
    return (len >= 4 && (memcmp(buf, "get ", 4) == 0 ||
                         memcmp(buf, "gat ", 4) == 0)) ||
           (len >= 5 && (memcmp(buf, "gets ", 5) == 0 ||
                         memcmp(buf, "gats ", 5) == 0));
}

typedef struct mc_line {
    const char *end; /* end of the line's content (before \r\n) */
    size_t len;      /* bytes up to and including the \n */
    mc_tok t[MC_MAX_TOKENS];
    size_t n;
} mc_line;

static mc_status mc_storage(const mc_line *l, const char *buf, size_t len,
                            size_t item_max, mc_request *req, size_t *used,
                            mc_error *err, size_t *swallow)
{
    bool is_cas = req->cmd == MC_CAS;
    size_t want = is_cas ? 6 : 5;
    int64_t vlen;

    if (l->n != want && l->n != want + 1)
        return *err = MC_E_UNKNOWN, *used = l->len, MC_ERROR;
    req->noreply = l->n == want + 1 && mc_is_noreply(&l->t[want]);
    req->key = l->t[1].p;
    req->klen = l->t[1].n;
    if (!mc_key_ok(req->key, req->klen) || !mc_u32(&l->t[2], &req->flags) ||
        !mc_i32(&l->t[3], &req->exptime) || !mc_i32(&l->t[4], &vlen) ||
        vlen < 0 || (is_cas && !mc_u64(&l->t[5], &req->cas)))
        return *err = MC_E_FORMAT, *used = l->len, MC_ERROR;
    if ((uint64_t)vlen > item_max) {
        *err = MC_E_TOO_LARGE;
        *used = l->len;
        *swallow = (size_t)vlen + 2;
        return MC_ERROR;
    }
    req->vlen = (uint32_t)vlen;
    size_t need = l->len + (size_t)vlen + 2;
    if (len < need)
        return *used = need, MC_NEED_MORE;
    req->data = buf + l->len;
    *used = need;
    if (req->data[vlen] != '\r' || req->data[vlen + 1] != '\n')
        return *err = MC_E_CHUNK, MC_ERROR;
    return MC_OK;
}

static mc_status mc_retrieval(const mc_line *l, const char *buf,
                              mc_request *req, size_t *used, mc_error *err)
{
    size_t first = 1;
    (void)buf;
    if (req->cmd == MC_GAT || req->cmd == MC_GATS) {
        if (l->n < 2)
            return *err = MC_E_UNKNOWN, *used = l->len, MC_ERROR;
        if (!mc_i32(&l->t[1], &req->exptime))
            return *err = MC_E_EXPTIME, *used = l->len, MC_ERROR;
        first = 2;
    } else if (l->n < 2) {
        return *err = MC_E_UNKNOWN, *used = l->len, MC_ERROR;
    }
    if (first == l->n) {
        /* "gat <exptime>" with no key: memcached answers END. */
        req->keys = l->end;
        req->keys_len = 0;
        *used = l->len;
        return MC_OK;
    }
    req->keys = l->t[first].p;
    req->keys_len = (size_t)(l->end - req->keys);
    if (!mc_keys_ok(req->keys, l->end))
        return *err = MC_E_FORMAT, *used = l->len, MC_ERROR;
    *used = l->len;
    return MC_OK;
}

/* incr, decr, touch: <cmd> <key> <number> [noreply] */
static mc_status mc_keyed_number(const mc_line *l, mc_request *req,
                                 size_t *used, mc_error *err)
{
    *used = l->len;
    if (l->n != 3 && l->n != 4)
        return *err = MC_E_UNKNOWN, MC_ERROR;
    req->noreply = l->n == 4 && mc_is_noreply(&l->t[3]);
    req->key = l->t[1].p;
    req->klen = l->t[1].n;
    if (!mc_key_ok(req->key, req->klen))
        return *err = MC_E_FORMAT, MC_ERROR;
    if (req->cmd == MC_TOUCH) {
        if (!mc_i32(&l->t[2], &req->exptime))
            return *err = MC_E_EXPTIME, MC_ERROR;
    } else if (!mc_u64(&l->t[2], &req->delta)) {
        return *err = MC_E_DELTA, MC_ERROR;
    }
    return MC_OK;
}

static mc_status mc_delete(const mc_line *l, mc_request *req, size_t *used,
                           mc_error *err)
{
    *used = l->len;
    if (l->n < 2 || l->n > 4)
        return *err = MC_E_UNKNOWN, MC_ERROR;
    req->key = l->t[1].p;
    req->klen = l->t[1].n;
    if (!mc_key_ok(req->key, req->klen))
        return *err = MC_E_FORMAT, MC_ERROR;
    /* "delete <key> [0] [noreply]": a legacy hold time of 0 is accepted. */
    size_t i = 2;
    if (i < l->n && TOK_IS(&l->t[i], "0"))
        i++;
    if (i < l->n && mc_is_noreply(&l->t[i])) {
        req->noreply = true;
        i++;
    }
    if (i != l->n)
        return *err = MC_E_DELETE_USAGE, MC_ERROR;
    return MC_OK;
}

static mc_status mc_flush_all(const mc_line *l, mc_request *req,
                              size_t *used, mc_error *err)
{
    *used = l->len;
    req->exptime = 0;
    if (l->n > 3)
        return *err = MC_E_UNKNOWN, MC_ERROR;
    size_t i = 1;
    if (i < l->n && !mc_is_noreply(&l->t[i])) {
        if (!mc_i32(&l->t[i], &req->exptime))
            return *err = MC_E_EXPTIME, MC_ERROR;
        i++;
    }
    if (i < l->n) {
        if (!mc_is_noreply(&l->t[i]))
            return *err = MC_E_FORMAT, MC_ERROR;
        req->noreply = true;
        i++;
    }
    return i == l->n ? MC_OK : (*err = MC_E_FORMAT, MC_ERROR);
}

/* ---- meta commands ---- */

/* memcached counts the command, its arguments, its flags and a last empty
 * token; more than this many is an error. */
#define MC_META_TOKENS_MAX 20
#define MC_META_OPAQUE_MAX 32

static const char mc_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t mc_base64_encode(const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = mc_b64[v >> 18];
        out[o++] = mc_b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? mc_b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? mc_b64[v & 63] : '=';
    }
    return o;
}

static int mc_b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes padded base64; 0 when it is not (or decodes to nothing). */
static size_t mc_base64_decode(const char *in, size_t n, char *out)
{
    size_t o = 0;
    if (n == 0 || n % 4 != 0)
        return 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        size_t pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = in[i + (size_t)k];
            if (c == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad > 0 || (v[k] = mc_b64_val(c)) < 0)
                return 0;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
                     (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (char)(w >> 16);
        if (pad < 2)
            out[o++] = (char)(w >> 8);
        if (pad < 1)
            out[o++] = (char)w;
    }
    return o;
}

/*
 * The flag tokens t[0..n) of a meta command, as memcached's preparse
 * takes them: every known flag once, numeric tokens checked. On error
 * *err is memcached's text for it (md and ma then say one text for all).
 */
static bool mc_meta_flags(const mc_tok *t, size_t n, mc_request *req,
                          mc_error *err)
{
    mc_meta *m = &req->meta;
    bool bad = false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i].p[0];
        mc_tok arg = {t[i].p + 1, t[i].n - 1};
        uint64_t bit;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            bit = MC_MF(c);
        else if ((unsigned char)c >= 127)
            return *err = MC_E_META_DUP, false;
        else
            return *err = MC_E_META_INVALID, false;
        if (m->seen & bit)
            return *err = MC_E_META_DUP, false;
        m->seen |= bit;
        switch (c) {
        case 'b': {
            size_t kn = mc_base64_decode(req->key, req->klen, m->kbuf);
            if (kn == 0) {
                *err = MC_E_META_DECODE;
                bad = true;
            }
            req->key = m->kbuf;
            req->klen = kn;
            break;
        }
        case 'N':
            if (!mc_i32(&arg, &m->vivify))
                *err = MC_E_META_TOKEN, bad = true;
            break;
        case 'T':
            if (!mc_i32(&arg, &m->ttl))
                *err = MC_E_META_TOKEN, bad = true;
            break;
        case 'R':
            if (!mc_i32(&arg, &m->recache))
                *err = MC_E_META_TOKEN, bad = true;
            break;
        case 'C':
            if (!mc_u64(&arg, &m->cas))
                *err = MC_E_META_TOKEN, bad = true;
            break;
        case 'F':
            if (!mc_u32(&arg, &m->client_flags))
                *err = MC_E_FORMAT, bad = true;
            break;
        case 'M':
            if (t[i].n != 2)
                *err = MC_E_META_MODE_LEN, bad = true;
            else
                m->mode = t[i].p[1];
            break;
        case 'J':
            if (!mc_u64(&arg, &m->initial))
                *err = MC_E_META_INITIAL, bad = true;
            break;
        case 'D':
            if (!mc_u64(&arg, &m->delta))
                *err = MC_E_META_DELTA, bad = true;
            break;
        case 'O':
            m->opaque = t[i].p;
            m->olen = t[i].n;
            break;
        case 'l': case 'P': case 'L': case 'k': case 's': case 't':
        case 'c': case 'f': case 'v': case 'h': case 'u': case 'q':
        case 'I':
            break;
        default:
            return *err = MC_E_META_INVALID, false;
        }
        switch (c) {
        case 'k': case 'O': case 'c': case 'f': case 'h': case 'l':
        case 's': case 't': case 'T':
            if (m->nret < MC_META_RET_MAX)
                m->ret[m->nret++] = c;
            break;
        default:
            break;
        }
    }
    return !bad;
}

/* mg, ms, md, ma, me: <cmd> <key> [<datalen>] <flag>* */
static mc_status mc_meta_cmd(const char *buf, size_t len, const mc_line *l0,
                         size_t item_max, mc_request *req, size_t *used,
                         mc_error *err, size_t *swallow)
{
    mc_tok t[MC_META_TOKENS_MAX + 2];
    mc_meta *m = &req->meta;
    size_t n = mc_tokenize(buf, l0->end, t, MC_META_TOKENS_MAX + 1);
    bool is_ms = req->cmd == MC_MS;
    size_t first = is_ms ? 3 : 2;
    int64_t vlen = 0;

    *used = l0->len;
    memset(m, 0, offsetof(mc_meta, kbuf));
    m->delta = 1;
    if (req->cmd == MC_ME) {
        /* me <key> [b]: the one flag it reads is b. */
        if (n < 2 || n > MC_META_TOKENS_MAX || t[1].n > MC_KEY_MAX)
            return *err = MC_E_FORMAT, MC_ERROR;
        req->key = t[1].p;
        req->klen = t[1].n;
        if (n > 2 && TOK_IS(&t[2], "b")) {
            req->klen = mc_base64_decode(t[1].p, t[1].n, m->kbuf);
            req->key = m->kbuf;
            m->seen |= MC_MF('b');
            if (req->klen == 0)
                return *err = MC_E_FORMAT, MC_ERROR;
        } else if (!mc_key_ok(req->key, req->klen)) {
            return *err = MC_E_FORMAT, MC_ERROR;
        }
        return MC_OK;
    }
    if (n < 2)
        return *err = MC_E_UNKNOWN, MC_ERROR;
    if (t[1].n > MC_KEY_MAX || (is_ms && n == 2))
        return *err = MC_E_FORMAT, MC_ERROR;
    if (n + 1 > MC_META_TOKENS_MAX)
        return *err = req->cmd == MC_MG ? MC_E_META_TOO_MANY_MG
                                        : MC_E_META_TOO_MANY,
               MC_ERROR;
    if (is_ms && (!mc_i32(&t[2], &vlen) || vlen < 0))
        return *err = MC_E_FORMAT, MC_ERROR;
    req->key = t[1].p;
    req->klen = t[1].n;
    m->flags = n > first ? t[first].p : l0->end;
    m->flags_len = (size_t)(l0->end - m->flags);
    bool ok = mc_meta_flags(t + first, n - first, req, err);
    if (ok && m->olen > MC_META_OPAQUE_MAX)
        *err = MC_E_META_OPAQUE, ok = false;
    if (ok && !(m->seen & MC_MF('b')) && !mc_key_ok(req->key, req->klen))
        *err = MC_E_FORMAT, ok = false;
    if (ok && req->cmd == MC_MA && m->mode != 0 &&
        strchr("I+D-", m->mode) == NULL)
        *err = MC_E_META_MA_MODE, ok = false;
    if (ok && is_ms && m->mode != 0 && strchr("EAPRS", m->mode) == NULL)
        *err = MC_E_META_MS_MODE, ok = false;
    if (!ok && (req->cmd == MC_MD || req->cmd == MC_MA) &&
        *err != MC_E_META_OPAQUE && *err != MC_E_META_MA_MODE &&
        *err != MC_E_FORMAT)
        *err = MC_E_META_INVALID_OR_DUP;
    req->noreply = false; /* q is not noreply: errors always get a reply */
    if (!is_ms)
        return ok ? MC_OK : MC_ERROR;
    /* ms: the data block follows, even after an error (it is swallowed). */
    if (!ok || (uint64_t)vlen > item_max) {
        if (ok)
            *err = MC_E_TOO_LARGE;
        *swallow = (size_t)vlen + 2;
        return MC_ERROR;
    }
    req->vlen = (uint32_t)vlen;
    size_t need = l0->len + (size_t)vlen + 2;
    if (len < need)
        return *used = need, MC_NEED_MORE;
    req->data = buf + l0->len;
    *used = need;
    if (req->data[vlen] != '\r' || req->data[vlen + 1] != '\n')
        return *err = MC_E_CHUNK, MC_ERROR;
    return MC_OK;
}

static mc_status mc_line_cmd(const mc_line *l, const char *buf, size_t len,
                             size_t item_max, mc_request *req, size_t *used,
                             mc_error *err, size_t *swallow)
{
    const mc_tok *c = &l->t[0];
    switch (c->n) {
    case 3:
        if (TOK_IS(c, "get"))
            return req->cmd = MC_GET, mc_retrieval(l, buf, req, used, err);
        if (TOK_IS(c, "set"))
            return req->cmd = MC_SET, mc_storage(l, buf, len, item_max, req,
                                                 used, err, swallow);
        if (TOK_IS(c, "add"))
            return req->cmd = MC_ADD, mc_storage(l, buf, len, item_max, req,
                                                 used, err, swallow);
        if (TOK_IS(c, "cas"))
            return req->cmd = MC_CAS, mc_storage(l, buf, len, item_max, req,
                                                 used, err, swallow);
        if (TOK_IS(c, "gat"))
            return req->cmd = MC_GAT, mc_retrieval(l, buf, req, used, err);
        break;
    case 4:
        if (TOK_IS(c, "gets"))
            return req->cmd = MC_GETS, mc_retrieval(l, buf, req, used, err);
        if (TOK_IS(c, "gats"))
            return req->cmd = MC_GATS, mc_retrieval(l, buf, req, used, err);
        if (TOK_IS(c, "incr"))
            return req->cmd = MC_INCR, mc_keyed_number(l, req, used, err);
        if (TOK_IS(c, "decr"))
            return req->cmd = MC_DECR, mc_keyed_number(l, req, used, err);
        if (TOK_IS(c, "quit")) {
            /* As in memcached 1.6, arguments are ignored. */
            *used = l->len;
            return req->cmd = MC_QUIT, MC_OK;
        }
        break;
    case 5:
        if (TOK_IS(c, "touch"))
            return req->cmd = MC_TOUCH, mc_keyed_number(l, req, used, err);
        if (TOK_IS(c, "stats")) {
            *used = l->len;
            req->cmd = MC_STATS;
            req->arg = l->n > 1 ? l->t[1].p : l->end;
            req->arg_len = (size_t)(l->end - req->arg);
            while (req->arg_len > 0 && req->arg[req->arg_len - 1] == ' ')
                req->arg_len--;
            return MC_OK;
        }
        break;
    case 6:
        if (TOK_IS(c, "append"))
            return req->cmd = MC_APPEND, mc_storage(l, buf, len, item_max,
                                                    req, used, err, swallow);
        if (TOK_IS(c, "delete"))
            return req->cmd = MC_DELETE, mc_delete(l, req, used, err);
        break;
    case 7:
        if (TOK_IS(c, "replace"))
            return req->cmd = MC_REPLACE, mc_storage(l, buf, len, item_max,
                                                     req, used, err, swallow);
        if (TOK_IS(c, "prepend"))
            return req->cmd = MC_PREPEND, mc_storage(l, buf, len, item_max,
                                                     req, used, err, swallow);
        if (TOK_IS(c, "version")) {
            /* memcached 1.6 ignores anything after "version". */
            *used = l->len;
            return req->cmd = MC_VERSION, MC_OK;
        }
        break;
    case 9:
        if (TOK_IS(c, "flush_all"))
            return req->cmd = MC_FLUSH_ALL, mc_flush_all(l, req, used, err);
        if (TOK_IS(c, "verbosity")) {
            *used = l->len;
            if (l->n != 2 && l->n != 3)
                return *err = MC_E_UNKNOWN, MC_ERROR;
            req->cmd = MC_VERBOSITY;
            /* As everywhere in memcached, a last "noreply" counts, even
             * in place of the level ("verbosity noreply"). */
            req->noreply = mc_is_noreply(&l->t[l->n - 1]);
            uint32_t level = 0;
            if (!(l->n == 2 && req->noreply) && !mc_u32(&l->t[1], &level))
                return *err = MC_E_FORMAT, MC_ERROR;
            req->level = level;
            return MC_OK;
        }
        break;
    default:
        break;
    }
    *used = l->len;
    *err = MC_E_UNKNOWN;
    return MC_ERROR;
}

mc_status mc_parse(const char *buf, size_t len, size_t item_max,
                   mc_request *req, size_t *used, mc_error *err,
                   size_t *swallow)
{
    return mc_parse_from(buf, len, 0, item_max, req, used, err, swallow);
}

mc_status mc_parse_from(const char *buf, size_t len, size_t scanned,
                        size_t item_max, mc_request *req, size_t *used,
                        mc_error *err, size_t *swallow)
{
    mc_line l;

    *used = 0;
    *swallow = 0;
    memset(req, 0, offsetof(mc_request, meta));
    if (scanned > len)
        scanned = len;
    const char *nl = memchr(buf + scanned, '\n', len - scanned);
    if (nl == NULL) {
        if (len <= MC_LINE_MAX)
            return MC_NEED_MORE;
        if (!mc_is_keylist_cmd(buf, len) || len > MC_KEYLIST_MAX)
            return MC_CLOSE;
        return MC_NEED_MORE;
    }
    l.len = (size_t)(nl - buf) + 1;
    l.end = nl > buf && nl[-1] == '\r' ? nl - 1 : nl;

    /* Meta commands tokenize their lines themselves, once. */
    const char *c = buf;
    while (c < l.end && *c == ' ')
        c++;
    if (l.end - c >= 2 && c[0] == 'm' && (l.end - c == 2 || c[2] == ' ')) {
        static const char names[] = "gsdaen";
        static const mc_cmd cmds[] = {MC_MG, MC_MS, MC_MD,
                                      MC_MA, MC_ME, MC_MN};
        const char *w = c[1] != '\0' ? strchr(names, c[1]) : NULL;
        if (w != NULL) {
            req->cmd = cmds[w - names];
            if (req->cmd == MC_MN) {
                /* As memcached, arguments are ignored. */
                *used = l.len;
                return MC_OK;
            }
            return mc_meta_cmd(buf, len, &l, item_max, req, used, err,
                               swallow);
        }
    }

    /* Only the get family may have more than a few tokens: take the
     * first few, the key list is walked later. */
    l.n = mc_tokenize(buf, l.end, l.t, MC_MAX_TOKENS);
    if (l.n == 0) {
        *used = l.len;
        *err = MC_E_UNKNOWN;
        return MC_ERROR;
    }
    if (l.n > MC_MAX_TOKENS) {
        if (!mc_is_keylist_cmd(buf, l.len)) {
            *used = l.len;
            *err = MC_E_UNKNOWN;
            return MC_ERROR;
        }
        l.n = MC_MAX_TOKENS;
    }
    return mc_line_cmd(&l, buf, len, item_max, req, used, err, swallow);
}
