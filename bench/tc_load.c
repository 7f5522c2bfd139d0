/*
 * tc_load.c - tc-load, a load generator for the memcached text protocol
 * (get and set, or with --meta the meta commands mg, ms and mn): options,
 * the phases of a run, and the report.
 *
 * One thread drives every connection through epoll. Each connection keeps
 * up to `depth` requests in flight: whenever it has room (and no write
 * pending) it builds the requests that fit into one buffer and sends them
 * with one write(); replies are read with large reads and every complete
 * reply is checked and counted (load_io.c). A run is a sequence of
 * phases: prefill (a set of every key, in order, over all connections),
 * verify (gets of an evenly spread sample of the keys, which must hit and
 * carry the right values), warm-up (the workload, not counted) and the
 * measured run (a request count, a duration, or both: the first reached
 * ends it; then the requests in flight are drained and counted).
 *
 * Latency is measured per request from the write() that sent it to the
 * read() that brought its reply, both timed once per system call. With
 * pipelining it therefore includes the time a request waits behind the
 * others of its connection's batch, in the server and in the client, as
 * an application pipelining its requests would see it.
 *
 * Throughput is the measured run's completed requests divided by the time
 * from its first write to its last reply.
 *
 * A background group of connections (--bg-conns) can run beside the main
 * one in the same loop: gets of its own key range, uniform, optionally at
 * a fixed rate, counted and timed apart. It is how one measures the
 * latency of one kind of request while another kind loads the server
 * (hot keys beside cold ones) without a second process competing for the
 * client's core: two polling processes on one core would take turns in
 * scheduler slices of milliseconds, and that wait would be measured as
 * the server's latency.
 *
 * By default the loop polls (epoll_wait with a zero timeout) instead of
 * sleeping: tc-load owns its core, and on the virtual machines this runs
 * on, waking a sleeping core costs more than the loopback round trip
 * itself (measured here: one connection without pipelining, 110 us per
 * request sleeping, 35 us polling). Polling takes the client's wake-ups
 * out of what is measured; --no-spin puts them back.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "load.h"

#define LD_MAX_EVENTS 256
#define LD_MAX_CONNS 10000u
#define LD_MAX_DEPTH 65536u
/* Sleeping in epoll_wait (--no-spin), the longest nap: 100 ms, or 1 ms
 * while a background rate needs the loop to come round. */
#define LD_NAP_MS 100
#define LD_NAP_RATE_MS 1

static void ld_usage(FILE *f)
{
    fprintf(f,
"usage: tc-load [options]\n"
"  -s, --server ADDR      IPv4 address of the server (127.0.0.1)\n"
"  -p, --port PORT        its port (11211)\n"
"  -c, --conns N          connections (16)\n"
"  -d, --depth N          requests in flight per connection (16)\n"
"  -n, --requests N       measured requests, over all connections\n"
"  -t, --seconds S        measured duration (5 when neither -n nor -t)\n"
"      --warmup S         run the workload S seconds before measuring\n"
"  -r, --ratio G:S        gets to sets, e.g. 9:1 for 90%% gets (1:0)\n"
"  -k, --keys N           key space: keys 0..N-1 (100000)\n"
"      --key-offset N     shift the key space: keys N..N+k-1 (0)\n"
"  -z, --zipf S           Zipf-distributed keys with skew S; 0 or absent:\n"
"                         uniform. Key 0 is the most popular.\n"
"  -V, --value-size N|A-B value size in bytes, fixed or a range (100)\n"
"      --meta[=q|noq]     speak the meta protocol: gets \"mg <key> k f v\",\n"
"                         sets \"ms <key> <bytes> T0 F<flags>\"; q (the\n"
"                         default) adds q to each and closes every batch\n"
"                         with mn (misses and stored sets answer nothing),\n"
"                         noq expects one reply per request\n"
"      --prefill          first store every key of the key space\n"
"      --verify N         after the prefill, get N keys spread over the\n"
"                         key space and check them (1000; 0: none)\n"
"      --seed N           random seed (1)\n"
"      --timeout S        fail if no reply comes for S seconds (10)\n"
"      --json             print only the JSON line\n"
"      --no-spin          sleep in epoll_wait instead of polling\n"
"Background group (gets beside the workload, counted apart; warm-up and\n"
"run only, not counted in -n):\n"
"      --bg-conns N       its connections (0: none)\n"
"      --bg-depth N       requests in flight per connection (1)\n"
"      --bg-keys N        its key space, uniform (-k)\n"
"      --bg-offset N      its first key (0)\n"
"      --bg-rate R        at most R gets a second over the group\n"
"                         (0: as fast as the replies come)\n"
"  -h, --help\n"
"Keys are \"" KV_KEY_PREFIX "\" and %d zero-padded digits; values are a\n"
"deterministic pattern of the key, checked on every get hit.\n"
"-n 0 with --prefill only prefills. Exit status: 0 ok, 1 errors or wrong\n"
"values, 2 bad usage.\n",
            KV_KEY_DIGITS);
}

