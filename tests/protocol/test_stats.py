#!/usr/bin/env python3
"""stats, stats settings, stats slabs, stats items, stats sizes, stats
reset, version, verbosity and flush_all.

The counter tests compare "stats" before and after a few commands on the
file's own server; they are exclusive (nothing else runs meanwhile).

Every expected reply was checked against memcached 1.6.18. Replies of
memcached 1.6.18 that may surprise:
- cmd_get counts keys, not commands: "get a b c" adds 3 (asserted).
- gat and gats count as touches: cmd_touch and touch_hits/touch_misses
  move, cmd_get and get_hits/get_misses do not (asserted).
- cmd_set counts every storage command, failed ones too (an add of an
  existing key, a cas with a wrong or missing key); total_items counts
  successful stores, including cas, append, prepend (asserted); an incr
  or decr counts only when memcached could not rewrite the value in place
  (not asserted).
- A get of an expired item counts in get_misses; get_expired moves only
  when the item had not been reclaimed by memcached's background LRU
  crawler, so only its presence is asserted.
- "stats reset" answers RESET and zeroes the counters, including
  total_items and total_connections; curr_items stays (asserted:
  the command counters, curr_items).
- "verbosity" without argument answers ERROR; "verbosity noreply" answers
  nothing (noreply taken as the level's place); "verbosity 1 2 3" ERROR.
- "flush_all -1" answers OK; what it does is not tested. "flush_all abc"
  answers "CLIENT_ERROR invalid exptime argument" (see test_errors.py).
- flush_all with a delay: memcached's clock ticks once a second, so items
  disappear between 1 and 2 s after "flush_all 2"; the test allows up to
  3.5 s. Items written in the second the delayed flush takes effect are
  flushed too, so the test waits one more second before the next test.
"""

import time

from harness import Suite, run

S = Suite(__doc__)
S.server_extra = ["-m", "64"]

GENERAL = ("pid uptime time version curr_connections total_connections "
           "cmd_get cmd_set cmd_touch get_hits get_misses get_expired "
           "delete_hits delete_misses incr_hits incr_misses decr_hits "
           "decr_misses cas_hits cas_misses cas_badval touch_hits "
           "touch_misses curr_items total_items bytes limit_maxbytes "
           "evictions threads").split()

COUNTERS = ("cmd_get cmd_set cmd_touch get_hits get_misses delete_hits "
            "delete_misses incr_hits incr_misses decr_hits decr_misses "
            "cas_hits cas_misses cas_badval touch_hits touch_misses "
            "total_items").split()


# Whether incr/decr count in total_items depends on whether the server
# rewrites the item in place (memcached does when the length allows, and
# then does not count it) or stores a new one.
NEW_ITEM = ("total_items",)


def set_ok(c, key, data, flags=0, exptime=0):
    c.call(b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime, len(data),
                                           data), b"STORED\r\n")


def delta(t, c, requests, replies, expect, what, ignore=()):
    """Runs requests (expecting replies) and checks the stats that moved.

    expect maps stat names to their expected change; every other counter
    in COUNTERS, except those in ignore, must not change.
    """
    before = c.stats()
    c.call(requests, replies, what)
    after = c.stats()
    got = {}
    for name in COUNTERS:
        if name in ignore:
            continue
        d = int(after[name]) - int(before[name])
        if d or name in expect:
            got[name] = d
    want = {k: v for k, v in expect.items() if k in COUNTERS}
    want.update({k: 0 for k in got if k not in want})
    t.eq(got, want, "stats changes for %s" % what)
    return before, after


@S.test()
def stats_general_names_present(t):
    c = t.conn()
    st = c.stats()
    missing = [n for n in GENERAL if n not in st]
    t.check(not missing, "missing stats: %s" % " ".join(missing))
    not_numbers = [n for n in GENERAL if n != "version" and n in st
                   and not st[n].isdigit()]
    t.check(not not_numbers, "not unsigned integers: %s" % ", ".join(
        "%s=%r" % (n, st[n]) for n in not_numbers))


