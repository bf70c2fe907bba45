/* redis_sentinel.h - where the Redis links connect: one configured Redis, or the master that
 * Redis Sentinel names (asked with SENTINEL get-master-addr-by-name, followed through
 * +switch-master), over plain TCP or TLS. The pure parsers of what sentinels answer are here
 * too, with a Check suite. */
#ifndef WSGATE_REDIS_SENTINEL_H
#define WSGATE_REDIS_SENTINEL_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "config.h"

struct event_base;
struct evdns_base;
struct redis_link;
struct redis_endpoint;

/* ---- pure ---- */

/* The answer to SENTINEL get-master-addr-by-name: 1 with host and port (a two-string array),
 * 0 when the sentinel does not know the name (nil), -1 for anything else (*why says). */
int redis_sentinel_master_reply(const redisReply *r, char *host, size_t hostsz, int *port,
                                const char **why);

/* A +switch-master message, "<name> <old-ip> <old-port> <new-ip> <new-port>": 1 with the new
 * address when it is about name, 0 when about another master, -1 when malformed. */
int redis_sentinel_switch(const char *msg, size_t n, const char *name, char *host, size_t hostsz,
                          int *port);

/* Splits "host:port, host:port" into hosts[i] (each hostsz bytes) and ports. Returns the count,
 * or -1 (*why) on a bad item or more than max. */
int redis_sentinel_parse_list(const char *s, char (*hosts)[256], int *ports, size_t max,
                              const char **why);

/* ---- the endpoint ---- */

/* The TLS context (tls = yes) and, with sentinels, the discovery of the master, shared by the
 * links of one event loop. NULL with err filled on a failure (bad CA, cert or key). The
 * config is copied. */
struct redis_endpoint *redis_endpoint_new(struct event_base *base, struct evdns_base **dnsp,
                                          const struct config_redis *rc, char *err, size_t errsz);
/* l connects where the endpoint says (before its first connect). */
void redis_endpoint_attach(struct redis_endpoint *ep, struct redis_link *l);
/* After the attached links were freed. */
void redis_endpoint_free(struct redis_endpoint *ep);
/* Loads the TLS files of rc (tls on) as a start would: 0, or -1 with err filled. */
int redis_endpoint_check_tls(const struct config_redis *rc, char *err, size_t errsz);
/* For the log line: "host:port" or "sentinel master NAME". */
const char *redis_endpoint_describe(const struct redis_endpoint *ep, char *buf, size_t n);

#endif
