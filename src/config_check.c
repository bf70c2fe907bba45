/* config_check.c - the configuration's validation pass, after the last line: defaults, required
 * keys, files, templates and cross-key rules of routes, Redis and listeners (config.c reads). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_ctx.h"
#include "config_keys.h"
#include "config_value.h"
#include "route_map.h"
#include "route_syntax.h"

/* Applies defaults to the keys of base b (and of section sec, unless -1) that no line set;
 * reports required ones. For an instance, what names it ("route /x") and line is its header;
 * for struct config, what is NULL and a key is required only when its section appears. */
static void
cfg_finish_instance(struct cfg_ctx *c, enum config_base b, int sec, void *base, const int *seen,
                    const char *what, int line)
{
	char why[256];

	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];

		if (k->base != b || (sec >= 0 && (int)k->section != sec) || seen[i] != 0)
			continue;
		if (k->def != NULL) {
			int r = config_key_store(k, base, k->def, 0, why, sizeof(why));

			if (r == -1)
				cfg_error(c, 0, "internal error: bad default for %s: %s", k->name,
				          why);
			else if (r == -2)
				c->oom = 1;
		} else if ((k->flags & CFG_F_REQUIRED) && what != NULL) {
			cfg_error(c, line, "%s has no %s", what, k->name);
		} else if ((k->flags & CFG_F_REQUIRED) && c->sec_line[k->section] > 0) {
			cfg_error(c, c->sec_line[k->section], "[%s] has no %s",
			          config_sections[k->section].name, k->name);
		}
	}
}

static int
cfg_seen_line(const int *seen, enum config_section_kind sec, const char *name)
{
	const struct config_key *k = config_key_find(sec, name);

	return k != NULL ? seen[k - config_keys] : 0;
}

/* Every CFG_T_PATH key of the instance must name a readable file now, not at first use. */
static void
cfg_check_files(struct cfg_ctx *c, enum config_base b, void *base, const int *seen)
{
	char q[1024];

	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		const char *path;
		int err;

		if (k->base == b && k->type == CFG_T_PATH && seen[i] != 0 &&
		    (path = *(char **)((char *)base + k->off)) != NULL &&
		    (err = config_value_readable(path)) != 0)
			cfg_error(c, seen[i], "cannot read %s '%s': %s", k->name,
			          config_value_quote(q, sizeof(q), path), strerror(err));
	}
}

/* A channel template's placeholders: {name} must be in the route path, {jwt.x} needs auth. */
static void
cfg_check_template(struct cfg_ctx *c, const struct config_route *r, const char *key,
                   const char *tmpl, int line)
{
	char ph[160];
	int why = config_template_unbound(tmpl, r->path, r->auth == AUTH_JWT, ph, sizeof(ph));

	if (why == 2)
		cfg_error(c, line, "%s template '%s' uses %s but auth is not jwt", key, tmpl, ph);
	else if (why == 1)
		cfg_error(c, line, "%s template '%s' uses %s which is not in the route path %s",
		          key, tmpl, ph, r->path);
}

