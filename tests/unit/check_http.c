/* check_http.c - unit tests for http.c: the strict upgrade-request parser, the upgrade checks in
 * their contract order, token lists, key validity, Sec-WebSocket-Accept and reply formatting. */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "http.h"

#define CRLF "\r\n"
/* clang-format off */
#define GOOD_HEADERS \
	"Host: example.com" CRLF \
	"Upgrade: websocket" CRLF \
	"Connection: Upgrade" CRLF \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" CRLF \
	"Sec-WebSocket-Version: 13" CRLF
/* clang-format on */
#define GOOD_REQ "GET /chat HTTP/1.1" CRLF GOOD_HEADERS CRLF

/* Parses a copy of exactly n bytes, so ASan reports any read past the caller's data. */
static enum http_parse_status
parse_n(const char *s, size_t n, struct http_request *req, char **copy)
{
	enum http_parse_status st;

	*copy = malloc(n ? n : 1);
	ck_assert_ptr_nonnull(*copy);
	memcpy(*copy, s, n);
	st = http_parse_request(*copy, n, req);
	return st;
}

static enum http_parse_status
parse_str(const char *s, struct http_request *req, char **copy)
{
	return parse_n(s, strlen(s), req, copy);
}

/* ---- request parsing: one row per rule ---- */

/* A row is either a whole request (req) or the good request plus one more header block
 * (extra, without its CRLF). len is set only for requests with an embedded NUL. */
