#!/usr/bin/env python3
"""Pipelining: many requests per send, requests split across sends; replies
must come back complete and in request order.

Every expected reply was checked against memcached 1.6.18. Notes:
- memcached keeps reading a get/gets line of any length (it only closes
  the connection for other lines past 2048 bytes without a newline), so a
  get whose key list arrives in several sends works.
- memcached 1.6.18 bug: a get with a key over 250 bytes can discard the
  replies of earlier commands of the same pipeline that were not yet
  written ("version\r\nversion\r\nget <251 bytes>\r\n" answers only
  "CLIENT_ERROR bad command line format"; "get k\r\nversion\r\nget <251
  bytes>\r\n" loses the VERSION line). tiercached must keep them:
  pipelined_replies_kept_before_get_with_long_key is tiercached-only.
- A noreply command sends nothing, even in the middle of a pipeline; a
  malformed command in a pipeline answers its error in its place.
"""

import threading
import time

from harness import Suite, run

S = Suite(__doc__)


def value(key, flags, data):
    return b"VALUE %s %d %d\r\n%s\r\n" % (key, flags, len(data), data)


def hit(key, flags, data):
    return value(key, flags, data) + b"END\r\n"


@S.test()
def mixed_pipeline_in_one_send(t):
    c = t.conn()
    a, b, n, m = t.key("a"), t.key("b"), t.key("n"), t.key("missing")
    req = (b"set %s 1 0 3\r\none\r\n" % a
           + b"set %s 2 0 3 noreply\r\ntwo\r\n" % b
           + b"get %s %s %s\r\n" % (a, m, b)
           + b"set %s 0 0 2\r\n10\r\n" % n
           + b"incr %s 5\r\n" % n
           + b"incr %s 5 noreply\r\n" % n
           + b"decr %s 1\r\n" % n
           + b"add %s 0 0 1\r\nx\r\n" % a
           + b"append %s 0 0 1 noreply\r\n!\r\n" % a
           + b"delete %s\r\n" % b
           + b"delete %s noreply\r\n" % m
           + b"delete %s\r\n" % m
           + b"touch %s 100\r\n" % a
           + b"get %s %s\r\n" % (a, b)
           + b"gets %s\r\n" % m
           + b"incr %s 1\r\n" % m)
    c.call(req,
           b"STORED\r\n"
           + value(a, 1, b"one") + value(b, 2, b"two") + b"END\r\n"
           + b"STORED\r\n"
           + b"15\r\n"
           + b"19\r\n"
           + b"NOT_STORED\r\n"
           + b"DELETED\r\n"
           + b"NOT_FOUND\r\n"
           + b"TOUCHED\r\n"
           + hit(a, 1, b"one!")
           + b"END\r\n"
           + b"NOT_FOUND\r\n")
    c.expect_version()


@S.test()
def pipeline_of_1000_gets(t):
    c = t.conn()
    keys = [t.key(str(i)) for i in range(10)]
    c.send(b"".join(b"set %s %d 0 %d noreply\r\n%s\r\n"
                    % (k, i, len(k), k) for i, k in enumerate(keys)))
    req, expected = [], []
    for j in range(1000):
        i = (j * 7) % 12
        if i < 10:
            req.append(b"get %s\r\n" % keys[i])
            expected.append(hit(keys[i], i, keys[i]))
        else:
            req.append(b"get %s\r\n" % t.key("missing%d" % j))
            expected.append(b"END\r\n")
    c.call(b"".join(req), b"".join(expected))
    c.expect_version()


@S.test()
def pipeline_of_10000_noreply_sets(t):
    c = t.conn()
    keys = [t.key(str(i)) for i in range(10000)]
    c.send(b"".join(b"set %s 0 0 %d noreply\r\n%s\r\n" % (k, len(k), k)
                    for k in keys))
    c.expect_version()
    sample = keys[::997] + [keys[-1]]
    c.call(b"get " + b" ".join(sample) + b"\r\n",
           b"".join(value(k, 0, k) for k in sample) + b"END\r\n")


@S.test()
def pipeline_with_errors_in_the_middle(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 0 0 1\r\na\r\n" % k
           + b"bogus command\r\n"
           + b"get %s\r\n" % k
           + b"set %s 0 0 abc\r\n" % k
           + b"incr %s 1\r\n" % k
           + b"delete %s 5\r\n" % k
           + b"set %s 0 0 1\r\nbXX" % k
           + b"get %s\r\n" % k,
           b"STORED\r\n"
           + b"ERROR\r\n"
           + hit(k, 0, b"a")
           + b"CLIENT_ERROR bad command line format\r\n"
           + b"CLIENT_ERROR cannot increment or decrement non-numeric "
             b"value\r\n"
           + b"CLIENT_ERROR bad command line format.  Usage: delete <key> "
             b"[noreply]\r\n"
           + b"CLIENT_ERROR bad data chunk\r\n"
           + hit(k, 0, b"a"))
    c.expect_version()


@S.test(only="tiercached", reason="memcached 1.6.18 drops the earlier "
        "pipelined replies")
