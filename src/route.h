/* route.h - pure URL routing: path patterns with {name} segments, query parameters, and
 * templates such as "room:{room}" or "user:{query.id}" filled from a match. */
#ifndef WSGATE_ROUTE_H
#define WSGATE_ROUTE_H

#include <stddef.h>

#include "config.h"

#define ROUTE_MAX_PARAMS 8
#define ROUTE_MAX_SEGMENTS 32

struct route_param {
	const char *name;  /* into the pattern, not NUL-terminated */
	size_t name_len;
	const char *val;   /* into the request path */
	size_t val_len;
};

struct route_match {
	const struct config_route *route;
	struct route_param params[ROUTE_MAX_PARAMS];
	size_t nparams;
	const char *query;  /* raw query string of the request (may be NULL) */
	size_t query_len;
	const struct route_param *claims; /* verified JWT claims for "{jwt.NAME}" (NULL: none) */
	size_t nclaims;
};

enum route_status {
	ROUTE_OK = 0,
	ROUTE_NOT_FOUND = -1,  /* 404 */
	ROUTE_BAD_PARAM = -2,  /* a placeholder value outside its allowed set: 400 */
};

/* wsgate's own channels (direct "wsgate:conn:<id>", the Redis canary "wsgate:probe:<id>")
 * live under this prefix; route_expand never produces a name that starts with it, and a
 * template written with it is refused at load. */
#define ROUTE_RESERVED_PREFIX "wsgate:"
#define ROUTE_RESERVED_PREFIX_LEN 7

/* A set of bytes, one bit each: what a placeholder's value may hold. */
struct route_charset {
	unsigned char bits[32];
};

/* The default set of every placeholder: [A-Za-z0-9_.-]. No ':', the namespace separator, so
 * a value cannot move a channel into another namespace ("conn:x", "user:alice"). */
void route_charset_default(struct route_charset *cs);

/* Parses one "allow" item, "NAME:[SET]": NAME is a placeholder body as written in templates
 * ("room", "query.ch", "jwt.sub"), SET a bracket expression of channel characters
 * [A-Za-z0-9_.:-] and ranges ("[a-z0-9:]", a '-' first or last is literal). Returns 0 and
 * fills name/len and cs, or -1 with *why. */
int route_allow_parse(const char *item, size_t n, const char **name, size_t *name_len,
    struct route_charset *cs, const char **why);

/* The set placeholder name[0..n) accepts on route r: its "allow" item, else the default. */
void route_charset_for(const struct config_route *r, const char *name, size_t n,
    struct route_charset *cs);

/* 1 when byte c is in cs. */
int route_charset_has(const struct route_charset *cs, unsigned char c);

/* 1 when channel[0..n) is in wsgate's reserved namespace. */
int route_reserved(const char *channel, size_t n);

/* 1 when pattern is a valid route path: starts with '/', segments are literal or "{name}" with
 * name in [A-Za-z0-9_], no empty placeholder, at most ROUTE_MAX_PARAMS placeholders. On 0, *why
 * names the problem. */
int route_pattern_valid(const char *pattern, const char **why);

/* Finds the route for path (without query). Literal patterns win over patterns with
 * placeholders; among those, more literal segments win, then file order. */
enum route_status route_match(const struct config *cfg, const char *path, size_t path_len,
    const char *query, size_t query_len, struct route_match *m);

/* Finds a query parameter by name (no percent-decoding: values are matched raw). Returns 1 and
 * sets val/len when present. */
int route_query_get(const char *query, size_t query_len, const char *name, size_t name_len,
    const char **val, size_t *val_len);

/* 1 when every byte of s is in the default set [A-Za-z0-9_.-] and n > 0. */
int route_value_safe(const char *s, size_t n);

/* Expands "{name}", "{query.name}" and "{jwt.name}" in tmpl from m into out (NUL-terminated).
 * Returns the length, ROUTE_NOT_FOUND when a placeholder has no value, ROUTE_BAD_PARAM when a
 * value is outside its set (route_charset_for m->route; the default without a route) or the
 * result is in the reserved namespace, or -3 when out is too small. */
int route_expand(const char *tmpl, const struct route_match *m, char *out, size_t outsz);

#endif
