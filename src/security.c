/* security.c - what a route demands before its target sees a handshake: an allowed Origin and
 * a valid token (jwt.c does the token itself; here are the keys, where tokens are looked for and
 * the replies), plus the refusal counters shared with the limits at accept time. */
#include "security.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "log.h"

struct security_key {
	char *route;    /* route path ... */
	char *file;     /* ... and its jwt_public_key: what a route looks its key up by */
	EVP_PKEY *pkey; /* one reference; a check takes its own while it verifies */
	enum jwt_alg alg;
};

/* The keys of one snapshot's routes, loaded but not yet in force (a reload candidate). */
struct security_keyset {
	struct security_key *keys;
	size_t nkeys;
};

struct security {
	pthread_mutex_t mu;        /* keys: swapped on reload, read by workers' handshakes */
	struct security_key *keys; /* the public keys of the newest snapshot's routes */
	size_t nkeys;
	/* The keys of the snapshot before: connections accepted just before a reload still find
	 * theirs. A key is never read from disk during a handshake. */
	struct security_key *prev;
	size_t nprev;
	uint64_t n[SEC_NCOUNTERS]; /* updated with atomics: workers may run on threads */
};

static const char *const security_counter_names[SEC_NCOUNTERS] = {
    "origin_refused",   "token_missing",          "token_invalid",      "token_expired",
    "max_connections",  "max_connections_per_ip", "accept_rate_per_ip", "refusal_dropped",
    "per_ip_untracked", "message_rate",           "proxy_header",
};

const char *
security_counter_name(enum security_counter k)
{
	return (unsigned)k < SEC_NCOUNTERS ? security_counter_names[k] : "?";
}

void
security_count(struct security *s, enum security_counter k)
{
	if (s != NULL && (unsigned)k < SEC_NCOUNTERS)
		__atomic_fetch_add(&s->n[k], 1, __ATOMIC_RELAXED);
}

void
security_stats_get(const struct security *s, struct security_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (s == NULL)
		return;
	for (size_t i = 0; i < SEC_NCOUNTERS; i++)
		out->n[i] = __atomic_load_n(&s->n[i], __ATOMIC_RELAXED);
}

/* ---- keys ---- */

/* A PEM public key usable for RS256 or ES256; NULL with *why set otherwise. */
static EVP_PKEY *
security_load_pubkey(const char *path, enum jwt_alg *alg, const char **why)
{
	EVP_PKEY *pkey;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL) {
		*why = "cannot open the file";
		return NULL;
	}
	pkey = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	ERR_clear_error();
	if (pkey == NULL) {
		*why = "no PEM public key (-----BEGIN PUBLIC KEY-----) in it";
		return NULL;
	}
	if ((*alg = jwt_key_alg(pkey)) == JWT_ALG_UNKNOWN) {
		EVP_PKEY_free(pkey);
		*why = "not an RSA key of 2048 bits or more (RS256) nor an EC P-256 key (ES256)";
		return NULL;
	}
	return pkey;
}

static void
security_keys_free(struct security_key *keys, size_t n)
{
	for (size_t i = 0; keys != NULL && i < n; i++) {
		EVP_PKEY_free(keys[i].pkey);
		free(keys[i].route);
		free(keys[i].file);
	}
	free(keys);
}

/* "FILE:LINE: route PATH" for errors about one route's key. */
static void
security_where(char *buf, size_t bufsz, const struct config *cfg, const struct config_route *r)
{
	if (cfg->file != NULL && r->line > 0)
		snprintf(buf, bufsz, "%s:%d: route %s", cfg->file, r->line, r->path);
	else
		snprintf(buf, bufsz, "route %s", r->path);
}

/* The public keys of cfg's routes (copies: nothing points into the snapshot, which may go
 * before this table does). -1 when one cannot be loaded; every failure goes to errs. */
static int
security_keys_load(const struct config *cfg, struct security_key **out, size_t *nout,
                   struct config_errors *errs)
{
	struct security_key *keys, *k;
	const char *why = NULL;
	char where[512];
	size_t n = 0;
	int bad = 0;

