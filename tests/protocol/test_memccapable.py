#!/usr/bin/env python3
"""libmemcached's memccapable, ASCII protocol only (-a), as a second
independent client. memccapable runs once, against the file's own server
(it flushes the server it tests); each of its 27 ASCII tests is reported
as one TAP test here, named memccapable_<its name>.

Without /usr/bin/memccapable (Debian package libmemcached-tools) every
test reports a named skip.
"""

import os
import re
import subprocess

from harness import HOST, Failure, Suite, run

S = Suite(__doc__)
MEMCCAPABLE = "/usr/bin/memccapable"
LINE = re.compile(r"^ascii ([a-z ]+?)\s+\[(pass|fail|skip)\]\s*$")
NAMES = ("version quit verbosity set set_noreply get gets mget flush "
         "flush_noreply add add_noreply replace replace_noreply cas "
         "cas_noreply delete delete_noreply incr incr_noreply decr "
         "decr_noreply append append_noreply prepend prepend_noreply "
         "stat").split()

_run = {}


def results(t):
    """{name: (pass|fail|skip, output lines)} from one memccapable run."""
    if "out" not in _run:
        if not os.access(MEMCCAPABLE, os.X_OK):
            _run["out"] = None
        else:
            try:
                r = subprocess.run(
                    [MEMCCAPABLE, "-h", HOST, "-p", str(t.server.port),
                     "-a", "-t", "5", "-v"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, timeout=60)
                _run["out"] = r.stdout.decode("utf-8", "replace")
            except subprocess.TimeoutExpired as e:
                _run["out"] = ((e.output or b"").decode("utf-8", "replace")
                               + "\n(memccapable ran over 60 s)")
        parsed, pending = {}, []
        for line in (_run["out"] or "").splitlines():
            m = LINE.match(line.strip())
            if m:
                parsed[m.group(1).replace(" ", "_")] = (m.group(2), pending)
                pending = []
            elif line.strip():
                pending.append(line)  # -v prints a failed assertion first
        _run["parsed"] = parsed
    if _run["out"] is None:
        t.skip("%s not installed (libmemcached-tools)" % MEMCCAPABLE)
    return _run["parsed"]


def make(name):
    def check(t):
        res = results(t).get(name)
        if res is None:
            raise Failure("memccapable reported no result for ascii %s; "
                          "output:\n%s" % (name.replace("_", " "),
                                           _run["out"][-3000:]))
        status, lines = res
        if status == "skip":
            t.skip("memccapable skipped it")
        if status != "pass":
            raise Failure("memccapable: %s\n%s" % (status, "\n".join(lines)))
    check.__name__ = "memccapable_" + name
    return check


for _name in NAMES:
    S.test()(make(_name))


@S.test()
def memccapable_reports_no_other_test(t):
    extra = sorted(set(results(t)) - set(NAMES))
    t.eq(extra, [], "memccapable tests this file does not know")


if __name__ == "__main__":
    run(S)
