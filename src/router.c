/* router.c - channel -> set of workers, on worker 0's loop (router.h). A chained hash table
 * that doubles when it is as full as it has buckets; a worker set is a 64-bit mask (at most 64
 * workers). Posting into a worker's mailbox copies the message once per worker; a worker too
 * far behind refuses it (counted by its mailbox, wsgate_bus_refused_total). */
#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "env.h"
#include "hub.h"
#include "log.h"
#include "hash.h"
#include "metrics.h"

#define ROUTER_LOG_MS 1000 /* refusals are logged at most this often */

struct router_chan {
	struct router_chan *next;
	uint64_t mask;        /* workers that want it; 0: left, its SUBSCRIBE still unanswered */
	uint32_t outstanding; /* SUBSCRIBEs sent on the current sub link and not confirmed */
	uint8_t live;         /* the last SUBSCRIBE sent is confirmed: Redis delivers it to us */
	uint64_t *gens;       /* while not live: each waiting worker's hub incarnation */
	size_t len;
	char name[];
};

struct router {
	struct env *env; /* worker 0's: its hub, its counters, the bus to the others */
	struct broker *broker;
	struct router_chan **buckets;
	size_t nbuckets; /* a power of two */
	size_t n;
	size_t nleft;     /* of which everyone left, kept for an unanswered SUBSCRIBE */
	uint64_t refused; /* messages refused for every worker since the last log line */
	uint64_t refused_log_ms;
};

/* Channel names come from clients' URLs: keyed, so no one can fill one bucket on purpose. */
static uint64_t
router_hash(const char *s, size_t len)
{
	return hash_siphash(s, len);
}

struct router *
router_new(struct env *env)
{
	struct router *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->env = env;
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
			free(c->gens);
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

/* Tells worker w that the process is subscribed to c (its hub answers pending handshakes).
 * Through the mailbox for worker 0 too: this runs inside its hub's subscribe call or a hiredis
 * callback, where a client's 101 (and what opening it may do) must not run. Never refused: a
 * lost one would leave clients waiting for the handshake timeout. */
static void
router_tell_live(struct router *r, int w, const struct router_chan *c, uint64_t gen)
{
	if (r->env->bus.live == NULL) /* a lone router (unit tests) */
		return;
	if (r->env->bus.live(r->env->bus.arg, w, gen, c->name, c->len) < 0)
		log_warnx("router: cannot tell worker %d that %.*s is subscribed (out of memory)",
		          w, (int)c->len, c->name);
}

/* Sends the process's one SUBSCRIBE (now, or when the link is back: the resubscription then
 * counts it afresh in router_foreach). Not live until Redis answers the last one sent: an
 * answer to an earlier one may predate an UNSUBSCRIBE. */
static void
router_send_subscribe(struct router *r, struct router_chan *c)
{
	if (r->broker == NULL) {
		c->live = 1; /* no broker (tests): nothing to wait for */
		return;
	}
	c->live = 0;
	c->outstanding++;
	(void)r->broker->ops->subscribe(r->broker, c->name, c->len);
}

static void
router_chan_free(struct router *r, struct router_chan **pp)
{
	struct router_chan *c = *pp;

	*pp = c->next;
	r->n--;
	free(c->gens);
	free(c);
}

void
router_subscribe_gen(struct router *r, int w, const char *channel, size_t len, uint64_t gen)
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
		router_send_subscribe(r, c);
		if (r->n > r->nbuckets)
			router_grow(r);
	} else if (c->mask == 0) {
		r->nleft--;
		router_send_subscribe(r, c); /* left, UNSUBSCRIBEd, wanted again */
	}
	c->mask |= (uint64_t)1 << w;
	if (c->live) {
		router_tell_live(r, w, c, gen);
		return;
	}
	if (c->gens == NULL && (c->gens = calloc(64, sizeof(*c->gens))) == NULL)
		return; /* told with gen 0 (whichever incarnation) at the confirmation */
	c->gens[w] = gen;
}

void
router_subscribe(struct router *r, int w, const char *channel, size_t len)
{
	router_subscribe_gen(r, w, channel, len, 0);
}

void
router_unsubscribe(struct router *r, int w, const char *channel, size_t len)
{
	struct router_chan **pp = router_slot(r, channel, len), *c = *pp;

	if (c == NULL || w < 0 || w > 63 || !(c->mask & ((uint64_t)1 << w)))
		return;
	c->mask &= ~((uint64_t)1 << w);
	if (c->gens != NULL)
		c->gens[w] = 0;
	if (c->mask != 0)
		return;
	if (r->broker != NULL)
		r->broker->ops->unsubscribe(r->broker, c->name, c->len);
	c->live = 0;
	/* Kept while a SUBSCRIBE is unanswered, so its answer is not taken for a later one's. */
	if (c->outstanding == 0)
		router_chan_free(r, pp);
	else
		r->nleft++;
}

