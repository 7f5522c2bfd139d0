/*
 * request.h - executing parsed requests against the engine and composing
 * their replies (memcached 1.6.18's texts).
 *
 * Each engine call gets an operation record (srv_op) as its callback
 * argument. A call that completes at once composes its reply at the end
 * of the connection's queue; one that completes later has a placeholder
 * in the queue (out_wait) that its callback fills.
 */
#ifndef TC_REQUEST_H
#define TC_REQUEST_H

#include "conn.h"
#include "parse.h"

/* The most flags a meta reply echoes (a line holds at most 20 tokens). */
#define SRV_META_RET MC_META_RET_MAX

typedef struct srv_op {
    struct srv_op *next; /* the worker's free list */
    conn *c;
    uint64_t seq; /* its placeholder, when it completes later */
    uint8_t kind;
    bool in_call; /* the engine call has not returned yet */
    bool noreply;
    /* A meta command's reply, which may be composed after the request's
     * bytes are gone: the flags it echoes, in order, and their data. */
    bool quiet;  /* q */
    bool value;  /* v */
    bool b64;    /* b */
    uint8_t nret;
    uint8_t olen;
    uint8_t klen;
    int64_t ttl; /* the T token */
    char ret[SRV_META_RET];
    char opaque[32];
    char key[250];
} srv_op;

/* Executes a request. False when a multi-get stopped half-way because its
 * replies fill the queue (CONN_OUT_HIGH): call again with the same
 * request once the queue drained; it resumes at the key it stopped at. */
bool request_exec(conn *c, const mc_request *req);
/* Whether a request may log a change to the journal: while it is
 * congested (tc_congested) such a request waits; one that only reads goes
 * on. mg counts as a change with T (touch), N (vivify) or R (recache). A
 * plain mg of a stale item logs its one win: the items made stale are
 * bounded by the changes that waited. */
bool request_changes(const mc_request *req);
/* Replies to a request mc_parse() refused (nothing when it asked for no
 * reply); a set refused as too large also deletes the key's old value. */
void request_error(conn *c, const mc_request *req, mc_error err);

/* Frees the worker's operation records. */
void request_free_ops(worker *w);

/* stats.c: the replies to "stats" and its subcommands. */
void stats_reply(conn *c, const mc_request *req);

#endif /* TC_REQUEST_H */