/* clang-format off */
static const struct parse_row {
	const char *name;
	const char *req;
	const char *extra;
	size_t len;
	enum http_parse_status want;
} parse_rows[] = {
	{ "valid", GOOD_REQ, NULL, 0, HTTP_PARSE_OK },
	{ "no blank line yet", "GET /chat HTTP/1.1" CRLF "Host: a" CRLF, NULL, 0,
	    HTTP_PARSE_NEED_MORE },
	{ "empty input", "", NULL, 0, HTTP_PARSE_NEED_MORE },
	{ "bare LF line endings", "GET / HTTP/1.1\nHost: a\n\n", NULL, 0, HTTP_PARSE_BAD },
	{ "bare LF blank line", "GET / HTTP/1.1" CRLF "Host: a" CRLF "\n", NULL, 0, HTTP_PARSE_BAD },
	{ "bare LF seen before end", "GET / HTTP/1.1\n", NULL, 0, HTTP_PARSE_BAD },
	{ "CR not followed by LF", "GET / HTTP/1.1\rX" CRLF CRLF, NULL, 0, HTTP_PARSE_BAD },
	{ "empty request line", CRLF GOOD_REQ, NULL, 0, HTTP_PARSE_BAD },
	{ "double space after method", "GET  /chat HTTP/1.1" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_BAD },
	{ "double space before version", "GET /chat  HTTP/1.1" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_BAD },
	{ "trailing space after version", "GET /chat HTTP/1.1 " CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_BAD },
	{ "tab as separator", "GET\t/chat HTTP/1.1" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_BAD },
	{ "method not a token", "G(T /chat HTTP/1.1" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_BAD },
	{ "lowercase method parses", "get /chat HTTP/1.1" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_OK },
	{ "absolute-form target", "GET http://a/chat HTTP/1.1" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_BAD },
	{ "asterisk target", "GET * HTTP/1.1" CRLF GOOD_HEADERS CRLF, NULL, 0, HTTP_PARSE_BAD },
	{ "control char in target", "GET /ch\x01t HTTP/1.1" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_BAD },
	{ "DEL in target", "GET /ch\x7ft HTTP/1.1" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_BAD },
	{ "raw 8-bit in target", "GET /ch\xc3\xa9t HTTP/1.1" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_BAD },
	{ "missing version", "GET /chat" CRLF GOOD_HEADERS CRLF, NULL, 0, HTTP_PARSE_BAD },
	{ "bad protocol name", "GET /chat HTTX/1.1" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_BAD },
	{ "two-digit version", "GET /chat HTTP/1.10" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_BAD },
	{ "HTTP/1.0 parses (health checks)", "GET /chat HTTP/1.0" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_OK },
	{ "HTTP/2.0", "GET /chat HTTP/2.0" CRLF GOOD_HEADERS CRLF, NULL, 0, HTTP_PARSE_VERSION },
	{ "HTTP/0.9", "GET /chat HTTP/0.9" CRLF GOOD_HEADERS CRLF, NULL, 0, HTTP_PARSE_VERSION },
	{ "HTTP/1.2 accepted", "GET /chat HTTP/1.2" CRLF GOOD_HEADERS CRLF, NULL, 0,
	    HTTP_PARSE_OK },
	{ "space before colon", NULL, "Host : a", 0, HTTP_PARSE_BAD },
	{ "no colon", NULL, "X-A a", 0, HTTP_PARSE_BAD },
	{ "empty header name", NULL, ": a", 0, HTTP_PARSE_BAD },
	{ "obs-fold with space", NULL, "X-A: a" CRLF " b", 0, HTTP_PARSE_BAD },
	{ "obs-fold with tab", NULL, "X-A: a" CRLF "\tb: c", 0, HTTP_PARSE_BAD },
	{ "CTL in value", NULL, "X-A: a\x01" "b", 0, HTTP_PARSE_BAD },
	{ "DEL in value", NULL, "X-A: a\x7f" "b", 0, HTTP_PARSE_BAD },
	{ "NUL in value", "GET / HTTP/1.1" CRLF "X-A: a\0b" CRLF CRLF, NULL,
	    sizeof("GET / HTTP/1.1" CRLF "X-A: a\0b" CRLF CRLF) - 1, HTTP_PARSE_BAD },
	{ "HTAB in value", NULL, "X-A: a\tb", 0, HTTP_PARSE_OK },
	{ "8-bit in value", NULL, "X-A: caf\xc3\xa9", 0, HTTP_PARSE_OK },
	{ "empty value", NULL, "X-A:", 0, HTTP_PARSE_OK },
	{ "duplicate Host", NULL, "Host: example.com", 0, HTTP_PARSE_BAD },
	{ "duplicate Host, other case", NULL, "hOST: other", 0, HTTP_PARSE_BAD },
	{ "duplicate Sec-WebSocket-Key", NULL, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", 0,
	    HTTP_PARSE_BAD },
	{ "duplicate Sec-WebSocket-Version", NULL, "Sec-WebSocket-Version: 13", 0,
	    HTTP_PARSE_BAD },
	{ "duplicate Upgrade", NULL, "Upgrade: websocket", 0, HTTP_PARSE_BAD },
	/* Two Origins: the allow list would see one and the backend another (issue 17). */
	{ "duplicate Origin", NULL, "Origin: https://a.example" CRLF "origin: https://b.example",
	    0, HTTP_PARSE_BAD },
	/* Two resume positions (issue 11): which one did the client mean? */
	{ "duplicate Wsgate-Since", NULL, "Wsgate-Since: E:1" CRLF "wsgate-since: E:2", 0,
	    HTTP_PARSE_BAD },
	{ "repeated Cookie", NULL, "Cookie: a=1" CRLF "Cookie: b=2", 0, HTTP_PARSE_OK },
	{ "repeated Connection", NULL, "Connection: keep-alive", 0, HTTP_PARSE_OK },
	{ "repeated Sec-WebSocket-Protocol", NULL,
	    "Sec-WebSocket-Protocol: a, b" CRLF "Sec-WebSocket-Protocol: c", 0, HTTP_PARSE_OK },
	{ "Content-Length 0", NULL, "Content-Length: 0", 0, HTTP_PARSE_OK },
	{ "Content-Length 5", NULL, "Content-Length: 5", 0, HTTP_PARSE_BAD },
	{ "Content-Length empty", NULL, "Content-Length:", 0, HTTP_PARSE_BAD },
	{ "Transfer-Encoding", NULL, "Transfer-Encoding: chunked", 0, HTTP_PARSE_BAD },
	{ "16 subprotocols", NULL, "Sec-WebSocket-Protocol: p1,p2,p3,p4,p5,p6,p7,p8" CRLF
	    "Sec-WebSocket-Protocol: p9,p10,p11,p12,p13,p14,p15,p16", 0, HTTP_PARSE_OK },
	{ "17 subprotocols", NULL, "Sec-WebSocket-Protocol: p1,p2,p3,p4,p5,p6,p7,p8" CRLF
	    "Sec-WebSocket-Protocol: p9,p10,p11,p12,p13,p14,p15,p16,p17", 0, HTTP_PARSE_BAD },
	{ "subprotocol not a token", NULL, "Sec-WebSocket-Protocol: chat, a b", 0,
	    HTTP_PARSE_BAD },
};
/* clang-format on */

