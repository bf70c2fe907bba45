/* config_keys.c - the tables behind wsgate.ini (one row per section kind, one row per key) and
 * what interprets a row: storing a value into its field, bounds, freeing. Adding a key is a row. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"
#include "config_value.h"
#include "route_syntax.h"
#include "utf8.h"

#define SEC_MS 1000ull
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)

const struct config_section_def config_sections[CFG_SEC_COUNT] = {
    [CFG_SEC_GATEWAY] = {CFG_SEC_GATEWAY, "gateway", CFG_ARG_NONE, NULL, CFG_BASE_CONFIG,
                         "listeners, limits and timeouts of the whole process"},
    [CFG_SEC_HEARTBEAT] = {CFG_SEC_HEARTBEAT, "heartbeat", CFG_ARG_NONE, NULL, CFG_BASE_CONFIG,
                           "ping/pong keepalive and idle timeout of client connections"},
    [CFG_SEC_REDIS] =
        {CFG_SEC_REDIS, "redis", CFG_ARG_NONE, NULL, CFG_BASE_CONFIG,
         "pub/sub through Redis, shared by several gateways; absent: the in-process hub"},
    [CFG_SEC_TLS] = {CFG_SEC_TLS, "tls", CFG_ARG_NONE, NULL, CFG_BASE_TLS,
                     "the default certificate of \"listen = ... tls\" and the TLS settings"},
    [CFG_SEC_TLS_SNI] = {CFG_SEC_TLS_SNI, "tls", CFG_ARG_REQUIRED, "example.org", CFG_BASE_TLS,
                         "a certificate for one SNI host name or *.domain"},
    [CFG_SEC_ROUTE] = {CFG_SEC_ROUTE, "route", CFG_ARG_REQUIRED, "/path", CFG_BASE_ROUTE,
                       "one URL path pattern and what serves it"},
};

/* Base, offset and size of a field of struct config / config_route / config_tls_cert, so each
 * row stays short; xN is the offset of a list's count field. */
#define G(f) CFG_BASE_CONFIG, offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define R(f) CFG_BASE_ROUTE, offsetof(struct config_route, f), sizeof(((struct config_route *)0)->f)
#define T(f)                                                                                       \
	CFG_BASE_TLS, offsetof(struct config_tls_cert, f), sizeof(((struct config_tls_cert *)0)->f)
#define GN(f) offsetof(struct config, f)
#define RN(f) offsetof(struct config_route, f)

#define DAY_MS (24 * HOUR_MS)
#define KIB 1024ull
#define GIB (1024ull * 1024 * 1024)

#define REP CFG_F_REPEATABLE
#define RLD CFG_F_RELOADABLE
#define REQ CFG_F_REQUIRED
#define PUB CFG_F_PUBSUB
#define PRX CFG_F_PROXY

/* The enum words, in the order of the enum they index. */
static const char *const log_format_names[] = {"text", "json", NULL};
static const char *const tls_version_names[] = {"1.2", "1.3", NULL};
static const char *const auth_names[] = {"none", "jwt", NULL};
static const char *const jwt_from_names[] = {"header", "query", "cookie", NULL};
static const char *const envelope_names[] = {"raw", "json", NULL};
static const char *const message_type_names[] = {"auto", "text", "binary", NULL};
static const char *const slow_names[] = {"close", "drop_oldest", "drop_newest", "conflate", NULL};
static const char *const balance_names[] = {"round_robin", "least_conn", "ip_hash", NULL};

