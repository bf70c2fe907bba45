/* broker_redis.c - the Redis broker: one link in subscribed mode (sub) and one for PUBLISH
 * (pub), each a redis_link (redis_link.c: the connection, reader, FIFO, reconnect with backoff)
 * reconnecting on its own, plus a canary that proves delivery. Two kinds: the process's broker
 * (on worker 0's loop) holds the one sub link of the process and hands messages to its sink
 * (router.c); each worker's publisher has only a pub link, relays its hub's subscriptions to
 * the process's broker and holds its publishes until that broker's sub link is up.
 *
 * Ownership: each link owns its connection and frees it in redis_link_close(), which is safe
 * from inside the link's callbacks (see redis_link.c). A reply lives only during its callback:
 * nothing here keeps a pointer into one. Every reply is checked for the shape Redis gives it;
 * anything else is a protocol error: logged, counted (wsgate_redis_protocol_errors_total) and
 * the link rebuilt, never an abort (hiredis 0.14's async layer asserted on such replies). */
#include "broker_redis.h"
#include "broker_redis_int.h"

#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>

#include "broker_redis_fill.h"
#include "broker_redis_history.h"
#include "config.h"
#include "hub.h"
#include "history.h"
#include "history_store.h"
#include "log.h"
#include "metrics.h"
#include "redis_cluster.h"
#include "redis_link.h"
#include "redis_sentinel.h"
#include "utf8.h"
#include "ws_frame.h"

/* A publish held while the pub link is down or too far behind. */

static void broker_redis_resubscribe(struct broker_redis *);
static void broker_redis_fill_deliver(void *arg, const char *channel, size_t clen,
                                      const uint8_t *msg, size_t len);

static int
broker_redis_is_probe(const struct broker_redis *b, const char *name, size_t len)
{
	return len == b->probe_len && memcmp(name, b->probe_chan, len) == 0;
}

/* The link is up (sub: every resubscription confirmed). */
static void
broker_redis_link_up(struct redis_link *l)
{
	struct broker_redis *b = l->owner;

	if (redis_link_up(l) < 0)
		return;
	if (l == &b->sub)
		log_info("redis sub link up (%zu channels)", b->sink->nchannels(b->sink_arg));
	else
		log_info("redis pub link up");
	if (l == &b->pub && b->fill != NULL)
		broker_redis_fill_resync(b->fill, 0);
	/* Whichever of the two links comes back last lets the queue go. */
	if (b->st.queue_len > 0 && broker_redis_pub_writable(b))
		log_info("redis links up; flushing %llu queued publish(es)",
		         (unsigned long long)b->st.queue_len);
	broker_redis_flush(b);
}

/* ---- the links' hooks (redis_link.h) ---- */

static void
broker_redis_stream_drop(struct broker_redis *b)
{
	if (b->stream != NULL)
		hub_frame_unref(b->stream);
	b->stream = NULL;
}

/* A large bulk on the sub link (a message payload, normally): framed as it arrives, a read (at
 * most 1 MiB) per loop turn, UTF-8 checked on the way, so no turn copies or scans it whole and
 * every worker's subscribers share this one copy (router_deliver_frame). */
static int
broker_redis_stream_begin(struct redis_link *l, uint64_t len)
{
	struct broker_redis *b = l->owner;

	broker_redis_stream_drop(b);
	if (b->freeing || l != &b->sub || b->sink == NULL || b->sink->deliver_frame == NULL ||
	    len > SIZE_MAX || (b->stream = hub_frame_new((size_t)len, &b->stream_at)) == NULL)
		return -1; /* buffered by the reader, as before */
	b->stream_have = 0;
	b->stream_utf8 = UTF8_ACCEPT;
	return 0;
}

static void
broker_redis_stream_data(struct redis_link *l, const uint8_t *p, size_t n)
{
	struct broker_redis *b = l->owner;

	if (b->stream == NULL || n > b->stream->plen - b->stream_have)
		return; /* cannot happen: the link hands exactly the announced length */
	memcpy(b->stream_at + b->stream_have, p, n);
	b->stream_have += n;
	b->stream_utf8 = utf8_feed(b->stream_utf8, p, n);
}

