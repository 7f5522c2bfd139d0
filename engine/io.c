/*
 * io.c - the engine's file I/O (io.h): the io_uring backend, the thread
 * pool backend, the choice between them, and the blocking file
 * management calls. The power-cut test layer is in iosim.c.
 *
 * An operation (io_op) is in exactly one place while a queue has it:
 *   io_uring: q->pend (submitted, no SQE yet; io_flush turns them into
 *             SQEs), the kernel (an SQE or a CQE not yet seen; counted
 *             in q->in_kernel), or q->done (its final result known, not
 *             yet reaped);
 *   threads:  q->todo (waiting for a pool thread), a pool thread, or
 *             q->cq (finished, not yet reaped).
 * q->inflight counts all of them and never exceeds q->depth; it and the
 * io_uring lists are touched by the consumer thread only, the thread
 * pool's lists only under q->lock.
 *
 * A read, write or writev that transfers fewer bytes than asked goes on
 * from where it stopped (op->done counts what is behind it): io_uring
 * gets a new SQE for the rest, a pool thread loops. A read ends early
 * only when the file does (a transfer of 0 bytes); a write that makes no
 * progress fails with -EIO rather than loop. One SQE moves at most
 * IO_CHUNK_MAX bytes (the ring's lengths are 32 bits), so longer
 * operations are continued the same way. EINTR is retried by both
 * backends. In a writev continued inside an iovec, the partial iovec is
 * written alone (a plain write) and the rest by a writev of the
 * caller's array from the next iovec on, so the caller's array is never
 * copied or changed.
 *
 * The eventfd (q->efd) is readable while completions wait to be reaped:
 *   threads:  the pool writes it when q->cq becomes non-empty and the
 *             reaper reads it empty when it takes the last one, both
 *             under q->lock, so it is exact;
 *   io_uring: the kernel writes it for every CQE (registered eventfd);
 *             io_reap reads it empty when nothing is left and then looks
 *             at the CQ ring again, writing it back if a CQE slipped in
 *             between. A CQE that only continues a short transfer makes
 *             it readable without a completion; io_reap then returns 0
 *             and clears it. Operations finished without the kernel (a
 *             power cut of the test layer) write it themselves.
 *
 * The io_uring ring has at least depth SQEs and twice as many CQEs, and
 * an operation holds at most one SQE or CQE at a time, so the CQ ring
 * cannot overflow; io_submit flushes to the kernel when the operations
 * waiting for an SQE would fill the SQ ring.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "io.h"
#include "io_int.h"

#define IO_DEPTH_DEFAULT 64u
#define IO_DEPTH_MAX 32768u /* the kernel's IORING_MAX_ENTRIES */
#define IO_POOL_DEFAULT 4u
#define IO_CHUNK_MAX (1u << 30)

struct io_queue {
    io_backend backend;
    unsigned depth;
    unsigned inflight;
    int efd;

    /* io_uring */
    struct io_uring ring;
    bool ring_live;
    unsigned sq_entries;
    io_op *pend_head, *pend_tail;
    unsigned npend;
    io_op *done_head, *done_tail;
    unsigned ndone;
    unsigned in_kernel;

    /* threads */
    pthread_mutex_t lock;
    pthread_cond_t work_cond;
    pthread_cond_t done_cond;
    bool pool_live;
    bool stopping;
    io_op *todo_head, *todo_tail;
    io_op *cq_head, *cq_tail;
    pthread_t *threads;
    unsigned nthreads;
};

/* ------------------------------------------------------------------ */
/* Small helpers.                                                      */

static void op_push(io_op **head, io_op **tail, io_op *op)
{
    op->next = NULL;
    if (*tail != NULL)
        (*tail)->next = op;
    else
        *head = op;
    *tail = op;
}

static io_op *op_pop(io_op **head, io_op **tail)
{
    io_op *op = *head;
    if (op != NULL) {
        *head = op->next;
        if (*head == NULL)
            *tail = NULL;
        op->next = NULL;
    }
    return op;
}

