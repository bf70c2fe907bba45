/* check_route.c - unit tests for route.c: pattern validation, match ranking (literal beats
 * placeholder, more literals win, then file order), query lookup and template expansion. */

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "route.h"
#include "route_map.h"

/* A config built by hand: only routes[].path matters to route.c. */
static struct config *
make_cfg(const char *const *paths, size_t n)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	size_t i;

	ck_assert_ptr_nonnull(cfg);
	cfg->routes = calloc(n, sizeof(*cfg->routes));
	ck_assert_ptr_nonnull(cfg->routes);
	for (i = 0; i < n; i++) {
		/* Not strdup: the suite must build without _GNU_SOURCE/POSIX feature macros. */
		cfg->routes[i].path = malloc(strlen(paths[i]) + 1);
		ck_assert_ptr_nonnull(cfg->routes[i].path);
		memcpy(cfg->routes[i].path, paths[i], strlen(paths[i]) + 1);
		cfg->routes[i].line = (int)i + 1;
	}
	cfg->nroutes = n;
	return cfg;
}

static void
free_cfg(struct config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->nroutes; i++)
		free(cfg->routes[i].path);
	free(cfg->routes);
	free(cfg);
}

/* ---- route_pattern_valid ---- */

/* clang-format off */
static const struct pattern_row {
	const char *pattern;
	int want;
	const char *why;  /* substring of *why when invalid */
} pattern_rows[] = {
	{ "/", 1, NULL },
	{ "/echo", 1, NULL },
	{ "/rooms/{room}", 1, NULL },
	{ "/a/{x}/b/{y}", 1, NULL },
	{ "/{Room_1}", 1, NULL },
	{ "/a-b.c~d:e@f!$&'()*+,;=%", 1, NULL },
	{ "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}", 1, NULL },  /* ROUTE_MAX_PARAMS */
	{ "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", 0, "too many placeholders" },
	{ "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/19/20/21/22/23/24/25/26/27/28/29/30/31/32",
	    1, NULL },  /* ROUTE_MAX_SEGMENTS */
	{ "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/19/20/21/22/23/24/25/26/27/28/29/30/31/32/33",
	    0, "too many segments" },
	{ "", 0, "start with '/'" },
	{ "echo", 0, "start with '/'" },
	{ "//", 0, "empty segment" },
	{ "/echo/", 0, "empty segment" },
	{ "/a//b", 0, "empty segment" },
	{ "/{}", 0, "empty placeholder" },
	{ "/a{b}", 0, "whole segment" },
	{ "/{a}b", 0, "whole segment" },
	{ "/a}", 0, "whole segment" },
	{ "/{a{b}}", 0, "[A-Za-z0-9_]" },
	{ "/{a-b}", 0, "[A-Za-z0-9_]" },
	{ "/{a b}", 0, "[A-Za-z0-9_]" },
	{ "/{a}/{a}", 0, "duplicate" },
	{ "/a b", 0, "invalid character" },
	{ "/a?b", 0, "invalid character" },
	{ "/a#b", 0, "invalid character" },
	{ "/a\tb", 0, "invalid character" },
	{ "/caf\xc3\xa9", 0, "invalid character" },
};
/* clang-format on */

START_TEST(test_pattern_table)
{
	const struct pattern_row *row = &pattern_rows[_i];
	const char *why = "unset";
	int got = route_pattern_valid(row->pattern, &why);

	ck_assert_msg(got == row->want, "\"%s\": got %d", row->pattern, got);
	if (!row->want) {
		ck_assert_ptr_nonnull(why);
		ck_assert_msg(strstr(why, row->why) != NULL, "\"%s\": why \"%s\"", row->pattern,
		              why);
	}
}
END_TEST

START_TEST(test_pattern_null)
{
	const char *why = NULL;

	ck_assert_int_eq(route_pattern_valid(NULL, &why), 0);
	ck_assert_ptr_nonnull(why);
	ck_assert_int_eq(route_pattern_valid("/ok", NULL), 1);
	ck_assert_int_eq(route_pattern_valid("bad", NULL), 0);
}
END_TEST

/* ---- route_match ---- */

