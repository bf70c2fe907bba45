/* broker_redis_cluster.c - the Redis broker on a Redis Cluster ([redis] cluster = yes): the
 * slot map read with CLUSTER SLOTS from the seeds (or any master known), one ordinary Redis
 * broker per master (broker_redis.c in sharded mode: its own sub link carrying only its slots'
 * channels with SSUBSCRIBE, its pub link with SPUBLISH and the history function, its canary on
 * a channel of its own slots), channels and publishes routed by hash slot.
 *
 * Threads: the process's cluster broker lives on worker 0's loop, with its per-master brokers,
 * the map link and the refresh timer. Each worker's publisher makes its own per-master
 * publishers (pub link only) as it first needs them, on its own loop. The map is the shared
 * state: the slot table is read without a lock (one atomic 16-bit load per lookup), the
 * masters' addresses under lock (read only when a link connects).
 *
 * Following the cluster: a master's links that fail ask for the map again (a failover: the
 * replica that took over is found by its node id among the old master's replicas, and the
 * links of that master alone reconnect and resubscribe); a MOVED/ASK answer or a sunsubscribe
 * push asks for the map again as well; every slot whose master changed between two maps has
 * its wanted channels subscribed on the new one (Redis itself drops them on the old one). The
 * map is also read every CL_REFRESH_MS. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "broker_redis_cluster_int.h"
#include "broker_redis_int.h"
#include "broker_redis_fill.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "redis_cluster.h"
#include "redis_link.h"
#include "redis_sentinel.h"

static void cl_refresh(struct broker_redis_cluster *cl);

int
broker_redis_cluster_owns(struct broker_redis_cluster *cl, size_t shard, const char *channel,
                          size_t len)
{
	return cl_shard_of(cl, channel, len) == shard;
}

void
broker_redis_cluster_moved(struct broker_redis_cluster *cl, size_t shard, unsigned slot)
{
	(void)slot; /* the next map says where every slot went; the diff resubscribes */
	METRIC_ADD(cl->redirects, 1);
	/* The master that gave a slot away knows at once where it went; the others (and the
	 * replicas among the seeds) learn it by gossip, up to a node timeout later. */
	__atomic_store_n(&cl->ask_shard, shard + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&cl->want, 1, __ATOMIC_RELEASE);
}

/* A master answered an SSUBSCRIBE of slot with MOVED: it does not serve the slot, or not yet
 * (an importing master before its own SETSLOT NODE). The next map resubscribes the slot's
 * channels wherever it says, even on this same master: read from a master that took the slot
 * meanwhile, that map shows no change, and the diff alone would leave the channel subscribed
 * nowhere, its clients silently without messages. On the process's loop (a sub link). */
void
broker_redis_cluster_sub_refused(struct broker_redis_cluster *cl, size_t shard, unsigned slot)
{
	if (slot < REDIS_CLUSTER_SLOTS)
		cl->resub[slot / 64] |= 1ull << (slot % 64);
	broker_redis_cluster_moved(cl, shard, slot);
}

/* ---- where a master's links connect (any thread) ---- */

static int
cl_locate(void *arg, struct redis_link *l, const char **host, int *port)
{
	static _Thread_local char buf[256];
	struct broker_redis_cluster *cl = arg;
	struct broker_redis *b = l->owner;

	pthread_mutex_lock(&cl->lock);
	snprintf(buf, sizeof(buf), "%s", cl->shards[b->shard].host);
	*port = cl->shards[b->shard].port;
	pthread_mutex_unlock(&cl->lock);
	*host = buf;
	return buf[0] != '\0' ? 0 : -1;
}

/* A master's link failed: perhaps a failover; the map says. */
static void
cl_lost(void *arg, struct redis_link *l, const char *why)
{
	struct broker_redis_cluster *cl = arg;

	(void)l, (void)why;
	__atomic_store_n(&cl->want, 1, __ATOMIC_RELEASE);
}

static const struct redis_link_locator cl_master_loc = {
    .locate = cl_locate,
    .lost = cl_lost,
};

/* The map link: the seeds, then the masters known, in turn (a seed that left the cluster does
 * not stop wsgate from following it). */
