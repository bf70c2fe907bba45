/* route_map.c - pure analysis of channel templates: each template is read as a small automaton
 * (a literal byte, or one-or-more bytes of a placeholder's set, per step) and two automata are
 * run together to learn whether any channel name is common to both. Used at config load to
 * keep unauthenticated routes away from identity-bound channels, and by `wsgate -t`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route_map.h"
#include "route_syntax.h"

#define ROUTE_MAP_MAX 256 /* steps of one template: a template is at most 128 bytes */

/* One step: a literal byte, or a placeholder's set (one or more bytes). */
struct route_map_step {
	int is_set;
	unsigned char lit;
	struct route_charset cs;
};

struct route_map_nfa {
	struct route_map_step st[ROUTE_MAP_MAX];
	size_t n;
};

/* Splits tmpl into steps; -1 on a malformed template or one with too many steps. */
static int
route_map_compile(const struct config_route *r, const char *tmpl, struct route_map_nfa *a)
{
	const char *p, *close;

	a->n = 0;
	for (p = tmpl; *p != '\0'; p++) {
		struct route_map_step *s = &a->st[a->n];

		if (a->n == ROUTE_MAP_MAX || *p == '}')
			return -1;
		memset(s, 0, sizeof(*s));
		if (*p != '{') {
			s->lit = (unsigned char)*p;
		} else {
			if ((close = strchr(p + 1, '}')) == NULL || close == p + 1)
				return -1;
			s->is_set = 1;
			route_charset_pick((const char *const *)r->allow, r->nallow, p + 1,
			                   (size_t)(close - p - 1), &s->cs);
			p = close;
		}
		a->n++;
	}
	return 0;
}

/* 1 when state k (before step k) reads byte c into state k+1. */
static int
route_map_step_reads(const struct route_map_nfa *a, size_t k, unsigned char c)
{
	const struct route_map_step *s = &a->st[k];

	return k < a->n && (s->is_set ? route_charset_has(&s->cs, c) : s->lit == c);
}

/* 1 when state k loops on c: the set step just taken may take more bytes. */
static int
route_map_loops(const struct route_map_nfa *a, size_t k, unsigned char c)
{
	return k > 0 && a->st[k - 1].is_set && route_charset_has(&a->st[k - 1].cs, c);
}

int
route_map_overlap(const struct config_route *ra, const char *ta, const struct config_route *rb,
                  const char *tb)
{
	struct route_map_nfa *a, *b;
	unsigned char *seen;
	unsigned *queue;
	size_t head = 0, tail = 0, w;
	int r = 0;

	/* Heap, not stack: a few hundred KiB at config load only. */
	a = malloc(sizeof(*a));
	b = malloc(sizeof(*b));
	if (a == NULL || b == NULL || route_map_compile(ra, ta, a) < 0 ||
	    route_map_compile(rb, tb, b) < 0) {
		free(a);
		free(b);
		return -1;
	}
	w = b->n + 1;
	seen = calloc((a->n + 1) * w, 1);
	queue = malloc((a->n + 1) * w * sizeof(*queue));
	if (seen == NULL || queue == NULL) {
		r = -1;
		goto out;
	}
	/* Breadth-first over pairs of states of the product automaton: a pair where both are
	 * at their end is a name both templates produce. Bytes are ASCII channel characters. */
	seen[0] = 1;
	queue[tail++] = 0;
	while (head < tail && r == 0) {
		size_t i = queue[head] / w, j = queue[head] % w;

		head++;
		if (i == a->n && j == b->n) {
			r = 1;
			break;
		}
		for (unsigned c = 0x21; c < 0x7f; c++) {
			size_t ni[2], nj[2], nni = 0, nnj = 0;

			if (route_map_step_reads(a, i, (unsigned char)c))
				ni[nni++] = i + 1;
			if (route_map_loops(a, i, (unsigned char)c))
				ni[nni++] = i;
			if (route_map_step_reads(b, j, (unsigned char)c))
				nj[nnj++] = j + 1;
			if (route_map_loops(b, j, (unsigned char)c))
				nj[nnj++] = j;
			for (size_t x = 0; x < nni; x++)
				for (size_t y = 0; y < nnj; y++) {
					size_t k = ni[x] * w + nj[y];

					if (seen[k])
						continue;
					seen[k] = 1;
					queue[tail++] = (unsigned)k;
				}
		}
	}
out:
	free(seen);
	free(queue);
	free(a);
	free(b);
	return r;
}

