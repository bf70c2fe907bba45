/* broker_redis_pub.c - the Redis broker's publish path: PUBLISH (or the history function)
 * on the pub link, the bounded FIFO while Redis is unreachable, in-flight bounds, and the canary
 * going out and judged (its return is seen on the sub link, broker_redis.c). */
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "broker_redis_fill.h"
#include "broker_redis_history.h"
#include "broker_redis_int.h"
#include "history_store.h"
#include "log.h"
#include "metrics.h"
#include "redis_cluster.h"
#include "redis_link.h"

/* ---- the pub link: PUBLISH, the FIFO, in-flight bounds ---- */

/* Up, and not so far behind that the link's output buffer or Redis' replies pile up. The
 * subscribe link must be up too: a message published while this instance is not subscribed
 * would never reach its own clients, so it waits in the queue until both links are back. */
int
broker_redis_pub_writable(const struct broker_redis *b)
{
	uint64_t cap = b->publish_queue > 0 ? b->publish_queue : REDIS_PUB_MIN_INFLIGHT_BYTES;

	/* A worker's publisher reads the process broker's sub link from another thread. */
	int sub_up = b->owner != NULL ? METRIC_GET(b->owner->sub.state) == REDIS_LINK_UP
	                              : b->sub.state == REDIS_LINK_UP;

	return b->pub.state == REDIS_LINK_UP && sub_up && b->inflight < REDIS_PUB_MAX_INFLIGHT &&
	       b->inflight_bytes < cap;
}

/* Cluster mode: the copy of the publish this reply answers (replies come in send order). */
static struct redis_pending *
broker_redis_sent_pop(struct broker_redis *b)
{
	struct redis_pending *p = STAILQ_FIRST(&b->sent);

	if (p != NULL)
		STAILQ_REMOVE_HEAD(&b->sent, entry);
	return p;
}

void
broker_redis_sent_free(struct broker_redis *b)
{
	struct redis_pending *p;

	while ((p = broker_redis_sent_pop(b)) != NULL)
		free(p);
}

int
broker_redis_slot_pending(const struct broker_redis *b, unsigned slot)
{
	const struct redis_pending *p;

	STAILQ_FOREACH(p, &b->sent, entry)
	if (redis_cluster_keyslot((const char *)p->buf, p->clen) == slot)
		return 1;
	STAILQ_FOREACH(p, &b->queue, entry)
	if (redis_cluster_keyslot((const char *)p->buf, p->clen) == slot)
		return 1;
	return 0;
}

/* arg is the message's byte count (channel + data). Redis answers PUBLISH with the number of
 * receivers (an integer) or an error; anything else is not Redis. */
static void
broker_redis_on_publish_reply(struct redis_link *l, const redisReply *reply, void *arg)
{
	struct broker_redis *b = l->owner;
	struct redis_pending *p;

	if (b->freeing)
		return;
	b->inflight--;
	b->inflight_bytes -= (uint64_t)(uintptr_t)arg;
	p = b->cluster != NULL ? broker_redis_sent_pop(b) : NULL;
	/* PUBLISH answers an integer, FCALL wsgate_publish the position (a string). */
	if (reply->type == REDIS_REPLY_INTEGER || reply->type == REDIS_REPLY_STRING) {
		METRIC_ADD(b->st.published, 1);
		if (p != NULL && b->router != NULL && reply->type == REDIS_REPLY_INTEGER)
			broker_redis_cluster_receivers(b->router, b->shard, p, reply->integer);
	} else if (reply->type == REDIS_REPLY_ERROR) {
		char host[256];
		unsigned slot;
		int ask, port;

		/* Cluster: the slot moved (or is moving) since the map was read: the map is read
		 * again, and the message goes where the node said (its router keeps the channel's
		 * order), not lost. */
		if (b->cluster != NULL &&
		    redis_cluster_redirect(reply->str, reply->len, &ask, &slot, host, sizeof(host),
		                           &port) == 1) {
			broker_redis_cluster_moved(b->cluster, b->shard, slot);
			if (p != NULL && b->router != NULL) {
				broker_redis_cluster_redirected(b->router, p, b->shard, ask, host,
				                                port);
				p = NULL;
				goto done;
			}
		}
		METRIC_ADD(b->st.publish_errors, 1);
		if (b->st.publish_errors % 1000 == 1)
			log_warnx("redis PUBLISH failed: %.*s (%llu errors so far)",
			          (int)(reply->len < 200 ? reply->len : 200), reply->str,
			          (unsigned long long)b->st.publish_errors);
	} else {
		free(p);
		redis_link_fail(l, "PUBLISH answered with neither an integer nor an error");
		return;
	}
done:
	free(p);
	broker_redis_flush(b);
	if (b->router != NULL)
		broker_redis_cluster_drain(b->router);
}