static int
cl_locate_ctl(void *arg, struct redis_link *l, const char **host, int *port)
{
	struct broker_redis_cluster *cl = arg;
	size_t n = cl->nseeds + __atomic_load_n(&cl->nshards, __ATOMIC_ACQUIRE);
	size_t i = cl->next++ % n;

	(void)l;
	if (i < cl->nseeds) {
		*host = cl->seeds[i];
		*port = cl->seed_ports[i];
	} else {
		/* Written only on this loop (cl_apply): no lock needed to read here. */
		*host = cl->shards[i - cl->nseeds].host;
		*port = cl->shards[i - cl->nseeds].port;
	}
	return 0;
}

static const struct redis_link_locator cl_ctl_loc = {
    .locate = cl_locate_ctl,
    .lost = NULL,
};

/* ---- applying a map ---- */

/* Which of our masters node i of m is: the same id, the master it replicated (a failover),
 * the same address, or a new one. -1: no room. */
static int
cl_match(struct broker_redis_cluster *cl, const struct redis_cluster_node *n, const int *used)
{
	size_t ns = cl->nshards;

	for (size_t s = 0; s < ns; s++)
		if (!used[s] && n->id[0] != '\0' && strcmp(cl->shards[s].id, n->id) == 0)
			return (int)s;
	for (size_t s = 0; s < ns; s++)
		for (size_t r = 0; r < cl->shards[s].nreplicas && n->id[0] != '\0'; r++)
			if (!used[s] && strcmp(cl->shards[s].replicas[r], n->id) == 0)
				return (int)s;
	for (size_t s = 0; s < ns; s++)
		if (!used[s] && cl->shards[s].port == n->port &&
		    strcmp(cl->shards[s].host, n->host) == 0)
			return (int)s;
	return ns < CL_MAX ? (int)ns : -1;
}

struct cl_rehome {
	struct broker_redis_cluster *cl;
	size_t moved;
};

/* A wanted channel whose slot changed master: subscribed on the new one now (a master whose
 * sub link is not up yet subscribes it with all its others). */
static void
cl_rehome_one(void *arg, const char *name, size_t len)
{
	struct cl_rehome *rh = arg;
	struct broker_redis_cluster *cl = rh->cl;
	unsigned slot = redis_cluster_keyslot(name, len);
	size_t s;

	if (!(cl->homeless[slot / 64] & (1ull << (slot % 64))))
		return;
	s = cl->slot_shard[slot];
	if (s == CL_NONE || cl->child[s] == NULL)
		return;
	/* The last position delivered from the old master: what the new one got before this
	 * subscription (history publishes sent there on ASK) is read back from its stream. */
	for (size_t t = 0; t < CL_MAX && cl->child[s]->fill != NULL; t++)
		if (t != s && cl->child[t] != NULL && cl->child[t]->fill != NULL)
			broker_redis_fill_carry(cl->child[s]->fill, cl->child[t]->fill, name, len);
	broker_redis_sub_command(cl->child[s], cl->child[s]->cmd_sub, name, len);
	rh->moved++;
}

static void
cl_child_up(void *arg)
{
	struct broker_redis_cluster *cl = arg;

	if (cl->on_sub_up != NULL)
		cl->on_sub_up(cl->on_sub_up_arg);
}

/* A broker for master s (node i of m names it). */
static void
cl_make_child(struct broker_redis_cluster *cl, const struct redis_cluster_map *m, size_t i,
              size_t s)
{
	char tag[16], probe[400];
	struct broker_redis *b;

	/* The canary's channel must live on this master: a hash tag of one of its slots. */
	if (redis_cluster_tag_for(m, i, tag, sizeof(tag)) < 0)
		return;
	snprintf(probe, sizeof(probe), "%s{%s}", cl->probe_base, tag);
	if ((b = broker_redis_shard_new(cl->sink, cl->sink_arg, cl->evbase, cl->cfg, probe,
	                                cl_child_up, cl, cl, s, &cl_master_loc)) == NULL) {
		log_warnx("redis cluster: no broker for master %s:%d (out of memory)",
		          cl->shards[s].host, cl->shards[s].port);
		return;
	}
	b->hstore = cl->hstore;
	b->router = cl;
	__atomic_store_n(&cl->child[s], b, __ATOMIC_RELEASE);
	log_info("redis cluster: master %s:%d (%zu slots), canary on %s", cl->shards[s].host,
	         cl->shards[s].port, cl->shards[s].nslots, probe);
}

