/* check_upstream_req.c - unit tests for upstream_req.c: the backend request target (path and
 * client query joined), peer addresses, RFC 7239 nodes, the headers copied from the client and
 * the forwarding headers, and the request text. */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "http.h"
#include "upstream_req.h"

#define CRLF "\r\n"

/* clang-format off */
static const struct target_row {
	const char *path, *query, *want;
} target_rows[] = {
	{ "/socket", NULL, "/socket" },
	{ "/socket", "", "/socket" },
	{ "/socket", "q=1", "/socket?q=1" },
	{ "/socket?x=1", "q=1", "/socket?x=1&q=1" },
	{ "/socket?x=1", NULL, "/socket?x=1" },
	{ "/", "a=b&c=d", "/?a=b&c=d" },
	{ NULL, "q=1", "/?q=1" },
	{ "", NULL, "/" },
};
/* clang-format on */

START_TEST(test_target_table)
{
	const struct target_row *row = &target_rows[_i];
	char *t = upstream_req_target(row->path, row->query);

	ck_assert_ptr_nonnull(t);
	ck_assert_str_eq(t, row->want);
	free(t);
}
END_TEST

/* clang-format off */
static const struct ip_row {
	const char *peer, *want; /* want NULL: -1 */
} ip_rows[] = {
	{ "192.0.2.1:5000", "192.0.2.1" },
	{ "[2001:db8::1]:443", "2001:db8::1" },
	{ "[::1]:1", "::1" },
	{ "unix", NULL },
	{ "[broken", NULL },
	{ ":80", NULL },
};
/* clang-format on */

START_TEST(test_peer_ip_table)
{
	const struct ip_row *row = &ip_rows[_i];
	char out[64];
	int r = upstream_req_peer_ip(row->peer, out, sizeof(out));

	if (row->want == NULL) {
		ck_assert_int_eq(r, -1);
	} else {
		ck_assert_int_eq(r, 0);
		ck_assert_str_eq(out, row->want);
	}
}
END_TEST

START_TEST(test_peer_ip_small_buffer)
{
	char out[4];

	ck_assert_int_eq(upstream_req_peer_ip("192.0.2.1:5", out, sizeof(out)), -1);
}
END_TEST

START_TEST(test_forwarded_node)
{
	char out[64];

	ck_assert_uint_eq(upstream_req_forwarded_node("192.0.2.60", out, sizeof(out)), 10);
	ck_assert_str_eq(out, "192.0.2.60");
	/* RFC 7239 7.4's example: quoted and bracketed. */
	upstream_req_forwarded_node("2001:db8:cafe::17", out, sizeof(out));
	ck_assert_str_eq(out, "\"[2001:db8:cafe::17]\"");
	ck_assert_uint_eq(upstream_req_forwarded_node("2001:db8:cafe::17", out, 8), 0);
}
END_TEST

START_TEST(test_head_field)
{
	const char *head = "GET / HTTP/1.1" CRLF "Host: a" CRLF "X-Forwarded-For: 10.0.0.1" CRLF
	                   "x-forwarded-for:10.0.0.2 " CRLF "X-Forwarded-Forx: no" CRLF
	                   "X-Forwarded-For:" CRLF CRLF;
	char *v = upstream_req_head_field(head, strlen(head), "X-Forwarded-For");

	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(v, "10.0.0.1, 10.0.0.2");
	free(v);
	ck_assert_ptr_null(upstream_req_head_field(head, strlen(head), "Forwarded"));
	/* The request line is never a field, whatever it contains. */
	head = "GET /X-Forwarded-For:x HTTP/1.1" CRLF CRLF;
	ck_assert_ptr_null(upstream_req_head_field(head, strlen(head), "GET /X-Forwarded-For"));
}
END_TEST

/* A parsed request, the way the handshake hook gets it. */
static void
parse(const char *s, struct http_request *req)
{
	ck_assert_int_eq(http_parse_request(s, strlen(s), req), HTTP_PARSE_OK);
}

