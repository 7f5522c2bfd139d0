/*
 * powercut.c - the durability promises under a simulated power cut.
 *
 * kill -9 keeps the page cache, so it cannot catch a missing fdatasync.
 * Here a child process runs the engine with the I/O layer's power-cut
 * simulation on (io.h: io_sim_enable), writes from several threads, and
 * at a random moment cuts the power: every write not yet fdatasynced is
 * undone on the real files, as a machine losing power would leave them,
 * and the child dies at once. The parent then opens the directory
 * (recovery) and checks, key by key, against what the child's writers
 * were told (acknowledged) and when:
 *   sync   every acknowledged write is there (or a newer one);
 *   async  every write acknowledged more than flush_ms before the cut,
 *          plus the time a sync takes (the slowest fdatasync the child
 *          saw, stats fsync_us_max, or the one running at the cut,
 *          fsync_running_us, and 150 ms of slack), is there, also with a
 *          disk far slower than the writers (io_sim_slow_writes);
 *   none   nothing is promised but this:
 *   all    every value read back is one that was written for that key,
 *          whole (never a wrong or torn value).
 * Each mode runs on both I/O backends, several rounds each (two of them
 * with the journal written with O_DIRECT) with a fresh
 * directory and a random cut time (the seed is printed; FUZZ_SEED-style
 * repetition: POWERCUT_SEED=n).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "tiercache.h"

#define WRITERS 5 /* the last one writes a few keys, slowly */
#define KEYS_PER_WRITER 200
#define TRICKLE_KEYS 10
#define KEYS (WRITERS * KEYS_PER_WRITER)
#define FLUSH_MS 50
#define ROUNDS 3
#define SWEEPS 8192 /* versions remembered per writer */
#define SLOW_BPS 1500000 /* the slow disk's rounds: 1.5 MB/s */

/* What the writers were told, in memory shared with the parent. */
typedef struct shared {
    _Atomic uint32_t tried[KEYS];  /* highest version a store was started for */
    _Atomic uint32_t acked[KEYS];  /* highest version acknowledged */
    /* When each writer finished a sweep of its keys with version v (all
     * acknowledged), us; 0 when it did not. */
    _Atomic uint64_t sweep_at[WRITERS][SWEEPS];
    _Atomic uint64_t cut_at;       /* when the power was cut, us */
    _Atomic uint64_t fsync_max_us; /* the slowest fdatasync before it */
    _Atomic int stop;
} shared;

static shared *sh;
static char dir[256];
static const char *backend;
static tc_durability mode;
static bool light; /* only the trickle writer runs */
static tc_direct direct; /* how the journal writes (TC_DIRECT_ON: O_DIRECT) */
/* The journal writes at this many bytes/s (io_sim_slow_writes; 0: the
 * disk's speed): clients far faster than the disk, whose changes must
 * still not wait past the async promise to be written. */
static uint64_t slow_bps;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The value of version v of key k: its size and bytes depend on both, so a
 * value of another key or version, or a torn one, is recognised. */
static size_t make_value(unsigned k, uint32_t v, char *buf)
{
    size_t len = 64 + (k * 131 + v * 17) % 1500;
    uint64_t x = ((uint64_t)k << 32 | v) * UINT64_C(0x9e3779b97f4a7c15) + 7;
    int head = snprintf(buf, len, "k%u v%u ", k, v);
    for (size_t i = (size_t)head; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (char)('a' + x % 26);
    }
    return len;
}

static void key_of(unsigned k, char *buf)
{
    snprintf(buf, 32, "pc:%u", k);
}

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
            struct stat sb;
            if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
                rm_rf(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(path);
}

static tc_status open_engine(tc_engine **e, char *why, size_t why_len)
{
    tc_config cfg;
    tc_config_init(&cfg);
    cfg.dir = dir;
    cfg.durability = mode;
    cfg.flush_ms = FLUSH_MS;
    cfg.io_backend = backend;
    cfg.direct_writes = direct;
    cfg.mem_limit = 8 << 20;
    cfg.disk_size = (uint64_t)256 << 20;
    cfg.errbuf = why;
    cfg.errbuf_len = why_len;
    return tc_open(&cfg, e);
}

/* How many of its KEYS_PER_WRITER keys writer w writes. */
static unsigned writer_keys(unsigned w)
{
    return w == WRITERS - 1 ? TRICKLE_KEYS : KEYS_PER_WRITER;
}

typedef struct writer_arg {
    tc_engine *e;
    unsigned id;
} writer_arg;

static void *writer(void *arg)
{
    writer_arg *w = arg;
    char key[32], val[2048];
    /* The trickle writer: the journal must not wait for a batch to fill
     * before it writes (and syncs) a record. */
    bool trickle = w->id == WRITERS - 1;
    unsigned nkeys = writer_keys(w->id);
    for (uint32_t version = 1; !atomic_load(&sh->stop); version++) {
        bool all = true;
        for (unsigned i = 0; i < nkeys; i++) {
            if (trickle)
                usleep(2000);
            unsigned k = w->id * KEYS_PER_WRITER + i;
            key_of(k, key);
            size_t len = make_value(k, version, val);
            atomic_store(&sh->tried[k], version);
            if (tc_store(w->e, TC_SET, key, strlen(key), val, len, k, 0, 0,
                         NULL) == TC_OK)
                atomic_store(&sh->acked[k], version);
            else
                all = false;
        }
        if (all && version < SWEEPS)
            atomic_store(&sh->sweep_at[w->id][version], now_us());
    }
    return NULL;
}