static void
cl_apply(struct broker_redis_cluster *cl, const struct redis_cluster_map *m)
{
	int nodemap[CL_MAX], used[CL_MAX] = {0}, moved_addr[CL_MAX] = {0};
	size_t nslots[CL_MAX] = {0}, changed = 0, refused = 0, ns;
	struct cl_rehome rh = {.cl = cl};

	pthread_mutex_lock(&cl->lock);
	for (size_t i = 0; i < m->nnodes; i++) {
		const struct redis_cluster_node *n = &m->nodes[i];
		int s = cl_match(cl, n, used);
		struct cl_shard *sh;

		nodemap[i] = s;
		if (s < 0)
			continue;
		used[s] = 1;
		sh = &cl->shards[s];
		if ((size_t)s == cl->nshards)
			__atomic_store_n(&cl->nshards, cl->nshards + 1, __ATOMIC_RELEASE);
		else if (sh->port != n->port || strcmp(sh->host, n->host) != 0)
			moved_addr[s] = 1;
		snprintf(sh->host, sizeof(sh->host), "%s", n->host);
		sh->port = n->port;
		memcpy(sh->id, n->id, sizeof(sh->id));
		sh->nreplicas = n->nreplicas;
		memcpy(sh->replicas, n->replicas, sizeof(sh->replicas));
	}
	for (size_t slot = 0; slot < REDIS_CLUSTER_SLOTS; slot++) {
		uint16_t to = CL_NONE;

		if (m->slot[slot] != REDIS_CLUSTER_NONE && nodemap[m->slot[slot]] >= 0)
			to = (uint16_t)nodemap[m->slot[slot]];
		if (to != CL_NONE)
			nslots[to]++;
		if (to != cl->slot_shard[slot]) {
			if (__atomic_load_n(&cl->have_map, __ATOMIC_RELAXED))
				cl->homeless[slot / 64] |= 1ull << (slot % 64);
			__atomic_store_n(&cl->slot_shard[slot], to, __ATOMIC_RELEASE);
			changed++;
		}
	}
	ns = cl->nshards;
	for (size_t s = 0; s < ns; s++)
		__atomic_store_n(&cl->shards[s].nslots, nslots[s], __ATOMIC_RELEASE);
	pthread_mutex_unlock(&cl->lock);
	for (size_t i = 0; i < REDIS_CLUSTER_SLOTS / 64; i++) {
		refused += cl->resub[i] != 0;
		cl->homeless[i] |= cl->resub[i];
		cl->resub[i] = 0;
	}

	if (changed > 0 || !cl->have_map)
		log_info("redis cluster: map of %zu master(s), %zu slot(s) changed master",
		         m->nnodes, changed);
	__atomic_store_n(&cl->have_map, 1, __ATOMIC_RELEASE);
	for (size_t i = 0; i < m->nnodes; i++) {
		int s = nodemap[i];

		if (s < 0)
			continue;
		if (cl->child[s] == NULL) {
			cl_make_child(cl, m, i, (size_t)s);
		} else if (moved_addr[s]) {
			/* A replica took over: this master's links (and only these) go there now
			 * and resubscribe its channels. */
			log_info("redis cluster: master of %zu slot(s) is now %s:%d", nslots[s],
			         cl->shards[s].host, cl->shards[s].port);
			redis_link_close(&cl->child[s]->sub, "the cluster moved this master");
			redis_link_close(&cl->child[s]->pub, "the cluster moved this master");
			redis_link_kick(&cl->child[s]->sub, 1);
			redis_link_kick(&cl->child[s]->pub, 1);
		} else {
			/* Its links may be waiting out a backoff for the master the map names. */
			if (cl->child[s]->sub.state == REDIS_LINK_DOWN)
				redis_link_kick(&cl->child[s]->sub, 0);
		}
	}
	if ((changed > 0 || refused > 0) && cl->sink != NULL) {
		cl->sink->foreach_channel(cl->sink_arg, cl_rehome_one, &rh);
		if (rh.moved > 0)
			log_info("redis cluster: %zu channel(s) resubscribed on their new master",
			         rh.moved);
	}
	memset(cl->homeless, 0, sizeof(cl->homeless));
}

/* ---- the map link ---- */