/* File order matters: the placeholder /rooms/{room} comes before the literal /rooms/lobby. */
/* clang-format off */
static const char *const match_routes[] = {
	"/echo",                /* 0 */
	"/rooms/{room}",        /* 1 */
	"/rooms/lobby",         /* 2 */
	"/a/{x}/{z}/{y}",       /* 3: one literal */
	"/a/{x}/b/{y}",         /* 4: two literals, beats 3 although later */
	"/t/{p}",               /* 5: ties with 6, first in file wins */
	"/t/{q}",               /* 6 */
	"/",                    /* 7 */
	"/b/{v}",               /* 8 */
	"/b/x%y",               /* 9: literal, wins even though {v} would refuse "x%y" */
};
/* clang-format on */

/* clang-format off */
static const struct match_row {
	const char *name;
	const char *path;
	enum route_status want;
	int route;           /* index in match_routes, -1 none */
	size_t nparams;
	const char *pname;   /* first parameter */
	const char *pval;
} match_rows[] = {
	{ "literal", "/echo", ROUTE_OK, 0, 0, NULL, NULL },
	{ "trailing slash is significant", "/echo/", ROUTE_NOT_FOUND, -1, 0, NULL, NULL },
	{ "prefix is not a match", "/ech", ROUTE_NOT_FOUND, -1, 0, NULL, NULL },
	{ "longer is not a match", "/echoo", ROUTE_NOT_FOUND, -1, 0, NULL, NULL },
	{ "literal is byte-exact", "/ECHO", ROUTE_NOT_FOUND, -1, 0, NULL, NULL },
	{ "placeholder", "/rooms/r1", ROUTE_OK, 1, 1, "room", "r1" },
	{ "safe punctuation", "/rooms/a.b-d_e", ROUTE_OK, 1, 1, "room", "a.b-d_e" },
	/* ':' separates namespaces: a value cannot hold it unless the route allows it. */
	{ "namespace separator refused", "/rooms/conn:x", ROUTE_BAD_PARAM, 1, 1, "room", "conn:x" },
	{ "literal beats earlier placeholder", "/rooms/lobby", ROUTE_OK, 2, 0, NULL, NULL },
	{ "empty placeholder value", "/rooms/", ROUTE_NOT_FOUND, -1, 0, NULL, NULL },
	{ "segment count must match", "/rooms/a/b", ROUTE_NOT_FOUND, -1, 0, NULL, NULL },
	{ "unsafe value", "/rooms/a%20b", ROUTE_BAD_PARAM, 1, 1, "room", "a%20b" },
	{ "unsafe value with !", "/rooms/a!b", ROUTE_BAD_PARAM, 1, 1, "room", "a!b" },
	{ "more literals win", "/a/1/b/2", ROUTE_OK, 4, 2, "x", "1" },
	{ "fewer literals when only match", "/a/1/c/2", ROUTE_OK, 3, 3, "x", "1" },
	{ "best route refuses, no fallback", "/a/1/b/bad!", ROUTE_BAD_PARAM, 4, 2, "x", "1" },
	{ "tie goes to file order", "/t/v", ROUTE_OK, 5, 1, "p", "v" },
	{ "root", "/", ROUTE_OK, 7, 0, NULL, NULL },
	{ "double slash", "//", ROUTE_NOT_FOUND, -1, 0, NULL, NULL },
	{ "empty path", "", ROUTE_NOT_FOUND, -1, 0, NULL, NULL },
	{ "relative path", "echo", ROUTE_NOT_FOUND, -1, 0, NULL, NULL },
	{ "literal wins over unsafe placeholder", "/b/x%y", ROUTE_OK, 9, 0, NULL, NULL },
	{ "placeholder beside a literal", "/b/ok", ROUTE_OK, 8, 1, "v", "ok" },
	{ "too many segments",
	    "/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17/18/19/20/21/22/23/24/25/26/27/28/29/30/31/32/33",
	    ROUTE_NOT_FOUND, -1, 0, NULL, NULL },
};
/* clang-format on */

START_TEST(test_match_table)
{
	const struct match_row *row = &match_rows[_i];
	struct config *cfg = make_cfg(match_routes, sizeof(match_routes) / sizeof(match_routes[0]));
	struct route_match m;
	size_t n = strlen(row->path);
	char *path = malloc(n + 1);
	enum route_status st;

	/* Exactly n bytes and no NUL, so ASan catches a read past the path. */
	memcpy(path, row->path, n);
	st = route_match(cfg, path, n, "q=1", 3, &m);
	ck_assert_msg(st == row->want, "%s: got %d want %d", row->name, st, row->want);
	if (row->route < 0)
		ck_assert_ptr_null(m.route);
	else {
		ck_assert_msg(m.route == &cfg->routes[row->route], "%s: route %s", row->name,
		              m.route ? m.route->path : "(none)");
		ck_assert_uint_eq(m.nparams, row->nparams);
	}
	if (row->pname != NULL) {
		ck_assert_uint_eq(m.params[0].name_len, strlen(row->pname));
		ck_assert(memcmp(m.params[0].name, row->pname, m.params[0].name_len) == 0);
		ck_assert_uint_eq(m.params[0].val_len, strlen(row->pval));
		ck_assert(memcmp(m.params[0].val, row->pval, m.params[0].val_len) == 0);
		ck_assert(m.params[0].val >= path && m.params[0].val < path + n);
	}
	ck_assert_str_eq(m.query, "q=1");
	ck_assert_uint_eq(m.query_len, 3);
	free(path);
	free_cfg(cfg);
}
END_TEST