static void efd_signal(int efd)
{
    uint64_t one = 1;
    /* EAGAIN only when the counter is about to overflow: it is readable
     * then anyway. */
    while (write(efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void efd_clear(int efd)
{
    uint64_t v;
    while (read(efd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
}

static size_t chunk(size_t n)
{
    return n > IO_CHUNK_MAX ? IO_CHUNK_MAX : n;
}

/* Where byte `done` of a writev lies: iovec *idx, *skip bytes into it. */
static void iov_locate(const struct iovec *iov, int iovcnt, size_t done,
                       int *idx, size_t *skip)
{
    int i = 0;
    while (i < iovcnt && done >= iov[i].iov_len) {
        done -= iov[i].iov_len;
        i++;
    }
    *idx = i;
    *skip = done;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* Operations.                                                         */

static void op_prep(io_op *op, uint8_t opcode, int fd)
{
    /* The caller's user pointer survives, as liburing's user_data does. */
    op->opcode = opcode;
    op->fd = fd;
    op->buf = NULL;
    op->iov = NULL;
    op->iovcnt = 0;
    op->len = 0;
    op->off = 0;
    op->res = 0;
    op->next = NULL;
    op->done = 0;
    op->sim = NULL;
}

void io_prep_read(io_op *op, int fd, void *buf, size_t len, uint64_t off)
{
    op_prep(op, IO_OP_READ, fd);
    op->buf = buf;
    op->len = len;
    op->off = off;
}

void io_prep_write(io_op *op, int fd, const void *buf, size_t len,
                   uint64_t off)
{
    op_prep(op, IO_OP_WRITE, fd);
    /* The buffer is only read; io_op has one pointer for both ways. */
    op->buf = (void *)(uintptr_t)buf;
    op->len = len;
    op->off = off;
}

void io_prep_writev(io_op *op, int fd, const struct iovec *iov, int iovcnt,
                    uint64_t off)
{
    op_prep(op, IO_OP_WRITEV, fd);
    op->iov = iov;
    op->iovcnt = iovcnt;
    op->off = off;
    for (int i = 0; i < iovcnt; i++)
        op->len += iov[i].iov_len;
}

void io_prep_fdatasync(io_op *op, int fd)
{
    op_prep(op, IO_OP_FDATASYNC, fd);
}

static bool op_valid(const io_op *op)
{
    switch (op->opcode) {
    case IO_OP_READ:
    case IO_OP_WRITE:
    case IO_OP_FDATASYNC:
        return true;
    case IO_OP_WRITEV:
        return op->iovcnt >= 0 && (op->iovcnt == 0 || op->iov != NULL);
    default:
        return false;
    }
}

int io_sys_fsync(int fd, bool data_only)
{
    for (;;) {
        if ((data_only ? fdatasync(fd) : fsync(fd)) == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

int64_t io_sys_run(io_op *op)
{
    if (op->opcode == IO_OP_FDATASYNC)
        return io_sys_fsync(op->fd, true);
    size_t done = 0;
    while (done < op->len || (op->len == 0 && done == 0)) {
        off_t off = (off_t)(op->off + done);
        size_t want = chunk(op->len - done);
        ssize_t n;
        if (op->opcode == IO_OP_READ) {
            n = pread(op->fd, (char *)op->buf + done, want, off);
        } else if (op->opcode == IO_OP_WRITE) {
            n = pwrite(op->fd, (const char *)op->buf + done, want, off);
        } else {
            int i;
            size_t skip;
            iov_locate(op->iov, op->iovcnt, done, &i, &skip);
            if (skip > 0)
                n = pwrite(op->fd, (const char *)op->iov[i].iov_base + skip,
                           chunk(op->iov[i].iov_len - skip), off);
            else
                n = pwritev(op->fd, op->iov + i, op->iovcnt - i, off);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (op->len == 0)
            break;
        if (n == 0)
            return op->opcode == IO_OP_READ ? (int64_t)done : -EIO;
        done += (size_t)n;
    }
    return (int64_t)done;
}

/* ------------------------------------------------------------------ */
/* io_uring backend.                                                   */

/* op's final result is known: it waits in q->done to be reaped. */
static void ring_finish(io_queue *q, io_op *op, int64_t res)
{
    op->res = res;
    if (op->sim != NULL && iosim_active()) {
        iosim_lock();
        iosim_complete_locked(op);
        iosim_unlock();
    }
    op_push(&q->done_head, &q->done_tail, op);
    q->ndone++;
}

/* Fills sqe with what is left of op. */
static void ring_prep(struct io_uring_sqe *sqe, io_op *op)
{
    uint64_t off = op->off + op->done;
    size_t left = op->len - op->done;
    switch (op->opcode) {
    case IO_OP_READ:
        io_uring_prep_read(sqe, op->fd, (char *)op->buf + op->done,
                           (unsigned)chunk(left), off);
        break;
    case IO_OP_WRITE:
        io_uring_prep_write(sqe, op->fd, (const char *)op->buf + op->done,
                            (unsigned)chunk(left), off);
        break;
    case IO_OP_WRITEV: {
        int i;
        size_t skip;
        iov_locate(op->iov, op->iovcnt, op->done, &i, &skip);
        if (skip > 0)
            io_uring_prep_write(
                sqe, op->fd, (const char *)op->iov[i].iov_base + skip,
                (unsigned)chunk(op->iov[i].iov_len - skip), off);
        else
            io_uring_prep_writev(sqe, op->fd, op->iov + i,
                                 (unsigned)(op->iovcnt - i), off);
        break;
    }
    default:
        io_uring_prep_fsync(sqe, op->fd, IORING_FSYNC_DATASYNC);
        break;
    }
    io_uring_sqe_set_data(sqe, op);
}

static int ring_submit(io_queue *q)
{
    int ret;
    do
        ret = io_uring_submit(&q->ring);
    while (ret == -EINTR);
    return ret;
}

/* Turns q->pend into SQEs, as many as the SQ ring takes. */
static void ring_fill(io_queue *q)
{
    while (q->pend_head != NULL) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);
        if (sqe == NULL) {
            /* Cannot happen while in_kernel <= depth <= sq_entries, but a
             * full ring is emptied into the kernel all the same. */
            if (ring_submit(q) <= 0)
                break;
            continue;
        }
        io_op *op = op_pop(&q->pend_head, &q->pend_tail);
        q->npend--;
        ring_prep(sqe, op);
        q->in_kernel++;
    }
}

/* Turns q->pend into SQEs and hands them to the kernel. After a power cut
 * of the test layer they fail with -EIO instead. */
static void ring_flush(io_queue *q)
{
    bool sim = iosim_active();
    if (q->pend_head == NULL && io_uring_sq_ready(&q->ring) == 0)
        return;
    if (sim) {
        iosim_lock();
        if (iosim_cut_locked()) {
            io_op *op;
            while ((op = op_pop(&q->pend_head, &q->pend_tail)) != NULL) {
                q->npend--;
                op->res = -EIO;
                iosim_complete_locked(op);
                op_push(&q->done_head, &q->done_tail, op);
                q->ndone++;
            }
            efd_signal(q->efd);
            goto out;
        }
    }
    ring_fill(q);
    /* A refusal (EAGAIN, EBUSY) leaves the SQEs in the ring for the next
     * call. */
    ring_submit(q);
out:
    if (sim)
        iosim_unlock();
}

static void ring_cqe(io_queue *q, io_op *op, int res)
{
    q->in_kernel--;
    if (res == -EINTR) {
        op_push(&q->pend_head, &q->pend_tail, op);
        q->npend++;
        return;
    }
    if (op->opcode == IO_OP_FDATASYNC || res < 0) {
        ring_finish(q, op, res < 0 ? res : 0);
        return;
    }
    op->done += (size_t)res;
    if (op->done >= op->len)
        ring_finish(q, op, (int64_t)op->done);
    else if (res == 0)
        ring_finish(q, op,
                    op->opcode == IO_OP_READ ? (int64_t)op->done : -EIO);
    else {
        op_push(&q->pend_head, &q->pend_tail, op);
        q->npend++;
    }
}

/* Takes every CQE there is; continuations go back to q->pend. */
static void ring_drain(io_queue *q)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&q->ring, head, cqe)
    {
        io_op *op = io_uring_cqe_get_data(cqe);
        if (op != NULL && cqe->user_data != LIBURING_UDATA_TIMEOUT)
            ring_cqe(q, op, cqe->res);
        n++;
    }
    io_uring_cq_advance(&q->ring, n);
}

/* Operations the kernel has taken and not yet completed. */
static unsigned ring_busy(io_queue *q)
{
    unsigned unsent = io_uring_sq_ready(&q->ring);
    return q->in_kernel > unsent ? q->in_kernel - unsent : 0;
}

static void ring_settle_efd(io_queue *q)
{
    if (q->ndone > 0)
        return;
    efd_clear(q->efd);
    if (io_uring_cq_ready(&q->ring) > 0)
        efd_signal(q->efd);
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits for one CQE for at most timeout_ms (-1: for ever); the flush and
 * the wait are one system call when the test layer is off. */
static void ring_wait(io_queue *q, int timeout_ms)
{
    struct io_uring_cqe *cqe;
    if (timeout_ms < 0 && !iosim_active()) {
        int ret;
        ring_fill(q);
        if (ring_busy(q) == 0 && io_uring_sq_ready(&q->ring) == 0) {
            /* Nothing submitted could complete. */
            return;
        }
        do
            ret = io_uring_submit_and_wait(&q->ring, 1);
        while (ret == -EINTR);
        if (ret < 0)
            pause_ms(1);
        return;
    }
    ring_flush(q);
    if (ring_busy(q) == 0) {
        /* The kernel refused the SQEs for now (EAGAIN): try again soon. */
        if (io_uring_sq_ready(&q->ring) > 0 && timeout_ms != 0)
            pause_ms(1);
        return;
    }
    if (timeout_ms < 0) {
        io_uring_wait_cqe(&q->ring, &cqe);
    } else {
        struct __kernel_timespec ts = {
            .tv_sec = timeout_ms / 1000,
            .tv_nsec = (long long)(timeout_ms % 1000) * 1000000LL};
        io_uring_wait_cqe_timeout(&q->ring, &cqe, &ts);
    }
}

static unsigned ring_reap(io_queue *q, io_op **out, unsigned max,
                          unsigned want, int timeout_ms)
{
    int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
    ring_flush(q);
    ring_drain(q);
    while (q->ndone < want && timeout_ms != 0) {
        int left = -1;
        if (timeout_ms > 0) {
            int64_t d = deadline - now_ms();
            if (d <= 0)
                break;
            left = (int)d;
        }
        ring_wait(q, left);
        ring_drain(q);
        if (q->pend_head != NULL)
            ring_flush(q);
    }
    if (q->pend_head != NULL)
        ring_flush(q);
    unsigned n = 0;
    while (n < max && q->done_head != NULL) {
        out[n++] = op_pop(&q->done_head, &q->done_tail);
        q->ndone--;
    }
    ring_settle_efd(q);
    return n;
}

static int ring_init(io_queue *q)
{
    struct io_uring_probe *probe = NULL;
    int ret = io_uring_queue_init(q->depth, &q->ring, 0);
    if (ret < 0)
        return ret;
    q->ring_live = true;
    q->sq_entries = q->ring.sq.ring_entries;
    /* READ and WRITE arrived in 5.6; an older kernel has a ring but not
     * the operations this backend uses. */
    probe = io_uring_get_probe_ring(&q->ring);
    if (probe == NULL || !io_uring_opcode_supported(probe, IORING_OP_READ) ||
        !io_uring_opcode_supported(probe, IORING_OP_WRITE) ||
        !io_uring_opcode_supported(probe, IORING_OP_WRITEV) ||
        !io_uring_opcode_supported(probe, IORING_OP_FSYNC)) {
        ret = -EOPNOTSUPP;
        goto out;
    }
    ret = io_uring_register_eventfd(&q->ring, q->efd);
    if (ret < 0)
        goto out;
    iosim_ring_add(&q->ring);
out:
    if (probe != NULL)
        io_uring_free_probe(probe);
    if (ret < 0) {
        io_uring_queue_exit(&q->ring);
        q->ring_live = false;
    }
    return ret;
}

static void ring_free(io_queue *q)
{
    /* Every operation the kernel has must end before the ring goes, and
     * before the test layer stops watching it. */
    for (;;) {
        ring_flush(q);
        ring_drain(q);
        if (ring_busy(q) > 0) {
            struct io_uring_cqe *cqe;
            io_uring_wait_cqe(&q->ring, &cqe);
            continue;
        }
        if (q->pend_head == NULL && io_uring_sq_ready(&q->ring) == 0)
            break;
        if (iosim_active()) {
            bool cut;
            iosim_lock();
            cut = iosim_cut_locked();
            iosim_unlock();
            if (cut)
                break;
        }
        pause_ms(1);
    }
    iosim_ring_del(&q->ring);
    io_uring_queue_exit(&q->ring);
    q->ring_live = false;
}

/* ------------------------------------------------------------------ */
/* Thread pool backend.                                                */

/* Under q->lock. */
static void pool_complete_locked(io_queue *q, io_op *op)
{
    if (q->cq_head == NULL)
        efd_signal(q->efd);
    op_push(&q->cq_head, &q->cq_tail, op);
    pthread_cond_broadcast(&q->done_cond);
}

static void pool_run(io_op *op)
{
    int err = op->opcode == IO_OP_FDATASYNC ? iosim_slow_sync()
              : op->opcode == IO_OP_READ    ? iosim_read_err()
                                            : 0;
    if (err != 0) {
        op->res = -err;
        return;
    }
    if (!iosim_active()) {
        op->res = io_sys_run(op);
        return;
    }
    /* The test layer sees the call and its result as one step, and a
     * power cut waits for a call under way. */
    iosim_lock();
    op->res = iosim_cut_locked() ? -EIO : io_sys_run(op);
    iosim_complete_locked(op);
    iosim_unlock();
}

static void *pool_main(void *arg)
{
    io_queue *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (q->todo_head == NULL && !q->stopping)
            pthread_cond_wait(&q->work_cond, &q->lock);
        io_op *op = op_pop(&q->todo_head, &q->todo_tail);
        if (op == NULL)
            break;
        pthread_mutex_unlock(&q->lock);
        pool_run(op);
        pthread_mutex_lock(&q->lock);
        pool_complete_locked(q, op);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static void pool_stop(io_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_broadcast(&q->work_cond);
    pthread_mutex_unlock(&q->lock);
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    q->nthreads = 0;
}

static tc_status pool_init(io_queue *q, unsigned nthreads)
{
    tc_status st = TC_OK;
    pthread_condattr_t ca;
    bool ca_live = false, lock_live = false, work_live = false;
    sigset_t all, old;

    if (pthread_condattr_init(&ca) != 0)
        return TC_ENOMEM;
    ca_live = true;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_mutex_init(&q->lock, NULL) != 0) {
        st = TC_ENOMEM;
        goto out;
    }
    lock_live = true;
    if (pthread_cond_init(&q->work_cond, NULL) != 0) {
        st = TC_ENOMEM;
        goto out;
    }
    work_live = true;
    if (pthread_cond_init(&q->done_cond, &ca) != 0) {
        st = TC_ENOMEM;
        goto out;
    }
    q->pool_live = true;
    q->threads = calloc(nthreads, sizeof(*q->threads));
    if (q->threads == NULL) {
        st = TC_ENOMEM;
        goto out;
    }
    /* Pool threads take no signals: they belong to the embedder's
     * threads. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&q->threads[i], NULL, pool_main, q) != 0) {
            st = TC_ENOMEM;
            break;
        }
        q->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
out:
    if (st != TC_OK) {
        if (q->pool_live) {
            pool_stop(q);
            pthread_cond_destroy(&q->done_cond);
            q->pool_live = false;
        }
        if (work_live)
            pthread_cond_destroy(&q->work_cond);
        if (lock_live)
            pthread_mutex_destroy(&q->lock);
        free(q->threads);
        q->threads = NULL;
    }
    if (ca_live)
        pthread_condattr_destroy(&ca);
    return st;
}

static void pool_free(io_queue *q)
{
    pool_stop(q);
    pthread_cond_destroy(&q->done_cond);
    pthread_cond_destroy(&q->work_cond);
    pthread_mutex_destroy(&q->lock);
    free(q->threads);
    q->threads = NULL;
    q->pool_live = false;
}

static unsigned pool_reap(io_queue *q, io_op **out, unsigned max,
                          unsigned want, int timeout_ms)
{
    struct timespec deadline;
    unsigned n = 0;
    if (timeout_ms > 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (n < max && q->cq_head != NULL)
            out[n++] = op_pop(&q->cq_head, &q->cq_tail);
        if (n >= want || timeout_ms == 0)
            break;
        if (timeout_ms < 0)
            pthread_cond_wait(&q->done_cond, &q->lock);
        else if (pthread_cond_timedwait(&q->done_cond, &q->lock,
                                        &deadline) == ETIMEDOUT)
            timeout_ms = 0; /* take what is there, then return */
    }
    if (q->cq_head == NULL)
        efd_clear(q->efd);
    pthread_mutex_unlock(&q->lock);
    return n;
}

/* ------------------------------------------------------------------ */
/* Queues.                                                             */

const char *io_backend_name(io_backend b)
{
    switch (b) {
    case IO_BACKEND_URING:
        return "io_uring";
    case IO_BACKEND_THREADS:
        return "threads";
    default:
        return "auto";
    }
}

/* The backend asked for: the configuration's, else TC_IO_BACKEND's. */
static tc_status backend_wanted(io_backend cfg, io_backend *out)
{
    if (cfg == IO_BACKEND_URING || cfg == IO_BACKEND_THREADS) {
        *out = cfg;
        return TC_OK;
    }
    if (cfg != IO_BACKEND_AUTO)
        return TC_EINVAL;
    const char *env = getenv("TC_IO_BACKEND");
    if (env == NULL || env[0] == '\0' || strcmp(env, "auto") == 0)
        *out = IO_BACKEND_AUTO;
    else if (strcmp(env, "io_uring") == 0)
        *out = IO_BACKEND_URING;
    else if (strcmp(env, "threads") == 0)
        *out = IO_BACKEND_THREADS;
    else
        return TC_EINVAL;
    return TC_OK;
}

tc_status io_queue_new(const io_config *cfg, io_queue **out)
{
    io_config c = {IO_BACKEND_AUTO, 0, 0};
    io_backend want;
    io_queue *q = NULL;
    tc_status st;
    int err = 0;

    *out = NULL;
    if (cfg != NULL)
        c = *cfg;
    if (c.depth == 0)
        c.depth = IO_DEPTH_DEFAULT;
    if (c.pool_threads == 0)
        c.pool_threads = IO_POOL_DEFAULT;
    if (c.depth > IO_DEPTH_MAX)
        return TC_EINVAL;
    st = backend_wanted(c.backend, &want);
    if (st != TC_OK)
        return st;

    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return TC_ENOMEM;
    q->depth = c.depth;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        err = errno;
        st = err == ENOMEM ? TC_ENOMEM : TC_EIO;
        goto out;
    }
    if (want != IO_BACKEND_THREADS) {
        int ret = ring_init(q);
        if (ret == 0) {
            q->backend = IO_BACKEND_URING;
            goto out;
        }
        if (want == IO_BACKEND_URING) {
            err = -ret;
            st = TC_EIO;
            goto out;
        }
    }
    q->backend = IO_BACKEND_THREADS;
    st = pool_init(q, c.pool_threads < c.depth ? c.pool_threads : c.depth);
out:
    if (st != TC_OK) {
        if (q->efd >= 0)
            close(q->efd);
        free(q);
        if (err != 0)
            errno = err;
        return st;
    }
    *out = q;
    return TC_OK;
}

void io_queue_free(io_queue **qp)
{
    io_queue *q = *qp;
    if (q == NULL)
        return;
    if (q->ring_live)
        ring_free(q);
    if (q->pool_live)
        pool_free(q);
    close(q->efd);
    free(q);
    *qp = NULL;
}

io_backend io_queue_backend(const io_queue *q)
{
    return q->backend;
}

int io_queue_fd(const io_queue *q)
{
    return q->efd;
}

unsigned io_queue_inflight(const io_queue *q)
{
    return q->inflight;
}

/* The test layer records op; a non-zero result fails it at once. */
static int submit_sim(io_op *op)
{
    int err;
    if (op->opcode == IO_OP_WRITE || op->opcode == IO_OP_WRITEV)
        iosim_slow_write(op->len);
    if (!iosim_active())
        return 0;
    iosim_lock();
    err = iosim_submit_locked(op);
    iosim_unlock();
    return err;
}

tc_status io_submit(io_queue *q, io_op *op)
{
    int err;
    if (!op_valid(op))
        return TC_EINVAL;
    if (q->inflight >= q->depth)
        return TC_EBUSY;
    q->inflight++;
    op->done = 0;
    op->res = 0;
    err = submit_sim(op);
    if (q->backend == IO_BACKEND_URING) {
        if (err != 0) {
            op->res = err;
            op_push(&q->done_head, &q->done_tail, op);
            q->ndone++;
            efd_signal(q->efd);
            return TC_OK;
        }
        op_push(&q->pend_head, &q->pend_tail, op);
        q->npend++;
        if (q->npend >= q->sq_entries)
            ring_flush(q);
        return TC_OK;
    }
    pthread_mutex_lock(&q->lock);
    if (err != 0) {
        op->res = err;
        pool_complete_locked(q, op);
    } else {
        op_push(&q->todo_head, &q->todo_tail, op);
        pthread_cond_signal(&q->work_cond);
    }
    pthread_mutex_unlock(&q->lock);
    return TC_OK;
}

void io_flush(io_queue *q)
{
    if (q->backend == IO_BACKEND_URING)
        ring_flush(q);
}

unsigned io_reap(io_queue *q, io_op **out, unsigned max, unsigned min,
                 int timeout_ms)
{
    unsigned want = min < max ? min : max;
    unsigned n;
    if (want > q->inflight)
        want = q->inflight;
    if (q->backend == IO_BACKEND_URING)
        n = ring_reap(q, out, max, want, timeout_ms);
    else
        n = pool_reap(q, out, max, want, timeout_ms);
    q->inflight -= n;
    return n;
}

/* ------------------------------------------------------------------ */
/* File management.                                                    */

int io_sys_open(int dirfd, const char *name, int flags, mode_t mode)
{
    for (;;) {
        int fd = openat(dirfd, name, flags | O_CLOEXEC, mode);
        if (fd >= 0)
            return fd;
        if (errno != EINTR)
            return -errno;
    }
}

int io_sys_prealloc(int fd, uint64_t size)
{
    struct stat st;
    if (size == 0)
        return 0;
    for (;;) {
        if (fallocate(fd, 0, 0, (off_t)size) == 0)
            return 0;
        if (errno != EINTR)
            break;
    }
    if (errno != EOPNOTSUPP)
        return -errno;
    /* The file system cannot reserve blocks: give the file its size. */
    if (fstat(fd, &st) != 0)
        return -errno;
    if ((uint64_t)st.st_size >= size)
        return 0;
    return io_sys_truncate(fd, size);
}

int io_sys_truncate(int fd, uint64_t size)
{
    for (;;) {
        if (ftruncate(fd, (off_t)size) == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

int io_file_open(int dirfd, const char *name, int flags, mode_t mode)
{
    if (iosim_active())
        return iosim_file_open(dirfd, name, flags, mode);
    return io_sys_open(dirfd, name, flags, mode);
}

int io_file_prealloc(int fd, uint64_t size)
{
    if (iosim_active())
        return iosim_file_prealloc(fd, size);
    return io_sys_prealloc(fd, size);
}

int io_file_truncate(int fd, uint64_t size)
{
    if (iosim_active())
        return iosim_file_truncate(fd, size);
    return io_sys_truncate(fd, size);
}

int io_file_unlink(int dirfd, const char *name)
{
    if (iosim_active())
        return iosim_file_unlink(dirfd, name);
    return unlinkat(dirfd, name, 0) == 0 ? 0 : -errno;
}

int io_file_rename(int dirfd, const char *from, const char *to)
{
    if (iosim_active())
        return iosim_file_rename(dirfd, from, to);
    return renameat(dirfd, from, dirfd, to) == 0 ? 0 : -errno;
}

int io_dir_sync(int dirfd)
{
    if (iosim_active())
        return iosim_dir_sync(dirfd);
    return io_sys_fsync(dirfd, false);
}

int io_file_sync(int fd)
{
    if (iosim_active())
        return iosim_file_sync(fd);
    return io_sys_fsync(fd, true);
}

ssize_t io_file_read_nowait(int fd, void *buf, size_t len, uint64_t off)
{
    if (iosim_active())
        return -EAGAIN;
    struct iovec iov = {buf, len};
    for (;;) {
        ssize_t n = preadv2(fd, &iov, 1, (off_t)off, RWF_NOWAIT);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EOPNOTSUPP ? -EAGAIN : -errno;
    }
}

int io_file_close(int fd)
{
    /* On Linux the descriptor is gone even when close() says EINTR. */
    if (close(fd) == 0 || errno == EINTR)
        return 0;
    return -errno;
}
