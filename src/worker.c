/* worker.c - an event loop on its own thread and its owned state: listeners, live and dead
 * connections, hub, broker, pools. Connections are never freed inside their own callbacks:
 * conn_close() parks them on the dead list and the reaper event, run by the loop after the
 * current callbacks return, frees them. Other threads reach a worker only through its mailbox. */
#include "worker.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "broker.h"
#include "broker_redis.h"
#include "config.h"
#include "mailbox.h"
#include "router.h"
#include "heap.h"
#include "heartbeat.h"
#include "timer_wheel.h"
#include "hub.h"
#include "target.h"
#include "upstream.h"
#include "ws_deflate.h"
#include "listener.h"
#include "log.h"

/* Messages published on other workers' in-process hubs that may wait for this one. Beyond, a
 * worker that cannot keep up misses them (counted, and the publisher's client is told). */
#define WORKER_BUS_LIMIT (64u << 20)
#define WORKER_SAMPLE_MS 1000

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
		w->churn++;
	}
	if (w->draining && w->nconns == 0 && !w->idle_reported) {
		w->idle_reported = 1;
		w->owner->idle(w->owner->arg, w);
	}
}

/* Scratch kept between messages; more is freed by the sampler. */
#define WORKER_SCRATCH_KEEP (64 * 1024)

/* After a burst of new connections the heap holds, free but resident, what their handshakes
 * used for a moment (a TLS handshake's record buffers and messages, ~40 KB while it lasts, in
 * holes between the connections that stay); after a wave of closes it holds what the closed
 * connections held. gateway.c's trim threshold keeps glibc from giving either back by itself.
 * Once WORKER_TRIM_CHURN connections came or went and a whole sampling period went by without
 * one coming or going, heap_trim() (malloc_trim) gives the free pages back (issue #12: 15,000
 * idle wss:// connections, see bench/results/tls-idle-memory.md). Closes count as much as
 * opens: before they did, the memory of clients that left after the last trim stayed resident
 * until 64 new ones came (test_tls.py test_heap_trimmed_after_a_wave_of_closes). A steady
 * trickle trims once per WORKER_TRIM_CHURN connections at most; a fan-out burst's chains are
 * not touched while it lasts.
 */
#define WORKER_TRIM_CHURN 64

static void
worker_trim(struct worker *w)
{
	if (w->churn >= WORKER_TRIM_CHURN && w->churn == w->churn_seen) {
		heap_trim();
		w->churn = 0;
		METRIC_ADD(w->stats.heap_trims, 1);
	}
	w->churn_seen = w->churn;
}

/* Gauges published once a second from where the connections live. The bytes queued to clients
 * are kept up to date by their queues (ws_outq_gauge): a walk of every connection here was ~7%
 * of an idle gateway's CPU at 15,000 connections (perf, issue #12). */
static void
worker_sample(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	METRIC_SET(w->stats.queued, w->out_queued);
	/* The scratch buffer grows to the largest message ever built in it: a large one is given
	 * back here, between loop turns, where no caller holds it, once a whole sampling period
	 * went by without it being asked for (a steady stream of large envelopes keeps it). */
	if (w->scratch_cap > WORKER_SCRATCH_KEEP && !w->scratch_used) {
		free(w->scratch);
		w->scratch = NULL;
		w->scratch_cap = 0;
	}
	w->scratch_used = 0;
	METRIC_SET(w->stats.scratch_bytes, w->scratch_cap);
	worker_trim(w);
}

/* Loop lag: a timer due every WORKER_LAG_MS notes how late it ran. A loop turn that takes long
 * (a large message handled at once, say) delays every client of this worker by as much. */
#define WORKER_LAG_MS 50

/* CLOCK_MONOTONIC for the lag; CLOCK_THREAD_CPUTIME_ID for the loop's own work since the last
 * tick (preemption by other processes does not count, page faults and copies do). */
