/* fuzz_route.c - libFuzzer target for route.c: a route table built from fuzz-chosen patterns,
 * a fuzz request path and query matched against it and fuzz templates expanded from the match
 * (path, query and jwt values). Each result is checked against a plain reference written here.
 *
 * Input: byte 0 picks how many lines are patterns (1..6); the rest is split on '\n':
 *   pattern lines, then the request target ("path?query"), then claims ("a=b&c=d"), then
 *   templates. Byte 1 (when present) picks the size of the small expansion buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(c)                                                                                \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

#define FZ_MAX_LINES 16
#define FZ_MAX_ROUTES 6
#define FZ_OUT 4096

struct fz_span {
	const char *p;
	size_t n;
};

static int
fz_safe_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == ':' || c == '-';
}

/* Reference split: same contract as route.c's route_split. */
static int
fz_split(const char *s, size_t n, struct fz_span *segs)
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

/* Reference match of one route: -1 when it does not match, else its literal count. */
static int
fz_ref_try(const char *pattern, const struct fz_span *path, int npath)
{
	struct fz_span pat[ROUTE_MAX_SEGMENTS];
	int npat, i, lit = 0;

	if ((npat = fz_split(pattern, strlen(pattern), pat)) != npath)
		return -1;
	for (i = 0; i < npat; i++) {
		if (pat[i].n >= 2 && pat[i].p[0] == '{' && pat[i].p[pat[i].n - 1] == '}') {
			if (path[i].n == 0)
				return -1;
		} else if (pat[i].n != path[i].n || memcmp(pat[i].p, path[i].p, pat[i].n) != 0) {
			return -1;
		} else {
			lit++;
		}
	}
	return lit;
}

/* Reference query lookup. */
static int
fz_ref_query(const char *q, size_t qn, const char *name, size_t nn, struct fz_span *val)
{
	size_t i = 0, start, eq;

	if (q == NULL || nn == 0)
		return 0;
	while (i < qn) {
		start = i;
		while (i < qn && q[i] != '&')
			i++;
		eq = start;
		while (eq < i && q[eq] != '=')
			eq++;
		if (eq - start == nn && memcmp(q + start, name, nn) == 0) {
			val->p = q + (eq < i ? eq + 1 : eq);
			val->n = eq < i ? i - eq - 1 : 0;
			return 1;
		}
		i++;
	}
	return 0;
}

/* Every expanded byte comes from the template's literal text or from a safe value: nothing a
 * client sends can put '{', '}', '/', spaces, CR/LF or NUL into a channel or backend URL. */
static void
fz_check_expansion(const char *tmpl, const char *out, size_t n)
{
	size_t i;

	FZ_CHECK(strlen(out) == n);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)out[i];

		FZ_CHECK(c != '{' && c != '}');
		FZ_CHECK(fz_safe_char(c) || strchr(tmpl, c) != NULL);
	}
}

