/* broker_redis_cluster_held.c - publishes a master answered MOVED or ASK: held, with every
 * later publish of their slot (which must not overtake them), and sent again where the slot
 * went once the map names its new master and that master has the channel's subscribers (or
 * after a bound), at most REDIS_CLUSTER_MAX_REDIRECTS times each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "broker_redis_cluster_int.h"
#include "log.h"
#include "metrics.h"

/* ---- redirected publishes: sent again where the slot went, in the channel's order ---- */

int
broker_redis_cluster_held_has(struct broker_redis_cluster *cl, unsigned slot)
{
	struct cl_held *h;

	STAILQ_FOREACH(h, &cl->held, entry)
	if (h->slot == slot)
		return 1;
	return 0;
}

/* In seq order: a publish answered MOVED comes back after later ones of its slot may have
 * been held behind it. */
void
broker_redis_cluster_held_insert(struct broker_redis_cluster *cl, struct cl_held *h)
{
	struct cl_held *at = NULL, *x;

	STAILQ_FOREACH(x, &cl->held, entry)
	{
		if (x->p->seq > h->p->seq)
			break;
		at = x;
	}
	if (at == NULL)
		STAILQ_INSERT_HEAD(&cl->held, h, entry);
	else
		STAILQ_INSERT_AFTER(&cl->held, at, h, entry);
	cl->held_bytes += h->p->clen + h->p->len;
	if (!evtimer_pending(cl->retry, NULL))
		redis_link_arm(cl->retry, CL_TICK_MS);
}

static void
cl_held_remove(struct broker_redis_cluster *cl, struct cl_held *h)
{
	STAILQ_REMOVE(&cl->held, h, cl_held, entry);
	cl->held_bytes -= h->p->clen + h->p->len;
	free(h->p);
	free(h);
}

/* The master at host:port in the map, or CL_NONE (not in the map yet: it is being read). */
static size_t
cl_shard_at(struct broker_redis_cluster *sh, const char *host, int port)
{
	size_t ns = __atomic_load_n(&sh->nshards, __ATOMIC_ACQUIRE), found = CL_NONE;

	pthread_mutex_lock(&sh->lock);
	for (size_t s = 0; s < ns && found == CL_NONE; s++)
		if (sh->shards[s].port == port && strcmp(sh->shards[s].host, host) == 0)
			found = s;
	pthread_mutex_unlock(&sh->lock);
	return found;
}

void
broker_redis_cluster_redirected(struct broker_redis_cluster *cl, struct redis_pending *p,
                                size_t from, int ask, const char *host, int port)
{
	struct cl_held *h;

	if (cl->freeing) {
		free(p);
		return;
	}
	/* Bounded: a slot that keeps moving (or nodes that disagree) refuses the message. */
	if (++p->redirects > REDIS_CLUSTER_MAX_REDIRECTS || (h = calloc(1, sizeof(*h))) == NULL) {
		METRIC_ADD(cl->redirect_refused, 1);
		log_warnx(
		    "redis cluster: publish to %.*s refused after %u redirect(s) (last: %s %s:%d)",
		    (int)(p->clen < 200 ? p->clen : 200), (const char *)p->buf, p->redirects,
		    ask ? "ASK" : "MOVED", host, port);
		free(p);
		return;
	}
	METRIC_ADD(*(ask ? &cl->followed_ask : &cl->followed_moved), 1);
	h->p = p;
	h->slot = redis_cluster_keyslot((const char *)p->buf, p->clen);
	h->ask = ask;
	h->from = from;
	h->since_ms = redis_link_now_ms();
	h->want_subs = cl->receivers[h->slot];
	h->subs_ok = ask || h->want_subs == 0;
	h->port = port;
	snprintf(h->host, sizeof(h->host), "%s", host);
	broker_redis_cluster_held_insert(cl, h);
}

/* 1 when one of cl's per-master brokers but to still has a publish of slot out or queued:
 * its answer may be another redirect, which must go before the held ones behind it (to's
 * own are ahead in its FIFO, and come back in order if redirected again). */
static int
cl_slot_pending(struct broker_redis_cluster *cl, unsigned slot, size_t to)
{
	for (size_t s = 0; s < CL_MAX; s++) {
		if (s == to)
			continue;
		struct broker_redis *b = cl->owner != NULL
		                             ? cl->pchild[s]
		                             : __atomic_load_n(&cl->child[s], __ATOMIC_ACQUIRE);

		if (b != NULL && broker_redis_slot_pending(b, slot))
			return 1;
	}
	return 0;
}

/* Where a held publish goes, or CL_NONE to wait (redis_cluster_resend_to says why); a map
 * that does not follow is waited for two refresh periods. */
