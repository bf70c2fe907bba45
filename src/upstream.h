/* upstream.h - the backends of proxy routes. Each worker has one registry; it holds one pool
 * per proxy route (made on first use: balancing, passive and active health, the route's TLS
 * context) and every backend connection, which it frees on the loop turn after its close.
 * upstream.c is the pool side, upstream_conn.c the backend half of a proxy session (or of a
 * health probe), upstream_tls.c the only code that touches OpenSSL objects. */
#ifndef WSGATE_UPSTREAM_H
#define WSGATE_UPSTREAM_H

#include <sys/queue.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event_struct.h>

#include "config.h"
#include "upstream_health.h"
#include "ws_endpoint.h"
#include "ws_outq.h"
#include "ws_parser.h"

/* Backpressure towards a backend: above HIGH queued bytes the client is no longer read; it
 * is read again once the backend has taken the queue down to LOW. */
#define UPSTREAM_OUT_HIGH (1024 * 1024)
#define UPSTREAM_OUT_LOW (64 * 1024)

struct bufferevent;
struct event_base;
struct gateway;
struct evdns_base;
struct evutil_addrinfo;
struct ssl_ctx_st;
struct upstream_conn;
struct upstream_dns;
struct upstream_pool;
struct upstream_req;

struct upstream_backend {
	struct upstream_pool *pool;
	const struct config_backend *cfg;
	size_t index;                /* in the route's backend list */
	struct upstream_health *h;   /* state, down_until_ms, active: shared by every worker */
	struct event probe_timer;    /* every health_check_ms when > 0 */
	struct upstream_conn *probe; /* health probe in flight */
};

struct upstream_pool {
	struct upstream_registry *reg;
	const struct config_route *route;
	const struct config *cfg; /* the snapshot route lives in; held while the pool lives */
	size_t nconns;            /* backend connections (probes too) not yet freed */
	struct upstream_backend *backends;
	size_t nbackends;
	struct upstream_health *shared; /* the route's entry: round-robin cursor, every worker */
	struct ssl_ctx_st *tls;         /* wss:// backends; made on first use */
	char *tls_error; /* why tls could not be made (kept: not retried nor relogged) */
	LIST_ENTRY(upstream_pool) entry;
};

LIST_HEAD(upstream_conn_list, upstream_conn);

struct upstream_registry {
	struct event_base *base;
	const struct config *const *current; /* the worker's snapshot; NULL: pools hold none */
	struct evdns_base *dns;              /* made on the first name that is not an address */
	LIST_HEAD(, upstream_pool) pools;
	struct upstream_conn_list live; /* every backend connection not yet CLOSED */
	struct upstream_conn_list dead; /* CLOSED, freed by the reaper on the next loop turn */
	struct event *reaper;
	uint64_t *internal_errors; /* the owner's wsgate_internal_errors_total; NULL: uncounted */
	uint8_t masks[256];        /* RAND_bytes, handed out four at a time as masking keys */
	size_t mask_off;
};

/* ---- upstream.c: registry, pools, balancing, health ---- */

/* current: where the owner keeps its current snapshot (pools of an older one retire). */
struct upstream_registry *upstream_registry_new(struct event_base *base,
                                                const struct config *const *current);
/* Closes every backend connection at once (no callbacks), then frees the pools. */
void upstream_registry_free(struct upstream_registry *reg);
/* The resolver, made on first use; NULL when it cannot be. */
struct evdns_base *upstream_registry_dns(struct upstream_registry *reg);
/* Four unpredictable bytes for a frame's masking key (RFC 6455 5.3). */
void upstream_registry_mask(struct upstream_registry *reg, uint8_t key[4]);

/* The route's pool, made (and its health probes started) on first use; it holds cfg, the
 * snapshot route belongs to, and is retired once a reload replaced that snapshot and its last
 * connection is gone. A new snapshot's pool starts from the health of the old one's backends
 * with the same URL. NULL on ENOMEM. */
struct upstream_pool *upstream_pool_get(struct upstream_registry *reg,
                                        const struct config_route *route, const struct config *cfg);
/* The next backend by the route's balance policy among those up and not tried[index]; NULL
 * when none is left. *all_down is set to 1 when every backend is marked down. */
struct upstream_backend *upstream_pool_pick(struct upstream_pool *p, const char *client_ip,
                                            const unsigned char *tried, int *all_down);
/* The route's TLS client context; NULL with *why set when it cannot be made. */
struct ssl_ctx_st *upstream_pool_tls(struct upstream_pool *p, const char **why);

/* Passive health: a connect, TLS or upgrade failure marks the backend down for fail_timeout
 * (logged once per change); a success marks it up again. */
void upstream_backend_failed(struct upstream_backend *b, const char *why);
void upstream_backend_ok(struct upstream_backend *b);
/* The connect deadline of a route: TCP connect, TLS and the upgrade response together. */
uint64_t upstream_connect_timeout_ms(const struct config_route *r);
/* 1 when the balancer may pick b now (upstream_health_lock held). */
int upstream_backend_eligible(const struct upstream_backend *b, uint64_t now_ms);
/* A proxy session starts or ends on b (least_conn counts them across workers). */
void upstream_backend_session(struct upstream_backend *b, int delta);

