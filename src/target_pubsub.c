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
#include "gateway.h"
#include "hub.h"
#include "log.h"
#include "route.h"
#include "target.h"
#include "worker.h"
#include "ws_frame.h"

#define PS_CHANNEL_MAX 256

struct ps_conn {
	struct hub_sub *subs;       /* route channels, then conn:<id> */
	size_t nsubs;
	size_t nwait;               /* subs[0..nwait): the template channels the 101 waits for */
	const char *protocol;       /* the subprotocol for a 101 sent later (the route's string) */
	uint64_t wait_since_ms;     /* TARGET_PENDING since (for the log) */
	unsigned pending : 1;       /* the 101 waits for a channel's subscription */
	char **channels;            /* full names (prefix included), parallel to subs */
	char *publish;              /* full publish channel, NULL when not allowed */
	struct hub_frame **q;       /* frames waiting while the client is slow (ring) */
	size_t qhead, qlen, qcap;
	size_t qbytes;
	uint64_t drops;
};

static struct hub *
ps_hub(struct conn *c)
{
	return c->w->hub;
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
	while (ps->qlen > 0) {
		hub_frame_unref(ps->q[ps->qhead]);
		ps->qhead = (ps->qhead + 1) % ps->qcap;
		ps->qlen--;
	}
	free(ps->q);
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
	ps->protocol = conn_pick_protocol(c->route, req);
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
	if (ps->subs == NULL || ps->channels == NULL)
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
	/* The connection's own channel, for direct messages from application services: in the
	 * reserved namespace, which no template expands into, under an unguessable id. */
	if (gateway_conn_public_id(c, id, sizeof(id)) == NULL)
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
	}
	return ps_join(c, ps, req);
}

static int
ps_open(struct conn *c)
{
	char msg[128], id[64];

	if (c->route->announce_id) {
		int n = snprintf(msg, sizeof(msg), "{\"type\":\"welcome\",\"id\":\"%s\"}",
		    gateway_conn_public_id(c, id, sizeof(id)));
		(void)conn_send(c, WS_OP_TEXT, (const uint8_t *)msg, (size_t)n);
	}
	return 0;
}

static void
ps_close(struct conn *c)
{
	struct ps_conn *ps = c->tdata;

	if (ps == NULL)
		return;
	for (size_t i = 0; i < ps->nsubs; i++)
		hub_unsubscribe(ps_hub(c), &ps->subs[i]);
	if (ps->drops > 0)
		conn_log(c, LOG_LVL_INFO, "slow consumer: %llu message(s) dropped in all",
		    (unsigned long long)ps->drops);
	ps_free(ps);
	c->tdata = NULL;
}

/* JSON string body of s (escaped, without quotes) into out; returns the length. out must hold
 * 6 * n bytes. The payload is valid UTF-8 (a text message), so only ASCII needs escaping. */
static size_t
ps_json_escape(const uint8_t *s, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t ch = s[i];
		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch < 0x20) {
			out[o++] = '\\';
			out[o++] = 'u';
			out[o++] = '0';
			out[o++] = '0';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		} else {
			out[o++] = (char)ch;
		}
	}
	return o;
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

	if ((p = worker_scratch(c->w, need)) == NULL)
		return NULL;
	o = (size_t)snprintf(p, need, "{\"conn\":\"%s\",\"route\":\"",
	    gateway_conn_public_id(c, id, sizeof(id)));
	o += ps_json_escape((const uint8_t *)c->route->path, strlen(c->route->path), p + o);
	o += (size_t)snprintf(p + o, need - o, "\",\"channel\":\"%s\",\"type\":\"%s\",\"data\":\"",
	    ps->publish, opcode == WS_OP_TEXT ? "text" : "binary");
	if (opcode == WS_OP_TEXT)
		o += ps_json_escape(data, len, p + o);
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
		METRIC_ADD(c->w->stats.publish_denied, 1);
		conn_log(c, LOG_LVL_INFO, "client publish refused: %s", c->route->server_only
		    ? "server_only route" : "route has no publish template");
		conn_send_close(c, WS_CLOSE_POLICY, c->route->server_only
		    ? "server-only channel: clients cannot publish"
		    : "publishing is not allowed on this route");
		return;
	}
	if (c->route->envelope == ENVELOPE_JSON &&
	    (msg = ps_envelope(c, opcode, data, len, &mlen)) == NULL) {
		conn_send_close(c, WS_CLOSE_INTERNAL, "out of memory");
		return;
	}
	if (b->ops->publish(b, ps->publish, strlen(ps->publish), msg, mlen) < 0) {
		/* Never a silent drop: the client learns its message was not taken. */
		conn_log(c, LOG_LVL_WARN, "publish to %s refused by the %s broker", ps->publish,
		    b->ops->name);
		METRIC_ADD(c->w->stats.publish_refused, 1);
		conn_send_close(c, WS_CLOSE_TRY_AGAIN, "message broker unavailable, try again later");
	}
}