/* section, name, type, field, count field, default, min, max, flags, enum words, help */
const struct config_key config_keys[] = {
    {CFG_SEC_GATEWAY, "listen", CFG_T_LISTEN, G(listens), GN(nlistens), "0.0.0.0:8080", 0, 0, REP,
     NULL, "accept on host:port, [v6]:port or :port, then optional tls"},
    {CFG_SEC_GATEWAY, "max_message_size", CFG_T_SIZE, G(max_message_size), 0, "1048576", 1, GIB,
     RLD, NULL, "largest reassembled message accepted from a client, in bytes"},
    {CFG_SEC_GATEWAY, "handshake_timeout", CFG_T_DURATION, G(handshake_timeout_ms), 0, "10s", 1,
     HOUR_MS, RLD, NULL, "time a client has to complete the HTTP upgrade"},
    {CFG_SEC_GATEWAY, "shutdown_timeout", CFG_T_DURATION, G(shutdown_timeout_ms), 0, "10s", 0,
     HOUR_MS, RLD, NULL, "on shutdown, time connections get to close before being cut"},
    {CFG_SEC_GATEWAY, "close_timeout", CFG_T_DURATION, G(close_timeout_ms), 0, "5s", 0, HOUR_MS,
     RLD, NULL, "after we send a close frame, time to wait for the peer's"},
    {CFG_SEC_GATEWAY, "log_level", CFG_T_LOGLEVEL, G(log_level), 0, "info", 0, 0, RLD, NULL,
     "error, warn, info or debug"},
    {CFG_SEC_GATEWAY, "log_format", CFG_T_ENUM, G(log_format), 0, "text", 0, 0, RLD,
     log_format_names, "text (one readable line) or json (one object a line)"},
    {CFG_SEC_GATEWAY, "max_connections", CFG_T_UINT, G(max_connections), 0, "100000", 0, 10000000,
     RLD, NULL, "open client connections; beyond, upgrades get 503"},
    {CFG_SEC_GATEWAY, "max_connections_per_ip", CFG_T_UINT, G(max_connections_per_ip), 0, "0", 0,
     10000000, RLD, NULL, "open connections per client address; 0 = unlimited"},
    {CFG_SEC_GATEWAY, "accept_rate_per_ip", CFG_T_UINT, G(accept_rate_per_ip), 0, "0", 0, 1000000,
     RLD, NULL, "new connections per second per address (429); 0 = unlimited"},
    {CFG_SEC_GATEWAY, "workers", CFG_T_UINT, G(workers), 0, "auto", 1, 64, CFG_F_AUTO, NULL,
     "event-loop threads, 1 to 64, or auto (one per core)"},
    {CFG_SEC_GATEWAY, "admin_listen", CFG_T_ADMIN_LISTEN, G(admin_listens), GN(nadmin_listens),
     NULL, 0, 0, REP, NULL,
     "plain HTTP address of /healthz /readyz /metrics /status; absent = none"},
    {CFG_SEC_GATEWAY, "admin_timeout", CFG_T_DURATION, G(admin_timeout_ms), 0, "10s", 1, HOUR_MS,
     RLD, NULL, "time a whole admin request may take, accept to last byte"},
    {CFG_SEC_GATEWAY, "admin_max_connections", CFG_T_UINT, G(admin_max_connections), 0, "64", 1,
     100000, RLD, NULL, "admin connections open at once; beyond, 503 and close"},
    {CFG_SEC_GATEWAY, "drain_window", CFG_T_DURATION, G(drain_window_ms), 0, "10s", 0, HOUR_MS, RLD,
     NULL, "on SIGTERM, client closes are spread over this window"},
    {CFG_SEC_GATEWAY, "admission_rate", CFG_T_UINT, G(admission_rate), 0, "0", 0, 10000000, 0, NULL,
     "new sessions per second for the whole fleet (503); 0 = no budget"},
    {CFG_SEC_GATEWAY, "admission_ramp", CFG_T_DURATION, G(admission_ramp_ms), 0, "10s", 0, HOUR_MS,
     0, NULL, "after start or Redis back, admissions ramp up over this time"},
    {CFG_SEC_GATEWAY, "admission_share", CFG_T_UINT, G(admission_share), 0, "0", 0, 10000000, 0,
     NULL, "Redis down: this instance's rate; 0 = rate / instances alive"},
    {CFG_SEC_GATEWAY, "admission_retry_max", CFG_T_DURATION, G(admission_retry_max_ms), 0, "30s",
     1000, HOUR_MS, 0, NULL, "longest window retry hints are drawn from"},
    {CFG_SEC_GATEWAY, "trusted_proxies", CFG_T_CIDR_LIST, G(trusted_proxies), GN(ntrusted_proxies),
     NULL, 0, 256, REP | RLD, NULL,
     "balancers whose X-Forwarded-For/Forwarded/PROXY are believed: 10.0.0.0/8, ::1"},
    {CFG_SEC_GATEWAY, "compression_memory", CFG_T_SIZE, G(compression_memory), 0, "64MiB", 0,
     64 * GIB, RLD, NULL,
     "memory for clients' kept compression contexts; beyond, client_no_context_takeover"},

    {CFG_SEC_HEARTBEAT, "ping_interval", CFG_T_DURATION, G(ping_interval_ms), 0, "25s", 0, DAY_MS,
     RLD, NULL, "send a ping after this much silence; 0 = off"},
    {CFG_SEC_HEARTBEAT, "pong_timeout", CFG_T_DURATION, G(pong_timeout_ms), 0, "10s", 0, DAY_MS,
     RLD, NULL,
     "close when a ping is unanswered and nothing moved (no byte read, none of ours taken) for "
     "this long"},
    {CFG_SEC_HEARTBEAT, "idle_timeout", CFG_T_DURATION, G(idle_timeout_ms), 0, "0", 0, 7 * DAY_MS,
     RLD, NULL, "close after this long with no message (nor ping) received; 0 = off"},
    {CFG_SEC_HEARTBEAT, "app_message", CFG_T_STRING, G(app_message), 0, NULL, 0, 0, RLD, NULL,
     "text frame also sent at each ping (UTF-8, e.g. JSON); empty = none"},

    {CFG_SEC_REDIS, "url", CFG_T_REDIS_URL, G(redis), 0, "redis://127.0.0.1:6379/0", 0, 0,
     CFG_F_SECRET, NULL, "redis://[:password@]host[:port][/db]"},
    {CFG_SEC_REDIS, "connect_timeout", CFG_T_DURATION, G(redis.connect_timeout_ms), 0, "2s", 1,
     MIN_MS, 0, NULL, "time a connection to Redis may take"},
    {CFG_SEC_REDIS, "channel_prefix", CFG_T_CHANNEL, G(redis.channel_prefix), 0, NULL, 0, 64, 0,
     NULL, "put before every channel name, e.g. wsgate: ; empty = none"},
    {CFG_SEC_REDIS, "probe_interval", CFG_T_DURATION, G(redis.probe_interval_ms), 0, "2s", 100,
     HOUR_MS, RLD, NULL, "period of the liveness canary published through Redis"},
    {CFG_SEC_REDIS, "probe_timeout", CFG_T_DURATION, G(redis.probe_timeout_ms), 0, "5s", 100,
     HOUR_MS, RLD, NULL, "canary not back within this: the links are rebuilt"},
    {CFG_SEC_REDIS, "publish_queue", CFG_T_SIZE, G(redis.publish_queue), 0, "1MiB", 0, GIB, RLD,
     NULL, "bytes of client publishes held while Redis is unreachable"},
    {CFG_SEC_REDIS, "reconnect_max", CFG_T_DURATION, G(redis.reconnect_max_ms), 0, "5s", 100,
     HOUR_MS, RLD, NULL, "longest wait between reconnect attempts (backoff cap)"},
    {CFG_SEC_REDIS, "max_message_size", CFG_T_SIZE, G(redis.max_message_size), 0, "8MiB", 64, GIB,
     0, NULL, "largest message taken from Redis; larger: dropped, logged, counted"},
    {CFG_SEC_REDIS, "sentinels", CFG_T_STRING, G(redis.sentinels), 0, NULL, 0, 0, 0, NULL,
     "host:port, ...: Redis Sentinels asked for the master (with master_name)"},
    {CFG_SEC_REDIS, "master_name", CFG_T_STRING, G(redis.master_name), 0, NULL, 0, 0, 0, NULL,
     "the master's name in Sentinel (sentinel monitor NAME ...)"},
    {CFG_SEC_REDIS, "sentinel_password", CFG_T_STRING, G(redis.sentinel_password), 0, NULL, 0, 0,
     CFG_F_SECRET, NULL, "password the sentinels ask for (their requirepass)"},
    {CFG_SEC_REDIS, "sentinel_username", CFG_T_STRING, G(redis.sentinel_username), 0, NULL, 0, 0, 0,
     NULL, "ACL user on the sentinels (with sentinel_password)"},
    {CFG_SEC_REDIS, "cluster", CFG_T_BOOL, G(redis.cluster), 0, "no", 0, 0, 0, NULL,
     "Redis Cluster: sharded pub/sub (SSUBSCRIBE/SPUBLISH) on each master"},
    {CFG_SEC_REDIS, "nodes", CFG_T_STRING, G(redis.nodes), 0, NULL, 0, 0, 0, NULL,
     "host:port, ...: cluster nodes asked for the slot map (default: url)"},
    {CFG_SEC_REDIS, "tls", CFG_T_BOOL, G(redis.tls), 0, "no", 0, 0, 0, NULL,
     "TLS to Redis and the sentinels (also said by a rediss:// url)"},
    {CFG_SEC_REDIS, "ca_file", CFG_T_PATH, G(redis.ca_file), 0, NULL, 0, 0, 0, NULL,
     "CA bundle that verifies Redis' certificate; default: the system store"},
    {CFG_SEC_REDIS, "cert", CFG_T_PATH, G(redis.cert), 0, NULL, 0, 0, 0, NULL,
     "client certificate (PEM chain) when Redis asks for one"},
    {CFG_SEC_REDIS, "key", CFG_T_PATH, G(redis.key), 0, NULL, 0, 0, 0, NULL,
     "private key (PEM) of cert"},
    {CFG_SEC_REDIS, "tls_server_name", CFG_T_STRING, G(redis.tls_server_name), 0, NULL, 0, 0, 0,
     NULL, "name Redis' certificate must carry; default: the host connected to"},

    {CFG_SEC_TLS, "cert", CFG_T_PATH, T(cert), 0, NULL, 0, 0, REQ, NULL,
     "PEM certificate chain, leaf first"},
    {CFG_SEC_TLS, "key", CFG_T_PATH, T(key), 0, NULL, 0, 0, REQ, NULL, "PEM private key of cert"},
    {CFG_SEC_TLS, "min_version", CFG_T_ENUM, G(tls_min_version), 0, "1.2", 0, 0, 0,
     tls_version_names, "oldest TLS version accepted: 1.2 or 1.3"},
    {CFG_SEC_TLS, "ciphers", CFG_T_STRING, G(tls_ciphers), 0, NULL, 0, 0, 0, NULL,
     "OpenSSL cipher list for TLS 1.2; empty = a modern default"},
    {CFG_SEC_TLS_SNI, "cert", CFG_T_PATH, T(cert), 0, NULL, 0, 0, REQ, NULL,
     "PEM certificate chain for this name, leaf first"},
    {CFG_SEC_TLS_SNI, "key", CFG_T_PATH, T(key), 0, NULL, 0, 0, REQ, NULL,
     "PEM private key of cert"},

    {CFG_SEC_ROUTE, "type", CFG_T_ROUTE_TYPE, R(type), 0, NULL, 0, 0, REQ | RLD, NULL,
     "echo, pubsub or proxy"},
    {CFG_SEC_ROUTE, "subprotocols", CFG_T_LIST, R(subprotocols), RN(nsubprotocols), NULL, 0, 32,
     RLD, NULL, "comma-separated subprotocols offered to clients, preferred first"},
    {CFG_SEC_ROUTE, "origins", CFG_T_ORIGIN_LIST, R(origins), RN(norigins), NULL, 0, 64, RLD, NULL,
     "allowed Origin headers: https://host[:port], *.host, or *"},
    {CFG_SEC_ROUTE, "auth", CFG_T_ENUM, R(auth), 0, "none", 0, 0, RLD, auth_names,
     "none, or jwt: a valid token is required to connect"},
    {CFG_SEC_ROUTE, "jwt_secret", CFG_T_STRING, R(jwt_secret), 0, NULL, 0, 0, RLD | CFG_F_SECRET,
     NULL, "HS256 key of auth = jwt"},
    {CFG_SEC_ROUTE, "jwt_public_key", CFG_T_PATH, R(jwt_public_key), 0, NULL, 0, 0, RLD, NULL,
     "PEM public key file (RS256, ES256) of auth = jwt"},
    {CFG_SEC_ROUTE, "jwt_from", CFG_T_ENUM_LIST, R(jwt_from), RN(njwt_from),
     "header, query, cookie", 1, 3, RLD, jwt_from_names,
     "where the token is looked for, in order: header, query, cookie"},
    {CFG_SEC_ROUTE, "max_messages_per_second", CFG_T_UINT, R(max_messages_per_second), 0, "0", 0,
     1000000, RLD, NULL, "per connection; beyond, close 1008; 0 = unlimited"},
    {CFG_SEC_ROUTE, "admission_rate", CFG_T_UINT, R(admission_rate), 0, "0", 0, 10000000, 0, NULL,
     "new sessions per second on this route, whole fleet (503); 0 = none"},
    {CFG_SEC_ROUTE, "compression", CFG_T_BOOL, R(compression), 0, "off", 0, 0, RLD, NULL,
     "permessage-deflate when the client offers it: on or off"},
    {CFG_SEC_ROUTE, "compression_min_size", CFG_T_SIZE, R(compression_min_size), 0, "128", 0, GIB,
     RLD, NULL, "messages smaller than this are sent uncompressed"},
    {CFG_SEC_ROUTE, "compression_level", CFG_T_UINT, R(compression_level), 0, "6", 1, 9, RLD, NULL,
     "zlib level of messages wsgate compresses, 1 (fast) to 9 (small)"},
    {CFG_SEC_ROUTE, "compression_server_window_bits", CFG_T_UINT, R(compression_server_window_bits),
     0, "15", 9, 15, RLD, NULL, "largest window (2^N bytes) wsgate compresses with"},
    {CFG_SEC_ROUTE, "compression_client_window_bits", CFG_T_UINT, R(compression_client_window_bits),
     0, "15", 8, 15, RLD, NULL,
     "largest window a client may compress with (its offer must let us say so)"},
    {CFG_SEC_ROUTE, "subscribe", CFG_T_TEMPLATE_LIST, R(subscribe), RN(nsubscribe), NULL, 0, 32,
     RLD | PUB, NULL, "channel templates clients receive: chat, room:{room}"},
    {CFG_SEC_ROUTE, "publish", CFG_T_TEMPLATE, R(publish), 0, NULL, 0, 0, RLD | PUB, NULL,
     "channel template client messages go to; none = read-only"},
    {CFG_SEC_ROUTE, "allow", CFG_T_ALLOW_LIST, R(allow), RN(nallow), NULL, 0, ROUTE_MAX_PARAMS * 3,
     REP | RLD | PUB, NULL, "NAME:[SET] widens what a placeholder accepts, e.g. ch:[a-z0-9:]"},
    {CFG_SEC_ROUTE, "server_only", CFG_T_BOOL, R(server_only), 0, "no", 0, 0, RLD | PUB, NULL,
     "only the server side publishes here; client messages: 1008"},
    {CFG_SEC_ROUTE, "read_only", CFG_T_TEMPLATE_LIST, R(read_only), RN(nread_only), NULL, 0, 32,
     RLD | PUB, NULL, "subscribe templates that stay server-push only: user:{jwt.sub}"},
    {CFG_SEC_ROUTE, "shared_namespace", CFG_T_BOOL, R(shared_namespace), 0, "no", 0, 0, RLD | PUB,
     NULL, "deliberately reach channels an auth route binds to identities"},
    {CFG_SEC_ROUTE, "envelope", CFG_T_ENUM, R(envelope), 0, "raw", 0, 0, RLD | PUB, envelope_names,
     "raw payloads, or json objects with metadata"},
    {CFG_SEC_ROUTE, "message_type", CFG_T_ENUM, R(message_type), 0, "auto", 0, 0, RLD | PUB,
     message_type_names, "frame type delivered: auto, text or binary"},
    {CFG_SEC_ROUTE, "announce_id", CFG_T_BOOL, R(announce_id), 0, "no", 0, 0, RLD | PUB, NULL,
     "send {\"type\":\"welcome\",\"id\":...} after the upgrade"},
    {CFG_SEC_ROUTE, "max_queue", CFG_T_SIZE, R(max_queue), 0, "1MiB", KIB, GIB, RLD | PUB, NULL,
     "outbound bytes queued per connection"},
    {CFG_SEC_ROUTE, "slow_consumer", CFG_T_ENUM, R(slow_consumer), 0, "close", 0, 0, RLD | PUB,
     slow_names, "max_queue reached: close, drop_oldest, drop_newest or conflate"},
    {CFG_SEC_ROUTE, "conflate_key", CFG_T_STRING, R(conflate_key), 0, "channel", 1, 128, RLD | PUB,
     NULL, "conflate keeps the newest per: channel, or json:FIELD"},
    {CFG_SEC_ROUTE, "history_size", CFG_T_UINT, R(history_size), 0, "0", 0, 1000000, RLD | PUB,
     NULL, "messages kept per channel for resuming (since=); 0 = off"},
    {CFG_SEC_ROUTE, "history_ttl", CFG_T_DURATION, R(history_ttl_ms), 0, "0", 0, 30 * DAY_MS,
     RLD | PUB, NULL, "history older than this is forgotten; 0 = no age limit"},
    {CFG_SEC_ROUTE, "backend", CFG_T_BACKEND_LIST, R(backends), RN(nbackends), NULL, 0, 64,
     REP | RLD | PRX, NULL, "ws://host[:port][/path], wss://... or tcp://host:port"},
    {CFG_SEC_ROUTE, "balance", CFG_T_ENUM, R(balance), 0, "round_robin", 0, 0, RLD | PRX,
     balance_names, "round_robin, least_conn or ip_hash"},
    {CFG_SEC_ROUTE, "connect_timeout", CFG_T_DURATION, R(connect_timeout_ms), 0, "3s", 1, HOUR_MS,
     RLD | PRX, NULL, "time a backend connect plus upgrade may take"},
    {CFG_SEC_ROUTE, "retries", CFG_T_UINT, R(retries), 0, "2", 0, 16, RLD | PRX, NULL,
     "other backends tried after a failed connect or upgrade"},
    {CFG_SEC_ROUTE, "forward_headers", CFG_T_BOOL, R(forward_headers), 0, "yes", 0, 0, RLD | PRX,
     NULL, "send X-Forwarded-For/-Proto, X-Real-IP and Forwarded"},
    {CFG_SEC_ROUTE, "ca_file", CFG_T_PATH, R(ca_file), 0, NULL, 0, 0, RLD | PRX, NULL,
     "CA bundle for wss:// backends; empty = the system store"},
    {CFG_SEC_ROUTE, "health_check", CFG_T_DURATION, R(health_check_ms), 0, "0", 0, HOUR_MS,
     RLD | PRX, NULL, "active check period of each backend; 0 = passive only"},
    {CFG_SEC_ROUTE, "fail_timeout", CFG_T_DURATION, R(fail_timeout_ms), 0, "10s", 1, HOUR_MS,
     RLD | PRX, NULL, "how long a failed backend is left out"},
    {CFG_SEC_ROUTE, "max_fails", CFG_T_UINT, R(max_fails), 0, "3", 0, 1000, RLD | PRX, NULL,
     "consecutive failures that mark a backend down; 0 = never"},
    {CFG_SEC_ROUTE, "fail_on_5xx", CFG_T_BOOL, R(fail_on_5xx), 0, "no", 0, 0, RLD | PRX, NULL,
     "a 5xx answer to the upgrade counts as a backend failure"},
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

const struct config_section_def *
config_section_sibling(const struct config_section_def *cur, const char *key)
{
	for (size_t i = 0; i < CFG_SEC_COUNT; i++) {
		const struct config_section_def *s = &config_sections[i];

		if (s != cur && strcmp(s->name, cur->name) == 0 && config_key_find(s->kind, key))
			return s;
	}
	return NULL;
}

int
config_key_fits_route(const struct config_key *k, enum route_type t)
{
	unsigned only = k->flags & (CFG_F_PUBSUB | CFG_F_PROXY);

	return only == 0 || (t == ROUTE_PUBSUB && (only & CFG_F_PUBSUB)) ||
	       (t == ROUTE_PROXY && (only & CFG_F_PROXY));
}

/* 1 when var starts with name in upper case ("GATEWAY" for "gateway"); *end after it. */
static int
config_env_word(const char *var, const char *name, const char **end)
{
	for (; *name != '\0'; var++, name++) {
		int up = *name >= 'a' && *name <= 'z' ? *name - 'a' + 'A' : *name;

		if (*var != up)
			return 0;
	}
	*end = var;
	return 1;
}

const struct config_key *
config_key_find_env(const char *var, const struct config_section_def **sec)
{
	const char *p, *key;

	*sec = NULL;
	if (strncmp(var, "WSGATE_", 7) != 0)
		return NULL;
	for (size_t i = 0; i < CFG_SEC_COUNT; i++) {
		const struct config_section_def *s = &config_sections[i];

		if (s->arg != CFG_ARG_NONE || !config_env_word(var + 7, s->name, &p) || *p != '_')
			continue;
		*sec = s;
		for (size_t j = 0; j < config_nkeys; j++) {
			if (config_keys[j].section == s->kind &&
			    config_env_word(p + 1, config_keys[j].name, &key) && *key == '\0')
				return &config_keys[j];
		}
		return NULL;
	}
	return NULL;
}

void *
config_keys_instance(struct config *cfg, enum config_base b, size_t i)
{
	if (b == CFG_BASE_ROUTE)
		return &cfg->routes[i];
	if (b == CFG_BASE_TLS)
		return &cfg->tls_certs[i];
	return cfg;
}

void *
config_keys_instance_insert(struct config *cfg, enum config_base b, size_t at)
{
	size_t *n = b == CFG_BASE_ROUTE ? &cfg->nroutes : &cfg->ntls_certs;
	size_t elsz = b == CFG_BASE_ROUTE ? sizeof(*cfg->routes) : sizeof(*cfg->tls_certs);
	char *arr;

	if (b == CFG_BASE_ROUTE) {
		struct config_route *r = realloc(cfg->routes, (*n + 1) * sizeof(*r));

		if (r == NULL)
			return NULL;
		cfg->routes = r;
		arr = (char *)r;
	} else {
		struct config_tls_cert *t = realloc(cfg->tls_certs, (*n + 1) * sizeof(*t));

		if (t == NULL)
			return NULL;
		cfg->tls_certs = t;
		arr = (char *)t;
	}
	memmove(arr + (at + 1) * elsz, arr + at * elsz, (*n - at) * elsz);
	memset(arr + at * elsz, 0, elsz);
	(*n)++;
	return arr + at * elsz;
}

size_t
config_type_size(enum config_type t)
{
	switch (t) {
	case CFG_T_STRING:
	case CFG_T_PATH:
	case CFG_T_CHANNEL:
	case CFG_T_TEMPLATE:
		return sizeof(char *);
	case CFG_T_DURATION:
	case CFG_T_SIZE:
	case CFG_T_UINT:
		return sizeof(uint64_t);
	case CFG_T_BOOL:
	case CFG_T_ENUM:
		return sizeof(int);
	case CFG_T_LIST:
	case CFG_T_TEMPLATE_LIST:
	case CFG_T_ORIGIN_LIST:
	case CFG_T_ALLOW_LIST:
		return sizeof(char **);
	case CFG_T_ENUM_LIST:
		return sizeof(int *);
	case CFG_T_LISTEN:
	case CFG_T_ADMIN_LISTEN:
		return sizeof(struct config_listen *);
	case CFG_T_BACKEND_LIST:
		return sizeof(struct config_backend *);
	case CFG_T_CIDR_LIST:
		return sizeof(struct cidr *);
	case CFG_T_REDIS_URL:
		return sizeof(struct config_redis);
	case CFG_T_LOGLEVEL:
		return sizeof(enum log_level);
	case CFG_T_ROUTE_TYPE:
		return sizeof(enum route_type);
	}
	return 0;
}

int
config_key_owns_field(const struct config_key *k)
{
	for (const struct config_key *o = config_keys; o < k; o++) {
		if (o->base == k->base && o->off == k->off)
			return 0;
	}
	return 1;
}

void
config_keys_free_fields(enum config_base b, void *base)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		if (config_keys[i].base == b && config_key_owns_field(&config_keys[i]))
			config_key_free(&config_keys[i], base);
	}
}

