/* check_config.c - unit tests for config.c and config_keys.c: value parsers, defaults, every
 * error message with its FILE:LINE, the key table's consistency, and the shipped etc/wsgate.ini. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkstemp, strdup, setenv */
#endif
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* config_keys.h first: it pulls in src/config.h by a path relative to itself, which an
 * autoconf-generated config.h earlier on the include path cannot shadow. */
#include "check_runner.h"
#include "config_keys.h"
#include "config_value.h"

#define NROWS(a) (sizeof(a) / sizeof((a)[0]))
#define ECHO_ROUTE "[route /echo]\ntype = echo\n"
/* /dev/null is a readable file that is always there: the loader only checks readability */
#define CK "cert = /dev/null\nkey = /dev/null"
#define TLS_OK "[tls]\n" CK "\n"

/* ---- durations ---- */

static const struct dur_row {
	const char *in;
	int ok;
	uint64_t ms;
} dur_rows[] = {
    {"0", 1, 0},
    {"0ms", 1, 0},
    {"200ms", 1, 200},
    {"10s", 1, 10000},
    {"1m", 1, 60000},
    {"2h", 1, 7200000},
    {"10", 1, 10000}, /* bare number = seconds */
    {"1.5s", 1, 1500},
    {"1.5", 1, 1500},
    {"0.25s", 1, 250},
    {"1.5m", 1, 90000},
    {"2.0ms", 1, 2},
    {"18446744073709551615ms", 1, UINT64_MAX},
    {"", 0, 0},
    {"abc", 0, 0},
    {"-1", 0, 0},
    {"-1s", 0, 0},
    {"+1s", 0, 0},
    {"10x", 0, 0},
    {"10 s", 0, 0},
    {" 10s", 0, 0},
    {"10S", 0, 0},
    {"5d", 0, 0},
    {"s", 0, 0},
    {"ms", 0, 0},
    {".5s", 0, 0},
    {"1.s", 0, 0},
    {"1.2345s", 0, 0}, /* more than three fraction digits */
    {"1.5ms", 0, 0},   /* not a whole number of milliseconds */
    {"1e3", 0, 0},
    {"0x10", 0, 0},
    {"1,5s", 0, 0},
    {"18446744073709551616ms", 0, 0}, /* overflows while reading digits */
    {"18446744073709551615s", 0, 0},  /* overflows when scaled */
    {"5124095576030432h", 0, 0},
};

START_TEST(test_duration_rows)
{
	const struct dur_row *r = &dur_rows[_i];
	uint64_t v = 12345;
	int rc = config_parse_duration_ms(r->in, &v);

	ck_assert_msg((rc == 0) == r->ok, "'%s': rc %d, want ok=%d", r->in, rc, r->ok);
	if (r->ok)
		ck_assert_msg(v == r->ms, "'%s': got %llu, want %llu", r->in, (unsigned long long)v,
		              (unsigned long long)r->ms);
}
END_TEST

/* ---- sizes ---- */

static const struct size_row {
	const char *in;
	int ok;
	uint64_t n;
} size_rows[] = {
    {"0", 1, 0},
    {"1048576", 1, 1048576},
    {"64KiB", 1, 65536},
    {"1MiB", 1, 1048576},
    {"1GiB", 1, 1073741824},
    {"16k", 1, 16384},
    {"16K", 1, 16384},
    {"1M", 1, 1048576},
    {"1G", 1, 1073741824},
    {"17179869183G", 1, 17179869183ull << 30},
    {"", 0, 0},
    {"abc", 0, 0},
    {"-1", 0, 0},
    {"1.5MiB", 0, 0},
    {"1KB", 0, 0},
    {"1kib", 0, 0},
    {"1m", 0, 0},
    {"1g", 0, 0},
    {"1 MiB", 0, 0},
    {"1MiBx", 0, 0},
    {"MiB", 0, 0},
    {"17179869184G", 0, 0},         /* 2^64: overflows when scaled */
    {"99999999999999999999", 0, 0}, /* overflows while reading digits */
};

START_TEST(test_size_rows)
{
	const struct size_row *r = &size_rows[_i];
	uint64_t v = 12345;
	int rc = config_parse_size(r->in, &v);

	ck_assert_msg((rc == 0) == r->ok, "'%s': rc %d, want ok=%d", r->in, rc, r->ok);
	if (r->ok)
		ck_assert_msg(v == r->n, "'%s': got %llu, want %llu", r->in, (unsigned long long)v,
		              (unsigned long long)r->n);
}
END_TEST

/* ---- booleans ---- */

static const struct bool_row {
	const char *in;
	int ok;
	int v;
} bool_rows[] = {
    {"yes", 1, 1},    {"true", 1, 1}, {"on", 1, 1},    {"1", 1, 1},   {"YES", 1, 1},
    {"True", 1, 1},   {"no", 1, 0},   {"false", 1, 0}, {"off", 1, 0}, {"0", 1, 0},
    {"OFF", 1, 0},    {"", 0, 0},     {"y", 0, 0},     {"2", 0, 0},   {"yess", 0, 0},
    {"enable", 0, 0}, {" yes", 0, 0},
};

START_TEST(test_bool_rows)
{
	const struct bool_row *r = &bool_rows[_i];
	int v = -1, rc = config_parse_bool(r->in, &v);

	ck_assert_msg((rc == 0) == r->ok, "'%s': rc %d, want ok=%d", r->in, rc, r->ok);
	if (r->ok)
		ck_assert_int_eq(v, r->v);
}
END_TEST

/* ---- listen addresses ---- */

#define HOST63 "h23456789012345678901234567890123456789012345678901234567890123"

static const struct listen_row {
	const char *in;
	int ok;
	const char *host, *port;
	int tls;
} listen_rows[] = {
    {"127.0.0.1:8080", 1, "127.0.0.1", "8080", 0},
    {"[::1]:8080", 1, "::1", "8080", 0},
    {"[::]:443 tls", 1, "::", "443", 1},
    {"0.0.0.0:8443 tls", 1, "0.0.0.0", "8443", 1},
    {"0.0.0.0:8443\ttls", 1, "0.0.0.0", "8443", 1},
    {":8080", 1, "0.0.0.0", "8080", 0},
    {"8080", 1, "0.0.0.0", "8080", 0},
    {"localhost:8080", 1, "localhost", "8080", 0},
    {"gw.example.com:65535", 1, "gw.example.com", "65535", 0},
    {"my_service:1", 1, "my_service", "1", 0},
    {"08080", 1, "0.0.0.0", "8080", 0},
    {"  127.0.0.1:80   tls  ", 1, "127.0.0.1", "80", 1},
    {HOST63 ":80", 1, HOST63, "80", 0},
    {"", 0, NULL, NULL, 0},
    {"tls", 0, NULL, NULL, 0},
    {"127.0.0.1", 0, NULL, NULL, 0},
    {"127.0.0.1:", 0, NULL, NULL, 0},
    {"127.0.0.1:0", 0, NULL, NULL, 0},
    {"127.0.0.1:65536", 0, NULL, NULL, 0},
    {"127.0.0.1:123456", 0, NULL, NULL, 0},
    {"127.0.0.1:-1", 0, NULL, NULL, 0},
    {"127.0.0.1:80x", 0, NULL, NULL, 0},
    {"::1:8080", 0, NULL, NULL, 0},
    {"[::1]", 0, NULL, NULL, 0},
    {"[::1]8080", 0, NULL, NULL, 0},
    {"[::1:8080", 0, NULL, NULL, 0},
    {"[]:80", 0, NULL, NULL, 0},
    {"[1.2.3.4]:80", 0, NULL, NULL, 0},
    {"256.1.1.1:80", 0, NULL, NULL, 0},
    {"1.2.3:80", 0, NULL, NULL, 0},
    {"123456:80", 0, NULL, NULL, 0},
    {"-bad.com:80", 0, NULL, NULL, 0},
    {"bad-.com:80", 0, NULL, NULL, 0},
    {"a..b:80", 0, NULL, NULL, 0},
    {".a:80", 0, NULL, NULL, 0},
    {"a b:80", 0, NULL, NULL, 0},
    {"a/b:80", 0, NULL, NULL, 0},
    {"127.0.0.1:8080 tl", 0, NULL, NULL, 0},
    {"127.0.0.1:8080 TLS", 0, NULL, NULL, 0},
    {"127.0.0.1:8080 tlsx", 0, NULL, NULL, 0},
    {"127.0.0.1:8080 tls x", 0, NULL, NULL, 0},
    {"x" HOST63 ":80", 0, NULL, NULL, 0}, /* 64 characters do not fit */
};

START_TEST(test_listen_rows)
{
	const struct listen_row *r = &listen_rows[_i];
	struct config_listen l;
	int rc = config_parse_listen(r->in, &l);

	ck_assert_msg((rc == 0) == r->ok, "'%s': rc %d, want ok=%d", r->in, rc, r->ok);
	if (!r->ok)
		return;
	ck_assert_str_eq(l.host, r->host);
	ck_assert_str_eq(l.port, r->port);
	ck_assert_int_eq(l.tls, r->tls);
}
END_TEST

/* ---- whole numbers ---- */

static const struct uint_row {
	const char *in;
	int ok;
	uint64_t v;
} uint_rows[] = {
    {"0", 1, 0},
    {"42", 1, 42},
    {"007", 1, 7},
    {"18446744073709551615", 1, UINT64_MAX},
    {"", 0, 0},
    {"-1", 0, 0},
    {"+1", 0, 0},
    {"1.0", 0, 0},
    {"1k", 0, 0},
    {" 1", 0, 0},
    {"1 ", 0, 0},
    {"auto", 0, 0}, /* "auto" is the key's business (CFG_F_AUTO) */
    {"18446744073709551616", 0, 0},
};

START_TEST(test_uint_rows)
{
	const struct uint_row *r = &uint_rows[_i];
	uint64_t v = 12345;
	int rc = config_parse_uint(r->in, &v);

	ck_assert_msg((rc == 0) == r->ok, "'%s': rc %d, want ok=%d", r->in, rc, r->ok);
	if (r->ok)
		ck_assert_uint_eq(v, r->v);
}
END_TEST

/* ---- redis URLs ---- */

static const struct redis_row {
	const char *in;
	int ok;
	const char *host, *port;
	int db;
	const char *password;
} redis_rows[] = {
    {"redis://127.0.0.1:6379/0", 1, "127.0.0.1", "6379", 0, NULL},
    {"redis://localhost", 1, "localhost", "6379", 0, NULL},
    {"redis://r.example:6380/3", 1, "r.example", "6380", 3, NULL},
    {"redis://:s3cret@r:1", 1, "r", "1", 0, "s3cret"},
    {"redis://:p@ss@r/2", 1, "r", "6379", 2, "p@ss"}, /* the last '@' ends it */
    {"redis://:p/w:x@r", 1, "r", "6379", 0, "p/w:x"},
    {"redis://[::1]:7000/", 1, "::1", "7000", 0, NULL},
    {"redis://[::1]", 1, "::1", "6379", 0, NULL},
    {"redis://h/15", 1, "h", "6379", 15, NULL},
    {"redis://h/1000000", 1, "h", "6379", 1000000, NULL},
    {"", 0, NULL, NULL, 0, NULL},
    {"rediss://h", 1, "h", "6379", 0, NULL}, /* TLS: redis_link over OpenSSL */
    {"rediss://:pw@h:7/3", 1, "h", "7", 3, "pw"},
    {"http://h", 0, NULL, NULL, 0, NULL},
    {"REDIS://h", 0, NULL, NULL, 0, NULL},
    {"redis:/h", 0, NULL, NULL, 0, NULL},
    {"redis://", 0, NULL, NULL, 0, NULL},
    {"redis:///0", 0, NULL, NULL, 0, NULL},
    {"redis://:pw@", 0, NULL, NULL, 0, NULL},
    {"redis://user:pw@h", 0, NULL, NULL, 0, NULL},
    {"redis://:@h", 0, NULL, NULL, 0, NULL},
    {"redis://h:", 0, NULL, NULL, 0, NULL},
    {"redis://h:0", 0, NULL, NULL, 0, NULL},
    {"redis://h:65536", 0, NULL, NULL, 0, NULL},
    {"redis://h:x", 0, NULL, NULL, 0, NULL},
    {"redis://h/x", 0, NULL, NULL, 0, NULL},
    {"redis://h/-1", 0, NULL, NULL, 0, NULL},
    {"redis://h/1/2", 0, NULL, NULL, 0, NULL},
    {"redis://h/1000001", 0, NULL, NULL, 0, NULL},
    {"redis://::1:6379", 0, NULL, NULL, 0, NULL},
    {"redis://[::1", 0, NULL, NULL, 0, NULL},
    {"redis://[::1]x", 0, NULL, NULL, 0, NULL},
    {"redis://[nope]:1", 0, NULL, NULL, 0, NULL},
    {"redis://a..b", 0, NULL, NULL, 0, NULL},
    {"redis://h h", 0, NULL, NULL, 0, NULL},
    {"redis://h\t", 0, NULL, NULL, 0, NULL},
};

START_TEST(test_redis_url_rows)
{
	const struct redis_row *r = &redis_rows[_i];
	struct config_redis red;
	const char *why = NULL;
	int rc;

	memset(&red, 0, sizeof(red));
	rc = config_parse_redis_url(r->in, &red, &why);
	ck_assert_msg((rc == 0) == r->ok, "'%s': rc %d, want ok=%d", r->in, rc, r->ok);
	if (!r->ok) {
		ck_assert_ptr_nonnull(why);
		ck_assert_ptr_null(red.url); /* a bad URL leaves the previous value alone */
		return;
	}
	ck_assert_str_eq(red.url, r->in);
	ck_assert_str_eq(red.host, r->host);
	ck_assert_str_eq(red.port, r->port);
	ck_assert_int_eq(red.db, r->db);
	if (r->password == NULL)
		ck_assert_ptr_null(red.password);
	else
		ck_assert_str_eq(red.password, r->password);
	/* a second URL replaces the first one's allocations (ASan would see a leak) */
	ck_assert_int_eq(config_parse_redis_url("redis://:x@other", &red, &why), 0);
	ck_assert_str_eq(red.password, "x");
	free(red.url);
	free(red.password);
}
END_TEST

/* ---- backend URLs ---- */

static const struct backend_row {
	const char *in;
	int ok;
	enum backend_scheme scheme;
	const char *host, *port, *path;
} backend_rows[] = {
    {"ws://127.0.0.1:9000/socket", 1, BACKEND_WS, "127.0.0.1", "9000", "/socket"},
    {"ws://app", 1, BACKEND_WS, "app", "80", "/"},
    {"wss://app.example", 1, BACKEND_WSS, "app.example", "443", "/"},
    {"wss://app:8443/a/b?x=1&y=2", 1, BACKEND_WSS, "app", "8443", "/a/b?x=1&y=2"},
    {"ws://h?x=1", 1, BACKEND_WS, "h", "80", "/?x=1"},
    {"ws://h/", 1, BACKEND_WS, "h", "80", "/"},
    {"ws://[::1]:9000/s", 1, BACKEND_WS, "::1", "9000", "/s"},
    {"wss://[::1]", 1, BACKEND_WSS, "::1", "443", "/"},
    {"tcp://10.0.0.1:6000", 1, BACKEND_TCP, "10.0.0.1", "6000", NULL},
    {"tcp://[fe80::1]:1", 1, BACKEND_TCP, "fe80::1", "1", NULL},
    {"ws://my_svc:080/x", 1, BACKEND_WS, "my_svc", "80", "/x"},
    {"", 0, 0, NULL, NULL, NULL},
    {"http://h", 0, 0, NULL, NULL, NULL},
    {"WS://h", 0, 0, NULL, NULL, NULL},
    {"ws:/h", 0, 0, NULL, NULL, NULL},
    {"ws://", 0, 0, NULL, NULL, NULL},
    {"ws:///x", 0, 0, NULL, NULL, NULL},
    {"ws://:80", 0, 0, NULL, NULL, NULL},
    {"ws://h:", 0, 0, NULL, NULL, NULL},
    {"ws://h:0", 0, 0, NULL, NULL, NULL},
    {"ws://h:65536", 0, 0, NULL, NULL, NULL},
    {"ws://h:8o", 0, 0, NULL, NULL, NULL},
    {"tcp://h", 0, 0, NULL, NULL, NULL},
    {"tcp://h:1/x", 0, 0, NULL, NULL, NULL},
    {"tcp://h:1?x", 0, 0, NULL, NULL, NULL},
    {"ws://u@h", 0, 0, NULL, NULL, NULL},
    {"ws://u:p@h/", 0, 0, NULL, NULL, NULL},
    {"ws://h/a b", 0, 0, NULL, NULL, NULL},
    {"ws://h/#frag", 0, 0, NULL, NULL, NULL},
    {"ws://h/\x01", 0, 0, NULL, NULL, NULL},
    {"ws://[::1", 0, 0, NULL, NULL, NULL},
    {"ws://[::1]x/", 0, 0, NULL, NULL, NULL},
    {"ws://::1/", 0, 0, NULL, NULL, NULL},
    {"ws://-h/", 0, 0, NULL, NULL, NULL},
    {"ws://999.1.1.1/", 0, 0, NULL, NULL, NULL},
};

