/* limit.c - admission counters: a global count of connections and a fixed open-addressing
 * table of per-IP entries (connections open, accepts in the current second) that expire by
 * themselves; a full table admits without per-IP accounting instead of growing. */
#include "limit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

/* One address (IPv4, or an IPv6 /64: one subscriber's usual allocation). A slot is free when
 * nothing is open and its accept window has run out. */
struct limit_entry {
	uint8_t addr[16];
	uint32_t conns;   /* admitted and still open */
	uint32_t accepts; /* admitted since window_ms */
	uint64_t window_ms;
};

struct limit_table {
	pthread_mutex_t mu; /* workers accept on their own threads */
	struct limit_entry *slots;
	size_t nslots;     /* power of two */
	uint8_t key[16];   /* SipHash key of the address hash */
	uint64_t open;     /* admitted connections open now */
	uint64_t refusing; /* refused connections still writing their reply */
};

/* ---- the table ---- */

struct limit_table *
limit_new(size_t nslots, const uint8_t seed[16])
{
	struct limit_table *l;
	size_t n = 1;

	if (nslots == 0)
		nslots = LIMIT_DEFAULT_SLOTS;
	while (n < nslots && n < ((size_t)1 << 30))
		n <<= 1;
	if (n < LIMIT_PROBE)
		n = LIMIT_PROBE;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	/* calloc'd pages are only touched, and so only resident, as addresses arrive. */
	if ((l->slots = calloc(n, sizeof(*l->slots))) == NULL) {
		free(l);
		return NULL;
	}
	l->nslots = n;
	memcpy(l->key, seed, sizeof(l->key));
	if (pthread_mutex_init(&l->mu, NULL) != 0) {
		free(l->slots);
		free(l);
		return NULL;
	}
	return l;
}

void
limit_free(struct limit_table *l)
{
	if (l == NULL)
		return;
	pthread_mutex_destroy(&l->mu);
	free(l->slots);
	free(l);
}

/* The key of a peer address: IPv4 (also v4-mapped IPv6) as ::ffff:a.b.c.d, IPv6 by its /64.
 * 0 for anything else (unix sockets). */
static int
limit_key(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

		key[10] = key[11] = 0xff;
		memcpy(key + 12, &in->sin_addr, 4);
		return 1;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		const uint8_t *a = in6->sin6_addr.s6_addr;
		static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

		if (memcmp(a, v4mapped, 12) == 0)
			memcpy(key, a, 16);
		else
			memcpy(key, a, 8);
		return 1;
	}
	return 0;
}

static int
limit_slot_free(const struct limit_entry *e, uint64_t now_ms)
{
	return e->conns == 0 && (e->accepts == 0 || now_ms - e->window_ms >= LIMIT_WINDOW_MS);
}

/* The entry of key: the matching one in its probe window, else the first free one there
 * (claimed and reset), else -1. Every slot of the window is looked at before claiming: a
 * free slot may sit in front of the live entry. */
static int32_t
limit_lookup(struct limit_table *l, const uint8_t key[16], uint64_t now_ms)
{
	size_t mask = l->nslots - 1, h = (size_t)hash_siphash_key(l->key, key, 16) & mask, i, idx;
	int32_t free_slot = -1;

	for (i = 0; i < LIMIT_PROBE; i++) {
		idx = (h + i) & mask;
		if (memcmp(l->slots[idx].addr, key, 16) == 0 &&
		    !limit_slot_free(&l->slots[idx], now_ms))
			return (int32_t)idx;
		if (free_slot < 0 && limit_slot_free(&l->slots[idx], now_ms))
			free_slot = (int32_t)idx;
	}
	if (free_slot >= 0) {
		struct limit_entry *e = &l->slots[free_slot];

		memcpy(e->addr, key, 16);
		e->conns = 0;
		e->accepts = 0;
		e->window_ms = now_ms;
	}
	return free_slot;
}

