/* admin.h - the operator's HTTP listener (admin_listen): /healthz, /readyz, /metrics
 * (Prometheus) and /status (a small self-contained live page). Plain HTTP/1.1, one request per
 * connection, never WebSocket. */
#ifndef WSGATE_ADMIN_H
#define WSGATE_ADMIN_H

struct gateway;
struct admin;

/* Opens every admin_listen address of the gateway's config; NULL (logged) when one fails.
 * With no admin_listen configured, returns an empty admin that serves nothing. */
struct admin *admin_new(struct gateway *gw);
void admin_free(struct admin *a);

/* The /status page, kept here so tests and docs can find it. */
extern const char admin_status_html[];

#endif
