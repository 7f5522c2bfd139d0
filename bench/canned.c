/*
 * canned.c - canned, a trivial server for the memcached text protocol that
 * stores nothing and answers every get with the value kv.h defines for the
 * key, so that tc-load's checks pass. It exists to measure tc-load itself:
 * a server that does almost no work shows how many requests a second the
 * load generator can drive and check, which must be far above what the
 * real servers reach for their comparison to mean anything.
 *
 * One thread, epoll, non-blocking sockets. Per readable connection: one
 * large read, every complete command in the buffer answered into one
 * output buffer, one write. While output is pending the connection is not
 * read (EPOLLOUT only), so a client that does not read cannot make the
 * buffer grow without bound beyond one read's worth of replies.
 *
 * Commands: get/gets (up to 255 keys; keys outside kv.h's scheme
 * miss), set/add/replace/append/prepend/cas (the data block is skipped,
 * the reply is STORED, nothing with noreply), delete (NOT_FOUND), version,
 * stats (a few lines), flush_all (OK), mn (MN), quit; of the meta
 * commands mg (the flags k, f, s, O, v and q answered, c as c0 and t as
 * t-1, others ignored; a miss echoes k and O, as memcached 1.6.18 does)
 * and ms (the data skipped, HD, nothing with q). Anything else gets
 * ERROR. Usage: canned [-l ADDR] [-p PORT] [-V N|MIN-MAX]; -p 0 picks a
 * free port. The port is printed on stdout as "port N" once listening.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kv.h"

#define CN_READ_MIN (256u * 1024u)
#define CN_LINE_MAX 4096u
#define CN_MAX_EVENTS 128
/* Tokens of a command line but get's (an mg's flags fit). */
#define CN_TOKENS_MAX 24

typedef struct cn_conn {
    int fd;
    bool want_out;
    char *rbuf;
    size_t rcap, rlen;
    char *wbuf;
    size_t wcap, wlen, woff;
} cn_conn;

typedef struct cn_server {
    int ep;
    int lfd;
    kv_values kv;
    unsigned long long gets, hits, sets, conns;
} cn_server;

static volatile sig_atomic_t cn_stop;

static void cn_on_signal(int sig)
{
    (void)sig;
    cn_stop = 1;
}

static void cn_close(cn_server *s, cn_conn **cp)
{
    cn_conn *c = *cp;
    epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->rbuf);
    free(c->wbuf);
    free(c);
    *cp = NULL;
}

/* Makes room for n more output bytes; false when out of memory. */
static bool cn_reserve(cn_conn *c, size_t n)
{
    if (c->wcap - c->wlen >= n)
        return true;
    size_t cap = c->wcap ? c->wcap : CN_READ_MIN;
    while (cap - c->wlen < n)
        cap *= 2;
    char *p = realloc(c->wbuf, cap);
    if (p == NULL)
        return false;
    c->wbuf = p;
    c->wcap = cap;
    return true;
}

static bool cn_out(cn_conn *c, const char *s, size_t n)
{
    if (!cn_reserve(c, n))
        return false;
    memcpy(c->wbuf + c->wlen, s, n);
    c->wlen += n;
    return true;
}

#define CN_OUT_LIT(c, lit) cn_out((c), (lit), sizeof(lit) - 1)

static bool cn_value(cn_server *s, cn_conn *c, const char *key, size_t klen)
{
    uint32_t n;
    s->gets++;
    if (!kv_key_parse(key, klen, &n))
        return true;
    s->hits++;
    uint32_t len = kv_value_len(&s->kv, n);
    if (!cn_reserve(c, 6 + klen + 1 + 10 + 1 + 10 + 2 + len + 2))
        return false;
    char *p = c->wbuf + c->wlen;
    memcpy(p, "VALUE ", 6);
    p += 6;
    memcpy(p, key, klen);
    p += klen;
    *p++ = ' ';
    p += kv_utoa(p, kv_flags(n));
    *p++ = ' ';
    p += kv_utoa(p, len);
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, kv_value(&s->kv, n), len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    c->wlen = (size_t)(p - c->wbuf);
    return true;
}

/* The return flags of an mg or ms reply, in the order the request gave
 * them, each after a space: for a hit of key n (value len bytes) all of
 * them, for a miss or ms only k and O. tok[0..nt) are the request's flag
 * tokens. */