int
route_map_matches(const struct config_route *r, const char *tmpl, const char *name, size_t n)
{
	struct route_map_nfa *a = malloc(sizeof(*a));
	unsigned char cur[ROUTE_MAP_MAX + 1], next[ROUTE_MAP_MAX + 1];
	int any = 1, r_ok;

	if (a == NULL || tmpl == NULL || route_map_compile(r, tmpl, a) < 0) {
		free(a);
		return -1;
	}
	/* The set of states the automaton can be in after each byte of name. */
	memset(cur, 0, sizeof(cur));
	cur[0] = 1;
	for (size_t i = 0; i < n && any; i++) {
		unsigned char c = (unsigned char)name[i];

		memset(next, 0, sizeof(next));
		any = 0;
		for (size_t k = 0; k <= a->n; k++) {
			if (!cur[k])
				continue;
			if (route_map_step_reads(a, k, c))
				next[k + 1] = 1, any = 1;
			if (route_map_loops(a, k, c))
				next[k] = 1, any = 1;
		}
		memcpy(cur, next, sizeof(cur));
	}
	r_ok = any && cur[a->n];
	free(a);
	return r_ok;
}

const char *
route_map_read_only(const struct config_route *r, const char *channel, size_t n)
{
	for (size_t i = 0; i < r->nread_only; i++)
		if (route_map_matches(r, r->read_only[i], channel, n) != 0)
			return r->read_only[i];
	return NULL;
}

/* 1 when tmpl is, as written, one of r's read_only templates. */
static int
route_map_is_read_only(const struct config_route *r, const char *tmpl)
{
	for (size_t i = 0; i < r->nread_only; i++)
		if (strcmp(r->read_only[i], tmpl) == 0)
			return 1;
	return 0;
}

const char *
route_map_access(const struct config_route *r, const char *tmpl)
{
	if (r->server_only)
		return "read-only: server_only";
	if (r->publish == NULL)
		return "read-only: publish = none";
	if (route_map_is_read_only(r, tmpl))
		return "read-only: read_only";
	if (route_map_overlap(r, r->publish, r, tmpl) != 1)
		return "read-only: publish cannot reach it";
	return "writable";
}

int
route_map_identity_bound(const char *tmpl)
{
	return tmpl != NULL && strstr(tmpl, "{jwt.") != NULL;
}

/* The set as a bracket expression with ranges: "[-.0-9A-Z_a-z]". */
static size_t
route_map_set_fmt(const struct route_charset *cs, char *out, size_t outsz)
{
	size_t o = 0;
	unsigned c = 0;

	if (outsz < 4)
		return 0;
	out[o++] = '[';
	while (c < 128 && o + 5 < outsz) {
		unsigned e = c;

		if (!route_charset_has(cs, (unsigned char)c)) {
			c++;
			continue;
		}
		while (e + 1 < 128 && route_charset_has(cs, (unsigned char)(e + 1)))
			e++;
		out[o++] = (char)c;
		if (e >= c + 2)
			out[o++] = '-';
		if (e >= c + 1)
			out[o++] = (char)e;
		c = e + 1;
	}
	out[o++] = ']';
	out[o++] = '+';
	out[o] = '\0';
	return o;
}

const char *
route_map_pattern(const struct config_route *r, const char *tmpl, char *out, size_t outsz)
{
	const char *p, *close;
	char set[160];
	size_t o = 0, n;

	if (outsz == 0)
		return out;
	out[0] = '\0';
	for (p = tmpl; *p != '\0'; p++) {
		if (*p == '{' && (close = strchr(p + 1, '}')) != NULL) {
			struct route_charset cs;

			route_charset_pick((const char *const *)r->allow, r->nallow, p + 1,
			                   (size_t)(close - p - 1), &cs);
			n = route_map_set_fmt(&cs, set, sizeof(set));
			if (o + n >= outsz)
				goto full;
			memcpy(out + o, set, n);
			o += n;
			p = close;
			continue;
		}
		if (o + 1 >= outsz)
			goto full;
		out[o++] = *p;
	}
	out[o] = '\0';
	return out;
full:
	out[0] = '\0';
	return out;
}

/* "allow" names a placeholder that appears in the path or a template of r. */
static int
route_map_allow_used(const struct config_route *r, const char *name, size_t n)
{
	char ph[80];

	if (n + 3 > sizeof(ph))
		return 0;
	snprintf(ph, sizeof(ph), "{%.*s}", (int)n, name);
	if (r->path != NULL && strstr(r->path, ph) != NULL)
		return 1;
	for (size_t i = 0; i < r->nsubscribe; i++)
		if (strstr(r->subscribe[i], ph) != NULL)
			return 1;
	return r->publish != NULL && strstr(r->publish, ph) != NULL;
}