static bool ld_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return false;
    *out = v;
    return true;
}

static bool ld_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0)
        return false;
    *out = v;
    return true;
}

static bool ld_parse_ratio(const char *s, unsigned *g, unsigned *st)
{
    unsigned a, b;
    int used = 0;
    if (sscanf(s, "%u:%u%n", &a, &b, &used) != 2 || s[used] != '\0' ||
        a + b == 0 || a > 1000000 || b > 1000000)
        return false;
    *g = a;
    *st = b;
    return true;
}

enum {
    OPT_WARMUP = 256,
    OPT_PREFILL,
    OPT_VERIFY,
    OPT_SEED,
    OPT_TIMEOUT,
    OPT_JSON,
    OPT_NO_SPIN,
    OPT_KEY_OFFSET,
    OPT_META,
    OPT_BG_CONNS,
    OPT_BG_DEPTH,
    OPT_BG_KEYS,
    OPT_BG_OFFSET,
    OPT_BG_RATE
};

/* Fills *o from the command line; returns 0, or 2 for bad usage, or -1
 * when --help was asked. */
static int ld_options(int argc, char **argv, ld_opts *o)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'},
        {"port", required_argument, NULL, 'p'},
        {"conns", required_argument, NULL, 'c'},
        {"depth", required_argument, NULL, 'd'},
        {"requests", required_argument, NULL, 'n'},
        {"seconds", required_argument, NULL, 't'},
        {"ratio", required_argument, NULL, 'r'},
        {"keys", required_argument, NULL, 'k'},
        {"zipf", required_argument, NULL, 'z'},
        {"value-size", required_argument, NULL, 'V'},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"prefill", no_argument, NULL, OPT_PREFILL},
        {"verify", required_argument, NULL, OPT_VERIFY},
        {"seed", required_argument, NULL, OPT_SEED},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"json", no_argument, NULL, OPT_JSON},
        {"no-spin", no_argument, NULL, OPT_NO_SPIN},
        {"key-offset", required_argument, NULL, OPT_KEY_OFFSET},
        {"meta", optional_argument, NULL, OPT_META},
        {"bg-conns", required_argument, NULL, OPT_BG_CONNS},
        {"bg-depth", required_argument, NULL, OPT_BG_DEPTH},
        {"bg-keys", required_argument, NULL, OPT_BG_KEYS},
        {"bg-offset", required_argument, NULL, OPT_BG_OFFSET},
        {"bg-rate", required_argument, NULL, OPT_BG_RATE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool have_n = false, have_t = false, have_bg_keys = false;
    uint64_t v;

    *o = (ld_opts){.host = "127.0.0.1", .port = 11211, .conns = 16,
                   .depth = 16, .keys = 100000, .vmin = 100, .vmax = 100,
                   .ratio_get = 1, .ratio_set = 0, .verify = 1000, .seed = 1,
                   .timeout = 10, .spin = true, .bg_depth = 1};
    int ch;
    while ((ch = getopt_long(argc, argv, "s:p:c:d:n:t:r:k:z:V:h", longopts,
                             NULL)) != -1) {
        bool ok = true;
        switch (ch) {
        case 's':
            o->host = optarg;
            break;
        case 'p':
            ok = ld_parse_u64(optarg, 65535, &v) && v > 0;
            o->port = (unsigned)v;
            break;
        case 'c':
            ok = ld_parse_u64(optarg, LD_MAX_CONNS, &v) && v > 0;
            o->conns = (unsigned)v;
            break;
        case 'd':
            ok = ld_parse_u64(optarg, LD_MAX_DEPTH, &v) && v > 0;
            o->depth = (unsigned)v;
            break;
        case 'n':
            ok = ld_parse_u64(optarg, UINT64_MAX, &o->requests);
            have_n = true;
            break;
        case 't':
            ok = ld_parse_double(optarg, &o->seconds) && o->seconds > 0;
            have_t = true;
            break;
        case 'r':
            ok = ld_parse_ratio(optarg, &o->ratio_get, &o->ratio_set);
            break;
        case 'k':
            ok = ld_parse_u64(optarg, UINT32_MAX, &v) && v > 0;
            o->keys = (uint32_t)v;
            break;
        case 'z':
            ok = ld_parse_double(optarg, &o->skew) && o->skew < 100;
            break;
        case 'V':
            ok = kv_parse_sizes(optarg, &o->vmin, &o->vmax);
            break;
        case OPT_WARMUP:
            ok = ld_parse_double(optarg, &o->warmup);
            break;
        case OPT_PREFILL:
            o->prefill = true;
            break;
        case OPT_VERIFY:
            ok = ld_parse_u64(optarg, UINT32_MAX, &v);
            o->verify = (uint32_t)v;
            break;
        case OPT_SEED:
            ok = ld_parse_u64(optarg, UINT64_MAX, &o->seed);
            break;
        case OPT_TIMEOUT:
            ok = ld_parse_double(optarg, &o->timeout) && o->timeout > 0;
            break;
        case OPT_JSON:
            o->json_only = true;
            break;
        case OPT_NO_SPIN:
            o->spin = false;
            break;
        case OPT_KEY_OFFSET:
            ok = ld_parse_u64(optarg, UINT32_MAX, &v);
            o->key_offset = (uint32_t)v;
            break;
        case OPT_META:
            if (optarg == NULL || strcmp(optarg, "q") == 0)
                o->proto = LD_META_QUIET;
            else if (strcmp(optarg, "noq") == 0)
                o->proto = LD_META;
            else
                ok = false;
            break;
        case OPT_BG_CONNS:
            ok = ld_parse_u64(optarg, LD_MAX_CONNS, &v);
            o->bg_conns = (unsigned)v;
            break;
        case OPT_BG_DEPTH:
            ok = ld_parse_u64(optarg, LD_MAX_DEPTH, &v) && v > 0;
            o->bg_depth = (unsigned)v;
            break;
        case OPT_BG_KEYS:
            ok = ld_parse_u64(optarg, UINT32_MAX, &v) && v > 0;
            o->bg_keys = (uint32_t)v;
            have_bg_keys = true;
            break;
        case OPT_BG_OFFSET:
            ok = ld_parse_u64(optarg, UINT32_MAX, &v);
            o->bg_offset = (uint32_t)v;
            break;
        case OPT_BG_RATE:
            ok = ld_parse_double(optarg, &o->bg_rate);
            break;
        case 'h':
            return -1;
        default:
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "tc-load: bad value for -%c: %s\n",
                    ch < 256 ? ch : '-', optarg ? optarg : "");
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "tc-load: unexpected argument %s\n", argv[optind]);
        return 2;
    }
    if (!have_bg_keys)
        o->bg_keys = o->keys;
    if ((uint64_t)o->key_offset + o->keys - 1 > UINT32_MAX ||
        (uint64_t)o->bg_offset + o->bg_keys - 1 > UINT32_MAX) {
        fprintf(stderr, "tc-load: key numbers go past %" PRIu32 "\n",
                UINT32_MAX);
        return 2;
    }
    if (o->conns + o->bg_conns > LD_MAX_CONNS) {
        fprintf(stderr, "tc-load: more than %u connections in all\n",
                LD_MAX_CONNS);
        return 2;
    }
    if (!have_n && !have_t)
        o->seconds = 5;
    if (o->requests == 0 && o->seconds == 0 && !o->prefill) {
        fprintf(stderr, "tc-load: -n 0 needs --prefill (fill only) or -t\n");
        return 2;
    }
    if (!o->prefill)
        o->verify = 0;
    if (o->verify > o->keys)
        o->verify = o->keys;
    return 0;
}