/* The rules between the keys of one route. */
static void
cfg_check_route(struct cfg_ctx *c, size_t i)
{
	const struct config_route *r = &c->cfg->routes[i];
	const int *seen = c->seen[CFG_BASE_ROUTE][i];
	int sub = cfg_seen_line(seen, CFG_SEC_ROUTE, "subscribe");
	int auth = cfg_seen_line(seen, CFG_SEC_ROUTE, "auth");
	int secret = cfg_seen_line(seen, CFG_SEC_ROUTE, "jwt_secret");
	int pubkey = cfg_seen_line(seen, CFG_SEC_ROUTE, "jwt_public_key");
	int from = cfg_seen_line(seen, CFG_SEC_ROUTE, "jwt_from");
	int origins = cfg_seen_line(seen, CFG_SEC_ROUTE, "origins");

	if ((unsigned)r->type > ROUTE_PROXY)
		return; /* no valid type line: already reported */
	for (size_t j = 0; j < config_nkeys; j++) {
		const struct config_key *k = &config_keys[j];

		if (k->base == CFG_BASE_ROUTE && seen[j] != 0 && !config_key_fits_route(k, r->type))
			cfg_error(c, seen[j], "key '%s' is not valid for a route of type %s",
			          k->name, config_route_type_name(r->type));
	}
	if (r->publish != NULL && strcmp(r->publish, "none") == 0) {
		/* "publish = none": read-only, said explicitly. */
		free(r->publish);
		c->cfg->routes[i].publish = NULL;
	}
	if (r->server_only && r->publish != NULL)
		cfg_error(
		    c, cfg_seen_line(seen, CFG_SEC_ROUTE, "server_only"),
		    "server_only = yes and a publish template: clients of a server_only route "
		    "cannot publish");
	if (r->type == ROUTE_PUBSUB && r->nsubscribe == 0 && r->publish == NULL)
		cfg_error(c, r->line, "route %s (pubsub) needs subscribe or publish", r->path);
	if (r->type == ROUTE_PROXY && r->nbackends == 0)
		cfg_error(c, r->line, "route %s (proxy) needs at least one backend", r->path);
	if (r->conflate_key != NULL && strcmp(r->conflate_key, "channel") != 0 &&
	    (strncmp(r->conflate_key, "json:", 5) != 0 || r->conflate_key[5] == '\0'))
		cfg_error(c, cfg_seen_line(seen, CFG_SEC_ROUTE, "conflate_key"),
		          "conflate_key must be channel or json:FIELD");
	if (r->auth == AUTH_JWT && r->jwt_secret == NULL && r->jwt_public_key == NULL)
		cfg_error(c, auth, "auth = jwt needs jwt_secret or jwt_public_key");
	if (r->auth == AUTH_JWT && r->jwt_secret != NULL && r->jwt_public_key != NULL)
		cfg_error(c, secret > pubkey ? secret : pubkey,
		          "jwt_secret and jwt_public_key are both set: keep one");
	if (r->auth != AUTH_JWT) {
		const int lines[] = {secret, pubkey, from};
		const char *names[] = {"jwt_secret", "jwt_public_key", "jwt_from"};

		for (size_t j = 0; j < 3; j++) {
			if (lines[j] != 0)
				cfg_error(c, lines[j], "%s is set but auth is not jwt", names[j]);
		}
	}
	for (size_t j = 0; j < r->norigins && r->norigins > 1; j++) {
		if (strcmp(r->origins[j], "*") == 0) {
			cfg_error(c, origins,
			          "origins: '*' allows any origin and cannot be "
			          "combined with others");
			break;
		}
	}
	for (size_t j = 0; j < r->nsubscribe; j++)
		cfg_check_template(c, r, "subscribe", r->subscribe[j], sub);
	if (r->publish != NULL)
		cfg_check_template(c, r, "publish", r->publish,
		                   cfg_seen_line(seen, CFG_SEC_ROUTE, "publish"));
}

/* A "host:port, host:port" list of [redis] key (at line): the number of items, or -1 after
 * reporting the first bad one. */
static int
cfg_check_hostports(struct cfg_ctx *c, int line, const char *key, const char *list)
{
	const char *why, *p, *e;
	char host[256];
	int port, n = 0;

	for (p = list; *p != '\0'; p = *e != '\0' ? e + 1 : e) {
		e = strchr(p, ',');
		e = e != NULL ? e : p + strlen(p);
		while (p < e && config_value_is_space((unsigned char)*p))
			p++;
		size_t len = (size_t)(e - p);

		while (len > 0 && config_value_is_space((unsigned char)p[len - 1]))
			len--;
		if (config_parse_hostport(p, len, host, sizeof(host), &port, &why) < 0) {
			cfg_error(c, line, "%s: '%.*s': %s", key, (int)len, p, why);
			return -1;
		}
		n++;
	}
	return n;
}

