/* check_redis_cluster.c - unit tests for redis_cluster.c: CRC16 and hash slots as the Redis
 * cluster specification defines them (hash tags included), the CLUSTER SLOTS parser with what a
 * broken or hostile node could answer, MOVED/ASK redirections, and following a failover by
 * node id; and the reader every link uses (redis_reader.c), which refuses an array longer than
 * any reply we ask for before allocating for it. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "redis_cluster.h"
#include "redis_reader.h"

/* A reply as hiredis builds it, from RESP bytes. */
static redisReply *
parse(const char *resp)
{
	redisReader *rd = redis_reader_new();
	void *r = NULL;

	ck_assert_ptr_nonnull(rd);
	ck_assert_int_eq(redisReaderFeed(rd, resp, strlen(resp)), REDIS_OK);
	ck_assert_int_eq(redisReaderGetReply(rd, &r), REDIS_OK);
	ck_assert_ptr_nonnull(r);
	redisReaderFree(rd);
	return r;
}

/* An array as long as the bound is read whole; one element more, or a count a hostile peer
 * announces (8 GB of element vector in hiredis 0.14: fuzz_redis_cluster's find), at the top
 * or nested, fails the reader before anything is allocated for it. */
START_TEST(test_reader_bounds_arrays)
{
	static const char *refused[] = {"*65537\r\n", "*999999992\r\n:1\r\n",
	                                "*2\r\n:1\r\n*2147483647\r\n"};
	static const char *said[] = {"an array of 65537 elements (the bound is 65536)",
	                             "an array of 999999992 elements (the bound is 65536)",
	                             "an array of 2147483647 elements (the bound is 65536)"};
	char why[128];
	size_t n = REDIS_READER_MAX_ELEMENTS, len = 0;
	char *resp = malloc(16 + n * 4);
	redisReply *r;

	ck_assert_ptr_nonnull(resp);
	len = (size_t)sprintf(resp, "*%zu\r\n", n);
	for (size_t i = 0; i < n; i++, len += 4)
		memcpy(resp + len, ":7\r\n", 4);
	resp[len] = '\0';
	r = parse(resp);
	ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
	ck_assert_uint_eq(r->elements, n);
	ck_assert_int_eq(r->element[n - 1]->integer, 7);
	freeReplyObject(r);
	free(resp);
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		redisReader *rd = redis_reader_new();
		void *got = NULL;

		ck_assert_ptr_nonnull(rd);
		ck_assert_int_eq(redisReaderFeed(rd, refused[i], strlen(refused[i])), REDIS_OK);
		ck_assert_int_eq(redisReaderGetReply(rd, &got), REDIS_ERR);
		ck_assert_ptr_null(got);
		ck_assert_int_ne(rd->err, 0);
		ck_assert_str_eq(redis_reader_error(rd, why, sizeof(why)), said[i]);
		/* Read once: a later failure of another kind says its own words. */
		ck_assert_str_eq(redis_reader_error(rd, why, sizeof(why)), "Out of memory");
		redisReaderFree(rd);
	}
	{
		/* After a taken array, bad RESP is told in hiredis' words. */
		redisReader *rd = redis_reader_new();
		void *got = NULL;

		ck_assert_ptr_nonnull(rd);
		ck_assert_int_eq(redisReaderFeed(rd, "*1\r\n?\r\n", 7), REDIS_OK);
		ck_assert_int_eq(redisReaderGetReply(rd, &got), REDIS_ERR);
		ck_assert_ptr_nonnull(
		    strstr(redis_reader_error(rd, why, sizeof(why)), "Protocol error"));
		redisReaderFree(rd);
	}
}
END_TEST

START_TEST(test_crc16)
{
	/* The specification's check value (CRC-16/XMODEM). */
	ck_assert_uint_eq(redis_cluster_crc16((const uint8_t *)"123456789", 9), 0x31c3);
	ck_assert_uint_eq(redis_cluster_crc16((const uint8_t *)"", 0), 0);
}
END_TEST

