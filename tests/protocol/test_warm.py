#!/usr/bin/env python3
"""Warm start seen by a client (tiercached only): after a clean restart and
after kill -9, once stats warm_state is done, the hot keys are in memory:
reading them leaves get_disk_hits unchanged; the stats fields are there;
--warm=off preloads nothing; bad --warm and --hot-snapshot-s values are
refused with a message. The engine's unit test test_warm covers the
snapshot's format, the memory limit, writes and deletes during the
preload, and a corrupt or missing snapshot.
"""

import signal
import subprocess
import time

from harness import Failure, Suite, run, server_on_dir, stop_clean, temp_data_dir

S = Suite(__doc__)

ONLY = dict(only="tiercached", reason="warm start is tiercached's")
N = 400


def data_dir(t):
    return temp_data_dir(t, "tiercache-warm-")


def server_on(t, d, *extra):
    return server_on_dir(t, S, d, *extra)



def value_of(i):
    return (b"hot-%d-" % i) * (1 + i % 97)


def fill_and_read(t, c, n=N):
    for i in range(n):
        v = value_of(i)
        c.call(b"set %s %d 0 %d\r\n%s\r\n" % (t.key(str(i)), i, len(v), v),
               b"STORED\r\n")
    for i in range(n):
        t.eq(c.get(t.key(str(i))), (i, value_of(i)), "key %d" % i)


def wait_until(what, cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise Failure("%s within %.0f s" % (what, timeout))
        time.sleep(0.02)


def wait_warm_done(t, c):
    wait_until("warm_state done", lambda: c.stats()["warm_state"] == "done")
    return c.stats()


def hot_keys_from_memory(t, srv, n=N):
    c = t.conn(srv)
    st = wait_warm_done(t, c)
    t.eq(int(st["warm_items"]), n, "warm_items")
    t.note("preloaded %s items, %s bytes in %s s" % (
        st["warm_items"], st["warm_bytes"], st["warm_seconds"]))
    before = int(st["get_disk_hits"])
    for i in range(n):
        t.eq(c.get(t.key(str(i))), (i, value_of(i)), "key %d" % i)
    st = c.stats()
    t.eq(int(st["get_disk_hits"]), before,
         "get_disk_hits after reading the hot keys")
    t.eq(st["mem_hit_ratio_since_start"], "1.0000",
         "mem_hit_ratio_since_start")
    t.check(b"tiercached: warm: done: %d items" % n in srv.stderr_bytes(),
            "the preload's last line in the log: " + srv.stderr_tail())


@S.test(**ONLY)
def clean_restart_serves_hot_keys_from_memory(t):
    d = data_dir(t)
    srv = server_on(t, d, "--hot-snapshot-s", "0")
    fill_and_read(t, t.conn(srv))
    stop_clean(t, srv)
    srv = server_on(t, d, "--hot-snapshot-s", "0")
    hot_keys_from_memory(t, srv)
    stop_clean(t, srv)


@S.test(**ONLY)
def kill9_restart_serves_hot_keys_from_memory(t):
    d = data_dir(t)
    srv = server_on(t, d, "--hot-snapshot-s", "1")
    c = t.conn(srv)
    wait_warm_done(t, c)
    fill_and_read(t, c)
    # A snapshot taken after the reads, with every key in it.
    taken = int(c.stats()["hot_snapshots"])
    wait_until("a periodic snapshot",
               lambda: int(c.stats()["hot_snapshots"]) >= taken + 2)
    t.eq(int(c.stats()["hot_snapshot_keys"]), N, "hot_snapshot_keys")
    srv.signal(signal.SIGKILL)
    t.check(srv.wait(10) is not None, "the server died of SIGKILL")
    srv = server_on(t, d, "--hot-snapshot-s", "1")
    hot_keys_from_memory(t, srv)
    stop_clean(t, srv)


@S.test(**ONLY)
def warm_off_preloads_nothing(t):
    d = data_dir(t)
    srv = server_on(t, d, "--warm=off")
    fill_and_read(t, t.conn(srv), 50)
    stop_clean(t, srv)
    srv = server_on(t, d, "--warm=off")
    c = t.conn(srv)
    time.sleep(0.2)
    st = c.stats()
    t.eq(st["warm_state"], "off", "warm_state")
    t.eq(st["warm_items"], "0", "warm_items")
    t.eq(st["curr_items"], "0", "curr_items: nothing preloaded")
    t.eq(c.get(t.key("3")), (3, value_of(3)), "a key from disk")
    t.check(b"warm:" not in srv.stderr_bytes(), "no warm lines in the log")
    stop_clean(t, srv)


@S.test(**ONLY)
def stats_report_warm_start(t):
    c = t.conn()
    st = wait_warm_done(t, c)
    for name in ("warm_state", "warm_items", "warm_bytes", "warm_seconds",
                 "hot_snapshots", "hot_snapshot_keys",
                 "mem_hit_ratio_since_start"):
        t.check(name in st, "stats has %s" % name)
    float(st["warm_seconds"])
    float(st["mem_hit_ratio_since_start"])


BAD = [
    (["--warm=maybe"], b"--warm"),
    (["--warm="], b"--warm"),
    (["--hot-snapshot-s=-1"], b"--hot-snapshot-s"),
    (["--hot-snapshot-s=abc"], b"--hot-snapshot-s"),
    (["--hot-snapshot-s=100000"], b"--hot-snapshot-s"),
]


@S.test(**ONLY)
def bad_flag_values_refused(t):
    for args, flag in BAD:
        r = subprocess.run([S.binary] + args, capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL)
        t.eq(r.returncode, 1, "exit status of %s" % " ".join(args))
        t.check(flag in r.stderr and b"give" in r.stderr,
                "%s named in: %r" % (flag.decode(), r.stderr[:200]))
    r = subprocess.run([S.binary, "--help"], capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    t.check(b"--warm=MODE" in r.stdout and b"--hot-snapshot-s" in r.stdout,
            "--help documents the flags")


if __name__ == "__main__":
    run(S)
