/*
 * test_parse.c - the protocol parser (server/parse.c): every command's
 * fields, every error and how much it consumes, incomplete input, the
 * line-length rules, and key iteration. The byte-exact replies are the
 * protocol suite's job; this checks the parser's contract in parse.h.
 */
#include <string.h>

#include "parse.h"
#include "tctest.h"

#define ITEM_MAX 1024

typedef struct parsed {
    mc_status st;
    mc_request req;
    size_t used;
    size_t swallow;
    mc_error err;
} parsed;

static parsed parse_n(const char *s, size_t n)
{
    parsed p;
    p.st = mc_parse(s, n, ITEM_MAX, &p.req, &p.used, &p.err, &p.swallow);
    return p;
}

static parsed parse(const char *s)
{
    return parse_n(s, strlen(s));
}

static void expect_error(const char *in, mc_error err)
{
    parsed p = parse(in);
    if (p.st != MC_ERROR || p.err != err)
        printf("# input \"%s\": status %d err %d (%s)\n", in, (int)p.st,
               (int)p.err, mc_error_text(p.err));
    TCT_EQ_INT(p.st, MC_ERROR);
    TCT_EQ_INT(p.err, err);
}

static void storage_fields(void)
{
    parsed p = parse("set key 4294967295 -1 5 noreply\r\nhello\r\nget x\r\n");
    TCT_EQ_INT(p.st, MC_OK);
    TCT_EQ_INT(p.req.cmd, MC_SET);
    TCT_EQ_MEM(p.req.key, p.req.klen, "key");
    TCT_EQ_U64(p.req.flags, 4294967295u);
    TCT_EQ_INT(p.req.exptime, -1);
    TCT_EQ_U64(p.req.vlen, 5);
    TCT_CHECK(p.req.noreply);
    TCT_EQ_MEM(p.req.data, p.req.vlen, "hello");
    TCT_EQ_U64(p.used, strlen("set key 4294967295 -1 5 noreply\r\nhello\r\n"));

    p = parse("cas k 1 2 3 18446744073709551615\nabc\r\n");
    TCT_EQ_INT(p.st, MC_OK);
    TCT_EQ_INT(p.req.cmd, MC_CAS);
    TCT_EQ_U64(p.req.cas, UINT64_MAX);
    TCT_CHECK(!p.req.noreply);

    static const struct {
        const char *in;
        mc_cmd cmd;
    } modes[] = {{"add k 0 0 1\r\nx\r\n", MC_ADD},
                 {"replace k 0 0 1\r\nx\r\n", MC_REPLACE},
                 {"append k 0 0 1\r\nx\r\n", MC_APPEND},
                 {"prepend k 0 0 1\r\nx\r\n", MC_PREPEND}};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        p = parse(modes[i].in);
        TCT_EQ_INT(p.st, MC_OK);
        TCT_EQ_INT(p.req.cmd, modes[i].cmd);
    }
    /* A value may hold \r\n and NUL: only its length counts. */
    p = parse_n("set k 0 0 4\r\n\r\n\0x\r\n", 19);
    TCT_EQ_INT(p.st, MC_OK);
    TCT_CHECK(memcmp(p.req.data, "\r\n\0x", 4) == 0);
}

static void storage_incomplete(void)
{
    const char *full = "set k 0 0 10\r\n0123456789\r\n";
    size_t line = strlen("set k 0 0 10\r\n");
    for (size_t n = 0; n < strlen(full); n++) {
        parsed p = parse_n(full, n);
        TCT_EQ_INT(p.st, MC_NEED_MORE);
        /* Once the line is in, the parser knows the whole size. */
        TCT_EQ_U64(p.used, n >= line ? strlen(full) : 0);
    }
    TCT_EQ_INT(parse(full).st, MC_OK);
}