static void
ps_drop_counted(struct conn *c, struct ps_conn *ps)
{
	METRIC_ADD(c->w->stats.slow_dropped[c->route->slow_consumer == SLOW_DROP_OLDEST ? 0 : 1], 1);
	if (ps->drops++ == 0)
		conn_log(c, LOG_LVL_WARN, "slow consumer: dropping messages (%s, max_queue %llu)",
		    c->route->slow_consumer == SLOW_DROP_OLDEST ? "drop_oldest" : "drop_newest",
		    (unsigned long long)c->route->max_queue);
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
 * subscribers of a 16 MiB message cost 16 MiB, not 320. */
static void
ps_write(struct conn *c, struct hub_frame *f)
{
	hub_frame_ref(f);
	if (conn_send_shared(c, f->data, f->len, ps_frame_release, f) < 0)
		hub_frame_unref(f);
}

/* Moves queued frames to the socket while it keeps up. */
static void
ps_pump(struct conn *c)
{
	struct ps_conn *ps = c->tdata;

	while (ps->qlen > 0 && conn_output_len(c) < ps_socket_share(c)) {
		struct hub_frame *f = ps_q_pop(ps);
		ps_write(c, f);
		hub_frame_unref(f);
	}
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
	if (c->state == CONN_OPEN && c->tdata != NULL)
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
	f = conn_deflate_hub_frame(c, f); /* compressed once per worker when negotiated */
	out = conn_output_len(c);
	max = c->route->max_queue;
	if (ps->qlen == 0 && out < ps_socket_share(c) && out + f->plen <= max) {
		ps_write(c, f);
		return;
	}
	if (out + ps->qbytes + f->plen > max) {
		switch (c->route->slow_consumer) {
		case SLOW_CLOSE:
			while (ps->qlen > 0)
				hub_frame_unref(ps_q_pop(ps));
			conn_log(c, LOG_LVL_WARN, "slow consumer: %zu bytes queued, a %zu-byte "
			    "message, max_queue %zu", out + ps->qbytes, f->plen, max);
			METRIC_ADD(c->w->stats.slow_closed, 1);
			conn_send_close(c, WS_CLOSE_POLICY, "slow consumer");
			return;
		case SLOW_DROP_NEWEST:
			ps_drop_counted(c, ps);
			return;
		case SLOW_DROP_OLDEST:
			while (ps->qlen > 0 && out + ps->qbytes + f->plen > max) {
				hub_frame_unref(ps_q_pop(ps));
				ps_drop_counted(c, ps);
			}
			/* The queue is empty and it still does not fit (the socket holds too much,
			 * or the message alone is larger than max_queue): it is the one dropped. */
			if (out + ps->qbytes + f->plen > max) {
				ps_drop_counted(c, ps);
				return;
			}
			break;
		}
	}
	if (ps_q_push(ps, f) < 0) {
		ps_drop_counted(c, ps);
		return;
	}
	conn_want_drained(c);
}

const struct target_ops target_pubsub_ops = {
	.name = "pubsub",
	.handshake = ps_handshake,
	.open = ps_open,
	.message = ps_message,
	.close = ps_close,
	.drained = ps_drained,
};