@S.test()
def stats_values_match_the_server(t):
    c = t.conn()
    st = c.stats()
    t.eq(int(st["pid"]), t.server.pid, "pid")
    t.eq(b"VERSION %s\r\n" % st["version"].encode(), t.server.version_reply,
         "stats version vs version command")
    t.eq(st["threads"], "2", "threads (-t 2)")
    t.eq(st["limit_maxbytes"], str(64 * 1024 * 1024), "limit_maxbytes (-m 64)")
    t.check(abs(int(st["time"]) - time.time()) <= 3,
            "time %s is not now (%d)" % (st["time"], time.time()))
    t.check(int(st["uptime"]) < 600, "uptime %s" % st["uptime"])
    t.check(int(st["curr_connections"]) >= 1, "curr_connections %s"
            % st["curr_connections"])
    t.check(int(st["total_connections"]) >= int(st["curr_connections"]),
            "total_connections < curr_connections")


@S.test()
def stats_reply_framing(t):
    c = t.conn()
    c.send(b"stats\r\n")
    lines = []
    for _ in range(10000):
        line = c.readline()
        lines.append(line)
        if line == b"END\r\n":
            break
    t.check(len(lines) > len(GENERAL), "only %d lines" % len(lines))
    for line in lines[:-1]:
        parts = line[:-2].split(b" ")
        t.check(len(parts) == 3 and parts[0] == b"STAT" and parts[1]
                and parts[2], "bad stats line %r" % line)
    c.expect_version()


@S.test(exclusive=True)
def stats_get_counters(t):
    c, a, b, m = t.conn(), t.key("a"), t.key("b"), t.key("m")
    set_ok(c, a, b"1")
    set_ok(c, b, b"2")
    delta(t, c, b"get %s %s %s\r\n" % (a, b, m),
          b"VALUE %s 0 1\r\n1\r\nVALUE %s 0 1\r\n2\r\nEND\r\n" % (a, b),
          {"cmd_get": 3, "get_hits": 2, "get_misses": 1}, "get of 3 keys")
    _, _, u = c.gets(a)
    delta(t, c, b"gets %s\r\n" % a, b"VALUE %s 0 1 %d\r\n1\r\nEND\r\n"
          % (a, u), {"cmd_get": 1, "get_hits": 1}, "gets hit")
    delta(t, c, b"get %s\r\n" % m, b"END\r\n",
          {"cmd_get": 1, "get_misses": 1}, "get miss")


@S.test(exclusive=True)
def stats_set_counters(t):
    c, a, m = t.conn(), t.key("a"), t.key("m")
    delta(t, c, b"set %s 0 0 1\r\nx\r\n" % a, b"STORED\r\n",
          {"cmd_set": 1, "total_items": 1}, "set")
    delta(t, c, b"add %s 0 0 1\r\nx\r\n" % a, b"NOT_STORED\r\n",
          {"cmd_set": 1}, "add of an existing key")
    delta(t, c, b"replace %s 0 0 1\r\nx\r\n" % m, b"NOT_STORED\r\n",
          {"cmd_set": 1}, "replace of a missing key")
    delta(t, c, b"append %s 0 0 1\r\ny\r\nprepend %s 0 0 1\r\nw\r\n"
          % (a, a), b"STORED\r\nSTORED\r\n",
          {"cmd_set": 2, "total_items": 2}, "append + prepend")


@S.test(exclusive=True)
def stats_touch_counters(t):
    c, a, m = t.conn(), t.key("a"), t.key("m")
    set_ok(c, a, b"x")
    delta(t, c, b"touch %s 100\r\ntouch %s 100\r\n" % (a, m),
          b"TOUCHED\r\nNOT_FOUND\r\n",
          {"cmd_touch": 2, "touch_hits": 1, "touch_misses": 1}, "touch")
    delta(t, c, b"gat 100 %s\r\ngat 100 %s\r\n" % (a, m),
          b"VALUE %s 0 1\r\nx\r\nEND\r\nEND\r\n" % a,
          {"cmd_touch": 2, "touch_hits": 1, "touch_misses": 1}, "gat")


