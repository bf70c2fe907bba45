/* broker_redis.c - the Redis broker: one hiredis async link in subscribed mode (sub) and one for
 * PUBLISH (pub), each reconnecting on its own with backoff, plus a canary that proves delivery.
 * Two kinds: the process's broker (on worker 0's loop) holds the one sub link of the process
 * and hands messages to its sink (router.c); each worker's publisher has only a pub link,
 * relays its hub's subscriptions to the process's broker and holds its publishes until that
 * broker's sub link is up.
 *
 * hiredis 0.14 ownership: hiredis frees a context itself after a failed connect and after the
 * disconnect callback; there we only clear our pointer. We never free one from code that may
 * run inside a hiredis callback (our ops are reachable from hub_deliver()): a context we give up
 * is parked in link->dead and freed by the link's reap event on the next loop turn, or by free()
 * after the loop stopped. It may still call us meanwhile (replies, then NULL replies), so every
 * callback first checks that its context is the link's current one. A reply lives only during
 * its callback: nothing here keeps a pointer into one. */
#include "broker_redis.h"

#include <sys/queue.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <openssl/rand.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "redis_adapter.h"

#define REDIS_BACKOFF_START_MS 100
#define REDIS_SUB_BATCH 256          /* channels per SUBSCRIBE when resubscribing */
#define REDIS_PUB_MAX_INFLIGHT 10000 /* PUBLISHes awaiting a reply before we queue instead */
#define REDIS_PUB_MIN_INFLIGHT_BYTES (1u << 20) /* in-flight byte bound if publish_queue is 0 */
#define REDIS_LOG_MS 1000             /* oversized messages are logged at most this often */

enum redis_link_state {
	REDIS_LINK_DOWN = 0,   /* no context; the timer is the retry backoff */
	REDIS_LINK_CONNECTING, /* redisAsyncConnect issued, TCP not up; timer = connect deadline */
	REDIS_LINK_HANDSHAKE,  /* TCP up; AUTH (and SELECT on pub) sent, unanswered; deadline on */
	REDIS_LINK_SYNCING,    /* sub only: SUBSCRIBE batches sent, the canary channel (sent last)
	                        * not confirmed yet; deadline on; subscribe() sends at once */
	REDIS_LINK_UP,         /* pub: PUBLISH goes out; sub: every resubscription confirmed */
};

static const char *const redis_link_state_names[] = { "down", "connecting", "handshake",
	"syncing", "up" };

struct broker_redis;

struct redis_link {
	struct broker_redis *b;
	const char *name;        /* "sub" or "pub", for logs */
	enum redis_link_state state;
	redisAsyncContext *ac;   /* current context; NULL while DOWN */
	redisAsyncContext *dead; /* context we gave up, freed by reap on the next loop turn */
	struct event *timer;     /* DOWN: retry; CONNECTING..SYNCING: connect deadline */
	struct event *reap;      /* frees dead outside any hiredis callback */
	uint64_t backoff_ms;     /* next retry delay, before jitter */
	struct redis_dns *dns;   /* CONNECTING: the host name lookup in flight, if any */
	uint64_t partial_ms;     /* last read that advanced a reply still incomplete (progress) */
};

/* A lookup in flight; l is cleared when the link gives it up (the answer may still come). */
struct redis_dns {
	struct redis_link *l;
	struct evdns_getaddrinfo_request *req;
};

/* A publish held while the pub link is down or too far behind. */
struct redis_pending {
	STAILQ_ENTRY(redis_pending) entry;
	size_t clen;
	size_t len;
	uint8_t buf[]; /* channel, then data */
};

struct broker_redis {
	struct broker base; /* first: ops and hub */
	struct event_base *evbase;
	/* copied from the config snapshot, which may be replaced while we live */
	char *host;
	int port;
	int db;
	char *password; /* NULL: no AUTH */
	uint64_t connect_timeout_ms, probe_interval_ms, probe_timeout_ms, publish_queue,
	    reconnect_max_ms, max_message_size;
	struct evdns_base *dns; /* made on first use: a host name, not an address, is configured */
	struct redis_adapter_hooks hooks; /* max_reply is max_message_size */
	uint64_t oversized;     /* oversized messages since the last log line */
	uint64_t oversized_log_ms;

	struct redis_link sub;
	struct redis_link pub;
	int freeing; /* free() is tearing down: callbacks do nothing */

	/* canary: PUBLISHed on pub, must come back on sub */
	char *probe_chan;      /* <prefix>wsgate:probe:<instance_id> */
	size_t probe_len;
	uint64_t probe_nonce;  /* tells our canaries from other workers' on the same channel */
	uint64_t probe_seq;    /* last canary sent */
	uint64_t probe_sent_ms;
	int probe_outstanding; /* sent and not back yet */
	int probe_answered;    /* its PUBLISH got a reply (so the pub link works) */
	struct event *probe_timer;    /* every probe_interval */
	struct event *probe_deadline; /* probe_timeout after a send */

	/* publish FIFO and in-flight accounting of the current pub context */
	STAILQ_HEAD(, redis_pending) queue;
	int queue_full;            /* "queue full" logged, not yet drained */
	uint64_t inflight;         /* PUBLISHes sent on pub.ac and not answered */
	uint64_t inflight_bytes;

	struct broker_redis_stats st; /* counters and FIFO gauges; the getter adds link states */

	/* the process's broker: where messages go, who hears that the sub link is up */
	const struct broker_sink *sink;
	void *sink_arg;
	void (*on_sub_up)(void *arg);
	void *on_sub_up_arg;
	/* a worker's publisher: the process's broker, and where subscriptions are relayed */
	struct broker_redis *owner;
	void (*relay)(void *arg, int on, const char *channel, size_t len);
	void *relay_arg;
};