/* [redis]: Sentinel, Cluster and TLS keys that only make sense together. */
static void
cfg_check_redis(struct cfg_ctx *c, struct config_redis *r)
{
	int sl = cfg_seen_line(c->cfg_seen, CFG_SEC_REDIS, "sentinels");
	int ml = cfg_seen_line(c->cfg_seen, CFG_SEC_REDIS, "master_name");
	int nl = cfg_seen_line(c->cfg_seen, CFG_SEC_REDIS, "nodes");
	int cl = cfg_seen_line(c->cfg_seen, CFG_SEC_REDIS, "cluster");
	int n;

	if (r->sentinels != NULL) {
		if ((n = cfg_check_hostports(c, sl, "sentinels", r->sentinels)) < 0)
			return;
		if (n == 0 || n > REDIS_MAX_SENTINELS)
			cfg_error(c, sl, "sentinels: 1 to %d host:port items", REDIS_MAX_SENTINELS);
		if (r->master_name == NULL && ml == 0)
			cfg_error(c, sl,
			          "sentinels needs master_name (the name the sentinels "
			          "monitor)");
	} else if (r->master_name != NULL && sl == 0) {
		cfg_error(c, ml, "master_name is set but sentinels is not");
	}
	if (r->nodes != NULL) {
		if ((n = cfg_check_hostports(c, nl, "nodes", r->nodes)) < 0)
			return;
		if (n == 0 || n > REDIS_MAX_SEEDS)
			cfg_error(c, nl, "nodes: 1 to %d host:port items", REDIS_MAX_SEEDS);
		if (!r->cluster)
			cfg_error(c, nl, "nodes is set but cluster is not (cluster = yes)");
	}
	if (r->sentinels == NULL && (r->sentinel_password != NULL || r->sentinel_username != NULL))
		cfg_error(c,
		          cfg_seen_line(c->cfg_seen, CFG_SEC_REDIS,
		                        r->sentinel_password != NULL ? "sentinel_password"
		                                                     : "sentinel_username"),
		          "sentinel_password/sentinel_username are set but sentinels is not");
	else if (r->sentinel_username != NULL && r->sentinel_password == NULL)
		cfg_error(c, cfg_seen_line(c->cfg_seen, CFG_SEC_REDIS, "sentinel_username"),
		          "sentinel_username needs sentinel_password");
	if (r->cluster && r->sentinels != NULL)
		cfg_error(c, cl,
		          "cluster = yes and sentinels exclude each other (a cluster fails "
		          "over by itself)");
	/* A key that failed to parse was reported already: only one never given is missing. */
	if ((cfg_seen_line(c->cfg_seen, CFG_SEC_REDIS, "cert") == 0) !=
	    (cfg_seen_line(c->cfg_seen, CFG_SEC_REDIS, "key") == 0))
		cfg_error(c,
		          cfg_seen_line(c->cfg_seen, CFG_SEC_REDIS, "cert") +
		              cfg_seen_line(c->cfg_seen, CFG_SEC_REDIS, "key"),
		          "[redis] cert and key go together");
	if (!r->tls && !r->url_tls) {
		static const char *const tlskeys[] = {"ca_file", "cert", "key", "tls_server_name"};

		for (size_t i = 0; i < 4; i++) {
			int line = cfg_seen_line(c->cfg_seen, CFG_SEC_REDIS, tlskeys[i]);

			if (line != 0)
				cfg_error(c, line,
				          "[redis] %s is set but TLS is off (tls = yes or a "
				          "rediss:// url)",
				          tlskeys[i]);
		}
	}
	r->tls = r->tls || r->url_tls;
}

static int
cfg_map_line(void *arg, size_t route, const char *key)
{
	struct cfg_ctx *c = arg;
	int line = cfg_seen_line(c->seen[CFG_BASE_ROUTE][route], CFG_SEC_ROUTE, key);

	return line != 0 ? line : c->cfg->routes[route].line;
}

static void
cfg_map_report(void *arg, int line, const char *msg)
{
	cfg_error(arg, line, "%s", msg);
}

/* Reports each address of a[] that an earlier one of a[] or any of b[] already has. */
static void
cfg_check_addrs(struct cfg_ctx *c, const char *what, const struct config_listen *a, size_t na,
                const struct config_listen *b, size_t nb)
{
	const struct config_listen *y;
	char where[32], addr[80];

	for (size_t i = 0; i < na; i++) {
		if ((y = config_listen_dup(a, i, b, nb)) == NULL)
			continue;
		if (y->line > 0)
			snprintf(where, sizeof(where), "line %d", y->line);
		cfg_error(c, a[i].line, "duplicate %s address %s (first at %s)", what,
		          config_listen_fmt(addr, sizeof(addr), &a[i]),
		          y->line > 0   ? where
		          : y->line < 0 ? c->env[-y->line - 1].name
		                        : "the default listen");
	}
}

