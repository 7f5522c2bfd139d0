/*
 * io.h - the engine's file I/O: io_uring, or a thread pool doing
 * pread/pwrite/fdatasync where io_uring is not allowed, with one
 * interface.
 *
 * Model (liburing's, kept for both backends): a consumer thread owns an
 * io_queue; it prepares operations (io_op, memory it owns), submits them,
 * and reaps the completed ones, from that same thread. Completions are
 * reaped in any order. An eventfd (io_queue_fd) becomes readable while
 * completions wait, so a consumer can also wait on other things with
 * poll(). A queue belongs to one thread at a time; several queues may
 * exist at once (the journal writer has one, the disk readers another).
 *
 * Backends:
 *   - io_uring: one ring per queue; operations go to the kernel in
 *     batches (io_submit queues them, io_reap and io_flush submit);
 *   - threads: a pool of threads per queue doing the blocking calls;
 *     completions come back through a locked list and the eventfd.
 * io_uring is chosen when io_uring_queue_init() works; a sysctl
 * (kernel.io_uring_disabled) or a seccomp policy makes it fail, and the
 * thread pool is used. TC_IO_BACKEND=threads|io_uring in the environment,
 * or io_config.backend, forces one (forcing io_uring where it cannot work
 * is an error, TC_EIO).
 *
 * Writes and reads are complete or failed: a short write of a regular
 * file is continued by the backend until all bytes are written or an
 * error occurs; a read returns fewer bytes only at the end of the file.
 *
 * File management (create, preallocate, unlink, directory fsync) also
 * goes through this module, blocking, on the caller's thread, so that
 * the test layer below sees every change to the data directory.
 *
 * Test layer (power cuts): io_sim_enable() makes every queue and file
 * call of the process record what has not reached stable storage: data
 * written but not yet fdatasynced, files created or unlinked in a
 * directory not yet fsynced. io_sim_power_cut() then undoes all of it,
 * on the real files, as a machine losing power would (unsynced writes
 * reverted to the bytes they replaced and files cut back to their synced
 * size; unsynced creations removed; unsynced unlinks undone), and the
 * test kills the process. Only tests call these.
 */
#ifndef TC_IO_H
#define TC_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tiercache.h"

typedef enum io_backend {
    IO_BACKEND_AUTO = 0,
    IO_BACKEND_URING = 1,
    IO_BACKEND_THREADS = 2,
} io_backend;

/* "io_uring", "threads" or "auto". */
const char *io_backend_name(io_backend b);

typedef struct io_config {
    io_backend backend;    /* AUTO: TC_IO_BACKEND, else io_uring if it works */
    unsigned depth;        /* most operations in flight; 0 = 64 */
    unsigned pool_threads; /* threads backend: pool size; 0 = 4 */
} io_config;

enum { IO_OP_READ = 1, IO_OP_WRITE, IO_OP_WRITEV, IO_OP_FDATASYNC };

typedef struct io_op {
    /* Set by io_prep_*(); the buffers stay the caller's and must live
     * until the operation is reaped. */
    uint8_t opcode;
    int fd;
    void *buf;               /* READ, WRITE */
    const struct iovec *iov; /* WRITEV */
    int iovcnt;
    size_t len;   /* READ, WRITE: bytes; WRITEV: their sum (set by prep) */
    uint64_t off; /* file offset */
    /* The result, when reaped: bytes read or written (0 for FDATASYNC),
     * or -errno. */
    int64_t res;
    void *user; /* the caller's; io_prep_*() leave it alone */
    /* The backend's. */
    struct io_op *next;
    size_t done;
    void *sim; /* the test layer's record of the operation */
} io_op;

void io_prep_read(io_op *op, int fd, void *buf, size_t len, uint64_t off);
void io_prep_write(io_op *op, int fd, const void *buf, size_t len,
                   uint64_t off);
void io_prep_writev(io_op *op, int fd, const struct iovec *iov, int iovcnt,
                    uint64_t off);
void io_prep_fdatasync(io_op *op, int fd);

typedef struct io_queue io_queue;

/* Creates a queue (cfg NULL: all defaults). Errors: TC_EIO (the backend
 * asked for cannot work, or no eventfd; see errno), TC_EINVAL (depth
 * above 32768, an unknown backend, TC_IO_BACKEND not one of "threads",
 * "io_uring", "auto" or empty), TC_ENOMEM. The threads backend starts
 * min(pool_threads, depth) threads, which block all signals. */
tc_status io_queue_new(const io_config *cfg, io_queue **out);
/* Waits for the operations in flight (their buffers must live until it
 * returns), then frees the queue, dropping completions not reaped;
 * *q = NULL. NULL or *q NULL: does nothing. */
