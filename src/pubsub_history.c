/* pubsub_history.c - history as a pubsub connection sees it: since= parsed at the handshake,
 * the replay from the in-process store at open (a gap notice first when part of the range is
 * gone), notices, and the resume position a closing connection hands its client. */
#include "pubsub_history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_redis.h"
#include "conn.h"
#include "env.h"
#include "history_store.h"
#include "http.h"
#include "hub.h"
#include "route.h"
#include "target.h"
#include "ws_frame.h"

#define PH_PAGE 512 /* messages per Redis range read: a reply stays far below max_reply */

/* The channel as clients name it: without the channel_prefix. */
static const char *
ph_client_name(const struct conn *c, const char *channel)
{
	const char *prefix = c->cfg->redis.channel_prefix;
	size_t pl = prefix != NULL ? strlen(prefix) : 0;

	return pl > 0 && strncmp(channel, prefix, pl) == 0 ? channel + pl : channel;
}

/* Where the client put its resume position, first found wins: the query's since=, the
 * Wsgate-Since header (clients that cannot change the URL), a "wsgate.since.<encoded>"
 * subprotocol (browsers, which can set neither). The value, or NULL when there is none. */
static const char *
ph_since_source(struct conn *c, const struct http_request *req, size_t *len)
{
	const char *v = NULL;

	if (req->query.n > 0 && route_query_get(req->query.p, req->query.n, "since", 5, &v, len))
		return v;
	if (req->since.n > 0) {
		*len = req->since.n;
		return req->since.p;
	}
	for (size_t i = 0; i < req->nprotocols; i++)
		if (history_since_protocol(req->protocols[i].p, req->protocols[i].n, &v, len)) {
			conn_log(c, LOG_LVL_DEBUG, "resume position from the subprotocol");
			return v;
		}
	return NULL;
}

char *
pubsub_history_protocol(const struct http_request *req)
{
	const char *v;
	size_t vlen;

	for (size_t i = 0; i < req->nprotocols; i++)
		if (history_since_protocol(req->protocols[i].p, req->protocols[i].n, &v, &vlen))
			return strndup(req->protocols[i].p, req->protocols[i].n);
	return NULL;
}

int
pubsub_history_handshake(struct conn *c, const struct http_request *req, char **channels, size_t n,
                         struct ps_hist *h)
{
	const struct config_route *r = c->route;
	struct history_store *st = c->env->history;
	const char *since = NULL;
	size_t slen = 0;
	int rc;

	if (r->history_size == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		h[i].history = 1;
		if (st != NULL &&
		    history_store_enable(st, channels[i], strlen(channels[i]),
		                         (size_t)r->history_size, r->history_ttl_ms) < 0) {
			conn_log(c, LOG_LVL_WARN,
			         "no history for %s (out of memory, or more than "
			         "%d channels keep one)",
			         channels[i], HISTORY_STORE_MAX_CHANNELS);
			h[i].history = 0;
		}
	}
	if ((since = ph_since_source(c, req, &slen)) == NULL)
		return 0;
	for (size_t i = 0; i < n; i++) {
		/* The single form "E:O" is for a route with one channel; with several, each is
		 * named ("chan@E:O,..."). */
		rc = history_since_find(since, slen, n == 1 ? NULL : ph_client_name(c, channels[i]),
		                        &h[i].since);
		if (rc < 0 && n == 1)
			rc = history_since_find(since, slen, ph_client_name(c, channels[i]),
			                        &h[i].since);
		if (rc < 0) {
			conn_log(c, LOG_LVL_INFO, "malformed resume position (since)");
			return 400;
		}
		h[i].has_since = rc == 1;
	}
	return 0;
}

void
pubsub_history_send_gap(struct conn *c, const char *channel, const char *epoch, uint64_t from,
                        uint64_t to, enum history_gap reason)
{
	const char *name = ph_client_name(c, channel);
	size_t clen = strlen(name), n;
	char *buf;

	if ((buf = c->env->scratch(c->env->arg, HISTORY_JSON_GAP_MAX(clen))) == NULL)
		return;
	n = history_json_gap(buf, name, clen, epoch, from, to, reason);
	conn_log(c, LOG_LVL_INFO, "gap notice: %s %s:%llu..%llu (%s)", name, epoch,
	         (unsigned long long)from, (unsigned long long)to, history_gap_name(reason));
	(void)conn_send(c, WS_OP_TEXT, (const uint8_t *)buf, n);
}

struct ph_replay {
	struct conn *c;
	const struct hub_sub *s;
	struct ps_hist *h;
	uint64_t sent;
};

static void
ph_frame_release(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	hub_frame_unref(arg);
}

/* One message of the replay: framed for this connection's route and handed to the socket
 * (the replay is bounded by the history's size, not by max_queue: it is what the client asked
 * for, once). */