void
cfg_validate(struct cfg_ctx *c)
{
	struct config *cfg = c->cfg;
	int has_default_tls = cfg->ntls_certs > 0 && cfg->tls_certs[0].name == NULL;
	char what[1024], q[1024];

	cfg_finish_instance(c, CFG_BASE_CONFIG, -1, cfg, c->cfg_seen, NULL, 0);
	cfg_check_files(c, CFG_BASE_CONFIG, cfg, c->cfg_seen);
	for (size_t i = 0; i < cfg->ntls_certs; i++) {
		struct config_tls_cert *t = &cfg->tls_certs[i];
		int sec = t->name != NULL ? CFG_SEC_TLS_SNI : CFG_SEC_TLS;
		int *seen = c->seen[CFG_BASE_TLS][i];

		snprintf(what, sizeof(what), "[tls%s%s]", t->name != NULL ? " " : "",
		         t->name != NULL ? config_value_quote(q, sizeof(q), t->name) : "");
		cfg_finish_instance(c, CFG_BASE_TLS, sec, t, seen, what, t->line);
		cfg_check_files(c, CFG_BASE_TLS, t, seen);
		if (!has_default_tls)
			cfg_error(c, t->line, "%s needs a default [tls] section", what);
	}
	for (size_t i = 0; i < cfg->nroutes; i++) {
		struct config_route *r = &cfg->routes[i];

		snprintf(what, sizeof(what), "route %s", config_value_quote(q, sizeof(q), r->path));
		cfg_finish_instance(c, CFG_BASE_ROUTE, -1, r, c->seen[CFG_BASE_ROUTE][i], what,
		                    r->line);
		cfg_check_files(c, CFG_BASE_ROUTE, r, c->seen[CFG_BASE_ROUTE][i]);
		cfg_check_route(c, i);
	}
	route_map_check(cfg, cfg_map_line, cfg_map_report, c);
	if (c->route_headers == 0)
		cfg_error(c, 0, "no [route] section: nothing to serve");
	if (cfg->ping_interval_ms > 0 && cfg->pong_timeout_ms == 0)
		cfg_error(c, cfg_seen_line(c->cfg_seen, CFG_SEC_HEARTBEAT, "pong_timeout"),
		          "pong_timeout must be > 0 when ping_interval is set");
	cfg_check_addrs(c, "listen", cfg->listens, cfg->nlistens, NULL, 0);
	cfg_check_addrs(c, "admin_listen", cfg->admin_listens, cfg->nadmin_listens, cfg->listens,
	                cfg->nlistens);
	for (size_t i = 0; i < cfg->nlistens && !has_default_tls; i++) {
		if (cfg->listens[i].tls)
			cfg_error(c, cfg->listens[i].line,
			          "listener %s uses tls but there is no "
			          "[tls] section with cert and key",
			          config_listen_fmt(q, sizeof(q), &cfg->listens[i]));
	}
	for (size_t i = 0; i < cfg->nlistens && cfg->ntrusted_proxies == 0; i++) {
		if (cfg->listens[i].proxy_protocol)
			cfg_error(c, cfg->listens[i].line,
			          "listener %s takes proxy_protocol but "
			          "trusted_proxies is empty: no peer may send it",
			          config_listen_fmt(q, sizeof(q), &cfg->listens[i]));
	}
	cfg->redis.enabled = c->sec_line[CFG_SEC_REDIS] > 0 ||
	                     cfg_env_find(c, config_key_find(CFG_SEC_REDIS, "url")) >= 0;
	cfg_check_redis(c, &cfg->redis);
	cfg->app_message_len = cfg->app_message != NULL ? strlen(cfg->app_message) : 0;
	if (cfg->app_message_len > cfg->max_message_size)
		cfg_error(c, cfg_seen_line(c->cfg_seen, CFG_SEC_HEARTBEAT, "app_message"),
		          "app_message is %zu bytes, more than max_message_size (%llu)",
		          cfg->app_message_len, (unsigned long long)cfg->max_message_size);
	/* the snapshot says "no line" (0) for what came from the environment */
	for (size_t i = 0; i < cfg->nlistens + cfg->nadmin_listens; i++) {
		struct config_listen *l =
		    i < cfg->nlistens ? &cfg->listens[i] : &cfg->admin_listens[i - cfg->nlistens];

		l->line = l->line < 0 ? 0 : l->line;
	}
}