static void storage_errors(void)
{
    expect_error("set k 0 0 -1\r\n", MC_E_FORMAT);
    expect_error("set k x 0 1\r\n", MC_E_FORMAT);
    expect_error("set k 0 x 1\r\n", MC_E_FORMAT);
    expect_error("set k 0 0 x\r\n", MC_E_FORMAT);
    expect_error("set k 4294967296 0 1\r\n", MC_E_FORMAT);
    expect_error("set k -1 0 1\r\n", MC_E_FORMAT);
    expect_error("cas k 0 0 1 -1\r\n", MC_E_FORMAT);
    expect_error("set k 0 0\r\n", MC_E_UNKNOWN);
    expect_error("set k 0 0 1 noreply extra\r\n", MC_E_UNKNOWN);
    expect_error("cas k 0 0 1\r\n", MC_E_UNKNOWN);

    char longkey[300];
    memset(longkey, 'k', sizeof(longkey));
    char line[400];
    snprintf(line, sizeof(line), "set %.*s 0 0 1\r\n", 251, longkey);
    expect_error(line, MC_E_FORMAT);
    snprintf(line, sizeof(line), "set %.*s 0 0 1\r\nx\r\n", 250, longkey);
    TCT_EQ_INT(parse(line).st, MC_OK);

    /* A bad line consumes the line only: the data is read as a command. */
    parsed p = parse("set k 0 0 -1\r\nhello\r\n");
    TCT_EQ_U64(p.used, strlen("set k 0 0 -1\r\n"));
    TCT_EQ_U64(p.swallow, 0);

    /* Bad data chunk: the whole block is consumed. */
    p = parse("set k 0 0 3\r\nabcde\r\n");
    TCT_EQ_INT(p.st, MC_ERROR);
    TCT_EQ_INT(p.err, MC_E_CHUNK);
    TCT_EQ_U64(p.used, strlen("set k 0 0 3\r\nabc") + 2);
}

static void too_large_swallows(void)
{
    parsed p = parse("set big 0 0 2000 noreply\r\n");
    TCT_EQ_INT(p.st, MC_ERROR);
    TCT_EQ_INT(p.err, MC_E_TOO_LARGE);
    TCT_EQ_U64(p.used, strlen("set big 0 0 2000 noreply\r\n"));
    TCT_EQ_U64(p.swallow, 2002);
    /* The request still names the command and key (the server deletes the
     * old value of a set) and carries noreply (no error is sent). */
    TCT_EQ_INT(p.req.cmd, MC_SET);
    TCT_EQ_MEM(p.req.key, p.req.klen, "big");
    TCT_CHECK(p.req.noreply);
    /* Exactly ITEM_MAX is accepted. */
    char line[64];
    snprintf(line, sizeof(line), "set k 0 0 %d\r\n", ITEM_MAX);
    p = parse(line);
    TCT_EQ_INT(p.st, MC_NEED_MORE);
    TCT_EQ_U64(p.used, strlen(line) + ITEM_MAX + 2);
}

static void control_characters_in_keys(void)
{
    expect_error("get a\x01" "b\r\n", MC_E_FORMAT);
    expect_error("set a\x7f 0 0 1\r\nx\r\n", MC_E_FORMAT);
    expect_error("delete a\tb\r\n", MC_E_FORMAT);
    expect_error("get ok bad\x1f\r\n", MC_E_FORMAT);
    /* Bytes above 0x7f are fine (UTF-8 keys). */
    TCT_EQ_INT(parse("get caf\xc3\xa9\r\n").st, MC_OK);
}