/* arg is cl: the map may be asked on a master's pub link as well as on ctl. */
static void
cl_on_slots(struct redis_link *l, const redisReply *r, void *arg)
{
	struct broker_redis_cluster *cl = arg;
	struct redis_cluster_map *m;
	const char *why = NULL;
	int covered;

	if (cl->freeing)
		return;
	cl->refreshing = 0;
	METRIC_ADD(cl->refreshes, 1);
	if (l != &cl->ctl) {
		/* A master's pub link: its own health is its broker's business. Anything but a
		 * map sends the question to ctl. */
		if (r->type != REDIS_REPLY_ARRAY || (m = malloc(sizeof(*m))) == NULL) {
			__atomic_store_n(&cl->want, 1, __ATOMIC_RELEASE);
			return;
		}
		if (redis_cluster_parse_slots(r, m, &why) > 0)
			cl_apply(cl, m);
		else
			__atomic_store_n(&cl->want, 1, __ATOMIC_RELEASE);
		free(m);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		char reason[256];

		/* Not a cluster node, or the cluster is down: ask the next node. */
		snprintf(reason, sizeof(reason), "CLUSTER SLOTS refused: %.*s",
		         (int)(r->len < 200 ? r->len : 200), r->str);
		redis_link_close(l, reason);
		return;
	}
	if ((m = malloc(sizeof(*m))) == NULL)
		return;
	if ((covered = redis_cluster_parse_slots(r, m, &why)) < 0) {
		free(m);
		redis_link_fail(l, why);
		return;
	}
	if (covered == 0) {
		free(m);
		redis_link_close(l, "CLUSTER SLOTS: no slot served");
		return;
	}
	cl_apply(cl, m);
	free(m);
}

static void
cl_refresh(struct broker_redis_cluster *cl)
{
	const char *argv[2] = {"CLUSTER", "SLOTS"};
	size_t lens[2] = {7, 5};
	size_t ask = __atomic_exchange_n(&cl->ask_shard, 0, __ATOMIC_ACQ_REL);
	struct broker_redis *b = ask > 0 && ask <= CL_MAX ? cl->child[ask - 1] : NULL;

	if (cl->refreshing)
		return;
	if (b != NULL && b->pub.state == REDIS_LINK_UP) {
		__atomic_store_n(&cl->want, 0, __ATOMIC_RELEASE);
		cl->last_refresh_ms = redis_link_now_ms();
		if (redis_link_command(&b->pub, 2, argv, lens, cl_on_slots, cl) == 0) {
			cl->refreshing = 1;
			return;
		}
	}
	if (cl->ctl.state != REDIS_LINK_UP)
		return;
	__atomic_store_n(&cl->want, 0, __ATOMIC_RELEASE);
	cl->last_refresh_ms = redis_link_now_ms();
	if (redis_link_command(&cl->ctl, 2, argv, lens, cl_on_slots, cl) != 0) {
		redis_link_close(&cl->ctl, "CLUSTER SLOTS could not be queued");
		return;
	}
	cl->refreshing = 1;
}

static void
cl_on_auth(struct redis_link *l, const redisReply *r, void *arg)
{
	struct broker_redis_cluster *cl = l->owner;
	char reason[256];

	(void)arg;
	if (cl->freeing || l->state != REDIS_LINK_HANDSHAKE)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(reason, sizeof(reason), "AUTH refused: %.*s", (int)r->len, r->str);
		redis_link_close(l, reason);
	} else if (r->type != REDIS_REPLY_STATUS) {
		redis_link_fail(l, "AUTH answered with neither a status nor an error");
	} else if (redis_link_up(l) == 0) {
		cl_refresh(cl);
	}
}

static void
cl_ctl_connected(struct redis_link *l)
{
	struct broker_redis_cluster *cl = l->owner;
	const char *pw = cl->cfg->redis.password;
	const char *argv[2] = {"AUTH", pw};
	size_t lens[2] = {4, pw != NULL ? strlen(pw) : 0};

	if (cl->freeing)
		return;
	if (pw != NULL) {
		if (redis_link_command(l, 2, argv, lens, cl_on_auth, NULL) != 0)
			redis_link_close(l, "AUTH could not be queued");
	} else if (redis_link_up(l) == 0) {
		cl_refresh(cl);
	}
}

static void
cl_ctl_down(struct redis_link *l, enum redis_link_state was, char *extra, size_t n)
{
	struct broker_redis_cluster *cl = l->owner;

	(void)was, (void)extra, (void)n;
	cl->refreshing = 0;
}

static const struct redis_link_ops cl_ctl_ops = {
    .connected = cl_ctl_connected,
    .push = NULL,
    .down = cl_ctl_down,
};