enum limit_verdict
limit_admit(struct limit_table *l, const struct config *cfg, const struct sockaddr *sa,
            uint64_t now_ms, struct limit_ticket *t)
{
	enum limit_verdict v = LIMIT_OK;
	struct limit_entry *e;
	uint8_t key[16];
	int32_t slot = -1;

	memset(t, 0, sizeof(*t));
	t->slot = -1;
	pthread_mutex_lock(&l->mu);
	if (cfg->max_connections > 0 && l->open >= cfg->max_connections) {
		v = LIMIT_TOTAL;
		goto refuse;
	}
	if ((cfg->max_connections_per_ip > 0 || cfg->accept_rate_per_ip > 0) &&
	    limit_key(sa, key)) {
		if ((slot = limit_lookup(l, key, now_ms)) < 0) {
			t->untracked = 1; /* fail open: a full table must not lock everyone out */
		} else {
			e = &l->slots[slot];
			if (now_ms - e->window_ms >= LIMIT_WINDOW_MS) {
				e->window_ms = now_ms;
				e->accepts = 0;
			}
			if (cfg->max_connections_per_ip > 0 &&
			    e->conns >= cfg->max_connections_per_ip) {
				v = LIMIT_PER_IP;
				goto refuse;
			}
			if (cfg->accept_rate_per_ip > 0 && e->accepts >= cfg->accept_rate_per_ip) {
				v = LIMIT_RATE;
				goto refuse;
			}
			e->conns++;
			e->accepts++;
			t->slot = slot;
		}
	}
	l->open++;
	t->kind = LIMIT_T_ADMITTED;
	pthread_mutex_unlock(&l->mu);
	return LIMIT_OK;
refuse:
	/* Answering costs a connection (and for TLS a handshake): bounded too. */
	if (l->refusing >= LIMIT_MAX_REFUSING) {
		pthread_mutex_unlock(&l->mu);
		return LIMIT_DROP;
	}
	l->refusing++;
	t->kind = LIMIT_T_REFUSING;
	pthread_mutex_unlock(&l->mu);
	return v;
}

void
limit_release(struct limit_table *l, struct limit_ticket *t)
{
	if (l == NULL || t->kind == LIMIT_T_NONE)
		return;
	pthread_mutex_lock(&l->mu);
	if (t->kind == LIMIT_T_ADMITTED) {
		if (l->open > 0)
			l->open--;
		if (t->slot >= 0 && (size_t)t->slot < l->nslots && l->slots[t->slot].conns > 0)
			l->slots[t->slot].conns--;
	} else if (t->kind == LIMIT_T_REFUSING && l->refusing > 0) {
		l->refusing--;
	}
	pthread_mutex_unlock(&l->mu);
	t->kind = LIMIT_T_NONE;
	t->slot = -1;
}

uint64_t
limit_open(struct limit_table *l)
{
	uint64_t n;

	pthread_mutex_lock(&l->mu);
	n = l->open;
	pthread_mutex_unlock(&l->mu);
	return n;
}

uint64_t
limit_refusing(struct limit_table *l)
{
	uint64_t n;

	pthread_mutex_lock(&l->mu);
	n = l->refusing;
	pthread_mutex_unlock(&l->mu);
	return n;
}

/* ---- token bucket ---- */

#define LIMIT_RATE_MAX 1000000000ull /* beyond a billion a second, no limit is meant */

int
limit_bucket_take(struct limit_bucket *b, uint64_t rate, uint64_t now_ms)
{
	uint64_t cap, elapsed;

	if (rate == 0)
		return 1;
	if (rate > LIMIT_RATE_MAX)
		rate = LIMIT_RATE_MAX;
	cap = rate * 1000;
	if (!b->started) {
		b->started = 1;
		b->milli = cap;
		b->last_ms = now_ms;
	}
	if (now_ms > b->last_ms) {
		elapsed = now_ms - b->last_ms;
		/* A second refills the bucket whatever the rate: no overflow past that. */
		b->milli = elapsed >= 1000 ? cap : b->milli + elapsed * rate;
		if (b->milli > cap)
			b->milli = cap;
		b->last_ms = now_ms;
	}
	if (b->milli < 1000)
		return 0;
	b->milli -= 1000;
	return 1;
}