static void retrieval(void)
{
    parsed p = parse("get  a   bb ccc \r\n");
    TCT_EQ_INT(p.st, MC_OK);
    TCT_EQ_INT(p.req.cmd, MC_GET);
    size_t pos = 0, klen;
    const char *key;
    const char *want[] = {"a", "bb", "ccc"};
    int n = 0;
    while (mc_next_key(&p.req, &pos, &key, &klen)) {
        TCT_CHECK(n < 3);
        TCT_EQ_MEM(key, klen, want[n]);
        n++;
    }
    TCT_EQ_INT(n, 3);

    p = parse("gats 100 k\r\n");
    TCT_EQ_INT(p.st, MC_OK);
    TCT_EQ_INT(p.req.cmd, MC_GATS);
    TCT_EQ_INT(p.req.exptime, 100);
    pos = 0;
    TCT_CHECK(mc_next_key(&p.req, &pos, &key, &klen));
    TCT_EQ_MEM(key, klen, "k");

    /* gat with an expiry and no key is an empty get (memcached: END). */
    p = parse("gat 0\r\n");
    TCT_EQ_INT(p.st, MC_OK);
    pos = 0;
    TCT_CHECK(!mc_next_key(&p.req, &pos, &key, &klen));

    expect_error("get\r\n", MC_E_UNKNOWN);
    expect_error("gets \r\n", MC_E_UNKNOWN);
    expect_error("gat\r\n", MC_E_UNKNOWN);
    expect_error("gat abc k\r\n", MC_E_EXPTIME);

    /* Many keys: more than the tokenizer keeps. */
    char line[1024] = "get";
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof(k), " k%d", i);
        strcat(line, k);
    }
    strcat(line, "\r\n");
    p = parse(line);
    TCT_EQ_INT(p.st, MC_OK);
    pos = 0;
    n = 0;
    while (mc_next_key(&p.req, &pos, &key, &klen))
        n++;
    TCT_EQ_INT(n, 100);
}

static void other_commands(void)
{
    parsed p = parse("incr n 18446744073709551615 noreply\r\n");
    TCT_EQ_INT(p.st, MC_OK);
    TCT_EQ_INT(p.req.cmd, MC_INCR);
    TCT_EQ_U64(p.req.delta, UINT64_MAX);
    TCT_CHECK(p.req.noreply);
    expect_error("incr n abc\r\n", MC_E_DELTA);
    expect_error("decr n -1\r\n", MC_E_DELTA);
    expect_error("incr n\r\n", MC_E_UNKNOWN);

    p = parse("touch k -5\r\n");
    TCT_EQ_INT(p.st, MC_OK);
    TCT_EQ_INT(p.req.exptime, -5);
    expect_error("touch k x\r\n", MC_E_EXPTIME);

    TCT_EQ_INT(parse("delete k\r\n").st, MC_OK);
    TCT_EQ_INT(parse("delete k 0\r\n").st, MC_OK);
    p = parse("delete k 0 noreply\r\n");
    TCT_EQ_INT(p.st, MC_OK);
    TCT_CHECK(p.req.noreply);
    expect_error("delete k 5\r\n", MC_E_DELETE_USAGE);
    expect_error("delete\r\n", MC_E_UNKNOWN);

    p = parse("flush_all 10 noreply\r\n");
    TCT_EQ_INT(p.st, MC_OK);
    TCT_EQ_INT(p.req.exptime, 10);
    TCT_CHECK(p.req.noreply);
    p = parse("flush_all noreply\r\n");
    TCT_EQ_INT(p.st, MC_OK);
    TCT_EQ_INT(p.req.exptime, 0);
    TCT_CHECK(p.req.noreply);
    expect_error("flush_all abc\r\n", MC_E_EXPTIME);

    p = parse("stats  settings \r\n");
    TCT_EQ_INT(p.st, MC_OK);
    TCT_EQ_MEM(p.req.arg, p.req.arg_len, "settings");
    p = parse("stats\r\n");
    TCT_EQ_U64(p.req.arg_len, 0);

    TCT_EQ_INT(parse("version\r\n").req.cmd, MC_VERSION);
    TCT_EQ_INT(parse("version extra words\r\n").st, MC_OK);
    TCT_EQ_INT(parse("quit\r\n").req.cmd, MC_QUIT);

    p = parse("verbosity 3\r\n");
    TCT_EQ_INT(p.st, MC_OK);
    TCT_EQ_U64(p.req.level, 3);
    p = parse("verbosity noreply\r\n");
    TCT_EQ_INT(p.st, MC_OK);
    TCT_CHECK(p.req.noreply);
    expect_error("verbosity abc\r\n", MC_E_FORMAT);
    expect_error("verbosity\r\n", MC_E_UNKNOWN);

    expect_error("bogus\r\n", MC_E_UNKNOWN);
    expect_error("GET k\r\n", MC_E_UNKNOWN);
    expect_error("\r\n", MC_E_UNKNOWN);
    expect_error("   \r\n", MC_E_UNKNOWN);
}

