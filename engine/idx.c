/*
 * idx.c - the LMDB index (see idx.h).
 *
 * Values are fixed little-endian records so the file reads the same on
 * any host: idx_loc in 48 bytes, idx_meta under one key "state" in 64.
 * LMDB does its own file I/O: the power-cut test layer of io.h does not
 * see it, which is why commits here are synchronous (what LMDB says is
 * committed is on stable storage, so a simulated cut has nothing of it to
 * undo). The environment is opened with MDB_NOTLS (a read transaction is owned
 * by an idx_reader, not by a thread) and MDB_NORDAHEAD (lookups are
 * random; read-ahead would fill the page cache with neighbours).
 */
#include "idx.h"

#include "crc32c.h"
#include "io_int.h"
#include "seg.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#define IDX_LOC_SIZE 48
#define IDX_META_SIZE 64
#define IDX_MAX_READERS 512

struct idx {
    MDB_env *env;
    MDB_dbi keys;
    MDB_dbi meta;
    MDB_dbi hot;
    MDB_txn *wtxn;
    MDB_cursor *wcur; /* on keys, in wtxn */
    _Atomic uint64_t live_bytes; /* pages the trees use, at the last commit */
    char path[4096];
};

struct idx_reader {
    idx *x;
    MDB_txn *txn;
    bool active;
};

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void loc_encode(const idx_loc *l, unsigned char out[IDX_LOC_SIZE])
{
    memset(out, 0, IDX_LOC_SIZE);
    put64(out, l->seg);
    put32(out + 8, l->off);
    put32(out + 12, l->len);
    put64(out + 16, l->lsn);
    put64(out + 24, l->cas);
    put32(out + 32, l->flags);
    put32(out + 36, l->exptime);
    put32(out + 40, l->raw_len);
    out[44] = l->codec;
    out[45] = l->meta;
}

static bool loc_decode(const MDB_val *v, idx_loc *l)
{
    const unsigned char *p = v->mv_data;
    if (v->mv_size != IDX_LOC_SIZE)
        return false;
    l->seg = get64(p);
    l->off = get32(p + 8);
    l->len = get32(p + 12);
    l->lsn = get64(p + 16);
    l->cas = get64(p + 24);
    l->flags = get32(p + 32);
    l->exptime = get32(p + 36);
    l->raw_len = get32(p + 40);
    l->codec = p[44];
    l->meta = p[45] & SEG_M_ALL;
    return true;
}

static void meta_encode(const idx_meta *m, unsigned char out[IDX_META_SIZE])
{
    memset(out, 0, IDX_META_SIZE);
    put32(out, m->format);
    put64(out + 8, m->checkpoint_lsn);
    put64(out + 16, m->next_seg);
    put64(out + 24, m->next_off);
    put64(out + 32, m->cas_ceiling);
    put64(out + 40, m->flush_lsn);
    put64(out + 48, (uint64_t)m->flush_at);
}

static bool meta_decode(const MDB_val *v, idx_meta *m)
{
    const unsigned char *p = v->mv_data;
    if (v->mv_size < 8)
        return false;
    m->format = get32(p);
    if (m->format != IDX_FORMAT || v->mv_size != IDX_META_SIZE)
        return true; /* the caller refuses the format */
    m->checkpoint_lsn = get64(p + 8);
    m->next_seg = get64(p + 16);
    m->next_off = get64(p + 24);
    m->cas_ceiling = get64(p + 32);
    m->flush_lsn = get64(p + 40);
    m->flush_at = (int64_t)get64(p + 48);
    return true;
}

static tc_status idx_err(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return TC_OK;
    case MDB_NOTFOUND:
        return TC_ENOTFOUND;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case ENOSPC:
        return TC_ENOSPC;
    case ENOMEM:
        return TC_ENOMEM;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
        return TC_ECORRUPT;
    default:
        return TC_EIO;
    }
}

/* Bytes of the pages the index's trees use as txn sees them (the keys,
 * the meta and the main database that names them). */