bool ld_next(ld *L, uint32_t *key, int *op)
{
    if (L->to_issue == 0)
        return false;
    switch (L->phase) {
    case LD_PREFILL:
        *key = L->o.key_offset + L->seq++;
        *op = LD_SET;
        break;
    case LD_VERIFY:
        *key = L->o.key_offset + L->seq;
        L->seq += L->verify_step;
        *op = LD_GET;
        break;
    default: {
        uint64_t draw = L->ahead[L->ahead_pos];
        uint64_t next = rng_next(&L->r);
        dist_prefetch(&L->d, next);
        L->ahead[L->ahead_pos] = next;
        L->ahead_pos = (L->ahead_pos + 1) % LD_AHEAD;
        *key = L->o.key_offset + dist_pick(&L->d, draw);
        if (L->get_threshold == 0)
            *op = LD_SET;
        else if (L->get_threshold == UINT32_MAX)
            *op = LD_GET;
        else
            *op = (uint32_t)rng_next(&L->r) < L->get_threshold ? LD_GET
                                                                 : LD_SET;
        break;
    }
    }
    if (L->to_issue != UINT64_MAX)
        L->to_issue--;
    return true;
}

bool ld_next_bg(ld *L, uint64_t now, uint32_t *key)
{
    if (L->phase != LD_WARMUP && L->phase != LD_RUN)
        return false;
    if (ld_allowance(L->o.bg_rate, now - L->phase_start_ns,
                     L->bg_issued) == 0)
        return false;
    *key = L->o.bg_offset + rng_below(rng_next(&L->bg_r), L->o.bg_keys);
    L->bg_issued++;
    return true;
}

