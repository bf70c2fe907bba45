/* check_upstream.c - unit tests for upstream.c's balancer and passive health on hand-built
 * pools (no sockets): round_robin order, least_conn, ip_hash stability and fallback, backends
 * skipped when tried or down, fail_timeout expiry, the all-down verdict; upstream_health's
 * max_fails counting (pure); hash.c's SipHash against the reference vectors. */

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "config.h"
#include "conn.h"
#include "hash.h"
#include "log.h"
#include "upstream.h"

#define NB 3

static struct config_backend cbs[NB] = {
    {.scheme = BACKEND_WS, .host = "127.0.0.1", .port = "9000", .url = "ws://a"},
    {.scheme = BACKEND_WS, .host = "127.0.0.1", .port = "9001", .url = "ws://b"},
    {.scheme = BACKEND_WS, .host = "127.0.0.1", .port = "9002", .url = "ws://c"},
};
static struct config_route route;
static struct upstream_pool pool;
static struct upstream_backend backends[NB];
static struct upstream_health health[NB + 1]; /* the backends', then the route's */
static unsigned char none[NB];

static void
setup(void)
{
	log_set_level(LOG_LVL_ERROR);
	memset(&route, 0, sizeof(route));
	route.path = "/app";
	route.backends = cbs;
	route.nbackends = NB;
	route.fail_timeout_ms = 10000;
	route.max_fails = 1; /* the balancer tests below: one failure marks down */
	memset(&pool, 0, sizeof(pool));
	pool.route = &route;
	pool.backends = backends;
	pool.nbackends = NB;
	memset(backends, 0, sizeof(backends));
	memset(health, 0, sizeof(health));
	pool.shared = &health[NB];
	for (size_t i = 0; i < NB; i++) {
		backends[i].h = &health[i];
		backends[i].pool = &pool;
		backends[i].cfg = &cbs[i];
		backends[i].index = i;
		backends[i].h->state = UPSTREAM_UP;
	}
	memset(none, 0, sizeof(none));
}

static size_t
pick(const char *ip, const unsigned char *tried, int *all_down)
{
	int dummy;
	struct upstream_backend *b =
	    upstream_pool_pick(&pool, ip, tried ? tried : none, all_down ? all_down : &dummy);

	return b == NULL ? (size_t)-1 : b->index;
}

START_TEST(test_round_robin_order)
{
	route.balance = BALANCE_ROUND_ROBIN;
	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < NB; i++)
			ck_assert_uint_eq(pick(NULL, NULL, NULL), i);
}
END_TEST

START_TEST(test_round_robin_skips_tried_and_down)
{
	unsigned char tried[NB] = {1, 0, 0};
	int all_down = -1;

	route.balance = BALANCE_ROUND_ROBIN;
	ck_assert_uint_eq(pick(NULL, tried, &all_down), 1);
	ck_assert_int_eq(all_down, 0);
	upstream_backend_failed(&backends[2], "test");
	ck_assert_int_eq(backends[2].h->state, UPSTREAM_DOWN);
	/* Next after 1 is 2, down; then 0, tried; then 1. */
	ck_assert_uint_eq(pick(NULL, tried, NULL), 1);
	tried[1] = 1;
	ck_assert_uint_eq(pick(NULL, tried, &all_down), (size_t)-1);
	ck_assert_int_eq(all_down, 0); /* not all down: they were tried */
}
END_TEST

START_TEST(test_all_down)
{
	int all_down = 0;

	for (size_t i = 0; i < NB; i++)
		upstream_backend_failed(&backends[i], "test");
	ck_assert_uint_eq(pick(NULL, NULL, &all_down), (size_t)-1);
	ck_assert_int_eq(all_down, 1);
	/* Back up: picked again at once. */
	upstream_backend_ok(&backends[1]);
	ck_assert_uint_eq(pick(NULL, NULL, &all_down), 1);
	ck_assert_int_eq(all_down, 0);
}
END_TEST

START_TEST(test_fail_timeout_expires)
{
	uint64_t before = conn_now_ms(), until;

	upstream_backend_failed(&backends[0], "test");
	until = backends[0].h->down_until_ms;
	ck_assert(until >= before + 10000 && until <= conn_now_ms() + 10000);
	ck_assert(!upstream_backend_eligible(&backends[0], before));
	ck_assert(!upstream_backend_eligible(&backends[0], until - 1));
	ck_assert(upstream_backend_eligible(&backends[0], until));
	/* Still marked down until it succeeds: a retry that fails again logs nothing new. */
	ck_assert_int_eq(backends[0].h->state, UPSTREAM_DOWN);
}
END_TEST