/* Keeps fsync_us_max for the parent; prints the journal's and index's
 * figures when *arg (POWERCUT_STATS is set). */
static void child_stat(void *arg, const char *name, const char *value)
{
    const bool *show = arg;
    /* The slowest fdatasync: one done, or the one running at the cut
     * (hundreds of ms when the disk is busy), which what it covers waits
     * for. */
    if (strcmp(name, "fsync_us_max") == 0 ||
        strcmp(name, "fsync_running_us") == 0) {
        uint64_t us = strtoull(value, NULL, 10);
        if (us > atomic_load(&sh->fsync_max_us))
            atomic_store(&sh->fsync_max_us, us);
    }
    if (*show &&
        (strncmp(name, "journal", 7) == 0 || strncmp(name, "fsync", 5) == 0 ||
         strncmp(name, "index", 5) == 0))
        printf("# child: %s %s\n", name, value);
}

/* How long before the cut an async write must have been acknowledged to
 * be promised (README: the last flush_ms plus one fdatasync): flush_ms,
 * then one sync (as slow as the slowest the child
 * saw: a disk busy with other work, as when the test suites run side by
 * side, takes hundreds of milliseconds), then slack. */
static uint64_t async_margin_us(void)
{
    return (uint64_t)FLUSH_MS * 1000 + atomic_load(&sh->fsync_max_us) +
           150000;
}

/* The child: writes until the cut. Never returns. */
static void child(unsigned cut_ms)
{
    io_sim_enable();
    io_sim_slow_writes(slow_bps);
    tc_engine *e;
    char why[512];
    if (open_engine(&e, why, sizeof(why)) != TC_OK) {
        fprintf(stderr, "child: open: %s\n", why);
        _exit(2);
    }
    pthread_t t[WRITERS];
    writer_arg wa[WRITERS];
    for (unsigned i = light ? WRITERS - 1 : 0; i < WRITERS; i++) {
        wa[i] = (writer_arg){e, i};
        pthread_create(&t[i], NULL, writer, &wa[i]);
    }
    usleep(cut_ms * 1000);
    bool show = getenv("POWERCUT_STATS") != NULL;
    tc_stats(e, child_stat, &show);
    fflush(stdout);
    atomic_store(&sh->cut_at, now_us());
    unsigned undone = io_sim_power_cut();
    if (undone == UINT_MAX)
        _exit(3);
    _exit(0);
}

/* The highest version of key k that its writer had acknowledged, for all
 * its keys, by time t (0: none). */
static uint32_t safe_version(unsigned k, uint64_t t)
{
    unsigned w = k / KEYS_PER_WRITER;
    uint32_t best = 0;
    if (k % KEYS_PER_WRITER >= writer_keys(w))
        return 0; /* never written */
    for (uint32_t v = 1; v < SWEEPS; v++) {
        uint64_t at = atomic_load(&sh->sweep_at[w][v]);
        if (at != 0 && at <= t)
            best = v;
    }
    return best;
}

/* The parent's check after the cut. Returns the number of violations. */
static unsigned check(unsigned round, uint64_t *lost_ok, uint64_t *found)
{
    tc_engine *e;
    char why[512];
    tc_status st = open_engine(&e, why, sizeof(why));
    if (st != TC_OK) {
        printf("# round %u: reopen failed: %s: %s\n", round, tc_strerror(st),
               why);
        return 1;
    }
    unsigned bad = 0;
#define REPORT(...)                                                           \
    do {                                                                      \
        if (bad++ < 10)                                                       \
            printf(__VA_ARGS__);                                              \
    } while (0)
    uint64_t cut = atomic_load(&sh->cut_at);
    uint64_t margin = async_margin_us();
    char key[32], want[2048];
    for (unsigned k = 0; k < KEYS; k++) {
        key_of(k, key);
        uint32_t acked = atomic_load(&sh->acked[k]);
        uint32_t tried = atomic_load(&sh->tried[k]);
        tc_item *it = NULL;
        st = tc_get(e, key, strlen(key), &it);
        uint32_t v = 0;
        if (st == TC_OK) {
            tc_view view;
            tc_item_view(it, &view);
            unsigned kk;
            if (sscanf(view.value, "k%u v%u ", &kk, &v) != 2 || kk != k ||
                v == 0 || v > tried ||
                view.value_len != make_value(k, v, want) ||
                memcmp(view.value, want, view.value_len) != 0 ||
                view.flags != k) {
                REPORT("# round %u: %s holds a wrong value (%zu bytes)\n",
                       round, key, view.value_len);
            }
            tc_item_release(it);
            (*found)++;
        } else if (st != TC_ENOTFOUND) {
            REPORT("# round %u: %s: %s\n", round, key, tc_status_name(st));
            continue;
        }
        /* What had to survive. */
        uint32_t must = 0;
        if (mode == TC_DURABILITY_SYNC)
            must = acked;
        else if (mode == TC_DURABILITY_ASYNC)
            must = safe_version(k, cut - margin);
        if (v < must) {
            REPORT("# round %u: %s: version %u acknowledged%s, read back %u\n",
                   round, key, must,
                   mode == TC_DURABILITY_ASYNC ? " outside the window" : "",
                   v);
        }
        if (v < acked)
            (*lost_ok)++;
    }
    if (bad > 10)
        printf("# round %u: %u more\n", round, bad - 10);
#undef REPORT
    tc_close(e);
    return bad;
}

