/*
 * out.c - a connection's queue of reply bytes (see out.h).
 *
 * Invariants: segments [head, nsegs) are queued and not fully written;
 * pending is the sum of their lengths; waits counts the OUT_WAIT among
 * them. When everything is written the buffer is reused from offset 0,
 * and a buffer grown past OUT_KEEP for a large reply is given back.
 */
#include "out.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define OUT_MIN_CAP ((size_t)16 * 1024)
#define OUT_KEEP ((size_t)256 * 1024)
#define OUT_IOV 64

void out_init(out_queue *q)
{
    memset(q, 0, sizeof(*q));
}

void out_free(out_queue *q)
{
    for (size_t i = q->head; i < q->nsegs; i++)
        if (q->segs[i].kind == OUT_REF)
            tc_item_release(q->segs[i].item);
    free(q->buf);
    free(q->segs);
    out_init(q);
}

char *out_reserve(out_queue *q, size_t n)
{
    if (q->oom)
        return NULL;
    if (q->cap - q->len < n) {
        size_t cap = q->cap < OUT_MIN_CAP ? OUT_MIN_CAP : q->cap;
        while (cap - q->len < n)
            cap *= 2;
        char *b = realloc(q->buf, cap);
        if (b == NULL) {
            q->oom = true;
            return NULL;
        }
        q->buf = b;
        q->cap = cap;
    }
    return q->buf + q->len;
}

bool out_put(out_queue *q, const void *p, size_t n)
{
    char *d = out_reserve(q, n);
    if (d == NULL)
        return false;
    memcpy(d, p, n);
    q->len += n;
    return true;
}

static out_seg *out_seg_new(out_queue *q)
{
    if (q->nsegs == q->segcap && q->head > 0) {
        memmove(q->segs, q->segs + q->head,
                (q->nsegs - q->head) * sizeof(*q->segs));
        q->seq_base += q->head;
        q->nsegs -= q->head;
        q->head = 0;
    }
    if (q->nsegs == q->segcap) {
        size_t cap = q->segcap == 0 ? 16 : q->segcap * 2;
        out_seg *s = realloc(q->segs, cap * sizeof(*s));
        if (s == NULL) {
            q->oom = true;
            return NULL;
        }
        q->segs = s;
        q->segcap = cap;
    }
    return &q->segs[q->nsegs++];
}

void out_commit(out_queue *q, size_t mark)
{
    size_t n = q->len - mark;
    if (n == 0)
        return;
    if (q->nsegs > q->head) {
        out_seg *last = &q->segs[q->nsegs - 1];
        if (last->kind == OUT_BUF && last->off + last->len == mark &&
            (size_t)last->len + n <= UINT32_MAX) {
            last->len += (uint32_t)n;
            q->pending += n;
            return;
        }
    }
    out_seg *s = out_seg_new(q);
    if (s == NULL)
        return;
    s->kind = OUT_BUF;
    s->off = mark;
    s->len = (uint32_t)n;
    s->item = NULL;
    q->pending += n;
}

void out_reply(out_queue *q, const void *p, size_t n)
{
    size_t mark = out_mark(q);
    if (out_put(q, p, n))
        out_commit(q, mark);
}

void out_ref_value(out_queue *q, tc_item *it)
{
    tc_item *ref = tc_item_ref(it);
    tc_view v;
    if (ref == NULL) {
        tc_item_view(it, &v);
        out_reply(q, v.value, v.value_len);
        return;
    }
    /* ref may be a private copy of it: take the bytes from ref. */
    tc_item_view(ref, &v);
    out_seg *s = out_seg_new(q);
    if (s == NULL) {
        tc_item_release(ref);
        return;
    }
    s->kind = OUT_REF;
    s->ptr = v.value;
    s->len = (uint32_t)v.value_len;
    s->item = ref;
    q->pending += v.value_len;
}

uint64_t out_wait(out_queue *q)
{
    out_seg *s = out_seg_new(q);
    if (s == NULL)
        return UINT64_MAX;
    s->kind = OUT_WAIT;
    s->len = 0;
    s->item = NULL;
    q->waits++;
    return q->seq_base + (q->nsegs - 1);
}

void out_fill(out_queue *q, uint64_t seq, size_t mark)
{
    if (seq == UINT64_MAX)
        return; /* its placeholder could not be queued: q->oom is set */
    out_seg *s = &q->segs[seq - q->seq_base];
    s->kind = OUT_BUF;
    s->off = mark;
    s->len = (uint32_t)(q->len - mark);
    q->pending += s->len;
    q->waits--;
}

bool out_writable(const out_queue *q)
{
    return q->head < q->nsegs && q->segs[q->head].kind != OUT_WAIT;
}

/* Drops n written bytes from the front. */
static void out_consume(out_queue *q, size_t n)
{
    q->pending -= n;
    while (n > 0) {
        out_seg *s = &q->segs[q->head];
        if (n < s->len) {
            if (s->kind == OUT_REF)
                s->ptr += n;
            else
                s->off += n;
            s->len -= (uint32_t)n;
            return;
        }
        n -= s->len;
        if (s->kind == OUT_REF)
            tc_item_release(s->item);
        q->head++;
    }
}

static void out_reset_if_done(out_queue *q)
{
    /* Skip empty buffer segments (a noreply or an empty fill). */
    while (q->head < q->nsegs && q->segs[q->head].kind == OUT_BUF &&
           q->segs[q->head].len == 0)
        q->head++;
    if (q->head < q->nsegs)
        return;
    q->seq_base += q->nsegs;
    q->head = q->nsegs = 0;
    q->len = 0;
    if (q->cap > OUT_KEEP) {
        free(q->buf);
        q->buf = NULL;
        q->cap = 0;
    }
}

ssize_t out_flush(out_queue *q, int fd)
{
    struct iovec iov[OUT_IOV];
    size_t total = 0;

    out_reset_if_done(q);
    for (;;) {
        int cnt = 0;
        size_t want = 0;
        for (size_t i = q->head; i < q->nsegs && cnt < OUT_IOV; i++) {
            const out_seg *s = &q->segs[i];
            if (s->kind == OUT_WAIT)
                break;
            if (s->len == 0)
                continue;
            iov[cnt].iov_base = s->kind == OUT_REF ? (void *)(uintptr_t)s->ptr
                                                   : q->buf + s->off;
            iov[cnt].iov_len = s->len;
            want += s->len;
            cnt++;
        }
        if (cnt == 0)
            break;
        ssize_t n = writev(fd, iov, cnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        total += (size_t)n;
        out_consume(q, (size_t)n);
        out_reset_if_done(q);
        if ((size_t)n < want)
            break; /* the socket is full */
    }
    return (ssize_t)total;
}