static bool cn_meta_flags(cn_conn *c, char **tok, size_t *tlen, int nt,
                          const char *key, size_t klen, bool hit, uint32_t n,
                          uint32_t len)
{
    for (int i = 0; i < nt; i++) {
        char f = tok[i][0];
        char num[12];
        size_t nl;
        bool ok = true;
        if (f == 'k') {
            ok = CN_OUT_LIT(c, " k") && cn_out(c, key, klen);
        } else if (f == 'O') {
            ok = CN_OUT_LIT(c, " ") && cn_out(c, tok[i], tlen[i]);
        } else if (hit && f == 'f') {
            nl = kv_utoa(num, kv_flags(n));
            ok = CN_OUT_LIT(c, " f") && cn_out(c, num, nl);
        } else if (hit && f == 's') {
            nl = kv_utoa(num, len);
            ok = CN_OUT_LIT(c, " s") && cn_out(c, num, nl);
        } else if (hit && f == 'c') {
            ok = CN_OUT_LIT(c, " c0");
        } else if (hit && f == 't') {
            ok = CN_OUT_LIT(c, " t-1");
        }
        if (!ok)
            return false;
    }
    return true;
}

static bool cn_has_flag(char **tok, size_t *tlen, int nt, char f)
{
    for (int i = 0; i < nt; i++)
        if (tlen[i] == 1 && tok[i][0] == f)
            return true;
    return false;
}

/* mg: tok[0] is "mg", tok[1] the key, the rest flags. */
static bool cn_mg(cn_server *s, cn_conn *c, char **tok, size_t *tlen, int nt)
{
    uint32_t n = 0;
    s->gets++;
    bool hit = kv_key_parse(tok[1], tlen[1], &n);
    bool quiet = cn_has_flag(tok + 2, tlen + 2, nt - 2, 'q');
    bool value = cn_has_flag(tok + 2, tlen + 2, nt - 2, 'v');
    uint32_t len = hit ? kv_value_len(&s->kv, n) : 0;
    if (!hit && quiet)
        return true;
    if (hit)
        s->hits++;
    char num[12];
    size_t nl = kv_utoa(num, len);
    bool ok = !hit ? CN_OUT_LIT(c, "EN")
                   : value ? CN_OUT_LIT(c, "VA ") && cn_out(c, num, nl)
                           : CN_OUT_LIT(c, "HD");
    ok = ok && cn_meta_flags(c, tok + 2, tlen + 2, nt - 2, tok[1], tlen[1],
                             hit, n, len) &&
         CN_OUT_LIT(c, "\r\n");
    if (ok && hit && value)
        ok = cn_out(c, kv_value(&s->kv, n), len) && CN_OUT_LIT(c, "\r\n");
    return ok;
}

/* Splits line[0..len) into at most max space-separated tokens. */
static int cn_tokens(char *line, size_t len, char **tok, size_t *tlen, int max)
{
    int n = 0;
    size_t i = 0;
    while (i < len && n < max) {
        while (i < len && line[i] == ' ')
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && line[i] != ' ')
            i++;
        tok[n] = line + start;
        tlen[n] = i - start;
        n++;
    }
    return n;
}

static bool cn_is(const char *t, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(t, lit, n) == 0;
}

static bool cn_stats(cn_server *s, cn_conn *c)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf),
                     "STAT pid %ld\r\nSTAT version canned\r\n"
                     "STAT curr_connections %llu\r\nSTAT cmd_get %llu\r\n"
                     "STAT get_hits %llu\r\nSTAT cmd_set %llu\r\n"
                     "STAT curr_items 0\r\nEND\r\n",
                     (long)getpid(), s->conns, s->gets, s->hits, s->sets);
    return cn_out(c, buf, (size_t)n);
}

/*
 * Answers the commands complete in the read buffer. Returns false if the
 * connection must close (quit, a line too long, out of memory).
 */
