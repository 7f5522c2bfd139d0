#!/usr/bin/env python3
"""Values: binary safety (\\r\\n, \\0, all 256 byte values), large values and
the maximum item size (-I).

Every expected reply was checked against memcached 1.6.18. Notes:
- memcached's -I limit counts its item header, key and "\\r\\n": with the
  default -I 1m the largest value it accepts is 1048514 bytes for a 3-byte
  key (1048516 for a 1-byte key, 1048267 for a 250-byte key); 1048576 bytes
  is refused. tiercached accepts values up to and including the -I size.
  So these tests store 1,000,000 bytes (must work on both) and refuse -I + 1
  bytes (must fail on both).
- A value over the limit answers "SERVER_ERROR object too large for cache"
  as soon as the command line is read, then memcached swallows the
  <bytes>+2 bytes of the data block, so the next command works.
- A too-large *set* also deletes the key's old value (memcached does this
  on purpose so that a failed set never leaves stale data); a too-large
  add, replace or append leaves the old value alone.
- With noreply the SERVER_ERROR is not sent either (the data block is still
  swallowed).
- An append that would make the item larger than the limit answers
  NOT_STORED and keeps the value.
"""

import random

from harness import Suite, run

S = Suite(__doc__)

TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"
MIB = 1048576


def blob(n, seed):
    return random.Random(seed).randbytes(n)


def hit(key, flags, data):
    return b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (key, flags, len(data), data)


def set_ok(c, key, data, flags=0):
    c.call(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(data), data),
           b"STORED\r\n")


@S.test()
def value_with_crlf_inside(t):
    c, k = t.conn(), t.key()
    data = b"\r\nline1\r\nEND\r\n\r\nVALUE x 0 1\r\n\r"
    set_ok(c, k, data)
    c.call(b"get %s\r\n" % k, hit(k, 0, data))


@S.test()
def value_with_nul_bytes(t):
    c, k = t.conn(), t.key()
    data = b"\0a\0\0b\0" + b"\0" * 100
    set_ok(c, k, data)
    c.call(b"get %s\r\n" % k, hit(k, 0, data))


@S.test()
def value_with_all_256_byte_values(t):
    c, k = t.conn(), t.key()
    data = bytes(range(256)) * 4 + bytes(range(255, -1, -1))
    set_ok(c, k, data, flags=255)
    c.call(b"get %s\r\n" % k, hit(k, 255, data))
    c.call(b"append %s 0 0 256\r\n%s\r\n" % (k, bytes(range(256))),
           b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 255, data + bytes(range(256))))


@S.test()
def value_that_looks_like_commands(t):
    c, k = t.conn(), t.key()
    data = b"set x 0 0 1\r\ny\r\ndelete %s\r\nflush_all\r\nquit\r\n" % k
    set_ok(c, k, data)
    c.call(b"get %s\r\n" % k, hit(k, 0, data))


@S.test()
def value_1000000_bytes_round_trip(t):
    c, k = t.conn(), t.key()
    data = blob(1000000, 1)
    set_ok(c, k, data, flags=42)
    c.call(b"get %s\r\n" % k, hit(k, 42, data))
    flags, got, _ = c.gets(k)
    t.check(got == data, "gets returned different bytes")


@S.test()
def two_large_values_in_one_pipeline(t):
    c, k1, k2 = t.conn(), t.key("1"), t.key("2")
    d1, d2 = blob(600000, 2), blob(900000, 3)
    c.call(b"set %s 0 0 %d\r\n%s\r\nset %s 0 0 %d\r\n%s\r\n"
           b"get %s %s\r\n" % (k1, len(d1), d1, k2, len(d2), d2, k1, k2),
           b"STORED\r\nSTORED\r\n" + hit(k1, 0, d1)[:-5]
           + hit(k2, 0, d2))


@S.test(only="tiercached", reason="memcached's -I also counts its item "
        "header: its largest value under -I 1m is 1048514 bytes")
def value_of_exactly_max_item_size_stored(t):
    c, k = t.conn(), t.key()
    data = blob(MIB, 12)
    set_ok(c, k, data)
    c.call(b"get %s\r\n" % k, hit(k, 0, data))


@S.test()
def value_over_max_item_size_rejected(t):
    c, k = t.conn(), t.key()
    data = blob(MIB + 1, 4)
    c.call(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(data), data), TOO_LARGE)
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def value_far_over_max_item_size_swallowed(t):
    c, k = t.conn(), t.key()
    data = b"get %s\r\n" % k * 300000
    c.call(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(data), data), TOO_LARGE)
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def value_over_max_item_size_noreply_swallowed(t):
    c, k = t.conn(), t.key()
    data = blob(2 * MIB, 5)
    c.send(b"set %s 0 0 %d noreply\r\n%s\r\n" % (k, len(data), data))
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def too_large_set_removes_old_value(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"old")
    data = blob(MIB + 1, 6)
    c.call(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(data), data), TOO_LARGE)
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def too_large_add_replace_append_keep_old_value(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"old")
    data = blob(MIB + 1, 7)
    for cmd in (b"add", b"replace", b"append", b"prepend"):
        c.call(b"%s %s 0 0 %d\r\n%s\r\n" % (cmd, k, len(data), data),
               TOO_LARGE, cmd.decode())
    c.call(b"get %s\r\n" % k, hit(k, 0, b"old"))


@S.test()
def append_beyond_max_item_size_not_stored(t):
    c, k = t.conn(), t.key()
    data = blob(1000000, 8)
    set_ok(c, k, data)
    more = blob(100000, 9)
    c.call(b"append %s 0 0 %d\r\n%s\r\n" % (k, len(more), more),
           b"NOT_STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 0, data))


@S.test()
def max_item_size_flag_2m(t):
    srv = t.start_server(["-I", "2m"])
    c, k = t.conn(srv), t.key()
    data = blob(2000000, 10)
    set_ok(c, k, data, flags=7)
    c.call(b"get %s\r\n" % k, hit(k, 7, data))
    over = blob(2 * MIB + 1, 11)
    c.call(b"set %s 0 0 %d\r\n%s\r\n" % (t.key("over"), len(over), over),
           TOO_LARGE)
    c.expect_version()


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@S.test(only="tiercached",
        reason="memcached builds the whole reply at once (its RSS grows)")
def huge_multiget_memory_bounded(t):
    """Regression: one short get naming a 1 MiB item 2000 times built all
    2 GB of replies in memory. Replies now stream: the server stops issuing
    keys while 4 MiB wait to be written, so a client that does not read
    cannot make it grow."""
    srv = t.start_server(["-I", "2m", "-m", "64"])
    c, k = t.conn(srv, timeout=20), t.key()
    data = blob(MIB, 21)
    set_ok(c, k, data)
    before = vm_rss_kib(srv.pid)
    n = 2000
    c.send(b"get" + b" " .join([b""] + [k] * n) + b"\r\n")
    import time
    time.sleep(1.0)  # the client reads nothing meanwhile
    grown = vm_rss_kib(srv.pid) - before
    t.note("RSS grew by %d KiB with %d MiB of replies unread" % (grown, n))
    t.check(grown < 64 * 1024, "RSS grew by less than 64 MiB")
    head = b"VALUE %s 0 %d\r\n" % (k, len(data))
    for i in range(n):
        c.expect(head, "header %d" % i)
        got = c.read_exact(len(data) + 2, "value %d" % i)
        if got != data + b"\r\n":
            t.check(False, "value %d intact" % i)
    c.expect(b"END\r\n")
    c.expect_version()


if __name__ == "__main__":
    run(S)
