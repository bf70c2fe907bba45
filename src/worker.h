/* worker.h - one event loop and everything it owns: its listeners, its connections and the
 * list of connections to free on the next loop turn. Designed so N can run on N threads. */
#ifndef WSGATE_WORKER_H
#define WSGATE_WORKER_H

#include <sys/queue.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

struct gateway;
struct listener;
struct event_base;
struct event;

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
};

struct worker *worker_new(struct gateway *gw, int id, struct event_base *base);
/* Opens the configured listeners; -1 (logged) when one cannot be bound. */
int worker_listen(struct worker *w) __attribute__((warn_unused_result));
void worker_stop_listening(struct worker *w);
/* Starts the graceful close of every connection (close 1001). */
void worker_drain(struct worker *w);
/* Frees connections immediately, then the worker (after the loop stopped). */
void worker_free(struct worker *w);

void worker_conn_add(struct worker *w, struct conn *c);
/* Moves c to the dead list and schedules the reaper. */
void worker_conn_dead(struct worker *w, struct conn *c);
uint64_t worker_next_conn_id(struct worker *w);

#endif