START_TEST(test_backend_rows)
{
	const struct backend_row *r = &backend_rows[_i];
	struct config_backend b;
	const char *why = NULL;
	int rc = config_parse_backend(r->in, strlen(r->in), &b, &why);

	ck_assert_msg((rc == 0) == r->ok, "'%s': rc %d, want ok=%d", r->in, rc, r->ok);
	if (!r->ok) {
		ck_assert_ptr_nonnull(why);
		return;
	}
	ck_assert_int_eq(b.scheme, r->scheme);
	ck_assert_str_eq(b.host, r->host);
	ck_assert_str_eq(b.port, r->port);
	if (r->path == NULL)
		ck_assert_ptr_null(b.path);
	else
		ck_assert_str_eq(b.path, r->path);
	ck_assert_str_eq(b.url, r->in);
	config_backend_clear(&b);
	ck_assert_ptr_null(b.url);
}
END_TEST

/* ---- origins ---- */

static const struct origin_row {
	const char *in;
	int ok;
} origin_rows[] = {
    {"*", 1},
    {"https://example.org", 1},
    {"http://localhost:3000", 1},
    {"https://*.example.org", 1},
    {"https://*.example.org:8443", 1},
    {"https://[::1]:8443", 1},
    {"http://10.0.0.1", 1},
    {"", 0},
    {"**", 0},
    {"example.org", 0},
    {"ftp://example.org", 0},
    {"HTTPS://example.org", 0}, /* browsers send the scheme in lower case */
    {"https://", 0},
    {"https://example.org/", 0},
    {"https://example.org/app", 0},
    {"https://*", 0},
    {"https://*.", 0},
    {"https://a.*.b", 0},
    {"https://*example.org", 0},
    {"https://ex ample.org", 0},
    {"https://h:", 0},
    {"https://h:0", 0},
    {"https://h:99999", 0},
    {"https://u@h", 0},
};

START_TEST(test_origin_rows)
{
	const struct origin_row *r = &origin_rows[_i];
	const char *why = NULL;
	int rc = config_parse_origin(r->in, strlen(r->in), &why);

	ck_assert_msg((rc == 0) == r->ok, "'%s': rc %d, want ok=%d", r->in, rc, r->ok);
	if (!r->ok)
		ck_assert_ptr_nonnull(why);
}
END_TEST

/* ---- channel templates, channels, tokens ---- */

#define T129                                                                                       \
	"c23456789012345678901234567890123456789012345678901234567890123456789012345678901"        \
	"234567890123456789012345678901234567890123456789"

static const struct tmpl_row {
	const char *in;
	int ok;
} tmpl_rows[] = {
    {"chat", 1},
    {"room:{room}", 1},
    {"{room}", 1},
    {"user:{jwt.sub}", 1},
    {"q:{query.id}", 1},
    {"a.b-c_d:{x}{y}", 1},
    {"{query.a_b}:{jwt.tenant_id}", 1},
    {&T129[1], 1}, /* 128 characters */
    {"", 0},
    {T129, 0},
    {"a b", 0},
    {"a/b", 0},
    {"caf\xc3\xa9", 0},
    {"room:{", 0},
    {"room:}", 0},
    {"room:{room", 0},
    {"{}", 0},
    {"{a-b}", 0},
    {"{a.b}", 0},
    {"{foo.bar}", 0},
    {"{query.}", 0},
    {"{jwt.}", 0},
    {"{query}", 1}, /* a path placeholder that happens to be called "query" */
    {"{a{b}}", 0},
    {"{{a}}", 0},
};

START_TEST(test_template_rows)
{
	const struct tmpl_row *r = &tmpl_rows[_i];
	const char *why = NULL;
	int rc = config_parse_template(r->in, strlen(r->in), &why);

	ck_assert_msg((rc == 0) == r->ok, "'%s': rc %d, want ok=%d", r->in, rc, r->ok);
	if (!r->ok)
		ck_assert_ptr_nonnull(why);
}
END_TEST

START_TEST(test_channel_and_token)
{
	const char *why = NULL;

	ck_assert_int_eq(config_parse_channel("wsgate:prod.v1-a_b", 18, &why), 0);
	ck_assert_int_eq(config_parse_channel("", 0, &why), 0);
	ck_assert_int_eq(config_parse_channel("a b", 3, &why), -1);
	ck_assert_str_eq(why, "use only [A-Za-z0-9_.:-]");
	ck_assert_int_eq(config_parse_channel("{x}", 3, &why), -1);
	ck_assert_int_eq(config_parse_token("chat.v2", 7, &why), 0);
	ck_assert_int_eq(config_parse_token("a b", 3, &why), -1);
	ck_assert_int_eq(config_parse_token("a,b", 3, &why), -1);
	ck_assert_int_eq(config_parse_token("", 0, &why), -1);
}
END_TEST

/* Placeholders a route can fill: {name} from its path, {query.x} always, {jwt.x} with auth. */
static const struct unbound_row {
	const char *tmpl, *path;
	int jwt;
	int want;
	const char *ph;
} unbound_rows[] = {
    {"chat", "/chat", 0, 0, NULL},
    {"room:{room}", "/rooms/{room}", 0, 0, NULL},
    {"{a}:{b}", "/{a}/x/{b}", 0, 0, NULL},
    {"q:{query.id}", "/chat", 0, 0, NULL},
    {"u:{jwt.sub}", "/chat", 1, 0, NULL},
    {"u:{jwt.sub}", "/chat", 0, 2, "{jwt.sub}"},
    {"room:{x}", "/rooms/{room}", 0, 1, "{x}"},
    {"room:{roo}", "/rooms/{room}", 0, 1, "{roo}"},
    {"room:{room}:{id}", "/rooms/{room}", 1, 1, "{id}"},
    {"{rooms}", "/rooms/{room}", 0, 1, "{rooms}"},
};

START_TEST(test_unbound_rows)
{
	const struct unbound_row *r = &unbound_rows[_i];
	char ph[64] = "";

	ck_assert_int_eq(config_template_unbound(r->tmpl, r->path, r->jwt, ph, sizeof(ph)),
	                 r->want);
	if (r->ph != NULL)
		ck_assert_str_eq(ph, r->ph);
}
END_TEST

START_TEST(test_listen_helpers)
{
	struct config_listen a[3], b[1];
	char buf[80];

	ck_assert_int_eq(config_parse_listen("Localhost:80", &a[0]), 0);
	ck_assert_int_eq(config_parse_listen("[::1]:80", &a[1]), 0);
	ck_assert_int_eq(config_parse_listen("localhost:80 tls", &a[2]), 0);
	ck_assert_int_eq(config_parse_listen("[::1]:80", &b[0]), 0);
	ck_assert_ptr_null(config_listen_dup(a, 0, NULL, 0));
	ck_assert_ptr_null(config_listen_dup(a, 1, NULL, 0));
	ck_assert_ptr_eq(config_listen_dup(a, 2, NULL, 0), &a[0]); /* host names: any case */
	ck_assert_ptr_eq(config_listen_dup(a, 1, b, 1), &b[0]);
	ck_assert_str_eq(config_listen_fmt(buf, sizeof(buf), &a[1]), "[::1]:80");
	ck_assert_str_eq(config_listen_fmt(buf, sizeof(buf), &a[0]), "Localhost:80");
}
END_TEST

START_TEST(test_readable)
{
	ck_assert_int_eq(config_value_readable("/dev/null"), 0);
	ck_assert_int_eq(config_value_readable("/nonexistent/x.pem"), ENOENT);
	ck_assert_int_eq(config_value_readable("/"), EISDIR);
}
END_TEST

/* ---- loading helpers ---- */

static struct config *
load_ok(const char *text)
{
	struct config *cfg = NULL;
	struct config_errors errs = {NULL, 0};
	int rc = config_load_string("t.ini", text, &cfg, &errs);

	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "unexpected: %s\n", errs.msgs[i]);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(errs.n, 0);
	ck_assert_ptr_nonnull(cfg);
	config_errors_free(&errs);
	return cfg;
}

/* Loads text and requires exactly the messages in want (NULL-terminated), in order. */
static void
expect_errors(const char *text, const char *const *want)
{
	struct config *cfg = (struct config *)1;
	struct config_errors errs = {NULL, 0};
	size_t nwant = 0, i;
	int rc = config_load_string("t.ini", text, &cfg, &errs), same;

	while (want[nwant] != NULL)
		nwant++;
	same = errs.n == nwant;
	for (i = 0; same && i < nwant; i++)
		same = strcmp(errs.msgs[i], want[i]) == 0;
	if (!same) {
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "  got:  %s\n", errs.msgs[i]);
		for (i = 0; i < nwant; i++)
			fprintf(stderr, "  want: %s\n", want[i]);
	}
	ck_assert_int_eq(rc, -1);
	ck_assert_ptr_null(cfg);
	ck_assert_msg(same, "error list differs (see stderr) for:\n%s", text);
	config_errors_free(&errs);
	ck_assert_uint_eq(errs.n, 0);
}

/* ---- defaults and values ---- */

START_TEST(test_defaults)
{
	struct config *cfg = load_ok(ECHO_ROUTE);
	const struct config_route *r;

	ck_assert_str_eq(cfg->file, "t.ini");
	ck_assert_uint_eq(cfg->nlistens, 1);
	ck_assert_str_eq(cfg->listens[0].host, "0.0.0.0");
	ck_assert_str_eq(cfg->listens[0].port, "8080");
	ck_assert_int_eq(cfg->listens[0].tls, 0);
	ck_assert_uint_eq(cfg->max_message_size, 1048576);
	ck_assert_uint_eq(cfg->handshake_timeout_ms, 10000);
	ck_assert_uint_eq(cfg->shutdown_timeout_ms, 10000);
	ck_assert_uint_eq(cfg->close_timeout_ms, 5000);
	ck_assert_int_eq(cfg->log_level, LOG_LVL_INFO);
	ck_assert_int_eq(cfg->log_format, LOG_FORMAT_TEXT);
	ck_assert_uint_eq(cfg->max_connections, 100000);
	ck_assert_uint_eq(cfg->max_connections_per_ip, 0);
	ck_assert_uint_eq(cfg->accept_rate_per_ip, 0);
	ck_assert_uint_eq(cfg->workers, 0);
	ck_assert_uint_eq(cfg->nadmin_listens, 0);
	ck_assert_ptr_null(cfg->admin_listens);
	ck_assert_uint_eq(cfg->drain_window_ms, 10000);
	ck_assert_uint_eq(cfg->ping_interval_ms, 25000);
	ck_assert_uint_eq(cfg->pong_timeout_ms, 10000);
	ck_assert_uint_eq(cfg->idle_timeout_ms, 0);
	ck_assert_ptr_null(cfg->app_message);
	ck_assert_uint_eq(cfg->app_message_len, 0);
	/* [redis] absent: the defaults are there, but not enabled */
	ck_assert_int_eq(cfg->redis.enabled, 0);
	ck_assert_str_eq(cfg->redis.url, "redis://127.0.0.1:6379/0");
	ck_assert_str_eq(cfg->redis.host, "127.0.0.1");
	ck_assert_str_eq(cfg->redis.port, "6379");
	ck_assert_int_eq(cfg->redis.db, 0);
	ck_assert_ptr_null(cfg->redis.password);
	ck_assert_uint_eq(cfg->redis.connect_timeout_ms, 2000);
	ck_assert_ptr_null(cfg->redis.channel_prefix);
	ck_assert_uint_eq(cfg->redis.probe_interval_ms, 2000);
	ck_assert_uint_eq(cfg->redis.probe_timeout_ms, 5000);
	ck_assert_uint_eq(cfg->redis.publish_queue, 1048576);
	ck_assert_uint_eq(cfg->redis.reconnect_max_ms, 5000);
	ck_assert_uint_eq(cfg->redis.max_message_size, 8u << 20);
	ck_assert_uint_eq(cfg->ntls_certs, 0);
	ck_assert_ptr_null(cfg->tls_certs);
	ck_assert_int_eq(cfg->tls_min_version, TLS_V1_2);
	ck_assert_ptr_null(cfg->tls_ciphers);
	ck_assert_uint_eq(cfg->nroutes, 1);
	r = &cfg->routes[0];
	ck_assert_str_eq(r->path, "/echo");
	ck_assert_int_eq(r->type, ROUTE_ECHO);
	ck_assert_uint_eq(r->nsubprotocols, 0);
	ck_assert_int_eq(r->line, 1);
	ck_assert_uint_eq(r->norigins, 0);
	ck_assert_int_eq(r->auth, AUTH_NONE);
	ck_assert_ptr_null(r->jwt_secret);
	ck_assert_ptr_null(r->jwt_public_key);
	ck_assert_uint_eq(r->njwt_from, 3);
	ck_assert_int_eq(r->jwt_from[0], JWT_FROM_HEADER);
	ck_assert_int_eq(r->jwt_from[1], JWT_FROM_QUERY);
	ck_assert_int_eq(r->jwt_from[2], JWT_FROM_COOKIE);
	ck_assert_uint_eq(r->max_messages_per_second, 0);
	ck_assert_uint_eq(r->nsubscribe, 0);
	ck_assert_ptr_null(r->publish);
	ck_assert_int_eq(r->envelope, ENVELOPE_RAW);
	ck_assert_int_eq(r->message_type, MSGTYPE_AUTO);
	ck_assert_int_eq(r->announce_id, 0);
	ck_assert_uint_eq(r->max_queue, 1048576);
	ck_assert_int_eq(r->slow_consumer, SLOW_CLOSE);
	ck_assert_uint_eq(r->nbackends, 0);
	ck_assert_int_eq(r->balance, BALANCE_ROUND_ROBIN);
	ck_assert_uint_eq(r->connect_timeout_ms, 3000);
	ck_assert_uint_eq(r->retries, 2);
	ck_assert_int_eq(r->forward_headers, 1);
	ck_assert_ptr_null(r->ca_file);
	ck_assert_uint_eq(r->health_check_ms, 0);
	ck_assert_uint_eq(r->fail_timeout_ms, 10000);
	config_free(cfg);
}
END_TEST

