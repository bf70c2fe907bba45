/* route.c - pure URL routing: matches a request path against the configured patterns with
 * {name} segments, reads raw query parameters and fills "{name}", "{query.name}" and
 * "{jwt.name}" templates. */

#include <limits.h>
#include <string.h>

#include "route.h"

void
route_charset_for(const struct config_route *r, const char *name, size_t n,
                  struct route_charset *cs)
{
	route_charset_pick(r != NULL ? (const char *const *)r->allow : NULL,
	                   r != NULL ? r->nallow : 0, name, n, cs);
}

/*
 * Matches one pattern against the split path, ignoring whether placeholder values are safe:
 * the best route is chosen on shape alone, then its values are judged. Fills m and *nlit
 * (literal segments, the rank) and returns 1 on a match.
 */
static int
route_try(const struct config_route *r, const struct route_seg *path, int npath,
          struct route_match *m, int *nlit)
{
	struct route_seg pat[ROUTE_MAX_SEGMENTS];
	int npat, i;

	if (r->path == NULL || (npat = route_split(r->path, strlen(r->path), pat)) != npath)
		return 0;
	m->nparams = 0;
	*nlit = 0;
	for (i = 0; i < npat; i++) {
		if (route_is_placeholder(&pat[i])) {
			if (path[i].n == 0 || m->nparams == ROUTE_MAX_PARAMS)
				return 0;
			m->params[m->nparams].name = pat[i].p + 1;
			m->params[m->nparams].name_len = pat[i].n - 2;
			m->params[m->nparams].val = path[i].p;
			m->params[m->nparams].val_len = path[i].n;
			m->nparams++;
		} else {
			if (pat[i].n != path[i].n || memcmp(pat[i].p, path[i].p, path[i].n) != 0)
				return 0;
			(*nlit)++;
		}
	}
	m->route = r;
	return 1;
}

enum route_status
route_match(const struct config *cfg, const char *path, size_t path_len, const char *query,
            size_t query_len, struct route_match *m)
{
	struct route_seg segs[ROUTE_MAX_SEGMENTS];
	struct route_match cand;
	int nseg, nlit, best = -1;
	size_t i;

	memset(m, 0, sizeof(*m));
	m->query = query;
	m->query_len = query != NULL ? query_len : 0;
	if (cfg == NULL || path == NULL || (nseg = route_split(path, path_len, segs)) < 0)
		return ROUTE_NOT_FOUND;

	/* Same segment count for all candidates, so more literals also means fewer placeholders:
	 * an all-literal route outranks any placeholder route; ties keep file order (strict >). */
	for (i = 0; i < cfg->nroutes; i++) {
		memset(&cand, 0, sizeof(cand));
		if (!route_try(&cfg->routes[i], segs, nseg, &cand, &nlit) || nlit <= best)
			continue;
		best = nlit;
		m->route = cand.route;
		memcpy(m->params, cand.params, sizeof(m->params));
		m->nparams = cand.nparams;
	}
	if (m->route == NULL)
		return ROUTE_NOT_FOUND;
	/* m stays filled on BAD_PARAM so the caller can log which route refused. */
	for (i = 0; i < m->nparams; i++) {
		struct route_charset cs;

		route_charset_for(m->route, m->params[i].name, m->params[i].name_len, &cs);
		if (!route_value_in(&cs, m->params[i].val, m->params[i].val_len))
			return ROUTE_BAD_PARAM;
	}
	return ROUTE_OK;
}

int
route_query_get(const char *query, size_t query_len, const char *name, size_t name_len,
                const char **val, size_t *val_len)
{
	size_t i = 0, start, eq;

	if (query == NULL || name == NULL || name_len == 0)
		return 0;
	while (i < query_len) {
		start = i;
		while (i < query_len && query[i] != '&')
			i++;
		for (eq = start; eq < i && query[eq] != '='; eq++)
			;
		if (eq - start == name_len && memcmp(query + start, name, name_len) == 0) {
			/* A bare "name" has an empty value just past it. */
			*val = eq < i ? query + eq + 1 : query + eq;
			*val_len = eq < i ? i - eq - 1 : 0;
			return 1;
		}
		i++;
	}
	return 0;
}

