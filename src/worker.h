/* worker.h - one event loop on its own thread and everything it owns: its listeners (one
 * SO_REUSEPORT socket per listen address), its connections, its pub/sub hub and broker, its
 * proxy pools, its counters and the list of connections to free on the next loop turn.
 * Workers share nothing mutable with each other; they talk through mailboxes. */
#ifndef WSGATE_WORKER_H
#define WSGATE_WORKER_H

#include <sys/queue.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "env.h"
#include "metrics.h"

struct config;
struct worker;
struct listener;
struct event_base;
struct event;
struct hub;
struct broker;
struct mailbox;
struct upstream_registry;
struct limit_table;
struct security;
struct admission;
struct history_store;
struct tls_server;
struct router;

/* What a worker receives from the process that owns it (gateway.c fills one for all of them),
 * so that worker.c and listener.c need nothing of gateway.h. Pointers to the owner's fields
 * are read at each use: the router and the worker table are complete only after every worker
 * was made. */
struct worker_owner {
	struct limit_table *limits;     /* admission counters, shared */
	struct security *sec;           /* route keys and refusal counters, shared */
	struct admission *adm;          /* fleet admission budget (main loop); NULL when off */
	struct history_store *history;  /* channels that keep history, shared */
	struct tls_server *tls;         /* certificates of the tls listeners; NULL when none */
	const char *instance_id;        /* random hex: connection ids unique across instances */
	uint64_t *next_conn_id;         /* process-wide counter (atomic) */
	struct worker **const *workers; /* every worker, *nworkers of them */
	const size_t *nworkers;
	const int *freeing;           /* nonzero: the process is being freed */
	struct router *const *router; /* the process's Redis subscriptions, or NULL */
	void *arg;                    /* the gateway, first argument of the callbacks */
	/* A draining worker has no connection left (from its thread). */
	void (*idle)(void *arg, struct worker *w);
	/* A worker took reloaded snapshot gen (from its thread). */
	void (*config_taken)(void *arg, uint64_t gen);
	/* A worker's hub wants channel (on) or no longer does (from its thread). */
	void (*relay_subscription)(void *arg, int worker, int on, const char *channel, size_t len,
	                           uint64_t gen);
	/* /readyz for the workers' client listeners. */
	enum env_readiness (*readiness)(void *arg);
};

LIST_HEAD(conn_list, conn);

/* What a worker's mailbox carries (mailbox.h). */
enum worker_msg {
	WORKER_MSG_CONFIG = 1,  /* a: struct config * with a reference for this worker;
	                         * b: uint64_t reload generation, reported back when taken */
	WORKER_MSG_DRAIN,       /* a: uint64_t window in ms */
	WORKER_MSG_STOP,        /* leave the loop */
	WORKER_MSG_PUBLISH,     /* a: channel, b: data; from another worker's hub or from Redis */
	WORKER_MSG_REDIS_UP,    /* the process's Redis sub link is up: send queued publishes */
	WORKER_MSG_SUBSCRIBE,   /* worker 0 only: a: struct worker_want, b: channel it now wants */
	WORKER_MSG_UNSUBSCRIBE, /* worker 0 only: a: struct worker_want, b: channel it no longer
	                           wants */
	WORKER_MSG_LIVE, /* a: uint64_t hub incarnation, b: channel the process now receives */
	WORKER_MSG_PUBLISH_FRAME, /* a: channel, b: struct worker_frame_msg (a reference to a
	                           * frame shared by every worker: a large message from Redis) */
};

/* WORKER_MSG_PUBLISH_FRAME: the record carries the reference; the worker drops it. */
struct worker_frame_msg {
	struct hub_frame *f;
	int is_text;
};

/* Who wants a channel (WORKER_MSG_(UN)SUBSCRIBE): the worker and its hub's incarnation of the
 * channel, handed back with WORKER_MSG_LIVE so a stale one is told from a current one. */
struct worker_want {
	int worker;
	uint64_t gen;
};

struct timer_wheel;