START_TEST(test_match_params_in_order)
{
	const char *const routes[] = {"/a/{x}/b/{y}"};
	struct config *cfg = make_cfg(routes, 1);
	struct route_match m;

	ck_assert_int_eq(route_match(cfg, "/a/one/b/two", 12, NULL, 0, &m), ROUTE_OK);
	ck_assert_uint_eq(m.nparams, 2);
	ck_assert(m.params[1].name_len == 1 && m.params[1].name[0] == 'y');
	ck_assert(m.params[1].val_len == 3 && memcmp(m.params[1].val, "two", 3) == 0);
	ck_assert_ptr_null(m.query);
	free_cfg(cfg);
}
END_TEST

START_TEST(test_match_empty_config)
{
	struct config cfg;
	struct route_match m;

	memset(&cfg, 0, sizeof(cfg));
	ck_assert_int_eq(route_match(&cfg, "/echo", 5, NULL, 0, &m), ROUTE_NOT_FOUND);
	ck_assert_int_eq(route_match(NULL, "/echo", 5, NULL, 0, &m), ROUTE_NOT_FOUND);
}
END_TEST

/* ---- route_query_get ---- */

/* clang-format off */
static const struct query_row {
	const char *query;
	size_t len;         /* 0: strlen */
	const char *name;
	int found;
	const char *val;
} query_rows[] = {
	{ "a=1&b=2", 0, "b", 1, "2" },
	{ "a=1&b=2", 0, "a", 1, "1" },
	{ "a=1&a=2", 0, "a", 1, "1" },        /* first occurrence wins */
	{ "flag&x=1", 0, "flag", 1, "" },     /* bare name: empty value */
	{ "a=", 0, "a", 1, "" },
	{ "a=b=c", 0, "a", 1, "b=c" },
	{ "x=%41", 0, "x", 1, "%41" },        /* raw, no percent-decoding */
	{ "&&a=1&", 0, "a", 1, "1" },
	{ "ab=1", 0, "a", 0, NULL },
	{ "a=1", 0, "ab", 0, NULL },
	{ "A=1", 0, "a", 0, NULL },           /* names are case-sensitive */
	{ "", 0, "a", 0, NULL },
	{ "a=1&b=2", 3, "b", 0, NULL },       /* query_len bounds the search */
	{ "a=1&b=2", 5, "b", 1, "" },
};
/* clang-format on */

START_TEST(test_query_table)
{
	const struct query_row *row = &query_rows[_i];
	size_t n = row->len ? row->len : strlen(row->query);
	char *q = malloc(n + 1);
	const char *val = NULL;
	size_t vlen = 99;
	int got;

	memcpy(q, row->query, n);
	got = route_query_get(q, n, row->name, strlen(row->name), &val, &vlen);
	ck_assert_msg(got == row->found, "\"%s\" [%s]: got %d", row->query, row->name, got);
	if (row->found) {
		ck_assert_uint_eq(vlen, strlen(row->val));
		ck_assert(memcmp(val, row->val, vlen) == 0);
		ck_assert(val >= q && val + vlen <= q + n);
	}
	free(q);
}
END_TEST

START_TEST(test_query_null)
{
	const char *val;
	size_t vlen;

	ck_assert_int_eq(route_query_get(NULL, 0, "a", 1, &val, &vlen), 0);
	ck_assert_int_eq(route_query_get("a=1", 3, "", 0, &val, &vlen), 0);
}
END_TEST

/* ---- route_value_safe ---- */

/* clang-format off */
static const struct safe_row {
	const char *s;
	int want;
} safe_rows[] = {
	{ "abcXYZ019", 1 }, { "a_b.c-e", 1 }, { "a_b.c:d-e", 0 }, { "conn:1", 0 }, { "", 0 }, { "a b", 0 }, { "a/b", 0 },
	{ "a%20", 0 }, { "a*", 0 }, { "a{b}", 0 }, { "caf\xc3\xa9", 0 }, { "a\r\n", 0 },
};
/* clang-format on */

