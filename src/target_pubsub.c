/* target_pubsub.c - the pubsub route: at the handshake the channel templates are filled from
 * the URL and the connection joins its channels (and its own conn:<id>) in the worker's hub;
 * with Redis the 101 waits (TARGET_PENDING) until every template channel is live, so a message
 * published once the client is open reaches it. Client messages are published through the
 * broker; deliveries are written at once while the client keeps up and queued, up to
 * max_queue, with the route's slow-consumer policy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "broker.h"
#include "conn.h"
#include "conn_deflate.h"
#include "conn_deflate_hub.h"
#include "env.h"
#include "hash.h"
#include "history.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "pubsub_history.h"
#include "route.h"
#include "route_map.h"
#include "target.h"
#include "ws_frame.h"

#define PS_CHANNEL_MAX 256

struct ps_conn {
	struct hub_sub *subs; /* route channels, then conn:<id> */
	size_t nsubs;
	size_t nwait;           /* subs[0..nwait): the template channels the 101 waits for */
	const char *protocol;   /* the 101's subprotocol: the route's string, or since_proto */
	char *since_proto;      /* the client's "wsgate.since." token, echoed when the route
	                         * has no subprotocol it offered (browsers require one) */
	uint64_t wait_since_ms; /* TARGET_PENDING since (for the log) */
	unsigned pending : 1;   /* the 101 waits for a channel's subscription */
	char **channels;        /* full names (prefix included), parallel to subs */
	char *publish;          /* full publish channel, NULL when not allowed */
	const char *read_only;  /* the route's read_only template publish falls in, or NULL */
	struct hub_frame **q;   /* frames waiting while the client is slow (ring) */
	size_t qhead, qlen, qcap;
	size_t qbytes;
	uint64_t drops;
	struct ps_hist *hist; /* per channel, parallel to subs (history routes) */
	unsigned meta : 1;    /* raw route, wsgate.meta negotiated: positions shown */
	unsigned notices : 1; /* the client can be sent gap notices (pubsub_history.h) */
	unsigned replaying;   /* Redis replays in flight: live messages wait in q */
};

#define PS_META_PROTOCOL "wsgate.meta"

static struct hub *
ps_hub(struct conn *c)
{
	return c->env->hub;
}