static unsigned
slot(const char *k)
{
	return redis_cluster_keyslot(k, strlen(k));
}

START_TEST(test_keyslot)
{
	/* Values CLUSTER KEYSLOT gives on Redis 7. */
	ck_assert_uint_eq(slot("foo"), 12182);
	ck_assert_uint_eq(slot("bar"), 5061);
	ck_assert_uint_eq(slot("hello"), 866);
	/* Hash tags: the first '{' and the first '}' after it, when not empty. */
	ck_assert_uint_eq(slot("{user1000}.following"), slot("user1000"));
	ck_assert_uint_eq(slot("{user1000}.followers"), slot("user1000"));
	ck_assert_uint_eq(slot("foo{}{bar}"),
	                  redis_cluster_crc16((const uint8_t *)"foo{}{bar}", 10) & 16383);
	ck_assert_uint_eq(slot("foo{{bar}}zap"), slot("{bar"));
	ck_assert_uint_eq(slot("foo{bar}{zap}"), slot("bar"));
	ck_assert_uint_eq(slot("no{close"),
	                  redis_cluster_crc16((const uint8_t *)"no{close", 8) & 16383);
	/* wsgate's history keys share their channel's slot. */
	ck_assert_uint_eq(slot("wsgate:{chat}:s"), slot("chat"));
	ck_assert_uint_eq(slot("wsgate:{chat}:m"), slot("chat"));
	/* Binary-safe: a NUL inside the tag counts. */
	ck_assert_uint_ne(redis_cluster_keyslot("{a\0b}", 5), slot("a"));
}
END_TEST

static const char three[] =
    "*3\r\n"
    "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nm1\r\n"
    "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nr1\r\n"
    "*4\r\n:5461\r\n:10922\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nm2\r\n"
    "*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$2\r\nr2\r\n"
    "*3\r\n:10923\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7002\r\n$2\r\nm3\r\n";

START_TEST(test_slots_ok)
{
	struct redis_cluster_map *m = malloc(sizeof(*m));
	redisReply *r;
	const char *why = NULL;
	char tag[16];

	r = parse(three);
	ck_assert_int_eq(redis_cluster_parse_slots(r, m, &why), 16384);
	ck_assert_uint_eq(m->nnodes, 3);
	ck_assert_str_eq(m->nodes[m->slot[0]].id, "m1");
	ck_assert_int_eq(m->nodes[m->slot[5460]].port, 7000);
	ck_assert_int_eq(m->nodes[m->slot[5461]].port, 7001);
	ck_assert_int_eq(m->nodes[m->slot[16383]].port, 7002);
	ck_assert_uint_eq(m->nodes[m->slot[0]].nreplicas, 1);
	ck_assert_str_eq(m->nodes[m->slot[0]].replicas[0], "r1");
	/* A failover: r2 is found as the master it replicated. */
	ck_assert_int_eq(redis_cluster_find_node(m, "r2"), m->slot[6000]);
	ck_assert_int_eq(redis_cluster_find_node(m, "m3"), m->slot[16000]);
	ck_assert_int_eq(redis_cluster_find_node(m, "nope"), -1);
	ck_assert_int_eq(redis_cluster_find_node(m, ""), -1);
	/* A canary tag on each master's slots. */
	for (size_t i = 0; i < 3; i++) {
		ck_assert_int_eq(redis_cluster_tag_for(m, i, tag, sizeof(tag)), 0);
		ck_assert_uint_eq(m->slot[slot(tag)], i);
	}
	freeReplyObject(r);
	free(m);
}
END_TEST

