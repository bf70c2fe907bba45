/* conn_deflate.c - permessage-deflate on a client connection (RFC 7692): negotiation under the
 * route's settings and the compression_memory budget, inflate on receive, compression on send
 * without context takeover so a broadcast is compressed once per worker. */
#include "conn_deflate.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "conn.h"
#include "http.h"
#include "metrics.h"
#include "env.h"
#include "ws_deflate.h"
#include "ws_deflate_ext.h"
#include "ws_frame.h"

/* What a connection's permessage-deflate holds while it works: a message being inflated (or
 * the client's kept context), a fragmented message being compressed. The terms themselves are
 * bits of struct conn, so an idle connection has none of this. */
struct conn_pmd {
	struct ws_inflater in;
	void *tx;       /* compressor of the fragmented message being sent, else NULL */
	size_t tx_cost; /* its share of compression_memory */
};

static struct conn_pmd *
conn_pmd_get(struct conn *c)
{
	if (c->pmd == NULL && (c->pmd = calloc(1, sizeof(*c->pmd))) != NULL) {
		c->pmd->in.bits = (uint8_t)c->pmd_cbits;
		c->pmd->in.takeover = !c->pmd_cnt;
	}
	return c->pmd;
}

/* Nothing in progress and no context kept: the record goes. */
static void
conn_pmd_idle(struct conn *c)
{
	struct conn_pmd *pmd = c->pmd;

	if (pmd != NULL && pmd->in.zs == NULL && pmd->in.buf == NULL && pmd->tx == NULL) {
		free(pmd);
		c->pmd = NULL;
	}
}

int
conn_deflate_negotiate(struct conn *c, const struct http_request *req)
{
	const struct config_route *r = c->route;
	struct ws_pmd_policy pol;
	struct ws_pmd_params p;
	enum ws_pmd_status st;
	size_t cost = 0;

	if (r == NULL || !r->compression || c->pmd_on)
		return 0;
	pol.server_max_bits = (unsigned)r->compression_server_window_bits;
	pol.client_max_bits = (unsigned)r->compression_client_window_bits;
	pol.allow_client_takeover = 1;
	st = ws_pmd_negotiate(req->method.p, req->header_len, &pol, &p);
	if (st == WS_PMD_BAD)
		return -1;
	if (st == WS_PMD_ACCEPT && !p.client_no_takeover) {
		/* The client keeps its context: so must we, for as long as the connection lives.
		 * Over the budget the client is told to compress each message on its own
		 * (client_no_context_takeover): the connection still compresses, and holds no
		 * zlib state while idle. */
		cost = ws_inflate_cost(p.client_bits);
		if (!ws_deflate_budget_take(c->cfg->compression_memory, cost)) {
			conn_log(c, LOG_LVL_DEBUG,
			         "compression_memory full: client_no_context_takeover");
			cost = 0;
			pol.allow_client_takeover = 0;
			st = ws_pmd_negotiate(req->method.p, req->header_len, &pol, &p);
		}
	}
	if (st != WS_PMD_ACCEPT)
		return 0;
	c->pmd_on = 1;
	c->pmd_cnt = p.client_no_takeover;
	c->pmd_budget = cost > 0;
	c->pmd_say_sbits = p.say_server_bits;
	c->pmd_say_cbits = p.say_client_bits;
	c->pmd_sbits = p.server_bits;
	c->pmd_cbits = p.client_bits;
	c->parser.rsv_allowed |= WS_RSV1;
	return 0;
}

void
conn_deflate_101(struct conn *c, struct evbuffer *out)
{
	char v[WS_PMD_RESPONSE_MAX];
	struct ws_pmd_params p;

	if (!c->pmd_on)
		return;
	p.client_no_takeover = (uint8_t)c->pmd_cnt;
	p.server_bits = (uint8_t)c->pmd_sbits;
	p.client_bits = (uint8_t)c->pmd_cbits;
	p.say_server_bits = (uint8_t)c->pmd_say_sbits;
	p.say_client_bits = (uint8_t)c->pmd_say_cbits;
	ws_pmd_response(&p, v);
	evbuffer_add_printf(out, "Sec-WebSocket-Extensions: %s\r\n", v);
	conn_log(c, LOG_LVL_DEBUG, "permessage-deflate: %s", v);
}

int
conn_deflate_rx(struct conn *c, const struct ws_event *ev, struct ws_event *out, uint16_t *code,
                const char **why)
{
	enum ws_inflate_status st;

	if (!c->pmd_on) {
		/* The parser allows RSV1 only once negotiated: unreachable by a peer. */
		*code = WS_CLOSE_PROTOCOL;
		*why = "compressed data without permessage-deflate";
		return -1;
	}
	if (conn_pmd_get(c) == NULL) {
		*code = WS_CLOSE_INTERNAL;
		*why = "out of memory";
		return -1;
	}
	st = ws_inflate_feed(&c->pmd->in, ev->data, ev->len, ev->first, ev->last,
	                     ev->opcode == WS_OP_TEXT, c->cfg->max_message_size, code, why);
	if (st == WS_INFLATE_ERROR) {
		ws_inflate_done(&c->pmd->in);
		conn_pmd_idle(c);
		return -1;
	}
	if (st == WS_INFLATE_MORE)
		return 0;
	memset(out, 0, sizeof(*out));
	out->type = WS_EV_DATA;
	out->opcode = ev->opcode;
	out->first = 1;
	out->last = 1;
	out->data = c->pmd->in.buf != NULL ? c->pmd->in.buf : (const uint8_t *)"";
	out->len = c->pmd->in.len;
	return 1;
}

