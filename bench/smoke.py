#!/usr/bin/python3
"""bench/smoke.py - the 'bench' suite's smoke test, printing TAP.

Runs tc-load for a few thousand requests, with every value checked, against
canned (always), memcached (when installed) and tiercached (when built),
and checks its JSON report: no errors, no wrong values, every get a hit
after the prefill, the request count honoured. Also checks that tc-load
does notice what it must never ignore: wrong values (canned serving other
value sizes) and replies that are not the protocol (a server answering
garbage), each of which must make it exit non-zero with the right count;
and its key-range options: --key-offset moves the keys (a real server
misses the keys below the range it was filled with), the background group
(--bg-*) is counted apart and keeps its --bg-rate.

The meta protocol (tc-load --meta, quiet: mg/ms with q and an mn closing
every batch; --meta=noq, a reply each) runs the same checks against every
server, and a real server's misses (which say nothing in quiet mode) must
be counted as misses; fake servers check that tc-load rejects what the
quiet protocol forbids (an HD or EN that q suppresses, a VA for a key no
get of the batch asked for), and that hits and misses are counted exactly
however the misses fall within batches (a server answering even keys
only).

tiercached runs with its disk tier in a fresh temporary --dir, removed at
the end.

    smoke.py --tc-load PATH --canned PATH [--memcached PATH]
             [--tiercached PATH]

Every server listens on a free loopback port and is stopped at the end;
every run is bounded by a timeout, the whole test by a few seconds.
Standard library only; run with /usr/bin/python3.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

RUN_TIMEOUT = 30


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, diag=""):
        self.n += 1
        if cond:
            print(f"ok {self.n} - {name}")
        else:
            self.failed += 1
            print(f"not ok {self.n} - {name}")
            for line in str(diag).splitlines()[-20:]:
                print(f"# {line}")
        sys.stdout.flush()
        return cond

    def skip(self, name, why):
        self.n += 1
        print(f"ok {self.n} - {name} # SKIP {why}")
        sys.stdout.flush()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(proc):
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tc_load(path, port, *args):
    """Runs tc-load; returns (exit status, parsed JSON or None, output)."""
    argv = [path, "-p", str(port), "--timeout", "5", "--json"] + list(args)
    try:
        p = subprocess.run(argv, capture_output=True, text=True,
                           timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        return -1, None, f"timed out: {argv}\n{e.stdout}\n{e.stderr}"
    res = None
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            try:
                res = json.loads(line)
            except ValueError:
                pass
    return p.returncode, res, f"{' '.join(argv)}\n{p.stdout}{p.stderr}"


def check_clean(tap, name, rc, res, out, requests):
    good = (rc == 0 and res is not None and res["errors"] == 0 and
            res["wrong_values"] == 0 and res["ops"] == requests and
            res["hits"] == res["gets"] and res["misses"] == 0 and
            res["stored"] == res["sets"] and
            res["prefill_stored"] == res["prefill_sets"] and
            res["verify_hits"] == res["verify_gets"] and
            res["ops_per_sec"] > 0 and res["p99_us"] > 0)
    tap.ok(good, name, out)


def against_server(tap, label, tc, port):
    n = 5000
    rc, res, out = tc_load(tc, port, "--prefill", "-k", "2000", "-n", str(n),
                           "-c", "4", "-d", "8", "-r", "9:1", "-z", "0.99",
                           "-V", "1-3000", "--verify", "200", "--seed", "7")
    check_clean(tap, f"{label}: {n} mixed requests, values 1-3000 B, "
                "all checked", rc, res, out, n)
    rc, res, out = tc_load(tc, port, "-k", "2000", "-n", "2000", "-c", "1",
                           "-d", "1", "-V", "1-3000")
    check_clean(tap, f"{label}: 2000 gets on one connection without "
                "pipelining", rc, res, out, 2000)


def meta(tap, label, tc, port, real):
    """The meta protocol, quiet and not, against a server that speaks it."""
    for mode in ("--meta", "--meta=noq"):
        n = 5000
        rc, res, out = tc_load(tc, port, mode, "--prefill", "-k", "2000",
                               "-n", str(n), "-c", "4", "-d", "8", "-r", "9:1",
                               "-z", "0.99", "-V", "1-3000", "--verify", "200",
                               "--seed", "9")
        check_clean(tap, f"{label}: {mode}: {n} mixed requests (mg, ms), "
                    "values 1-3000 B, all checked", rc, res, out, n)
        rc, res, out = tc_load(tc, port, mode, "-k", "2000", "-n", "1000",
                               "-c", "1", "-d", "1", "-V", "1-3000")
        check_clean(tap, f"{label}: {mode}: 1000 gets on one connection "
                    "without pipelining", rc, res, out, 1000)
        if real:
            # Keys 1000..2999 of which only 1000..1999 were stored: the
            # quiet misses answer nothing and must still be counted.
            rc, res, out = tc_load(tc, port, mode, "--key-offset", "1000",
                                   "-k", "2000", "-n", "3000", "-c", "2",
                                   "-d", "16", "-V", "1-3000")
            tap.ok(rc == 0 and res is not None and res["errors"] == 0 and
                   res["wrong_values"] == 0 and res["ops"] == 3000 and
                   res["hits"] > 0 and res["misses"] > 0 and
                   res["hits"] + res["misses"] == 3000,
                   f"{label}: {mode}: hits and misses (half the keys never "
                   "stored) counted, every hit checked", out)


def key_ranges(tap, label, tc, port, real):
    """--key-offset and the background group. On a real server (which
    stores what it is sent) keys below the filled range must miss."""
    off = 3000000000
    rc, res, out = tc_load(tc, port, "--prefill", "--key-offset", str(off),
                           "-k", "500", "-n", "2000", "-c", "2", "-d", "4",
                           "-V", "1-3000", "--bg-conns", "2",
                           "--bg-depth", "3", "--bg-offset", str(off + 100),
                           "--bg-keys", "300")
    tap.ok(rc == 0 and res is not None and res["errors"] == 0 and
           res["wrong_values"] == 0 and res["ops"] == 2000 and
           res["hits"] == 2000 and res["key_offset"] == off and
           res["prefill_stored"] == 500 and
           res["verify_hits"] == res["verify_gets"] and
           res["bg_gets"] > 0 and res["bg_hits"] == res["bg_gets"] and
           res["bg_p99_us"] > 0,
           f"{label}: --key-offset and a background group, counted apart, "
           "every value checked", out)
    if real:
        rc, res, out = tc_load(tc, port, "--key-offset", str(off - 500),
                               "-k", "500", "-n", "1000", "-V", "1-3000")
        tap.ok(rc == 0 and res is not None and res["misses"] == 1000,
               f"{label}: keys below the --key-offset range were never "
               "stored", out)


def bg_rate(tap, tc, port):
    rc, res, out = tc_load(tc, port, "-k", "100", "-t", "1", "-c", "1",
                           "-d", "1", "-V", "1-3000", "--bg-conns", "2",
                           "--bg-rate", "2000")
    tap.ok(rc == 0 and res is not None and
           1600 <= res["bg_ops_per_sec"] <= 2400 and res["ops"] > 0,
           "canned: the background group keeps --bg-rate 2000", out)
    rc, res, out = tc_load(tc, port, "--key-offset", "4294967295", "-k", "2",
                           "-n", "10")
    tap.ok(rc == 2, "tc-load refuses key numbers past 2^32 - 1", out)


def garbage_server(port_box, ready, reply=b"HELLO THERE\r\n"):
    """Accepts one connection and answers its first read with `reply`
    (by default a non-reply)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(RUN_TIMEOUT)
    port_box.append(srv.getsockname()[1])
    ready.set()
    try:
        conn, _ = srv.accept()
        conn.settimeout(RUN_TIMEOUT)
        conn.recv(65536)
        conn.sendall(reply)
        time.sleep(0.5)
        conn.close()
    except OSError:
        pass
    finally:
        srv.close()