/* ---- upstream_conn.c: one backend connection ---- */

enum upstream_conn_state {
	UPC_RESOLVING = 0, /* looking up the host; timer = connect deadline */
	UPC_CONNECTING,    /* TCP connect, then TLS for wss; timer = connect deadline */
	UPC_UPGRADING,     /* request sent, reading the 101; timer = connect deadline */
	UPC_OPEN,          /* relaying; timer = heartbeat (ws, wss) */
	UPC_CLOSING,  /* our close frame is queued; waiting for the backend's; timer = close_timeout
	               */
	UPC_FLUSHING, /* nothing more to say: writing out, then waiting for EOF; timer =
	                 close_timeout */
	UPC_CLOSED,   /* on the registry's dead list; no callbacks */
};

/* What the owner (a proxy session or a health probe) is told. Never called after detach or
 * after a call that ends the connection (failed, gone). */
struct upstream_conn_ops {
	/* The upgrade was accepted (ws, wss; protocol NULL when none was chosen) or the TCP
	 * connection is up (tcp). */
	void (*ready)(void *arg, const char *protocol);
	/* Connecting, TLS or the upgrade failed or timed out. The connection is closed. status
	 * is the backend's HTTP status when it answered the upgrade with one, else 0. */
	void (*failed)(void *arg, int status, const char *why);
	/* A chunk of a backend message (tcp: one read as one binary message). Returns 1 to stop
	 * reading the backend until upstream_conn_resume_read(). */
	int (*data)(void *arg, unsigned opcode, int first, int last, const uint8_t *p, size_t n);
	/* After ready, the backend ended, or answered the close an owner that stayed attached
	 * sent: its close frame's code and reason, or WS_CLOSE_ABNORMAL and a description when it
	 * vanished, broke the protocol or did not answer in time. The owner is detached. */
	void (*gone)(void *arg, unsigned code, const char *reason, size_t rlen);
	/* The queue towards the backend fell to UPSTREAM_OUT_LOW after want_drained. */
	void (*drained)(void *arg);
	/* Optional, just before ready or failed on the backend's HTTP answer: the header lines
	 * the client must be given with it (http_response_passthrough), "" when none. */
	void (*headers)(void *arg, int status, const char *lines);
};

struct upstream_conn {
	uint64_t id; /* the client connection's id for logs; 0 for probes */
	struct upstream_registry *reg;
	struct upstream_backend *backend;
	const struct config *cfg; /* the pool's snapshot: timers, limits */
	enum upstream_conn_state state;
	const struct upstream_conn_ops *ops; /* NULL once detached */
	void *arg;
	const struct upstream_req *req; /* the owner's copy of the client request; NULL: probe */
	struct bufferevent *bev;
	struct event timer; /* one timer, its meaning set by the state */
	size_t in_left; /* input left unparsed by the last read callback (transport_read_was_cut) */
	struct event flush_ev;           /* the end-of-turn write (plain TCP; upstream_conn_mark) */
	struct upstream_dns *dns;        /* lookup in flight */
	struct evutil_addrinfo *ai;      /* the host's addresses */
	struct evutil_addrinfo *ai_next; /* the next one to try after a refused connect */
	int in_start;                    /* inside upstream_conn_new: a lookup answered at once */
	int dns_err;
	char *request; /* the upgrade request, freed once queued */
	size_t request_len;
	char accept[29];            /* the Sec-WebSocket-Accept we expect */
	struct ws_parser parser;    /* frames from the backend: unmasked */
	struct ws_outq outq;        /* data frames waiting behind control frames; progress */
	struct ws_liveness live;    /* the heartbeat's times (next ping) */
	unsigned paused : 1;        /* the owner asked us not to read the backend */
	unsigned paused_output : 1; /* our own output (pongs, close) is backed up: not reading */
	unsigned want_drained : 1;
	unsigned counted : 1;      /* counted in backend->active */
	unsigned eof : 1;          /* EOF seen while paused: input is relayed first */
	unsigned flush_marked : 1; /* flush_ev is active: this turn's frames are written once */
	char why[160];             /* why it failed, for upstream_conn_new's caller */
	int status;                /* the backend's HTTP status when not 101 */
	LIST_ENTRY(upstream_conn) entry;
};

/* Starts connecting to b (then TLS, then the upgrade for ws/wss). req (may be NULL) must
 * stay valid until ready, failed or detach. Returns NULL with *why set when it fails at once. */
struct upstream_conn *upstream_conn_new(struct upstream_backend *b, uint64_t id,
                                        const struct upstream_req *req,
                                        const struct upstream_conn_ops *ops, void *arg,
                                        const char **why);
/* The owner leaves: no more callbacks; the connection finishes what it does by itself. */
void upstream_conn_detach(struct upstream_conn *u);
/* One frame of a message towards the backend (masked), or raw bytes for tcp. -1 when the
 * connection is not OPEN. */
