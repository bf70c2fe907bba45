/* route_map.h - pure analysis of the channel map: the set of names a channel template can
 * produce on its route (literals and placeholder character sets), whether two templates can
 * produce the same name, and the printable pattern `wsgate -t` shows. */
#ifndef WSGATE_ROUTE_MAP_H
#define WSGATE_ROUTE_MAP_H

#include <stddef.h>

#include "config.h"

/* 1 when some channel name can come out of both template ta on route ra and template tb on
 * route rb (placeholders take one or more characters of their set, see route_charset_for);
 * 0 when none can, -1 when a template is malformed or too long. */
int route_map_overlap(const struct config_route *ra, const char *ta, const struct config_route *rb,
                      const char *tb);

/* 1 when the template holds a {jwt.NAME} placeholder: its channels belong to an identity. */
int route_map_identity_bound(const char *tmpl);

/* The names tmpl can produce on r as a pattern: literals as written, each placeholder as its
 * set, e.g. "room:{room}" -> "room:[-.0-9A-Z_a-z]+". Returns out ("" when it does not fit). */
const char *route_map_pattern(const struct config_route *r, const char *tmpl, char *out,
                              size_t outsz);

/* 1 when name[0..n) is one of the names tmpl can produce on r (route_map_pattern's language);
 * 0 when not, -1 when the template is malformed or memory is short. */
int route_map_matches(const struct config_route *r, const char *tmpl, const char *name, size_t n);

/* The read_only template of r that channel[0..n) (a publish expansion, without the Redis
 * prefix) falls in, or NULL when clients of r may publish there. Fails closed: a template that
 * cannot be evaluated counts as matched. */
const char *route_map_read_only(const struct config_route *r, const char *channel, size_t n);

/* What clients of r may do with its subscribe template tmpl, for the channel map:
 * "writable" (the publish template can produce one of its names), or why it is read-only. */
const char *route_map_access(const struct config_route *r, const char *tmpl);

/* Reports a problem of the channel map at a config line (the caller formats FILE:LINE). */
typedef void (*route_map_report_fn)(void *arg, int line, const char *msg);

/* The load-time rules of the channel map, each broken one reported once:
 * - a template written in the reserved namespace (ROUTE_RESERVED_PREFIX);
 * - an "allow" item naming a placeholder no template or path of its route uses;
 * - a route without auth whose subscribe or publish template can produce a name that a jwt
 *   route's identity-bound ({jwt.NAME}) template produces, unless shared_namespace = yes;
 * - a publish template that can produce a name a server_only route subscribes to, or a name
 *   of another route's read_only template, unless the publishing route has
 *   shared_namespace = yes;
 * - a read_only item that is not one of its route's subscribe templates, read_only on a route
 *   whose clients cannot publish at all, and a publish template that is itself read_only.
 * line_of(arg, route index, key) gives the line of a key of a route (its header when unset). */
void route_map_check(const struct config *cfg,
                     int (*line_of)(void *arg, size_t route, const char *key),
                     route_map_report_fn report, void *arg);

#endif
