/* route.h - pure URL routing: path patterns with {name} segments, query parameters, and
 * templates such as "room:{room}" or "user:{query.id}" filled from a match. */
#ifndef WSGATE_ROUTE_H
#define WSGATE_ROUTE_H

#include <stddef.h>

#include "config.h"
#include "route_syntax.h"

struct route_param {
	const char *name; /* into the pattern, not NUL-terminated */
	size_t name_len;
	const char *val; /* into the request path */
	size_t val_len;
};

struct route_match {
	const struct config_route *route;
	struct route_param params[ROUTE_MAX_PARAMS];
	size_t nparams;
	const char *query; /* raw query string of the request (may be NULL) */
	size_t query_len;
	const struct route_param *claims; /* verified JWT claims for "{jwt.NAME}" (NULL: none) */
	size_t nclaims;
};

enum route_status {
	ROUTE_OK = 0,
	ROUTE_NOT_FOUND = -1, /* 404 */
	ROUTE_BAD_PARAM = -2, /* a placeholder value outside its allowed set: 400 */
};

/* The set placeholder name[0..n) accepts on route r: its "allow" item, else the default. */
void route_charset_for(const struct config_route *r, const char *name, size_t n,
                       struct route_charset *cs);

/* Finds the route for path (without query). Literal patterns win over patterns with
 * placeholders; among those, more literal segments win, then file order. */
enum route_status route_match(const struct config *cfg, const char *path, size_t path_len,
                              const char *query, size_t query_len, struct route_match *m);

/* Finds a query parameter by name (no percent-decoding: values are matched raw). Returns 1 and
 * sets val/len when present. */
int route_query_get(const char *query, size_t query_len, const char *name, size_t name_len,
                    const char **val, size_t *val_len);

/* Expands "{name}", "{query.name}" and "{jwt.name}" in tmpl from m into out (NUL-terminated).
 * Returns the length, ROUTE_NOT_FOUND when a placeholder has no value, ROUTE_BAD_PARAM when a
 * value is outside its set (route_charset_for m->route; the default without a route) or the
 * result is in the reserved namespace, or -3 when out is too small. */
int route_expand(const char *tmpl, const struct route_match *m, char *out, size_t outsz);

#endif