static int run_round(unsigned *num, uint64_t seed, unsigned round)
{
    memset(sh, 0, sizeof(*sh));
    snprintf(dir, sizeof(dir), "/tmp/tc-powercut-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    unsigned cut_ms = 150 + (unsigned)((seed + round * 7919) % 400);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        child(cut_ms);
    int status = 0;
    waitpid(pid, &status, 0);
    uint64_t lost = 0, found = 0;
    unsigned bad = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("# child ended with status %d\n", status);
        bad = 1;
    } else {
        bad = check(round, &lost, &found);
    }
    const char *mname = mode == TC_DURABILITY_SYNC ? "sync"
                        : mode == TC_DURABILITY_ASYNC ? "async"
                                                      : "none";
    unsigned long long acked_total = 0, promised = 0;
    uint64_t deadline = atomic_load(&sh->cut_at) - async_margin_us();
    for (unsigned k = 0; k < KEYS; k++) {
        acked_total += atomic_load(&sh->acked[k]);
        promised += mode == TC_DURABILITY_SYNC ? atomic_load(&sh->acked[k])
                    : mode == TC_DURABILITY_ASYNC
                        ? safe_version(k, deadline)
                        : 0;
    }
    char slow[64] = "";
    if (slow_bps > 0)
        snprintf(slow, sizeof(slow), " (a disk of %llu KB/s)",
                 (unsigned long long)(slow_bps / 1000));
    printf("%s %u - power cut after %u ms, %s%s%s%s, %s: %llu writes "
           "acknowledged, %llu of them promised, %llu keys read back, %llu "
           "behind their last ack, slowest sync %llu us\n",
           bad == 0 ? "ok" : "not ok", ++*num, cut_ms, mname,
           light ? " (light load)" : "", slow,
           direct == TC_DIRECT_ON ? " (O_DIRECT writes)" : "", backend,
           acked_total, promised, (unsigned long long)found,
           (unsigned long long)lost,
           (unsigned long long)atomic_load(&sh->fsync_max_us));
    fflush(stdout);
    rm_rf(dir);
    return bad == 0 ? 0 : 1;
}

static bool uring_works(void)
{
    io_config ic = {.backend = IO_BACKEND_URING};
    io_queue *q = NULL;
    if (io_queue_new(&ic, &q) != TC_OK)
        return false;
    io_queue_free(&q);
    return true;
}

int main(void)
{
    const char *env = getenv("POWERCUT_SEED");
    uint64_t seed = env != NULL ? strtoull(env, NULL, 10)
                                : (uint64_t)time(NULL);
    printf("# seed %" PRIu64 " (POWERCUT_SEED=%" PRIu64 " repeats it)\n", seed,
           seed);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return 1;
    static const tc_durability modes[] = {TC_DURABILITY_SYNC,
                                          TC_DURABILITY_ASYNC,
                                          TC_DURABILITY_NONE};
    static const char *backends[] = {"threads", "io_uring"};
    unsigned num = 0;
    int failed = 0;
    bool uring = uring_works();
    for (unsigned b = 0; b < 2; b++) {
        backend = backends[b];
        for (unsigned m = 0; m < 3; m++) {
            mode = modes[m];
            /* Under a light load, async must not wait for a batch to
             * fill: two more rounds with the trickle writer alone. On a
             * disk far slower than the writers, changes must not wait
             * behind the whole queue: two more with a slow disk. */
            /* Two more with the journal written with O_DIRECT (records
             * here are too small for auto to choose it): what a sync
             * covers must not depend on how the bytes went out. */
            bool async = modes[m] == TC_DURABILITY_ASYNC;
            unsigned plain = ROUNDS + (async ? 4 : 0);
            for (unsigned r = 0; r < plain + 2; r++) {
                light = async && (r == ROUNDS || r == ROUNDS + 1);
                slow_bps = async && r >= ROUNDS + 2 && r < plain ? SLOW_BPS
                                                                 : 0;
                direct = r >= plain ? TC_DIRECT_ON : TC_DIRECT_AUTO;
                if (b == 1 && !uring) {
                    printf("ok %u - power cut, %s # SKIP io_uring "
                           "unavailable\n", ++num, backend);
                    continue;
                }
                failed += run_round(&num, seed + b * 1000 + m * 100, r);
            }
        }
    }
    printf("1..%u\n", num);
    return failed > 0 ? 1 : 0;
}
