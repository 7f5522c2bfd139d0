#!/usr/bin/env python3
"""kill -9 of a real tiercached under concurrent write load: what survives.

    /usr/bin/python3 tests/crash/test_kill9.py --server build/server/tiercached

For each durability mode (sync, async, none) on each I/O backend (threads,
io_uring), one data directory goes through several rounds of:

  1. WRITERS threads, each with its own connection and its own range of
     KEYS_PER_WRITER keys, sweep over their keys in pipelined batches of
     BATCH requests, writing version 1, 2, 3, ... of each key (set, or add
     when the key is absent) and now and then deleting one. Every request
     is remembered per key, in order, with the time its reply arrived;
  2. after a random 0.5-2 s the server gets SIGKILL;
  3. tiercached restarts on the same directory (same flags) and every key
     is read back with multi-key gets.

What each mode must show after the restart. kill -9 keeps the page cache,
so what a process has written to its files survives even unsynced; these
are the promises as they apply to kill -9 (tests/crash/powercut.c checks
the fdatasync side with a simulated power cut):

  every mode  each value read back is exactly one of the values written for
              that key (never another key's, a torn or a mixed one), with
              the flags written with it;
  sync        a reply means the record was fdatasynced, so the key holds
              the state after its last acknowledged request, or after a
              later request that was sent but not answered before the kill
              (a reply read after the kill was sent before it: it counts);
  async       the journal is written at once and synced every --flush-ms,
              so a request acknowledged more than FLUSH_MS + ASYNC_MARGIN
              before the kill is there (or a later one);
  none        nothing is promised; how many keys kept their last state is
              reported, and only wrong values fail.

The state read back after a restart is the starting state of the next
round, whose writers go on with the next versions: later rounds crash a
directory that was itself recovered from a crash. At the end the server is
stopped with SIGTERM and started once more: a clean stop keeps everything,
in every mode. Each round also checks that the restart took less than
RESTART_LIMIT seconds, that stats reports the recovery figures and the
backend asked for, and that CAS values do not go backwards across the crash
(a new write's CAS is above every CAS read back).

The seed of a run is printed; KILL9_SEED=n repeats its choices (kill times,
operations; thread timing is never the same twice). KILL9_ROUNDS=n changes
the number of rounds. Where io_uring is unavailable (tiercached's automatic
backend choice picks threads), the io_uring configurations report a named
SKIP.

Output is TAP; the exit status is 1 if any test failed. Python standard
library only; every socket has a timeout and every loop a bound.
"""

import argparse
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "protocol"))
from harness import (HOST, START_TIMEOUT, Conn, Failure,  # noqa: E402
                     Server, free_port, show, takes_dir_flag)

MODES = ("sync", "async", "none")
BACKENDS = ("threads", "io_uring")

WRITERS = 8
KEYS_PER_WRITER = 300
KEYS = WRITERS * KEYS_PER_WRITER
BATCH = 16            # requests per pipelined send, each for another key
DELETE_P = 0.06       # chance that a present key is deleted instead
ADD_P = 0.5           # chance that an absent key is written with add
LONG_EXPTIME = 86400  # relative, a day: must not expire during the test
MAX_SWEEPS = 100000   # bound on a writer's loop; the kill ends it first

FLUSH_MS = 50
# async: what a kill -9 may lose is what was not yet written to the file.
# The journal writes at once, and syncs every FLUSH_MS; the margin covers
# the fdatasync itself and the scheduling of a 2-core machine that runs
# the server, eight writers and the kill at the same time.
ASYNC_MARGIN = 0.300
LOAD_MIN, LOAD_MAX = 0.5, 2.0  # seconds of load before the kill
DEFAULT_ROUNDS = 3

MEM_MB = 32           # the live data (about 5 MB) fits: no eviction needed
# Disk budget, MiB per round: a round writes up to about 100 MB of values
# (async and none at full speed for 2 s), less once compressed. Reclaim
# may rightly drop live items, which would read as lost writes, so the
# budget stays far above what is written; restart_checks makes sure.
DISK_MB_PER_ROUND = 256
RESTART_LIMIT = 5.0   # seconds from exec to accepting connections
OP_TIMEOUT = 10.0     # a sync write or a disk read under load can be slow
GET_BATCH = 100       # keys per multi-get when reading back
ROUND_BUDGET = 80.0   # seconds per round for the whole file (3 rounds
                      # take about 40 s; meson's timeout is 300)
