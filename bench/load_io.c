/*
 * load_io.c - tc-load's connections: building request batches, writing
 * them, reading replies and checking each one against the request it
 * answers (see load.h for the invariants).
 *
 * A reply to a get of key n must be either "END\r\n" (a miss) or exactly
 * one "VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\nEND\r\n" whose key
 * is n's, whose flags and size are kv_flags(n) and kv_value_len(n), and
 * whose data is kv_value(n); any difference is a wrong value. A reply to
 * a set must be "STORED\r\n". ERROR, CLIENT_ERROR and SERVER_ERROR lines
 * are error replies; anything else is a protocol error that ends the
 * connection.
 *
 * The meta protocol (--meta): a get is "mg <key> k f v", answered by "EN"
 * or "EN k<key>" (a miss) or by "VA <bytes> k<key> f<flags>" and the
 * data, checked the same way (k and f in either order, no other flag); a
 * set is "ms <key> <bytes> T0 F<flags>" and the data, answered by "HD".
 * NS, EX and NF are error replies besides the three above. Quiet (--meta,
 * the default meta mode): every request carries q and every batch written
 * ends with "mn". A miss and a stored set then say nothing, so a VA
 * answers the first get of its key in the head batch (the requests before
 * it were the silent ones), MN settles what is left of the batch, and an
 * error reply answers the oldest request not yet settled (it does not say
 * which it is for, and it fails the run anyway). A VA that no get of the
 * head batch asked for, EN or HD (which q suppresses) is a protocol error.
 */
#include "load.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bytes of a set request besides its data, the larger of "set " key " "
 * flags " 0 " bytes "\r\n" and "ms " key " " bytes " T0 F" flags " q\r\n",
 * plus the data's "\r\n". Any get is shorter. */
#define LD_SET_OVERHEAD (3 + KV_KEY_LEN + 1 + 10 + 5 + 10 + 4 + 2)
/* "mn\r\n", closing every batch of the quiet meta protocol. */
#define LD_MN_LEN 4
/* The longest reply header we accept before its line ends. */
#define LD_HEADER_MAX 512
#define LD_BUF_MIN (128u * 1024u)
#define LD_BUF_MAX (4u * 1024u * 1024u)

enum ld_parse { LD_NEED_MORE, LD_DONE, LD_FATAL };

uint64_t ld_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void ld_vnote(ld *L, const char *fmt, va_list ap)
{
    if (L->first_error[0] == '\0')
        vsnprintf(L->first_error, sizeof(L->first_error), fmt, ap);
}

void ld_note(ld *L, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ld_vnote(L, fmt, ap);
    va_end(ap);
}

void ld_error(ld *L, int phase, bool proto, const char *fmt, ...)
{
    va_list ap;
    L->cnt[phase].errors++;
    if (proto)
        L->cnt[phase].proto_errors++;
    va_start(ap, fmt);
    ld_vnote(L, fmt, ap);
    va_end(ap);
}