static void idx_measure(idx *x, MDB_txn *txn)
{
    uint64_t pages = 0, psize = 4096;
    MDB_dbi dbis[3] = {x->keys, x->meta, 1 /* MAIN_DBI */};
    for (int i = 0; i < 3; i++) {
        MDB_stat ms;
        if (mdb_stat(txn, dbis[i], &ms) != 0)
            continue;
        psize = ms.ms_psize;
        pages += ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages;
    }
    atomic_store(&x->live_bytes, pages * psize);
}

/* The one key of the meta database (a fresh MDB_val each time: LMDB
 * takes them as non-const). */
static MDB_val meta_key(void)
{
    MDB_val k = {5, (void *)"state"};
    return k;
}

/* Reads the stored state, or writes a fresh one into a new index. */
static tc_status idx_load_meta(idx *x, idx_meta *meta)
{
    MDB_txn *txn;
    MDB_val v, mk = meta_key();
    int rc = mdb_txn_begin(x->env, NULL, 0, &txn);
    if (rc != 0)
        return idx_err(rc);
    rc = mdb_get(txn, x->meta, &mk, &v);
    if (rc == MDB_NOTFOUND) {
        memset(meta, 0, sizeof(*meta));
        meta->format = IDX_FORMAT;
        unsigned char buf[IDX_META_SIZE];
        meta_encode(meta, buf);
        MDB_val nv = {sizeof(buf), buf};
        rc = mdb_put(txn, x->meta, &mk, &nv, 0);
        if (rc == 0)
            return idx_err(mdb_txn_commit(txn));
        mdb_txn_abort(txn);
        return idx_err(rc);
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return idx_err(rc);
    }
    memset(meta, 0, sizeof(*meta));
    bool ok = meta_decode(&v, meta);
    mdb_txn_abort(txn);
    if (!ok)
        return TC_ECORRUPT;
    return meta->format == IDX_FORMAT ? TC_OK : TC_EFORMAT;
}

tc_status idx_open(const char *dir, size_t map_size, idx **out,
                   idx_meta *meta, char *why, size_t why_len)
{
    tc_status st = TC_ENOMEM;
    int rc = 0;
    *out = NULL;
    idx *x = calloc(1, sizeof(*x));
    if (x == NULL)
        goto fail;
    snprintf(x->path, sizeof(x->path), "%s/index", dir);
    bool created = mkdir(x->path, 0755) == 0;
    if (!created && errno != EEXIST) {
        snprintf(why, why_len, "cannot create %s: %s", x->path,
                 strerror(errno));
        st = TC_EIO;
        goto fail;
    }
    if ((rc = mdb_env_create(&x->env)) != 0 ||
        (rc = mdb_env_set_mapsize(x->env, map_size)) != 0 ||
        (rc = mdb_env_set_maxdbs(x->env, 4)) != 0 ||
        (rc = mdb_env_set_maxreaders(x->env, IDX_MAX_READERS)) != 0 ||
        (rc = mdb_env_open(x->env, x->path, MDB_NOTLS | MDB_NORDAHEAD,
                           0644)) != 0) {
        snprintf(why, why_len, "LMDB environment %s: %s", x->path,
                 mdb_strerror(rc));
        st = idx_err(rc);
        goto fail;
    }
    int dead = 0;
    mdb_reader_check(x->env, &dead);
    if (created) {
        /* LMDB never fsyncs the directory of the files it created. */
        int dfd = open(x->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(x->env, NULL, 0, &txn)) != 0) {
        st = idx_err(rc);
        goto fail;
    }
    if ((rc = mdb_dbi_open(txn, "keys", MDB_CREATE, &x->keys)) != 0 ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &x->meta)) != 0 ||
        (rc = mdb_dbi_open(txn, "hot", MDB_CREATE, &x->hot)) != 0) {
        mdb_txn_abort(txn);
        snprintf(why, why_len, "LMDB databases: %s", mdb_strerror(rc));
        st = idx_err(rc);
        goto fail;
    }
    idx_measure(x, txn);
    if ((rc = mdb_txn_commit(txn)) != 0) {
        st = idx_err(rc);
        goto fail;
    }
    st = idx_load_meta(x, meta);
    if (st == TC_EFORMAT) {
        snprintf(why, why_len, "index format %u, this build reads %u",
                 meta->format, IDX_FORMAT);
        goto fail;
    }
    if (st != TC_OK) {
        snprintf(why, why_len, "index state: %s", tc_strerror(st));
        goto fail;
    }
    *out = x;
    return TC_OK;