/* The value of one "{...}" placeholder body; ROUTE_OK, NOT_FOUND or BAD_PARAM. */
static enum route_status
route_lookup(const char *name, size_t n, const struct route_match *m, const char **val,
             size_t *val_len)
{
	struct route_charset cs;
	size_t i;

	if (n == 0)
		return ROUTE_BAD_PARAM;
	if (n >= 4 && memcmp(name, "jwt.", 4) == 0) {
		/* Claims of a token the handshake verified; none when the route has no auth. */
		if (n == 4)
			return ROUTE_BAD_PARAM;
		for (i = 0; m != NULL && i < m->nclaims; i++)
			if (m->claims[i].name_len == n - 4 &&
			    memcmp(m->claims[i].name, name + 4, n - 4) == 0)
				break;
		if (m == NULL || i == m->nclaims)
			return ROUTE_NOT_FOUND;
		*val = m->claims[i].val;
		*val_len = m->claims[i].val_len;
	} else if (n >= 6 && memcmp(name, "query.", 6) == 0) {
		if (n == 6)
			return ROUTE_BAD_PARAM;
		if (m == NULL ||
		    !route_query_get(m->query, m->query_len, name + 6, n - 6, val, val_len))
			return ROUTE_NOT_FOUND;
	} else {
		for (i = 0; m != NULL && i < m->nparams; i++)
			if (m->params[i].name_len == n && memcmp(m->params[i].name, name, n) == 0)
				break;
		if (m == NULL || i == m->nparams)
			return ROUTE_NOT_FOUND;
		*val = m->params[i].val;
		*val_len = m->params[i].val_len;
	}
	/* Values end up in Redis channel names: by default nothing that could split them or
	 * change their namespace; a route widens a placeholder only with an "allow" item. */
	route_charset_for(m != NULL ? m->route : NULL, name, n, &cs);
	return route_value_in(&cs, *val, *val_len) ? ROUTE_OK : ROUTE_BAD_PARAM;
}

int
route_expand(const char *tmpl, const struct route_match *m, char *out, size_t outsz)
{
	const char *p, *close, *val;
	size_t len = 0, vlen, i;
	int st = ROUTE_OK;

	if (tmpl == NULL)
		st = ROUTE_BAD_PARAM;
	/* One pass that measures everything and writes what fits: a template or value error is
	 * reported before a short buffer, whatever their order in the template. */
	for (p = tmpl; st == ROUTE_OK && *p != '\0'; p++) {
		if (*p == '}') {
			st = ROUTE_BAD_PARAM;
			break;
		}
		if (*p != '{') {
			val = p;
			vlen = 1;
		} else {
			close = strchr(p + 1, '}');
			if (close == NULL || memchr(p + 1, '{', (size_t)(close - p - 1)) != NULL) {
				st = ROUTE_BAD_PARAM;
				break;
			}
			if ((st = route_lookup(p + 1, (size_t)(close - p - 1), m, &val, &vlen)) !=
			    ROUTE_OK)
				break;
			p = close;
		}
		for (i = 0; i < vlen; i++, len++)
			if (len + 1 < outsz)
				out[len] = val[i];
	}
	/* Whatever a widened set let through, wsgate's own namespace stays out of reach. */
	if (st == ROUTE_OK && len < outsz && route_reserved(out, len))
		st = ROUTE_BAD_PARAM;
	if (st == ROUTE_OK && (len >= outsz || len > INT_MAX))
		st = -3;
	if (st != ROUTE_OK) {
		/* Never leave a partial expansion that looks usable. */
		if (outsz > 0)
			out[0] = '\0';
		return st;
	}
	out[len] = '\0';
	return (int)len;
}