@S.test(exclusive=True)
def stats_delete_counters(t):
    c, a = t.conn(), t.key("a")
    set_ok(c, a, b"x")
    delta(t, c, b"delete %s\r\ndelete %s\r\n" % (a, a),
          b"DELETED\r\nNOT_FOUND\r\n",
          {"delete_hits": 1, "delete_misses": 1}, "delete")


@S.test(exclusive=True)
def stats_incr_decr_counters(t):
    c, n, m = t.conn(), t.key("n"), t.key("m")
    set_ok(c, n, b"5")
    delta(t, c, b"incr %s 1\r\nincr %s 1\r\nincr %s 1\r\n" % (n, n, m),
          b"6\r\n7\r\nNOT_FOUND\r\n",
          {"incr_hits": 2, "incr_misses": 1}, "incr", ignore=NEW_ITEM)
    delta(t, c, b"decr %s 1\r\ndecr %s 1\r\ndecr %s 1\r\n" % (n, m, m),
          b"6\r\nNOT_FOUND\r\nNOT_FOUND\r\n",
          {"decr_hits": 1, "decr_misses": 2}, "decr", ignore=NEW_ITEM)


@S.test(exclusive=True)
def stats_cas_counters(t):
    c, a, m = t.conn(), t.key("a"), t.key("m")
    set_ok(c, a, b"x")
    _, _, u = c.gets(a)
    delta(t, c, b"cas %s 0 0 1 %d\r\ny\r\n" % (a, u + 1000), b"EXISTS\r\n",
          {"cmd_set": 1, "cas_badval": 1}, "cas with a wrong unique")
    delta(t, c, b"cas %s 0 0 1 1\r\ny\r\n" % m, b"NOT_FOUND\r\n",
          {"cmd_set": 1, "cas_misses": 1}, "cas of a missing key")
    delta(t, c, b"cas %s 0 0 1 %d\r\ny\r\n" % (a, u), b"STORED\r\n",
          {"cmd_set": 1, "cas_hits": 1, "total_items": 1}, "cas")


@S.test(exclusive=True)
def stats_curr_items_and_bytes(t):
    c, a, b = t.conn(), t.key("a"), t.key("b")
    s0 = c.stats()
    set_ok(c, a, b"x" * 1000)
    set_ok(c, b, b"y" * 10)
    s1 = c.stats()
    t.eq(int(s1["curr_items"]) - int(s0["curr_items"]), 2,
         "curr_items after 2 new keys")
    t.check(int(s1["bytes"]) >= int(s0["bytes"]) + 1010,
            "bytes grew by less than the values: %s -> %s"
            % (s0["bytes"], s1["bytes"]))
    set_ok(c, a, b"z")
    s2 = c.stats()
    t.eq(s2["curr_items"], s1["curr_items"], "curr_items after overwrite")
    t.check(int(s2["bytes"]) < int(s1["bytes"]),
            "bytes did not shrink after overwriting 1000 bytes with 1")
    c.call(b"delete %s\r\ndelete %s\r\n" % (a, b), b"DELETED\r\nDELETED\r\n")
    s3 = c.stats()
    t.eq(s3["curr_items"], s0["curr_items"], "curr_items after delete")
    t.eq(s3["bytes"], s0["bytes"], "bytes after delete")


@S.test(exclusive=True)
def stats_expired_get_is_a_miss(t):
    c, a = t.conn(), t.key("a")
    set_ok(c, a, b"x", exptime=2)
    start = time.monotonic()
    yield 1.9
    while True:
        before = c.stats()
        r = c.get(a)
        after = c.stats()
        if r is None:
            break
        t.check(time.monotonic() < start + 3.5, "still present after 3.5 s")
        yield 0.1
    t.eq(int(after["get_misses"]) - int(before["get_misses"]), 1,
         "get_misses after a get of an expired key")
    t.check(int(after["get_expired"]) >= int(before["get_expired"]),
            "get_expired went down")