MAX_SHOWN = 8         # keys listed per failure

RECOVERY_STATS = ("recovery_records", "recovery_cut_bytes",
                  "recovery_skipped", "recovery_seconds")


def key_name(k):
    return b"kill9:%d" % k


def value_of(k, v):
    """Version v of key k: its length and bytes depend on both, so another
    key's or version's value, or a torn one, never passes for it.

    Lengths run from 10 B to 20 KB (the server stores values under 64 B
    raw and compresses longer ones when that pays); half are repetitive
    (they compress), half random (zstd gives up and stores them raw).
    """
    r = random.Random(k << 32 | v)
    u = r.random()
    if u < 0.4:
        n = r.randrange(10, 64)
    elif u < 0.85:
        n = r.randrange(64, 2048)
    else:
        n = r.randrange(2048, 20481)
    head = b"k%d v%d " % (k, v)
    if r.random() < 0.5:
        unit = head + r.randbytes(12)
        body = unit * (n // len(unit) + 1)
    else:
        body = head + r.randbytes(n)
    return body[:n]


def flags_of(k, v):
    """The key's number for even versions, a 32-bit hash of (k, v) for odd
    ones: flags of another version or key are seen, and so are high bits."""
    return k if v % 2 == 0 else zlib.crc32(b"%d:%d" % (k, v))


def exptime_of(k, v):
    return LONG_EXPTIME if (k + v) % 3 == 0 else 0


def describe(state):
    return "absent" if state is None else "v%d" % state


class KeyLog:
    """What happened to one key: its state when the round began (what was
    read back after the last restart), then every request of this round
    in order as [state after it, time its reply arrived or None]."""

    __slots__ = ("base", "ops", "next_version")

    def __init__(self):
        self.base = None
        self.ops = []
        self.next_version = 1

    def current(self):
        return self.ops[-1][0] if self.ops else self.base

    def states(self):
        """states()[j]: the key's state after the first j requests."""
        return [self.base] + [op[0] for op in self.ops]


class Writer(threading.Thread):
    """Sweeps over its keys until the server dies; checks every reply.

    The replies must be exactly what the writer's model says (it is the
    only writer of its keys): a surprise before the kill is a problem.
    """

    def __init__(self, port, keys, logs, rng, killed):
        super().__init__(daemon=True)
        self.port = port
        self.keys = keys
        self.logs = logs
        self.rng = rng
        self.killed = killed
        self.problem = None
        self.sent = 0
        self.acked = 0
        self.deletes = 0
        self.bytes = 0

    def run(self):
        conn = None
        try:
            conn = Conn(self.port, timeout=OP_TIMEOUT)
            for _sweep in range(MAX_SWEEPS):
                for i in range(0, len(self.keys), BATCH):
                    if self.killed.is_set():
                        return
                    self.batch(conn, self.keys[i:i + BATCH])
        except (Failure, OSError) as e:
            # The kill closes the connection: that is how a writer ends.
            if not self.killed.is_set():
                self.problem = "writer of keys %d..%d: %s" % (
                    self.keys[0], self.keys[-1], e)
        finally:
            if conn is not None:
                conn.close()

    def batch(self, conn, keys):
        req = []
        expect = []
        for k in keys:
            log = self.logs[k]
            name = key_name(k)
            if log.current() is not None and self.rng.random() < DELETE_P:
                req.append(b"delete %s\r\n" % name)
                expect.append(b"DELETED\r\n")
                log.ops.append([None, None])
                self.deletes += 1
                continue
            v = log.next_version
            log.next_version += 1
            cmd = b"set"
            if log.current() is None and self.rng.random() < ADD_P:
                cmd = b"add"
            val = value_of(k, v)
            req.append(b"%s %s %d %d %d\r\n%s\r\n" % (
                cmd, name, flags_of(k, v), exptime_of(k, v), len(val), val))
            expect.append(b"STORED\r\n")
            log.ops.append([v, None])
            self.bytes += len(val)
        # Recorded as sent before the send: a request that may have reached
        # the server is one whose effect may be read back.
        self.sent += len(keys)
        conn.send(b"".join(req))
        for k, exp in zip(keys, expect):
            line = conn.readline("reply for %s" % key_name(k).decode())
            if line != exp:
                raise Failure("key %d: expected %r, got %r" % (k, exp, line))
            self.logs[k].ops[-1][1] = time.monotonic()
            self.acked += 1


def promised_prefix(log, mode, kill_time):
    """How many of the key's requests must be reflected after the kill."""
    if mode == "none":
        return 0
    deadline = kill_time - (FLUSH_MS / 1000.0 + ASYNC_MARGIN)
    p = 0
    for i, (_state, acked_at) in enumerate(log.ops):
        if acked_at is None:
            continue
        if mode == "sync" or acked_at < deadline:
            p = i + 1
    return p


def when(t, kill_time):
    """t as a time relative to the kill, in words."""
    d = kill_time - t
    if d >= 0:
        return "%.0f ms before the kill" % (d * 1000)
    return ("%.0f ms after the kill (the reply was sent before it)"
            % (-d * 1000))


def lost_age(log, states, state, kill_time):
    """Seconds before the kill that the oldest acknowledged request that
    the state read back does not reflect was acknowledged, or None.

    The state read back is taken as the latest prefix of the requests that
    produced it (the kindest reading); a state not produced in this round
    at all reflects none of its requests.
    """
    j = max((i for i, s in enumerate(states) if s == state), default=0)
    for op in log.ops[j:]:
        if op[1] is not None:
            return kill_time - op[1]
    return None


def broken_promise(k, log, state, p, kill_time):
    """Why state, read back for key k, breaks the promise of prefix p."""
    states = log.states()
    why = "key %d: read %s, expected %s" % (k, describe(state),
                                            describe(states[p]))
    if p > 0:
        why += " (request %d of the round, acknowledged %s)" % (
            p, when(log.ops[p - 1][1], kill_time))
    if len(states) > p + 1:
        why += " or a later state (%s)" % " ".join(
            describe(s) for s in states[p + 1:p + 6])
    return why


class Survival:
    """How the keys of a round fared against what their writers were told:
    at the last state sent, at the last acknowledged one (or between the
    two), or older; and the oldest acknowledged request lost, which shows
    how far the async window is from its bound."""

    def __init__(self, kill_time):
        self.kill_time = kill_time
        self.last_sent = self.last_acked = self.older = 0
        self.oldest = None  # (seconds before the kill, key)

    def count(self, k, log, state):
        states = log.states()
        # The latest prefix of the requests that gives the state read back
        # (the kindest reading), against the acknowledged prefix.
        j = max((i for i, s in enumerate(states) if s == state), default=-1)
        acked = max((i + 1 for i, op in enumerate(log.ops)
                     if op[1] is not None), default=0)
        if j == len(states) - 1:
            self.last_sent += 1
        elif j >= acked:
            self.last_acked += 1
        else:
            self.older += 1
            age = lost_age(log, states, state, self.kill_time)
            if age is not None and (self.oldest is None
                                    or age > self.oldest[0]):
                self.oldest = (age, k)

    def notes(self, present):
        out = ["%d keys: %d at their last sent state, %d at their last "
               "acknowledged one (or a later one), %d older, %d present"
               % (KEYS, self.last_sent, self.last_acked, self.older,
                  present)]
        if self.oldest is not None:
            out.append("the oldest acknowledged write lost was "
                       "acknowledged %s (key %d)"
                       % (when(self.kill_time - self.oldest[0],
                               self.kill_time), self.oldest[1]))
        return out


def read_all(port, keys):
    """{k: (flags, value, cas)} for the keys present, by multi-key gets.

    Strict about the framing: hits come in the order asked, once each.
    """
    got = {}
    conn = Conn(port, timeout=OP_TIMEOUT)
    try:
        for i in range(0, len(keys), GET_BATCH):
            chunk = keys[i:i + GET_BATCH]
            where = {key_name(k): j for j, k in enumerate(chunk)}
            conn.send(b"gets " + b" ".join(key_name(k) for k in chunk)
                      + b"\r\n")
            last = -1
            for _ in range(len(chunk) + 1):
                line = conn.readline("gets reply")
                if line == b"END\r\n":
                    break
                parts = line[:-2].split(b" ")
                if (len(parts) != 5 or parts[0] != b"VALUE"
                        or parts[1] not in where
                        or not all(p.isdigit() for p in parts[2:])):
                    raise Failure("bad gets line %r" % (line,))
                j = where[parts[1]]
                if j <= last:
                    raise Failure("gets: %r out of order or repeated"
                                  % (parts[1],))
                last = j
                data = conn.read_exact(int(parts[3]) + 2, "gets value")
                if data[-2:] != b"\r\n":
                    raise Failure("value not followed by \\r\\n: %s"
                                  % show(data))
                got[chunk[j]] = (int(parts[2]), data[:-2], int(parts[4]))
            else:
                raise Failure("gets reply without END")
    finally:
        conn.close()
    return got


def identify(k, value, log):
    """Which version of key k value is, or None (searching newest first)."""
    for v in range(log.next_version - 1, 0, -1):
        if value_of(k, v) == value:
            return v
    return None


def explain_foreign(value):
    """A guess at what a wrong value is, for the diagnostics."""
    m = re.match(rb"k(\d+) v(\d+) ", value)
    if m:
        k2, v2 = int(m.group(1)), int(m.group(2))
        want = value_of(k2, v2) if k2 < KEYS and v2 > 0 else None
        if want == value:
            return "the value of key %d version %d" % (k2, v2)
        if want is not None and len(want) == len(value):
            i = next(i for i in range(len(want)) if want[i] != value[i])
            return ("key %d version %d's %d bytes, but byte %d differs "
                    "(%r, written %r)" % (k2, v2, len(want), i,
                                          value[i:i + 1], want[i:i + 1]))
        if want is not None:
            return ("%d bytes beginning like key %d version %d's %d"
                    % (len(value), k2, v2, len(want)))
    return "no value written: %s" % show(value, 120)


def judge(k, item, log):
    """(state, problem): the version of key k that item is (None if the
    key is absent) and why it is wrong, if it is neither absent nor one of
    the key's values with the flags written with it."""
    if item is None:
        return None, None
    flags, value, _cas = item
    v = identify(k, value, log)
    if v is None:
        return None, "key %d: %s" % (k, explain_foreign(value))
    if flags != flags_of(k, v):
        return v, "key %d: v%d with flags %d, written with %d" % (
            k, v, flags, flags_of(k, v))
    return v, None


class CrashServer(Server):
    """harness.Server, but a start is retried only after a lost port race.

    harness.Server starts again whenever the process exits before it
    accepts, which suits a port taken meanwhile but here would hide a
    server that crashes in recovery and then starts at the second try
    (with the first try's recovery already committed). Any other exit
    before accepting is a failure, reported with the server's stderr.
    """

    def start(self):
        for _attempt in range(3):
            self.port = free_port()
            self.argv = ([self.binary, "-p", str(self.port), "-l", HOST,
                          "-U", "0", "-t", "2"]
                         + self.extra + self.user_args)
            self.errfile = tempfile.TemporaryFile()
            try:
                self.proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL,
                    stdout=self.errfile, stderr=self.errfile, close_fds=True)
            except OSError as e:
                raise Failure("cannot run %s: %s" % (self.binary, e))
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection((HOST, self.port),
                                             timeout=0.5).close()
                    self._fetch_version()
                    return self
                except OSError:
                    time.sleep(0.02)
            if self.proc.poll() is None:
                self._kill()
                raise Failure("server did not accept connections within "
                              "%.0f s; stderr: %s"
                              % (START_TIMEOUT, self.stderr_tail()))
            if b"cannot listen" not in self.stderr_bytes():
                raise Failure("server exited with status %s before "
                              "accepting; stderr: %s"
                              % (self.proc.returncode, self.stderr_tail()))
            self.errfile.close()  # the port was taken: try another
            self.errfile = None
        raise Failure("no free port found in 3 tries")


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def report(self, name, problems, notes=(), skip=None):
        self.n += 1
        if skip is not None:
            print("ok %d - %s # SKIP %s" % (self.n, name, skip), flush=True)
            return
        if problems:
            self.failed += 1
            print("not ok %d - %s" % (self.n, name))
        else:
            print("ok %d - %s" % (self.n, name))
        for text in list(notes) + list(problems):
            for line in str(text).splitlines():
                print("# " + line)
        sys.stdout.flush()


