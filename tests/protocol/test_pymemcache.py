#!/usr/bin/env python3
"""A real client: Debian's python3-pymemcache (installed for /usr/bin/python3
only), its Client on one server and its HashClient over two.

Run it with /usr/bin/python3. Without pymemcache every test reports a
named skip.
"""

import sys
import time

from harness import HOST, Conn, Suite, run

try:
    from pymemcache import serde
    from pymemcache.client.base import Client
    from pymemcache.client.hash import HashClient
    HAVE_PYMEMCACHE = True
except ImportError:
    HAVE_PYMEMCACHE = False

S = Suite(__doc__)


def test(**kw):
    """S.test, but every test needs pymemcache."""
    def register(fn):
        if HAVE_PYMEMCACHE:
            return S.test(**kw)(fn)

        def skipped(t):
            t.skip("pymemcache not importable by %s" % sys.executable)
        skipped.__name__ = fn.__name__
        return S.test(**kw)(skipped)
    return register


def client(t, srv=None, **kw):
    srv = srv or t.server
    kw.setdefault("default_noreply", False)
    c = Client((HOST, srv.port), connect_timeout=5, timeout=5, **kw)
    t.defer(c.close)
    return c


@test()
def client_set_get_delete(t):
    mc, k = client(t), t.key()
    t.eq(mc.get(k), None, "get before set")
    t.eq(mc.set(k, b"hello"), True, "set")
    t.eq(mc.get(k), b"hello", "get")
    t.eq(mc.delete(k), True, "delete")
    t.eq(mc.delete(k), False, "delete again")
    t.eq(mc.get(k, default=b"dflt"), b"dflt", "get after delete")


@test()
def client_add_replace(t):
    mc, k = client(t), t.key()
    t.eq(mc.replace(k, b"r"), False, "replace of a missing key")
    t.eq(mc.add(k, b"a"), True, "add")
    t.eq(mc.add(k, b"b"), False, "add of an existing key")
    t.eq(mc.replace(k, b"c"), True, "replace")
    t.eq(mc.get(k), b"c", "get")


@test()
def client_append_prepend(t):
    mc, k = client(t), t.key()
    t.eq(mc.append(k, b"x"), False, "append to a missing key")
    mc.set(k, b"mid")
    t.eq(mc.append(k, b">"), True, "append")
    t.eq(mc.prepend(k, b"<"), True, "prepend")
    t.eq(mc.get(k), b"<mid>", "get")


@test()
def client_gets_cas(t):
    mc, k = client(t), t.key()
    t.eq(mc.gets(k), (None, None), "gets of a missing key")
    mc.set(k, b"v1")
    value, unique = mc.gets(k)
    t.eq(value, b"v1", "gets value")
    t.eq(mc.cas(k, b"v2", unique), True, "cas with the right unique")
    t.eq(mc.cas(k, b"v3", unique), False, "cas with a stale unique")
    t.eq(mc.cas(t.key("missing"), b"v", b"1"), None, "cas of a missing key")
    t.eq(mc.get(k), b"v2", "get")
    got = mc.gets_many([k, t.key("missing")])
    t.eq(list(got), [k], "gets_many keys")
    t.eq(got[k][0], b"v2", "gets_many value")


@test()
def client_incr_decr(t):
    mc, k = client(t), t.key()
    t.eq(mc.incr(k, 1), None, "incr of a missing key")
    mc.set(k, b"10")
    t.eq(mc.incr(k, 5), 15, "incr")
    t.eq(mc.decr(k, 20), 0, "decr below zero")
    mc.set(k, b"18446744073709551615")
    t.eq(mc.incr(k, 1), 0, "incr wraps")


@test()
def client_touch(t):
    mc, k = client(t), t.key()
    t.eq(mc.touch(k, 100), False, "touch of a missing key")
    mc.set(k, b"x", expire=2)
    t.eq(mc.touch(k, 100), True, "touch")
    yield 3.0
    t.eq(mc.get(k), b"x", "get 3 s after touch 100")


@test()
def client_expire(t):
    mc, k = client(t), t.key()
    mc.set(k, b"x", expire=2)
    start = time.monotonic()
    t.eq(mc.get(k), b"x", "get at once")
    yield 1.9
    while mc.get(k) is not None:
        t.check(time.monotonic() < start + 3.5, "still present after 3.5 s")
        yield 0.1


@test()
def client_get_many_set_many(t):
    mc = client(t)
    data = {t.key(str(i)): b"value %d" % i for i in range(50)}
    t.eq(mc.set_many(data), [], "set_many failed keys")
    keys = list(data) + [t.key("missing")]
    got = mc.get_many(keys)
    t.eq(got, data, "get_many")
    t.eq(mc.delete_many(list(data)[:10]), True, "delete_many")
    t.eq(len(mc.get_many(keys)), 40, "keys left after delete_many")