START_TEST(test_copy_plain)
{
	const char *s =
	    "GET /app?room=1 HTTP/1.1" CRLF "Host: gw.example" CRLF
	    "Origin: https://app.example" CRLF "Cookie: sid=42" CRLF "Authorization: Bearer t" CRLF
	    "Sec-WebSocket-Protocol: chat, superchat" CRLF "User-Agent: not-copied" CRLF CRLF;
	struct upstream_req_client cl = {"192.0.2.7", 0, 0, NULL, 0};
	struct http_request req;
	struct upstream_req r;

	parse(s, &req);
	ck_assert_int_eq(upstream_req_copy(&req, &cl, &r), 0);
	ck_assert_str_eq(r.query, "room=1");
	ck_assert_str_eq(r.headers, "Origin: https://app.example" CRLF "Cookie: sid=42" CRLF
	                            "Authorization: Bearer t" CRLF
	                            "Sec-WebSocket-Protocol: chat, superchat" CRLF);
	ck_assert_uint_eq(r.nprotocols, 2);
	ck_assert(http_str_eq(r.protocols[0], "chat"));
	ck_assert(http_str_eq(r.protocols[1], "superchat"));
	upstream_req_free(&r);
}
END_TEST

START_TEST(test_copy_nothing)
{
	struct upstream_req_client cl = {NULL, 0, 1, NULL, 0};
	struct http_request req;
	struct upstream_req r;

	parse("GET /app HTTP/1.1" CRLF "Host: a" CRLF CRLF, &req);
	ck_assert_int_eq(upstream_req_copy(&req, &cl, &r), 0);
	ck_assert_ptr_null(r.query);
	ck_assert_str_eq(r.headers, ""); /* no address known: no forwarding headers either */
	ck_assert_uint_eq(r.nprotocols, 0);
	upstream_req_free(&r);
}
END_TEST

START_TEST(test_copy_forwarding_v4)
{
	struct upstream_req_client cl = {"192.0.2.7", 1, 1, NULL, 0};
	struct http_request req;
	struct upstream_req r;

	parse("GET /app HTTP/1.1" CRLF "Host: gw.example:8443" CRLF CRLF, &req);
	ck_assert_int_eq(upstream_req_copy(&req, &cl, &r), 0);
	ck_assert_str_eq(r.headers,
	                 "X-Forwarded-For: 192.0.2.7" CRLF "X-Forwarded-Proto: wss" CRLF
	                 "X-Forwarded-Host: gw.example:8443" CRLF "X-Real-IP: 192.0.2.7" CRLF
	                 "Forwarded: for=192.0.2.7;proto=wss" CRLF);
	upstream_req_free(&r);
}
END_TEST

/* From a peer that is not a trusted proxy, what the client says about itself is dropped. */
START_TEST(test_copy_forwarding_untrusted_replaced)
{
	const char *s =
	    "GET /app HTTP/1.1" CRLF "Host: a" CRLF "X-Forwarded-For: 10.1.1.1" CRLF
	    "X-Forwarded-Proto: https" CRLF "Forwarded: for=10.1.1.1;proto=https" CRLF CRLF;
	struct upstream_req_client cl = {"2001:db8::9", 0, 1, NULL, 0};
	struct http_request req;
	struct upstream_req r;

	parse(s, &req);
	ck_assert_int_eq(upstream_req_copy(&req, &cl, &r), 0);
	ck_assert_str_eq(r.headers, "X-Forwarded-For: 2001:db8::9" CRLF "X-Forwarded-Proto: ws" CRLF
	                            "X-Forwarded-Host: a" CRLF "X-Real-IP: 2001:db8::9" CRLF
	                            "Forwarded: for=\"[2001:db8::9]\";proto=ws" CRLF);
	upstream_req_free(&r);
}
END_TEST

/* From a trusted proxy the chain is kept and extended with the hop wsgate saw. */
START_TEST(test_copy_forwarding_trusted_appends)
{
	const char *s =
	    "GET /app HTTP/1.1" CRLF "Host: a" CRLF "X-Forwarded-For: 10.1.1.1" CRLF
	    "X-Forwarded-Proto: https" CRLF "Forwarded: for=10.1.1.1;proto=https" CRLF CRLF;
	struct upstream_req_client cl = {"10.1.1.1", 0, 1, "2001:db8::9", 1};
	struct http_request req;
	struct upstream_req r;

	parse(s, &req);
	ck_assert_int_eq(upstream_req_copy(&req, &cl, &r), 0);
	ck_assert_str_eq(
	    r.headers, "X-Forwarded-For: 10.1.1.1, 2001:db8::9" CRLF "X-Forwarded-Proto: https" CRLF
	               "X-Forwarded-Host: a" CRLF "X-Real-IP: 10.1.1.1" CRLF
	               "Forwarded: for=10.1.1.1;proto=https, for=\"[2001:db8::9]\";proto=ws" CRLF);
	upstream_req_free(&r);
}
END_TEST