/* ASKING's answer: the command after it says whether the node took it. */
static void
broker_redis_on_asking_reply(struct redis_link *l, const redisReply *reply, void *arg)
{
	struct broker_redis *b = l->owner;

	(void)arg;
	if (b->freeing)
		return;
	if (reply->type != REDIS_REPLY_STATUS && reply->type != REDIS_REPLY_ERROR)
		redis_link_fail(l, "ASKING answered with neither a status nor an error");
}

static int
broker_redis_send(struct broker_redis *b, const char *channel, size_t clen, const uint8_t *data,
                  size_t len, uint64_t seq, unsigned redirects, int ask)
{
	size_t bytes = clen + len, cap;
	const char *argv[3] = {b->cmd_pub, channel, (const char *)data};
	size_t lens[3] = {strlen(b->cmd_pub), clen, len};
	const char *asking[1] = {"ASKING"};
	size_t asking_len[1] = {6};
	struct redis_pending *p = NULL;
	uint64_t ttl;

	/* Cluster: a copy until the reply, to send again if it says MOVED or ASK. */
	if (b->cluster != NULL) {
		if ((p = malloc(sizeof(*p) + bytes)) == NULL)
			return -1;
		p->clen = clen, p->len = len, p->seq = seq, p->redirects = redirects;
		memcpy(p->buf, channel, clen);
		if (len > 0)
			memcpy(p->buf + clen, data, len);
	}
	/* ASK: the node takes the next command of this connection for the migrating slot. */
	if (ask && redis_link_command(&b->pub, 1, asking, asking_len, broker_redis_on_asking_reply,
	                              NULL) != 0)
		goto fail;
	/* A channel with history goes through the function: appended and published with its
	 * position in one step. */
	if (b->hstore != NULL && history_store_bounds(b->hstore, channel, clen, &cap, &ttl)) {
		if (broker_redis_history_publish(&b->pub, channel, clen, data, len, cap, ttl,
		                                 b->cluster != NULL, broker_redis_on_publish_reply,
		                                 (void *)(uintptr_t)bytes) != 0)
			goto fail;
	} else if (redis_link_command(&b->pub, 3, argv, lens, broker_redis_on_publish_reply,
	                              (void *)(uintptr_t)bytes) != 0)
		goto fail;
	if (p != NULL)
		STAILQ_INSERT_TAIL(&b->sent, p, entry);
	b->inflight++;
	b->inflight_bytes += bytes;
	return 0;
fail:
	free(p);
	return -1;
}

/* Sends queued publishes in order while the link takes them: when the pub link comes up and
 * whenever a reply makes room. */
void
broker_redis_flush(struct broker_redis *b)
{
	struct redis_pending *p;

	while ((p = STAILQ_FIRST(&b->queue)) != NULL && broker_redis_pub_writable(b)) {
		if (broker_redis_send(b, (const char *)p->buf, p->clen, p->buf + p->clen, p->len,
		                      p->seq, p->redirects, 0) != 0)
			break;
		STAILQ_REMOVE_HEAD(&b->queue, entry);
		METRIC_SUB(b->st.queue_bytes, p->clen + p->len);
		METRIC_SUB(b->st.queue_len, 1);
		free(p);
	}
	if (b->queue_full && b->st.queue_len == 0) {
		b->queue_full = 0;
		log_info("redis publish queue drained");
	}
}

/* Copies the message to the FIFO, or refuses it when publish_queue bytes would be exceeded:
 * never dropped silently, the caller tells the client. */
static int
broker_redis_enqueue(struct broker_redis *b, const char *channel, size_t clen, const uint8_t *data,
                     size_t len, uint64_t seq, unsigned redirects)
{
	struct redis_pending *p;
	size_t bytes = clen + len;

	if (bytes > b->publish_queue - b->st.queue_bytes ||
	    (p = malloc(sizeof(*p) + bytes)) == NULL) {
		METRIC_ADD(b->st.refused, 1);
		if (!b->queue_full)
			log_warnx("redis publish queue full (%llu messages, %llu bytes); refusing "
			          "publishes",
			          (unsigned long long)b->st.queue_len,
			          (unsigned long long)b->st.queue_bytes);
		b->queue_full = 1;
		return -1;
	}
	p->clen = clen;
	p->len = len;
	p->seq = seq;
	p->redirects = redirects;
	memcpy(p->buf, channel, clen);
	if (len > 0)
		memcpy(p->buf + clen, data, len);
	STAILQ_INSERT_TAIL(&b->queue, p, entry);
	METRIC_ADD(b->st.queue_bytes, bytes);
	METRIC_ADD(b->st.queue_len, 1);
	METRIC_ADD(b->st.queued, 1);
	return 0;
}

