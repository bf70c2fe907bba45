/* broker_redis_int.h - the Redis broker's state, shared by its files: broker_redis.c (the
 * links' hooks, the sub link, the broker), broker_redis_pub.c (the publish path and the canary
 * going out) and broker_redis_cluster.c (cluster mode: one such broker per master). Not for
 * other modules: they use broker.h and broker_redis.h. */
#ifndef WSGATE_BROKER_REDIS_INT_H
#define WSGATE_BROKER_REDIS_INT_H

#include <sys/queue.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

#include "broker_redis.h"
#include "redis_link.h"

struct redis_endpoint;
struct broker_redis_fill;
struct broker_redis_cluster;
struct event_base;
struct config;
struct hub;
struct history_store;

#define REDIS_SUB_BATCH 256          /* channels per SUBSCRIBE when resubscribing */
#define REDIS_PUB_MAX_INFLIGHT 10000 /* PUBLISHes awaiting a reply before we queue instead */
#define REDIS_PUB_MIN_INFLIGHT_BYTES (1u << 20) /* in-flight byte bound if publish_queue is 0 */
#define REDIS_LOG_MS 1000 /* oversized messages are logged at most this often */

struct redis_pending {
	STAILQ_ENTRY(redis_pending) entry;
	size_t clen;
	size_t len;
	uint64_t seq;       /* cluster mode: the router's publish order (0: none) */
	unsigned redirects; /* cluster mode: MOVED/ASK answers it had so far */
	uint8_t buf[];      /* channel, then data */
};

struct broker_redis {
	struct broker base; /* first: ops and hub */
	struct event_base *evbase;
	/* copied from the config snapshot, which may be replaced while we live */
	char *host;
	int port;
	int db;
	char *password; /* NULL: no AUTH */
	uint64_t connect_timeout_ms, probe_interval_ms, probe_timeout_ms, publish_queue,
	    reconnect_max_ms, max_message_size;
	struct evdns_base *dns; /* made on first use: a host name, not an address, is configured */
	uint64_t oversized;     /* oversized messages since the last log line */
	uint64_t oversized_log_ms;

	struct redis_link sub;
	struct redis_link pub;
	struct redis_endpoint *ep; /* where both connect: one Redis or Sentinel's master; TLS */
	int freeing;               /* free() is tearing down: callbacks do nothing */

	/* a large message streaming in on sub, straight into the frame its subscribers share */
	struct hub_frame *stream; /* NULL: none */
	uint8_t *stream_at;       /* its payload */
	size_t stream_have;       /* bytes of it arrived */
	uint32_t stream_utf8;     /* utf8_feed state over them: text or binary */

	/* canary: PUBLISHed on pub, must come back on sub */
	char *probe_chan; /* <prefix>wsgate:probe:<instance_id> */
	size_t probe_len;
	uint64_t probe_nonce; /* tells our canaries from other workers' on the same channel */
	uint64_t probe_seq;   /* last canary sent */
	uint64_t probe_sent_ms;
	int probe_outstanding;        /* sent and not back yet */
	int probe_answered;           /* its PUBLISH got a reply (so the pub link works) */
	struct event *probe_timer;    /* every probe_interval */
	struct event *probe_deadline; /* probe_timeout after a send */

	/* publish FIFO and in-flight accounting of the current pub connection */
	STAILQ_HEAD(, redis_pending) queue;
	int queue_full;    /* "queue full" logged, not yet drained */
	uint64_t inflight; /* PUBLISHes sent on pub and not answered */
	uint64_t inflight_bytes;
	/* cluster mode: copies of the publishes in flight, in send order (their replies come in
	 * that order), so that one answered MOVED/ASK is sent again where the slot went */
	STAILQ_HEAD(, redis_pending) sent;

	struct broker_redis_stats st; /* counters and FIFO gauges; the getter adds link states */

	/* the process's broker: where messages go, who hears that the sub link is up */
	const struct broker_sink *sink;
	void *sink_arg;
	void (*on_sub_up)(void *arg);
	void *on_sub_up_arg;
	/* a worker's publisher: the process's broker, and where subscriptions are relayed */
	struct broker_redis *owner;
	void (*relay)(void *arg, int on, const char *channel, size_t len);
	void *relay_arg;
	/* channel history (broker_redis_history.c): which channels keep one, fetches in flight */
	struct history_store *hstore;
	struct broker_redis_history *hist;
	struct broker_redis_fill *fill; /* the process's: gaps between instances filled */
	/* cluster mode (broker_redis_cluster.c): this broker is one master's, shard its index;
	 * commands are the sharded ones (SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH) */
	struct broker_redis_cluster *cluster; /* NULL: one Redis (or Sentinel's master) */
	size_t shard;
	struct broker_redis_cluster *router; /* who routes through it (same loop): redirects */
	const char *cmd_sub, *cmd_unsub, *cmd_pub;
};