START_TEST(test_parse_table)
{
	const struct parse_row *row = &parse_rows[_i];
	struct http_request req;
	char buf[2048], *copy;
	enum http_parse_status st;
	size_t n;

	if (row->req != NULL) {
		n = row->len ? row->len : strlen(row->req);
		memcpy(buf, row->req, n);
	} else
		n = (size_t)snprintf(buf, sizeof(buf),
		                     "GET /chat HTTP/1.1" CRLF GOOD_HEADERS "%s" CRLF CRLF,
		                     row->extra);
	st = parse_n(buf, n, &req, &copy);
	ck_assert_msg(st == row->want, "%s: got %d want %d", row->name, st, row->want);
	if (st == HTTP_PARSE_OK)
		ck_assert_uint_eq(req.header_len, n);
	free(copy);
}
END_TEST

/* ---- fields ---- */

START_TEST(test_parse_fields)
{
	const char *s =
	    "GET /rooms/a?x=1&y HTTP/1.1" CRLF "host:   example.com:8080 \t" CRLF
	    "Upgrade: WebSocket" CRLF "Connection: keep-alive" CRLF "Connection: Upgrade" CRLF
	    "Sec-WebSocket-Key:dGhlIHNhbXBsZSBub25jZQ==" CRLF "Sec-WebSocket-Version: 13" CRLF
	    "Sec-WebSocket-Protocol: chat , , superchat" CRLF "Sec-WebSocket-Protocol: v2" CRLF
	    "Sec-WebSocket-Extensions: permessage-deflate" CRLF
	    "Sec-WebSocket-Extensions: x-other" CRLF "Origin: https://example.com" CRLF
	    "Cookie: a=b" CRLF "Authorization: Bearer t" CRLF "WSGATE-since:  chat@E:5 " CRLF CRLF
	    "trailing frame bytes";
	struct http_request req;
	char *copy;

	ck_assert_int_eq(parse_str(s, &req, &copy), HTTP_PARSE_OK);
	ck_assert(http_str_eq(req.method, "GET"));
	ck_assert(http_str_eq(req.target, "/rooms/a?x=1&y"));
	ck_assert(http_str_eq(req.path, "/rooms/a"));
	ck_assert(http_str_eq(req.query, "x=1&y"));
	ck_assert_int_eq(req.version_minor, 1);
	ck_assert(http_str_eq(req.host, "example.com:8080"));
	ck_assert(http_str_eq(req.upgrade, "WebSocket"));
	ck_assert(http_str_eq(req.connection, "keep-alive"));
	ck_assert(http_str_eq(req.key, "dGhlIHNhbXBsZSBub25jZQ=="));
	ck_assert(http_str_eq(req.ws_version, "13"));
	ck_assert_uint_eq(req.nprotocols, 3);
	ck_assert(http_str_eq(req.protocols[0], "chat"));
	ck_assert(http_str_eq(req.protocols[1], "superchat"));
	ck_assert(http_str_eq(req.protocols[2], "v2"));
	ck_assert(http_str_eq(req.extensions, "permessage-deflate"));
	ck_assert(http_str_eq(req.origin, "https://example.com"));
	ck_assert(http_str_eq(req.cookie, "a=b"));
	ck_assert(http_str_eq(req.authorization, "Bearer t"));
	ck_assert(http_str_eq(req.since, "chat@E:5"));
	ck_assert_int_eq(req.has_upgrade_websocket, 1);
	ck_assert_int_eq(req.has_connection_upgrade, 1);
	ck_assert_uint_eq(req.header_len, strlen(s) - strlen("trailing frame bytes"));
	/* Fields point into the caller's buffer. */
	ck_assert(req.host.p > copy && req.host.p < copy + req.header_len);
	free(copy);
}
END_TEST

