/*
 * conn.h - a client connection: its input buffer, its reply queue, and
 * the loop that reads, parses, executes and writes.
 *
 * Per read event a connection reads what the socket holds, executes every
 * complete request in it, and writes all the replies with one writev. It
 * stops taking requests (and reading) while
 *   - an engine call it made has not completed (pending > 0): the request
 *     after it waits, so requests execute in order; a multi-key get issues
 *     all its keys at once and each waits in its own place in the output;
 *   - more than CONN_OUT_HIGH reply bytes wait to be written
 *     (backpressure on a client that does not read its replies);
 *   - its next request changes something (request_changes) and the
 *     engine's journal is congested (tc_congested): writes come in faster
 *     than the disk takes them, and such a connection pauses until the
 *     journal catches up (worker_pause), so what a crash can lose stays
 *     within the durability mode's promise. Reads (get, plain mg, stats)
 *     go on meanwhile, those after a paused change excepted: requests
 *     execute in order.
 * A connection closed while calls are pending is kept, without its
 * socket, until they complete.
 */
#ifndef TC_CONN_H
#define TC_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "out.h"
#include "server.h"

#define CONN_OUT_HIGH ((size_t)4 * 1024 * 1024)
/* A multi-get waits for its pending keys past this many (conn.h). */
#define CONN_GET_PENDING 16

typedef struct conn {
    worker *w;
    int fd;
    ev_io rio;
    ev_io wio;
    char *rbuf;
    size_t rpos; /* first byte not yet consumed */
    size_t rlen; /* bytes in rbuf */
    size_t rcap;
    size_t rneed;   /* size of the incomplete request at rpos, if known */
    size_t rscan;   /* bytes at rpos known to hold no newline */
    size_t get_next; /* a multi-get cut short: where its keys resume */
    size_t swallow; /* bytes of a refused data block still to discard */
    out_queue out;
    unsigned pending; /* engine calls not yet completed */
    bool closing;     /* close once the queued replies are written */
    bool dead;        /* socket closed; freed when pending reaches 0 */
    bool in_ready;
    bool paused; /* waits for the journal to catch up (worker.c) */
    struct conn *prev;
    struct conn *next;
    struct conn *next_ready;
    struct conn *next_paused;
} conn;

/* Takes over an accepted socket; NULL (socket closed) when out of memory. */
conn *conn_new(worker *w, int fd);

/* Queues c to be resumed from the worker's loop (after completions). */
void conn_ready(conn *c);

/* Resumes a ready connection: writes, executes buffered requests. */
void conn_resume(conn *c);

/* Closes the socket now, dropping unwritten replies. The connection
 * stays allocated: the loop's entry points call conn_release() when they
 * are done with it. */
void conn_close(conn *c);

/* Frees c if it is closed and nothing refers to it any more (no engine
 * call pending, not queued to be resumed); otherwise does nothing. */
void conn_release(conn *c);

/* Makes a best effort to write what is queued, then closes (shutdown). */
void conn_shutdown(conn *c);

#endif /* TC_CONN_H */