static bool cn_process(cn_server *s, cn_conn *c)
{
    size_t off = 0;
    bool keep = true;

    while (off < c->rlen) {
        char *line = c->rbuf + off;
        size_t avail = c->rlen - off;
        char *nl = memchr(line, '\n', avail);
        if (nl == NULL) {
            if (avail > CN_LINE_MAX) {
                CN_OUT_LIT(c, "CLIENT_ERROR line too long\r\n");
                keep = false;
            }
            break;
        }
        size_t used = (size_t)(nl - line) + 1;
        size_t len = used - 1;
        if (len > 0 && line[len - 1] == '\r')
            len--;

        char *tok[CN_TOKENS_MAX];
        size_t tlen[CN_TOKENS_MAX];
        int nt = cn_tokens(line, len, tok, tlen, CN_TOKENS_MAX);
        bool ok = true;
        /* A storage command: the token giving its data's length. */
        int data_tok = 0;
        bool meta = nt >= 3 && cn_is(tok[0], tlen[0], "ms");
        if (meta)
            data_tok = 2;
        else if (nt >= 5 && (cn_is(tok[0], tlen[0], "set") ||
                             cn_is(tok[0], tlen[0], "add") ||
                             cn_is(tok[0], tlen[0], "replace") ||
                             cn_is(tok[0], tlen[0], "append") ||
                             cn_is(tok[0], tlen[0], "prepend") ||
                             cn_is(tok[0], tlen[0], "cas")))
            data_tok = 4;
        if (nt >= 2 && (cn_is(tok[0], tlen[0], "get") ||
                        cn_is(tok[0], tlen[0], "gets"))) {
            /* Keys past CN_TOKENS_MAX are rare enough to split off. */
            char *t[256];
            size_t tl[256];
            int nk = cn_tokens(line, len, t, tl, 256);
            for (int i = 1; i < nk && ok; i++)
                ok = cn_value(s, c, t[i], tl[i]);
            ok = ok && CN_OUT_LIT(c, "END\r\n");
        } else if (nt >= 2 && cn_is(tok[0], tlen[0], "mg")) {
            ok = cn_mg(s, c, tok, tlen, nt);
        } else if (data_tok > 0) {
            char num[16];
            size_t bl = tlen[data_tok] < sizeof(num) ? tlen[data_tok]
                                                     : sizeof(num) - 1;
            memcpy(num, tok[data_tok], bl);
            num[bl] = '\0';
            char *end;
            unsigned long bytes = strtoul(num, &end, 10);
            if (bl == 0 || *end != '\0' || bytes > KV_VALUE_MAX) {
                ok = CN_OUT_LIT(c, "CLIENT_ERROR bad data chunk\r\n");
                keep = false;
            } else {
                if (avail < used + bytes + 2) {
                    /* Wait for the whole data block; make room for it. */
                    size_t need = used + bytes + 2;
                    if (need > c->rcap) {
                        if (off > 0)
                            break;
                        char *p = realloc(c->rbuf, need);
                        if (p == NULL)
                            return false;
                        c->rbuf = p;
                        c->rcap = need;
                    }
                    break;
                }
                used += bytes + 2;
                s->sets++;
                if (meta) {
                    if (!cn_has_flag(tok + 3, tlen + 3, nt - 3, 'q'))
                        ok = CN_OUT_LIT(c, "HD") &&
                             cn_meta_flags(c, tok + 3, tlen + 3, nt - 3,
                                           tok[1], tlen[1], false, 0, 0) &&
                             CN_OUT_LIT(c, "\r\n");
                } else if (!(nt >= 6 && cn_is(tok[nt - 1], tlen[nt - 1],
                                              "noreply"))) {
                    ok = CN_OUT_LIT(c, "STORED\r\n");
                }
            }
        } else if (nt >= 1 && cn_is(tok[0], tlen[0], "delete")) {
            ok = CN_OUT_LIT(c, "NOT_FOUND\r\n");
        } else if (nt >= 1 && cn_is(tok[0], tlen[0], "version")) {
            ok = CN_OUT_LIT(c, "VERSION canned\r\n");
        } else if (nt >= 1 && cn_is(tok[0], tlen[0], "stats")) {
            ok = cn_stats(s, c);
        } else if (nt >= 1 && cn_is(tok[0], tlen[0], "flush_all")) {
            ok = CN_OUT_LIT(c, "OK\r\n");
        } else if (nt >= 1 && cn_is(tok[0], tlen[0], "mn")) {
            ok = CN_OUT_LIT(c, "MN\r\n");
        } else if (nt >= 1 && cn_is(tok[0], tlen[0], "quit")) {
            keep = false;
        } else {
            ok = CN_OUT_LIT(c, "ERROR\r\n");
        }
        if (!ok)
            return false;
        off += used;
        if (!keep)
            break;
    }
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return keep;
}

static void cn_arm(cn_server *s, cn_conn *c, bool out)
{
    if (c->want_out == out)
        return;
    struct epoll_event ev = {.events = out ? EPOLLOUT : EPOLLIN,
                             .data.ptr = c};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = out;
}

