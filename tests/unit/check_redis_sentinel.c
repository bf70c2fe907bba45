/* check_redis_sentinel.c - unit tests for redis_sentinel.c's pure parsers: the answer to
 * SENTINEL get-master-addr-by-name, +switch-master messages and the sentinels list, including
 * what a broken or hostile sentinel could send. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "redis_sentinel.h"

/* A reply as hiredis builds it, from RESP bytes. */
static redisReply *
parse(const char *resp)
{
	redisReader *rd = redisReaderCreate();
	void *r = NULL;

	ck_assert_ptr_nonnull(rd);
	ck_assert_int_eq(redisReaderFeed(rd, resp, strlen(resp)), REDIS_OK);
	ck_assert_int_eq(redisReaderGetReply(rd, &r), REDIS_OK);
	ck_assert_ptr_nonnull(r);
	redisReaderFree(rd);
	return r;
}

static const struct {
	const char *resp;
	int want, port;
	const char *host;
} master_rows[] = {
    {"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n", 1, 6380, "127.0.0.1"},
    {"*2\r\n$3\r\n::1\r\n$5\r\n65535\r\n", 1, 65535, "::1"},
    {"*-1\r\n", 0, 0, NULL},
    {"$-1\r\n", 0, 0, NULL},
    {"-IDONTKNOW\r\n", -1, 0, NULL},
    {"*1\r\n$9\r\n127.0.0.1\r\n", -1, 0, NULL},
    {"*3\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\n2\r\n", -1, 0, NULL},
    {"*2\r\n$9\r\n127.0.0.1\r\n:6380\r\n", -1, 0, NULL},
    {"*2\r\n$9\r\n127.0.0.1\r\n$5\r\n65536\r\n", -1, 0, NULL},
    {"*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n", -1, 0, NULL},
    {"*2\r\n$9\r\n127.0.0.1\r\n$3\r\n-12\r\n", -1, 0, NULL},
    {"*2\r\n$0\r\n\r\n$2\r\n12\r\n", -1, 0, NULL},
    {":1\r\n", -1, 0, NULL},
};

START_TEST(test_master_reply)
{
	redisReply *r = parse(master_rows[_i].resp);
	char host[256] = "";
	const char *why = NULL;
	int port = 0, got;

	got = redis_sentinel_master_reply(r, host, sizeof(host), &port, &why);
	ck_assert_msg(got == master_rows[_i].want, "row %d: got %d", _i, got);
	if (got == 1) {
		ck_assert_str_eq(host, master_rows[_i].host);
		ck_assert_int_eq(port, master_rows[_i].port);
	} else if (got < 0) {
		ck_assert_ptr_nonnull(why);
	}
	freeReplyObject(r);
}
END_TEST

START_TEST(test_master_reply_host_too_long)
{
	redisReply *r = parse("*2\r\n$9\r\n127.0.0.1\r\n$2\r\n12\r\n");
	char host[9];
	const char *why = NULL;
	int port;

	ck_assert_int_eq(redis_sentinel_master_reply(r, host, sizeof(host), &port, &why), -1);
	freeReplyObject(r);
}
END_TEST

static const struct {
	const char *msg;
	int want, port;
	const char *host;
} switch_rows[] = {
    {"mymaster 127.0.0.1 6379 127.0.0.1 6380", 1, 6380, "127.0.0.1"},
    {"mymaster ::1 6379 ::1 7000", 1, 7000, "::1"},
    {"other 127.0.0.1 6379 127.0.0.1 6380", 0, 0, NULL},
    {"mymasterx 127.0.0.1 6379 127.0.0.1 6380", 0, 0, NULL},
    {"mymaster 127.0.0.1 6379 127.0.0.1", -1, 0, NULL},
    {"mymaster 127.0.0.1 6379 127.0.0.1 6380 x", -1, 0, NULL},
    {"mymaster 127.0.0.1 6379 127.0.0.1 6380 ", -1, 0, NULL},
    {"mymaster  127.0.0.1 6379 127.0.0.1 6380", -1, 0, NULL},
    {"mymaster 127.0.0.1 6379 127.0.0.1 0", -1, 0, NULL},
    {"mymaster 127.0.0.1 6379 127.0.0.1 99999", -1, 0, NULL},
    {"mymaster 127.0.0.1 6379 127.0.0.1 6x", -1, 0, NULL},
    {"", -1, 0, NULL},
};

START_TEST(test_switch)
{
	char host[256] = "";
	int port = 0, got;

	got = redis_sentinel_switch(switch_rows[_i].msg, strlen(switch_rows[_i].msg), "mymaster",
	                            host, sizeof(host), &port);
	ck_assert_msg(got == switch_rows[_i].want, "row %d (%s): got %d", _i, switch_rows[_i].msg,
	              got);
	if (got == 1) {
		ck_assert_str_eq(host, switch_rows[_i].host);
		ck_assert_int_eq(port, switch_rows[_i].port);
	}
}
END_TEST

START_TEST(test_list)
{
	char hosts[4][256];
	int ports[4];
	const char *why = NULL;

	ck_assert_int_eq(
	    redis_sentinel_parse_list("127.0.0.1:26379, s2:1 ,[::1]:26380", hosts, ports, 4, &why),
	    3);
	ck_assert_str_eq(hosts[0], "127.0.0.1");
	ck_assert_int_eq(ports[0], 26379);
	ck_assert_str_eq(hosts[1], "s2");
	ck_assert_int_eq(ports[1], 1);
	ck_assert_str_eq(hosts[2], "::1");
	ck_assert_int_eq(ports[2], 26380);
	ck_assert_int_eq(redis_sentinel_parse_list("h", hosts, ports, 4, &why), -1);
	ck_assert_str_eq(why, "a port is required: host:port");
	ck_assert_int_eq(redis_sentinel_parse_list("a:1,b:2,c:3,d:4,e:5", hosts, ports, 4, &why),
	                 -1);
	ck_assert_int_eq(redis_sentinel_parse_list("a:1,,b:2", hosts, ports, 4, &why), -1);
	ck_assert_int_eq(redis_sentinel_parse_list("", hosts, ports, 4, &why), -1);
	ck_assert_int_eq(redis_sentinel_parse_list("a:70000", hosts, ports, 4, &why), -1);
}
END_TEST

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *
redis_sentinel_suite(void)
{
	Suite *s = suite_create("redis_sentinel");
	TCase *tc = tcase_create("parse");

	tcase_add_loop_test(tc, test_master_reply, 0, NROWS(master_rows));
	tcase_add_test(tc, test_master_reply_host_too_long);
	tcase_add_loop_test(tc, test_switch, 0, NROWS(switch_rows));
	tcase_add_test(tc, test_list);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(redis_sentinel_suite());
}
