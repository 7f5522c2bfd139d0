"""Shared helpers for the protocol tests (tests/protocol/test_*.py).

Each test file is a program that starts a real server (tiercached, or
memcached 1.6.18 as the reference) on a free loopback port, talks to it over
TCP and checks every reply byte for byte. It prints TAP on stdout and exits
with status 1 if any test failed.

    /usr/bin/python3 tests/protocol/test_storage.py --server /usr/bin/memcached
    /usr/bin/python3 tests/protocol/test_storage.py --server build/server/tiercached

Invariants the harness keeps, so that a broken server can never hang a run:
- every socket operation has a timeout (OP_TIMEOUT) and every wait loop has
  a deadline; a server that does not accept connections within
  START_TIMEOUT is reported as a failure, and every server the harness
  started is stopped (SIGTERM, then SIGKILL after STOP_TIMEOUT);
- a test that raises is reported as that test's failure and the run goes on;
- every server is checked at the end: it must still be running, exit with
  status 0 on SIGTERM and leave no sanitizer report on stderr (this is the
  last test of each file, "server_exits_cleanly_on_sigterm").

Test functions take one argument, a T (the per-test context), and use fresh
keys from t.key() so that tests do not depend on each other. A test may be
a generator: "yield 2.5" suspends it for at least 2.5 s while the following
tests run, which keeps expiry tests from adding their sleeps up. A test
marked exclusive=True (flush_all, stats counters) runs alone: pending tests
are finished first and its own sleeps block the run.
"""

import argparse
import heapq
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

OP_TIMEOUT = 5.0      # seconds, any single socket operation
START_TIMEOUT = 10.0  # seconds until the server accepts a connection
STOP_TIMEOUT = 5.0    # seconds between SIGTERM and SIGKILL
FILE_BUDGET = 90.0    # seconds; later tests of a file are reported not run
HOST = "127.0.0.1"

SANITIZER_MARKS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer",
                   b"runtime error:", b"ThreadSanitizer", b"==ERROR")


class Failure(AssertionError):
    """A failed check; the message is printed as TAP diagnostics."""


class Skip(Exception):
    """Raised by T.skip(): the test is reported as "ok N - name # SKIP"."""


def show(data, limit=300):
    """repr() of bytes, shortened in the middle when long."""
    if len(data) <= limit:
        return repr(data)
    half = limit // 2
    return "%r ... (%d bytes) ... %r" % (data[:half], len(data),
                                         data[-half:])


def diff_message(what, expected, got):
    """Expected/got diagnostics, pointing at the first differing byte."""
    i = 0
    n = min(len(expected), len(got))
    while i < n and expected[i] == got[i]:
        i += 1
    lines = ["%s: reply differs at byte %d" % (what or "reply", i)]
    if len(expected) > 300 or len(got) > 300:
        lo = max(0, i - 60)
        lines.append("expected[%d:]: %s (total %d bytes)"
                     % (lo, show(expected[lo:lo + 160]), len(expected)))
        lines.append("     got[%d:]: %s (total %d bytes)"
                     % (lo, show(got[lo:lo + 160]), len(got)))
    else:
        lines.append("expected: %r" % (expected,))
        lines.append("     got: %r" % (got,))
    return "\n".join(lines)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


_HELP_CACHE = {}


