/* pubsub_history.c - history as a pubsub connection sees it: since= parsed at the handshake,
 * the replay from the in-process store at open (a gap notice first when part of the range is
 * gone), notices, and the resume position a closing connection hands its client. */
#include "pubsub_history.h"

#include <stdio.h>
#include <string.h>

#include "conn.h"
#include "gateway.h"
#include "history_store.h"
#include "http.h"
#include "hub.h"
#include "route.h"
#include "worker.h"
#include "ws_frame.h"

/* The channel as clients name it: without the channel_prefix. */
static const char *
ph_client_name(const struct conn *c, const char *channel)
{
	const char *prefix = c->cfg->redis.channel_prefix;
	size_t pl = prefix != NULL ? strlen(prefix) : 0;

	return pl > 0 && strncmp(channel, prefix, pl) == 0 ? channel + pl : channel;
}

int
pubsub_history_handshake(struct conn *c, const struct http_request *req, char **channels,
    size_t n, struct ps_hist *h)
{
	const struct config_route *r = c->route;
	struct history_store *st = c->w->gw->history;
	const char *since = NULL;
	size_t slen = 0;
	int rc;

	if (r->history_size == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		h[i].history = 1;
		if (st != NULL && history_store_enable(st, channels[i], strlen(channels[i]),
		    (size_t)r->history_size, r->history_ttl_ms) < 0) {
			conn_log(c, LOG_LVL_WARN, "no history for %s (out of memory, or more than "
			    "%d channels keep one)", channels[i], HISTORY_STORE_MAX_CHANNELS);
			h[i].history = 0;
		}
	}
	if (req->query.n == 0 ||
	    !route_query_get(req->query.p, req->query.n, "since", 5, &since, &slen))
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
			conn_log(c, LOG_LVL_INFO, "malformed since= parameter");
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

	if ((buf = worker_scratch(c->w, HISTORY_JSON_GAP_MAX(clen))) == NULL)
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

void
pubsub_history_open(struct conn *c, struct hub_sub *subs, char **channels, size_t n,
    struct ps_hist *h)
{
	struct history_store *st = c->w->gw->history;

	for (size_t i = 0; i < n && c->state == CONN_OPEN; i++) {
		struct ph_replay rp = { c, &subs[i], &h[i], 0 };
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
			if (h[i].last.off == 0)
				h[i].last = h[i].has_since && strcmp(cur.epoch, h[i].since.epoch) == 0 &&
				    h[i].since.off < cur.off ? h[i].since : cur;
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
		if ((msg = worker_scratch(c->w, need)) == NULL)
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