/* The message push whose payload was streamed: hand the frame on, whole. */
static void
broker_redis_stream_deliver(struct broker_redis *b, const redisReply *chan)
{
	struct hub_frame *f = b->stream;
	int is_text;

	b->stream = NULL;
	if (f == NULL || b->stream_have != f->plen) {
		if (f != NULL)
			hub_frame_unref(f);
		redis_link_internal_error(&b->sub, "a streamed message ended short");
		return;
	}
	/* A positioned (or escaped) message takes the ordinary path: it keeps the channel's
	 * order and fills its gaps (broker_redis_fill.c), which a shared frame would bypass. */
	if (f->plen >= HISTORY_WIRE_MAGIC_LEN &&
	    memcmp(b->stream_at, HISTORY_WIRE_MAGIC, HISTORY_WIRE_MAGIC_LEN) == 0) {
		if (b->fill != NULL)
			broker_redis_fill_incoming(b->fill, chan->str, chan->len, b->stream_at,
			                           f->plen);
		else
			broker_redis_fill_deliver(b, chan->str, chan->len, b->stream_at, f->plen);
		hub_frame_unref(f);
		return;
	}
	is_text = b->stream_utf8 == UTF8_ACCEPT;
	hub_frame_seal(f, is_text ? WS_OP_TEXT : WS_OP_BINARY);
	METRIC_ADD(b->st.delivered, 1);
	b->sink->deliver_frame(b->sink_arg, chan->str, chan->len, f, is_text);
	hub_frame_unref(f);
}

/* What depended on the connection that went away. */
static void
broker_redis_link_down(struct redis_link *l, enum redis_link_state was, char *extra, size_t n)
{
	struct broker_redis *b = l->owner;

	(void)was;
	if (l == &b->sub)
		broker_redis_stream_drop(b); /* the rest of it will never come */
	if (b->freeing)
		return;
	/* A canary in flight proves nothing once the sub connection, or the pub connection
	 * before answering its PUBLISH, is gone. */
	if (l == &b->sub || !b->probe_answered) {
		METRIC_SET(b->probe_outstanding, 0);
		event_del(b->probe_deadline);
	}
	if (l == &b->pub) {
		/* Unanswered PUBLISHes may or may not have been run: counted, not resent. */
		if (b->inflight > 0)
			snprintf(extra, n, " (%llu PUBLISH unconfirmed)",
			         (unsigned long long)b->inflight);
		METRIC_ADD(b->st.unconfirmed, b->inflight);
		b->inflight = 0;
		b->inflight_bytes = 0;
		broker_redis_sent_free(b); /* their replies will never come */
		broker_redis_history_link_down(b->hist);
	}
}

/* A message larger than max_message_size is on its way: counted, logged at most once a
 * second. */
static void
broker_redis_oversized(struct broker_redis *b, const char *link, uint64_t len)
{
	uint64_t now = redis_link_now_ms();

	METRIC_ADD(b->st.oversized, 1);
	b->oversized++;
	if (now - b->oversized_log_ms >= REDIS_LOG_MS) {
		log_warnx("redis %s link: a %llu-byte message is over max_message_size (%llu): "
		          "dropped (%llu since the last report)",
		          link, (unsigned long long)len, (unsigned long long)b->max_message_size,
		          (unsigned long long)b->oversized);
		b->oversized = 0;
		b->oversized_log_ms = now;
	}
}

static void
broker_redis_link_oversized(struct redis_link *l, uint64_t len)
{
	broker_redis_oversized(l->owner, l->name, len);
}

/* AUTH and SELECT replies. arg is the command name, for the log. Redis answers both with +OK
 * or an error; anything else is not Redis. */
static void
broker_redis_on_handshake(struct redis_link *l, const redisReply *reply, void *arg)
{
	struct broker_redis *b = l->owner;
	const char *step = arg;
	char reason[256];

	if (b->freeing || l->state != REDIS_LINK_HANDSHAKE)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		snprintf(reason, sizeof(reason), "%s refused: %.*s", step, (int)reply->len,
		         reply->str);
		redis_link_close(l, reason);
	} else if (reply->type != REDIS_REPLY_STATUS) {
		snprintf(reason, sizeof(reason), "%s answered with reply type %d", step,
		         reply->type);
		redis_link_fail(l, reason);
	} else if (l == &b->sub) {
		broker_redis_resubscribe(b); /* AUTH was its whole handshake */
	} else if (strcmp(step, "SELECT") == 0) {
		broker_redis_link_up(l);
	}
}

/* TCP is up: AUTH when configured, and SELECT on pub (pub/sub ignores the db, but anything
 * else sent on that link must hit the configured one). The sub link without AUTH resubscribes
 * at once. */
