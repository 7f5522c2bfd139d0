#!/usr/bin/env python3
"""The disk tier seen by a client (tiercached only): a restart keeps the
items with their flags, expiry and CAS; a second server on the same data
directory is refused; a disk that fails is reported (stats, the log) and in
sync mode a store says SERVER_ERROR instead of STORED, while the server
goes on serving from memory and stores again once the disk works; stats
report the disk tier. The crash tests (tests/crash) cover kill -9 and
power cuts; the engine's unit tests (test_disk, test_damage) cover the
on-disk format, recovery and capacity.
"""

import os
import random
import subprocess
import threading
import time

from harness import Failure, Suite, free_port, run, server_on_dir, stop_clean, temp_data_dir

S = Suite(__doc__)

ONLY = dict(only="tiercached", reason="the disk tier is tiercached's")


def data_dir(t):
    return temp_data_dir(t, "tiercache-disk-")


def server_on(t, d, *extra):
    """A server on data directory d (stopped by the caller)."""
    return server_on_dir(t, S, d, *extra)



def restart_run(t, *extra):
    d = data_dir(t)
    srv = server_on(t, d, *extra)
    c = t.conn(srv)
    items = {}
    for i in range(300):
        key = t.key(str(i))
        value = (b"v%d-" % i) * (1 + i * 7 % 900)
        flags = i * 2654435761 % 2**32
        exptime = 0 if i % 3 else 3600
        c.call(b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime,
                                              len(value), value),
               b"STORED\r\n")
        items[key] = (flags, value)
    c.call(b"delete %s\r\n" % t.key("0"), b"DELETED\r\n")
    del items[t.key("0")]
    cas = {k: c.gets(k)[2] for k in items}
    direct = int(c.stats()["journal_direct_segments"])
    stop_clean(t, srv)

    srv = server_on(t, d, *extra)
    c = t.conn(srv)
    for key, (flags, value) in items.items():
        got = c.gets(key)
        t.check(got is not None, "%r kept across the restart" % key)
        t.eq((got[0], got[1]), (flags, value), "%r after the restart" % key)
        t.eq(got[2], cas[key], "CAS of %r after the restart" % key)
    t.eq(c.get(t.key("0")), None, "a deleted key stays deleted")
    # CAS never goes back: a new store gets a higher one.
    c.call(b"set %s 0 0 1\r\nx\r\n" % t.key("new"), b"STORED\r\n")
    t.check(c.gets(t.key("new"))[2] > max(cas.values()),
            "CAS after the restart above every earlier one")
    st = c.stats()
    t.check(int(st["disk_items"]) >= len(items),
            "disk_items %s counts the items" % st["disk_items"])
    stop_clean(t, srv)
    return direct


@S.test(**ONLY)
def restart_keeps_items(t):
    restart_run(t)


@S.test(**ONLY)
def restart_keeps_items_written_with_o_direct(t):
    """The same with the journal's writes around the page cache: records
    of every length, each write's last partial block carried to the next."""
    direct = restart_run(t, "--direct-writes=on")
    srv = server_on(t, data_dir(t), "--direct-writes=on")
    t.eq(t.conn(srv).stats().get("direct_writes"), "on",
         "stats says the mode")
    stop_clean(t, srv)
    t.check(direct > 0, "journal_direct_segments %d: written with O_DIRECT"
            % direct)


