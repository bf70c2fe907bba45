/* env.h - what a loop's objects (connections, targets, brokers) receive from the layer that
 * owns them, instead of reaching up through worker and gateway: the loop, its counters, its
 * hub, the process-wide tables, and callbacks into the owner. worker.c fills one per worker;
 * a unit test fills one with fakes. No process-layer type appears here. */
#ifndef WSGATE_ENV_H
#define WSGATE_ENV_H
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct worker_stats;
struct hub;
struct broker;
struct upstream_registry;
struct config;
struct limit_table;
struct security;
struct conn;
struct hub_frame;
struct admission;
struct history_store;
struct timer_wheel;

enum env_readiness {
	ENV_READY = 0,   /* serving, and every broker delivers */
	ENV_BROKER_DOWN, /* serving, but messages published elsewhere do not reach us */
	ENV_DRAINING,    /* shutting down */
};

/* How one loop reaches the other loops of the process (worker.c: their mailboxes). */
struct env_bus {
	/* All or none: a copy of the message (a WORKER_MSG_PUBLISH) into the mailbox of every
	 * worker in mask; when one is too far behind nothing is posted, *refuser names it and -1
	 * is returned. */
	int (*publish)(void *arg, uint64_t mask, const char *channel, size_t clen,
	               const uint8_t *data, size_t len, size_t *refuser);
	/* As publish, with a step between reserving and posting: commit(carg) runs once every
	 * reservation is made (under whatever lock the caller holds, so the posts follow it in
	 * that order: a history append); when it fails every reservation is given back,
	 * *refuser is SIZE_MAX and -1 is returned. NULL: not available (tests). */
	int (*publish_commit)(void *arg, uint64_t mask, const char *channel, size_t clen,
	                      const uint8_t *data, size_t len, int (*commit)(void *carg),
	                      void *carg, size_t *refuser);
	/* As publish, but every worker in mask gets a reference to the one frame f (a
	 * WORKER_MSG_PUBLISH_FRAME), its size counted against its mailbox's limit as a copy's
	 * would be: a large message is framed once for the process. The caller keeps its own
	 * reference. NULL: not available (tests). */
	int (*publish_frame)(void *arg, uint64_t mask, const char *channel, size_t clen,
	                     struct hub_frame *f, int is_text, size_t *refuser);
	/* Tells worker w that the process receives channel (WORKER_MSG_LIVE, hub incarnation
	 * gen). -1 when it cannot be posted (out of memory, or the process is being freed). */
	int (*live)(void *arg, int w, uint64_t gen, const char *channel, size_t len);
	void *arg;
};

struct env {
	int id;                     /* the worker's index */
	struct event_base *base;    /* the loop everything below runs on */
	struct timer_wheel *wheel;  /* the loop's coarse timers (connections' deadlines) */
	struct worker_stats *stats; /* this loop's counters */
	uint64_t *out_queued;       /* bytes queued towards this loop's clients (ws_outq_gauge) */
	struct hub *hub;            /* pub/sub channels of this loop's connections */
	struct broker *broker;      /* how the hub reaches other loops and instances */
	struct upstream_registry **upstreams; /* proxy routes' pools; made on first use */
	const struct config *const *cfg;      /* the loop's current snapshot (follows reloads) */
	const uint8_t *draining;              /* nonzero: the loop is shutting down */
	struct limit_table *limits;           /* admission counters, shared by the process */
	struct security *sec;                 /* route keys and refusal counters, shared */
	struct admission *adm;                /* fleet admission budget; NULL when off */
	struct history_store *history;        /* channels that keep history, shared; or NULL */
	const char *instance_id;              /* random hex, prefix of public connection ids */
	struct env_bus bus;

	/* Callbacks into the owner (arg: the worker). */
	void *arg;
	uint64_t (*next_conn_id)(void *arg);            /* process-unique */
	const struct config *(*config_hold)(void *arg); /* the snapshot, with a reference */
	void (*conn_add)(void *arg, struct conn *c);    /* a new live connection */
	void (*conn_dead)(void *arg, struct conn *c);   /* CLOSED: free it on the next turn */
	/* A buffer of at least n bytes valid within the current loop turn; NULL on ENOMEM. */
	char *(*scratch)(void *arg, size_t n);
	/* What /readyz answers on a client listener. */
	enum env_readiness (*readiness)(void *arg);
};
#endif