START_TEST(test_safe_table)
{
	ck_assert_int_eq(route_value_safe(safe_rows[_i].s, strlen(safe_rows[_i].s)),
	                 safe_rows[_i].want);
}
END_TEST

/* ---- route_expand ---- */

/* clang-format off */
static const struct expand_row {
	const char *tmpl;
	size_t outsz;
	int want;            /* length or error */
	const char *out;
} expand_rows[] = {
	{ "room:{room}", 64, 7, "room:r1" },
	{ "user:{query.id}", 64, 7, "user:u7" },
	{ "{room}/{query.id}", 64, 5, "r1/u7" },
	{ "{query.dup}", 64, 5, "first" },
	{ "plain", 64, 5, "plain" },
	{ "", 64, 0, "" },
	{ "{nope}", 64, ROUTE_NOT_FOUND, "" },
	{ "{query.nope}", 64, ROUTE_NOT_FOUND, "" },
	{ "x{query.bad}", 64, ROUTE_BAD_PARAM, "" },    /* "x%20y" */
	{ "{query.empty}", 64, ROUTE_BAD_PARAM, "" },
	{ "{query.flag}", 64, ROUTE_BAD_PARAM, "" },
	{ "{room", 64, ROUTE_BAD_PARAM, "" },
	{ "room}", 64, ROUTE_BAD_PARAM, "" },
	{ "{}", 64, ROUTE_BAD_PARAM, "" },
	{ "{query.}", 64, ROUTE_BAD_PARAM, "" },
	{ "{{room}}", 64, ROUTE_BAD_PARAM, "" },
	{ "room:{room}", 8, 7, "room:r1" },              /* exact fit with the NUL */
	{ "room:{room}", 7, -3, "" },
	{ "room:{room}", 0, -3, NULL },
	{ "abcdefgh{nope}", 2, ROUTE_NOT_FOUND, "" },    /* a template error outranks overflow */
};
/* clang-format on */

START_TEST(test_expand_table)
{
	const struct expand_row *row = &expand_rows[_i];
	const char *const routes[] = {"/rooms/{room}"};
	const char *q = "id=u7&bad=x%20y&empty=&flag&dup=first&dup=second";
	struct config *cfg = make_cfg(routes, 1);
	struct route_match m;
	char out[64];
	int got;

	ck_assert_int_eq(route_match(cfg, "/rooms/r1", 9, q, strlen(q), &m), ROUTE_OK);
	memset(out, 'Z', sizeof(out));
	got = route_expand(row->tmpl, &m, out, row->outsz);
	ck_assert_msg(got == row->want, "\"%s\" in %zu: got %d want %d", row->tmpl, row->outsz, got,
	              row->want);
	if (row->out != NULL)
		ck_assert_str_eq(out, row->out);
	else
		ck_assert_int_eq(out[0], 'Z'); /* outsz 0: nothing written */
	free_cfg(cfg);
}
END_TEST

START_TEST(test_expand_without_match)
{
	char out[16];

	ck_assert_int_eq(route_expand("abc", NULL, out, sizeof(out)), 3);
	ck_assert_str_eq(out, "abc");
	ck_assert_int_eq(route_expand("{x}", NULL, out, sizeof(out)), ROUTE_NOT_FOUND);
	ck_assert_int_eq(route_expand("{query.x}", NULL, out, sizeof(out)), ROUTE_NOT_FOUND);
}
END_TEST

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- allow sets, the reserved namespace, the channel map ---- */

static struct config_route *
make_route(const char *path, char **allow, size_t nallow)
{
	static struct config_route r;

	memset(&r, 0, sizeof(r));
	r.path = (char *)path;
	r.allow = allow;
	r.nallow = nallow;
	r.type = ROUTE_PUBSUB;
	return &r;
}

