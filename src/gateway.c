/* gateway.c - the process: owns the configuration snapshot, the main loop (signals, admin,
 * reloads, shutdown) and the workers, each an event loop on its own thread; runs until a
 * graceful shutdown completes or times out. */
#include "gateway.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "admission.h"
#include "conn.h"
#include "hash.h"
#include "history_store.h"

#include "broker.h"
#include "config.h"
#include "limit.h"
#include "listener.h"
#include "log.h"
#include "mailbox.h"
#include "router.h"
#include "security.h"
#include "service.h"
#include "tls.h"
#include "upstream_health.h"
#include "worker.h"

/* Free heap an allocator arena keeps instead of returning it (see gateway_init). */
#define GATEWAY_TRIM_THRESHOLD (32 << 20)

#define GATEWAY_MAX_WORKERS 64

enum gateway_msg {
	GATEWAY_MSG_IDLE = 1,  /* a: int worker id */
	GATEWAY_MSG_CONFIG_OK, /* a: uint64_t reload generation the worker now uses */
};

enum gateway_state
gateway_state(const struct gateway *gw)
{
	return __atomic_load_n(&gw->state, __ATOMIC_RELAXED);
}

static void
gateway_set_state(struct gateway *gw, enum gateway_state st)
{
	__atomic_store_n(&gw->state, st, __ATOMIC_RELAXED);
}

size_t
gateway_nconns(const struct gateway *gw)
{
	size_t n = 0;

	for (size_t i = 0; i < gw->nworkers; i++)
		n += METRIC_GET(gw->workers[i]->nconns);
	return n;
}

size_t
gateway_auto_workers(void)
{
	cpu_set_t set;
	long n;

	/* The CPUs we may run on (a container's cpuset), not every CPU of the host. */
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		n = CPU_COUNT(&set);
	else if ((n = sysconf(_SC_NPROCESSORS_ONLN)) < 1)
		n = 1;
	return n > GATEWAY_MAX_WORKERS ? GATEWAY_MAX_WORKERS : (size_t)n;
}

/* Every worker leaves its loop, then the main loop: gateway_run joins the threads. */
static void
gateway_stop(struct gateway *gw)
{
	gateway_set_state(gw, GW_STOPPED);
	for (size_t i = 0; i < gw->nworkers; i++)
		if (worker_post(gw->workers[i], WORKER_MSG_STOP, NULL, 0, NULL, 0) < 0)
			log_warnx("worker %zu: cannot post stop", i);
	event_base_loopbreak(gw->base);
}

static void
gateway_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct gateway *gw = arg;

	(void)fd;
	(void)what;
	log_warnx("shutdown_timeout reached with %zu connection(s) still open; stopping",
	          gateway_nconns(gw));
	gateway_stop(gw);
}

void
gateway_shutdown(struct gateway *gw, const char *why)
{
	struct timeval tv;
	uint64_t window = gw->cfg->drain_window_ms;
	uint64_t ms = window + gw->cfg->shutdown_timeout_ms;

	if (gateway_state(gw) != GW_RUNNING) {
		log_warnx("%s again: stopping now", why);
		gateway_stop(gw);
		return;
	}
	log_info("%s: draining %zu connection(s) over %llu ms, waiting up to %llu ms", why,
	         gateway_nconns(gw), (unsigned long long)window, (unsigned long long)ms);
	/* The manager stops waiting for READY and starts its TimeoutStopSec (the unit's is
	 * drain_window + shutdown_timeout with a margin). */
	service_notify_stopping();
	gateway_set_state(gw, GW_DRAINING);
	admission_leave(gw->adm);
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	evtimer_add(gw->shutdown_timer, &tv);
	/* Each worker spreads its own clients over the whole window. */
	for (size_t i = 0; i < gw->nworkers; i++)
		if (worker_post(gw->workers[i], WORKER_MSG_DRAIN, &window, sizeof(window), NULL,
		                0) < 0)
			log_warnx("worker %zu: cannot post drain", i);
}

