/* upstream_connect.c - reaching a backend (upstream.h): a fresh bufferevent per address of the
 * looked-up host, the next address after a refused connect (plain TCP), then, once connected,
 * the upgrade request (ws, wss) or the open session (tcp). Moved out of upstream_conn.c, which
 * keeps the session and the socket's callbacks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "clock.h"
#include "upstream.h"

/* Connects to u->ai_next, a fresh bufferevent per address. */
void
upstream_conn_connect(struct upstream_conn *u)
{
	struct upstream_pool *pool = u->backend->pool;
	struct evutil_addrinfo *ai = u->ai_next;
	struct ssl_ctx_st *tls;
	const char *why = NULL;

	if (ai == NULL) {
		upstream_conn_fail(u, "no address to connect to");
		return;
	}
	u->ai_next = ai->ai_next;
	if (u->backend->cfg->scheme == BACKEND_WSS) {
		if ((tls = upstream_pool_tls(pool, &why)) == NULL) {
			upstream_conn_fail(u, why);
			return;
		}
		u->bev = upstream_tls_bev_new(u->reg->base, tls, u->backend->cfg->host);
	} else {
		u->bev = bufferevent_socket_new(u->reg->base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	if (u->bev == NULL) {
		upstream_conn_fail(u, "cannot make a bufferevent");
		return;
	}
	bufferevent_setcb(u->bev, upstream_conn_read_cb, upstream_conn_write_cb,
	                  upstream_conn_event_cb, u);
	if (ws_outq_attach(&u->outq, bufferevent_get_output(u->bev), bufferevent_getfd(u->bev),
	                   WS_OUTQ_FRONT_FROZEN, conn_now_ms()) < 0) {
		upstream_conn_fail(u, "out of memory");
		return;
	}
	/* The write callback runs whenever the output falls to the level: time to pump. */
	bufferevent_setwatermark(u->bev, EV_WRITE, WS_OUTQ_LEVEL, 0);
	/* Fewer, larger reads: the default 16 KiB costs throughput on a busy relay. */
	bufferevent_set_max_single_read(u->bev, 65536);
	bufferevent_set_max_single_write(u->bev, 65536);
	if (u->state == UPC_RESOLVING)
		upstream_conn_set_state(u, UPC_CONNECTING);
	/* An immediate refusal is reported through the event callback on the next turn. */
	if (bufferevent_socket_connect(u->bev, ai->ai_addr, (int)ai->ai_addrlen) < 0) {
		upstream_conn_fail(u, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return;
	}
	ws_outq_set_fd(&u->outq, bufferevent_getfd(u->bev)); /* made by the connect */
	bufferevent_enable(u->bev, EV_READ | EV_WRITE);
}

void
upstream_conn_resolved(struct upstream_conn *u, int err, struct evutil_addrinfo *ai)
{
	char why[160];

	if (err != 0 || ai == NULL) {
		snprintf(why, sizeof(why), "cannot resolve %.64s: %s", u->backend->cfg->host,
		         evutil_gai_strerror(err));
		upstream_conn_fail(u, why);
		return;
	}
	u->ai = u->ai_next = ai;
	upstream_conn_connect(u);
}

/* Connected (after TLS for wss): send the upgrade, or for tcp the session is open. */
void
upstream_conn_connected(struct upstream_conn *u)
{
	int one = 1;

	setsockopt(bufferevent_getfd(u->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!upstream_conn_is_ws(u)) {
		upstream_conn_set_state(u, UPC_OPEN);
		if (u->ops != NULL && u->ops->ready != NULL)
			u->ops->ready(u->arg, NULL);
		/* A backend that speaks first (a banner) may have been read before this connect
		 * event was dispatched, while we were not OPEN yet: relay it now, in order. */
		if (u->state == UPC_OPEN && evbuffer_get_length(bufferevent_get_input(u->bev)) > 0)
			upstream_conn_read_raw(u);
		return;
	}
	evbuffer_add(bufferevent_get_output(u->bev), u->request, u->request_len);
	free(u->request);
	u->request = NULL;
	upstream_conn_set_state(u, UPC_UPGRADING);
}
