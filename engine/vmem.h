/*
 * vmem.h - large, short-lived arrays straight from the kernel.
 *
 * Freed, such memory goes back to the system at once. Through malloc it
 * would not: glibc raises its mmap threshold to the largest block freed
 * (up to 32 MiB), after which blocks that size come from the heap and
 * stay there when freed, so one burst of writes would keep the index
 * writer's arrays and the journal's entries resident for good.
 */
#ifndef TC_VMEM_H
#define TC_VMEM_H

#include <stddef.h>
#include <sys/mman.h>

/* Resizes p from old to size bytes (p NULL: a new block, zeroed; size
 * 0: frees it). NULL when out of memory (p is then untouched) or freed. */
static inline void *vm_resize(void *p, size_t old, size_t size)
{
    if (size == 0) {
        if (p != NULL)
            munmap(p, old);
        return NULL;
    }
    void *q = p == NULL ? mmap(NULL, size, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                        : mremap(p, old, size, MREMAP_MAYMOVE);
    return q == MAP_FAILED ? NULL : q;
}

#endif /* TC_VMEM_H */
