/* check_mailbox.c - unit tests for mailbox.c, the queue between threads: records come out in
 * order with their bytes intact (empty, small, unaligned and large parts), bounded posts are
 * refused past the limit while control posts never are, several producer threads lose nothing
 * and keep each producer's order, and the owner's event loop is woken by a post. */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "check_runner.h"
#include "mailbox.h"

#define NREC 64

struct seen {
	unsigned type[NREC * 4];
	size_t alen[NREC * 4], blen[NREC * 4];
	uint8_t a0[NREC * 4], blast[NREC * 4];
	size_t n;
	int bad;          /* a record whose bytes were not what was posted */
	uint64_t next[8]; /* per producer: the sequence number expected next */
	struct event_base *base;
};

static void
record(void *arg, unsigned type, const void *a, size_t alen, const void *b, size_t blen)
{
	struct seen *s = arg;

	if (s->n < NREC * 4) {
		s->type[s->n] = type;
		s->alen[s->n] = alen;
		s->blen[s->n] = blen;
		s->a0[s->n] = alen ? ((const uint8_t *)a)[0] : 0;
		s->blast[s->n] = blen ? ((const uint8_t *)b)[blen - 1] : 0;
	}
	s->n++;
	for (size_t i = 0; i < blen; i++)
		if (((const uint8_t *)b)[i] != (uint8_t)(blen + i))
			s->bad = 1;
	if (s->base != NULL)
		event_base_loopbreak(s->base);
}

static size_t
pending(struct mailbox *mb)
{
	size_t n;

	mailbox_counts(mb, &n, NULL);
	return n;
}

static uint64_t
refused(struct mailbox *mb)
{
	uint64_t n;

	mailbox_counts(mb, NULL, &n);
	return n;
}

START_TEST(records_in_order_with_their_bytes)
{
	static const struct {
		size_t alen, blen;
	} rows[] = {
	    {0, 0}, {1, 0}, {0, 1}, {3, 5}, {7, 1}, {8, 8}, {13, 200}, {1, 65536}, {64, 1 << 20},
	};
	size_t nrows = sizeof(rows) / sizeof(rows[0]);
	struct seen s = {0};
	struct mailbox *mb = mailbox_new(NULL, record, &s, 1 << 30);
	uint8_t *a = malloc(64), *b = malloc(1 << 20);

	ck_assert_ptr_nonnull(mb);
	for (size_t r = 0; r < nrows; r++) {
		memset(a, (int)(r + 1), 64);
		for (size_t i = 0; i < rows[r].blen; i++)
			b[i] = (uint8_t)(rows[r].blen + i);
		ck_assert_int_eq(
		    mailbox_post(mb, (unsigned)r + 1, a, rows[r].alen, b, rows[r].blen, 1), 0);
	}
	ck_assert_uint_gt(pending(mb), 0);
	mailbox_drain(mb);
	ck_assert_uint_eq(pending(mb), 0);
	ck_assert_uint_eq(s.n, nrows);
	ck_assert_int_eq(s.bad, 0);
	for (size_t r = 0; r < nrows; r++) {
		ck_assert_uint_eq(s.type[r], r + 1);
		ck_assert_uint_eq(s.alen[r], rows[r].alen);
		ck_assert_uint_eq(s.blen[r], rows[r].blen);
		ck_assert_uint_eq(s.a0[r], rows[r].alen ? r + 1 : 0);
		ck_assert_uint_eq(s.blast[r],
		                  rows[r].blen ? (uint8_t)(rows[r].blen + rows[r].blen - 1) : 0);
	}
	/* Drained twice: nothing more, and the buffers are reused. */
	mailbox_drain(mb);
	ck_assert_uint_eq(s.n, nrows);
	mailbox_free(mb);
	free(a);
	free(b);
}
END_TEST

