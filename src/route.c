/* route.c - pure URL routing: matches a request path against the configured patterns with
 * {name} segments, reads raw query parameters and fills "{name}", "{query.name}" and
 * "{jwt.name}" templates. */

#include <limits.h>
#include <string.h>

#include "route.h"

struct route_seg {
	const char *p;
	size_t n;
};

/*
 * Splits "/a/b" into its segments after the leading '/'. "/" is one empty segment and a
 * trailing slash adds an empty segment, so "/echo/" never matches "/echo". Returns the count,
 * or -1 when s does not start with '/' or has more than ROUTE_MAX_SEGMENTS segments.
 */
static int
route_split(const char *s, size_t n, struct route_seg segs[ROUTE_MAX_SEGMENTS])
{
	size_t i, start = 1;
	int nseg = 0;

	if (n == 0 || s[0] != '/')
		return -1;
	for (i = 1; i <= n; i++) {
		if (i < n && s[i] != '/')
			continue;
		if (nseg == ROUTE_MAX_SEGMENTS)
			return -1;
		segs[nseg].p = s + start;
		segs[nseg].n = i - start;
		nseg++;
		start = i + 1;
	}
	return nseg;
}

static int
route_is_placeholder(const struct route_seg *seg)
{
	return seg->n >= 2 && seg->p[0] == '{' && seg->p[seg->n - 1] == '}';
}

static int
route_name_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

static int
route_literal_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '?' && c != '#' && c != '{' && c != '}';
}

void
route_charset_default(struct route_charset *cs)
{
	memset(cs, 0, sizeof(*cs));
	for (unsigned c = 0; c < 128; c++)
		if (route_name_char((unsigned char)c) || c == '.' || c == '-')
			cs->bits[c >> 3] |= (unsigned char)(1u << (c & 7));
}

int
route_charset_has(const struct route_charset *cs, unsigned char c)
{
	return (cs->bits[c >> 3] >> (c & 7)) & 1;
}

/* The characters a channel name may hold at all, so a widened set stays inside them. */
static int
route_channel_char(unsigned char c)
{
	return route_name_char(c) || c == '.' || c == ':' || c == '-';
}

int
route_allow_parse(const char *item, size_t n, const char **name, size_t *name_len,
                  struct route_charset *cs, const char **why)
{
	const char *colon = memchr(item, ':', n), *set, *end = item + n, *nm;
	size_t i, nn;

	memset(cs, 0, sizeof(*cs));
	if (colon == NULL || colon == item) {
		*why = "allow is NAME:[SET], e.g. ch:[A-Za-z0-9_.:-]";
		return -1;
	}
	nm = item;
	nn = (size_t)(colon - item);
	if (nn > 6 && memcmp(nm, "query.", 6) == 0)
		nm += 6, nn -= 6;
	else if (nn > 4 && memcmp(nm, "jwt.", 4) == 0)
		nm += 4, nn -= 4;
	for (i = 0; i < nn; i++)
		if (!route_name_char((unsigned char)nm[i])) {
			*why = "allow: NAME is a placeholder: room, query.name or jwt.name";
			return -1;
		}
	set = colon + 1;
	if (end - set < 3 || set[0] != '[' || end[-1] != ']') {
		*why = "allow: SET is a bracket expression such as [a-z0-9:]";
		return -1;
	}
	for (const char *p = set + 1; p < end - 1; p++) {
		unsigned char lo = (unsigned char)*p, hi = lo;

		/* "a-z" is a range; a '-' first or last in the brackets is itself. */
		if (p + 2 < end - 1 && p[1] == '-') {
			hi = (unsigned char)p[2];
			p += 2;
		}
		if (!route_channel_char(lo) || !route_channel_char(hi) || hi < lo) {
			*why = "allow: SET holds channel characters [A-Za-z0-9_.:-] and ranges";
			return -1;
		}
		for (unsigned c = lo; c <= hi; c++)
			if (route_channel_char((unsigned char)c))
				cs->bits[c >> 3] |= (unsigned char)(1u << (c & 7));
	}
	*name = item;
	*name_len = (size_t)(colon - item);
	return 0;
}

void
route_charset_for(const struct config_route *r, const char *name, size_t n,
                  struct route_charset *cs)
{
	const char *nm, *why;
	size_t nn;

	for (size_t i = 0; r != NULL && i < r->nallow; i++)
		if (route_allow_parse(r->allow[i], strlen(r->allow[i]), &nm, &nn, cs, &why) == 0 &&
		    nn == n && memcmp(nm, name, n) == 0)
			return;
	route_charset_default(cs);
}

static int
route_value_in(const struct route_charset *cs, const char *s, size_t n)
{
	if (s == NULL || n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!route_charset_has(cs, (unsigned char)s[i]))
			return 0;
	return 1;
}

int
route_value_safe(const char *s, size_t n)
{
	struct route_charset cs;

	route_charset_default(&cs);
	return route_value_in(&cs, s, n);
}

int
route_reserved(const char *channel, size_t n)
{
	return n >= ROUTE_RESERVED_PREFIX_LEN &&
	       memcmp(channel, ROUTE_RESERVED_PREFIX, ROUTE_RESERVED_PREFIX_LEN) == 0;
}

static int
route_fail(const char **why, const char *msg)
{
	if (why != NULL)
		*why = msg;
	return 0;
}

int
route_pattern_valid(const char *pattern, const char **why)
{
	struct route_seg segs[ROUTE_MAX_SEGMENTS], names[ROUTE_MAX_PARAMS];
	size_t len, j, k, nnames = 0;
	int nseg, i;

	if (pattern == NULL || pattern[0] != '/')
		return route_fail(why, "route path must start with '/'");
	len = strlen(pattern);
	if ((nseg = route_split(pattern, len, segs)) < 0)
		return route_fail(why, "route path has too many segments");
	if (len == 1) {
		if (why != NULL)
			*why = NULL;
		return 1;
	}
	for (i = 0; i < nseg; i++) {
		const struct route_seg *s = &segs[i];

		if (s->n == 0)
			return route_fail(why, "route path has an empty segment");
		if (!route_is_placeholder(s)) {
			for (j = 0; j < s->n; j++) {
				if (s->p[j] == '{' || s->p[j] == '}')
					return route_fail(
					    why, "a placeholder must be a whole segment: {name}");
				if (!route_literal_char((unsigned char)s->p[j]))
					return route_fail(why,
					                  "route path has an invalid character");
			}
			continue;
		}
		if (s->n == 2)
			return route_fail(why, "empty placeholder name");
		for (j = 1; j < s->n - 1; j++)
			if (!route_name_char((unsigned char)s->p[j]))
				return route_fail(why, "placeholder names are [A-Za-z0-9_]");
		if (nnames == ROUTE_MAX_PARAMS)
			return route_fail(why, "route path has too many placeholders");
		for (k = 0; k < nnames; k++)
			if (names[k].n == s->n && memcmp(names[k].p, s->p, s->n) == 0)
				return route_fail(why, "duplicate placeholder name");
		names[nnames++] = *s;
	}
	if (why != NULL)
		*why = NULL;
	return 1;
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