	*out = NULL;
	*nout = 0;
	if ((keys = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*keys))) == NULL) {
		config_errors_add(errs, "security: keys: out of memory");
		return -1;
	}
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const struct config_route *r = &cfg->routes[i];

		if (r->auth != AUTH_JWT)
			continue;
		security_where(where, sizeof(where), cfg, r);
		if ((r->jwt_secret == NULL || r->jwt_secret[0] == '\0') &&
		    (r->jwt_public_key == NULL || r->jwt_public_key[0] == '\0')) {
			config_errors_add(errs, "%s: auth = jwt needs jwt_secret or jwt_public_key",
			                  where);
			bad = 1;
			continue;
		}
		if (r->jwt_public_key == NULL || r->jwt_public_key[0] == '\0')
			continue;
		k = &keys[n];
		if ((k->pkey = security_load_pubkey(r->jwt_public_key, &k->alg, &why)) == NULL) {
			config_errors_add(errs, "%s: jwt_public_key %s: %s", where,
			                  r->jwt_public_key, why);
			bad = 1;
			continue;
		}
		n++;
		if ((k->route = strdup(r->path)) == NULL ||
		    (k->file = strdup(r->jwt_public_key)) == NULL) {
			config_errors_add(errs, "security: keys: out of memory");
			bad = 1;
			continue;
		}
		log_debug("route %s: %s key from %s", r->path, jwt_alg_name(k->alg),
		          r->jwt_public_key);
	}
	if (bad) {
		security_keys_free(keys, n);
		return -1;
	}
	*out = keys;
	*nout = n;
	return 0;
}

static void
security_log_errors(struct config_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		log_warnx("%s", errs->msgs[i]);
	config_errors_free(errs);
}

struct security *
security_new(const struct config *cfg)
{
	struct config_errors errs = {NULL, 0};
	struct security *s;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_warn("security_new");
		return NULL;
	}
	if (security_keys_load(cfg, &s->keys, &s->nkeys, &errs) < 0) {
		security_log_errors(&errs);
		free(s);
		return NULL;
	}
	if (pthread_mutex_init(&s->mu, NULL) != 0) {
		security_keys_free(s->keys, s->nkeys);
		free(s);
		return NULL;
	}
	return s;
}

struct security_keyset *
security_keyset_new(const struct config *cfg, struct config_errors *errs)
{
	struct security_keyset *ks;

	if ((ks = calloc(1, sizeof(*ks))) == NULL) {
		config_errors_add(errs, "security: keys: out of memory");
		return NULL;
	}
	if (security_keys_load(cfg, &ks->keys, &ks->nkeys, errs) < 0) {
		free(ks);
		return NULL;
	}
	return ks;
}

void
security_keyset_free(struct security_keyset *ks)
{
	if (ks == NULL)
		return;
	security_keys_free(ks->keys, ks->nkeys);
	free(ks);
}

void
security_keyset_commit(struct security *s, struct security_keyset *ks)
{
	struct security_key *old;
	size_t nold;

	pthread_mutex_lock(&s->mu);
	old = s->prev;
	nold = s->nprev;
	s->prev = s->keys;
	s->nprev = s->nkeys;
	s->keys = ks->keys;
	s->nkeys = ks->nkeys;
	pthread_mutex_unlock(&s->mu);
	free(ks);
	/* A check in progress holds its own reference to the key it uses. */
	security_keys_free(old, nold);
}

int
security_set_config(struct security *s, const struct config *cfg)
{
	struct config_errors errs = {NULL, 0};
	struct security_keyset *ks;

	if ((ks = security_keyset_new(cfg, &errs)) == NULL) {
		security_log_errors(&errs);
		log_warnx("security: keeping the previous JWT keys");
		return -1;
	}
	security_keyset_commit(s, ks);
	return 0;
}

int
security_config_check(const struct config *cfg, struct config_errors *errs)
{
	struct security_keyset *ks;

	if ((ks = security_keyset_new(cfg, errs)) == NULL)
		return -1;
	security_keyset_free(ks);
	return 0;
}

