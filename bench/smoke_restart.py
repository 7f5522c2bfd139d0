#!/usr/bin/python3
"""bench/smoke_restart.py - the 'bench' suite's smoke test of bench/restart,
printing TAP.

Runs bench/restart in a tiny configuration (20k items of 1 KiB, -m 8, a
hot-key snapshot every second, short load windows, no page-cache drop) and
checks that it completes (exit 0: no server died, tc-load saw no error or
wrong value) and that its report has every figure: for each restart the
time to answer, the preload's end, items, bytes and rate, and the
memory-tier hit ratio of the first gets; memcached's row when memcached is
installed. Targets are not checked: this size and a shared machine say
nothing about them.

A tiercached without the warm start (no --warm flag or no warm_* stats)
fails here, by name: the benchmark would run, but measure nothing warm.

    smoke_restart.py --restart PATH --tc-load PATH --tiercached PATH
                     [--memcached PATH]

Standard library only; run with /usr/bin/python3.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

TIMEOUT = 100


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--restart", required=True)
    ap.add_argument("--tc-load", required=True)
    ap.add_argument("--tiercached", required=True)
    ap.add_argument("--memcached", default="/usr/bin/memcached")
    a = ap.parse_args()
    n = 0
    failed = 0

    def ok(cond, name, diag=""):
        nonlocal n, failed
        n += 1
        print(("ok" if cond else "not ok") + f" {n} - {name}")
        if not cond:
            failed += 1
            for line in str(diag).splitlines()[-40:]:
                print(f"# {line}")
        sys.stdout.flush()
        return cond

    tmp = tempfile.mkdtemp(prefix="smoke-restart-")
    out_json = os.path.join(tmp, "restart.json")
    have_mc = os.path.exists(a.memcached)
    argv = [sys.executable, a.restart, "--keys", "20000", "--value-size",
            "1024", "--mem-mib", "8", "--disk-size", "256m",
            "--hot-snapshot-s", "1", "--window", "0.3", "--max-windows", "12",
            "--first-gets", "20000", "--warm-timeout", "20", "--no-drop",
            "--tc-load", a.tc_load, "--tiercached", a.tiercached,
            "--memcached", a.memcached, "--data-root", tmp,
            "--json", out_json]
    if not have_mc:
        argv.append("--no-memcached")
    try:
        try:
            p = subprocess.run(argv, capture_output=True, text=True,
                               timeout=TIMEOUT)
            rc, text = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            rc, text = -1, f"timed out after {TIMEOUT} s\n{e.stdout}\n" \
                f"{e.stderr}"
        diag = " ".join(argv) + "\n" + text
        ok(rc == 0, "bench/restart completes: no server died, no error or "
           "wrong value", diag)
        try:
            with open(out_json) as f:
                res = json.load(f)
        except (OSError, ValueError) as e:
            ok(False, "bench/restart wrote its figures", f"{e}\n{diag}")
            print(f"1..{n}")
            return 1
        ok(res.get("warm_flags"), "tiercached has the warm start "
           "(--warm, --hot-snapshot-s in --help)",
           "tiercached --help names no --warm / --hot-snapshot-s: the warm "
           "start is not in this build (merge branch warm), and "
           "bench/restart measured nothing warm")
        tc = res.get("tiercached") or {}
        ok(tc.get("steady") is not None and 0 <= tc["steady"] <= 1,
           "a steady memory-tier hit ratio before the kill", tc)
        runs = tc.get("runs", [])
        ok(len(runs) == 3, "three restarts (warm, warm with gets at once, "
           "--warm=off)", [r.get("label") for r in runs])
        for r in runs:
            label = r.get("label", "?")
            ok(r.get("answer_s") is not None and 0 < r["answer_s"] < 10,
               f"{label}: time from exec to answering", r)
            ok(r.get("first_gets", 0) >= 20000 and
               r.get("first_mem_ratio") is not None and
               0 <= r["first_mem_ratio"] <= 1 and
               r.get("first_hit_ratio") == 1.0,
               f"{label}: memory-tier hit ratio of the first gets, every "
               "get a hit (memory or disk)", r)
            if r.get("warm") == "off":
                ok(r.get("warm_state") in ("off", None) or
                   r.get("warm_items") == 0,
                   f"{label}: no preload", r)
                continue
            ok(r.get("warm_state") is not None,
               f"{label}: stats report warm_state",
               "tiercached reports no warm_state: the warm start is not in "
               f"this build\n{r}")
            ok(r.get("warm_state") == "done" and
               r.get("warm_done_s") is not None,
               f"{label}: the preload ends (warm_state done)", r)
            ok(all(r.get(k) is not None for k in ("warm_items", "warm_bytes",
                                                  "warm_seconds")) and
               r["warm_items"] > 0 and r["warm_bytes"] > 0,
               f"{label}: warm_items, warm_bytes, warm_seconds reported, "
               "something preloaded", r)
            ok(r.get("warm_mb_s") is not None and r["warm_mb_s"] > 0,
               f"{label}: a preload rate in MB/s", r)
        mc = res.get("memcached")
        if have_mc:
            ok(mc is not None and mc.get("answer_s") is not None and
               mc.get("first_hit_ratio") is not None and
               mc.get("steady") is not None,
               "memcached: kill -9, start, hit ratio of the first gets", mc)
        else:
            n += 1
            print(f"ok {n} - memcached # SKIP {a.memcached} not installed")
        ok("| server, restart |" in text and "| tiercached, warm" in text,
           "the report's table is printed", text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"1..{n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
