/*
 * io_int.h - what the I/O backends (io.c) and the power-cut test layer
 * (iosim.c) share: the blocking system calls, done once, with EINTR
 * retried and short transfers continued; and the hooks by which the
 * backends report every operation to the test layer.
 *
 * The hooks cost one relaxed atomic load while the test layer is off
 * (iosim_active()). While it is on:
 *   - every operation is announced with iosim_submit_locked() before any
 *     of its bytes can reach the kernel, and reported with
 *     iosim_complete_locked() once its final result is known;
 *   - a backend holds iosim_lock() while it hands operations to the
 *     kernel (io_uring_submit) or runs one (the thread pool), and checks
 *     iosim_cut_locked() first: after a power cut nothing more reaches
 *     the files;
 *   - every io_uring ring is registered (iosim_ring_add) so that the
 *     power cut can wait until the kernel has finished what it was given.
 */
#ifndef TC_IO_INT_H
#define TC_IO_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "io.h"

struct io_uring;

/* Blocking system calls (io.c); each returns 0 (io_sys_open: the fd) or
 * -errno. */
int io_sys_open(int dirfd, const char *name, int flags, mode_t mode);
int io_sys_prealloc(int fd, uint64_t size);
int io_sys_truncate(int fd, uint64_t size);
int io_sys_fsync(int fd, bool data_only);
/* Runs op to the end on the calling thread: bytes read or written, 0
 * for FDATASYNC, or -errno. Continues short transfers; a read stops
 * early only at the end of the file. */
int64_t io_sys_run(io_op *op);

/* The test layer (iosim.c). */
bool iosim_active(void);
/* Around a durable change made outside this module (an LMDB commit):
 * false once the power is cut (the change must not be made: in a real
 * cut nothing runs after it); otherwise a cut waits for the matching
 * iosim_outside_end, so the change happens wholly before it. */
bool iosim_outside_begin(void);
void iosim_outside_end(void);
/* Waits as long as io_sim_slow_writes says len bytes take. */
void iosim_slow_write(size_t len);
/* Before an fdatasync of the pool: waits as io_sim_slow_syncs says, and
 * returns the error io_sim_fail_syncs set (0: run it). */
int iosim_slow_sync(void);
/* Before a read of the pool: the error io_sim_fail_reads set (0: run it). */
int iosim_read_err(void);
void iosim_lock(void);
void iosim_unlock(void);
bool iosim_cut_locked(void);
/* Records op (a write, writev or fdatasync) before it is started;
 * returns 0, or -errno to fail op without starting it (-EIO after a
 * power cut, -ENOMEM). */
int iosim_submit_locked(io_op *op);
/* op->res holds op's final result. */
void iosim_complete_locked(io_op *op);
void iosim_ring_add(struct io_uring *ring);
void iosim_ring_del(struct io_uring *ring);

/* The file management calls of io.h as the test layer does them. */
int iosim_file_open(int dirfd, const char *name, int flags, mode_t mode);
int iosim_file_prealloc(int fd, uint64_t size);
int iosim_file_truncate(int fd, uint64_t size);
int iosim_file_unlink(int dirfd, const char *name);
int iosim_file_rename(int dirfd, const char *from, const char *to);
int iosim_dir_sync(int dirfd);
int iosim_file_sync(int fd);

#endif /* TC_IO_INT_H */