static int ld_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static size_t ld_clamp(size_t v, size_t lo, size_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* Requests a connection keeps in flight at most. */
static unsigned ld_depth(const ld *L, const ld_conn *c)
{
    return c->bg ? L->o.bg_depth : L->o.depth;
}

static bool ld_conn_init(ld *L, ld_conn *c)
{
    bool ok = false;
    uint32_t slots = 1;
    unsigned depth = ld_depth(L, c);
    /* Quiet meta: room for a marker per request, and one more (load.h). */
    uint64_t entries = L->o.proto == LD_META_QUIET ? 2 * (uint64_t)depth + 2
                                                    : depth;
    while (slots < entries)
        slots *= 2;

    size_t set_max = LD_SET_OVERHEAD + (size_t)L->kv.vmax;
    size_t reply_max = LD_HEADER_MAX + (size_t)L->kv.vmax + 7;
    c->wcap = ld_clamp((size_t)depth * set_max, LD_BUF_MIN, LD_BUF_MAX);
    if (c->wcap < set_max + LD_MN_LEN)
        c->wcap = set_max + LD_MN_LEN;
    c->rcap = ld_clamp((size_t)depth * reply_max, LD_BUF_MIN, LD_BUF_MAX);
    if (c->rcap < 2 * reply_max)
        c->rcap = 2 * reply_max;

    c->fd = -1;
    c->mask = slots - 1;
    c->fifo = malloc((size_t)slots * sizeof(*c->fifo));
    c->rbuf = malloc(c->rcap);
    c->wbuf = malloc(c->wcap);
    if (c->fifo == NULL || c->rbuf == NULL || c->wbuf == NULL)
        goto out;
    ok = true;
out:
    return ok;
}

/* On failure, what was made stays in L for ld_conns_free(). */
bool ld_connect_all(ld *L)
{
    bool ok = false;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)L->o.port);
    if (inet_pton(AF_INET, L->o.host, &sa.sin_addr) != 1) {
        ld_error(L, LD_RUN, false, "not an IPv4 address: %s", L->o.host);
        goto out;
    }

    unsigned total = L->o.conns + L->o.bg_conns;
    L->conns = calloc(total, sizeof(*L->conns));
    if (L->conns == NULL) {
        ld_error(L, LD_RUN, false, "out of memory");
        goto out;
    }
    for (unsigned i = 0; i < total; i++) {
        L->conns[i].fd = -1;
        L->conns[i].bg = i >= L->o.conns;
    }

    for (unsigned i = 0; i < total; i++) {
        ld_conn *c = &L->conns[i];
        if (!ld_conn_init(L, c)) {
            ld_error(L, LD_RUN, false, "out of memory for connection buffers");
            goto out;
        }
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 ||
            connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            ld_error(L, LD_RUN, false, "connect to %s:%u: %s", L->o.host,
                     L->o.port, strerror(errno));
            goto out;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* Non-blocking only after connect: on loopback a blocking connect
         * is immediate and simpler to report. */
        if (ld_nonblock(c->fd) != 0) {
            ld_error(L, LD_RUN, false, "fcntl: %s", strerror(errno));
            goto out;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(L->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
            ld_error(L, LD_RUN, false, "epoll_ctl: %s", strerror(errno));
            goto out;
        }
        L->live_conns++;
    }
    ok = true;
out:
    return ok;
}

void ld_conns_free(ld *L)
{
    if (L->conns == NULL)
        return;
    for (unsigned i = 0; i < L->o.conns + L->o.bg_conns; i++) {
        ld_conn *c = &L->conns[i];
        if (c->fd >= 0)
            close(c->fd);
        free(c->fifo);
        free(c->rbuf);
        free(c->wbuf);
    }
    free(L->conns);
    L->conns = NULL;
}

void ld_kill(ld *L, ld_conn *c, const char *why)
{
    if (c->dead)
        return;
    uint32_t lost = c->pending;
    ld_note(L, "connection lost (%s) with %u requests in flight", why, lost);
    /* Every request that will never be answered is an error; a connection
     * lost with none in flight is one. */
    if (lost == 0)
        L->cnt[L->phase].errors++;
    for (; c->head != c->tail; c->head++) {
        const ld_req *r = &c->fifo[c->head & c->mask];
        if (r->op != LD_MN)
            L->cnt[r->phase].errors++;
    }
    L->inflight -= lost;
    c->pending = 0;
    epoll_ctl(L->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->dead = true;
    L->live_conns--;
}

static void ld_want_out(ld *L, ld_conn *c, bool on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0u),
                             .data.ptr = c};
    epoll_ctl(L->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

void ld_flush(ld *L, ld_conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);
        L->n_writes++;
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ld_want_out(L, c, true);
            return;
        }
        ld_kill(L, c, n < 0 ? strerror(errno) : "write returned 0");
        return;
    }
    c->wlen = c->woff = 0;
    ld_want_out(L, c, false);
}

static char *ld_put_get(char *p, uint32_t key)
{
    memcpy(p, "get ", 4);
    kv_key(p + 4, key);
    p[4 + KV_KEY_LEN] = '\r';
    p[5 + KV_KEY_LEN] = '\n';
    return p + 6 + KV_KEY_LEN;
}

