/* route_syntax.h - pure pieces of routing, used by the configuration loader and the matcher:
 * path patterns and their segments, placeholder character sets ("allow"), the reserved channel
 * namespace. No configuration types: strings in, verdicts out. */
#ifndef WSGATE_ROUTE_SYNTAX_H
#define WSGATE_ROUTE_SYNTAX_H

#include <stddef.h>

#define ROUTE_MAX_PARAMS 8
#define ROUTE_MAX_SEGMENTS 32

/* wsgate's own channels (direct "wsgate:conn:<id>", the Redis canary "wsgate:probe:<id>")
 * live under this prefix; route_expand never produces a name that starts with it, and a
 * template written with it is refused at load. */
#define ROUTE_RESERVED_PREFIX "wsgate:"
#define ROUTE_RESERVED_PREFIX_LEN 7

/* One segment of a path or pattern (into the string, not NUL-terminated). */
struct route_seg {
	const char *p;
	size_t n;
};

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

/* The set placeholder name[0..n) accepts given a route's allow items: its item, else the
 * default. */
void route_charset_pick(const char *const *allow, size_t nallow, const char *name, size_t n,
                        struct route_charset *cs);

/* 1 when byte c is in cs. */
int route_charset_has(const struct route_charset *cs, unsigned char c);

/* 1 when channel[0..n) is in wsgate's reserved namespace. */
int route_reserved(const char *channel, size_t n);

/* 1 when pattern is a valid route path: starts with '/', segments are literal or "{name}" with
 * name in [A-Za-z0-9_], no empty placeholder, at most ROUTE_MAX_PARAMS placeholders. On 0, *why
 * names the problem. */
int route_pattern_valid(const char *pattern, const char **why);

/* 1 when every byte of s is in the default set [A-Za-z0-9_.-] and n > 0. */
int route_value_safe(const char *s, size_t n);

/* Splits "/a/b" into its segments after the leading '/' (see route_syntax.c); the count, or
 * -1 when s does not start with '/' or has more than ROUTE_MAX_SEGMENTS segments. */
int route_split(const char *s, size_t n, struct route_seg segs[ROUTE_MAX_SEGMENTS]);
/* 1 when seg is "{name}". */
int route_is_placeholder(const struct route_seg *seg);
/* 1 for [A-Za-z0-9_], the characters of placeholder names. */
int route_name_char(unsigned char c);
/* 1 when s[0..n) is non-empty and every byte is in cs. */
int route_value_in(const struct route_charset *cs, const char *s, size_t n);

#endif
