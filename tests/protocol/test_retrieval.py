#!/usr/bin/env python3
"""Retrieval commands: get, gets, gat, gats, with one key and many.

Every expected reply was checked against memcached 1.6.18. Replies of
memcached 1.6.18 that may surprise:
- "gat 0" (an exptime but no key) answers "END", while "gat" alone answers
  "ERROR" (asserted).
- A get of a key that is present twice in the key list returns it twice.
- gat/gats count as touches in stats (cmd_touch, touch_hits), not as gets.
- memcached closes the connection when more than 2048 bytes arrive without
  a newline, except for lines starting with "get " or "gets ": so "gat"
  and "gats" with a key list longer than 2048 bytes work only if the whole
  line arrives in one read. tiercached allows long key lists for all four
  (gat_10000_keys_in_one_line is tiercached-only).
- Command lines may end in a bare "\\n" (asserted); a data block must end in
  "\\r\\n".
"""

import time

from harness import Failure, Suite, run

S = Suite(__doc__)


def value(key, flags, data, cas=None):
    head = b"VALUE %s %d %d" % (key, flags, len(data))
    if cas is not None:
        head += b" %d" % cas
    return head + b"\r\n" + data + b"\r\n"


def hit(key, flags, data):
    return value(key, flags, data) + b"END\r\n"


def set_ok(c, key, data, flags=0, exptime=0):
    c.call(b"set %s %d %d %d\r\n%s\r\n" % (key, flags, exptime, len(data),
                                           data), b"STORED\r\n")


def store_many(c, keys, make_value):
    """Stores keys with noreply in one pipeline, then syncs."""
    parts = []
    for i, k in enumerate(keys):
        v = make_value(i)
        parts.append(b"set %s %d 0 %d noreply\r\n%s\r\n" % (k, i, len(v), v))
    c.send(b"".join(parts))
    c.expect_version("version after pipelined noreply sets")


def read_uniques(c, keys):
    """{key: CAS unique} from one gets of all keys (all must hit)."""
    c.send(b"gets " + b" ".join(keys) + b"\r\n")
    out = {}
    for _ in range(len(keys)):
        parts = c.readline()[:-2].split(b" ")
        if len(parts) != 5 or parts[0] != b"VALUE":
            raise Failure("bad gets header %r" % (parts,))
        c.read_exact(int(parts[3]) + 2)
        out[parts[1]] = int(parts[4])
    c.expect(b"END\r\n")
    return out


@S.test()
def get_missing_key_end(t):
    c = t.conn()
    c.call(b"get %s\r\n" % t.key(), b"END\r\n")


@S.test()
def get_many_keys_in_request_order(t):
    c = t.conn()
    keys = [t.key(str(i)) for i in range(20)]
    store_many(c, keys[::2], lambda i: b"v%d" % i)
    order = keys[::-1]
    expected = b"".join(
        value(k, keys[::2].index(k), b"v%d" % keys[::2].index(k))
        for k in order if k in keys[::2]) + b"END\r\n"
    c.call(b"get " + b" ".join(order) + b"\r\n", expected)


@S.test()
def get_duplicate_key_returned_twice(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"dup")
    c.call(b"get %s %s\r\n" % (k, k),
           value(k, 0, b"dup") + value(k, 0, b"dup") + b"END\r\n")


@S.test()
def get_extra_spaces_between_keys(t):
    c, k1, k2 = t.conn(), t.key("1"), t.key("2")
    set_ok(c, k1, b"a")
    set_ok(c, k2, b"b")
    c.call(b"get  %s   %s \r\n" % (k1, k2),
           value(k1, 0, b"a") + value(k2, 0, b"b") + b"END\r\n")


@S.test()
def gets_many_keys_with_cas(t):
    c = t.conn()
    keys = [t.key(str(i)) for i in range(10)]
    store_many(c, keys, lambda i: b"value %d" % i)
    uniques = [c.gets(k)[2] for k in keys]
    t.check(len(set(uniques)) == len(uniques), "CAS uniques repeat: %r"
            % (uniques,))
    expected = b"".join(value(k, i, b"value %d" % i, uniques[i])
                        for i, k in enumerate(keys)) + b"END\r\n"
    c.call(b"gets " + b" ".join(keys + [t.key("missing")]) + b"\r\n",
           expected)


