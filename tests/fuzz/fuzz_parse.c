/*
 * fuzz_parse.c - the protocol parser against hostile input.
 *
 * Every input is placed at the very end of a page followed by an
 * unreadable page, so a read one byte past the input crashes at once (the
 * picohttpparser technique). The input is then parsed the way a connection
 * does: request after request, swallowing refused data blocks, walking the
 * key list of every get; the checks are that nothing reads outside the
 * input and that every result stays within it.
 *
 * Built two ways:
 *   - with -Dfuzz=true (clang): a libFuzzer target, fuzz_parse_libfuzzer;
 *   - always: a standalone program for the 'fuzz' suite that runs a fixed
 *     corpus of requests truncated at every length, then seeded random
 *     mutations of it, and prints TAP. FUZZ_ITERATIONS and FUZZ_SEED in the
 *     environment change the run (the seed is printed).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "parse.h"

#define FUZZ_MAX 65536
#define FUZZ_ITEM_MAX 1024

static char *guard_base;
static size_t guard_span;

/* Maps a buffer of FUZZ_MAX bytes (rounded to pages) followed by a
 * PROT_NONE page. */
static int guard_init(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    guard_span = (FUZZ_MAX + page - 1) / page * page;
    guard_base = mmap(NULL, guard_span + page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (guard_base == MAP_FAILED)
        return -1;
    return mprotect(guard_base + guard_span, page, PROT_NONE);
}

static void fuzz_fail(const char *what)
{
    printf("# invariant broken: %s\n", what);
    fflush(stdout);
    abort();
}

/* Parses data as a connection would; aborts on a broken invariant. */
static void parse_all(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX)
        size = FUZZ_MAX;
    char *buf = guard_base + guard_span - size;
    memcpy(buf, data, size);

    size_t pos = 0;
    for (int n = 0; n < 100000 && pos < size; n++) {
        mc_request req;
        size_t used, swallow;
        mc_error err;
        size_t avail = size - pos;
        mc_status st = mc_parse(buf + pos, avail, FUZZ_ITEM_MAX, &req, &used,
                                &err, &swallow);
        if (st == MC_NEED_MORE || st == MC_CLOSE)
            return;
        if (used == 0 || used > avail)
            fuzz_fail("used out of range");
        if (st == MC_ERROR) {
            if (strlen(mc_error_text(err)) == 0)
                fuzz_fail("empty error text");
            pos += used;
            pos += swallow < size - pos ? swallow : size - pos;
            continue;
        }
        const char *end = buf + pos + used;
        switch (req.cmd) {
        case MC_GET:
        case MC_GETS:
        case MC_GAT:
        case MC_GATS: {
            size_t kp = 0, klen;
            const char *key;
            int keys = 0;
            if (req.keys < buf + pos || req.keys + req.keys_len > end)
                fuzz_fail("key list outside the request");
            while (mc_next_key(&req, &kp, &key, &klen)) {
                if (klen == 0 || klen > MC_KEY_MAX || key + klen > end)
                    fuzz_fail("bad key from mc_next_key");
                keys++;
            }
            /* Only gat and gats may name no key ("gat 10": END). */
            if (keys == 0 && req.cmd != MC_GAT && req.cmd != MC_GATS)
                fuzz_fail("a get with no key");
            break;
        }
        case MC_SET:
        case MC_ADD:
        case MC_REPLACE:
        case MC_APPEND:
        case MC_PREPEND:
        case MC_CAS:
            if (req.vlen > FUZZ_ITEM_MAX || req.data + req.vlen + 2 != end)
                fuzz_fail("data block outside the request");
            if (req.klen == 0 || req.klen > MC_KEY_MAX)
                fuzz_fail("bad storage key");
            break;
        case MC_STATS:
            if (req.arg < buf + pos || req.arg + req.arg_len > end)
                fuzz_fail("stats argument outside the request");
            break;
        default:
            break;
        }
        pos += used;
    }
}

#ifdef FUZZ_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (guard_base == NULL && guard_init() != 0)
        abort();
    parse_all(data, size);
    return 0;
}
#else

