/* gateway.c - the process: owns the configuration snapshot, the event loop, the signal
 * handlers and the worker; runs until a graceful shutdown completes or times out. */
#include "gateway.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "conn.h"

#include "config.h"
#include "limit.h"
#include "log.h"
#include "security.h"
#include "admin.h"
#include "tls.h"
#include "worker.h"

static void
gateway_stop(struct gateway *gw)
{
	gw->state = GW_STOPPED;
	event_base_loopbreak(gw->base);
}

static void
gateway_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct gateway *gw = arg;

	(void)fd;
	(void)what;
	log_warnx("shutdown_timeout reached with %zu connection(s) still open; stopping",
	    gw->worker->nconns);
	gateway_stop(gw);
}

void
gateway_shutdown(struct gateway *gw, const char *why)
{
	struct timeval tv;
	uint64_t window = gw->cfg->drain_window_ms;
	uint64_t ms = window + gw->cfg->shutdown_timeout_ms;

	if (gw->state != GW_RUNNING) {
		log_warnx("%s again: stopping now", why);
		gateway_stop(gw);
		return;
	}
	log_info("%s: draining %zu connection(s) over %llu ms, waiting up to %llu ms", why,
	    gw->worker->nconns, (unsigned long long)window, (unsigned long long)ms);
	gw->state = GW_DRAINING;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	evtimer_add(gw->shutdown_timer, &tv);
	worker_drain(gw->worker, window);
}

void
gateway_worker_idle(struct gateway *gw, struct worker *w)
{
	(void)w;
	if (gw->state == GW_DRAINING) {
		log_info("all connections closed");
		gateway_stop(gw);
	}
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

/* epoll with the change list: an event enabled and disabled within one loop turn (a
 * bufferevent arming EV_WRITE for output it then writes) costs no epoll_ctl at all. Safe here:
 * no descriptor is ever dup()ed while registered. */
static struct event_base *
gateway_base_new(void)
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
	uint8_t seed[16];

	if (RAND_bytes(seed, sizeof(seed)) != 1) {
		log_warnx("RAND_bytes failed");
		return -1;
	}
	if ((gw->limits = limit_new(0, seed)) == NULL) {
		log_warnx("cannot allocate the per-IP limits table");
		return -1;
	}
	if ((gw->sec = security_new(gw->cfg)) == NULL)
		return -1;
	return tls_server_init(&gw->tls, gw->cfg);
}

const char *
gateway_conn_public_id(const struct conn *c, char *buf, size_t bufsz)
{
	snprintf(buf, bufsz, "%s-%llu", c->w->gw->instance_id, (unsigned long long)c->id);
	return buf;
}

int
gateway_ready(const struct gateway *gw)
{
	return gw->state == GW_RUNNING && worker_ready(gw->worker);
}

int
gateway_init(struct gateway *gw, struct config *cfg, const char *config_path)
{
	memset(gw, 0, sizeof(*gw));
	gw->cfg = cfg;
	gw->config_path = config_path;
	gw->state = GW_RUNNING;
	/* A client vanishing mid-write must not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	if ((gw->base = gateway_base_new()) == NULL) {
		log_warnx("event_base_new failed");
		return -1;
	}
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
	/* Several event loops (one per core, SO_REUSEPORT) are planned; until then say so. */
	if (cfg->workers != 1)
		log_info("workers = %s: this version runs one event loop",
		    cfg->workers == 0 ? "auto" : "N");
	if (gateway_security_init(gw) < 0)
		return -1;
	if ((gw->worker = worker_new(gw, 0, gw->base)) == NULL)
		return -1;
	if (worker_pubsub_init(gw->worker, gw->instance_id) < 0) {
		log_warnx("cannot start the pub/sub hub");
		return -1;
	}
	if (worker_listen(gw->worker) < 0)
		return -1;
	if ((gw->admin = admin_new(gw)) == NULL)
		return -1;
	return 0;
}

int
gateway_run(struct gateway *gw)
{
	log_info("wsgate %s started (instance %s, %zu route(s), pub/sub via %s)", WSGATE_VERSION,
	    gw->instance_id, gw->cfg->nroutes, gw->cfg->redis.enabled ? "redis" : "in-process hub");
	if (event_base_dispatch(gw->base) < 0) {
		log_warnx("event loop failed");
		return 1;
	}
	log_info("stopped");
	return 0;
}

void
gateway_free(struct gateway *gw)
{
	admin_free(gw->admin);
	gw->admin = NULL;
	worker_free(gw->worker);
	gw->worker = NULL;
	/* After the connections: each gave its limits back and dropped its TLS references. */
	tls_server_free(gw->tls);
	gw->tls = NULL;
	security_free(gw->sec);
	gw->sec = NULL;
	limit_free(gw->limits);
	gw->limits = NULL;
	if (gw->sig_term)
		event_free(gw->sig_term);
	if (gw->sig_int)
		event_free(gw->sig_int);
	if (gw->sig_hup)
		event_free(gw->sig_hup);
	if (gw->shutdown_timer)
		event_free(gw->shutdown_timer);
	if (gw->base)
		event_base_free(gw->base);
	config_free(gw->cfg);
	gw->cfg = NULL;
}