static const struct broker_ops broker_redis_ops;

static void redis_link_teardown(struct redis_link *, const char *);
static void redis_link_cancel_dns(struct redis_link *);
static void redis_link_on_connect(const redisAsyncContext *, int);
static void redis_link_on_disconnect(const redisAsyncContext *, int);
static void broker_redis_resubscribe(struct broker_redis *);
static void broker_redis_flush(struct broker_redis *);
static int broker_redis_pub_writable(const struct broker_redis *);

static uint64_t
broker_redis_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
broker_redis_arm(struct event *ev, uint64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
		.tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	event_add(ev, &tv);
}

static int
broker_redis_is_probe(const struct broker_redis *b, const char *name, size_t len)
{
	return len == b->probe_len && memcmp(name, b->probe_chan, len) == 0;
}

/* ---- one link: state, connect, teardown ---- */

/* 80% to 120% of ms: instances that lost Redis together must not come back in lockstep. */
static uint64_t
redis_link_jitter(uint64_t ms)
{
	uint32_t r;

	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		return ms;
	return ms * (800 + r % 401) / 1000;
}

/* Something that cannot happen did: a debug build stops there; a release build counts it
 * (wsgate_internal_errors_total), logs it and goes on with the link rebuilt. */
static void
redis_internal_error(struct broker_redis *b, const char *what)
{
#ifdef WSGATE_DEBUG
	fatalx("redis: %s", what);
#endif
	METRIC_ADD(b->st.internal_errors, 1);
	log_warnx("redis: internal error: %s", what);
}

/* Returns 0, or -1 after an illegal move: the link was then rebuilt (torn down, its retry
 * armed) and the caller must stop what it was doing with it. */
static int
redis_link_set_state(struct redis_link *l, enum redis_link_state to)
{
	/* Forward one step at a time (pub skips SYNCING); down from anywhere but down. */
	int ok = to == REDIS_LINK_DOWN ? l->state != REDIS_LINK_DOWN : to == l->state + 1 ||
	    (l->state == REDIS_LINK_HANDSHAKE && to == REDIS_LINK_UP && l != &l->b->sub);
	char what[128];

	if (!ok) {
		snprintf(what, sizeof(what), "%s link: illegal transition %s -> %s; rebuilding it",
		    l->name, redis_link_state_names[l->state], redis_link_state_names[to]);
		redis_internal_error(l->b, what);
		if (l->state != REDIS_LINK_DOWN)
			redis_link_teardown(l, "internal error");
		else if (!evtimer_pending(l->timer, NULL))
			broker_redis_arm(l->timer, REDIS_BACKOFF_START_MS);
		return -1;
	}
	/* Atomic: ready() and the metrics read it from the main loop. */
	__atomic_store_n(&l->state, to, __ATOMIC_RELAXED);
	return 0;
}

static void
redis_link_up(struct redis_link *l)
{
	struct broker_redis *b = l->b;

	if (redis_link_set_state(l, REDIS_LINK_UP) < 0)
		return;
	event_del(l->timer); /* the connect deadline */
	l->backoff_ms = REDIS_BACKOFF_START_MS;
	if (l == &b->sub)
		log_info("redis sub link up (%zu channels)", b->sink->nchannels(b->sink_arg));
	else
		log_info("redis pub link up");
	/* Whichever of the two links comes back last lets the queue go. */
	if (b->st.queue_len > 0 && broker_redis_pub_writable(b))
		log_info("redis links up; flushing %llu queued publish(es)",
		    (unsigned long long)b->st.queue_len);
	broker_redis_flush(b);
}

/* The one way down: gives up the context (freed next loop turn: hiredis may be on the stack),
 * resets what depended on it, schedules the retry and logs the reason once. */
static void
redis_link_teardown(struct redis_link *l, const char *reason)
{
	struct broker_redis *b = l->b;
	enum redis_link_state was = l->state;
	uint64_t delay, cap;
	char extra[64] = "";

	if (was == REDIS_LINK_DOWN || b->freeing)
		return;
	redis_link_cancel_dns(l);
	l->partial_ms = 0;
	if (l->ac != NULL) {
		if (l->dead != NULL) {
			/* Reap runs before any reconnect, so never two; should it happen, the
			 * older one is not on the stack (its callbacks return at once). */
			redis_internal_error(b, "two contexts to reap");
			redisAsyncFree(l->dead);
		}
		l->dead = l->ac;
		l->ac = NULL;
		event_active(l->reap, EV_TIMEOUT, 1);
	}
	redis_link_set_state(l, REDIS_LINK_DOWN);
	/* A canary in flight proves nothing once the sub context, or the pub context before
	 * answering its PUBLISH, is gone. */
	if (l == &b->sub || !b->probe_answered) {
		METRIC_SET(b->probe_outstanding, 0);
		event_del(b->probe_deadline);
	}
	if (l == &b->pub) {
		/* Unanswered PUBLISHes may or may not have been run: counted, not resent. */
		if (b->inflight > 0)
			snprintf(extra, sizeof(extra), " (%llu PUBLISH unconfirmed)",
			    (unsigned long long)b->inflight);
		METRIC_ADD(b->st.unconfirmed, b->inflight);
		b->inflight = 0;
		b->inflight_bytes = 0;
	}

	cap = b->reconnect_max_ms > 0 ? b->reconnect_max_ms : REDIS_BACKOFF_START_MS;
	delay = redis_link_jitter(l->backoff_ms < cap ? l->backoff_ms : cap);
	l->backoff_ms = l->backoff_ms * 2 < cap ? l->backoff_ms * 2 : cap;
	METRIC_ADD(b->st.reconnects, 1);
	broker_redis_arm(l->timer, delay);
	if (was == REDIS_LINK_UP)
		log_warnx("redis %s link down: %s%s; retry in %llu ms", l->name, reason, extra,
		    (unsigned long long)delay);
	else
		log_warnx("redis %s link to %s:%d failed (%s): %s; retry in %llu ms", l->name,
		    b->host, b->port, redis_link_state_names[was], reason, (unsigned long long)delay);
}