@S.test(exclusive=True)
def stats_connection_counters(t):
    c = t.conn()
    # A connection an earlier test closed may still be going away (the
    # server counts it out when it sees the close): wait until the count
    # holds still, a bounded while.
    s0 = c.stats()
    for _ in range(40):
        time.sleep(0.05)
        s = c.stats()
        if s["curr_connections"] == s0["curr_connections"]:
            break
        s0 = s
    c2 = t.conn()
    c2.expect_version()
    s1 = c.stats()
    t.eq(int(s1["curr_connections"]) - int(s0["curr_connections"]), 1,
         "curr_connections with one more connection")
    t.eq(int(s1["total_connections"]) - int(s0["total_connections"]), 1,
         "total_connections after one more connection")
    c2.close()
    deadline = time.monotonic() + 3
    while True:
        s2 = c.stats()
        if s2["curr_connections"] == s0["curr_connections"]:
            break
        t.check(time.monotonic() < deadline,
                "curr_connections still %s 3 s after a close (was %s)"
                % (s2["curr_connections"], s0["curr_connections"]))
        time.sleep(0.05)


@S.test(exclusive=True)
def stats_reset_zeroes_counters(t):
    c, a = t.conn(), t.key("a")
    set_ok(c, a, b"x")
    c.call(b"get %s\r\nincr %s 1\r\ntouch %s 0\r\n" % (a, a, a),
           b"VALUE %s 0 1\r\nx\r\nEND\r\n" % a
           + b"CLIENT_ERROR cannot increment or decrement non-numeric "
             b"value\r\nTOUCHED\r\n")
    before = c.stats()
    c.call(b"stats reset\r\n", b"RESET\r\n")
    after = c.stats()
    nonzero = {n: after[n] for n in COUNTERS if after[n] != "0"}
    t.eq(nonzero, {}, "counters after stats reset")
    t.eq(after["curr_items"], before["curr_items"], "curr_items kept")
    c.call(b"get %s\r\n" % a, b"VALUE %s 0 1\r\nx\r\nEND\r\n" % a)
    st = c.stats()
    t.eq((st["cmd_get"], st["get_hits"]), ("1", "1"),
         "cmd_get, get_hits after reset and one get")


@S.test()
def stats_settings_ends_with_end(t):
    c = t.conn()
    st = c.stats(b"settings")
    t.check(len(st) > 0, "stats settings has no STAT line")
    c.expect_version()


@S.test(exclusive=True)
def stats_slabs_and_items_follow_the_items(t):
    """stats slabs and stats items, in memcached's shape: per size class
    (its id before the colon), then active_slabs and total_malloced; the
    class of 100-byte values gains 1,000 used chunks and items with
    1,000 new keys, and loses them with their deletes."""
    c = t.conn()
    keys = [t.key("slab%d" % i) for i in range(1000)]
    slabs0, items0 = c.stats(b"slabs"), c.stats(b"items")
    for k in keys:
        c.send(b"set %s 0 0 100 noreply\r\n%s\r\n" % (k, b"v" * 100))
    c.expect_version()
    slabs, items = c.stats(b"slabs"), c.stats(b"items")
    for name in ("active_slabs", "total_malloced"):
        t.check(name in slabs, "stats slabs has no %s" % name)
    per = {}
    for name, value in slabs.items():
        if ":" in name:
            cls, what = name.split(":", 1)
            per.setdefault(cls, {})[what] = int(value)
    t.eq(len(per), int(slabs["active_slabs"]), "active_slabs")
    grown = [cls for cls, f in per.items()
             if f["used_chunks"] - int(slabs0.get(cls + ":used_chunks", 0))
             >= 1000]
    t.eq(len(grown), 1, "classes that gained the 1,000 items: %r" % grown)
    cls = grown[0]
    f = per[cls]
    t.check(f["chunk_size"] >= 100 + len(keys[0]),
            "chunk_size %d holds no 100-byte value" % f["chunk_size"])
    t.eq(f["total_chunks"], f["total_pages"] * f["chunks_per_page"],
         "total_chunks")
    t.eq(f["free_chunks"], f["total_chunks"] - f["used_chunks"],
         "free_chunks")
    t.check(0 <= f["free_chunks_end"] <= f["free_chunks"], "free_chunks_end")
    t.check(int(slabs["total_malloced"]) >=
            f["total_pages"] * f["chunks_per_page"] * f["chunk_size"],
            "total_malloced below the class's pages")
    n0 = int(items0.get("items:%s:number" % cls, 0))
    t.eq(int(items["items:%s:number" % cls]) - n0, 1000,
         "items:%s:number after 1,000 sets" % cls)
    for k in keys:
        c.send(b"delete %s noreply\r\n" % k)
    c.expect_version()
    # The deleted items are freed once nothing holds them: the journal
    # records that do, once they are indexed.
    for _ in range(100):
        n = int(c.stats(b"items").get("items:%s:number" % cls, 0))
        if n <= n0:
            break
        time.sleep(0.1)
    t.eq(n, n0, "items:%s:number after the deletes" % cls)