fail:
    if (x != NULL && x->env != NULL)
        mdb_env_close(x->env);
    free(x);
    return st;
}

void idx_close(idx **xp)
{
    idx *x = *xp;
    if (x == NULL)
        return;
    idx_abort(x);
    mdb_env_close(x->env);
    free(x);
    *xp = NULL;
}

/* The writer works through one cursor on keys: a key beside the one
 * before it (the index writer applies its batches in key order) is found
 * on the cursor's page without a descent from the root. */
tc_status idx_begin(idx *x)
{
    int rc = mdb_txn_begin(x->env, NULL, 0, &x->wtxn);
    if (rc != 0)
        return idx_err(rc);
    rc = mdb_cursor_open(x->wtxn, x->keys, &x->wcur);
    if (rc != 0) {
        mdb_txn_abort(x->wtxn);
        x->wtxn = NULL;
    }
    return idx_err(rc);
}

/* Puts the write cursor on key; TC_ENOTFOUND if absent. */
static tc_status idx_seek_w(idx *x, const void *key, size_t klen,
                            idx_loc *loc)
{
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_cursor_get(x->wcur, &k, &v, MDB_SET_KEY);
    if (rc != 0)
        return idx_err(rc);
    return loc == NULL || loc_decode(&v, loc) ? TC_OK : TC_ECORRUPT;
}

tc_status idx_get_w(idx *x, const void *key, size_t klen, idx_loc *loc)
{
    return idx_seek_w(x, key, klen, loc);
}

tc_status idx_put(idx *x, const void *key, size_t klen, const idx_loc *loc,
                  idx_loc *old, bool *had_old)
{
    idx_loc scratch;
    tc_status st = idx_seek_w(x, key, klen, old != NULL ? old : &scratch);
    if (st != TC_OK && st != TC_ENOTFOUND)
        return st;
    if (had_old != NULL)
        *had_old = st == TC_OK;
    unsigned char buf[IDX_LOC_SIZE];
    loc_encode(loc, buf);
    MDB_val k = {klen, (void *)key}, v = {sizeof(buf), buf};
    /* Over the entry the cursor is on: written in place. */
    return idx_err(mdb_cursor_put(x->wcur, &k, &v,
                                  st == TC_OK ? MDB_CURRENT : 0));
}

tc_status idx_del(idx *x, const void *key, size_t klen, idx_loc *old)
{
    tc_status st = idx_seek_w(x, key, klen, old);
    if (st != TC_OK)
        return st;
    return idx_err(mdb_cursor_del(x->wcur, 0));
}

tc_status idx_set_meta(idx *x, const idx_meta *m)
{
    unsigned char buf[IDX_META_SIZE];
    meta_encode(m, buf);
    MDB_val k = meta_key(), v = {sizeof(buf), buf};
    return idx_err(mdb_put(x->wtxn, x->meta, &k, &v, 0));
}

/* mdb_txn_commit, seen by the power-cut test layer: LMDB writes its files
 * itself, so a commit made after a simulated cut (the index writer
 * taking out the keys of a batch the cut failed) would outlive it, with a
 * checkpoint past records the cut undid. */
static int idx_txn_commit(MDB_txn *txn)
{
    if (!iosim_outside_begin()) {
        mdb_txn_abort(txn);
        return EIO;
    }
    int rc = mdb_txn_commit(txn);
    iosim_outside_end();
    return rc;
}

