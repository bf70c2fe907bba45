/* history_store.c - channel name -> ring and epoch, for the in-process hub. One mutex for all
 * channels: appends and replays are short memory copies, and publishing already takes every
 * other worker's mailbox lock. */
#include "history_store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define HISTORY_STORE_BUCKETS 1024

struct history_chan {
	struct history_chan *next; /* bucket chain */
	uint64_t hash;
	struct history_ring *ring;
	char epoch[HISTORY_EPOCH_MAX + 1];
	size_t len;
	char name[];
};

struct history_store {
	pthread_mutex_t mu;
	struct history_chan *buckets[HISTORY_STORE_BUCKETS];
	size_t nchannels;
	uint64_t seq; /* channels made: part of each epoch */
	char prefix[24];
};

struct history_store *
history_store_new(const char *epoch_prefix)
{
	struct history_store *st;
	size_t n = 0;

	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	if (pthread_mutex_init(&st->mu, NULL) != 0) {
		free(st);
		return NULL;
	}
	/* Only epoch characters, at most 16 of them: the sequence number follows. */
	for (const char *p = epoch_prefix; *p != '\0' && n < 16; p++)
		if (history_epoch_valid(p, 1))
			st->prefix[n++] = *p;
	st->prefix[n] = '\0';
	return st;
}

void
history_store_free(struct history_store *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < HISTORY_STORE_BUCKETS; i++) {
		struct history_chan *hc, *next;
		for (hc = st->buckets[i]; hc != NULL; hc = next) {
			next = hc->next;
			history_ring_free(hc->ring);
			free(hc);
		}
	}
	pthread_mutex_destroy(&st->mu);
	free(st);
}

void
history_store_lock(struct history_store *st)
{
	pthread_mutex_lock(&st->mu);
}

void
history_store_unlock(struct history_store *st)
{
	pthread_mutex_unlock(&st->mu);
}

struct history_chan *
history_store_find(struct history_store *st, const char *channel, size_t clen)
{
	uint64_t h = hash_siphash(channel, clen);

	for (struct history_chan *hc = st->buckets[h % HISTORY_STORE_BUCKETS]; hc != NULL;
	     hc = hc->next)
		if (hc->hash == h && hc->len == clen && memcmp(hc->name, channel, clen) == 0)
			return hc;
	return NULL;
}

int
history_store_enable(struct history_store *st, const char *channel, size_t clen, size_t cap,
                     uint64_t ttl_ms)
{
	struct history_chan *hc;
	int rc = 0;

	history_store_lock(st);
	if ((hc = history_store_find(st, channel, clen)) != NULL) {
		rc = history_ring_widen(hc->ring, cap, ttl_ms);
		goto out;
	}
	rc = -1;
	if (st->nchannels >= HISTORY_STORE_MAX_CHANNELS ||
	    (hc = calloc(1, sizeof(*hc) + clen + 1)) == NULL)
		goto out;
	if ((hc->ring = history_ring_new(cap, ttl_ms)) == NULL) {
		free(hc);
		goto out;
	}
	hc->hash = hash_siphash(channel, clen);
	hc->len = clen;
	memcpy(hc->name, channel, clen);
	/* Never reused within the process (the channel is never forgotten either), and a new
	 * process has a new prefix: a position of another epoch is never taken for one of it. */
	snprintf(hc->epoch, sizeof(hc->epoch), "%s-%llu", st->prefix,
	         (unsigned long long)++st->seq);
	hc->next = st->buckets[hc->hash % HISTORY_STORE_BUCKETS];
	st->buckets[hc->hash % HISTORY_STORE_BUCKETS] = hc;
	st->nchannels++;
	rc = 0;
out:
	history_store_unlock(st);
	return rc;
}

int
history_store_bounds(struct history_store *st, const char *channel, size_t clen, size_t *cap,
                     uint64_t *ttl_ms)
{
	struct history_chan *hc;

	history_store_lock(st);
	if ((hc = history_store_find(st, channel, clen)) != NULL) {
		*cap = history_ring_cap(hc->ring);
		*ttl_ms = history_ring_ttl(hc->ring);
	}
	history_store_unlock(st);
	return hc != NULL;
}

void
history_chan_next(const struct history_chan *hc, struct history_pos *pos)
{
	memcpy(pos->epoch, hc->epoch, sizeof(pos->epoch));
	pos->off = history_ring_last(hc->ring) + 1;
}

void
history_chan_current(const struct history_chan *hc, struct history_pos *cur)
{
	memcpy(cur->epoch, hc->epoch, sizeof(cur->epoch));
	cur->off = history_ring_last(hc->ring);
}

int
history_chan_append(struct history_chan *hc, const uint8_t *data, size_t len, uint64_t now_ms,
                    struct history_pos *pos)
{
	uint64_t off;

	history_ring_expire(hc->ring, now_ms);
	if ((off = history_ring_append(hc->ring, data, len, now_ms)) == 0)
		return -1;
	memcpy(pos->epoch, hc->epoch, sizeof(pos->epoch));
	pos->off = off;
	return 0;
}

void
history_chan_plan(struct history_chan *hc, const struct history_pos *since, uint64_t now_ms,
                  struct history_plan *pl, struct history_pos *cur)
{
	history_ring_expire(hc->ring, now_ms);
	history_chan_current(hc, cur);
	if (since == NULL) {
		history_plan(hc->epoch, 1, 0, cur, pl); /* nothing to resend: live from cur */
		return;
	}
	history_plan(hc->epoch, history_ring_first(hc->ring), history_ring_last(hc->ring), since,
	             pl);
}

void
history_chan_each(struct history_chan *hc, uint64_t from, uint64_t to,
                  void (*fn)(void *arg, const struct history_pos *pos, const uint8_t *data,
                             size_t len),
                  void *arg)
{
	struct history_pos p;

	memcpy(p.epoch, hc->epoch, sizeof(p.epoch));
	for (p.off = from; p.off <= to && p.off != 0; p.off++) {
		const uint8_t *d;
		size_t l;
		if (history_ring_get(hc->ring, p.off, &d, &l) == 0)
			fn(arg, &p, d, l);
	}
}