START_TEST(test_fail_timeout_zero_never_marks)
{
	route.fail_timeout_ms = 0;
	upstream_backend_failed(&backends[0], "test");
	ck_assert_int_eq(backends[0].h->state, UPSTREAM_UP);
}
END_TEST

START_TEST(test_least_conn)
{
	route.balance = BALANCE_LEAST_CONN;
	backends[0].h->active = 5;
	backends[1].h->active = 2;
	backends[2].h->active = 7;
	ck_assert_uint_eq(pick(NULL, NULL, NULL), 1);
	backends[1].h->active = 9;
	ck_assert_uint_eq(pick(NULL, NULL, NULL), 0);
	/* Ties rotate rather than always landing on the first. */
	for (size_t i = 0; i < NB; i++)
		backends[i].h->active = 1;
	size_t a = pick(NULL, NULL, NULL), b = pick(NULL, NULL, NULL), c = pick(NULL, NULL, NULL);
	ck_assert(a != b && b != c && a != c);
}
END_TEST

START_TEST(test_ip_hash_stable_and_spread)
{
	const char *ips[] = {"192.0.2.1",    "192.0.2.2", "198.51.100.7", "2001:db8::1",
	                     "203.0.113.50", "10.0.0.1",  "10.0.0.2",     "10.0.0.3"};
	int used[NB] = {0};

	route.balance = BALANCE_IP_HASH;
	for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
		size_t first = pick(ips[i], NULL, NULL);
		for (int k = 0; k < 5; k++)
			ck_assert_uint_eq(pick(ips[i], NULL, NULL), first);
		used[first]++;
	}
	/* Eight addresses over three backends: not all on one. */
	ck_assert(used[0] < 8 && used[1] < 8 && used[2] < 8);
}
END_TEST

START_TEST(test_ip_hash_fallback_keeps_others)
{
	const char *ip = "192.0.2.77";
	size_t home, other_home;

	route.balance = BALANCE_IP_HASH;
	home = pick(ip, NULL, NULL);
	other_home = pick("198.51.100.9", NULL, NULL);
	upstream_backend_failed(&backends[home], "test");
	/* This client moves to the next one; a client of another backend stays put. */
	ck_assert_uint_eq(pick(ip, NULL, NULL), (home + 1) % NB == home ? home : (home + 1) % NB);
	if (other_home != home)
		ck_assert_uint_eq(pick("198.51.100.9", NULL, NULL), other_home);
	upstream_backend_ok(&backends[home]);
	ck_assert_uint_eq(pick(ip, NULL, NULL), home);
}
END_TEST

/* ---- max_fails (pure upstream_health) ---- */

START_TEST(test_health_max_fails_consecutive)
{
	struct upstream_health h = {.state = UPSTREAM_UP};

	/* Two failures in a row: counted, still up; the third marks it down. */
	ck_assert_int_eq(upstream_health_fail(&h, 3, 1000, 500), UPSTREAM_FAIL_COUNTED);
	ck_assert_int_eq(upstream_health_fail(&h, 3, 1001, 500), UPSTREAM_FAIL_COUNTED);
	ck_assert_int_eq(h.state, UPSTREAM_UP);
	ck_assert_int_eq(upstream_health_fail(&h, 3, 1002, 500), UPSTREAM_FAIL_DOWN);
	ck_assert_int_eq(h.state, UPSTREAM_DOWN);
	ck_assert_uint_eq(h.down_until_ms, 1502);
	/* The retry after fail_timeout fails: down again at once, for another fail_timeout. */
	ck_assert_int_eq(upstream_health_fail(&h, 3, 1600, 500), UPSTREAM_FAIL_STILL_DOWN);
	ck_assert_uint_eq(h.down_until_ms, 2100);
	/* A success resets the count: it takes three failures in a row again. */
	ck_assert_int_eq(upstream_health_succeed(&h), 1);
	ck_assert_int_eq(h.state, UPSTREAM_UP);
	ck_assert_uint_eq(h.fails, 0);
	ck_assert_int_eq(upstream_health_fail(&h, 3, 3000, 500), UPSTREAM_FAIL_COUNTED);
	ck_assert_int_eq(upstream_health_fail(&h, 3, 3001, 500), UPSTREAM_FAIL_COUNTED);
	ck_assert_int_eq(upstream_health_succeed(&h), 0);
	ck_assert_int_eq(upstream_health_fail(&h, 3, 3002, 500), UPSTREAM_FAIL_COUNTED);
	ck_assert_int_eq(h.state, UPSTREAM_UP);
}
END_TEST

