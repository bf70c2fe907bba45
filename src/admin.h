/* admin.h - the operator's HTTP listener (admin_listen): /healthz, /readyz, /metrics
 * (Prometheus) and /status (a small self-contained live page). Plain HTTP/1.1, one request per
 * connection, never WebSocket. */
#ifndef WSGATE_ADMIN_H
#define WSGATE_ADMIN_H

struct gateway;
struct admin;
struct evbuffer;

/* Opens every admin_listen address of the gateway's config; NULL (logged) when one fails.
 * With no admin_listen configured, returns an empty admin that serves nothing. */
struct admin *admin_new(struct gateway *gw);
void admin_free(struct admin *a);

/* Prometheus text exposition format (version 0.0.4) of the whole gateway: every worker's
 * counters summed. Runs on the main loop (admin_metrics.c). */
void admin_metrics_render(const struct gateway *gw, struct evbuffer *out);

/* The /status page, kept here so tests and docs can find it. */
extern const char admin_status_html[];

#endif