/* ---- the store: one value of one key into its field ---- */

static int
config_key_fail(const char **why, const char *msg)
{
	*why = msg;
	return -1;
}

static const char *const route_type_names[] = {"echo", "pubsub", "proxy", NULL};

const char *
config_route_type_name(enum route_type t)
{
	if ((size_t)t < sizeof(route_type_names) / sizeof(route_type_names[0]) - 1)
		return route_type_names[t];
	return "?";
}

static void
cfg_fmt_duration(char *buf, size_t sz, uint64_t ms)
{
	if (ms != 0 && ms % HOUR_MS == 0)
		snprintf(buf, sz, "%lluh", (unsigned long long)(ms / HOUR_MS));
	else if (ms != 0 && ms % MIN_MS == 0)
		snprintf(buf, sz, "%llum", (unsigned long long)(ms / MIN_MS));
	else if (ms % SEC_MS == 0)
		snprintf(buf, sz, "%llus", (unsigned long long)(ms / SEC_MS));
	else
		snprintf(buf, sz, "%llums", (unsigned long long)ms);
}

static void
cfg_fmt_size(char *buf, size_t sz, uint64_t n)
{
	if (n != 0 && n % (1ull << 30) == 0)
		snprintf(buf, sz, "%lluGiB", (unsigned long long)(n >> 30));
	else if (n != 0 && n % (1ull << 20) == 0)
		snprintf(buf, sz, "%lluMiB", (unsigned long long)(n >> 20));
	else if (n != 0 && n % (1ull << 10) == 0)
		snprintf(buf, sz, "%lluKiB", (unsigned long long)(n >> 10));
	else
		snprintf(buf, sz, "%llu", (unsigned long long)n);
}

