#!/usr/bin/env python3
"""The meta protocol (issue 7): mg, ms, md, ma, mn, me, their flags alone and
combined, quiet mode in pipelines, errors, TTLs, stale items and the
stampede protection (win/stale/won flags W, X, Z) with 50 clients at once.

Every expected reply was checked against the real memcached 1.6.18. Where
it does not do what protocol.txt says (all asserted here):
- A miss still reflects O and k: "mg nokey k O1" answers "EN knokey O1"
  (also md/ma: "NF knokey O1"); protocol.txt shows a bare "EN".
- Opaque tokens: "O" plus at most 31 bytes; 32 bytes of opaque answer
  "CLIENT_ERROR opaque token too long" (the doc says up to 32 bytes).
- ms has no S flag: "ms k 1 S1" answers "CLIENT_ERROR invalid flag" (the
  doc speaks of the data length "supplied by an 'S' flag"); the length is
  the second token. Modes are upper case only ("Ms" is an invalid mode).
- q: "ma k q v" on a hit sends nothing at all, not even the VA block; but
  "ma k N0 q" that creates the item answers HD, and "mg k N30 q" on a miss
  answers "HD W" (a created stub counts as a hit). ms q and md q hide only
  HD; NS/EX/NF are sent. mg q sends hits (HD/VA) and hides EN.
- Reply flags follow the request order, except b, which comes right after
  k ("mg K b k v" answers "VA 1 kK b"), and W/X/Z, which come last, in the
  order Z, X, W ("VA 1 c5 Z X", "VA 1 t-1 X W").
- ma and mg apply T and report t in request order: "ma k t T30" reports the
  TTL before the change, "ma k T30 t" after it.
- k after b: the key comes back base64-encoded whenever the item was stored
  with b (even when the mg has no b), and raw when it was stored by a
  classic set (even when the mg has b: "mg cGxhaW4= b k" answers "kplain"
  with no b flag).
- Errors differ by command: mg and ms say "CLIENT_ERROR invalid flag",
  "CLIENT_ERROR duplicate flag" and, for a bad T/N/R/C number, "CLIENT_ERROR
  bad token in command line format" (F: "bad command line format"); md and
  ma say "CLIENT_ERROR invalid or duplicate flag" for all of these,
  including a bad base64 key; me says "bad command line format" for it;
  mg/ms say "CLIENT_ERROR error decoding key".
- A bad ms data length ("abc", "2x", key too long) does not swallow the
  data block (its line is then read as a command: "ERROR"); a bad flag,
  mode or token in ms does swallow it. Over the item size limit: "SERVER_ERROR
  object too large for cache", the data swallowed, the old value removed,
  sent even with q.
- More than 17 flags: "CLIENT_ERROR options flags are too long" (checked
  before duplicates). "mg" and "ms" without a key answer "ERROR", "me"
  without a key "CLIENT_ERROR bad command line format".
- md with T but without I deletes the item; md ignores v, f, c, s, t.
- ms ignores the mg-only flags v, s, f, t, h, l, u, N, R; "ms k 1 C0" on an
  existing item is EX (0 is compared, not "no CAS"); E ignores C on a miss.
- "ms k n C<older> I" on a stale item stores the value, keeps the item
  stale and keeps its TTL and its won-flag state ("Z X" when a W was
  already handed out); with the current CAS it is a normal store. On a
  non-stale item, an older CAS with I stores a stale value ("X W").
- A stub created by N is seen by every later mg as Z even without N/R
  flags ("mg k v" answers "VA 0 Z"); classic get returns its empty value.
- TTLs: memcached's clock ticks once a second, so t is checked within a
  2-second window (a "T3" can read back as t2 at once).
- me's fields are memcached's own (cls, size are slab details): only
  "ME <key> exp=<e> la=<n> cas=<cas> fetch=<no|yes>" is asserted, with the
  key in base64 when asked with b. For an item with a TTL, exp is printed
  negative: "ms k 1 T100" then "me k" gives "exp=-100" (now minus the
  expiry time); asserted as memcached prints it.
- l: memcached moves an item's access time at most once a minute, so an
  mg right after an mg that reported l2 reports l2 again; only "l right
  after the store" and "l after a 2.6 s sleep" are asserted.
- mg shares ms's flag parser: it accepts and ignores I, and a bad C, D, J,
  F or M token answers the ms errors ("mg k D" gives "CLIENT_ERROR invalid
  numeric delta value"); not asserted beyond the invalid-flag list.
- "ma k O<32 bytes>" on an existing numeric item answers "CLIENT_ERROR
  opaque token too long" but has already applied the increment; only the
  miss is asserted for ma.
- "ms k +2" is read as length 2 (strtoul); not asserted.
- Not from memcached: tiercached refuses F above 32 bits (as its set
  refuses such flags, see test_storage.py) where memcached keeps the low 32
  bits; ms_F_beyond_32_bits asserts each server's answer.
"""

import base64
import os
import re
import signal
import threading
import time

from harness import Failure, Suite, run, server_on_dir, stop_clean, temp_data_dir

S = Suite(__doc__)

ONLY_DISK = dict(only="tiercached", reason="the disk tier is tiercached's")
ONLY_RESTART = dict(only="tiercached",
                    reason="memcached keeps nothing across a restart")

BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_TOKEN = b"CLIENT_ERROR bad token in command line format\r\n"
INVALID = b"CLIENT_ERROR invalid flag\r\n"
DUPLICATE = b"CLIENT_ERROR duplicate flag\r\n"
INV_OR_DUP = b"CLIENT_ERROR invalid or duplicate flag\r\n"
DECODE = b"CLIENT_ERROR error decoding key\r\n"
OPAQUE_LONG = b"CLIENT_ERROR opaque token too long\r\n"
TOO_MANY = b"CLIENT_ERROR options flags are too long\r\n"
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"
BAD_CHUNK = b"CLIENT_ERROR bad data chunk\r\n"
MS_MODE = b"CLIENT_ERROR invalid mode for ms M token\r\n"
MA_MODE = b"CLIENT_ERROR invalid mode for ma M token\r\n"
NON_NUMERIC = (b"CLIENT_ERROR cannot increment or decrement non-numeric "
               b"value\r\n")
MIB = 1048576


def b64(raw):
    return base64.b64encode(raw)


def ms(c, key, data, flags=b""):
    """ms that must answer HD (flags must not ask for reply flags)."""
    c.call(b"ms %s %d%s\r\n%s\r\n" % (key, len(data),
                                       b" " + flags if flags else b"", data),
           b"HD\r\n")


def cas_of(c, key):
    c.send(b"mg %s c\r\n" % key)
    line = c.readline()
    m = re.fullmatch(rb"HD c(\d+)(?: [WXZ])*\r\n", line)
    if not m:
        raise Failure("mg %r c: unexpected %r" % (key, line))
    return int(m.group(1))


def read_meta(c, what="meta reply"):
    """One meta reply: (line without \\r\\n, data or None)."""
    line = c.readline(what)
    if line.startswith(b"VA "):
        n = int(line.split(b" ")[1])
        data = c.read_exact(n + 2, what)
        if data[-2:] != b"\r\n":
            raise Failure("%s: data not followed by \\r\\n: %r" % (what, data))
        return line[:-2], data[:-2]
    return line[:-2], None


def expect_line(c, pattern, what="reply"):
    """Reads one line; it must match the regex pattern (bytes, no \\r\\n).
    Returns the match."""
    line = c.readline(what)
    m = re.fullmatch(pattern + rb"\r\n", line)
    if not m:
        raise Failure("%s: %r does not match %r" % (what, line, pattern))
    return m


def ttl_in(m, group, lo, hi, what="TTL"):
    v = int(m.group(group))
    if not lo <= v <= hi:
        raise Failure("%s %d not in [%d, %d]" % (what, v, lo, hi))
    return v


def mn_ok(c):
    """A meta no-op round trip: the connection still works and every
    earlier reply has been read."""
    c.call(b"mn\r\n", b"MN\r\n", "MN after the earlier requests")


# mn


@S.test()
def mn_answers_MN(t):
    c = t.conn()
    c.call(b"mn\r\n", b"MN\r\n")
    c.call(b"mn\r\nmn\r\nmn\r\n", b"MN\r\nMN\r\nMN\r\n")


@S.test()
def mn_ignores_arguments(t):
    c = t.conn()
    c.call(b"mn foo\r\n", b"MN\r\n")
    c.call(b"mn q\r\n", b"MN\r\n")


@S.test()
def meta_commands_are_lower_case(t):
    c = t.conn()
    for line in (b"MN", b"MG a v", b"Mg a", b"mx a", b"m"):
        c.call(line + b"\r\n", b"ERROR\r\n", "reply to %r" % line)
    c.expect_version()


# mg, one flag at a time


@S.test()
def mg_miss_EN(t):
    c = t.conn()
    c.call(b"mg %s\r\n" % t.key(), b"EN\r\n")
    c.call(b"mg %s v\r\n" % t.key(), b"EN\r\n")


@S.test()
def mg_miss_ignores_value_flags(t):
    c = t.conn()
    c.call(b"mg %s v c f s t h l u\r\n" % t.key(), b"EN\r\n")


