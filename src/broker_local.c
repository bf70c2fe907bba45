/* broker_local.c - the embedded broker used without [redis]: the process is the whole world.
 * Subscribing is bookkeeping each worker's hub already does; publishing delivers to this
 * worker's hub at once and posts one copy of the message into every other worker's mailbox,
 * where that worker's hub frames it once for its own subscribers; a large message is framed
 * once and shared by reference instead. Workers never touch each other's hubs. */
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "gateway.h"
#include "history_store.h"
#include "hub.h"
#include "log.h"
#include "mailbox.h"
#include "utf8.h"
#include "worker.h"
#include "ws_frame.h"

#define BROKER_LOCAL_LOG_MS 1000 /* refused broadcasts are logged at most this often */
/* From this size a message is framed once for all workers (broker_local_share); below, a
 * copy per mailbox costs less than the sharing and keeps the hubs' frame reuse. */
#define BROKER_LOCAL_SHARE_MIN (256u << 10)

struct broker_local {
	struct broker base;
	struct worker *self;   /* NULL in unit tests: one hub, no other workers */
	uint64_t refused;      /* messages refused for every worker, since the last log line */
	uint64_t refused_log_ms;
};

static int
broker_local_subscribe(struct broker *b, const char *channel, size_t len)
{
	(void)b;
	(void)channel;
	(void)len;
	return 0;
}

static void
broker_local_unsubscribe(struct broker *b, const char *channel, size_t len)
{
	(void)b;
	(void)channel;
	(void)len;
}

/* A large message is framed once, here, and every worker's subscribers share that frame (each
 * other worker gets a reference through its mailbox, into the room reserved for a copy): one
 * copy and one UTF-8 pass in all, instead of a copy into each mailbox and a frame and a scan
 * per worker. Returns -1 (nothing done; the reservations stand) when the frame cannot be made. */
static int
broker_local_share(struct broker_local *b, const char *channel, size_t clen, const uint8_t *data,
    size_t len)
{
	struct gateway *gw = b->self->gw;
	struct hub_frame *f;
	uint8_t *at;
	int is_text;

	if ((f = hub_frame_new(len, &at)) == NULL)
		return -1;
	memcpy(at, data, len);
	is_text = utf8_valid(data, len);
	hub_frame_seal(f, is_text ? WS_OP_TEXT : WS_OP_BINARY);
	for (size_t i = 0; i < gw->nworkers; i++) {
		struct worker_frame_msg fm = { f, is_text };

		if (gw->workers[i] == b->self)
			continue;
		hub_frame_ref(f); /* the record's, dropped by that worker */
		if (mailbox_post_held(gw->workers[i]->mbox, WORKER_MSG_PUBLISH_FRAME, channel, clen,
		    &fm, sizeof(fm), len) < 0) {
			hub_frame_unref(f);
			log_warnx("in-process hub: out of memory posting a %zu-byte message to "
			    "worker %zu", len, i);
		}
	}
	hub_deliver_frame(b->base.hub, channel, clen, f, is_text);
	hub_frame_unref(f);
	return 0;
}

/* A channel with history: the message is appended and given its position under the store's
 * lock, and posted to the other workers under it too, so every mailbox receives the channel's
 * messages in offset order; this worker delivers its own copy after (nothing of its mailbox
 * runs before that). The position travels as the wire prefix, as it does through Redis. Returns
 * what broker_local_publish returns; 1 when the channel has no history (publish it plainly). */