START_TEST(test_every_key_set)
{
	struct config *cfg = load_ok(
	    "[gateway]\n"
	    "listen = 127.0.0.1:8080\n"
	    "listen = [::1]:8443 tls  ; a comment\n"
	    "max_message_size = 64KiB\n"
	    "handshake_timeout = 2s\n"
	    "shutdown_timeout = 0\n"
	    "close_timeout = 1.5s\n"
	    "log_level = debug\n"
	    "log_format = json\n"
	    "max_connections = 5000\n"
	    "max_connections_per_ip = 50\n"
	    "accept_rate_per_ip = 10\n"
	    "workers = 4\n"
	    "admin_listen = 127.0.0.1:9090\n"
	    "admin_listen = [::1]:9090\n"
	    "drain_window = 30s\n"
	    "[heartbeat]\n"
	    "ping_interval = 200ms\n"
	    "pong_timeout = 1m\n"
	    "idle_timeout = 2h\n"
	    "app_message = {\"type\":1,\"message\":\"心跳检测\"}\n"
	    "[redis]\n" /* 22 */
	    "url = redis://:pw@redis.internal:6380/2\n"
	    "connect_timeout = 500ms\n"
	    "channel_prefix = wsgate:prod:\n"
	    "probe_interval = 1s\n"
	    "probe_timeout = 3s\n"
	    "publish_queue = 64KiB\n"
	    "reconnect_max = 30s\n"
	    "[tls *.example.org]\n" /* 30 */
	    "cert = /dev/null\n"
	    "key = /dev/null\n"
	    "[tls]\n" /* 33 */
	    "cert = /dev/null\n"
	    "key = /dev/null\n"
	    "min_version = 1.3\n"
	    "ciphers = ECDHE+AESGCM:!aNULL\n"
	    "[route /rooms/{room}]\n" /* 38 */
	    "type = pubsub\n"
	    "subprotocols = chat.v2 , chat.v1,json\n"
	    "origins = https://app.example.org, https://*.example.org:8443, http://localhost:3000\n"
	    "auth = jwt\n"
	    "jwt_secret = k3y\n"
	    "jwt_from = cookie, header\n"
	    "max_messages_per_second = 20\n"
	    "subscribe = room:{room}, user:{jwt.sub}, q:{query.topic}\n"
	    "publish = room:{room}\n"
	    "envelope = json\n"
	    "message_type = text\n"
	    "announce_id = yes\n"
	    "max_queue = 4KiB\n"
	    "slow_consumer = drop_oldest\n"
	    "[route /app]\n" /* 53 */
	    "type = proxy\n"
	    "backend = ws://127.0.0.1:9000/socket?v=2, wss://[::1]\n"
	    "backend = tcp://db.internal:5432\n"
	    "balance = least_conn\n"
	    "connect_timeout = 1s\n"
	    "retries = 0\n"
	    "forward_headers = no\n"
	    "ca_file = /dev/null\n"
	    "health_check = 5\n"
	    "fail_timeout = 1m\n"
	    "auth = jwt\n"
	    "jwt_public_key = /dev/null\n");
	const struct config_route *r, *p;

	ck_assert_uint_eq(cfg->nlistens, 2);
	ck_assert_str_eq(cfg->listens[0].host, "127.0.0.1");
	ck_assert_int_eq(cfg->listens[0].line, 2);
	ck_assert_str_eq(cfg->listens[1].host, "::1");
	ck_assert_str_eq(cfg->listens[1].port, "8443");
	ck_assert_int_eq(cfg->listens[1].tls, 1);
	ck_assert_int_eq(cfg->listens[1].line, 3);
	ck_assert_uint_eq(cfg->max_message_size, 65536);
	ck_assert_uint_eq(cfg->handshake_timeout_ms, 2000);
	ck_assert_uint_eq(cfg->shutdown_timeout_ms, 0);
	ck_assert_uint_eq(cfg->close_timeout_ms, 1500);
	ck_assert_int_eq(cfg->log_level, LOG_LVL_DEBUG);
	ck_assert_int_eq(cfg->log_format, LOG_FORMAT_JSON);
	ck_assert_uint_eq(cfg->max_connections, 5000);
	ck_assert_uint_eq(cfg->max_connections_per_ip, 50);
	ck_assert_uint_eq(cfg->accept_rate_per_ip, 10);
	ck_assert_uint_eq(cfg->workers, 4);
	ck_assert_uint_eq(cfg->nadmin_listens, 2);
	ck_assert_str_eq(cfg->admin_listens[0].host, "127.0.0.1");
	ck_assert_str_eq(cfg->admin_listens[0].port, "9090");
	ck_assert_int_eq(cfg->admin_listens[0].line, 14);
	ck_assert_str_eq(cfg->admin_listens[1].host, "::1");
	ck_assert_uint_eq(cfg->drain_window_ms, 30000);
	ck_assert_uint_eq(cfg->ping_interval_ms, 200);
	ck_assert_uint_eq(cfg->pong_timeout_ms, 60000);
	ck_assert_uint_eq(cfg->idle_timeout_ms, 7200000);
	ck_assert_str_eq(cfg->app_message, "{\"type\":1,\"message\":\"心跳检测\"}");
	ck_assert_uint_eq(cfg->app_message_len, strlen(cfg->app_message));

	ck_assert_int_eq(cfg->redis.enabled, 1);
	ck_assert_str_eq(cfg->redis.url, "redis://:pw@redis.internal:6380/2");
	ck_assert_str_eq(cfg->redis.host, "redis.internal");
	ck_assert_str_eq(cfg->redis.port, "6380");
	ck_assert_int_eq(cfg->redis.db, 2);
	ck_assert_str_eq(cfg->redis.password, "pw");
	ck_assert_uint_eq(cfg->redis.connect_timeout_ms, 500);
	ck_assert_str_eq(cfg->redis.channel_prefix, "wsgate:prod:");
	ck_assert_uint_eq(cfg->redis.probe_interval_ms, 1000);
	ck_assert_uint_eq(cfg->redis.probe_timeout_ms, 3000);
	ck_assert_uint_eq(cfg->redis.publish_queue, 65536);
	ck_assert_uint_eq(cfg->redis.reconnect_max_ms, 30000);

	/* the default certificate first, though the file names it second */
	ck_assert_uint_eq(cfg->ntls_certs, 2);
	ck_assert_ptr_null(cfg->tls_certs[0].name);
	ck_assert_str_eq(cfg->tls_certs[0].cert, "/dev/null");
	ck_assert_str_eq(cfg->tls_certs[0].key, "/dev/null");
	ck_assert_int_eq(cfg->tls_certs[0].line, 33);
	ck_assert_str_eq(cfg->tls_certs[1].name, "*.example.org");
	ck_assert_int_eq(cfg->tls_certs[1].line, 30);
	ck_assert_int_eq(cfg->tls_min_version, TLS_V1_3);
	ck_assert_str_eq(cfg->tls_ciphers, "ECDHE+AESGCM:!aNULL");

	ck_assert_uint_eq(cfg->nroutes, 2);
	r = &cfg->routes[0];
	ck_assert_str_eq(r->path, "/rooms/{room}");
	ck_assert_int_eq(r->type, ROUTE_PUBSUB);
	ck_assert_int_eq(r->line, 38);
	ck_assert_uint_eq(r->nsubprotocols, 3);
	ck_assert_str_eq(r->subprotocols[0], "chat.v2");
	ck_assert_str_eq(r->subprotocols[1], "chat.v1");
	ck_assert_str_eq(r->subprotocols[2], "json");
	ck_assert_uint_eq(r->norigins, 3);
	ck_assert_str_eq(r->origins[0], "https://app.example.org");
	ck_assert_str_eq(r->origins[1], "https://*.example.org:8443");
	ck_assert_str_eq(r->origins[2], "http://localhost:3000");
	ck_assert_int_eq(r->auth, AUTH_JWT);
	ck_assert_str_eq(r->jwt_secret, "k3y");
	ck_assert_ptr_null(r->jwt_public_key);
	ck_assert_uint_eq(r->njwt_from, 2);
	ck_assert_int_eq(r->jwt_from[0], JWT_FROM_COOKIE);
	ck_assert_int_eq(r->jwt_from[1], JWT_FROM_HEADER);
	ck_assert_uint_eq(r->max_messages_per_second, 20);
	ck_assert_uint_eq(r->nsubscribe, 3);
	ck_assert_str_eq(r->subscribe[0], "room:{room}");
	ck_assert_str_eq(r->subscribe[1], "user:{jwt.sub}");
	ck_assert_str_eq(r->subscribe[2], "q:{query.topic}");
	ck_assert_str_eq(r->publish, "room:{room}");
	ck_assert_int_eq(r->envelope, ENVELOPE_JSON);
	ck_assert_int_eq(r->message_type, MSGTYPE_TEXT);
	ck_assert_int_eq(r->announce_id, 1);
	ck_assert_uint_eq(r->max_queue, 4096);
	ck_assert_int_eq(r->slow_consumer, SLOW_DROP_OLDEST);

	p = &cfg->routes[1];
	ck_assert_int_eq(p->type, ROUTE_PROXY);
	ck_assert_uint_eq(p->nbackends, 3);
	ck_assert_int_eq(p->backends[0].scheme, BACKEND_WS);
	ck_assert_str_eq(p->backends[0].host, "127.0.0.1");
	ck_assert_str_eq(p->backends[0].port, "9000");
	ck_assert_str_eq(p->backends[0].path, "/socket?v=2");
	ck_assert_str_eq(p->backends[0].url, "ws://127.0.0.1:9000/socket?v=2");
	ck_assert_int_eq(p->backends[1].scheme, BACKEND_WSS);
	ck_assert_str_eq(p->backends[1].host, "::1");
	ck_assert_str_eq(p->backends[1].port, "443");
	ck_assert_str_eq(p->backends[1].path, "/");
	ck_assert_int_eq(p->backends[2].scheme, BACKEND_TCP);
	ck_assert_str_eq(p->backends[2].host, "db.internal");
	ck_assert_str_eq(p->backends[2].port, "5432");
	ck_assert_ptr_null(p->backends[2].path);
	ck_assert_int_eq(p->balance, BALANCE_LEAST_CONN);
	ck_assert_uint_eq(p->connect_timeout_ms, 1000);
	ck_assert_uint_eq(p->retries, 0);
	ck_assert_int_eq(p->forward_headers, 0);
	ck_assert_str_eq(p->ca_file, "/dev/null");
	ck_assert_uint_eq(p->health_check_ms, 5000);
	ck_assert_uint_eq(p->fail_timeout_ms, 60000);
	ck_assert_int_eq(p->auth, AUTH_JWT);
	ck_assert_str_eq(p->jwt_public_key, "/dev/null");
	ck_assert_ptr_null(p->jwt_secret);
	config_free(cfg);
}
END_TEST

/* Rows that load: how the reader and inih treat the text around the values. */
static const struct ok_row {
	const char *name;
	const char *text;
	uint64_t ping_ms; /* heartbeat ping_interval after loading */
	size_t nroutes;
} ok_rows[] = {
    {"inline comment after a value", "[heartbeat]\nping_interval = 200ms ; fast\n" ECHO_ROUTE, 200,
     1},
    {"'#' and ';' comment lines", "# a\n; b\n[heartbeat]\n  ; c\nping_interval = 1s\n" ECHO_ROUTE,
     1000, 1},
    {"indented keys are keys, not continuations",
     "[heartbeat]\n  pong_timeout = 5s\n  ping_interval = 3s\n" ECHO_ROUTE, 3000, 1},
    {"CRLF line ends and a BOM",
     "\xef\xbb\xbf[heartbeat]\r\nping_interval = 4s\r\n"
     "[route /echo]\r\ntype = echo\r\n",
     4000, 1},
    {"no newline at the end", "[heartbeat]\nping_interval = 5s\n[route /echo]\ntype = echo", 5000,
     1},
    {"[gateway] twice merges",
     "[gateway]\nlog_level = warn\n[heartbeat]\n[gateway]\n"
     "max_message_size = 10\n" ECHO_ROUTE,
     25000, 1},
    {"values are trimmed", "[heartbeat]\nping_interval =  \t 8s \t \n" ECHO_ROUTE, 8000, 1},
    {"name:value form", "[heartbeat]\nping_interval: 6s\n" ECHO_ROUTE, 6000, 1},
    {"section header spacing and comment",
     "[ heartbeat ]  ; note\nping_interval = 7s\n"
     "[route   /echo ]\ntype = echo\n",
     7000, 1},
    {"pong_timeout 0 is fine with pings off",
     "[heartbeat]\nping_interval = 0\n"
     "pong_timeout = 0\n" ECHO_ROUTE,
     0, 1},
    {"several routes", ECHO_ROUTE "[route /a/{x}]\ntype = echo\n[route /]\ntype = echo\n", 25000,
     3},
    {"empty subprotocols", "[route /echo]\ntype = echo\nsubprotocols =\n", 25000, 1},
    {"same port on two hosts",
     "[gateway]\nlisten = 127.0.0.1:80\nlisten = 127.0.0.2:80\n" ECHO_ROUTE, 25000, 1},
};

START_TEST(test_ok_rows)
{
	const struct ok_row *r = &ok_rows[_i];
	struct config *cfg;

	cfg = load_ok(r->text);
	ck_assert_msg(cfg->ping_interval_ms == r->ping_ms, "%s: ping %llu", r->name,
	              (unsigned long long)cfg->ping_interval_ms);
	ck_assert_msg(cfg->nroutes == r->nroutes, "%s: %zu routes", r->name, cfg->nroutes);
	config_free(cfg);
}
END_TEST

START_TEST(test_inline_semicolon_kept)
{
	/* ';' starts a comment only after whitespace */
	struct config *cfg = load_ok("[heartbeat]\napp_message = a;b  ; comment\n" ECHO_ROUTE);

	ck_assert_str_eq(cfg->app_message, "a;b");
	ck_assert_uint_eq(cfg->app_message_len, 3);
	config_free(cfg);
}
END_TEST

/* ---- every error message form: one row per rule ---- */