def pipelined_replies_kept_before_get_with_long_key(t):
    c, k = t.conn(), t.key()
    long_key = k + b"x" * 251
    c.call(b"set %s 0 0 1\r\na\r\n" % k, b"STORED\r\n")
    c.call(b"get %s\r\nversion\r\nget %s\r\nget %s\r\n" % (k, long_key, k),
           hit(k, 0, b"a") + c.version_reply
           + b"CLIENT_ERROR bad command line format\r\n" + hit(k, 0, b"a"))
    c.expect_version()


@S.test()
def get_key_list_spans_several_sends(t):
    c = t.conn()
    keys = [t.key("%03d" % i) for i in range(300)]
    present = keys[::10]
    c.send(b"".join(b"set %s 0 0 1 noreply\r\nv\r\n" % k for k in present))
    c.expect_version()
    line = b"get " + b" ".join(keys) + b"\r\n"
    t.check(len(line) > 2048 * 3, "test bug: line too short")
    pieces = [line[i:i + 1500] for i in range(0, len(line), 1500)]
    # Cut one piece in the middle of a key and one right after a space.
    for piece in pieces:
        c.send(piece)
        time.sleep(0.02)
    c.expect(b"".join(value(k, 0, b"v") for k in present) + b"END\r\n")
    c.expect_version()


@S.test()
def get_line_split_inside_keyword_and_crlf(t):
    c, k = t.conn(), t.key()
    c.call(b"set %s 0 0 2\r\nok\r\n" % k, b"STORED\r\n")
    for piece in (b"g", b"et ", k[:3], k[3:], b"\r", b"\n"):
        c.send(piece)
        time.sleep(0.02)
    c.expect(hit(k, 0, b"ok"))


@S.test()
def set_data_split_byte_by_byte(t):
    c, k = t.conn(), t.key()
    data = b"a\r\nb\0c" + bytes(range(250, 256)) + b"end"
    req = b"set %s 9 0 %d\r\n%s\r\n" % (k, len(data), data)
    for i in range(len(req)):
        c.send(req[i:i + 1])
        time.sleep(0.002)
    c.expect(b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 9, data))


@S.test()
def large_value_data_in_many_sends(t):
    c, k = t.conn(), t.key()
    data = bytes(range(256)) * 2000
    c.send(b"set %s 0 0 %d\r\n" % (k, len(data)))
    for i in range(0, len(data), 65536):
        c.send(data[i:i + 65536])
        time.sleep(0.005)
    c.send(b"\r")
    time.sleep(0.02)
    c.send(b"\n")
    c.expect(b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 0, data))


@S.test()
def pipeline_larger_than_socket_buffers(t):
    # The client writes 4 MB of replies' worth of gets before reading any:
    # the server must keep its replies in order while the client is slow.
    c, k = t.conn(), t.key()
    data = bytes(range(256)) * 8
    c.call(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(data), data), b"STORED\r\n")
    n = 2000
    req = b"get %s\r\n" % k * n
    errors = []

    def sender():
        try:
            c.send(req)
        except OSError as e:
            errors.append(e)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    time.sleep(0.2)
    one = hit(k, 0, data)
    for i in range(n):
        c.expect(one, "reply %d of %d" % (i + 1, n))
    th.join(10)
    t.check(not th.is_alive() and not errors, "sender: %r" % errors)
    c.expect_version()


@S.test()
def replies_over_4_mib_to_one_send_all_arrive(t):
    # Guards against a stall seen in tiercached 0.1.0: after one earlier
    # get on the connection, a pipeline of 9 gets of 512 KiB stopped after
    # 8 replies (4,194,520 bytes) and the 9th never came. The client reads
    # all the time here.
    c, k = t.conn(), t.key()
    data = bytes(range(256)) * 2048
    c.call(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(data), data), b"STORED\r\n")
    c.call(b"get %s\r\n" % k, hit(k, 0, data), "one get of 512 KiB")
    c.call(b"get %s\r\n" % k * 9, hit(k, 0, data) * 9,
           "9 gets of 512 KiB in one send")
    c.call(b"get %s\r\n" % k * 16, hit(k, 0, data) * 16,
           "16 gets of 512 KiB in one send")
    c.expect_version()


@S.test()
def replies_in_order_for_mixed_sizes(t):
    c = t.conn()
    small, big = t.key("small"), t.key("big")
    big_data = bytes(range(256)) * 2048
    c.call(b"set %s 0 0 1\r\ns\r\nset %s 0 0 %d\r\n%s\r\n"
           % (small, big, len(big_data), big_data), b"STORED\r\nSTORED\r\n")
    req, expected = [], []
    for i in range(50):
        if i % 5 == 0:
            req.append(b"get %s\r\n" % big)
            expected.append(hit(big, 0, big_data))
        else:
            req.append(b"get %s\r\n" % small)
            expected.append(hit(small, 0, b"s"))
    c.call(b"".join(req), b"".join(expected))


if __name__ == "__main__":
    run(S)
