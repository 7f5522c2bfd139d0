/*
 * slab.h - the memory tier's item allocator.
 *
 * Items of up to SLAB_CHUNK_MAX bytes are carved from 64 KiB pages, one
 * size class per page. Classes are 8 bytes apart up to 1 KiB, then 32 per
 * doubling (32 bytes apart up to 2 KiB, 64 up to 4 KiB, then 128 up to
 * 4.5 KiB), so an item wastes at most 7 bytes (or 1/32), and no chunk
 * carries a header: a 134-byte item takes 136 bytes, where malloc would
 * take 144. Items of 4 KiB values are common (pages of a page cache,
 * serialized objects): from malloc, a set of one and its later free by
 * the index writer's thread took 8% of the server's CPU under 4 KiB sets
 * (bench/RESULTS.md). What a page's chunks leave of it is not counted in
 * an item's cost: at most 6.2% of the page (the 4096-byte class, 15
 * chunks), under 4% for all but six classes. Larger items go to malloc,
 * whose 8-byte header and 16-byte rounding cost them little; bigger
 * classes would leave more of a page unused (8192 bytes fit seven
 * times, leaving 12%).
 *
 * A page that no longer holds a live chunk goes back to a pool shared by
 * all classes, so memory moves between classes as the workload changes.
 * Classes have a lock each; the page pool has its own.
 */
#ifndef TC_SLAB_H
#define TC_SLAB_H

#include <stddef.h>

#define SLAB_PAGE_SIZE ((size_t)64 * 1024)
#define SLAB_CHUNK_MAX ((size_t)4608)

typedef struct slab slab;

/* Returns a new allocator, or NULL when out of memory. */
slab *slab_new(void);
/* Frees the allocator and every page it holds; *s becomes NULL. */
void slab_destroy(slab **s);

/* The bytes an allocation of size really takes. */
size_t slab_cost(size_t size);

/* Allocates size bytes, aligned to 8; NULL when out of memory. */
void *slab_alloc(slab *s, size_t size);
/* Allocates size bytes from the allocator that p, an earlier allocation
 * of at most SLAB_CHUNK_MAX bytes or a malloc'd larger one, came from. */
void *slab_alloc_like(const void *p, size_t size);
/* Frees p, which slab_alloc() of some allocator returned for the same
 * size; a page knows the allocator it belongs to. */
void slab_free(void *p, size_t size);

/* Bytes of pages held (in use or pooled), for stats. */
size_t slab_page_bytes(slab *s);

/* A size class's figures, for stats (memcached's "stats slabs"). */
typedef struct slab_class_stats {
    size_t chunk_size;      /* bytes of each chunk */
    size_t chunks_per_page; /* chunks a page holds */
    size_t pages;           /* pages the class holds */
    size_t used;            /* chunks handed out */
    size_t uncarved;        /* chunks of its pages never handed out */
} slab_class_stats;
typedef void (*slab_stats_fn)(void *arg, unsigned id,
                              const slab_class_stats *st);

/* Calls fn for each class that holds pages, in order of size, with its
 * id (1, 2, ...: the smallest is 1, as in memcached) and its figures,
 * each class's read under its lock. */
void slab_stats(slab *s, slab_stats_fn fn, void *arg);

#endif /* TC_SLAB_H */