class Config:
    """One durability mode on one backend: a directory, its rounds."""

    def __init__(self, args, tap, mode, backend, seed, rounds):
        self.args = args
        self.rounds = rounds
        self.tap = tap
        self.mode = mode
        self.backend = backend
        self.name = "%s/%s" % (mode, backend)
        self.rng = random.Random("%d %s" % (seed, self.name))
        self.logs = [KeyLog() for _ in range(KEYS)]
        self.dir = None
        self.srv = None
        self.killed_stderr = ""

    def server(self):
        extra = ["-m", str(MEM_MB), "--dir", self.dir,
                 "--durability", self.mode, "--flush-ms", str(FLUSH_MS),
                 "--io-backend", self.backend, "--disk-size",
                 "%dm" % (512 + DISK_MB_PER_ROUND * self.rounds)]
        return CrashServer(self.args.server, extra, self.args.user_args,
                           add_dir=False)

    def start(self):
        """Starts the server on the directory; returns the seconds it took
        to accept connections (it fails after START_TIMEOUT, 10 s)."""
        self.srv = self.server()
        t0 = time.monotonic()
        self.srv.start()
        return time.monotonic() - t0

    def run(self):
        self.dir = tempfile.mkdtemp(prefix="tiercache-kill9-")
        try:
            try:
                self.start()
            except Failure as e:
                self.tap.report("%s: server starts on a fresh directory"
                                % self.name, [str(e)])
                return
            for r in range(1, self.rounds + 1):
                if not self.round(r):
                    break
            else:
                self.clean_restart()
        finally:
            if self.srv is not None:
                self.srv.stop()
                self.srv = None
            shutil.rmtree(self.dir, ignore_errors=True)

    def load_and_kill(self):
        """Runs the writers, kills the server; returns (kill_time, notes,
        problems)."""
        srv = self.srv
        killed = threading.Event()
        writers = []
        for w in range(WRITERS):
            keys = list(range(w * KEYS_PER_WRITER, (w + 1) * KEYS_PER_WRITER))
            rng = random.Random(self.rng.getrandbits(64))
            writers.append(Writer(srv.port, keys, self.logs, rng, killed))
        load = self.rng.uniform(LOAD_MIN, LOAD_MAX)
        for w in writers:
            w.start()
        time.sleep(load)
        problems = []
        if not srv.alive():
            problems.append("server died during the load, status %s; "
                            "stderr: %s" % (srv.proc.returncode,
                                            srv.stderr_tail()))
        killed.set()  # before the kill: a writer seeing EOF knows why
        kill_time = time.monotonic()
        if srv.alive():
            os.kill(srv.pid, signal.SIGKILL)
        status = srv.wait(10)
        if status is None:
            problems.append("server still running 10 s after SIGKILL")
        for w in writers:
            w.join(OP_TIMEOUT + 5)
            if w.is_alive():
                problems.append("a writer did not stop within %.0f s of "
                                "the kill" % (OP_TIMEOUT + 5))
            elif w.problem:
                problems.append(w.problem)
        self.killed_stderr = srv.stderr_tail()
        srv.stop()  # already dead: closes its stderr file
        self.srv = None
        notes = ["load %.2f s, killed: %d requests sent, %d acknowledged "
                 "(%d deletes), %.1f MB of values"
                 % (load, sum(w.sent for w in writers),
                    sum(w.acked for w in writers),
                    sum(w.deletes for w in writers),
                    sum(w.bytes for w in writers) / 1e6)]
        return kill_time, notes, problems

    def restart_checks(self, label):
        """Restarts on the same directory; reports start time and stats.
        Returns False when the server could not be started."""
        problems, notes = [], []
        try:
            took = self.start()
        except Failure as e:
            self.srv.stop()
            self.srv = None
            self.tap.report(label, ["restart failed: %s" % e,
                                    "stderr of the killed server: "
                                    + self.killed_stderr])
            return False
        if took > RESTART_LIMIT:
            problems.append("restart took %.2f s (limit %.1f s)"
                            % (took, RESTART_LIMIT))
        try:
            c = Conn(self.srv.port, timeout=OP_TIMEOUT)
            try:
                st = c.stats()
            finally:
                c.close()
        except (Failure, OSError) as e:
            problems.append("stats after restart: %s" % e)
            st = {}
        for name in RECOVERY_STATS:
            if name not in st:
                problems.append("stats has no %s" % name)
            elif not re.fullmatch(r"[0-9]+(\.[0-9]+)?", st[name]):
                problems.append("stats %s is %r" % (name, st[name]))
        if st and st.get("io_backend") != self.backend:
            problems.append("stats io_backend is %r, %r was asked for"
                            % (st.get("io_backend"), self.backend))
        if st and st.get("durability", self.mode) != self.mode:
            problems.append("stats durability is %r" % st.get("durability"))
        # Reclaim may rightly drop live items, which would read as lost
        # writes: the test must write far less than the disk budget.
        used, limit = st.get("disk_bytes", "0"), st.get("disk_limit_bytes")
        if (limit and used.isdigit() and limit.isdigit()
                and int(used) > int(limit) * 0.6):
            problems.append("the directory holds %s of its %s bytes: the "
                            "test writes too much (reclaim could drop keys)"
                            % (used, limit))
        notes.append("restart %.2f s; recovery: %s" % (took, ", ".join(
            "%s %s" % (n[len("recovery_"):], st.get(n, "?"))
            for n in RECOVERY_STATS)) + "; disk_bytes %s" % used)
        self.tap.report(label, problems, notes)
        return True

    def round(self, r):
        """One load, kill, restart and check; False if the rounds cannot
        go on (the server does not start again)."""
        label = "%s round %d" % (self.name, r)
        kill_time, load_notes, load_problems = self.load_and_kill()
        self.tap.report("%s: writes answered as expected until the kill"
                        % label, load_problems, load_notes)
        if not self.restart_checks("%s: restart within %.0f s, recovery "
                                   "in stats" % (label, RESTART_LIMIT)):
            return False
        try:
            got = read_all(self.srv.port, range(KEYS))
        except (Failure, OSError) as e:
            self.tap.report("%s: every key read back" % label,
                            [str(e), "stderr: " + self.srv.stderr_tail()])
            return False
        self.check_values(label, kill_time, got)
        self.check_cas(label, got)
        return True

    def check_values(self, label, kill_time, got):
        """Every key against its log: the value (all modes), then the
        mode's promise; what was read back becomes the next round's base."""
        wrong, broken = [], []
        survival = Survival(kill_time)
        for k in range(KEYS):
            log = self.logs[k]
            state, problem = judge(k, got.get(k), log)
            if problem:
                wrong.append(problem)
                continue
            survival.count(k, log, state)
            p = promised_prefix(log, self.mode, kill_time)
            if self.mode != "none" and state not in log.states()[p:]:
                broken.append(broken_promise(k, log, state, p, kill_time))
        for k in range(KEYS):
            log = self.logs[k]
            log.base = judge(k, got.get(k), log)[0]
            log.ops = []
        self.tap.report("%s: no wrong, torn or mixed value, flags intact"
                        % label, self.with_stderr(wrong))
        if self.mode == "sync":
            promise = "every acknowledged write survives"
        elif self.mode == "async":
            promise = ("every write acknowledged %d ms before the kill "
                       "survives" % (FLUSH_MS + ASYNC_MARGIN * 1000))
        else:
            promise = "what survives (none promises nothing)"
        self.tap.report("%s: %s" % (label, promise), self.with_stderr(broken),
                        survival.notes(len(got)))

    def check_cas(self, label, got):
        """A write after the restart gets a CAS above every CAS read back."""
        problems = []
        top = max((item[2] for item in got.values()), default=0)
        key = b"kill9:probe"
        try:
            c = Conn(self.srv.port, timeout=OP_TIMEOUT)
            try:
                c.send(b"set %s 0 0 1\r\nx\r\n" % key)
                line = c.readline()
                if line != b"STORED\r\n":
                    problems.append("set after restart: %r" % (line,))
                else:
                    item = c.gets(key)
                    if item is None:
                        problems.append("probe key missing after set")
                    elif item[2] <= top:
                        problems.append("new CAS %d is not above %d, the "
                                        "highest read back" % (item[2], top))
            finally:
                c.close()
        except (Failure, OSError) as e:
            problems.append(str(e))
        self.tap.report("%s: CAS after the restart above every recovered "
                        "CAS" % label, problems)

    def clean_restart(self):
        """SIGTERM, start again: every key exactly as last read back."""
        label = "%s: SIGTERM stop and restart keep every key" % self.name
        problems = []
        stop_problem = self.srv.stop()
        self.srv = None
        if stop_problem:
            problems.append("stop: " + stop_problem)
        try:
            self.start()
            got = read_all(self.srv.port, range(KEYS))
        except (Failure, OSError) as e:
            self.tap.report(label, problems + [str(e)])
            return
        for k in range(KEYS):
            log = self.logs[k]
            state, problem = judge(k, got.get(k), log)
            if problem:
                problems.append(problem)
            elif state != log.base:
                problems.append("key %d: %s after a clean stop, %s before"
                                % (k, describe(state), describe(log.base)))
        self.tap.report(label, self.shorten(problems))

    def with_stderr(self, problems):
        """Shortened problems, and if any, both servers' stderr."""
        if not problems:
            return []
        return self.shorten(problems) + [
            "stderr of the killed server: " + self.killed_stderr,
            "stderr of the restarted server: " + self.srv.stderr_tail()]

    @staticmethod
    def shorten(problems):
        if len(problems) <= MAX_SHOWN:
            return problems
        return problems[:MAX_SHOWN] + ["... and %d more"
                                       % (len(problems) - MAX_SHOWN)]


