/*
 * test_out.c - the reply queue (server/out.c): commits merge into one
 * segment; placeholders hold back what follows them until filled, in any
 * order; partial writes resume where they stopped; references to items
 * are released once their bytes are written; the buffer is reused.
 *
 * Writes go to a socketpair whose other end the test reads.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "item.h"
#include "out.h"
#include "tctest.h"
#include "tiercache.h"

typedef struct pair {
    int w; /* the queue writes here (non-blocking) */
    int r; /* the test reads here */
} pair;

static pair pair_open(int sndbuf)
{
    int sv[2];
    TCT_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    if (sndbuf > 0)
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    return (pair){sv[0], sv[1]};
}

static void pair_close(pair p)
{
    close(p.w);
    close(p.r);
}

/* Reads what is there (up to cap bytes). */
static size_t drain(pair p, char *buf, size_t cap)
{
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(p.r, buf + n, cap - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    return n;
}

static void put_str(out_queue *q, const char *s)
{
    out_reply(q, s, strlen(s));
}

static void commits_merge(void)
{
    out_queue q;
    out_init(&q);
    for (int i = 0; i < 100; i++)
        put_str(&q, "STORED\r\n");
    /* One segment: a pipelined batch leaves in one write. */
    TCT_EQ_U64(q.nsegs - q.head, 1);
    TCT_EQ_U64(q.pending, 800);
    pair p = pair_open(0);
    TCT_EQ_INT(out_flush(&q, p.w), 800);
    static char buf[1024];
    TCT_EQ_U64(drain(p, buf, sizeof(buf)), 800);
    TCT_EQ_U64(q.pending, 0);
    TCT_EQ_U64(q.len, 0); /* the buffer is reused from the start */
    out_free(&q);
    pair_close(p);
}

static void waits_hold_order(void)
{
    out_queue q;
    out_init(&q);
    pair p = pair_open(0);
    static char buf[256];

    put_str(&q, "A");
    uint64_t w1 = out_wait(&q);
    put_str(&q, "C");
    uint64_t w2 = out_wait(&q);
    put_str(&q, "E");
    TCT_EQ_U64(q.waits, 2);

    /* Only what precedes the first placeholder goes out. */
    TCT_EQ_INT(out_flush(&q, p.w), 1);
    TCT_EQ_MEM(buf, drain(p, buf, sizeof(buf)), "A");

    /* Filling the second first releases nothing. */
    size_t mark = out_mark(&q);
    out_put(&q, "D", 1);
    out_fill(&q, w2, mark);
    TCT_EQ_INT(out_flush(&q, p.w), 0);
    TCT_CHECK(!out_writable(&q));

    mark = out_mark(&q);
    out_put(&q, "BB", 2);
    out_fill(&q, w1, mark);
    TCT_EQ_INT(out_flush(&q, p.w), 5);
    TCT_EQ_MEM(buf, drain(p, buf, sizeof(buf)), "BBCDE");
    TCT_EQ_U64(q.waits, 0);
    TCT_EQ_U64(q.pending, 0);

    /* An empty fill (a noreply) is skipped. */
    uint64_t w3 = out_wait(&q);
    put_str(&q, "F");
    out_fill(&q, w3, out_mark(&q));
    TCT_EQ_INT(out_flush(&q, p.w), 1);
    TCT_EQ_MEM(buf, drain(p, buf, sizeof(buf)), "F");
    out_free(&q);
    pair_close(p);
}

/* Sequence numbers survive the segments before them being written and
 * the segment array being compacted. */
static void waits_survive_compaction(void)
{
    out_queue q;
    out_init(&q);
    pair p = pair_open(0);
    static char buf[65536];
    size_t got = 0;

    uint64_t seqs[200];
    for (int i = 0; i < 200; i++) {
        seqs[i] = out_wait(&q);
        /* Fill the previous one and write, so the front keeps moving. */
        if (i > 0) {
            size_t mark = out_mark(&q);
            char c = (char)('a' + (i - 1) % 26);
            out_put(&q, &c, 1);
            out_fill(&q, seqs[i - 1], mark);
        }
        TCT_CHECK(out_flush(&q, p.w) >= 0);
        got += drain(p, buf + got, sizeof(buf) - got);
    }
    size_t mark = out_mark(&q);
    out_put(&q, "z", 1);
    out_fill(&q, seqs[199], mark);
    TCT_CHECK(out_flush(&q, p.w) >= 0);
    got += drain(p, buf + got, sizeof(buf) - got);
    TCT_EQ_U64(got, 200);
    for (int i = 0; i < 199; i++)
        TCT_EQ_INT(buf[i], 'a' + i % 26);
    TCT_EQ_INT(buf[199], 'z');
    out_free(&q);
    pair_close(p);
}

/* A small socket buffer: many partial writes, bytes arrive whole and in
 * order. */
static void partial_writes_resume(void)
{
    out_queue q;
    out_init(&q);
    pair p = pair_open(4096);
    enum { N = 3000 };
    char line[32];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        int n = snprintf(line, sizeof(line), "line %06d\r\n", i);
        out_reply(&q, line, (size_t)n);
        total += (size_t)n;
    }
    static char got[N * 16];
    size_t have = 0;
    for (int rounds = 0; have < total && rounds < 100000; rounds++) {
        TCT_CHECK(out_flush(&q, p.w) >= 0);
        have += drain(p, got + have, sizeof(got) - have);
    }
    TCT_EQ_U64(have, total);
    for (int i = 0; i < N; i++) {
        int n = snprintf(line, sizeof(line), "line %06d\r\n", i);
        TCT_CHECK(memcmp(got + (size_t)i * (size_t)n, line, (size_t)n) == 0);
    }
    out_free(&q);
    pair_close(p);
}

