/* reload.c - SIGHUP: re-read the configuration and hand the new snapshot to every worker for
 * its new connections. Live connections keep the snapshot they were accepted under (reference
 * counted across threads: the last holder frees it); a file that fails validation is rejected
 * with its errors logged and the old snapshot stays; keys that only a restart can change are
 * reported, not silently ignored. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "gateway.h"
#include "log.h"
#include "security.h"
#include "service.h"
#include "tls.h"
#include "worker.h"

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
		log_warnx("reload: [gateway] admin_listen changed; it takes effect after a restart");
		n++;
	}
	if (old->workers != new->workers) {
		log_warnx("reload: [gateway] workers changed; it takes effect after a restart");
		n++;
	}
	if (old->redis.enabled != new->redis.enabled || !reload_str_equal(old->redis.url,
	    new->redis.url) || !reload_str_equal(old->redis.channel_prefix,
	    new->redis.channel_prefix)) {
		log_warnx("reload: [redis] changed; the running Redis links keep the old settings "
		    "until a restart");
		n++;
	}
	return n;
}

void
gateway_reload(struct gateway *gw)
{
	struct config_errors errs = { NULL, 0 };
	struct config *cfg = NULL, *old = gw->cfg;
	int fixed;

	log_info("SIGHUP: reloading %s", gw->config_path);
	service_notify_reloading();
	if (config_load_file(gw->config_path, &cfg, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			log_warnx("reload: %s", errs.msgs[i]);
		log_warnx("reload: %s rejected (%zu error(s)); the running configuration stays",
		    gw->config_path, errs.n);
		config_errors_free(&errs);
		gateway_notify_reloaded(gw, "serving; last reload rejected, see the log");
		return;
	}
	config_errors_free(&errs);
	fixed = reload_report_fixed(old, cfg);
	/* Certificates first: a bad key file keeps the old ones (tls_reload logs why). */
	if (gw->tls != NULL)
		(void)tls_reload(gw->tls, cfg);
	/* JWT public keys of the new routes; a bad file keeps the old keys (logged). */
	if (security_set_config(gw->sec, cfg) < 0)
		log_warnx("reload: routes whose jwt_public_key failed refuse tokens until fixed");
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
			log_warnx("reload: worker %zu keeps the old configuration (out of memory)", i);
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
	    gw->cfg->nroutes, gw->reload_fixed ? "; some settings need a restart, see above" : "");
	gateway_notify_reloaded(gw, "serving; reloaded");
}
