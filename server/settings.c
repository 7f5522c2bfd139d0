/*
 * settings.c - tiercached's command line (see settings.h).
 */
#include "settings.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tiercache.h"

#define SRV_MAX_THREADS 256
#define SRV_MAX_CONNS 1000000u
#define SRV_ITEM_MIN 1024u
#define SRV_ITEM_MAX ((size_t)1024 * 1024 * 1024)

enum {
    OPT_DEBUG_DEFER = 256,
    OPT_DIR,
    OPT_MEMORY_ONLY,
    OPT_DISK_SIZE,
    OPT_DURABILITY,
    OPT_FLUSH_MS,
    OPT_COMPRESS,
    OPT_IO_BACKEND,
    OPT_DIRECT_WRITES,
    OPT_WARM,
    OPT_HOT_SNAPSHOT,
};

static const struct option srv_options[] = {
    {"port", required_argument, NULL, 'p'},
    {"listen", required_argument, NULL, 'l'},
    {"memory-limit", required_argument, NULL, 'm'},
    {"conn-limit", required_argument, NULL, 'c'},
    {"threads", required_argument, NULL, 't'},
    {"max-item-size", required_argument, NULL, 'I'},
    {"udp-port", required_argument, NULL, 'U'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {"debug-defer", no_argument, NULL, OPT_DEBUG_DEFER},
    {"dir", required_argument, NULL, OPT_DIR},
    {"memory-only", no_argument, NULL, OPT_MEMORY_ONLY},
    {"disk-size", required_argument, NULL, OPT_DISK_SIZE},
    {"durability", required_argument, NULL, OPT_DURABILITY},
    {"flush-ms", required_argument, NULL, OPT_FLUSH_MS},
    {"compress-level", required_argument, NULL, OPT_COMPRESS},
    {"io-backend", required_argument, NULL, OPT_IO_BACKEND},
    {"direct-writes", required_argument, NULL, OPT_DIRECT_WRITES},
    {"warm", required_argument, NULL, OPT_WARM},
    {"hot-snapshot-s", required_argument, NULL, OPT_HOT_SNAPSHOT},
    {NULL, 0, NULL, 0},
};

static void srv_usage(FILE *f)
{
    fprintf(f,
        "Usage: tiercached [options]\n"
        "\n"
        "A memcached-compatible cache server (text protocol over TCP).\n"
        "\n"
        "  -p, --port=NUM           TCP port to listen on (default 11211)\n"
        "  -l, --listen=ADDR        addresses to listen on, comma-separated\n"
        "                           (default 127.0.0.1)\n"
        "  -m, --memory-limit=MB    memory for items, in MiB (default 64)\n"
        "  -c, --conn-limit=NUM     most simultaneous connections (default 1024)\n"
        "  -t, --threads=NUM        worker threads (default 2)\n"
        "  -I, --max-item-size=SIZE largest value, bytes with optional k or m\n"
        "                           suffix (default 1m, at least 1k, at most\n"
        "                           half of -m)\n"
        "  -U, --udp-port=0         UDP is not supported: only 0 is accepted\n"
        "  -v, --verbose            log connections and errors; -vv logs every\n"
        "                           command\n"
        "\n"
        "Disk tier (the cache survives restarts and crashes):\n"
        "      --dir=PATH           data directory, created if missing\n"
        "                           (default ./tiercache-data)\n"
        "      --memory-only        no data directory: memory only, like memcached\n"
        "                           (of it and --dir, the last one given wins)\n"
        "      --disk-size=SIZE     bytes the directory may hold, with k, m or g\n"
        "                           (default 1g); the oldest data goes first\n"
        "      --durability=MODE    async (default): synced every --flush-ms;\n"
        "                           sync: replies wait for the data to be on\n"
        "                           stable storage; none: never synced\n"
        "      --flush-ms=MS        async: sync period (default 100)\n"
        "      --compress-level=N   zstd level for values on disk, 0 = off\n"
        "                           (default 1)\n"
        "      --io-backend=NAME    io_uring, threads or auto (default auto:\n"
        "                           io_uring where the system allows it)\n"
        "      --direct-writes=MODE auto (default): the journal writes a\n"
        "                           segment with O_DIRECT, not through the\n"
        "                           page cache, when its records average\n"
        "                           2 KiB or more; on: always; off: never\n"
        "      --warm=MODE          after a start, preload into memory in the\n"
        "                           background: hot (default) the snapshot of\n"
        "                           hot keys; all: that, or the newest data\n"
        "                           when there is no snapshot; off: nothing\n"
        "      --hot-snapshot-s=N   seconds between hot-key snapshots (default\n"
        "                           60; 0: only at shutdown)\n"
        "      --debug-defer        testing aid: complete every engine call\n"
        "                           asynchronously, as a disk read would\n"
        "  -h, --help               this help\n"
        "  -V, --version            print the version and exit\n");
}

static bool parse_ulong(const char *s, unsigned long long min,
                        unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* The position of s among the three words of a choice, or -1. */
static int parse_word(const char *s, const char *const words[3])
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, words[i]) == 0)
            return i;
    return -1;
}