static void line_length_rules(void)
{
    static char buf[MC_LINE_MAX + 100];
    memset(buf, 'x', sizeof(buf));
    /* No newline within MC_LINE_MAX bytes: wait for more; past it: close. */
    TCT_EQ_INT(parse_n(buf, MC_LINE_MAX).st, MC_NEED_MORE);
    TCT_EQ_INT(parse_n(buf, MC_LINE_MAX + 1).st, MC_CLOSE);
    /* The get family may go on. */
    static const char *const cmds[] = {"get ", "gets ", "gat ", "gats "};
    for (size_t i = 0; i < 4; i++) {
        memcpy(buf, cmds[i], strlen(cmds[i]));
        TCT_EQ_INT(parse_n(buf, sizeof(buf)).st, MC_NEED_MORE);
    }
    memcpy(buf, "set ", 4);
    TCT_EQ_INT(parse_n(buf, sizeof(buf)).st, MC_CLOSE);
}

static void pipeline_consumes_in_order(void)
{
    const char *in = "set a 0 0 1\r\n1\r\nget a\r\nbogus\r\nincr a 1\r\n";
    size_t len = strlen(in), pos = 0;
    mc_cmd want[] = {MC_SET, MC_GET, (mc_cmd)-1, MC_INCR};
    for (int i = 0; i < 4; i++) {
        parsed p = parse_n(in + pos, len - pos);
        if (want[i] == (mc_cmd)-1)
            TCT_EQ_INT(p.st, MC_ERROR);
        else
            TCT_EQ_INT(p.req.cmd, want[i]);
        TCT_CHECK(p.used > 0 && p.used <= len - pos);
        pos += p.used;
    }
    TCT_EQ_U64(pos, len);
}

/* Meta commands: parsed in place (a base64 key points into the request,
 * which must not be copied). */
static parsed mp;

static void parse_meta(const char *s)
{
    mp.st = mc_parse(s, strlen(s), ITEM_MAX, &mp.req, &mp.used, &mp.err,
                     &mp.swallow);
}

static void meta_fields(void)
{
    parse_meta("mg key v c f k O123 q t T30 N-1 R5 C7 b9\r\n");
    TCT_EQ_INT(mp.st, MC_ERROR); /* "key" is no base64, b9 not b */
    parse_meta("mg key v c f k O123 q t T30 N-1 R5 C7\r\n");
    TCT_EQ_INT(mp.st, MC_OK);
    TCT_EQ_INT(mp.req.cmd, MC_MG);
    TCT_EQ_MEM(mp.req.key, mp.req.klen, "key");
    const mc_meta *m = &mp.req.meta;
    TCT_CHECK((m->seen & MC_MF('v')) && (m->seen & MC_MF('q')) &&
              (m->seen & MC_MF('T')) && !(m->seen & MC_MF('h')));
    TCT_EQ_INT(m->ttl, 30);
    TCT_EQ_INT(m->vivify, -1);
    TCT_EQ_INT(m->recache, 5);
    TCT_EQ_U64(m->cas, 7);
    TCT_EQ_U64(m->delta, 1);
    TCT_EQ_MEM(m->opaque, m->olen, "O123");
    TCT_EQ_MEM(m->flags, m->flags_len, "v c f k O123 q t T30 N-1 R5 C7");
    TCT_CHECK(!mp.req.noreply);

    /* A base64 key is decoded into the request; binary bytes allowed. */
    parse_meta("mg AAEC/w== b k\r\n");
    TCT_EQ_INT(mp.st, MC_OK);
    TCT_EQ_U64(mp.req.klen, 4);
    TCT_CHECK(memcmp(mp.req.key, "\x00\x01\x02\xff", 4) == 0);
    char enc[16];
    size_t n = mc_base64_encode("\x00\x01\x02\xff", 4, enc);
    TCT_EQ_MEM(enc, n, "AAEC/w==");
    n = mc_base64_encode("ab", 2, enc);
    TCT_EQ_MEM(enc, n, "YWI=");
    parse_meta("mg YWI= b\r\n");
    TCT_EQ_MEM(mp.req.key, mp.req.klen, "ab");
}

