/* gateway.h - the one process context: configuration snapshot, signals, workers; start,
 * graceful shutdown and stop. The main loop runs signals, the admin endpoints, reloads and
 * the shutdown; each worker runs its own loop on its own thread (worker.h). */
#ifndef WSGATE_GATEWAY_H
#define WSGATE_GATEWAY_H

#include <stddef.h>
#include <stdint.h>

#include "worker.h"

struct config;
struct config_errors;
struct worker;
struct event_base;
struct event;
struct tls_server;
struct admin;
struct security;
struct limit_table;
struct mailbox;
struct broker;
struct router;
struct admission;
struct history_store;

enum gateway_state {
	GW_RUNNING = 0, /* accepting and serving */
	GW_DRAINING,    /* signal received: not accepting, closing clients, waiting up to
	                   shutdown_timeout */
	GW_STOPPED,     /* the loop has been asked to exit */
};

struct gateway {
	struct config *cfg; /* current snapshot, one reference (workers hold their own) */
	const char *config_path;
	enum gateway_state state; /* written by the main loop; read anywhere (gateway_state) */
	struct event_base *base;  /* the main loop */
	struct mailbox *mbox;     /* workers report to the main loop through it */
	struct worker **workers;
	size_t nworkers;
	size_t nidle;               /* workers that have closed every connection while draining */
	struct broker *redis;       /* with [redis]: the process's one sub link (worker 0's loop) */
	struct router *router;      /* which workers want each Redis channel (worker 0's loop) */
	int freeing;                /* gateway_free: subscription changes are dropped */
	uint64_t reload_gen;        /* the newest reload sent to the workers */
	size_t reload_waiting;      /* workers that have not taken it yet */
	int reload_fixed;           /* it changed settings that need a restart */
	struct tls_server *tls;     /* certificates of the tls listeners; NULL when none */
	struct security *sec;       /* route keys (JWT) and refusal counters */
	struct limit_table *limits; /* admission counters, shared by every worker */
	struct admission *adm;      /* fleet admission budget (main loop); NULL when off */
	struct history_store *history; /* without [redis]: channel histories, shared by workers */
	struct event *sig_term, *sig_int, *sig_hup;
	struct event *shutdown_timer;
	struct admin *admin; /* admin_listen endpoints (main.c makes and frees them) */
	uint64_t next_conn_id;
	char instance_id[16];      /* random hex: makes connection ids unique across instances */
	int notified_ready;        /* READY=1 sent to the service manager (atomic) */
	struct worker_owner owner; /* what the workers get from the process (worker.h) */
};

/* Takes ownership of cfg. -1 (logged) on failure. */
int gateway_init(struct gateway *gw, struct config *cfg, const char *config_path)
    __attribute__((warn_unused_result));
/* Runs until shut down; returns the process exit status. */
int gateway_run(struct gateway *gw);
/* Begins the graceful shutdown (idempotent; a second call stops at once). */
void gateway_shutdown(struct gateway *gw, const char *why);
/* A worker reports it has no connections left while draining (from its own thread). */
void gateway_worker_idle(struct gateway *gw, struct worker *w);
/* A worker's hub got its first subscriber of channel (on) or lost its last (from the
 * worker's thread): worker 0 keeps the process's subscriptions. */
void gateway_relay_subscription(struct gateway *gw, int worker, int on, const char *channel,
                                size_t len, uint64_t gen);
/* A worker took a reloaded snapshot (from its own thread). */
void gateway_worker_config_taken(struct gateway *gw, uint64_t gen);
/* gw->state, from any thread. */
enum gateway_state gateway_state(const struct gateway *gw);
/* Open connections over every worker (approximate while they run). */
size_t gateway_nconns(const struct gateway *gw);
/* What workers = auto means here: the CPUs this process may run on. */
size_t gateway_auto_workers(void);
void gateway_free(struct gateway *gw);
/* SIGHUP: re-read the configuration file (reload.c); all or nothing. */
void gateway_reload(struct gateway *gw);
/* Loads (then frees) every certificate, key and CA bundle cfg names, as a reload would; -1
 * with each failure in errs as FILE:LINE. For wsgate -t. */
int reload_check_files(const struct config *cfg, struct config_errors *errs)
    __attribute__((warn_unused_result));
/* The part of it for backend CA bundles (ca_file), which nothing else loads before the first
 * client: run at start so a broken one is fatal there as it is refused by a reload. */
int reload_check_ca_files(const struct config *cfg, struct config_errors *errs)
    __attribute__((warn_unused_result));
/* A worker took the snapshot of reload gen (main loop, from the worker's report). */
void gateway_reload_applied(struct gateway *gw, uint64_t gen);
/* A reload ended (applied or refused): READY=1 again after RELOADING=1. */
void gateway_notify_reloaded(struct gateway *gw, const char *status);

/* 1 when serving and every worker's broker delivers (/readyz). */
int gateway_ready(const struct gateway *gw);

#endif
