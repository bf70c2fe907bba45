/* broker_local.c - the embedded broker used without [redis]: the process is the whole world.
 * Subscribing is bookkeeping each worker's hub already does; publishing delivers to this
 * worker's hub at once and posts one copy of the message into every other worker's mailbox
 * (through the env's bus), where that worker's hub frames it once for its own subscribers; a
 * large message is framed once and shared by reference instead. Workers never touch each
 * other's hubs. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "clock.h"
#include "env.h"
#include "hash.h"
#include "history_store.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "utf8.h"
#include "ws_frame.h"

#define BROKER_LOCAL_LOG_MS 1000 /* refused broadcasts are logged at most this often */
/* From this size a message is framed once for all workers (broker_local_share); below, a
 * copy per mailbox costs less than the sharing and keeps the hubs' frame reuse. */
#define BROKER_LOCAL_SHARE_MIN (256u << 10)

struct broker_local {
	struct broker base;
	struct env *self; /* NULL in unit tests: one hub, no other workers */
	uint64_t refused; /* messages refused for every worker, since the last log line */
	uint64_t refused_log_ms;
};

/* Which workers have subscribers of which channel, for the whole process: a publish posts a
 * copy only to the workers in its channel's mask, not to every worker. Each worker's hub calls
 * subscribe when a channel gains its first local subscriber and unsubscribe when it loses its
 * last, so a worker's bit is set exactly while its hub has the channel. A subscriber that
 * arrives while a message is being published may miss that one message, as it would had it
 * come a moment later. Guarded by one mutex: a lookup per publish, an update per channel
 * creation or removal in a worker. */
#define BROKER_LOCAL_BUCKETS 1024

struct broker_local_interest {
	struct broker_local_interest *next;
	uint64_t mask; /* workers whose hub has the channel */
	size_t len;
	char name[];
};

static pthread_mutex_t broker_local_mu = PTHREAD_MUTEX_INITIALIZER;
static struct broker_local_interest *broker_local_tab[BROKER_LOCAL_BUCKETS];

static struct broker_local_interest **
broker_local_slot(const char *channel, size_t len)
{
	struct broker_local_interest **pp =
	    &broker_local_tab[hash_siphash(channel, len) & (BROKER_LOCAL_BUCKETS - 1)];

	while (*pp != NULL && ((*pp)->len != len || memcmp((*pp)->name, channel, len) != 0))
		pp = &(*pp)->next;
	return pp;
}

/* The workers other than self with subscribers of channel. */
static uint64_t
broker_local_interested(const struct broker_local *b, const char *channel, size_t len)
{
	struct broker_local_interest *e;
	uint64_t mask;

	pthread_mutex_lock(&broker_local_mu);
	mask = (e = *broker_local_slot(channel, len)) != NULL ? e->mask : 0;
	pthread_mutex_unlock(&broker_local_mu);
	return mask & ~((uint64_t)1 << b->self->id);
}

static int
broker_local_subscribe(struct broker *base, const char *channel, size_t len)
{
	struct broker_local *b = (struct broker_local *)base;
	struct broker_local_interest **pp, *e;
	int rc = 0;

	if (b->self == NULL)
		return 0;
	pthread_mutex_lock(&broker_local_mu);
	if (*(pp = broker_local_slot(channel, len)) == NULL) {
		if ((e = malloc(sizeof(*e) + len)) == NULL) {
			rc = -1; /* the hub refuses the subscription: nothing would reach it */
			goto out;
		}
		e->next = NULL;
		e->mask = 0;
		e->len = len;
		memcpy(e->name, channel, len);
		*pp = e;
	}
	(*pp)->mask |= (uint64_t)1 << b->self->id;
out:
	pthread_mutex_unlock(&broker_local_mu);
	return rc;
}

static void
broker_local_unsubscribe(struct broker *base, const char *channel, size_t len)
{
	struct broker_local *b = (struct broker_local *)base;
	struct broker_local_interest **pp, *e;

	if (b->self == NULL)
		return;
	pthread_mutex_lock(&broker_local_mu);
	if ((e = *(pp = broker_local_slot(channel, len))) != NULL &&
	    (e->mask &= ~((uint64_t)1 << b->self->id)) == 0) {
		*pp = e->next;
		free(e);
	}
	pthread_mutex_unlock(&broker_local_mu);
}

/* A message refused for every worker: counted, logged at most once a second, -1. */
static int
broker_local_refused(struct broker_local *b, const char *channel, size_t clen, size_t len,
                     size_t refuser)
{
	uint64_t now;

	METRIC_ADD(b->self->stats->broadcasts_refused, 1);
	b->refused++;
	if ((now = clock_now_ms()) - b->refused_log_ms >= BROKER_LOCAL_LOG_MS) {
		log_warnx("in-process hub: a %zu-byte message on %.*s refused for every "
		          "worker: worker %zu is too far behind (%llu refused since the last "
		          "report)",
		          len, (int)clen, channel, refuser, (unsigned long long)b->refused);
		b->refused = 0;
		b->refused_log_ms = now;
	}
	return -1;
}

/* A large message is framed once, here, and every worker's subscribers share that frame (each
 * other worker gets a reference through its mailbox, counted as the copy it replaces): one
 * copy and one UTF-8 pass in all, instead of a copy into each mailbox and a frame and a scan
 * per worker. Returns 1 (nothing done) when the frame cannot be made: publish copies then. */