static uint64_t
worker_clock_us(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
worker_lag_arm(struct worker *w)
{
	struct timeval tv = {0, WORKER_LAG_MS * 1000};

	w->lag_due_us = worker_clock_us(CLOCK_MONOTONIC) + WORKER_LAG_MS * 1000u;
	event_add(w->lagger, &tv);
}

static void
worker_lag(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t now = worker_clock_us(CLOCK_MONOTONIC);
	uint64_t cpu = worker_clock_us(CLOCK_THREAD_CPUTIME_ID);
	uint64_t lag = now > w->lag_due_us ? now - w->lag_due_us : 0, busy = 0;

	(void)fd;
	(void)what;
	/* Of the lag, what this loop's own work explains: CPU used since the last tick beyond
	 * the interval (a long turn of our own), never more than the lag. A loop that was only
	 * waiting for a CPU (a busy machine) is late without being busy. */
	if (w->lag_cpu_us != 0 && cpu - w->lag_cpu_us > WORKER_LAG_MS * 1000u)
		busy = cpu - w->lag_cpu_us - WORKER_LAG_MS * 1000u;
	metrics_lag(&w->stats, lag, busy < lag ? busy : lag);
	w->lag_cpu_us = cpu;
	worker_lag_arm(w);
}

static void
worker_message(void *arg, unsigned type, const void *a, size_t alen, const void *b, size_t blen)
{
	struct worker *w = arg;
	const struct config *cfg;
	uint64_t ms;

	if (type == WORKER_MSG_PUBLISH_FRAME) {
		struct worker_frame_msg fm;

		if (blen != sizeof(fm))
			return;
		memcpy(&fm, b, sizeof(fm));
		if (!w->freeing && w->hub != NULL)
			hub_deliver_frame(w->hub, a, alen, fm.f, fm.is_text);
		hub_frame_unref(fm.f);
		return;
	}
	if (w->freeing && type != WORKER_MSG_CONFIG)
		return; /* only references to give back */
	switch ((enum worker_msg)type) {
	case WORKER_MSG_CONFIG:
		memcpy(&cfg, a, sizeof(cfg));
		config_release(w->cfg);
		w->cfg = cfg; /* the reference came with the message */
		if (!w->freeing && blen == sizeof(uint64_t)) {
			uint64_t gen;

			memcpy(&gen, b, sizeof(gen));
			w->owner->config_taken(w->owner->arg, gen);
		}
		break;
	case WORKER_MSG_DRAIN:
		memcpy(&ms, a, sizeof(ms));
		worker_drain(w, ms);
		break;
	case WORKER_MSG_STOP:
		event_base_loopbreak(w->base);
		break;
	case WORKER_MSG_PUBLISH:
		if (w->hub != NULL)
			hub_deliver(w->hub, a, alen, b, blen);
		break;
	case WORKER_MSG_PUBLISH_FRAME:
		break; /* handled above */
	case WORKER_MSG_REDIS_UP:
		broker_redis_kick(w->broker);
		break;
	case WORKER_MSG_SUBSCRIBE:
	case WORKER_MSG_UNSUBSCRIBE:
		if (alen == sizeof(struct worker_want) && *w->owner->router != NULL) {
			struct worker_want want;

			memcpy(&want, a, sizeof(want));
			if (type == WORKER_MSG_SUBSCRIBE)
				router_subscribe_gen(*w->owner->router, want.worker, b, blen,
				                     want.gen);
			else
				router_unsubscribe(*w->owner->router, want.worker, b, blen);
		}
		break;
	case WORKER_MSG_LIVE:
		if (alen == sizeof(uint64_t) && w->hub != NULL) {
			uint64_t gen;

			memcpy(&gen, a, sizeof(gen));
			hub_confirmed(w->hub, b, blen, gen);
		}
		break;
	}
}

/* epoll with the change list: an event enabled and disabled within one loop turn (a
 * bufferevent arming EV_WRITE for output it then writes) costs no epoll_ctl at all. Safe here:
 * no descriptor is ever dup()ed while registered. */
static struct event_base *
worker_base_new(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;

	if (ec == NULL)
		return NULL;
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	return base;
}

static void worker_env_init(struct worker *w);

struct worker *
worker_new(const struct worker_owner *owner, int id, const struct config *cfg)
{
	struct worker *w;
	struct timeval tv = {WORKER_SAMPLE_MS / 1000, (WORKER_SAMPLE_MS % 1000) * 1000};

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->owner = owner;
	w->id = id;
	w->cfg = config_hold(cfg);
	LIST_INIT(&w->conns);
	LIST_INIT(&w->dead);
	if ((w->base = worker_base_new()) == NULL ||
	    (w->reaper = event_new(w->base, -1, 0, worker_reap, w)) == NULL ||
	    (w->sampler = event_new(w->base, -1, EV_PERSIST, worker_sample, w)) == NULL ||
	    (w->lagger = evtimer_new(w->base, worker_lag, w)) == NULL ||
	    (w->wheel = timer_wheel_new(w->base)) == NULL ||
	    (w->mbox = mailbox_new(w->base, worker_message, w, WORKER_BUS_LIMIT)) == NULL) {
		log_warnx("worker %d: cannot set up its event loop", id);
		worker_free(w);
		return NULL;
	}
	event_add(w->sampler, &tv);
	worker_lag_arm(w);
	worker_env_init(w);
	return w;
}

int
worker_post(struct worker *w, enum worker_msg type, const void *a, size_t alen, const void *b,
            size_t blen)
{
	return mailbox_post(w->mbox, type, a, alen, b, blen, type == WORKER_MSG_PUBLISH);
}

static void *
worker_thread(void *arg)
{
	struct worker *w = arg;

	if (event_base_dispatch(w->base) < 0)
		log_warnx("worker %d: event loop failed", w->id);
	ws_deflate_thread_free(); /* this thread's compressors */
	return NULL;
}

int
worker_start(struct worker *w)
{
	sigset_t all, old;
	int r;

	/* The thread inherits this mask: signals are the main loop's business. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = pthread_create(&w->thread, NULL, worker_thread, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		log_warnx("worker %d: pthread_create: %s", w->id, strerror(r));
		return -1;
	}
	w->started = 1;
	return 0;
}

void
worker_join(struct worker *w)
{
	if (w != NULL && w->started) {
		pthread_join(w->thread, NULL);
		w->started = 0;
	}
}

int
worker_listen(struct worker *w, int reuseport)
{
	const struct config *cfg = w->cfg;

	w->listeners = calloc(cfg->nlistens, sizeof(*w->listeners));
	if (w->listeners == NULL)
		return -1;
	for (size_t i = 0; i < cfg->nlistens; i++) {
		w->listeners[i] = listener_new(w, &cfg->listens[i], reuseport);
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
	uint64_t now = conn_now_ms(), i = 0, nopen = 0, n = *w->owner->nworkers;

	w->draining = 1;
	worker_stop_listening(w);
	LIST_FOREACH(c, &w->conns, entry)
	nopen += c->state == CONN_OPEN;
	/* Closes are spread evenly over the window, so clients of a restarting fleet do not all
	 * reconnect to the remaining instances at the same instant. Every worker spreads its own
	 * over the whole window, worker k shifted by k/n of a step so the workers' schedules
	 * interleave. conn_close() moves entries to the dead list, so walk with a saved next. */
	for (c = LIST_FIRST(&w->conns); c != NULL; c = next) {
		next = LIST_NEXT(c, entry);
		switch (c->state) {
		case CONN_HANDSHAKE:
			conn_close(c, "shutting down during handshake");
			break;
		case CONN_OPEN:
			heartbeat_drain_at(c, now + window_ms * (i * n + (uint64_t)w->id) /
			                                (nopen * n));
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
	/* A snapshot still in the mailbox carries a reference: handle what is left. */
	if (w->mbox != NULL) {
		w->freeing = 1;
		mailbox_drain(w->mbox);
		mailbox_free(w->mbox);
	}
	config_release(w->cfg);
	if (w->reaper != NULL)
		event_free(w->reaper);
	if (w->sampler != NULL)
		event_free(w->sampler);
	if (w->lagger != NULL)
		event_free(w->lagger);
	timer_wheel_free(w->wheel); /* after every connection (their timers) */
	if (w->base != NULL)
		event_base_free(w->base);
	free(w);
}

/* The hub's first subscriber of a channel, or its last leaving: the process subscribes. */
static void
worker_relay_subscription(void *arg, int on, const char *channel, size_t len)
{
	struct worker *w = arg;

	/* A subscribe runs inside hub_subscribe: the hub names the channel's incarnation. */
	w->owner->relay_subscription(w->owner->arg, w->id, on, channel, len,
	                             on ? hub_creating_gen(w->hub) : 0);
}

static uint64_t
worker_env_next_conn_id(void *arg)
{
	return worker_next_conn_id(arg);
}

static const struct config *
worker_env_config_hold(void *arg)
{
	return worker_config_hold(arg);
}

static void
worker_env_conn_add(void *arg, struct conn *c)
{
	worker_conn_add(arg, c);
}

static void
worker_env_conn_dead(void *arg, struct conn *c)
{
	worker_conn_dead(arg, c);
}

static char *
worker_env_scratch(void *arg, size_t n)
{
	return worker_scratch(arg, n);
}

static enum env_readiness
worker_env_readiness(void *arg)
{
	struct worker *w = arg;

	return w->owner->readiness(w->owner->arg);
}

/* All or none: room in the mailbox of every worker in mask is reserved before any of them
 * gets the message. A worker too far behind (its mailbox holds WORKER_BUS_LIMIT bytes)
 * refuses it for all; the caller counts, logs and tells its publisher. */
static void
worker_bus_unreserve(const struct worker_owner *o, uint64_t reserved, size_t clen, size_t len)
{
	struct worker *const *workers = *o->workers;
	size_t nw = *o->nworkers < 64 ? *o->nworkers : 64;

	for (size_t j = 0; j < nw; j++)
		if (reserved & ((uint64_t)1 << j))
			mailbox_unreserve(workers[j]->mbox, clen, len);
}

/* Reserves room for a record of clen + len bytes in the mailbox of every worker in mask (at
 * most 64 workers take part in a broadcast); when one is too far behind, gives every
 * reservation back, names it in *refuser and returns -1. */
static int
worker_bus_reserve(const struct worker_owner *o, uint64_t mask, size_t clen, size_t len,
                   uint64_t *reserved, size_t *refuser)
{
	struct worker *const *workers = *o->workers;
	size_t nw = *o->nworkers < 64 ? *o->nworkers : 64, i;

	*reserved = 0;
	for (i = 0; i < nw; i++) {
		if (!(mask & ((uint64_t)1 << i)))
			continue;
		if (mailbox_reserve(workers[i]->mbox, clen, len) < 0)
			break;
		*reserved |= (uint64_t)1 << i;
	}
	if (i == nw)
		return 0;
	worker_bus_unreserve(o, *reserved, clen, len);
	*refuser = i;
	return -1;
}

/* env_bus.publish_commit (and .publish, without commit): all or none, and commit runs between
 * the reservations and the posts, so what it does (a history append) happens only for a
 * message every worker takes, and under the caller's lock the posts follow it in order. */
static int
worker_bus_publish_commit(void *arg, uint64_t mask, const char *channel, size_t clen,
                          const uint8_t *data, size_t len, int (*commit)(void *carg), void *carg,
                          size_t *refuser)
{
	const struct worker_owner *o = ((struct worker *)arg)->owner;
	struct worker *const *workers = *o->workers;
	size_t nw = *o->nworkers < 64 ? *o->nworkers : 64;
	uint64_t reserved;

	if (worker_bus_reserve(o, mask, clen, len, &reserved, refuser) < 0)
		return -1;
	if (commit != NULL && commit(carg) < 0) {
		worker_bus_unreserve(o, reserved, clen, len);
		*refuser = SIZE_MAX;
		return -1;
	}
	for (size_t i = 0; i < nw; i++)
		if ((reserved & ((uint64_t)1 << i)) &&
		    mailbox_post_reserved(workers[i]->mbox, WORKER_MSG_PUBLISH, channel, clen, data,
		                          len) < 0)
			log_warnx("pub/sub: out of memory posting a %zu-byte message to worker %zu",
			          len, i);
	return 0;
}

static int
worker_bus_publish(void *arg, uint64_t mask, const char *channel, size_t clen, const uint8_t *data,
                   size_t len, size_t *refuser)
{
	return worker_bus_publish_commit(arg, mask, channel, clen, data, len, NULL, NULL, refuser);
}

/* env_bus.publish_frame: the same all or none, but every worker in mask gets a reference to
 * the one frame f (WORKER_MSG_PUBLISH_FRAME, dropped by that worker), its size counted against
 * the mailbox's limit as a copy would be, so no loop copies a large message whole. */
static int
worker_bus_publish_frame(void *arg, uint64_t mask, const char *channel, size_t clen,
                         struct hub_frame *f, int is_text, size_t *refuser)
{
	const struct worker_owner *o = ((struct worker *)arg)->owner;
	struct worker *const *workers = *o->workers;
	size_t nw = *o->nworkers < 64 ? *o->nworkers : 64;
	uint64_t reserved;

	if (worker_bus_reserve(o, mask, clen, f->plen, &reserved, refuser) < 0)
		return -1;
	for (size_t i = 0; i < nw; i++) {
		struct worker_frame_msg fm = {f, is_text};

		if (!(reserved & ((uint64_t)1 << i)))
			continue;
		hub_frame_ref(f); /* the record's, dropped by that worker */
		if (mailbox_post_held(workers[i]->mbox, WORKER_MSG_PUBLISH_FRAME, channel, clen,
		                      &fm, sizeof(fm), f->plen) < 0) {
			hub_frame_unref(f);
			log_warnx("pub/sub: out of memory posting a %zu-byte message to worker %zu",
			          f->plen, i);
		}
	}
	return 0;
}

static int
worker_bus_live(void *arg, int w, uint64_t gen, const char *channel, size_t len)
{
	const struct worker_owner *o = ((struct worker *)arg)->owner;

	if (w < 0 || (size_t)w >= *o->nworkers || *o->freeing)
		return 0;
	return worker_post((*o->workers)[w], WORKER_MSG_LIVE, &gen, sizeof(gen), channel, len);
}

/* What this worker's connections, targets and broker may use (env.h): they reach the process
 * only through it. */
static void
worker_env_init(struct worker *w)
{
	struct env *env = &w->env;

	env->id = w->id;
	env->base = w->base;
	env->wheel = w->wheel;
	env->stats = &w->stats;
	env->out_queued = &w->out_queued;
	env->upstreams = &w->upstreams;
	env->cfg = &w->cfg;
	env->draining = &w->draining;
	env->limits = w->owner->limits;
	env->sec = w->owner->sec;
	env->adm = w->owner->adm;
	env->history = w->owner->history;
	env->instance_id = w->owner->instance_id;
	env->bus.publish = worker_bus_publish;
	env->bus.publish_commit = worker_bus_publish_commit;
	env->bus.publish_frame = worker_bus_publish_frame;
	env->bus.live = worker_bus_live;
	env->bus.arg = w;
	env->arg = w;
	env->next_conn_id = worker_env_next_conn_id;
	env->config_hold = worker_env_config_hold;
	env->conn_add = worker_env_conn_add;
	env->conn_dead = worker_env_conn_dead;
	env->scratch = worker_env_scratch;
	env->readiness = worker_env_readiness;
}

int
worker_pubsub_init(struct worker *w, struct broker *redis)
{
	const struct config *cfg = w->cfg;

	if ((w->hub = hub_new(target_pubsub_deliver)) == NULL)
		return -1;
	if (cfg->redis.enabled)
		w->broker = broker_redis_new_publisher(w->hub, w->base, cfg, redis,
		                                       worker_relay_subscription, w);
	else
		w->broker = broker_local_new(w->hub, &w->env);
	if (w->broker == NULL)
		return -1;
	broker_redis_set_history(w->broker, w->owner->history);
	hub_set_broker(w->hub, w->broker);
	w->env.hub = w->hub;
	w->env.broker = w->broker;
	/* With Redis a channel is live once the process's SUBSCRIBE is confirmed (router.c):
	 * a pubsub handshake waits for its channels to be (target_pubsub.c). */
	if (cfg->redis.enabled)
		hub_set_confirming(w->hub, target_pubsub_live);
	hub_set_gap(w->hub, target_pubsub_gap);
	return 0;
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
		METRIC_SET(w->stats.scratch_bytes, n);
	}
	w->scratch_used = 1;
	return w->scratch;
}

void
worker_conn_add(struct worker *w, struct conn *c)
{
	LIST_INSERT_HEAD(&w->conns, c, entry);
	METRIC_ADD(w->nconns, 1);
	w->churn++;
}

void
worker_conn_dead(struct worker *w, struct conn *c)
{
	LIST_REMOVE(c, entry);
	METRIC_SUB(w->nconns, 1);
	if (c->rstats != NULL)
		METRIC_SUB(c->rstats->open, 1); /* counted since the upgrade */
	LIST_INSERT_HEAD(&w->dead, c, entry);
	event_active(w->reaper, 0, 0);
}

uint64_t
worker_next_conn_id(struct worker *w)
{
	return __atomic_add_fetch(w->owner->next_conn_id, 1, __ATOMIC_RELAXED);
}

const struct config *
worker_config_hold(struct worker *w)
{
	return config_hold(w->cfg);
}