#define MAXW 8
static const struct err_row {
	const char *name;
	const char *text;
	const char *want[MAXW];
} err_rows[] = {
    {"unknown section", "[foo]\nx = 1\n" ECHO_ROUTE, {"t.ini:1: unknown section [foo]"}},
    {"unknown section with argument",
     ECHO_ROUTE "[foo example.com]\ncert = x\n",
     {"t.ini:3: unknown section [foo example.com]"}},
    {"unknown key in [gateway]",
     "[gateway]\nbar = 1\n" ECHO_ROUTE,
     {"t.ini:2: unknown key 'bar' in [gateway]"}},
    {"unknown key in a route",
     ECHO_ROUTE "backends = ws://x\n",
     {"t.ini:3: unknown key 'backends' in [route /echo]"}},
    {"key of another section",
     "[gateway]\nping_interval = 1s\n" ECHO_ROUTE,
     {"t.ini:2: unknown key 'ping_interval' in [gateway]"}},
    {"keys are case-sensitive",
     "[gateway]\nLog_Level = info\n" ECHO_ROUTE,
     {"t.ini:2: unknown key 'Log_Level' in [gateway]"}},
    {"key before any section",
     "log_level = info\n" ECHO_ROUTE,
     {"t.ini:1: key 'log_level' outside of any section"}},
    {"bad duration",
     "[heartbeat]\nping_interval = abc\n" ECHO_ROUTE,
     {"t.ini:2: bad value for ping_interval: 'abc' (expected a duration such as 200ms, "
      "10s, 1m)"}},
    {"empty duration",
     "[gateway]\nhandshake_timeout =\n" ECHO_ROUTE,
     {"t.ini:2: bad value for handshake_timeout: '' (expected a duration such as 200ms, "
      "10s, 1m)"}},
    {"duration below minimum",
     "[gateway]\nhandshake_timeout = 0\n" ECHO_ROUTE,
     {"t.ini:2: bad value for handshake_timeout: '0' (must be between 1ms and 1h)"}},
    {"duration above maximum",
     "[heartbeat]\nping_interval = 25h\n" ECHO_ROUTE,
     {"t.ini:2: bad value for ping_interval: '25h' (must be at most 24h)"}},
    {"bad size",
     "[gateway]\nmax_message_size = 1MB\n" ECHO_ROUTE,
     {"t.ini:2: bad value for max_message_size: '1MB' (expected a size such as 65536, "
      "64KiB, 1MiB)"}},
    {"size 0",
     "[gateway]\nmax_message_size = 0\n" ECHO_ROUTE,
     {"t.ini:2: bad value for max_message_size: '0' (must be between 1 and 1GiB)"}},
    {"size above 1GiB",
     "[gateway]\nmax_message_size = 1025MiB\n" ECHO_ROUTE,
     {"t.ini:2: bad value for max_message_size: '1025MiB' (must be between 1 and 1GiB)"}},
    {"bad log level",
     "[gateway]\nlog_level = verbose\n" ECHO_ROUTE,
     {"t.ini:2: bad value for log_level: 'verbose' (expected error, warn, info or "
      "debug)"}},
    {"bad listen",
     "[gateway]\nlisten = 127.0.0.1\n" ECHO_ROUTE,
     {"t.ini:2: bad value for listen: '127.0.0.1' (expected host:port, [v6]:port or :port, "
      "optionally followed by tls)"}},
    {"duplicate listen",
     "[gateway]\nlisten = 127.0.0.1:80\nlisten = :81\n"
     "listen = 127.0.0.1:80 tls\nlisten = [::1]:81\nlisten = [::1]:81\n" ECHO_ROUTE TLS_OK,
     {"t.ini:4: duplicate listen address 127.0.0.1:80 (first at line 2)",
      "t.ini:6: duplicate listen address [::1]:81 (first at line 5)"}},
    {"duplicate listen, other spelling",
     "[gateway]\nlisten = :8080\nlisten = 8080\n" ECHO_ROUTE,
     {"t.ini:3: duplicate listen address 0.0.0.0:8080 (first at line 2)"}},
    {"bad route type",
     "[route /echo]\ntype = websocket\n",
     {"t.ini:2: bad value for type: 'websocket' (expected echo, pubsub or proxy)"}},
    {"pubsub without channels",
     "[route /chat]\ntype = pubsub\n",
     {"t.ini:1: route /chat (pubsub) needs subscribe or publish"}},
    {"proxy without backend",
     ECHO_ROUTE "[route /app]\n\ntype = proxy\n",
     {"t.ini:3: route /app (proxy) needs at least one backend"}},
    {"bad subprotocol token",
     "[route /echo]\ntype = echo\nsubprotocols = a b\n",
     {"t.ini:3: bad value for subprotocols: 'a b' (expected a comma-separated list of "
      "tokens)"}},
    {"empty subprotocol item",
     "[route /echo]\ntype = echo\nsubprotocols = a,,b\n",
     {"t.ini:3: bad value for subprotocols: 'a,,b' (expected a comma-separated list of "
      "tokens)"}},
    {"duplicate key",
     "[gateway]\nlog_level = info\nlog_level = warn\n" ECHO_ROUTE,
     {"t.ini:3: duplicate key 'log_level' (first set at line 2)"}},
    {"duplicate key across repeated [gateway]",
     "[gateway]\nlog_level = info\n[heartbeat]\n"
     "[gateway]\nlog_level = warn\n" ECHO_ROUTE,
     {"t.ini:5: duplicate key 'log_level' (first set at line 2)"}},
    {"duplicate key after a bad value",
     "[heartbeat]\nping_interval = x\nping_interval = 1s\n" ECHO_ROUTE,
     {"t.ini:2: bad value for ping_interval: 'x' (expected a duration such as 200ms, 10s, "
      "1m)",
      "t.ini:3: duplicate key 'ping_interval' (first set at line 2)"}},
    {"duplicate key in a route",
     "[route /echo]\ntype = echo\ntype = echo\n",
     {"t.ini:3: duplicate key 'type' (first set at line 2)"}},
    {"duplicate route",
     ECHO_ROUTE "\n[route /echo]\ntype = echo\n",
     {"t.ini:4: duplicate route /echo (first defined at line 1)"}},
    {"bad route path",
     "[route /a{b}]\ntype = echo\n",
     {"t.ini:1: bad route path '/a{b}': a placeholder must be a whole segment: {name}"}},
    {"route path without slash",
     "[route echo]\ntype = echo\n",
     {"t.ini:1: bad route path 'echo': route path must start with '/'"}},
    {"route without type",
     ECHO_ROUTE "[route /x]\nsubprotocols = a\n",
     {"t.ini:3: route /x has no type"}},
    {"route without path",
     "[route]\ntype = echo\n" ECHO_ROUTE,
     {"t.ini:1: section [route] needs an argument, as in [route /path]"}},
    {"argument on [gateway]",
     "[gateway main]\nlog_level = x\n" ECHO_ROUTE,
     {"t.ini:1: section [gateway] takes no argument (got 'main')"}},
    {"no route section",
     "[gateway]\nlog_level = info\n",
     {"t.ini: no [route] section: nothing to serve"}},
    {"empty file", "", {"t.ini: no [route] section: nothing to serve"}},
    {"pong_timeout 0 with pings on",
     "[heartbeat]\npong_timeout = 0\n" ECHO_ROUTE,
     {"t.ini:2: pong_timeout must be > 0 when ping_interval is set"}},
    {"app_message not UTF-8",
     "[heartbeat]\napp_message = \xc3\x28\n" ECHO_ROUTE,
     {"t.ini:2: bad value for app_message: '\xc3\x28' (must be valid UTF-8)"}},
    {"app_message larger than max_message_size",
     "[gateway]\nmax_message_size = 4\n"
     "[heartbeat]\napp_message = hello\n" ECHO_ROUTE,
     {"t.ini:4: app_message is 5 bytes, more than max_message_size (4)"}},
    {"missing ']'",
     "[gateway\nlog_level = info\n" ECHO_ROUTE,
     {"t.ini:1: syntax error (missing ']')"}},
    {"comment before ']'",
     "[route /echo ;]\ntype = echo\n" ECHO_ROUTE,
     {"t.ini:1: syntax error (missing ']')"}},
    {"text after ']'",
     "[gateway] x\nlog_level = info\n" ECHO_ROUTE,
     {"t.ini:1: syntax error (text after ']')"}},
    {"line without '='",
     "[gateway]\nlog_level info\n" ECHO_ROUTE,
     {"t.ini:2: syntax error (expected key = value)"}},
    {"'=' only inside a comment",
     "[gateway]\nlog_level ; = info\n" ECHO_ROUTE,
     {"t.ini:2: syntax error (expected key = value)"}},
    {"missing key name",
     "[gateway]\n= info\n" ECHO_ROUTE,
     {"t.ini:2: syntax error (missing key name)"}},
    {"control bytes are escaped",
     "[gateway]\nlog_level = a\x1b[2Jb\n" ECHO_ROUTE,
     {"t.ini:2: bad value for log_level: 'a\\x1b[2Jb' (expected error, warn, info or "
      "debug)"}},
    {"keys of a bad section are skipped",
     "[foo]\na = 1\nb = 2\n[route]\ntype = x\n"
     "[route /echo]\ntype = echo\n[route /echo]\nnope = 1\n",
     {"t.ini:1: unknown section [foo]",
      "t.ini:4: section [route] needs an argument, as in [route /path]",
      "t.ini:8: duplicate route /echo (first defined at line 6)"}},
    /* [gateway] additions */
    {"listen tls without [tls]",
     "[gateway]\nlisten = :80\nlisten = [::]:443 tls\n" ECHO_ROUTE,
     {"t.ini:3: listener [::]:443 uses tls but there is no [tls] section with cert and "
      "key"}},
    {"admin_listen on a listen address",
     "[gateway]\nlisten = 127.0.0.1:8080\n"
     "admin_listen = 127.0.0.1:8080\n" ECHO_ROUTE,
     {"t.ini:3: duplicate admin_listen address 127.0.0.1:8080 (first at line 2)"}},
    {"admin_listen on the default listen",
     "[gateway]\nadmin_listen = :8080\n" ECHO_ROUTE,
     {"t.ini:2: duplicate admin_listen address 0.0.0.0:8080 (first at the default "
      "listen)"}},
    {"admin_listen twice",
     "[gateway]\nadmin_listen = :9090\nadmin_listen = 0.0.0.0:9090\n" ECHO_ROUTE,
     {"t.ini:3: duplicate admin_listen address 0.0.0.0:9090 (first at line 2)"}},
    /* [redis] */
    {"argument on [redis]",
     "[redis main]\nurl = redis://h\n" ECHO_ROUTE,
     {"t.ini:1: section [redis] takes no argument (got 'main')"}},
    {"unknown key in [redis]",
     "[redis]\nhost = h\n" ECHO_ROUTE,
     {"t.ini:2: unknown key 'host' in [redis]"}},
    /* [tls] and [tls NAME] */
    {"[tls] without key", "[tls]\ncert = /dev/null\n" ECHO_ROUTE, {"t.ini:1: [tls] has no key"}},
    {"empty [tls]",
     ECHO_ROUTE "[tls]\n",
     {"t.ini:3: [tls] has no cert", "t.ini:3: [tls] has no key"}},
    {"[tls] without key and a tls listener",
     "[gateway]\nlisten = :443 tls\n[tls]\n"
     "cert = /dev/null\n" ECHO_ROUTE,
     {"t.ini:3: [tls] has no key"}},
    {"unreadable cert and key",
     "[tls]\ncert = /nonexistent/c.pem\nkey = /\n" ECHO_ROUTE,
     {"t.ini:2: cannot read cert '/nonexistent/c.pem': No such file or directory",
      "t.ini:3: cannot read key '/': Is a directory"}},
    {"unreadable SNI cert",
     TLS_OK "[tls a.example]\ncert = /nonexistent/a.pem\n"
            "key = /dev/null\n" ECHO_ROUTE,
     {"t.ini:5: cannot read cert '/nonexistent/a.pem': No such file or directory"}},
    {"[tls NAME] without [tls]",
     ECHO_ROUTE "[tls a.example]\n" CK "\n",
     {"t.ini:3: [tls a.example] needs a default [tls] section"}},
    {"[tls NAME] without cert",
     TLS_OK "[tls x.org]\nkey = /dev/null\n" ECHO_ROUTE,
     {"t.ini:4: [tls x.org] has no cert"}},
    {"duplicate [tls NAME], any case",
     TLS_OK "[tls a.example]\n" CK "\n[tls A.Example]\n"
            "cert = /nonexistent\n" ECHO_ROUTE,
     {"t.ini:7: duplicate section [tls A.Example] (first at line 4)"}},
    {"duplicate key across repeated [tls]",
     "[tls]\ncert = /dev/null\n[tls]\n"
     "cert = /dev/null\nkey = /dev/null\n" ECHO_ROUTE,
     {"t.ini:4: duplicate key 'cert' (first set at line 2)"}},
    {"tls name is an address",
     TLS_OK "[tls 10.0.0.1]\n" CK "\n" ECHO_ROUTE,
     {"t.ini:4: bad tls name '10.0.0.1': expected a host name or *.domain"}},
    {"tls name is a bare wildcard",
     TLS_OK "[tls *.]\n" CK "\n" ECHO_ROUTE,
     {"t.ini:4: bad tls name '*.': expected a host name or *.domain"}},
    {"tls name with two words",
     TLS_OK "[tls a.org b.org]\n" CK "\n" ECHO_ROUTE,
     {"t.ini:4: bad tls name 'a.org b.org': expected a host name or *.domain"}},
    {"min_version in [tls NAME]",
     TLS_OK "[tls a.org]\n" CK "\nmin_version = 1.3\n" ECHO_ROUTE,
     {"t.ini:7: key 'min_version' is valid only in [tls], not in [tls a.org]"}},
    /* keys of another route type */
    {"pubsub and proxy keys on echo",
     ECHO_ROUTE "subscribe = a\nbackend = ws://b\n",
     {"t.ini:3: key 'subscribe' is not valid for a route of type echo",
      "t.ini:4: key 'backend' is not valid for a route of type echo"}},
    {"proxy key on pubsub",
     "[route /c]\ntype = pubsub\nsubscribe = a\nretries = 1\n",
     {"t.ini:4: key 'retries' is not valid for a route of type pubsub"}},
    {"pubsub key on proxy, type last",
     "[route /p]\nbackend = ws://b\nenvelope = json\n"
     "type = proxy\n",
     {"t.ini:3: key 'envelope' is not valid for a route of type proxy"}},
    {"a bad type hides the type rules",
     "[route /p]\ntype = pub\nsubscribe = a\n",
     {"t.ini:2: bad value for type: 'pub' (expected echo, pubsub or proxy)"}},
    {"no type hides the type rules",
     "[route /p]\nbackend = ws://b\n",
     {"t.ini:1: route /p has no type"}},
    /* pubsub templates */
    {"subscribe placeholder not in the path",
     "[route /rooms/{room}]\ntype = pubsub\nsubscribe = lobby, room:{x}\n",
     {"t.ini:3: subscribe template 'room:{x}' uses {x} which is not in the route path "
      "/rooms/{room}"}},
    {"publish placeholder not in the path",
     "[route /rooms/{room}]\ntype = pubsub\npublish = room:{rooms}\n",
     {"t.ini:3: publish template 'room:{rooms}' uses {rooms} which is not in the route "
      "path /rooms/{room}"}},
    {"jwt placeholder without auth",
     "[route /u]\ntype = pubsub\n"
     "subscribe = user:{jwt.sub}\npublish = {jwt.sub}\n",
     {"t.ini:3: subscribe template 'user:{jwt.sub}' uses {jwt.sub} but auth is not jwt",
      "t.ini:4: publish template '{jwt.sub}' uses {jwt.sub} but auth is not jwt"}},
    /* the channel map (route_map_check) */
    {"unauthenticated route reaching identity channels",
     "[route /me]\ntype = pubsub\nauth = jwt\njwt_secret = s\nsubscribe = user:{jwt.sub}\n"
     "[route /raw/{ch}]\ntype = pubsub\nsubscribe = {ch}\nallow = ch:[a-z:]\n",
     {"t.ini:8: route /raw/{ch} (no auth) subscribe '{ch}' can reach channel subscribe "
      "'user:{jwt.sub}' of route /me (auth jwt, bound to an identity, line 1); set "
      "shared_namespace = yes on /raw/{ch} if that is deliberate"}},
    {"same namespace by literal prefix",
     "[route /me]\ntype = pubsub\nauth = jwt\njwt_secret = s\nsubscribe = user:{jwt.sub}\n"
     "[route /u/{name}]\ntype = pubsub\npublish = user:{name}\n",
     {"t.ini:8: route /u/{name} (no auth) publish 'user:{name}' can reach channel "
      "subscribe 'user:{jwt.sub}' of route /me (auth jwt, bound to an identity, line 1); "
      "set shared_namespace = yes on /u/{name} if that is deliberate"}},
    {"publishing into a server_only channel",
     "[route /news]\ntype = pubsub\nsubscribe = news\nserver_only = yes\n"
     "[route /w/{t}]\ntype = pubsub\nsubscribe = a\npublish = {t}\n",
     {"t.ini:8: route /w/{t} (no auth) publish '{t}' can reach channel subscribe 'news' "
      "of route /news (server_only, line 1); set shared_namespace = yes on /w/{t} if "
      "that is deliberate"}},
    {"publishing into another route's read_only channel",
     "[route /me]\ntype = pubsub\nauth = jwt\njwt_secret = s\n"
     "subscribe = room, user:{jwt.sub}\npublish = room\nread_only = user:{jwt.sub}\n"
     "[route /w/{t}]\ntype = pubsub\nauth = jwt\njwt_secret = s\npublish = user:{t}\n",
     {"t.ini:12: route /w/{t} (auth jwt) publish 'user:{t}' can reach channel subscribe "
      "'user:{jwt.sub}' of route /me (read_only, line 1); set shared_namespace = yes on "
      "/w/{t} if that is deliberate"}},
    /* [redis]: Sentinel and TLS keys that go together */
    {"sentinels without master_name",
     "[route /e]\ntype = echo\n[redis]\nsentinels = a:1\n",
     {"t.ini:4: sentinels needs master_name (the name the sentinels monitor)"}},
    {"sentinel without a port",
     "[route /e]\ntype = echo\n[redis]\nmaster_name = m\n"
     "sentinels = a:1, b\n",
     {"t.ini:5: sentinels: 'b': a port is required: host:port"}},
    /* [redis]: Cluster keys (issue 14) */
    {"nodes without cluster",
     "[route /e]\ntype = echo\n[redis]\nnodes = a:1\n",
     {"t.ini:4: nodes is set but cluster is not (cluster = yes)"}},
    {"cluster node without a port",
     "[route /e]\ntype = echo\n[redis]\ncluster = yes\n"
     "nodes = a:1, b\n",
     {"t.ini:5: nodes: 'b': a port is required: host:port"}},
    {"sentinel_password without sentinels",
     "[route /e]\ntype = echo\n[redis]\n"
     "sentinel_password = p\n",
     {"t.ini:4: sentinel_password/sentinel_username are set but sentinels is not"}},
    {"cluster and sentinels",
     "[route /e]\ntype = echo\n[redis]\ncluster = yes\n"
     "sentinels = a:1\nmaster_name = m\n",
     {"t.ini:4: cluster = yes and sentinels exclude each other (a cluster fails over by "
      "itself)"}},
    {"TLS keys with TLS off",
     "[route /e]\ntype = echo\n[redis]\nca_file = /dev/null\n"
     "cert = /dev/null\n",
     {"t.ini:4: [redis] ca_file is set but TLS is off (tls = yes or a rediss:// url)",
      "t.ini:5: [redis] cert and key go together",
      "t.ini:5: [redis] cert is set but TLS is off (tls = yes or a rediss:// url)"}},
    {"read_only that is no subscribe template",
     "[route /a]\ntype = pubsub\nsubscribe = a\npublish = a\nread_only = b\n",
     {"t.ini:5: read_only 'b' is not one of route /a's subscribe templates (write it "
      "exactly as in subscribe)"}},
    {"reserved namespace and unused allow",
     "[route /x]\ntype = pubsub\nsubscribe = wsgate:conn:1\nallow = nope:[a]\n",
     {"t.ini:3: subscribe template 'wsgate:conn:1' is in wsgate's reserved namespace "
      "wsgate:*",
      "t.ini:4: allow names {nope}, which no template or the path of route /x uses"}},
    {"conflate_key neither channel nor json:FIELD",
     "[route /x]\ntype = pubsub\nsubscribe = a\nconflate_key = json:\n",
     {"t.ini:4: conflate_key must be channel or json:FIELD"}},
    {"server_only with a publish template",
     "[route /x]\ntype = pubsub\nsubscribe = a\npublish = a\nserver_only = yes\n",
     {"t.ini:5: server_only = yes and a publish template: clients of a server_only "
      "route cannot publish"}},
    /* security */
    {"auth = jwt without a key",
     "[route /a]\ntype = echo\nauth = jwt\n",
     {"t.ini:3: auth = jwt needs jwt_secret or jwt_public_key"}},
    {"auth = jwt with both keys",
     "[route /a]\ntype = echo\nauth = jwt\n"
     "jwt_public_key = /dev/null\njwt_secret = s\n",
     {"t.ini:5: jwt_secret and jwt_public_key are both set: keep one"}},
    {"jwt keys without auth = jwt",
     "[route /a]\ntype = echo\njwt_secret = s\n"
     "jwt_from = query\nauth = none\njwt_public_key = /dev/null\n",
     {"t.ini:3: jwt_secret is set but auth is not jwt",
      "t.ini:4: jwt_from is set but auth is not jwt",
      "t.ini:6: jwt_public_key is set but auth is not jwt"}},
    {"unreadable jwt_public_key",
     "[route /a]\ntype = echo\nauth = jwt\n"
     "jwt_public_key = /nonexistent/k.pem\n",
     {"t.ini:4: cannot read jwt_public_key '/nonexistent/k.pem': No such file or "
      "directory"}},
    {"'*' with other origins",
     "[route /a]\ntype = echo\norigins = https://a.org, *\n",
     {"t.ini:3: origins: '*' allows any origin and cannot be combined with others"}},
    /* proxy */
    {"unreadable ca_file",
     "[route /p]\ntype = proxy\nbackend = wss://b\n"
     "ca_file = /nonexistent/ca.pem\n",
     {"t.ini:4: cannot read ca_file '/nonexistent/ca.pem': No such file or directory"}},
    {"repeated backend lines keep their errors apart",
     "[route /p]\ntype = proxy\n"
     "backend = ws://a\nbackend = ws://b, ftp://c\nbackend = tcp://d:1\n",
     {"t.ini:4: bad value for backend: 'ws://b, ftp://c' (expected "
      "ws://host[:port][/path], wss://... or tcp://host:port)"}},
    {"multiple errors together, in line order",
     "[gateway]\nlisten = nope\nmax_message_size = 2GiB\n[bogus]\n[heartbeat]\n"
     "ping_interval = soon\nwhat = 1\n[route /x]\n[route /y]\ntype = pubsub\n",
     {"t.ini:2: bad value for listen: 'nope' (expected host:port, [v6]:port or :port, "
      "optionally followed by tls)",
      "t.ini:3: bad value for max_message_size: '2GiB' (must be between 1 and 1GiB)",
      "t.ini:4: unknown section [bogus]",
      "t.ini:6: bad value for ping_interval: 'soon' (expected a duration such as 200ms, "
      "10s, 1m)",
      "t.ini:7: unknown key 'what' in [heartbeat]", "t.ini:8: route /x has no type",
      "t.ini:9: route /y (pubsub) needs subscribe or publish"}},
};

