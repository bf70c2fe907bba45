/* worker.c - an event loop's owned state: listeners, live and dead connections.
 * Connections are never freed inside their own callbacks: conn_close() parks them on the dead
 * list and the reaper event, run by the loop after the current callbacks return, frees them. */
#include "worker.h"

#include <stdlib.h>

#include <event2/event.h>

#include "broker.h"
#include "config.h"
#include "heartbeat.h"
#include "hub.h"
#include "target.h"
#include "upstream.h"
#include "gateway.h"
#include "listener.h"
#include "log.h"

static void
worker_reap(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct conn *c;

	(void)fd;
	(void)what;
	while ((c = LIST_FIRST(&w->dead)) != NULL) {
		LIST_REMOVE(c, entry);
		conn_free(c);
	}
	if (w->draining && w->nconns == 0)
		gateway_worker_idle(w->gw, w);
}

struct worker *
worker_new(struct gateway *gw, int id, struct event_base *base)
{
	struct worker *w;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->gw = gw;
	w->id = id;
	w->base = base;
	LIST_INIT(&w->conns);
	LIST_INIT(&w->dead);
	if ((w->reaper = event_new(base, -1, 0, worker_reap, w)) == NULL) {
		free(w);
		return NULL;
	}
	return w;
}

int
worker_listen(struct worker *w)
{
	const struct config *cfg = w->gw->cfg;

	w->listeners = calloc(cfg->nlistens, sizeof(*w->listeners));
	if (w->listeners == NULL)
		return -1;
	for (size_t i = 0; i < cfg->nlistens; i++) {
		w->listeners[i] = listener_new(w, &cfg->listens[i]);
		if (w->listeners[i] == NULL)
			return -1;
		w->nlisteners++;
	}
	return 0;
}

void
worker_stop_listening(struct worker *w)
{
	for (size_t i = 0; i < w->nlisteners; i++)
		listener_free(w->listeners[i]);
	free(w->listeners);
	w->listeners = NULL;
	w->nlisteners = 0;
}

void
worker_drain(struct worker *w, uint64_t window_ms)
{
	struct conn *c, *next;
	uint64_t now = conn_now_ms(), i = 0, nopen = 0;

	w->draining = 1;
	worker_stop_listening(w);
	LIST_FOREACH(c, &w->conns, entry)
		nopen += c->state == CONN_OPEN;
	/* Closes are spread evenly over the window, so clients of a restarting fleet do not all
	 * reconnect to the remaining instances at the same instant. conn_close() moves entries
	 * to the dead list, so walk with a saved next. */
	for (c = LIST_FIRST(&w->conns); c != NULL; c = next) {
		next = LIST_NEXT(c, entry);
		switch (c->state) {
		case CONN_HANDSHAKE:
			conn_close(c, "shutting down during handshake");
			break;
		case CONN_OPEN:
			heartbeat_drain_at(c, now + (nopen > 0 ? window_ms * i / nopen : 0));
			i++;
			break;
		default:
			break; /* already closing */
		}
	}
	if (w->nconns == 0)
		event_active(w->reaper, 0, 0);
}

void
worker_free(struct worker *w)
{
	struct conn *c;

	if (w == NULL)
		return;
	worker_stop_listening(w);
	while ((c = LIST_FIRST(&w->conns)) != NULL)
		conn_close(c, "gateway stopped");
	while ((c = LIST_FIRST(&w->dead)) != NULL) {
		LIST_REMOVE(c, entry);
		conn_free(c);
	}
	/* The proxy sessions' backend halves, detached by the closes above. */
	upstream_registry_free(w->upstreams);
	/* Every subscription is gone with the connections: the broker, then the hub. */
	if (w->broker != NULL)
		w->broker->ops->free(w->broker);
	hub_free(w->hub);
	free(w->scratch);
	metrics_free(&w->stats);
	event_free(w->reaper);
	free(w);
}

int
worker_pubsub_init(struct worker *w, const char *instance_id)
{
	const struct config *cfg = w->gw->cfg;

	if ((w->hub = hub_new(target_pubsub_deliver)) == NULL)
		return -1;
	if (cfg->redis.enabled)
		w->broker = broker_redis_new(w->hub, w->base, cfg, instance_id);
	else
		w->broker = broker_local_new(w->hub);
	if (w->broker == NULL)
		return -1;
	hub_set_broker(w->hub, w->broker);
	return 0;
}

int
worker_ready(const struct worker *w)
{
	return w->broker == NULL || w->broker->ops->ready(w->broker);
}

char *
worker_scratch(struct worker *w, size_t n)
{
	if (n > w->scratch_cap) {
		char *p = realloc(w->scratch, n);
		if (p == NULL)
			return NULL;
		w->scratch = p;
		w->scratch_cap = n;
	}
	return w->scratch;
}

void
worker_conn_add(struct worker *w, struct conn *c)
{
	LIST_INSERT_HEAD(&w->conns, c, entry);
	w->nconns++;
}

void
worker_conn_dead(struct worker *w, struct conn *c)
{
	LIST_REMOVE(c, entry);
	w->nconns--;
	LIST_INSERT_HEAD(&w->dead, c, entry);
	event_active(w->reaper, 0, 0);
}

uint64_t
worker_next_conn_id(struct worker *w)
{
	return ++w->gw->next_conn_id;
}