static void
cl_tick(evutil_socket_t fd, short what, void *arg)
{
	struct broker_redis_cluster *cl = arg;
	uint64_t now = redis_link_now_ms();

	(void)fd, (void)what;
	/* A question asked on a master's pub link dies unanswered with that link (its FIFO is
	 * dropped, no callback runs): after a refresh period it no longer counts. */
	if (cl->refreshing && now - cl->last_refresh_ms >= CL_REFRESH_MS)
		cl->refreshing = 0;
	if (__atomic_load_n(&cl->want, __ATOMIC_ACQUIRE) ||
	    now - cl->last_refresh_ms >= CL_REFRESH_MS)
		cl_refresh(cl);
}

/* ---- the config copy ---- */

static void
cl_cfg_free(struct config *c)
{
	if (c == NULL)
		return;
	free(c->redis.password);
	free(c->redis.channel_prefix);
	free(c->redis.ca_file);
	free(c->redis.cert);
	free(c->redis.key);
	free(c->redis.tls_server_name);
	free(c);
}

#define CL_DUP(f) (src->redis.f != NULL && (c->redis.f = strdup(src->redis.f)) == NULL)

static struct config *
cl_cfg_copy(const struct config *src)
{
	struct config *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->redis = src->redis;
	c->redis.url = c->redis.sentinels = c->redis.master_name = c->redis.nodes = NULL;
	c->redis.password = c->redis.channel_prefix = c->redis.ca_file = c->redis.cert =
	    c->redis.key = c->redis.tls_server_name = NULL;
	if (CL_DUP(password) || CL_DUP(channel_prefix) || CL_DUP(ca_file) || CL_DUP(cert) ||
	    CL_DUP(key) || CL_DUP(tls_server_name)) {
		cl_cfg_free(c);
		return NULL;
	}
	return c;
}

/* ---- the broker ---- */

struct broker_redis *
broker_redis_cluster_child_at(struct broker_redis_cluster *cl, size_t s)
{
	struct broker_redis_cluster *sh = cl_shared(cl);
	struct broker_redis *owner, *b;

	if (s >= CL_MAX)
		return NULL;
	if (cl->owner == NULL)
		return __atomic_load_n(&cl->child[s], __ATOMIC_ACQUIRE);
	if ((b = cl->pchild[s]) != NULL)
		return b;
	if ((owner = __atomic_load_n(&sh->child[s], __ATOMIC_ACQUIRE)) == NULL)
		return NULL;
	if ((b = broker_redis_shard_publisher(cl->evbase, sh->cfg, owner, sh, s, &cl_master_loc)) ==
	    NULL)
		return NULL;
	b->hstore = cl->hstore;
	b->router = cl;
	cl->pchild[s] = b;
	return b;
}

/* The per-master broker a channel goes through. */
static struct broker_redis *
cl_route(struct broker_redis_cluster *cl, const char *channel, size_t len)
{
	size_t s = cl_shard_of(cl_shared(cl), channel, len);

	return s == CL_NONE ? NULL : broker_redis_cluster_child_at(cl, s);
}

static int
cl_subscribe(struct broker *base, const char *channel, size_t len)
{
	struct broker_redis_cluster *cl = (struct broker_redis_cluster *)base;
	struct broker_redis *b;

	if (cl->relay != NULL) {
		cl->relay(cl->relay_arg, 1, channel, len);
		return 0;
	}
	/* No master known yet: the first map's brokers subscribe what the sink holds. */
	if ((b = cl_route(cl, channel, len)) != NULL)
		return b->base.ops->subscribe(&b->base, channel, len);
	return 0;
}

static void
cl_unsubscribe(struct broker *base, const char *channel, size_t len)
{
	struct broker_redis_cluster *cl = (struct broker_redis_cluster *)base;
	struct broker_redis *b;

	if (cl->relay != NULL)
		cl->relay(cl->relay_arg, 0, channel, len);
	else if ((b = cl_route(cl, channel, len)) != NULL)
		b->base.ops->unsubscribe(&b->base, channel, len);
}

/* Holds a publish of slot (a copy) until broker_redis_cluster_drain sends it where the map
 * says: behind a held one of its slot, or while no master serves the slot (want_subs 0), or,
 * the slot having moved, until the new master has want_subs subscribers of its channel
 * (bounded by two refresh periods). -1: refused (the held bytes would pass publish_queue, or
 * no memory); the caller counts it. */