START_TEST(test_allow_parse)
{
	struct route_charset cs;
	const char *nm, *why;
	size_t nn;

	ck_assert_int_eq(route_allow_parse("ch:[a-c:]", 9, &nm, &nn, &cs, &why), 0);
	ck_assert_uint_eq(nn, 2);
	ck_assert(route_charset_has(&cs, 'b') && route_charset_has(&cs, ':'));
	ck_assert(!route_charset_has(&cs, 'd') && !route_charset_has(&cs, '-'));
	ck_assert_int_eq(route_allow_parse("ch:[-a]", 7, &nm, &nn, &cs, &why), 0);
	ck_assert(route_charset_has(&cs, '-') && route_charset_has(&cs, 'a'));
	ck_assert_int_eq(route_allow_parse("query.ch:[x]", 12, &nm, &nn, &cs, &why), 0);
	ck_assert_uint_eq(nn, 8);
	ck_assert_int_eq(route_allow_parse("ch:[a/]", 7, &nm, &nn, &cs, &why), -1);
	ck_assert_int_eq(route_allow_parse("ch:[z-a]", 8, &nm, &nn, &cs, &why), -1);
	ck_assert_int_eq(route_allow_parse("ch:[]", 5, &nm, &nn, &cs, &why), -1);
	ck_assert_int_eq(route_allow_parse(":[a]", 4, &nm, &nn, &cs, &why), -1);
	ck_assert_int_eq(route_allow_parse("c h:[a]", 7, &nm, &nn, &cs, &why), -1);
}
END_TEST

/* The attacks of issue 17 at the template level: a placeholder value cannot leave its
 * namespace, and a widened one still cannot reach wsgate's own channels. */
START_TEST(test_expand_namespaces)
{
	char *allow[] = {"ch:[a-z0-9:]"}, out[64];
	struct route_match m;

	memset(&m, 0, sizeof(m));
	m.query = "ch=conn:1&room=user:alice&x=ok";
	m.query_len = strlen(m.query);
	m.route = make_route("/raw", NULL, 0);
	ck_assert_int_eq(route_expand("{query.ch}", &m, out, sizeof(out)), ROUTE_BAD_PARAM);
	ck_assert_int_eq(route_expand("room:{query.room}", &m, out, sizeof(out)), ROUTE_BAD_PARAM);
	ck_assert_int_eq(route_expand("{query.x}", &m, out, sizeof(out)), 2);
	/* widened explicitly: ':' now passes, the reserved prefix never does */
	m.route = make_route("/raw", allow, 1);
	m.query = "ch=a:b";
	m.query_len = strlen(m.query);
	ck_assert_int_eq(route_expand("{ch}", &m, out, sizeof(out)), ROUTE_NOT_FOUND);
	ck_assert_int_eq(route_expand("{query.ch}", &m, out, sizeof(out)), ROUTE_BAD_PARAM);
}
END_TEST

START_TEST(test_expand_reserved)
{
	char *allow[] = {"query.ch:[a-z0-9:]"}, out[64];
	struct route_match m;

	memset(&m, 0, sizeof(m));
	m.route = make_route("/raw", allow, 1);
	m.query = "ch=a:b";
	m.query_len = strlen(m.query);
	ck_assert_int_eq(route_expand("{query.ch}", &m, out, sizeof(out)), 3);
	ck_assert_str_eq(out, "a:b");
	m.query = "ch=wsgate:conn:1";
	m.query_len = strlen(m.query);
	ck_assert_int_eq(route_expand("{query.ch}", &m, out, sizeof(out)), ROUTE_BAD_PARAM);
	ck_assert_str_eq(out, "");
	ck_assert(route_reserved("wsgate:probe:x", 14));
	ck_assert(!route_reserved("wsgate", 6));
}
END_TEST

static const struct overlap_row {
	const char *ta, *allow_a, *tb;
	int want;
} overlap_rows[] = {
    {"{ch}", NULL, "user:{jwt.sub}", 0}, /* default set: no ':' */
    {"{ch}", "ch:[a-z:]", "user:{jwt.sub}", 1},
    {"user:{name}", NULL, "user:{jwt.sub}", 1},
    {"user-{name}", NULL, "user:{jwt.sub}", 0},
    {"room:{r}", NULL, "user:{jwt.sub}", 0},
    {"u{x}", NULL, "user:{jwt.sub}", 0},
    {"u{x}", "x:[a-z:]", "user:{jwt.sub}", 1},
    {"news", NULL, "news", 1},
    {"news", NULL, "{t}", 1},
    {"news2", NULL, "news", 0},
    {"{a}.{b}", NULL, "x.y.z", 1},
    {"{a}:x", NULL, "{b}:{c}", 1},
    {"a{b}", NULL, "a", 0}, /* a placeholder takes one byte or more */
};