static const char *const corpus[] = {
    "get a\r\n",
    "get a b c d e f g h i j k l m n o p\r\n",
    "gets key:0000000001 key:0000000002\r\n",
    "gat 100 a b\r\n",
    "gats -1 a\r\n",
    "set k 0 0 5\r\nhello\r\n",
    "set k 4294967295 2592000 0 noreply\r\n\r\n",
    "add k 1 2 3\r\nabc\r\n",
    "replace k 1 2 3\r\nabc\r\n",
    "append k 0 0 1\r\nx\r\n",
    "prepend k 0 0 1\r\nx\r\n",
    "cas k 0 0 1 18446744073709551615\r\nx\r\n",
    "set k 0 0 2000\r\n",
    "set k 0 0 -1\r\n",
    "set k 0 0 3\r\nabcde\r\n",
    "incr k 18446744073709551615\r\n",
    "decr k 1 noreply\r\n",
    "touch k 10\r\n",
    "delete k 0 noreply\r\n",
    "delete k\r\n",
    "flush_all 10 noreply\r\n",
    "stats settings\r\n",
    "stats\r\n",
    "version\r\n",
    "verbosity 1\r\n",
    "quit\r\n",
    "bogus command here\r\n",
    "\r\n",
    "get \x01\x02\r\n",
    "mg key v c f k O123 q t s h l N30 R10 T20 u\r\n",
    "mg a2V5 b k v\r\n",
    "mg ==== b\r\n",
    "ms key 5 T0 F7 C12 I MS c k O9 q\r\nhello\r\n",
    "ms key 5 MX\r\nhello\r\n",
    "ms key 2000 T0\r\n",
    "md key I T30 C5 q O1 k\r\n",
    "ma key N0 J10 D5 MD T0 v t c q\r\n",
    "me a2V5 b\r\n",
    "mn\r\n",
    "mg k a b c d e f g h i j k l m n o p q r s t u v w x\r\n",
};

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Every corpus entry, and all of them concatenated, cut at every length. */
static int run_truncations(void)
{
    static uint8_t all[8192];
    size_t n = 0, cases = 0;
    size_t count = sizeof(corpus) / sizeof(corpus[0]);
    for (size_t i = 0; i < count; i++) {
        size_t len = strlen(corpus[i]);
        for (size_t cut = 0; cut <= len; cut++, cases++)
            parse_all((const uint8_t *)corpus[i], cut);
        memcpy(all + n, corpus[i], len);
        n += len;
    }
    for (size_t cut = 0; cut <= n; cut++, cases++)
        parse_all(all, cut);
    printf("# %zu truncated inputs\n", cases);
    return 0;
}

static size_t mutate(uint8_t *buf, size_t len, size_t cap, uint64_t *s)
{
    static const char *const tokens[] = {" ", "\r\n", "\n", "\r", "noreply",
                                         "-", "0", "99999999999999999999",
                                         "get ", "set k 0 0 ", "\0"};
    int edits = 1 + (int)(rng(s) % 8);
    for (int e = 0; e < edits; e++) {
        uint64_t r = rng(s);
        size_t at = len == 0 ? 0 : (size_t)(r >> 8) % (len + 1);
        switch (r % 5) {
        case 0: /* flip a bit */
            if (len > 0)
                buf[at % len] ^= (uint8_t)(1u << ((r >> 40) % 8));
            break;
        case 1: /* a random byte */
            if (len > 0)
                buf[at % len] = (uint8_t)(r >> 32);
            break;
        case 2: /* cut */
            len = at;
            break;
        case 3: { /* insert a token */
            const char *t = tokens[(r >> 32) % (sizeof(tokens) / sizeof(*tokens))];
            size_t tl = strlen(t) + (t[0] == '\0');
            if (len + tl <= cap) {
                memmove(buf + at + tl, buf + at, len - at);
                memcpy(buf + at, t, tl);
                len += tl;
            }
            break;
        }
        default: { /* append another corpus entry */
            const char *c = corpus[(r >> 32) % (sizeof(corpus) / sizeof(*corpus))];
            size_t cl = strlen(c);
            if (len + cl <= cap) {
                memcpy(buf + len, c, cl);
                len += cl;
            }
            break;
        }
        }
    }
    return len;
}

int main(void)
{
    const char *env_n = getenv("FUZZ_ITERATIONS");
    const char *env_s = getenv("FUZZ_SEED");
    unsigned long iters = env_n != NULL ? strtoul(env_n, NULL, 10) : 2000000;
    uint64_t seed = env_s != NULL ? strtoull(env_s, NULL, 10)
                                  : (uint64_t)time(NULL);
    static uint8_t buf[4096];

    printf("# seed %" PRIu64 " (FUZZ_SEED=%" PRIu64 " repeats this run)\n",
           seed, seed);
    if (guard_init() != 0) {
        printf("not ok 1 - guard page\n1..1\n");
        return 1;
    }
    run_truncations();
    printf("ok 1 - every corpus request cut at every length\n");
    fflush(stdout);

    uint64_t s = seed;
    size_t count = sizeof(corpus) / sizeof(corpus[0]);
    for (unsigned long i = 0; i < iters; i++) {
        const char *c = corpus[rng(&s) % count];
        size_t len = strlen(c);
        memcpy(buf, c, len);
        len = mutate(buf, len, sizeof(buf), &s);
        parse_all(buf, len);
    }
    printf("ok 2 - %lu mutated inputs\n", iters);
    printf("1..2\n");
    return 0;
}
#endif
