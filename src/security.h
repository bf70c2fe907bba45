/* security.h - the handshake-time checks of a route (Origin allow list, JWT from header, query
 * or cookie) with the keys they need, loaded once per configuration, and the counters of every
 * refusal the gateway makes for security or limits. */
#ifndef WSGATE_SECURITY_H
#define WSGATE_SECURITY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http.h"
#include "jwt.h"
#include "route.h"

#define SECURITY_JWT_LEEWAY 0 /* seconds of clock skew allowed around exp and nbf */

/* Every refusal, counted (for /metrics); names in security_counter_name(). */
enum security_counter {
	SEC_ORIGIN_REFUSED = 0, /* 403: Origin not in the route's list */
	SEC_TOKEN_MISSING,      /* 401: no token where jwt_from looks */
	SEC_TOKEN_INVALID,      /* 401: malformed, alg refused or bad signature */
	SEC_TOKEN_EXPIRED,      /* 401: exp passed or nbf not reached */
	SEC_MAX_CONNECTIONS,    /* 503: max_connections */
	SEC_MAX_PER_IP,         /* 503: max_connections_per_ip */
	SEC_ACCEPT_RATE,        /* 429: accept_rate_per_ip */
	SEC_REFUSAL_DROPPED,    /* closed unanswered: too many refusals in flight */
	SEC_PER_IP_UNTRACKED,   /* admitted without per-IP accounting: table full */
	SEC_MESSAGE_RATE,       /* close 1008: max_messages_per_second */
	SEC_PROXY_HEADER, /* closed: PROXY header missing, malformed, late or from an untrusted peer
	                   */
	SEC_NCOUNTERS
};

struct security_stats {
	uint64_t n[SEC_NCOUNTERS];
};

/* The verified token of one handshake and its claims as {jwt.NAME} values. Large: lives on the
 * stack of conn_upgrade while the target's handshake hook runs. */
struct security_auth {
	struct jwt jwt;
	struct route_param claims[JWT_MAX_CLAIMS]; /* string and integer claims, into jwt.text */
	size_t nclaims;
};

struct security;

/* Loads the routes' public keys (jwt_public_key) as copies: the table does not point into
 * the snapshot. NULL (logged) when one cannot be used. */
struct security *security_new(const struct config *cfg);
/* New keys for a new snapshot; on failure the old ones stay and -1 is returned (logged).
 * Counters are kept. */
int security_set_config(struct security *s, const struct config *cfg)
    __attribute__((warn_unused_result));
void security_free(struct security *s);

/* A reload in two steps (reload.c): the keys of cfg's routes loaded (every failure appended to
 * errs as "FILE:LINE: route PATH: ..."; NULL when any failed), then put in force by commit
 * (consumed) or dropped by free. The previous keys stay findable for connections accepted
 * just before the swap. */
struct security_keyset;
struct security_keyset *security_keyset_new(const struct config *cfg, struct config_errors *errs)
    __attribute__((warn_unused_result));
void security_keyset_commit(struct security *s, struct security_keyset *ks);
void security_keyset_free(struct security_keyset *ks);
/* wsgate -t: loads every route's key and frees them; -1 with errs filled when one fails. */
int security_config_check(const struct config *cfg, struct config_errors *errs)
    __attribute__((warn_unused_result));

/* Origin, then token, for a request matched to route r at wall-clock time now. Returns 0 (and
 * auth holds the claims), or the HTTP status to refuse with (401 or 403), *extra_headers the
 * header lines to add (NULL or "WWW-Authenticate: ..."), *why a static reason for the log. */
int security_check_handshake(struct security *s, const struct config_route *r,
                             const struct http_request *req, int64_t now,
                             struct security_auth *auth, const char **extra_headers,
                             const char **why) __attribute__((warn_unused_result));

/* Makes the verified claims available to route_expand as {jwt.NAME}. */
void security_apply_claims(const struct security_auth *auth, struct route_match *m);

/* Counters: thread-safe increments, a consistent-enough snapshot. s may be NULL. */
void security_count(struct security *s, enum security_counter k);
void security_stats_get(const struct security *s, struct security_stats *out);
const char *security_counter_name(enum security_counter k);

/* ---- pure helpers (unit tested, fuzzed) ---- */

/* 1 when origin (as sent, "scheme://host[:port]") is allowed by pattern: "*", "null", or
 * "scheme://host[:port]" whose host may start with "*." (any subdomain, at any depth, not the
 * domain itself). Scheme and host compare case-insensitively; a default port (80 for http/ws,
 * 443 for https/wss) may be written or left out on either side. */
int security_origin_match(const char *pattern, const char *origin, size_t origin_len);
/* 1 when any pattern matches. An empty list allows every origin, and a missing one. */
int security_origin_allowed(char *const *patterns, size_t npatterns, const char *origin,
                            size_t origin_len);

/* The token for route r from the request, looking where jwt_from says in its order (default
 * header, query, cookie): "Authorization: Bearer T", "?token=T", cookie "token=T". 1 when found. */
int security_find_token(const struct config_route *r, const struct http_request *req,
                        const char **tok, size_t *len);
/* The value of cookie name in a Cookie header value. 1 when present. */
int security_cookie_get(const char *cookie, size_t n, const char *name, const char **val,
                        size_t *len);

#endif