static void
broker_redis_link_connected(struct redis_link *l)
{
	struct broker_redis *b = l->owner;
	const char *argv[2];
	size_t lens[2];
	char db[16];
	int rc = 0;

	if (b->freeing)
		return;
	if (b->password != NULL) {
		argv[0] = "AUTH", lens[0] = 4;
		argv[1] = b->password, lens[1] = strlen(b->password);
		rc = redis_link_command(l, 2, argv, lens, broker_redis_on_handshake, "AUTH");
	}
	if (rc == 0 && l == &b->pub) {
		argv[0] = "SELECT", lens[0] = 6;
		lens[1] = (size_t)snprintf(db, sizeof(db), "%d", b->db);
		argv[1] = db;
		rc = redis_link_command(l, 2, argv, lens, broker_redis_on_handshake, "SELECT");
		/* The history functions, before any publish can use them (same FIFO). */
		if (rc == 0)
			rc = broker_redis_history_load(b->hist, l);
	}
	if (rc != 0)
		redis_link_close(l, "handshake could not be queued");
	else if (l == &b->sub && b->password == NULL)
		broker_redis_resubscribe(b);
}

/* ---- the sub link: subscriptions, messages, the canary coming back ---- */

static int
broker_redis_is_str(const redisReply *r)
{
	return r->type == REDIS_REPLY_STRING;
}

static int
broker_redis_kind_is(const redisReply *kind, const char *s)
{
	size_t n = strlen(s);

	return kind->len == n && strncasecmp(kind->str, s, n) == 0;
}

/* A "message" push for channel chan: the canary coming back, or one for the sink. data NULL:
 * skipped as it streamed in (over max_message_size, already counted). */
static void
broker_redis_on_message(struct broker_redis *b, const redisReply *chan, const redisReply *data)
{
	if (broker_redis_is_probe(b, chan->str, chan->len)) {
		/* Ours when it is the payload we sent last (the workers of one instance share
		 * the channel, and their canaries are ignored). */
		char want[64];
		int n =
		    snprintf(want, sizeof(want), "%016llx:%llu", (unsigned long long)b->probe_nonce,
		             (unsigned long long)b->probe_seq);

		if (data != NULL && b->probe_outstanding && data->len == (size_t)n &&
		    memcmp(data->str, want, data->len) == 0) {
			METRIC_SET(b->probe_outstanding, 0);
			event_del(b->probe_deadline);
		}
		return;
	}
	if (data == NULL) {
		if (b->sub.streamed)
			broker_redis_stream_deliver(b, chan);
		return;
	}
	/* Normally skipped as it streamed in (a nil then); this catches one that came whole
	 * within a single read. */
	if (data->len > b->max_message_size) {
		broker_redis_oversized(b, "sub (whole)", data->len);
		return;
	}
	if (b->fill != NULL)
		broker_redis_fill_incoming(b->fill, chan->str, chan->len,
		                           (const uint8_t *)data->str, data->len);
	else
		broker_redis_fill_deliver(b, chan->str, chan->len, (const uint8_t *)data->str,
		                          data->len);
}

/* Redis confirmed a SUBSCRIBE of chan. Redis answers in order and the canary channel goes last
 * in every resubscription: its confirmation means every channel is subscribed. */
static void
broker_redis_on_subscribed(struct broker_redis *b, const char *chan, size_t len)
{
	if (b->sub.state == REDIS_LINK_SYNCING && broker_redis_is_probe(b, chan, len)) {
		broker_redis_link_up(&b->sub);
		/* What was published while we were not subscribed: read back before newer. */
		if (b->sub.state == REDIS_LINK_UP && b->fill != NULL)
			broker_redis_fill_resync(b->fill, 1);
		/* The workers' publishers held their queues for this. */
		if (b->on_sub_up != NULL && b->sub.state == REDIS_LINK_UP)
			b->on_sub_up(b->on_sub_up_arg);
	} else if (!broker_redis_is_probe(b, chan, len) && b->sub.state == REDIS_LINK_UP &&
	           b->fill != NULL) {
		/* A new subscription (not a resubscription): nothing before it is owed, unless
		 * the channel came from another master with its position (cluster). */
		broker_redis_fill_confirmed(b->fill, chan, len);
		if (b->sink->confirmed != NULL)
			b->sink->confirmed(b->sink_arg, chan, len);
	} else if (b->sink->confirmed != NULL && !broker_redis_is_probe(b, chan, len)) {
		/* The process now receives this channel: its pending clients may open. */
		b->sink->confirmed(b->sink_arg, chan, len);
	}
}

/* Every reply on the sub link once AUTH is answered: Redis sends nothing there but these
 * pushes, each [kind, channel, payload] -- "message" (payload a bulk string: a nil only when
 * we skipped an oversized one), "subscribe"/"unsubscribe" (payload the count of channels
 * still subscribed, an integer; the channel is nil for an UNSUBSCRIBE of nothing) -- and
 * ["pong", data] should a PING ever be sent. An error reply (a refused command) closes the link
 * to start over. Anything else (short arrays, other types, unknown kinds) is not Redis: returns
 * -1 with why, and the link logs it, counts it and is rebuilt. The checks are the ones hiredis
 * 0.14 made with assert(). */