/* Gives the background group's connections their due requests, when its
 * rate holds them back (replies alone would not bring them round). */
static void ld_fill_bg(ld *L, uint64_t now)
{
    if (L->o.bg_rate <= 0 || !L->issuing ||
        ld_allowance(L->o.bg_rate, now - L->phase_start_ns,
                     L->bg_issued) == 0)
        return;
    for (unsigned i = L->o.conns; i < L->o.conns + L->o.bg_conns; i++)
        ld_fill(L, &L->conns[i]);
}

static void ld_begin(ld *L, int phase, uint64_t count)
{
    L->phase = phase;
    L->to_issue = count;
    L->issuing = count > 0;
    L->seq = 0;
    L->last_progress_ns = ld_now();
    L->phase_start_ns = L->last_progress_ns;
    L->bg_issued = 0;
    if (phase == LD_RUN) {
        L->run_start_ns = L->last_progress_ns;
        L->run_end_ns = L->run_start_ns;
    }
    for (unsigned i = 0; i < L->o.conns + L->o.bg_conns; i++)
        ld_fill(L, &L->conns[i]);
}

/*
 * Runs the current phase until it has issued everything and every reply
 * is in, or, when until_ns is not 0, until that time (then it stops
 * issuing, and drains unless keep_going). Returns false if the run must
 * end: every connection lost, or no reply for the timeout.
 */
static bool ld_pump(ld *L, uint64_t until_ns, bool keep_going)
{
    struct epoll_event ev[LD_MAX_EVENTS];
    uint64_t timeout_ns = (uint64_t)(L->o.timeout * 1e9);

    for (;;) {
        if (L->live_conns == 0) {
            ld_note(L, "every connection was lost");
            return false;
        }
        if (!L->issuing && L->inflight == 0)
            return true;
        uint64_t t0 = ld_now();
        int n = epoll_wait(L->ep, ev, LD_MAX_EVENTS,
                           L->o.spin ? 0 :
                           L->o.bg_rate > 0 ? LD_NAP_RATE_MS : LD_NAP_MS);
        L->n_polls++;
        if (n < 0 && errno != EINTR) {
            ld_error(L, L->phase, false, "epoll_wait: %s", strerror(errno));
            return false;
        }
        /* Time spent waiting for the server: polls that found nothing, or
         * any sleep in epoll_wait. */
        if (L->phase == LD_RUN && (n <= 0 || !L->o.spin))
            L->idle_ns += ld_now() - t0;
        for (int i = 0; i < n; i++) {
            ld_conn *c = ev[i].data.ptr;
            if (c->dead)
                continue;
            if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                ld_read(L, c);
            if (!c->dead && (ev[i].events & EPOLLOUT))
                ld_flush(L, c);
        }
        uint64_t now = ld_now();
        if (until_ns != 0 && now >= until_ns) {
            if (keep_going)
                return true;
            L->issuing = false;
        }
        if (L->to_issue == 0)
            L->issuing = false;
        /* Refill after the whole batch of events, so that the requests of
         * connections answered together go out together. */
        for (int i = 0; i < n; i++)
            ld_fill(L, ev[i].data.ptr);
        ld_fill_bg(L, now);
        if (L->inflight > 0 && now - L->last_progress_ns > timeout_ns) {
            ld_error(L, L->phase, false,
                     "no reply for %.1f s with %" PRIu64 " requests in flight",
                     L->o.timeout, L->inflight);
            return false;
        }
    }
}

