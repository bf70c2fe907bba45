/* check_config.c - unit tests for config.c and config_keys.c: value parsers, defaults, every
 * error message with its FILE:LINE, the key table's consistency, and the shipped etc/wsgate.ini. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkstemp, strdup */
#endif
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* config_keys.h first: it pulls in src/config.h by a path relative to itself, which an
 * autoconf-generated config.h earlier on the include path cannot shadow. */
#include "config_keys.h"

#define NROWS(a) (sizeof(a) / sizeof((a)[0]))
#define ECHO_ROUTE "[route /echo]\ntype = echo\n"
/* /dev/null is a readable file that is always there: the loader only checks readability */
#define TLS_OK "[tls]\ncert = /dev/null\nkey = /dev/null\n"

/* ---- durations ---- */

static const struct dur_row {
	const char *in;
	int ok;
	uint64_t ms;
} dur_rows[] = {
	{ "0", 1, 0 },
	{ "0ms", 1, 0 },
	{ "200ms", 1, 200 },
	{ "10s", 1, 10000 },
	{ "1m", 1, 60000 },
	{ "2h", 1, 7200000 },
	{ "10", 1, 10000 },          /* bare number = seconds */
	{ "1.5s", 1, 1500 },
	{ "1.5", 1, 1500 },
	{ "0.25s", 1, 250 },
	{ "1.5m", 1, 90000 },
	{ "2.0ms", 1, 2 },
	{ "18446744073709551615ms", 1, UINT64_MAX },
	{ "", 0, 0 },
	{ "abc", 0, 0 },
	{ "-1", 0, 0 },
	{ "-1s", 0, 0 },
	{ "+1s", 0, 0 },
	{ "10x", 0, 0 },
	{ "10 s", 0, 0 },
	{ " 10s", 0, 0 },
	{ "10S", 0, 0 },
	{ "5d", 0, 0 },
	{ "s", 0, 0 },
	{ "ms", 0, 0 },
	{ ".5s", 0, 0 },
	{ "1.s", 0, 0 },
	{ "1.2345s", 0, 0 },         /* more than three fraction digits */
	{ "1.5ms", 0, 0 },           /* not a whole number of milliseconds */
	{ "1e3", 0, 0 },
	{ "0x10", 0, 0 },
	{ "1,5s", 0, 0 },
	{ "18446744073709551616ms", 0, 0 },  /* overflows while reading digits */
	{ "18446744073709551615s", 0, 0 },   /* overflows when scaled */
	{ "5124095576030432h", 0, 0 },
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
	{ "0", 1, 0 },
	{ "1048576", 1, 1048576 },
	{ "64KiB", 1, 65536 },
	{ "1MiB", 1, 1048576 },
	{ "1GiB", 1, 1073741824 },
	{ "16k", 1, 16384 },
	{ "16K", 1, 16384 },
	{ "1M", 1, 1048576 },
	{ "1G", 1, 1073741824 },
	{ "17179869183G", 1, 17179869183ull << 30 },
	{ "", 0, 0 },
	{ "abc", 0, 0 },
	{ "-1", 0, 0 },
	{ "1.5MiB", 0, 0 },
	{ "1KB", 0, 0 },
	{ "1kib", 0, 0 },
	{ "1m", 0, 0 },
	{ "1g", 0, 0 },
	{ "1 MiB", 0, 0 },
	{ "1MiBx", 0, 0 },
	{ "MiB", 0, 0 },
	{ "17179869184G", 0, 0 },            /* 2^64: overflows when scaled */
	{ "99999999999999999999", 0, 0 },    /* overflows while reading digits */
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
	{ "yes", 1, 1 }, { "true", 1, 1 }, { "on", 1, 1 }, { "1", 1, 1 }, { "YES", 1, 1 },
	{ "True", 1, 1 },
	{ "no", 1, 0 }, { "false", 1, 0 }, { "off", 1, 0 }, { "0", 1, 0 }, { "OFF", 1, 0 },
	{ "", 0, 0 }, { "y", 0, 0 }, { "2", 0, 0 }, { "yess", 0, 0 }, { "enable", 0, 0 },
	{ " yes", 0, 0 },
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
	{ "127.0.0.1:8080", 1, "127.0.0.1", "8080", 0 },
	{ "[::1]:8080", 1, "::1", "8080", 0 },
	{ "[::]:443 tls", 1, "::", "443", 1 },
	{ "0.0.0.0:8443 tls", 1, "0.0.0.0", "8443", 1 },
	{ "0.0.0.0:8443\ttls", 1, "0.0.0.0", "8443", 1 },
	{ ":8080", 1, "0.0.0.0", "8080", 0 },
	{ "8080", 1, "0.0.0.0", "8080", 0 },
	{ "localhost:8080", 1, "localhost", "8080", 0 },
	{ "gw.example.com:65535", 1, "gw.example.com", "65535", 0 },
	{ "my_service:1", 1, "my_service", "1", 0 },
	{ "08080", 1, "0.0.0.0", "8080", 0 },
	{ "  127.0.0.1:80   tls  ", 1, "127.0.0.1", "80", 1 },
	{ HOST63 ":80", 1, HOST63, "80", 0 },
	{ "", 0, NULL, NULL, 0 },
	{ "tls", 0, NULL, NULL, 0 },
	{ "127.0.0.1", 0, NULL, NULL, 0 },
	{ "127.0.0.1:", 0, NULL, NULL, 0 },
	{ "127.0.0.1:0", 0, NULL, NULL, 0 },
	{ "127.0.0.1:65536", 0, NULL, NULL, 0 },
	{ "127.0.0.1:123456", 0, NULL, NULL, 0 },
	{ "127.0.0.1:-1", 0, NULL, NULL, 0 },
	{ "127.0.0.1:80x", 0, NULL, NULL, 0 },
	{ "::1:8080", 0, NULL, NULL, 0 },
	{ "[::1]", 0, NULL, NULL, 0 },
	{ "[::1]8080", 0, NULL, NULL, 0 },
	{ "[::1:8080", 0, NULL, NULL, 0 },
	{ "[]:80", 0, NULL, NULL, 0 },
	{ "[1.2.3.4]:80", 0, NULL, NULL, 0 },
	{ "256.1.1.1:80", 0, NULL, NULL, 0 },
	{ "1.2.3:80", 0, NULL, NULL, 0 },
	{ "123456:80", 0, NULL, NULL, 0 },
	{ "-bad.com:80", 0, NULL, NULL, 0 },
	{ "bad-.com:80", 0, NULL, NULL, 0 },
	{ "a..b:80", 0, NULL, NULL, 0 },
	{ ".a:80", 0, NULL, NULL, 0 },
	{ "a b:80", 0, NULL, NULL, 0 },
	{ "a/b:80", 0, NULL, NULL, 0 },
	{ "127.0.0.1:8080 tl", 0, NULL, NULL, 0 },
	{ "127.0.0.1:8080 TLS", 0, NULL, NULL, 0 },
	{ "127.0.0.1:8080 tlsx", 0, NULL, NULL, 0 },
	{ "127.0.0.1:8080 tls x", 0, NULL, NULL, 0 },
	{ "x" HOST63 ":80", 0, NULL, NULL, 0 },   /* 64 characters do not fit */
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

/* ---- loading helpers ---- */

static struct config *
load_ok(const char *text)
{
	struct config *cfg = NULL;
	struct config_errors errs = { NULL, 0 };
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
	struct config_errors errs = { NULL, 0 };
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
	ck_assert_uint_eq(cfg->ping_interval_ms, 25000);
	ck_assert_uint_eq(cfg->pong_timeout_ms, 10000);
	ck_assert_uint_eq(cfg->idle_timeout_ms, 0);
	ck_assert_ptr_null(cfg->app_message);
	ck_assert_uint_eq(cfg->app_message_len, 0);
	ck_assert_uint_eq(cfg->nroutes, 1);
	ck_assert_str_eq(cfg->routes[0].path, "/echo");
	ck_assert_int_eq(cfg->routes[0].type, ROUTE_ECHO);
	ck_assert_uint_eq(cfg->routes[0].nsubprotocols, 0);
	ck_assert_int_eq(cfg->routes[0].line, 1);
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
	    "[heartbeat]\n"
	    "ping_interval = 200ms\n"
	    "pong_timeout = 1m\n"
	    "idle_timeout = 2h\n"
	    "app_message = {\"type\":1,\"message\":\"心跳检测\"}\n"
	    "[route /rooms/{room}]\n"
	    "type = echo\n"
	    "subprotocols = chat.v2 , chat.v1,json\n");

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
	ck_assert_uint_eq(cfg->ping_interval_ms, 200);
	ck_assert_uint_eq(cfg->pong_timeout_ms, 60000);
	ck_assert_uint_eq(cfg->idle_timeout_ms, 7200000);
	ck_assert_str_eq(cfg->app_message, "{\"type\":1,\"message\":\"心跳检测\"}");
	ck_assert_uint_eq(cfg->app_message_len, strlen(cfg->app_message));
	ck_assert_uint_eq(cfg->nroutes, 1);
	ck_assert_str_eq(cfg->routes[0].path, "/rooms/{room}");
	ck_assert_int_eq(cfg->routes[0].line, 14);
	ck_assert_uint_eq(cfg->routes[0].nsubprotocols, 3);
	ck_assert_str_eq(cfg->routes[0].subprotocols[0], "chat.v2");
	ck_assert_str_eq(cfg->routes[0].subprotocols[1], "chat.v1");
	ck_assert_str_eq(cfg->routes[0].subprotocols[2], "json");
	config_free(cfg);
}
END_TEST