void
security_free(struct security *s)
{
	if (s == NULL)
		return;
	security_keys_free(s->keys, s->nkeys);
	security_keys_free(s->prev, s->nprev);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* ---- Origin ---- */

struct security_origin {
	const char *scheme, *host, *port;
	size_t scheme_len, host_len, port_len;
};

static int
security_host_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_';
}

/* "scheme://host[:port]" (host may be "[v6]"; a pattern's may start with "*."). 0 when not. */
static int
security_origin_split(const char *s, size_t n, int pattern, struct security_origin *o)
{
	size_t i = 0, h, e;

	memset(o, 0, sizeof(*o));
	while (i < n && s[i] != ':')
		i++;
	if (i == 0 || n - i < 3 || memcmp(s + i, "://", 3) != 0)
		return 0;
	for (size_t k = 0; k < i; k++) {
		unsigned char c = (unsigned char)s[k];
		int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');

		if (!alpha &&
		    (k == 0 || !((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.')))
			return 0;
	}
	o->scheme = s;
	o->scheme_len = i;
	h = i + 3;
	if (h < n && s[h] == '[') {
		for (e = h + 1; e < n && s[e] != ']'; e++)
			if (!((s[e] >= '0' && s[e] <= '9') || (s[e] >= 'a' && s[e] <= 'f') ||
			      (s[e] >= 'A' && s[e] <= 'F') || s[e] == ':' || s[e] == '.'))
				return 0;
		if (e == n || e == h + 1)
			return 0;
		e++;
	} else {
		e = h;
		if (pattern && n - h >= 2 && s[h] == '*' && s[h + 1] == '.')
			e = h + 2;
		for (; e < n && s[e] != ':'; e++)
			if (!security_host_char((unsigned char)s[e]))
				return 0;
		if (e == h || (e == h + 2 && s[h] == '*'))
			return 0;
	}
	o->host = s + h;
	o->host_len = e - h;
	if (e < n) {
		if (s[e] != ':' || n - e - 1 == 0 || n - e - 1 > 5)
			return 0;
		for (i = e + 1; i < n; i++)
			if (s[i] < '0' || s[i] > '9')
				return 0;
		o->port = s + e + 1;
		o->port_len = n - e - 1;
	}
	return 1;
}

static int
security_caseeq(const char *a, size_t an, const char *b, size_t bn)
{
	return an == bn && (an == 0 || strncasecmp(a, b, an) == 0);
}

/* The port, with the scheme's default written as none. */
static void
security_origin_port(const struct security_origin *o, const char **p, size_t *n)
{
	static const struct {
		const char *scheme, *port;
	} defaults[] = {{"http", "80"}, {"ws", "80"}, {"https", "443"}, {"wss", "443"}};

	*p = o->port;
	*n = o->port_len;
	for (size_t i = 0; o->port != NULL && i < sizeof(defaults) / sizeof(defaults[0]); i++)
		if (security_caseeq(o->scheme, o->scheme_len, defaults[i].scheme,
		                    strlen(defaults[i].scheme)) &&
		    o->port_len == strlen(defaults[i].port) &&
		    memcmp(o->port, defaults[i].port, o->port_len) == 0) {
			*p = NULL;
			*n = 0;
		}
}

int
security_origin_match(const char *pattern, const char *origin, size_t origin_len)
{
	struct security_origin po, oo;
	const char *pp, *op;
	size_t ppn, opn, plen;

	if (pattern == NULL || origin == NULL)
		return 0;
	plen = strlen(pattern);
	if (plen == 1 && pattern[0] == '*')
		return 1;
	if (plen == 4 && memcmp(pattern, "null", 4) == 0)
		return origin_len == 4 && memcmp(origin, "null", 4) == 0;
	if (!security_origin_split(pattern, plen, 1, &po) ||
	    !security_origin_split(origin, origin_len, 0, &oo))
		return 0;
	if (!security_caseeq(po.scheme, po.scheme_len, oo.scheme, oo.scheme_len))
		return 0;
	security_origin_port(&po, &pp, &ppn);
	security_origin_port(&oo, &op, &opn);
	if (ppn != opn || (ppn > 0 && memcmp(pp, op, ppn) != 0))
		return 0;
	if (po.host_len >= 2 && po.host[0] == '*') {
		/* "*.example.com": a strict subdomain; the suffix keeps its dot, so
		 * "evilexample.com" does not end with ".example.com". */
		const char *suffix = po.host + 1;
		size_t slen = po.host_len - 1;

		return oo.host_len > slen &&
		       security_caseeq(oo.host + oo.host_len - slen, slen, suffix, slen);
	}
	return security_caseeq(po.host, po.host_len, oo.host, oo.host_len);
}

int
security_origin_allowed(char *const *patterns, size_t npatterns, const char *origin,
                        size_t origin_len)
{
	if (npatterns == 0)
		return 1;
	if (origin == NULL || origin_len == 0)
		return 0; /* a list is a promise to browsers: no Origin, no entry */
	for (size_t i = 0; i < npatterns; i++)
		if (security_origin_match(patterns[i], origin, origin_len))
			return 1;
	return 0;
}

/* ---- finding the token ---- */

int
security_cookie_get(const char *cookie, size_t n, const char *name, const char **val, size_t *len)
{
	size_t i = 0, start, eq, end, nlen = strlen(name);

	while (cookie != NULL && i < n) {
		while (i < n && (cookie[i] == ' ' || cookie[i] == '\t' || cookie[i] == ';'))
			i++;
		start = i;
		while (i < n && cookie[i] != ';')
			i++;
		end = i;
		while (end > start && (cookie[end - 1] == ' ' || cookie[end - 1] == '\t'))
			end--;
		for (eq = start; eq < end && cookie[eq] != '='; eq++)
			;
		if (eq < end && eq - start == nlen && memcmp(cookie + start, name, nlen) == 0) {
			const char *v = cookie + eq + 1;
			size_t vn = end - eq - 1;

			if (vn >= 2 && v[0] == '"' && v[vn - 1] == '"') {
				v++;
				vn -= 2;
			}
			*val = v;
			*len = vn;
			return 1;
		}
	}
	return 0;
}

static int
security_bearer(const struct http_str *h, const char **tok, size_t *len)
{
	size_t i = 6;

	if (h->p == NULL || h->n <= 7 || strncasecmp(h->p, "Bearer", 6) != 0 ||
	    (h->p[6] != ' ' && h->p[6] != '\t'))
		return 0;
	while (i < h->n && (h->p[i] == ' ' || h->p[i] == '\t'))
		i++;
	if (i == h->n)
		return 0;
	*tok = h->p + i;
	*len = h->n - i;
	return 1;
}

int
security_find_token(const struct config_route *r, const struct http_request *req, const char **tok,
                    size_t *len)
{
	static const enum jwt_source all[] = {JWT_FROM_HEADER, JWT_FROM_QUERY, JWT_FROM_COOKIE};
	const enum jwt_source *from = r->njwt_from > 0 ? r->jwt_from : all;
	size_t nfrom = r->njwt_from > 0 ? r->njwt_from : sizeof(all) / sizeof(all[0]);

	for (size_t i = 0; i < nfrom; i++) {
		int found = 0;

		switch (from[i]) {
		case JWT_FROM_HEADER:
			found = security_bearer(&req->authorization, tok, len);
			break;
		case JWT_FROM_QUERY:
			found = req->query.p != NULL &&
			        route_query_get(req->query.p, req->query.n, "token", 5, tok, len);
			break;
		case JWT_FROM_COOKIE:
			found =
			    req->cookie.p != NULL &&
			    security_cookie_get(req->cookie.p, req->cookie.n, "token", tok, len);
			break;
		}
		if (found && *len > 0)
			return 1;
	}
	return 0;
}

/* ---- the check ---- */

/* The key of route r from a table, a reference the caller frees; NULL when not there. */
static EVP_PKEY *
security_keys_find(const struct security_key *keys, size_t n, const struct config_route *r,
                   enum jwt_alg *alg)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(keys[i].route, r->path) == 0 &&
		    strcmp(keys[i].file, r->jwt_public_key) == 0 &&
		    EVP_PKEY_up_ref(keys[i].pkey) == 1) {
			*alg = keys[i].alg;
			return keys[i].pkey;
		}
	return NULL;
}

/* The key of route r, a reference the caller frees: from the keys of the newest snapshot or
 * the one before. Never read from disk here: a key is loaded once per (re)load, and a file
 * that failed to load made that load fail, so a client cannot make us re-read (and re-log)
 * a broken file per handshake. NULL (the token is refused) for a snapshot two reloads old. */
static EVP_PKEY *
security_route_pkey(struct security *s, const struct config_route *r, enum jwt_alg *alg)
{
	EVP_PKEY *pkey = NULL;

	*alg = JWT_ALG_UNKNOWN;
	if (s == NULL || r->jwt_public_key == NULL || r->jwt_public_key[0] == '\0')
		return NULL;
	pthread_mutex_lock(&s->mu);
	if ((pkey = security_keys_find(s->keys, s->nkeys, r, alg)) == NULL)
		pkey = security_keys_find(s->prev, s->nprev, r, alg);
	pthread_mutex_unlock(&s->mu);
	if (pkey == NULL)
		log_debug("route %s: no key loaded for %s (configuration replaced twice since "
		          "this connection was accepted)",
		          r->path, r->jwt_public_key);
	return pkey;
}

int
security_check_handshake(struct security *s, const struct config_route *r,
                         const struct http_request *req, int64_t now, struct security_auth *auth,
                         const char **extra_headers, const char **why)
{
	struct jwt_key key;
	const char *tok;
	size_t len, i;
	enum jwt_status st;

	auth->nclaims = 0;
	*extra_headers = NULL;
	*why = NULL;
	if (!security_origin_allowed(r->origins, r->norigins, req->origin.p, req->origin.n)) {
		security_count(s, SEC_ORIGIN_REFUSED);
		*why = req->origin.n == 0 ? "no Origin header, and the route lists origins"
		                          : "origin not allowed";
		return 403;
	}
	if (r->auth != AUTH_JWT)
		return 0;
	if (!security_find_token(r, req, &tok, &len)) {
		security_count(s, SEC_TOKEN_MISSING);
		*extra_headers = "WWW-Authenticate: Bearer\r\n";
		*why = "no token";
		return 401;
	}
	memset(&key, 0, sizeof(key));
	if (r->jwt_secret != NULL && r->jwt_secret[0] != '\0') {
		key.secret = (const uint8_t *)r->jwt_secret;
		key.secret_len = strlen(r->jwt_secret);
	}
	if ((st = jwt_parse(tok, len, &auth->jwt)) == JWT_OK) {
		key.pkey = security_route_pkey(s, r, &key.pkey_alg);
		st = jwt_verify(&auth->jwt, &key);
		EVP_PKEY_free(key.pkey);
	}
	if (st == JWT_OK)
		st = jwt_check_time(&auth->jwt, now, SECURITY_JWT_LEEWAY);
	if (st != JWT_OK) {
		security_count(s, st == JWT_ERR_EXPIRED || st == JWT_ERR_NOT_YET
		                      ? SEC_TOKEN_EXPIRED
		                      : SEC_TOKEN_INVALID);
		*extra_headers = "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n";
		*why = jwt_strerror(st);
		return 401;
	}
	for (i = 0; i < auth->jwt.nclaims; i++) {
		const struct jwt_claim *c = &auth->jwt.claims[i];

		if (!jwt_claim_is_scalar(c))
			continue;
		auth->claims[auth->nclaims].name = c->name;
		auth->claims[auth->nclaims].name_len = c->name_len;
		auth->claims[auth->nclaims].val = c->val;
		auth->claims[auth->nclaims].val_len = c->val_len;
		auth->nclaims++;
	}
	return 0;
}

void
security_apply_claims(const struct security_auth *auth, struct route_match *m)
{
	m->claims = auth->nclaims > 0 ? auth->claims : NULL;
	m->nclaims = auth->nclaims;
}