/* A counter summed over the phases, both groups. */
static uint64_t ld_sum(const ld *L, size_t field)
{
    uint64_t s = 0;
    for (int p = 0; p < LD_PHASES; p++) {
        s += *(const uint64_t *)((const char *)&L->cnt[p] + field);
        s += *(const uint64_t *)((const char *)&L->bg_cnt[p] + field);
    }
    return s;
}

static double ld_us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static const char *ld_proto_name(int proto)
{
    return proto == LD_META_QUIET ? "meta-q" : proto == LD_META ? "meta-noq"
                                                                : "text";
}

static void ld_report(const ld *L, bool completed)
{
    const ld_opts *o = &L->o;
    const ld_counts *run = &L->cnt[LD_RUN];
    const ld_counts *pre = &L->cnt[LD_PREFILL];
    const ld_counts *ver = &L->cnt[LD_VERIFY];
    const ld_counts *bg = &L->bg_cnt[LD_RUN];
    uint64_t ops = run->gets + run->sets;
    double secs = (double)(L->run_end_ns - L->run_start_ns) / 1e9;
    double rate = secs > 0 ? (double)ops / secs : 0;
    double bg_rate = secs > 0 ? (double)bg->gets / secs : 0;
    double pre_secs = (double)L->prefill_ns / 1e9;
    uint64_t errors = ld_sum(L, offsetof(ld_counts, errors));
    uint64_t wrong = ld_sum(L, offsetof(ld_counts, wrong));
    uint64_t proto = ld_sum(L, offsetof(ld_counts, proto_errors));
    char dist_name[32];

    if (o->skew > 0)
        snprintf(dist_name, sizeof(dist_name), "zipf %.2f", o->skew);
    else
        snprintf(dist_name, sizeof(dist_name), "uniform");

    if (!o->json_only) {
        printf("tc-load: %s:%u, %u conns x depth %u, %" PRIu32 " keys %s "
               "from key %" PRIu32 ", values %" PRIu32 "-%" PRIu32
               " bytes, gets:sets %u:%u, seed %" PRIu64 ", protocol %s\n",
               o->host, o->port, o->conns, o->depth, o->keys, dist_name,
               o->key_offset, o->vmin, o->vmax, o->ratio_get, o->ratio_set,
               o->seed, ld_proto_name(o->proto));
        if (o->prefill)
            printf("prefill: %" PRIu64 " sets in %.2f s (%.0f/s), %" PRIu64
                   " stored, %" PRIu64 " errors; verify: %" PRIu64
                   " of %" PRIu64 " found, %" PRIu64 " wrong\n",
                   pre->sets, pre_secs,
                   pre_secs > 0 ? (double)pre->sets / pre_secs : 0,
                   pre->stored, pre->errors, ver->hits,
                   ver->gets, ver->wrong);
        printf("run: %" PRIu64 " ops in %.3f s: %.0f ops/s\n", ops, secs,
               rate);
        printf("  gets %" PRIu64 " (hits %" PRIu64 ", misses %" PRIu64
               "), sets %" PRIu64 " (stored %" PRIu64 ")\n",
               run->gets, run->hits, run->misses, run->sets, run->stored);
        printf("  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  "
               "max %.1f  mean %.1f\n",
               ld_us(hist_quantile(&L->lat, 0.5)),
               ld_us(hist_quantile(&L->lat, 0.9)),
               ld_us(hist_quantile(&L->lat, 0.99)),
               ld_us(hist_quantile(&L->lat, 0.999)), ld_us(L->lat.max),
               L->lat.count ? ld_us(L->lat.sum / L->lat.count) : 0);
        if (o->bg_conns > 0)
            printf("  background: %u conns x depth %u, gets of %" PRIu32
                   " keys from key %" PRIu32 " uniform, rate %s%.0f/s: %"
                   PRIu64 " gets (%.0f/s; hits %" PRIu64 ", misses %" PRIu64
                   "), latency us: p50 %.1f  p99 %.1f  p99.9 %.1f  "
                   "max %.1f\n",
                   o->bg_conns, o->bg_depth, o->bg_keys, o->bg_offset,
                   o->bg_rate > 0 ? "" : "unlimited, got ",
                   o->bg_rate > 0 ? o->bg_rate : bg_rate, bg->gets, bg_rate,
                   bg->hits, bg->misses,
                   ld_us(hist_quantile(&L->bg_lat, 0.5)),
                   ld_us(hist_quantile(&L->bg_lat, 0.99)),
                   ld_us(hist_quantile(&L->bg_lat, 0.999)),
                   ld_us(L->bg_lat.max));
        printf("  tc-load idle (waiting for replies): %.1f%% of the run\n",
               secs > 0 ? (double)L->idle_ns / 1e7 / secs : 0);
        printf("  system calls (all phases): %" PRIu64 " writes, %" PRIu64
               " reads, %" PRIu64 " polls\n", L->n_writes, L->n_reads,
               L->n_polls);
        printf("  errors %" PRIu64 " (protocol %" PRIu64 "), wrong values %"
               PRIu64 "%s\n", errors, proto, wrong,
               completed ? "" : ", run ended early");
        if (L->first_error[0] != '\0')
            printf("  first problem: %s\n", L->first_error);
    }
    printf("{\"tool\":\"tc-load\",\"server\":\"%s:%u\",\"conns\":%u,"
           "\"depth\":%u,\"keys\":%" PRIu32 ",\"zipf\":%.3f,"
           "\"value_min\":%" PRIu32 ",\"value_max\":%" PRIu32 ","
           "\"ratio_get\":%u,\"ratio_set\":%u,\"seed\":%" PRIu64 ","
           "\"proto\":\"%s\","
           "\"completed\":%s,\"seconds\":%.6f,\"ops\":%" PRIu64 ","
           "\"ops_per_sec\":%.1f,\"gets\":%" PRIu64 ",\"sets\":%" PRIu64 ","
           "\"hits\":%" PRIu64 ",\"misses\":%" PRIu64 ",\"stored\":%" PRIu64
           ",\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,"
           "\"p999_us\":%.2f,\"max_us\":%.2f,\"mean_us\":%.2f,"
           "\"errors\":%" PRIu64 ",\"protocol_errors\":%" PRIu64 ","
           "\"wrong_values\":%" PRIu64 ",\"prefill_sets\":%" PRIu64 ","
           "\"prefill_stored\":%" PRIu64 ",\"prefill_seconds\":%.6f,"
           "\"verify_gets\":%" PRIu64 ",\"verify_hits\":%" PRIu64 ","
           "\"client_idle_pct\":%.1f,\"key_offset\":%" PRIu32 ","
           "\"bg_conns\":%u,\"bg_depth\":%u,\"bg_keys\":%" PRIu32 ","
           "\"bg_offset\":%" PRIu32 ",\"bg_rate\":%.1f,"
           "\"bg_gets\":%" PRIu64 ",\"bg_hits\":%" PRIu64 ","
           "\"bg_misses\":%" PRIu64 ",\"bg_ops_per_sec\":%.1f,"
           "\"bg_p50_us\":%.2f,\"bg_p99_us\":%.2f,\"bg_p999_us\":%.2f,"
           "\"bg_max_us\":%.2f}\n",
           o->host, o->port, o->conns, o->depth, o->keys, o->skew, o->vmin,
           o->vmax, o->ratio_get, o->ratio_set, o->seed,
           ld_proto_name(o->proto), completed ? "true" : "false", secs, ops,
           rate, run->gets, run->sets, run->hits, run->misses, run->stored,
           ld_us(hist_quantile(&L->lat, 0.5)),
           ld_us(hist_quantile(&L->lat, 0.9)),
           ld_us(hist_quantile(&L->lat, 0.99)),
           ld_us(hist_quantile(&L->lat, 0.999)), ld_us(L->lat.max),
           L->lat.count ? ld_us(L->lat.sum / L->lat.count) : 0, errors,
           proto, wrong, pre->sets, pre->stored, pre_secs, ver->gets,
           ver->hits, secs > 0 ? (double)L->idle_ns / 1e7 / secs : 0,
           o->key_offset, o->bg_conns, o->bg_depth, o->bg_keys, o->bg_offset,
           o->bg_rate, bg->gets, bg->hits, bg->misses, bg_rate,
           ld_us(hist_quantile(&L->bg_lat, 0.5)),
           ld_us(hist_quantile(&L->bg_lat, 0.99)),
           ld_us(hist_quantile(&L->bg_lat, 0.999)), ld_us(L->bg_lat.max));
    fflush(stdout);
}