/* Rows that load: how the reader and inih treat the text around the values. */
static const struct ok_row {
	const char *name;
	const char *text;
	uint64_t ping_ms;          /* heartbeat ping_interval after loading */
	size_t nroutes;
} ok_rows[] = {
	{ "inline comment after a value", "[heartbeat]\nping_interval = 200ms ; fast\n" ECHO_ROUTE,
	    200, 1 },
	{ "'#' and ';' comment lines",
	    "# a\n; b\n[heartbeat]\n  ; c\nping_interval = 1s\n" ECHO_ROUTE, 1000, 1 },
	{ "indented keys are keys, not continuations",
	    "[heartbeat]\n  pong_timeout = 5s\n  ping_interval = 3s\n" ECHO_ROUTE, 3000, 1 },
	{ "CRLF line ends and a BOM", "\xef\xbb\xbf[heartbeat]\r\nping_interval = 4s\r\n"
	    "[route /echo]\r\ntype = echo\r\n", 4000, 1 },
	{ "no newline at the end", "[heartbeat]\nping_interval = 5s\n[route /echo]\ntype = echo",
	    5000, 1 },
	{ "[gateway] twice merges", "[gateway]\nlog_level = warn\n[heartbeat]\n[gateway]\n"
	    "max_message_size = 10\n" ECHO_ROUTE, 25000, 1 },
	{ "values are trimmed", "[heartbeat]\nping_interval =  \t 8s \t \n" ECHO_ROUTE, 8000, 1 },
	{ "name:value form", "[heartbeat]\nping_interval: 6s\n" ECHO_ROUTE, 6000, 1 },
	{ "section header spacing and comment", "[ heartbeat ]  ; note\nping_interval = 7s\n"
	    "[route   /echo ]\ntype = echo\n", 7000, 1 },
	{ "pong_timeout 0 is fine with pings off", "[heartbeat]\nping_interval = 0\n"
	    "pong_timeout = 0\n" ECHO_ROUTE, 0, 1 },
	{ "several routes", ECHO_ROUTE "[route /a/{x}]\ntype = echo\n[route /]\ntype = echo\n",
	    25000, 3 },
	{ "empty subprotocols", "[route /echo]\ntype = echo\nsubprotocols =\n", 25000, 1 },
	{ "same port on two hosts", "[gateway]\nlisten = 127.0.0.1:80\nlisten = 127.0.0.2:80\n"
	    ECHO_ROUTE, 25000, 1 },
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
	{ "unknown section", "[foo]\nx = 1\n" ECHO_ROUTE,
	    { "t.ini:1: unknown section [foo]" } },
	{ "unknown section with argument", ECHO_ROUTE "[foo example.com]\ncert = x\n",
	    { "t.ini:3: unknown section [foo example.com]" } },
	{ "unknown key in [gateway]", "[gateway]\nbar = 1\n" ECHO_ROUTE,
	    { "t.ini:2: unknown key 'bar' in [gateway]" } },
	{ "unknown key in a route", ECHO_ROUTE "backends = ws://x\n",
	    { "t.ini:3: unknown key 'backends' in [route /echo]" } },
	{ "key of another section", "[gateway]\nping_interval = 1s\n" ECHO_ROUTE,
	    { "t.ini:2: unknown key 'ping_interval' in [gateway]" } },
	{ "keys are case-sensitive", "[gateway]\nLog_Level = info\n" ECHO_ROUTE,
	    { "t.ini:2: unknown key 'Log_Level' in [gateway]" } },
	{ "key before any section", "log_level = info\n" ECHO_ROUTE,
	    { "t.ini:1: key 'log_level' outside of any section" } },
	{ "bad duration", "[heartbeat]\nping_interval = abc\n" ECHO_ROUTE,
	    { "t.ini:2: bad value for ping_interval: 'abc' (expected a duration such as 200ms, "
	      "10s, 1m)" } },
	{ "empty duration", "[gateway]\nhandshake_timeout =\n" ECHO_ROUTE,
	    { "t.ini:2: bad value for handshake_timeout: '' (expected a duration such as 200ms, "
	      "10s, 1m)" } },
	{ "duration below minimum", "[gateway]\nhandshake_timeout = 0\n" ECHO_ROUTE,
	    { "t.ini:2: bad value for handshake_timeout: '0' (must be between 1ms and 1h)" } },
	{ "duration above maximum", "[heartbeat]\nping_interval = 25h\n" ECHO_ROUTE,
	    { "t.ini:2: bad value for ping_interval: '25h' (must be at most 24h)" } },
	{ "bad size", "[gateway]\nmax_message_size = 1MB\n" ECHO_ROUTE,
	    { "t.ini:2: bad value for max_message_size: '1MB' (expected a size such as 65536, "
	      "64KiB, 1MiB)" } },
	{ "size 0", "[gateway]\nmax_message_size = 0\n" ECHO_ROUTE,
	    { "t.ini:2: bad value for max_message_size: '0' (must be between 1 and 1GiB)" } },
	{ "size above 1GiB", "[gateway]\nmax_message_size = 1025MiB\n" ECHO_ROUTE,
	    { "t.ini:2: bad value for max_message_size: '1025MiB' (must be between 1 and 1GiB)" } },
	{ "bad log level", "[gateway]\nlog_level = verbose\n" ECHO_ROUTE,
	    { "t.ini:2: bad value for log_level: 'verbose' (expected error, warn, info or "
	      "debug)" } },
	{ "bad listen", "[gateway]\nlisten = 127.0.0.1\n" ECHO_ROUTE,
	    { "t.ini:2: bad value for listen: '127.0.0.1' (expected host:port, [v6]:port or :port, "
	      "optionally followed by tls)" } },
	{ "duplicate listen", "[gateway]\nlisten = 127.0.0.1:80\nlisten = :81\n"
	    "listen = 127.0.0.1:80 tls\nlisten = [::1]:81\nlisten = [::1]:81\n" ECHO_ROUTE TLS_OK,
	    { "t.ini:4: duplicate listen address 127.0.0.1:80 (first at line 2)",
	      "t.ini:6: duplicate listen address [::1]:81 (first at line 5)" } },
	{ "duplicate listen, other spelling", "[gateway]\nlisten = :8080\nlisten = 8080\n"
	    ECHO_ROUTE, { "t.ini:3: duplicate listen address 0.0.0.0:8080 (first at line 2)" } },
	{ "bad route type", "[route /echo]\ntype = websocket\n",
	    { "t.ini:2: bad value for type: 'websocket' (expected echo, pubsub or proxy)" } },
	{ "pubsub without channels", "[route /chat]\ntype = pubsub\n",
	    { "t.ini:1: route /chat (pubsub) needs subscribe or publish" } },
	{ "proxy without backend", ECHO_ROUTE "[route /app]\n\ntype = proxy\n",
	    { "t.ini:3: route /app (proxy) needs at least one backend" } },
	{ "bad subprotocol token", "[route /echo]\ntype = echo\nsubprotocols = a b\n",
	    { "t.ini:3: bad value for subprotocols: 'a b' (expected a comma-separated list of "
	      "tokens)" } },
	{ "empty subprotocol item", "[route /echo]\ntype = echo\nsubprotocols = a,,b\n",
	    { "t.ini:3: bad value for subprotocols: 'a,,b' (expected a comma-separated list of "
	      "tokens)" } },
	{ "duplicate key", "[gateway]\nlog_level = info\nlog_level = warn\n" ECHO_ROUTE,
	    { "t.ini:3: duplicate key 'log_level' (first set at line 2)" } },
	{ "duplicate key across repeated [gateway]", "[gateway]\nlog_level = info\n[heartbeat]\n"
	    "[gateway]\nlog_level = warn\n" ECHO_ROUTE,
	    { "t.ini:5: duplicate key 'log_level' (first set at line 2)" } },
	{ "duplicate key after a bad value", "[heartbeat]\nping_interval = x\nping_interval = 1s\n"
	    ECHO_ROUTE,
	    { "t.ini:2: bad value for ping_interval: 'x' (expected a duration such as 200ms, 10s, "
	      "1m)",
	      "t.ini:3: duplicate key 'ping_interval' (first set at line 2)" } },
	{ "duplicate key in a route", "[route /echo]\ntype = echo\ntype = echo\n",
	    { "t.ini:3: duplicate key 'type' (first set at line 2)" } },
	{ "duplicate route", ECHO_ROUTE "\n[route /echo]\ntype = echo\n",
	    { "t.ini:4: duplicate route /echo (first defined at line 1)" } },
	{ "bad route path", "[route /a{b}]\ntype = echo\n",
	    { "t.ini:1: bad route path '/a{b}': a placeholder must be a whole segment: {name}" } },
	{ "route path without slash", "[route echo]\ntype = echo\n",
	    { "t.ini:1: bad route path 'echo': route path must start with '/'" } },
	{ "route without type", ECHO_ROUTE "[route /x]\nsubprotocols = a\n",
	    { "t.ini:3: route /x has no type" } },
	{ "route without path", "[route]\ntype = echo\n" ECHO_ROUTE,
	    { "t.ini:1: section [route] needs an argument, as in [route /path]" } },
	{ "argument on [gateway]", "[gateway main]\nlog_level = x\n" ECHO_ROUTE,
	    { "t.ini:1: section [gateway] takes no argument (got 'main')" } },
	{ "no route section", "[gateway]\nlog_level = info\n",
	    { "t.ini: no [route] section: nothing to serve" } },
	{ "empty file", "", { "t.ini: no [route] section: nothing to serve" } },
	{ "pong_timeout 0 with pings on", "[heartbeat]\npong_timeout = 0\n" ECHO_ROUTE,
	    { "t.ini:2: pong_timeout must be > 0 when ping_interval is set" } },
	{ "app_message not UTF-8", "[heartbeat]\napp_message = \xc3\x28\n" ECHO_ROUTE,
	    { "t.ini:2: bad value for app_message: '\xc3\x28' (must be valid UTF-8)" } },
	{ "app_message larger than max_message_size", "[gateway]\nmax_message_size = 4\n"
	    "[heartbeat]\napp_message = hello\n" ECHO_ROUTE,
	    { "t.ini:4: app_message is 5 bytes, more than max_message_size (4)" } },
	{ "missing ']'", "[gateway\nlog_level = info\n" ECHO_ROUTE,
	    { "t.ini:1: syntax error (missing ']')" } },
	{ "comment before ']'", "[route /echo ;]\ntype = echo\n" ECHO_ROUTE,
	    { "t.ini:1: syntax error (missing ']')" } },
	{ "text after ']'", "[gateway] x\nlog_level = info\n" ECHO_ROUTE,
	    { "t.ini:1: syntax error (text after ']')" } },
	{ "line without '='", "[gateway]\nlog_level info\n" ECHO_ROUTE,
	    { "t.ini:2: syntax error (expected key = value)" } },
	{ "'=' only inside a comment", "[gateway]\nlog_level ; = info\n" ECHO_ROUTE,
	    { "t.ini:2: syntax error (expected key = value)" } },
	{ "missing key name", "[gateway]\n= info\n" ECHO_ROUTE,
	    { "t.ini:2: syntax error (missing key name)" } },
	{ "control bytes are escaped", "[gateway]\nlog_level = a\x1b[2Jb\n" ECHO_ROUTE,
	    { "t.ini:2: bad value for log_level: 'a\\x1b[2Jb' (expected error, warn, info or "
	      "debug)" } },
	{ "keys of a bad section are skipped", "[foo]\na = 1\nb = 2\n[route]\ntype = x\n"
	    "[route /echo]\ntype = echo\n[route /echo]\nnope = 1\n",
	    { "t.ini:1: unknown section [foo]",
	      "t.ini:4: section [route] needs an argument, as in [route /path]",
	      "t.ini:8: duplicate route /echo (first defined at line 6)" } },
	{ "multiple errors together, in line order",
	    "[gateway]\nlisten = nope\nmax_message_size = 2GiB\n[bogus]\n[heartbeat]\n"
	    "ping_interval = soon\nwhat = 1\n[route /x]\n[route /y]\ntype = pubsub\n",
	    { "t.ini:2: bad value for listen: 'nope' (expected host:port, [v6]:port or :port, "
	      "optionally followed by tls)",
	      "t.ini:3: bad value for max_message_size: '2GiB' (must be between 1 and 1GiB)",
	      "t.ini:4: unknown section [bogus]",
	      "t.ini:6: bad value for ping_interval: 'soon' (expected a duration such as 200ms, "
	      "10s, 1m)",
	      "t.ini:7: unknown key 'what' in [heartbeat]",
	      "t.ini:8: route /x has no type",
	      "t.ini:9: route /y (pubsub) needs subscribe or publish" } },
};