START_TEST(test_parse_no_query)
{
	struct http_request req;
	char *copy;

	ck_assert_int_eq(parse_str(GOOD_REQ, &req, &copy), HTTP_PARSE_OK);
	ck_assert(http_str_eq(req.path, "/chat"));
	ck_assert_ptr_null(req.query.p);
	ck_assert_uint_eq(req.query.n, 0);
	ck_assert_ptr_null(req.origin.p);
	ck_assert_uint_eq(req.nprotocols, 0);
	free(copy);
	ck_assert_int_eq(parse_str("GET /chat? HTTP/1.1" CRLF CRLF, &req, &copy), HTTP_PARSE_OK);
	ck_assert(http_str_eq(req.path, "/chat"));
	ck_assert_ptr_nonnull(req.query.p);
	ck_assert_uint_eq(req.query.n, 0);
	free(copy);
}
END_TEST

/* ---- incremental input ---- */

START_TEST(test_every_prefix_needs_more)
{
	const char *s = GOOD_REQ;
	struct http_request req;
	size_t n, len = strlen(s);
	char *copy;

	for (n = 0; n < len; n++) {
		ck_assert_msg(parse_n(s, n, &req, &copy) == HTTP_PARSE_NEED_MORE, "prefix %zu", n);
		free(copy);
	}
	ck_assert_int_eq(parse_n(s, len, &req, &copy), HTTP_PARSE_OK);
	ck_assert_uint_eq(req.header_len, len);
	free(copy);
}
END_TEST

/* ---- the 8 KiB limit ---- */

/* A valid head of exactly total bytes (total >= 200), padded with an X-Pad header. */
static char *
make_head(size_t total, size_t alloc)
{
	const char *pre = "GET /chat HTTP/1.1" CRLF GOOD_HEADERS "X-Pad: ";
	char *b = malloc(alloc);
	size_t pl = strlen(pre), pad = total - pl - 4;

	ck_assert_ptr_nonnull(b);
	memset(b, 'x', alloc);
	memcpy(b, pre, pl);
	memcpy(b + pl + pad, CRLF CRLF, 4);
	return b;
}

/* clang-format off */
static const struct limit_row {
	const char *name;
	size_t head;   /* bytes of the head through its blank line */
	size_t n;      /* bytes handed to the parser */
	enum http_parse_status want;
} limit_rows[] = {
	{ "head of 8191", HTTP_MAX_HEADER - 1, HTTP_MAX_HEADER - 1, HTTP_PARSE_OK },
	{ "head of exactly 8192", HTTP_MAX_HEADER, HTTP_MAX_HEADER, HTTP_PARSE_OK },
	{ "head of 8192 plus body bytes", HTTP_MAX_HEADER, HTTP_MAX_HEADER + 500, HTTP_PARSE_OK },
	{ "head of 8193", HTTP_MAX_HEADER + 1, HTTP_MAX_HEADER + 1, HTTP_PARSE_TOO_LARGE },
	{ "8192 bytes of an 8193 head", HTTP_MAX_HEADER + 1, HTTP_MAX_HEADER, HTTP_PARSE_TOO_LARGE },
	{ "8191 bytes of an 8193 head", HTTP_MAX_HEADER + 1, HTTP_MAX_HEADER - 1,
	    HTTP_PARSE_NEED_MORE },
	{ "head of 20000", 20000, 20000, HTTP_PARSE_TOO_LARGE },
};
/* clang-format on */