static int
broker_local_publish_history(struct broker_local *b, const char *channel, size_t clen,
    const uint8_t *data, size_t len)
{
	struct gateway *gw = b->self->gw;
	struct history_chan *hc;
	struct history_pos pos;
	uint8_t hdr[HISTORY_WIRE_HDR_MAX], *msg;
	size_t hl, i;

	if (gw->history == NULL)
		return 1;
	history_store_lock(gw->history);
	if ((hc = history_store_find(gw->history, channel, clen)) == NULL) {
		history_store_unlock(gw->history);
		return 1;
	}
	history_chan_next(hc, &pos);
	hl = history_wire_header(&pos, hdr);
	if ((msg = malloc(hl + len)) == NULL)
		goto refused;
	memcpy(msg, hdr, hl);
	memcpy(msg + hl, data, len);
	for (i = 0; i < gw->nworkers; i++)
		if (gw->workers[i] != b->self && mailbox_reserve(gw->workers[i]->mbox, clen,
		    hl + len) < 0)
			break;
	if (i < gw->nworkers) {
		while (i-- > 0)
			if (gw->workers[i] != b->self)
				mailbox_unreserve(gw->workers[i]->mbox, clen, hl + len);
		goto refused;
	}
	if (history_chan_append(hc, data, len, conn_now_ms(), &pos) < 0) {
		for (i = 0; i < gw->nworkers; i++)
			if (gw->workers[i] != b->self)
				mailbox_unreserve(gw->workers[i]->mbox, clen, hl + len);
		goto refused;
	}
	for (i = 0; i < gw->nworkers; i++)
		if (gw->workers[i] != b->self &&
		    mailbox_post_reserved(gw->workers[i]->mbox, WORKER_MSG_PUBLISH, channel, clen,
		    msg, hl + len) < 0)
			log_warnx("in-process hub: out of memory posting a %zu-byte message to "
			    "worker %zu", len, i);
	history_store_unlock(gw->history);
	hub_deliver(b->base.hub, channel, clen, msg, hl + len);
	free(msg);
	return 0;
refused:
	history_store_unlock(gw->history);
	free(msg);
	METRIC_ADD(b->self->stats.broadcasts_refused, 1);
	log_warnx("in-process hub: a %zu-byte message on %.*s with history refused (a worker is "
	    "too far behind, or out of memory)", len, (int)clen, channel);
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
	struct gateway *gw;
	uint64_t now;
	size_t i, refuser;
	int rc;

	if (b->self == NULL) {
		hub_deliver(base->hub, channel, clen, data, len);
		return 0;
	}
	if ((rc = broker_local_publish_history(b, channel, clen, data, len)) <= 0)
		return rc;
	gw = b->self->gw;
	for (i = 0; i < gw->nworkers; i++)
		if (gw->workers[i] != b->self && mailbox_reserve(gw->workers[i]->mbox, clen, len) < 0)
			break;
	if (i < gw->nworkers) {
		refuser = i;
		while (i-- > 0)
			if (gw->workers[i] != b->self)
				mailbox_unreserve(gw->workers[i]->mbox, clen, len);
		METRIC_ADD(b->self->stats.broadcasts_refused, 1);
		b->refused++;
		if ((now = conn_now_ms()) - b->refused_log_ms >= BROKER_LOCAL_LOG_MS) {
			log_warnx("in-process hub: a %zu-byte message on %.*s refused for every "
			    "worker: worker %zu is too far behind (%llu refused since the last "
			    "report)", len, (int)clen, channel, refuser,
			    (unsigned long long)b->refused);
			b->refused = 0;
			b->refused_log_ms = now;
		}
		return -1;
	}
	if (len >= BROKER_LOCAL_SHARE_MIN && broker_local_share(b, channel, clen, data, len) == 0)
		return 0;
	hub_deliver(base->hub, channel, clen, data, len);
	for (i = 0; i < gw->nworkers; i++)
		if (gw->workers[i] != b->self &&
		    mailbox_post_reserved(gw->workers[i]->mbox, WORKER_MSG_PUBLISH, channel, clen,
		    data, len) < 0)
			log_warnx("in-process hub: out of memory posting a %zu-byte message to "
			    "worker %zu", len, i);
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
broker_local_new(struct hub *hub, struct worker *self)
{
	struct broker_local *b;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	b->base.ops = &broker_local_ops;
	b->base.hub = hub;
	b->self = self;
	return &b->base;
}
