/* router.c - channel -> set of workers, on worker 0's loop (router.h). A chained hash table
 * that doubles when it is as full as it has buckets; a worker set is a 64-bit mask (at most 64
 * workers). Posting into a worker's mailbox copies the message once per worker; a worker too
 * far behind refuses it (counted by its mailbox, wsgate_bus_refused_total). */
#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "hub.h"
#include "log.h"
#include "mailbox.h"
#include "hash.h"
#include "worker.h"

#define ROUTER_LOG_MS 1000 /* refusals are logged at most this often */

struct router_chan {
	struct router_chan *next;
	uint64_t mask;
	size_t len;
	char name[];
};

struct router {
	struct gateway *gw;
	struct broker *broker;
	struct router_chan **buckets;
	size_t nbuckets; /* a power of two */
	size_t n;
	uint64_t refused;        /* messages refused for every worker since the last log line */
	uint64_t refused_log_ms;
};

/* Channel names come from clients' URLs: keyed, so no one can fill one bucket on purpose. */
static uint64_t
router_hash(const char *s, size_t len)
{
	return hash_siphash(s, len);
}

struct router *
router_new(struct gateway *gw)
{
	struct router *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->gw = gw;
	r->nbuckets = 64;
	if ((r->buckets = calloc(r->nbuckets, sizeof(*r->buckets))) == NULL) {
		free(r);
		return NULL;
	}
	return r;
}

void
router_set_broker(struct router *r, struct broker *b)
{
	r->broker = b;
}

void
router_free(struct router *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct router_chan *c, *next;

		for (c = r->buckets[i]; c != NULL; c = next) {
			next = c->next;
			free(c);
		}
	}
	free(r->buckets);
	free(r);
}

static struct router_chan **
router_slot(const struct router *r, const char *name, size_t len)
{
	struct router_chan **pp = &r->buckets[router_hash(name, len) & (r->nbuckets - 1)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->len == len && memcmp((*pp)->name, name, len) == 0)
			break;
	return pp;
}

/* Doubles the table; on ENOMEM it stays as it is (only longer chains). */
static void
router_grow(struct router *r)
{
	size_t n = r->nbuckets * 2;
	struct router_chan **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return;
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct router_chan *c, *next;

		for (c = r->buckets[i]; c != NULL; c = next) {
			size_t j = router_hash(c->name, c->len) & (n - 1);

			next = c->next;
			c->next = b[j];
			b[j] = c;
		}
	}
	free(r->buckets);
	r->buckets = b;
	r->nbuckets = n;
}

void
router_subscribe(struct router *r, int w, const char *channel, size_t len)
{
	struct router_chan **pp = router_slot(r, channel, len), *c = *pp;

	if (w < 0 || w > 63)
		return;
	if (c == NULL) {
		if ((c = calloc(1, sizeof(*c) + len + 1)) == NULL) {
			log_warnx("router: out of memory: channel %.*s not subscribed", (int)len,
			    channel);
			return;
		}
		c->len = len;
		memcpy(c->name, channel, len);
		*pp = c;
		r->n++;
		/* The process's one SUBSCRIBE (now, or when the link is back). */
		if (r->broker != NULL)
			(void)r->broker->ops->subscribe(r->broker, c->name, len);
		if (r->n > r->nbuckets)
			router_grow(r);
	}
	c->mask |= (uint64_t)1 << w;
}

void
router_unsubscribe(struct router *r, int w, const char *channel, size_t len)
{
	struct router_chan **pp = router_slot(r, channel, len), *c = *pp;

	if (c == NULL || w < 0 || w > 63)
		return;
	c->mask &= ~((uint64_t)1 << w);
	if (c->mask != 0)
		return;
	*pp = c->next;
	r->n--;
	if (r->broker != NULL)
		r->broker->ops->unsubscribe(r->broker, c->name, c->len);
	free(c);
}

uint64_t
router_mask(const struct router *r, const char *channel, size_t len)
{
	struct router_chan *c = *router_slot(r, channel, len);

	return c != NULL ? c->mask : 0;
}

/* A message from Redis, all or none: room for it is reserved in the mailbox of every other
 * worker that wants it before any client anywhere gets it. One worker too far behind (its
 * mailbox holds WORKER_BUS_LIMIT bytes) refuses it for the whole process, and that is counted
 * and logged, rather than half the subscribers getting it and the rest silently not. */
static void
router_deliver(void *arg, const char *channel, size_t clen, const uint8_t *data, size_t len)
{
	struct router *r = arg;
	struct router_chan *c = *router_slot(r, channel, clen);
	uint64_t mask = c != NULL ? c->mask : 0, reserved = 0, now;
	size_t nw = r->gw->nworkers < 64 ? r->gw->nworkers : 64;
	size_t i;

	for (i = 1; i < nw; i++) {
		if (!(mask & ((uint64_t)1 << i)))
			continue;
		if (mailbox_reserve(r->gw->workers[i]->mbox, clen, len) < 0)
			break;
		reserved |= (uint64_t)1 << i;
	}
	if (i < nw) {
		for (size_t j = 1; j < nw; j++)
			if (reserved & ((uint64_t)1 << j))
				mailbox_unreserve(r->gw->workers[j]->mbox, clen, len);
		METRIC_ADD(r->gw->workers[0]->stats.broadcasts_refused, 1);
		r->refused++;
		if ((now = conn_now_ms()) - r->refused_log_ms >= ROUTER_LOG_MS) {
			log_warnx("redis: a %zu-byte message on %.*s refused for every worker: "
			    "worker %zu is too far behind (%llu refused since the last report)", len,
			    (int)clen, channel, i, (unsigned long long)r->refused);
			r->refused = 0;
			r->refused_log_ms = now;
		}
		return;
	}
	/* The router runs on worker 0's loop: its clients need no hop. */
	if (mask & 1)
		hub_deliver(r->gw->workers[0]->hub, channel, clen, data, len);
	for (i = 1; i < nw; i++) {
		if ((reserved & ((uint64_t)1 << i)) &&
		    mailbox_post_reserved(r->gw->workers[i]->mbox, WORKER_MSG_PUBLISH, channel, clen,
		    data, len) < 0)
			log_warnx("redis: out of memory posting a %zu-byte message to worker %zu",
			    len, i);
	}
}

static void
router_foreach(void *arg, void (*fn)(void *, const char *, size_t), void *fnarg)
{
	struct router *r = arg;

	for (size_t i = 0; i < r->nbuckets; i++)
		for (struct router_chan *c = r->buckets[i]; c != NULL; c = c->next)
			fn(fnarg, c->name, c->len);
}

static size_t
router_count(void *arg)
{
	return ((struct router *)arg)->n;
}

const struct broker_sink router_sink = {
	.deliver = router_deliver,
	.foreach_channel = router_foreach,
	.nchannels = router_count,
};