tc_status idx_commit(idx *x)
{
    uint64_t before = atomic_load(&x->live_bytes);
    idx_measure(x, x->wtxn);
    mdb_cursor_close(x->wcur);
    x->wcur = NULL;
    int rc = idx_txn_commit(x->wtxn);
    if (rc != 0)
        atomic_store(&x->live_bytes, before);
    x->wtxn = NULL;
    return idx_err(rc);
}

void idx_abort(idx *x)
{
    if (x->wcur != NULL)
        mdb_cursor_close(x->wcur);
    x->wcur = NULL;
    if (x->wtxn != NULL)
        mdb_txn_abort(x->wtxn);
    x->wtxn = NULL;
}

tc_status idx_scan(idx *x, idx_scan_fn fn, void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_txn_begin(x->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return idx_err(rc);
    rc = mdb_cursor_open(txn, x->keys, &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return idx_err(rc);
    }
    tc_status st = TC_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        idx_loc loc;
        if (!loc_decode(&v, &loc)) {
            st = TC_ECORRUPT;
            break;
        }
        if (!fn(arg, k.mv_data, k.mv_size, &loc))
            break;
    }
    if (st == TC_OK && rc != 0 && rc != MDB_NOTFOUND)
        st = idx_err(rc);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return st;
}

tc_status idx_reader_new(idx *x, idx_reader **out)
{
    idx_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return TC_ENOMEM;
    r->x = x;
    int rc = mdb_txn_begin(x->env, NULL, MDB_RDONLY, &r->txn);
    if (rc != 0) {
        free(r);
        return idx_err(rc);
    }
    mdb_txn_reset(r->txn);
    *out = r;
    return TC_OK;
}

void idx_reader_free(idx_reader **rp)
{
    idx_reader *r = *rp;
    if (r == NULL)
        return;
    mdb_txn_abort(r->txn);
    free(r);
    *rp = NULL;
}

tc_status idx_lookup(idx_reader *r, const void *key, size_t klen,
                     idx_loc *loc)
{
    if (!r->active) {
        int rc = mdb_txn_renew(r->txn);
        if (rc != 0)
            return idx_err(rc);
        r->active = true;
    }
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(r->txn, r->x->keys, &k, &v);
    if (rc != 0)
        return idx_err(rc);
    return loc_decode(&v, loc) ? TC_OK : TC_ECORRUPT;
}

void idx_reader_reset(idx_reader *r)
{
    if (r->active) {
        mdb_txn_reset(r->txn);
        r->active = false;
    }
}