/* "<prefix><name>" into out; -1 when it does not fit. */
static int
ps_channel_name(const struct conn *c, const char *name, char *out, size_t outsz)
{
	const char *prefix = c->cfg->redis.channel_prefix;
	int n = snprintf(out, outsz, "%s%s", prefix ? prefix : "", name);

	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

static void
ps_free(struct ps_conn *ps)
{
	if (ps == NULL)
		return;
	for (size_t i = 0; i < ps->nsubs; i++)
		free(ps->channels[i]);
	free(ps->since_proto);
	while (ps->qlen > 0) {
		hub_frame_unref(ps->q[ps->qhead]);
		ps->qhead = (ps->qhead + 1) % ps->qcap;
		ps->qlen--;
	}
	free(ps->q);
	free(ps->hist);
	free(ps->channels);
	free(ps->subs);
	free(ps->publish);
	free(ps);
}

static int
ps_add_channel(struct ps_conn *ps, const char *name)
{
	for (size_t i = 0; i < ps->nsubs; i++)
		if (strcmp(ps->channels[i], name) == 0)
			return 0; /* "subscribe = a, a" or a template that expands twice alike */
	if ((ps->channels[ps->nsubs] = strdup(name)) == NULL)
		return -1;
	ps->nsubs++;
	return 0;
}

/* 1 when a message published now on every template channel reaches this connection. */
static int
ps_all_live(const struct ps_conn *ps)
{
	for (size_t i = 0; i < ps->nwait; i++)
		if (!hub_sub_live(&ps->subs[i]))
			return 0;
	return 1;
}

/* Joins the hub at the handshake, so the process's SUBSCRIBE is under way while we decide.
 * The 101 goes now when every template channel is live (already subscribed in this process,
 * or the in-process bus); otherwise it waits for the confirmations (target_pubsub_live), within
 * handshake_timeout (conn.c then answers 408 and ps_close undoes this). With the Redis link down
 * no confirmation can come soon: the 101 goes at once, as it always did (what is published
 * during an outage is not delivered either way; see README, "Pub/sub"). */
static int
ps_join(struct conn *c, struct ps_conn *ps, const struct http_request *req)
{
	struct broker *b = hub_broker(ps_hub(c));

	for (size_t i = 0; i < ps->nsubs; i++) {
		if (hub_subscribe(ps_hub(c), &ps->subs[i], c, ps->channels[i],
		                  strlen(ps->channels[i])) < 0) {
			conn_log(c, LOG_LVL_WARN, "cannot subscribe to %s", ps->channels[i]);
			return 500;
		}
	}
	if (ps_all_live(ps) || b == NULL || b->ops->ready == NULL || !b->ops->ready(b))
		return TARGET_ACCEPT;
	ps->pending = 1;
	ps->wait_since_ms = conn_now_ms();
	return TARGET_PENDING;
}

/* A channel of c became live: when it was the last one c waited for, the 101 goes. The
 * connection may have moved on meanwhile (it closed: its subscriptions are gone and this is
 * not called; the handshake timed out: ps_close ran). */
void
target_pubsub_live(struct conn *c)
{
	struct ps_conn *ps = c->tdata;

	if (c->state != CONN_HANDSHAKE || c->target != &target_pubsub_ops || ps == NULL ||
	    !ps->pending || !ps_all_live(ps))
		return;
	ps->pending = 0;
	conn_log(c, LOG_LVL_DEBUG, "channels subscribed after %llu ms",
	         (unsigned long long)(conn_now_ms() - ps->wait_since_ms));
	conn_upgrade_finish(c, ps->protocol, NULL);
}

/* Fills the channel templates from the request; an HTTP status when they cannot be. */
static int
ps_handshake(struct conn *c, const struct http_request *req, const struct route_match *m)
{
	const struct config_route *r = m->route;
	char exp[PS_CHANNEL_MAX], full[PS_CHANNEL_MAX], id[64];
	struct ps_conn *ps;
	int n;

	if ((ps = calloc(1, sizeof(*ps))) == NULL)
		return 500;
	c->tdata = ps;
	ps->subs = calloc(r->nsubscribe + 1, sizeof(*ps->subs));
	ps->channels = calloc(r->nsubscribe + 1, sizeof(*ps->channels));
	ps->hist = calloc(r->nsubscribe + 1, sizeof(*ps->hist));
	if (ps->subs == NULL || ps->channels == NULL || ps->hist == NULL)
		return 500;
	for (size_t i = 0; i < r->nsubscribe; i++) {
		if ((n = route_expand(r->subscribe[i], m, exp, sizeof(exp))) < 0 ||
		    ps_channel_name(c, exp, full, sizeof(full)) < 0) {
			conn_log(c, LOG_LVL_INFO, "channel template %s cannot be filled (%d)",
			         r->subscribe[i], n);
			return 400;
		}
		if (ps_add_channel(ps, full) < 0)
			return 500;
	}
	/* Only the route's channels are waited for: conn:<id> is new for every connection (a wait
	 * would cost every handshake a Redis round trip) and nobody knows the id before open. */
	ps->nwait = ps->nsubs;
	if ((n = pubsub_history_handshake(c, req, ps->channels, ps->nwait, ps->hist)) != 0)
		return n;
	ps->protocol = conn_pick_protocol(r, req);
	ps->meta = r->envelope == ENVELOPE_RAW && ps->protocol != NULL &&
	           strcmp(ps->protocol, PS_META_PROTOCOL) == 0;
	if (ps->protocol == NULL && r->history_size > 0)
		ps->protocol = ps->since_proto = pubsub_history_protocol(req);
	ps->notices = pubsub_history_notices(c, ps->meta, ps->hist, ps->nwait) != 0;
	/* The connection's own channel, for direct messages from application services: in the
	 * reserved namespace, which no template expands into, under an unguessable id. */
	if (conn_public_id(c, id, sizeof(id)) == NULL)
		return 500;
	snprintf(exp, sizeof(exp), ROUTE_RESERVED_PREFIX "conn:%s", id);
	if (ps_channel_name(c, exp, full, sizeof(full)) < 0 || ps_add_channel(ps, full) < 0)
		return 500;
	if (r->publish != NULL) {
		if ((n = route_expand(r->publish, m, exp, sizeof(exp))) < 0 ||
		    ps_channel_name(c, exp, full, sizeof(full)) < 0) {
			conn_log(c, LOG_LVL_INFO, "publish template %s cannot be filled (%d)",
			         r->publish, n);
			return 400;
		}
		if ((ps->publish = strdup(full)) == NULL)
			return 500;
		/* Decided once: the channel cannot change, every message is refused alike. */
		ps->read_only = route_map_read_only(r, exp, (size_t)n);
	}
	n = ps_join(c, ps, req);
	for (size_t i = 0; i < ps->nwait; i++)
		ps->subs[i].meta = ps->meta && ps->hist[i].history;
	return n;
}

static int
ps_open(struct conn *c)
{
	struct ps_conn *ps = c->tdata;
	char msg[128], id[64];

	if (c->route->announce_id) {
		int n = snprintf(msg, sizeof(msg), "{\"type\":\"welcome\",\"id\":\"%s\"}",
		                 conn_public_id(c, id, sizeof(id)));
		(void)conn_send(c, WS_OP_TEXT, (const uint8_t *)msg, (size_t)n);
	}
	pubsub_history_open(c, ps->subs, ps->channels, ps->nwait, ps->hist);
	return 0;
}

static void
ps_close(struct conn *c)
{
	struct ps_conn *ps = c->tdata;

	if (ps == NULL)
		return;
	pubsub_history_close(ps->hist, ps->nwait);
	for (size_t i = 0; i < ps->nsubs; i++)
		hub_unsubscribe(ps_hub(c), &ps->subs[i]);
	if (ps->drops > 0)
		conn_log(c, LOG_LVL_INFO, "slow consumer: %llu message(s) dropped in all",
		         (unsigned long long)ps->drops);
	ps_free(ps);
	c->tdata = NULL;
}

/* {"conn":..,"route":..,"channel":..,"type":"text"|"binary","data":..} for application
 * services; binary data is base64. Built in the worker's scratch buffer. */
static const uint8_t *
ps_envelope(struct conn *c, unsigned opcode, const uint8_t *data, size_t len, size_t *outlen)
{
	struct ps_conn *ps = c->tdata;
	char id[64];
	size_t need = 256 + strlen(c->route->path) * 6 + strlen(ps->publish) + 6 * len + 8, o;
	char *p;

	if ((p = c->env->scratch(c->env->arg, need)) == NULL)
		return NULL;
	o = (size_t)snprintf(p, need, "{\"conn\":\"%s\",\"route\":\"",
	                     conn_public_id(c, id, sizeof(id)));
	o += history_json_escape((const uint8_t *)c->route->path, strlen(c->route->path), p + o);
	o += (size_t)snprintf(p + o, need - o, "\",\"channel\":\"%s\",\"type\":\"%s\",\"data\":\"",
	                      ps->publish, opcode == WS_OP_TEXT ? "text" : "binary");
	if (opcode == WS_OP_TEXT)
		o += history_json_escape(data, len, p + o);
	else
		o += (size_t)EVP_EncodeBlock((unsigned char *)p + o, data, (int)len);
	o += (size_t)snprintf(p + o, need - o, "\"}");
	*outlen = o;
	return (const uint8_t *)p;
}

static void
ps_message(struct conn *c, unsigned opcode, const uint8_t *data, size_t len)
{
	struct ps_conn *ps = c->tdata;
	struct broker *b = hub_broker(ps_hub(c));
	const uint8_t *msg = data;
	size_t mlen = len;

	if (ps->publish == NULL) {
		/* Read-only or server_only: the client learns it, and it is counted. */
		METRIC_ADD(c->env->stats->publish_denied, 1);
		conn_log(c, LOG_LVL_INFO, "client publish refused: %s",
		         c->route->server_only ? "server_only route"
		                               : "route has no publish template");
		conn_send_close(c, WS_CLOSE_POLICY,
		                c->route->server_only
		                    ? "server-only channel: clients cannot publish"
		                    : "publishing is not allowed on this route");
		return;
	}
	if (ps->read_only != NULL) {
		/* The client named a channel its route keeps server-push only (read_only). */
		METRIC_ADD(c->env->stats->publish_denied, 1);
		conn_log(c, LOG_LVL_INFO, "client publish to %s refused: read_only %s", ps->publish,
		         ps->read_only);
		conn_send_close(c, WS_CLOSE_POLICY, "read-only channel: clients cannot publish");
		return;
	}
	if (c->route->envelope == ENVELOPE_JSON &&
	    (msg = ps_envelope(c, opcode, data, len, &mlen)) == NULL) {
		conn_send_close(c, WS_CLOSE_INTERNAL, "out of memory");
		return;
	}
	/* A raw payload that starts like a position header would be taken for one by every
	 * receiving hub (a client forging positions): it goes escaped, and arrives unchanged. */
	if (history_wire_needs_escape(msg, mlen)) {
		uint8_t *e;

		if ((e = (uint8_t *)c->env->scratch(c->env->arg,
		                                    mlen + HISTORY_WIRE_MAGIC_LEN + 2)) == NULL) {
			conn_send_close(c, WS_CLOSE_INTERNAL, "out of memory");
			return;
		}
		memcpy(e, HISTORY_WIRE_MAGIC "r\n", HISTORY_WIRE_MAGIC_LEN + 2);
		memcpy(e + HISTORY_WIRE_MAGIC_LEN + 2, msg, mlen);
		msg = e;
		mlen += HISTORY_WIRE_MAGIC_LEN + 2;
	}
	if (b->ops->publish(b, ps->publish, strlen(ps->publish), msg, mlen) < 0) {
		/* Never a silent drop: the client learns its message was not taken. */
		conn_log(c, LOG_LVL_WARN, "publish to %s refused by the %s broker", ps->publish,
		         b->ops->name);
		METRIC_ADD(c->env->stats->publish_refused, 1);
		conn_send_close_retry(c, WS_CLOSE_TRY_AGAIN);
	}
}

/* The channel index of a positioned frame, or -1. */
static int
ps_frame_chan(const struct ps_conn *ps, const struct hub_frame *f)
{
	if (f->pos.off == 0 || f->ch == NULL)
		return -1;
	for (size_t i = 0; i < ps->nwait; i++)
		if (ps->subs[i].ch == f->ch)
			return ps->hist[i].history ? (int)i : -1;
	return -1;
}

/* The gap notice for channel i's unreported drops, as a frame (NULL when none or no memory). */
static struct hub_frame *
ps_gap_frame(struct conn *c, struct ps_conn *ps, size_t i)
{
	struct ps_hist *h = &ps->hist[i];
	const char *prefix = c->cfg->redis.channel_prefix, *name = ps->channels[i];
	size_t pl = prefix != NULL ? strlen(prefix) : 0, n;
	struct hub_frame *f;
	char *buf;

	if (h->drop.off == 0)
		return NULL;
	if (pl > 0 && strncmp(name, prefix, pl) == 0)
		name += pl;
	if ((buf = c->env->scratch(c->env->arg, HISTORY_JSON_GAP_MAX(strlen(name)))) == NULL)
		return NULL;
	n = history_json_gap(buf, name, strlen(name), h->drop.epoch, h->drop.off, h->drop_to,
	                     HISTORY_GAP_DROPPED);
	conn_log(c, LOG_LVL_INFO, "gap notice: %s %s:%llu..%llu dropped", name, h->drop.epoch,
	         (unsigned long long)h->drop.off, (unsigned long long)h->drop_to);
	h->drop.off = 0;
	h->drop_at_head = 0;
	f = hub_frame_text((const uint8_t *)buf, n);
	return f;
}

static void ps_write(struct conn *c, struct hub_frame *f);

/* Sends every unreported drop notice now (nothing older is still queued). */
static void
ps_flush_gaps(struct conn *c, struct ps_conn *ps)
{
	for (size_t i = 0; i < ps->nwait; i++) {
		struct hub_frame *g = ps_gap_frame(c, ps, i);
		if (g != NULL) {
			ps_write(c, g);
			hub_frame_unref(g);
		}
	}
}

/* A positioned message was dropped: remembered, so the client is told before the next
 * message of its channel (or once its queue is empty). */
static void
ps_drop_note(struct conn *c, struct ps_conn *ps, const struct hub_frame *f)
{
	int i = ps_frame_chan(ps, f);
	struct ps_hist *h;

	if (i < 0 || !ps->notices)
		return;
	h = &ps->hist[i];
	if (h->drop.off != 0 &&
	    (strcmp(h->drop.epoch, f->pos.epoch) != 0 || f->pos.off != h->drop_to + 1)) {
		/* Not contiguous: the earlier range cannot wait for a later message. */
		ps_flush_gaps(c, ps);
	}
	if (h->drop.off == 0) {
		h->drop = f->pos;
		h->drop_to = f->pos.off;
	} else {
		h->drop_to = f->pos.off;
	}
	conn_want_drained(c);
}

static void
ps_drop_counted(struct conn *c, struct ps_conn *ps, const struct hub_frame *f)
{
	ps_drop_note(c, ps, f);
	static const char *const names[] = {"close", "drop_oldest", "drop_newest", "conflate"};
	enum slow_policy p = c->route->slow_consumer;

	METRIC_ADD(c->env->stats->slow_dropped[p == SLOW_DROP_NEWEST ? 1 : 0], 1);
	if (ps->drops++ == 0)
		conn_log(c, LOG_LVL_WARN, "slow consumer: dropping messages (%s, max_queue %llu)",
		         names[p], (unsigned long long)c->route->max_queue);
}

static struct hub_frame *
ps_q_pop(struct ps_conn *ps)
{
	struct hub_frame *f = ps->q[ps->qhead];

	ps->qhead = (ps->qhead + 1) % ps->qcap;
	ps->qlen--;
	ps->qbytes -= f->len;
	return f;
}

static int
ps_q_push(struct ps_conn *ps, struct hub_frame *f)
{
	if (ps->qlen == ps->qcap) {
		size_t ncap = ps->qcap ? ps->qcap * 2 : 16;
		struct hub_frame **nq = malloc(ncap * sizeof(*nq));
		if (nq == NULL)
			return -1;
		for (size_t i = 0; i < ps->qlen; i++)
			nq[i] = ps->q[(ps->qhead + i) % ps->qcap];
		free(ps->q);
		ps->q = nq;
		ps->qhead = 0;
		ps->qcap = ncap;
	}
	ps->q[(ps->qhead + ps->qlen) % ps->qcap] = f;
	ps->qlen++;
	ps->qbytes += f->len;
	hub_frame_ref(f);
	return 0;
}

/* drop_oldest took messages from the head: their notices belong before everything queued,
 * and are sent when the queue moves again (further drops from the head extend them). */
static void
ps_gaps_at_head(struct ps_conn *ps)
{
	for (size_t i = 0; i < ps->nwait; i++)
		if (ps->hist[i].drop.off != 0)
			ps->hist[i].drop_at_head = 1;
}

/* The notices of drops from the head, before the queue moves. */
static void
ps_flush_head_gaps(struct conn *c, struct ps_conn *ps)
{
	for (size_t i = 0; i < ps->nwait; i++) {
		struct hub_frame *g;
		if (!ps->hist[i].drop_at_head || (g = ps_gap_frame(c, ps, i)) == NULL)
			continue;
		ps_write(c, g);
		hub_frame_unref(g);
	}
}

/* conflate: the key of a message (its channel, or a top-level JSON field as well); 0 when it
 * has none (such a message is never replaced). */
static uint64_t
ps_conflate_key(const struct conn *c, const struct hub_frame *f)
{
	const char *k = c->route->conflate_key;
	uint64_t ch = hash_siphash((const char *)&f->ch, sizeof(f->ch));
	const uint8_t *v;
	size_t vl;

	if (f->notice)
		return 0;
	if (k == NULL || strncmp(k, "json:", 5) != 0)
		return ch | 1;
	if (!history_json_field(f->data + f->raw_off, f->raw_len, k + 5, &v, &vl))
		return 0;
	return (hash_siphash((const char *)v, vl) ^ ch) | 1;
}

/* conflate: a queued message with f's key leaves the queue (f, newer, is queued after). 1 when
 * one did. The replaced message's position is superseded, not lost: no notice. */
static int
ps_conflate(struct conn *c, struct ps_conn *ps, const struct hub_frame *f)
{
	uint64_t key = ps_conflate_key(c, f);
	size_t n = ps->qlen, found = 0;

	if (key == 0)
		return 0;
	for (size_t k = 0; k < n; k++) {
		struct hub_frame *q = ps_q_pop(ps);

		if (!found && q->ch == f->ch && ps_conflate_key(c, q) == key) {
			found = 1;
			METRIC_ADD(c->env->stats->slow_dropped[0], 1);
		} else if (ps_q_push(ps, q) < 0) {
			ps_drop_counted(c, ps, q);
		}
		hub_frame_unref(q);
	}
	return (int)found;
}

/* drop_oldest: the head goes. A gap notice is not dropped but written: everything older than
 * it has left the queue, so the socket is its place in the order. */
static void
ps_drop_head(struct conn *c, struct ps_conn *ps)
{
	struct hub_frame *f = ps_q_pop(ps);

	if (f->notice) {
		ps_flush_head_gaps(c, ps); /* what went from the head before it */
		ps_write(c, f);
	} else
		ps_drop_counted(c, ps, f);
	hub_frame_unref(f);
}

/* How much of max_queue may sit in the socket's buffer (where frames can no longer be
 * dropped whole); the rest is our queue, where drop_oldest can make room. */
static size_t
ps_socket_share(const struct conn *c)
{
	size_t half = c->route->max_queue / 2;

	return half < CONN_OUT_LOW ? half : CONN_OUT_LOW;
}

/* The socket's buffer lets go of a frame it held by reference. */
static void
ps_frame_release(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	hub_frame_unref(arg);
}

/* Hands f to the socket without copying it: the output buffer holds a reference, so twenty
 * subscribers of a 16 MiB message cost 16 MiB, not 320 (a frame of at most
 * CONN_SHARED_COPY_MAX bytes is copied: cheaper than a reference of its own). */
static void
ps_write(struct conn *c, struct hub_frame *f)
{
	struct ps_conn *ps = c->tdata;
	int i = ps_frame_chan(ps, f);

	if (i >= 0)
		ps->hist[i].last = f->pos;
	/* Compressed once per worker when negotiated, as it goes out: the queue holds the plain
	 * frame, whose position, channel and raw bytes the slow-consumer policies read. */
	f = conn_deflate_hub_frame(c, f);
	hub_frame_ref(f);
	if (conn_send_shared(c, f->data, f->len, ps_frame_release, f) < 0)
		hub_frame_unref(f);
}

/* Moves queued frames to the socket while it keeps up. */
static void
ps_pump(struct conn *c)
{
	struct ps_conn *ps = c->tdata;

	if (ps->qlen > 0 && conn_output_len(c) < ps_socket_share(c))
		ps_flush_head_gaps(c, ps);
	while (ps->qlen > 0 && conn_output_len(c) < ps_socket_share(c)) {
		struct hub_frame *f = ps_q_pop(ps);
		ps_write(c, f);
		hub_frame_unref(f);
	}
	if (ps->qlen == 0)
		ps_flush_gaps(c, ps);
	if (ps->qlen > 0)
		conn_want_drained(c);
	else if (ps->qcap > 64) {
		free(ps->q); /* a burst is over: give the memory back */
		ps->q = NULL;
		ps->qcap = ps->qhead = 0;
	}
}

static void
ps_drained(struct conn *c)
{
	struct ps_conn *ps = c->tdata;

	if (c->state == CONN_OPEN && ps != NULL && !ps->replaying)
		ps_pump(c);
}

void
target_pubsub_gap(struct conn *c, const struct hub_sub *s, const char *epoch, uint64_t from,
                  uint64_t to, enum history_gap reason)
{
	struct ps_conn *ps = c->tdata;
	const char *prefix = c->cfg->redis.channel_prefix, *name;
	size_t pl = prefix != NULL ? strlen(prefix) : 0, n, i;
	struct hub_frame *g;
	char *buf;

	if (c->state != CONN_OPEN || c->target != &target_pubsub_ops || ps == NULL ||
	    !ps->notices || s < ps->subs || s >= ps->subs + ps->nwait)
		return;
	i = (size_t)(s - ps->subs);
	name = ps->channels[i];
	if (pl > 0 && strncmp(name, prefix, pl) == 0)
		name += pl;
	if ((buf = c->env->scratch(c->env->arg, HISTORY_JSON_GAP_MAX(strlen(name)))) == NULL)
		return;
	n = history_json_gap(buf, name, strlen(name), epoch, from, to, reason);
	conn_log(c, LOG_LVL_INFO, "gap notice: %s %s:%llu..%llu (%s)", name, epoch,
	         (unsigned long long)from, (unsigned long long)to, history_gap_name(reason));
	if ((g = hub_frame_text((const uint8_t *)buf, n)) == NULL)
		return;
	/* Before the message that revealed it: behind what is queued, or now. */
	if ((ps->qlen == 0 && !ps->replaying) || ps_q_push(ps, g) < 0)
		ps_write(c, g);
	hub_frame_unref(g);
}

void
target_pubsub_replaying(struct conn *c)
{
	struct ps_conn *ps = c->tdata;

	if (ps != NULL)
		ps->replaying++;
}

void
target_pubsub_replayed(struct conn *c, const char *epoch, uint64_t upto, const struct hub_sub *s)
{
	struct ps_conn *ps = c->tdata;
	size_t n, kept = 0;

	if (ps == NULL || ps->replaying == 0)
		return;
	/* Live messages the replay sent already leave the queue (same order otherwise). */
	n = ps->qlen;
	for (size_t k = 0; k < n; k++) {
		struct hub_frame *f = ps_q_pop(ps);

		if (f->ch == s->ch && f->pos.off != 0 && f->pos.off <= upto &&
		    strcmp(f->pos.epoch, epoch) == 0) {
			hub_frame_unref(f);
			continue;
		}
		if (ps_q_push(ps, f) < 0)
			ps_drop_counted(c, ps, f);
		hub_frame_unref(f);
		kept++;
	}
	(void)kept;
	if (--ps->replaying == 0 && c->state == CONN_OPEN)
		ps_pump(c);
}

/* The hub's delivery to one subscriber. max_queue bounds what this connection may hold, the
 * socket's buffer included, for every message, the first too: a message that would take it past
 * max_queue (or that is larger than max_queue on its own) goes through the slow-consumer policy
 * and never into memory on this connection's account. */
void
target_pubsub_deliver(struct conn *c, struct hub_frame *f)
{
	struct ps_conn *ps = c->tdata;
	size_t out, max;

	if (c->state != CONN_OPEN || ps == NULL)
		return;
	out = conn_output_len(c);
	max = c->route->max_queue;
	if (ps->qlen == 0 && !ps->replaying && out < ps_socket_share(c) && out + f->plen <= max) {
		int i = ps_frame_chan(ps, f);
		struct hub_frame *g = i >= 0 ? ps_gap_frame(c, ps, (size_t)i) : NULL;

		if (g != NULL) { /* what was dropped before this message, first */
			ps_write(c, g);
			hub_frame_unref(g);
		}
		ps_write(c, f);
		return;
	}
	if (out + ps->qbytes + f->plen > max) {
		switch (c->route->slow_consumer) {
		case SLOW_CLOSE:
			while (ps->qlen > 0)
				hub_frame_unref(ps_q_pop(ps));
			conn_log(c, LOG_LVL_WARN,
			         "slow consumer: %zu bytes queued, a %zu-byte "
			         "message, max_queue %zu",
			         out + ps->qbytes, f->plen, max);
			METRIC_ADD(c->env->stats->slow_closed, 1);
			conn_send_close(c, WS_CLOSE_POLICY, "slow consumer");
			return;
		case SLOW_DROP_NEWEST:
			ps_drop_counted(c, ps, f);
			return;
		case SLOW_CONFLATE:
			/* The same key's older message gives its place; without one, or still
			 * too full, the oldest go as with drop_oldest. */
			(void)ps_conflate(c, ps, f);
			/* FALLTHROUGH */
		case SLOW_DROP_OLDEST:
			while (ps->qlen > 0 && out + ps->qbytes + f->plen > max)
				ps_drop_head(c, ps);
			/* What went from the head is older than what stays queued. */
			if (ps->qlen > 0)
				ps_gaps_at_head(ps);
			/* The queue is empty and it still does not fit (the socket holds too much,
			 * or the message alone is larger than max_queue): it is the one dropped. */
			if (out + ps->qbytes + f->plen > max) {
				ps_drop_counted(c, ps, f);
				return;
			}
			break;
		}
	}
	/* The drops reported before this message of their channel (those at the head are sent
	 * when the queue moves). */
	{
		int i = ps_frame_chan(ps, f);
		struct hub_frame *g =
		    i >= 0 && !ps->hist[i].drop_at_head ? ps_gap_frame(c, ps, (size_t)i) : NULL;

		if (g != NULL) {
			if (ps_q_push(ps, g) < 0)
				ps_write(c, g);
			hub_frame_unref(g);
		}
	}
	if (ps_q_push(ps, f) < 0) {
		ps_drop_counted(c, ps, f);
		return;
	}
	conn_want_drained(c);
}

const char *
target_pubsub_close_reason(struct conn *c, const char *reason, char *buf, size_t bufsz)
{
	struct ps_conn *ps = c->tdata;

	if (c->target != &target_pubsub_ops || ps == NULL || ps->hist == NULL)
		return reason;
	return pubsub_history_close_reason(c, ps->channels, ps->nwait, ps->hist, reason, buf,
	                                   bufsz);
}

static const char *
ps_protocol(struct conn *c)
{
	struct ps_conn *ps = c->tdata;

	return ps != NULL ? ps->protocol : NULL;
}

const struct target_ops target_pubsub_ops = {
    .name = "pubsub",
    .handshake = ps_handshake,
    .protocol = ps_protocol,
    .open = ps_open,
    .message = ps_message,
    .close = ps_close,
    .drained = ps_drained,
};