/* Writes pending output; false if the connection failed. */
static bool cn_flush(cn_server *s, cn_conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);
        if (n > 0) {
            c->woff += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            cn_arm(s, c, true);
            return true;
        } else {
            return false;
        }
    }
    c->wlen = c->woff = 0;
    cn_arm(s, c, false);
    return true;
}

static void cn_readable(cn_server *s, cn_conn **cp)
{
    cn_conn *c = *cp;
    ssize_t n;
    if (c->rlen == c->rcap) {
        /* Only a data block larger than the buffer gets here, and
         * cn_process() grew the buffer for it; keep it simple and safe. */
        char *p = realloc(c->rbuf, c->rcap * 2);
        if (p == NULL) {
            cn_close(s, cp);
            return;
        }
        c->rbuf = p;
        c->rcap *= 2;
    }
    do {
        n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        cn_close(s, cp);
        return;
    }
    c->rlen += (size_t)n;
    bool keep = cn_process(s, c);
    if (!cn_flush(s, c) || !keep)
        cn_close(s, cp);
}

static void cn_accept(cn_server *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        cn_conn *c = calloc(1, sizeof(*c));
        char *rb = malloc(CN_READ_MIN);
        if (c == NULL || rb == NULL) {
            free(c);
            free(rb);
            close(fd);
            continue;
        }
        c->fd = fd;
        c->rbuf = rb;
        c->rcap = CN_READ_MIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            free(c->rbuf);
            free(c);
            close(fd);
            continue;
        }
        s->conns++;
    }
}

static int cn_listen(const char *addr, unsigned port)
{
    int fd = -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "canned: not an IPv4 address: %s\n", addr);
        goto fail;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fd, 1024) != 0) {
        fprintf(stderr, "canned: listen on %s:%u: %s\n", addr, port,
                strerror(errno));
        goto fail;
    }
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    return -1;
}

int main(int argc, char **argv)
{
    int rc = 2;
    const char *addr = "127.0.0.1";
    unsigned long port = 11211;
    uint32_t vmin = 100, vmax = 100;
    cn_server s = {.ep = -1, .lfd = -1};
    int ch;

    while ((ch = getopt(argc, argv, "l:p:V:h")) != -1) {
        char *end;
        bool ok = true;
        switch (ch) {
        case 'l':
            addr = optarg;
            break;
        case 'p':
            port = strtoul(optarg, &end, 10);
            ok = *optarg != '\0' && *end == '\0' && port <= 65535;
            break;
        case 'V':
            ok = kv_parse_sizes(optarg, &vmin, &vmax);
            break;
        default:
            ok = false;
            break;
        }
        if (!ok) {
            fprintf(stderr, "usage: canned [-l ADDR] [-p PORT] "
                    "[-V N|MIN-MAX]\n");
            goto out;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "usage: canned [-l ADDR] [-p PORT] [-V N|MIN-MAX]\n");
        goto out;
    }

    rc = 1;
    if (!kv_values_init(&s.kv, vmin, vmax)) {
        fprintf(stderr, "canned: out of memory\n");
        goto out;
    }
    s.lfd = cn_listen(addr, (unsigned)port);
    if (s.lfd < 0)
        goto out;
    s.ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (s.ep < 0 || epoll_ctl(s.ep, EPOLL_CTL_ADD, s.lfd, &lev) != 0) {
        fprintf(stderr, "canned: epoll: %s\n", strerror(errno));
        goto out;
    }

    struct sockaddr_in bound;
    socklen_t blen = sizeof(bound);
    getsockname(s.lfd, (struct sockaddr *)&bound, &blen);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = cn_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    printf("port %u\n", (unsigned)ntohs(bound.sin_port));
    fflush(stdout);

    struct epoll_event ev[CN_MAX_EVENTS];
    while (!cn_stop) {
        int n = epoll_wait(s.ep, ev, CN_MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            cn_conn *c = ev[i].data.ptr;
            if (c == NULL) {
                cn_accept(&s);
            } else if (ev[i].events & EPOLLOUT) {
                if (!cn_flush(&s, c))
                    cn_close(&s, &c);
            } else {
                cn_readable(&s, &c);
            }
        }
    }
    /* Connections still open are reclaimed by the exit. */
    rc = 0;
out:
    if (s.ep >= 0)
        close(s.ep);
    if (s.lfd >= 0)
        close(s.lfd);
    kv_values_free(&s.kv);
    return rc;
}
