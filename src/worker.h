/* worker.h - one event loop and everything it owns: its listeners, its connections and the
 * list of connections to free on the next loop turn. Designed so N can run on N threads. */
#ifndef WSGATE_WORKER_H
#define WSGATE_WORKER_H

#include <sys/queue.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "metrics.h"

struct gateway;
struct listener;
struct event_base;
struct event;
struct hub;
struct broker;
struct upstream_registry;

LIST_HEAD(conn_list, conn);

struct worker {
	struct gateway *gw;
	int id;
	struct event_base *base;
	struct listener **listeners;
	size_t nlisteners;
	struct conn_list conns;     /* every connection not yet CLOSED */
	size_t nconns;
	struct conn_list dead;      /* CLOSED, waiting for the reaper */
	struct event *reaper;       /* frees the dead list outside any callback */
	uint8_t draining;           /* no new connections; exit when conns is empty */
	struct hub *hub;            /* pub/sub channels of this worker's connections */
	struct broker *broker;      /* how the hub reaches other workers and instances */
	struct upstream_registry *upstreams; /* proxy routes' backend pools; made on first use */
	char *scratch;              /* reusable buffer for building one message (JSON envelopes) */
	struct worker_stats stats;  /* this worker's counters, summed by metrics_render() */
	size_t scratch_cap;
};

struct worker *worker_new(struct gateway *gw, int id, struct event_base *base);
/* Opens the configured listeners; -1 (logged) when one cannot be bound. */
int worker_listen(struct worker *w) __attribute__((warn_unused_result));
void worker_stop_listening(struct worker *w);
/* Stops accepting and starts the graceful close of every connection (close 1001), the closes
 * spread evenly over window_ms. */
void worker_drain(struct worker *w, uint64_t window_ms);
/* Frees connections immediately, then the worker (after the loop stopped). */
void worker_free(struct worker *w);

void worker_conn_add(struct worker *w, struct conn *c);
/* Moves c to the dead list and schedules the reaper. */
void worker_conn_dead(struct worker *w, struct conn *c);
uint64_t worker_next_conn_id(struct worker *w);
/* Creates the hub and its broker (Redis when configured, else in-process). -1 on failure. */
int worker_pubsub_init(struct worker *w, const char *instance_id)
    __attribute__((warn_unused_result));
/* A buffer of at least n bytes, valid until the next call on this worker; NULL on ENOMEM. */
char *worker_scratch(struct worker *w, size_t n);
/* 1 while the broker delivers (Redis link alive). */
int worker_ready(const struct worker *w);

#endif
