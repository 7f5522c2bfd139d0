/*
 * out.h - a connection's queue of reply bytes.
 *
 * Replies are appended to one growing buffer and described by a list of
 * segments that are written, in order, with writev: a whole pipelined
 * batch usually forms a single segment and leaves in one system call.
 * Three kinds of segment:
 *   OUT_BUF  bytes in the buffer (by offset, so the buffer may move);
 *   OUT_REF  a large value sent from the item itself, which the segment
 *            holds a reference to (no copy);
 *   OUT_WAIT the place of a reply that is not known yet (an engine call
 *            that completes later); writing stops there until out_fill()
 *            turns it into bytes, so replies keep their request order.
 * Segments are named by a sequence number that stays valid while segments
 * before them are written and dropped.
 */
#ifndef TC_OUT_H
#define TC_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tiercache.h"

enum { OUT_BUF, OUT_REF, OUT_WAIT };

typedef struct out_seg {
    uint32_t kind;
    uint32_t len;
    size_t off;      /* OUT_BUF: offset in the buffer */
    const char *ptr; /* OUT_REF: the bytes */
    tc_item *item;   /* OUT_REF: the reference held */
} out_seg;

typedef struct out_queue {
    char *buf;
    size_t len;
    size_t cap;
    out_seg *segs;
    size_t head; /* first segment not fully written */
    size_t nsegs;
    size_t segcap;
    uint64_t seq_base; /* sequence number of segs[0] */
    size_t pending;    /* bytes queued and not yet written */
    unsigned waits;    /* OUT_WAIT segments */
    bool oom;          /* an append failed: the connection must close */
} out_queue;

void out_init(out_queue *q);
/* Releases the references held and frees the memory. */
void out_free(out_queue *q);

/* Room for n more bytes at the buffer's end; NULL (and q->oom) when out
 * of memory. Bytes written there become part of the reply only once
 * committed by out_commit() or out_fill(). */
char *out_reserve(out_queue *q, size_t n);

/* The offset where the next reply bytes will start. */
static inline size_t out_mark(const out_queue *q)
{
    return q->len;
}

/* Appends bytes to the buffer (uncommitted, as out_reserve()). */
bool out_put(out_queue *q, const void *p, size_t n);

/* Queues the bytes appended since mark as the next reply bytes. */
void out_commit(out_queue *q, size_t mark);

/* Appends bytes and commits them: a whole short reply. */
void out_reply(out_queue *q, const void *p, size_t n);

/* Queues the value of item it without copying it, taking a reference
 * (copying the bytes only when no reference can be had). */
void out_ref_value(out_queue *q, tc_item *it);

/* Queues a placeholder; returns its sequence number. */
uint64_t out_wait(out_queue *q);

/* Turns placeholder seq into the bytes appended since mark. */
void out_fill(out_queue *q, uint64_t seq, size_t mark);

/* True when something before the first placeholder can be written. */
bool out_writable(const out_queue *q);

/*
 * Writes what can be written up to the first placeholder. Returns the
 * bytes written, 0 when the socket is full (EAGAIN) or nothing is ready,
 * and -1 on a write error (errno set).
 */
ssize_t out_flush(out_queue *q, int fd);

#endif /* TC_OUT_H */