/* Runs the phases; false if the run ended early. */
static bool ld_run(ld *L)
{
    const ld_opts *o = &L->o;

    if (o->prefill) {
        uint64_t t0 = ld_now();
        ld_begin(L, LD_PREFILL, o->keys);
        if (!ld_pump(L, 0, false))
            return false;
        L->prefill_ns = ld_now() - t0;
    }
    if (o->verify > 0) {
        L->verify_step = o->keys / o->verify;
        ld_begin(L, LD_VERIFY, o->verify);
        if (!ld_pump(L, 0, false))
            return false;
    }
    if (o->warmup > 0) {
        ld_begin(L, LD_WARMUP, UINT64_MAX);
        if (!ld_pump(L, ld_now() + (uint64_t)(o->warmup * 1e9), true))
            return false;
    }
    if (o->prefill && o->requests == 0 && o->seconds == 0)
        return true;
    ld_begin(L, LD_RUN, o->requests > 0 ? o->requests : UINT64_MAX);
    uint64_t until = o->seconds > 0 ?
                     L->run_start_ns + (uint64_t)(o->seconds * 1e9) : 0;
    return ld_pump(L, until, false);
}

int main(int argc, char **argv)
{
    int rc = 2;
    ld *L = calloc(1, sizeof(*L));
    if (L == NULL) {
        fprintf(stderr, "tc-load: out of memory\n");
        return 1;
    }
    L->ep = -1;

    int st = ld_options(argc, argv, &L->o);
    if (st != 0) {
        ld_usage(st < 0 ? stdout : stderr);
        rc = st < 0 ? 0 : 2;
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    rc = 1;
    hist_reset(&L->lat);
    hist_reset(&L->bg_lat);
    rng_seed(&L->r, L->o.seed);
    /* Another stream for the background group, so that adding it leaves
     * the main group's keys as they were. */
    rng_seed(&L->bg_r, ~L->o.seed);
    for (unsigned i = 0; i < LD_AHEAD; i++)
        L->ahead[i] = rng_next(&L->r);
    {
        uint64_t total = (uint64_t)L->o.ratio_get + L->o.ratio_set;
        uint64_t thr = ((uint64_t)L->o.ratio_get << 32) / total;
        L->get_threshold = thr > UINT32_MAX ? UINT32_MAX : (uint32_t)thr;
        if (L->o.ratio_set == 0)
            L->get_threshold = UINT32_MAX;
    }
    if (!kv_values_init(&L->kv, L->o.vmin, L->o.vmax) ||
        !dist_init(&L->d, L->o.keys, L->o.skew)) {
        fprintf(stderr, "tc-load: out of memory\n");
        goto out;
    }
    L->ep = epoll_create1(EPOLL_CLOEXEC);
    if (L->ep < 0) {
        fprintf(stderr, "tc-load: epoll_create1: %s\n", strerror(errno));
        goto out;
    }
    if (!ld_connect_all(L)) {
        fprintf(stderr, "tc-load: %s\n", L->first_error);
        goto out;
    }

    bool completed = ld_run(L);
    ld_report(L, completed);
    uint64_t bad = ld_sum(L, offsetof(ld_counts, errors)) +
                   ld_sum(L, offsetof(ld_counts, wrong));
    if (!completed && L->first_error[0] != '\0')
        fprintf(stderr, "tc-load: %s\n", L->first_error);
    rc = completed && bad == 0 ? 0 : 1;
out:
    ld_conns_free(L);
    if (L->ep >= 0)
        close(L->ep);
    dist_free(&L->d);
    kv_values_free(&L->kv);
    free(L);
    return rc;
}