static void meta_set_and_errors(void)
{
    parse_meta("ms key 5 T0 F7 MA c\r\nhello\r\nmn\r\n");
    TCT_EQ_INT(mp.st, MC_OK);
    TCT_EQ_INT(mp.req.cmd, MC_MS);
    TCT_EQ_U64(mp.req.vlen, 5);
    TCT_EQ_MEM(mp.req.data, 5, "hello");
    TCT_EQ_U64(mp.req.meta.client_flags, 7);
    TCT_EQ_INT(mp.req.meta.mode, 'A');
    TCT_EQ_U64(mp.used, strlen("ms key 5 T0 F7 MA c\r\nhello\r\n"));
    parse_meta("ms key 5 T0\r\nhel");
    TCT_EQ_INT(mp.st, MC_NEED_MORE);
    TCT_EQ_U64(mp.used, strlen("ms key 5 T0\r\nhello\r\n"));
    /* A bad flag swallows the data block; a bad length cannot. */
    parse_meta("ms key 5 Mx\r\nhello\r\n");
    TCT_EQ_INT(mp.st, MC_ERROR);
    TCT_EQ_INT(mp.err, MC_E_META_MS_MODE);
    TCT_EQ_U64(mp.swallow, 7);
    parse_meta("ms key x5\r\nhello\r\n");
    TCT_EQ_INT(mp.err, MC_E_FORMAT);
    TCT_EQ_U64(mp.swallow, 0);
    parse_meta("ms key 2000 T0\r\n");
    TCT_EQ_INT(mp.err, MC_E_TOO_LARGE);
    TCT_EQ_U64(mp.swallow, 2002);
    expect_error("mg key v v\r\n", MC_E_META_DUP);
    expect_error("mg key !\r\n", MC_E_META_INVALID);
    expect_error("mg key Tx\r\n", MC_E_META_TOKEN);
    expect_error("md key Tx\r\n", MC_E_META_INVALID_OR_DUP);
    expect_error("ma key MX\r\n", MC_E_META_MA_MODE);
    expect_error("mg key b\r\n", MC_E_META_DECODE);
    expect_error("mg key O123456789012345678901234567890123\r\n",
                 MC_E_META_OPAQUE);
    expect_error("mg k a b c d e f g h i j k l m n o p q r s\r\n",
                 MC_E_META_TOO_MANY_MG);
    expect_error("mg\r\n", MC_E_UNKNOWN);
    expect_error("me\r\n", MC_E_FORMAT);
    parse_meta("mn whatever\r\n");
    TCT_EQ_INT(mp.st, MC_OK);
    TCT_EQ_INT(mp.req.cmd, MC_MN);
}

TCT_MAIN(TCT(meta_fields), TCT(meta_set_and_errors),
         TCT(storage_fields), TCT(storage_incomplete), TCT(storage_errors),
         TCT(too_large_swallows), TCT(control_characters_in_keys),
         TCT(retrieval), TCT(other_commands), TCT(line_length_rules),
         TCT(pipeline_consumes_in_order))
