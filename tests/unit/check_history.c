/* check_history.c - unit tests for history.c: position parsing and formatting, the wire prefix
 * (positioned, plain, escaped, malformed), since= in both forms, the ring's bounds and ttl, and
 * the replay plan at every boundary (up to date, next, trimmed, epoch changed). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "history.h"

START_TEST(pos_parse_and_format)
{
	struct history_pos p;
	char out[HISTORY_POS_MAX];

	ck_assert_int_eq(history_pos_parse("ab-_9:42", 8, &p), 0);
	ck_assert_str_eq(p.epoch, "ab-_9");
	ck_assert_uint_eq(p.off, 42);
	ck_assert_uint_eq(history_pos_format(&p, out, sizeof(out)), 8);
	ck_assert_str_eq(out, "ab-_9:42");
	ck_assert_int_eq(history_pos_parse("e:18446744073709551615", 22, &p), 0);
	ck_assert_uint_eq(p.off, UINT64_MAX);
	ck_assert_int_eq(history_pos_parse("e:18446744073709551616", 22, &p), -1);
	ck_assert_int_eq(history_pos_parse(":1", 2, &p), -1);
	ck_assert_int_eq(history_pos_parse("e:", 2, &p), -1);
	ck_assert_int_eq(history_pos_parse("e1", 2, &p), -1);
	ck_assert_int_eq(history_pos_parse("e.x:1", 5, &p), -1);
	ck_assert_int_eq(history_pos_parse("e:+1", 4, &p), -1);
	ck_assert_int_eq(history_pos_parse("e:1:2", 5, &p), -1);
	/* 41 characters of epoch: one too many */
	ck_assert_int_eq(history_pos_parse("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1", 43, &p),
	                 -1);
	ck_assert_int_eq(history_pos_parse("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1", 42, &p),
	                 0);
}
END_TEST

START_TEST(wire_roundtrip_plain_escape_malformed)
{
	struct history_pos p = {"E1", 7}, q;
	uint8_t buf[HISTORY_WIRE_HDR_MAX + 16];
	const uint8_t *d;
	size_t hl = history_wire_header(&p, buf), dl;

	ck_assert_uint_le(hl, HISTORY_WIRE_HDR_MAX);
	memcpy(buf + hl, "hello", 5);
	ck_assert_int_eq(history_wire_decode(buf, hl + 5, &q, &d, &dl), 1);
	ck_assert_str_eq(q.epoch, "E1");
	ck_assert_uint_eq(q.off, 7);
	ck_assert_uint_eq(dl, 5);
	ck_assert_mem_eq(d, "hello", 5);
	/* plain, including binary that starts with NUL but not the magic */
	ck_assert_int_eq(history_wire_decode((const uint8_t *)"hi", 2, &q, &d, &dl), 0);
	ck_assert_uint_eq(dl, 2);
	ck_assert_int_eq(history_wire_decode((const uint8_t *)"\0WSx", 4, &q, &d, &dl), 0);
	ck_assert_int_eq(history_wire_decode((const uint8_t *)"", 0, &q, &d, &dl), 0);
	/* escaped plain message that starts with the magic itself */
	ck_assert(history_wire_needs_escape((const uint8_t *)"\0WSGp1:1\nx", 10));
	ck_assert_int_eq(
	    history_wire_decode((const uint8_t *)"\0WSGr\n\0WSGp1:1\nx", 16, &q, &d, &dl), 0);
	ck_assert_uint_eq(dl, 10);
	ck_assert_mem_eq(d, "\0WSGp1:1\nx", 10);
	/* malformed: no newline, bad kind, offset 0, bad position, r with junk */
	ck_assert_int_eq(history_wire_decode((const uint8_t *)"\0WSGpE:1", 8, &q, &d, &dl), -1);
	ck_assert_int_eq(history_wire_decode((const uint8_t *)"\0WSGz\n", 6, &q, &d, &dl), -1);
	ck_assert_int_eq(history_wire_decode((const uint8_t *)"\0WSGpE:0\n", 9, &q, &d, &dl), -1);
	ck_assert_int_eq(history_wire_decode((const uint8_t *)"\0WSGpE!:1\n", 10, &q, &d, &dl), -1);
	ck_assert_int_eq(history_wire_decode((const uint8_t *)"\0WSGrx\n", 7, &q, &d, &dl), -1);
	ck_assert_int_eq(history_wire_decode((const uint8_t *)"\0WSG", 4, &q, &d, &dl), -1);
}
END_TEST

