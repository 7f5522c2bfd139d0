/*
 * settings.h - tiercached's command line.
 *
 * Flags follow memcached where it has them (-p -l -m -c -t -I -v -U), so
 * an existing memcached command line works unchanged (UDP only as -U 0).
 */
#ifndef TC_SETTINGS_H
#define TC_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv_settings {
    int port;             /* -p */
    char listen[256];     /* -l: comma-separated addresses */
    size_t mem_limit;     /* -m, in bytes */
    unsigned max_conns;   /* -c */
    unsigned threads;     /* -t */
    size_t item_size_max; /* -I */
    int verbose;          /* -v, -vv */
    bool debug_defer;     /* --debug-defer: see tc_config.debug_defer */
    /* The disk tier (tc_config). */
    char dir[4096];       /* --dir; empty with --memory-only */
    uint64_t disk_size;   /* --disk-size */
    int durability;       /* --durability: a tc_durability */
    unsigned flush_ms;    /* --flush-ms */
    int compress_level;   /* --compress-level */
    char io_backend[16];  /* --io-backend: auto, io_uring, threads */
    int direct_writes;    /* --direct-writes: a tc_direct */
    int warm;             /* --warm: a tc_warm */
    unsigned hot_snapshot_s; /* --hot-snapshot-s */
} srv_settings;

typedef enum srv_parse_result {
    SRV_PARSE_RUN,  /* settings are ready */
    SRV_PARSE_EXIT, /* --help or --version printed; exit 0 */
    SRV_PARSE_FAIL, /* error printed to stderr; exit 1 */
} srv_parse_result;

void srv_settings_init(srv_settings *s);
srv_parse_result srv_settings_parse(srv_settings *s, int argc, char **argv);

#endif /* TC_SETTINGS_H */
