/* check_ws_deflate_ext.c - permessage-deflate negotiation (RFC 7692 5, 7.1): which offer is
 * taken, which declined, which header is a 400, and the answer. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_runner.h"
#include "ws_deflate_ext.h"

static const struct ws_pmd_policy pol_default = {15, 15, 1};

struct nrow {
	const char *name;
	const char *value; /* one Sec-WebSocket-Extensions value */
	struct ws_pmd_policy pol;
	enum ws_pmd_status want;
	const char *answer; /* WS_PMD_ACCEPT: the response value */
};

#define DEF                                                                                        \
	{                                                                                          \
		15, 15, 1                                                                          \
	}

static const struct nrow rows[] = {
    {"plain offer", "permessage-deflate", DEF, WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover"},
    {"Chrome's offer", "permessage-deflate; client_max_window_bits", DEF, WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover"},
    {"Firefox's offer", "permessage-deflate", DEF, WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover"},
    {"every parameter",
     "permessage-deflate; server_no_context_takeover; "
     "client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
     DEF, WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover; "
     "client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12"},
    {"quoted values",
     "permessage-deflate; server_max_window_bits=\"10\"; "
     "client_max_window_bits=\"9\"",
     DEF, WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; "
     "client_max_window_bits=9"},
    {"escaped quoted value", "permessage-deflate; server_max_window_bits=\"1\\2\"", DEF,
     WS_PMD_ACCEPT, "permessage-deflate; server_no_context_takeover; server_max_window_bits=12"},
    {"case of the name", "Permessage-Deflate", DEF, WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover"},
    {"spaces around ; and =", "permessage-deflate ;  server_max_window_bits = 11 ", DEF,
     WS_PMD_ACCEPT, "permessage-deflate; server_no_context_takeover; server_max_window_bits=11"},
    {"route's smaller server window",
     "permessage-deflate; server_max_window_bits=12",
     {10, 15, 1},
     WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"},
    {"route's smaller client window",
     "permessage-deflate; client_max_window_bits",
     {15, 10, 1},
     WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"},
    {"route's client window, offer cannot be limited",
     "permessage-deflate",
     {15, 10, 1},
     WS_PMD_NONE,
     NULL},
    {"no budget: the answer adds client_no_context_takeover",
     "permessage-deflate",
     {15, 15, 0},
     WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
    {"no budget: client_no_context_takeover taken",
     "permessage-deflate, permessage-deflate; client_no_context_takeover",
     {15, 15, 0},
     WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
    {"first acceptable offer wins",
     "permessage-deflate; server_max_window_bits=9, "
     "permessage-deflate",
     DEF, WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover; server_max_window_bits=9"},
    {"server window 8 declined (zlib), fallback taken",
     "permessage-deflate; server_max_window_bits=8, permessage-deflate", DEF, WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover"},
    {"client window 8 accepted",
     "permessage-deflate; client_max_window_bits=8",
     {15, 8, 1},
     WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover; client_max_window_bits=8"},
    {"other extension first", "x-webkit-deflate-frame, permessage-deflate", DEF, WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover"},
    {"empty list elements", " , permessage-deflate ,, ", DEF, WS_PMD_ACCEPT,
     "permessage-deflate; server_no_context_takeover"},
    /* declined offers (RFC 7692 5.1) */
    {"unknown parameter", "permessage-deflate; foo", DEF, WS_PMD_NONE, NULL},
    {"duplicate parameter",
     "permessage-deflate; client_no_context_takeover; "
     "client_no_context_takeover",
     DEF, WS_PMD_NONE, NULL},
    {"duplicate window",
     "permessage-deflate; server_max_window_bits=10; "
     "server_max_window_bits=10",
     DEF, WS_PMD_NONE, NULL},
    {"value on a flag", "permessage-deflate; server_no_context_takeover=1", DEF, WS_PMD_NONE, NULL},
    {"server window without value", "permessage-deflate; server_max_window_bits", DEF, WS_PMD_NONE,
     NULL},
    {"window 16", "permessage-deflate; server_max_window_bits=16", DEF, WS_PMD_NONE, NULL},
    {"window 7", "permessage-deflate; client_max_window_bits=7", DEF, WS_PMD_NONE, NULL},
    {"window 010", "permessage-deflate; client_max_window_bits=010", DEF, WS_PMD_NONE, NULL},
    {"window +9", "permessage-deflate; client_max_window_bits=\"+9\"", DEF, WS_PMD_NONE, NULL},
    {"window in a long value",
     "permessage-deflate; client_max_window_bits="
     "100000000000000000000000000000000015",
     DEF, WS_PMD_NONE, NULL},
    {"only other extensions", "foo; bar=1, baz", DEF, WS_PMD_NONE, NULL},
    {"empty value", "", DEF, WS_PMD_NONE, NULL},
    /* syntax: 400 */
    {"parameter without a name", "permessage-deflate; =1", DEF, WS_PMD_BAD, NULL},
    {"extension without a name", "; client_no_context_takeover", DEF, WS_PMD_BAD, NULL},
    {"unterminated quote", "permessage-deflate; client_max_window_bits=\"10", DEF, WS_PMD_BAD,
     NULL},
    {"empty quoted value", "permessage-deflate; client_max_window_bits=\"\"", DEF, WS_PMD_BAD,
     NULL},
    {"quoted value not a token", "permessage-deflate; client_max_window_bits=\"1 0\"", DEF,
     WS_PMD_BAD, NULL},
    {"missing value after =", "permessage-deflate; client_max_window_bits=", DEF, WS_PMD_BAD, NULL},
    {"junk after a token", "permessage-deflate x", DEF, WS_PMD_BAD, NULL},
    {"bad offer after a good one", "permessage-deflate, permessage-deflate; a=@", DEF, WS_PMD_BAD,
     NULL},
    {"separator in a name", "permessage/deflate", DEF, WS_PMD_BAD, NULL},
};

START_TEST(test_rows)
{
	const struct nrow *r = &rows[_i];
	struct ws_pmd_params p;
	char resp[WS_PMD_RESPONSE_MAX];
	int found = 0;
	enum ws_pmd_status st;

	memset(&p, 0, sizeof(p));
	st = ws_pmd_negotiate_value(r->value, strlen(r->value), &r->pol, &p, &found);
	ck_assert_msg(st == r->want, "%s: got %d, want %d", r->name, st, r->want);
	if (st != WS_PMD_ACCEPT)
		return;
	ws_pmd_response(&p, resp);
	ck_assert_msg(strcmp(resp, r->answer) == 0, "%s: answer '%s', want '%s'", r->name, resp,
	              r->answer);
}
END_TEST

/* The terms a route gets from an offer: what the codec will use. */
START_TEST(test_params)
{
	struct ws_pmd_params p;
	const char *v =
	    "permessage-deflate; client_no_context_takeover; server_max_window_bits=11; "
	    "client_max_window_bits=9";
	int found = 0;

	ck_assert_int_eq(ws_pmd_negotiate_value(v, strlen(v), &pol_default, &p, &found),
	                 WS_PMD_ACCEPT);
	ck_assert_uint_eq(p.client_no_takeover, 1);
	ck_assert_uint_eq(p.server_bits, 11);
	ck_assert_uint_eq(p.client_bits, 9);
	v = "permessage-deflate";
	found = 0;
	ck_assert_int_eq(ws_pmd_negotiate_value(v, strlen(v), &pol_default, &p, &found),
	                 WS_PMD_ACCEPT);
	ck_assert_uint_eq(p.client_no_takeover, 0);
	ck_assert_uint_eq(p.server_bits, 15);
	ck_assert_uint_eq(p.client_bits, 15);
}
END_TEST

/* Several header lines: offers in order across lines, any bad line is a 400, other headers
 * and the request line are ignored. */
START_TEST(test_head)
{
	struct ws_pmd_params p;
	char resp[WS_PMD_RESPONSE_MAX];
	const char *h1 =
	    "GET /x HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Extensions: foo\r\n"
	    "X-Sec-WebSocket-Extensions: permessage-deflate\r\n"
	    "sec-websocket-extensions:   permessage-deflate; server_max_window_bits=10\r\n"
	    "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
	const char *h2 = "GET /x HTTP/1.1\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
	                 "Sec-WebSocket-Extensions: ;\r\n\r\n";
	const char *h3 = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
	const char *h4 =
	    "GET /x HTTP/1.1\r\nSec-WebSocket-Extensions: permessage-deflate; x\r\n"
	    "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n";

	ck_assert_int_eq(ws_pmd_negotiate(h1, strlen(h1), &pol_default, &p), WS_PMD_ACCEPT);
	ws_pmd_response(&p, resp);
	ck_assert_str_eq(
	    resp, "permessage-deflate; server_no_context_takeover; server_max_window_bits=10");
	ck_assert_int_eq(ws_pmd_negotiate(h2, strlen(h2), &pol_default, &p), WS_PMD_BAD);
	ck_assert_int_eq(ws_pmd_negotiate(h3, strlen(h3), &pol_default, &p), WS_PMD_NONE);
	ck_assert_int_eq(ws_pmd_negotiate(h4, strlen(h4), &pol_default, &p), WS_PMD_ACCEPT);
	ck_assert_uint_eq(p.client_no_takeover, 1);
}
END_TEST

static Suite *
ws_deflate_ext_suite(void)
{
	Suite *s = suite_create("ws_deflate_ext");
	TCase *tc = tcase_create("negotiate");

	tcase_add_loop_test(tc, test_rows, 0, sizeof(rows) / sizeof(rows[0]));
	tcase_add_test(tc, test_params);
	tcase_add_test(tc, test_head);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(ws_deflate_ext_suite());
}