START_TEST(test_limit_table)
{
	const struct limit_row *row = &limit_rows[_i];
	struct http_request req;
	char *b, *copy;
	enum http_parse_status st;

	b = make_head(row->head, row->head > row->n ? row->head : row->n);
	st = parse_n(b, row->n, &req, &copy);
	ck_assert_msg(st == row->want, "%s: got %d want %d", row->name, st, row->want);
	if (st == HTTP_PARSE_OK) {
		ck_assert_uint_eq(req.header_len, row->head);
		ck_assert_int_eq(http_check_upgrade(&req, &(const char *){NULL}), 0);
	}
	free(copy);
	free(b);
}
END_TEST

/* ---- token lists ---- */

/* clang-format off */
static const struct token_row {
	const char *list;
	const char *token;
	int want;
} token_rows[] = {
	{ "Upgrade", "upgrade", 1 },
	{ "keep-alive, Upgrade", "upgrade", 1 },
	{ "keep-alive,upgrade", "upgrade", 1 },
	{ "  UPGRADE\t", "upgrade", 1 },
	{ "upgrade2", "upgrade", 0 },
	{ "xupgrade", "upgrade", 0 },
	{ "up grade", "upgrade", 0 },
	{ "keep-alive", "upgrade", 0 },
	{ "", "upgrade", 0 },
	{ ",,", "upgrade", 0 },
	{ "websocket, foo", "websocket", 1 },
	{ "foo,  websocket", "websocket", 1 },
	{ "websocket/13", "websocket", 0 },
};
/* clang-format on */

START_TEST(test_token_list_table)
{
	const struct token_row *row = &token_rows[_i];
	size_t n = strlen(row->list);
	char *copy = malloc(n + 1);

	memcpy(copy, row->list, n);
	ck_assert_msg(http_token_list_has(copy, n, row->token) == row->want, "\"%s\" has %s",
	              row->list, row->token);
	free(copy);
}
END_TEST

START_TEST(test_token_list_bounded)
{
	/* The length, not the NUL, ends the list. */
	ck_assert_int_eq(http_token_list_has("keep-alive, upgrade", 10, "upgrade"), 0);
	ck_assert_int_eq(http_token_list_has("upgradeX", 7, "upgrade"), 1);
}
END_TEST

/* ---- http_check_upgrade, in its contract order ---- */

#define L_HOST "Host: example.com" CRLF
#define L_UPG "Upgrade: websocket" CRLF
#define L_CONN "Connection: Upgrade" CRLF
#define L_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" CRLF
#define L_VER "Sec-WebSocket-Version: 13" CRLF