static void
ph_replay_one(void *arg, const struct history_pos *pos, const uint8_t *data, size_t len)
{
	struct ph_replay *rp = arg;
	struct hub_frame *f;

	if (rp->c->state != CONN_OPEN)
		return;
	if ((f = hub_frame_for(rp->c, rp->s, pos, data, len)) == NULL) {
		conn_send_close(rp->c, WS_CLOSE_INTERNAL, "out of memory");
		return;
	}
	if (conn_send_shared(rp->c, f->data, f->len, ph_frame_release, f) < 0)
		hub_frame_unref(f);
	rp->h->last = *pos;
	rp->sent++;
}

static void ph_fetch_reply(void *arg, const redisReply *r);

/* Reads the next page of h's replay from Redis; -1 when it cannot be sent. */
static int
ph_fetch(struct ps_hist *h, uint64_t from, const char *epoch)
{
	struct conn *c = h->c;

	h->fetch = broker_redis_fetch(c->env->broker, h->channel, strlen(h->channel), from, PH_PAGE,
	                              epoch, ph_fetch_reply, h);
	return h->fetch != NULL ? 0 : -1;
}

/* The replay of h's channel is over: live delivery resumes after what it sent. */
static void
ph_replay_done(struct ps_hist *h, const char *epoch, uint64_t upto)
{
	h->fetch = NULL;
	h->sub->skip_to = upto;
	h->sub->skip_epoch = hub_epoch_tag(epoch);
	if (h->replayed > 0)
		conn_log(h->c, LOG_LVL_DEBUG, "replayed %llu message(s) of %s from Redis",
		         (unsigned long long)h->replayed, h->channel);
	target_pubsub_replayed(h->c, epoch, upto, h->sub);
}

/* One page of a Redis replay: the gap notice first (first page), the messages, then the next
 * page or the end. A failed read closes with 1013 and the position to come back with. */
static void
ph_fetch_reply(void *arg, const redisReply *r)
{
	struct ps_hist *h = arg;
	struct conn *c = h->c;
	struct ph_replay rp = {c, h->sub, h, 0};
	struct broker_redis_range rg;
	struct history_pos pos;
	int first_page = !h->paged;

	h->fetch = NULL;
	if (c->state != CONN_OPEN)
		return;
	if (r == NULL || r->type == REDIS_REPLY_ERROR ||
	    broker_redis_history_range_parse(r, &rg) < 0) {
		conn_log(c, LOG_LVL_WARN, "history of %s could not be read from Redis%s%.*s",
		         h->channel, r != NULL && r->type == REDIS_REPLY_ERROR ? ": " : "",
		         r != NULL && r->type == REDIS_REPLY_ERROR ? (int)r->len : 0,
		         r != NULL && r->type == REDIS_REPLY_ERROR ? r->str : "");
		conn_send_close(c, WS_CLOSE_TRY_AGAIN, "history unavailable, try again");
		return;
	}
	if (rg.epoch[0] == '\0') {
		/* No history in Redis at all (never published with one, or lost with a Redis
		 * that kept nothing): what followed since is gone. */
		pubsub_history_send_gap(c, h->channel, "", 1, 0, HISTORY_GAP_EPOCH_CHANGED);
		h->last.epoch[0] = '\0';
		h->last.off = 0;
		ph_replay_done(h, "", 0);
		return;
	}
	if (first_page) {
		struct history_plan pl;

		h->paged = 1;
		history_plan(rg.epoch, rg.first, rg.last, &h->since, &pl);
		if (pl.gap != HISTORY_GAP_NONE)
			pubsub_history_send_gap(c, h->channel, rg.epoch, pl.gap_from, pl.gap_to,
			                        pl.gap);
		if (strcmp(rg.epoch, h->since.epoch) != 0) {
			memcpy(h->last.epoch, rg.epoch, sizeof(h->last.epoch));
			h->last.off = 0;
		}
	}
	memcpy(pos.epoch, rg.epoch, sizeof(pos.epoch));
	for (size_t i = 0; i < rg.n && c->state == CONN_OPEN; i++) {
		const uint8_t *d;
		size_t l;

		broker_redis_history_range_get(&rg, i, &pos.off, &d, &l);
		if (pos.off <= h->last.off)
			continue;
		ph_replay_one(&rp, &pos, d, l);
	}
	h->replayed += rp.sent;
	if (c->state != CONN_OPEN)
		return;
	if (rg.n == PH_PAGE && h->last.off < rg.last) {
		if (ph_fetch(h, h->last.off + 1, rg.epoch) < 0)
			conn_send_close(c, WS_CLOSE_TRY_AGAIN, "history unavailable, try again");
		return;
	}
	ph_replay_done(h, rg.epoch, h->last.off);
}

/* With Redis: each channel with since= is read back from Redis; live messages wait in the
 * connection's queue meanwhile (target_pubsub_replaying). */
