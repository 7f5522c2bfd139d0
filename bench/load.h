/*
 * load.h - tc-load's state, shared by tc_load.c (options, phases, report)
 * and load_io.c (connections: building requests, reading and checking
 * replies).
 *
 * Invariants:
 *   - every connection has at most `depth` requests in flight, kept in a
 *     FIFO in the order they were written; replies arrive in that order
 *     (the memcached text protocol answers in order), so the head of the
 *     FIFO says what the next reply must be;
 *   - with the quiet meta protocol (--meta, LD_META_QUIET) a request that
 *     succeeds may not be answered at all (a get that misses, a set that
 *     stored), so every batch written ends with "mn", whose marker
 *     (LD_MN) follows the batch's requests in the FIFO: a reply answers
 *     the first request of the head batch it names (a VA carries its key),
 *     the requests it skips over were the silent ones, and MN settles the
 *     rest of the batch. Markers are not requests: `pending` counts the
 *     requests alone, and the FIFO has room for a marker per request plus
 *     one (at most one batch is answered but for its MN);
 *   - a request is counted in the phase that issued it, when its reply is
 *     parsed; a reply that cannot be parsed ends its connection (the
 *     stream cannot be resynchronised) and is counted as a protocol error;
 *   - no allocation, formatting or clock read per request on the hot path:
 *     requests are built from a key template, the clock is read once per
 *     write() and once per read();
 *   - the background group (--bg-conns) is a second set of connections
 *     with its own key range, depth and optional rate: it issues gets only
 *     in the warm-up and the measured run, never counts toward -n, and
 *     its replies are counted and timed apart from the main group's (its
 *     errors and wrong values still fail the run).
 */
#ifndef TC_BENCH_LOAD_H
#define TC_BENCH_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist.h"
#include "hist.h"
#include "kv.h"

/* LD_MN: not a request but the "mn" closing a quiet batch (see above). */
enum ld_op { LD_GET = 0, LD_SET = 1, LD_MN = 2 };

/* The protocol tc-load speaks. */
enum ld_proto {
    LD_TEXT = 0,    /* get / set, one reply each */
    LD_META,        /* mg <key> k f v / ms <key> <len> T0 F<flags>: one
                     * reply each (VA or EN, HD) */
    LD_META_QUIET   /* the same with q, every batch closed by mn: hits
                     * answer VA, misses and stored sets nothing */
};

#define LD_AHEAD 32

/* Phases, in the order they run; a run skips those not asked for. */
enum ld_phase {
    LD_PREFILL = 0, /* sets of every key in the key space */
    LD_VERIFY,      /* gets of a sample of the prefilled keys */
    LD_WARMUP,      /* the workload, not counted in the result */
    LD_RUN,         /* the measured workload */
    LD_PHASES
};

typedef struct ld_req {
    uint32_t key;
    uint8_t op;
    uint8_t phase;
    uint8_t bg; /* issued by the background group */
    uint64_t t_ns; /* when the write() carrying it was issued */
} ld_req;

typedef struct ld_conn {
    int fd;
    bool bg;   /* one of the background group's connections */
    bool dead;
    bool want_out; /* EPOLLOUT is armed: a write is pending */
    ld_req *fifo;
    uint32_t mask;
    uint32_t head; /* next reply expected */
    uint32_t tail; /* next free slot */
    uint32_t pending; /* requests in the FIFO (LD_MN markers left out) */
    char *rbuf;
    size_t rcap, rlen;
    char *wbuf;
    size_t wcap, wlen, woff;
} ld_conn;

typedef struct ld_counts {
    uint64_t gets;
    uint64_t sets;
    uint64_t hits;
    uint64_t misses;
    uint64_t stored;
    uint64_t errors;      /* error replies and failures, all kinds */
    uint64_t proto_errors; /* of which replies that could not be parsed */
    uint64_t wrong;       /* values whose key, flags, size or bytes differ */
} ld_counts;

