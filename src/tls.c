/* tls.c - TLS termination: one SSL_CTX per certificate, SNI switching to the named ones, TLS
 * bufferevents for accepted sockets, close_notify after the last bytes, SIGHUP reloads.
 *
 * Lifetimes. One load of the files makes a "generation": a default context plus one context per
 * [tls NAME]. The generation's bookkeeping (struct tls_ctxset) hangs off its default context as
 * ex_data, so it lives exactly as long as that context: the server holds one reference, and every
 * SSL holds one (SSL_new references it as both ctx and session_ctx; SNI switching changes only
 * ctx). A reload builds a new generation, swaps the server's pointer and drops the old reference:
 * connections still using the old certificates keep them until their SSL is freed. */
#include "tls.h"

#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"

/* Mozilla's "intermediate" TLS 1.2 suites: forward secret AEADs only. (TLS 1.3 suites are
 * OpenSSL's defaults, all of them fine.) */
#define TLS_DEFAULT_CIPHERS                                                                        \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_TICKET_KEYS_LEN 80 /* name, HMAC and AES keys of OpenSSL's ticket encryption */

struct tls_named {
	char *name;   /* "example.org" or "*.example.org" */
	SSL_CTX *ctx; /* one reference */
};

/* One generation's named contexts; owned by its default context (ex_data). */
struct tls_ctxset {
	struct tls_named *named;
	size_t nnamed;
};

/* A generation loaded but not yet in force (reload.c swaps it in when every part loaded). */
struct tls_candidate {
	SSL_CTX *ctx; /* NULL: nothing to swap (no [tls] section and no TLS listener) */
};

struct tls_server {
	pthread_mutex_t mu; /* guards cur: reloads on the main loop, accepts on workers */
	SSL_CTX *cur;       /* default context of the newest generation; one reference */
	uint64_t generation;
	struct tls_stats stats; /* atomics */
};

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_set_idx = -1;   /* SSL_CTX ex_data: struct tls_ctxset * (default contexts) */
static int tls_srv_idx = -1;   /* SSL_CTX ex_data: struct tls_server * (every context) */
static int tls_retry_idx = -1; /* SSL ex_data: struct event * retrying close_notify */

static void
tls_ctxset_free(struct tls_ctxset *set)
{
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->nnamed; i++) {
		SSL_CTX_free(set->named[i].ctx);
		free(set->named[i].name);
	}
	free(set->named);
	free(set);
}

static void
tls_set_exfree(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	tls_ctxset_free(ptr);
}

static void
tls_retry_exfree(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	/* The SSL goes with its bufferevent: a pending retry must not outlive it. */
	if (ptr != NULL)
		event_free(ptr);
}

static void
tls_init_once(void)
{
	tls_set_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_set_exfree);
	tls_srv_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	tls_retry_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, tls_retry_exfree);
}

static void
tls_stat_add(struct tls_server *ts, uint64_t *ctr)
{
	if (ts != NULL)
		__atomic_fetch_add(ctr, 1, __ATOMIC_RELAXED);
}

void
tls_stats_get(struct tls_server *ts, struct tls_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (ts == NULL)
		return;
	out->handshake_failures = __atomic_load_n(&ts->stats.handshake_failures, __ATOMIC_RELAXED);
	out->reloads = __atomic_load_n(&ts->stats.reloads, __ATOMIC_RELAXED);
	out->reload_failures = __atomic_load_n(&ts->stats.reload_failures, __ATOMIC_RELAXED);
}

/* ---- callbacks ---- */

int
tls_sni_match(const char *pattern, const char *name)
{
	const char *dot;

	if (pattern == NULL || name == NULL)
		return 0;
	if (pattern[0] != '*')
		return strcasecmp(pattern, name) == 0;
	/* "*.example.org": one non-empty label, then exactly ".example.org". */
	if (pattern[1] != '.' || pattern[2] == '\0' || (dot = strchr(name, '.')) == NULL ||
	    dot == name)
		return 0;
	return strcasecmp(dot, pattern + 1) == 0;
}