static void
ph_open_redis(struct conn *c, struct hub_sub *subs, char **channels, size_t n, struct ps_hist *h)
{
	for (size_t i = 0; i < n && c->state == CONN_OPEN; i++) {
		h[i].c = c;
		h[i].sub = &subs[i];
		h[i].channel = channels[i];
		if (!h[i].history || !h[i].has_since)
			continue;
		h[i].last = h[i].since;
		target_pubsub_replaying(c);
		if (ph_fetch(&h[i], h[i].since.off + 1, h[i].since.epoch) < 0) {
			conn_log(c, LOG_LVL_INFO,
			         "history of %s cannot be read now (Redis link "
			         "down)",
			         channels[i]);
			conn_send_close(c, WS_CLOSE_TRY_AGAIN, "history unavailable, try again");
			return;
		}
	}
}

void
pubsub_history_close(struct ps_hist *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		broker_redis_history_cancel(h[i].fetch);
		h[i].fetch = NULL;
	}
}

void
pubsub_history_open(struct conn *c, struct hub_sub *subs, char **channels, size_t n,
                    struct ps_hist *h)
{
	struct history_store *st = c->env->history;

	if (c->cfg->redis.enabled) {
		ph_open_redis(c, subs, channels, n, h);
		return;
	}
	for (size_t i = 0; i < n && c->state == CONN_OPEN; i++) {
		struct ph_replay rp = {c, &subs[i], &h[i], 0};
		struct history_chan *hc;
		struct history_plan pl;
		struct history_pos cur;

		if (!h[i].history || st == NULL)
			continue;
		/* Under the store's lock nobody appends: what the replay ends with (cur) is where
		 * live delivery takes over. Messages up to cur may still be on their way to this
		 * worker (its mailbox): the subscription skips them. */
		history_store_lock(st);
		if ((hc = history_store_find(st, channels[i], strlen(channels[i]))) != NULL) {
			history_chan_plan(hc, h[i].has_since ? &h[i].since : NULL, conn_now_ms(),
			                  &pl, &cur);
			if (pl.gap != HISTORY_GAP_NONE)
				pubsub_history_send_gap(c, channels[i], cur.epoch, pl.gap_from,
				                        pl.gap_to, pl.gap);
			history_chan_each(hc, pl.from, pl.to, ph_replay_one, &rp);
			subs[i].skip_to = cur.off;
			subs[i].skip_epoch = hub_epoch_tag(cur.epoch);
			if (h[i].last.off == 0)
				h[i].last = h[i].has_since &&
				                    strcmp(cur.epoch, h[i].since.epoch) == 0 &&
				                    h[i].since.off < cur.off
				                ? h[i].since
				                : cur;
		}
		history_store_unlock(st);
		if (rp.sent > 0)
			conn_log(c, LOG_LVL_DEBUG, "replayed %llu message(s) of %s",
			         (unsigned long long)rp.sent, channels[i]);
	}
}

int
pubsub_history_notices(const struct conn *c, int meta, const struct ps_hist *h, size_t n)
{
	if (c->route->envelope == ENVELOPE_JSON || meta)
		return 1;
	for (size_t i = 0; i < n; i++)
		if (h[i].has_since)
			return 1;
	return 0;
}

const char *
pubsub_history_close_reason(struct conn *c, char **channels, size_t n, const struct ps_hist *h,
                            const char *reason, char *buf, size_t bufsz)
{
	char pos[HISTORY_POS_MAX];
	size_t nh = 0, one = 0;
	int len;

	/* Channels whose position is known (an epoch: the history was reached at open; offset
	 * 0 is "before the first message", a valid place to resume from). */
	for (size_t i = 0; i < n; i++)
		if (h[i].history && h[i].last.epoch[0] != '\0') {
			nh++;
			one = i;
		}
	if (nh == 0)
		return reason;
	if (nh == 1 && n == 1) {
		history_pos_format(&h[one].last, pos, sizeof(pos));
		len = snprintf(buf, bufsz, "%s since=%s", reason, pos);
		/* The contract's 123 bytes: never cut a position in half. */
		return len > 0 && (size_t)len < bufsz && len <= 123 ? buf : reason;
	} else {
		char *msg;
		size_t need = 64, o;

		for (size_t i = 0; i < n; i++)
			need += 6 * strlen(channels[i]) + HISTORY_POS_MAX + 8;
		if ((msg = c->env->scratch(c->env->arg, need)) == NULL)
			return reason;
		o = (size_t)snprintf(msg, need, "{\"type\":\"resume\",\"since\":{");
		for (size_t i = 0, k = 0; i < n; i++) {
			const char *name;
			if (!h[i].history || h[i].last.epoch[0] == '\0')
				continue;
			name = ph_client_name(c, channels[i]);
			msg[o++] = k++ > 0 ? ',' : '"';
			if (k > 1)
				msg[o++] = '"';
			o += history_json_escape((const uint8_t *)name, strlen(name), msg + o);
			history_pos_format(&h[i].last, pos, sizeof(pos));
			o += (size_t)snprintf(msg + o, need - o, "\":\"%s\"", pos);
		}
		o += (size_t)snprintf(msg + o, need - o, "}}");
		(void)conn_send(c, WS_OP_TEXT, (const uint8_t *)msg, o);
		return reason;
	}
}