/* RFC 6265 5.4: every Cookie line reaches the backend, as one line joined with "; ". */
START_TEST(test_copy_cookies_joined)
{
	const char *s = "GET /app HTTP/1.1" CRLF "Host: a" CRLF "Cookie: a=1" CRLF "X-Other: x" CRLF
	                "cookie:  b=2; c=3 " CRLF "Cookie:" CRLF CRLF;
	struct upstream_req_client cl = {NULL, 0, 0, NULL, 0};
	struct http_request req;
	struct upstream_req r;

	parse(s, &req);
	ck_assert_uint_eq(req.ncookies, 3);
	ck_assert_int_eq(upstream_req_copy(&req, &cl, &r), 0);
	ck_assert_str_eq(r.headers, "Cookie: a=1; b=2; c=3" CRLF);
	upstream_req_free(&r);
}
END_TEST

/* clang-format off */
static const struct client_ip_row {
	const char *xff;   /* NULL: no header */
	const char *peer;
	const char *want;
} client_ip_rows[] = {
	{ "6.6.6.6", "192.0.2.1", "192.0.2.1" },            /* untrusted peer: its word is not taken */
	{ NULL, "10.0.0.5", "10.0.0.5" },                   /* trusted, nothing said */
	{ "203.0.113.7", "10.0.0.5", "203.0.113.7" },
	{ "6.6.6.6, 203.0.113.7, 10.0.0.9", "10.0.0.5", "203.0.113.7" }, /* trusted hops skipped */
	{ "10.0.0.8, 10.0.0.9", "10.0.0.5", "10.0.0.8" },   /* all trusted: the leftmost */
	{ "junk, 203.0.113.7", "10.0.0.5", "203.0.113.7" },
	{ "203.0.113.7, junk", "10.0.0.5", "10.0.0.5" },    /* unparsable: stop at the hop before */
	{ "2001:db8::1", "10.0.0.5", "2001:db8::1" },
	{ "::ffff:10.0.0.8, 198.51.100.1", "::ffff:10.0.0.5", "198.51.100.1" },
};
/* clang-format on */

START_TEST(test_client_ip)
{
	const struct client_ip_row *row = &client_ip_rows[_i];
	struct cidr t;
	const char *why;
	char head[256], out[64];

	ck_assert_int_eq(cidr_parse("10.0.0.0/8", 10, &t, &why), 0);
	snprintf(head, sizeof(head), "GET / HTTP/1.1" CRLF "%s%s%s" CRLF,
	         row->xff ? "X-Forwarded-For: " : "", row->xff ? row->xff : "",
	         row->xff ? CRLF : "");
	ck_assert_int_eq(
	    upstream_req_client_ip(head, strlen(head), row->peer, &t, 1, out, sizeof(out)), 0);
	ck_assert_str_eq(out, row->want);
}
END_TEST

START_TEST(test_cidr)
{
	struct cidr c[2];
	const char *why;

	ck_assert_int_eq(cidr_parse("10.1.2.3/8", 10, &c[0], &why), 0);
	ck_assert_uint_eq(c[0].addr[1], 0); /* host bits cleared */
	ck_assert_int_eq(cidr_parse("2001:db8::/33", 13, &c[1], &why), 0);
	ck_assert(cidr_match_text(c, 2, "10.255.0.1", 10));
	ck_assert(cidr_match_text(c, 2, "::ffff:10.0.0.1", 15));
	ck_assert(!cidr_match_text(c, 2, "11.0.0.1", 8));
	ck_assert(cidr_match_text(c, 2, "2001:db8:7fff::1", 16));
	ck_assert(!cidr_match_text(c, 2, "2001:db8:8000::1", 16));
	ck_assert(!cidr_match_text(c, 2, "not-an-ip", 9));
	ck_assert_int_eq(cidr_parse("10.0.0.0/33", 11, &c[0], &why), -1);
	ck_assert_int_eq(cidr_parse("10.0.0.0/", 9, &c[0], &why), -1);
	ck_assert_int_eq(cidr_parse("10.0.0.0/8x", 11, &c[0], &why), -1);
	ck_assert_int_eq(cidr_parse("host.example", 12, &c[0], &why), -1);
	ck_assert_int_eq(cidr_parse("0.0.0.0/0", 9, &c[0], &why), 0);
	ck_assert(cidr_match_text(c, 1, "198.51.100.1", 12));
}
END_TEST

