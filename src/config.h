/* config.h - the ini file as an immutable snapshot: a declarative key table (config_keys.c)
 * drives parsing, defaults and bounds; one validation pass reports every error as FILE:LINE. */
#ifndef WSGATE_CONFIG_H
#define WSGATE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "config_errors.h"
#include "cidr.h"
#include "log.h"

enum route_type { ROUTE_ECHO = 0, ROUTE_PUBSUB, ROUTE_PROXY };
enum envelope_kind { ENVELOPE_RAW = 0, ENVELOPE_JSON };
enum message_type { MSGTYPE_AUTO = 0, MSGTYPE_TEXT, MSGTYPE_BINARY };
enum slow_policy { SLOW_CLOSE = 0, SLOW_DROP_OLDEST, SLOW_DROP_NEWEST, SLOW_CONFLATE };
enum balance_policy { BALANCE_ROUND_ROBIN = 0, BALANCE_LEAST_CONN, BALANCE_IP_HASH };
enum auth_kind { AUTH_NONE = 0, AUTH_JWT };
enum jwt_source { JWT_FROM_HEADER = 0, JWT_FROM_QUERY, JWT_FROM_COOKIE };
enum backend_scheme { BACKEND_WS = 0, BACKEND_WSS, BACKEND_TCP };
enum tls_version { TLS_V1_2 = 0, TLS_V1_3 };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

/* One backend of a proxy route, from "ws://host:port/path?query", "wss://..." or "tcp://host:port".
 */
struct config_backend {
	enum backend_scheme scheme;
	char host[256]; /* name or address, without brackets for IPv6 */
	char port[8];   /* default 80 for ws, 443 for wss; required for tcp */
	char *path;     /* "/socket" or "/socket?x=1"; "/" when absent; NULL for tcp */
	char *url;      /* as written, for logs */
};

struct config_listen {
	char host[64]; /* numeric address or name; "" never (validated) */
	char port[8];
	int tls;            /* "tls" flag after the address */
	int proxy_protocol; /* "proxy_protocol" flag: a PROXY v1/v2 header from a trusted peer first
	                     */
	int line;
};

struct config_route {
	char *path; /* pattern from the section name, e.g. "/rooms/{room}" */
	enum route_type type;
	char **subprotocols; /* offered to clients, in preference order */
	size_t nsubprotocols;
	/* security (every route type) */
	char *
	    *origins; /* allowed Origin values; a host may start with a "*." wildcard; none = any */
	size_t norigins;
	enum auth_kind auth;
	char *jwt_secret;     /* HS256 key */
	char *jwt_public_key; /* path of a PEM public key for RS256 / ES256 */
	enum jwt_source
	    *jwt_from; /* where to look for the token, in order; default header, query, cookie */
	size_t njwt_from;
	uint64_t max_messages_per_second; /* per connection; 0 = unlimited; beyond: close 1008 */
	uint64_t admission_rate; /* new sessions a second on this route, whole fleet; 0 = none */
	/* permessage-deflate (RFC 7692), every route type */
	int compression;                         /* negotiate it when a client offers it */
	uint64_t compression_min_size;           /* smaller messages go uncompressed */
	uint64_t compression_level;              /* zlib level 1..9 */
	uint64_t compression_server_window_bits; /* largest window wsgate compresses with, 9..15 */
	uint64_t compression_client_window_bits; /* largest window accepted from clients, 8..15 */
	/* pubsub */
	char **subscribe; /* channel templates: "chat", "room:{room}", "user:{jwt.sub}" */
	size_t nsubscribe;
	char *publish; /* channel template for client messages; NULL: clients may not publish */
	enum envelope_kind envelope;
	enum message_type message_type;
	char **allow; /* "NAME:[SET]": what placeholder NAME may hold (default [A-Za-z0-9_.-]) */
	size_t nallow;
	int server_only;      /* channels fed by the server side only: client messages refused */
	int shared_namespace; /* no auth, yet may reach channels an auth route binds: deliberate */
	char **read_only;     /* subscribe templates, as written, clients may not publish into */
	size_t nread_only;
	int announce_id;    /* send {"type":"welcome","id":...} after the upgrade */
	uint64_t max_queue; /* outbound bytes queued per connection before slow_consumer applies */
	enum slow_policy slow_consumer;
	uint64_t history_size; /* messages kept per channel for since= and gap recovery; 0 = off */
	uint64_t history_ttl_ms; /* none kept longer than this; 0 = no age limit */
	char *conflate_key;      /* slow_consumer = conflate: "channel" or "json:FIELD" */
	/* proxy */
	struct config_backend *backends;
	size_t nbackends;
	enum balance_policy balance;
	uint64_t connect_timeout_ms;
	uint64_t retries;         /* further backends tried after a failed connect or upgrade */
	int forward_headers;      /* X-Forwarded-For, X-Forwarded-Proto, X-Real-IP, Forwarded */
	char *ca_file;            /* CA bundle for wss:// backends (verification always on) */
	uint64_t health_check_ms; /* active check period; 0 = passive only */
	uint64_t fail_timeout_ms; /* how long a failed backend stays marked down */
	uint64_t max_fails;       /* consecutive failures before it is marked down; 0 = never */
	int fail_on_5xx; /* a 5xx answer to the upgrade counts as a failure (and retries) */
	int line;        /* line of the [route ...] section header */
};