/* clang-format off */
static const struct upgrade_row {
	const char *name;
	const char *req;
	int want;
	const char *why;   /* substring of *why */
} upgrade_rows[] = {
	{ "valid", GOOD_REQ, 0, NULL },
	{ "Connection keep-alive, Upgrade",
	    "GET / HTTP/1.1" CRLF L_HOST L_UPG "Connection: keep-alive, Upgrade" CRLF L_KEY L_VER
	    CRLF, 0, NULL },
	{ "Connection on a second line",
	    "GET / HTTP/1.1" CRLF L_HOST L_UPG "Connection: keep-alive" CRLF "Connection: upgrade"
	    CRLF L_KEY L_VER CRLF, 0, NULL },
	{ "Upgrade websocket, foo",
	    "GET / HTTP/1.1" CRLF L_HOST "Upgrade: websocket, foo" CRLF L_CONN L_KEY L_VER CRLF, 0,
	    NULL },
	{ "HTTP/1.0 upgrade", "GET / HTTP/1.0" CRLF L_HOST L_UPG L_CONN L_KEY L_VER CRLF, 505,
	    "HTTP/1.1" },
	{ "version before method", "POST / HTTP/1.0" CRLF CRLF, 505, "HTTP/1.1" },
	{ "POST", "POST / HTTP/1.1" CRLF L_HOST L_UPG L_CONN L_KEY L_VER CRLF, 405, "GET" },
	{ "lowercase get", "get / HTTP/1.1" CRLF L_HOST L_UPG L_CONN L_KEY L_VER CRLF, 405, "GET" },
	{ "method before Host", "POST / HTTP/1.1" CRLF CRLF, 405, "GET" },
	{ "missing Host", "GET / HTTP/1.1" CRLF L_UPG L_CONN L_KEY L_VER CRLF, 400, "Host" },
	{ "empty Host", "GET / HTTP/1.1" CRLF "Host:" CRLF L_UPG L_CONN L_KEY L_VER CRLF, 400,
	    "Host" },
	{ "Host before Upgrade", "GET / HTTP/1.1" CRLF CRLF, 400, "Host" },
	{ "no Upgrade", "GET / HTTP/1.1" CRLF L_HOST L_CONN L_KEY L_VER CRLF, 426, "Upgrade" },
	{ "Upgrade h2c", "GET / HTTP/1.1" CRLF L_HOST "Upgrade: h2c" CRLF L_CONN L_KEY L_VER CRLF,
	    400, "websocket" },
	{ "Upgrade websocket2",
	    "GET / HTTP/1.1" CRLF L_HOST "Upgrade: websocket2" CRLF L_CONN L_KEY L_VER CRLF, 400,
	    "websocket" },
	{ "no Connection", "GET / HTTP/1.1" CRLF L_HOST L_UPG L_KEY L_VER CRLF, 400, "Connection" },
	{ "Connection keep-alive",
	    "GET / HTTP/1.1" CRLF L_HOST L_UPG "Connection: keep-alive" CRLF L_KEY L_VER CRLF, 400,
	    "Connection" },
	{ "Connection upgrade2",
	    "GET / HTTP/1.1" CRLF L_HOST L_UPG "Connection: upgrade2" CRLF L_KEY L_VER CRLF, 400,
	    "Connection" },
	{ "no version", "GET / HTTP/1.1" CRLF L_HOST L_UPG L_CONN L_KEY CRLF, 426, "Version" },
	{ "version 8", "GET / HTTP/1.1" CRLF L_HOST L_UPG L_CONN L_KEY
	    "Sec-WebSocket-Version: 8" CRLF CRLF, 426, "Version" },
	{ "version 13, 8", "GET / HTTP/1.1" CRLF L_HOST L_UPG L_CONN L_KEY
	    "Sec-WebSocket-Version: 13, 8" CRLF CRLF, 426, "Version" },
	{ "version before key", "GET / HTTP/1.1" CRLF L_HOST L_UPG L_CONN CRLF, 426, "Version" },
	{ "no key", "GET / HTTP/1.1" CRLF L_HOST L_UPG L_CONN L_VER CRLF, 400, "Key" },
	{ "short key", "GET / HTTP/1.1" CRLF L_HOST L_UPG L_CONN
	    "Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2Rl" CRLF L_VER CRLF, 400, "Key" },
};
/* clang-format on */

START_TEST(test_upgrade_table)
{
	const struct upgrade_row *row = &upgrade_rows[_i];
	struct http_request req;
	const char *why = "unset";
	char *copy;
	int st;

	ck_assert_msg(parse_str(row->req, &req, &copy) == HTTP_PARSE_OK, "%s", row->name);
	st = http_check_upgrade(&req, &why);
	ck_assert_msg(st == row->want, "%s: got %d want %d (%s)", row->name, st, row->want,
	              st ? why : "");
	if (row->want != 0) {
		ck_assert_ptr_nonnull(why);
		ck_assert_msg(strstr(why, row->why) != NULL, "%s: why \"%s\"", row->name, why);
	}
	free(copy);
}
END_TEST

/* ---- Sec-WebSocket-Key validity ---- */