static void
redis_link_reap(evutil_socket_t fd, short what, void *arg)
{
	struct redis_link *l = arg;
	redisAsyncContext *ac = l->dead;

	(void)fd, (void)what;
	if (ac == NULL)
		return; /* hiredis dropped it first */
	l->dead = NULL;
	/* An event callback, outside hiredis: the reply callbacks it runs with NULL and the
	 * disconnect callback find that ac is no longer current. */
	redisAsyncFree(ac);
}

/* hiredis frees ac when we return (failed connect, or disconnect): forget it, and when it was
 * the current context, the link is down. */
static void
redis_link_gone(struct redis_link *l, const redisAsyncContext *ac, const char *why)
{
	if (ac == l->dead) { /* free() clears both pointers first: nothing matches then */
		l->dead = NULL;
	} else if (ac == l->ac) {
		l->ac = NULL;
		redis_link_teardown(l, why);
	}
}

/* AUTH and SELECT replies. privdata is the command name, for the log. */
static void
redis_link_on_handshake(redisAsyncContext *ac, void *r, void *privdata)
{
	redisReply *reply = r;
	struct redis_link *l = ac->data;
	struct broker_redis *b = l->b;
	const char *step = privdata;
	char reason[256];

	if (b->freeing || reply == NULL || ac != l->ac || l->state != REDIS_LINK_HANDSHAKE)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		snprintf(reason, sizeof(reason), "%s refused: %s", step, reply->str);
		redis_link_teardown(l, reason);
	} else if (l == &b->sub) {
		broker_redis_resubscribe(b); /* AUTH was its whole handshake */
	} else if (strcmp(step, "SELECT") == 0) {
		redis_link_up(l);
	}
}

/* TCP is up. hiredis marked the context connected before calling us, so commands may be queued:
 * AUTH when configured, and SELECT on pub (pub/sub ignores the db, but anything else sent on
 * that link must hit the configured one). The sub link without AUTH resubscribes at once. */
static void
redis_link_on_connect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac; /* hiredis passes it const */
	struct redis_link *l = ac->data;
	struct broker_redis *b = l->b;
	int rc = REDIS_OK;

	if (status != REDIS_OK) {
		redis_link_gone(l, ac, ac->errstr != NULL ? ac->errstr : "connect failed");
		return;
	}
	if (b->freeing || ac != l->ac || l->state != REDIS_LINK_CONNECTING)
		return;
	if (redis_link_set_state(l, REDIS_LINK_HANDSHAKE) < 0)
		return;
	if (b->password != NULL)
		rc = redisAsyncCommand(ac, redis_link_on_handshake, "AUTH", "AUTH %s", b->password);
	if (rc == REDIS_OK && l == &b->pub)
		rc = redisAsyncCommand(ac, redis_link_on_handshake, "SELECT", "SELECT %d", b->db);
	if (rc != REDIS_OK)
		redis_link_teardown(l, "handshake could not be queued");
	else if (l == &b->sub && b->password == NULL)
		broker_redis_resubscribe(b);
}

static void
redis_link_on_disconnect(const redisAsyncContext *ac, int status)
{
	(void)status;
	redis_link_gone(ac->data, ac, ac->errstr != NULL && ac->errstr[0] != '\0' ? ac->errstr :
	    "connection closed");
}

/* ---- the adapter's hooks (redis_adapter.c): arg is the link ---- */

/* A message larger than max_message_size is on its way: counted, logged at most once a
 * second. */
static void
broker_redis_oversized(struct broker_redis *b, const char *link, uint64_t len)
{
	uint64_t now = broker_redis_now_ms();

	METRIC_ADD(b->st.oversized, 1);
	b->oversized++;
	if (now - b->oversized_log_ms >= REDIS_LOG_MS) {
		log_warnx("redis %s link: a %llu-byte message is over max_message_size (%llu): "
		    "dropped (%llu since the last report)", link, (unsigned long long)len,
		    (unsigned long long)b->max_message_size, (unsigned long long)b->oversized);
		b->oversized = 0;
		b->oversized_log_ms = now;
	}
}

static int
redis_link_is_current(void *arg, const redisAsyncContext *ac)
{
	struct redis_link *l = arg;

	return ac == l->ac && !l->b->freeing;
}

static void
redis_link_oversized(void *arg, uint64_t len)
{
	struct redis_link *l = arg;

	broker_redis_oversized(l->b, l->name, len);
}

static void
redis_link_progress(void *arg)
{
	((struct redis_link *)arg)->partial_ms = broker_redis_now_ms();
}

static void
redis_link_failed(void *arg, const char *why)
{
	redis_link_teardown(arg, why);
}

/* ---- connecting: resolve without blocking, then hiredis to the address ---- */

/* hiredis connects to addr (numeric: its getaddrinfo does not block). */
static void
redis_link_open(struct redis_link *l, const char *addr)
{
	struct broker_redis *b = l->b;
	redisAsyncContext *ac;
	char err[256];

	if ((ac = redisAsyncConnect(addr, b->port)) == NULL) {
		redis_link_teardown(l, "out of memory");
		return;
	}
	if (ac->err != 0) {
		snprintf(err, sizeof(err), "%s", ac->errstr);
		redisAsyncFree(ac); /* nothing attached, no callbacks: freed at once */
		redis_link_teardown(l, err);
		return;
	}
	if (redis_adapter_attach(ac, b->evbase, &b->hooks, l) < 0) {
		redisAsyncFree(ac);
		redis_link_teardown(l, "out of memory");
		return;
	}
	ac->data = l;
	redisAsyncSetConnectCallback(ac, redis_link_on_connect);
	redisAsyncSetDisconnectCallback(ac, redis_link_on_disconnect);
	l->ac = ac;
}