void io_queue_free(io_queue **q);
/* The backend the queue uses: URING or THREADS. */
io_backend io_queue_backend(const io_queue *q);
/* An eventfd, readable while completions wait to be reaped (io_reap
 * reads it empty when it takes the last). With io_uring it can also turn
 * readable for a CQE that only continued a short transfer: io_reap then
 * returns 0 and clears it. Owned by the queue. */
int io_queue_fd(const io_queue *q);
/* Operations submitted and not yet reaped. */
unsigned io_queue_inflight(const io_queue *q);

/*
 * Hands op to the queue. With io_uring it reaches the kernel at the next
 * io_flush() or io_reap() (or at once when the submission ring is full).
 * TC_EBUSY when depth operations are already in flight; TC_EINVAL for
 * an op not set by io_prep_*() (unknown opcode, negative iovcnt). Errors
 * of the operation itself come back in op->res.
 */
tc_status io_submit(io_queue *q, io_op *op);
/* Sends what io_submit() queued to the kernel (io_uring); no-op else. */
void io_flush(io_queue *q);

/*
 * Puts up to max completed operations in out[] and returns how many.
 * Waits up to timeout_ms (0: not at all; -1: for ever) for at least
 * min of them (fewer when fewer are in flight). Submits first.
 */
unsigned io_reap(io_queue *q, io_op **out, unsigned max, unsigned min,
                 int timeout_ms);

/*
 * File management, blocking, on the caller's thread. All return 0 or
 * -errno.
 */

/* Opens (or creates, with O_CREAT in flags) a file relative to dirfd
 * (O_CLOEXEC is added); returns the fd or -errno. */
int io_file_open(int dirfd, const char *name, int flags, mode_t mode);
/* Preallocates [0, size) of fd (fallocate; a filesystem without it gets
 * the size by ftruncate). */
int io_file_prealloc(int fd, uint64_t size);
int io_file_truncate(int fd, uint64_t size);
int io_file_unlink(int dirfd, const char *name);
int io_file_rename(int dirfd, const char *from, const char *to);
/* fsync of a directory: makes creations, renames and unlinks in it
 * durable. */
int io_dir_sync(int dirfd);
/* fdatasync, blocking (for callers outside a queue). */
int io_file_sync(int fd);
/* Closes fd (the test layer forgets it only once it is synced). */
int io_file_close(int fd);
/* Reads len bytes at off only if that needs no wait for the device (the
 * page cache holds them: preadv2 with RWF_NOWAIT). Returns the bytes read
 * (a short count when only some were cached), -EAGAIN when it would have
 * waited (always under the test layer, whose reads go through queues),
 * or -errno. */
ssize_t io_file_read_nowait(int fd, void *buf, size_t len, uint64_t off);

/*
 * Test layer (see above; iosim.c has the model). Its state is the one
 * process-global state of the engine, so a test enables it in a child
 * process, before the engine creates queues or touches files, and ends
 * that process after the power cut. Files are known by device and inode,
 * whatever descriptor reaches them. Only what goes through this module
 * is seen: LMDB's own writes, msync and fsyncs are not (but an index
 * commit is made wholly before the cut or not at all: idx.c).
 *
 * While it is on, an unlinked file, and a file a rename replaces, keep
 * their data under a hidden name ".tcsim-<pid>-<n>" in their directory
 * until the directory is synced; io_file_* calls are serialised, and so
 * are the thread pool's calls.
 */
void io_sim_enable(void);
bool io_sim_enabled(void);
/* A slow disk, on or off independently of the rest of the layer: every
 * write or writev submitted from then on first waits len / bytes_per_s
 * on the submitting thread (0: no wait, the default). */
void io_sim_slow_writes(uint64_t bytes_per_s);
/* A slow fdatasync, likewise: with the thread pool's backend, every
 * fdatasync from then on first waits us microseconds on the pool thread
 * that runs it, not on the submitting one (0: no wait, the default). */
void io_sim_slow_syncs(uint64_t us);
/* A failing fdatasync: with the thread pool's backend, and the power-cut
 * simulation off, every fdatasync from then on fails with -err without
 * being made (0: none fail, the default). */
void io_sim_fail_syncs(int err);
/* Failing reads: with the thread pool's backend, and the power-cut
 * simulation off, every read from then on fails with -err without being
 * made (0: none fail, the default). */
void io_sim_fail_reads(int err);
/* Makes every later operation fail with -EIO without touching a file,
 * waits for what the kernel or a pool thread is doing, then undoes
 * everything not on stable storage. Returns how many changes it undid:
 * each write, truncation and preallocation not covered by an fdatasync,
 * each creation, unlink and rename (and each file a rename replaced) not
 * covered by a sync of its directory; UINT_MAX when the layer could not
 * keep its records exact (out of memory) or could not restore a file.
 * Does nothing and returns 0 when the layer is off. The caller then
 * ends the process (_exit). */
unsigned io_sim_power_cut(void);

#endif /* TC_IO_H */