/* clang-format off */
static const struct key_row {
	const char *key;
	int want;
} key_rows[] = {
	{ "dGhlIHNhbXBsZSBub25jZQ==", 1 },  /* RFC 6455 sample, 16 bytes */
	{ "MDEyMzQ1Njc4OWFiY2RlZg==", 1 },  /* 16 bytes */
	{ "AAAAAAAAAAAAAAAAAAAAAA==", 1 },
	{ "/////////////////////w==", 1 },
	{ "MDEyMzQ1Njc4OWFiY2Rl", 0 },      /* 15 bytes */
	{ "MDEyMzQ1Njc4OWFiY2RlZmc=", 0 },  /* 17 bytes */
	{ "dGhlIHNhbXBsZSBub25jZ!==", 0 },  /* not base64 */
	{ "dGhlIHNhbXBsZSBub25jZ-==", 0 },  /* base64url alphabet */
	{ "dGhlIHNhbXBsZSBub25jZQ", 0 },    /* missing padding */
	{ "dGhlIHNhbXBsZSBub25jZQ=", 0 },
	{ "dGhlIHNhbXBsZSBub25jZQ===", 0 },
	{ "dGhlIHNhbXBsZSBub25jZR==", 0 },  /* non-canonical: low bits set */
	{ "dGhlIHNhbXBsZSBub25jZf==", 0 },
	{ "dGhlIHNhbXBsZSBub25j====", 0 },
	{ "dGhlIHNhbXBsZSBub2 jZQ==", 0 },
	{ "", 0 },
};
/* clang-format on */

START_TEST(test_key_table)
{
	const struct key_row *row = &key_rows[_i];

	ck_assert_msg(http_ws_key_valid(row->key, strlen(row->key)) == row->want, "%s", row->key);
}
END_TEST

START_TEST(test_accept_rfc_vector)
{
	char out[29];

	memset(out, 'Z', sizeof(out));
	http_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
	ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
END_TEST

/* The proxy's key towards a backend: what a strict server accepts, and new each time. */
START_TEST(test_client_key)
{
	char a[25], b[25];

	ck_assert_int_eq(http_ws_client_key(a), 0);
	ck_assert_int_eq(http_ws_client_key(b), 0);
	ck_assert_uint_eq(strlen(a), 24);
	ck_assert(http_ws_key_valid(a, 24));
	ck_assert_str_ne(a, b);
}
END_TEST

/* ---- replies ---- */

START_TEST(test_format_101)
{
	char out[256], acc[29];
	size_t n;
	const char *want =
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
	const char *wantp =
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
	    "Sec-WebSocket-Protocol: chat\r\n\r\n";

	http_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, acc);
	n = http_format_101(out, sizeof(out), acc, NULL, 0);
	ck_assert_uint_eq(n, strlen(want));
	ck_assert_str_eq(out, want);
	/* protocol_len bounds the name: "chatXYZ" with 4 is "chat". */
	n = http_format_101(out, sizeof(out), acc, "chatXYZ", 4);
	ck_assert_uint_eq(n, strlen(wantp));
	ck_assert_str_eq(out, wantp);
	ck_assert_uint_eq(http_format_101(out, strlen(want), acc, NULL, 0), 0);
	ck_assert_uint_eq(http_format_101(out, strlen(want) + 1, acc, NULL, 0), strlen(want));
	ck_assert_uint_eq(http_format_101(out, strlen(wantp), acc, "chat", 4), 0);
	ck_assert_uint_eq(http_format_101(out, 0, acc, NULL, 0), 0);
}
END_TEST

START_TEST(test_format_reply)
{
	char out[512];
	size_t n;
	const char *w404 = "HTTP/1.1 404 Not Found\r\nConnection: close\r\n"
	                   "Content-Type: text/plain\r\nContent-Length: 10\r\n\r\nNot Found\n";
	const char *w426 =
	    "HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\n"
	    "Content-Type: text/plain\r\nContent-Length: 3\r\nSec-WebSocket-Version: 13\r\n"
	    "\r\nno\n";

	n = http_format_reply(out, sizeof(out), 404, NULL, NULL);
	ck_assert_str_eq(out, w404);
	ck_assert_uint_eq(n, strlen(w404));
	n = http_format_reply(out, sizeof(out), 426, "Sec-WebSocket-Version: 13\r\n", "no\n");
	ck_assert_str_eq(out, w426);
	ck_assert_uint_eq(n, strlen(w426));
	ck_assert_uint_eq(http_format_reply(out, strlen(w404), 404, NULL, NULL), 0);
	ck_assert_uint_eq(http_format_reply(out, strlen(w404) + 1, 404, NULL, NULL), strlen(w404));
}
END_TEST