@S.test()
def mg_hit_without_flags_HD(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s\r\n" % k, b"HD\r\n")


@S.test()
def mg_v_returns_value(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"hello")
    c.call(b"mg %s v\r\n" % k, b"VA 5\r\nhello\r\n")


@S.test()
def mg_v_empty_value(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"")
    c.call(b"mg %s v\r\n" % k, b"VA 0\r\n\r\n")
    c.call(b"mg %s s\r\n" % k, b"HD s0\r\n")


@S.test()
def mg_v_binary_value(t):
    c, k = t.conn(), t.key()
    data = bytes(range(256)) + b"\r\nEN\r\nmn\r\n"
    ms(c, k, data)
    c.call(b"mg %s v\r\n" % k, b"VA %d\r\n%s\r\n" % (len(data), data))


@S.test()
def mg_s_size(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"x" * 1234)
    c.call(b"mg %s s\r\n" % k, b"HD s1234\r\n")


@S.test()
def mg_f_client_flags(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"v", b"F305419896")
    c.call(b"mg %s f\r\n" % k, b"HD f305419896\r\n")
    ms(c, k, b"v")
    c.call(b"mg %s f\r\n" % k, b"HD f0\r\n", "ms without F sets flags 0")


@S.test()
def mg_f_sees_classic_set_flags(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 4294967295 0 1\r\nx\r\n" % k, b"STORED\r\n")
    c.call(b"mg %s f v\r\n" % k, b"VA 1 f4294967295\r\nx\r\n")


@S.test()
def mg_c_matches_gets(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    _, _, cas = c.gets(k)
    c.call(b"mg %s c\r\n" % k, b"HD c%d\r\n" % cas)


@S.test()
def mg_k_returns_key(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s k\r\n" % k, b"HD k%s\r\n" % k)
    c.call(b"mg %s k v\r\n" % k, b"VA 3 k%s\r\nabc\r\n" % k)


@S.test()
def mg_t_minus_one_without_expiry(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s t\r\n" % k, b"HD t-1\r\n")
    ms(c, k, b"abc", b"T0")
    c.call(b"mg %s t\r\n" % k, b"HD t-1\r\n", "T0 is no expiry")
    c.call(b"set %s 0 0 1\r\nx\r\n" % k, b"STORED\r\n")
    c.call(b"mg %s t\r\n" % k, b"HD t-1\r\n", "after a classic set")


@S.test()
def mg_t_remaining_ttl(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc", b"T100")
    c.send(b"mg %s t\r\n" % k)
    ttl_in(expect_line(c, rb"HD t(\d+)"), 1, 98, 100)
    c.call(b"set %s 0 1000 1\r\nx\r\n" % k, b"STORED\r\n")
    c.send(b"mg %s t v\r\n" % k)
    ttl_in(expect_line(c, rb"VA 1 t(\d+)"), 1, 998, 1000)
    c.expect(b"x\r\n")


@S.test()
def mg_O_opaque_copied_back(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s Oabc123\r\n" % k, b"HD Oabc123\r\n")
    c.call(b"mg %s v O1\r\n" % k, b"VA 3 O1\r\nabc\r\n")


@S.test()
def mg_O_empty_opaque(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s O\r\n" % k, b"HD O\r\n")
    c.call(b"mg %s O\r\n" % t.key("miss"), b"EN O\r\n")


@S.test()
def mg_miss_reflects_opaque_and_key(t):
    c, k = t.conn(), t.key()
    c.call(b"mg %s k O1\r\n" % k, b"EN k%s O1\r\n" % k)
    c.call(b"mg %s O2 k\r\n" % k, b"EN O2 k%s\r\n" % k)
    c.call(b"mg %s v O3\r\n" % k, b"EN O3\r\n")


@S.test()
def opaque_31_bytes_accepted_32_refused(t):
    c, k = t.conn(), t.key()
    o31, o32 = b"o" * 31, b"p" * 32
    c.call(b"ms %s 1 O%s\r\nz\r\n" % (k, o31), b"HD O%s\r\n" % o31)
    c.call(b"mg %s O%s v\r\n" % (k, o31), b"VA 1 O%s\r\nz\r\n" % o31)
    c.call(b"md %s O%s q\r\nmn\r\n" % (t.key("x"), o31),
           b"NF O%s\r\nMN\r\n" % o31)
    c.call(b"mg %s O%s v\r\n" % (k, o32), OPAQUE_LONG)
    c.call(b"mg %s O%s\r\n" % (t.key("miss"), o32), OPAQUE_LONG)
    # ms swallows its data block after this error.
    c.call(b"ms %s 1 O%s\r\ny\r\n" % (k, o32), OPAQUE_LONG)
    c.call(b"md %s O%s\r\n" % (k, o32), OPAQUE_LONG)
    # (On an existing item memcached 1.6.18 applies the increment before it
    # checks the opaque, so only a miss is asserted for ma.)
    c.call(b"ma %s O%s\r\n" % (t.key("x"), o32), OPAQUE_LONG)
    c.call(b"mg %s O%s\r\n" % (k, b"o" * 200), OPAQUE_LONG)
    mn_ok(c)
    c.call(b"mg %s v\r\n" % k, b"VA 1\r\nz\r\n", "nothing changed")


@S.test()
def mg_P_and_L_ignored(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s P L\r\n" % k, b"HD\r\n")
    c.call(b"mg %s Pfoo/bar Lpath/ v\r\n" % k, b"VA 3\r\nabc\r\n")


@S.test()
def mg_T_updates_ttl(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s T100\r\n" % k, b"HD\r\n")
    c.send(b"mg %s t\r\n" % k)
    ttl_in(expect_line(c, rb"HD t(\d+)"), 1, 98, 100)
    c.send(b"mg %s T500 t v\r\n" % k)
    ttl_in(expect_line(c, rb"VA 3 t(\d+)"), 1, 498, 500)
    c.expect(b"abc\r\n")


@S.test()
def mg_t_before_T_reports_the_old_ttl(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc", b"T50")
    c.send(b"mg %s t T100\r\n" % k)
    ttl_in(expect_line(c, rb"HD t(\d+)"), 1, 48, 50, "t before T")
    c.send(b"mg %s t\r\n" % k)
    ttl_in(expect_line(c, rb"HD t(\d+)"), 1, 98, 100, "TTL after T100")


@S.test()
def mg_T0_removes_expiry(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc", b"T50")
    c.call(b"mg %s T0 t\r\n" % k, b"HD t-1\r\n")


@S.test()
def mg_T_negative_expires_item(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s T-1\r\n" % k, b"HD\r\n")
    c.call(b"mg %s v\r\n" % k, b"EN\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def mg_h_hit_before(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s h\r\n" % k, b"HD h0\r\n", "first fetch")
    c.call(b"mg %s h\r\n" % k, b"HD h1\r\n", "second fetch")
    ms(c, k, b"def")
    c.call(b"mg %s h v\r\n" % k, b"VA 3 h0\r\ndef\r\n", "a new store resets")


@S.test()
def mg_u_does_not_mark_hit(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s u h\r\n" % k, b"HD h0\r\n")
    c.call(b"mg %s u h v\r\n" % k, b"VA 3 h0\r\nabc\r\n")
    c.call(b"mg %s h\r\n" % k, b"HD h0\r\n")
    c.call(b"mg %s h\r\n" % k, b"HD h1\r\n")


@S.test()
def mg_h_counts_classic_get_and_any_mg(t):
    c, k, k2 = t.conn(), t.key("a"), t.key("b")
    ms(c, k, b"abc")
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 3\r\nabc\r\nEND\r\n" % k)
    c.call(b"mg %s h\r\n" % k, b"HD h1\r\n", "after a classic get")
    ms(c, k2, b"abc")
    c.call(b"mg %s s\r\n" % k2, b"HD s3\r\n")
    c.call(b"mg %s h\r\n" % k2, b"HD h1\r\n", "after mg with s only")


@S.test()
def mg_l_last_access(t):
    c, k, k2 = t.conn(), t.key("a"), t.key("b")
    ms(c, k, b"abc")
    ms(c, k2, b"abc")
    set_at = time.monotonic()
    c.send(b"mg %s l\r\n" % k)
    ttl_in(expect_line(c, rb"HD l(\d+)"), 1, 0, 1, "l right after the set")
    yield 2.6
    # At least 2.6 s later; more when another test ran long meanwhile, so
    # the bounds come from the time that really passed: [2, 4] when it is
    # 2.6 s, as memcached's whole-second clock allows.
    gone = time.monotonic() - set_at
    lo, hi = int(gone - 0.6), int(gone) + 2
    # l reports the time before this access. (memcached updates an item's
    # access time at most once a minute, so whether this access resets it
    # is not asserted.)
    c.send(b"mg %s l h\r\n" % k)
    ttl_in(expect_line(c, rb"HD l(\d+) h1"), 1, lo, hi,
           "l after %.1f s" % gone)
    # u reads without updating the access time.
    c.send(b"mg %s u l\r\n" % k2)
    ttl_in(expect_line(c, rb"HD l(\d+)"), 1, lo, hi, "l with u")
    c.send(b"mg %s l\r\n" % k2)
    ttl_in(expect_line(c, rb"HD l(\d+)"), 1, lo, hi, "l after a u access")


# mg, flags combined


@S.test()
def mg_flags_reply_in_request_order(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc", b"F7")
    cas = cas_of(c, k)
    c.call(b"mg %s v c f s k t Oop\r\n" % k,
           b"VA 3 c%d f7 s3 k%s t-1 Oop\r\nabc\r\n" % (cas, k))
    c.call(b"mg %s Oop t k s f c v\r\n" % k,
           b"VA 3 Oop t-1 k%s s3 f7 c%d\r\nabc\r\n" % (k, cas))
    c.call(b"mg %s s f c\r\n" % k, b"HD s3 f7 c%d\r\n" % cas)


@S.test()
def mg_all_flags_at_once(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc", b"F9")
    cas = cas_of(c, k)
    c.call(b"mg %s c f h k l Oo q s t u v P L\r\n" % k,
           b"VA 3 c%d f9 h1 k%s l0 Oo s3 t-1\r\nabc\r\n" % (cas, k))


@S.test()
def mg_seventeen_flags_accepted_eighteen_refused(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    # 17 flags (the N30/R30/T30 make the item expire in 30 s).
    c.send(b"mg %s c f h k l Oo q s u v N30 R30 T30 P L t b\r\n"
           % b64(k))
    line, data = read_meta(c)
    t.check(line.startswith(b"VA 3 c") and data == b"abc",
            "17 flags: %r" % line)
    c.call(b"mg %s%s\r\n" % (k, b" P" * 17), DUPLICATE)
    c.call(b"mg %s%s\r\n" % (k, b" P" * 18), TOO_MANY)
    c.call(b"mg %s v%s\r\n" % (k, b" P x" * 10), TOO_MANY)
    mn_ok(c)


# mg errors


@S.test()
def mg_invalid_flag(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    for flag in (b"E", b"zz", b"1", b"x", b"a", b"S1", b"Q", b"+", b"W",
                 b"X", b"Z"):
        c.call(b"mg %s %s\r\n" % (k, flag), INVALID, "mg flag %r" % flag)
    c.expect_version()
    c.call(b"mg %s v\r\n" % k, b"VA 3\r\nabc\r\n")


@S.test()
def mg_duplicate_flag(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    for flags in (b"v v", b"c c", b"O1 O2", b"k q q", b"N30 N30", b"T1 T2",
                  b"P P"):
        c.call(b"mg %s %s\r\n" % (k, flags), DUPLICATE, "mg %r" % flags)
    c.expect_version()


@S.test()
def mg_bad_numeric_tokens(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    for flag in (b"T", b"Tx", b"T1x", b"N", b"Nx", b"R", b"Rx",
                 b"T99999999999999999999"):
        c.call(b"mg %s %s\r\n" % (k, flag), BAD_TOKEN, "mg %r" % flag)
        c.expect_version()
    c.call(b"mg %s v t\r\n" % k, b"VA 3 t-1\r\nabc\r\n", "item unchanged")


@S.test()
def mg_without_key_error(t):
    c = t.conn()
    c.call(b"mg\r\n", b"ERROR\r\n")
    c.call(b"mg \r\n", b"ERROR\r\n")
    mn_ok(c)


@S.test()
def meta_key_too_long(t):
    c = t.conn()
    k250 = (t.key() + b"k" * 250)[:250]
    k251 = k250 + b"k"
    ms(c, k250, b"v")
    c.call(b"mg %s v\r\n" % k250, b"VA 1\r\nv\r\n")
    c.call(b"mg %s v\r\n" % k251, BAD_FORMAT)
    c.call(b"mg %s v q k O1\r\n" % k251, BAD_FORMAT)
    # The data block is not swallowed: its line is read as a command.
    c.call(b"ms %s 2\r\nhi\r\n" % k251, BAD_FORMAT + b"ERROR\r\n")
    c.call(b"md %s\r\n" % k251, BAD_FORMAT)
    c.call(b"ma %s\r\n" % k251, BAD_FORMAT)
    c.call(b"me %s\r\n" % k251, BAD_FORMAT)
    mn_ok(c)
    c.call(b"mg %s v\r\n" % k250, b"VA 1\r\nv\r\n")


@S.test()
def meta_tokens_separated_by_several_spaces(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"x")
    cas = cas_of(c, k)
    c.call(b"mg %s  v   c\r\n" % k, b"VA 1 c%d\r\nx\r\n" % cas)
    c.call(b"mg %s v \r\n" % k, b"VA 1\r\nx\r\n", "a trailing space")
    c.call(b"mg  %s v\r\n" % k, b"VA 1\r\nx\r\n", "two spaces before the key")
    c.call(b"md %s  q\r\nmn\r\n" % t.key("miss"), b"NF\r\nMN\r\n")


@S.test()
def meta_line_ending_bare_newline(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"x")
    c.call(b"mg %s v\n" % k, b"VA 1\r\nx\r\n")
    c.call(b"mn\n", b"MN\r\n")
    # The data block itself must end with \r\n: "x\nm" is read as the
    # 1 + 2 bytes, the rest of the line is an unknown command.
    c.call(b"ms %s 1\nx\nmg %s v\n" % (k, k), BAD_CHUNK + b"ERROR\r\n")
    mn_ok(c)
    c.call(b"mg %s v\r\n" % k, b"VA 1\r\nx\r\n")


@S.test()
def noreply_is_not_a_meta_flag(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 1 noreply\r\nx\r\n" % k, INVALID)
    c.call(b"mg %s v noreply\r\n" % k, INVALID)
    mn_ok(c)
    c.call(b"mg %s\r\n" % k, b"EN\r\n")


@S.test()
def ms_datalen_with_leading_zeros(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 02\r\nab\r\n" % k, b"HD\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA 2\r\nab\r\n")


# ms


@S.test()
def ms_stores_value(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 5\r\nhello\r\n" % k, b"HD\r\n")
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 5\r\nhello\r\nEND\r\n" % k)


@S.test()
def ms_zero_length(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 0\r\n\r\n" % k, b"HD\r\n")
    c.call(b"mg %s v s\r\n" % k, b"VA 0 s0\r\n\r\n")


@S.test()
def ms_binary_value(t):
    c, k = t.conn(), t.key()
    data = b"\r\n\x00HD\r\nms x 1\r\n" + bytes(range(256))
    c.call(b"ms %s %d\r\n%s\r\n" % (k, len(data), data), b"HD\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA %d\r\n%s\r\n" % (len(data), data))


@S.test()
def ms_F_sets_client_flags(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc", b"F4294967295")
    c.call(b"get %s\r\n" % k, b"VALUE %s 4294967295 3\r\nabc\r\nEND\r\n" % k)
    ms(c, k, b"abc", b"F0")
    c.call(b"mg %s f\r\n" % k, b"HD f0\r\n")


@S.test()
def ms_F_beyond_32_bits(t):
    # As with classic set (test_storage.py), memcached keeps the low 32 bits
    # and tiercached refuses the flags, here as memcached refuses "F-1"
    # (the data block is swallowed).
    c, k = t.conn(), t.key()
    if t.is_memcached:
        ms(c, k, b"abc", b"F4294967296")
        c.call(b"mg %s f\r\n" % k, b"HD f0\r\n")
    else:
        c.call(b"ms %s 3 F4294967296\r\nabc\r\n" % k, BAD_FORMAT)
        mn_ok(c)
        c.call(b"mg %s f\r\n" % k, b"EN\r\n")


@S.test()
def ms_T_sets_ttl(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc", b"T100")
    c.send(b"mg %s t\r\n" % k)
    ttl_in(expect_line(c, rb"HD t(\d+)"), 1, 98, 100)
    ms(c, k, b"abc", b"T2592000")
    c.send(b"mg %s t\r\n" % k)
    ttl_in(expect_line(c, rb"HD t(\d+)"), 1, 2591998, 2592000,
           "30 days is still relative")


@S.test()
def ms_T_negative_or_absolute_past_misses(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc", b"T-1")
    c.call(b"mg %s v\r\n" % k, b"EN\r\n")
    ms(c, k, b"abc", b"T2592001")
    c.call(b"mg %s v\r\n" % k, b"EN\r\n", "absolute time in 1970")


@S.test()
def ms_c_returns_new_cas(t):
    c, k = t.conn(), t.key()
    c.send(b"ms %s 1 c\r\nx\r\n" % k)
    cas = int(expect_line(c, rb"HD c(\d+)").group(1))
    t.eq(c.gets(k)[2], cas, "gets CAS")
    c.call(b"mg %s c\r\n" % k, b"HD c%d\r\n" % cas)
    c.send(b"ms %s 1 c\r\ny\r\n" % k)
    cas2 = int(expect_line(c, rb"HD c(\d+)").group(1))
    t.check(cas2 > cas, "CAS rises: %d then %d" % (cas, cas2))


@S.test()
def ms_k_O_c_in_request_order(t):
    c, k = t.conn(), t.key()
    c.send(b"ms %s 1 k O9 c\r\nx\r\n" % k)
    cas = int(expect_line(c, rb"HD k%s O9 c(\d+)" % re.escape(k)).group(1))
    c.send(b"ms %s 1 c O8 k\r\nx\r\n" % k)
    cas2 = int(expect_line(c, rb"HD c(\d+) O8 k%s" % re.escape(k)).group(1))
    t.check(cas2 > cas, "CAS rises: %d then %d" % (cas, cas2))


@S.test()
def ms_ignores_mg_only_flags(t):
    c, k = t.conn(), t.key()
    for flags in (b"v", b"s", b"f t h l u", b"N30 R5", b"P L", b"Pa/b"):
        c.call(b"ms %s 1 %s\r\nq\r\n" % (k, flags), b"HD\r\n",
               "ms flags %r" % flags)
    c.call(b"mg %s v t\r\n" % k, b"VA 1 t-1\r\nq\r\n")


@S.test()
def ms_C_compare_and_swap(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"old")
    cas = cas_of(c, k)
    c.call(b"ms %s 3 C%d c\r\nbad\r\n" % (k, cas + 1), b"EX c0\r\n")
    c.call(b"ms %s 3 C%d\r\nnew\r\n" % (k, cas), b"HD\r\n")
    c.call(b"ms %s 3 C%d\r\nold\r\n" % (k, cas), b"EX\r\n",
           "the same CAS again")
    c.call(b"mg %s v\r\n" % k, b"VA 3\r\nnew\r\n")


@S.test()
def ms_C_matches_classic_gets(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 0 0 1\r\na\r\n" % k, b"STORED\r\n")
    cas = c.gets(k)[2]
    c.call(b"ms %s 1 C%d\r\nb\r\n" % (k, cas), b"HD\r\n")
    c.call(b"cas %s 0 0 1 %d\r\nc\r\n" % (k, cas), b"EXISTS\r\n")
    c.call(b"cas %s 0 0 1 %d\r\nc\r\n" % (k, cas_of(c, k)), b"STORED\r\n")


@S.test()
def ms_C_on_missing_key_NF(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 1 C5\r\nx\r\n" % k, b"NF\r\n")
    c.call(b"ms %s 1 k O1 C1\r\nx\r\n" % k, b"NF k%s O1\r\n" % k)
    c.call(b"mg %s\r\n" % k, b"EN\r\n")


@S.test()
def ms_C0_is_compared(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"a")
    c.call(b"ms %s 1 C0\r\nb\r\n" % k, b"EX\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA 1\r\na\r\n")


@S.test()
def ms_mode_S_set(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 1 MS\r\na\r\n" % k, b"HD\r\n")
    c.call(b"ms %s 1 MS\r\nb\r\n" % k, b"HD\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA 1\r\nb\r\n")


@S.test()
def ms_mode_E_add(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 3 ME F1\r\nabc\r\n" % k, b"HD\r\n")
    c.call(b"ms %s 3 ME F2\r\nxyz\r\n" % k, b"NS\r\n")
    c.call(b"ms %s 3 ME k O1\r\nxyz\r\n" % k, b"NS k%s O1\r\n" % k)
    c.call(b"mg %s v f\r\n" % k, b"VA 3 f1\r\nabc\r\n")


@S.test()
def ms_mode_E_ignores_C_on_miss(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 1 ME C1\r\nx\r\n" % k, b"HD\r\n")
    c.call(b"ms %s 1 ME C1\r\ny\r\n" % k, b"NS\r\n")


@S.test()
def ms_mode_R_replace(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 1 MR\r\nx\r\n" % k, b"NS\r\n")
    c.call(b"mg %s\r\n" % k, b"EN\r\n")
    ms(c, k, b"a")
    c.call(b"ms %s 1 MR F3\r\ny\r\n" % k, b"HD\r\n")
    c.call(b"mg %s v f\r\n" % k, b"VA 1 f3\r\ny\r\n")
    c.call(b"ms %s 1 MR C1\r\nz\r\n" % k, b"EX\r\n")


@S.test()
def ms_mode_A_append_P_prepend(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 1 MA\r\nx\r\n" % k, b"NS\r\n")
    c.call(b"ms %s 1 MP\r\nx\r\n" % k, b"NS\r\n")
    ms(c, k, b"abc", b"F5 T0")
    c.call(b"ms %s 1 MA F9\r\nA\r\n" % k, b"HD\r\n")
    c.call(b"ms %s 1 MP T100\r\nP\r\n" % k, b"HD\r\n")
    c.call(b"mg %s v f t\r\n" % k, b"VA 5 f5 t-1\r\nPabcA\r\n",
           "append/prepend keep flags and TTL")


@S.test()
def ms_mode_A_P_respect_C(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"y")
    cas = cas_of(c, k)
    c.send(b"ms %s 1 MA C%d c\r\nz\r\n" % (k, cas))
    cas2 = int(expect_line(c, rb"HD c(\d+)").group(1))
    t.check(cas2 > cas, "append bumps CAS")
    c.call(b"ms %s 1 MA C%d c\r\nz\r\n" % (k, cas), b"EX c0\r\n")
    c.call(b"ms %s 1 MP C%d\r\nw\r\n" % (k, cas), b"EX\r\n")
    c.call(b"ms %s 1 MP C%d\r\nw\r\n" % (k, cas2), b"HD\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA 3\r\nwyz\r\n")


@S.test()
def ms_invalid_modes(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"keep")
    for mode in (b"MZ", b"Mx", b"Ms", b"Ma", b"Me", b"Mr", b"Mp", b"MI",
                 b"M+"):
        c.call(b"ms %s 3 %s\r\nabc\r\n" % (k, mode), MS_MODE,
               "ms %r (data swallowed)" % mode)
    for mode in (b"M", b"MSS", b"MEA"):
        c.call(b"ms %s 3 %s\r\nabc\r\n" % (k, mode),
               b"CLIENT_ERROR incorrect length for M token\r\n",
               "ms %r" % mode)
    mn_ok(c)
    c.call(b"mg %s v\r\n" % k, b"VA 4\r\nkeep\r\n")


@S.test()
def ms_I_without_C_is_a_plain_set(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"x")
    ms(c, k, b"y", b"I")
    c.call(b"mg %s v\r\n" % k, b"VA 1\r\ny\r\n")
    ms(c, t.key("new"), b"q", b"MS I")
    c.call(b"mg %s v\r\n" % t.key("new"), b"VA 1\r\nq\r\n")


@S.test()
def ms_S_flag_is_invalid(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 1 S1\r\nx\r\n" % k, INVALID)
    mn_ok(c)
    c.call(b"mg %s\r\n" % k, b"EN\r\n")


@S.test()
def ms_invalid_and_duplicate_flags_swallow_data(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 1 x\r\nq\r\n" % k, INVALID)
    c.call(b"ms %s 1 c c\r\nq\r\n" % k, DUPLICATE)
    c.call(b"ms %s 1 T1 T2\r\nq\r\n" % k, DUPLICATE)
    mn_ok(c)
    c.call(b"mg %s\r\n" % k, b"EN\r\n")


@S.test()
def ms_missing_datalen(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s\r\n" % k, BAD_FORMAT)
    mn_ok(c)
    c.call(b"ms\r\n", b"ERROR\r\n")
    mn_ok(c)


@S.test()
def ms_bad_datalen_does_not_swallow_data(t):
    c, k = t.conn(), t.key()
    for n in (b"abc", b"2x", b"1.5", b"-2"):
        c.call(b"ms %s %s\r\nhi\r\n" % (k, n), BAD_FORMAT + b"ERROR\r\n",
               "ms length %r" % n)
        mn_ok(c)
    c.call(b"ms %s -1\r\n" % k, BAD_FORMAT)
    mn_ok(c)
    c.call(b"mg %s\r\n" % k, b"EN\r\n")


@S.test()
def ms_bad_data_chunk(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"old")
    # memcached reads datalen + 2 bytes; "hiX\r" is not followed by
    # "\r\n", the leftover "\n" is an empty command line.
    c.call(b"ms %s 2\r\nhiX\r\n" % k, BAD_CHUNK + b"ERROR\r\n")
    mn_ok(c)
    c.call(b"ms %s 2\r\nhi\r\r" % k, BAD_CHUNK)
    mn_ok(c)
    c.call(b"mg %s v\r\n" % k, b"VA 3\r\nold\r\n", "old value kept")


@S.test()
def ms_bad_numeric_tokens(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"old")
    for flag in (b"T", b"Tabc", b"T99999999999999999999", b"C", b"Cx",
                 b"C-1"):
        c.call(b"ms %s 2 %s\r\nhi\r\n" % (k, flag), BAD_TOKEN, "ms %r" % flag)
        mn_ok(c)
    for flag in (b"F", b"Fx", b"F-1", b"F18446744073709551616"):
        c.call(b"ms %s 2 %s\r\nhi\r\n" % (k, flag), BAD_FORMAT,
               "ms %r" % flag)
        mn_ok(c)
    c.call(b"mg %s v\r\n" % k, b"VA 3\r\nold\r\n", "old value kept")


@S.test()
def ms_over_item_size_limit(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"old")
    big = b"a" * (MIB + 1)
    c.call(b"ms %s %d\r\n%s\r\n" % (k, len(big), big), TOO_LARGE)
    mn_ok(c)
    c.call(b"mg %s v\r\n" % k, b"EN\r\n", "a too-large ms removes the key")
    ms(c, k, b"old")
    c.call(b"ms %s %d q T0 F3\r\n%s\r\nmn\r\n" % (k, len(big), big),
           TOO_LARGE + b"MN\r\n", "sent even with q")
    c.call(b"mg %s v\r\n" % k, b"EN\r\n")


@S.test()
def ms_1000000_bytes(t):
    c, k = t.conn(), t.key()
    data = os.urandom(1000000)
    c.call(b"ms %s %d T0\r\n%s\r\n" % (k, len(data), data), b"HD\r\n")
    c.call(b"mg %s s v\r\n" % k, b"VA %d s%d\r\n%s\r\n" % (len(data),
                                                          len(data), data))


# md


@S.test()
def md_deletes(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"md %s\r\n" % k, b"HD\r\n")
    c.call(b"md %s\r\n" % k, b"NF\r\n")
    c.call(b"mg %s\r\n" % k, b"EN\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def md_k_O(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"md %s k O5\r\n" % k, b"HD k%s O5\r\n" % k)
    c.call(b"md %s O6 k\r\n" % k, b"NF O6 k%s\r\n" % k)


@S.test()
def md_q(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"md %s q k O1\r\nmn\r\n" % k, b"MN\r\n", "success is silent")
    c.call(b"md %s q O2\r\nmn\r\n" % k, b"NF O2\r\nMN\r\n", "NF is sent")
    c.call(b"mg %s\r\n" % k, b"EN\r\n")


@S.test()
def md_C_compare(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    cas = cas_of(c, k)
    c.call(b"md %s C%d\r\n" % (k, cas + 1), b"EX\r\n")
    c.call(b"md %s C%d q\r\nmn\r\n" % (k, cas + 1), b"EX\r\nMN\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA 3\r\nabc\r\n")
    c.call(b"md %s C%d\r\n" % (k, cas), b"HD\r\n")
    c.call(b"md %s C%d\r\n" % (k, cas), b"NF\r\n")


@S.test()
def md_ignores_other_flags(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"md %s v f c s t P L\r\n" % k, b"HD\r\n")
    c.call(b"md %s v f c\r\n" % k, b"NF\r\n")


@S.test()
def md_T_without_I_deletes(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"md %s T30\r\n" % k, b"HD\r\n")
    c.call(b"mg %s v\r\n" % k, b"EN\r\n")


@S.test()
def md_errors(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    for flags in (b"x", b"k k", b"q q", b"C", b"Cabc", b"T", b"Tx", b"E",
                  b"I I"):
        c.call(b"md %s %s\r\n" % (k, flags), INV_OR_DUP, "md %r" % flags)
        c.expect_version()
    c.call(b"md\r\n", b"ERROR\r\n")
    mn_ok(c)
    c.call(b"mg %s v\r\n" % k, b"VA 3\r\nabc\r\n", "still there")


@S.test()
def md_I_on_missing_key_NF(t):
    c, k = t.conn(), t.key()
    c.call(b"md %s I\r\n" % k, b"NF\r\n")
    c.call(b"md %s I T30 q\r\nmn\r\n" % k, b"NF\r\nMN\r\n")
    c.call(b"mg %s\r\n" % k, b"EN\r\n")


# ma


@S.test()
def ma_miss_NF(t):
    c, k = t.conn(), t.key()
    c.call(b"ma %s\r\n" % k, b"NF\r\n")
    c.call(b"ma %s v t c\r\n" % k, b"NF\r\n")
    c.call(b"ma %s k O1 v\r\n" % k, b"NF k%s O1\r\n" % k)


@S.test()
def ma_increments_by_one(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"5")
    c.call(b"ma %s\r\n" % k, b"HD\r\n")
    c.call(b"ma %s v\r\n" % k, b"VA 1\r\n7\r\n")
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 1\r\n7\r\nEND\r\n" % k)


@S.test()
def ma_D_delta_and_modes(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"1")
    c.call(b"ma %s v D10\r\n" % k, b"VA 2\r\n11\r\n")
    c.call(b"ma %s v MD D3\r\n" % k, b"VA 1\r\n8\r\n")
    c.call(b"ma %s v M- D100\r\n" % k, b"VA 1\r\n0\r\n", "decr floors at 0")
    c.call(b"ma %s v M+ D5\r\n" % k, b"VA 1\r\n5\r\n")
    c.call(b"ma %s v MI\r\n" % k, b"VA 1\r\n6\r\n")
    c.call(b"ma %s v D0\r\n" % k, b"VA 1\r\n6\r\n")


@S.test()
def ma_wraps_at_64_bits(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"18446744073709551615")
    c.call(b"ma %s v\r\n" % k, b"VA 1\r\n0\r\n")
    c.call(b"ma %s v D18446744073709551615\r\n" % k,
           b"VA 20\r\n18446744073709551615\r\n")
    c.call(b"ma %s v D2\r\n" % k, b"VA 1\r\n1\r\n")


@S.test()
def ma_invalid_modes(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"1")
    for mode in (b"MX", b"Mi", b"Md", b"ME", b"MS"):
        c.call(b"ma %s v %s\r\n" % (k, mode), MA_MODE, "ma %r" % mode)
    for mode in (b"M", b"MII"):
        c.call(b"ma %s v %s\r\n" % (k, mode), INV_OR_DUP, "ma %r" % mode)
    mn_ok(c)
    c.call(b"mg %s v\r\n" % k, b"VA 1\r\n1\r\n")


@S.test()
def ma_N_creates_on_miss(t):
    c, k = t.conn(), t.key()
    c.call(b"ma %s N0\r\n" % k, b"HD\r\n")
    c.call(b"mg %s v t\r\n" % k, b"VA 1 t-1\r\n0\r\n", "seeded with 0")
    c.call(b"ma %s N0 v\r\n" % k, b"VA 1\r\n1\r\n", "a hit increments")


@S.test()
def ma_N_J_initial_value(t):
    c, k = t.conn(), t.key()
    c.call(b"ma %s N0 J42 v\r\n" % k, b"VA 2\r\n42\r\n", "J is the value")
    c.call(b"ma %s N0 J99 v\r\n" % k, b"VA 2\r\n43\r\n", "J only on a miss")
    k2 = t.key("decr")
    c.call(b"ma %s N0 J7 MD v\r\n" % k2, b"VA 1\r\n7\r\n",
           "no delta applied on creation")
    k3 = t.key("max")
    c.call(b"ma %s N0 J18446744073709551615 v\r\n" % k3,
           b"VA 20\r\n18446744073709551615\r\n")


@S.test()
def ma_J_without_N_misses(t):
    c, k = t.conn(), t.key()
    c.call(b"ma %s J5 v\r\n" % k, b"NF\r\n")
    c.call(b"mg %s\r\n" % k, b"EN\r\n")


@S.test()
def ma_N_ttl(t):
    c, k = t.conn(), t.key()
    c.send(b"ma %s N30 t v\r\n" % k)
    ttl_in(expect_line(c, rb"VA 1 t(\d+)"), 1, 28, 30)
    c.expect(b"0\r\n")
    c.send(b"mg %s t\r\n" % k)
    ttl_in(expect_line(c, rb"HD t(\d+)"), 1, 28, 30)


@S.test()
def ma_flags_in_request_order(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"5")
    c.send(b"ma %s t c v k O1\r\n" % k)
    m = expect_line(c, rb"VA 1 t-1 c(\d+) k%s O1" % re.escape(k))
    c.expect(b"6\r\n")
    cas = int(m.group(1))
    c.call(b"mg %s c\r\n" % k, b"HD c%d\r\n" % cas)
    c.send(b"ma %s O2 k c\r\n" % k)
    cas2 = int(expect_line(c, rb"HD O2 k%s c(\d+)" % re.escape(k)).group(1))
    t.check(cas2 > cas, "CAS rises: %d then %d" % (cas, cas2))


@S.test()
def ma_T_and_t_order(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"5", b"T100")
    c.send(b"ma %s t T30 v\r\n" % k)
    ttl_in(expect_line(c, rb"VA 1 t(\d+)"), 1, 98, 100, "t before T")
    c.expect(b"6\r\n")
    c.send(b"ma %s t\r\n" % k)
    ttl_in(expect_line(c, rb"HD t(\d+)"), 1, 28, 30, "after T30")
    c.send(b"ma %s T60 t\r\n" % k)
    ttl_in(expect_line(c, rb"HD t(\d+)"), 1, 58, 60, "t after T")
    c.call(b"ma %s T0 t v\r\n" % k, b"VA 1 t-1\r\n9\r\n")
    c.call(b"mg %s t\r\n" % k, b"HD t-1\r\n")


@S.test()
def ma_C_compare(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"5")
    cas = cas_of(c, k)
    c.call(b"ma %s C%d v\r\n" % (k, cas + 1), b"EX\r\n")
    c.call(b"ma %s C%d q\r\nmn\r\n" % (k, cas + 1), b"EX\r\nMN\r\n")
    c.send(b"ma %s C%d v c\r\n" % (k, cas))
    cas2 = int(expect_line(c, rb"VA 1 c(\d+)").group(1))
    c.expect(b"6\r\n")
    t.check(cas2 > cas, "ma bumps CAS")
    c.call(b"ma %s C%d\r\n" % (k, cas), b"EX\r\n")


@S.test()
def ma_q(t):
    c, k = t.conn(), t.key()
    c.call(b"ma %s q\r\nmn\r\n" % k, b"NF\r\nMN\r\n", "NF is sent")
    c.call(b"ma %s N0 q\r\nmn\r\n" % k, b"HD\r\nMN\r\n",
           "creation answers HD even with q")
    c.call(b"ma %s q\r\nmn\r\n" % k, b"MN\r\n", "a hit is silent")
    c.call(b"ma %s q v\r\nmn\r\n" % k, b"MN\r\n", "even with v")
    c.call(b"mg %s v\r\n" % k, b"VA 1\r\n2\r\n")
    k2 = t.key("v")
    c.call(b"ma %s N0 q v O1 k\r\nmn\r\n" % k2,
           b"VA 1 O1 k%s\r\n0\r\nMN\r\n" % k2)


@S.test()
def ma_non_numeric_value(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"ab")
    c.call(b"ma %s v\r\n" % k, NON_NUMERIC)
    c.call(b"ma %s q\r\n" % k, NON_NUMERIC, "errors are sent with q")
    mn_ok(c)
    c.call(b"mg %s v\r\n" % k, b"VA 2\r\nab\r\n")


@S.test()
def ma_bad_tokens(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"5")
    for flags in (b"D", b"Dx", b"D-1", b"D18446744073709551616", b"N",
                  b"Nx", b"J", b"Jx", b"T", b"Tx", b"C", b"Cx", b"zz",
                  b"v v", b"D1 D2", b"E", b"x", b"S1", b"R"):
        c.call(b"ma %s %s\r\n" % (k, flags), INV_OR_DUP, "ma %r" % flags)
        c.expect_version()
    c.call(b"ma\r\n", b"ERROR\r\n")
    mn_ok(c)
    c.call(b"mg %s v\r\n" % k, b"VA 1\r\n5\r\n", "unchanged")


@S.test()
def ma_and_classic_incr_share_value_and_cas(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 0 0 1\r\n9\r\n" % k, b"STORED\r\n")
    c.call(b"incr %s 1\r\n" % k, b"10\r\n")
    c.send(b"ma %s v c\r\n" % k)
    cas = int(expect_line(c, rb"VA 2 c(\d+)").group(1))
    c.expect(b"11\r\n")
    t.eq(c.gets(k), (0, b"11", cas), "gets after ma")
    c.call(b"decr %s 20\r\n" % k, b"0\r\n")
    c.call(b"ma %s v MD\r\n" % k, b"VA 1\r\n0\r\n")


# me


@S.test()
def me_hit(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    cas = cas_of(c, k)
    c.send(b"me %s\r\n" % k)
    expect_line(c, rb"ME %s exp=-1 la=\d+ cas=%d fetch=yes( .*)?"
                % (re.escape(k), cas))


@S.test()
def me_does_not_fetch(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc", b"T100")
    c.send(b"me %s\r\n" % k)
    # memcached 1.6.18 prints exp as (now - expiry time): negative.
    m = expect_line(c, rb"ME %s exp=-(\d+) la=\d+ cas=\d+ fetch=no( .*)?"
                    % re.escape(k))
    ttl_in(m, 1, 98, 100, "-exp")
    c.call(b"mg %s h\r\n" % k, b"HD h0\r\n", "me is not a fetch")


@S.test()
def me_miss_and_errors(t):
    c, k = t.conn(), t.key()
    c.call(b"me %s\r\n" % k, b"EN\r\n")
    c.call(b"me\r\n", BAD_FORMAT)
    c.call(b"me %s b c\r\n" % k, BAD_FORMAT, "too many tokens")
    c.call(b"me !!!! b\r\n", BAD_FORMAT, "bad base64")
    mn_ok(c)


@S.test()
def me_base64_key(t):
    c, k = t.conn(), t.key()
    raw = k + b"\x00\x01"
    ms(c, b64(raw), b"x", b"b")
    c.send(b"me %s b\r\n" % b64(raw))
    expect_line(c, rb"ME %s exp=-1 la=\d+ cas=\d+ fetch=no( .*)?"
                % re.escape(b64(raw)))
    c.call(b"me %s\r\n" % b64(raw), b"EN\r\n", "without b: another key")


# base64 keys


@S.test()
def b_key_fetched_raw_with_classic_get(t):
    c, k = t.conn(), t.key()
    ms(c, b64(k), b"hi", b"b F7")
    c.call(b"get %s\r\n" % k, b"VALUE %s 7 2\r\nhi\r\nEND\r\n" % k)
    c.call(b"mg %s v f\r\n" % k, b"VA 2 f7\r\nhi\r\n")


@S.test()
def classic_key_fetched_with_b(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 3 0 1\r\nx\r\n" % k, b"STORED\r\n")
    c.call(b"mg %s b v f\r\n" % b64(k), b"VA 1 f3\r\nx\r\n")
    # The key of an item stored without b comes back raw, without b.
    c.call(b"mg %s b k\r\n" % b64(k), b"HD k%s\r\n" % k)
    c.call(b"md %s b\r\n" % b64(k), b"HD\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def b_k_returns_base64_key(t):
    c, k = t.conn(), t.key()
    e = b64(k)
    c.call(b"ms %s 2 b k O9\r\nhi\r\n" % e, b"HD k%s b O9\r\n" % e)
    c.call(b"mg %s b k v\r\n" % e, b"VA 2 k%s b\r\nhi\r\n" % e)
    c.call(b"mg %s v k b f\r\n" % e, b"VA 2 k%s b f0\r\nhi\r\n" % e)
    # An item stored with b answers k in base64 even to an mg by raw key.
    c.call(b"mg %s k v\r\n" % k, b"VA 2 k%s b\r\nhi\r\n" % e)


@S.test()
def b_key_with_space_and_control_bytes(t):
    c, k = t.conn(), t.key()
    raw = k + b" a\r\n\x00\x01\xff"
    e = b64(raw)
    ms(c, e, b"bin", b"b")
    c.call(b"mg %s b v k\r\n" % e, b"VA 3 k%s b\r\nbin\r\n" % e)
    c.call(b"mg %s v\r\n" % k, b"EN\r\n", "only a prefix of the raw key")
    c.call(b"ma %s b N0 v\r\n" % b64(raw + b"n"), b"VA 1\r\n0\r\n")
    c.call(b"ma %s b v\r\n" % b64(raw + b"n"), b"VA 1\r\n1\r\n")
    c.call(b"md %s b q\r\nmn\r\n" % e, b"MN\r\n")
    c.call(b"mg %s b v\r\n" % e, b"EN\r\n")


@S.test()
def b_key_distinct_from_its_encoding(t):
    c, k = t.conn(), t.key()
    e = b64(k)
    ms(c, e, b"raw-is-k", b"b")
    ms(c, e, b"raw-is-e")
    c.call(b"mg %s b v\r\n" % e, b"VA 8\r\nraw-is-k\r\n")
    c.call(b"mg %s v\r\n" % e, b"VA 8\r\nraw-is-e\r\n")


@S.test()
def b_invalid_base64(t):
    c = t.conn()
    for key in (b"!!!!", b"Zm9", b"Zm9vYg", b"a"):
        c.call(b"mg %s b v\r\n" % key, DECODE, "mg %r" % key)
        c.call(b"ms %s 1 b\r\nx\r\n" % key, DECODE, "ms %r" % key)
        c.call(b"md %s b\r\n" % key, INV_OR_DUP, "md %r" % key)
        c.call(b"ma %s b\r\n" % key, INV_OR_DUP, "ma %r" % key)
        mn_ok(c)
    c.call(b"mg Zm9vYg== b v\r\n", b"EN\r\n", "padded base64 is fine")


@S.test()
def b_key_too_long(t):
    c, k = t.conn(), t.key()
    # 186 bytes encode to 248 characters, 189 bytes to 252.
    ok = b64((k + b"x" * 186)[:186])
    long = b64((k + b"x" * 189)[:189])
    ms(c, ok, b"z", b"b")
    c.call(b"mg %s b k v\r\n" % ok, b"VA 1 k%s b\r\nz\r\n" % ok)
    c.call(b"mg %s b v\r\n" % long, BAD_FORMAT)
    c.call(b"ms %s 1 b\r\nz\r\n" % long, BAD_FORMAT + b"ERROR\r\n")
    c.call(b"md %s b\r\n" % long, BAD_FORMAT)
    mn_ok(c)


@S.test()
def b_miss_reflects_base64_key(t):
    c, k = t.conn(), t.key()
    e = b64(k)
    c.call(b"mg %s b k O1 v\r\n" % e, b"EN k%s b O1\r\n" % e)
    c.call(b"md %s b k O1\r\n" % e, b"NF k%s b O1\r\n" % e)
    c.call(b"ma %s b k O1\r\n" % e, b"NF k%s b O1\r\n" % e)
    c.call(b"ms %s 1 b k O1 ME\r\nx\r\n" % e, b"HD k%s b O1\r\n" % e)
    c.call(b"ms %s 1 b k O1 ME\r\nx\r\n" % e, b"NS k%s b O1\r\n" % e)


# quiet mode and pipelines


@S.test()
def mg_q_hit_sent_miss_silent(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s q v\r\nmn\r\n" % k, b"VA 3\r\nabc\r\nMN\r\n")
    c.call(b"mg %s q k O1\r\nmn\r\n" % k, b"HD k%s O1\r\nMN\r\n" % k)
    c.call(b"mg %s q v k O1\r\nmn\r\n" % t.key("miss"), b"MN\r\n")


@S.test()
def ms_q_success_silent_failure_sent(t):
    c, k = t.conn(), t.key()
    c.call(b"ms %s 1 q\r\na\r\nmn\r\n" % k, b"MN\r\n")
    c.call(b"ms %s 1 q ME\r\nb\r\nmn\r\n" % k, b"NS\r\nMN\r\n")
    c.call(b"ms %s 1 q C1 O7\r\nb\r\nmn\r\n" % k, b"EX O7\r\nMN\r\n")
    c.call(b"ms %s 1 q C1\r\nb\r\nmn\r\n" % t.key("x"), b"NF\r\nMN\r\n")
    c.call(b"ms %s 1 q MR\r\nb\r\nmn\r\n" % t.key("x"), b"NS\r\nMN\r\n")
    c.call(b"ms %s 1 q c k\r\nc\r\nmn\r\n" % k, b"MN\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA 1\r\nc\r\n")


@S.test()
def quiet_mg_pipeline_ended_by_mn(t):
    c = t.conn()
    keys = [t.key(str(i)) for i in range(10)]
    for i, k in enumerate(keys):
        if i % 3 == 0:
            ms(c, k, b"v%d" % i)
    req = b"".join(b"mg %s q v k O%d\r\n" % (k, i)
                   for i, k in enumerate(keys)) + b"mn\r\n"
    want = b"".join(b"VA %d k%s O%d\r\nv%d\r\n" % (len(b"v%d" % i), k, i, i)
                    for i, k in enumerate(keys) if i % 3 == 0) + b"MN\r\n"
    c.call(req, want)


def write_syscalls(pid):
    """The write system calls process pid made so far (/proc/<pid>/io).

    The kernel counts a write only after it has delivered the bytes, so a
    reply can reach the client before its write is counted (a server
    thread preempted in that gap). Reads until the count has held still
    for 50 ms, for at most 2 s.
    """
    def once():
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                if line.startswith("syscw:"):
                    return int(line.split()[1])
        raise Failure("no syscw in /proc/%d/io" % pid)
    last, deadline = once(), time.monotonic() + 2.0
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = once()
        if now == last:
            return now
        last = now
    return last


@S.test(only="tiercached", reason="counts tiercached's own write calls")
def quiet_pipeline_replies_leave_in_one_write(t):
    if "--debug-defer" in S.user_args:
        # Every call then completes later, as a disk read would, and a
        # connection runs its next request only once the one before has
        # completed (so that a pipeline's changes apply in order): one
        # write per reply there.
        t.skip("calls deferred (--debug-defer): one write per reply")
    # A private memory-only server: no journal, nothing else writing.
    srv = t.start_server(["--memory-only"])
    c = t.conn(srv)
    t.eq(c.stats().get("io_backend"), "none", "io_backend of a --memory-only "
         "server (no journal writing beside the replies)")
    keys = [t.key(str(i)) for i in range(100)]
    for i, k in enumerate(keys):
        if i % 2 == 0:
            ms(c, k, b"v%d" % i)
    mn_ok(c)
    req = b"".join(b"mg %s q v O%d\r\n" % (k, i)
                   for i, k in enumerate(keys)) + b"mn\r\n"
    want = b"".join(b"VA %d O%d\r\nv%d\r\n" % (len(b"v%d" % i), i, i)
                    for i, k in enumerate(keys) if i % 2 == 0) + b"MN\r\n"
    before = write_syscalls(srv.pid)
    c.call(req, want)  # one send: the server reads it whole
    after = write_syscalls(srv.pid)
    t.check(after - before == 1, "the 50 replies and MN of one quiet batch "
            "left in %d write calls, not 1" % (after - before))


@S.test()
def quiet_ms_md_ma_pipeline(t):
    c = t.conn()
    a, b, n = t.key("a"), t.key("b"), t.key("n")
    req = (b"ms %s 1 q\r\n1\r\n" % a +
           b"ms %s 1 q\r\n2\r\n" % b +
           b"ms %s 1 q ME O1\r\n3\r\n" % a +      # NS
           b"ma %s q N0 J10\r\n" % n +            # HD (creation)
           b"ma %s q D5\r\n" % n +                # silent
           b"ma %s q\r\n" % t.key("none") +       # NF
           b"md %s q\r\n" % b +                   # silent
           b"md %s q O2\r\n" % b +                # NF
           b"mg %s q\r\n" % b +                   # silent miss
           b"mg %s q v\r\n" % n +                 # VA
           b"mn\r\n")
    c.call(req, b"NS O1\r\nHD\r\nNF\r\nNF O2\r\nVA 2\r\n15\r\nMN\r\n")
    c.call(b"mg %s v\r\n" % a, b"VA 1\r\n1\r\n")


@S.test()
def mixed_classic_and_meta_pipeline(t):
    c = t.conn()
    a, b = t.key("a"), t.key("b")
    req = (b"set %s 5 0 3\r\nabc\r\n" % a +
           b"mg %s v f\r\n" % a +
           b"ms %s 2 F6 q\r\nxy\r\n" % b +
           b"get %s %s\r\n" % (a, b) +
           b"mg %s q v\r\n" % t.key("miss") +
           b"md %s\r\n" % a +
           b"delete %s\r\n" % a +
           b"mn\r\n" +
           b"incr %s 1\r\n" % b +
           b"ma %s q\r\n" % b +
           b"mg %s s k\r\n" % b +
           b"version\r\n")
    want = (b"STORED\r\n" +
            b"VA 3 f5\r\nabc\r\n" +
            b"VALUE %s 5 3\r\nabc\r\nVALUE %s 6 2\r\nxy\r\nEND\r\n" % (a, b) +
            b"HD\r\n" +
            b"NOT_FOUND\r\n" +
            b"MN\r\n" +
            NON_NUMERIC +
            NON_NUMERIC +
            b"HD s2 k%s\r\n" % b)
    c.send(req)
    c.expect(want)
    c.expect(c.version_reply)


@S.test()
def errors_in_a_pipeline_keep_order(t):
    c, k = t.conn(), t.key()
    req = (b"ms %s 1\r\na\r\n" % k +
           b"mg %s zz\r\n" % k +
           b"mg %s v\r\n" % k +
           b"ms %s 1 Mx\r\nb\r\n" % k +
           b"ma %s\r\n" % k +
           b"mg %s v v\r\n" % k +
           b"md %s q\r\n" % k +
           b"mg %s v q\r\n" % k +
           b"mn\r\n")
    c.call(req, b"HD\r\n" + INVALID + b"VA 1\r\na\r\n" + MS_MODE +
           NON_NUMERIC + DUPLICATE + b"MN\r\n")


@S.test()
def pipeline_split_across_sends(t):
    c, k = t.conn(), t.key()
    req = b"ms %s 5 T0 F1 c\r\nhello\r\nmg %s v f\r\nmn\r\n" % (k, k)
    for i in range(len(req)):
        c.send(req[i:i + 1])
    cas = int(expect_line(c, rb"HD c(\d+)").group(1))
    t.check(cas > 0, "cas")
    c.expect(b"VA 5 f1\r\nhello\r\nMN\r\n")


@S.test()
def many_quiet_gets_one_send(t):
    c = t.conn()
    n = 500
    req = b"".join(b"ms %s 3 q\r\n%03d\r\n" % (t.key(str(i)), i)
                   for i in range(0, n, 2))
    c.call(req + b"mn\r\n", b"MN\r\n")
    req = b"".join(b"mg %s q v O%d\r\n" % (t.key(str(i)), i)
                   for i in range(n)) + b"mn\r\n"
    want = b"".join(b"VA 3 O%d\r\n%03d\r\n" % (i, i)
                    for i in range(0, n, 2)) + b"MN\r\n"
    c.call(req, want)


# long lines


@S.test()
def meta_line_without_newline_over_2048_closes(t):
    c, c2 = t.conn(), t.conn()
    c.send(b"mg %s v P" % t.key() + b"x" * 2100)
    c.expect_closed(b"")
    k = t.key("2048")
    line = b"mg %s v P" % k
    line += b"x" * (2048 - len(line))
    c2.send(line)
    c2.expect_quiet(0.3, "2048 bytes without a newline")
    c2.call(b"\r\nmn\r\n", b"EN\r\nMN\r\n")


@S.test()
def meta_long_line_with_newline(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s v P%s\r\nmn\r\n" % (k, b"x" * 4000),
           b"VA 3\r\nabc\r\nMN\r\n")


# TTL and expiry


@S.test()
def ms_T_item_expires(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc", b"T2")
    c.call(b"mg %s v\r\n" % k, b"VA 3\r\nabc\r\n")
    yield 3.5
    c.call(b"mg %s v\r\n" % k, b"EN\r\n")
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def mg_T_extends_life(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc", b"T2")
    c.call(b"mg %s T100\r\n" % k, b"HD\r\n")
    yield 3.5
    c.call(b"mg %s v\r\n" % k, b"VA 3\r\nabc\r\n")


@S.test()
def ma_T_shortens_life(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"1")
    c.call(b"ma %s T2 v\r\n" % k, b"VA 1\r\n2\r\n")
    yield 3.5
    c.call(b"ma %s v\r\n" % k, b"NF\r\n")


@S.test()
def md_I_T_stale_item_expires(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"md %s I T2\r\n" % k, b"HD\r\n")
    c.send(b"mg %s t v\r\n" % k)
    ttl_in(expect_line(c, rb"VA 3 t(\d+) X W"), 1, 0, 2)
    c.expect(b"abc\r\n")
    yield 3.5
    c.call(b"mg %s v\r\n" % k, b"EN\r\n")


@S.test()
def mg_N_stub_expires(t):
    c, k = t.conn(), t.key()
    c.call(b"mg %s N2 v\r\n" % k, b"VA 0 W\r\n\r\n")
    yield 3.5
    c.call(b"mg %s N30 v\r\n" % k, b"VA 0 W\r\n\r\n",
           "after the stub expired, a new winner")


# stale / win semantics


@S.test()
def mg_N_on_miss_W_then_Z(t):
    c, k = t.conn(), t.key()
    c.send(b"mg %s N30 v c t\r\n" % k)
    m = expect_line(c, rb"VA 0 c(\d+) t(\d+) W")
    ttl_in(m, 2, 28, 30)
    c.expect(b"\r\n")
    cas = int(m.group(1))
    c.send(b"mg %s N30 v c\r\n" % k)
    expect_line(c, rb"VA 0 c%d Z" % cas)
    c.expect(b"\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA 0 Z\r\n\r\n", "Z even without N")
    c.call(b"mg %s N30 s f\r\n" % k, b"HD s0 f0 Z\r\n")
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 0\r\n\r\nEND\r\n" % k)


@S.test()
def mg_N_without_v_and_with_q(t):
    c, k, k2 = t.conn(), t.key("a"), t.key("b")
    c.call(b"mg %s N30\r\n" % k, b"HD W\r\n")
    c.call(b"mg %s N30 q\r\n" % k, b"HD Z\r\n")
    c.call(b"mg %s N30 q k\r\nmn\r\n" % k, b"HD k%s Z\r\nMN\r\n" % k)
    c.call(b"mg %s N30 q\r\nmn\r\n" % k2, b"HD W\r\nMN\r\n",
           "a created stub is answered even with q")


@S.test()
def winner_ms_clears_win_flags(t):
    c, k = t.conn(), t.key()
    c.call(b"mg %s N30 v\r\n" % k, b"VA 0 W\r\n\r\n")
    c.call(b"mg %s N30 v\r\n" % k, b"VA 0 Z\r\n\r\n")
    ms(c, k, b"new")
    c.call(b"mg %s N30 v t\r\n" % k, b"VA 3 t-1\r\nnew\r\n")
    c.call(b"mg %s N30 v\r\n" % k, b"VA 3\r\nnew\r\n")


@S.test()
def mg_N_on_hit_no_flags(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"mg %s N30 v\r\n" % k, b"VA 3\r\nabc\r\n")
    c.call(b"mg %s R30 N30 v t\r\n" % k, b"VA 3 t-1\r\nabc\r\n",
           "no expiry: R never wins")


@S.test()
def mg_R_wins_once_when_ttl_below_token(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"x", b"T100")
    c.send(b"mg %s R30 v t\r\n" % k)
    ttl_in(expect_line(c, rb"VA 1 t(\d+)"), 1, 98, 100, "TTL above R")
    c.expect(b"x\r\n")
    c.send(b"mg %s R200 v t\r\n" % k)
    ttl_in(expect_line(c, rb"VA 1 t(\d+) W"), 1, 98, 100, "winner")
    c.expect(b"x\r\n")
    c.send(b"mg %s R200 v t\r\n" % k)
    ttl_in(expect_line(c, rb"VA 1 t(\d+) Z"), 1, 98, 100, "second")
    c.expect(b"x\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA 1 Z\r\nx\r\n", "Z without R")
    ms(c, k, b"y", b"T100")
    c.call(b"mg %s R200 v\r\n" % k, b"VA 1 W\r\ny\r\n",
           "a new store: a new winner")


@S.test()
def md_I_marks_stale(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    cas = cas_of(c, k)
    c.call(b"md %s I\r\n" % k, b"HD\r\n")
    c.send(b"mg %s v c t\r\n" % k)
    cas2 = int(expect_line(c, rb"VA 3 c(\d+) t-1 X W").group(1))
    c.expect(b"abc\r\n")
    t.check(cas2 > cas, "md I bumps the CAS: %d then %d" % (cas, cas2))
    c.call(b"mg %s v c\r\n" % k, b"VA 3 c%d Z X\r\nabc\r\n" % cas2)
    c.call(b"mg %s\r\n" % k, b"HD Z X\r\n")
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 3\r\nabc\r\nEND\r\n" % k,
           "classic get still sees the stale value")


@S.test()
def md_I_again_hands_out_a_new_win(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    c.call(b"md %s I\r\n" % k, b"HD\r\n")
    c.call(b"mg %s\r\n" % k, b"HD X W\r\n")
    c.call(b"mg %s\r\n" % k, b"HD Z X\r\n")
    c.call(b"md %s I T30 k O1\r\n" % k, b"HD k%s O1\r\n" % k)
    c.send(b"mg %s t v\r\n" % k)
    ttl_in(expect_line(c, rb"VA 3 t(\d+) X W"), 1, 28, 30)
    c.expect(b"abc\r\n")


@S.test()
def md_I_q_and_C(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc")
    cas = cas_of(c, k)
    c.call(b"md %s I C%d\r\n" % (k, cas + 1), b"EX\r\n")
    c.call(b"mg %s\r\n" % k, b"HD\r\n", "not stale after EX")
    c.call(b"md %s I C%d q\r\nmn\r\n" % (k, cas), b"MN\r\n")
    c.call(b"mg %s\r\n" % k, b"HD X W\r\n")


@S.test()
def ms_after_md_I_clears_stale(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"old")
    c.call(b"md %s I\r\n" % k, b"HD\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA 3 X W\r\nold\r\n")
    ms(c, k, b"new")
    c.call(b"mg %s v\r\n" % k, b"VA 3\r\nnew\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA 3\r\nnew\r\n")


@S.test()
def ms_C_I_on_stale_item(t):
    c, k = t.conn(), t.key()
    c.send(b"ms %s 3 c T100\r\nold\r\n" % k)
    c0 = int(expect_line(c, rb"HD c(\d+)").group(1))
    c.call(b"md %s I\r\n" % k, b"HD\r\n")
    c.send(b"mg %s c v\r\n" % k)
    c1 = int(expect_line(c, rb"VA 3 c(\d+) X W").group(1))
    c.expect(b"old\r\n")
    # An older CAS with I: stored, still stale, the W already handed out,
    # the TTL kept (T is ignored).
    c.send(b"ms %s 3 C%d I c T0\r\nnew\r\n" % (k, c0))
    c2 = int(expect_line(c, rb"HD c(\d+)").group(1))
    t.check(c2 > c1, "new CAS")
    c.send(b"mg %s c t v\r\n" % k)
    ttl_in(expect_line(c, rb"VA 3 c%d t(\d+) Z X" % c2), 1, 98, 100)
    c.expect(b"new\r\n")
    # Without I, an older CAS is EX; a CAS above the item's too.
    c.call(b"ms %s 3 C%d c\r\nnw2\r\n" % (k, c0), b"EX c0\r\n")
    c.call(b"ms %s 3 C%d I c\r\nnw3\r\n" % (k, c2 + 5), b"EX c0\r\n")
    # The current CAS with I: a normal store, no longer stale.
    c.send(b"ms %s 3 C%d I c\r\nnw4\r\n" % (k, c2))
    c3 = int(expect_line(c, rb"HD c(\d+)").group(1))
    c.call(b"mg %s c v t\r\n" % k, b"VA 3 c%d t-1\r\nnw4\r\n" % c3)


@S.test()
def ms_C_I_older_cas_on_fresh_item_stores_stale(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"x")
    cas = cas_of(c, k)
    c.call(b"ms %s 1 C%d I\r\ny\r\n" % (k, cas - 1), b"HD\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA 1 X W\r\ny\r\n")
    c.call(b"ms %s 1 C%d I q\r\nz\r\nmn\r\n" % (k, cas - 1), b"MN\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA 1 Z X\r\nz\r\n")


@S.test()
def win_flags_come_after_requested_flags(t):
    c, k = t.conn(), t.key()
    ms(c, k, b"abc", b"F2")
    c.call(b"md %s I\r\n" % k, b"HD\r\n")
    c.call(b"mg %s k f s O1 v\r\n" % k, b"VA 3 k%s f2 s3 O1 X W\r\nabc\r\n"
           % k)
    c.call(b"mg %s O2 s\r\n" % k, b"HD O2 s3 Z X\r\n")


# stampede: 50 clients at once

CLIENTS = 50


def all_at_once(t, conns, request):
    """Sends request on every connection at the same moment (threads and a
    barrier) and returns the replies as (line, data), in connection order.
    Bounded: every read has the harness timeout."""
    barrier = threading.Barrier(len(conns), timeout=10)
    out = [None] * len(conns)

    def worker(i, c):
        try:
            barrier.wait()
            c.send(request)
            out[i] = read_meta(c, "client %d" % i)
        except Exception as e:  # noqa: BLE001 - reported below
            out[i] = e

    threads = [threading.Thread(target=worker, args=(i, c), daemon=True)
               for i, c in enumerate(conns)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    for i, r in enumerate(out):
        if r is None or isinstance(r, Exception):
            raise Failure("client %d: %r" % (i, r))
    return out


def tally(replies):
    counts = {}
    for line, data in replies:
        counts[(line, data)] = counts.get((line, data), 0) + 1
    return counts


@S.test()
def stampede_missing_key_one_winner(t):
    conns = [t.conn() for _ in range(CLIENTS)]
    k = t.key()
    got = tally(all_at_once(t, conns, b"mg %s N30 v\r\n" % k))
    t.eq(got, {(b"VA 0 W", b""): 1, (b"VA 0 Z", b""): CLIENTS - 1},
         "replies of %d clients" % CLIENTS)


@S.test()
def stampede_ttl_below_R_one_winner(t):
    conns = [t.conn() for _ in range(CLIENTS)]
    k = t.key()
    ms(conns[0], k, b"live", b"T20")
    got = tally(all_at_once(t, conns, b"mg %s R30 v\r\n" % k))
    t.eq(got, {(b"VA 4 W", b"live"): 1, (b"VA 4 Z", b"live"): CLIENTS - 1},
         "replies of %d clients" % CLIENTS)


@S.test()
def stampede_stale_item_one_winner_then_new_value(t):
    conns = [t.conn() for _ in range(CLIENTS)]
    k = t.key()
    ms(conns[0], k, b"stale")
    conns[0].call(b"md %s I\r\n" % k, b"HD\r\n")
    replies = all_at_once(t, conns, b"mg %s v\r\n" % k)
    t.eq(tally(replies), {(b"VA 5 X W", b"stale"): 1,
                          (b"VA 5 Z X", b"stale"): CLIENTS - 1},
         "replies of %d clients" % CLIENTS)
    winner = [i for i, r in enumerate(replies) if r[0].endswith(b"W")][0]
    ms(conns[winner], k, b"fresh")
    got = tally(all_at_once(t, conns, b"mg %s v N30 R30\r\n" % k))
    t.eq(got, {(b"VA 5", b"fresh"): CLIENTS},
         "after the winner's ms, all see the new value")


# tiercached only: items that live only on disk, restarts


def data_dir(t):
    return temp_data_dir(t, "tiercache-meta-")


def server_on(t, d, *extra):
    return server_on_dir(t, S, d, *extra)



def wait_indexed(t, c, seconds=30):
    """Waits until every change so far is in the index: until then an item
    is pinned in memory, and when the memory tier wants its room it keeps
    it in its main queue, where it may outlive any filler."""
    deadline = time.monotonic() + seconds
    while True:
        st = c.stats()
        if st["index_lag_records"] == "0" and st["journal_lag_bytes"] == "0":
            return
        if time.monotonic() > deadline:
            t.check(False, "the index caught up within %d s (lag: %s "
                    "records, %s journal bytes)"
                    % (seconds, st["index_lag_records"],
                       st["journal_lag_bytes"]))
            return
        time.sleep(0.01)


def push_out_of_memory(t, c, mib=64):
    """Once the index has every earlier change, stores mib MiB of
    incompressible filler so that earlier items leave the (-m 8) memory
    tier.

    Eight times the tier: items stored while it filled leave its small
    FIFO in no particular order among themselves (engine/evict.c), and
    each store evicts about one item, from the 64 shards in turn. With
    24 MiB (about 4.5 evictions per shard) a shard that held more filling
    items than it was asked to give kept one of the test's items, about
    one run in 40 (seen with a temporary log of the shard's evictions)."""
    wait_indexed(t, c)
    chunk = 60000
    for i in range(mib * MIB // chunk):
        data = os.urandom(chunk)
        c.send(b"ms %s %d q\r\n%s\r\n" % (t.key("fill%d" % i), chunk, data))
        if i % 50 == 49:
            c.call(b"mn\r\n", b"MN\r\n")
    c.call(b"mn\r\n", b"MN\r\n")


# exclusive: it sends 64 MiB (seconds under ASan), which would hold up the
# timed tests suspended meanwhile.
@S.test(exclusive=True, **ONLY_DISK)
def meta_commands_on_items_only_on_disk(t):
    d = data_dir(t)
    srv = server_on(t, d, "-m", "8")
    c = t.conn(srv)
    probe = t.key("probe")
    ms(c, probe, b"p")
    val = {}
    cas = {}
    for name in ("get", "set", "del", "stale", "num", "add", "app"):
        k = t.key(name)
        v = b"12" if name == "num" else (b"%s-value-" % name.encode()) * 40
        c.send(b"ms %s %d F9 c\r\n%s\r\n" % (k, len(v), v))
        cas[name] = int(expect_line(c, rb"HD c(\d+)").group(1))
        val[name] = v
    push_out_of_memory(t, c)
    # The probe, stored just before the items, must come from disk: so do
    # the items (a classic get proves it, the mg below are what is tested).
    st = c.stats()
    before = int(st["get_disk_hits"])
    c.call(b"get %s\r\n" % probe, b"VALUE %s 0 1\r\np\r\nEND\r\n" % probe)
    after = int(c.stats()["get_disk_hits"])
    t.check(after > before, "the probe item was read from disk "
            "(get_disk_hits %d -> %d; before the get: %s)"
            % (before, after, ", ".join(
                "%s %s" % (n, st.get(n)) for n in (
                    "bytes", "limit_maxbytes", "curr_items", "evictions",
                    "disk_items", "index_lag_records", "journal_lag_bytes",
                    "journal_waits"))))
    k = t.key("get")
    c.call(b"mg %s v f c s k\r\n" % k,
           b"VA %d f9 c%d s%d k%s\r\n%s\r\n"
           % (len(val["get"]), cas["get"], len(val["get"]), k, val["get"]))
    now = int(c.stats()["get_disk_hits"])
    t.check(now == after + 1, "an mg of an item only on disk counts as a "
            "disk hit, once (get_disk_hits %d -> %d)" % (after, now))
    # ms with the CAS of an item on disk.
    k = t.key("set")
    c.call(b"ms %s 3 C%d\r\nnew\r\n" % (k, cas["set"] + 1), b"EX\r\n")
    c.call(b"ms %s 3 C%d\r\nnew\r\n" % (k, cas["set"]), b"HD\r\n")
    c.call(b"mg %s v f\r\n" % k, b"VA 3 f0\r\nnew\r\n")
    # md of an item on disk.
    k = t.key("del")
    c.call(b"md %s\r\n" % k, b"HD\r\n")
    c.call(b"mg %s v\r\n" % k, b"EN\r\n")
    c.call(b"mg %s N30 v\r\n" % k, b"VA 0 W\r\n\r\n")
    # md I of an item on disk.
    k = t.key("stale")
    c.call(b"md %s I\r\n" % k, b"HD\r\n")
    c.send(b"mg %s v c\r\n" % k)
    m = expect_line(c, rb"VA %d c(\d+) X W" % len(val["stale"]))
    c.expect(val["stale"] + b"\r\n")
    t.check(int(m.group(1)) > cas["stale"], "md I bumped the CAS")
    c.call(b"mg %s\r\n" % k, b"HD Z X\r\n")
    # ma of an item on disk.
    k = t.key("num")
    c.call(b"ma %s v D30\r\n" % k, b"VA 2\r\n42\r\n")
    c.call(b"mg %s v f\r\n" % k, b"VA 2 f9\r\n42\r\n")
    # ms modes on an item on disk.
    k = t.key("add")
    c.call(b"ms %s 1 ME\r\nx\r\n" % k, b"NS\r\n")
    k = t.key("app")
    c.call(b"ms %s 1 MA\r\n!\r\n" % k, b"HD\r\n")
    c.call(b"mg %s v\r\n" % k, b"VA %d\r\n%s!\r\n" % (len(val["app"]) + 1,
                                                      val["app"]))
    stop_clean(t, srv)


@S.test(exclusive=True, **ONLY_DISK)  # 64 MiB, as above
def stampede_on_item_only_on_disk(t):
    d = data_dir(t)
    srv = server_on(t, d, "-m", "8")
    c = t.conn(srv)
    k = t.key()
    ms(c, k, b"cold")
    c.call(b"md %s I\r\n" % k, b"HD\r\n")
    push_out_of_memory(t, c)
    conns = [t.conn(srv) for _ in range(CLIENTS)]
    got = tally(all_at_once(t, conns, b"mg %s v\r\n" % k))
    t.eq(got, {(b"VA 4 X W", b"cold"): 1, (b"VA 4 Z X", b"cold"): CLIENTS - 1},
         "one winner among %d clients" % CLIENTS)
    k2 = t.key("miss")
    got = tally(all_at_once(t, conns, b"mg %s N30 v\r\n" % k2))
    t.eq(got, {(b"VA 0 W", b""): 1, (b"VA 0 Z", b""): CLIENTS - 1},
         "one winner for a missing key")
    stop_clean(t, srv)


@S.test(**ONLY_RESTART)
def stale_item_stays_stale_after_restart(t):
    d = data_dir(t)
    srv = server_on(t, d)
    c = t.conn(srv)
    k, k2, kb = t.key("stale"), t.key("plain"), b64(t.key("bin") + b"\x00 ")
    ms(c, k, b"old", b"F4 T1000")
    cas_before = cas_of(c, k)
    # Marked stale, and no mg since: the first mg after the restart wins.
    c.call(b"md %s I\r\n" % k, b"HD\r\n")
    ms(c, k2, b"fresh")
    cas_plain = cas_of(c, k2)
    ms(c, kb, b"bin", b"b")
    stop_clean(t, srv)

    srv = server_on(t, d)
    c = t.conn(srv)
    c.send(b"mg %s v f c t\r\n" % k)
    m = expect_line(c, rb"VA 3 f4 c(\d+) t(\d+) X W")
    c.expect(b"old\r\n")
    cas_stale = int(m.group(1))
    t.check(cas_stale > cas_before, "md I bumped the CAS (%d -> %d), and "
            "the restart kept it" % (cas_before, cas_stale))
    ttl_in(m, 2, 990, 1000)
    c.call(b"mg %s c\r\n" % k, b"HD c%d Z X\r\n" % cas_stale)
    c.call(b"mg %s v c\r\n" % k2, b"VA 5 c%d\r\nfresh\r\n" % cas_plain)
    c.call(b"mg %s b v k\r\n" % kb, b"VA 3 k%s b\r\nbin\r\n" % kb,
           "a base64 key keeps its b across a restart")
    # CAS values keep rising.
    c.send(b"ms %s 3 c\r\nnew\r\n" % k2)
    cas_new = int(expect_line(c, rb"HD c(\d+)").group(1))
    t.check(cas_new > max(cas_stale, cas_plain),
            "CAS after the restart %d above %d" % (cas_new,
                                                   max(cas_stale, cas_plain)))
    # The winner's store (current CAS, with I) clears the stale mark, and
    # that survives the next restart too.
    c.call(b"ms %s 3 C%d I\r\nnew\r\n" % (k, cas_stale), b"HD\r\n")
    stop_clean(t, srv)
    srv = server_on(t, d)
    c = t.conn(srv)
    c.call(b"mg %s v f\r\n" % k, b"VA 3 f0\r\nnew\r\n")
    stop_clean(t, srv)


@S.test(**ONLY_RESTART)
def sigterm_restart_keeps_ma_counter_and_cas_order(t):
    d = data_dir(t)
    srv = server_on(t, d)
    c = t.conn(srv)
    k = t.key()
    c.call(b"ma %s N0 J100 v\r\n" % k, b"VA 3\r\n100\r\n")
    c.send(b"ma %s v c\r\n" % k)
    cas = int(expect_line(c, rb"VA 3 c(\d+)").group(1))
    c.expect(b"101\r\n")
    srv.signal(signal.SIGTERM)
    t.eq(srv.wait(10), 0, "exit status on SIGTERM")
    srv = server_on(t, d)
    c = t.conn(srv)
    c.call(b"mg %s v c\r\n" % k, b"VA 3 c%d\r\n101\r\n" % cas)
    c.send(b"ma %s v c\r\n" % k)
    cas2 = int(expect_line(c, rb"VA 3 c(\d+)").group(1))
    c.expect(b"102\r\n")
    t.check(cas2 > cas, "CAS after the restart rises: %d -> %d" % (cas, cas2))
    stop_clean(t, srv)


if __name__ == "__main__":
    run(S)