void
conn_deflate_rx_done(struct conn *c)
{
	if (c->pmd != NULL) {
		ws_inflate_done(&c->pmd->in);
		conn_pmd_idle(c);
	}
}

const uint8_t *
conn_deflate_payload(struct conn *c, const uint8_t *data, size_t len, size_t *zlen)
{
	const struct config_route *r = c->route;
	const uint8_t *z;

	if (!c->pmd_on || r == NULL || len == 0 || len < r->compression_min_size)
		return NULL;
	z = ws_deflate_message((int)r->compression_level, c->pmd_sbits, data, len, zlen);
	return z != NULL && *zlen < len ? z : NULL;
}

static void
conn_deflate_tx_end(struct conn_pmd *pmd)
{
	ws_deflate_stream_free(pmd->tx);
	pmd->tx = NULL;
	if (pmd->tx_cost > 0)
		ws_deflate_budget_give(pmd->tx_cost);
	pmd->tx_cost = 0;
}

/* A fragment of a message sent in pieces (a relay): compressed as a stream that lives only
 * until the message ends, when the first piece is worth it and the budget has room; else
 * the whole message goes plain. Returns what conn_deflate_send returns. */
static int
conn_deflate_fragment(struct conn *c, int fin, unsigned opcode, const uint8_t *data, size_t len,
                      const uint8_t **z, size_t *zlen)
{
	struct conn_pmd *pmd = c->pmd;
	const struct config_route *r = c->route;

	if (opcode != WS_OP_CONT) { /* the first fragment: compressed or plain to its end */
		if (pmd != NULL)
			conn_deflate_tx_end(pmd);
		if (r == NULL || len == 0 || len < r->compression_min_size ||
		    (pmd = conn_pmd_get(c)) == NULL)
			return 0;
		pmd->tx_cost = ws_deflate_stream_cost(c->pmd_sbits);
		if (!ws_deflate_budget_take(c->cfg->compression_memory, pmd->tx_cost)) {
			pmd->tx_cost = 0;
			conn_pmd_idle(c);
			return 0;
		}
		pmd->tx = ws_deflate_stream_new((int)r->compression_level, c->pmd_sbits);
		if (pmd->tx == NULL) {
			conn_deflate_tx_end(pmd);
			conn_pmd_idle(c);
			return 0;
		}
	} else if (pmd == NULL || pmd->tx == NULL) {
		return 0; /* a message that went plain */
	}
	*z = ws_deflate_stream_feed(pmd->tx, data, len, fin, zlen);
	if (fin) {
		conn_deflate_tx_end(pmd);
		conn_pmd_idle(c);
	}
	if (*z == NULL) {
		/* Out of memory inside a compressed message: nothing valid can follow it, so the
		 * stream ends here (the connection is not closed under the caller's feet). */
		conn_send_close(c, WS_CLOSE_INTERNAL, "out of memory");
		return 1;
	}
	return 2;
}

int
conn_deflate_send(struct conn *c, int fin, unsigned opcode, const uint8_t *data, size_t len)
{
	const uint8_t *z = NULL;
	size_t zlen = 0, hlen;
	unsigned rsv = WS_RSV1;

	if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY && opcode != WS_OP_CONT)
		return 0;
	if (!fin || opcode == WS_OP_CONT) {
		int r = conn_deflate_fragment(c, fin, opcode, data, len, &z, &zlen);
		if (r != 2)
			return r;
		rsv = opcode == WS_OP_CONT ? 0 : WS_RSV1;
	} else if ((z = conn_deflate_payload(c, data, len, &zlen)) == NULL) {
		return 0;
	}
	hlen = ws_endpoint_queue_frame_rsv(&c->outq, fin, rsv, opcode, z, zlen, NULL);
	if (c->rstats != NULL) {
		METRIC_ADD(c->rstats->msgs_out, fin != 0);
		METRIC_ADD(c->rstats->bytes_out, hlen + zlen);
	}
	return 1;
}

uint32_t
conn_deflate_key(const struct conn *c)
{
	return (uint32_t)c->route->compression_level << 8 | c->pmd_sbits;
}

void
conn_deflate_free(struct conn *c)
{
	if (c->pmd_budget) {
		ws_deflate_budget_give(ws_inflate_cost(c->pmd_cbits));
		c->pmd_budget = 0;
	}
	if (c->pmd == NULL)
		return;
	ws_inflater_free(&c->pmd->in);
	conn_deflate_tx_end(c->pmd);
	free(c->pmd);
	c->pmd = NULL;
}
