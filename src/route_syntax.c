/* route_syntax.c - the pure part of routing (route_syntax.h): path patterns and their
 * segments, placeholder character sets, the reserved channel namespace. Moved out of route.c so
 * that the configuration loader can validate with it without depending on the matcher, which
 * reads the configuration's types. */

#include <string.h>

#include "route_syntax.h"

/*
 * Splits "/a/b" into its segments after the leading '/'. "/" is one empty segment and a
 * trailing slash adds an empty segment, so "/echo/" never matches "/echo". Returns the count,
 * or -1 when s does not start with '/' or has more than ROUTE_MAX_SEGMENTS segments.
 */
int
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

int
route_is_placeholder(const struct route_seg *seg)
{
	return seg->n >= 2 && seg->p[0] == '{' && seg->p[seg->n - 1] == '}';
}

int
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
route_charset_pick(const char *const *allow, size_t nallow, const char *name, size_t n,
                   struct route_charset *cs)
{
	const char *nm, *why;
	size_t nn;

	for (size_t i = 0; allow != NULL && i < nallow; i++)
		if (route_allow_parse(allow[i], strlen(allow[i]), &nm, &nn, cs, &why) == 0 &&
		    nn == n && memcmp(nm, name, n) == 0)
			return;
	route_charset_default(cs);
}

int
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
