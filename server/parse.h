/*
 * parse.h - the memcached text protocol parser.
 *
 * A pure function over a byte buffer: no sockets, no allocation, no
 * engine, so it can be unit-tested and fuzzed alone. It never reads past
 * buf + len.
 *
 * mc_parse() looks at the start of a connection's unread input and says
 * one of:
 *   MC_OK        a complete request; req points into buf; *used bytes are
 *                consumed (the line, and for a storage command its data
 *                block and the \r\n after it);
 *   MC_NEED_MORE the request is incomplete; *used is the total number of
 *                bytes it needs when known (a storage command whose line
 *                has arrived), else 0;
 *   MC_ERROR     reply with mc_error_text(*err) unless req->noreply (as
 *                memcached, a request that asked for no reply gets no
 *                error either); consume *used bytes, then discard *swallow
 *                more bytes as they arrive (the data block of a value too
 *                large to store; req then names the command and key);
 *   MC_CLOSE     the line is too long: close the connection.
 *
 * Lines end with \n, optionally preceded by \r. Tokens are separated by
 * one or more spaces. A line with no \n in its first MC_LINE_MAX bytes
 * closes the connection, except for get, gets, gat and gats, whose key
 * lists may run to MC_KEYLIST_MAX bytes.
 */
#ifndef TC_PARSE_H
#define TC_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MC_LINE_MAX 2048
#define MC_KEYLIST_MAX ((size_t)4 * 1024 * 1024)
#define MC_KEY_MAX 250

typedef enum mc_cmd {
    MC_GET,
    MC_GETS,
    MC_GAT,
    MC_GATS,
    MC_SET,
    MC_ADD,
    MC_REPLACE,
    MC_APPEND,
    MC_PREPEND,
    MC_CAS,
    MC_INCR,
    MC_DECR,
    MC_TOUCH,
    MC_DELETE,
    MC_FLUSH_ALL,
    MC_STATS,
    MC_VERSION,
    MC_VERBOSITY,
    MC_QUIT,
} mc_cmd;

typedef struct mc_request {
    mc_cmd cmd;
    bool noreply;
    const char *key; /* single-key commands */
    size_t klen;
    const char *keys; /* get family: the keys, separated by spaces */
    size_t keys_len;
    uint32_t flags;
    int64_t exptime;  /* storage, touch, gat; flush_all's delay */
    uint32_t vlen;
    uint64_t cas;     /* cas unique */
    uint64_t delta;   /* incr, decr */
    uint32_t level;   /* verbosity */
    const char *data; /* storage: the value */
    const char *arg;  /* stats: the rest of the line (may be empty) */
    size_t arg_len;
} mc_request;

typedef enum mc_status {
    MC_OK,
    MC_NEED_MORE,
    MC_ERROR,
    MC_CLOSE,
} mc_status;

#define MC_ERRORS(X)                                                       \
    X(UNKNOWN, "ERROR")                                                    \
    X(FORMAT, "CLIENT_ERROR bad command line format")                      \
    X(CHUNK, "CLIENT_ERROR bad data chunk")                                \
    X(TOO_LARGE, "SERVER_ERROR object too large for cache")                \
    X(EXPTIME, "CLIENT_ERROR invalid exptime argument")                    \
    X(DELTA, "CLIENT_ERROR invalid numeric delta argument")                \
    X(DELETE_USAGE,                                                        \
      "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]")

typedef enum mc_error {
#define MC_ERROR_ENUM_(name, text) MC_E_##name,
    MC_ERRORS(MC_ERROR_ENUM_)
#undef MC_ERROR_ENUM_
} mc_error;

/* The reply line for an error, without its \r\n. */
const char *mc_error_text(mc_error e);

mc_status mc_parse(const char *buf, size_t len, size_t item_max,
                   mc_request *req, size_t *used, mc_error *err,
                   size_t *swallow);

/*
 * As mc_parse(), knowing that the first scanned bytes of buf hold no
 * newline (an incomplete line seen before): they are not searched again,
 * so a line that arrives a few bytes at a time costs its length once.
 */
mc_status mc_parse_from(const char *buf, size_t len, size_t scanned,
                        size_t item_max, mc_request *req, size_t *used,
                        mc_error *err, size_t *swallow);

/*
 * Iterates the keys of a get-family request: *pos starts at 0. Returns
 * false at the end. Keys were validated by mc_parse().
 */
bool mc_next_key(const mc_request *req, size_t *pos, const char **key,
                 size_t *klen);

#endif /* TC_PARSE_H */
