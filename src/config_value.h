/* config_value.h - pure parsers and checks of one configuration value: numbers, durations,
 * sizes, addresses, URLs, channel templates, origins. libc only; config_keys.c stores them. */
#ifndef WSGATE_CONFIG_VALUE_H
#define WSGATE_CONFIG_VALUE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* The pure parsers: config_parse_duration_ms, _size, _bool and _listen are declared in
 * config.h (their public home); these take the value as (s, n) where a list item is parsed in
 * place, return 0, or -1 with *why naming the problem (a static string). */

/* The first of a[0..i-1] and b[0..nb-1] with the address of a[i] (host compared without
 * case), or NULL. */
const struct config_listen *config_listen_dup(const struct config_listen *a, size_t i,
                                              const struct config_listen *b, size_t nb);
/* "host:port", or "[v6]:port", into buf. */
const char *config_listen_fmt(char *buf, size_t sz, const struct config_listen *l);

/* "redis://[:password@]host[:port][/db]" into url, host, port (default 6379), db and password
 * of out, replacing the ones there. -2 when out of memory. */
int config_parse_redis_url(const char *s, struct config_redis *out, const char **why)
    __attribute__((warn_unused_result));
/* "ws://host[:port][/path[?query]]", "wss://..." or "tcp://host:port" into out (path and url
 * allocated: free with config_backend_clear). -2 when out of memory. */
/* "host:port" or "[v6]:port" (n bytes; the port is required) into host and *port. */
int config_parse_hostport(const char *s, size_t n, char *host, size_t hostsz, int *port,
                          const char **why) __attribute__((warn_unused_result));
int config_parse_backend(const char *s, size_t n, struct config_backend *out, const char **why)
    __attribute__((warn_unused_result));
void config_backend_clear(struct config_backend *b);
/* Plain decimal digits, no sign, no suffix (config.h has the duration, size, bool parsers). */
int config_parse_uint(const char *s, uint64_t *out) __attribute__((warn_unused_result));
/* One RFC 7230 token (a subprotocol name). */
int config_parse_token(const char *s, size_t n, const char **why)
    __attribute__((warn_unused_result));
/* A channel name or prefix: [A-Za-z0-9_.:-] only (n may be 0). */
int config_parse_channel(const char *s, size_t n, const char **why)
    __attribute__((warn_unused_result));
/* "*", or "http(s)://host[:port]" where host may start with "*." or be "[v6]". */
int config_parse_origin(const char *s, size_t n, const char **why)
    __attribute__((warn_unused_result));
/* A channel template: [A-Za-z0-9_.:-] and {name}, {query.name}, {jwt.name} placeholders. */
int config_parse_template(const char *s, size_t n, const char **why)
    __attribute__((warn_unused_result));
/* A host name for getaddrinfo or SNI: dot-separated labels of [A-Za-z0-9_-]; a dotted quad
 * must be a valid one. */
int config_value_host_valid(const char *h);
/* The first placeholder of a (syntax-checked) template that cannot be filled on a route with
 * path pattern path, copied into ph: 1 a {name} not in path, 2 a {jwt.x} while jwt is 0;
 * 0 when all can be. */
int config_template_unbound(const char *tmpl, const char *path, int jwt, char *ph, size_t phsz);
/* 0 when path is a file we can open for reading now, else an errno value. */
int config_value_readable(const char *path);

/* Small string helpers shared with config.c (ASCII only: no locale). */
int config_value_is_space(int ch);
int config_value_strcaseeq(const char *a, const char *b);
char *config_value_strndup(const char *s, size_t n);
char *config_value_rstrip(char *s);
char *config_value_lskip(char *s);
/* Copies s into buf for a message, control bytes as \xNN (so a log line stays one line). */
const char *config_value_quote(char *buf, size_t bufsz, const char *s);

#endif
