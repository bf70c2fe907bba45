/* redis_link.h - one connection to Redis that wsgate owns: a libevent socket bufferevent,
 * non-blocking DNS (evdns), a connect deadline, reconnect with backoff and jitter, hiredis used
 * only as a codec (redisReader for replies, redisFormatCommandArgv for commands), a FIFO of the
 * callbacks owed a reply, and a bound on the size of one reply (a larger bulk is skipped as it
 * streams in, never buffered). The owner (broker_redis.c) drives the handshake and decides what
 * a reply no command waits for (a push) means. Nothing a peer sends can abort: a reply that is
 * not what Redis sends closes the link, logged and counted, and the link is rebuilt. */
#ifndef WSGATE_REDIS_LINK_H
#define WSGATE_REDIS_LINK_H

#include <sys/queue.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

struct event_base;
struct evdns_base;
struct bufferevent;
struct event;

enum redis_link_state {
	REDIS_LINK_DOWN = 0,   /* no connection; the timer is the retry backoff */
	REDIS_LINK_CONNECTING, /* lookup or TCP connect under way; timer = connect deadline */
	REDIS_LINK_HANDSHAKE,  /* TCP up; AUTH (and SELECT on pub) sent, unanswered; deadline on */
	REDIS_LINK_SYNCING,    /* sub only: SUBSCRIBE batches sent, the canary channel (sent last)
	                        * not confirmed yet; deadline on; subscribe() sends at once */
	REDIS_LINK_UP,         /* pub: PUBLISH goes out; sub: every resubscription confirmed */
};

struct redis_link;

/* The reply to one command. r lives only during the call. The callback may close the link. */
typedef void (*redis_link_reply_fn)(struct redis_link *l, const redisReply *r, void *arg);

/* What the owner does for the link. Every hook may close the link (redis_link_close/fail). */
struct redis_link_ops {
	/* TCP is up, state HANDSHAKE: queue the handshake (AUTH, SELECT, SUBSCRIBE...). */
	void (*connected)(struct redis_link *l);
	/* A reply no command waits for (the sub link's pushes). Returns 0, or -1 with why filled
	 * when it is not something Redis sends: the link then logs, counts and rebuilds. NULL: any
	 * such reply is a protocol error (the pub link). */
	int (*push)(struct redis_link *l, const redisReply *r, char *why, size_t n);
	/* The link went down from state was: reset what depended on the connection; extra may
	 * get a few words for the log line. */
	void (*down)(struct redis_link *l, enum redis_link_state was, char *extra, size_t n);
	/* A bulk of len bytes over max_reply is being skipped. */
	void (*oversized)(struct redis_link *l, uint64_t len);
	/* A bulk of len bytes (within max_reply, at least REDIS_LINK_STREAM_MIN) is on its way:
	 * return 0 to take its bytes as they arrive, through stream_data, a read's worth per loop
	 * turn, instead of the reader buffering it and copying it whole into a reply in one go.
	 * The reader then sees a nil in its place; the reply carrying that nil is handed to push
	 * (or its command) with l->streamed set, after the last byte. -1: buffer it as usual.
	 * NULL: never streamed. A link that goes down meanwhile calls down; no more data comes. */
	int (*stream_begin)(struct redis_link *l, uint64_t len);
	void (*stream_data)(struct redis_link *l, const uint8_t *p, size_t n);
};

/* Bulks from this size on may be streamed (stream_begin): below it, the reader's one copy is
 * cheaper than the bookkeeping and costs the loop well under a millisecond. */
#define REDIS_LINK_STREAM_MIN (256u << 10)

struct redis_link_cmd {
	STAILQ_ENTRY(redis_link_cmd) entry;
	redis_link_reply_fn fn;
	void *arg;
};

/* A lookup in flight; l is cleared when the link gives it up (the answer may still come). */
struct redis_link_dns;

/* Where a link connects when that is decided per attempt (Sentinel: the master it names; the
 * sentinel links themselves: the next sentinel in turn). Set by redis_link_locate(). */
struct redis_link_locator {
	/* 0 with host (valid until the next call) and port, or -1: nothing known yet; the link
	 * stays DOWN until redis_link_kick(). */
	int (*locate)(void *arg, struct redis_link *l, const char **host, int *port);
	/* The located node failed (connection lost, refused, not a master): ask again. NULL: no
	 * such interest. Runs inside redis_link_close(); may kick or close other links. */
	void (*lost)(void *arg, struct redis_link *l, const char *why);
};

struct ssl_ctx_st;

struct redis_link {
	void *owner;
	const struct redis_link_ops *ops;
	const char *name; /* "sub" or "pub", for logs */
	int has_sync;     /* goes HANDSHAKE -> SYNCING -> UP (sub); else HANDSHAKE -> UP */
	enum redis_link_state state; /* read from other threads: atomic stores */
	struct event_base *base;
	struct evdns_base **dnsp; /* the owner's resolver, made on first use */
	const char *host;         /* the owner's, outlives the link */
	int port;
	uint64_t connect_timeout_ms, reconnect_max_ms, max_reply;

