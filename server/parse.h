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
 * one or more spaces.
 *
 * Meta commands (mg ms md ma mn me) are parsed as memcached 1.6.18 does:
 * every flag letter it knows is accepted by each of them (and ignored
 * where it means nothing), each at most once; a base64 key ("b") is
 * decoded into the request. Their errors are the texts memcached sends,
 * which differ between commands (MC_E_META_*). A line with no \n in its first MC_LINE_MAX bytes
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
    MC_MG,
    MC_MS,
    MC_MD,
    MC_MA,
    MC_MN,
    MC_ME,
} mc_cmd;

/* A meta line holds at most this many flags (memcached counts 20 tokens
 * with the command, the key and an empty last one). */
#define MC_META_RET_MAX 20

/* A meta flag's bit in mc_meta.seen: 'A'..'Z' and 'a'..'z'. */
#define MC_MF(c) \
    ((c) >= 'a' ? (uint64_t)1 << ((c) - 'a' + 26) : (uint64_t)1 << ((c) - 'A'))

/* What a meta command's flags say. Replies echo some flags (k, O, c, f,
 * ...) in the order given: the reply walks the tokens again (mc_next_key
 * over flags .. flags + flags_len). */
typedef struct mc_meta {
    uint64_t seen;       /* MC_MF() of each flag given */
    const char *flags;   /* the flag tokens as sent */
    size_t flags_len;
    int64_t ttl;         /* T */
    int64_t vivify;      /* N */
    int64_t recache;     /* R */
    uint64_t cas;        /* C */
    uint64_t delta;      /* D; 1 when not given */
    uint64_t initial;    /* J */
    uint32_t client_flags; /* F */
    char mode;           /* M; 0 when not given */
    const char *opaque;  /* O, with its letter (what replies echo) */
    size_t olen;
    /* The flags a reply may echo or that order it (k O c f h l s t, and
     * T), in the order given. */
    uint8_t nret;
    char ret[MC_META_RET_MAX];
    char kbuf[MC_KEY_MAX]; /* the key, base64-decoded (b) */
} mc_meta;

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
    /* Meta commands; mc_parse() sets it only for them. key points at
     * meta.kbuf for a base64 key. Keep it last: the rest of the request
     * is cleared for every request, not this. */
    mc_meta meta;
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
      "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]") \
    X(META_TOO_MANY_MG, "CLIENT_ERROR options flags are too long")         \
    X(META_TOO_MANY, "CLIENT_ERROR options flags too long")                \
    X(META_DUP, "CLIENT_ERROR duplicate flag")                             \
    X(META_INVALID, "CLIENT_ERROR invalid flag")                           \
    X(META_INVALID_OR_DUP, "CLIENT_ERROR invalid or duplicate flag")       \
    X(META_TOKEN, "CLIENT_ERROR bad token in command line format")         \
    X(META_DECODE, "CLIENT_ERROR error decoding key")                      \
    X(META_OPAQUE, "CLIENT_ERROR opaque token too long")                   \
    X(META_MODE_LEN, "CLIENT_ERROR incorrect length for M token")          \
    X(META_MS_MODE, "CLIENT_ERROR invalid mode for ms M token")            \
    X(META_MA_MODE, "CLIENT_ERROR invalid mode for ma M token")            \
    X(META_INITIAL, "CLIENT_ERROR invalid numeric initial value")          \
    X(META_DELTA, "CLIENT_ERROR invalid numeric delta value")

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

/* Base64 (RFC 4648, with padding) of n bytes at in, written at out (room
 * for 4 * ((n + 2) / 3) bytes); returns its length. */
size_t mc_base64_encode(const void *in, size_t n, char *out);

#endif /* TC_PARSE_H */