static SSL_CTX *
tls_ctxset_find(const struct tls_ctxset *set, const char *name)
{
	size_t i;

	/* An exact name wins over any wildcard. */
	for (i = 0; i < set->nnamed; i++)
		if (set->named[i].name[0] != '*' && tls_sni_match(set->named[i].name, name))
			return set->named[i].ctx;
	for (i = 0; i < set->nnamed; i++)
		if (set->named[i].name[0] == '*' && tls_sni_match(set->named[i].name, name))
			return set->named[i].ctx;
	return NULL;
}

static int
tls_servername_cb(SSL *ssl, int *alert, void *arg)
{
	const struct tls_ctxset *set = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	SSL_CTX *ctx;

	if (name == NULL || set == NULL || (ctx = tls_ctxset_find(set, name)) == NULL)
		return SSL_TLSEXT_ERR_NOACK; /* the default certificate */
	if (SSL_set_SSL_CTX(ssl, ctx) == NULL) {
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	return SSL_TLSEXT_ERR_OK;
}

static int
tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
            unsigned int inlen, void *arg)
{
	static const unsigned char ours[] = "\x08http/1.1";
	unsigned char *sel = NULL;

	(void)ssl;
	(void)arg;
	/* WebSocket over TLS is HTTP/1.1; a client offering only h2 goes on without ALPN. */
	if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static void
tls_peer_name(int fd, char *buf, size_t bufsz)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	snprintf(buf, bufsz, "?");
	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&ss;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, bufsz, "%s:%u", host, port);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)&ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, bufsz, "[%s]:%u", host, port);
	}
}

/* Fatal alerts during a handshake: the one place a refused TLS client (old protocol, no shared
 * cipher, our certificate rejected) becomes visible. */
static void
tls_info_cb(const SSL *ssl, int where, int ret)
{
	struct tls_server *ts;
	char peer[64];

	if (!(where & SSL_CB_ALERT) || (ret >> 8) != SSL3_AL_FATAL || SSL_is_init_finished(ssl))
		return;
	ts = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_srv_idx);
	if (ts != NULL)
		tls_stat_add(ts, &ts->stats.handshake_failures);
	tls_peer_name(SSL_get_fd(ssl), peer, sizeof(peer));
	log_info("TLS handshake with %s failed: %s alert \"%s\"", peer,
	         (where & SSL_CB_READ) ? "received" : "sent", SSL_alert_desc_string_long(ret));
}

/* ---- loading ---- */

/* The last OpenSSL error as text, and the queue emptied. */
static const char *
tls_errstr(char *buf, size_t bufsz)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(buf, bufsz, "unknown error");
	else
		ERR_error_string_n(e, buf, bufsz);
	ERR_clear_error();
	return buf;
}

static void
tls_log_cert(SSL_CTX *ctx, const char *section)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	char cn[256] = "?", until[64] = "?";
	struct tm tm;

	if (x == NULL)
		return;
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) < 0)
		snprintf(cn, sizeof(cn), "?");
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		strftime(until, sizeof(until), "%Y-%m-%d %H:%M:%S UTC", &tm);
	if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		log_warnx("TLS %s: certificate CN=%s expired on %s", section, cn, until);
	else
		log_info("TLS %s: certificate CN=%s, valid until %s", section, cn, until);
	ERR_clear_error();
}

