/*
 * tctest.h - the unit tests' harness: a table of test functions run one
 * after another, each isolated (it builds and frees what it uses), with
 * TAP output that tools/test counts:
 *
 *     # seed 1234 (set TCT_SEED=1234 to repeat)
 *     ok 1 - store_then_get
 *     not ok 2 - cas_mismatch
 *     # tests/unit/test_engine.c:88: check failed: st == TC_EEXISTS
 *     1..2
 *
 * A failed check ends its test (longjmp) and the run goes on. The exit
 * status is 1 when any test failed. Arguments select tests whose name
 * contains one of them. Randomised tests take their seed from tct_seed():
 * TCT_SEED in the environment, or the clock, printed either way.
 */
#ifndef TCTEST_H
#define TCTEST_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct tct_case {
    const char *name;
    void (*fn)(void);
} tct_case;

#define TCT(fn) {#fn, fn}

static jmp_buf tct_jmp;
static uint64_t tct_seed_value;

static inline void tct_fail(const char *file, int line, const char *msg)
{
    printf("# %s:%d: check failed: %s\n", file, line, msg);
    fflush(stdout);
    longjmp(tct_jmp, 1);
}

#define TCT_CHECK(cond)                                                    \
    do {                                                                   \
        if (!(cond))                                                       \
            tct_fail(__FILE__, __LINE__, #cond);                           \
    } while (0)

#define TCT_EQ_U64(a, b)                                                   \
    do {                                                                   \
        uint64_t tct_a_ = (uint64_t)(a), tct_b_ = (uint64_t)(b);           \
        if (tct_a_ != tct_b_) {                                            \
            printf("# %s = %" PRIu64 ", %s = %" PRIu64 "\n", #a, tct_a_,   \
                   #b, tct_b_);                                            \
            tct_fail(__FILE__, __LINE__, #a " == " #b);                    \
        }                                                                  \
    } while (0)

#define TCT_EQ_INT(a, b)                                                   \
    do {                                                                   \
        long long tct_a_ = (long long)(a), tct_b_ = (long long)(b);        \
        if (tct_a_ != tct_b_) {                                            \
            printf("# %s = %lld, %s = %lld\n", #a, tct_a_, #b, tct_b_);    \
            tct_fail(__FILE__, __LINE__, #a " == " #b);                    \
        }                                                                  \
    } while (0)

/* Compares len bytes at p with the NUL-terminated string s. */
#define TCT_EQ_MEM(p, len, s)                                              \
    do {                                                                   \
        size_t tct_l_ = (size_t)(len);                                     \
        if (tct_l_ != strlen(s) || memcmp((p), (s), tct_l_) != 0) {        \
            printf("# got %zu bytes \"%.*s\", want \"%s\"\n", tct_l_,      \
                   (int)(tct_l_ > 200 ? 200 : tct_l_), (const char *)(p),  \
                   (s));                                                   \
            tct_fail(__FILE__, __LINE__, #p " == " #s);                    \
        }                                                                  \
    } while (0)

static inline uint64_t tct_seed(void)
{
    return tct_seed_value;
}

/* A small deterministic generator (splitmix64) for tests. */
static inline uint64_t tct_rand(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline int tct_selected(int argc, char **argv, const char *name)
{
    if (argc <= 1)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strstr(name, argv[i]) != NULL)
            return 1;
    return 0;
}

static inline void tct_seed_init(void)
{
    const char *env = getenv("TCT_SEED");
    tct_seed_value = env != NULL ? strtoull(env, NULL, 10)
                                 : (uint64_t)time(NULL);
    printf("# seed %" PRIu64 " (set TCT_SEED=%" PRIu64 " to repeat)\n",
           tct_seed_value, tct_seed_value);
}

/* Runs one case; false if a check failed. (Its own function: nothing of
 * the caller's loop lives across the setjmp.) */
static inline bool tct_run_one(const tct_case *c)
{
    if (setjmp(tct_jmp) != 0)
        return false;
    c->fn();
    return true;
}

/* Runs the selected cases, numbering them from *num + 1; counts them in
 * *num and the failed ones in *failed. Prints no plan. */
static inline void tct_run(int argc, char **argv, const tct_case *cases,
                           size_t n, int *num, int *failed)
{
    for (size_t i = 0; i < n; i++) {
        if (!tct_selected(argc, argv, cases[i].name))
            continue;
        (*num)++;
        fflush(stdout);
        if (tct_run_one(&cases[i])) {
            printf("ok %d - %s\n", *num, cases[i].name);
        } else {
            printf("not ok %d - %s\n", *num, cases[i].name);
            (*failed)++;
        }
        fflush(stdout);
    }
}

static inline int tct_main(int argc, char **argv, const tct_case *cases,
                           size_t n)
{
    int ran = 0, failed = 0;
    tct_seed_init();
    tct_run(argc, argv, cases, n, &ran, &failed);
    printf("1..%d\n", ran);
    return failed > 0 ? 1 : 0;
}

#define TCT_MAIN(...)                                                      \
    int main(int argc, char **argv)                                        \
    {                                                                      \
        static const tct_case tct_cases_[] = {__VA_ARGS__};                \
        return tct_main(argc, argv, tct_cases_,                            \
                        sizeof(tct_cases_) / sizeof(tct_cases_[0]));       \
    }

#endif /* TCTEST_H */