/* Bounds check of v against k->min/max; on failure writes "must be ..." into why. */
static int
cfg_check_range(const struct config_key *k, uint64_t v, const char *unit, char *why, size_t whysz)
{
	char lo[32], hi[32];

	if (v >= k->min && (k->max == 0 || v <= k->max))
		return 0;
	if (k->type == CFG_T_DURATION) {
		cfg_fmt_duration(lo, sizeof(lo), k->min);
		cfg_fmt_duration(hi, sizeof(hi), k->max);
	} else if (k->type == CFG_T_SIZE) {
		cfg_fmt_size(lo, sizeof(lo), k->min);
		cfg_fmt_size(hi, sizeof(hi), k->max);
	} else {
		snprintf(lo, sizeof(lo), "%llu", (unsigned long long)k->min);
		snprintf(hi, sizeof(hi), "%llu", (unsigned long long)k->max);
	}
	if (k->max == 0)
		snprintf(why, whysz, "must be at least %s%s", lo, unit);
	else if (k->min == 0)
		snprintf(why, whysz, "must be at most %s%s", hi, unit);
	else
		snprintf(why, whysz, "must be between %s and %s%s", lo, hi, unit);
	return -1;
}

static int
cfg_names_find(const char *const *names, const char *s, size_t n)
{
	for (int i = 0; names[i] != NULL; i++) {
		if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0)
			return i;
	}
	return -1;
}

