/* upstream_upgrade.c - a backend's answer to our WebSocket upgrade (upstream.h), checked
 * strictly before anything is relayed: a 101 with the right accept and a subprotocol the
 * client offered opens the session; anything else fails the attempt with the reason, and the
 * client is told what it must see (a refused upgrade's status and headers, a bad 101 as a
 * 502). Moved out of upstream_conn.c, which keeps the session. */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "http.h"
#include "http_response.h"
#include "upstream.h"
#include "upstream_req.h"

void
upstream_conn_read_upgrade(struct upstream_conn *u)
{
	struct evbuffer *in = bufferevent_get_input(u->bev);
	size_t len = evbuffer_get_length(in), n;
	const struct http_str *offered = u->req != NULL ? u->req->protocols : NULL;
	size_t noffered = u->req != NULL ? u->req->nprotocols : 0;
	struct http_response resp;
	struct http_str proto;
	const char *p, *why;
	char buf[160], protocol[HTTP_MAX_HEADER], pass[2048];
	int checked;

	n = len < HTTP_RESPONSE_MAX_HEADER ? len : HTTP_RESPONSE_MAX_HEADER;
	if ((p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n)) == NULL)
		return;
	switch (http_response_parse(p, n, &resp)) {
	case HTTP_RESPONSE_NEED_MORE:
		return;
	case HTTP_RESPONSE_TOO_LARGE:
		upstream_conn_fail(u, "upgrade response head larger than 8 KiB");
		return;
	case HTTP_RESPONSE_BAD:
		upstream_conn_fail(u, "malformed upgrade response");
		return;
	case HTTP_RESPONSE_OK:
		break;
	}
	checked = http_response_check_upgrade(&resp, u->accept, offered, noffered, &proto, &why);
	/* What the client must see with the answer it will get (a bad 101 becomes a 502). */
	if ((checked == 0 || resp.status != 101) && u->ops != NULL && u->ops->headers != NULL) {
		(void)http_response_passthrough(&resp, pass, sizeof(pass));
		u->ops->headers(u->arg, resp.status, pass);
	}
	if (checked < 0) {
		if (resp.status != 101) {
			u->status = resp.status;
			snprintf(buf, sizeof(buf), "refused the upgrade: HTTP %d %.*s", resp.status,
			         (int)(resp.reason.n < 60 ? resp.reason.n : 60), resp.reason.p);
		} else {
			snprintf(buf, sizeof(buf), "bad upgrade response: %s", why);
		}
		upstream_conn_fail(u, buf);
		return;
	}
	/* The fields point into the input, which is drained next. */
	memcpy(protocol, proto.p != NULL ? proto.p : "", proto.n);
	protocol[proto.n] = '\0';
	evbuffer_drain(in, resp.header_len);
	upstream_conn_opened(u, proto.n > 0 ? protocol : NULL);
}