/* clang-format off */
static const struct reason_row {
	int status;
	const char *reason;
} reason_rows[] = {
	{ 101, "Switching Protocols" }, { 200, "OK" }, { 400, "Bad Request" },
	{ 401, "Unauthorized" }, { 403, "Forbidden" }, { 404, "Not Found" },
	{ 405, "Method Not Allowed" }, { 408, "Request Timeout" }, { 426, "Upgrade Required" },
	{ 429, "Too Many Requests" }, { 431, "Request Header Fields Too Large" },
	{ 500, "Internal Server Error" }, { 502, "Bad Gateway" }, { 503, "Service Unavailable" },
	{ 505, "HTTP Version Not Supported" },
};
/* clang-format on */

START_TEST(test_reason_table)
{
	ck_assert_str_eq(http_reason(reason_rows[_i].status), reason_rows[_i].reason);
}
END_TEST

START_TEST(test_reason_unknown)
{
	ck_assert_ptr_nonnull(http_reason(299));
}
END_TEST

START_TEST(test_str_eq)
{
	struct http_str s = {"Upgrade", 7}, part = {"Upgrade", 3}, none = {NULL, 0};

	ck_assert(http_str_eq(s, "Upgrade"));
	ck_assert(!http_str_eq(s, "upgrade"));
	ck_assert(http_str_caseeq(s, "uPGRADE"));
	ck_assert(!http_str_caseeq(s, "upgrad"));
	ck_assert(http_str_eq(part, "Upg"));
	ck_assert(!http_str_eq(part, "Upgrade"));
	ck_assert(http_str_eq(none, ""));
	ck_assert(!http_str_eq(none, "x"));
	ck_assert(http_str_caseeq(none, ""));
}
END_TEST

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Bare LF or CR is seen in the bytes read so far, so the reader can answer 400 at once. */
START_TEST(test_bad_line_ending)
{
	const char *lf = "GET / HTTP/1.1\nHost: a", *cr = "GET / HTTP/1.1\rHost: a";
	const char *good = "GET / HTTP/1.1\r\nHost: a\r";

	ck_assert_int_eq(http_bad_line_ending(lf, 0, strlen(lf)), 1);
	ck_assert_int_eq(http_bad_line_ending(cr, 0, strlen(cr)), 1);
	ck_assert_int_eq(http_bad_line_ending(good, 0, strlen(good)), 0); /* CR last: wait */
	ck_assert_int_eq(http_bad_line_ending("\n", 0, 1), 1);
	/* from > 0 still sees the byte before from */
	ck_assert_int_eq(http_bad_line_ending("a\r\nb", 2, 4), 0);
	ck_assert_int_eq(http_bad_line_ending("ab\nc", 2, 4), 1);
}
END_TEST

static Suite *
http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc;

	tc = tcase_create("parse");
	tcase_add_loop_test(tc, test_parse_table, 0, NROWS(parse_rows));
	tcase_add_test(tc, test_parse_fields);
	tcase_add_test(tc, test_parse_no_query);
	tcase_add_test(tc, test_bad_line_ending);
	tcase_add_test(tc, test_every_prefix_needs_more);
	tcase_add_loop_test(tc, test_limit_table, 0, NROWS(limit_rows));
	suite_add_tcase(s, tc);

	tc = tcase_create("tokens");
	tcase_add_loop_test(tc, test_token_list_table, 0, NROWS(token_rows));
	tcase_add_test(tc, test_token_list_bounded);
	suite_add_tcase(s, tc);

	tc = tcase_create("upgrade");
	tcase_add_loop_test(tc, test_upgrade_table, 0, NROWS(upgrade_rows));
	tcase_add_loop_test(tc, test_key_table, 0, NROWS(key_rows));
	tcase_add_test(tc, test_accept_rfc_vector);
	tcase_add_test(tc, test_client_key);
	suite_add_tcase(s, tc);

	tc = tcase_create("reply");
	tcase_add_test(tc, test_format_101);
	tcase_add_test(tc, test_format_reply);
	tcase_add_loop_test(tc, test_reason_table, 0, NROWS(reason_rows));
	tcase_add_test(tc, test_reason_unknown);
	tcase_add_test(tc, test_str_eq);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(http_suite());
}