/* A list key being appended to: the field, its count, and its count before this value. */
struct cfg_list {
	const struct config_key *k;
	char *field;
	size_t *count;
	size_t before;
};

/* One item of a list value: checked, then appended. 0, -1 with *why, -2 out of memory. */
static int
cfg_list_item(struct cfg_list *l, const char *s, size_t n, const char **why)
{
	void *arr = *(void **)l->field;
	size_t elsz = l->k->type == CFG_T_BACKEND_LIST ? sizeof(struct config_backend)
	              : l->k->type == CFG_T_ENUM_LIST  ? sizeof(int)
	              : l->k->type == CFG_T_CIDR_LIST  ? sizeof(struct cidr)
	                                               : sizeof(char *);
	struct config_backend be;
	struct cidr cidr;
	int i = 0, r = 0;

	switch (l->k->type) {
	case CFG_T_LIST:
		r = config_parse_token(s, n, why);
		break;
	case CFG_T_TEMPLATE_LIST:
		r = config_parse_template(s, n, why);
		break;
	case CFG_T_ORIGIN_LIST:
		r = config_parse_origin(s, n, why);
		break;
	case CFG_T_CIDR_LIST:
		r = cidr_parse(s, n, &cidr, why);
		break;
	case CFG_T_ALLOW_LIST: {
		struct route_charset cs;
		const char *nm;
		size_t nn;

		r = route_allow_parse(s, n, &nm, &nn, &cs, why);
		for (size_t j = 0; r == 0 && j < *l->count; j++)
			if (strncmp(((char **)arr)[j], s, nn + 1) == 0)
				return config_key_fail(why, "allow: a placeholder is listed twice");
		break;
	}
	case CFG_T_ENUM_LIST:
		if ((i = cfg_names_find(l->k->names, s, n)) < 0)
			return config_key_fail(why, "unknown word in the list");
		for (size_t j = 0; j < *l->count; j++) {
			if (((int *)arr)[j] == i)
				return config_key_fail(why, "a word is listed twice");
		}
		break;
	case CFG_T_BACKEND_LIST:
		r = config_parse_backend(s, n, &be, why);
		break;
	default:
		return config_key_fail(why, "internal error: not a list");
	}
	if (r != 0)
		return r;
	if ((arr = realloc(arr, (*l->count + 1) * elsz)) == NULL) {
		if (l->k->type == CFG_T_BACKEND_LIST)
			config_backend_clear(&be);
		return -2;
	}
	*(void **)l->field = arr;
	if (l->k->type == CFG_T_BACKEND_LIST)
		((struct config_backend *)arr)[*l->count] = be;
	else if (l->k->type == CFG_T_ENUM_LIST)
		((int *)arr)[*l->count] = i;
	else if (l->k->type == CFG_T_CIDR_LIST)
		((struct cidr *)arr)[*l->count] = cidr;
	else if ((((char **)arr)[*l->count] = config_value_strndup(s, n)) == NULL)
		return -2;
	(*l->count)++;
	return 0;
}

