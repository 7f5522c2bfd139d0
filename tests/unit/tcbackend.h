/*
 * tcbackend.h - running a disk-tier test file on both I/O backends: the
 * thread pool, then io_uring with the same cases, or a named skip for
 * each where io_uring cannot work here. Include after tcutil.h; it uses
 * the engine's io.h (the unit tests see the engine's headers).
 */
#ifndef TCBACKEND_H
#define TCBACKEND_H

#include <stdbool.h>
#include <stdio.h>

#include "io.h"
#include "tcutil.h"

/* Whether an io_uring queue can be made on this system. */
static inline bool tcu_uring_usable(void)
{
    io_config ic = {.backend = IO_BACKEND_URING};
    io_queue *q = NULL;
    if (io_queue_new(&ic, &q) != TC_OK)
        return false;
    io_queue_free(&q);
    return true;
}

/* Reports the selected cases as skipped because io_uring is missing. */
static inline void tcu_skip_uring(int argc, char **argv,
                                  const tct_case *cases, size_t n, int *num)
{
    for (size_t i = 0; i < n; i++)
        if (tct_selected(argc, argv, cases[i].name))
            printf("ok %d - %s # SKIP io_uring unavailable\n", ++*num,
                   cases[i].name);
}

#endif /* TCBACKEND_H */
