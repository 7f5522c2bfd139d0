#!/usr/bin/env python3
"""The command line: --help and --version exit 0; every bad flag value is
refused with a message naming the flag and exit status 1, before anything
listens (tiercached only: memcached's flags and messages differ).
"""

import subprocess

from harness import Suite, run, temp_data_dir

S = Suite(__doc__)


def start(t, *args):
    return subprocess.run([S.binary] + list(args), capture_output=True,
                          timeout=10, stdin=subprocess.DEVNULL)


@S.test(only="tiercached", reason="tiercached's own command line")
def help_and_version(t):
    r = start(t, "--help")
    t.eq(r.returncode, 0, "--help exit status")
    for flag in (b"--port", b"--memory-limit", b"--conn-limit", b"--threads",
                 b"--max-item-size"):
        t.check(flag in r.stdout, "--help lists %s" % flag.decode())
    r = start(t, "--version")
    t.eq(r.returncode, 0, "--version exit status")
    t.check(r.stdout.startswith(b"tiercached "), "--version names itself")


BAD = [
    (["-p", "0"], b"-p"),
    (["-p", "70000"], b"-p"),
    (["-m", "0"], b"-m"),
    (["-c", "abc"], b"-c"),
    (["-t", "0"], b"-t"),
    (["-I", "100"], b"-I"),
    # Regression: the suffix's multiplication wrapped around and this
    # started with a 1 MiB limit.
    (["-I", "17592186044417m"], b"-I"),
    (["-I", "600m", "-m", "1024"], b"-I"),
    (["-U", "11211"], b"-U"),
    (["--direct-writes", "sometimes"], b"--direct-writes"),
    (["--durability", "eventually"], b"--durability"),
    (["--warm", "lukewarm"], b"--warm"),
]


@S.test(only="tiercached", reason="tiercached's own command line")
def bad_values_refused(t):
    for args, flag in BAD:
        r = start(t, *args)
        t.eq(r.returncode, 1, "exit status of %s" % " ".join(args))
        t.check(flag in r.stderr, "%s named in: %r" % (flag.decode(),
                                                       r.stderr[:200]))


@S.test(only="tiercached", reason="tiercached's own command line")
def unknown_flag_refused(t):
    r = start(t, "--no-such-flag")
    t.eq(r.returncode, 1, "exit status")
    r = start(t, "extra")
    t.eq(r.returncode, 1, "exit status of a stray argument")


@S.test(only="tiercached", reason="tiercached's own command line")
def last_of_dir_and_memory_only_wins(t):
    # bench/compare turns the disk tier off by putting --memory-only after
    # the --dir it gives every tiercached.
    d = temp_data_dir(t)
    srv = t.start_server(["--dir", d, "--memory-only"])
    st = t.conn(srv).stats()
    t.eq(st.get("io_backend"), "none", "io_backend with --dir, --memory-only")
    t.check("disk_bytes" not in st,
            "no disk tier stats with --memory-only last")
    srv = t.start_server(["--memory-only", "--dir", d])
    st = t.conn(srv).stats()
    t.check(st.get("io_backend") in ("io_uring", "threads"),
            "a disk tier with --memory-only, --dir: io_backend %r"
            % st.get("io_backend"))
    t.check("disk_bytes" in st, "disk tier stats with --dir last")


if __name__ == "__main__":
    run(S)