START_TEST(since_single_and_list)
{
	struct history_pos p;
	const char *s;

	s = "E:5";
	ck_assert_int_eq(history_since_find(s, strlen(s), NULL, &p), 1);
	ck_assert_uint_eq(p.off, 5);
	s = "E%3a6";
	ck_assert_int_eq(history_since_find(s, strlen(s), "chat", &p), 1);
	ck_assert_uint_eq(p.off, 6);
	s = "chat@E:1,room%3A1%40F%3A9";
	ck_assert_int_eq(history_since_find(s, strlen(s), "chat", &p), 1);
	ck_assert_str_eq(p.epoch, "E");
	ck_assert_uint_eq(p.off, 1);
	ck_assert_int_eq(history_since_find(s, strlen(s), "room:1", &p), 1);
	ck_assert_str_eq(p.epoch, "F");
	ck_assert_uint_eq(p.off, 9);
	ck_assert_int_eq(history_since_find(s, strlen(s), "other", &p), 0);
	ck_assert_int_eq(history_since_find(s, strlen(s), NULL, &p), 0);
	s = "chat@E:x";
	ck_assert_int_eq(history_since_find(s, strlen(s), "chat", &p), -1);
	s = "@E:1";
	ck_assert_int_eq(history_since_find(s, strlen(s), "chat", &p), -1);
	s = "E:1,E:2";
	ck_assert_int_eq(history_since_find(s, strlen(s), NULL, &p), -1);
	s = "E%2";
	ck_assert_int_eq(history_since_find(s, strlen(s), NULL, &p), -1);
	s = "E%20:1";
	ck_assert_int_eq(history_since_find(s, strlen(s), NULL, &p), -1);
}
END_TEST

/* The subprotocol form (issue 11): "wsgate.since." + the since= value as encodeURIComponent()
 * writes it, since a token cannot hold ':' '@' ','. */
START_TEST(since_protocol_token)
{
	struct history_pos p;
	const char *v, *t;
	size_t vl;

	t = "wsgate.since.E7-x_%3A42";
	ck_assert_int_eq(history_since_protocol(t, strlen(t), &v, &vl), 1);
	ck_assert_uint_eq(vl, strlen("E7-x_%3A42"));
	ck_assert_int_eq(history_since_find(v, vl, NULL, &p), 1);
	ck_assert_str_eq(p.epoch, "E7-x_");
	ck_assert_uint_eq(p.off, 42);
	/* the list form, channel names with characters a token cannot hold either */
	t = "wsgate.since.room%3A1%40E%3A5%2Cuser%2Fbob%40F%3A18446744073709551615";
	ck_assert_int_eq(history_since_protocol(t, strlen(t), &v, &vl), 1);
	ck_assert_int_eq(history_since_find(v, vl, "room:1", &p), 1);
	ck_assert_uint_eq(p.off, 5);
	ck_assert_int_eq(history_since_find(v, vl, "user/bob", &p), 1);
	ck_assert_str_eq(p.epoch, "F");
	ck_assert_uint_eq(p.off, UINT64_MAX);
	/* not ours: other tokens, the bare prefix, another case (tokens are case-sensitive) */
	t = "wsgate.meta";
	ck_assert_int_eq(history_since_protocol(t, strlen(t), &v, &vl), 0);
	t = "wsgate.since.";
	ck_assert_int_eq(history_since_protocol(t, strlen(t), &v, &vl), 0);
	t = "WSGATE.since.E%3A1";
	ck_assert_int_eq(history_since_protocol(t, strlen(t), &v, &vl), 0);
	t = "wsgate.since";
	ck_assert_int_eq(history_since_protocol(t, strlen(t), &v, &vl), 0);
	/* ours but malformed once decoded: the handshake answers 400 */
	t = "wsgate.since.E.42";
	ck_assert_int_eq(history_since_protocol(t, strlen(t), &v, &vl), 1);
	ck_assert_int_eq(history_since_find(v, vl, NULL, &p), -1);
	t = "wsgate.since.E%3A4%00";
	ck_assert_int_eq(history_since_protocol(t, strlen(t), &v, &vl), 1);
	ck_assert_int_eq(history_since_find(v, vl, NULL, &p), -1);
	t = "wsgate.since.E%3A4%";
	ck_assert_int_eq(history_since_protocol(t, strlen(t), &v, &vl), 1);
	ck_assert_int_eq(history_since_find(v, vl, NULL, &p), -1);
	t = "wsgate.since.E%3A4%g1";
	ck_assert_int_eq(history_since_protocol(t, strlen(t), &v, &vl), 1);
	ck_assert_int_eq(history_since_find(v, vl, NULL, &p), -1);
	/* every escape decodes, in either case (the query's since= shares the decoder) */
	ck_assert_int_eq(history_since_find("a%2fb%40E%3a3", 13, "a/b", &p), 1);
	ck_assert_uint_eq(p.off, 3);
}
END_TEST