static int
broker_redis_on_sub_reply(struct redis_link *l, const redisReply *reply, char *why, size_t n)
{
	struct broker_redis *b = l->owner;
	const redisReply *kind, *chan, *data;

	if (b->freeing)
		return 0;
	if (reply->type == REDIS_REPLY_ERROR) {
		/* Redis refused a command (NOAUTH, OOM, too many clients...): not malformed, but
		 * the subscriptions are not what we asked for. Start over. */
		char reason[256], host[256];
		unsigned slot;
		int ask, port;

		/* Cluster: an SSUBSCRIBE of a slot this master no longer (or not yet) serves. The
		 * link is fine; the channel goes where the map, read again, says. */
		if (b->cluster != NULL &&
		    redis_cluster_redirect(reply->str, reply->len, &ask, &slot, host, sizeof(host),
		                           &port) == 1) {
			broker_redis_cluster_sub_refused(b->cluster, b->shard, slot);
			return 0;
		}

		snprintf(reason, sizeof(reason), "Redis refused a command: %.*s",
		         (int)(reply->len < 200 ? reply->len : 200), reply->str);
		redis_link_close(l, reason);
		return 0;
	}
	if (reply->type != REDIS_REPLY_ARRAY) {
		snprintf(why, n, "a reply of type %d where a push was due", reply->type);
		return -1;
	}
	if (reply->elements < 1 || !broker_redis_is_str(reply->element[0])) {
		snprintf(why, n, "a push of %zu elements without a kind", reply->elements);
		return -1;
	}
	kind = reply->element[0];
	if (broker_redis_kind_is(kind, "pong") && reply->elements <= 2)
		return 0;
	if (reply->elements != 3) {
		snprintf(why, n, "a push of %zu elements", reply->elements);
		return -1;
	}
	chan = reply->element[1];
	data = reply->element[2];
	if (broker_redis_kind_is(kind, "message") || broker_redis_kind_is(kind, "smessage")) {
		if (!broker_redis_is_str(chan) ||
		    (!broker_redis_is_str(data) && data->type != REDIS_REPLY_NIL)) {
			snprintf(why, n, "a message push with a channel or payload not a string");
			return -1;
		}
		if (b->sub.state == REDIS_LINK_SYNCING || b->sub.state == REDIS_LINK_UP)
			broker_redis_on_message(b, chan,
			                        data->type == REDIS_REPLY_NIL ? NULL : data);
		return 0;
	}
	if (broker_redis_kind_is(kind, "subscribe") || broker_redis_kind_is(kind, "unsubscribe") ||
	    broker_redis_kind_is(kind, "ssubscribe") ||
	    broker_redis_kind_is(kind, "sunsubscribe")) {
		int sub = broker_redis_kind_is(kind, "subscribe") ||
		          broker_redis_kind_is(kind, "ssubscribe");

		if (data->type != REDIS_REPLY_INTEGER ||
		    (!broker_redis_is_str(chan) && (sub || chan->type != REDIS_REPLY_NIL))) {
			snprintf(why, n,
			         "a %s confirmation with a channel or count of the wrong "
			         "type",
			         sub ? "subscribe" : "unsubscribe");
			return -1;
		}
		if (sub)
			broker_redis_on_subscribed(b, chan->str, chan->len);
		else if (b->cluster != NULL && chan->type == REDIS_REPLY_STRING)
			/* Ours (the last subscriber left) or Redis' own when the slot migrated:
			 * the map is read again and a channel still wanted is resubscribed. */
			broker_redis_cluster_moved(b->cluster, b->shard,
			                           redis_cluster_keyslot(chan->str, chan->len));
		return 0;
	}
	snprintf(why, n, "a push of unknown kind \"%.*s\"", (int)(kind->len < 32 ? kind->len : 32),
	         kind->str);
	return -1;
}

struct broker_redis_batch {
	struct broker_redis *b;
	int n; /* channels in argv after "SUBSCRIBE" */
	int failed;
	const char *argv[1 + REDIS_SUB_BATCH];
	size_t lens[1 + REDIS_SUB_BATCH];
};

/* Confirmations come back as pushes (broker_redis_on_sub_reply), not through the FIFO. */
static void
broker_redis_batch_send(struct broker_redis_batch *bt)
{
	if (bt->n > 0 && !bt->failed &&
	    redis_link_command(&bt->b->sub, bt->n + 1, bt->argv, bt->lens, NULL, NULL) != 0)
		bt->failed = 1;
	bt->n = 0;
}