START_TEST(test_err_rows)
{
	const struct err_row *r = &err_rows[_i];

	expect_errors(r->text, r->want);
}
END_TEST

/* ---- one good and one bad value for every key of the table ---- */

/* Context lines a key needs in its section to load: a route type, a channel, a backend... */
#define ECHO "type = echo"
#define PS "type = pubsub\nsubscribe = a"
#define PX "type = proxy\nbackend = ws://b"
#define JWT "type = echo\nauth = jwt\njwt_secret = s"
#define PUBONLY "type = pubsub\npublish = p" /* a bad subscribe then leaves the route valid */

/* "[section]\nctx\nkey = value\n" plus what makes the rest of the file valid. *line is the
 * key's line. The section's instance is the first of its kind. */
static char *
key_text(enum config_section_kind sec, const char *ctx, const char *key, const char *value,
         int *line)
{
	static const char *const heads[CFG_SEC_COUNT] = {
	    [CFG_SEC_GATEWAY] = "[gateway]\n",
	    [CFG_SEC_HEARTBEAT] = "[heartbeat]\n",
	    [CFG_SEC_REDIS] = "[redis]\n",
	    [CFG_SEC_TLS] = "[tls]\n",
	    [CFG_SEC_TLS_SNI] = TLS_OK "[tls example.org]\n",
	    [CFG_SEC_ROUTE] = "[route /r/{room}]\n",
	};
	size_t n = strlen(heads[sec]) + strlen(ctx) + strlen(key) + strlen(value) + 64, o;
	char *t = malloc(n);

	ck_assert_ptr_nonnull(t);
	snprintf(t, n, "%s%s%s", heads[sec], ctx, *ctx != '\0' ? "\n" : "");
	*line = 1;
	for (o = 0; t[o] != '\0'; o++)
		*line += t[o] == '\n';
	snprintf(t + o, n - o, "%s = %s\n%s", key, value, sec == CFG_SEC_ROUTE ? "" : ECHO_ROUTE);
	return t;
}

/* A value that loads, and what a scalar field then holds (other types: checked elsewhere). */
static const struct good_row {
	enum config_section_kind sec;
	const char *ctx, *key, *value;
	uint64_t want;
} good_rows[] = {
    {CFG_SEC_GATEWAY, "", "listen", "[::]:9000", 0},
    {CFG_SEC_GATEWAY, "", "max_message_size", "16MiB", 16 << 20},
    {CFG_SEC_GATEWAY, "", "handshake_timeout", "1ms", 1},
    {CFG_SEC_GATEWAY, "", "shutdown_timeout", "1h", 3600000},
    {CFG_SEC_GATEWAY, "", "close_timeout", "0", 0},
    {CFG_SEC_GATEWAY, "", "log_level", "warn", LOG_LVL_WARN},
    {CFG_SEC_GATEWAY, "", "log_format", "json", LOG_FORMAT_JSON},
    {CFG_SEC_GATEWAY, "", "log_format", "text", LOG_FORMAT_TEXT},
    {CFG_SEC_GATEWAY, "", "max_connections", "10000000", 10000000},
    {CFG_SEC_GATEWAY, "", "max_connections", "0", 0},
    {CFG_SEC_GATEWAY, "", "max_connections_per_ip", "100", 100},
    {CFG_SEC_GATEWAY, "", "accept_rate_per_ip", "1000000", 1000000},
    {CFG_SEC_GATEWAY, "", "workers", "auto", 0},
    {CFG_SEC_GATEWAY, "", "workers", "1", 1},
    {CFG_SEC_GATEWAY, "", "workers", "64", 64},
    {CFG_SEC_GATEWAY, "", "admin_listen", "127.0.0.1:9090", 0},
    {CFG_SEC_GATEWAY, "", "drain_window", "0", 0},
    {CFG_SEC_GATEWAY, "", "drain_window", "1m", 60000},
    {CFG_SEC_GATEWAY, "", "admission_rate", "500", 500},
    {CFG_SEC_GATEWAY, "", "admission_ramp", "0", 0},
    {CFG_SEC_GATEWAY, "", "admission_ramp", "10s", 10000},
    {CFG_SEC_GATEWAY, "", "admission_share", "50", 50},
    {CFG_SEC_GATEWAY, "", "admission_retry_max", "1m", 60000},
    {CFG_SEC_GATEWAY, "", "admin_timeout", "500ms", 500},
    {CFG_SEC_GATEWAY, "", "compression_memory", "0", 0},
    {CFG_SEC_GATEWAY, "", "compression_memory", "1GiB", 1ull << 30},
    {CFG_SEC_ROUTE, ECHO, "compression", "on", 1},
    {CFG_SEC_ROUTE, ECHO, "compression", "off", 0},
    {CFG_SEC_ROUTE, ECHO, "compression_min_size", "0", 0},
    {CFG_SEC_ROUTE, ECHO, "compression_min_size", "1KiB", 1024},
    {CFG_SEC_ROUTE, ECHO, "compression_level", "1", 1},
    {CFG_SEC_ROUTE, ECHO, "compression_level", "9", 9},
    {CFG_SEC_ROUTE, ECHO, "compression_server_window_bits", "9", 9},
    {CFG_SEC_ROUTE, ECHO, "compression_client_window_bits", "8", 8},
    {CFG_SEC_GATEWAY, "", "admin_max_connections", "1", 1},
    {CFG_SEC_GATEWAY, "", "trusted_proxies", "10.0.0.0/8, 127.0.0.1, ::1, 2001:db8::/32", 0},
    {CFG_SEC_HEARTBEAT, "", "ping_interval", "24h", 86400000},
    {CFG_SEC_HEARTBEAT, "", "pong_timeout", "2.5s", 2500},
    {CFG_SEC_HEARTBEAT, "", "idle_timeout", "5m", 300000},
    {CFG_SEC_HEARTBEAT, "", "app_message", "ping", 0},
    {CFG_SEC_REDIS, "", "url", "redis://:pw@cache:6390/4", 0},
    {CFG_SEC_REDIS, "", "connect_timeout", "1m", 60000},
    {CFG_SEC_REDIS, "", "channel_prefix", "app1:", 0},
    {CFG_SEC_REDIS, "", "probe_interval", "100ms", 100},
    {CFG_SEC_REDIS, "", "probe_timeout", "1h", 3600000},
    {CFG_SEC_REDIS, "", "publish_queue", "0", 0},
    {CFG_SEC_REDIS, "", "reconnect_max", "30s", 30000},
    {CFG_SEC_REDIS, "", "max_message_size", "64MiB", 67108864},
    {CFG_SEC_REDIS, "master_name = m", "sentinels", "127.0.0.1:26379, [::1]:26380", 0},
    {CFG_SEC_REDIS, "sentinels = s:1", "master_name", "mymaster", 0},
    {CFG_SEC_REDIS, "", "cluster", "yes", 1},
    {CFG_SEC_REDIS, "sentinels = s:1\nmaster_name = m", "sentinel_password", "pw", 0},
    {CFG_SEC_REDIS, "sentinels = s:1\nmaster_name = m\nsentinel_password = p", "sentinel_username",
     "wsgate", 0},
    {CFG_SEC_REDIS, "cluster = yes", "nodes", "127.0.0.1:7000, [::1]:7001", 0},
    {CFG_SEC_REDIS, "", "tls", "yes", 1},
    {CFG_SEC_REDIS, "tls = yes", "ca_file", "/dev/null", 0},
    {CFG_SEC_REDIS, "tls = yes\nkey = /dev/null", "cert", "/dev/null", 0},
    {CFG_SEC_REDIS, "tls = yes\ncert = /dev/null", "key", "/dev/null", 0},
    {CFG_SEC_REDIS, "tls = yes", "tls_server_name", "redis.internal", 0},
    {CFG_SEC_TLS, "key = /dev/null", "cert", "/dev/null", 0},
    {CFG_SEC_TLS, "cert = /dev/null", "key", "/dev/null", 0},
    {CFG_SEC_TLS, CK, "min_version", "1.3", TLS_V1_3},
    {CFG_SEC_TLS, CK, "min_version", "1.2", TLS_V1_2},
    {CFG_SEC_TLS, CK, "ciphers", "HIGH:!aNULL", 0},
    {CFG_SEC_TLS_SNI, "key = /dev/null", "cert", "/dev/null", 0},
    {CFG_SEC_TLS_SNI, "cert = /dev/null", "key", "/dev/null", 0},
    {CFG_SEC_ROUTE, "", "type", "echo", ROUTE_ECHO},
    {CFG_SEC_ROUTE, "subscribe = a", "type", "pubsub", ROUTE_PUBSUB},
    {CFG_SEC_ROUTE, "backend = ws://b", "type", "proxy", ROUTE_PROXY},
    {CFG_SEC_ROUTE, ECHO, "subprotocols", "mqtt, v2.json", 0},
    {CFG_SEC_ROUTE, ECHO, "origins", "*", 0},
    {CFG_SEC_ROUTE, ECHO, "auth", "none", AUTH_NONE},
    {CFG_SEC_ROUTE, "type = echo\njwt_secret = s", "auth", "jwt", AUTH_JWT},
    {CFG_SEC_ROUTE, "type = echo\nauth = jwt", "jwt_secret", "0123456789abcdef", 0},
    {CFG_SEC_ROUTE, "type = echo\nauth = jwt", "jwt_public_key", "/dev/null", 0},
    {CFG_SEC_ROUTE, JWT, "jwt_from", "query", 0},
    {CFG_SEC_ROUTE, ECHO, "max_messages_per_second", "1000000", 1000000},
    {CFG_SEC_ROUTE, ECHO, "admission_rate", "20", 20},
    {CFG_SEC_ROUTE, PUBONLY, "subscribe", "room:{room}, all", 0},
    {CFG_SEC_ROUTE, "type = pubsub", "publish", "room:{room}", 0},
    {CFG_SEC_ROUTE, PS, "publish", "", 0},
    {CFG_SEC_ROUTE, PS, "publish", "none", 0},
    {CFG_SEC_ROUTE, PS, "allow", "room:[a-z0-9:]", 0},
    {CFG_SEC_ROUTE, "type = pubsub\nsubscribe = {query.ch}", "allow", "query.ch:[-a-z_.]", 0},
    {CFG_SEC_ROUTE, PS, "server_only", "yes", 1},
    {CFG_SEC_ROUTE, PS, "shared_namespace", "yes", 1},
    {CFG_SEC_ROUTE,
     "type = pubsub\nsubscribe = a, b\npublish = {query.c}\n"
     "allow = query.c:[a-z]",
     "read_only", "b", 0},
    {CFG_SEC_ROUTE, PS, "envelope", "json", ENVELOPE_JSON},
    {CFG_SEC_ROUTE, PS, "message_type", "binary", MSGTYPE_BINARY},
    {CFG_SEC_ROUTE, PS, "announce_id", "on", 1},
    {CFG_SEC_ROUTE, PS, "max_queue", "1KiB", 1024},
    {CFG_SEC_ROUTE, PS, "max_queue", "1GiB", 1ull << 30},
    {CFG_SEC_ROUTE, PS, "slow_consumer", "drop_newest", SLOW_DROP_NEWEST},
    {CFG_SEC_ROUTE, PS, "history_size", "1000", 1000},
    {CFG_SEC_ROUTE, PS, "conflate_key", "json:symbol", 0},
    {CFG_SEC_ROUTE, PS, "history_ttl", "1h", 3600000},
    {CFG_SEC_ROUTE, "type = proxy", "backend", "tcp://[::1]:7", 0},
    {CFG_SEC_ROUTE, PX, "balance", "ip_hash", BALANCE_IP_HASH},
    {CFG_SEC_ROUTE, PX, "connect_timeout", "250ms", 250},
    {CFG_SEC_ROUTE, PX, "retries", "16", 16},
    {CFG_SEC_ROUTE, PX, "forward_headers", "false", 0},
    {CFG_SEC_ROUTE, PX, "ca_file", "/dev/null", 0},
    {CFG_SEC_ROUTE, PX, "health_check", "10", 10000},
    {CFG_SEC_ROUTE, PX, "fail_timeout", "1h", 3600000},
    {CFG_SEC_ROUTE, PX, "max_fails", "0", 0},
    {CFG_SEC_ROUTE, PX, "max_fails", "5", 5},
    {CFG_SEC_ROUTE, PX, "fail_on_5xx", "yes", 1},
};

START_TEST(test_good_rows)
{
	const struct good_row *r = &good_rows[_i];
	const struct config_key *k = config_key_find(r->sec, r->key);
	struct config *cfg;
	char *t;
	int line;
	void *base;
	const char *field;
	uint64_t got;

	ck_assert_msg(k != NULL, "no key %s", r->key);
	t = key_text(r->sec, r->ctx, r->key, r->value, &line);
	cfg = load_ok(t);
	base = config_keys_instance(cfg, k->base, 0);
	field = (const char *)base + k->off;
	switch (k->type) {
	case CFG_T_DURATION:
	case CFG_T_SIZE:
	case CFG_T_UINT:
		memcpy(&got, field, sizeof(got));
		ck_assert_msg(got == r->want, "%s = %s: got %llu", r->key, r->value,
		              (unsigned long long)got);
		break;
	case CFG_T_BOOL:
	case CFG_T_ENUM:
	case CFG_T_LOGLEVEL:
	case CFG_T_ROUTE_TYPE: {
		int v;

		memcpy(&v, field, sizeof(v));
		ck_assert_msg((uint64_t)v == r->want, "%s = %s: got %d", r->key, r->value, v);
		break;
	}
	default:
		break;
	}
	config_free(cfg);
	free(t);
}
END_TEST