START_TEST(ring_bounds_and_ttl)
{
	struct history_ring *r = history_ring_new(3, 100);
	const uint8_t *d;
	size_t l;

	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(history_ring_last(r), 0);
	ck_assert_uint_eq(history_ring_first(r), 1);
	ck_assert_uint_eq(history_ring_append(r, (const uint8_t *)"a", 1, 10), 1);
	ck_assert_uint_eq(history_ring_append(r, (const uint8_t *)"bb", 2, 20), 2);
	ck_assert_uint_eq(history_ring_append(r, (const uint8_t *)"ccc", 3, 30), 3);
	ck_assert_uint_eq(history_ring_append(r, (const uint8_t *)"dddd", 4, 40), 4);
	ck_assert_uint_eq(history_ring_first(r), 2);
	ck_assert_uint_eq(history_ring_last(r), 4);
	ck_assert_int_eq(history_ring_get(r, 1, &d, &l), -1);
	ck_assert_int_eq(history_ring_get(r, 5, &d, &l), -1);
	ck_assert_int_eq(history_ring_get(r, 3, &d, &l), 0);
	ck_assert_uint_eq(l, 3);
	ck_assert_mem_eq(d, "ccc", 3);
	/* widening keeps the entries in order */
	ck_assert_int_eq(history_ring_widen(r, 5, 0), 0);
	ck_assert_uint_eq(history_ring_append(r, (const uint8_t *)"e", 1, 50), 5);
	ck_assert_int_eq(history_ring_get(r, 2, &d, &l), 0);
	ck_assert_mem_eq(d, "bb", 2);
	ck_assert_int_eq(history_ring_get(r, 5, &d, &l), 0);
	ck_assert_mem_eq(d, "e", 1);
	history_ring_free(r);

	r = history_ring_new(10, 100);
	ck_assert_uint_eq(history_ring_append(r, (const uint8_t *)"a", 1, 0), 1);
	ck_assert_uint_eq(history_ring_append(r, (const uint8_t *)"b", 1, 50), 2);
	history_ring_expire(r, 120); /* the first is 120 ms old */
	ck_assert_uint_eq(history_ring_first(r), 2);
	history_ring_expire(r, 1000);
	ck_assert_uint_eq(history_ring_first(r), 3);
	ck_assert_uint_eq(history_ring_last(r), 2); /* empty, offsets go on */
	ck_assert_uint_eq(history_ring_append(r, (const uint8_t *)"c", 1, 1000), 3);
	history_ring_free(r);
}
END_TEST