static int
broker_local_share(struct broker_local *b, uint64_t others, const char *channel, size_t clen,
                   const uint8_t *data, size_t len)
{
	struct hub_frame *f;
	uint8_t *at;
	size_t refuser;
	int is_text;

	if ((f = hub_frame_new(len, &at)) == NULL)
		return 1;
	memcpy(at, data, len);
	is_text = utf8_valid(data, len);
	hub_frame_seal(f, is_text ? WS_OP_TEXT : WS_OP_BINARY);
	if (b->self->bus.publish_frame(b->self->bus.arg, others, channel, clen, f, is_text,
	                               &refuser) < 0) {
		hub_frame_unref(f);
		return broker_local_refused(b, channel, clen, len, refuser);
	}
	hub_deliver_frame(b->base.hub, channel, clen, f, is_text);
	hub_frame_unref(f);
	return 0;
}

/* What the history append needs between the bus's reservations and its posts. */
struct broker_local_append {
	struct history_chan *hc;
	const uint8_t *data;
	size_t len;
	struct history_pos *pos;
};

static int
broker_local_append(void *arg)
{
	struct broker_local_append *a = arg;

	return history_chan_append(a->hc, a->data, a->len, clock_now_ms(), a->pos);
}

/* A channel with history: the message is appended and given its position under the store's
 * lock, and posted to the other workers under it too (the bus appends between its
 * reservations and its posts), so every mailbox receives the channel's messages in offset
 * order; this worker delivers its own copy after (nothing of its mailbox runs before that).
 * The position travels as the wire prefix, as it does through Redis. Returns what
 * broker_local_publish returns; 1 when the channel has no history (publish it plainly). */
static int
broker_local_publish_history(struct broker_local *b, uint64_t others, const char *channel,
                             size_t clen, const uint8_t *data, size_t len)
{
	struct history_store *st = b->self->history;
	struct history_chan *hc;
	struct history_pos pos;
	struct broker_local_append app;
	uint8_t hdr[HISTORY_WIRE_HDR_MAX], *msg;
	size_t hl, refuser = SIZE_MAX;

	if (st == NULL || b->self->bus.publish_commit == NULL)
		return 1;
	history_store_lock(st);
	if ((hc = history_store_find(st, channel, clen)) == NULL) {
		history_store_unlock(st);
		return 1;
	}
	history_chan_next(hc, &pos);
	hl = history_wire_header(&pos, hdr);
	if ((msg = malloc(hl + len)) == NULL)
		goto refused;
	memcpy(msg, hdr, hl);
	memcpy(msg + hl, data, len);
	app.hc = hc;
	app.data = data;
	app.len = len;
	app.pos = &pos;
	if (b->self->bus.publish_commit(b->self->bus.arg, others, channel, clen, msg, hl + len,
	                                broker_local_append, &app, &refuser) < 0)
		goto refused;
	history_store_unlock(st);
	hub_deliver(b->base.hub, channel, clen, msg, hl + len);
	free(msg);
	return 0;
refused:
	history_store_unlock(st);
	free(msg);
	METRIC_ADD(b->self->stats->broadcasts_refused, 1);
	log_warnx("in-process hub: a %zu-byte message on %.*s with history refused (a worker is "
	          "too far behind, or out of memory)",
	          len, (int)clen, channel);
	return -1;
}

/* All or none: room in every other worker's mailbox is reserved before anyone, this worker's
 * own clients included, gets the message. A worker too far behind (its mailbox holds
 * WORKER_BUS_LIMIT bytes) refuses it for all: counted, logged, and the publisher is told (-1). */
static int
broker_local_publish(struct broker *base, const char *channel, size_t clen, const uint8_t *data,
                     size_t len)
{
	struct broker_local *b = (struct broker_local *)base;
	uint64_t others;
	size_t refuser;
	int rc;

	if (b->self == NULL || b->self->bus.publish == NULL) {
		hub_deliver(base->hub, channel, clen, data, len);
		return 0;
	}
	others = broker_local_interested(b, channel, clen);
	if ((rc = broker_local_publish_history(b, others, channel, clen, data, len)) <= 0)
		return rc;
	if (len >= BROKER_LOCAL_SHARE_MIN && b->self->bus.publish_frame != NULL &&
	    (rc = broker_local_share(b, others, channel, clen, data, len)) <= 0)
		return rc;
	if (b->self->bus.publish(b->self->bus.arg, others, channel, clen, data, len, &refuser) < 0)
		return broker_local_refused(b, channel, clen, len, refuser);
	hub_deliver(base->hub, channel, clen, data, len);
	return 0;
}

static int
broker_local_ready(struct broker *b)
{
	(void)b;
	return 1;
}

static void
broker_local_free(struct broker *b)
{
	free(b);
}

static const struct broker_ops broker_local_ops = {
    .name = "local",
    .subscribe = broker_local_subscribe,
    .unsubscribe = broker_local_unsubscribe,
    .publish = broker_local_publish,
    .ready = broker_local_ready,
    .free = broker_local_free,
};

struct broker *
broker_local_new(struct hub *hub, struct env *self)
{
	struct broker_local *b;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	b->base.ops = &broker_local_ops;
	b->base.hub = hub;
	b->self = self;
	return &b->base;
}