#define REDIS_MAX_SENTINELS 16
#define REDIS_MAX_SEEDS 16 /* [redis] nodes of a cluster */

/* [redis]: present means pub/sub goes through Redis; absent means the in-process hub. */
struct config_redis {
	int enabled; /* a [redis] section (or WSGATE_REDIS_URL) was given */
	char *url;   /* redis://[:password@]host[:port][/db] */
	char host[256];
	char port[8];
	int db;
	char *password; /* NULL when none */
	uint64_t connect_timeout_ms;
	char *channel_prefix;       /* NULL when empty */
	uint64_t probe_interval_ms; /* liveness canary period */
	uint64_t probe_timeout_ms;  /* canary not back in time: subscribe link rebuilt */
	uint64_t publish_queue;     /* bytes of client publishes held while Redis is down */
	uint64_t reconnect_max_ms;  /* cap of the exponential backoff */
	uint64_t max_message_size;  /* larger messages from Redis are skipped, never buffered */
	/* Sentinel: the master is asked of these (host:port, comma list) by master_name */
	char *sentinels; /* NULL: url's host and port are the one Redis */
	char *master_name;
	char *sentinel_username; /* AUTH on the sentinels (requirepass/ACL in sentinel.conf) */
	char *sentinel_password; /* NULL: no AUTH on the sentinels */
	/* Cluster: the slot map is learned from these seeds (host:port, comma list; NULL: the
	 * url's host and port), sharded pub/sub on each master */
	int cluster;
	char *nodes;
	/* TLS to Redis (and to the sentinels): tls = yes or a rediss:// url */
	int tls;
	int url_tls;   /* the url said rediss:// */
	char *ca_file; /* CA bundle verifying the server; NULL: system store */
	char *cert;    /* client certificate (Redis' tls-auth-clients) */
	char *key;
	char *tls_server_name; /* name the certificate must carry; NULL: the host */
};

/* [tls] (name NULL: the default certificate) and [tls NAME] (chosen by SNI). */
struct config_tls_cert {
	char *name;
	char *cert; /* PEM chain file */
	char *key;  /* PEM private key file */
	int line;
};