@S.test()
def bare_lf_line_ending_accepted(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 0 0 1\nx\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\n" % k, hit(k, 0, b"x"))
    c.call(b"gets %s %s\n" % (k, t.key("missing")), b"VALUE %s 0 1 " % k,
           "gets with \\n")
    c.readline()
    c.expect(b"x\r\nEND\r\n")


@S.test()
def get_10000_keys_in_one_line(t):
    c = t.conn()
    keys = [t.key("%05d" % i) for i in range(10000)]
    present = keys[::3]
    store_many(c, present, lambda i: b"%d" % i)
    line = b"get " + b" ".join(keys) + b"\r\n"
    t.note("request line: %d bytes" % len(line))
    expected = b"".join(value(k, i, b"%d" % i)
                        for i, k in enumerate(present)) + b"END\r\n"
    c.call(line, expected)
    c.expect_version()


@S.test()
def gets_2000_keys_in_one_line(t):
    c = t.conn()
    keys = [t.key("%04d" % i) for i in range(2000)]
    store_many(c, keys[:3], lambda i: b"%d" % i)
    uniques = [c.gets(k)[2] for k in keys[:3]]
    expected = b"".join(value(k, i, b"%d" % i, uniques[i])
                        for i, k in enumerate(keys[:3])) + b"END\r\n"
    c.call(b"gets " + b" ".join(keys) + b"\r\n", expected)


# gat / gats


@S.test()
def gat_hit_and_miss(t):
    c, k = t.conn(), t.key()
    c.call(b"gat 100 %s\r\n" % k, b"END\r\n")
    set_ok(c, k, b"hello", flags=6)
    c.call(b"gat 100 %s\r\n" % k, hit(k, 6, b"hello"))


@S.test()
def gats_returns_cas(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"hello", flags=6)
    _, _, u = c.gets(k)
    c.call(b"gats 100 %s %s\r\n" % (t.key("missing"), k),
           value(k, 6, b"hello", u) + b"END\r\n")


@S.test()
def gat_many_keys(t):
    c = t.conn()
    keys = [t.key(str(i)) for i in range(60)]
    store_many(c, keys[1::2], lambda i: b"g%d" % i)
    line = b"gat 1000 " + b" ".join(keys) + b"\r\n"
    t.check(len(line) < 2048, "test bug: gat line longer than 2048 bytes")
    expected = b"".join(value(k, i, b"g%d" % i)
                        for i, k in enumerate(keys[1::2])) + b"END\r\n"
    c.call(line, expected)


@S.test()
def gat_without_keys_returns_end(t):
    c = t.conn()
    c.call(b"gat 0\r\n", b"END\r\n")
    c.call(b"gats 10\r\n", b"END\r\n")
    c.expect_version()


@S.test()
def gat_updates_exptime(t):
    c, k, k2 = t.conn(), t.key(), t.key("s")
    set_ok(c, k, b"x", exptime=2)
    set_ok(c, k2, b"y", exptime=2)
    c.call(b"gat 100 %s\r\n" % k, hit(k, 0, b"x"))
    _, _, u = c.gets(k2)
    c.call(b"gats 100 %s\r\n" % k2, value(k2, 0, b"y", u) + b"END\r\n")
    yield 3.0
    c.call(b"get %s %s\r\n" % (k, k2),
           value(k, 0, b"x") + value(k2, 0, b"y") + b"END\r\n",
           "get 3 s after gat 100 / gats 100")


@S.test()
def gat_shortens_exptime(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    c.call(b"gat 2 %s\r\n" % k, hit(k, 0, b"x"))
    start = time.monotonic()
    yield 1.9
    while c.get(k) is not None:
        t.check(time.monotonic() < start + 3.5, "still present 3.5 s after "
                "gat 2")
        yield 0.1


@S.test()
def gat_negative_returns_value_then_expires(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    c.call(b"gat -1 %s\r\n" % k, hit(k, 0, b"x"))
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test(only="tiercached",
        reason="memcached closes gat lines over 2048 bytes unless the "
        "whole line arrives in one read")
def gat_10000_keys_in_one_line(t):
    c = t.conn()
    keys = [t.key("%05d" % i) for i in range(10000)]
    present = keys[::5]
    store_many(c, present, lambda i: b"%d" % i)
    expected = b"".join(value(k, i, b"%d" % i)
                        for i, k in enumerate(present)) + b"END\r\n"
    c.call(b"gat 1000 " + b" ".join(keys) + b"\r\n", expected)
    uniques = read_uniques(c, present)
    expected = b"".join(value(k, i, b"%d" % i, uniques[k])
                        for i, k in enumerate(present)) + b"END\r\n"
    c.call(b"gats 1000 " + b" ".join(keys) + b"\r\n", expected)
    c.expect_version()


if __name__ == "__main__":
    run(S)