/* One context for one certificate, with everything every context shares. NULL with err set. */
static SSL_CTX *
tls_ctx_new(struct tls_server *ts, const struct config *cfg, const struct config_tls_cert *tc,
            const char *section, char *err, size_t errsz)
{
	char ossl[256];
	SSL_CTX *ctx;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		snprintf(err, errsz, "%s: SSL_CTX_new: %s", section,
		         tls_errstr(ossl, sizeof(ossl)));
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(
	        ctx, cfg->tls_min_version == TLS_V1_3 ? TLS1_3_VERSION : TLS1_2_VERSION) != 1) {
		snprintf(err, errsz, "%s: min_version: %s", section,
		         tls_errstr(ossl, sizeof(ossl)));
		goto fail;
	}
	if (SSL_CTX_set_cipher_list(ctx, cfg->tls_ciphers != NULL && cfg->tls_ciphers[0] != '\0'
	                                     ? cfg->tls_ciphers
	                                     : TLS_DEFAULT_CIPHERS) != 1) {
		snprintf(err, errsz, "%s: ciphers %s: %s", section,
		         cfg->tls_ciphers ? cfg->tls_ciphers : TLS_DEFAULT_CIPHERS,
		         tls_errstr(ossl, sizeof(ossl)));
		goto fail;
	}
	if (tc->cert == NULL || tc->key == NULL) {
		snprintf(err, errsz, "%s: cert and key are both required", section);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, tc->cert) != 1) {
		snprintf(err, errsz, "%s: cert %s: %s", section, tc->cert,
		         tls_errstr(ossl, sizeof(ossl)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, tc->key, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errsz, "%s: key %s: %s", section, tc->key,
		         tls_errstr(ossl, sizeof(ossl)));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errsz, "%s: key %s does not match cert %s", section, tc->key,
		         tc->cert);
		ERR_clear_error();
		goto fail;
	}
	/* IGNORE_UNEXPECTED_EOF: OpenSSL 3 reports a TCP close without close_notify as an error,
	 * which libevent 2.1 (older than that rule) passes on as BEV_EVENT_ERROR; as a plain EOF
	 * it reaches allow_dirty_shutdown's path. Truncation is caught by WebSocket framing. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                             SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* Idle connections give their record buffers back (about 34 KiB each otherwise). */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* Resumption by session tickets (on by default), no server-side cache that grows with
	 * the number of clients. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_cb, NULL);
	SSL_CTX_set_info_callback(ctx, tls_info_cb);
	SSL_CTX_set_ex_data(ctx, tls_srv_idx, ts);
	tls_log_cert(ctx, section);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* "FILE:LINE: [tls NAME]" for errors about one certificate section. */
static void
tls_where(char *buf, size_t bufsz, const struct config *cfg, const struct config_tls_cert *tc,
          const char *section)
{
	if (cfg->file != NULL && tc->line > 0)
		snprintf(buf, bufsz, "%s:%d: %s", cfg->file, tc->line, section);
	else if (cfg->file != NULL)
		snprintf(buf, bufsz, "%s: %s", cfg->file, section);
	else
		snprintf(buf, bufsz, "%s", section);
}

/* A new generation from cfg: its default context (holding the named ones), or NULL. Every
 * certificate is tried, so one pass reports each broken file (to errs, NULL: logged). */
static SSL_CTX *
tls_build(struct tls_server *ts, const struct config *cfg, struct config_errors *errs)
{
	const struct config_tls_cert *def = NULL;
	struct tls_ctxset *set;
	SSL_CTX *ctx, *defctx;
	char err[1024], section[300], where[600];
	size_t i;
	int bad = 0;

	if (cfg->ntls_certs == 0) {
		config_errors_add(errs,
		                  "%s: a listener has the tls flag but there is no [tls] "
		                  "section",
		                  cfg->file != NULL ? cfg->file : "TLS");
		return NULL;
	}
	for (i = 0; i < cfg->ntls_certs && def == NULL; i++)
		if (cfg->tls_certs[i].name == NULL)
			def = &cfg->tls_certs[i];
	if (def == NULL)
		def = &cfg->tls_certs[0]; /* no [tls]: the first [tls NAME] serves clients without
		                             SNI */
	if ((set = calloc(1, sizeof(*set))) == NULL ||
	    (set->named = calloc(cfg->ntls_certs, sizeof(*set->named))) == NULL) {
		free(set);
		config_errors_add(errs, "TLS: out of memory");
		return NULL;
	}
	for (i = 0; i < cfg->ntls_certs; i++) {
		const struct config_tls_cert *tc = &cfg->tls_certs[i];

		if (tc->name == NULL)
			continue;
		snprintf(section, sizeof(section), "[tls %s]", tc->name);
		if ((ctx = tls_ctx_new(ts, cfg, tc, section, err, sizeof(err))) == NULL) {
			tls_where(where, sizeof(where), cfg, tc, "");
			config_errors_add(errs, "%s%s", where, err);
			bad = 1;
			continue;
		}
		set->named[set->nnamed].ctx = ctx;
		if ((set->named[set->nnamed].name = strdup(tc->name)) == NULL) {
			SSL_CTX_free(ctx);
			config_errors_add(errs, "TLS: out of memory");
			bad = 1;
			continue;
		}
		set->nnamed++;
	}
	if (def->name != NULL)
		snprintf(section, sizeof(section), "[tls %s] (default)", def->name);
	else
		snprintf(section, sizeof(section), "[tls]");
	defctx = tls_ctx_new(ts, cfg, def, section, err, sizeof(err));
	if (defctx == NULL) {
		tls_where(where, sizeof(where), cfg, def, "");
		config_errors_add(errs, "%s%s", where, err);
	}
	if (bad || defctx == NULL || SSL_CTX_set_ex_data(defctx, tls_set_idx, set) != 1) {
		tls_ctxset_free(set);
		SSL_CTX_free(defctx);
		return NULL;
	}
	/* From here the set is freed with defctx. */
	SSL_CTX_set_tlsext_servername_callback(defctx, tls_servername_cb);
	SSL_CTX_set_tlsext_servername_arg(defctx, set);
	return defctx;
}