static size_t
cl_held_target(struct broker_redis_cluster *cl, const struct cl_held *h)
{
	struct broker_redis_cluster *sh = cl_shared(cl);
	size_t map = cl_shard_of(sh, (const char *)h->p->buf, h->p->clen);
	size_t named = h->from != CL_NONE ? cl_shard_at(sh, h->host, h->port) : CL_NONE;

	return redis_cluster_resend_to(h->ask, (unsigned)h->from, (unsigned)named, (unsigned)map,
	                               redis_link_now_ms() - h->since_ms, 2 * CL_REFRESH_MS);
}

void
broker_redis_cluster_receivers(struct broker_redis_cluster *cl, size_t shard,
                               const struct redis_pending *p, long long n)
{
	unsigned slot = redis_cluster_keyslot((const char *)p->buf, p->clen);

	if (cl->freeing || n < 0)
		return;
	cl->receivers[slot] = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
	cl->receivers_at[slot] = (uint16_t)shard;
}

/* PUBSUB SHARDNUMSUB's answer for a held publish (arg: its query): [channel, n]. The held
 * publish may have gone (sent after the wait, or freed): then nothing to do. */
static void
cl_on_numsub(struct redis_link *l, const redisReply *r, void *arg)
{
	struct broker_redis *b = l->owner;
	struct broker_redis_cluster *cl = b->router;
	struct cl_held *h;

	if (b->freeing || cl == NULL || cl->freeing)
		return;
	STAILQ_FOREACH(h, &cl->held, entry)
	if (h->query == (uint64_t)(uintptr_t)arg)
		break;
	if (h == NULL)
		return;
	h->query = 0; /* asked again on the next retry tick unless enough now */
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[1]->type == REDIS_REPLY_INTEGER && r->element[1]->integer >= 0 &&
	    (uint64_t)r->element[1]->integer >= h->want_subs)
		h->subs_ok = 1;
	broker_redis_cluster_drain(cl);
}

/* 1 when h may go to b now; else its question is asked (once at a time) and it waits, for at
 * most two refresh periods (then it goes: an instance that left, or a channel of the slot
 * with fewer subscribers, must not hold it longer). */
static int
cl_held_subs_ok(struct broker_redis_cluster *cl, struct cl_held *h, struct broker_redis *b)
{
	const char *argv[3] = {"PUBSUB", "SHARDNUMSUB", (const char *)h->p->buf};
	size_t lens[3] = {6, 11, h->p->clen};
	uint64_t q;

	if (h->subs_ok || redis_link_now_ms() - h->since_ms >= 2 * CL_REFRESH_MS)
		return 1;
	if (h->query != 0 || b->pub.state != REDIS_LINK_UP)
		return 0;
	q = ++cl->query_seq;
	if (redis_link_command(&b->pub, 3, argv, lens, cl_on_numsub, (void *)(uintptr_t)q) == 0)
		h->query = q;
	return 0;
}

void
broker_redis_cluster_drain(struct broker_redis_cluster *cl)
{
	uint64_t blocked[REDIS_CLUSTER_SLOTS / 64] = {0};
	struct cl_held *h, *next;

	/* Every publish reply comes here: nothing held is the common case (a pending retry
	 * timer then finds nothing either). */
	if (cl->freeing || STAILQ_EMPTY(&cl->held))
		return;
	for (h = STAILQ_FIRST(&cl->held); h != NULL; h = next) {
		struct redis_pending *p = h->p;
		struct broker_redis *b;
		size_t s;
		int rc;

		next = STAILQ_NEXT(h, entry);
		if (blocked[h->slot / 64] & (1ull << (h->slot % 64)))
			continue;
		s = cl_held_target(cl, h);
		if (s == CL_NONE || cl_slot_pending(cl, h->slot, s) ||
		    (b = broker_redis_cluster_child_at(cl, s)) == NULL ||
		    !cl_held_subs_ok(cl, h, b)) {
			blocked[h->slot / 64] |= 1ull << (h->slot % 64);
			continue;
		}
		rc = broker_redis_publish_msg(b, (const char *)p->buf, p->clen, p->buf + p->clen,
		                              p->len, p->seq, p->redirects, h->ask);
		if (rc != 0 && h->ask) { /* ASKING + command when its link takes them: wait */
			blocked[h->slot / 64] |= 1ull << (h->slot % 64);
			continue;
		}
		/* rc != 0 otherwise: that master's queue is full, the refusal counted and logged */
		cl_held_remove(cl, h);
	}
	if (STAILQ_EMPTY(&cl->held))
		event_del(cl->retry);
	else if (!evtimer_pending(cl->retry, NULL))
		redis_link_arm(cl->retry, CL_TICK_MS);
}

void
broker_redis_cluster_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	broker_redis_cluster_drain(arg);
}

void
broker_redis_cluster_held_free(struct broker_redis_cluster *cl)
{
	struct cl_held *h;

	while ((h = STAILQ_FIRST(&cl->held)) != NULL)
		cl_held_remove(cl, h);
}