static const struct {
	const char *resp;
	int want;
} bad_rows[] = {
    {"+OK\r\n", -1},
    {"*0\r\n", 0},
    {"*1\r\n:1\r\n", -1},
    {"*1\r\n*2\r\n:0\r\n:1\r\n", -1},                                /* no master */
    {"*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n$1\r\nh\r\n:1\r\n", -1},         /* end < start */
    {"*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n", -1},     /* past 16383 */
    {"*1\r\n*3\r\n:-1\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n", -1},        /* negative */
    {"*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$0\r\n\r\n:1\r\n", -1},          /* empty host */
    {"*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n:0\r\n", -1},         /* port 0 */
    {"*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n:65536\r\n", -1},     /* port */
    {"*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n$4\r\n6379\r\n", -1}, /* port a string */
    {"*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n", 4},
    {"*2\r\n*3\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n*3\r\n:3\r\n:4\r\n*2\r\n$1\r\ng\r\n:1\r\n",
     -1},                                                          /* overlap */
    {"*1\r\n*3\r\n:0\r\n:3\r\n*2\r\n$3\r\nh\0x\r\n:1\r\n", -1},    /* NUL in host (cut by strlen) */
    {"*1\r\n*4\r\n:0\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n:7\r\n", -1}, /* replica not an array */
};

START_TEST(test_slots_bad)
{
	struct redis_cluster_map *m = malloc(sizeof(*m));
	const char *why = NULL;
	redisReader *rd = redisReaderCreate();
	void *r = NULL;

	ck_assert_int_eq(redisReaderFeed(rd, bad_rows[_i].resp, strlen(bad_rows[_i].resp)),
	                 REDIS_OK);
	if (redisReaderGetReply(rd, &r) == REDIS_OK && r != NULL) {
		int got = redis_cluster_parse_slots(r, m, &why);

		ck_assert_msg(got == bad_rows[_i].want, "row %d: %d, want %d (%s)", _i, got,
		              bad_rows[_i].want, why ? why : "");
		if (got < 0)
			ck_assert_ptr_nonnull(why);
		freeReplyObject(r);
	}
	redisReaderFree(rd);
	free(m);
}
END_TEST

START_TEST(test_too_many_masters)
{
	struct redis_cluster_map *m = malloc(sizeof(*m));
	char *resp = malloc(65 * 80 + 16), *p = resp;
	const char *why = NULL;
	redisReply *r;

	p += sprintf(p, "*65\r\n");
	for (int i = 0; i < 65; i++)
		p += sprintf(p, "*3\r\n:%d\r\n:%d\r\n*2\r\n$1\r\nh\r\n:%d\r\n", i, i, 1000 + i);
	r = parse(resp);
	ck_assert_int_eq(redis_cluster_parse_slots(r, m, &why), -1);
	ck_assert_str_eq(why, "more masters than wsgate follows (64)");
	freeReplyObject(r);
	free(resp);
	free(m);
}
END_TEST

static const struct {
	const char *err;
	int want, ask;
	unsigned slot;
	const char *host;
	int port;
} redirect_rows[] = {
    {"MOVED 3999 127.0.0.1:6381", 1, 0, 3999, "127.0.0.1", 6381},
    {"ASK 12182 10.0.0.2:7000", 1, 1, 12182, "10.0.0.2", 7000},
    {"MOVED 0 ::1:7000", 1, 0, 0, "::1", 7000},
    {"MOVED 16384 h:1", -1, 0, 0, NULL, 0},
    {"MOVED 1 h:0", -1, 0, 0, NULL, 0},
    {"MOVED 1 h:70000", -1, 0, 0, NULL, 0},
    {"MOVED 1 h:", -1, 0, 0, NULL, 0},
    {"MOVED 1 :7", -1, 0, 0, NULL, 0},
    {"MOVED 1 h7", -1, 0, 0, NULL, 0},
    {"MOVED x h:7", -1, 0, 0, NULL, 0},
    {"MOVED 1", -1, 0, 0, NULL, 0},
    {"MOVED ", -1, 0, 0, NULL, 0},
    {"MOVED 0000001 h:7", -1, 0, 0, NULL, 0},
    {"ERR unknown command", 0, 0, 0, NULL, 0},
    {"CLUSTERDOWN The cluster is down", 0, 0, 0, NULL, 0},
    {"", 0, 0, 0, NULL, 0},
};

