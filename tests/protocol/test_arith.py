#!/usr/bin/env python3
"""incr and decr on decimal 64-bit values.

Every expected reply was checked against memcached 1.6.18. Replies of
memcached 1.6.18 that may surprise:
- A bad delta ("abc", "-1", "18446744073709551616") answers
  "CLIENT_ERROR invalid numeric delta argument"; "incr k" without a delta
  answers "ERROR". "01" and even "+1" are accepted as deltas (only "01"
  is asserted).
- A stored value that is not a decimal number fitting 64 bits ("abc", "-1",
  "1a", "18446744073709551616", the empty value) answers "CLIENT_ERROR
  cannot increment or decrement non-numeric value". Leading and trailing
  spaces in the stored value are accepted (" 12" and "12 " incr to 13;
  only the trailing spaces, which memcached's own padding produces, are
  asserted).
- When the result is shorter than the stored value, memcached 1.6.18
  overwrites the value in place and pads it with spaces: "100" decr 1 reads
  back as "99 ", "18446744073709551615" incr 1 as "0" followed by 19
  spaces. protocol.txt allows this ("The number MAY be space-padded at the
  end"), so these tests accept the value with or without the padding, but
  the reply to incr/decr itself never has it.
- incr/decr keep the item's flags and give it a new CAS unique.
"""

from harness import Suite, run

S = Suite(__doc__)

NON_NUMERIC = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument\r\n"
MAX64 = 18446744073709551615


def set_ok(c, key, data, flags=0):
    c.call(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(data), data),
           b"STORED\r\n")


def check_number(t, c, key, number, flags=0):
    """The stored value is number, possibly space-padded on the right."""
    r = c.get(key)
    t.check(r is not None, "get %r missed" % key)
    got_flags, data = r
    t.eq(got_flags, flags, "flags of %r" % key)
    t.check(data.rstrip(b" ") == b"%d" % number,
            "value of %r: expected %r (maybe space-padded), got %r"
            % (key, b"%d" % number, data))


@S.test()
def incr_adds_delta(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"10")
    c.call(b"incr %s 1\r\n" % k, b"11\r\n")
    c.call(b"incr %s 89\r\n" % k, b"100\r\n")
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 3\r\n100\r\nEND\r\n" % k)


@S.test()
def decr_subtracts_delta(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"1000")
    c.call(b"decr %s 1\r\n" % k, b"999\r\n")
    c.call(b"decr %s 99\r\n" % k, b"900\r\n")
    check_number(t, c, k, 900)