static int
cl_hold(struct broker_redis_cluster *cl, const char *channel, size_t clen, const uint8_t *data,
        size_t len, uint64_t seq, unsigned slot, uint32_t want_subs)
{
	uint64_t cap = cl_shared(cl)->cfg->redis.publish_queue;
	struct cl_held *h;

	if (clen + len > cap - (cl->held_bytes < cap ? cl->held_bytes : cap) ||
	    (h = calloc(1, sizeof(*h))) == NULL)
		return -1;
	if ((h->p = malloc(sizeof(*h->p) + clen + len)) == NULL) {
		free(h);
		return -1;
	}
	h->p->clen = clen, h->p->len = len, h->p->seq = seq, h->p->redirects = 0;
	memcpy(h->p->buf, channel, clen);
	if (len > 0)
		memcpy(h->p->buf + clen, data, len);
	h->slot = slot;
	h->from = CL_NONE;
	h->want_subs = want_subs;
	h->subs_ok = want_subs == 0;
	h->since_ms = redis_link_now_ms();
	broker_redis_cluster_held_insert(cl, h);
	broker_redis_cluster_drain(cl);
	return 0;
}

static int
cl_publish(struct broker *base, const char *channel, size_t clen, const uint8_t *data, size_t len)
{
	struct broker_redis_cluster *cl = (struct broker_redis_cluster *)base;
	struct broker_redis *b = cl_route(cl, channel, clen);
	unsigned slot = redis_cluster_keyslot(channel, clen);
	uint64_t seq = ++cl->seq;

	/* A slot with a redirected publish held: this one waits behind it (bounded like the
	 * publish queue; refused, the client is told, when full). */
	if (!STAILQ_EMPTY(&cl->held) && broker_redis_cluster_held_has(cl, slot)) {
		if (cl_hold(cl, channel, clen, data, len, seq, slot, 0) == 0)
			return 0;
		METRIC_ADD(cl->held_refused, 1);
		return -1;
	}
	if (b == NULL) {
		/* No map yet (startup), or no master serves the slot: its master failed and the
		 * map read since names no replica in its place yet. The publish waits, as one to
		 * a single Redis that is down waits in publish_queue, until a map serves the slot
		 * (asked for now); refused, the client is told, only when that bound is full.
		 * Refused at once, a publisher in that half second of a failover was closed with
		 * 1013 (test_master_killed_replica_takes_over, 1 run in the fresh container). As
		 * for a moved slot, it goes once the new master has the subscribers the old one
		 * last counted, so that instances still resubscribing there do not lose it. */
		uint32_t want = cl->receivers[slot];

		cl->receivers[slot] = 0;
		__atomic_store_n(&cl_shared(cl)->want, 1, __ATOMIC_RELEASE);
		if (cl_hold(cl, channel, clen, data, len, seq, slot, want) == 0)
			return 0;
		METRIC_ADD(cl->unrouted, 1);
		return -1;
	}
	/* The map moved the slot since its last publish was answered (a sunsubscribe push or a
	 * refresh told this gateway before any MOVED did): the first publish to the new master
	 * waits for the channel's subscribers there, as a redirected one would; without it the
	 * other instances, resubscribing up to ~100 ms later, lost what it carried. */
	if (cl->receivers[slot] > 0 && cl->receivers_at[slot] != b->shard) {
		uint32_t want = cl->receivers[slot];

		cl->receivers[slot] = 0; /* asked once per move; the held one's answer sets it */
		if (cl_hold(cl, channel, clen, data, len, seq, slot, want) == 0)
			return 0;
		METRIC_ADD(cl->held_refused, 1);
		return -1;
	}
	return broker_redis_publish_msg(b, channel, clen, data, len, seq, 0, 0);
}

/* Every master that serves slots delivers (its canary comes back): one that does not may hold
 * channels someone wants. */
static int
cl_ready(struct broker *base)
{
	struct broker_redis_cluster *cl = cl_shared((struct broker_redis_cluster *)base);
	size_t ns = __atomic_load_n(&cl->nshards, __ATOMIC_ACQUIRE);

	if (!__atomic_load_n(&cl->have_map, __ATOMIC_ACQUIRE))
		return 0;
	for (size_t s = 0; s < ns; s++) {
		struct broker_redis *b = __atomic_load_n(&cl->child[s], __ATOMIC_ACQUIRE);

		if (__atomic_load_n(&cl->shards[s].nslots, __ATOMIC_ACQUIRE) == 0)
			continue;
		if (b == NULL || !broker_redis_shard_ready(b))
			return 0;
	}
	return 1;
}