/* A value the key refuses, and why: "FILE:LINE: bad value for KEY: 'VALUE' (WHY)". */
static const struct bad_row {
	enum config_section_kind sec;
	const char *ctx, *key, *value, *why;
} bad_rows[] = {
    {CFG_SEC_GATEWAY, "", "listen", "localhost",
     "expected host:port, [v6]:port or :port, optionally followed by tls"},
    {CFG_SEC_GATEWAY, "", "max_message_size", "1MB", "expected a size such as 65536, 64KiB, 1MiB"},
    {CFG_SEC_GATEWAY, "", "handshake_timeout", "2h", "must be between 1ms and 1h"},
    {CFG_SEC_GATEWAY, "", "shutdown_timeout", "soon", "expected a duration such as 200ms, 10s, 1m"},
    {CFG_SEC_GATEWAY, "", "close_timeout", "61m", "must be at most 1h"},
    {CFG_SEC_GATEWAY, "", "log_level", "trace", "expected error, warn, info or debug"},
    {CFG_SEC_GATEWAY, "", "log_format", "xml", "expected one of: text json"},
    {CFG_SEC_GATEWAY, "", "log_format", "JSON", "expected one of: text json"},
    {CFG_SEC_GATEWAY, "", "max_connections", "lots", "expected a whole number"},
    {CFG_SEC_GATEWAY, "", "max_connections", "-1", "expected a whole number"},
    {CFG_SEC_GATEWAY, "", "max_connections", "10000001", "must be at most 10000000"},
    {CFG_SEC_GATEWAY, "", "max_connections", "auto", "expected a whole number"},
    {CFG_SEC_GATEWAY, "", "max_connections_per_ip", "1e3", "expected a whole number"},
    {CFG_SEC_GATEWAY, "", "accept_rate_per_ip", "1.5", "expected a whole number"},
    {CFG_SEC_GATEWAY, "", "accept_rate_per_ip", "1000001", "must be at most 1000000"},
    {CFG_SEC_GATEWAY, "", "workers", "0", "must be between 1 and 64"},
    {CFG_SEC_GATEWAY, "", "workers", "65", "must be between 1 and 64"},
    {CFG_SEC_GATEWAY, "", "workers", "many", "expected a whole number or auto"},
    {CFG_SEC_GATEWAY, "", "workers", "Auto", "expected a whole number or auto"},
    {CFG_SEC_GATEWAY, "", "admin_listen", "127.0.0.1:9090 tls",
     "expected host:port, [v6]:port or :port (the admin listener has no tls)"},
    {CFG_SEC_GATEWAY, "", "admin_listen", "9o9o",
     "expected host:port, [v6]:port or :port (the admin listener has no tls)"},
    {CFG_SEC_GATEWAY, "", "drain_window", "2h", "must be at most 1h"},
    {CFG_SEC_GATEWAY, "", "admission_rate", "fast", "expected a whole number"},
    {CFG_SEC_GATEWAY, "", "admission_retry_max", "500ms", "must be between 1s and 1h"},
    {CFG_SEC_GATEWAY, "", "admission_ramp", "2h", "must be at most 1h"},
    {CFG_SEC_GATEWAY, "", "admission_share", "-1", "expected a whole number"},
    {CFG_SEC_ROUTE, ECHO, "admission_rate", "10000001", "must be at most 10000000"},
    {CFG_SEC_GATEWAY, "", "admin_timeout", "0", "must be between 1ms and 1h"},
    {CFG_SEC_GATEWAY, "", "admin_max_connections", "0", "must be between 1 and 100000"},
    {CFG_SEC_GATEWAY, "", "trusted_proxies", "10.0.0.0/33",
     "prefix length too long for the address family"},
    {CFG_SEC_GATEWAY, "", "trusted_proxies", "lb.example",
     "expected an address or address/bits, e.g. 10.0.0.0/8 or 2001:db8::/32"},
    {CFG_SEC_HEARTBEAT, "", "ping_interval", "25h", "must be at most 24h"},
    {CFG_SEC_HEARTBEAT, "ping_interval = 0", "pong_timeout", "-1s",
     "expected a duration such as 200ms, 10s, 1m"},
    {CFG_SEC_HEARTBEAT, "", "idle_timeout", "8d",
     "expected a duration such as 200ms, 10s, "
     "1m"},
    {CFG_SEC_HEARTBEAT, "", "app_message", "\xff", "must be valid UTF-8"},
    {CFG_SEC_REDIS, "", "url", "http://cache",
     "expected redis://[:password@]host[:port][/db] (or rediss://)"},
    {CFG_SEC_REDIS, "", "url", "redis://cache:0", "the port must be a number from 1 to 65535"},
    {CFG_SEC_REDIS, "", "url", "redis://cache/x", "the database after '/' must be a number"},
    {CFG_SEC_REDIS, "", "url", "redis://u:secret@cache",
     "only a password goes before '@': redis://:pw@host"},
    {CFG_SEC_REDIS, "", "url", "redis://:@cache", "empty password"},
    {CFG_SEC_REDIS, "", "url", "redis://", "missing host"},
    {CFG_SEC_REDIS, "", "url", "redis://[::1", "missing ']' after the IPv6 address"},
    {CFG_SEC_REDIS, "", "url", "redis://[::1]6379", "expected ':port' after the IPv6 address"},
    {CFG_SEC_REDIS, "", "url", "redis://[zz]", "bad IPv6 address"},
    {CFG_SEC_REDIS, "", "url", "redis://c_ch-e-", "bad host name or address"},
    {CFG_SEC_REDIS, "", "connect_timeout", "0", "must be between 1ms and 1m"},
    {CFG_SEC_REDIS, "", "channel_prefix", "app 1", "use only [A-Za-z0-9_.:-]"},
    {CFG_SEC_REDIS, "", "channel_prefix", "app/", "use only [A-Za-z0-9_.:-]"},
    {CFG_SEC_REDIS, "", "channel_prefix",
     "p2345678901234567890123456789012345678901234567890123456789012345",
     "must be at most 64 bytes"},
    {CFG_SEC_REDIS, "", "probe_interval", "50ms", "must be between 100ms and 1h"},
    {CFG_SEC_REDIS, "", "probe_timeout", "0", "must be between 100ms and 1h"},
    {CFG_SEC_REDIS, "", "publish_queue", "2GiB", "must be at most 1GiB"},
    {CFG_SEC_REDIS, "", "max_message_size", "2GiB", "must be between 64 and 1GiB"},
    {CFG_SEC_REDIS, "master_name = m", "sentinels", "\xff", "must be valid UTF-8"},
    {CFG_SEC_REDIS, "sentinels = s:1", "master_name", "\xff", "must be valid UTF-8"},
    {CFG_SEC_REDIS, "", "tls", "maybe", "expected yes or no"},
    {CFG_SEC_REDIS, "", "cluster", "maybe", "expected yes or no"},
    {CFG_SEC_REDIS, "sentinels = s:1\nmaster_name = m", "sentinel_password", "\xff",
     "must be valid UTF-8"},
    {CFG_SEC_REDIS, "sentinels = s:1\nmaster_name = m\nsentinel_password = p", "sentinel_username",
     "\xff", "must be valid UTF-8"},
    {CFG_SEC_REDIS, "cluster = yes", "nodes", "\xff", "must be valid UTF-8"},
    {CFG_SEC_REDIS, "tls = yes", "ca_file", "/dev/\xff", "must be valid UTF-8"},
    {CFG_SEC_REDIS, "tls = yes\nkey = /dev/null", "cert", "/dev/\xff", "must be valid UTF-8"},
    {CFG_SEC_REDIS, "tls = yes\ncert = /dev/null", "key", "/dev/\xff", "must be valid UTF-8"},
    {CFG_SEC_REDIS, "tls = yes", "tls_server_name", "\xff", "must be valid UTF-8"},
    {CFG_SEC_REDIS, "", "reconnect_max", "5 s",
     "expected a duration such as 200ms, 10s, "
     "1m"},
    {CFG_SEC_TLS, "key = /dev/null", "cert", "/dev/\xff", "must be valid UTF-8"},
    {CFG_SEC_TLS, "cert = /dev/null", "key", "\xc3\x28", "must be valid UTF-8"},
    {CFG_SEC_TLS, CK, "min_version", "1.1", "expected one of: 1.2 1.3"},
    {CFG_SEC_TLS, CK, "min_version", "TLSv1.3", "expected one of: 1.2 1.3"},
    {CFG_SEC_TLS, CK, "ciphers", "\xff", "must be valid UTF-8"},
    {CFG_SEC_TLS_SNI, "key = /dev/null", "cert", "\xfe", "must be valid UTF-8"},
    {CFG_SEC_TLS_SNI, "cert = /dev/null", "key", "\xfe", "must be valid UTF-8"},
    {CFG_SEC_ROUTE, "", "type", "ws", "expected echo, pubsub or proxy"},
    {CFG_SEC_ROUTE, ECHO, "subprotocols", "a;b", "expected a comma-separated list of tokens"},
    {CFG_SEC_ROUTE, ECHO, "origins", "example.org",
     "an origin is https://host[:port], http://host[:port] or *"},
    {CFG_SEC_ROUTE, ECHO, "origins", "https://a.org, https://b.org/",
     "an origin has no path: https://host[:port]"},
    {CFG_SEC_ROUTE, ECHO, "origins", "https://a.org,", "empty item in the list"},
    {CFG_SEC_ROUTE, ECHO, "origins", "https://a.org,,https://b.org", "empty item in the list"},
    {CFG_SEC_ROUTE, ECHO, "origins", "https://*", "bad host name or address"},
    {CFG_SEC_ROUTE, ECHO, "origins", "https://a.org:0",
     "the port must be a number from 1 to 65535"},
    {CFG_SEC_ROUTE, ECHO, "auth", "basic", "expected one of: none jwt"},
    {CFG_SEC_ROUTE, JWT, "jwt_public_key", "\xff", "must be valid UTF-8"},
    {CFG_SEC_ROUTE, JWT, "jwt_from", "header, body", "unknown word in the list"},
    {CFG_SEC_ROUTE, JWT, "jwt_from", "query, cookie, query", "a word is listed twice"},
    {CFG_SEC_ROUTE, JWT, "jwt_from", "", "must be between 1 and 3 items"},
    {CFG_SEC_ROUTE, JWT, "jwt_from", "Header", "unknown word in the list"},
    {CFG_SEC_ROUTE, ECHO, "max_messages_per_second", "1000001", "must be at most 1000000"},
    {CFG_SEC_ROUTE, ECHO, "max_messages_per_second", "fast", "expected a whole number"},
    {CFG_SEC_GATEWAY, "", "compression_memory", "lots",
     "expected a size such as 65536, 64KiB, 1MiB"},
    {CFG_SEC_ROUTE, ECHO, "compression", "maybe", "expected yes or no"},
    {CFG_SEC_ROUTE, ECHO, "compression_min_size", "-1",
     "expected a size such as 65536, 64KiB, 1MiB"},
    {CFG_SEC_ROUTE, ECHO, "compression_level", "0", "must be between 1 and 9"},
    {CFG_SEC_ROUTE, ECHO, "compression_level", "10", "must be between 1 and 9"},
    {CFG_SEC_ROUTE, ECHO, "compression_server_window_bits", "8", "must be between 9 and 15"},
    {CFG_SEC_ROUTE, ECHO, "compression_client_window_bits", "16", "must be between 8 and 15"},
    {CFG_SEC_ROUTE, PUBONLY, "subscribe", "room {room}",
     "channel names use only [A-Za-z0-9_.:-] and {placeholders}"},
    {CFG_SEC_ROUTE, PUBONLY, "subscribe", "a, room:{room", "'{' without '}'"},
    {CFG_SEC_ROUTE, PUBONLY, "subscribe", "room}", "'}' without '{'"},
    {CFG_SEC_ROUTE, PUBONLY, "subscribe", "room:{}", "empty placeholder"},
    {CFG_SEC_ROUTE, PUBONLY, "subscribe", "a:{b.c}",
     "a placeholder is {name}, {query.name} or {jwt.name} with a name of [A-Za-z0-9_]"},
    {CFG_SEC_ROUTE, PUBONLY, "subscribe", "a,", "empty item in the list"},
    {CFG_SEC_ROUTE, PUBONLY, "subscribe", T129, "a channel template is at most 128 characters"},
    {CFG_SEC_ROUTE, PS, "publish", "x/y",
     "channel names use only [A-Za-z0-9_.:-] and {placeholders}"},
    {CFG_SEC_ROUTE, PS, "publish", "a, b",
     "channel names use only [A-Za-z0-9_.:-] and {placeholders}"},
    {CFG_SEC_ROUTE, PS, "envelope", "xml", "expected one of: raw json"},
    {CFG_SEC_ROUTE, PS, "allow", "room", "allow is NAME:[SET], e.g. ch:[A-Za-z0-9_.:-]"},
    {CFG_SEC_ROUTE, PS, "allow", "room:a-z",
     "allow: SET is a bracket expression such as [a-z0-9:]"},
    {CFG_SEC_ROUTE, PS, "allow", "room:[a/b]",
     "allow: SET holds channel characters [A-Za-z0-9_.:-] and ranges"},
    {CFG_SEC_ROUTE, PS, "allow", "room:[a], room:[b]", "allow: a placeholder is listed twice"},
    {CFG_SEC_ROUTE, PS, "server_only", "maybe", "expected yes or no"},
    {CFG_SEC_ROUTE, PS, "shared_namespace", "maybe", "expected yes or no"},
    {CFG_SEC_ROUTE, PS, "read_only", "a, room:{room", "'{' without '}'"},
    {CFG_SEC_ROUTE, PS, "message_type", "utf8", "expected one of: auto text binary"},
    {CFG_SEC_ROUTE, PS, "announce_id", "maybe", "expected yes or no"},
    {CFG_SEC_ROUTE, PS, "max_queue", "512", "must be between 1KiB and 1GiB"},
    {CFG_SEC_ROUTE, PS, "max_queue", "2GiB", "must be between 1KiB and 1GiB"},
    {CFG_SEC_ROUTE, PS, "slow_consumer", "wait",
     "expected one of: close drop_oldest "
     "drop_newest conflate"},
    {CFG_SEC_ROUTE, PS, "history_size", "1000001", "must be at most 1000000"},
    {CFG_SEC_ROUTE, PS, "conflate_key",
     "json:"
     "0123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567",
     "must be between 1 and 128 bytes"},
    {CFG_SEC_ROUTE, PS, "history_ttl", "1y", "expected a duration such as 200ms, 10s, 1m"},
    {CFG_SEC_ROUTE, PX, "backend", "http://app",
     "expected ws://host[:port][/path], wss://... or tcp://host:port"},
    {CFG_SEC_ROUTE, PX, "backend", "tcp://db", "a tcp:// backend needs a port"},
    {CFG_SEC_ROUTE, PX, "backend", "tcp://db:1/x", "a tcp:// backend has no path"},
    {CFG_SEC_ROUTE, PX, "backend", "ws://u@app", "user@ is not supported in a backend address"},
    {CFG_SEC_ROUTE, PX, "backend", "ws://app/#top",
     "spaces, control characters and '#' are not allowed"},
    {CFG_SEC_ROUTE, PX, "backend", "ws://a, ws://b:99999",
     "the port must be a number from 1 to 65535"},
    {CFG_SEC_ROUTE, PX, "balance", "random",
     "expected one of: round_robin least_conn "
     "ip_hash"},
    {CFG_SEC_ROUTE, PX, "connect_timeout", "0", "must be between 1ms and 1h"},
    {CFG_SEC_ROUTE, PX, "retries", "17", "must be at most 16"},
    {CFG_SEC_ROUTE, PX, "forward_headers", "sometimes", "expected yes or no"},
    {CFG_SEC_ROUTE, PX, "ca_file", "\xff", "must be valid UTF-8"},
    {CFG_SEC_ROUTE, PX, "health_check", "1x", "expected a duration such as 200ms, 10s, 1m"},
    {CFG_SEC_ROUTE, PX, "fail_timeout", "0", "must be between 1ms and 1h"},
    {CFG_SEC_ROUTE, PX, "max_fails", "1001", "must be at most 1000"},
    {CFG_SEC_ROUTE, PX, "fail_on_5xx", "maybe", "expected yes or no"},
    /* secrets are never echoed */
    {CFG_SEC_ROUTE, "type = echo\nauth = jwt\njwt_public_key = /dev/null", "jwt_secret", "\xff",
     "must be valid UTF-8"},
};

START_TEST(test_bad_rows)
{
	const struct bad_row *r = &bad_rows[_i];
	const struct config_key *k = config_key_find(r->sec, r->key);
	char *t, want[1024];
	const char *list[2] = {want, NULL};
	int line;

	ck_assert_msg(k != NULL, "no key %s", r->key);
	t = key_text(r->sec, r->ctx, r->key, r->value, &line);
	if (k->flags & CFG_F_SECRET)
		snprintf(want, sizeof(want), "t.ini:%d: bad value for %s (%s)", line, r->key,
		         r->why);
	else
		snprintf(want, sizeof(want), "t.ini:%d: bad value for %s: '%s' (%s)", line, r->key,
		         r->value, r->why);
	expect_errors(t, list);
	free(t);
}
END_TEST

/* The contract: every row of the key table has a good and a bad test row. */
START_TEST(test_every_key_has_rows)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		int good = 0, bad = 0;

		for (size_t j = 0; j < NROWS(good_rows); j++)
			good |= good_rows[j].sec == k->section &&
			        strcmp(good_rows[j].key, k->name) == 0;
		for (size_t j = 0; j < NROWS(bad_rows); j++)
			bad |=
			    bad_rows[j].sec == k->section && strcmp(bad_rows[j].key, k->name) == 0;
		ck_assert_msg(good, "key [%s] %s has no good_rows entry",
		              config_sections[k->section].name, k->name);
		ck_assert_msg(bad, "key [%s] %s has no bad_rows entry",
		              config_sections[k->section].name, k->name);
	}
}
END_TEST

/* ---- long lines ---- */

static char *
make_line_text(size_t msglen, const char *after)
{
	/* "app_message = " is 14 characters, so msglen 185 makes a 199-character line */
	size_t n = strlen("[heartbeat]\napp_message = ") + msglen + strlen(after) + 64;
	char *t = malloc(n);

	ck_assert_ptr_nonnull(t);
	strcpy(t, "[heartbeat]\napp_message = ");
	memset(t + strlen(t), 'x', msglen);
	t[strlen("[heartbeat]\napp_message = ") + msglen] = '\0';
	strcat(t, "\n");
	strcat(t, after);
	return t;
}

START_TEST(test_line_199_ok)
{
	char *t = make_line_text(185, ECHO_ROUTE);
	struct config *cfg = load_ok(t);

	ck_assert_uint_eq(cfg->app_message_len, 185);
	config_free(cfg);
	free(t);
}
END_TEST

START_TEST(test_line_200_too_long)
{
	/* the line after the long one keeps its own number: nothing of the tail reaches inih */
	char *t = make_line_text(186, "bogus = 1\n" ECHO_ROUTE);
	static const char *const want[] = {
	    "t.ini:2: line too long (max 199 characters)",
	    "t.ini:3: unknown key 'bogus' in [heartbeat]",
	    NULL,
	};

	expect_errors(t, want);
	free(t);
}
END_TEST

START_TEST(test_long_line_huge)
{
	char *t = make_line_text(5000, "ping_interval = x\n" ECHO_ROUTE);
	static const char *const want[] = {
	    "t.ini:2: line too long (max 199 characters)",
	    "t.ini:3: bad value for ping_interval: 'x' (expected a duration such as 200ms, "
	    "10s, 1m)",
	    NULL,
	};

	expect_errors(t, want);
	free(t);
}
END_TEST

