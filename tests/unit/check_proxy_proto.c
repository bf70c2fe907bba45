/* check_proxy_proto.c - unit tests for proxy_proto.c: v1 and v2 headers, byte by byte (every
 * prefix is NEED_MORE), and the malformed ones a spoofing or broken peer could send. */
#include <check.h>
#include <string.h>

#include "check_runner.h"
#include "proxy_proto.h"

#define V2SIG "\r\n\r\n\0\r\nQUIT\n"

static const struct {
	const char *name;
	const char *in;
	size_t n;
	enum proxy_proto_status st;
	int family, local;
	size_t len;
	uint16_t sport;
} rows[] = {
    {"v1 tcp4", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET", 48, PROXY_PROTO_OK, 4, 0, 45,
     56324},
    {"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", 40, PROXY_PROTO_OK, 6, 0, 40, 1},
    {"v1 unknown", "PROXY UNKNOWN\r\n", 15, PROXY_PROTO_OK, 0, 1, 15, 0},
    {"v1 unknown with addresses", "PROXY UNKNOWN ff 1 2 3\r\n", 24, PROXY_PROTO_OK, 0, 1, 24, 0},
    {"v1 bare LF", "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n", 38, PROXY_PROTO_BAD, 0, 0, 0, 0},
    {"v1 double space", "PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n", 41, PROXY_PROTO_BAD, 0, 0, 0,
     0},
    {"v1 trailing field", "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n", 41, PROXY_PROTO_BAD, 0, 0,
     0, 0},
    {"v1 v6 address in TCP4", "PROXY TCP4 ::1 ::1 1 2\r\n", 24, PROXY_PROTO_BAD, 0, 0, 0, 0},
    {"v1 port too big", "PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n", 43, PROXY_PROTO_BAD, 0, 0,
     0, 0},
    {"v1 port leading zero", "PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n", 40, PROXY_PROTO_BAD, 0,
     0, 0, 0},
    {"v1 udp", "PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n", 39, PROXY_PROTO_BAD, 0, 0, 0, 0},
    {"v1 no CRLF within 107 bytes",
     "PROXY TCP4 192.0.2.1 198.51.100.2 1 2xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
     120, PROXY_PROTO_BAD, 0, 0, 0, 0},
    {"not a header", "GET / HTTP/1.1\r\n", 16, PROXY_PROTO_BAD, 0, 0, 0, 0},
    {"v2 tcp4", V2SIG "\x21\x11\x00\x0c\xc0\x00\x02\x01\xc6\x33\x64\x02\xdc\x04\x01\xbb", 28,
     PROXY_PROTO_OK, 4, 0, 28, 56324},
    {"v2 tcp4 with a TLV",
     V2SIG "\x21\x11\x00\x10\xc0\x00\x02\x01\xc6\x33\x64\x02\x00\x05"
           "\x01\xbb\x04\x00\x01\x00",
     32, PROXY_PROTO_OK, 4, 0, 32, 5},
    {"v2 local", V2SIG "\x20\x00\x00\x00", 16, PROXY_PROTO_OK, 0, 1, 16, 0},
    {"v2 version 1", V2SIG "\x11\x11\x00\x0c\xc0\x00\x02\x01\xc6\x33\x64\x02\xdc\x04\x01\xbb", 28,
     PROXY_PROTO_BAD, 0, 0, 0, 0},
    {"v2 command 2", V2SIG "\x22\x11\x00\x00", 16, PROXY_PROTO_BAD, 0, 0, 0, 0},
    {"v2 tcp4 too short", V2SIG "\x21\x11\x00\x04\xc0\x00\x02\x01", 20, PROXY_PROTO_BAD, 0, 0, 0,
     0},
    {"v2 unix family", V2SIG "\x21\x31\x00\x00", 16, PROXY_PROTO_BAD, 0, 0, 0, 0},
    {"v2 too long", V2SIG "\x21\x11\xff\xff", 16, PROXY_PROTO_BAD, 0, 0, 0, 0},
};

START_TEST(test_rows)
{
	struct proxy_proto_result r;
	enum proxy_proto_status st =
	    proxy_proto_parse((const uint8_t *)rows[_i].in, rows[_i].n, &r);

	ck_assert_msg(st == rows[_i].st, "%s: %d", rows[_i].name, st);
	if (st != PROXY_PROTO_OK)
		return;
	ck_assert_int_eq(r.family, rows[_i].family);
	ck_assert_int_eq(r.local, rows[_i].local);
	ck_assert_uint_eq(r.len, rows[_i].len);
	ck_assert_uint_eq(r.src_port, rows[_i].sport);
}
END_TEST

/* Every strict prefix of a valid header asks for more: a header split across reads works. */
START_TEST(test_prefixes_need_more)
{
	struct proxy_proto_result r;

	if (rows[_i].st != PROXY_PROTO_OK)
		return;
	for (size_t k = 0; k < rows[_i].len; k++)
		ck_assert_msg(proxy_proto_parse((const uint8_t *)rows[_i].in, k, &r) ==
		                  PROXY_PROTO_NEED_MORE,
		              "%s: prefix %zu", rows[_i].name, k);
}
END_TEST

START_TEST(test_addresses)
{
	struct proxy_proto_result r;
	const char *v1 = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
	static const uint8_t src[4] = {192, 0, 2, 1};

	ck_assert_int_eq(proxy_proto_parse((const uint8_t *)v1, strlen(v1), &r), PROXY_PROTO_OK);
	ck_assert_mem_eq(r.src, src, 4);
	ck_assert_uint_eq(r.dst_port, 443);
}
END_TEST

static Suite *
proxy_proto_suite(void)
{
	Suite *s = suite_create("proxy_proto");
	TCase *tc = tcase_create("parse");

	tcase_add_loop_test(tc, test_rows, 0, sizeof(rows) / sizeof(rows[0]));
	tcase_add_loop_test(tc, test_prefixes_need_more, 0, sizeof(rows) / sizeof(rows[0]));
	tcase_add_test(tc, test_addresses);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(proxy_proto_suite());
}
