#!/usr/bin/env python3
"""Bad input: unknown commands, malformed command lines, over-long keys and
lines, bad data chunks. After every recoverable error the same connection
must still work; each test proves it with a version round trip.

Every expected reply was checked against memcached 1.6.18. Replies of
memcached 1.6.18 that may surprise (asserted unless noted):
- Missing arguments answer plain "ERROR", not a CLIENT_ERROR: "set k 0 0",
  "cas k 0 0 1" (no unique), "incr k", "touch k", "get", "gat",
  "delete", "verbosity". So does one token too many
  ("set k 0 0 1 noreply extra").
- Non-numeric or negative numbers in a storage command ("set k abc 0 5",
  "set k 0 abc 5", "set k 0 0 abc", "set k 0 0 -1", "cas k 0 0 1 -1")
  answer "CLIENT_ERROR bad command line format" and do not swallow the data
  block: its line is then parsed as a command ("hello" -> "ERROR").
- A key longer than 250 bytes answers "CLIENT_ERROR bad command line
  format" in every command; in a multi-key get, no VALUE is sent for the
  keys before it either. In set the data block is not swallowed.
- "touch k abc", "gat abc k" and "flush_all abc" answer "CLIENT_ERROR
  invalid exptime argument"; "verbosity abc" answers "CLIENT_ERROR bad
  command line format"; "stats nosuchthing" answers "ERROR".
- Bad data chunk: memcached reads exactly <bytes>+2 bytes; if the last two
  are not "\\r\\n" it answers "CLIENT_ERROR bad data chunk" and parses what
  follows as commands ("set k 0 0 1\\r\\nBXX\\r\\n" gives the error, then
  "ERROR" for the empty line). The old value of the key is kept.
- More than 2048 bytes without a newline (and not a get/gets line) make
  memcached close the connection without sending anything; 2048 bytes do
  not.
- "set k 0 0 4294967296" is read as length 0 (the length is truncated to
  32 bits), and a length near 2^31 makes memcached wait for the data: not
  tested.
- With "noreply" memcached also suppresses CLIENT_ERROR replies to a
  malformed line; protocol.txt says the server "may" send the error in that
  case, so that is not tested.
- memcached accepts control characters in keys ("set a\\x01b ..." is
  STORED); tiercached rejects bytes below 0x21 and 0x7f in keys with
  "CLIENT_ERROR bad command line format" (tiercached-only tests).
"""

from harness import Suite, run

S = Suite(__doc__)

BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument\r\n"
BAD_CHUNK = b"CLIENT_ERROR bad data chunk\r\n"
STORAGE = (b"set", b"add", b"replace", b"append", b"prepend")


def set_ok(c, key, data, flags=0):
    c.call(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(data), data),
           b"STORED\r\n")


@S.test()
def unknown_command_error(t):
    c = t.conn()
    for line in (b"foo", b"foo bar baz", b"Get x", b"GET x", b"VERSION",
                 b"sets x 0 0 1", b"getx", b"", b" "):
        c.call(line + b"\r\n", b"ERROR\r\n", "reply to %r" % line)
    c.expect_version()