/* The names stay valid until their batch is sent: the sink's channels do not change while it
 * iterates, and the command is encoded at once. */
static void
broker_redis_batch_add(void *arg, const char *name, size_t len)
{
	struct broker_redis_batch *bt = arg;

	if (broker_redis_is_probe(bt->b, name, len))
		return; /* added once, last */
	/* Cluster: only this master's channels, one per SSUBSCRIBE (the channels of one
	 * command must share a slot); pipelined, they still leave in one write. */
	if (bt->b->cluster != NULL &&
	    !broker_redis_cluster_owns(bt->b->cluster, bt->b->shard, name, len))
		return;
	bt->argv[1 + bt->n] = name;
	bt->lens[1 + bt->n] = len;
	bt->n++;
	if (bt->n == REDIS_SUB_BATCH || bt->b->cluster != NULL)
		broker_redis_batch_send(bt);
}

/* The sink (router) holds the set of channels: subscribe all of them, in batches, then the
 * canary channel. */
static void
broker_redis_resubscribe(struct broker_redis *b)
{
	struct broker_redis_batch bt = {.b = b, .argv = {b->cmd_sub}}; /* 4 KiB */

	bt.lens[0] = strlen(b->cmd_sub);

	b->sink->foreach_channel(b->sink_arg, broker_redis_batch_add, &bt);
	bt.argv[1 + bt.n] = b->probe_chan; /* n < REDIS_SUB_BATCH here: there is room */
	bt.lens[1 + bt.n] = b->probe_len;
	bt.n++;
	broker_redis_batch_send(&bt);
	if (bt.failed)
		redis_link_close(&b->sub, "SUBSCRIBE could not be queued");
	else
		(void)redis_link_set_state(&b->sub, REDIS_LINK_SYNCING);
}

/* One (UN)SUBSCRIBE while the link is subscribing; before that the resubscription reads the
 * sink. The canary channel is ours alone: never sent here, so never unsubscribed, so the link
 * never leaves subscribed mode (where a reply could answer a command again). */
void
broker_redis_sub_command(struct broker_redis *b, const char *cmd, const char *channel, size_t len)
{
	const char *argv[2] = {cmd, channel};
	size_t lens[2] = {strlen(cmd), len};

	if (b->sub.state != REDIS_LINK_SYNCING && b->sub.state != REDIS_LINK_UP)
		return;
	if (broker_redis_is_probe(b, channel, len))
		return;
	if (redis_link_command(&b->sub, 2, argv, lens, NULL, NULL) != 0)
		redis_link_close(&b->sub, "(UN)SUBSCRIBE could not be queued");
}

static int
broker_redis_subscribe(struct broker *base, const char *channel, size_t len)
{
	struct broker_redis *b = (struct broker_redis *)base;

	if (b->relay != NULL)
		b->relay(b->relay_arg, 1, channel, len); /* a worker's: the process subscribes */
	else
		broker_redis_sub_command(b, b->cmd_sub, channel, len);
	return 0; /* the sink holds the set; while the link is down, the reconnect subscribes */
}

static void
broker_redis_unsubscribe(struct broker *base, const char *channel, size_t len)
{
	struct broker_redis *b = (struct broker_redis *)base;

	if (b->relay != NULL)
		b->relay(b->relay_arg, 0, channel, len);
	else {
		broker_redis_sub_command(b, b->cmd_unsub, channel, len);
		if (b->fill != NULL)
			broker_redis_fill_forget(b->fill, channel, len);
	}
}

/* ---- the broker ---- */

static int
broker_redis_ready(struct broker *base)
{
	struct broker_redis *b = (struct broker_redis *)base;

	if (b->owner != NULL)
		return broker_redis_ready(&b->owner->base);
	/* The deadline event tears the link down; the time check covers a loop running late. */
	/* Called from any thread: the fields it reads are written with atomic stores. */
	/* And every channel caught up with what it missed (broker_redis_fill.c). */
	return METRIC_GET(b->sub.state) == REDIS_LINK_UP &&
	       !(METRIC_GET(b->probe_outstanding) &&
	         redis_link_now_ms() - METRIC_GET(b->probe_sent_ms) > b->probe_timeout_ms) &&
	       broker_redis_fill_pending(b->fill) == 0;
}