START_TEST(test_long_section_header)
{
	/* keys after a header lost to the length limit must not land in the section before it */
	char text[600];
	static const char *const want[] = {
	    "t.ini:3: line too long (max 199 characters)",
	    NULL,
	};

	snprintf(text, sizeof(text), "[route /echo]\ntype = echo\n[route /%0250d]\ntype = echo\n",
	         0);
	expect_errors(text, want);
}
END_TEST

START_TEST(test_error_cap)
{
	/* garbage yields a bounded list: 100 errors and a note */
	size_t n = 150, i;
	char *t = malloc(n * 8 + 1), *p = t;
	struct config *cfg = NULL;
	struct config_errors errs = {NULL, 0};

	ck_assert_ptr_nonnull(t);
	for (i = 0; i < n; i++)
		p += sprintf(p, "junk%02zu\n", i % 100);
	ck_assert_int_eq(config_load_string("t.ini", t, &cfg, &errs), -1);
	ck_assert_uint_eq(errs.n, 101);
	ck_assert_str_eq(errs.msgs[0], "t.ini:1: syntax error (expected key = value)");
	ck_assert_str_eq(errs.msgs[99], "t.ini:100: syntax error (expected key = value)");
	ck_assert_str_eq(errs.msgs[100], "t.ini: too many errors, stopped after 100");
	config_errors_free(&errs);
	free(t);
}
END_TEST

/* ---- files ---- */

static char *
write_tmp(const char *data, size_t len)
{
	char *path = strdup("/tmp/check_config_XXXXXX");
	int fd;

	ck_assert_ptr_nonnull(path);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

START_TEST(test_file_nul_byte)
{
	static const char data[] = "[gateway]\nlog_level = in\0fo\n" ECHO_ROUTE;
	char *path = write_tmp(data, sizeof(data) - 1), want[256];
	struct config *cfg = NULL;
	struct config_errors errs = {NULL, 0};

	ck_assert_int_eq(config_load_file(path, &cfg, &errs), -1);
	ck_assert_ptr_null(cfg);
	ck_assert_uint_eq(errs.n, 1);
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", path);
	ck_assert_str_eq(errs.msgs[0], want);
	config_errors_free(&errs);
	unlink(path);
	free(path);
}
END_TEST

START_TEST(test_file_ok)
{
	static const char data[] = "[gateway]\nlog_level = warn\n" ECHO_ROUTE;
	char *path = write_tmp(data, sizeof(data) - 1);
	struct config *cfg = NULL;
	struct config_errors errs = {NULL, 0};

	ck_assert_int_eq(config_load_file(path, &cfg, &errs), 0);
	ck_assert_uint_eq(errs.n, 0);
	ck_assert_str_eq(cfg->file, path);
	ck_assert_int_eq(cfg->log_level, LOG_LVL_WARN);
	config_free(cfg);
	unlink(path);
	free(path);
}
END_TEST

START_TEST(test_file_too_large)
{
	size_t n = 1024 * 1024 + 1;
	char *data = malloc(n), *path, want[256];
	struct config *cfg = NULL;
	struct config_errors errs = {NULL, 0};

	ck_assert_ptr_nonnull(data);
	memset(data, '\n', n);
	path = write_tmp(data, n);
	ck_assert_int_eq(config_load_file(path, &cfg, &errs), -1);
	ck_assert_uint_eq(errs.n, 1);
	snprintf(want, sizeof(want), "%s: file too large (max 1048576 bytes)", path);
	ck_assert_str_eq(errs.msgs[0], want);
	config_errors_free(&errs);
	unlink(path);
	free(path);
	free(data);
}
END_TEST

START_TEST(test_file_is_directory)
{
	struct config *cfg = NULL;
	struct config_errors errs = {NULL, 0};

	ck_assert_int_eq(config_load_file("/", &cfg, &errs), -1);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msgs[0], "/: read error: Is a directory");
	config_errors_free(&errs);
}
END_TEST

START_TEST(test_file_missing)
{
	struct config *cfg = (struct config *)1;
	struct config_errors errs = {NULL, 0};

	ck_assert_int_eq(config_load_file("/nonexistent/wsgate.ini", &cfg, &errs), -1);
	ck_assert_ptr_null(cfg);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msgs[0],
	                 "/nonexistent/wsgate.ini: cannot open: No such file or directory");
	config_errors_free(&errs);
}
END_TEST

START_TEST(test_shipped_config)
{
	const char *srcdir = getenv("WSGATE_SRCDIR");
	char path[4096];
	struct config *cfg = NULL;
	struct config_errors errs = {NULL, 0};
	int rc;

	snprintf(path, sizeof(path), "%s/etc/wsgate.ini", srcdir != NULL ? srcdir : ".");
	rc = config_load_file(path, &cfg, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(cfg->nlistens, 1);
	ck_assert_str_eq(cfg->listens[0].host, "0.0.0.0");
	ck_assert_str_eq(cfg->listens[0].port, "8080");
	ck_assert_uint_eq(cfg->max_message_size, 1048576);
	ck_assert_uint_eq(cfg->ping_interval_ms, 25000);
	ck_assert_uint_eq(cfg->pong_timeout_ms, 10000);
	ck_assert_uint_eq(cfg->idle_timeout_ms, 0);
	ck_assert_ptr_null(cfg->app_message);
	ck_assert_int_eq(cfg->log_format, LOG_FORMAT_TEXT);
	ck_assert_uint_eq(cfg->max_connections, 100000);
	ck_assert_uint_eq(cfg->workers, 0);
	ck_assert_uint_eq(cfg->nadmin_listens, 0);
	ck_assert_uint_eq(cfg->drain_window_ms, 10000);
	ck_assert_int_eq(cfg->redis.enabled, 0); /* the in-process hub serves /chat */
	ck_assert_uint_eq(cfg->ntls_certs, 0);
	ck_assert_uint_eq(cfg->nroutes, 2);
	ck_assert_str_eq(cfg->routes[0].path, "/echo");
	ck_assert_int_eq(cfg->routes[0].type, ROUTE_ECHO);
	ck_assert_str_eq(cfg->routes[1].path, "/chat");
	ck_assert_int_eq(cfg->routes[1].type, ROUTE_PUBSUB);
	ck_assert_uint_eq(cfg->routes[1].nsubscribe, 1);
	ck_assert_str_eq(cfg->routes[1].subscribe[0], "chat");
	ck_assert_str_eq(cfg->routes[1].publish, "chat");
	ck_assert_int_eq(cfg->routes[1].slow_consumer, SLOW_CLOSE);
	config_free(cfg);
}
END_TEST

/* Every commented example of the shipped file, uncommented, must load too (with /dev/null for
 * the PEM files, which must exist). */
START_TEST(test_shipped_examples)
{
	const char *srcdir = getenv("WSGATE_SRCDIR");
	char path[4096], line[512], *text = NULL;
	size_t len = 0;
	FILE *f;
	struct config *cfg;

	snprintf(path, sizeof(path), "%s/etc/wsgate.ini", srcdir != NULL ? srcdir : ".");
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		const char *l = line;
		char *t;

		/* ";key = value" and ";[section]" are examples, "; text" is prose */
		if (l[0] == ';' && (l[1] == '[' || (l[1] >= 'a' && l[1] <= 'z')))
			l++;
		if (strncmp(l, "cert = ", 7) == 0)
			l = "cert = /dev/null\n";
		else if (strncmp(l, "key = ", 6) == 0)
			l = "key = /dev/null\n";
		else if (strncmp(l, "ca_file = ", 10) == 0)
			l = "ca_file = /dev/null\n";
		t = realloc(text, len + strlen(l) + 1);
		ck_assert_ptr_nonnull(t);
		text = t;
		memcpy(text + len, l, strlen(l) + 1);
		len += strlen(l);
	}
	fclose(f);
	cfg = load_ok(text);
	ck_assert_uint_eq(cfg->nroutes, 5); /* with the server_only /news example (issue 17) */
	ck_assert_int_eq(cfg->redis.enabled, 1);
	ck_assert_uint_eq(cfg->ntls_certs, 2);
	ck_assert_uint_eq(cfg->nadmin_listens, 1);
	ck_assert_int_eq(cfg->routes[3].server_only, 1);
	ck_assert_uint_eq(cfg->ntrusted_proxies, 2);
	ck_assert_uint_eq(cfg->routes[4].nbackends, 3);
	config_free(cfg);
	free(text);
}
END_TEST

/* ---- environment overrides ---- */

#define MAXENV 6
static const struct env_err_row {
	const char *name;
	const char *envp[MAXENV];
	const char *text;
	const char *want[MAXW];
} env_err_rows[] = {
    {"bad value",
     {"WSGATE_GATEWAY_MAX_MESSAGE_SIZE=0"},
     ECHO_ROUTE,
     {"env WSGATE_GATEWAY_MAX_MESSAGE_SIZE: bad value for max_message_size: '0' (must be "
      "between 1 and 1GiB)"}},
    {"unknown key of a known section",
     {"WSGATE_GATEWAY_NOPE=1", "WSGATE_REDIS_HOST=h"},
     ECHO_ROUTE,
     {"env WSGATE_GATEWAY_NOPE: no such key in [gateway]",
      "env WSGATE_REDIS_HOST: no such key in [redis]"}},
    {"a secret is not echoed",
     {"WSGATE_REDIS_URL=redis://u:p@h"},
     ECHO_ROUTE,
     {"env WSGATE_REDIS_URL: bad value for url (only a password goes before '@': "
      "redis://:pw@host)"}},
    {"one bad listen of several",
     {"WSGATE_GATEWAY_LISTEN=:80,nope"},
     ECHO_ROUTE,
     {"env WSGATE_GATEWAY_LISTEN: bad value for listen: 'nope' (expected host:port, "
      "[v6]:port or :port, optionally followed by tls)"}},
    {"duplicate listen inside the variable",
     {"WSGATE_GATEWAY_LISTEN=:80, 0.0.0.0:80"},
     ECHO_ROUTE,
     {"env WSGATE_GATEWAY_LISTEN: duplicate listen address 0.0.0.0:80 (first at "
      "WSGATE_GATEWAY_LISTEN)"}},
    {"admin_listen from the environment has no tls",
     {"WSGATE_GATEWAY_ADMIN_LISTEN=:9090 tls"},
     ECHO_ROUTE,
     {"env WSGATE_GATEWAY_ADMIN_LISTEN: bad value for admin_listen: ':9090 tls' (expected "
      "host:port, [v6]:port or :port (the admin listener has no tls))"}},
    {"tls listener from the environment",
     {"WSGATE_GATEWAY_LISTEN=:443 tls"},
     ECHO_ROUTE,
     {"env WSGATE_GATEWAY_LISTEN: listener 0.0.0.0:443 uses tls but there is no [tls] "
      "section with cert and key"}},
    {"cross-key rule on a variable",
     {"WSGATE_HEARTBEAT_PONG_TIMEOUT=0"},
     ECHO_ROUTE,
     {"env WSGATE_HEARTBEAT_PONG_TIMEOUT: pong_timeout must be > 0 when ping_interval is "
      "set"}},
    {"cert from the environment, no key",
     {"WSGATE_TLS_CERT=/dev/null"},
     ECHO_ROUTE,
     {"t.ini: [tls] has no key"}},
    {"unreadable cert from the environment",
     {"WSGATE_TLS_CERT=/nonexistent/c.pem", "WSGATE_TLS_KEY=/dev/null"},
     ECHO_ROUTE,
     {"env WSGATE_TLS_CERT: cannot read cert '/nonexistent/c.pem': No such file or "
      "directory"}},
    {"workers from the environment",
     {"WSGATE_GATEWAY_WORKERS=0"},
     ECHO_ROUTE,
     {"env WSGATE_GATEWAY_WORKERS: bad value for workers: '0' (must be between 1 and "
      "64)"}},
    {"environment first, then the file by line",
     {"WSGATE_HEARTBEAT_IDLE_TIMEOUT=x", "WSGATE_GATEWAY_LOG_FORMAT=yaml"},
     "[gateway]\nbogus = 1\n" ECHO_ROUTE,
     {"env WSGATE_HEARTBEAT_IDLE_TIMEOUT: bad value for idle_timeout: 'x' (expected a "
      "duration such as 200ms, 10s, 1m)",
      "env WSGATE_GATEWAY_LOG_FORMAT: bad value for log_format: 'yaml' (expected one of: "
      "text json)",
      "t.ini:2: unknown key 'bogus' in [gateway]"}},
    {"a duplicate line in the file is still one",
     {"WSGATE_GATEWAY_LOG_LEVEL=debug"},
     "[gateway]\nlog_level = info\nlog_level = warn\n" ECHO_ROUTE,
     {"t.ini:3: duplicate key 'log_level' (first set at line 2)"}},
};

START_TEST(test_env_err_rows)
{
	const struct env_err_row *r = &env_err_rows[_i];
	char *envp[MAXENV + 1] = {NULL};
	struct config *cfg = (struct config *)1;
	struct config_errors errs = {NULL, 0};
	size_t nwant = 0, i;
	int same;

	for (i = 0; i < MAXENV && r->envp[i] != NULL; i++)
		envp[i] = (char *)r->envp[i];
	ck_assert_int_eq(config_load_string_env("t.ini", r->text, envp, &cfg, &errs), -1);
	ck_assert_ptr_null(cfg);
	while (r->want[nwant] != NULL)
		nwant++;
	same = errs.n == nwant;
	for (i = 0; same && i < nwant; i++)
		same = strcmp(errs.msgs[i], r->want[i]) == 0;
	if (!same) {
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "  got:  %s\n", errs.msgs[i]);
		for (i = 0; i < nwant; i++)
			fprintf(stderr, "  want: %s\n", r->want[i]);
	}
	ck_assert_msg(same, "%s: error list differs (see stderr)", r->name);
	config_errors_free(&errs);
}
END_TEST

static struct config *
load_env_ok(const char *text, char *const *envp)
{
	struct config *cfg = NULL;
	struct config_errors errs = {NULL, 0};
	int rc = config_load_string_env("t.ini", text, envp, &cfg, &errs);

	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "unexpected: %s\n", errs.msgs[i]);
	ck_assert_int_eq(rc, 0);
	ck_assert_ptr_nonnull(cfg);
	config_errors_free(&errs);
	return cfg;
}

START_TEST(test_env_overrides)
{
	char *envp[] = {
	    "PATH=/usr/bin:/bin",
	    "WSGATE_SRCDIR=/src",             /* not a section: not ours */
	    "WSGATE_ROUTE_TYPE=proxy",        /* routes are not singletons */
	    "wsgate_gateway_log_level=bogus", /* names are upper case */
	    "WSGATE_GATEWAY_LOG_LEVEL=debug",
	    "WSGATE_GATEWAY_LOG_LEVEL=error", /* a second copy: the first wins */
	    "WSGATE_GATEWAY_LISTEN=127.0.0.1:1, [::1]:2",
	    "WSGATE_GATEWAY_WORKERS=auto",
	    "WSGATE_GATEWAY_MAX_CONNECTIONS_PER_IP=7",
	    "WSGATE_HEARTBEAT_PING_INTERVAL=5s",
	    "WSGATE_HEARTBEAT_APP_MESSAGE={\"t\":\"p\"}",
	    "WSGATE_REDIS_URL=redis://:pw@r:6380/2",
	    "WSGATE_REDIS_CHANNEL_PREFIX=",
	    "WSGATE_TLS_MIN_VERSION=1.3",
	    "NOEQUALS",
	    NULL,
	};
	/* every overridden line is replaced, so its bad values do not count */
	struct config *cfg =
	    load_env_ok("[gateway]\nlog_level = bogus\nlisten = :8080\n"
	                "listen = :8081 tls\nworkers = 8\n[heartbeat]\nping_interval = nope\n"
	                "[route /echo]\ntype = echo\n",
	                envp);

	ck_assert_int_eq(cfg->log_level, LOG_LVL_DEBUG);
	ck_assert_uint_eq(cfg->nlistens, 2);
	ck_assert_str_eq(cfg->listens[0].host, "127.0.0.1");
	ck_assert_str_eq(cfg->listens[0].port, "1");
	ck_assert_int_eq(cfg->listens[0].line, 0);
	ck_assert_str_eq(cfg->listens[1].host, "::1");
	ck_assert_str_eq(cfg->listens[1].port, "2");
	ck_assert_int_eq(cfg->listens[1].tls, 0);
	ck_assert_uint_eq(cfg->workers, 0);
	ck_assert_uint_eq(cfg->max_connections_per_ip, 7);
	ck_assert_uint_eq(cfg->ping_interval_ms, 5000);
	ck_assert_str_eq(cfg->app_message, "{\"t\":\"p\"}");
	ck_assert_int_eq(cfg->redis.enabled, 1); /* no [redis] in the file */
	ck_assert_str_eq(cfg->redis.host, "r");
	ck_assert_str_eq(cfg->redis.port, "6380");
	ck_assert_int_eq(cfg->redis.db, 2);
	ck_assert_str_eq(cfg->redis.password, "pw");
	ck_assert_ptr_null(cfg->redis.channel_prefix);
	ck_assert_int_eq(cfg->tls_min_version, TLS_V1_3);
	ck_assert_uint_eq(cfg->ntls_certs, 0); /* min_version alone makes no certificate */
	config_free(cfg);
}
END_TEST