/* Redis confirmed a SUBSCRIBE of channel on the current sub link. */
static void
router_confirmed(void *arg, const char *channel, size_t len)
{
	struct router *r = arg;
	struct router_chan **pp = router_slot(r, channel, len), *c = *pp;

	if (c == NULL || c->outstanding == 0)
		return; /* not ours, or from before the last resubscription */
	if (--c->outstanding > 0 || c->live)
		return;
	if (c->mask == 0) {
		r->nleft--;
		router_chan_free(r, pp); /* everyone left meanwhile (UNSUBSCRIBE sent) */
		return;
	}
	c->live = 1;
	for (int w = 0; w < 64; w++)
		if (c->mask & ((uint64_t)1 << w))
			router_tell_live(r, w, c, c->gens != NULL ? c->gens[w] : 0);
	free(c->gens);
	c->gens = NULL;
}

int
router_live(const struct router *r, const char *channel, size_t len)
{
	struct router_chan *c = *router_slot(r, channel, len);

	return c != NULL && c->mask != 0 && c->live;
}

uint64_t
router_mask(const struct router *r, const char *channel, size_t len)
{
	struct router_chan *c = *router_slot(r, channel, len);

	return c != NULL ? c->mask : 0;
}

/* A message one worker too far behind refused for every worker: counted, logged at most once
 * a ROUTER_LOG_MS. */
static void
router_refused(struct router *r, const char *channel, size_t clen, size_t len, size_t refuser)
{
	uint64_t now;

	METRIC_ADD(r->env->stats->broadcasts_refused, 1);
	r->refused++;
	if ((now = clock_now_ms()) - r->refused_log_ms >= ROUTER_LOG_MS) {
		log_warnx("redis: a %zu-byte message on %.*s refused for every worker: "
		          "worker %zu is too far behind (%llu refused since the last report)",
		          len, (int)clen, channel, refuser, (unsigned long long)r->refused);
		r->refused = 0;
		r->refused_log_ms = now;
	}
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
	uint64_t mask = c != NULL ? c->mask : 0;
	size_t i;

	if (r->env->bus.publish != NULL && (mask & ~(uint64_t)1) != 0 &&
	    r->env->bus.publish(r->env->bus.arg, mask & ~(uint64_t)1, channel, clen, data, len,
	                        &i) < 0) {
		router_refused(r, channel, clen, len, i);
		return;
	}
	/* The router runs on worker 0's loop: its clients need no hop. */
	if (mask & 1)
		hub_deliver(r->env->hub, channel, clen, data, len);
}

/* A large message the broker framed as it streamed in: the same all or none, but the workers
 * share the one frame (a reference each through their mailbox, its size counted against the
 * mailbox's limit as a copy would be), so no loop copies it whole. */
static void
router_deliver_frame(void *arg, const char *channel, size_t clen, struct hub_frame *f, int is_text)
{
	struct router *r = arg;
	struct router_chan *c = *router_slot(r, channel, clen);
	uint64_t mask = c != NULL ? c->mask : 0;
	size_t i;

	if (r->env->bus.publish_frame != NULL && (mask & ~(uint64_t)1) != 0 &&
	    r->env->bus.publish_frame(r->env->bus.arg, mask & ~(uint64_t)1, channel, clen, f,
	                              is_text, &i) < 0) {
		router_refused(r, channel, clen, f->plen, i);
		return;
	}
	if (mask & 1)
		hub_deliver_frame(r->env->hub, channel, clen, f, is_text);
}

/* The sub link (re)synchronises: the broker SUBSCRIBEs every channel listed here on a new
 * context, so each has exactly that one SUBSCRIBE outstanding; channels everyone left are
 * dropped first (the new context never subscribed them). */
static void
router_foreach(void *arg, void (*fn)(void *, const char *, size_t), void *fnarg)
{
	struct router *r = arg;

	for (size_t i = 0; i < r->nbuckets; i++) {
		struct router_chan **pp = &r->buckets[i];

		while (*pp != NULL) {
			if ((*pp)->mask == 0) {
				r->nleft--;
				router_chan_free(r, pp);
				continue;
			}
			(*pp)->outstanding = 1;
			(*pp)->live = 0;
			pp = &(*pp)->next;
		}
	}
	for (size_t i = 0; i < r->nbuckets; i++)
		for (struct router_chan *c = r->buckets[i]; c != NULL; c = c->next)
			fn(fnarg, c->name, c->len);
}

static size_t
router_count(void *arg)
{
	const struct router *r = arg;

	return r->n - r->nleft;
}

const struct broker_sink router_sink = {
    .deliver = router_deliver,
    .deliver_frame = router_deliver_frame,
    .foreach_channel = router_foreach,
    .nchannels = router_count,
    .confirmed = router_confirmed,
};