struct worker {
	const struct worker_owner *owner; /* the process (gateway.c) */
	int id;
	struct event_base *base;   /* owned */
	struct timer_wheel *wheel; /* the connections' timers, on base (owned) */
	pthread_t thread;
	uint8_t started;          /* the thread runs (joined by worker_join) */
	struct mailbox *mbox;     /* messages from the main loop and other workers */
	const struct config *cfg; /* the snapshot new connections take; a reference held */
	struct listener **listeners;
	size_t nlisteners;
	struct conn_list conns; /* every connection not yet CLOSED */
	size_t nconns;          /* written by this worker only; read by metrics */
	struct conn_list dead;  /* CLOSED, waiting for the reaper */
	struct event *reaper;   /* frees the dead list outside any callback */
	struct event *sampler;  /* once a second: gauges that need a walk of conns */
	struct event *lagger;   /* every WORKER_LAG_MS: how late the loop runs (metrics) */
	uint64_t lag_due_us;    /* when lagger should run, monotonic */
	uint64_t lag_cpu_us;    /* this thread's CPU time at the last tick; 0: none yet */
	uint8_t draining;       /* no new connections; report idle when conns is empty */
	uint8_t idle_reported;
	uint8_t freeing;       /* worker_free: messages left are only handled for their refs */
	struct hub *hub;       /* pub/sub channels of this worker's connections */
	struct broker *broker; /* how the hub reaches other workers and instances */
	struct upstream_registry *upstreams; /* proxy routes' backend pools; made on first use */
	char *scratch; /* reusable buffer for building one message (JSON envelopes) */
	size_t scratch_cap;
	int scratch_used;          /* asked for since the sampler last looked */
	uint64_t out_queued;       /* bytes queued towards clients, kept by their ws_outq */
	unsigned churn;            /* connections accepted or freed since the last heap trim */
	unsigned churn_seen;       /* `churn` when the sampler last looked */
	struct worker_stats stats; /* this worker's counters, summed by metrics_render() */
	struct env env;            /* what its connections, targets and broker get (env.h) */
};

/* A worker with its own event loop, holding a reference to cfg. Not running yet. */
struct worker *worker_new(const struct worker_owner *owner, int id, const struct config *cfg);
/* Opens the configured listeners (reuseport: one socket per worker on the same address);
 * -1 (logged) when one cannot be bound. Before worker_start. */
int worker_listen(struct worker *w, int reuseport) __attribute__((warn_unused_result));
/* Creates the hub and its broker: with Redis a publisher of its own whose subscriptions go to
 * the process's broker (redis, made by the gateway), else the in-process bus between workers.
 * -1 on failure. Before worker_start. */
int worker_pubsub_init(struct worker *w, struct broker *redis) __attribute__((warn_unused_result));
/* Runs the loop on a new thread (signals blocked there: the main loop takes them). */
int worker_start(struct worker *w) __attribute__((warn_unused_result));
/* Waits for the thread to leave its loop (after WORKER_MSG_STOP). */
void worker_join(struct worker *w);
/* Frees connections immediately, then the worker. Its loop must not be running. */
void worker_free(struct worker *w);

/* From any thread: a message into the worker's loop. Control messages are never refused;
 * bounded ones (WORKER_MSG_PUBLISH) are when the worker is too far behind. */
int worker_post(struct worker *w, enum worker_msg type, const void *a, size_t alen, const void *b,
                size_t blen) __attribute__((warn_unused_result));

void worker_stop_listening(struct worker *w);
/* Stops accepting and starts the graceful close of every connection (close 1001), the closes
 * spread evenly over window_ms. */
void worker_drain(struct worker *w, uint64_t window_ms);

void worker_conn_add(struct worker *w, struct conn *c);
/* Moves c to the dead list and schedules the reaper. */
void worker_conn_dead(struct worker *w, struct conn *c);
/* A process-wide unique connection id. */
uint64_t worker_next_conn_id(struct worker *w);
/* The current snapshot, with a reference for the caller (config_release gives it back). */
const struct config *worker_config_hold(struct worker *w);
/* A buffer of at least n bytes, valid until the next call on this worker and only within the
 * current loop turn (a large one is freed between turns); NULL on ENOMEM. */
char *worker_scratch(struct worker *w, size_t n);

#endif
