/* reload.c - SIGHUP: re-read the configuration and hand the new snapshot to every worker for
 * its new connections. All or nothing: the candidate is the snapshot plus everything loaded
 * from files it names (TLS certificates and keys, JWT public keys, backend CA bundles), and it
 * is swapped in only when every part loaded; otherwise every error is logged and the running
 * configuration stays whole. Live connections keep the snapshot they were accepted under
 * (reference counted across threads: the last holder frees it); keys that only a restart can
 * change are reported, not silently ignored. wsgate -t runs the same file checks. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "admission.h"
#include "gateway.h"
#include "log.h"
#include "redis_sentinel.h"
#include "security.h"
#include "service.h"
#include "tls.h"
#include "upstream.h"
#include "worker.h"

/* Everything a reload swaps in at once. */
struct reload_candidate {
	struct config *cfg;
	struct tls_candidate *tls;
	struct security_keyset *keys;
};

static int
reload_listens_equal(const struct config_listen *a, size_t na, const struct config_listen *b,
                     size_t nb)
{
	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i].host, b[i].host) != 0 || strcmp(a[i].port, b[i].port) != 0 ||
		    a[i].tls != b[i].tls)
			return 0;
	return 1;
}

static int
reload_str_equal(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Logs each setting that needs a restart and differs; returns how many. */
static int
reload_report_fixed(const struct config *old, const struct config *new)
{
	int n = 0;

	if (!reload_listens_equal(old->listens, old->nlistens, new->listens, new->nlistens)) {
		log_warnx("reload: [gateway] listen changed; it takes effect after a restart");
		n++;
	}
	if (!reload_listens_equal(old->admin_listens, old->nadmin_listens, new->admin_listens,
	                          new->nadmin_listens)) {
		log_warnx(
		    "reload: [gateway] admin_listen changed; it takes effect after a restart");
		n++;
	}
	if (old->workers != new->workers) {
		log_warnx("reload: [gateway] workers changed; it takes effect after a restart");
		n++;
	}
	if (old->redis.enabled != new->redis.enabled ||
	    !reload_str_equal(old->redis.url, new->redis.url) ||
	    !reload_str_equal(old->redis.channel_prefix, new->redis.channel_prefix) ||
	    !reload_str_equal(old->redis.sentinels, new->redis.sentinels) ||
	    !reload_str_equal(old->redis.master_name, new->redis.master_name) ||
	    old->redis.tls != new->redis.tls || old->redis.cluster != new->redis.cluster ||
	    !reload_str_equal(old->redis.sentinel_password, new->redis.sentinel_password) ||
	    !reload_str_equal(old->redis.sentinel_username, new->redis.sentinel_username) ||
	    !reload_str_equal(old->redis.nodes, new->redis.nodes) ||
	    !reload_str_equal(old->redis.ca_file, new->redis.ca_file) ||
	    !reload_str_equal(old->redis.cert, new->redis.cert) ||
	    !reload_str_equal(old->redis.key, new->redis.key) ||
	    !reload_str_equal(old->redis.tls_server_name, new->redis.tls_server_name)) {
		log_warnx("reload: [redis] changed; the running Redis links keep the old settings "
		          "until a restart");
		n++;
	}
	if (admission_config_differs(old, new)) {
		log_warnx("reload: admission settings changed; the budget keeps the old ones until "
		          "a restart");
		n++;
	}
	return n;
}

/* The CA bundle of every route with wss:// backends: a pool loads its own on first use, but a
 * file that cannot be read must fail the load that names it, not the first client. */
int
reload_check_ca_files(const struct config *cfg, struct config_errors *errs)
{
	char err[512];
	int bad = 0;

	for (size_t i = 0; i < cfg->nroutes; i++) {
		const struct config_route *r = &cfg->routes[i];
		struct ssl_ctx_st *ctx;

		if (r->ca_file == NULL || r->ca_file[0] == '\0')
			continue;
		if ((ctx = upstream_tls_ctx_new(r->ca_file, err, sizeof(err))) == NULL) {
			config_errors_add(errs, "%s:%d: route %s: %s", cfg->file, r->line, r->path,
			                  err);
			bad = 1;
			continue;
		}
		upstream_tls_ctx_free(ctx);
	}
	return bad ? -1 : 0;
}

int
reload_check_files(const struct config *cfg, struct config_errors *errs)
{
	char err[512];
	int r = 0;

	/* Each check runs even after one failed: every broken file is reported at once. */
	if (tls_config_check(cfg, errs) < 0)
		r = -1;
	if (security_config_check(cfg, errs) < 0)
		r = -1;
	if (reload_check_ca_files(cfg, errs) < 0)
		r = -1;
	if (redis_endpoint_check_tls(&cfg->redis, err, sizeof(err)) < 0) {
		config_errors_add(errs, "%s: [redis]: %s", cfg->file, err);
		r = -1;
	}
	return r;
}

static void
reload_candidate_free(struct reload_candidate *c)
{
	tls_candidate_free(c->tls);
	security_keyset_free(c->keys);
	if (c->cfg != NULL)
		config_free(c->cfg);
	memset(c, 0, sizeof(*c));
}

enum reload_part {
	RELOAD_FILE = 1, /* the ini file itself */
	RELOAD_TLS = 2,  /* a certificate or key */
	RELOAD_KEYS = 4, /* a JWT public key */
	RELOAD_CA = 8,   /* a backend CA bundle */
};

/* Loads the whole candidate; 0 when every part loaded, else the reload_part bits that failed,
 * with every error in errs. */
static int
reload_candidate_load(struct gateway *gw, struct reload_candidate *c, struct config_errors *errs)
{
	int bad = 0;

	memset(c, 0, sizeof(*c));
	if (config_load_file(gw->config_path, &c->cfg, errs) < 0)
		return RELOAD_FILE;
	if ((c->tls = tls_candidate_new(gw->tls, c->cfg, errs)) == NULL)
		bad |= RELOAD_TLS;
	if ((c->keys = security_keyset_new(c->cfg, errs)) == NULL)
		bad |= RELOAD_KEYS;
	if (reload_check_ca_files(c->cfg, errs) < 0)
		bad |= RELOAD_CA;
	if (bad)
		reload_candidate_free(c);
	return bad;
}

void
gateway_reload(struct gateway *gw)
{
	struct config_errors errs = {NULL, 0};
	struct reload_candidate cand;
	struct config *cfg, *old = gw->cfg;
	int fixed, bad;

	if (gateway_state(gw) != GW_RUNNING) {
		/* Draining: no new connection will use a new snapshot. */
		log_info("SIGHUP while %s: nothing to reload",
		         gateway_state(gw) == GW_DRAINING ? "draining" : "stopping");
		return;
	}
	log_info("SIGHUP: reloading %s", gw->config_path);
	service_notify_reloading();
	if ((bad = reload_candidate_load(gw, &cand, &errs)) != 0) {
		for (size_t i = 0; i < errs.n; i++)
			log_warnx("reload: %s", errs.msgs[i]);
		if (bad & RELOAD_TLS)
			log_warnx("TLS reload failed: new handshakes keep the certificates loaded "
			          "before");
		if (bad & RELOAD_KEYS)
			log_warnx("security: keeping the previous JWT keys");
		log_warnx("reload: %s rejected (%zu error(s)); the running configuration stays "
		          "whole (routes, certificates, keys, limits)",
		          gw->config_path, errs.n);
		config_errors_free(&errs);
		gateway_notify_reloaded(gw, "serving; last reload rejected, see the log");
		return;
	}
	config_errors_free(&errs);
	cfg = cand.cfg;
	fixed = reload_report_fixed(old, cfg);
	/* Every part loaded: nothing below can fail, so the swap is whole. */
	tls_candidate_commit(gw->tls, cand.tls);
	security_keyset_commit(gw->sec, cand.keys);
	gw->cfg = cfg;
	log_set_level(cfg->log_level);
	log_set_json(cfg->log_format == LOG_FORMAT_JSON);
	/* Each worker gets a reference of its own with the message, gives back its old one and
	 * says so (gateway_reload_applied): the reload is in force once every worker has it. */
	gw->reload_gen++;
	gw->reload_waiting = 0;
	gw->reload_fixed = fixed;
	for (size_t i = 0; i < gw->nworkers; i++) {
		const struct config *held = config_hold(cfg);

		if (worker_post(gw->workers[i], WORKER_MSG_CONFIG, &held, sizeof(held),
		                &gw->reload_gen, sizeof(gw->reload_gen)) < 0) {
			log_warnx("reload: worker %zu keeps the old configuration (out of memory)",
			          i);
			config_release(held);
		} else {
			gw->reload_waiting++;
		}
	}
	config_release(old);
	if (gw->reload_waiting == 0)
		gateway_reload_applied(gw, gw->reload_gen);
}

void
gateway_reload_applied(struct gateway *gw, uint64_t gen)
{
	/* An answer to an older reload: a newer snapshot is on its way to every worker. */
	if (gen != gw->reload_gen || (gw->reload_waiting > 0 && --gw->reload_waiting > 0))
		return;
	log_info("reload: %s in force for new connections (%zu route(s)%s)", gw->config_path,
	         gw->cfg->nroutes,
	         gw->reload_fixed ? "; some settings need a restart, see above" : "");
	gateway_notify_reloaded(gw, "serving; reloaded");
}