static void
redis_link_cancel_dns(struct redis_link *l)
{
	struct redis_dns *d = l->dns;

	if (d == NULL)
		return;
	l->dns = NULL;
	d->l = NULL; /* the callback, now or later, only frees d */
	if (d->req != NULL)
		evdns_getaddrinfo_cancel(d->req);
}

/* The lookup's answer. d->l is NULL when the link gave it up (EVUTIL_EAI_CANCEL, or an answer
 * after a teardown); the link must still be CONNECTING with no context, as it was armed. */
static void
redis_link_dns_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
	struct redis_dns *d = arg;
	struct redis_link *l = d->l;
	char addr[INET6_ADDRSTRLEN] = "", why[320];
	const void *in = NULL;

	free(d);
	if (l == NULL || l->b->freeing || l->state != REDIS_LINK_CONNECTING || l->ac != NULL) {
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		return;
	}
	l->dns = NULL;
	if (err == 0 && ai != NULL) {
		if (ai->ai_family == AF_INET)
			in = &((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr;
		else if (ai->ai_family == AF_INET6)
			in = &((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr;
		if (in != NULL)
			(void)evutil_inet_ntop(ai->ai_family, in, addr, sizeof(addr));
	}
	if (ai != NULL)
		evutil_freeaddrinfo(ai);
	if (addr[0] == '\0') {
		snprintf(why, sizeof(why), "cannot resolve %s: %s", l->b->host,
		    err != 0 ? evutil_gai_strerror(err) : "no address");
		redis_link_teardown(l, why);
		return;
	}
	redis_link_open(l, addr);
}

/* Runs from a timer or from new(), never inside a hiredis callback. The host name is looked up
 * again for every attempt (evdns: the loop never blocks), so a Redis that moved is found. */
static void
redis_link_connect(struct redis_link *l)
{
	struct broker_redis *b = l->b;
	struct evutil_addrinfo hints, *ai = NULL;
	struct evdns_getaddrinfo_request *req;
	struct redis_dns *d;
	redisAsyncContext *ac;
	char port[16];

	if ((ac = l->dead) != NULL) { /* normally reaped already */
		l->dead = NULL;
		redisAsyncFree(ac);
	}
	if (redis_link_set_state(l, REDIS_LINK_CONNECTING) < 0)
		return;
	/* hiredis 0.14 has no connect timeout. Ours runs until the link is up, so a lookup or a
	 * server that accepts but never answers (stopped, overloaded) is given up as well. */
	if (b->connect_timeout_ms > 0)
		broker_redis_arm(l->timer, b->connect_timeout_ms);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", b->port);
	if (evutil_getaddrinfo(b->host, port, &hints, &ai) == 0) {
		evutil_freeaddrinfo(ai);
		redis_link_open(l, b->host);
		return;
	}
	if (b->dns == NULL &&
	    (b->dns = evdns_base_new(b->evbase, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	    EVDNS_BASE_DISABLE_WHEN_INACTIVE)) == NULL) {
		redis_link_teardown(l, "cannot start the DNS resolver");
		return;
	}
	if ((d = calloc(1, sizeof(*d))) == NULL) {
		redis_link_teardown(l, "out of memory");
		return;
	}
	d->l = l;
	l->dns = d;
	hints.ai_flags = EVUTIL_AI_NUMERICSERV | EVUTIL_AI_ADDRCONFIG;
	req = evdns_getaddrinfo(b->dns, b->host, port, &hints, redis_link_dns_cb, d);
	/* NULL: answered inside the call (/etc/hosts, or a failure); d is freed already. */
	if (req != NULL && l->dns == d)
		d->req = req;
}

/* DOWN: time to retry. CONNECTING..SYNCING: the connect deadline passed. */
static void
redis_link_timer(evutil_socket_t fd, short what, void *arg)
{
	struct redis_link *l = arg;
	char reason[96];

	(void)fd, (void)what;
	if (l->state == REDIS_LINK_DOWN) {
		redis_link_connect(l);
	} else if (l->state != REDIS_LINK_UP) {
		snprintf(reason, sizeof(reason), "no answer within connect_timeout (%llu ms)",
		    (unsigned long long)l->b->connect_timeout_ms);
		redis_link_teardown(l, reason);
	}
}

/* ---- the sub link: subscriptions, messages, the canary coming back ---- */

/* The one callback of every SUBSCRIBE: hiredis 0.14 keeps it per channel and hands it every
 * reply for that channel: "subscribe", "unsubscribe" and each "message". When a channel's entry
 * is gone (unsubscribed), hiredis reuses the last callback it ran, which is this one too. */
static void
broker_redis_on_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	redisReply *reply = r, *kind, *chan, *data;
	struct broker_redis *b = ((struct redis_link *)ac->data)->b;

	(void)privdata;
	/* NULL: the context is going away (hiredis calls each channel's callback then). */
	if (b->freeing || reply == NULL || ac != b->sub.ac ||
	    (b->sub.state != REDIS_LINK_SYNCING && b->sub.state != REDIS_LINK_UP))
		return;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
		return;
	kind = reply->element[0];
	chan = reply->element[1];
	data = reply->element[2];
	if (kind->type != REDIS_REPLY_STRING || chan->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(kind->str, "message") == 0 && data->type == REDIS_REPLY_STRING) {
		if (broker_redis_is_probe(b, chan->str, chan->len)) {
			/* Ours when it is the payload we sent last (the workers of one instance
			 * share the channel, and their canaries are ignored). */
			char want[64];
			int n = snprintf(want, sizeof(want), "%016llx:%llu",
			    (unsigned long long)b->probe_nonce, (unsigned long long)b->probe_seq);

			if (b->probe_outstanding && data->len == (size_t)n &&
			    memcmp(data->str, want, data->len) == 0) {
				METRIC_SET(b->probe_outstanding, 0);
				event_del(b->probe_deadline);
			}
			return;
		}
		/* Normally skipped as it streamed in (a nil here); this catches one that came
		 * whole within a single read. */
		if (data->len > b->max_message_size) {
			broker_redis_oversized(b, "sub (whole)", data->len);
			return;
		}
		METRIC_ADD(b->st.delivered, 1);
		b->sink->deliver(b->sink_arg, chan->str, chan->len, (const uint8_t *)data->str,
		    data->len);
	} else if (strcmp(kind->str, "subscribe") == 0 && b->sub.state == REDIS_LINK_SYNCING &&
	    broker_redis_is_probe(b, chan->str, chan->len)) {
		/* Redis answers in order and the canary channel went last. */
		redis_link_up(&b->sub);
		/* The workers' publishers held their queues for this. */
		if (b->on_sub_up != NULL)
			b->on_sub_up(b->on_sub_up_arg);
	} else if (strcmp(kind->str, "subscribe") == 0 && b->sink->confirmed != NULL &&
	    !broker_redis_is_probe(b, chan->str, chan->len)) {
		/* The process now receives this channel: its pending clients may open. */
		b->sink->confirmed(b->sink_arg, chan->str, chan->len);
	}
}

struct broker_redis_batch {
	struct broker_redis *b;
	int n;        /* channels in argv after "SUBSCRIBE" */
	int failed;
	const char *argv[1 + REDIS_SUB_BATCH];
	size_t lens[1 + REDIS_SUB_BATCH];
};

static void
broker_redis_batch_send(struct broker_redis_batch *bt)
{
	if (bt->n > 0 && !bt->failed &&
	    redisAsyncCommandArgv(bt->b->sub.ac, broker_redis_on_sub_reply, NULL, bt->n + 1,
	    bt->argv, bt->lens) != REDIS_OK)
		bt->failed = 1;
	bt->n = 0;
}

/* The names stay valid until their batch is sent: the sink's channels do not change while it
 * iterates, and hiredis copies them into its output buffer. */
static void
broker_redis_batch_add(void *arg, const char *name, size_t len)
{
	struct broker_redis_batch *bt = arg;

	if (broker_redis_is_probe(bt->b, name, len))
		return; /* added once, last */
	bt->argv[1 + bt->n] = name;
	bt->lens[1 + bt->n] = len;
	bt->n++;
	if (bt->n == REDIS_SUB_BATCH)
		broker_redis_batch_send(bt);
}

/* The sink (router) holds the set of channels: subscribe all of them, in batches, then the
 * canary channel. */
static void
broker_redis_resubscribe(struct broker_redis *b)
{
	struct broker_redis_batch bt = { .b = b, .argv = { "SUBSCRIBE" }, .lens = { 9 } }; /* 4 KiB */

	b->sink->foreach_channel(b->sink_arg, broker_redis_batch_add, &bt);
	bt.argv[1 + bt.n] = b->probe_chan; /* n < REDIS_SUB_BATCH here: there is room */
	bt.lens[1 + bt.n] = b->probe_len;
	bt.n++;
	broker_redis_batch_send(&bt);
	if (bt.failed)
		redis_link_teardown(&b->sub, "SUBSCRIBE could not be queued");
	else
		(void)redis_link_set_state(&b->sub, REDIS_LINK_SYNCING);
}

/* One (UN)SUBSCRIBE while the link is subscribing; before that the resubscription reads the
 * sink. The canary channel is ours alone: never sent here, so never unsubscribed, so the context
 * never leaves subscribed mode (hiredis 0.14 asserts on a pushed message outside it).
 * hiredis 0.14 counts SUBSCRIBEs per channel (pending_subs): an UNSUBSCRIBE quickly followed by
 * a SUBSCRIBE keeps the channel's callback. */
static void
broker_redis_sub_command(struct broker_redis *b, const char *cmd, const char *channel, size_t len)
{
	const char *argv[2] = { cmd, channel };
	size_t lens[2] = { strlen(cmd), len };

	if (b->sub.state != REDIS_LINK_SYNCING && b->sub.state != REDIS_LINK_UP)
		return;
	if (broker_redis_is_probe(b, channel, len))
		return;
	if (redisAsyncCommandArgv(b->sub.ac, broker_redis_on_sub_reply, NULL, 2, argv, lens) !=
	    REDIS_OK)
		redis_link_teardown(&b->sub, "(UN)SUBSCRIBE could not be queued");
}

static int
broker_redis_subscribe(struct broker *base, const char *channel, size_t len)
{
	struct broker_redis *b = (struct broker_redis *)base;

	if (b->relay != NULL)
		b->relay(b->relay_arg, 1, channel, len); /* a worker's: the process subscribes */
	else
		broker_redis_sub_command(b, "SUBSCRIBE", channel, len);
	return 0; /* the sink holds the set; while the link is down, the reconnect subscribes */
}

static void
broker_redis_unsubscribe(struct broker *base, const char *channel, size_t len)
{
	struct broker_redis *b = (struct broker_redis *)base;

	if (b->relay != NULL)
		b->relay(b->relay_arg, 0, channel, len);
	else
		broker_redis_sub_command(b, "UNSUBSCRIBE", channel, len);
}

/* ---- the pub link: PUBLISH, the FIFO, in-flight bounds ---- */

/* Up, and not so far behind that hiredis' output buffer or Redis' replies pile up. The
 * subscribe link must be up too: a message published while this instance is not subscribed
 * would never reach its own clients, so it waits in the queue until both links are back. */
static int
broker_redis_pub_writable(const struct broker_redis *b)
{
	uint64_t cap = b->publish_queue > 0 ? b->publish_queue : REDIS_PUB_MIN_INFLIGHT_BYTES;

	/* A worker's publisher reads the process broker's sub link from another thread. */
	int sub_up = b->owner != NULL ? METRIC_GET(b->owner->sub.state) == REDIS_LINK_UP :
	    b->sub.state == REDIS_LINK_UP;

	return b->pub.state == REDIS_LINK_UP && sub_up &&
	    b->inflight < REDIS_PUB_MAX_INFLIGHT &&
	    b->inflight_bytes < cap;
}

/* privdata is the message's byte count (channel + data). */
static void
broker_redis_on_publish_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	redisReply *reply = r;
	struct broker_redis *b = ((struct redis_link *)ac->data)->b;

	/* Not current: a context we gave up. NULL: hiredis is dropping the context and the
	 * teardown from its disconnect callback counts what is still in flight. */
	if (b->freeing || ac != b->pub.ac || reply == NULL)
		return;
	b->inflight--;
	b->inflight_bytes -= (uint64_t)(uintptr_t)privdata;
	if (reply->type != REDIS_REPLY_ERROR) {
		METRIC_ADD(b->st.published, 1);
	} else {
		METRIC_ADD(b->st.publish_errors, 1);
		if (b->st.publish_errors % 1000 == 1)
			log_warnx("redis PUBLISH failed: %s (%llu errors so far)", reply->str,
			    (unsigned long long)b->st.publish_errors);
	}
	broker_redis_flush(b);
}

static int
broker_redis_send(struct broker_redis *b, const char *channel, size_t clen, const uint8_t *data,
    size_t len)
{
	size_t bytes = clen + len;

	if (redisAsyncCommand(b->pub.ac, broker_redis_on_publish_reply, (void *)(uintptr_t)bytes,
	    "PUBLISH %b %b", channel, clen, data, len) != REDIS_OK)
		return -1;
	b->inflight++;
	b->inflight_bytes += bytes;
	return 0;
}

/* Sends queued publishes in order while the link takes them: when the pub link comes up and
 * whenever a reply makes room. */
static void
broker_redis_flush(struct broker_redis *b)
{
	struct redis_pending *p;

	while ((p = STAILQ_FIRST(&b->queue)) != NULL && broker_redis_pub_writable(b)) {
		if (broker_redis_send(b, (const char *)p->buf, p->clen, p->buf + p->clen, p->len) != 0)
			break;
		STAILQ_REMOVE_HEAD(&b->queue, entry);
		METRIC_SUB(b->st.queue_bytes, p->clen + p->len);
		METRIC_SUB(b->st.queue_len, 1);
		free(p);
	}
	if (b->queue_full && b->st.queue_len == 0) {
		b->queue_full = 0;
		log_info("redis publish queue drained");
	}
}

/* Copies the message to the FIFO, or refuses it when publish_queue bytes would be exceeded:
 * never dropped silently, the caller tells the client. */
static int
broker_redis_enqueue(struct broker_redis *b, const char *channel, size_t clen,
    const uint8_t *data, size_t len)
{
	struct redis_pending *p;
	size_t bytes = clen + len;

	if (bytes > b->publish_queue - b->st.queue_bytes ||
	    (p = malloc(sizeof(*p) + bytes)) == NULL) {
		METRIC_ADD(b->st.refused, 1);
		if (!b->queue_full)
			log_warnx("redis publish queue full (%llu messages, %llu bytes); refusing "
			    "publishes", (unsigned long long)b->st.queue_len,
			    (unsigned long long)b->st.queue_bytes);
		b->queue_full = 1;
		return -1;
	}
	p->clen = clen;
	p->len = len;
	memcpy(p->buf, channel, clen);
	if (len > 0)
		memcpy(p->buf + clen, data, len);
	STAILQ_INSERT_TAIL(&b->queue, p, entry);
	METRIC_ADD(b->st.queue_bytes, bytes);
	METRIC_ADD(b->st.queue_len, 1);
	METRIC_ADD(b->st.queued, 1);
	return 0;
}

static int
broker_redis_publish(struct broker *base, const char *channel, size_t clen, const uint8_t *data,
    size_t len)
{
	struct broker_redis *b = (struct broker_redis *)base;

	/* Queued messages go first: a new one may only bypass an empty queue. */
	if (STAILQ_EMPTY(&b->queue) && broker_redis_pub_writable(b) &&
	    broker_redis_send(b, channel, clen, data, len) == 0)
		return 0;
	return broker_redis_enqueue(b, channel, clen, data, len);
}

/* ---- the canary going out ---- */

/* privdata is the canary's sequence number. */
static void
broker_redis_on_probe_reply(redisAsyncContext *ac, void *r, void *privdata)
{
	redisReply *reply = r;
	struct broker_redis *b = ((struct redis_link *)ac->data)->b;

	if (b->freeing || reply == NULL || ac != b->pub.ac)
		return;
	if ((uint64_t)(uintptr_t)privdata == b->probe_seq && b->probe_outstanding)
		b->probe_answered = 1;
}

static void
broker_redis_probe_tick(evutil_socket_t fd, short what, void *arg)
{
	struct broker_redis *b = arg;
	uint64_t seq = b->probe_seq + 1;
	char payload[64];
	int n;

	(void)fd, (void)what;
	/* Nothing to prove without both links; one canary at a time (the deadline judges it). */
	if (b->sub.state != REDIS_LINK_UP || b->pub.state != REDIS_LINK_UP || b->probe_outstanding)
		return;
	n = snprintf(payload, sizeof(payload), "%016llx:%llu", (unsigned long long)b->probe_nonce,
	    (unsigned long long)seq);
	/* Straight to hiredis, around the FIFO: it is a health check, not data. */
	if (redisAsyncCommand(b->pub.ac, broker_redis_on_probe_reply, (void *)(uintptr_t)seq,
	    "PUBLISH %b %b", b->probe_chan, b->probe_len, payload, (size_t)n) != REDIS_OK)
		return;
	b->probe_seq = seq;
	METRIC_SET(b->probe_outstanding, 1);
	b->probe_answered = 0;
	METRIC_SET(b->probe_sent_ms, broker_redis_now_ms());
	broker_redis_arm(b->probe_deadline, b->probe_timeout_ms);
}

/* The known silent failure: the sub link looks fine but nothing arrives. Rebuild it; when even
 * the PUBLISH went unanswered, the pub link (or the server) is stuck as well. */
static void
broker_redis_probe_overdue(evutil_socket_t fd, short what, void *arg)
{
	struct broker_redis *b = arg;
	int answered = b->probe_answered;

	(void)fd, (void)what;
	if (!b->probe_outstanding)
		return;
	/* Liveness is progress: the canary comes on the same socket behind whatever Redis sent
	 * before it. While a large reply is still streaming in (bytes of it arrived within the
	 * last probe_timeout), the link is alive: judge the canary a probe_timeout later. A link
	 * where nothing moves is still given up after probe_timeout. */
	if (b->sub.partial_ms != 0 &&
	    broker_redis_now_ms() - b->sub.partial_ms < b->probe_timeout_ms) {
		METRIC_SET(b->probe_sent_ms, broker_redis_now_ms()); /* ready() agrees */
		broker_redis_arm(b->probe_deadline, b->probe_timeout_ms);
		return;
	}
	METRIC_SET(b->probe_outstanding, 0);
	METRIC_ADD(b->st.probes_lost, 1);
	log_warnx("redis sub link: canary not delivered within %llu ms; rebuilding",
	    (unsigned long long)b->probe_timeout_ms);
	redis_link_teardown(&b->sub, "canary lost");
	if (!answered)
		redis_link_teardown(&b->pub, "canary PUBLISH not answered within probe_timeout");
}

/* ---- the broker ---- */

static int
broker_redis_ready(struct broker *base)
{
	struct broker_redis *b = (struct broker_redis *)base;

	if (b->owner != NULL)
		return broker_redis_ready(&b->owner->base);
	/* The deadline event tears the link down; the time check covers a loop running late. */
	/* Called from any thread: the fields it reads are written with atomic stores. */
	return METRIC_GET(b->sub.state) == REDIS_LINK_UP && !(METRIC_GET(b->probe_outstanding) &&
	    broker_redis_now_ms() - METRIC_GET(b->probe_sent_ms) > b->probe_timeout_ms);
}

/* free() runs after the loop stopped: redisAsyncFree here is outside every hiredis callback,
 * and the callbacks it runs synchronously see freeing and do nothing. */
static void
redis_link_free(struct redis_link *l)
{
	redisAsyncContext *ac;

	redis_link_cancel_dns(l);
	if ((ac = l->dead) != NULL) {
		l->dead = NULL;
		redisAsyncFree(ac);
	}
	if ((ac = l->ac) != NULL) {
		l->ac = NULL;
		redisAsyncFree(ac);
	}
	if (l->timer != NULL)
		event_free(l->timer);
	if (l->reap != NULL)
		event_free(l->reap);
}

static void
broker_redis_free(struct broker *base)
{
	struct broker_redis *b = (struct broker_redis *)base;
	struct redis_pending *p;

	b->freeing = 1;
	redis_link_free(&b->sub);
	redis_link_free(&b->pub);
	if (b->probe_timer != NULL)
		event_free(b->probe_timer);
	if (b->probe_deadline != NULL)
		event_free(b->probe_deadline);
	if (b->dns != NULL)
		evdns_base_free(b->dns, 1);
	if (b->st.queue_len > 0)
		log_warnx("redis broker stopped with %llu publishes never sent",
		    (unsigned long long)b->st.queue_len);
	while ((p = STAILQ_FIRST(&b->queue)) != NULL) {
		STAILQ_REMOVE_HEAD(&b->queue, entry);
		free(p);
	}
	free(b->host);
	free(b->password);
	free(b->probe_chan);
	free(b);
}

/* What both kinds share: settings, the FIFO, the two links' events. */
static struct broker_redis *
broker_redis_alloc(struct event_base *base, const struct config *cfg)
{
	const struct config_redis *rc = &cfg->redis;
	struct broker_redis *b;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	b->base.ops = &broker_redis_ops;
	b->evbase = base;
	STAILQ_INIT(&b->queue);
	b->port = atoi(rc->port);
	b->db = rc->db;
	b->connect_timeout_ms = rc->connect_timeout_ms;
	b->probe_interval_ms = rc->probe_interval_ms;
	b->probe_timeout_ms = rc->probe_timeout_ms;
	b->publish_queue = rc->publish_queue;
	b->reconnect_max_ms = rc->reconnect_max_ms;
	b->max_message_size = rc->max_message_size;
	b->hooks = (struct redis_adapter_hooks){ .max_reply = rc->max_message_size,
		.current = redis_link_is_current, .oversized = redis_link_oversized,
		.progress = redis_link_progress, .failed = redis_link_failed };
	b->sub = (struct redis_link){ .b = b, .name = "sub", .backoff_ms = REDIS_BACKOFF_START_MS,
		.timer = evtimer_new(base, redis_link_timer, &b->sub),
		.reap = event_new(base, -1, 0, redis_link_reap, &b->sub) };
	b->pub = (struct redis_link){ .b = b, .name = "pub", .backoff_ms = REDIS_BACKOFF_START_MS,
		.timer = evtimer_new(base, redis_link_timer, &b->pub),
		.reap = event_new(base, -1, 0, redis_link_reap, &b->pub) };
	b->probe_timer = event_new(base, -1, EV_PERSIST, broker_redis_probe_tick, b);
	b->probe_deadline = evtimer_new(base, broker_redis_probe_overdue, b);
	if ((b->host = strdup(rc->host)) == NULL ||
	    (rc->password != NULL && (b->password = strdup(rc->password)) == NULL) ||
	    b->sub.timer == NULL || b->sub.reap == NULL || b->pub.timer == NULL ||
	    b->pub.reap == NULL || b->probe_timer == NULL || b->probe_deadline == NULL) {
		log_warnx("redis broker: out of memory");
		broker_redis_free(&b->base);
		return NULL;
	}
	return b;
}

struct broker *
broker_redis_new(const struct broker_sink *sink, void *sink_arg, struct event_base *base,
    const struct config *cfg, const char *instance_id, void (*on_sub_up)(void *), void *arg)
{
	const char *prefix = cfg->redis.channel_prefix != NULL ? cfg->redis.channel_prefix : "";
	struct broker_redis *b;
	size_t n;

	if ((b = broker_redis_alloc(base, cfg)) == NULL)
		return NULL;
	b->sink = sink;
	b->sink_arg = sink_arg;
	b->on_sub_up = on_sub_up;
	b->on_sub_up_arg = arg;
	n = strlen(prefix) + strlen("wsgate:probe:") + strlen(instance_id) + 1;
	if ((b->probe_chan = malloc(n)) == NULL) {
		log_warnx("redis broker: out of memory");
		broker_redis_free(&b->base);
		return NULL;
	}
	b->probe_len = (size_t)snprintf(b->probe_chan, n, "%swsgate:probe:%s", prefix, instance_id);
	if (RAND_bytes((unsigned char *)&b->probe_nonce, sizeof(b->probe_nonce)) != 1)
		b->probe_nonce = (uint64_t)(uintptr_t)b ^ broker_redis_now_ms();
	if (b->probe_interval_ms > 0 && b->probe_timeout_ms > 0)
		broker_redis_arm(b->probe_timer, b->probe_interval_ms);
	log_info("redis broker: %s:%d db %d, canary on %s every %llu ms", b->host, b->port, b->db,
	    b->probe_chan, (unsigned long long)b->probe_interval_ms);
	/* First attempts right away (we are not in any hiredis callback); retries from timers. */
	redis_link_connect(&b->sub);
	redis_link_connect(&b->pub);
	return &b->base;
}

struct broker *
broker_redis_new_publisher(struct hub *hub, struct event_base *base, const struct config *cfg,
    struct broker *owner, void (*relay)(void *, int, const char *, size_t), void *relay_arg)
{
	struct broker_redis *b;

	if (owner == NULL || owner->ops != &broker_redis_ops)
		return NULL;
	if ((b = broker_redis_alloc(base, cfg)) == NULL)
		return NULL;
	b->base.hub = hub;
	b->owner = (struct broker_redis *)owner;
	b->relay = relay;
	b->relay_arg = relay_arg;
	redis_link_connect(&b->pub); /* no sub link, no canary: the owner has them */
	return &b->base;
}

void
broker_redis_kick(struct broker *base)
{
	struct broker_redis *b = (struct broker_redis *)base;

	if (base != NULL && base->ops == &broker_redis_ops && b->st.queue_len > 0 &&
	    broker_redis_pub_writable(b)) {
		log_info("redis links up; flushing %llu queued publish(es)",
		    (unsigned long long)b->st.queue_len);
		broker_redis_flush(b);
	}
}

void
broker_redis_stats(struct broker *base, struct broker_redis_stats *out)
{
	const struct broker_redis *b = (const struct broker_redis *)base;

	memset(out, 0, sizeof(*out));
	if (base == NULL || base->ops != &broker_redis_ops)
		return;
	/* Read from the main loop while the worker runs: field by field, atomically. */
	out->reconnects = METRIC_GET(b->st.reconnects);
	out->published = METRIC_GET(b->st.published);
	out->queued = METRIC_GET(b->st.queued);
	out->refused = METRIC_GET(b->st.refused);
	out->delivered = METRIC_GET(b->st.delivered);
	out->probes_lost = METRIC_GET(b->st.probes_lost);
	out->unconfirmed = METRIC_GET(b->st.unconfirmed);
	out->publish_errors = METRIC_GET(b->st.publish_errors);
	out->oversized = METRIC_GET(b->st.oversized);
	out->internal_errors = METRIC_GET(b->st.internal_errors);
	out->queue_bytes = METRIC_GET(b->st.queue_bytes);
	out->queue_len = METRIC_GET(b->st.queue_len);
	out->sub_up = METRIC_GET(b->sub.state) == REDIS_LINK_UP;
	out->pub_up = METRIC_GET(b->pub.state) == REDIS_LINK_UP;
}

static const struct broker_ops broker_redis_ops = {
	.name = "redis",
	.subscribe = broker_redis_subscribe,
	.unsubscribe = broker_redis_unsubscribe,
	.publish = broker_redis_publish,
	.ready = broker_redis_ready,
	.free = broker_redis_free,
};
