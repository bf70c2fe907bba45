/* broker_redis_cluster_int.h - what the cluster broker's two files share
 * (broker_redis_cluster.c: the map and the routing; broker_redis_cluster_held.c: publishes
 * answered MOVED/ASK, held and sent again where their slot went). Not for other modules. */
#ifndef WSGATE_BROKER_REDIS_CLUSTER_INT_H
#define WSGATE_BROKER_REDIS_CLUSTER_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/util.h>

#include "broker_redis_int.h"
#include "config.h"
#include "redis_cluster.h"
#include "redis_link.h"

#define CL_TICK_MS 100     /* how soon a wanted map refresh starts (and the least between two) */
#define CL_REFRESH_MS 2000 /* the map is read at least this often */
#define CL_MAX_REPLY (4u << 20) /* CLUSTER SLOTS of 64 masters with replicas is far below */
#define CL_MAX (REDIS_CLUSTER_MAX_NODES)

/* A master as wsgate follows it: its address now, and who may take over (its replicas). */
struct cl_shard {
	char host[256];
	int port;
	char id[REDIS_CLUSTER_ID_MAX + 1];
	size_t nreplicas;
	char replicas[REDIS_CLUSTER_MAX_REPLICAS][REDIS_CLUSTER_ID_MAX + 1];
	size_t nslots; /* slots it serves in the last map */
};

struct broker_redis_cluster {
	struct broker base; /* first: ops and hub */
	struct event_base *evbase;
	struct broker_redis_cluster *owner; /* a worker's publisher: the process's; else NULL */

	/* ---- a worker's publisher ---- */
	struct broker_redis *pchild[CL_MAX]; /* its per-master publishers, made on first use */
	void (*relay)(void *arg, int on, const char *channel, size_t len);
	void *relay_arg;
	struct history_store *hstore;
	uint64_t unrouted; /* publishes refused: no master known for the slot */

	/* ---- every router (the process's and each worker's publisher), on its own loop ---- */
	uint64_t seq; /* publishes routed: their order */
	STAILQ_HEAD(, cl_held)
	held;                      /* redirected publishes (and their slots' later ones), by seq */
	uint64_t held_bytes;       /* bounded by publish_queue for new publishes */
	struct event *retry;       /* armed while held is not empty */
	uint64_t redirect_refused; /* publishes refused after too many redirects (atomic) */
	uint64_t held_refused;     /* publishes refused: held ones over publish_queue (atomic) */
	uint64_t followed_moved, followed_ask; /* publishes answered MOVED/ASK, held to go again */
	uint64_t query_seq;                    /* SHARDNUMSUB questions asked for held publishes */
	/* per slot, the receivers its last SPUBLISH reached: a publish answered MOVED waits until
	 * its channel has as many on the new master (the other instances resubscribed) */
	uint32_t receivers[REDIS_CLUSTER_SLOTS];
	/* per slot, the master whose SPUBLISH answer gave receivers[slot]: a publish the map
	 * sends to another master (this gateway learnt the move before any MOVED) waits the same
	 * way, or it could reach the new master before the other instances resubscribed there */
	uint16_t receivers_at[REDIS_CLUSTER_SLOTS];

	/* ---- the process's (shared with the workers' publishers through owner) ---- */
	struct config *cfg;   /* a copy of [redis]: masters appear after the snapshot may be gone */
	pthread_mutex_t lock; /* shards[] addresses */
	uint16_t slot_shard[REDIS_CLUSTER_SLOTS]; /* atomic loads/stores; CL_NONE: unserved */
	struct cl_shard shards[CL_MAX];
	size_t nshards;                     /* atomic: shards[0..n) are set */
	struct broker_redis *child[CL_MAX]; /* per master: sub link, canary, pub link; atomic */
	uint64_t homeless[REDIS_CLUSTER_SLOTS / 64]; /* slots whose master changed: resubscribe */
	uint64_t
	    resub[REDIS_CLUSTER_SLOTS / 64]; /* slots an SSUBSCRIBE was refused: the next map */
	int want;                            /* atomic: read the map soon */
	size_t ask_shard; /* atomic: 1 + the master to ask it of (its pub link), 0: ctl */
	int have_map;     /* atomic: a map was applied */
	int refreshing;   /* CLUSTER SLOTS in flight */
	uint64_t last_refresh_ms;
	uint64_t refreshes, redirects; /* counters (atomic) */
	char seeds[REDIS_MAX_SEEDS][256];
	int seed_ports[REDIS_MAX_SEEDS];
	size_t nseeds, next;
	struct redis_link ctl;     /* the map link: any seed or master, in turn */
	struct redis_endpoint *ep; /* TLS context for ctl */
	struct evdns_base *dns;
	struct event *tick;
	int freeing;
	const struct broker_sink *sink;
	void *sink_arg;
	void (*on_sub_up)(void *arg);
	void *on_sub_up_arg;
	char probe_base[300]; /* <prefix>wsgate:probe:<instance_id>: */
};

#define CL_NONE REDIS_CLUSTER_NONE

/* A publish waiting to be sent where its slot now lives: answered MOVED/ASK (host set), or a
 * later publish of such a slot, which must not overtake it (host ""). */
struct cl_held {
	STAILQ_ENTRY(cl_held) entry;
	struct redis_pending *p;
	unsigned slot;
	int ask;
	size_t from;        /* the master that answered MOVED (CL_NONE: a later publish held) */
	uint64_t since_ms;  /* when it was held */
	int subs_ok;        /* the new master has the channel's subscribers (or not waited for) */
	uint32_t want_subs; /* ...as many as the old one reached */
	uint64_t query;     /* its SHARDNUMSUB in flight (0: none) */
	int port;
	char host[256];
};

static inline struct broker_redis_cluster *
cl_shared(struct broker_redis_cluster *cl)
{
	return cl->owner != NULL ? cl->owner : cl;
}

static inline size_t
cl_shard_of(struct broker_redis_cluster *sh, const char *channel, size_t len)
{
	return __atomic_load_n(&sh->slot_shard[redis_cluster_keyslot(channel, len)],
	                       __ATOMIC_ACQUIRE);
}

/* The per-master broker of master s: the process's own, or (a worker's publisher) made on
 * first use, on this worker's loop, once the process has that master's. */
struct broker_redis *broker_redis_cluster_child_at(struct broker_redis_cluster *cl, size_t s);

/* Held publishes (broker_redis_cluster_held.c). */
int broker_redis_cluster_held_has(struct broker_redis_cluster *cl, unsigned slot);
void broker_redis_cluster_held_insert(struct broker_redis_cluster *cl, struct cl_held *h);
void broker_redis_cluster_held_free(struct broker_redis_cluster *cl);
void broker_redis_cluster_retry(evutil_socket_t fd, short what, void *arg);

#endif