static void
broker_redis_free(struct broker *base)
{
	struct broker_redis *b = (struct broker_redis *)base;
	struct redis_pending *p;

	b->freeing = 1;
	broker_redis_stream_drop(b);
	redis_link_free(&b->sub);
	redis_link_free(&b->pub);
	redis_endpoint_free(b->ep); /* after its links */
	if (b->probe_timer != NULL)
		event_free(b->probe_timer);
	if (b->probe_deadline != NULL)
		event_free(b->probe_deadline);
	if (b->dns != NULL)
		evdns_base_free(b->dns, 1);
	if (b->st.queue_len > 0)
		log_warnx("redis broker stopped with %llu publishes never sent",
		          (unsigned long long)b->st.queue_len);
	while ((p = STAILQ_FIRST(&b->queue)) != NULL) {
		STAILQ_REMOVE_HEAD(&b->queue, entry);
		free(p);
	}
	broker_redis_sent_free(b);
	broker_redis_fill_free(b->fill);
	broker_redis_history_free(b->hist);
	free(b->host);
	free(b->password);
	free(b->probe_chan);
	free(b);
}

static const struct redis_link_ops broker_redis_sub_ops = {
    .connected = broker_redis_link_connected,
    .push = broker_redis_on_sub_reply,
    .down = broker_redis_link_down,
    .oversized = broker_redis_link_oversized,
    .stream_begin = broker_redis_stream_begin,
    .stream_data = broker_redis_stream_data,
};

/* The pub link is never in subscribed mode: every reply answers a command (push NULL). */
static const struct redis_link_ops broker_redis_pub_ops = {
    .connected = broker_redis_link_connected,
    .push = NULL,
    .down = broker_redis_link_down,
    .oversized = broker_redis_link_oversized,
};

/* What both kinds share: settings, the FIFO, the two links' events. */
static struct broker_redis *
broker_redis_alloc(struct event_base *base, const struct config *cfg)
{
	const struct config_redis *rc = &cfg->redis;
	struct broker_redis *b;
	char err[256];

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	b->base.ops = &broker_redis_ops;
	b->evbase = base;
	b->cmd_sub = "SUBSCRIBE";
	b->cmd_unsub = "UNSUBSCRIBE";
	b->cmd_pub = "PUBLISH";
	STAILQ_INIT(&b->queue);
	STAILQ_INIT(&b->sent);
	b->port = atoi(rc->port);
	b->db = rc->db;
	b->connect_timeout_ms = rc->connect_timeout_ms;
	b->probe_interval_ms = rc->probe_interval_ms;
	b->probe_timeout_ms = rc->probe_timeout_ms;
	b->publish_queue = rc->publish_queue;
	b->reconnect_max_ms = rc->reconnect_max_ms;
	b->max_message_size = rc->max_message_size;
	b->probe_timer = event_new(base, -1, EV_PERSIST, broker_redis_probe_tick, b);
	b->probe_deadline = evtimer_new(base, broker_redis_probe_overdue, b);
	if ((b->hist = broker_redis_history_new()) == NULL ||
	    (b->host = strdup(rc->host)) == NULL ||
	    (rc->password != NULL && (b->password = strdup(rc->password)) == NULL) ||
	    redis_link_init(&b->sub, "sub", 1, &broker_redis_sub_ops, b, base, &b->dns, b->host,
	                    b->port, b->connect_timeout_ms, b->reconnect_max_ms,
	                    b->max_message_size) < 0 ||
	    redis_link_init(&b->pub, "pub", 0, &broker_redis_pub_ops, b, base, &b->dns, b->host,
	                    b->port, b->connect_timeout_ms, b->reconnect_max_ms,
	                    b->max_message_size) < 0 ||
	    b->probe_timer == NULL || b->probe_deadline == NULL) {
		log_warnx("redis broker: out of memory");
		broker_redis_free(&b->base);
		return NULL;
	}
	if ((b->ep = redis_endpoint_new(base, &b->dns, rc, err, sizeof(err))) == NULL) {
		log_warnx("redis broker: %s", err);
		broker_redis_free(&b->base);
		return NULL;
	}
	return b;
}

/* The fill's deliveries go where the sub link's would have. */
static void
broker_redis_fill_deliver(void *arg, const char *channel, size_t clen, const uint8_t *msg,
                          size_t len)
{
	struct broker_redis *b = arg;

	METRIC_ADD(b->st.delivered, 1);
	b->sink->deliver(b->sink_arg, channel, clen, msg, len);
}