def takes_dir_flag(binary):
    """True if `binary --help` mentions a --dir flag (cached)."""
    if binary not in _HELP_CACHE:
        try:
            r = subprocess.run([binary, "--help"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=10)
            _HELP_CACHE[binary] = b"--dir" in r.stdout
        except (OSError, subprocess.TimeoutExpired):
            _HELP_CACHE[binary] = False
    return _HELP_CACHE[binary]


class Server:
    """One server process on a free loopback port.

    argv is: binary -p PORT -l 127.0.0.1 -U 0 -t 2 [-u root] EXTRA USER_ARGS
    [--dir TMPDIR]. "-u root" is added for memcached only (it refuses to run
    as root without it). A server whose --help lists a --dir flag (a
    tiercached with its disk tier) gets a fresh one, removed at the end, so
    that a run never sees data persisted by an earlier run; not when the
    user's --server-args or the extra flags name a --dir or --memory-only
    (a later --dir would override --memory-only), or the harness runs with
    --no-dir.
    """

    def __init__(self, binary, extra=(), user_args=(), add_dir=True):
        self.binary = binary
        self.extra = list(extra)
        self.user_args = list(user_args)
        self.is_memcached = os.path.basename(binary) == "memcached"
        named = self.extra + self.user_args
        self.add_dir = (add_dir and not self.is_memcached
                        and "--dir" not in named
                        and "--memory-only" not in named
                        and takes_dir_flag(binary))
        self.proc = None
        self.port = None
        self.dir = None
        self.errfile = None
        self.argv = None
        self.version_reply = None
        self.start_error = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self):
        """Starts the server and waits until it accepts a connection."""
        last = "not started"
        for _attempt in range(3):
            self.port = free_port()
            argv = [self.binary, "-p", str(self.port), "-l", HOST,
                    "-U", "0", "-t", "2"]
            if self.is_memcached:
                argv += ["-u", "root"]
            argv += self.extra + self.user_args
            if self.add_dir:
                self.dir = tempfile.mkdtemp(prefix="tiercache-proto-")
                argv += ["--dir", self.dir]
            self.argv = argv
            self.errfile = tempfile.TemporaryFile()
            try:
                self.proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=self.errfile,
                    stderr=self.errfile, close_fds=True)
            except OSError as e:
                raise Failure("cannot run %s: %s" % (self.binary, e))
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    s = socket.create_connection((HOST, self.port),
                                                 timeout=0.5)
                    s.close()
                    self._fetch_version()
                    return self
                except OSError:
                    time.sleep(0.05)
            if self.proc.poll() is None:
                last = ("server did not accept connections within %.0f s"
                        % START_TIMEOUT)
                self._kill()
                break  # a hang is not a port race: do not retry
            last = "server exited with status %s before accepting" % (
                self.proc.returncode,)
            self._cleanup_dir()
            # Only a port taken between free_port() and the bind is worth
            # another try: any other early exit (a crash in recovery, a
            # refused directory) is the result, and a retry would hide it.
            err = self.stderr_bytes()
            if b"cannot listen" not in err and b"in use" not in err:
                break
        self.start_error = "%s\nargv: %s\nstderr: %s" % (
            last, " ".join(self.argv or []), self.stderr_tail())
        raise Failure(self.start_error)

    def _fetch_version(self):
        c = Conn(self.port)
        try:
            c.send(b"version\r\n")
            line = c.readline()
        finally:
            c.close()
        if not (line.startswith(b"VERSION ") and line.endswith(b"\r\n")
                and len(line) > 10):
            raise Failure("bad reply to version: %r" % (line,))
        self.version_reply = line

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_bytes(self):
        if self.errfile is None:
            return b""
        try:
            self.errfile.seek(0)
            return self.errfile.read()
        except (OSError, ValueError):
            return b""

    def stderr_tail(self, n=1500):
        data = self.stderr_bytes()
        return show(data[-n:], n + 10) if data else "(empty)"

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """Exit status, or None if still running after timeout seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass

    def _cleanup_dir(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def stop(self):
        """Stops the server; returns a problem description or None.

        A clean stop is: still running when asked, exit status 0 within
        STOP_TIMEOUT of SIGTERM, no sanitizer report on stderr.
        """
        problem = None
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            problem = "server had already exited with status %s" % (
                self.proc.returncode,)
        else:
            self.proc.send_signal(signal.SIGTERM)
            status = self.wait(STOP_TIMEOUT)
            if status is None:
                problem = "server still running %.0f s after SIGTERM" % (
                    STOP_TIMEOUT,)
                self._kill()
            elif status != 0:
                problem = "server exited with status %d on SIGTERM" % status
        err = self.stderr_bytes()
        if problem is None and any(m in err for m in SANITIZER_MARKS):
            problem = "sanitizer report on stderr"
        if problem:
            problem += "\nstderr: " + self.stderr_tail()
        self._cleanup_dir()
        if self.errfile is not None:
            self.errfile.close()
            self.errfile = None
        return problem


class Conn:
    """A client connection with a read buffer and timeouts everywhere."""

    def __init__(self, port, timeout=OP_TIMEOUT):
        self.timeout = timeout
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.version_reply = None

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def send(self, data):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def _fill(self, deadline):
        """Reads what is available; False on EOF or when deadline passed."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except ConnectionResetError:
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n):
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_exact(self, n, what="reply"):
        deadline = time.monotonic() + self.timeout
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise Failure("%s: wanted %d bytes, got %s (%s)" % (
                    what, n, show(self.buf),
                    "connection closed" if self.eof else "timeout"))
        return self._take(n)

    def readline(self, what="reply"):
        """One line, including its \\r\\n."""
        deadline = time.monotonic() + self.timeout
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                return self._take(i + 2)
            if not self._fill(deadline):
                raise Failure("%s: no complete line, got %s (%s)" % (
                    what, show(self.buf),
                    "connection closed" if self.eof else "timeout"))

    def expect(self, expected, what="reply"):
        """Reads len(expected) bytes and fails unless they are expected.

        Compares as bytes arrive, so a wrong short reply fails at once
        instead of waiting for the timeout.
        """
        deadline = time.monotonic() + self.timeout
        n = len(expected)
        while True:
            have = self.buf[:n]
            if have != expected[:len(have)]:
                # Collect a little more so the diagnostics show the whole
                # wrong reply, then fail.
                self._fill(min(deadline, time.monotonic() + 0.2))
                got = self._take(len(self.buf))
                raise Failure(diff_message(what, expected, got))
            if len(have) == n:
                self._take(n)
                return
            if not self._fill(deadline):
                got = self._take(len(self.buf))
                raise Failure(diff_message(what, expected, got) + "\n(%s)" % (
                    "connection closed" if self.eof else
                    "timeout after %.0f s" % self.timeout))

    def call(self, request, expected, what=None):
        """Sends request and expects exactly the bytes expected."""
        self.send(request)
        self.expect(expected, what or "reply to %s" % show(request, 120))

    def expect_version(self, what="reply to version"):
        """Sends version and expects the server's VERSION line.

        Used after every error to prove that the connection still works.
        """
        self.send(b"version\r\n")
        self.expect(self.version_reply, what)

    def expect_quiet(self, wait=0.2, what="connection"):
        """Fails if any byte arrives within wait seconds."""
        self._fill(time.monotonic() + wait)
        if self.buf:
            raise Failure("%s: expected no reply, got %s" % (
                what, show(self.buf)))

    def read_until_eof(self, timeout=None):
        """Everything until the server closes; fails on timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                raise Failure("connection not closed within %.1f s; got %s"
                              % (timeout or self.timeout, show(self.buf)))
        return self._take(len(self.buf))

    def expect_closed(self, before=b"", what="connection", timeout=None):
        """Expects exactly `before`, then the server closing the socket."""
        got = self.read_until_eof(timeout)
        if got != before:
            raise Failure(diff_message(what + " (bytes before close)",
                                       before, got))

    # Convenience parsers, strict about the framing they accept.

    def gets(self, key, cmd=b"gets"):
        """(flags, value, cas) for key, or None on a miss."""
        self.send(cmd + b" " + key + b"\r\n")
        line = self.readline()
        if line == b"END\r\n":
            return None
        parts = line[:-2].split(b" ")
        if (len(parts) != 5 or parts[0] != b"VALUE" or parts[1] != key
                or not all(p.isdigit() for p in parts[2:])):
            raise Failure("bad %s header %r" % (cmd.decode(), line))
        data = self.read_exact(int(parts[3]) + 2)
        if data[-2:] != b"\r\n":
            raise Failure("value not followed by \\r\\n: %s" % show(data))
        self.expect(b"END\r\n", "END after %s" % cmd.decode())
        return int(parts[2]), data[:-2], int(parts[4])

    def get(self, key):
        """(flags, value) for key, or None on a miss."""
        self.send(b"get " + key + b"\r\n")
        line = self.readline()
        if line == b"END\r\n":
            return None
        parts = line[:-2].split(b" ")
        if (len(parts) != 4 or parts[0] != b"VALUE" or parts[1] != key
                or not all(p.isdigit() for p in parts[2:])):
            raise Failure("bad get header %r" % (line,))
        data = self.read_exact(int(parts[3]) + 2)
        if data[-2:] != b"\r\n":
            raise Failure("value not followed by \\r\\n: %s" % show(data))
        self.expect(b"END\r\n", "END after get")
        return int(parts[2]), data[:-2]

    def stats(self, sub=b""):
        """A stats reply as a dict of str to str; checks its framing."""
        self.send(b"stats" + (b" " + sub if sub else b"") + b"\r\n")
        out = {}
        for _ in range(100000):
            line = self.readline("stats")
            if line == b"END\r\n":
                return out
            parts = line[:-2].split(b" ", 2)
            if len(parts) != 3 or parts[0] != b"STAT":
                raise Failure("bad stats line %r" % (line,))
            out[parts[1].decode("latin-1")] = parts[2].decode("latin-1")
        raise Failure("stats reply without END")


class T:
    """Per-test context: fresh keys, connections and servers, checks."""

    def __init__(self, suite, name):
        self.suite = suite
        self.name = name
        self._conns = []
        self._servers = []
        self.notes = []
        self.problems = []
        self.skipped = None
        self._deferred = []

    @property
    def server(self):
        """The file's shared server, started on first use."""
        return self.suite.shared_server()

    @property
    def is_memcached(self):
        return self.suite.is_memcached

    def key(self, suffix=""):
        """A key unique to this test: b"<test name>:<suffix>"."""
        k = "%s:%s" % (self.name, suffix)
        return k.encode()

    def conn(self, server=None, timeout=OP_TIMEOUT):
        """A new connection (to the shared server unless told), closed
        when the test ends."""
        srv = server or self.server
        c = Conn(srv.port, timeout)
        c.version_reply = srv.version_reply
        self._conns.append(c)
        return c

    def start_server(self, extra=(), check_exit=True):
        """A private server with extra flags, stopped when the test ends.

        With check_exit, an unclean stop fails the test.
        """
        srv = Server(self.suite.binary, extra, self.suite.user_args,
                     self.suite.add_dir)
        self._servers.append((srv, check_exit))
        srv.start()
        return srv

    def defer(self, fn):
        """Calls fn() when the test ends (before connections close)."""
        self._deferred.append(fn)

    def skip(self, reason):
        """Ends the test as a TAP skip."""
        raise Skip(reason)

    def note(self, text):
        """A '# ' line printed under the test's result."""
        self.notes.append(text)

    def eq(self, got, expected, what="value"):
        if got != expected:
            if isinstance(got, bytes) and isinstance(expected, bytes):
                raise Failure(diff_message(what, expected, got))
            raise Failure("%s:\nexpected: %r\n     got: %r"
                          % (what, expected, got))

    def check(self, cond, what):
        if not cond:
            raise Failure(what)

    def cleanup(self):
        """Closes connections, stops private servers; returns problems."""
        problems = []
        for fn in reversed(self._deferred):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                problems.append("cleanup: %r" % (e,))
        self._deferred = []
        for c in self._conns:
            c.close()
        self._conns = []
        for srv, check_exit in self._servers:
            problem = srv.stop()
            if problem and check_exit:
                problems.append("private server: " + problem)
        self._servers = []
        return problems