static void
cl_free(struct broker *base)
{
	struct broker_redis_cluster *cl = (struct broker_redis_cluster *)base;

	cl->freeing = 1;
	broker_redis_cluster_held_free(cl);
	if (cl->retry != NULL)
		event_free(cl->retry);
	for (size_t s = 0; s < CL_MAX; s++) {
		broker_redis_free_shard(cl->pchild[s]);
		if (cl->owner == NULL)
			broker_redis_free_shard(cl->child[s]);
	}
	if (cl->owner == NULL) {
		redis_link_free(&cl->ctl);
		redis_endpoint_free(cl->ep);
		if (cl->tick != NULL)
			event_free(cl->tick);
		if (cl->dns != NULL)
			evdns_base_free(cl->dns, 1);
		cl_cfg_free(cl->cfg);
		pthread_mutex_destroy(&cl->lock);
	}
	free(cl);
}

const struct broker_ops broker_redis_cluster_ops = {
    .name = "redis-cluster",
    .subscribe = cl_subscribe,
    .unsubscribe = cl_unsubscribe,
    .publish = cl_publish,
    .ready = cl_ready,
    .free = cl_free,
};

struct broker *
broker_redis_cluster_new(const struct broker_sink *sink, void *sink_arg, struct event_base *base,
                         const struct config *cfg, const char *instance_id,
                         void (*on_sub_up)(void *), void *arg)
{
	const struct config_redis *rc = &cfg->redis;
	struct broker_redis_cluster *cl;
	const char *why = NULL;
	char err[256];
	int n;

	if ((cl = calloc(1, sizeof(*cl))) == NULL)
		return NULL;
	cl->base.ops = &broker_redis_cluster_ops;
	cl->evbase = base;
	STAILQ_INIT(&cl->held);
	cl->sink = sink;
	cl->sink_arg = sink_arg;
	cl->on_sub_up = on_sub_up;
	cl->on_sub_up_arg = arg;
	for (size_t s = 0; s < REDIS_CLUSTER_SLOTS; s++)
		cl->slot_shard[s] = CL_NONE;
	pthread_mutex_init(&cl->lock, NULL);
	snprintf(cl->probe_base, sizeof(cl->probe_base),
	         "%swsgate:probe:%s:", rc->channel_prefix != NULL ? rc->channel_prefix : "",
	         instance_id);
	if (rc->nodes != NULL) {
		if ((n = redis_sentinel_parse_list(rc->nodes, cl->seeds, cl->seed_ports,
		                                   REDIS_MAX_SEEDS, &why)) <= 0) {
			log_warnx("redis cluster: nodes: %s", why != NULL ? why : "empty");
			goto fail;
		}
		cl->nseeds = (size_t)n;
	} else {
		snprintf(cl->seeds[0], sizeof(cl->seeds[0]), "%s", rc->host);
		cl->seed_ports[0] = atoi(rc->port);
		cl->nseeds = 1;
	}
	if ((cl->cfg = cl_cfg_copy(cfg)) == NULL ||
	    (cl->tick = event_new(base, -1, EV_PERSIST, cl_tick, cl)) == NULL ||
	    (cl->retry = evtimer_new(base, broker_redis_cluster_retry, cl)) == NULL ||
	    redis_link_init(&cl->ctl, "cluster-map", 0, &cl_ctl_ops, cl, base, &cl->dns, "", 0,
	                    rc->connect_timeout_ms, rc->reconnect_max_ms, CL_MAX_REPLY) < 0) {
		log_warnx("redis cluster: out of memory");
		goto fail;
	}
	if ((cl->ep = redis_endpoint_new(base, &cl->dns, rc, err, sizeof(err))) == NULL) {
		log_warnx("redis cluster: %s", err);
		goto fail;
	}
	redis_endpoint_attach(cl->ep, &cl->ctl); /* TLS */
	redis_link_locate(&cl->ctl, &cl_ctl_loc, cl);
	redis_link_arm(cl->tick, CL_TICK_MS);
	log_info(
	    "redis broker: cluster, slot map from %zu node(s) (first %s:%d), sharded pub/sub%s",
	    cl->nseeds, cl->seeds[0], cl->seed_ports[0], rc->tls ? ", TLS" : "");
	redis_link_connect(&cl->ctl);
	return &cl->base;
fail:
	cl_free(&cl->base);
	return NULL;
}