uint64_t idx_count(idx *x)
{
    MDB_txn *txn;
    MDB_stat st;
    if (mdb_txn_begin(x->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    int rc = mdb_stat(txn, x->keys, &st);
    mdb_txn_abort(txn);
    return rc == 0 ? st.ms_entries : 0;
}

uint64_t idx_live_bytes(idx *x)
{
    return atomic_load(&x->live_bytes);
}

uint64_t idx_file_bytes(idx *x)
{
    char p[4200];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/data.mdb", x->path);
    return stat(p, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* ---- the hot-key snapshot ----
 *
 * In the hot database: "head" (IDX_HOT_HEAD_SIZE bytes: magic "TCHS",
 * format, chunk count, key count, payload bytes, CRC-32C of the payload)
 * and the payload cut in chunks of at most IDX_HOT_CHUNK bytes under the
 * keys "c" + a 4-byte big-endian number (so they sort in order). The
 * payload is the caller's: idx does not parse it.
 */

#define IDX_HOT_MAGIC 0x53484354u /* "TCHS" little-endian */
#define IDX_HOT_FORMAT 1u
#define IDX_HOT_HEAD_SIZE 24
#define IDX_HOT_CHUNK ((size_t)256 * 1024)

static MDB_val hot_head_key(void)
{
    MDB_val k = {4, (void *)"head"};
    return k;
}

static void hot_chunk_key(unsigned char out[5], uint32_t i)
{
    out[0] = 'c';
    out[1] = (unsigned char)(i >> 24);
    out[2] = (unsigned char)(i >> 16);
    out[3] = (unsigned char)(i >> 8);
    out[4] = (unsigned char)i;
}

tc_status idx_hot_write(idx *x, const void *payload, size_t len,
                        uint32_t nkeys)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(x->env, NULL, 0, &txn);
    if (rc != 0)
        return idx_err(rc);
    rc = mdb_drop(txn, x->hot, 0);
    uint32_t nchunks = (uint32_t)((len + IDX_HOT_CHUNK - 1) / IDX_HOT_CHUNK);
    for (uint32_t i = 0; rc == 0 && i < nchunks; i++) {
        unsigned char kb[5];
        hot_chunk_key(kb, i);
        size_t off = (size_t)i * IDX_HOT_CHUNK;
        size_t n = len - off < IDX_HOT_CHUNK ? len - off : IDX_HOT_CHUNK;
        MDB_val k = {sizeof(kb), kb};
        MDB_val v = {n, (unsigned char *)payload + off};
        rc = mdb_put(txn, x->hot, &k, &v, 0);
    }
    if (rc == 0) {
        unsigned char hb[IDX_HOT_HEAD_SIZE];
        put32(hb, IDX_HOT_MAGIC);
        put32(hb + 4, IDX_HOT_FORMAT);
        put32(hb + 8, nchunks);
        put32(hb + 12, nkeys);
        put32(hb + 16, (uint32_t)len);
        put32(hb + 20, crc32c(0, payload, len));
        MDB_val k = hot_head_key(), v = {sizeof(hb), hb};
        rc = mdb_put(txn, x->hot, &k, &v, 0);
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return idx_err(rc);
    }
    return idx_err(idx_txn_commit(txn));
}

tc_status idx_hot_read(idx *x, unsigned char **payload, size_t *len,
                       uint32_t *nkeys)
{
    MDB_txn *txn;
    MDB_val k = hot_head_key(), v;
    unsigned char *buf = NULL;
    tc_status st;
    *payload = NULL;
    *len = 0;
    *nkeys = 0;
    int rc = mdb_txn_begin(x->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return idx_err(rc);
    rc = mdb_get(txn, x->hot, &k, &v);
    if (rc != 0) {
        st = rc == MDB_NOTFOUND ? TC_ENOTFOUND : idx_err(rc);
        goto out;
    }
    st = TC_ECORRUPT;
    if (v.mv_size != IDX_HOT_HEAD_SIZE)
        goto out;
    const unsigned char *h = v.mv_data;
    uint32_t nchunks = get32(h + 8), total = get32(h + 16);
    if (get32(h) != IDX_HOT_MAGIC || get32(h + 4) != IDX_HOT_FORMAT ||
        nchunks != (total + IDX_HOT_CHUNK - 1) / IDX_HOT_CHUNK)
        goto out;
    uint32_t want_keys = get32(h + 12), want_crc = get32(h + 20);
    buf = malloc(total > 0 ? total : 1);
    if (buf == NULL) {
        st = TC_ENOMEM;
        goto out;
    }
    size_t have = 0;
    for (uint32_t i = 0; i < nchunks; i++) {
        unsigned char kb[5];
        hot_chunk_key(kb, i);
        MDB_val ck = {sizeof(kb), kb}, cv;
        rc = mdb_get(txn, x->hot, &ck, &cv);
        if (rc != 0 || cv.mv_size > total - have)
            goto out;
        memcpy(buf + have, cv.mv_data, cv.mv_size);
        have += cv.mv_size;
    }
    if (have != total || crc32c(0, buf, total) != want_crc)
        goto out;
    *payload = buf;
    *len = total;
    *nkeys = want_keys;
    buf = NULL;
    st = TC_OK;
out:
    free(buf);
    mdb_txn_abort(txn);
    return st;
}