/* broker_redis.c, for cluster mode: a broker on one master (shard of cl), its links placed by
 * loc (arg cl). The process's (sink set: sub link, canary on probe_chan, fill) or a worker's
 * publisher (owner: the process's broker of the same master). */
struct broker_redis *broker_redis_shard_new(const struct broker_sink *sink, void *sink_arg,
                                            struct event_base *base, const struct config *cfg,
                                            const char *probe_chan, void (*on_sub_up)(void *arg),
                                            void *arg, struct broker_redis_cluster *cl,
                                            size_t shard, const struct redis_link_locator *loc);
struct broker_redis *broker_redis_shard_publisher(struct event_base *base, const struct config *cfg,
                                                  struct broker_redis *owner,
                                                  struct broker_redis_cluster *cl, size_t shard,
                                                  const struct redis_link_locator *loc);
/* One (S)SUBSCRIBE or (S)UNSUBSCRIBE on the sub link, when it is subscribing. */
void broker_redis_sub_command(struct broker_redis *b, const char *cmd, const char *channel,
                              size_t len);
void broker_redis_free_shard(struct broker_redis *b);
int broker_redis_shard_ready(struct broker_redis *b);
extern const struct broker_ops broker_redis_ops;

/* broker_redis_cluster.c */
extern const struct broker_ops broker_redis_cluster_ops;
struct broker *broker_redis_cluster_new(const struct broker_sink *sink, void *sink_arg,
                                        struct event_base *base, const struct config *cfg,
                                        const char *instance_id, void (*on_sub_up)(void *arg),
                                        void *arg);
struct broker *broker_redis_cluster_new_publisher(
    struct hub *hub, struct event_base *base, const struct config *cfg, struct broker *owner,
    void (*relay)(void *arg, int on, const char *channel, size_t len), void *relay_arg);
/* A node said slot is served elsewhere (MOVED, ASK) or dropped a subscription of it (a
 * migration; shard: the master that said so, asked first as it knows where the slot went):
 * the map is read again soon and the slot's wanted channels resubscribed where it
 * now lives. Any thread. */
void broker_redis_cluster_moved(struct broker_redis_cluster *cl, size_t shard, unsigned slot);
/* An SSUBSCRIBE of slot answered MOVED on shard's sub link: as above, and the next map
 * resubscribes the slot's channels even where it names the same master (one that took the
 * slot meanwhile). The process's loop only. */
void broker_redis_cluster_sub_refused(struct broker_redis_cluster *cl, size_t shard, unsigned slot);
/* 1 when channel's slot is served by shard (the channels its sub link carries). */
int broker_redis_cluster_owns(struct broker_redis_cluster *cl, size_t shard, const char *channel,
                              size_t len);
void broker_redis_cluster_set_history(struct broker *b, struct history_store *st);
struct broker_redis_fetch *broker_redis_cluster_fetch(struct broker *b, const char *channel,
                                                      size_t clen, uint64_t from, uint64_t count,
                                                      const char *epoch, broker_redis_fetch_fn fn,
                                                      void *arg);
void broker_redis_cluster_kick(struct broker *b);
/* A publish that router's child b sent was answered MOVED/ASK host:port: router takes p and
 * sends it there, in order with the channel's later publishes (or refuses it after
 * REDIS_CLUSTER_MAX_REDIRECTS). Same loop as router. */
void broker_redis_cluster_redirected(struct broker_redis_cluster *router, struct redis_pending *p,
                                     size_t from, int ask, const char *host, int port);
/* A publish of p's slot reached n receivers on master shard (SPUBLISH's answer). */
void broker_redis_cluster_receivers(struct broker_redis_cluster *router, size_t shard,
                                    const struct redis_pending *p, long long n);
/* A publish reply made room or moved a slot: held redirected publishes may go. */
void broker_redis_cluster_drain(struct broker_redis_cluster *router);
void broker_redis_cluster_stats(struct broker *b, struct broker_redis_stats *out);

/* broker_redis_pub.c */
int broker_redis_pub_writable(const struct broker_redis *b);
void broker_redis_flush(struct broker_redis *b);
int broker_redis_publish(struct broker *base, const char *channel, size_t clen, const uint8_t *data,
                         size_t len);
/* Cluster mode: a publish with the router's sequence number and redirect count; ask: the
 * send is preceded by ASKING (only when it can go out now; else -1). */
int broker_redis_publish_msg(struct broker_redis *b, const char *channel, size_t clen,
                             const uint8_t *data, size_t len, uint64_t seq, unsigned redirects,
                             int ask);
/* 1 when b has a publish of slot queued or in flight. */
int broker_redis_slot_pending(const struct broker_redis *b, unsigned slot);
void broker_redis_sent_free(struct broker_redis *b);
void broker_redis_probe_tick(evutil_socket_t fd, short what, void *arg);
void broker_redis_probe_overdue(evutil_socket_t fd, short what, void *arg);

#endif