struct config {
	char *file;    /* path it was read from (or a name for strings) */
	unsigned refs; /* holders: the gateway, workers, connections, pools; 1 at load */
	/* [gateway] */
	struct config_listen *listens;
	size_t nlistens;
	uint64_t max_message_size; /* bytes */
	uint64_t handshake_timeout_ms;
	uint64_t shutdown_timeout_ms;
	uint64_t close_timeout_ms; /* after we send close: wait this long for the peer's */
	enum log_level log_level;
	enum log_format log_format;
	uint64_t max_connections;        /* beyond: 503 */
	uint64_t max_connections_per_ip; /* 0 = unlimited; beyond: 503 */
	uint64_t
	    accept_rate_per_ip; /* new connections per second per IP; 0 = unlimited; beyond: 429 */
	uint64_t workers;       /* event-loop threads; 0 = auto (number of cores) */
	struct config_listen
	    *admin_listens; /* /healthz /readyz /metrics /status; none when absent */
	size_t nadmin_listens;
	uint64_t admin_timeout_ms;       /* a whole admin request, from accept to last byte out */
	uint64_t admin_max_connections;  /* admin connections open at once; beyond, 503 and close */
	uint64_t drain_window_ms;        /* SIGTERM: client closes spread over this window */
	uint64_t admission_rate;         /* new sessions a second, whole fleet; 0 = no budget */
	uint64_t admission_ramp_ms;      /* after start / Redis back: intake ramps up over this */
	uint64_t admission_share;        /* Redis down: this instance's rate; 0 = rate / live */
	uint64_t admission_retry_max_ms; /* retry hints are drawn from a window at most this long */
	struct cidr
	    *trusted_proxies; /* peers whose X-Forwarded-*, Forwarded and PROXY are believed */
	uint64_t
	    compression_memory; /* kept inflate contexts (client context takeover), all workers */
	size_t ntrusted_proxies;
	/* [heartbeat] */
	uint64_t ping_interval_ms; /* 0 = off */
	uint64_t pong_timeout_ms;
	uint64_t idle_timeout_ms; /* 0 = off */
	char *app_message;        /* NULL when unset or empty */
	size_t app_message_len;
	/* [redis] */
	struct config_redis redis;
	/* [tls] and [tls NAME], the default (name NULL) first when present */
	struct config_tls_cert *tls_certs;
	size_t ntls_certs;
	enum tls_version tls_min_version;
	char *tls_ciphers; /* OpenSSL cipher list (TLS 1.2); NULL: a modern default */
	/* [route ...] in file order */
	struct config_route *routes;
	size_t nroutes;
};

/* Loads and validates; on success *out is a new snapshot and 0 is returned. On failure -1,
 * *out is NULL and errs holds every error found (not just the first). A variable
 * WSGATE_<SECTION>_<KEY> of environ (singleton sections) replaces that key's lines. */
int config_load_file(const char *path, struct config **out, struct config_errors *errs)
    __attribute__((warn_unused_result));
/* Same from a string (unit tests, embedded defaults); name is used in messages. */
int config_load_string(const char *name, const char *text, struct config **out,
                       struct config_errors *errs) __attribute__((warn_unused_result));
/* Same with the environment overrides taken from envp (NULL: none) instead of environ. */
int config_load_string_env(const char *name, const char *text, char *const *envp,
                           struct config **out, struct config_errors *errs)
    __attribute__((warn_unused_result));
/* Frees a snapshot now, whoever holds it (loaders and tests). */
void config_free(struct config *cfg);
/* Reference counting across threads: the last config_release() frees. */
const struct config *config_hold(const struct config *cfg);
void config_release(const struct config *cfg);

/* Value parsers shared with the key table; 0 on success, -1 on a bad value. */
int config_parse_duration_ms(const char *s,
                             uint64_t *out); /* "10s", "200ms", "1m", "2h", bare = s */
int config_parse_size(const char *s,
                      uint64_t *out); /* "1048576", "64KiB", "1MiB", "1GiB", "16k", "1M" */
int config_parse_bool(const char *s, int *out); /* yes|no|true|false|on|off|1|0 */
/* "host:port", "[v6]:port" or ":port"/"port" (all addresses), optionally followed by " tls". */
int config_parse_listen(const char *s, struct config_listen *out);

const char *config_route_type_name(enum route_type t);

#endif
