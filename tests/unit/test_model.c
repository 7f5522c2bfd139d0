/*
 * test_model.c - the synchronous API against a reference model: random
 * operations of every kind on a few hundred keys, with the fake clock
 * moving, expiry times of every form, immediate and delayed flushes; the
 * limit is large so nothing is evicted and every result is predictable.
 * Each call's status, number, CAS and every value read must match the
 * model. A failure prints the operation number and the seed.
 */
#include <stdlib.h>
#include <string.h>

#include "tcutil.h"

enum { KEYS = 300, VMAX = 64, OPS = 600000 };

typedef struct mkey {
    int live;
    char value[VMAX * 4];
    size_t len;
    uint32_t flags;
    int64_t exptime; /* absolute; 0 never */
    uint64_t cas;
} mkey;

typedef struct model {
    mkey k[KEYS];
    int64_t flush_at; /* pending delayed flush; 0 none */
} model;

static int64_t m_abs(int64_t exptime, int64_t now)
{
    if (exptime == 0)
        return 0;
    if (exptime < 0)
        return 1;
    if (exptime <= 2592000)
        return now + exptime;
    return exptime;
}

/* What the engine does first on every call: a due flush, then expiry. */
static void m_tick(model *m, int64_t now)
{
    if (m->flush_at != 0 && now >= m->flush_at) {
        for (unsigned i = 0; i < KEYS; i++)
            m->k[i].live = 0;
        m->flush_at = 0;
    }
    for (unsigned i = 0; i < KEYS; i++)
        if (m->k[i].live && m->k[i].exptime != 0 && m->k[i].exptime <= now)
            m->k[i].live = 0;
}

/* mem_parse_u64's documented rules, written again: blanks, a sign,
 * digits, then blanks (or CR/LF); no negative but zero; no overflow. */
static int m_number(const mkey *k, uint64_t *out)
{
    const char *s = k->value;
    size_t i = 0, len = k->len, start;
    int neg = 0;
    uint64_t v = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i < len && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    start = i;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (i == start)
        return -1;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' ||
                       s[i] == '\n'))
        i++;
    if (i != len || (neg && v != 0))
        return -1;
    *out = v;
    return 0;
}

static size_t gen_value(uint64_t *rng, char *buf)
{
    uint64_t r = tct_rand(rng);
    if (r % 3 == 0) /* a number */
        return (size_t)snprintf(buf, 32, "%" PRIu64,
                                r % 4 == 0 ? UINT64_MAX - (r >> 40) % 5
                                           : (r >> 8) % 100000);
    size_t len = (r >> 8) % VMAX;
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)((r >> (i % 48)) & 0xff); /* binary */
    return len;
}

static int64_t gen_exptime(uint64_t *rng, int64_t now)
{
    uint64_t r = tct_rand(rng);
    switch (r % 8) {
    case 0:
    case 1:
    case 2:
        return 0;
    case 3:
        return 1 + (int64_t)((r >> 8) % 100); /* relative */
    case 4:
        return now + 1 + (int64_t)((r >> 8) % 100) + 2592000; /* absolute */
    case 5:
        return now - (int64_t)((r >> 8) % 5); /* absolute, past or now */
    case 6:
        return -1 - (int64_t)((r >> 8) % 3);
    default:
        return 2592000;
    }
}

#define FAIL_AT(op, what)                                                  \
    do {                                                                   \
        printf("# op %u (%s), key %u\n", (op), (what), n);                 \
        TCT_CHECK(!"engine matches the model");                            \
    } while (0)

