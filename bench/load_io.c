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
 */
#include "load.h"

#include <arpa/inet.h>
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

/* Bytes of a set request besides its data: "set " key " " flags " 0 "
 * bytes "\r\n" and the data's "\r\n". */
#define LD_SET_OVERHEAD (4 + KV_KEY_LEN + 1 + 10 + 3 + 10 + 2 + 2)
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
    while (slots < depth)
        slots *= 2;

    size_t set_max = LD_SET_OVERHEAD + (size_t)L->kv.vmax;
    size_t reply_max = LD_HEADER_MAX + (size_t)L->kv.vmax + 7;
    c->wcap = ld_clamp((size_t)depth * set_max, LD_BUF_MIN, LD_BUF_MAX);
    if (c->wcap < set_max)
        c->wcap = set_max;
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
    uint32_t lost = c->tail - c->head;
    ld_note(L, "connection lost (%s) with %u requests in flight", why, lost);
    /* Every request that will never be answered is an error; a connection
     * lost with none in flight is one. */
    if (lost == 0)
        L->cnt[L->phase].errors++;
    for (; c->head != c->tail; c->head++)
        L->cnt[c->fifo[c->head & c->mask].phase].errors++;
    L->inflight -= lost;
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
    char *p = c->wbuf;
    char *end = c->wbuf + c->wcap;
    size_t set_max = LD_SET_OVERHEAD + (size_t)L->kv.vmax;
    unsigned depth = ld_depth(L, c);
    /* The background group's rate needs the time; the main group reads
     * the clock only once it has something to send. */
    uint64_t t = c->bg ? ld_now() : 0;

    while (c->tail - c->head < depth && (size_t)(end - p) >= set_max) {
        uint32_t key;
        int op = LD_GET;
        if (c->bg ? !ld_next_bg(L, t, &key) : !ld_next(L, &key, &op))
            break;
        ld_req *r = &c->fifo[c->tail & c->mask];
        r->key = key;
        r->op = (uint8_t)op;
        r->phase = (uint8_t)L->phase;
        r->bg = c->bg;
        p = op == LD_GET ? ld_put_get(p, key) : ld_put_set(L, p, key);
        c->tail++;
    }
    if (c->tail == first)
        return;

    if (!c->bg)
        t = ld_now();
    for (uint32_t i = first; i != c->tail; i++)
        c->fifo[i & c->mask].t_ns = t;
    L->inflight += c->tail - first;
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

/*
 * An error reply line at p, or a line the request did not expect: counts
 * it and says how much it used. A line that is no reply at all is a
 * protocol error.
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
    if (ld_starts(p, n, "ERROR", 5) || ld_starts(p, n, "CLIENT_ERROR", 12) ||
        ld_starts(p, n, "SERVER_ERROR", 12) ||
        ld_starts(p, n, "NOT_STORED\r\n", 12) ||
        ld_starts(p, n, "EXISTS\r\n", 8) ||
        ld_starts(p, n, "NOT_FOUND\r\n", 11)) {
        ld_error(L, r->phase, false, "%s of key %u: %.*s",
                 r->op == LD_GET ? "get" : "set", r->key, shown, p);
        *used = n;
        return LD_DONE;
    }
    ld_error(L, r->phase, true, "unexpected reply to %s of key %u: %.*s",
             r->op == LD_GET ? "get" : "set", r->key, shown, p);
    return LD_FATAL;
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

    uint32_t n;
    if (!kv_key_parse(key, klen, &n) || n != r->key) {
        k->wrong++;
        ld_note(L, "get of key %u answered with key %.*s", r->key,
                (int)(klen < 40 ? klen : 40), key);
        return LD_DONE;
    }
    uint32_t want = kv_value_len(&L->kv, n);
    if (flags != kv_flags(n) || bytes != want ||
        memcmp(data, kv_value(&L->kv, n), want) != 0) {
        k->wrong++;
        ld_note(L, "wrong value for key %u: flags %u (want %u), %u bytes "
                "(want %u)%s", n, flags, kv_flags(n), bytes, want,
                bytes == want && flags == kv_flags(n) ? ", bytes differ" : "");
        return LD_DONE;
    }
    k->hits++;
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

/* Parses every complete reply in the buffer; returns false if the
 * connection was ended. */
static bool ld_parse(ld *L, ld_conn *c, uint64_t now)
{
    size_t off = 0;
    while (c->head != c->tail && off < c->rlen) {
        ld_req *r = &c->fifo[c->head & c->mask];
        size_t used = 0;
        int st = r->op == LD_GET ?
                 ld_parse_get(L, r, c->rbuf + off, c->rlen - off, &used) :
                 ld_parse_set(L, r, c->rbuf + off, c->rlen - off, &used);
        if (st == LD_NEED_MORE)
            break;
        if (st == LD_FATAL) {
            ld_kill(L, c, "protocol error");
            return false;
        }
        off += used;
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
        c->head++;
        L->inflight--;
        L->last_progress_ns = now;
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