class _Test:
    def __init__(self, fn, name, only, reason, exclusive):
        self.fn = fn
        self.name = name
        self.only = only
        self.reason = reason
        self.exclusive = exclusive


class Suite:
    """The tests of one file; run() parses argv and prints TAP."""

    def __init__(self, doc=""):
        self.doc = doc
        self.tests = []
        self.binary = None
        self.user_args = []
        self.add_dir = True
        self.server_extra = []
        self._shared = None
        self.n = 0
        self.failed = 0

    def test(self, only=None, reason="", exclusive=False, name=None):
        """Decorator registering a test; its name is the function's.

        only="tiercached": skipped (TAP # SKIP) when the server under test
        is memcached, with reason. exclusive=True: runs alone (see top).
        """
        def register(fn):
            self.tests.append(_Test(fn, name or fn.__name__, only, reason,
                                    exclusive))
            return fn
        return register

    @property
    def is_memcached(self):
        return os.path.basename(self.binary) == "memcached"

    def shared_server(self):
        if self._shared is None:
            self._shared = Server(self.binary, self.server_extra,
                                  self.user_args, self.add_dir)
            self._shared.start()
        elif self._shared.start_error:
            raise Failure("shared server failed to start:\n"
                          + self._shared.start_error)
        return self._shared

    def _report(self, name, problems, notes, skip=None):
        self.n += 1
        if skip is not None:
            print("ok %d - %s # SKIP %s" % (self.n, name, skip), flush=True)
            return
        if problems:
            self.failed += 1
            print("not ok %d - %s" % (self.n, name))
        else:
            print("ok %d - %s" % (self.n, name))
        for text in notes + problems:
            for line in str(text).splitlines():
                print("# " + line)
        sys.stdout.flush()

    def _problem(self, exc):
        if isinstance(exc, Failure):
            msg = str(exc)
        else:
            msg = "exception: " + "".join(
                traceback.format_exception(type(exc), exc,
                                           exc.__traceback__)).rstrip()
        srv = self._shared
        if srv is not None and srv.proc is not None and not srv.alive():
            msg += ("\nshared server has exited with status %s; stderr: %s"
                    % (srv.proc.returncode, srv.stderr_tail()))
        return msg

    def _step(self, test, t, gen, pending):
        """Advances a generator test; True when it has finished."""
        try:
            delay = next(gen)
        except StopIteration:
            return True
        except Skip as e:
            t.skipped = str(e)
            return True
        except BaseException as e:  # noqa: BLE001 - reported as a failure
            if isinstance(e, KeyboardInterrupt):
                raise
            t.problems.append(self._problem(e))
            return True
        try:
            delay = float(delay)
        except (TypeError, ValueError):
            delay = 0.0
        delay = max(0.0, min(delay, 30.0))
        if test.exclusive:
            time.sleep(delay)
            return self._step(test, t, gen, pending)
        self._seq += 1
        heapq.heappush(pending, (time.monotonic() + delay, self._seq,
                                 test, t, gen))
        return False

    def _finish(self, test, t):
        t.problems.extend(t.cleanup())
        if t.skipped is not None and not t.problems:
            self._report(test.name, [], [], skip=t.skipped)
        else:
            self._report(test.name, t.problems, t.notes)

    def _start(self, test, pending):
        if test.only == "tiercached" and self.is_memcached:
            self._report(test.name, [], [], skip="tiercached-only: "
                         + (test.reason or "memcached does not do this"))
            return
        t = T(self, test.name)
        try:
            result = test.fn(t)
        except Skip as e:
            t.skipped = str(e)
            self._finish(test, t)
            return
        except BaseException as e:  # noqa: BLE001 - reported as a failure
            if isinstance(e, KeyboardInterrupt):
                raise
            t.problems.append(self._problem(e))
            self._finish(test, t)
            return
        if hasattr(result, "__next__"):
            if not self._step(test, t, result, pending):
                return
        self._finish(test, t)

    def _resume_due(self, pending, drain=False):
        while pending:
            when = pending[0][0]
            now = time.monotonic()
            if when > now:
                if not drain:
                    return
                time.sleep(when - now)
            _, _, test, t, gen = heapq.heappop(pending)
            if self._step(test, t, gen, pending):
                self._finish(test, t)

    def run(self, argv=None):
        ap = argparse.ArgumentParser(description=self.doc)
        ap.add_argument("--server", required=True,
                        help="server binary (tiercached or memcached)")
        ap.add_argument("--server-args", default="",
                        help="extra server flags, one shell-quoted string")
        ap.add_argument("--no-dir", action="store_true",
                        help="do not pass a fresh --dir to tiercached")
        ap.add_argument("--only", default="",
                        help="run only tests whose name contains this")
        args = ap.parse_args(argv)
        self.binary = args.server
        self.user_args = shlex.split(args.server_args)
        self.add_dir = not args.no_dir
        self._seq = 0
        pending = []
        start = time.monotonic()
        print("# server: %s %s" % (self.binary, " ".join(self.user_args)))
        try:
            for test in self.tests:
                if args.only and args.only not in test.name:
                    continue
                if time.monotonic() - start > FILE_BUDGET:
                    self._report(test.name, [
                        "not run: this file has used up its %.0f s budget "
                        "(meson kills it at 120 s)" % FILE_BUDGET], [])
                    continue
                if test.exclusive:
                    self._resume_due(pending, drain=True)
                self._start(test, pending)
                self._resume_due(pending)
            self._resume_due(pending, drain=True)
        finally:
            if self._shared is not None and not self._shared.start_error:
                problem = self._shared.stop()
                self._report("server_exits_cleanly_on_sigterm",
                             [problem] if problem else [], [])
        print("1..%d" % self.n)
        print("# %d failed, %.1f s" % (self.failed,
                                       time.monotonic() - start))
        sys.stdout.flush()
        return 1 if self.failed else 0


def run(suite):
    """Entry point for test files: sys.exit(run(suite))."""
    sys.exit(suite.run())


# ---- servers on a data directory (the disk tier's tests) ----

def temp_data_dir(t, prefix="tiercache-"):
    """A new empty directory, removed when test t ends."""
    d = tempfile.mkdtemp(prefix=prefix)
    t.defer(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def server_on_dir(t, suite, d, *extra):
    """A started server of suite on data directory d, stopped when test t
    ends (if the test did not stop it)."""
    srv = Server(suite.binary, ["--dir", d] + list(extra), suite.user_args)
    srv.start()
    t.defer(srv.stop)
    return srv


def stop_clean(t, srv):
    """Stops srv (SIGTERM) and checks it exited cleanly."""
    problem = srv.stop()
    t.check(problem is None, "clean stop: %s" % problem)