static void random_ops_match_model(void)
{
    tcu_clock clk;
    tc_engine *e = tcu_open(&clk);
    model *m = calloc(1, sizeof(*m));
    TCT_CHECK(m != NULL);
    uint64_t rng = tct_seed() ^ 0x6d6f64656cULL;
    char key[64], val[VMAX * 4];
    uint64_t counts[16] = {0}, hits = 0, numeric = 0;

    for (unsigned op = 0; op < OPS; op++) {
        uint64_t r = tct_rand(&rng);
        unsigned n = (unsigned)(r % KEYS);
        size_t kl = tcu_key(key, "m:", n);
        mkey *k = &m->k[n];
        int64_t now = tcu_clock_fn(&clk);
        unsigned kind = (unsigned)((r >> 16) % 16);
        tc_status st;
        tc_item *it = NULL;
        uint64_t cas = 0, num = 0;

        if (kind == 15 && (r >> 24) % 8 == 0) {
            /* Time passes; now and then a flush (rarely: it empties the
             * model, and the keys should mostly be live). */
            unsigned what = (unsigned)((r >> 32) % 10);
            if (what < 7 || (r >> 48) % 8 != 0) {
                tcu_clock_add(&clk, 1 + (int64_t)((r >> 40) % 30));
            } else if (what < 8) {
                m_tick(m, now);
                TCT_EQ_ST(tc_flush(e, 0), TC_OK);
                for (unsigned i = 0; i < KEYS; i++)
                    m->k[i].live = 0;
                m->flush_at = 0;
            } else {
                int64_t d = 1 + (int64_t)((r >> 40) % 60);
                m_tick(m, now);
                TCT_EQ_ST(tc_flush(e, d), TC_OK);
                m->flush_at = now + d;
            }
            counts[15]++;
            continue;
        }
        m_tick(m, now);
        counts[kind]++;
        switch (kind) {
        case 0:
        case 1:
        case 2: { /* set, add, replace */
            tc_store_mode mode = kind == 0 ? TC_SET
                                 : kind == 1 ? TC_ADD : TC_REPLACE;
            size_t vl = gen_value(&rng, val);
            uint32_t fl = (uint32_t)(r >> 32);
            int64_t ex = gen_exptime(&rng, now);
            st = tc_store(e, mode, key, kl, val, vl, fl, ex, 0, &cas);
            int ok = mode == TC_SET || (mode == TC_ADD) == !k->live;
            if (st != (ok ? TC_OK : TC_ENOTSTORED))
                FAIL_AT(op, "set/add/replace status");
            if (ok) {
                if (cas == 0 || (k->live && cas == k->cas))
                    FAIL_AT(op, "new CAS");
                k->live = 1;
                memcpy(k->value, val, vl);
                k->len = vl;
                k->flags = fl;
                k->exptime = m_abs(ex, now);
                k->cas = cas;
                if (k->exptime != 0 && k->exptime <= now)
                    k->live = 0;
            }
            break;
        }
        case 3:
        case 4: { /* append, prepend */
            size_t vl = gen_value(&rng, val) % 16;
            st = tc_store(e, kind == 3 ? TC_APPEND : TC_PREPEND, key, kl, val,
                          vl, 1, 1, 0, &cas);
            int fits = k->len + vl <= sizeof(k->value);
            if (!k->live) {
                if (st != TC_ENOTSTORED)
                    FAIL_AT(op, "append to missing");
                break;
            }
            if (!fits) {
                /* Past the model's buffer: drop the key from both. */
                TCT_EQ_ST(st, TC_OK);
                TCT_EQ_ST(tc_delete(e, key, kl), TC_OK);
                k->live = 0;
                break;
            }
            if (st != TC_OK || cas == k->cas)
                FAIL_AT(op, "append");
            if (kind == 3) {
                memcpy(k->value + k->len, val, vl);
            } else {
                memmove(k->value + vl, k->value, k->len);
                memcpy(k->value, val, vl);
            }
            k->len += vl;
            k->cas = cas;
            break;
        }
        case 5: { /* cas, right or wrong */
            size_t vl = gen_value(&rng, val);
            int right = (r >> 40) % 2;
            uint64_t given = right ? k->cas : k->cas + 1 + (r >> 50) % 3;
            st = tc_store(e, TC_CAS, key, kl, val, vl, 5, 0, given, &cas);
            tc_status want = !k->live ? TC_ENOTFOUND
                             : right  ? TC_OK
                                      : TC_EEXISTS;
            if (st != want)
                FAIL_AT(op, "cas status");
            if (st == TC_OK) {
                memcpy(k->value, val, vl);
                k->len = vl;
                k->flags = 5;
                k->exptime = 0;
                k->cas = cas;
            }
            break;
        }
        case 6:
        case 7: { /* incr, decr */
            uint64_t delta = (r >> 32) % 3 == 0 ? UINT64_MAX - (r >> 40) % 3
                                                : (r >> 32) % 1000;
            int decr = kind == 7;
            st = decr ? tc_decr(e, key, kl, delta, &num)
                      : tc_incr(e, key, kl, delta, &num);
            uint64_t v;
            if (!k->live) {
                if (st != TC_ENOTFOUND)
                    FAIL_AT(op, "incr missing");
            } else if (m_number(k, &v) != 0) {
                if (st != TC_ENONNUMERIC)
                    FAIL_AT(op, "incr non-numeric");
            } else {
                uint64_t want = decr ? (delta > v ? 0 : v - delta) : v + delta;
                numeric++;
                if (st != TC_OK || num != want)
                    FAIL_AT(op, "incr result");
                k->len = (size_t)snprintf(k->value, sizeof(k->value),
                                          "%" PRIu64, want);
                tc_view vv;
                TCT_EQ_ST(tc_get(e, key, kl, &it), TC_OK);
                tc_item_view(it, &vv);
                if (vv.cas == k->cas)
                    FAIL_AT(op, "incr CAS");
                k->cas = vv.cas;
                tc_item_release(it);
                it = NULL;
            }
            break;
        }
        case 8:
        case 9: { /* touch, gat */
            int64_t ex = gen_exptime(&rng, now);
            if (kind == 8)
                st = tc_touch(e, key, kl, ex);
            else
                st = tc_gat(e, key, kl, ex, &it);
            if (st != (k->live ? TC_OK : TC_ENOTFOUND))
                FAIL_AT(op, "touch status");
            if (st == TC_OK) {
                if (it != NULL) {
                    tc_view vv;
                    tc_item_view(it, &vv);
                    if (vv.value_len != k->len ||
                        memcmp(vv.value, k->value, k->len) != 0 ||
                        vv.cas != k->cas || vv.exptime != m_abs(ex, now))
                        FAIL_AT(op, "gat view");
                }
                k->exptime = m_abs(ex, now);
                if (k->exptime != 0 && k->exptime <= now)
                    k->live = 0;
            }
            break;
        }
        case 10:
            st = tc_delete(e, key, kl);
            if (st != (k->live ? TC_OK : TC_ENOTFOUND))
                FAIL_AT(op, "delete");
            k->live = 0;
            break;
        default: { /* get */
            st = tc_get(e, key, kl, &it);
            if (st != (k->live ? TC_OK : TC_ENOTFOUND))
                FAIL_AT(op, "get status");
            if (st == TC_OK) {
                hits++;
                tc_view vv;
                tc_item_view(it, &vv);
                if (vv.value_len != k->len ||
                    memcmp(vv.value, k->value, k->len) != 0)
                    FAIL_AT(op, "get value");
                if (vv.flags != k->flags || vv.cas != k->cas ||
                    vv.exptime != k->exptime)
                    FAIL_AT(op, "get metadata");
                if (vv.key_len != kl || memcmp(vv.key, key, kl) != 0)
                    FAIL_AT(op, "get key");
            }
            break;
        }
        }
        tc_item_release(it);
    }
    printf("# %" PRIu64 " get hits, %" PRIu64 " incr/decr on numbers\n",
           hits, numeric);
    TCT_CHECK(hits > OPS / 20 && numeric > OPS / 400);
    /* Every kind of operation ran many times. */
    for (unsigned i = 0; i < 16; i++)
        TCT_CHECK(counts[i] > 1000);
    /* A final sweep over every key. */
    m_tick(m, tcu_clock_fn(&clk));
    unsigned live = 0;
    for (unsigned n = 0; n < KEYS; n++) {
        size_t kl = tcu_key(key, "m:", n);
        tc_item *it = NULL;
        tc_status st = tc_get(e, key, kl, &it);
        TCT_EQ_ST(st, m->k[n].live ? TC_OK : TC_ENOTFOUND);
        live += st == TC_OK;
        tc_item_release(it);
    }
    TCT_EQ_U64(tcu_stat(e, "curr_items"), live);
    TCT_EQ_U64(tcu_stat(e, "evictions"), 0);
    free(m);
    tc_close(e);
}

TCT_MAIN(TCT(random_ops_match_model))