void
gateway_worker_idle(struct gateway *gw, struct worker *w)
{
	int id = w->id;

	if (mailbox_post(gw->mbox, GATEWAY_MSG_IDLE, &id, sizeof(id), NULL, 0, 0) < 0)
		log_warnx("worker %d: cannot report idle", id);
}

static void
gateway_message(void *arg, unsigned type, const void *a, size_t alen, const void *b, size_t blen)
{
	struct gateway *gw = arg;
	uint64_t gen;

	(void)b;
	(void)blen;
	switch ((enum gateway_msg)type) {
	case GATEWAY_MSG_IDLE:
		if (++gw->nidle == gw->nworkers && gateway_state(gw) == GW_DRAINING) {
			log_info("all connections closed");
			gateway_stop(gw);
		}
		break;
	case GATEWAY_MSG_CONFIG_OK:
		if (alen == sizeof(gen)) {
			memcpy(&gen, a, sizeof(gen));
			gateway_reload_applied(gw, gen);
		}
		break;
	}
}

void
gateway_relay_subscription(struct gateway *gw, int worker, int on, const char *channel, size_t len,
                           uint64_t gen)
{
	struct worker_want want = {.worker = worker, .gen = gen};

	if (gw->freeing)
		return; /* the process's broker is gone already */
	/* Worker 0 runs the router: its own changes go straight in, the others' through its
	 * mailbox (never refused: losing one would leave a channel subscribed, or not, for good).
	 */
	if (worker == 0) {
		if (on)
			router_subscribe_gen(gw->router, worker, channel, len, gen);
		else
			router_unsubscribe(gw->router, worker, channel, len);
	} else if (worker_post(gw->workers[0], on ? WORKER_MSG_SUBSCRIBE : WORKER_MSG_UNSUBSCRIBE,
	                       &want, sizeof(want), channel, len) < 0) {
		log_warnx("worker %d: cannot relay a subscription change (out of memory)", worker);
	}
}

/* READY=1 once (from the main loop or worker 0's, whichever is first); later READY=1 end a
 * reload (gateway_notify_reloaded). */
static void
gateway_notify_ready(struct gateway *gw, const char *status)
{
	/* Redis coming up for the first time while draining: STOPPING=1 was said already. */
	if (gateway_state(gw) != GW_RUNNING)
		return;
	if (__atomic_exchange_n(&gw->notified_ready, 1, __ATOMIC_ACQ_REL) == 0)
		service_notify_ready(status);
}

void
gateway_notify_reloaded(struct gateway *gw, const char *status)
{
	if (gateway_state(gw) != GW_RUNNING)
		return;
	if (__atomic_load_n(&gw->notified_ready, __ATOMIC_ACQUIRE))
		service_notify_ready(status);
	else
		service_notify_status(status); /* READY=1 still waits for Redis */
}

/* The process's sub link is (re)synchronised: publishes the workers held can go. */
static void
gateway_redis_up(void *arg)
{
	struct gateway *gw = arg;

	for (size_t i = 0; i < gw->nworkers; i++)
		if (worker_post(gw->workers[i], WORKER_MSG_REDIS_UP, NULL, 0, NULL, 0) < 0)
			log_warnx("worker %zu: cannot post redis up", i);
	/* With Redis the service is ready once the process's SUBSCRIBEs are in place: from
	 * then on a publish reaches this instance's clients. Only the first time counts. */
	gateway_notify_ready(gw, "serving; Redis subscribed");
}

void
gateway_worker_config_taken(struct gateway *gw, uint64_t gen)
{
	if (mailbox_post(gw->mbox, GATEWAY_MSG_CONFIG_OK, &gen, sizeof(gen), NULL, 0, 0) < 0)
		log_warnx("cannot report a configuration taken");
}