/* The process's broker: the sub link, its canary on probe_chan, the fill. */
static struct broker_redis *
broker_redis_make(const struct broker_sink *sink, void *sink_arg, struct event_base *base,
                  const struct config *cfg, const char *probe_chan, void (*on_sub_up)(void *),
                  void *arg, struct broker_redis_cluster *cl, size_t shard)
{
	struct broker_redis *b;

	if ((b = broker_redis_alloc(base, cfg)) == NULL)
		return NULL;
	b->sink = sink;
	b->sink_arg = sink_arg;
	b->cluster = cl;
	b->shard = shard;
	if ((b->fill = broker_redis_fill_new(broker_redis_fill_deliver, b, b->hist, &b->pub)) ==
	        NULL ||
	    (b->probe_chan = strdup(probe_chan)) == NULL) {
		log_warnx("redis broker: out of memory");
		broker_redis_free(&b->base);
		return NULL;
	}
	b->on_sub_up = on_sub_up;
	b->on_sub_up_arg = arg;
	b->probe_len = strlen(probe_chan);
	if (RAND_bytes((unsigned char *)&b->probe_nonce, sizeof(b->probe_nonce)) != 1)
		b->probe_nonce = (uint64_t)(uintptr_t)b ^ redis_link_now_ms();
	if (b->probe_interval_ms > 0 && b->probe_timeout_ms > 0)
		redis_link_arm(b->probe_timer, b->probe_interval_ms);
	return b;
}

struct broker *
broker_redis_new(const struct broker_sink *sink, void *sink_arg, struct event_base *base,
                 const struct config *cfg, const char *instance_id, void (*on_sub_up)(void *),
                 void *arg)
{
	const char *prefix = cfg->redis.channel_prefix != NULL ? cfg->redis.channel_prefix : "";
	struct broker_redis *b;
	char err[300], probe[512];

	if (cfg->redis.cluster)
		return broker_redis_cluster_new(sink, sink_arg, base, cfg, instance_id, on_sub_up,
		                                arg);
	snprintf(probe, sizeof(probe), "%swsgate:probe:%s", prefix, instance_id);
	if ((b = broker_redis_make(sink, sink_arg, base, cfg, probe, on_sub_up, arg, NULL, 0)) ==
	    NULL)
		return NULL;
	log_info("redis broker: %s db %d, canary on %s every %llu ms",
	         redis_endpoint_describe(b->ep, err, sizeof(err)), b->db, b->probe_chan,
	         (unsigned long long)b->probe_interval_ms);
	/* First attempts right away; retries from timers. */
	redis_endpoint_attach(b->ep, &b->sub);
	redis_endpoint_attach(b->ep, &b->pub);
	redis_link_connect(&b->sub);
	redis_link_connect(&b->pub);
	return &b->base;
}

/* Cluster mode: the links go where the cluster's map says (loc), check ROLE first (a master
 * demoted by a failover is never written to) and use the sharded commands. */
static void
broker_redis_shard_links(struct broker_redis *b, struct broker_redis_cluster *cl, size_t shard,
                         const struct redis_link_locator *loc, int with_sub)
{
	b->cluster = cl;
	b->shard = shard;
	b->cmd_sub = "SSUBSCRIBE";
	b->cmd_unsub = "SUNSUBSCRIBE";
	b->cmd_pub = "SPUBLISH";
	redis_endpoint_attach(b->ep, &b->pub); /* TLS */
	redis_link_locate(&b->pub, loc, cl);
	b->pub.verify_role = 1;
	b->pub.password = b->password;
	if (with_sub) {
		redis_endpoint_attach(b->ep, &b->sub);
		redis_link_locate(&b->sub, loc, cl);
		b->sub.verify_role = 1;
		b->sub.password = b->password;
		redis_link_connect(&b->sub);
	}
	redis_link_connect(&b->pub);
}

struct broker_redis *
broker_redis_shard_new(const struct broker_sink *sink, void *sink_arg, struct event_base *base,
                       const struct config *cfg, const char *probe_chan, void (*on_sub_up)(void *),
                       void *arg, struct broker_redis_cluster *cl, size_t shard,
                       const struct redis_link_locator *loc)
{
	struct broker_redis *b;

	if ((b = broker_redis_make(sink, sink_arg, base, cfg, probe_chan, on_sub_up, arg, cl,
	                           shard)) == NULL)
		return NULL;
	broker_redis_shard_links(b, cl, shard, loc, 1);
	return b;
}

struct broker_redis *
broker_redis_shard_publisher(struct event_base *base, const struct config *cfg,
                             struct broker_redis *owner, struct broker_redis_cluster *cl,
                             size_t shard, const struct redis_link_locator *loc)
{
	struct broker_redis *b;

	if ((b = broker_redis_alloc(base, cfg)) == NULL)
		return NULL;
	b->owner = owner;
	broker_redis_shard_links(b, cl, shard, loc, 0);
	return b;
}

void
broker_redis_free_shard(struct broker_redis *b)
{
	if (b != NULL)
		broker_redis_free(&b->base);
}