@test()
def client_binary_and_large_values(t):
    mc = client(t)
    k1, k2 = t.key("bin"), t.key("large")
    blob = bytes(range(256)) * 8 + b"\r\nEND\r\n"
    mc.set(k1, blob)
    t.eq(mc.get(k1), blob, "binary value")
    large = bytes(range(256)) * 3906 + b"0123"  # 1,000,000 bytes
    t.eq(mc.set(k2, large), True, "set of 1,000,000 bytes")
    t.eq(mc.get(k2), large, "get of 1,000,000 bytes")


@test()
def client_pickle_serde_uses_flags(t):
    mc = client(t, serde=serde.pickle_serde)
    k = t.key()
    obj = {"a": [1, 2, 3], "b": "text", "c": None}
    mc.set(k, obj)
    t.eq(mc.get(k), obj, "object round trip")
    mc.set(k, 12345)
    t.eq(mc.get(k), 12345, "int round trip")
    raw = Conn(t.server.port)
    try:
        flags, data = raw.get(k)
    finally:
        raw.close()
    t.check(flags != 0, "pickle_serde stored flags 0")


@test()
def client_noreply_default(t):
    mc = client(t, default_noreply=True)
    k = t.key()
    t.eq(mc.set(k, b"v"), True, "set noreply")
    t.eq(mc.add(k, b"w"), True, "add noreply (always True)")
    t.eq(mc.get(k), b"v", "get")
    mc.delete(k)
    t.eq(mc.get(k), None, "get after delete noreply")


@test()
def client_stats_and_version(t):
    mc, k = client(t), t.key()
    mc.set(k, b"x")
    mc.get(k)
    st = mc.stats()
    for name in (b"cmd_get", b"get_hits", b"curr_items", b"pid", b"version"):
        t.check(name in st, "stats lacks %r" % name)
    t.check(st[b"cmd_get"] >= 1, "cmd_get %r" % st[b"cmd_get"])
    t.eq(b"VERSION " + mc.version() + b"\r\n", t.server.version_reply,
         "version")
    t.check(isinstance(mc.stats("settings"), dict), "stats settings")


@test(exclusive=True)
def client_flush_all(t):
    mc, k = client(t), t.key()
    mc.set(k, b"x")
    t.eq(mc.flush_all(), True, "flush_all")
    t.eq(mc.get(k), None, "get after flush_all")


@test()
def hash_client_over_two_servers(t):
    second = t.start_server()
    servers = [(HOST, t.server.port), (HOST, second.port)]
    hc = HashClient(servers, connect_timeout=5, timeout=5,
                    default_noreply=False, retry_attempts=1)
    t.defer(hc.close)
    keys = [t.key(str(i)) for i in range(200)]
    for i, k in enumerate(keys):
        t.check(hc.set(k, b"v%d" % i), "set %r" % k)
    got = hc.get_many(keys)
    t.eq(len(got), len(keys), "get_many found")
    for i, k in enumerate(keys):
        t.eq(got.get(k), b"v%d" % i, "value of %r" % k)
    # Every key lives on exactly one server, and both servers hold some.
    counts = []
    raws = [Conn(p) for _, p in servers]
    try:
        for raw in raws:
            n = sum(1 for k in keys if raw.get(k) is not None)
            counts.append(n)
    finally:
        for raw in raws:
            raw.close()
    t.note("keys per server: %r" % counts)
    t.eq(sum(counts), len(keys), "keys over both servers")
    t.check(all(counts), "a server holds no key: %r" % counts)
    k = keys[0]
    t.eq(hc.incr(t.key("n"), 1), None, "incr of a missing key")
    hc.set(t.key("n"), b"41")
    t.eq(hc.incr(t.key("n"), 1), 42, "incr")
    t.eq(hc.decr(t.key("n"), 2), 40, "decr")
    t.eq(hc.add(k, b"x"), False, "add of an existing key")
    t.eq(hc.append(k, b"!"), True, "append")
    t.eq(hc.prepend(k, b"!"), True, "prepend")
    t.eq(hc.get(k), b"!v0!", "get")
    t.eq(hc.touch(k, 100), True, "touch")
    value, unique = hc.gets(k)
    t.eq(hc.cas(k, b"new", unique), True, "cas")
    t.eq(hc.get(k), b"new", "get after cas")
    t.eq(hc.delete_many(keys), True, "delete_many")
    t.eq(hc.get_many(keys), {}, "get_many after delete_many")


if __name__ == "__main__":
    run(S)