def filter_server(box, ready, canned_port, quiet):
    """Accepts one connection of mg and mn and answers the gets of keys
    whose number is even with canned's value and the others as misses
    (nothing with q, EN without); box gets the number of hits sent."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(RUN_TIMEOUT)
    box.append(srv.getsockname()[1])
    ready.set()
    hits = 0
    try:
        conn, _ = srv.accept()
        up = socket.create_connection(("127.0.0.1", canned_port),
                                      timeout=RUN_TIMEOUT)
        conn.settimeout(RUN_TIMEOUT)
        buf = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buf += chunk
            out = []
            while b"\r\n" in buf:
                line, buf = buf.split(b"\r\n", 1)
                words = line.split()
                if words[:1] == [b"mn"]:
                    out.append(b"MN\r\n")
                elif words[:1] == [b"mg"] and int(words[1][-1:]) % 2 == 0:
                    up.sendall(line + b"\r\nmn\r\n")
                    got = b""
                    while not got.endswith(b"MN\r\n"):
                        got += up.recv(65536)
                    out.append(got[:-4])
                    hits += 1
                elif words[:1] == [b"mg"]:
                    if not quiet:
                        out.append(b"EN\r\n")
                else:
                    out.append(b"ERROR\r\n")
            conn.sendall(b"".join(out))
        up.close()
        conn.close()
    except (OSError, ValueError):
        pass
    finally:
        srv.close()
        box.append(hits)


def meta_gaps(tap, tc, canned_port):
    """Hits and misses counted exactly, whatever way the misses (silent
    with q) fall within batches and reads."""
    for mode, quiet in (("--meta", True), ("--meta=noq", False)):
        box, ready = [], threading.Event()
        t = threading.Thread(target=filter_server,
                             args=(box, ready, canned_port, quiet),
                             daemon=True)
        t.start()
        ready.wait(5)
        n = 3000
        rc, res, out = tc_load(tc, box[0], mode, "-k", "50", "-n", str(n),
                               "-c", "1", "-d", "16", "-V", "1-3000")
        t.join(RUN_TIMEOUT)
        sent = box[1] if len(box) > 1 else None
        tap.ok(rc == 0 and res is not None and sent is not None and
               res["errors"] == 0 and res["wrong_values"] == 0 and
               res["hits"] == sent and res["misses"] == n - sent and
               0 < sent < n,
               f"{mode}: a server answering even keys only: hits and misses "
               f"counted exactly (sent {sent} hits)", out)


def meta_spoken(port, tap, name):
    """Whether the server answers mn with MN: a named failure if not,
    rather than a pile of tc-load errors."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"mn\r\n")
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        data = str(e).encode()
    return tap.ok(data == b"MN\r\n", f"{name}: speaks the meta protocol "
                  "(mn answered MN)", f"mn answered {data!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tc-load", required=True)
    ap.add_argument("--canned", required=True)
    ap.add_argument("--memcached", default="/usr/bin/memcached")
    ap.add_argument("--tiercached")
    a = ap.parse_args()
    tap = Tap()
    procs = []
    tmp = tempfile.mkdtemp(prefix="bench-smoke-")
    try:
        # canned: value sizes 1-3000 bytes, as the runs below use.
        canned = subprocess.Popen([a.canned, "-p", "0", "-V", "1-3000"],
                                  stdout=subprocess.PIPE, text=True)
        procs.append(canned)
        line = canned.stdout.readline().split()
        port = int(line[1]) if len(line) == 2 and line[0] == "port" else 0
        if tap.ok(port > 0 and wait_port(port, canned), "canned starts",
                  line):
            against_server(tap, "canned", a.tc_load, port)
            rc, res, out = tc_load(a.tc_load, port, "-k", "100", "-n", "500",
                                   "-V", "1-2999")
            tap.ok(rc == 1 and res is not None and res["wrong_values"] > 0,
                   "wrong values are counted and fail the run", out)
            # Sets only in the main group (canned stores nothing, answers
            # STORED): the wrong values can only come from the background
            # group's gets, and must fail the run just the same.
            rc, res, out = tc_load(a.tc_load, port, "-k", "100", "-t", "0.3",
                                   "-r", "0:1", "-V", "1-2999",
                                   "--bg-conns", "1", "--bg-keys", "100")
            tap.ok(rc == 1 and res is not None and res["gets"] == 0 and
                   res["bg_gets"] > 0 and res["wrong_values"] > 0,
                   "background group values are checked and fail the run",
                   out)
            key_ranges(tap, "canned", a.tc_load, port, False)
            bg_rate(tap, a.tc_load, port)
            meta(tap, "canned", a.tc_load, port, False)
            meta_gaps(tap, a.tc_load, port)
            for mode in ("--meta", "--meta=noq"):
                rc, res, out = tc_load(a.tc_load, port, mode, "-k", "100",
                                       "-n", "500", "-V", "1-2999")
                tap.ok(rc == 1 and res is not None and
                       res["wrong_values"] > 0,
                       f"{mode}: wrong values are counted and fail the run",
                       out)

        def fake(reply, *args):
            box, ready = [], threading.Event()
            t = threading.Thread(target=garbage_server,
                                 args=(box, ready, reply), daemon=True)
            t.start()
            ready.wait(5)
            return tc_load(a.tc_load, box[0], "-c", "1", *args)

        rc, res, out = fake(b"HELLO THERE\r\n", "-n", "10")
        tap.ok(rc == 1 and res is not None and res["protocol_errors"] > 0
               and res["errors"] >= 10,
               "a reply outside the protocol is a protocol error and fails "
               "the run", out)
        # Quiet meta: one batch of 4 gets of key 0 (-k 1) closed by mn.
        for reply, what in (
                (b"HD\r\nMN\r\n", "an HD that q suppresses"),
                (b"EN\r\nMN\r\n", "an EN that q suppresses"),
                (b"VA 1 kkey:0000000001 f0\r\nx\r\nMN\r\n",
                 "a VA for a key no get of the batch asked for"),
                (b"VA 100 f0\r\n" + b"x" * 100 + b"\r\nMN\r\n",
                 "a VA without the k flag asked for")):
            rc, res, out = fake(reply, "--meta", "-k", "1", "-d", "4",
                                "-n", "4")
            tap.ok(rc == 1 and res is not None and
                   res["protocol_errors"] > 0 and res["errors"] >= 4,
                   f"--meta: {what} is a protocol error and fails the run",
                   out)
        rc, res, out = fake(b"MN\r\n", "--meta", "-k", "1", "-d", "4",
                            "-n", "4")
        tap.ok(rc == 0 and res is not None and res["misses"] == 4 and
               res["errors"] == 0,
               "--meta: a batch answered by MN alone is 4 misses", out)

        servers = [("memcached", a.memcached), ("tiercached", a.tiercached)]
        for name, path in servers:
            if not path or not os.path.exists(path):
                for what in ("mixed requests", "one connection",
                             "key offset", "keys below the range",
                             "meta protocol"):
                    tap.skip(f"{name}: {what}", "not built or installed")
                continue
            sport = free_port()
            argv = [path, "-p", str(sport), "-l", "127.0.0.1", "-m", "64",
                    "-t", "1", "-U", "0"]
            if name == "memcached" and os.geteuid() == 0:
                argv += ["-u", "root"]
            if name == "tiercached":
                argv += ["--dir", os.path.join(tmp, "tiercache-data")]
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            procs.append(p)
            if tap.ok(wait_port(sport, p), f"{name} starts", argv):
                against_server(tap, name, a.tc_load, sport)
                key_ranges(tap, name, a.tc_load, sport, True)
                if meta_spoken(sport, tap, name):
                    meta(tap, name, a.tc_load, sport, True)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"1..{tap.n}")
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main())