@S.test()
def incr_decr_missing_key_not_found(t):
    c, k = t.conn(), t.key()
    c.call(b"incr %s 1\r\n" % k, b"NOT_FOUND\r\n")
    c.call(b"decr %s 1\r\n" % k, b"NOT_FOUND\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def incr_wraps_at_2_64(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"%d" % MAX64)
    c.call(b"incr %s 1\r\n" % k, b"0\r\n")
    check_number(t, c, k, 0)
    set_ok(c, k, b"%d" % (MAX64 - 1))
    c.call(b"incr %s 5\r\n" % k, b"3\r\n")


@S.test()
def incr_by_max_delta(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"0")
    c.call(b"incr %s %d\r\n" % (k, MAX64), b"%d\r\n" % MAX64)
    c.call(b"get %s\r\n" % k,
           b"VALUE %s 0 20\r\n%d\r\nEND\r\n" % (k, MAX64))
    c.call(b"incr %s %d\r\n" % (k, MAX64), b"%d\r\n" % (MAX64 - 1))


@S.test()
def decr_stops_at_zero(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"5")
    c.call(b"decr %s 10\r\n" % k, b"0\r\n")
    c.call(b"decr %s 1\r\n" % k, b"0\r\n")
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 1\r\n0\r\nEND\r\n" % k)
    set_ok(c, k, b"7")
    c.call(b"decr %s %d\r\n" % (k, MAX64), b"0\r\n")


@S.test()
def incr_grows_value_length(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"99")
    c.call(b"incr %s 1\r\n" % k, b"100\r\n")
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 3\r\n100\r\nEND\r\n" % k)
    c.call(b"incr %s 99900\r\n" % k, b"100000\r\n")
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 6\r\n100000\r\nEND\r\n" % k)


@S.test()
def decr_shrinking_value_may_be_space_padded(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"100")
    c.call(b"decr %s 1\r\n" % k, b"99\r\n")
    check_number(t, c, k, 99)
    c.call(b"incr %s 1\r\n" % k, b"100\r\n")
    check_number(t, c, k, 100)


@S.test()
def incr_leading_zeros_and_trailing_spaces_in_value(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"007")
    c.call(b"incr %s 1\r\n" % k, b"8\r\n")
    check_number(t, c, k, 8)
    set_ok(c, k, b"12 ")
    c.call(b"incr %s 1\r\n" % k, b"13\r\n")


@S.test()
def incr_decr_keep_flags(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"5", flags=4294967295)
    c.call(b"incr %s 5\r\n" % k, b"10\r\n")
    c.call(b"decr %s 1\r\n" % k, b"9\r\n")
    check_number(t, c, k, 9, flags=4294967295)


@S.test()
def incr_non_numeric_value_rejected(t):
    c, k = t.conn(), t.key()
    for v in (b"abc", b"1a", b"-1", b"18446744073709551616", b"1.5", b""):
        set_ok(c, k, v)
        c.call(b"incr %s 1\r\n" % k, NON_NUMERIC, "incr on %r" % v)
        c.call(b"decr %s 1\r\n" % k, NON_NUMERIC, "decr on %r" % v)
        c.call(b"get %s\r\n" % k, b"VALUE %s 0 %d\r\n%s\r\nEND\r\n"
               % (k, len(v), v), "value %r unchanged" % v)
    c.expect_version()


@S.test()
def incr_bad_delta_rejected(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"10")
    for delta in (b"abc", b"-1", b"18446744073709551616", b"1x", b"0x10"):
        c.call(b"incr %s %s\r\n" % (k, delta), BAD_DELTA,
               "incr delta %r" % delta)
        c.call(b"decr %s %s\r\n" % (k, delta), BAD_DELTA,
               "decr delta %r" % delta)
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 2\r\n10\r\nEND\r\n" % k)


@S.test()
def incr_bad_delta_on_missing_key_rejected(t):
    # The delta is checked before the key is looked up.
    c, k = t.conn(), t.key()
    c.call(b"incr %s abc\r\n" % k, BAD_DELTA)
    c.expect_version()


@S.test()
def incr_leading_zero_delta(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"1")
    c.call(b"incr %s 01\r\n" % k, b"2\r\n")


@S.test()
def incr_missing_delta_is_error(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"1")
    c.call(b"incr %s\r\n" % k, b"ERROR\r\n")
    c.call(b"decr %s\r\n" % k, b"ERROR\r\n")
    c.call(b"incr\r\n", b"ERROR\r\n")
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 1\r\n1\r\nEND\r\n" % k)


@S.test()
def incr_decr_noreply(t):
    c, k, k2 = t.conn(), t.key(), t.key("missing")
    set_ok(c, k, b"10")
    c.send(b"incr %s 5 noreply\r\ndecr %s 2 noreply\r\n"
           b"incr %s 1 noreply\r\ndecr %s 1 noreply\r\n" % (k, k, k2, k2))
    c.expect_quiet()
    c.call(b"get %s %s\r\n" % (k, k2), b"VALUE %s 0 2\r\n13\r\nEND\r\n" % k)


@S.test()
def incr_zero_delta(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"42")
    c.call(b"incr %s 0\r\n" % k, b"42\r\n")
    c.call(b"decr %s 0\r\n" % k, b"42\r\n")


@S.test()
def incr_result_readable_by_cas(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"1")
    _, _, u1 = c.gets(k)
    c.call(b"incr %s 1\r\n" % k, b"2\r\n")
    flags, data, u2 = c.gets(k)
    t.check(u2 != u1, "incr kept the CAS unique %d" % u1)
    c.call(b"cas %s 0 0 1 %d\r\n9\r\n" % (k, u1), b"EXISTS\r\n")
    c.call(b"cas %s 0 0 1 %d\r\n9\r\n" % (k, u2), b"STORED\r\n")


if __name__ == "__main__":
    run(S)