START_TEST(test_redirect)
{
	char host[256];
	unsigned slot = 99999;
	int ask = -1, port = -1;
	int got = redis_cluster_redirect(redirect_rows[_i].err, strlen(redirect_rows[_i].err), &ask,
	                                 &slot, host, sizeof(host), &port);

	ck_assert_msg(got == redirect_rows[_i].want, "row %d: %d", _i, got);
	if (got == 1) {
		ck_assert_int_eq(ask, redirect_rows[_i].ask);
		ck_assert_uint_eq(slot, redirect_rows[_i].slot);
		ck_assert_str_eq(host, redirect_rows[_i].host);
		ck_assert_int_eq(port, redirect_rows[_i].port);
	}
}
END_TEST

START_TEST(test_redirect_host_too_long)
{
	char err[400], host[16];
	unsigned slot;
	int ask, port;

	memset(err, 'a', sizeof(err));
	memcpy(err, "MOVED 1 ", 8);
	memcpy(err + sizeof(err) - 5, ":6379", 5);
	ck_assert_int_eq(
	    redis_cluster_redirect(err, sizeof(err), &ask, &slot, host, sizeof(host), &port), -1);
}
END_TEST

#define N REDIS_CLUSTER_NONE

/* ask, from, named, map, held_ms, wait_ms -> where */
static const struct {
	int ask;
	unsigned from, named, map;
	uint64_t held, wait;
	unsigned want;
} resend_rows[] = {
    {0, N, N, 2, 0, 4000, 2},    /* a later publish held behind: the map's master */
    {0, N, 1, N, 9999, 4000, N}, /* ... none in the map: wait */
    {1, 0, 1, 0, 0, 4000, 1},    /* ASK: the node named at once, whatever the map says */
    {1, 0, N, 0, 0, 4000, N},    /* ASK to a node not in the map yet: wait */
    {0, 0, 1, 0, 0, 4000, N},    /* MOVED, map still names the refusing master: wait */
    {0, 0, 1, N, 0, 4000, N},    /* MOVED, slot unserved in the map: wait */
    {0, 0, 1, 1, 0, 4000, 1},    /* MOVED, map followed */
    {0, 0, 1, 2, 0, 4000, 2},    /* MOVED, map says yet another master: the map */
    {0, 0, 1, 0, 3999, 4000, N}, /* a map that does not follow: waited for... */
    {0, 0, 1, 0, 4000, 4000, 1}, /* ...then the node named */
    {0, 0, N, 0, 5000, 4000, N}, /* ...unless it is not in the map either */
};

START_TEST(test_resend_to)
{
	unsigned got = redis_cluster_resend_to(resend_rows[_i].ask, resend_rows[_i].from,
	                                       resend_rows[_i].named, resend_rows[_i].map,
	                                       resend_rows[_i].held, resend_rows[_i].wait);

	ck_assert_msg(got == resend_rows[_i].want, "row %d: %u", _i, got);
}
END_TEST

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *
redis_cluster_suite(void)
{
	Suite *s = suite_create("redis_cluster");
	TCase *tc = tcase_create("cluster");

	tcase_add_test(tc, test_crc16);
	tcase_add_test(tc, test_keyslot);
	tcase_add_test(tc, test_slots_ok);
	tcase_add_loop_test(tc, test_slots_bad, 0, NROWS(bad_rows));
	tcase_add_test(tc, test_too_many_masters);
	tcase_add_test(tc, test_reader_bounds_arrays);
	tcase_add_loop_test(tc, test_redirect, 0, NROWS(redirect_rows));
	tcase_add_test(tc, test_redirect_host_too_long);
	tcase_add_loop_test(tc, test_resend_to, 0, NROWS(resend_rows));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(redis_cluster_suite());
}