int
broker_redis_shard_ready(struct broker_redis *b)
{
	return broker_redis_ready(&b->base);
}

struct broker *
broker_redis_new_publisher(struct hub *hub, struct event_base *base, const struct config *cfg,
                           struct broker *owner, void (*relay)(void *, int, const char *, size_t),
                           void *relay_arg)
{
	struct broker_redis *b;

	if (owner != NULL && owner->ops == &broker_redis_cluster_ops)
		return broker_redis_cluster_new_publisher(hub, base, cfg, owner, relay, relay_arg);
	if (owner == NULL || owner->ops != &broker_redis_ops)
		return NULL;
	if ((b = broker_redis_alloc(base, cfg)) == NULL)
		return NULL;
	b->base.hub = hub;
	b->owner = (struct broker_redis *)owner;
	b->relay = relay;
	b->relay_arg = relay_arg;
	redis_endpoint_attach(b->ep, &b->pub); /* only pub: the sub link stays unused */
	redis_link_connect(&b->pub);           /* no sub link, no canary: the owner has them */
	return &b->base;
}

void
broker_redis_set_history(struct broker *base, struct history_store *st)
{
	if (base != NULL && base->ops == &broker_redis_cluster_ops)
		broker_redis_cluster_set_history(base, st);
	if (base != NULL && base->ops == &broker_redis_ops)
		((struct broker_redis *)base)->hstore = st;
}

struct broker_redis_fetch *
broker_redis_fetch(struct broker *base, const char *channel, size_t clen, uint64_t from,
                   uint64_t count, const char *epoch, broker_redis_fetch_fn fn, void *arg)
{
	struct broker_redis *b = (struct broker_redis *)base;

	if (base != NULL && base->ops == &broker_redis_cluster_ops)
		return broker_redis_cluster_fetch(base, channel, clen, from, count, epoch, fn, arg);
	if (base == NULL || base->ops != &broker_redis_ops)
		return NULL;
	return broker_redis_history_fetch(b->hist, &b->pub, channel, clen, from, count, epoch, fn,
	                                  arg);
}

void
broker_redis_kick(struct broker *base)
{
	struct broker_redis *b = (struct broker_redis *)base;

	if (base != NULL && base->ops == &broker_redis_cluster_ops)
		broker_redis_cluster_kick(base);
	if (base != NULL && base->ops == &broker_redis_ops && b->st.queue_len > 0 &&
	    broker_redis_pub_writable(b)) {
		log_info("redis links up; flushing %llu queued publish(es)",
		         (unsigned long long)b->st.queue_len);
		broker_redis_flush(b);
	}
}

void
broker_redis_stats(struct broker *base, struct broker_redis_stats *out)
{
	const struct broker_redis *b = (const struct broker_redis *)base;

	memset(out, 0, sizeof(*out));
	if (base != NULL && base->ops == &broker_redis_cluster_ops) {
		broker_redis_cluster_stats(base, out);
		return;
	}
	if (base == NULL || base->ops != &broker_redis_ops)
		return;
	/* Read from the main loop while the worker runs: field by field, atomically. */
	out->reconnects = METRIC_GET(b->sub.reconnects) + METRIC_GET(b->pub.reconnects);
	out->published = METRIC_GET(b->st.published);
	out->queued = METRIC_GET(b->st.queued);
	out->refused = METRIC_GET(b->st.refused);
	out->delivered = METRIC_GET(b->st.delivered);
	out->probes_lost = METRIC_GET(b->st.probes_lost);
	out->unconfirmed = METRIC_GET(b->st.unconfirmed);
	out->publish_errors = METRIC_GET(b->st.publish_errors);
	out->oversized = METRIC_GET(b->st.oversized);
	out->internal_errors =
	    METRIC_GET(b->sub.internal_errors) + METRIC_GET(b->pub.internal_errors);
	out->protocol_errors =
	    METRIC_GET(b->sub.protocol_errors) + METRIC_GET(b->pub.protocol_errors);
	out->queue_bytes = METRIC_GET(b->st.queue_bytes);
	out->queue_len = METRIC_GET(b->st.queue_len);
	out->sub_up = METRIC_GET(b->sub.state) == REDIS_LINK_UP;
	out->pub_up = METRIC_GET(b->pub.state) == REDIS_LINK_UP;
}

const struct broker_ops broker_redis_ops = {
    .name = "redis",
    .subscribe = broker_redis_subscribe,
    .unsubscribe = broker_redis_unsubscribe,
    .publish = broker_redis_publish,
    .ready = broker_redis_ready,
    .free = broker_redis_free,
};