static void
tls_log_errors(struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		log_warnx("TLS %s", errs->msgs[i]);
	config_errors_free(errs);
}

static int
tls_wanted(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nlistens; i++)
		if (cfg->listens[i].tls)
			return 1;
	return 0;
}

static int
tls_register(void)
{
	pthread_once(&tls_once, tls_init_once);
	if (tls_set_idx < 0 || tls_srv_idx < 0 || tls_retry_idx < 0) {
		log_warnx("TLS: cannot register OpenSSL ex_data");
		return -1;
	}
	return 0;
}

int
tls_server_init(struct tls_server **out, const struct config *cfg)
{
	struct config_errors errs = {NULL, 0};
	struct tls_server *ts;

	*out = NULL;
	if (!tls_wanted(cfg))
		return 0;
	if (tls_register() < 0)
		return -1;
	if ((ts = calloc(1, sizeof(*ts))) == NULL) {
		log_warn("TLS");
		return -1;
	}
	if (pthread_mutex_init(&ts->mu, NULL) != 0) {
		free(ts);
		return -1;
	}
	if ((ts->cur = tls_build(ts, cfg, &errs)) == NULL) {
		tls_log_errors(&errs);
		pthread_mutex_destroy(&ts->mu);
		free(ts);
		return -1;
	}
	ts->generation = 1;
	*out = ts;
	return 0;
}

struct tls_candidate *
tls_candidate_new(struct tls_server *ts, const struct config *cfg, struct config_errors *errs)
{
	struct tls_candidate *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		config_errors_add(errs, "TLS: out of memory");
		return NULL;
	}
	/* Listeners are fixed until a restart: without a TLS listener nothing would use the
	 * contexts, but certificates written in the file are still checked. */
	if (ts == NULL && cfg->ntls_certs == 0)
		return c;
	if (tls_register() < 0) {
		config_errors_add(errs, "TLS: cannot register OpenSSL ex_data");
		free(c);
		return NULL;
	}
	if ((c->ctx = tls_build(ts, cfg, errs)) == NULL) {
		if (ts != NULL)
			tls_stat_add(ts, &ts->stats.reload_failures);
		free(c);
		return NULL;
	}
	return c;
}

void
tls_candidate_free(struct tls_candidate *c)
{
	if (c == NULL)
		return;
	SSL_CTX_free(c->ctx);
	free(c);
}

void
tls_candidate_commit(struct tls_server *ts, struct tls_candidate *c)
{
	unsigned char keys[TLS_TICKET_KEYS_LEN];
	SSL_CTX *old;

	if (ts == NULL || c->ctx == NULL) {
		tls_candidate_free(c);
		return;
	}
	pthread_mutex_lock(&ts->mu);
	old = ts->cur;
	/* Tickets issued before the reload still resume after it. */
	if (SSL_CTX_get_tlsext_ticket_keys(old, keys, sizeof(keys)) == 1)
		(void)SSL_CTX_set_tlsext_ticket_keys(c->ctx, keys, sizeof(keys));
	ts->cur = c->ctx;
	ts->generation++;
	pthread_mutex_unlock(&ts->mu);
	c->ctx = NULL;
	tls_candidate_free(c);
	OPENSSL_cleanse(keys, sizeof(keys));
	ERR_clear_error();
	/* Live connections hold their own references to the old generation. */
	SSL_CTX_free(old);
	tls_stat_add(ts, &ts->stats.reloads);
	log_info(
	    "TLS: certificates reloaded (generation %llu); established connections keep theirs",
	    (unsigned long long)ts->generation);
}

