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
#include <string.h>
#include <sys/mman.h>

/* Resizes p from old to size bytes (p NULL: a new block, zeroed; size
 * 0: frees it). NULL when out of memory (p is then untouched) or freed. */
#if defined(__SANITIZE_THREAD__)
#define VM_MOVE_BY_COPY 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VM_MOVE_BY_COPY 1
#endif
#endif

static inline void *vm_resize(void *p, size_t old, size_t size)
{
    if (size == 0) {
        if (p != NULL)
            munmap(p, old);
        return NULL;
    }
#ifdef VM_MOVE_BY_COPY
    /* ThreadSanitizer (Debian 12's) does not follow mremap: the range a
     * block moved from keeps its history, and the next thread whose
     * block the kernel places there is reported racing with the first.
     * Under it, a block moves by copy. */
    if (p != NULL) {
        void *q = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (q == MAP_FAILED)
            return NULL;
        memcpy(q, p, old < size ? old : size);
        munmap(p, old);
        return q;
    }
#endif
    void *q = p == NULL ? mmap(NULL, size, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                        : mremap(p, old, size, MREMAP_MAYMOVE);
    return q == MAP_FAILED ? NULL : q;
}

#endif /* TC_VMEM_H */