static void
fz_expand(const char *tmpl, const struct route_match *m, size_t small)
{
	static char big[FZ_OUT], tiny[FZ_OUT];
	int r, r2;

	r = route_expand(tmpl, m, big, sizeof(big));
	FZ_CHECK(r >= ROUTE_BAD_PARAM - 1);
	if (r >= 0)
		fz_check_expansion(tmpl, big, (size_t)r);
	else
		FZ_CHECK(big[0] == '\0');
	/* A short buffer: the same answer, or "too small" when it really is. */
	memset(tiny, 'x', sizeof(tiny));
	r2 = route_expand(tmpl, m, tiny, small);
	if (r == -3 || (r >= 0 && (size_t)r >= small)) {
		FZ_CHECK(r2 == -3);
		FZ_CHECK(small == 0 || tiny[0] == '\0');
		FZ_CHECK(tiny[small] == 'x'); /* nothing written past outsz */
	} else if (r >= 0) {
		FZ_CHECK(r2 == r && memcmp(tiny, big, (size_t)r + 1) == 0);
	} else if (r == ROUTE_BAD_PARAM) {
		/* The reserved-namespace check looks at the whole result, so a short buffer may
		 * report "too small" first; it writes nothing past outsz either way. */
		FZ_CHECK(r2 == r || r2 == -3);
		FZ_CHECK(tiny[small] == 'x');
	} else {
		FZ_CHECK(r2 == r);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char buf[1 << 16];
	struct fz_span lines[FZ_MAX_LINES], segs[ROUTE_MAX_SEGMENTS], v;
	struct config_route routes[FZ_MAX_ROUTES];
	struct route_param claims[ROUTE_MAX_PARAMS];
	struct config cfg;
	struct route_match m;
	enum route_status st;
	size_t nlines = 0, npat, nroutes = 0, i, j, nclaims = 0, small = 0, plen, qlen;
	const char *p, *end, *path, *query = NULL, *why;
	int nseg, best = -1, lit;

	if (size < 2 || size > sizeof(buf) - 1)
		return 0;
	npat = data[0] % FZ_MAX_ROUTES + 1;
	small = data[1] % 64;
	memcpy(buf, data + 2, size - 2);
	buf[size - 2] = '\0';
	/* Lines become NUL-terminated strings in place. */
	for (p = buf, end = buf + size - 2; nlines < FZ_MAX_LINES; p++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		lines[nlines].p = p;
		lines[nlines].n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		((char *)p)[lines[nlines].n] = '\0';
		nlines++;
		if (nl == NULL)
			break;
		p = nl;
	}
	if (nlines < npat + 1)
		return 0;

	/* The table: only what config.c would accept (it calls route_pattern_valid). */
	memset(routes, 0, sizeof(routes));
	for (i = 0; i < npat; i++) {
		int ok = route_pattern_valid(lines[i].p, &why);

		FZ_CHECK(ok ? why == NULL : why != NULL);
		if (ok && strlen(lines[i].p) == lines[i].n)
			routes[nroutes++].path = (char *)lines[i].p;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.routes = routes;
	cfg.nroutes = nroutes;

	path = lines[npat].p;
	plen = strlen(path);
	if ((p = memchr(path, '?', plen)) != NULL) {
		query = p + 1;
		qlen = plen - (size_t)(p - path) - 1;
		plen = (size_t)(p - path);
	} else {
		qlen = 0;
	}

	st = route_match(&cfg, path, plen, query, qlen, &m);
	FZ_CHECK(st == ROUTE_OK || st == ROUTE_NOT_FOUND || st == ROUTE_BAD_PARAM);
	/* The reference: the most literal segments win, ties to file order. */
	nseg = fz_split(path, plen, segs);
	for (i = 0; nseg >= 0 && i < nroutes; i++)
		if ((lit = fz_ref_try(routes[i].path, segs, nseg)) > best)
			best = lit;
	if (st == ROUTE_NOT_FOUND) {
		FZ_CHECK(best < 0);
		return 0;
	}
	FZ_CHECK(best >= 0 && m.route >= routes && m.route < routes + nroutes);
	FZ_CHECK(fz_ref_try(m.route->path, segs, nseg) == best);
	for (i = 0; i < (size_t)(m.route - routes); i++)
		FZ_CHECK(fz_ref_try(routes[i].path, segs, nseg) < best);
	FZ_CHECK(m.nparams <= ROUTE_MAX_PARAMS);
	for (i = 0; i < m.nparams; i++) {
		/* names into the pattern, values into the request path */
		FZ_CHECK(m.params[i].name >= m.route->path &&
		         m.params[i].name + m.params[i].name_len <=
		             m.route->path + strlen(m.route->path));
		FZ_CHECK(m.params[i].val >= path &&
		         m.params[i].val + m.params[i].val_len <= path + plen);
		FZ_CHECK(m.params[i].val_len > 0);
	}
	if (st == ROUTE_OK) {
		for (i = 0; i < m.nparams; i++)
			FZ_CHECK(route_value_safe(m.params[i].val, m.params[i].val_len));
	} else {
		for (i = 0; i < m.nparams; i++)
			if (!route_value_safe(m.params[i].val, m.params[i].val_len))
				break;
		FZ_CHECK(i < m.nparams);
	}
	FZ_CHECK(m.query == query && m.query_len == (query ? qlen : 0));

	/* Claims line: "name=value&..." as the JWT verifier would hand them over. */
	if (nlines > npat + 1) {
		const char *c = lines[npat + 1].p, *ce = c + strlen(c);

		while (c < ce && nclaims < ROUTE_MAX_PARAMS) {
			const char *amp = memchr(c, '&', (size_t)(ce - c)), *eq;
			size_t n = amp ? (size_t)(amp - c) : (size_t)(ce - c);

			if ((eq = memchr(c, '=', n)) != NULL) {
				claims[nclaims].name = c;
				claims[nclaims].name_len = (size_t)(eq - c);
				claims[nclaims].val = eq + 1;
				claims[nclaims].val_len = n - (size_t)(eq - c) - 1;
				nclaims++;
			}
			c += n + 1;
		}
		m.claims = claims;
		m.nclaims = nclaims;
	}

	/* Query lookups agree with the reference for every claim name (reused as query names). */
	for (i = 0; i < nclaims; i++) {
		const char *qv = NULL;
		size_t qvn = 0;
		int got =
		    route_query_get(query, qlen, claims[i].name, claims[i].name_len, &qv, &qvn);

		FZ_CHECK(got == fz_ref_query(query, qlen, claims[i].name, claims[i].name_len, &v));
		if (got)
			FZ_CHECK(qv == v.p && qvn == v.n && qv >= query &&
			         qv + qvn <= query + qlen);
	}

	for (j = npat + 2; j < nlines; j++)
		fz_expand(lines[j].p, &m, small);
	/* Without a match (no route, no query, no claims) only literal templates expand. */
	if (nlines > npat + 2) {
		char out[64];
		int r = route_expand(lines[npat + 2].p, NULL, out, sizeof(out));

		if (r >= 0)
			FZ_CHECK(strchr(lines[npat + 2].p, '{') == NULL);
	}
	return 0;
}
