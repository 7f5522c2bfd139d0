#!/usr/bin/env python3
"""Storage commands: set, add, replace, append, prepend, cas, touch, delete;
32-bit flags, exptime rules and CAS uniques.

Every expected reply was checked against memcached 1.6.18. Replies of
memcached 1.6.18 that may surprise (all asserted here unless noted):
- "set k 4294967296 0 5" answers STORED and stores flags 0: memcached
  parses flags as 64-bit and truncates to 32 bits. Only values that do not
  fit 64 bits ("18446744073709551616") or are negative ("-1") get
  "CLIENT_ERROR bad command line format". tiercached rejects 4294967296;
  that check is tiercached-only (flags_beyond_32_bits_rejected).
- A rejected set line (bad flags, bad length, key too long) does NOT swallow
  its data block: the data line is then read as a command, so
  "set k -1 0 5\\r\\nhello\\r\\n" gives "CLIENT_ERROR bad command line
  format\\r\\nERROR\\r\\n".
- "set k 0 -1 1" answers STORED and the key then misses; so does a set with
  an absolute exptime in the past (e.g. 2592001, in January 1970).
- "delete k 0" is accepted (legacy time argument, DELETED), "delete k 5"
  answers "CLIENT_ERROR bad command line format.  Usage: delete <key>
  [noreply]" (two spaces after the full stop) and leaves the key alone.
- append/prepend ignore their flags and exptime arguments (the item keeps
  its own), even an exptime of -1.
- touch and gat do not change an item's CAS unique; every store, append,
  prepend, incr and decr does.
- "touch k -1" answers TOUCHED and the key then misses.
"""

import time

from harness import Failure, Suite, run

S = Suite(__doc__)


def value(key, flags, data, cas=None):
    """The VALUE block of a get (or gets, with cas) reply."""
    head = b"VALUE %s %d %d" % (key, flags, len(data))
    if cas is not None:
        head += b" %d" % cas
    return head + b"\r\n" + data + b"\r\n"


def hit(key, flags, data):
    return value(key, flags, data) + b"END\r\n"


def set_ok(c, key, data, flags=0, exptime=0):
    c.call(b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime, len(data),
                                           data), b"STORED\r\n")


def poll_gone(c, key, deadline, what):
    """Generator: polls get until key misses; fails after deadline."""
    while c.get(key) is not None:
        if time.monotonic() > deadline:
            raise Failure("%s: %r still present" % (what, key))
        yield 0.1


# set


@S.test()
def set_then_get(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 0 0 5\r\nhello\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 0, b"hello"))


@S.test()
def set_overwrites_value_and_flags(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"first", flags=1)
    set_ok(c, k, b"second value", flags=2)
    c.call(b"get %s\r\n" % k, hit(k, 2, b"second value"))


@S.test()
def set_empty_value(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 5 0 0\r\n\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, b"VALUE %s 5 0\r\n\r\nEND\r\n" % k)


@S.test()
def set_noreply_sends_nothing(t):
    c, k = t.conn(), t.key()
    c.send(b"set %s 3 0 2 noreply\r\nhi\r\n" % k)
    c.expect_quiet()
    c.call(b"get %s\r\n" % k, hit(k, 3, b"hi"))