@S.test()
def stats_sizes_disabled(t):
    c = t.conn()
    t.eq(c.stats(b"sizes"), {"sizes_status": "disabled"}, "stats sizes")
    c.expect_version()


@S.test()
def version_command(t):
    c = t.conn()
    c.send(b"version\r\n")
    line = c.readline()
    t.check(line.startswith(b"VERSION ") and len(line) > 10
            and b" " not in line[8:-2], "bad version line %r" % line)


@S.test()
def verbosity_ok_and_noreply(t):
    c = t.conn()
    c.call(b"verbosity 1\r\n", b"OK\r\n")
    c.call(b"verbosity 0\r\n", b"OK\r\n")
    c.send(b"verbosity 1 noreply\r\nverbosity 0 noreply\r\n")
    c.expect_quiet()
    c.expect_version()


# flush_all: exclusive, they remove every key of the server.


@S.test(exclusive=True)
def flush_all_removes_everything(t):
    c = t.conn()
    keys = [t.key(str(i)) for i in range(5)]
    for k in keys:
        set_ok(c, k, b"v")
    c.call(b"flush_all\r\n", b"OK\r\n")
    c.call(b"get " + b" ".join(keys) + b"\r\n", b"END\r\n")
    c.call(b"add %s 0 0 1\r\nn\r\n" % keys[0], b"STORED\r\n")
    c.call(b"replace %s 0 0 1\r\nn\r\n" % keys[1], b"NOT_STORED\r\n")
    c.call(b"incr %s 1\r\n" % keys[2], b"NOT_FOUND\r\n")


@S.test(exclusive=True)
def flush_all_then_set_in_same_second_visible(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"old")
    c.call(b"flush_all\r\nset %s 0 0 3\r\nnew\r\nget %s\r\n" % (k, k),
           b"OK\r\nSTORED\r\nVALUE %s 0 3\r\nnew\r\nEND\r\n" % k)
    yield 1.1
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 3\r\nnew\r\nEND\r\n" % k,
           "get 1.1 s later")


@S.test(exclusive=True)
def flush_all_zero_and_noreply(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"v")
    c.call(b"flush_all 0\r\n", b"OK\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")
    set_ok(c, k, b"v")
    c.send(b"flush_all noreply\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")
    set_ok(c, k, b"v")
    c.send(b"flush_all 0 noreply\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test(exclusive=True)
def flush_all_with_delay(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"v")
    start = time.monotonic()
    c.call(b"flush_all 2\r\nget %s\r\n" % k,
           b"OK\r\nVALUE %s 0 1\r\nv\r\nEND\r\n" % k,
           "flush_all 2, then an immediate get")
    c.call(b"flush_all 2 noreply\r\nget %s\r\n" % k,
           b"VALUE %s 0 1\r\nv\r\nEND\r\n" % k,
           "flush_all 2 noreply, then an immediate get")
    yield 0.9
    while c.get(k) is not None:
        t.check(time.monotonic() < start + 3.5,
                "still present 3.5 s after flush_all 2")
        yield 0.1
    yield 1.1  # see the note at the top


if __name__ == "__main__":
    run(S)