/* Every channel template of a route: subscribe ones, then publish (index nsubscribe). */
static const char *
route_map_tmpl(const struct config_route *r, size_t k, const char **key)
{
	*key = k < r->nsubscribe ? "subscribe" : "publish";
	return k < r->nsubscribe ? r->subscribe[k] : r->publish;
}

void
route_map_check(const struct config *cfg, int (*line_of)(void *, size_t, const char *),
                route_map_report_fn report, void *arg)
{
	char msg[512];

	for (size_t i = 0; i < cfg->nroutes; i++) {
		const struct config_route *r = &cfg->routes[i];
		const char *key, *t, *nm, *why;
		struct route_charset cs;
		size_t nn;

		if (r->type != ROUTE_PUBSUB)
			continue;
		for (size_t k = 0; k <= r->nsubscribe; k++)
			if ((t = route_map_tmpl(r, k, &key)) != NULL &&
			    route_reserved(t, strlen(t))) {
				snprintf(msg, sizeof(msg),
				         "%s template '%s' is in wsgate's reserved "
				         "namespace %s*",
				         key, t, ROUTE_RESERVED_PREFIX);
				report(arg, line_of(arg, i, key), msg);
			}
		for (size_t k = 0; k < r->nread_only; k++) {
			const char *ro = r->read_only[k];
			size_t j;

			for (j = 0; j < r->nsubscribe && strcmp(r->subscribe[j], ro) != 0; j++)
				;
			if (j == r->nsubscribe)
				snprintf(msg, sizeof(msg),
				         "read_only '%s' is not one of route %s's subscribe "
				         "templates (write it exactly as in subscribe)",
				         ro, r->path);
			else if (r->publish == NULL)
				snprintf(msg, sizeof(msg),
				         "read_only on route %s, whose clients cannot publish "
				         "at all (publish = none or server_only)",
				         r->path);
			else if (strcmp(r->publish, ro) == 0)
				snprintf(msg, sizeof(msg),
				         "the publish template '%s' of route %s is read_only: "
				         "every client message would be refused; say "
				         "publish = none",
				         ro, r->path);
			else
				continue;
			report(arg, line_of(arg, i, "read_only"), msg);
			break; /* one error per route */
		}
		for (size_t k = 0; k < r->nallow; k++)
			if (route_allow_parse(r->allow[k], strlen(r->allow[k]), &nm, &nn, &cs,
			                      &why) == 0 &&
			    !route_map_allow_used(r, nm, nn)) {
				snprintf(msg, sizeof(msg),
				         "allow names {%.*s}, which no template or "
				         "the path of route %s uses",
				         (int)nn, nm, r->path);
				report(arg, line_of(arg, i, "allow"), msg);
			}
	}
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const struct config_route *a = &cfg->routes[i];

		if (a->type != ROUTE_PUBSUB || a->shared_namespace)
			continue;
		for (size_t j = 0; j < cfg->nroutes; j++) {
			const struct config_route *b = &cfg->routes[j];
			int id_rule = a->auth == AUTH_NONE && b->auth == AUTH_JWT;

			if (i == j || b->type != ROUTE_PUBSUB ||
			    (!id_rule && !b->server_only && b->nread_only == 0))
				continue;
			for (size_t ka = 0; ka <= a->nsubscribe; ka++) {
				const char *keya, *keyb, *ta = route_map_tmpl(a, ka, &keya), *tb;

				if (ta == NULL)
					continue;
				for (size_t kb = 0; kb <= b->nsubscribe; kb++) {
					int bound, ro;

					if ((tb = route_map_tmpl(b, kb, &keyb)) == NULL)
						continue;
					bound = id_rule && route_map_identity_bound(tb);
					ro = kb < b->nsubscribe && !b->server_only &&
					     route_map_is_read_only(b, tb);
					/* Identity channels: any template of a; server_only and
					 * read_only: what a publishes against what b subscribes. */
					if (!bound && !((b->server_only || ro) &&
					                ka == a->nsubscribe && kb < b->nsubscribe))
						continue;
					if (route_map_overlap(a, ta, b, tb) != 1)
						continue;
					snprintf(
					    msg, sizeof(msg),
					    "route %s (%s) %s '%s' can reach "
					    "channel %s '%s' of route %s (%s, line %d); set "
					    "shared_namespace = yes on %s if that is deliberate",
					    a->path, a->auth == AUTH_JWT ? "auth jwt" : "no auth",
					    keya, ta, keyb, tb, b->path,
					    bound ? "auth jwt, bound to an identity"
					    : ro  ? "read_only"
					          : "server_only",
					    b->line, a->path);
					report(arg, line_of(arg, i, keya), msg);
					goto next_pair; /* one error per pair of routes */
				}
			}
		next_pair:;
		}
	}
}