int
tls_reload(struct tls_server *ts, const struct config *cfg)
{
	struct config_errors errs = {NULL, 0};
	struct tls_candidate *c;

	if (ts == NULL)
		return 0;
	if ((c = tls_candidate_new(ts, cfg, &errs)) == NULL) {
		tls_log_errors(&errs);
		log_warnx("TLS reload failed: new handshakes keep the certificates loaded before");
		return -1;
	}
	tls_candidate_commit(ts, c);
	return 0;
}

int
tls_config_check(const struct config *cfg, struct config_errors *errs)
{
	struct tls_candidate *c;

	if (!tls_wanted(cfg) && cfg->ntls_certs == 0)
		return 0;
	if ((c = tls_candidate_new(NULL, cfg, errs)) == NULL)
		return -1;
	tls_candidate_free(c);
	return 0;
}

void
tls_server_free(struct tls_server *ts)
{
	if (ts == NULL)
		return;
	SSL_CTX_free(ts->cur);
	pthread_mutex_destroy(&ts->mu);
	free(ts);
}

/* ---- the transport ---- */

struct bufferevent *
tls_bufferevent_new(struct event_base *base, int fd, struct tls_server *ts)
{
	struct bufferevent *bev;
	SSL_CTX *ctx;
	SSL *ssl;

	pthread_mutex_lock(&ts->mu);
	ctx = ts->cur;
	SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&ts->mu);
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx); /* the SSL holds its own references now */
	if (ssl == NULL) {
		ERR_clear_error();
		log_warnx("TLS: SSL_new failed");
		close(fd);
		return NULL;
	}
	/* Ownership: with BEV_OPT_CLOSE_ON_FREE libevent frees the SSL and closes fd with the
	 * bufferevent, and frees the SSL (not fd) when creation fails. */
	bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
	                                     BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		log_warnx("TLS: bufferevent_openssl_socket_new failed");
		close(fd);
		return NULL;
	}
	/* A client dropping TCP without close_notify is an EOF, not an error. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/* Sends (or continues sending) close_notify. 1 while it waits for room in the socket. */
static int
tls_send_close_notify(SSL *ssl)
{
	int r;

	ERR_clear_error();
	r = SSL_shutdown(ssl);
	r = r < 0 && SSL_get_error(ssl, r) == SSL_ERROR_WANT_WRITE;
	ERR_clear_error();
	return r;
}

static void
tls_close_notify_retry(evutil_socket_t fd, short what, void *arg)
{
	SSL *ssl = arg;

	(void)what;
	if (tls_send_close_notify(ssl)) {
		event_add(SSL_get_ex_data(ssl, tls_retry_idx), NULL);
		return;
	}
	shutdown(fd, SHUT_WR);
}

void
tls_finish(struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	int fd = bufferevent_getfd(bev);
	struct event *ev;

	/* Everything we had to say is in the socket: close_notify follows it, then FIN; reading
	 * goes on until the peer's close_notify or EOF, as for plain TCP. A handshake that never
	 * finished has nothing to close. */
	if (ssl != NULL && SSL_is_init_finished(ssl) &&
	    !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN) && tls_send_close_notify(ssl)) {
		/* The socket is full: retry when writable. The event dies with the SSL. */
		if ((ev = SSL_get_ex_data(ssl, tls_retry_idx)) == NULL) {
			ev = event_new(bufferevent_get_base(bev), fd, EV_WRITE,
			               tls_close_notify_retry, ssl);
			if (ev != NULL && SSL_set_ex_data(ssl, tls_retry_idx, ev) != 1) {
				event_free(ev);
				ev = NULL;
			}
		}
		if (ev != NULL && event_add(ev, NULL) == 0)
			return;
	}
	shutdown(fd, SHUT_WR);
}

int
tls_bufferevent_is_tls(struct bufferevent *bev)
{
	return bufferevent_openssl_get_ssl(bev) != NULL;
}
