/* tls.h - TLS termination for listeners with the tls flag: certificates from [tls] and
 * [tls NAME] (chosen by SNI), TLS bufferevents for accepted sockets, close_notify, and reloads.
 * The only module that touches OpenSSL's connection objects. */
#ifndef WSGATE_TLS_H
#define WSGATE_TLS_H

#include <stdint.h>

#include "config.h"

struct bufferevent;
struct event_base;
struct tls_server;

struct tls_stats {
	uint64_t handshake_failures; /* fatal alerts sent or received during a handshake */
	uint64_t reloads;            /* successful reloads */
	uint64_t reload_failures;    /* reloads refused: the old certificates stayed */
};

/* *out = the TLS contexts for cfg when a listener has the tls flag, else NULL. -1 (logged) when
 * a certificate or key cannot be used: the first load is fatal. */
int tls_server_init(struct tls_server **out, const struct config *cfg)
    __attribute__((warn_unused_result));

/* Reads every certificate and key again from cfg's paths (SIGHUP). New handshakes use them;
 * established connections keep theirs. On any error nothing changes, the reason is logged and
 * -1 returned. ts may be NULL (no TLS listener): nothing to do. */
int tls_reload(struct tls_server *ts, const struct config *cfg);

/* A reload in two steps, so the caller can swap it in together with everything else or not at
 * all. tls_candidate_new loads every certificate and key of cfg (each failure appended to errs
 * as "FILE:LINE: [tls NAME]: cert PATH: reason") and returns NULL when any failed; ts may be
 * NULL (no TLS listener: the files are still checked). tls_candidate_commit puts it in force
 * for new handshakes and consumes it; tls_candidate_free drops it unused. */
struct tls_candidate;
struct tls_candidate *tls_candidate_new(struct tls_server *ts, const struct config *cfg,
                                        struct config_errors *errs)
    __attribute__((warn_unused_result));
void tls_candidate_commit(struct tls_server *ts, struct tls_candidate *c);
void tls_candidate_free(struct tls_candidate *c);

/* wsgate -t: loads every certificate and key of cfg and frees them; -1 with errs filled when
 * any cannot be used. */
int tls_config_check(const struct config *cfg, struct config_errors *errs)
    __attribute__((warn_unused_result));

/* Frees our reference to the current contexts; connections still alive keep theirs. */
void tls_server_free(struct tls_server *ts);

void tls_stats_get(struct tls_server *ts, struct tls_stats *out);

/* ---- the TLS transport (transport.c's second implementation) ---- */

/* A server-side TLS bufferevent for fd (owned: closed on failure). */
struct bufferevent *tls_bufferevent_new(struct event_base *base, int fd, struct tls_server *ts);
/* Output flushed: send close_notify (then FIN), keep reading until the peer's EOF. */
void tls_finish(struct bufferevent *bev);
/* 1 when bev is a TLS bufferevent. */
int tls_bufferevent_is_tls(struct bufferevent *bev);

/* 1 when SNI host name matches a [tls NAME] section name: equal ignoring case, or NAME is
 * "*.domain" and name is exactly one label more (as certificate wildcards are). Pure. */
int tls_sni_match(const char *pattern, const char *name);

#endif