START_TEST(test_env_redis_section)
{
	char *envp[] = {"WSGATE_REDIS_CHANNEL_PREFIX=b:", NULL};
	struct config *cfg = load_env_ok("[redis]\nchannel_prefix = a:\n" ECHO_ROUTE, envp);

	ck_assert_int_eq(cfg->redis.enabled, 1); /* the section alone enables it */
	ck_assert_str_eq(cfg->redis.channel_prefix, "b:");
	ck_assert_str_eq(cfg->redis.url, "redis://127.0.0.1:6379/0");
	config_free(cfg);
	/* without the section nor WSGATE_REDIS_URL, other redis variables do not enable it */
	cfg = load_env_ok(ECHO_ROUTE, envp);
	ck_assert_int_eq(cfg->redis.enabled, 0);
	config_free(cfg);
}
END_TEST

START_TEST(test_env_tls)
{
	char *envp[] = {"WSGATE_TLS_CERT=/dev/null", "WSGATE_TLS_KEY=/dev/null", NULL};
	char *envp2[] = {"WSGATE_TLS_CERT=/dev/null", NULL};
	struct config *cfg =
	    load_env_ok("[gateway]\nlisten = :8443 tls\n[tls a.org]\n" CK "\n" ECHO_ROUTE, envp);

	/* the variables make the default certificate, which goes first */
	ck_assert_uint_eq(cfg->ntls_certs, 2);
	ck_assert_ptr_null(cfg->tls_certs[0].name);
	ck_assert_str_eq(cfg->tls_certs[0].cert, "/dev/null");
	ck_assert_str_eq(cfg->tls_certs[0].key, "/dev/null");
	ck_assert_int_eq(cfg->tls_certs[0].line, 0);
	ck_assert_str_eq(cfg->tls_certs[1].name, "a.org");
	config_free(cfg);
	/* the file's unreadable cert line is replaced, not checked */
	cfg = load_env_ok("[tls]\ncert = /nonexistent/c.pem\nkey = /dev/null\n" ECHO_ROUTE, envp2);
	ck_assert_uint_eq(cfg->ntls_certs, 1);
	ck_assert_str_eq(cfg->tls_certs[0].cert, "/dev/null");
	ck_assert_int_eq(cfg->tls_certs[0].line, 1);
	config_free(cfg);
}
END_TEST

START_TEST(test_env_none)
{
	struct config *cfg = load_env_ok("[gateway]\nlog_level = warn\n" ECHO_ROUTE, NULL);

	ck_assert_int_eq(cfg->log_level, LOG_LVL_WARN);
	config_free(cfg);
}
END_TEST

/* config_load_string and config_load_file read environ (Check runs each test in a child). */
START_TEST(test_env_from_environ)
{
	static const char data[] = "[gateway]\nlog_level = warn\n" ECHO_ROUTE;
	char *path = write_tmp(data, sizeof(data) - 1);
	struct config *cfg = NULL;
	struct config_errors errs = {NULL, 0};

	ck_assert_int_eq(setenv("WSGATE_GATEWAY_LOG_LEVEL", "error", 1), 0);
	ck_assert_int_eq(setenv("WSGATE_REDIS_URL", "redis://other:1", 1), 0);
	cfg = load_ok(data);
	ck_assert_int_eq(cfg->log_level, LOG_LVL_ERROR);
	ck_assert_int_eq(cfg->redis.enabled, 1);
	config_free(cfg);
	ck_assert_int_eq(config_load_file(path, &cfg, &errs), 0);
	ck_assert_int_eq(cfg->log_level, LOG_LVL_ERROR);
	ck_assert_str_eq(cfg->redis.host, "other");
	config_free(cfg);
	unsetenv("WSGATE_GATEWAY_LOG_LEVEL");
	unsetenv("WSGATE_REDIS_URL");
	cfg = load_ok(data);
	ck_assert_int_eq(cfg->log_level, LOG_LVL_WARN);
	config_free(cfg);
	unlink(path);
	free(path);
}
END_TEST

START_TEST(test_env_key_names)
{
	const struct config_section_def *sec;
	char name[128];

	/* every key of a singleton section has its variable, and only those */
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		const struct config_section_def *s = &config_sections[k->section];

		snprintf(name, sizeof(name), "WSGATE_%s_%s", s->name, k->name);
		for (size_t j = 0; name[j] != '\0'; j++)
			if (name[j] >= 'a' && name[j] <= 'z')
				name[j] = (char)(name[j] - 'a' + 'A');
		if (s->arg == CFG_ARG_NONE)
			ck_assert_msg(config_key_find_env(name, &sec) == k, "%s", name);
		else
			ck_assert_msg(config_key_find_env(name, &sec) != k, "%s", name);
	}
	ck_assert_ptr_eq(config_key_find_env("WSGATE_TLS_CERT", &sec),
	                 config_key_find(CFG_SEC_TLS, "cert"));
	ck_assert_ptr_eq(sec, &config_sections[CFG_SEC_TLS]);
	ck_assert_ptr_null(config_key_find_env("WSGATE_GATEWAY_MAX_CONNECTIONS_PER", &sec));
	ck_assert_ptr_eq(sec, &config_sections[CFG_SEC_GATEWAY]);
	ck_assert_ptr_null(config_key_find_env("WSGATE_GATEWAY_", &sec));
	ck_assert_ptr_eq(sec, &config_sections[CFG_SEC_GATEWAY]);
	ck_assert_ptr_null(config_key_find_env("WSGATE_GATEWAYLOG_LEVEL", &sec));
	ck_assert_ptr_null(sec);
	ck_assert_ptr_null(config_key_find_env("WSGATE_SRCDIR", &sec));
	ck_assert_ptr_null(sec);
	ck_assert_ptr_null(config_key_find_env("WSGATE_ROUTE_TYPE", &sec));
	ck_assert_ptr_null(sec);
	ck_assert_ptr_null(config_key_find_env("wsgate_gateway_log_level", &sec));
	ck_assert_ptr_null(sec);
	ck_assert_ptr_null(config_key_find_env("GATEWAY_LOG_LEVEL", &sec));
	ck_assert_ptr_null(sec);
}
END_TEST

/* ---- sections that come in several pieces ---- */

START_TEST(test_tls_order_and_merge)
{
	struct config *cfg =
	    load_ok("[tls b.org]\n" CK "\n[tls]\ncert = /dev/null\n"
	            "[tls *.a.org]\n" CK "\n[tls]\nkey = /dev/null\nciphers = HIGH\n" ECHO_ROUTE);

	ck_assert_uint_eq(cfg->ntls_certs, 3);
	ck_assert_ptr_null(cfg->tls_certs[0].name);
	ck_assert_int_eq(cfg->tls_certs[0].line, 4);
	ck_assert_str_eq(cfg->tls_certs[0].key, "/dev/null");
	ck_assert_str_eq(cfg->tls_certs[1].name, "b.org");
	ck_assert_str_eq(cfg->tls_certs[2].name, "*.a.org");
	ck_assert_str_eq(cfg->tls_ciphers, "HIGH");
	config_free(cfg);
}
END_TEST

START_TEST(test_route_types_accepted)
{
	struct config *cfg =
	    load_ok("[route /chat]\ntype = pubsub\npublish = chat\n"
	            "[route /feed]\ntype = pubsub\nsubscribe = feed\n[route /app]\ntype = proxy\n"
	            "backend = ws://a\nbackend = ws://b, ws://c\n" ECHO_ROUTE);

	ck_assert_uint_eq(cfg->nroutes, 4);
	ck_assert_int_eq(cfg->routes[0].type, ROUTE_PUBSUB);
	ck_assert_uint_eq(cfg->routes[0].nsubscribe, 0);
	ck_assert_str_eq(cfg->routes[0].publish, "chat");
	ck_assert_ptr_null(cfg->routes[1].publish);
	ck_assert_int_eq(cfg->routes[2].type, ROUTE_PROXY);
	ck_assert_uint_eq(cfg->routes[2].nbackends, 3);
	ck_assert_str_eq(cfg->routes[2].backends[2].url, "ws://c");
	ck_assert_int_eq(cfg->routes[3].type, ROUTE_ECHO);
	config_free(cfg);
}
END_TEST

/* ---- the key table itself ---- */

START_TEST(test_key_table)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];

		ck_assert_msg(k->section < CFG_SEC_COUNT, "%s: bad section", k->name);
		ck_assert_msg(k->size == config_type_size(k->type),
		              "%s: field size %zu for its type", k->name, k->size);
		ck_assert_msg(k->help != NULL && k->help[0] != '\0', "%s: no help", k->name);
		ck_assert_msg(!(k->flags & CFG_F_REQUIRED) || k->def == NULL,
		              "%s: required with a default", k->name);
		ck_assert_msg(k->type != CFG_T_ENUM || k->names != NULL, "%s: enum without names",
		              k->name);
		ck_assert_msg(config_key_find(k->section, k->name) == k, "%s: not unique", k->name);
		ck_assert_msg(k->base == config_sections[k->section].base ||
		                  k->base == CFG_BASE_CONFIG,
		              "%s: a field outside its section's structs", k->name);
		ck_assert_msg((k->off_n != 0) ==
		                  (k->type == CFG_T_LIST || k->type == CFG_T_LISTEN ||
		                   k->type == CFG_T_ADMIN_LISTEN ||
		                   k->type == CFG_T_TEMPLATE_LIST || k->type == CFG_T_ORIGIN_LIST ||
		                   k->type == CFG_T_ENUM_LIST || k->type == CFG_T_BACKEND_LIST ||
		                   k->type == CFG_T_ALLOW_LIST || k->type == CFG_T_CIDR_LIST),
		              "%s: count field", k->name);
		ck_assert_msg(k->type != CFG_T_ENUM_LIST || k->names != NULL, "%s: no words",
		              k->name);
		ck_assert_msg(!(k->flags & (CFG_F_PUBSUB | CFG_F_PROXY)) ||
		                  k->base == CFG_BASE_ROUTE,
		              "%s: a route-type flag outside routes", k->name);
		ck_assert_msg(!(k->flags & CFG_F_AUTO) || k->type == CFG_T_UINT, "%s: auto",
		              k->name);
		ck_assert_msg(!(k->flags & CFG_F_REPEATABLE) || k->off_n != 0,
		              "%s: repeatable "
		              "without a count",
		              k->name);
	}
	for (size_t i = 0; i < CFG_SEC_COUNT; i++) {
		const struct config_section_def *s = &config_sections[i];

		ck_assert_int_eq(s->kind, (int)i);
		ck_assert_msg(s->arg == CFG_ARG_NONE || s->arg_example != NULL, "%s", s->name);
	}
}
END_TEST

START_TEST(test_key_lookup)
{
	int known;

	ck_assert_ptr_nonnull(config_key_find(CFG_SEC_GATEWAY, "listen"));
	ck_assert_ptr_null(config_key_find(CFG_SEC_HEARTBEAT, "listen"));
	ck_assert_ptr_eq(config_section_find("route", 1, &known), &config_sections[CFG_SEC_ROUTE]);
	ck_assert_ptr_null(config_section_find("route", 0, &known));
	ck_assert_int_eq(known, 1);
	ck_assert_ptr_null(config_section_find("nope", 0, &known));
	ck_assert_int_eq(known, 0);
	ck_assert_int_eq(config_key_find(CFG_SEC_GATEWAY, "listen")->flags & CFG_F_RELOADABLE, 0);
	ck_assert_int_ne(
	    config_key_find(CFG_SEC_HEARTBEAT, "ping_interval")->flags & CFG_F_RELOADABLE, 0);
	/* [tls] and [tls NAME] share the name; the argument picks the row */
	ck_assert_ptr_eq(config_section_find("tls", 0, &known), &config_sections[CFG_SEC_TLS]);
	ck_assert_ptr_eq(config_section_find("tls", 1, &known), &config_sections[CFG_SEC_TLS_SNI]);
	ck_assert_ptr_eq(config_section_sibling(&config_sections[CFG_SEC_TLS_SNI], "ciphers"),
	                 &config_sections[CFG_SEC_TLS]);
	ck_assert_ptr_null(config_section_sibling(&config_sections[CFG_SEC_TLS], "ciphers"));
	ck_assert_ptr_null(config_section_sibling(&config_sections[CFG_SEC_GATEWAY], "url"));
	/* the rows of the two share fields: freed once */
	ck_assert_int_eq(config_key_owns_field(config_key_find(CFG_SEC_TLS, "cert")), 1);
	ck_assert_int_eq(config_key_owns_field(config_key_find(CFG_SEC_TLS_SNI, "cert")), 0);
	ck_assert_int_eq(
	    config_key_fits_route(config_key_find(CFG_SEC_ROUTE, "backend"), ROUTE_PROXY), 1);
	ck_assert_int_eq(
	    config_key_fits_route(config_key_find(CFG_SEC_ROUTE, "backend"), ROUTE_PUBSUB), 0);
	ck_assert_int_eq(
	    config_key_fits_route(config_key_find(CFG_SEC_ROUTE, "origins"), ROUTE_ECHO), 1);
}
END_TEST

START_TEST(test_route_type_names)
{
	ck_assert_str_eq(config_route_type_name(ROUTE_ECHO), "echo");
	ck_assert_str_eq(config_route_type_name(ROUTE_PUBSUB), "pubsub");
	ck_assert_str_eq(config_route_type_name(ROUTE_PROXY), "proxy");
	ck_assert_str_eq(config_route_type_name((enum route_type)42), "?");
}
END_TEST

START_TEST(test_free_null)
{
	struct config_errors errs = {NULL, 0};

	config_free(NULL);
	config_errors_free(&errs);
	config_errors_free(NULL);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("values");
	tcase_add_loop_test(tc, test_duration_rows, 0, NROWS(dur_rows));
	tcase_add_loop_test(tc, test_size_rows, 0, NROWS(size_rows));
	tcase_add_loop_test(tc, test_bool_rows, 0, NROWS(bool_rows));
	tcase_add_loop_test(tc, test_listen_rows, 0, NROWS(listen_rows));
	tcase_add_loop_test(tc, test_uint_rows, 0, NROWS(uint_rows));
	tcase_add_loop_test(tc, test_redis_url_rows, 0, NROWS(redis_rows));
	tcase_add_loop_test(tc, test_backend_rows, 0, NROWS(backend_rows));
	tcase_add_loop_test(tc, test_origin_rows, 0, NROWS(origin_rows));
	tcase_add_loop_test(tc, test_template_rows, 0, NROWS(tmpl_rows));
	tcase_add_loop_test(tc, test_unbound_rows, 0, NROWS(unbound_rows));
	tcase_add_test(tc, test_channel_and_token);
	tcase_add_test(tc, test_listen_helpers);
	tcase_add_test(tc, test_readable);
	tcase_add_test(tc, test_route_type_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("load");
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_every_key_set);
	tcase_add_loop_test(tc, test_ok_rows, 0, NROWS(ok_rows));
	tcase_add_loop_test(tc, test_good_rows, 0, NROWS(good_rows));
	tcase_add_test(tc, test_inline_semicolon_kept);
	tcase_add_test(tc, test_free_null);
	tcase_add_test(tc, test_tls_order_and_merge);
	tcase_add_test(tc, test_route_types_accepted);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_loop_test(tc, test_err_rows, 0, NROWS(err_rows));
	tcase_add_loop_test(tc, test_bad_rows, 0, NROWS(bad_rows));
	tcase_add_test(tc, test_line_199_ok);
	tcase_add_test(tc, test_line_200_too_long);
	tcase_add_test(tc, test_long_line_huge);
	tcase_add_test(tc, test_long_section_header);
	tcase_add_test(tc, test_error_cap);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_test(tc, test_file_ok);
	tcase_add_test(tc, test_file_nul_byte);
	tcase_add_test(tc, test_file_missing);
	tcase_add_test(tc, test_file_too_large);
	tcase_add_test(tc, test_file_is_directory);
	tcase_add_test(tc, test_shipped_config);
	tcase_add_test(tc, test_shipped_examples);
	suite_add_tcase(s, tc);

	tc = tcase_create("env");
	tcase_add_loop_test(tc, test_env_err_rows, 0, NROWS(env_err_rows));
	tcase_add_test(tc, test_env_overrides);
	tcase_add_test(tc, test_env_redis_section);
	tcase_add_test(tc, test_env_tls);
	tcase_add_test(tc, test_env_none);
	tcase_add_test(tc, test_env_from_environ);
	tcase_add_test(tc, test_env_key_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("table");
	tcase_add_test(tc, test_key_table);
	tcase_add_test(tc, test_key_lookup);
	tcase_add_test(tc, test_every_key_has_rows);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(config_suite());
}