START_TEST(bounded_posts_refused_past_the_limit)
{
	struct seen s = {0};
	struct mailbox *mb = mailbox_new(NULL, record, &s, 256);
	uint8_t b[100];

	ck_assert_ptr_nonnull(mb);
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)(sizeof(b) + i);
	/* 16 bytes of header + 104 of data: two fit in 256, the third does not. */
	ck_assert_int_eq(mailbox_post(mb, 1, NULL, 0, b, sizeof(b), 1), 0);
	ck_assert_int_eq(mailbox_post(mb, 1, NULL, 0, b, sizeof(b), 1), 0);
	ck_assert_int_eq(mailbox_post(mb, 1, NULL, 0, b, sizeof(b), 1), -1);
	ck_assert_uint_eq(refused(mb), 1);
	/* Control messages go in whatever the backlog. */
	ck_assert_int_eq(mailbox_post(mb, 2, "x", 1, NULL, 0, 0), 0);
	mailbox_drain(mb);
	ck_assert_uint_eq(s.n, 3);
	ck_assert_uint_eq(s.type[2], 2);
	/* Room again once drained. */
	ck_assert_int_eq(mailbox_post(mb, 1, NULL, 0, b, sizeof(b), 1), 0);
	mailbox_drain(mb);
	ck_assert_uint_eq(s.n, 4);
	ck_assert_uint_eq(refused(mb), 1);
	mailbox_free(mb);
}
END_TEST

/* All or none: a reservation holds room against other posts until it is posted into or given
 * back, and a record larger than the whole limit can never be reserved. */
START_TEST(reservations_hold_room_until_posted_or_given_back)
{
	struct seen s = {0};
	struct mailbox *mb = mailbox_new(NULL, record, &s, 256);
	uint8_t b[100], huge[300];

	ck_assert_ptr_nonnull(mb);
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)(sizeof(b) + i);
	ck_assert_int_eq(mailbox_reserve(mb, 0, sizeof(b)), 0);
	ck_assert_int_eq(mailbox_reserve(mb, 0, sizeof(b)), 0);
	/* Two reserved records fill it: neither a bounded post nor a third reservation fits. */
	ck_assert_int_eq(mailbox_post(mb, 1, NULL, 0, b, sizeof(b), 1), -1);
	ck_assert_int_eq(mailbox_reserve(mb, 0, sizeof(b)), -1);
	ck_assert_uint_eq(refused(mb), 2);
	ck_assert_int_eq(mailbox_post_reserved(mb, 1, NULL, 0, b, sizeof(b)), 0);
	mailbox_unreserve(mb, 0, sizeof(b));
	/* The reservation given back is room again; the posted one still counts until drained. */
	ck_assert_int_eq(mailbox_post(mb, 1, NULL, 0, b, sizeof(b), 1), 0);
	ck_assert_int_eq(mailbox_reserve(mb, 0, sizeof(b)), -1);
	mailbox_drain(mb);
	ck_assert_uint_eq(s.n, 2);
	ck_assert_int_eq(s.bad, 0);
	ck_assert_int_eq(mailbox_reserve(mb, 0, sizeof(huge)), -1);
	ck_assert_uint_eq(refused(mb), 4);
	mailbox_free(mb);
}
END_TEST

/* A record holding shared bytes (a reference to a frame every worker delivers) counts them
 * against the limit, in the room reserved for a copy, until the owner handled it. */
START_TEST(held_bytes_count_until_handled)
{
	struct seen s = {0};
	struct mailbox *mb = mailbox_new(NULL, record, &s, 512);
	void *ref = &s;

	ck_assert_ptr_nonnull(mb);
	ck_assert_int_eq(mailbox_reserve(mb, 1, 300), 0);
	ck_assert_int_eq(mailbox_post_held(mb, 7, "c", 1, &ref, sizeof(ref), 300), 0);
	/* The record itself is small, but 300 held bytes stay counted: no room for 300 more. */
	ck_assert_uint_ge(pending(mb), 300);
	ck_assert_int_eq(mailbox_reserve(mb, 1, 300), -1);
	mailbox_drain(mb);
	ck_assert_uint_eq(s.n, 1);
	ck_assert_uint_eq(s.type[0], 7);
	ck_assert_uint_eq(s.blen[0], sizeof(ref));
	/* Handled: the held bytes are given back. */
	ck_assert_uint_eq(pending(mb), 0);
	ck_assert_int_eq(mailbox_reserve(mb, 1, 300), 0);
	mailbox_unreserve(mb, 1, 300);
	mailbox_free(mb);
}
END_TEST