@S.test()
def storage_command_missing_args_error(t):
    c, k = t.conn(), t.key()
    for cmd in STORAGE:
        for line in (b"%s %s 0 0" % (cmd, k), b"%s %s 0" % (cmd, k),
                     b"%s %s" % (cmd, k), cmd):
            c.call(line + b"\r\n", b"ERROR\r\n", "reply to %r" % line)
    c.call(b"set %s 0 0\r\nhello\r\n" % k, b"ERROR\r\nERROR\r\n",
           "set without length, then its data line")
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def storage_command_too_many_tokens_error(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 0 0 1 noreply extra\r\nx\r\n" % k, b"ERROR\r\nERROR\r\n")
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def storage_command_non_numeric_args_rejected(t):
    c, k = t.conn(), t.key()
    for cmd in STORAGE:
        for args in (b"abc 0 5", b"0 abc 5", b"0 0 abc", b"1x 0 5",
                     b"0 0x1 5", b"0 0 5x", b"1.5 0 5"):
            c.call(b"%s %s %s\r\nhello\r\n" % (cmd, k, args),
                   BAD_FORMAT + b"ERROR\r\n", "%s %s" % (cmd, args))
            c.expect_version()
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def storage_command_negative_length_rejected(t):
    c, k = t.conn(), t.key()
    for cmd in STORAGE:
        c.call(b"%s %s 0 0 -1\r\n" % (cmd, k), BAD_FORMAT)
        c.expect_version()
    c.call(b"set %s 0 0 -1\r\nhello\r\n" % k, BAD_FORMAT + b"ERROR\r\n")
    c.call(b"cas %s 0 0 -1 1\r\n" % k, BAD_FORMAT)
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def rejected_set_keeps_old_value(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"old")
    c.call(b"set %s 0 0 abc\r\nnew\r\n" % k, BAD_FORMAT + b"ERROR\r\n")
    c.call(b"set %s 0 0 -1\r\n" % k, BAD_FORMAT)
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 3\r\nold\r\nEND\r\n" % k)


@S.test()
def cas_missing_unique_error(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"old")
    c.call(b"cas %s 0 0 1\r\ny\r\n" % k, b"ERROR\r\nERROR\r\n")
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 3\r\nold\r\nEND\r\n" % k)


@S.test()
def cas_bad_unique_rejected(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"old")
    for unique in (b"abc", b"-1", b"18446744073709551616", b"1x"):
        c.call(b"cas %s 0 0 1 %s\r\ny\r\n" % (k, unique),
               BAD_FORMAT + b"ERROR\r\n", "cas unique %r" % unique)
        c.expect_version()
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 3\r\nold\r\nEND\r\n" % k)


@S.test()
def key_251_bytes_rejected_by_every_command(t):
    c = t.conn()
    long_key = (t.key() + b"k" * 251)[:251]
    ok_key = long_key[:250]
    checks = [b"%s %s 0 0 5\r\nhello\r\n" % (cmd, long_key)
              for cmd in STORAGE]
    for line, reply in [(x, BAD_FORMAT + b"ERROR\r\n") for x in checks] + [
            (b"cas %s 0 0 5 1\r\nhello\r\n" % long_key,
             BAD_FORMAT + b"ERROR\r\n"),
            (b"get %s\r\n" % long_key, BAD_FORMAT),
            (b"gets %s\r\n" % long_key, BAD_FORMAT),
            (b"gat 0 %s\r\n" % long_key, BAD_FORMAT),
            (b"gats 0 %s\r\n" % long_key, BAD_FORMAT),
            (b"delete %s\r\n" % long_key, BAD_FORMAT),
            (b"incr %s 1\r\n" % long_key, BAD_FORMAT),
            (b"decr %s 1\r\n" % long_key, BAD_FORMAT),
            (b"touch %s 0\r\n" % long_key, BAD_FORMAT)]:
        c.call(line, reply, "reply to %s" % line.split(b" ")[0].decode())
        c.expect_version()
    c.call(b"get %s\r\n" % ok_key, b"END\r\n")


@S.test()
def key_300_bytes_rejected(t):
    c = t.conn()
    long_key = t.key() + b"k" * 300
    c.call(b"get %s\r\n" % long_key, BAD_FORMAT)
    c.call(b"set %s 0 0 5\r\nhello\r\n" % long_key, BAD_FORMAT + b"ERROR\r\n")
    c.expect_version()


@S.test()
def get_with_one_long_key_sends_only_the_error(t):
    c, k = t.conn(), t.key("a")
    set_ok(c, k, b"A")
    long_key = t.key("b") + b"x" * 251
    c.call(b"get %s %s %s\r\n" % (k, long_key, k), BAD_FORMAT)
    c.call(b"gets %s %s\r\n" % (k, long_key), BAD_FORMAT)
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 1\r\nA\r\nEND\r\n" % k)


@S.test()
def bad_data_chunk_rejected(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 0 0 5\r\nhelloXX" % k, BAD_CHUNK)
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def bad_data_chunk_rest_parsed_as_command(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 0 0 1\r\nBXX\r\n" % k, BAD_CHUNK + b"ERROR\r\n")
    c.call(b"set %s 0 0 1\r\nxx\r\nversion\r\n" % k,
           BAD_CHUNK + b"ERROR\r\n" + c.version_reply)
    c.call(b"get %s\r\n" % k, b"END\r\n")


@S.test()
def bad_data_chunk_keeps_old_value(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"old")
    for cmd in STORAGE:
        c.call(b"%s %s 0 0 3\r\nnew\n\n" % (cmd, k), BAD_CHUNK, cmd.decode())
        c.expect_version()
    _, _, u = c.gets(k)
    c.call(b"cas %s 0 0 3 %d\r\nnewXX" % (k, u), BAD_CHUNK)
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 3\r\nold\r\nEND\r\n" % k)


@S.test()
def bad_data_chunk_split_across_sends(t):
    c, k = t.conn(), t.key()
    c.send(b"set %s 0 0 5\r\nhello\r" % k)
    c.expect_quiet(0.1)
    c.call(b"X\r\n", BAD_CHUNK + b"ERROR\r\n")
    c.expect_version()


@S.test()
def touch_bad_exptime_rejected(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    c.call(b"touch %s abc\r\n" % k, BAD_EXPTIME)
    c.call(b"touch %s 1x\r\n" % k, BAD_EXPTIME)
    c.call(b"touch %s\r\n" % k, b"ERROR\r\n")
    c.call(b"touch\r\n", b"ERROR\r\n")
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 1\r\nx\r\nEND\r\n" % k)


@S.test()
def gat_bad_exptime_rejected(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    c.call(b"gat abc %s\r\n" % k, BAD_EXPTIME)
    c.call(b"gats abc %s\r\n" % k, BAD_EXPTIME)
    c.call(b"gat\r\n", b"ERROR\r\n")
    c.call(b"gats\r\n", b"ERROR\r\n")
    c.expect_version()


@S.test()
def retrieval_and_delete_without_key_error(t):
    c = t.conn()
    for line in (b"get", b"gets", b"delete", b"incr", b"decr"):
        c.call(line + b"\r\n", b"ERROR\r\n", "reply to %r" % line)
    c.expect_version()


@S.test(exclusive=True)
def flush_all_bad_delay_rejected(t):
    c, k = t.conn(), t.key()
    set_ok(c, k, b"x")
    c.call(b"flush_all abc\r\n", BAD_EXPTIME)
    c.call(b"flush_all 1x\r\n", BAD_EXPTIME)
    c.expect_version()
    c.call(b"get %s\r\n" % k, b"VALUE %s 0 1\r\nx\r\nEND\r\n" % k)


@S.test()
def verbosity_bad_args(t):
    c = t.conn()
    c.call(b"verbosity\r\n", b"ERROR\r\n")
    c.call(b"verbosity abc\r\n", BAD_FORMAT)
    c.expect_version()


@S.test()
def stats_unknown_subcommand_error(t):
    c = t.conn()
    c.call(b"stats nosuchthing\r\n", b"ERROR\r\n")
    c.expect_version()


@S.test()
def line_of_2048_bytes_without_newline_kept_open(t):
    c = t.conn()
    c.send(b"x" * 2048)
    c.expect_quiet(0.3)
    c.call(b"\r\n", b"ERROR\r\n", "2048-byte junk line")
    c.expect_version()


@S.test()
def line_over_2048_bytes_without_newline_closes(t):
    c = t.conn()
    c.send(b"x" * 2049)
    c.expect_closed(b"", "2049 bytes without newline")
    c2 = t.conn()
    c2.send(b"set %s 0 0 1 " % t.key() + b"9" * 4000)
    c2.expect_closed(b"", "set line of 4000+ bytes without newline")
    t.conn().expect_version("a new connection after the closes")


@S.test(only="tiercached", reason="memcached accepts control characters "
        "in keys")
def key_with_control_character_rejected_by_storage_commands(t):
    c = t.conn()
    for ch in (0x00, 0x01, 0x09, 0x0b, 0x0d, 0x1f, 0x7f):
        k = t.key("a") + bytes([ch]) + b"b"
        for cmd in STORAGE:
            c.call(b"%s %s 0 0 1\r\nx\r\n" % (cmd, k),
                   BAD_FORMAT + b"ERROR\r\n", "%s, key byte 0x%02x"
                   % (cmd.decode(), ch))
        c.call(b"cas %s 0 0 1 1\r\nx\r\n" % k, BAD_FORMAT + b"ERROR\r\n",
               "cas, key byte 0x%02x" % ch)
        c.expect_version()


@S.test(only="tiercached", reason="memcached accepts control characters "
        "in keys")
def key_with_control_character_rejected_by_other_commands(t):
    c = t.conn()
    good = t.key("good")
    set_ok(c, good, b"g")
    for ch in (0x00, 0x01, 0x09, 0x0b, 0x0d, 0x1f, 0x7f):
        k = t.key("a") + bytes([ch]) + b"b"
        for line in (b"get %s" % k, b"get %s %s" % (good, k),
                     b"gets %s" % k, b"gat 0 %s" % k, b"gats 0 %s" % k,
                     b"delete %s" % k, b"incr %s 1" % k, b"decr %s 1" % k,
                     b"touch %s 0" % k):
            c.call(line + b"\r\n", BAD_FORMAT, "%r" % line)
        c.expect_version()


if __name__ == "__main__":
    run(S)
