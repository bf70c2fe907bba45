/* config_keys.c - the tables behind wsgate.ini: one row per section kind, one row per key.
 * Adding a key is one row in config_keys[]; config.c parses, defaults, bounds and frees it. */
#include <string.h>

#include "config_keys.h"

const struct config_section_def config_sections[CFG_SEC_COUNT] = {
	[CFG_SEC_GATEWAY] = { CFG_SEC_GATEWAY, "gateway", CFG_ARG_NONE, NULL, CFG_BASE_CONFIG,
	    "listeners, limits and timeouts of the whole process" },
	[CFG_SEC_HEARTBEAT] = { CFG_SEC_HEARTBEAT, "heartbeat", CFG_ARG_NONE, NULL, CFG_BASE_CONFIG,
	    "ping/pong keepalive and idle timeout of client connections" },
	[CFG_SEC_ROUTE] = { CFG_SEC_ROUTE, "route", CFG_ARG_REQUIRED, "/path", CFG_BASE_ROUTE,
	    "one URL path pattern and what serves it" },
};

/* Field of struct config / struct config_route: offset and size, so each row stays one line. */
#define G(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define R(f) offsetof(struct config_route, f), sizeof(((struct config_route *)0)->f)
#define GN(f) offsetof(struct config, f)
#define RN(f) offsetof(struct config_route, f)

#define SEC_MS 1000ull
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)
#define GIB (1024ull * 1024 * 1024)

#define REP CFG_F_REPEATABLE
#define RLD CFG_F_RELOADABLE
#define REQ CFG_F_REQUIRED

/* section, name, type, field, count field, default, min, max, flags, enum words, help */
const struct config_key config_keys[] = {
	{ CFG_SEC_GATEWAY, "listen", CFG_T_LISTEN, G(listens), GN(nlistens), "0.0.0.0:8080",
	    0, 0, REP, NULL, "accept on host:port, [v6]:port or :port, then optional tls" },
	{ CFG_SEC_GATEWAY, "max_message_size", CFG_T_SIZE, G(max_message_size), 0, "1048576",
	    1, GIB, RLD, NULL, "largest reassembled message accepted from a client, in bytes" },
	{ CFG_SEC_GATEWAY, "handshake_timeout", CFG_T_DURATION, G(handshake_timeout_ms), 0, "10s",
	    1, HOUR_MS, RLD, NULL, "time a client has to complete the HTTP upgrade" },
	{ CFG_SEC_GATEWAY, "shutdown_timeout", CFG_T_DURATION, G(shutdown_timeout_ms), 0, "10s",
	    0, HOUR_MS, RLD, NULL, "on shutdown, time connections get to close before being cut" },
	{ CFG_SEC_GATEWAY, "close_timeout", CFG_T_DURATION, G(close_timeout_ms), 0, "5s",
	    0, HOUR_MS, RLD, NULL, "after we send a close frame, time to wait for the peer's" },
	{ CFG_SEC_GATEWAY, "log_level", CFG_T_LOGLEVEL, G(log_level), 0, "info",
	    0, 0, RLD, NULL, "error, warn, info or debug" },

	{ CFG_SEC_HEARTBEAT, "ping_interval", CFG_T_DURATION, G(ping_interval_ms), 0, "25s",
	    0, DAY_MS, RLD, NULL, "send a ping after this much silence; 0 = off" },
	{ CFG_SEC_HEARTBEAT, "pong_timeout", CFG_T_DURATION, G(pong_timeout_ms), 0, "10s",
	    0, DAY_MS, RLD, NULL, "close when a ping is not answered within this time" },
	{ CFG_SEC_HEARTBEAT, "idle_timeout", CFG_T_DURATION, G(idle_timeout_ms), 0, "0",
	    0, 7 * DAY_MS, RLD, NULL, "close after this long with nothing received; 0 = off" },
	{ CFG_SEC_HEARTBEAT, "app_message", CFG_T_STRING, G(app_message), 0, NULL,
	    0, 0, RLD, NULL, "text frame also sent at each ping (UTF-8, e.g. JSON); empty = none" },

	{ CFG_SEC_ROUTE, "type", CFG_T_ROUTE_TYPE, R(type), 0, NULL,
	    0, 0, REQ | RLD, NULL, "echo, pubsub or proxy" },
	{ CFG_SEC_ROUTE, "subprotocols", CFG_T_LIST, R(subprotocols), RN(nsubprotocols), NULL,
	    0, 32, RLD, NULL, "comma-separated subprotocols offered to clients, preferred first" },
};

const size_t config_nkeys = sizeof(config_keys) / sizeof(config_keys[0]);

const struct config_section_def *
config_section_find(const char *name, int has_arg, int *name_known)
{
	*name_known = 0;
	for (size_t i = 0; i < CFG_SEC_COUNT; i++) {
		const struct config_section_def *s = &config_sections[i];

		if (strcmp(s->name, name) != 0)
			continue;
		*name_known = 1;
		if ((s->arg == CFG_ARG_REQUIRED) == (has_arg != 0))
			return s;
	}
	return NULL;
}

const struct config_key *
config_key_find(enum config_section_kind sec, const char *name)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		if (config_keys[i].section == sec && strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	}
	return NULL;
}

size_t
config_type_size(enum config_type t)
{
	switch (t) {
	case CFG_T_STRING:
		return sizeof(char *);
	case CFG_T_DURATION:
	case CFG_T_SIZE:
		return sizeof(uint64_t);
	case CFG_T_BOOL:
	case CFG_T_ENUM:
		return sizeof(int);
	case CFG_T_LIST:
		return sizeof(char **);
	case CFG_T_LISTEN:
		return sizeof(struct config_listen *);
	case CFG_T_LOGLEVEL:
		return sizeof(enum log_level);
	case CFG_T_ROUTE_TYPE:
		return sizeof(enum route_type);
	}
	return 0;
}