START_TEST(test_health_max_fails_zero_and_one)
{
	struct upstream_health h = {.state = UPSTREAM_UP};

	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(upstream_health_fail(&h, 0, 1000, 500), UPSTREAM_FAIL_COUNTED);
	ck_assert_int_eq(h.state, UPSTREAM_UP);
	upstream_health_succeed(&h);
	ck_assert_int_eq(upstream_health_fail(&h, 1, 1000, 500), UPSTREAM_FAIL_DOWN);
}
END_TEST

START_TEST(test_health_probe_verdict_kept)
{
	/* Down until a probe passes (UINT64_MAX): a client's failure does not shorten it. */
	struct upstream_health h = {
	    .state = UPSTREAM_DOWN, .down_until_ms = UINT64_MAX, .fails = 0};

	ck_assert_int_eq(upstream_health_fail(&h, 1, 1000, 500), UPSTREAM_FAIL_STILL_DOWN);
	ck_assert_uint_eq(h.down_until_ms, UINT64_MAX);
}
END_TEST

START_TEST(test_backend_failed_needs_max_fails)
{
	int all_down = 0;

	route.max_fails = 3;
	route.balance = BALANCE_ROUND_ROBIN;
	upstream_backend_failed(&backends[0], "test");
	upstream_backend_failed(&backends[0], "test");
	ck_assert(upstream_backend_eligible(&backends[0], conn_now_ms()));
	upstream_backend_ok(&backends[0]); /* another client got through: the count restarts */
	upstream_backend_failed(&backends[0], "test");
	upstream_backend_failed(&backends[0], "test");
	ck_assert(upstream_backend_eligible(&backends[0], conn_now_ms()));
	upstream_backend_failed(&backends[0], "test");
	ck_assert(!upstream_backend_eligible(&backends[0], conn_now_ms()));
	ck_assert_uint_eq(pick(NULL, NULL, &all_down), 1);
}
END_TEST

/* ---- SipHash-2-4 ---- */

START_TEST(test_siphash_reference_vectors)
{
	/* From the SipHash paper's appendix / reference vectors.h: key 00..0f, message
	 * 00..(n-1); the 64-bit results as little-endian words. */
	static const uint64_t want[] = {
	    0x726fdb47dd0e0e31ull, /* n = 0 */
	    0x74f839c593dc67fdull, /* n = 1 */
	    0x0d6c8009d9a94f5aull, /* n = 2 */
	    0x85676696d7fb7e2dull, /* n = 3 */
	};
	uint8_t key[16], msg[64];

	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		msg[i] = (uint8_t)i;
	for (size_t n = 0; n < sizeof(want) / sizeof(want[0]); n++)
		ck_assert_uint_eq(hash_siphash_key(key, msg, n), want[n]);
	/* n = 15: the paper's worked example, a715...; 0xa129ca6149be45e5. */
	ck_assert_uint_eq(hash_siphash_key(key, msg, 15), 0xa129ca6149be45e5ull);
	/* The process key: stable within the process, and not the zero key. */
	ck_assert_uint_eq(hash_siphash("abc", 3), hash_siphash("abc", 3));
	memset(key, 0, sizeof(key));
	ck_assert_uint_ne(hash_siphash("abc", 3), hash_siphash_key(key, "abc", 3));
}
END_TEST

static Suite *
upstream_suite(void)
{
	Suite *s = suite_create("upstream");
	TCase *tc = tcase_create("balance");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_round_robin_order);
	tcase_add_test(tc, test_round_robin_skips_tried_and_down);
	tcase_add_test(tc, test_all_down);
	tcase_add_test(tc, test_fail_timeout_expires);
	tcase_add_test(tc, test_fail_timeout_zero_never_marks);
	tcase_add_test(tc, test_least_conn);
	tcase_add_test(tc, test_ip_hash_stable_and_spread);
	tcase_add_test(tc, test_ip_hash_fallback_keeps_others);
	tcase_add_test(tc, test_health_max_fails_consecutive);
	tcase_add_test(tc, test_health_max_fails_zero_and_one);
	tcase_add_test(tc, test_health_probe_verdict_kept);
	tcase_add_test(tc, test_backend_failed_needs_max_fails);
	tcase_add_test(tc, test_siphash_reference_vectors);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(upstream_suite());
}