	struct bufferevent *bev; /* NULL while DOWN and while resolving */
	redisReader *reader;     /* with bev */
	uint64_t skip;           /* bytes of an oversized bulk still to discard */
	uint64_t stream_left;    /* bytes of a streamed bulk still to come (payload, then CRLF) */
	uint64_t stream_data;    /* of which payload, handed to stream_data */
	int stream_typed;        /* the reader had taken the bulk's '$' already */
	int streamed;            /* set while the reply with a streamed bulk's nil is handed on */
	STAILQ_HEAD(, redis_link_cmd) fifo; /* callbacks owed a reply, in send order */
	uint64_t gen;               /* +1 per close: a loop over replies stops when it changes */
	struct event *timer;        /* DOWN: retry; CONNECTING..SYNCING: connect deadline */
	struct redis_link_dns *dns; /* CONNECTING: the host name lookup in flight, if any */
	uint64_t backoff_ms;        /* next retry delay, before jitter */
	uint64_t partial_ms;  /* last read that advanced a reply still incomplete (progress) */
	uint64_t progress_ms; /* last connect or read of any bytes: the peer is alive */

	/* optional: per-attempt address, TLS, and ROLE checked before the owner's handshake */
	const struct redis_link_locator *loc;
	void *loc_arg;
	char loc_host[256];     /* the address of this attempt when located (l->host points here) */
	struct ssl_ctx_st *tls; /* NULL: plain TCP; else the endpoint's, outlives the link */
	const char *tls_name;   /* name the certificate must carry (NULL: the host) */
	int verify_role;        /* ROLE must say master before connected() runs (Sentinel) */
	const char *password;   /* AUTH before ROLE; the endpoint's */

	/* counters, read from the main loop (atomic) */
	uint64_t reconnects;      /* retries scheduled */
	uint64_t protocol_errors; /* replies that are not what Redis sends: link rebuilt */
	uint64_t internal_errors; /* impossible states met: link rebuilt */
};

/* 0, or -1 (out of memory). host must outlive the link. */
int redis_link_init(struct redis_link *l, const char *name, int has_sync,
                    const struct redis_link_ops *ops, void *owner, struct event_base *base,
                    struct evdns_base **dnsp, const char *host, int port,
                    uint64_t connect_timeout_ms, uint64_t reconnect_max_ms, uint64_t max_reply)
    __attribute__((warn_unused_result));
/* Releases everything; no hook runs. After the loop stopped, or from outside the link's
 * callbacks. */
void redis_link_free(struct redis_link *l);
/* From DOWN: look the host up (again: a Redis that moved is found) and connect. */
void redis_link_connect(struct redis_link *l);
/* Forward one step (or down). Returns 0, or -1 after an illegal move: the link was rebuilt and
 * the caller must stop what it was doing with it. */
int redis_link_set_state(struct redis_link *l, enum redis_link_state to);
/* HANDSHAKE or SYNCING -> UP: the deadline stops, the backoff restarts. 0 or -1 as above. */
int redis_link_up(struct redis_link *l);
/* The one way down: drops the connection and the FIFO (unanswered callbacks are not called:
 * the down hook accounts for them), schedules the retry, logs reason once. */
void redis_link_close(struct redis_link *l, const char *reason);
/* The peer sent something Redis does not: logged, counted, closed. */
void redis_link_fail(struct redis_link *l, const char *why);
/* Sends one command; fn (may be NULL: no reply is owed in the FIFO, as for SUBSCRIBE on a
 * subscribed link) gets its reply. Returns 0, or -1 (no connection, out of memory). */
int redis_link_command(struct redis_link *l, int argc, const char **argv, const size_t *lens,
                       redis_link_reply_fn fn, void *arg);
/* Something that cannot happen did: a debug build stops; a release build counts, logs and
 * rebuilds the link. */
void redis_link_internal_error(struct redis_link *l, const char *what);

/* Per-attempt addresses from loc (arg its argument), before the first connect. */
void redis_link_locate(struct redis_link *l, const struct redis_link_locator *loc, void *arg);
/* A DOWN link waiting for an address tries again: at once when now (a new address), else
 * after its backoff (the same address that just failed). */
void redis_link_kick(struct redis_link *l, int now);

uint64_t redis_link_now_ms(void);
/* How long a deadline that meets unread bytes waits for this loop to read them. */
#define REDIS_LINK_GRACE_MS 50
/* 1 when the peer sent bytes this loop has not read yet (the input buffer, or the socket's
 * receive queue): a deadline that finds them is late on our side, not the peer's. */
int redis_link_unread(const struct redis_link *l);
void redis_link_arm(struct event *ev, uint64_t ms);

#endif
