/* upstream_dns.c - a backend host's addresses for a connection (upstream.h): numeric hosts at
 * once, names through the registry's evdns base; a lookup can be cancelled by the connection
 * going away. Moved out of upstream_conn.c, which keeps the session. */
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include <event2/dns.h>
#include <event2/util.h>

#include "upstream.h"

/* A lookup outlives the connection when it is cancelled: the callback then only frees this. */
struct upstream_dns {
	struct upstream_conn *u; /* NULL once the connection stopped waiting */
	struct evdns_getaddrinfo_request *req;
};

static void
upstream_dns_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
	struct upstream_dns *d = arg;
	struct upstream_conn *u = d->u;

	free(d);
	if (u == NULL) {
		/* The connection went away meanwhile (EVUTIL_EAI_CANCEL, or an answer too late). */
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		return;
	}
	u->dns = NULL;
	if (u->in_start) {
		/* Answered inside evdns_getaddrinfo (an address or /etc/hosts): the caller goes on.
		 */
		u->ai = ai;
		u->dns_err = err != 0 ? err : (ai == NULL ? EVUTIL_EAI_FAIL : 0);
		return;
	}
	upstream_conn_resolved(u, err, ai);
}

void
upstream_conn_resolve(struct upstream_conn *u)
{
	const struct config_backend *cb = u->backend->cfg;
	struct evutil_addrinfo hints, *ai = NULL;
	struct evdns_base *dns;
	struct upstream_dns *d;
	struct evdns_getaddrinfo_request *r;
	int err;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
	if (evutil_getaddrinfo(cb->host, cb->port, &hints, &ai) == 0) {
		upstream_conn_resolved(u, 0, ai);
		return;
	}
	hints.ai_flags = EVUTIL_AI_NUMERICSERV | EVUTIL_AI_ADDRCONFIG;
	if ((dns = upstream_registry_dns(u->reg)) == NULL || (d = calloc(1, sizeof(*d))) == NULL) {
		upstream_conn_fail(u, "cannot start a DNS lookup");
		return;
	}
	d->u = u;
	u->dns = d;
	u->in_start = 1;
	u->dns_err = -1;
	r = evdns_getaddrinfo(dns, cb->host, cb->port, &hints, upstream_dns_cb, d);
	u->in_start = 0;
	if (r != NULL) {
		d->req = r; /* answered later, through upstream_dns_cb */
		return;
	}
	/* Answered (or failed) inside the call: d is already freed. */
	u->dns = NULL;
	err = u->dns_err;
	ai = u->ai;
	u->ai = NULL;
	upstream_conn_resolved(u, err == -1 ? EVUTIL_EAI_FAIL : err, ai);
}

void
upstream_dns_cancel(struct upstream_conn *u)
{
	if (u->dns != NULL) {
		/* The callback still comes (with EVUTIL_EAI_CANCEL) and frees the ticket. */
		u->dns->u = NULL;
		evdns_getaddrinfo_cancel(u->dns->req);
		u->dns = NULL;
	}
}
