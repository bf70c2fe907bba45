/* config.h - the ini file as an immutable snapshot: a declarative key table (config_keys.c)
 * drives parsing, defaults and bounds; one validation pass reports every error as FILE:LINE. */
#ifndef WSGATE_CONFIG_H
#define WSGATE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

enum route_type { ROUTE_ECHO = 0, ROUTE_PUBSUB, ROUTE_PROXY };

struct config_listen {
	char host[64];   /* numeric address or name; "" never (validated) */
	char port[8];
	int tls;         /* "tls" flag after the address */
	int line;
};

struct config_route {
	char *path;              /* pattern from the section name, e.g. "/rooms/{room}" */
	enum route_type type;
	char **subprotocols;     /* offered to clients, in preference order */
	size_t nsubprotocols;
	int line;                /* line of the [route ...] section header */
};

struct config {
	char *file;                     /* path it was read from (or a name for strings) */
	/* [gateway] */
	struct config_listen *listens;
	size_t nlistens;
	uint64_t max_message_size;      /* bytes */
	uint64_t handshake_timeout_ms;
	uint64_t shutdown_timeout_ms;
	uint64_t close_timeout_ms;      /* after we send close: wait this long for the peer's */
	enum log_level log_level;
	/* [heartbeat] */
	uint64_t ping_interval_ms;      /* 0 = off */
	uint64_t pong_timeout_ms;
	uint64_t idle_timeout_ms;       /* 0 = off */
	char *app_message;              /* NULL when unset or empty */
	size_t app_message_len;
	/* [route ...] in file order */
	struct config_route *routes;
	size_t nroutes;
};

/* Collected errors, each "FILE:LINE: message" (or "FILE: message" when no line applies). */
struct config_errors {
	char **msgs;
	size_t n;
};

/* Loads and validates; on success *out is a new snapshot and 0 is returned. On failure -1,
 * *out is NULL and errs holds every error found (not just the first). */
int config_load_file(const char *path, struct config **out, struct config_errors *errs)
    __attribute__((warn_unused_result));
/* Same from a string (unit tests, embedded defaults); name is used in messages. */
int config_load_string(const char *name, const char *text, struct config **out,
    struct config_errors *errs) __attribute__((warn_unused_result));
void config_free(struct config *cfg);
void config_errors_free(struct config_errors *errs);

/* Value parsers shared with the key table; 0 on success, -1 on a bad value. */
int config_parse_duration_ms(const char *s, uint64_t *out); /* "10s", "200ms", "1m", "2h", bare = s */
int config_parse_size(const char *s, uint64_t *out);        /* "1048576", "64KiB", "1MiB", "1GiB", "16k", "1M" */
int config_parse_bool(const char *s, int *out);             /* yes|no|true|false|on|off|1|0 */
/* "host:port", "[v6]:port" or ":port"/"port" (all addresses), optionally followed by " tls". */
int config_parse_listen(const char *s, struct config_listen *out);

const char *config_route_type_name(enum route_type t);

#endif