@S.test()
def set_extra_token_is_not_noreply(t):
    # memcached only honours the literal token "noreply" (lower case).
    c, k = t.conn(), t.key()
    c.call(b"set %s 0 0 1 NOREPLY\r\nx\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 0, b"x"))


@S.test()
def set_max_length_key(t):
    c = t.conn()
    k = (t.key() + b"x" * 250)[:250]
    set_ok(c, k, b"v")
    c.call(b"get %s\r\n" % k, hit(k, 0, b"v"))
    c.call(b"append %s 0 0 1\r\nw\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 0, b"vw"))
    c.call(b"delete %s\r\n" % k, b"DELETED\r\n")


# add / replace


@S.test()
def add_missing_key_stored(t):
    c, k = t.conn(), t.key()
    c.call(b"add %s 9 0 3\r\nabc\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 9, b"abc"))


@S.test()
def add_existing_key_not_stored(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"old", flags=1)
    c.call(b"add %s 2 0 3\r\nnew\r\n" % k, b"NOT_STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 1, b"old"))


@S.test()
def add_noreply(t):
    c, k, k2 = t.conn(), t.key("a"), t.key("b")
    set_ok(c, k, b"old")
    c.send(b"add %s 0 0 3 noreply\r\nnew\r\n"
           b"add %s 0 0 3 noreply\r\nnew\r\n" % (k, k2))
    c.expect_quiet()
    c.call(b"get %s %s\r\n" % (k, k2),
           value(k, 0, b"old") + value(k2, 0, b"new") + b"END\r\n")


@S.test()
def add_after_delete_stored(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"old")
    c.call(b"delete %s\r\n" % k, b"DELETED\r\n")
    c.call(b"add %s 0 0 3\r\nnew\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 0, b"new"))


@S.test()
def replace_existing_key_stored(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"old", flags=1)
    c.call(b"replace %s 2 0 3\r\nnew\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 2, b"new"))


@S.test()
def replace_missing_key_not_stored(t):
    c, k = t.conn(), t.key()
    c.call(b"replace %s 0 0 3\r\nnew\r\n" % k, b"NOT_STORED\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def replace_noreply(t):
    c, k, k2 = t.conn(), t.key("a"), t.key("b")
    set_ok(c, k, b"old")
    c.send(b"replace %s 0 0 3 noreply\r\nnew\r\n"
           b"replace %s 0 0 3 noreply\r\nnew\r\n" % (k, k2))
    c.expect_quiet()
    c.call(b"get %s %s\r\n" % (k, k2), hit(k, 0, b"new"))


# append / prepend


@S.test()
def append_adds_to_end(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"hello")
    c.call(b"append %s 0 0 6\r\n world\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 0, b"hello world"))


@S.test()
def prepend_adds_to_start(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"world")
    c.call(b"prepend %s 0 0 6\r\nhello \r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 0, b"hello world"))


@S.test()
def append_prepend_missing_key_not_stored(t):
    c, k = t.conn(), t.key()
    c.call(b"append %s 0 0 1\r\nx\r\n" % k, b"NOT_STORED\r\n")
    c.call(b"prepend %s 0 0 1\r\nx\r\n" % k, b"NOT_STORED\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def append_prepend_noreply(t):
    c, k, k2 = t.conn(), t.key("a"), t.key("missing")
    set_ok(c, k, b"mid")
    c.send(b"append %s 0 0 1 noreply\r\n>\r\n"
           b"prepend %s 0 0 1 noreply\r\n<\r\n"
           b"append %s 0 0 1 noreply\r\nx\r\n"
           b"prepend %s 0 0 1 noreply\r\nx\r\n" % (k, k, k2, k2))
    c.expect_quiet()
    c.call(b"get %s %s\r\n" % (k, k2), hit(k, 0, b"<mid>"))


@S.test()
def append_prepend_keep_flags(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"b", flags=4294967295)
    c.call(b"append %s 7 0 1\r\nc\r\n" % k, b"STORED\r\n")
    c.call(b"prepend %s 0 0 1\r\na\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 4294967295, b"abc"))


@S.test()
def append_prepend_ignore_negative_exptime(t):
    # The exptime argument of append/prepend is ignored, even -1.
    c, k = t.conn(), t.key()
    set_ok(c, k, b"b")
    c.call(b"append %s 0 -1 1\r\nc\r\n" % k, b"STORED\r\n")
    c.call(b"prepend %s 0 -1 1\r\na\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 0, b"abc"))


@S.test()
def append_prepend_keep_exptime(t):
    c, ka, kp = t.conn(), t.key("a"), t.key("p")
    set_ok(c, ka, b"x", exptime=2)
    set_ok(c, kp, b"x", exptime=2)
    start = time.monotonic()
    c.call(b"append %s 0 0 1\r\ny\r\n" % ka, b"STORED\r\n")
    c.call(b"prepend %s 0 0 1\r\nw\r\n" % kp, b"STORED\r\n")
    c.call(b"get %s %s\r\n" % (ka, kp),
           value(ka, 0, b"xy") + value(kp, 0, b"wx") + b"END\r\n")
    yield 1.9
    yield from poll_gone(c, ka, start + 3.5, "appended item, exptime 2")
    yield from poll_gone(c, kp, start + 3.5, "prepended item, exptime 2")


# cas


@S.test()
def cas_matching_unique_stored(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"old")
    _, _, unique = c.gets(k)
    c.call(b"cas %s 5 0 3 %d\r\nnew\r\n" % (k, unique), b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 5, b"new"))


@S.test()
def cas_wrong_unique_exists(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"old")
    _, _, unique = c.gets(k)
    c.call(b"cas %s 0 0 3 %d\r\nnew\r\n" % (k, unique + 1000), b"EXISTS\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 0, b"old"))


@S.test()
def cas_stale_unique_after_set_exists(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"one")
    _, _, unique = c.gets(k)
    set_ok(c, k, b"two")
    c.call(b"cas %s 0 0 5 %d\r\nthree\r\n" % (k, unique), b"EXISTS\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 0, b"two"))


@S.test()
def cas_missing_key_not_found(t):
    c, k = t.conn(), t.key()
    c.call(b"cas %s 0 0 1 1\r\nx\r\n" % k, b"NOT_FOUND\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def cas_after_delete_not_found(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    _, _, unique = c.gets(k)
    c.call(b"delete %s\r\n" % k, b"DELETED\r\n")
    c.call(b"cas %s 0 0 1 %d\r\ny\r\n" % (k, unique), b"NOT_FOUND\r\n")


@S.test()
def cas_noreply(t):
    c, k, k2, k3 = t.conn(), t.key("ok"), t.key("bad"), t.key("missing")
    set_ok(c, k, b"old")
    set_ok(c, k2, b"old")
    _, _, u1 = c.gets(k)
    _, _, u2 = c.gets(k2)
    c.send(b"cas %s 0 0 3 %d noreply\r\nnew\r\n"
           b"cas %s 0 0 3 %d noreply\r\nnew\r\n"
           b"cas %s 0 0 3 1 noreply\r\nnew\r\n" % (k, u1, k2, u2 + 1000, k3))
    c.expect_quiet()
    c.call(b"get %s %s %s\r\n" % (k, k2, k3),
           value(k, 0, b"new") + value(k2, 0, b"old") + b"END\r\n")


@S.test()
def cas_unique_changes_on_every_modification(t):
    c, k, other = t.conn(), t.key(), t.key("other")
    seen = []

    def unique(what):
        r = c.gets(k)
        t.check(r is not None, "%s: gets missed" % what)
        seen.append((what, r[2]))

    set_ok(c, k, b"1")
    unique("set")
    set_ok(c, k, b"1")
    unique("set of the same value")
    c.call(b"replace %s 0 0 1\r\n2\r\n" % k, b"STORED\r\n")
    unique("replace")
    c.call(b"append %s 0 0 1\r\n0\r\n" % k, b"STORED\r\n")
    unique("append")
    c.call(b"prepend %s 0 0 1\r\n1\r\n" % k, b"STORED\r\n")
    unique("prepend")
    c.call(b"incr %s 1\r\n" % k, b"121\r\n")
    unique("incr")
    c.call(b"decr %s 1\r\n" % k, b"120\r\n")
    unique("decr")
    c.call(b"cas %s 0 0 1 %d\r\n7\r\n" % (k, seen[-1][1]), b"STORED\r\n")
    unique("cas")
    set_ok(c, other, b"x")
    _, _, u_other = c.gets(other)
    uniques = [u for _, u in seen] + [u_other]
    t.check(len(set(uniques)) == len(uniques),
            "CAS uniques repeat: %r, other key %d" % (seen, u_other))
    t.check(all(0 < u < 2 ** 64 for u in uniques),
            "CAS unique out of range: %r" % (uniques,))


@S.test()
def cas_unique_kept_by_touch_and_gat(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    _, _, u = c.gets(k)
    c.call(b"touch %s 1000\r\n" % k, b"TOUCHED\r\n")
    t.eq(c.gets(k), (0, b"x", u), "gets after touch")
    c.call(b"gat 2000 %s\r\n" % k, hit(k, 0, b"x"))
    c.call(b"gats 3000 %s\r\n" % k, value(k, 0, b"x", u) + b"END\r\n")


# flags


@S.test()
def flags_zero_and_max_round_trip(t):
    c = t.conn()
    for flags in (0, 1, 65536, 2147483648, 4294967295):
        k = t.key(str(flags))
        set_ok(c, k, b"f", flags=flags)
        c.call(b"get %s\r\n" % k, hit(k, flags, b"f"))
        t.eq(c.gets(k)[0], flags, "flags from gets")


@S.test()
def flags_negative_rejected(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s -1 0 5\r\nhello\r\n" % k,
           b"CLIENT_ERROR bad command line format\r\nERROR\r\n")
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def flags_beyond_64_bits_rejected(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 18446744073709551616 0 5\r\nhello\r\n" % k,
           b"CLIENT_ERROR bad command line format\r\nERROR\r\n")
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test(only="tiercached",
        reason="memcached 1.6.18 stores flags 4294967296 as 0 (STORED)")
def flags_beyond_32_bits_rejected(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 4294967296 0 5\r\nhello\r\n" % k,
           b"CLIENT_ERROR bad command line format\r\nERROR\r\n")
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"END\r\n")


# exptime


@S.test()
def exptime_negative_is_already_expired(t):
    c, k, k2 = t.conn(), t.key("new"), t.key("existing")
    c.call(b"set %s 0 -1 1\r\nx\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")
    set_ok(c, k2, b"old")
    c.call(b"set %s 0 -1 3\r\nnew\r\n" % k2, b"STORED\r\n")
    c.call(b"get %s\r\n" % k2, b"END\r\n")


@S.test()
def exptime_relative_expires(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x", exptime=2)
    start = time.monotonic()
    c.call(b"get %s\r\n" % k, hit(k, 0, b"x"))
    yield 1.9
    yield from poll_gone(c, k, start + 3.5, "exptime 2")


@S.test()
def exptime_absolute_unix_time_expires(t):
    c, k = t.conn(), t.key()
    now = int(c.stats()["time"])
    set_ok(c, k, b"x", exptime=now + 2)
    start = time.monotonic()
    c.call(b"get %s\r\n" % k, hit(k, 0, b"x"))
    yield 1.9
    yield from poll_gone(c, k, start + 3.5, "absolute exptime now+2")


@S.test()
def exptime_absolute_in_past_is_expired(t):
    # 2592001 is more than 30 days, so a unix time: January 1970.
    c, k = t.conn(), t.key()
    c.call(b"set %s 0 2592001 1\r\nx\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")
    now = int(c.stats()["time"])
    c.call(b"set %s 0 %d 1\r\nx\r\n" % (k, now - 10), b"STORED\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def exptime_30_days_is_relative(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x", exptime=2592000)
    c.call(b"get %s\r\n" % k, hit(k, 0, b"x"))
    now = int(c.stats()["time"])
    k2 = t.key("abs")
    set_ok(c, k2, b"y", exptime=now + 3600)
    c.call(b"get %s\r\n" % k2, hit(k2, 0, b"y"))


# touch


@S.test()
def touch_existing_touched_missing_not_found(t):
    c, k = t.conn(), t.key()
    c.call(b"touch %s 100\r\n" % k, b"NOT_FOUND\r\n")
    set_ok(c, k, b"x", flags=3)
    c.call(b"touch %s 100\r\n" % k, b"TOUCHED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 3, b"x"))


@S.test()
def touch_noreply(t):
    c, k, k2 = t.conn(), t.key(), t.key("missing")
    set_ok(c, k, b"x")
    c.send(b"touch %s 100 noreply\r\ntouch %s 100 noreply\r\n" % (k, k2))
    c.expect_quiet()
    c.call(b"get %s\r\n" % k, hit(k, 0, b"x"))


@S.test()
def touch_extends_exptime(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x", exptime=2)
    c.call(b"touch %s 100\r\n" % k, b"TOUCHED\r\n")
    yield 3.0
    c.call(b"get %s\r\n" % k, hit(k, 0, b"x"), "get 3 s after touch 100")


@S.test()
def touch_shortens_exptime(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    c.call(b"touch %s 2\r\n" % k, b"TOUCHED\r\n")
    start = time.monotonic()
    c.call(b"get %s\r\n" % k, hit(k, 0, b"x"))
    yield 1.9
    yield from poll_gone(c, k, start + 3.5, "touch 2")


@S.test()
def touch_zero_makes_permanent(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x", exptime=2)
    c.call(b"touch %s 0\r\n" % k, b"TOUCHED\r\n")
    yield 3.0
    c.call(b"get %s\r\n" % k, hit(k, 0, b"x"), "get 3 s after touch 0")


@S.test()
def touch_negative_expires(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    c.call(b"touch %s -1\r\n" % k, b"TOUCHED\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")
    c.call(b"touch %s 100\r\n" % k, b"NOT_FOUND\r\n")


# delete


@S.test()
def delete_existing_deleted_missing_not_found(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    c.call(b"delete %s\r\n" % k, b"DELETED\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")
    c.call(b"delete %s\r\n" % k, b"NOT_FOUND\r\n")


@S.test()
def delete_noreply(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    c.send(b"delete %s noreply\r\ndelete %s noreply\r\n" % (k, k))
    c.expect_quiet()
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def delete_legacy_zero_time_accepted(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    c.call(b"delete %s 0\r\n" % k, b"DELETED\r\n")
    set_ok(c, k, b"x")
    c.send(b"delete %s 0 noreply\r\n" % k)
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def delete_nonzero_time_rejected(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    usage = (b"CLIENT_ERROR bad command line format.  "
             b"Usage: delete <key> [noreply]\r\n")
    c.call(b"delete %s 5\r\n" % k, usage)
    c.call(b"delete %s x\r\n" % k, usage)
    c.call(b"delete %s 0 0\r\n" % k, usage)
    c.expect_version()
    c.call(b"get %s\r\n" % k, hit(k, 0, b"x"))


# noreply everywhere


@S.test()
def noreply_on_every_storage_command(t):
    c = t.conn()
    ks, ka, kr, kp, kc = (t.key(x) for x in "sarpc")
    set_ok(c, kc, b"c0")
    _, _, u = c.gets(kc)
    c.send(b"set %s 1 0 2 noreply\r\ns1\r\n" % ks
           + b"add %s 2 0 2 noreply\r\na1\r\n" % ka
           + b"add %s 2 0 2 noreply\r\nXX\r\n" % ka
           + b"set %s 3 0 2 noreply\r\nr0\r\n" % kr
           + b"replace %s 3 0 2 noreply\r\nr1\r\n" % kr
           + b"set %s 4 0 2 noreply\r\np1\r\n" % kp
           + b"append %s 0 0 1 noreply\r\n>\r\n" % kp
           + b"prepend %s 0 0 1 noreply\r\n<\r\n" % kp
           + b"cas %s 5 0 2 %d noreply\r\nc1\r\n" % (kc, u))
    c.expect_quiet()
    c.call(b"get %s %s %s %s %s\r\n" % (ks, ka, kr, kp, kc),
           value(ks, 1, b"s1") + value(ka, 2, b"a1") + value(kr, 3, b"r1")
           + value(kp, 4, b"<p1>") + value(kc, 5, b"c1") + b"END\r\n")


if __name__ == "__main__":
    run(S)