/* A size in bytes with an optional k or m suffix (memcached's -I). */
static bool parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mult = 1;
    if (errno != 0)
        return false;
    if (*end == 'k' || *end == 'K') {
        mult = 1024;
        end++;
    } else if (*end == 'm' || *end == 'M') {
        mult = 1024 * 1024;
        end++;
    } else if (*end == 'g' || *end == 'G') {
        v *= 1024ULL * 1024 * 1024;
        end++;
    }
    if (v > ULLONG_MAX / mult)
        return false;
    v *= mult;
    if (*end != '\0' || v > SIZE_MAX)
        return false;
    *out = (size_t)v;
    return true;
}

void srv_settings_init(srv_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->port = 11211;
    snprintf(s->listen, sizeof(s->listen), "127.0.0.1");
    s->mem_limit = (size_t)64 * 1024 * 1024;
    s->max_conns = 1024;
    s->threads = 2;
    s->item_size_max = (size_t)1024 * 1024;
    snprintf(s->dir, sizeof(s->dir), "./tiercache-data");
    s->disk_size = (uint64_t)1 << 30;
    s->durability = TC_DURABILITY_ASYNC;
    s->flush_ms = 100;
    s->compress_level = 1;
    snprintf(s->io_backend, sizeof(s->io_backend), "auto");
    s->direct_writes = TC_DIRECT_AUTO;
    s->warm = TC_WARM_HOT;
    s->hot_snapshot_s = 60;
}

static srv_parse_result srv_bad(const char *opt, const char *arg,
                                const char *why)
{
    fprintf(stderr, "tiercached: invalid %s '%s': %s\n", opt, arg, why);
    return SRV_PARSE_FAIL;
}