typedef struct ld_opts {
    const char *host;
    unsigned port;
    unsigned conns;
    unsigned depth;
    uint64_t requests;  /* 0: no count limit */
    double seconds;     /* 0: no time limit */
    double warmup;
    uint32_t keys;
    uint32_t key_offset; /* key numbers are key_offset + [0, keys) */
    double skew;        /* 0: uniform */
    uint32_t vmin, vmax;
    unsigned ratio_get, ratio_set;
    int proto; /* enum ld_proto */
    bool prefill;
    uint32_t verify;
    uint64_t seed;
    double timeout;
    bool json_only;
    bool spin; /* poll without sleeping */
    /* The background group: bg_conns connections of bg_depth requests in
     * flight, gets of keys bg_offset + [0, bg_keys), uniform, at most
     * bg_rate a second over the group (0: as fast as replies come). */
    unsigned bg_conns;
    unsigned bg_depth;
    uint32_t bg_keys;
    uint32_t bg_offset;
    double bg_rate;
} ld_opts;

typedef struct ld {
    ld_opts o;
    kv_values kv;
    dist d;
    rng r;
    uint32_t get_threshold; /* a draw's low 32 bits below this: a get */
    /* Key draws made LD_AHEAD picks early, their columns prefetched. */
    uint64_t ahead[LD_AHEAD];
    unsigned ahead_pos;
    int ep;
    ld_conn *conns;
    unsigned live_conns;

    /* The phase being issued, and what is left of it. */
    int phase;
    bool issuing;
    uint64_t to_issue; /* requests left to write in this phase */
    uint32_t seq;      /* next key of the prefill or verify sequence */
    uint32_t verify_step;
    uint64_t inflight;
    uint64_t last_progress_ns;

    ld_counts cnt[LD_PHASES];
    hist lat; /* the run phase's latencies */
    /* The background group: its own key draws, counts and latencies, and
     * what it issued since its phase began (for the rate). */
    rng bg_r;
    ld_counts bg_cnt[LD_PHASES];
    hist bg_lat;
    uint64_t bg_issued;
    uint64_t phase_start_ns;
    uint64_t prefill_ns;
    uint64_t run_start_ns, run_end_ns;
    uint64_t idle_ns; /* of the run, spent waiting for replies */
    /* System calls, to show how well requests are batched. */
    uint64_t n_writes, n_reads, n_polls;
    char first_error[160];
} ld;

/* Monotonic time in nanoseconds. */
uint64_t ld_now(void);

/* Records a failure; the first one's text is kept for the report. */
void ld_error(ld *L, int phase, bool proto, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Keeps the text of the first problem for the report, counts nothing. */
void ld_note(ld *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Connects every connection; false (with the error recorded) on failure. */
bool ld_connect_all(ld *L);
void ld_conns_free(ld *L);

/* Writes as many requests as the connection and the phase allow. */
void ld_fill(ld *L, ld_conn *c);
/* Reads what the connection has, checks and counts every reply. */
void ld_read(ld *L, ld_conn *c);
/* Writes what a connection has pending after EPOLLOUT. */
void ld_flush(ld *L, ld_conn *c);
/* Ends a connection: its requests in flight are counted as errors. */
void ld_kill(ld *L, ld_conn *c, const char *why);

/* The next request of the current phase; false when the phase has no more
 * (tc_load.c). */
bool ld_next(ld *L, uint32_t *key, int *op);

/* The next key of the background group, if it may issue one now: only in
 * the warm-up and the run, and within its rate (tc_load.c). */
bool ld_next_bg(ld *L, uint64_t now, uint32_t *key);

/* The counters a reply to r goes to. */
static inline ld_counts *ld_cnt(ld *L, const ld_req *r)
{
    return r->bg ? &L->bg_cnt[r->phase] : &L->cnt[r->phase];
}

/*
 * How many more requests a group limited to `rate` a second may issue,
 * elapsed_ns into its phase, having issued `issued`: the requests due by
 * now (one at the start) minus those issued. Never negative; a rate of 0
 * means no limit (UINT64_MAX).
 */
static inline uint64_t ld_allowance(double rate, uint64_t elapsed_ns,
                                    uint64_t issued)
{
    if (rate <= 0)
        return UINT64_MAX;
    double due = 1.0 + rate * ((double)elapsed_ns / 1e9);
    if (due >= 1.8e19)
        return UINT64_MAX;
    uint64_t d = (uint64_t)due;
    return d > issued ? d - issued : 0;
}

#endif /* TC_BENCH_LOAD_H */