START_TEST(test_overlap)
{
	const struct overlap_row *r = &overlap_rows[_i];
	char *allow[1] = {(char *)r->allow_a};
	struct config_route a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.allow = allow;
	a.nallow = r->allow_a != NULL;
	ck_assert_msg(route_map_overlap(&a, r->ta, &b, r->tb) == r->want, "%s vs %s", r->ta, r->tb);
	ck_assert_msg(route_map_overlap(&b, r->tb, &a, r->ta) == r->want, "%s vs %s (swapped)",
	              r->tb, r->ta);
}
END_TEST

START_TEST(test_pattern)
{
	char *allow[] = {"ch:[a-c:]"}, out[128];
	struct config_route *r = make_route("/x/{ch}", allow, 1);

	ck_assert_str_eq(route_map_pattern(r, "room:{room}", out, sizeof(out)),
	                 "room:[-.0-9A-Z_a-z]+");
	ck_assert_str_eq(route_map_pattern(r, "{ch}", out, sizeof(out)), "[:a-c]+");
	ck_assert_str_eq(route_map_pattern(r, "{ch}", out, 4), "");
}
END_TEST

START_TEST(test_read_only)
{
	char *allow[] = {"query.to:[a-z0-9:]"}, *sub[] = {"room:{room}", "user:{jwt.sub}"};
	char *ro[] = {"user:{jwt.sub}"};
	struct config_route *r = make_route("/chat/{room}", allow, 1);

	r->subscribe = sub;
	r->nsubscribe = 2;
	r->publish = "{query.to}";
	r->read_only = ro;
	r->nread_only = 1;
	ck_assert_int_eq(route_map_matches(r, "user:{jwt.sub}", "user:bob", 8), 1);
	ck_assert_int_eq(route_map_matches(r, "user:{jwt.sub}", "user:", 5), 0);
	ck_assert_int_eq(route_map_matches(r, "user:{jwt.sub}", "user:b:c", 8), 0);
	ck_assert_int_eq(route_map_matches(r, "user:{jwt.sub}", "usex:bob", 8), 0);
	ck_assert_int_eq(route_map_matches(r, "a{room}b", "axxb", 4), 1);
	ck_assert_int_eq(route_map_matches(r, "a{room}b", "ab", 2), 0);
	ck_assert_int_eq(route_map_matches(r, "{room", "x", 1), -1);
	ck_assert_str_eq(route_map_read_only(r, "user:bob", 8), "user:{jwt.sub}");
	ck_assert_ptr_null(route_map_read_only(r, "room:lobby", 10));
	ck_assert_str_eq(route_map_access(r, "room:{room}"), "writable");
	ck_assert_str_eq(route_map_access(r, "user:{jwt.sub}"), "read-only: read_only");
	r->publish = "room:x";
	ck_assert_str_eq(route_map_access(r, "user:{jwt.sub}"), "read-only: read_only");
	r->publish = "other";
	ck_assert_str_eq(route_map_access(r, "room:{room}"), "read-only: publish cannot reach it");
	r->publish = NULL;
	ck_assert_str_eq(route_map_access(r, "room:{room}"), "read-only: publish = none");
}
END_TEST

static Suite *
route_suite(void)
{
	Suite *s = suite_create("route");
	TCase *tc;

	tc = tcase_create("pattern");
	tcase_add_loop_test(tc, test_pattern_table, 0, NROWS(pattern_rows));
	tcase_add_test(tc, test_pattern_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("match");
	tcase_add_loop_test(tc, test_match_table, 0, NROWS(match_rows));
	tcase_add_test(tc, test_match_params_in_order);
	tcase_add_test(tc, test_match_empty_config);
	suite_add_tcase(s, tc);

	tc = tcase_create("query");
	tcase_add_loop_test(tc, test_query_table, 0, NROWS(query_rows));
	tcase_add_test(tc, test_query_null);
	tcase_add_loop_test(tc, test_safe_table, 0, NROWS(safe_rows));
	suite_add_tcase(s, tc);

	tc = tcase_create("expand");
	tcase_add_loop_test(tc, test_expand_table, 0, NROWS(expand_rows));
	tcase_add_test(tc, test_expand_without_match);
	suite_add_tcase(s, tc);

	tc = tcase_create("namespaces");
	tcase_add_test(tc, test_allow_parse);
	tcase_add_test(tc, test_expand_namespaces);
	tcase_add_test(tc, test_expand_reserved);
	tcase_add_loop_test(tc, test_overlap, 0, NROWS(overlap_rows));
	tcase_add_test(tc, test_pattern);
	tcase_add_test(tc, test_read_only);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(route_suite());
}