int upstream_conn_send(struct upstream_conn *u, unsigned opcode, int fin, const uint8_t *p,
                       size_t n);
/* The same for a payload already masked with key (a client's frame passed on as it came,
 * ws_parser_pass_masked); ws/wss only. */
int upstream_conn_send_masked(struct upstream_conn *u, unsigned opcode, int fin, const uint8_t *p,
                              size_t n, const uint8_t key[4]);
/* Starts the close handshake with code (WS_CLOSE_NO_STATUS: an empty close) when OPEN; an
 * owner that stays attached still gets the backend's data, then ops->gone with its answer.
 * tcp: flushes and closes; before OPEN: closes at once. */
void upstream_conn_send_close(struct upstream_conn *u, unsigned code, const char *reason,
                              size_t rlen);
size_t upstream_conn_output_len(const struct upstream_conn *u);
/* Ask for one ops->drained when the queue falls to UPSTREAM_OUT_LOW. */
void upstream_conn_want_drained(struct upstream_conn *u);
void upstream_conn_resume_read(struct upstream_conn *u);
/* The only teardown: logs reason once, stops I/O, queues the free. No owner callback. */
void upstream_conn_close(struct upstream_conn *u, const char *reason);
/* Frees a CLOSED connection (the registry's reaper). */
void upstream_conn_free(struct upstream_conn *u);
const char *upstream_conn_state_name(enum upstream_conn_state st);

/* ---- upstream_upgrade.c: the backend's answer to the upgrade ---- */

/* Reads the backend's answer to our upgrade from u's input (UPGRADING): waits for the whole
 * head; a good 101 drains it and opens the session (upstream_conn_opened), anything else fails
 * the attempt (upstream_conn_fail). */
void upstream_conn_read_upgrade(struct upstream_conn *u);
/* The backend accepted the upgrade (protocol: the subprotocol it chose, or NULL): OPEN, and
 * the owner is told it is ready. */
void upstream_conn_opened(struct upstream_conn *u, const char *protocol);

/* ---- shared by the files of one backend connection (upstream_conn.c keeps the session) ---- */

static inline int
upstream_conn_is_ws(const struct upstream_conn *u)
{
	return u->backend->cfg->scheme != BACKEND_TCP;
}
/* The one place the state changes (the timer's meaning follows it); an illegal transition
 * closes the connection. */
void upstream_conn_set_state(struct upstream_conn *u, enum upstream_conn_state st);
/* tcp: relays what the input holds to the owner, each read as one binary message. */
void upstream_conn_read_raw(struct upstream_conn *u);
/* The backend bufferevent's callbacks (arg: the upstream_conn), set by upstream_conn_connect. */
void upstream_conn_read_cb(struct bufferevent *bev, void *arg);
void upstream_conn_write_cb(struct bufferevent *bev, void *arg);
void upstream_conn_event_cb(struct bufferevent *bev, short what, void *arg);

/* ---- upstream_connect.c: reaching the backend ---- */

/* Connects to u->ai_next with a fresh bufferevent (the next address after a refusal: the
 * event callback calls it again); no address left fails the attempt. */
void upstream_conn_connect(struct upstream_conn *u);
/* Connected (after TLS for wss): sends the upgrade request, or opens a tcp session. */
void upstream_conn_connected(struct upstream_conn *u);

/* ---- upstream_dns.c: the backend's addresses ---- */

/* Starts the lookup of u's backend host; numeric hosts are answered at once without the
 * resolver. The answer goes to upstream_conn_resolved (err != 0 or ai NULL: failed). */
void upstream_conn_resolve(struct upstream_conn *u);
void upstream_conn_resolved(struct upstream_conn *u, int err, struct evutil_addrinfo *ai);
/* The attempt failed before the session opened (upstream_conn.c): the owner is told why. */
void upstream_conn_fail(struct upstream_conn *u, const char *why);
/* A lookup in flight is abandoned (the connection closes): its answer will be dropped. */
void upstream_dns_cancel(struct upstream_conn *u);

/* ---- upstream_tls.c: TLS towards wss:// backends ---- */

/* A verifying client context: CA from ca_file, else the system's default paths. NULL with
 * err filled on failure. */
struct ssl_ctx_st *upstream_tls_ctx_new(const char *ca_file, char *err, size_t errsz);
void upstream_tls_ctx_free(struct ssl_ctx_st *ctx);
/* A TLS client bufferevent, not yet connected, with SNI and hostname (or IP) verification
 * for host. NULL on failure. */
struct bufferevent *upstream_tls_bev_new(struct event_base *base, struct ssl_ctx_st *ctx,
                                         const char *host);
/* Why a TLS bufferevent failed, for logs: certificate verification or OpenSSL's error.
 * Returns 0 (out untouched) when TLS has nothing to say: the socket's error is the reason. */
int upstream_tls_error(struct bufferevent *bev, char *out, size_t outsz);

#endif