struct broker *
broker_redis_cluster_new_publisher(struct hub *hub, struct event_base *base,
                                   const struct config *cfg, struct broker *owner,
                                   void (*relay)(void *, int, const char *, size_t),
                                   void *relay_arg)
{
	struct broker_redis_cluster *cl;

	(void)cfg; /* the process's copy is used: masters appear later */
	if ((cl = calloc(1, sizeof(*cl))) == NULL)
		return NULL;
	cl->base.ops = &broker_redis_cluster_ops;
	cl->base.hub = hub;
	cl->evbase = base;
	cl->owner = (struct broker_redis_cluster *)owner;
	cl->relay = relay;
	cl->relay_arg = relay_arg;
	STAILQ_INIT(&cl->held);
	if ((cl->retry = evtimer_new(base, broker_redis_cluster_retry, cl)) == NULL) {
		free(cl);
		return NULL;
	}
	return &cl->base;
}

void
broker_redis_cluster_set_history(struct broker *base, struct history_store *st)
{
	struct broker_redis_cluster *cl = (struct broker_redis_cluster *)base;

	cl->hstore = st;
	for (size_t s = 0; s < CL_MAX; s++) {
		if (cl->pchild[s] != NULL)
			cl->pchild[s]->hstore = st;
		if (cl->owner == NULL && cl->child[s] != NULL)
			cl->child[s]->hstore = st;
	}
}

struct broker_redis_fetch *
broker_redis_cluster_fetch(struct broker *base, const char *channel, size_t clen, uint64_t from,
                           uint64_t count, const char *epoch, broker_redis_fetch_fn fn, void *arg)
{
	struct broker_redis *b = cl_route((struct broker_redis_cluster *)base, channel, clen);

	if (b == NULL)
		return NULL;
	return broker_redis_fetch(&b->base, channel, clen, from, count, epoch, fn, arg);
}

/* A master's sub link is (re)synchronised: this worker's publishes held for it may go (and
 * the publishers of masters it has not used yet are made, ready for its first publish). */
void
broker_redis_cluster_kick(struct broker *base)
{
	struct broker_redis_cluster *cl = (struct broker_redis_cluster *)base;
	struct broker_redis_cluster *sh = cl_shared(cl);
	size_t ns = __atomic_load_n(&sh->nshards, __ATOMIC_ACQUIRE);

	for (size_t s = 0; s < ns; s++) {
		struct broker_redis *b = cl->owner != NULL
		                             ? cl->pchild[s]
		                             : __atomic_load_n(&cl->child[s], __ATOMIC_ACQUIRE);

		if (b != NULL)
			broker_redis_kick(&b->base);
	}
}

void
broker_redis_cluster_stats(struct broker *base, struct broker_redis_stats *out)
{
	struct broker_redis_cluster *cl = (struct broker_redis_cluster *)base;
	struct broker_redis_cluster *sh = cl_shared(cl);
	size_t ns = __atomic_load_n(&sh->nshards, __ATOMIC_ACQUIRE);
	struct broker_redis_stats rs;

	out->sub_up = out->pub_up = 1;
	for (size_t s = 0; s < ns; s++) {
		struct broker_redis *b = cl->owner != NULL
		                             ? cl->pchild[s]
		                             : __atomic_load_n(&cl->child[s], __ATOMIC_ACQUIRE);

		if (b == NULL)
			continue;
		broker_redis_stats(&b->base, &rs);
		out->reconnects += rs.reconnects;
		out->published += rs.published;
		out->queued += rs.queued;
		out->refused += rs.refused;
		out->delivered += rs.delivered;
		out->probes_lost += rs.probes_lost;
		out->unconfirmed += rs.unconfirmed;
		out->publish_errors += rs.publish_errors;
		out->oversized += rs.oversized;
		out->internal_errors += rs.internal_errors;
		out->protocol_errors += rs.protocol_errors;
		out->queue_bytes += rs.queue_bytes;
		out->queue_len += rs.queue_len;
		out->sub_up &= rs.sub_up || cl->owner != NULL;
		out->pub_up &= rs.pub_up;
	}
	out->refused_unrouted += METRIC_GET(cl->unrouted);
	out->refused_redirects += METRIC_GET(cl->redirect_refused);
	out->refused +=
	    out->refused_unrouted + out->refused_redirects + METRIC_GET(cl->held_refused);
	out->followed_moved += METRIC_GET(cl->followed_moved);
	out->followed_ask += METRIC_GET(cl->followed_ask);
	if (cl->owner == NULL)
		out->reconnects += METRIC_GET(cl->ctl.reconnects);
}