START_TEST(plan_boundaries)
{
	struct history_plan pl;
	struct history_pos s = {"E", 5};

	/* up to date */
	history_plan("E", 3, 5, &s, &pl);
	ck_assert_int_eq(pl.gap, HISTORY_GAP_NONE);
	ck_assert_uint_gt(pl.from, pl.to);
	/* next ones, exactly from since + 1 */
	history_plan("E", 3, 9, &s, &pl);
	ck_assert_int_eq(pl.gap, HISTORY_GAP_NONE);
	ck_assert_uint_eq(pl.from, 6);
	ck_assert_uint_eq(pl.to, 9);
	/* first kept is exactly since + 1: no gap */
	history_plan("E", 6, 9, &s, &pl);
	ck_assert_int_eq(pl.gap, HISTORY_GAP_NONE);
	ck_assert_uint_eq(pl.from, 6);
	/* trimmed: 6..7 lost */
	history_plan("E", 8, 9, &s, &pl);
	ck_assert_int_eq(pl.gap, HISTORY_GAP_TRIMMED);
	ck_assert_uint_eq(pl.gap_from, 6);
	ck_assert_uint_eq(pl.gap_to, 7);
	ck_assert_uint_eq(pl.from, 8);
	ck_assert_uint_eq(pl.to, 9);
	/* everything trimmed (empty ring after ttl): 6..9 lost, nothing resent */
	history_plan("E", 10, 9, &s, &pl);
	ck_assert_int_eq(pl.gap, HISTORY_GAP_TRIMMED);
	ck_assert_uint_eq(pl.gap_from, 6);
	ck_assert_uint_eq(pl.gap_to, 9);
	ck_assert_uint_gt(pl.from, pl.to);
	/* epoch changed: new epoch's 1..2 trimmed, 3..4 resent */
	history_plan("F", 3, 4, &s, &pl);
	ck_assert_int_eq(pl.gap, HISTORY_GAP_EPOCH_CHANGED);
	ck_assert_uint_eq(pl.gap_from, 1);
	ck_assert_uint_eq(pl.gap_to, 2);
	ck_assert_uint_eq(pl.from, 3);
	ck_assert_uint_eq(pl.to, 4);
	/* epoch changed, new channel empty */
	history_plan("F", 1, 0, &s, &pl);
	ck_assert_int_eq(pl.gap, HISTORY_GAP_EPOCH_CHANGED);
	ck_assert_uint_eq(pl.gap_to, 0);
	ck_assert_uint_gt(pl.from, pl.to);
	ck_assert_str_eq(history_gap_name(HISTORY_GAP_DROPPED), "dropped");
}
END_TEST

START_TEST(json_field_top_level_only)
{
	const char *j =
	    "{\"a\":{\"id\":1},\"s\":\"x,\\\"}\",\"id\" : \"AAPL\" , \"n\":[1,{\"id\":2}]}";
	const uint8_t *v;
	size_t l;

	ck_assert_int_eq(history_json_field((const uint8_t *)j, strlen(j), "id", &v, &l), 1);
	ck_assert_uint_eq(l, 6);
	ck_assert_mem_eq(v, "\"AAPL\"", 6);
	ck_assert_int_eq(history_json_field((const uint8_t *)j, strlen(j), "n", &v, &l), 1);
	ck_assert_mem_eq(v, "[1,{\"id\":2}]", l);
	ck_assert_int_eq(history_json_field((const uint8_t *)j, strlen(j), "s", &v, &l), 1);
	ck_assert_uint_eq(l, 7);
	ck_assert_int_eq(history_json_field((const uint8_t *)j, strlen(j), "x", &v, &l), 0);
	ck_assert_int_eq(history_json_field((const uint8_t *)"[1]", 3, "id", &v, &l), 0);
	ck_assert_int_eq(history_json_field((const uint8_t *)"{\"id\"", 5, "id", &v, &l), 0);
	ck_assert_int_eq(history_json_field((const uint8_t *)"{\"id\":", 6, "id", &v, &l), 0);
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("history");
	TCase *tc = tcase_create("history");

	tcase_add_test(tc, pos_parse_and_format);
	tcase_add_test(tc, wire_roundtrip_plain_escape_malformed);
	tcase_add_test(tc, since_single_and_list);
	tcase_add_test(tc, since_protocol_token);
	tcase_add_test(tc, ring_bounds_and_ttl);
	tcase_add_test(tc, plan_boundaries);
	tcase_add_test(tc, json_field_top_level_only);
	suite_add_tcase(su, tc);
	return check_runner_main(su);
}