static unsigned refs_of(const tc_item *it)
{
    return atomic_load(&it->refs);
}

/* Values sent by reference: the queue holds a reference until the bytes
 * are written, also across partial writes, and drops it after. */
static void refs_released_after_write(void)
{
    tc_config cfg;
    tc_config_init(&cfg);
    tc_engine *e;
    TCT_EQ_INT(tc_open(&cfg, &e), TC_OK);
    static char big[100000];
    memset(big, 'v', sizeof(big));
    TCT_EQ_INT(tc_store(e, TC_SET, "k", 1, big, sizeof(big), 0, 0, 0, NULL),
               TC_OK);
    tc_item *it;
    TCT_EQ_INT(tc_get(e, "k", 1, &it), TC_OK);
    unsigned base = refs_of(it);

    out_queue q;
    out_init(&q);
    pair p = pair_open(8192);
    put_str(&q, "VALUE k 0 100000\r\n");
    out_ref_value(&q, it);
    put_str(&q, "\r\nEND\r\n");
    TCT_EQ_U64(refs_of(it), base + 1);
    /* Deleting the key does not affect the queued bytes. */
    TCT_EQ_INT(tc_delete(e, "k", 1), TC_OK);

    static char got[100100];
    size_t have = 0, want = 18 + sizeof(big) + 7;
    for (int rounds = 0; have < want && rounds < 100000; rounds++) {
        TCT_CHECK(out_flush(&q, p.w) >= 0);
        have += drain(p, got + have, sizeof(got) - have);
    }
    TCT_EQ_U64(have, want);
    TCT_CHECK(memcmp(got + 18, big, sizeof(big)) == 0);
    TCT_CHECK(memcmp(got + 18 + sizeof(big), "\r\nEND\r\n", 7) == 0);
    TCT_EQ_U64(refs_of(it), base - 1); /* ours; the shard's went with delete */
    tc_item_release(it);

    /* A queue freed with a reference unwritten releases it too. */
    TCT_EQ_INT(tc_store(e, TC_SET, "k", 1, big, 10, 0, 0, 0, NULL), TC_OK);
    TCT_EQ_INT(tc_get(e, "k", 1, &it), TC_OK);
    out_ref_value(&q, it);
    tc_item_release(it);
    out_free(&q);
    tc_close(e); /* ASan reports a leak if the queue kept its reference */
    pair_close(p);
}

static void write_error_reported(void)
{
    out_queue q;
    out_init(&q);
    pair p = pair_open(0);
    close(p.r);
    put_str(&q, "STORED\r\n");
    /* SIGPIPE is a concern of the server (it ignores it); use send's
     * MSG_NOSIGNAL equivalent by ignoring it here too. */
    signal(SIGPIPE, SIG_IGN);
    ssize_t n = out_flush(&q, p.w);
    TCT_EQ_INT(n, -1);
    TCT_EQ_INT(errno, EPIPE);
    out_free(&q);
    close(p.w);
}

TCT_MAIN(TCT(commits_merge), TCT(waits_hold_order),
         TCT(waits_survive_compaction), TCT(partial_writes_resume),
         TCT(refs_released_after_write), TCT(write_error_reported))