int
broker_redis_publish_msg(struct broker_redis *b, const char *channel, size_t clen,
                         const uint8_t *data, size_t len, uint64_t seq, unsigned redirects, int ask)
{
	/* Queued messages go first: a new one may only bypass an empty queue. */
	if (STAILQ_EMPTY(&b->queue) && broker_redis_pub_writable(b) &&
	    broker_redis_send(b, channel, clen, data, len, seq, redirects, ask) == 0)
		return 0;
	if (ask) /* ASKING must come right before it: the caller holds it until it can */
		return -1;
	return broker_redis_enqueue(b, channel, clen, data, len, seq, redirects);
}

int
broker_redis_publish(struct broker *base, const char *channel, size_t clen, const uint8_t *data,
                     size_t len)
{
	return broker_redis_publish_msg((struct broker_redis *)base, channel, clen, data, len, 0, 0,
	                                0);
}

/* ---- the canary going out ---- */

/* arg is the canary's sequence number. */
static void
broker_redis_on_probe_reply(struct redis_link *l, const redisReply *reply, void *arg)
{
	struct broker_redis *b = l->owner;

	if (b->freeing)
		return;
	if (reply->type != REDIS_REPLY_INTEGER && reply->type != REDIS_REPLY_ERROR) {
		redis_link_fail(l, "PUBLISH answered with neither an integer nor an error");
		return;
	}
	if ((uint64_t)(uintptr_t)arg == b->probe_seq && b->probe_outstanding)
		b->probe_answered = 1;
}

void
broker_redis_probe_tick(evutil_socket_t fd, short what, void *arg)
{
	struct broker_redis *b = arg;
	uint64_t seq = b->probe_seq + 1;
	char payload[64];
	const char *argv[3] = {b->cmd_pub};
	size_t lens[3] = {strlen(b->cmd_pub)};
	int n;

	(void)fd, (void)what;
	/* Nothing to prove without both links; one canary at a time (the deadline judges it). */
	if (b->sub.state != REDIS_LINK_UP || b->pub.state != REDIS_LINK_UP || b->probe_outstanding)
		return;
	n = snprintf(payload, sizeof(payload), "%016llx:%llu", (unsigned long long)b->probe_nonce,
	             (unsigned long long)seq);
	/* Straight to the link, around the publish queue: it is a health check, not data. */
	argv[1] = b->probe_chan, lens[1] = b->probe_len;
	argv[2] = payload, lens[2] = (size_t)n;
	if (redis_link_command(&b->pub, 3, argv, lens, broker_redis_on_probe_reply,
	                       (void *)(uintptr_t)seq) != 0)
		return;
	b->probe_seq = seq;
	METRIC_SET(b->probe_outstanding, 1);
	b->probe_answered = 0;
	METRIC_SET(b->probe_sent_ms, redis_link_now_ms());
	redis_link_arm(b->probe_deadline, b->probe_timeout_ms);
}

/* The known silent failure: the sub link looks fine but nothing arrives. Rebuild it; when even
 * the PUBLISH went unanswered, the pub link (or the server) is stuck as well. */
void
broker_redis_probe_overdue(evutil_socket_t fd, short what, void *arg)
{
	struct broker_redis *b = arg;
	int answered = b->probe_answered;

	(void)fd, (void)what;
	if (!b->probe_outstanding)
		return;
	/* Liveness is progress, judged on Redis' side of the deadline, not on how late this loop
	 * ran. Bytes waiting unread on either link may hold the canary or the PUBLISH's answer:
	 * a loop busy with a storm of new sessions reaches this timer before that read (epoll
	 * returns a bounded batch of ready sockets), so read first and judge a moment later. */
	if (redis_link_unread(&b->sub) || (!answered && redis_link_unread(&b->pub))) {
		redis_link_arm(b->probe_deadline, REDIS_LINK_GRACE_MS);
		return;
	}
	/* The canary comes on the same socket behind whatever Redis sent before it. While a
	 * large reply is still streaming in (bytes of it arrived within the last probe_timeout),
	 * the link is alive: judge the canary a probe_timeout later. And a PUBLISH unanswered on
	 * a pub link that answered other commands since the canary went out is Redis being slow
	 * (it answers in order, and delivers the canary before answering it), not the silent
	 * failure. A link where nothing moves is still given up after probe_timeout. */
	if ((b->sub.partial_ms != 0 &&
	     redis_link_now_ms() - b->sub.partial_ms < b->probe_timeout_ms) ||
	    (!answered && b->pub.progress_ms > METRIC_GET(b->probe_sent_ms))) {
		METRIC_SET(b->probe_sent_ms, redis_link_now_ms()); /* ready() agrees */
		redis_link_arm(b->probe_deadline, b->probe_timeout_ms);
		return;
	}
	METRIC_SET(b->probe_outstanding, 0);
	METRIC_ADD(b->st.probes_lost, 1);
	log_warnx("redis sub link: canary not delivered within %llu ms; rebuilding",
	          (unsigned long long)b->probe_timeout_ms);
	redis_link_close(&b->sub, "canary lost");
	if (!answered)
		redis_link_close(&b->pub, "canary PUBLISH not answered within probe_timeout");
}