struct producer {
	struct mailbox *mb;
	unsigned id;
	uint64_t n;
};

static void *
produce(void *arg)
{
	struct producer *p = arg;

	for (uint64_t i = 0; i < p->n; i++) {
		uint8_t who = (uint8_t)p->id;

		while (mailbox_post(p->mb, 1, &who, 1, &i, sizeof(i), 0) < 0)
			;
	}
	return NULL;
}

struct ordered {
	uint64_t next[8];
	uint64_t total;
	int bad;
};

static void
check_order(void *arg, unsigned type, const void *a, size_t alen, const void *b, size_t blen)
{
	struct ordered *o = arg;
	uint8_t who;
	uint64_t seq;

	(void)type;
	if (alen != 1 || blen != sizeof(seq)) {
		o->bad = 1;
		return;
	}
	memcpy(&who, a, 1);
	memcpy(&seq, b, sizeof(seq));
	if (who >= 8 || seq != o->next[who])
		o->bad = 1;
	else
		o->next[who]++;
	o->total++;
}

START_TEST(threads_lose_nothing_and_keep_order)
{
	struct ordered o = {{0}, 0, 0};
	struct mailbox *mb = mailbox_new(NULL, check_order, &o, 0);
	struct producer p[4];
	pthread_t t[4];

	ck_assert_ptr_nonnull(mb);
	for (unsigned i = 0; i < 4; i++) {
		p[i] = (struct producer){mb, i, 50000};
		ck_assert_int_eq(pthread_create(&t[i], NULL, produce, &p[i]), 0);
	}
	/* The owner drains while they post. */
	while (o.total < 4 * 50000 && !o.bad)
		mailbox_drain(mb);
	for (unsigned i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	mailbox_drain(mb);
	ck_assert_int_eq(o.bad, 0);
	ck_assert_uint_eq(o.total, 4 * 50000);
	for (unsigned i = 0; i < 4; i++)
		ck_assert_uint_eq(o.next[i], 50000);
	mailbox_free(mb);
}
END_TEST

static void *
post_later(void *arg)
{
	uint8_t b[3] = {3, 4, 5};

	if (mailbox_post(arg, 7, NULL, 0, b, sizeof(b), 1) < 0)
		abort();
	return NULL;
}

START_TEST(post_wakes_the_owning_loop)
{
	struct seen s = {0};
	struct event_base *base = event_base_new();
	struct mailbox *mb;
	pthread_t t;

	ck_assert_ptr_nonnull(base);
	s.base = base;
	mb = mailbox_new(base, record, &s, 1 << 20);
	ck_assert_ptr_nonnull(mb);
	ck_assert_int_eq(pthread_create(&t, NULL, post_later, mb), 0);
	/* Returns only when the record callback breaks the loop. */
	ck_assert_int_eq(event_base_dispatch(base), 0);
	pthread_join(t, NULL);
	ck_assert_uint_eq(s.n, 1);
	ck_assert_uint_eq(s.type[0], 7);
	ck_assert_uint_eq(s.blen[0], 3);
	ck_assert_int_eq(s.bad, 0);
	mailbox_free(mb);
	event_base_free(base);
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("mailbox");
	TCase *tc = tcase_create("mailbox");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, records_in_order_with_their_bytes);
	tcase_add_test(tc, bounded_posts_refused_past_the_limit);
	tcase_add_test(tc, reservations_hold_room_until_posted_or_given_back);
	tcase_add_test(tc, held_bytes_count_until_handled);
	tcase_add_test(tc, threads_lose_nothing_and_keep_order);
	tcase_add_test(tc, post_wakes_the_owning_loop);
	suite_add_tcase(su, tc);
	return check_runner_main(su);
}