START_TEST(test_copy_forwarding_off)
{
	const char *s =
	    "GET /app HTTP/1.1" CRLF "Host: a" CRLF "X-Forwarded-For: 10.1.1.1" CRLF CRLF;
	struct upstream_req_client cl = {"192.0.2.7", 0, 0, NULL, 0};
	struct http_request req;
	struct upstream_req r;

	parse(s, &req);
	ck_assert_int_eq(upstream_req_copy(&req, &cl, &r), 0);
	ck_assert_str_eq(r.headers, "");
	upstream_req_free(&r);
}
END_TEST

START_TEST(test_format)
{
	size_t len = 0;
	char *req = upstream_req_format("/socket?q=1", "127.0.0.1", "9000", "80",
	                                "dGhlIHNhbXBsZSBub25jZQ==", "Origin: o" CRLF, &len);

	ck_assert_ptr_nonnull(req);
	ck_assert_str_eq(req, "GET /socket?q=1 HTTP/1.1" CRLF "Host: 127.0.0.1:9000" CRLF
	                      "Upgrade: websocket" CRLF "Connection: Upgrade" CRLF
	                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" CRLF
	                      "Sec-WebSocket-Version: 13" CRLF "Origin: o" CRLF CRLF);
	ck_assert_uint_eq(len, strlen(req));
	free(req);
	/* Default port left out; IPv6 bracketed. */
	req = upstream_req_format("/", "::1", "443", "443", "k", NULL, &len);
	ck_assert_ptr_nonnull(req);
	ck_assert_ptr_nonnull(strstr(req, CRLF "Host: [::1]" CRLF));
	free(req);
}
END_TEST

/* The request the backend gets parses as a valid upgrade with our own parser. */
START_TEST(test_format_parses)
{
	const char *s = "GET /app?x=y HTTP/1.1" CRLF "Host: a" CRLF "Origin: https://o" CRLF
	                "Sec-WebSocket-Protocol: chat" CRLF CRLF;
	struct upstream_req_client cl = {"192.0.2.7", 0, 1, NULL, 0};
	struct http_request req, back;
	struct upstream_req r;
	const char *why;
	char *target, *text;
	size_t len;

	parse(s, &req);
	ck_assert_int_eq(upstream_req_copy(&req, &cl, &r), 0);
	target = upstream_req_target("/socket", r.query);
	text = upstream_req_format(target, "backend", "80", "80",
	                           "dGhlIHNhbXBsZSBub25jZQ==", r.headers, &len);
	ck_assert_int_eq(http_parse_request(text, len, &back), HTTP_PARSE_OK);
	ck_assert_int_eq(http_check_upgrade(&back, &why), 0);
	ck_assert(http_str_eq(back.target, "/socket?x=y"));
	ck_assert(http_str_eq(back.host, "backend"));
	ck_assert(http_str_eq(back.origin, "https://o"));
	ck_assert_uint_eq(back.nprotocols, 1);
	ck_assert_uint_eq(back.header_len, len);
	free(text);
	free(target);
	upstream_req_free(&r);
}
END_TEST

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *
upstream_req_suite(void)
{
	Suite *s = suite_create("upstream_req");
	TCase *tc;

	tc = tcase_create("pieces");
	tcase_add_loop_test(tc, test_target_table, 0, NROWS(target_rows));
	tcase_add_loop_test(tc, test_peer_ip_table, 0, NROWS(ip_rows));
	tcase_add_test(tc, test_peer_ip_small_buffer);
	tcase_add_test(tc, test_forwarded_node);
	tcase_add_test(tc, test_head_field);
	suite_add_tcase(s, tc);

	tc = tcase_create("request");
	tcase_add_test(tc, test_copy_plain);
	tcase_add_test(tc, test_copy_nothing);
	tcase_add_test(tc, test_copy_forwarding_v4);
	tcase_add_test(tc, test_copy_forwarding_untrusted_replaced);
	tcase_add_test(tc, test_copy_forwarding_trusted_appends);
	tcase_add_test(tc, test_copy_cookies_joined);
	tcase_add_loop_test(tc, test_client_ip, 0, NROWS(client_ip_rows));
	tcase_add_test(tc, test_cidr);
	tcase_add_test(tc, test_copy_forwarding_off);
	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_format_parses);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(upstream_req_suite());
}