@S.test(**ONLY)
def second_server_on_the_directory_refused(t):
    d = data_dir(t)
    srv = server_on(t, d)
    r = subprocess.run(
        [S.binary, "-p", str(free_port()), "-l", "127.0.0.1", "--dir", d],
        capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    t.eq(r.returncode, 1, "exit status of the second server")
    t.check(d.encode() in r.stderr and b"another process" in r.stderr,
            "a message naming the directory and why: %r" % r.stderr[:300])
    # The first one is unharmed.
    c = t.conn(srv)
    c.call(b"set %s 0 0 1\r\na\r\n" % t.key(), b"STORED\r\n")
    stop_clean(t, srv)


@S.test(**ONLY)
def disk_failure_reported_and_survived(t):
    """A segment that cannot be created (a directory is in the way of its
    name): stores in sync mode answer SERVER_ERROR, the server keeps
    serving from memory, stats and the log say so; with the obstacle
    gone, stores are durable again."""
    d = data_dir(t)
    # Small segments (the minimum, 1 MiB) so that the journal soon needs a
    # second one.
    srv = server_on(t, d, "--durability", "sync", "--disk-size", "16m",
                    "-I", "64k")
    segs = sorted(f for f in os.listdir(d) if f.startswith("seg-"))
    t.check(len(segs) == 1, "one segment at the start: %r" % segs)
    first = int(segs[0][4:-4], 16)
    blocker = os.path.join(d, "seg-%016x.log" % (first + 1))
    os.mkdir(blocker)
    c = t.conn(srv)
    value = os.urandom(40000)  # incompressible: fills the segment
    replies = []
    for i in range(80):
        c.send(b"set %s 7 0 %d\r\n%s\r\n" % (t.key(str(i)), len(value), value))
        replies.append(c.readline())
    stored = replies.count(b"STORED\r\n")
    errors = [r for r in replies if r.startswith(b"SERVER_ERROR")]
    t.check(0 < stored < len(replies), "some stores before the failure: %d"
            % stored)
    t.check(len(errors) == len(replies) - stored,
            "every other store answered SERVER_ERROR: %r" % replies[-3:])
    t.check(replies[stored:] == [errors[0]] * len(errors),
            "no STORED after the first failure")
    t.note("%d stored, then %d x %r" % (stored, len(errors),
                                       errors[0] if errors else None))
    # Still serving: the stored values and (from memory) the failed ones.
    t.eq(c.get(t.key("0")), (7, value), "a stored value")
    t.eq(c.get(t.key(str(len(replies) - 1))), (7, value),
         "a value the disk refused, from memory")
    st = c.stats()
    t.check(int(st["disk_write_errors"]) > 0, "stats disk_write_errors %s"
            % st["disk_write_errors"])
    t.check(int(st["disk_last_errno"]) != 0, "stats disk_last_errno")
    deadline = time.monotonic() + 5
    while b"tiercached: disk:" not in srv.stderr_bytes():
        if time.monotonic() > deadline:
            raise Failure("no disk problem in the log: " + srv.stderr_tail())
        time.sleep(0.05)
    t.note([ln for ln in srv.stderr_bytes().splitlines()
            if b"disk:" in ln][0].decode(errors="replace"))
    # The disk works again: stores are durable again.
    os.rmdir(blocker)
    c.call(b"set %s 7 0 5\r\nagain\r\n" % t.key("after"), b"STORED\r\n")
    stop_clean(t, srv)
    srv = server_on(t, d)
    c = t.conn(srv)
    t.eq(c.get(t.key("after")), (7, b"again"),
         "a store after the disk recovered, after a restart")
    t.eq(c.get(t.key("0")), (7, value), "a store before the failure")
    stop_clean(t, srv)


@S.test(**ONLY)
def full_journal_pauses_reading_and_says_so(t):
    # -m 16 -I 1m: the journal may hold 4 MiB not yet fdatasynced (a
    # quarter of -m, at least 4 x -I), so 32 MiB of sets sent at once
    # must stop the worker reading for a while. Every set is still
    # answered, stats count the waits, and they end with an fdatasync
    # that comes early: not the minute of --flush-ms later (before the
    # journal synced early, this burst stalled for that minute). The
    # values do not compress: 100 KiB of one byte compressed to almost
    # nothing, and a journal writer with next to nothing to write kept up
    # with the worker in one CI run (no wait at all).
    d = data_dir(t)
    srv = server_on(t, d, "-m", "16", "-I", "1m", "--flush-ms", "60000")
    c = t.conn(srv)
    before = c.stats()
    t.eq((before["journal_waits"], before["journal_wait_us"]), ("0", "0"),
         "journal_waits and journal_wait_us of a fresh server")
    value = random.Random(147).randbytes(100 * 1024)
    n = 320
    req = b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (t.key(str(i)), len(value),
                                                  value) for i in range(n))
    start = time.monotonic()
    c.send(req)
    c.expect(b"STORED\r\n" * n, "the replies of 32 MiB of sets")
    took = time.monotonic() - start
    st = c.stats()
    waits, us = int(st["journal_waits"]), int(st["journal_wait_us"])
    t.note("%.2f s; journal_waits %d, journal_wait_us %d, fsyncs %s"
           % (took, waits, us, st["fsyncs"]))
    t.check(waits >= 1, "the worker waited for the journal: journal_waits "
            "%d" % waits)
    # The congestion check runs every millisecond.
    t.check(us >= 500, "journal_wait_us %d for %d waits" % (us, waits))
    t.check(took < 30, "32 MiB of sets took %.1f s: stalled for "
            "--flush-ms" % took)
    t.eq(c.get(t.key(str(n - 1))), (0, value), "the last value")
    stop_clean(t, srv)