/* "mg <key> k f v[ q]\r\n": the reply carries the key and the flags, as
 * a VALUE line does. */
static char *ld_put_mg(char *p, uint32_t key, bool quiet)
{
    memcpy(p, "mg ", 3);
    kv_key(p + 3, key);
    p += 3 + KV_KEY_LEN;
    memcpy(p, " k f v q", 8);
    p += quiet ? 8 : 6;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* "ms <key> <bytes> T0 F<flags>[ q]\r\n<data>\r\n". */
static char *ld_put_ms(const ld *L, char *p, uint32_t key, bool quiet)
{
    uint32_t len = kv_value_len(&L->kv, key);
    memcpy(p, "ms ", 3);
    kv_key(p + 3, key);
    p += 3 + KV_KEY_LEN;
    *p++ = ' ';
    p += kv_utoa(p, len);
    memcpy(p, " T0 F", 5);
    p += 5;
    p += kv_utoa(p, kv_flags(key));
    if (quiet) {
        memcpy(p, " q", 2);
        p += 2;
    }
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, kv_value(&L->kv, key), len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static char *ld_put_set(const ld *L, char *p, uint32_t key)
{
    uint32_t len = kv_value_len(&L->kv, key);
    memcpy(p, "set ", 4);
    kv_key(p + 4, key);
    p += 4 + KV_KEY_LEN;
    *p++ = ' ';
    p += kv_utoa(p, kv_flags(key));
    memcpy(p, " 0 ", 3);
    p += 3;
    p += kv_utoa(p, len);
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, kv_value(&L->kv, key), len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

void ld_fill(ld *L, ld_conn *c)
{
    if (c->dead || c->wlen != 0 || !L->issuing)
        return;
    uint32_t first = c->tail;
    uint32_t first_pending = c->pending;
    int proto = L->o.proto;
    bool quiet = proto == LD_META_QUIET;
    char *p = c->wbuf;
    /* Quiet meta keeps room for the batch's closing mn. */
    char *end = c->wbuf + c->wcap - (quiet ? LD_MN_LEN : 0);
    size_t set_max = LD_SET_OVERHEAD + (size_t)L->kv.vmax;
    unsigned depth = ld_depth(L, c);
    /* The background group's rate needs the time; the main group reads
     * the clock only once it has something to send. */
    uint64_t t = c->bg ? ld_now() : 0;

    while (c->pending < depth && (size_t)(end - p) >= set_max) {
        uint32_t key;
        int op = LD_GET;
        if (c->bg ? !ld_next_bg(L, t, &key) : !ld_next(L, &key, &op))
            break;
        ld_req *r = &c->fifo[c->tail & c->mask];
        r->key = key;
        r->op = (uint8_t)op;
        r->phase = (uint8_t)L->phase;
        r->bg = c->bg;
        if (proto == LD_TEXT)
            p = op == LD_GET ? ld_put_get(p, key) : ld_put_set(L, p, key);
        else
            p = op == LD_GET ? ld_put_mg(p, key, quiet)
                             : ld_put_ms(L, p, key, quiet);
        c->tail++;
        c->pending++;
    }
    if (c->tail == first)
        return;
    if (quiet) {
        ld_req *r = &c->fifo[c->tail & c->mask];
        r->key = 0;
        r->op = LD_MN;
        r->phase = (uint8_t)L->phase;
        r->bg = c->bg;
        memcpy(p, "mn\r\n", LD_MN_LEN);
        p += LD_MN_LEN;
        c->tail++;
    }
    assert(c->tail - c->head <= c->mask + 1);

    if (!c->bg)
        t = ld_now();
    for (uint32_t i = first; i != c->tail; i++)
        c->fifo[i & c->mask].t_ns = t;
    L->inflight += c->pending - first_pending;
    c->wlen = (size_t)(p - c->wbuf);
    c->woff = 0;
    ld_flush(L, c);
}

/* Parses a decimal number ending at a space or CR; false if empty,
 * over 2^32 - 1, or not followed by one of those. */
static bool ld_num(const char **pp, const char *end, uint32_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    const char *start = p;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (unsigned)(*p - '0');
        if (v > UINT32_MAX)
            return false;
        p++;
    }
    if (p == start || p == end || (*p != ' ' && *p != '\r'))
        return false;
    *pp = p;
    *out = (uint32_t)v;
    return true;
}

static bool ld_starts(const char *p, size_t len, const char *lit, size_t n)
{
    return len >= n && memcmp(p, lit, n) == 0;
}

static const char *ld_op_name(const ld_req *r)
{
    return r->op == LD_GET ? "get" : r->op == LD_SET ? "set" : "mn";
}

/*
 * An error reply line at p, or a line the request did not expect: counts
 * it and says how much it used. A line that is no reply at all is a
 * protocol error. NS, EX and NF are error replies of the meta protocol
 * only, NOT_STORED, EXISTS and NOT_FOUND of the text protocol only.
 */
static int ld_error_line(ld *L, const ld_req *r, const char *p, size_t len,
                         size_t *used)
{
    const char *nl = memchr(p, '\n', len < LD_HEADER_MAX ? len : LD_HEADER_MAX);
    if (nl == NULL) {
        if (len < LD_HEADER_MAX)
            return LD_NEED_MORE;
        ld_error(L, r->phase, true, "reply line longer than %d bytes",
                 LD_HEADER_MAX);
        return LD_FATAL;
    }
    size_t n = (size_t)(nl - p) + 1;
    int shown = (int)(n > 2 ? n - 2 : 0);
    bool meta = L->o.proto != LD_TEXT;
    if (ld_starts(p, n, "ERROR", 5) || ld_starts(p, n, "CLIENT_ERROR", 12) ||
        ld_starts(p, n, "SERVER_ERROR", 12) ||
        (!meta && (ld_starts(p, n, "NOT_STORED\r\n", 12) ||
                   ld_starts(p, n, "EXISTS\r\n", 8) ||
                   ld_starts(p, n, "NOT_FOUND\r\n", 11))) ||
        (meta && n == 4 && (ld_starts(p, n, "NS\r\n", 4) ||
                            ld_starts(p, n, "EX\r\n", 4) ||
                            ld_starts(p, n, "NF\r\n", 4)))) {
        ld_error(L, r->phase, false, "%s of key %u: %.*s", ld_op_name(r),
                 r->key, shown, p);
        *used = n;
        return LD_DONE;
    }
    ld_error(L, r->phase, true, "unexpected reply to %s of key %u: %.*s",
             ld_op_name(r), r->key, shown, p);
    return LD_FATAL;
}

/* Checks a hit of r's key: the key, flags and bytes it came with must be
 * kv.h's; counts a hit or a wrong value. */
static void ld_check_hit(ld *L, const ld_req *r, const char *key, size_t klen,
                         uint32_t flags, uint32_t bytes, const char *data)
{
    ld_counts *k = ld_cnt(L, r);
    uint32_t n;
    if (!kv_key_parse(key, klen, &n) || n != r->key) {
        k->wrong++;
        ld_note(L, "get of key %u answered with key %.*s", r->key,
                (int)(klen < 40 ? klen : 40), key);
        return;
    }
    uint32_t want = kv_value_len(&L->kv, n);
    if (flags != kv_flags(n) || bytes != want ||
        memcmp(data, kv_value(&L->kv, n), want) != 0) {
        k->wrong++;
        ld_note(L, "wrong value for key %u: flags %u (want %u), %u bytes "
                "(want %u)%s", n, flags, kv_flags(n), bytes, want,
                bytes == want && flags == kv_flags(n) ? ", bytes differ" : "");
        return;
    }
    k->hits++;
}

static int ld_parse_get(ld *L, const ld_req *r, const char *p, size_t len,
                        size_t *used)
{
    ld_counts *k = ld_cnt(L, r);
    if (ld_starts(p, len, "END\r\n", 5)) {
        k->misses++;
        *used = 5;
        return LD_DONE;
    }
    if (len < 6)
        return LD_NEED_MORE;
    if (memcmp(p, "VALUE ", 6) != 0)
        return ld_error_line(L, r, p, len, used);

    const char *nl = memchr(p, '\n', len < LD_HEADER_MAX ? len : LD_HEADER_MAX);
    if (nl == NULL) {
        if (len < LD_HEADER_MAX)
            return LD_NEED_MORE;
        ld_error(L, r->phase, true, "VALUE line longer than %d bytes",
                 LD_HEADER_MAX);
        return LD_FATAL;
    }
    const char *key = p + 6;
    const char *q = memchr(key, ' ', (size_t)(nl - key));
    uint32_t flags, bytes;
    if (q == NULL)
        goto malformed;
    size_t klen = (size_t)(q - key);
    q++;
    if (!ld_num(&q, nl, &flags) || *q++ != ' ' || !ld_num(&q, nl, &bytes))
        goto malformed;
    /* A cas value (gets) may follow; it is not checked. */
    if (*q == ' ') {
        q++;
        while (q < nl && *q >= '0' && *q <= '9')
            q++;
    }
    if (*q != '\r' || q + 1 != nl)
        goto malformed;

    size_t hdr = (size_t)(nl - p) + 1;
    size_t total = hdr + bytes + 2 + 5;
    if (len < total)
        return LD_NEED_MORE;
    const char *data = p + hdr;
    if (memcmp(data + bytes, "\r\nEND\r\n", 7) != 0)
        goto malformed;
    *used = total;
    ld_check_hit(L, r, key, klen, flags, bytes, data);
    return LD_DONE;

malformed:
    ld_error(L, r->phase, true, "malformed VALUE reply for key %u: %.*s",
             r->key, (int)(nl - p > 80 ? 80 : nl - p), p);
    return LD_FATAL;
}

static int ld_parse_set(ld *L, const ld_req *r, const char *p, size_t len,
                        size_t *used)
{
    if (ld_starts(p, len, "STORED\r\n", 8)) {
        ld_cnt(L, r)->stored++;
        *used = 8;
        return LD_DONE;
    }
    if (len < 8 && memcmp(p, "STORED\r\n", len) == 0)
        return LD_NEED_MORE;
    return ld_error_line(L, r, p, len, used);
}

/* A meta hit: "VA <bytes>", the flags k<key> and f<flags> once each in
 * either order, "\r\n", the data, "\r\n". */
typedef struct ld_va {
    const char *key;
    size_t klen;
    uint32_t flags;
    uint32_t bytes;
    const char *data;
    size_t total; /* the whole reply's length */
} ld_va;

/* Parses the VA reply at p (which starts with "VA "); r is the request it
 * is taken for, for the error's phase. */
static int ld_parse_va(ld *L, const ld_req *r, const char *p, size_t len,
                       ld_va *va)
{
    const char *nl = memchr(p, '\n', len < LD_HEADER_MAX ? len : LD_HEADER_MAX);
    if (nl == NULL) {
        if (len < LD_HEADER_MAX)
            return LD_NEED_MORE;
        ld_error(L, r->phase, true, "VA line longer than %d bytes",
                 LD_HEADER_MAX);
        return LD_FATAL;
    }
    const char *q = p + 3;
    bool have_k = false, have_f = false;
    if (!ld_num(&q, nl, &va->bytes))
        goto malformed;
    while (*q == ' ') {
        q++;
        if (*q == 'k' && !have_k) {
            va->key = ++q;
            while (q < nl && *q != ' ' && *q != '\r')
                q++;
            va->klen = (size_t)(q - va->key);
            have_k = va->klen > 0;
            if (!have_k)
                goto malformed;
        } else if (*q == 'f' && !have_f) {
            q++;
            if (!ld_num(&q, nl, &va->flags))
                goto malformed;
            have_f = true;
        } else {
            goto malformed;
        }
    }
    if (!have_k || !have_f || *q != '\r' || q + 1 != nl)
        goto malformed;
    size_t hdr = (size_t)(nl - p) + 1;
    va->total = hdr + va->bytes + 2;
    if (len < va->total)
        return LD_NEED_MORE;
    va->data = p + hdr;
    if (memcmp(va->data + va->bytes, "\r\n", 2) != 0)
        goto malformed;
    return LD_DONE;

malformed:
    ld_error(L, r->phase, true, "malformed VA reply: %.*s",
             (int)(nl - p > 80 ? 80 : nl - p), p);
    return LD_FATAL;
}

/* A reply to "mg <key> k f v": VA, or a miss: "EN k<key>" (what
 * memcached 1.6.18 sends: a miss echoes the k flag) or "EN" (what its
 * protocol.txt shows). */
static int ld_parse_mg(ld *L, const ld_req *r, const char *p, size_t len,
                       size_t *used)
{
    if (len < 4)
        return LD_NEED_MORE;
    if (memcmp(p, "EN", 2) == 0) {
        const char *nl = memchr(p, '\n', len < LD_HEADER_MAX ? len
                                                            : LD_HEADER_MAX);
        if (nl == NULL)
            return ld_error_line(L, r, p, len, used);
        size_t n = (size_t)(nl - p) + 1;
        uint32_t k;
        if ((n == 4 && memcmp(p, "EN\r\n", 4) == 0) ||
            (n == 4 + KV_KEY_LEN + 2 && memcmp(p, "EN k", 4) == 0 &&
             kv_key_parse(p + 4, KV_KEY_LEN, &k) && k == r->key &&
             p[n - 2] == '\r')) {
            ld_cnt(L, r)->misses++;
            *used = n;
            return LD_DONE;
        }
        return ld_error_line(L, r, p, len, used);
    }
    if (memcmp(p, "VA ", 3) != 0)
        return ld_error_line(L, r, p, len, used);
    ld_va va;
    int st = ld_parse_va(L, r, p, len, &va);
    if (st != LD_DONE)
        return st;
    *used = va.total;
    ld_check_hit(L, r, va.key, va.klen, va.flags, va.bytes, va.data);
    return LD_DONE;
}

/* A reply to "ms <key> <bytes> T0 F<flags>": HD. */
static int ld_parse_ms(ld *L, const ld_req *r, const char *p, size_t len,
                       size_t *used)
{
    if (ld_starts(p, len, "HD\r\n", 4)) {
        ld_cnt(L, r)->stored++;
        *used = 4;
        return LD_DONE;
    }
    if (len < 4)
        return LD_NEED_MORE;
    return ld_error_line(L, r, p, len, used);
}

/* Settles the head of c's FIFO: a request is counted (what its reply was
 * has been counted already) and timed; a marker just leaves. */
static void ld_settle(ld *L, ld_conn *c, uint64_t now)
{
    const ld_req *r = &c->fifo[c->head & c->mask];
    c->head++;
    L->last_progress_ns = now;
    if (r->op == LD_MN)
        return;
    if (r->op == LD_GET)
        ld_cnt(L, r)->gets++;
    else
        ld_cnt(L, r)->sets++;
    if (r->phase == LD_RUN && r->bg) {
        hist_add(&L->bg_lat, now - r->t_ns);
    } else if (r->phase == LD_RUN) {
        hist_add(&L->lat, now - r->t_ns);
        L->run_end_ns = now;
    }
    c->pending--;
    L->inflight--;
}

/* Settles the requests before FIFO position `upto` of the head batch as
 * the silent successes of quiet mode: gets that missed, sets that
 * stored. */
static void ld_settle_silent(ld *L, ld_conn *c, uint32_t upto, uint64_t now)
{
    while (c->head != upto) {
        const ld_req *r = &c->fifo[c->head & c->mask];
        assert(r->op != LD_MN);
        if (r->op == LD_GET)
            ld_cnt(L, r)->misses++;
        else
            ld_cnt(L, r)->stored++;
        ld_settle(L, c, now);
    }
}

/* One reply of the quiet meta protocol; settles what it answers. */
static int ld_parse_quiet(ld *L, ld_conn *c, const char *p, size_t len,
                          size_t *used, uint64_t now)
{
    const ld_req *r = &c->fifo[c->head & c->mask];
    if (len < 4)
        return LD_NEED_MORE;
    if (memcmp(p, "MN\r\n", 4) == 0) {
        uint32_t i = c->head;
        while (i != c->tail && c->fifo[i & c->mask].op != LD_MN)
            i++;
        if (i == c->tail) {
            ld_error(L, r->phase, true, "MN with no mn in flight");
            return LD_FATAL;
        }
        ld_settle_silent(L, c, i, now);
        ld_settle(L, c, now);
        *used = 4;
        return LD_DONE;
    }
    if (memcmp(p, "VA ", 3) == 0) {
        ld_va va;
        int st = ld_parse_va(L, r, p, len, &va);
        if (st != LD_DONE)
            return st;
        /* The first get of its key in the head batch. */
        uint32_t n, i = c->head;
        bool found = false;
        if (kv_key_parse(va.key, va.klen, &n)) {
            for (; i != c->tail; i++) {
                const ld_req *q = &c->fifo[i & c->mask];
                if (q->op == LD_MN)
                    break;
                if (q->op == LD_GET && q->key == n) {
                    found = true;
                    break;
                }
            }
        }
        if (!found) {
            ld_error(L, r->phase, true, "VA for key %.*s, which no get of "
                     "the batch in flight asked for",
                     (int)(va.klen < 40 ? va.klen : 40), va.key);
            return LD_FATAL;
        }
        ld_settle_silent(L, c, i, now);
        r = &c->fifo[c->head & c->mask];
        ld_check_hit(L, r, va.key, va.klen, va.flags, va.bytes, va.data);
        ld_settle(L, c, now);
        *used = va.total;
        return LD_DONE;
    }
    int st = ld_error_line(L, r, p, len, used);
    if (st == LD_DONE)
        ld_settle(L, c, now);
    return st;
}

/* One reply to the head of c's FIFO; settles what it answers. */
static int ld_parse_one(ld *L, ld_conn *c, const char *p, size_t len,
                        size_t *used, uint64_t now)
{
    const ld_req *r = &c->fifo[c->head & c->mask];
    int st;
    switch (L->o.proto) {
    case LD_META_QUIET:
        return ld_parse_quiet(L, c, p, len, used, now);
    case LD_META:
        st = r->op == LD_GET ? ld_parse_mg(L, r, p, len, used)
                             : ld_parse_ms(L, r, p, len, used);
        break;
    default:
        st = r->op == LD_GET ? ld_parse_get(L, r, p, len, used)
                             : ld_parse_set(L, r, p, len, used);
        break;
    }
    if (st == LD_DONE)
        ld_settle(L, c, now);
    return st;
}

/* Parses every complete reply in the buffer; returns false if the
 * connection was ended. */
static bool ld_parse(ld *L, ld_conn *c, uint64_t now)
{
    size_t off = 0;
    while (c->head != c->tail && off < c->rlen) {
        size_t used = 0;
        int st = ld_parse_one(L, c, c->rbuf + off, c->rlen - off, &used, now);
        if (st == LD_NEED_MORE)
            break;
        if (st == LD_FATAL) {
            ld_kill(L, c, "protocol error");
            return false;
        }
        off += used;
    }
    if (c->head == c->tail && off < c->rlen) {
        ld_error(L, L->phase, true, "%zu bytes no request asked for: %.*s",
                 c->rlen - off, (int)(c->rlen - off > 60 ? 60 : c->rlen - off),
                 c->rbuf + off);
        ld_kill(L, c, "protocol error");
        return false;
    }
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    if (c->rlen == c->rcap) {
        ld_error(L, L->phase, true, "a reply larger than the %zu-byte buffer",
                 c->rcap);
        ld_kill(L, c, "protocol error");
        return false;
    }
    return true;
}

void ld_read(ld *L, ld_conn *c)
{
    for (;;) {
        size_t room = c->rcap - c->rlen;
        ssize_t n = read(c->fd, c->rbuf + c->rlen, room);
        L->n_reads++;
        if (n > 0) {
            c->rlen += (size_t)n;
            if (!ld_parse(L, c, ld_now()))
                return;
            /* A full buffer may mean more is waiting. */
            if ((size_t)n < room)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        ld_kill(L, c, n == 0 ? "closed by the server" : strerror(errno));
        return;
    }
}