def io_uring_usable(args):
    """(True, "") if tiercached's automatic choice is io_uring, else
    (False, why): that choice is the engine's own test of the system."""
    d = tempfile.mkdtemp(prefix="tiercache-kill9-probe-")
    srv = CrashServer(args.server, ["--dir", d, "--io-backend", "auto"],
                      args.user_args, add_dir=False)
    try:
        srv.start()
        c = Conn(srv.port)
        try:
            backend = c.stats().get("io_backend")
        finally:
            c.close()
    except (Failure, OSError) as e:
        return False, "probe server failed: %s" % e
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)
    if backend == "io_uring":
        return True, ""
    return False, "io_uring unavailable (tiercached chose %s)" % backend


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True, help="tiercached binary")
    ap.add_argument("--server-args", default="",
                    help="extra server flags, one shell-quoted string")
    ap.add_argument("--only", default="",
                    help="run only one mode (sync, async, none), one "
                         "backend (threads, io_uring) or one mode/backend")
    args = ap.parse_args()
    args.user_args = shlex.split(args.server_args)

    seed = int(os.environ.get("KILL9_SEED") or random.SystemRandom()
               .getrandbits(32))
    rounds = int(os.environ.get("KILL9_ROUNDS") or DEFAULT_ROUNDS)
    rounds = max(1, min(rounds, 100))
    print("# server: %s %s" % (args.server, " ".join(args.user_args)))
    print("# seed %d (repeat with KILL9_SEED=%d), %d rounds per "
          "configuration" % (seed, seed, rounds), flush=True)
    tap = Tap()
    start = time.monotonic()
    if not takes_dir_flag(args.server):
        print("1..0 # SKIP %s has no --dir: no disk tier" % args.server)
        return 0
    uring_ok, uring_why = io_uring_usable(args)
    for backend in BACKENDS:
        for mode in MODES:
            name = "%s/%s" % (mode, backend)
            if args.only and args.only not in (name, mode, backend):
                continue
            if backend == "io_uring" and not uring_ok:
                tap.report("%s: kill -9 rounds" % name, [], skip=uring_why)
                continue
            if time.monotonic() - start > ROUND_BUDGET * rounds:
                tap.report("%s: kill -9 rounds" % name, [
                    "not run: the file has used its %.0f s budget"
                    % (ROUND_BUDGET * rounds)])
                continue
            Config(args, tap, mode, backend, seed, rounds).run()
    print("1..%d" % tap.n)
    print("# %d failed, %.1f s, seed %d" % (tap.failed,
                                            time.monotonic() - start, seed))
    sys.stdout.flush()
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main())