/* Frees the items past l->before: a bad value leaves nothing half-parsed. */
static void
cfg_list_undo(struct cfg_list *l)
{
	void *arr = *(void **)l->field;

	for (; *l->count > l->before; (*l->count)--) {
		if (l->k->type == CFG_T_BACKEND_LIST)
			config_backend_clear(&((struct config_backend *)arr)[*l->count - 1]);
		else if (l->k->type != CFG_T_ENUM_LIST && l->k->type != CFG_T_CIDR_LIST)
			free(((char **)arr)[*l->count - 1]);
	}
}

/* Appends the comma-separated items of v (each trimmed; an empty v has none). */
static int
cfg_store_list(const struct config_key *k, void *base, const char *v, char *why, size_t whysz)
{
	struct cfg_list l = {k, (char *)base + k->off, (size_t *)((char *)base + k->off_n), 0};
	const char *p = v, *b, *e, *msg = "empty item in the list";
	int r = 0;

	l.before = *l.count;
	while (config_value_is_space((unsigned char)*p))
		p++;
	while (*p != '\0') {
		while (config_value_is_space((unsigned char)*p))
			p++;
		for (b = p; *p != '\0' && *p != ','; p++)
			;
		for (e = p; e > b && config_value_is_space((unsigned char)e[-1]); e--)
			;
		r = e == b ? -1 : cfg_list_item(&l, b, (size_t)(e - b), &msg);
		if (r != 0 || *p == '\0')
			break;
		p++; /* ',' : an item must follow, even an empty one ("a," is an error) */
		if (*p == '\0')
			r = -1;
	}
	if (r == 0 && cfg_check_range(k, *l.count, " items", why, whysz) == 0)
		return 0;
	if (r == -1)
		snprintf(why, whysz, "%s",
		         k->type == CFG_T_LIST ? "expected a comma-separated list of tokens" : msg);
	cfg_list_undo(&l);
	return r == -2 ? -2 : -1;
}