START_TEST(test_err_rows)
{
	const struct err_row *r = &err_rows[_i];

	expect_errors(r->text, r->want);
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
	struct config_errors errs = { NULL, 0 };

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
	struct config_errors errs = { NULL, 0 };

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
	struct config_errors errs = { NULL, 0 };

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
	struct config_errors errs = { NULL, 0 };

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
	struct config_errors errs = { NULL, 0 };

	ck_assert_int_eq(config_load_file("/", &cfg, &errs), -1);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msgs[0], "/: read error: Is a directory");
	config_errors_free(&errs);
}
END_TEST

START_TEST(test_file_missing)
{
	struct config *cfg = (struct config *)1;
	struct config_errors errs = { NULL, 0 };

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
	struct config_errors errs = { NULL, 0 };
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
	ck_assert_uint_eq(cfg->nroutes, 1);
	ck_assert_str_eq(cfg->routes[0].path, "/echo");
	ck_assert_int_eq(cfg->routes[0].type, ROUTE_ECHO);
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
	ck_assert_int_ne(config_key_find(CFG_SEC_HEARTBEAT, "ping_interval")->flags &
	    CFG_F_RELOADABLE, 0);
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
	struct config_errors errs = { NULL, 0 };

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
	tcase_add_test(tc, test_route_type_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("load");
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_every_key_set);
	tcase_add_loop_test(tc, test_ok_rows, 0, NROWS(ok_rows));
	tcase_add_test(tc, test_inline_semicolon_kept);
	tcase_add_test(tc, test_free_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_loop_test(tc, test_err_rows, 0, NROWS(err_rows));
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
	suite_add_tcase(s, tc);

	tc = tcase_create("table");
	tcase_add_test(tc, test_key_table);
	tcase_add_test(tc, test_key_lookup);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failures;

	srunner_run_all(sr, CK_ENV);
	failures = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failures ? 1 : 0;
}