srv_parse_result srv_settings_parse(srv_settings *s, int argc, char **argv)
{
    unsigned long long v;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "p:l:m:c:t:I:U:vhV", srv_options,
                            NULL)) != -1) {
        switch (c) {
        case 'p':
            if (!parse_ulong(optarg, 1, 65535, &v))
                return srv_bad("-p", optarg, "a port is 1..65535");
            s->port = (int)v;
            break;
        case 'l':
            if (strlen(optarg) >= sizeof(s->listen))
                return srv_bad("-l", optarg, "too long");
            snprintf(s->listen, sizeof(s->listen), "%s", optarg);
            break;
        case 'm':
            if (!parse_ulong(optarg, 1, (unsigned long long)SIZE_MAX >> 20, &v))
                return srv_bad("-m", optarg, "give MiB, at least 1");
            s->mem_limit = (size_t)v << 20;
            break;
        case 'c':
            if (!parse_ulong(optarg, 1, SRV_MAX_CONNS, &v))
                return srv_bad("-c", optarg, "give 1..1000000");
            s->max_conns = (unsigned)v;
            break;
        case 't':
            if (!parse_ulong(optarg, 1, SRV_MAX_THREADS, &v))
                return srv_bad("-t", optarg, "give 1..256");
            s->threads = (unsigned)v;
            break;
        case 'I':
            if (!parse_size(optarg, &s->item_size_max) ||
                s->item_size_max < SRV_ITEM_MIN ||
                s->item_size_max > SRV_ITEM_MAX)
                return srv_bad("-I", optarg, "give 1k..1024m");
            break;
        case 'U':
            if (strcmp(optarg, "0") != 0)
                return srv_bad("-U", optarg, "UDP is not supported; use -U 0");
            break;
        case 'v':
            s->verbose++;
            break;
        case OPT_DEBUG_DEFER:
            s->debug_defer = true;
            break;
        case OPT_DIR:
            if (optarg[0] == '\0' || strlen(optarg) >= sizeof(s->dir))
                return srv_bad("--dir", optarg, "give a path");
            snprintf(s->dir, sizeof(s->dir), "%s", optarg);
            break;
        case OPT_MEMORY_ONLY:
            s->dir[0] = '\0';
            break;
        case OPT_DISK_SIZE: {
            size_t v2;
            if (!parse_size(optarg, &v2) || v2 < ((size_t)1 << 20))
                return srv_bad("--disk-size", optarg, "give 1m or more");
            s->disk_size = v2;
            break;
        }
        case OPT_DURABILITY: {
            static const char *const w[3] = {"async", "sync", "none"};
            static const tc_durability m[3] = {
                TC_DURABILITY_ASYNC, TC_DURABILITY_SYNC, TC_DURABILITY_NONE};
            int i = parse_word(optarg, w);
            if (i < 0)
                return srv_bad("--durability", optarg,
                               "give async, sync or none");
            s->durability = m[i];
            break;
        }
        case OPT_FLUSH_MS:
            if (!parse_ulong(optarg, 1, 60000, &v))
                return srv_bad("--flush-ms", optarg, "give 1..60000");
            s->flush_ms = (unsigned)v;
            break;
        case OPT_COMPRESS:
            if (!parse_ulong(optarg, 0, 22, &v))
                return srv_bad("--compress-level", optarg, "give 0..22");
            s->compress_level = (int)v;
            break;
        case OPT_IO_BACKEND:
            if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "io_uring") != 0 &&
                strcmp(optarg, "threads") != 0)
                return srv_bad("--io-backend", optarg,
                               "give io_uring, threads or auto");
            snprintf(s->io_backend, sizeof(s->io_backend), "%s", optarg);
            break;
        case OPT_DIRECT_WRITES: {
            static const char *const w[3] = {"auto", "on", "off"};
            static const tc_direct m[3] = {TC_DIRECT_AUTO, TC_DIRECT_ON,
                                           TC_DIRECT_OFF};
            int i = parse_word(optarg, w);
            if (i < 0)
                return srv_bad("--direct-writes", optarg,
                               "give auto, on or off");
            s->direct_writes = m[i];
            break;
        }
        case OPT_WARM: {
            static const char *const w[3] = {"off", "hot", "all"};
            static const tc_warm m[3] = {TC_WARM_OFF, TC_WARM_HOT,
                                         TC_WARM_ALL};
            int i = parse_word(optarg, w);
            if (i < 0)
                return srv_bad("--warm", optarg, "give off, hot or all");
            s->warm = m[i];
            break;
        }
        case OPT_HOT_SNAPSHOT:
            if (!parse_ulong(optarg, 0, 86400, &v))
                return srv_bad("--hot-snapshot-s", optarg, "give 0..86400");
            s->hot_snapshot_s = (unsigned)v;
            break;
        case 'h':
            srv_usage(stdout);
            return SRV_PARSE_EXIT;
        case 'V':
            printf("tiercached %s\n", TC_VERSION_STRING);
            return SRV_PARSE_EXIT;
        default:
            srv_usage(stderr);
            return SRV_PARSE_FAIL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tiercached: unexpected argument '%s'\n", argv[optind]);
        return SRV_PARSE_FAIL;
    }
    if (s->item_size_max > s->mem_limit / 2) {
        fprintf(stderr, "tiercached: -I %zu is more than half of -m (%zu MiB)\n",
                s->item_size_max, s->mem_limit >> 20);
        return SRV_PARSE_FAIL;
    }
    return SRV_PARSE_RUN;
}