static void
gateway_signal(evutil_socket_t sig, short what, void *arg)
{
	struct gateway *gw = arg;

	(void)what;
	switch (sig) {
	case SIGTERM:
		gateway_shutdown(gw, "SIGTERM");
		break;
	case SIGINT:
		gateway_shutdown(gw, "SIGINT");
		break;
	case SIGHUP:
		/* The configuration, certificates and keys are re-read (reload.c). */
		gateway_reload(gw);
		break;
	}
}

static int
gateway_make_instance_id(struct gateway *gw)
{
	unsigned char r[6];
	static const char hex[] = "0123456789abcdef";

	if (RAND_bytes(r, sizeof(r)) != 1) {
		log_warnx("RAND_bytes failed");
		return -1;
	}
	for (size_t i = 0; i < sizeof(r); i++) {
		gw->instance_id[2 * i] = hex[r[i] >> 4];
		gw->instance_id[2 * i + 1] = hex[r[i] & 15];
	}
	gw->instance_id[2 * sizeof(r)] = '\0';
	return 0;
}

/* TLS certificates, route keys and the limits table: before any listener opens. */
static int
gateway_security_init(struct gateway *gw)
{
	struct config_errors errs = {NULL, 0};
	uint8_t seed[16];

	if (RAND_bytes(seed, sizeof(seed)) != 1) {
		log_warnx("RAND_bytes failed");
		return -1;
	}
	hash_init(); /* the SipHash key, before any peer can ask for a hash */
	if ((gw->limits = limit_new(0, seed)) == NULL) {
		log_warnx("cannot allocate the per-IP limits table");
		return -1;
	}
	if ((gw->sec = security_new(gw->cfg)) == NULL)
		return -1;
	if (reload_check_ca_files(gw->cfg, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			log_warnx("%s", errs.msgs[i]);
		config_errors_free(&errs);
		return -1;
	}
	return tls_server_init(&gw->tls, gw->cfg);
}

int
gateway_ready(const struct gateway *gw)
{
	if (gateway_state(gw) != GW_RUNNING)
		return 0;
	/* Only Redis can be unready: the in-process hub always delivers, and every worker's
	 * publisher asks the same process broker. */
	return gw->redis == NULL || gw->redis->ops->ready(gw->redis);
}

static void
gateway_owner_idle(void *arg, struct worker *w)
{
	gateway_worker_idle(arg, w);
}

static void
gateway_owner_config_taken(void *arg, uint64_t gen)
{
	gateway_worker_config_taken(arg, gen);
}

static void
gateway_owner_relay_subscription(void *arg, int worker, int on, const char *channel, size_t len,
                                 uint64_t gen)
{
	gateway_relay_subscription(arg, worker, on, channel, len, gen);
}

static enum env_readiness
gateway_owner_readiness(void *arg)
{
	struct gateway *gw = arg;

	if (gateway_ready(gw))
		return ENV_READY;
	return gateway_state(gw) == GW_RUNNING ? ENV_BROKER_DOWN : ENV_DRAINING;
}

/* What every worker gets from the process (worker.h): the shared tables, pointers to the
 * fields that are complete only once every worker exists, and the callbacks. */
static void
gateway_owner_init(struct gateway *gw)
{
	struct worker_owner *o = &gw->owner;

	o->limits = gw->limits;
	o->sec = gw->sec;
	o->adm = gw->adm;
	o->history = gw->history;
	o->tls = gw->tls;
	o->instance_id = gw->instance_id;
	o->next_conn_id = &gw->next_conn_id;
	o->workers = &gw->workers;
	o->nworkers = &gw->nworkers;
	o->freeing = &gw->freeing;
	o->router = &gw->router;
	o->arg = gw;
	o->idle = gateway_owner_idle;
	o->config_taken = gateway_owner_config_taken;
	o->relay_subscription = gateway_owner_relay_subscription;
	o->readiness = gateway_owner_readiness;
}

/* With several workers every listener is a SO_REUSEPORT group, which another process of the
 * same user could join without an error: check first that nobody listens there. */
static int
gateway_workers_init(struct gateway *gw)
{
	const struct config *cfg = gw->cfg;
	size_t n = cfg->workers == 0 ? gateway_auto_workers() : (size_t)cfg->workers;

	if (n > 1)
		for (size_t i = 0; i < cfg->nlistens; i++)
			if (service_listen_fd_match(&cfg->listens[i]) < 0 &&
			    listener_probe(&cfg->listens[i]) < 0)
				return -1;
	if ((gw->workers = calloc(n, sizeof(*gw->workers))) == NULL)
		return -1;
	gateway_owner_init(gw);
	for (size_t i = 0; i < n; i++) {
		struct worker *w;

		if ((w = worker_new(&gw->owner, (int)i, cfg)) == NULL)
			return -1;
		gw->workers[gw->nworkers++] = w;
		/* One Redis sub link for the process, on worker 0's loop (its own clients get
		 * messages without a hop); each worker publishes on its own link. One SUBSCRIBE per
		 * process rather than per worker: bench/results/workers.md. */
		if (i == 0 && cfg->redis.enabled) {
			if ((gw->router = router_new(&w->env)) == NULL ||
			    (gw->redis = broker_redis_new(&router_sink, gw->router, w->base, cfg,
			                                  gw->instance_id, gateway_redis_up, gw)) ==
			        NULL)
				return -1;
			router_set_broker(gw->router, gw->redis);
		}
		if (worker_pubsub_init(w, gw->redis) < 0) {
			log_warnx("cannot start the pub/sub hub");
			return -1;
		}
		if (worker_listen(w, n > 1) < 0)
			return -1;
	}
	return 0;
}

int
gateway_init(struct gateway *gw, struct config *cfg, const char *config_path)
{
	int failed;

	memset(gw, 0, sizeof(*gw));
	gw->cfg = cfg;
	gw->config_path = config_path;
	gw->state = GW_RUNNING;
	/* A client vanishing mid-write must not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	/* A broadcast allocates a small evbuffer chain per subscriber and frees them all once
	 * written: 5,000 subscribers make ~0.5 MiB come and go per message. With glibc's
	 * default trim threshold each worker's arena gave that back to the kernel after every
	 * message and faulted it in again for the next (sysmalloc, mprotect and page faults were
	 * 45% of the fan-out profile). Keeping up to GATEWAY_TRIM_THRESHOLD of free heap per
	 * arena halves the CPU per delivery (5,000 x 20/s: 10.1 -> 4.5 us). */
	(void)mallopt(M_TRIM_THRESHOLD, GATEWAY_TRIM_THRESHOLD); /* advice: sanitizers ignore it */
	if ((gw->base = event_base_new()) == NULL) {
		log_warnx("event_base_new failed");
		return -1;
	}
	if ((gw->mbox = mailbox_new(gw->base, gateway_message, gw, 0)) == NULL)
		return -1;
	gw->sig_term = evsignal_new(gw->base, SIGTERM, gateway_signal, gw);
	gw->sig_int = evsignal_new(gw->base, SIGINT, gateway_signal, gw);
	gw->sig_hup = evsignal_new(gw->base, SIGHUP, gateway_signal, gw);
	gw->shutdown_timer = evtimer_new(gw->base, gateway_shutdown_timeout, gw);
	if (gw->sig_term == NULL || gw->sig_int == NULL || gw->sig_hup == NULL ||
	    gw->shutdown_timer == NULL)
		return -1;
	evsignal_add(gw->sig_term, NULL);
	evsignal_add(gw->sig_int, NULL);
	evsignal_add(gw->sig_hup, NULL);
	if (gateway_make_instance_id(gw) < 0)
		return -1;
	if (gateway_security_init(gw) < 0)
		return -1;
	if ((gw->adm = admission_new(gw->base, gw->cfg, gw->instance_id, &failed)) == NULL &&
	    failed)
		return -1;
	/* Which channels keep history, with what bounds: channels get one when a route with
	 * history_size uses them. Without Redis the messages are kept here too; with Redis they
	 * live in Redis streams. */
	if ((gw->history = history_store_new(gw->instance_id)) == NULL)
		return -1;
	if (gateway_workers_init(gw) < 0)
		return -1;
	service_listen_fds_unclaimed();
	return 0;
}

int
gateway_run(struct gateway *gw)
{
	int status = 0;

	for (size_t i = 0; i < gw->nworkers; i++)
		if (worker_start(gw->workers[i]) < 0) {
			gateway_stop(gw);
			status = 1;
			break;
		}
	if (status == 0) {
		log_info("wsgate %s started (instance %s, %zu worker(s), %zu route(s), pub/sub via "
		         "%s)",
		         WSGATE_VERSION, gw->instance_id, gw->nworkers, gw->cfg->nroutes,
		         gw->cfg->redis.enabled ? "redis" : "in-process hub");
		if (!gw->cfg->redis.enabled)
			gateway_notify_ready(gw, "serving");
		else
			service_notify_status("listening; waiting for the Redis subscriptions");
		if (event_base_dispatch(gw->base) < 0) {
			log_warnx("event loop failed");
			gateway_stop(gw);
			status = 1;
		}
	}
	for (size_t i = 0; i < gw->nworkers; i++)
		worker_join(gw->workers[i]);
	if (status == 0)
		log_info("stopped");
	return status;
}

/* The loops are gone: no signal means anything any more, and none may kill the process on its
 * way out (freeing a libevent signal event puts back the default action, which for SIGHUP,
 * SIGTERM and SIGINT is to terminate: a reload or a second stop request sent while we free
 * made the exit status a signal). Blocked first, so none lands between the restore and
 * SIG_IGN; workers are joined, so the main thread is the only one left to deliver to. */
static void
gateway_signals_off(struct gateway *gw)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	(void)pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (gw->sig_term)
		event_free(gw->sig_term);
	if (gw->sig_int)
		event_free(gw->sig_int);
	if (gw->sig_hup)
		event_free(gw->sig_hup);
	gw->sig_term = gw->sig_int = gw->sig_hup = NULL;
	signal(SIGHUP, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
}

void
gateway_free(struct gateway *gw)
{
	/* gw->admin was freed by main (admin_free), which made it. */
	/* Threads still running (gateway_init failed half way) are stopped first. */
	if (gw->workers != NULL && gateway_state(gw) != GW_STOPPED)
		gateway_stop(gw);
	for (size_t i = 0; i < gw->nworkers; i++)
		worker_join(gw->workers[i]);
	/* Every loop has stopped. The process's broker lives on worker 0's base, so it goes
	 * first; the hubs' unsubscribes while their connections close are then dropped. */
	gw->freeing = 1;
	if (gw->redis != NULL)
		gw->redis->ops->free(gw->redis);
	gw->redis = NULL;
	router_free(gw->router);
	gw->router = NULL;
	for (size_t i = 0; i < gw->nworkers; i++)
		worker_free(gw->workers[i]);
	free(gw->workers);
	gw->workers = NULL;
	gw->nworkers = 0;
	/* Every pool is gone with its worker. */
	upstream_health_free_all();
	/* After the connections: each gave its limits back and dropped its TLS references. */
	tls_server_free(gw->tls);
	gw->tls = NULL;
	security_free(gw->sec);
	gw->sec = NULL;
	limit_free(gw->limits);
	gw->limits = NULL;
	admission_free(gw->adm); /* on the main base: before it goes */
	gw->adm = NULL;
	history_store_free(gw->history);
	gw->history = NULL;
	/* Every listener closed its duplicate; the manager keeps its own copy. */
	service_listen_fds_close();
	gateway_signals_off(gw);
	if (gw->shutdown_timer)
		event_free(gw->shutdown_timer);
	mailbox_free(gw->mbox);
	gw->mbox = NULL;
	if (gw->base)
		event_base_free(gw->base);
	config_release(gw->cfg);
	gw->cfg = NULL;
}