static int
cfg_store_string(const struct config_key *k, char **field, const char *v, char *why, size_t whysz)
{
	size_t len = strlen(v);
	const char *msg = NULL;

	if (!utf8_valid((const uint8_t *)v, len)) {
		snprintf(why, whysz, "must be valid UTF-8");
		return -1;
	}
	if ((k->type == CFG_T_CHANNEL && config_parse_channel(v, len, &msg) == 0) ||
	    (k->type == CFG_T_TEMPLATE && (len == 0 || config_parse_template(v, len, &msg) == 0)))
		msg = NULL;
	if (msg != NULL) {
		snprintf(why, whysz, "%s", msg);
		return -1;
	}
	if (cfg_check_range(k, len, " bytes", why, whysz) < 0)
		return -1;
	free(*field);
	*field = NULL;
	if (len > 0 && (*field = config_value_strndup(v, len)) == NULL)
		return -2;
	return 0;
}

int
config_key_store(const struct config_key *k, void *base, const char *v, int line, char *why,
                 size_t whysz)
{
	char *field = (char *)base + k->off;
	size_t *count = (size_t *)((char *)base + k->off_n);
	const char *msg = "";
	uint64_t u;
	int i;

	switch (k->type) {
	case CFG_T_STRING:
	case CFG_T_PATH:
	case CFG_T_CHANNEL:
	case CFG_T_TEMPLATE:
		return cfg_store_string(k, (char **)field, v, why, whysz);
	case CFG_T_DURATION:
	case CFG_T_SIZE:
	case CFG_T_UINT: {
		int bad = k->type == CFG_T_DURATION ? config_parse_duration_ms(v, &u)
		          : k->type == CFG_T_SIZE   ? config_parse_size(v, &u)
		                                    : config_parse_uint(v, &u);

		if (k->type == CFG_T_UINT && (k->flags & CFG_F_AUTO) && strcmp(v, "auto") == 0) {
			*(uint64_t *)field = 0;
			return 0;
		}
		if (bad) {
			snprintf(
			    why, whysz, "%s",
			    k->type == CFG_T_DURATION ? "expected a duration such as 200ms, 10s, 1m"
			    : k->type == CFG_T_SIZE   ? "expected a size such as 65536, 64KiB, 1MiB"
			    : (k->flags & CFG_F_AUTO) ? "expected a whole number or auto"
			                              : "expected a whole number");
			return -1;
		}
		if (cfg_check_range(k, u, "", why, whysz) < 0)
			return -1;
		*(uint64_t *)field = u;
		return 0;
	}
	case CFG_T_BOOL:
		if (config_parse_bool(v, &i) < 0) {
			snprintf(why, whysz, "expected yes or no");
			return -1;
		}
		*(int *)field = i;
		return 0;
	case CFG_T_ENUM:
		if ((i = cfg_names_find(k->names, v, strlen(v))) < 0) {
			size_t o = (size_t)snprintf(why, whysz, "expected one of:");
			for (int j = 0; k->names[j] != NULL && o < whysz; j++)
				o += (size_t)snprintf(why + o, whysz - o, " %s", k->names[j]);
			return -1;
		}
		*(int *)field = i;
		return 0;
	case CFG_T_LIST:
	case CFG_T_TEMPLATE_LIST:
	case CFG_T_ORIGIN_LIST:
	case CFG_T_ENUM_LIST:
	case CFG_T_BACKEND_LIST:
	case CFG_T_ALLOW_LIST:
	case CFG_T_CIDR_LIST:
		return cfg_store_list(k, base, v, why, whysz);
	case CFG_T_LISTEN:
	case CFG_T_ADMIN_LISTEN: {
		struct config_listen l, *arr;

		if (config_parse_listen(v, &l) < 0 ||
		    (k->type == CFG_T_ADMIN_LISTEN && (l.tls || l.proxy_protocol))) {
			snprintf(why, whysz, "expected host:port, [v6]:port or :port%s",
			         k->type == CFG_T_LISTEN ? ", optionally followed by tls"
			                                 : " (the admin listener has no tls)");
			return -1;
		}
		l.line = line;
		arr = realloc(*(struct config_listen **)field, (*count + 1) * sizeof(*arr));
		if (arr == NULL)
			return -2;
		arr[(*count)++] = l;
		*(struct config_listen **)field = arr;
		return 0;
	}
	case CFG_T_REDIS_URL:
		if ((i = config_parse_redis_url(v, (struct config_redis *)field, &msg)) == -1)
			snprintf(why, whysz, "%s", msg);
		return i;
	case CFG_T_LOGLEVEL: {
		enum log_level lvl;

		if (log_level_parse(v, &lvl) < 0) {
			snprintf(why, whysz, "expected error, warn, info or debug");
			return -1;
		}
		*(enum log_level *)field = lvl;
		return 0;
	}
	case CFG_T_ROUTE_TYPE:
		if ((i = cfg_names_find(route_type_names, v, strlen(v))) < 0) {
			snprintf(why, whysz, "expected echo, pubsub or proxy");
			return -1;
		}
		*(enum route_type *)field = (enum route_type)i;
		return 0;
	}
	snprintf(why, whysz, "internal error: unknown type");
	return -1;
}

void
config_key_free(const struct config_key *k, void *base)
{
	char *field = (char *)base + k->off;
	struct cfg_list l = {k, field, (size_t *)((char *)base + k->off_n), 0};

	switch (k->type) {
	case CFG_T_STRING:
	case CFG_T_PATH:
	case CFG_T_CHANNEL:
	case CFG_T_TEMPLATE:
	case CFG_T_LISTEN:
	case CFG_T_ADMIN_LISTEN:
		break;
	case CFG_T_LIST:
	case CFG_T_TEMPLATE_LIST:
	case CFG_T_ORIGIN_LIST:
	case CFG_T_ENUM_LIST:
	case CFG_T_BACKEND_LIST:
	case CFG_T_ALLOW_LIST:
	case CFG_T_CIDR_LIST:
		cfg_list_undo(&l);
		break;
	case CFG_T_REDIS_URL: {
		struct config_redis *r = (struct config_redis *)field;

		free(r->url);
		free(r->password);
		r->url = r->password = NULL;
		return;
	}
	default:
		return;
	}
	free(*(void **)field);
	*(void **)field = NULL;
	if (k->off_n != 0)
		*l.count = 0;
}