@S.test(**ONLY)
def reads_go_on_while_changes_wait(t):
    # One worker (-t 1), two connections: one sends 32 MiB of sets at
    # once (as above: the journal congests, and that connection pauses
    # now and then), the other asks for stats meanwhile. Its stats are
    # answered while the journal is congested: some of them report more
    # bytes waiting for an fdatasync (or for the index) than queue_max
    # (a quarter of -m, 4 MiB here), where changes stop. Before, every
    # connection of the worker paused, stats too: a stats reply then never
    # saw more than queue_max (only the journal writer and the index
    # writer change these counts outside the worker, and they only lower
    # them). The sets still wait: the bytes waiting pass queue_max by one
    # record at most.
    d = data_dir(t)
    srv = server_on(t, d, "-t", "1", "-m", "16", "-I", "1m",
                    "--flush-ms", "60000")
    writer, reader = t.conn(srv), t.conn(srv)
    value = random.Random(149).randbytes(100 * 1024)
    n = 320
    req = b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (t.key(str(i)), len(value),
                                                  value) for i in range(n))
    failed = []

    def burst():
        try:
            writer.send(req)
            writer.expect(b"STORED\r\n" * n, "the replies of 32 MiB of sets")
        except Failure as e:
            failed.append(str(e))

    th = threading.Thread(target=burst)
    th.start()
    queue_max = 4 << 20
    seen, congested, most = 0, 0, 0
    end = time.monotonic() + 30
    while th.is_alive() and time.monotonic() < end:
        st = reader.stats()
        seen += 1
        waiting = max(int(st["journal_unsynced_bytes"]),
                      int(st["journal_lag_bytes"]))
        most = max(most, waiting)
        congested += waiting > queue_max
    th.join(35)
    t.note("%d stats replies during the burst, %d of them past queue_max; "
           "the most bytes waiting %d" % (seen, congested, most))
    t.check(not failed, "the burst: %s" % failed)
    t.check(congested >= 1, "a stats reply while the journal was congested "
            "(%d replies, the most bytes waiting %d)" % (seen, most))
    # The sets still waited: each went on only while queue_max or less
    # waited, so one record at most is past it.
    t.check(most <= queue_max + 2 * len(value),
            "the most bytes waiting, %d, within queue_max and a set" % most)
    t.eq(reader.get(t.key(str(n - 1))), (0, value), "the last value")
    stop_clean(t, srv)


@S.test(**ONLY)
def stats_report_the_disk_tier(t):
    c = t.conn()
    c.call(b"set %s 0 0 3\r\nabc\r\n" % t.key(), b"STORED\r\n")
    st = c.stats()
    for name in ("io_backend", "durability", "disk_items", "disk_bytes",
                 "disk_limit_bytes", "disk_reads", "get_disk_hits",
                 "journal_bytes", "journal_lag_bytes", "index_lag_records",
                 "index_batches", "fsyncs", "fsync_us_p99", "fsync_us_max",
                 "compress_ratio",
                 "recovery_records", "recovery_cut_bytes", "recovery_skipped",
                 "recovery_seconds", "disk_read_errors", "disk_write_errors",
                 "journal_waits", "journal_wait_us"):
        t.check(name in st, "stats has %s" % name)
    t.check(st["io_backend"] in ("io_uring", "threads"),
            "io_backend %r" % st.get("io_backend"))
    if "--io-backend=threads" in S.user_args:
        t.eq(st["io_backend"], "threads", "the backend asked for")
    t.eq(st["durability"], "async", "the default durability")


if __name__ == "__main__":
    run(S)
