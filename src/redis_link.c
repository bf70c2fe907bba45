/* redis_link.c - one Redis connection wsgate owns (see redis_link.h).
 *
 * Why not hiredis' async API: hiredis 0.14 dispatches replies itself and assert()s on shapes a
 * peer can send (a reply to no command outside subscribed mode, a short push array, a push kind
 * that is not a string, an unsubscribe count that is not an integer: fuzz/corpus/redis/redis-*).
 * Here hiredis is a codec only: redisReader parses (it refuses bad RESP with an error, never an
 * abort), redisFormatCommandArgv encodes, and every reply's meaning is checked by us.
 *
 * Ownership: the link owns its bufferevent, its redisReader and its FIFO; close() frees all
 * three at once. That is safe from inside the link's own callbacks: libevent holds a reference
 * on a bufferevent while running its callbacks (the free completes when they return), reply
 * objects are ours once redisReaderGetReply handed them out, and the reply loop checks the
 * link's generation after every callback and stops when it changed. A DNS answer may come after
 * the link moved on: it finds its request detached (d->l NULL) and only frees itself. */
#include "redis_link.h"
#include "clock.h"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <openssl/rand.h>

#include "log.h"
#include "metrics.h"
#include "redis_reader.h"
#include "upstream.h" /* upstream_tls_*: the one client-side TLS code */

#define REDIS_BACKOFF_START_MS 100
#define REDIS_REPLY_SLACK (64u << 10) /* a reply's framing and channel name beyond its payload */
/* Bytes read per read event: a large message and the canary behind it do not take a loop turn
 * per 16 KiB. */
#define REDIS_READ_TURN (1u << 20)
#define REDIS_FEED_SLICE (64u << 10) /* bytes fed to the reader before checking its bound */

static const char *const redis_link_state_names[] = {"down", "connecting", "handshake", "syncing",
                                                     "up"};

struct redis_link_dns {
	struct redis_link *l;
	struct evdns_getaddrinfo_request *req;
};

uint64_t
redis_link_now_ms(void)
{
	return clock_fine_ms();
}

void
redis_link_arm(struct event *ev, uint64_t ms)
{
	clock_timer_arm(ev, ms);
}

/* 80% to 120% of ms: instances that lost Redis together must not come back in lockstep. */
static uint64_t
redis_link_jitter(uint64_t ms)
{
	uint32_t r;

	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		return ms;
	return ms * (800 + r % 401) / 1000;
}

void
redis_link_internal_error(struct redis_link *l, const char *what)
{
#ifdef WSGATE_DEBUG
	fatalx("redis %s link: %s", l->name, what);
#endif
	METRIC_ADD(l->internal_errors, 1);
	log_warnx("redis %s link: internal error: %s", l->name, what);
}

int
redis_link_set_state(struct redis_link *l, enum redis_link_state to)
{
	/* Forward one step at a time (without sync, HANDSHAKE -> UP); down from anywhere but
	 * down. */
	int ok = to == REDIS_LINK_DOWN
	             ? l->state != REDIS_LINK_DOWN
	             : to == l->state + 1 || (l->state == REDIS_LINK_HANDSHAKE &&
	                                      to == REDIS_LINK_UP && !l->has_sync);
	char what[128];

	if (!ok) {
		snprintf(what, sizeof(what), "illegal transition %s -> %s; rebuilding it",
		         redis_link_state_names[l->state], redis_link_state_names[to]);
		redis_link_internal_error(l, what);
		if (l->state != REDIS_LINK_DOWN)
			redis_link_close(l, "internal error");
		else if (!evtimer_pending(l->timer, NULL))
			redis_link_arm(l->timer, REDIS_BACKOFF_START_MS);
		return -1;
	}
	/* Atomic: ready() and the metrics read it from the main loop. */
	__atomic_store_n(&l->state, to, __ATOMIC_RELAXED);
	return 0;
}

int
redis_link_up(struct redis_link *l)
{
	if (redis_link_set_state(l, REDIS_LINK_UP) < 0)
		return -1;
	event_del(l->timer); /* the connect deadline */
	l->backoff_ms = REDIS_BACKOFF_START_MS;
	return 0;
}

static void
redis_link_cancel_dns(struct redis_link *l)
{
	struct redis_link_dns *d = l->dns;

	if (d == NULL)
		return;
	l->dns = NULL;
	d->l = NULL; /* the callback, now or later, only frees d */
	if (d->req != NULL)
		evdns_getaddrinfo_cancel(d->req);
}

/* Drops the connection, the reader and the FIFO (see the ownership note at the top). */
static void
redis_link_drop(struct redis_link *l)
{
	struct redis_link_cmd *c;

	l->gen++;
	if (l->bev != NULL) {
		bufferevent_free(l->bev);
		l->bev = NULL;
	}
	if (l->reader != NULL) {
		redisReaderFree(l->reader);
		l->reader = NULL;
	}
	while ((c = STAILQ_FIRST(&l->fifo)) != NULL) {
		STAILQ_REMOVE_HEAD(&l->fifo, entry);
		free(c);
	}
	l->skip = 0;
	l->stream_left = l->stream_data = 0;
	l->streamed = 0;
	l->partial_ms = 0;
	l->progress_ms = 0;
}

void
redis_link_close(struct redis_link *l, const char *reason)
{
	enum redis_link_state was = l->state;
	uint64_t delay, cap;
	char extra[64] = "";

	if (was == REDIS_LINK_DOWN)
		return;
	redis_link_cancel_dns(l);
	redis_link_drop(l);
	redis_link_set_state(l, REDIS_LINK_DOWN);
	l->ops->down(l, was, extra, sizeof(extra));
	if (l->loc != NULL && l->loc->lost != NULL)
		l->loc->lost(l->loc_arg, l, reason);

	cap = l->reconnect_max_ms > 0 ? l->reconnect_max_ms : REDIS_BACKOFF_START_MS;
	delay = redis_link_jitter(l->backoff_ms < cap ? l->backoff_ms : cap);
	l->backoff_ms = l->backoff_ms * 2 < cap ? l->backoff_ms * 2 : cap;
	METRIC_ADD(l->reconnects, 1);
	redis_link_arm(l->timer, delay);
	if (was == REDIS_LINK_UP)
		log_warnx("redis %s link down: %s%s; retry in %llu ms", l->name, reason, extra,
		          (unsigned long long)delay);
	else
		log_warnx("redis %s link to %s:%d failed (%s): %s%s; retry in %llu ms", l->name,
		          l->host, l->port, redis_link_state_names[was], reason, extra,
		          (unsigned long long)delay);
}

void
redis_link_fail(struct redis_link *l, const char *why)
{
	char reason[320];

	METRIC_ADD(l->protocol_errors, 1);
	snprintf(reason, sizeof(reason), "protocol error: %s", why);
	redis_link_close(l, reason);
}

/* ---- reading: the reader, its bound, the FIFO and pushes ---- */

/* Hands every complete reply to the command it answers, or to the push hook. Returns 0, or -1
 * when the link was closed meanwhile (by us or by a callback). */
static int
redis_link_dispatch(struct redis_link *l)
{
	uint64_t gen = l->gen;
	struct redis_link_cmd *c;
	void *r;
	char why[160];

	for (;;) {
		if (redisReaderGetReply(l->reader, &r) != REDIS_OK) {
			redis_link_fail(l, redis_reader_error(l->reader, why, sizeof(why)));
			return -1;
		}
		if (r == NULL)
			return 0;
		why[0] = '\0';
		if ((c = STAILQ_FIRST(&l->fifo)) != NULL) {
			redis_link_reply_fn fn = c->fn;
			void *arg = c->arg;

			STAILQ_REMOVE_HEAD(&l->fifo, entry);
			free(c);
			fn(l, r, arg);
		} else if (l->ops->push == NULL) {
			/* hiredis 0.14 asserted here (async.c:478). */
			redis_link_fail(l, "a reply to no command");
		} else if (l->ops->push(l, r, why, sizeof(why)) < 0) {
			redis_link_fail(l, why[0] != '\0' ? why : "unexpected push");
		}
		freeReplyObject(r);
		if (gen != l->gen)
			return -1;
	}
}

/* After the reader parsed what it could: what it holds unparsed is one incomplete reply item
 * starting at pos (it parses each complete one at once); it may already have taken the item's
 * type byte ('$'), leaving the current task typed as a string. When that item is a bulk string
 * announcing more than max_reply, it is never buffered: the reader gets a nil in its place (a
 * nil message payload is ignored by the owner) and the bulk's bytes are discarded as they come.
 * Anything else that large is not something Redis sends us: the link is rebuilt. Returns 0, or
 * -1 when the link was closed. */
static int
redis_link_bound_reader(struct redis_link *l)
{
	redisReader *r = l->reader;
	size_t pending = r->len - r->pos, i, start;
	const char *p = r->buf + r->pos;
	uint64_t m = 0, total;
	int typed = r->ridx >= 0 && r->rstack[r->ridx].type == REDIS_REPLY_STRING;

	if (pending == 0)
		return 0;
	l->partial_ms = redis_link_now_ms(); /* a reply on its way: the link moves */
	if (p[0] == '$' || typed) {
		start = p[0] == '$' && !typed ? 1 : 0;
		for (i = start; i < pending && i < start + 20 && p[i] >= '0' && p[i] <= '9'; i++)
			m = m * 10 + (uint64_t)(p[i] - '0');
		if (i > start && i + 1 < pending && p[i] == '\r' && p[i + 1] == '\n' &&
		    m > l->max_reply) {
			total = (i + 2) + m + 2; /* header, payload, CRLF */
			sdsIncrLen(r->buf, -(int)pending);
			r->len = r->pos;
			if (redisReaderFeed(r, start ? "$-1\r\n" : "-1\r\n", start ? 5 : 4) !=
			    REDIS_OK) {
				redis_link_close(l, "cannot skip an oversized message");
				return -1;
			}
			l->skip = total - pending;
			l->ops->oversized(l, m);
			/* The nil may complete a reply (the message push): hand it on. */
			return redis_link_dispatch(l);
		}
		/* A large bulk that is allowed: the owner may take it as it streams in (see
		 * stream_begin), so no single loop turn copies it whole. What the reader holds of
		 * it is handed on now and the reader forgets it; the nil goes in when the last
		 * byte came (redis_link_stream). */
		total = (i + 2) + m + 2;
		if (i > start && i + 1 < pending && p[i] == '\r' && p[i + 1] == '\n' &&
		    m <= l->max_reply && m >= REDIS_LINK_STREAM_MIN && pending < total &&
		    l->ops->stream_begin != NULL && l->ops->stream_begin(l, m) == 0) {
			size_t have = pending - (i + 2);

			if (have > m)
				have = (size_t)m; /* the CRLF's first byte */
			if (have > 0)
				l->ops->stream_data(l, (const uint8_t *)p + i + 2, have);
			l->stream_data = m - have;
			l->stream_left = total - pending;
			l->stream_typed = !start;
			sdsIncrLen(r->buf, -(int)pending);
			r->len = r->pos;
			return 0;
		}
		/* A large message that is allowed: room for all of it at once. sds would grow
		 * by 1 MiB per step, copying the whole buffer each time (quadratic). Only for a
		 * complete header within the bound: the length is the peer's word. */
		total = (i + 2) + m + 2;
		if (i > start && i + 1 < pending && p[i] == '\r' && p[i + 1] == '\n' &&
		    m <= l->max_reply && total > REDIS_REPLY_SLACK &&
		    sdsavail(r->buf) < total - pending) {
			sds grown = sdsMakeRoomFor(r->buf, total - pending);

			if (grown != NULL)
				r->buf = grown;
		}
	}
	if (pending > l->max_reply + REDIS_REPLY_SLACK) {
		redis_link_fail(l, "a reply larger than max_message_size");
		return -1;
	}
	return 0;
}

/* Takes the next bytes of a streamed bulk from in (one contiguous piece); when the last came,
 * the reader gets the nil in its place and the reply is handed on with l->streamed set.
 * Returns 0, 1 when in had nothing to take, or -1 when the link was closed meanwhile. */
static int
redis_link_stream(struct redis_link *l, struct evbuffer *in)
{
	struct evbuffer_iovec v;
	size_t n, d;
	int rc;

	if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
		return 1;
	n = v.iov_len < l->stream_left ? v.iov_len : (size_t)l->stream_left;
	d = n < l->stream_data ? n : (size_t)l->stream_data;
	if (d > 0)
		l->ops->stream_data(l, v.iov_base, d);
	l->stream_data -= d;
	l->stream_left -= n;
	evbuffer_drain(in, n);
	l->partial_ms = redis_link_now_ms();
	if (l->stream_left > 0)
		return 0;
	if (redisReaderFeed(l->reader, l->stream_typed ? "-1\r\n" : "$-1\r\n",
	                    l->stream_typed ? 4 : 5) != REDIS_OK) {
		redis_link_close(l, "out of memory");
		return -1;
	}
	l->streamed = 1;
	rc = redis_link_dispatch(l);
	l->streamed = 0;
	return rc;
}

static void
redis_link_readcb(struct bufferevent *bev, void *arg)
{
	struct redis_link *l = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v;
	size_t n;

	l->progress_ms = redis_link_now_ms();
	while (l->bev == bev && evbuffer_get_length(in) > 0) {
		if (l->skip > 0) {
			n = evbuffer_get_length(in);
			if (n > l->skip)
				n = (size_t)l->skip;
			evbuffer_drain(in, n);
			l->skip -= n;
			l->partial_ms = redis_link_now_ms();
			continue;
		}
		if (l->stream_left > 0) {
			int rc = redis_link_stream(l, in);

			if (rc < 0)
				return;
			if (rc > 0)
				break;
			continue;
		}
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			break;
		n = v.iov_len < REDIS_FEED_SLICE ? v.iov_len : REDIS_FEED_SLICE;
		if (redisReaderFeed(l->reader, v.iov_base, n) != REDIS_OK) {
			redis_link_close(l, "out of memory");
			return;
		}
		evbuffer_drain(in, n);
		if (redis_link_dispatch(l) < 0 || redis_link_bound_reader(l) < 0)
			return;
	}
}

/* ---- Sentinel mode: a node is a master before anything is written to it ---- */

static void
redis_link_on_role(struct redis_link *l, const redisReply *r, void *arg)
{
	char reason[160];

	(void)arg;
	if (l->state != REDIS_LINK_HANDSHAKE)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(reason, sizeof(reason), "ROLE refused: %.*s", (int)r->len, r->str);
		redis_link_close(l, reason);
	} else if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
	           (r->element[0]->type != REDIS_REPLY_STRING &&
	            r->element[0]->type != REDIS_REPLY_STATUS)) {
		redis_link_fail(l, "ROLE answered with something that is not a role");
	} else if (r->element[0]->len != 6 || memcmp(r->element[0]->str, "master", 6) != 0) {
		/* A replica (or a demoted master) would take PUBLISH and tell only its own
		 * subscribers: never write there. */
		snprintf(reason, sizeof(reason), "%s:%d is not a master (role %.*s)", l->host,
		         l->port, (int)(r->element[0]->len < 32 ? r->element[0]->len : 32),
		         r->element[0]->str);
		redis_link_close(l, reason);
	} else {
		l->ops->connected(l);
	}
}

static void
redis_link_on_role_auth(struct redis_link *l, const redisReply *r, void *arg)
{
	char reason[160];

	(void)arg;
	if (l->state != REDIS_LINK_HANDSHAKE || r->type != REDIS_REPLY_ERROR)
		return; /* +OK: ROLE's answer follows */
	snprintf(reason, sizeof(reason), "AUTH refused: %.*s", (int)r->len, r->str);
	redis_link_close(l, reason);
}

/* AUTH (ROLE needs it when Redis has a password) and ROLE, pipelined; the owner's handshake
 * starts once ROLE says master. */
static void
redis_link_check_role(struct redis_link *l)
{
	const char *argv[2];
	size_t lens[2];
	int rc = 0;

	if (l->password != NULL) {
		argv[0] = "AUTH", lens[0] = 4;
		argv[1] = l->password, lens[1] = strlen(l->password);
		rc = redis_link_command(l, 2, argv, lens, redis_link_on_role_auth, NULL);
	}
	argv[0] = "ROLE", lens[0] = 4;
	if (rc != 0 || redis_link_command(l, 1, argv, lens, redis_link_on_role, NULL) != 0)
		redis_link_close(l, "ROLE could not be queued");
}

static void
redis_link_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct redis_link *l = arg;
	char reason[160];
	int err = EVUTIL_SOCKET_ERROR();

	if (l->bev != bev)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		l->progress_ms = redis_link_now_ms();
		int one = 1;

		if (l->state != REDIS_LINK_CONNECTING) {
			redis_link_internal_error(l, "connected while not connecting");
			redis_link_close(l, "internal error");
			return;
		}
		(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one,
		                 sizeof(one));
		if (redis_link_set_state(l, REDIS_LINK_HANDSHAKE) < 0)
			return;
		if (l->verify_role)
			redis_link_check_role(l);
		else
			l->ops->connected(l);
		return;
	}
	if (l->tls != NULL && upstream_tls_error(bev, reason, sizeof(reason)))
		;
	else if (what & BEV_EVENT_EOF)
		snprintf(reason, sizeof(reason), "connection closed");
	else
		snprintf(reason, sizeof(reason), "%s", evutil_socket_error_to_string(err));
	redis_link_close(l, reason);
}

/* ---- connecting: resolve without blocking, then TCP ---- */

static void
redis_link_open(struct redis_link *l, const struct sockaddr *sa, int salen)
{
	if ((l->reader = redis_reader_new()) == NULL ||
	    (l->bev = l->tls != NULL
	                  ? upstream_tls_bev_new(l->base, l->tls,
	                                         l->tls_name != NULL ? l->tls_name : l->host)
	                  : bufferevent_socket_new(l->base, -1, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		redis_link_close(l, l->tls != NULL ? "cannot start TLS" : "out of memory");
		return;
	}
	bufferevent_setcb(l->bev, redis_link_readcb, NULL, redis_link_eventcb, l);
	bufferevent_set_max_single_read(l->bev, REDIS_READ_TURN);
	if (bufferevent_enable(l->bev, EV_READ | EV_WRITE) < 0 ||
	    bufferevent_socket_connect(l->bev, sa, salen) < 0) {
		char reason[160];

		snprintf(reason, sizeof(reason), "connect: %s",
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		redis_link_close(l, reason);
	}
}

/* The lookup's answer. d->l is NULL when the link gave it up (EVUTIL_EAI_CANCEL, or an answer
 * after a close); the link must still be CONNECTING with no connection, as it was armed. */
static void
redis_link_dns_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
	struct redis_link_dns *d = arg;
	struct redis_link *l = d->l;
	struct sockaddr_storage ss;
	int salen = 0;
	char why[320];

	free(d);
	if (l == NULL || l->state != REDIS_LINK_CONNECTING || l->bev != NULL) {
		if (ai != NULL)
			evutil_freeaddrinfo(ai);
		return;
	}
	l->dns = NULL;
	if (err == 0 && ai != NULL && ai->ai_addrlen <= sizeof(ss) &&
	    (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)) {
		memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
		salen = (int)ai->ai_addrlen;
	}
	if (ai != NULL)
		evutil_freeaddrinfo(ai);
	if (salen == 0) {
		snprintf(why, sizeof(why), "cannot resolve %s: %s", l->host,
		         err != 0 ? evutil_gai_strerror(err) : "no address");
		redis_link_close(l, why);
		return;
	}
	redis_link_open(l, (struct sockaddr *)&ss, salen);
}

void
redis_link_connect(struct redis_link *l)
{
	struct evutil_addrinfo hints, *ai = NULL;
	struct evdns_getaddrinfo_request *req;
	struct redis_link_dns *d;
	char port[16];

	if (l->loc != NULL) {
		const char *h;
		int p;

		if (l->state != REDIS_LINK_DOWN) {
			redis_link_internal_error(l, "connect while not down");
			return;
		}
		/* Nothing known yet: wait DOWN, without a timer, for redis_link_kick(). */
		if (l->loc->locate(l->loc_arg, l, &h, &p) < 0)
			return;
		snprintf(l->loc_host, sizeof(l->loc_host), "%s", h);
		l->host = l->loc_host;
		l->port = p;
	}
	if (redis_link_set_state(l, REDIS_LINK_CONNECTING) < 0)
		return;
	/* Ours runs until the link is up, so a lookup or a server that accepts but never answers
	 * (stopped, overloaded) is given up as well. */
	if (l->connect_timeout_ms > 0)
		redis_link_arm(l->timer, l->connect_timeout_ms);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", l->port);
	if (evutil_getaddrinfo(l->host, port, &hints, &ai) == 0 && ai != NULL) {
		struct sockaddr_storage ss;
		int salen = (int)ai->ai_addrlen;

		memcpy(&ss, ai->ai_addr,
		       ai->ai_addrlen <= sizeof(ss) ? ai->ai_addrlen : sizeof(ss));
		evutil_freeaddrinfo(ai);
		redis_link_open(l, (struct sockaddr *)&ss, salen);
		return;
	}
	if (*l->dnsp == NULL) {
		if ((*l->dnsp = evdns_base_new(l->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
		                                            EVDNS_BASE_DISABLE_WHEN_INACTIVE)) ==
		    NULL) {
			redis_link_close(l, "cannot start the DNS resolver");
			return;
		}
		/* libevent randomizes the case of each query name and drops answers that do not
		 * echo it; container resolvers (podman's aardvark-dns) answer in lower case, so
		 * every service name would fail to resolve. */
		(void)evdns_base_set_option(*l->dnsp, "randomize-case:", "0");
	}
	if ((d = calloc(1, sizeof(*d))) == NULL) {
		redis_link_close(l, "out of memory");
		return;
	}
	d->l = l;
	l->dns = d;
	hints.ai_flags = EVUTIL_AI_NUMERICSERV | EVUTIL_AI_ADDRCONFIG;
	req = evdns_getaddrinfo(*l->dnsp, l->host, port, &hints, redis_link_dns_cb, d);
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
		uint64_t now = redis_link_now_ms();

		/* Liveness is progress. A handshake or a resubscription that keeps answering is
		 * alive however long the whole takes (thousands of channels on a loaded machine;
		 * a storm of new sessions on the same loop): the deadline counts from the last
		 * bytes Redis sent, and bytes still unread are our delay, not Redis' silence. A
		 * peer that accepts and never answers is still given up after connect_timeout. */
		if (redis_link_unread(l)) {
			redis_link_arm(l->timer, REDIS_LINK_GRACE_MS);
			return;
		}
		if (l->progress_ms != 0 && l->state != REDIS_LINK_CONNECTING &&
		    now - l->progress_ms < l->connect_timeout_ms) {
			redis_link_arm(l->timer, l->connect_timeout_ms - (now - l->progress_ms));
			return;
		}
		snprintf(reason, sizeof(reason), "no answer within connect_timeout (%llu ms)",
		         (unsigned long long)l->connect_timeout_ms);
		redis_link_close(l, reason);
	}
}

int
redis_link_unread(const struct redis_link *l)
{
	evutil_socket_t fd;
	int n = 0;

	if (l->bev == NULL)
		return 0;
	if (evbuffer_get_length(bufferevent_get_input(l->bev)) > 0)
		return 1;
	/* The receive queue: epoll hands a busy loop a bounded batch of ready sockets, so a
	 * deadline timer can run turns before the read that holds the awaited reply. */
	fd = bufferevent_getfd(l->bev);
	return fd >= 0 && ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

/* ---- writing ---- */

static void
redis_link_free_cmd(const void *data, size_t len, void *arg)
{
	(void)len, (void)arg;
	redisFreeCommand((char *)(uintptr_t)data);
}

int
redis_link_command(struct redis_link *l, int argc, const char **argv, const size_t *lens,
                   redis_link_reply_fn fn, void *arg)
{
	struct redis_link_cmd *c = NULL;
	char *cmd;
	int n;

	if (l->bev == NULL || l->state < REDIS_LINK_HANDSHAKE)
		return -1;
	if (fn != NULL && (c = malloc(sizeof(*c))) == NULL)
		return -1;
	if ((n = redisFormatCommandArgv(&cmd, argc, argv, lens)) < 0) {
		free(c);
		return -1;
	}
	/* No copy: the output buffer frees the command once written. */
	if (evbuffer_add_reference(bufferevent_get_output(l->bev), cmd, (size_t)n,
	                           redis_link_free_cmd, NULL) != 0) {
		redisFreeCommand(cmd);
		free(c);
		return -1;
	}
	if (c != NULL) {
		c->fn = fn;
		c->arg = arg;
		STAILQ_INSERT_TAIL(&l->fifo, c, entry);
	}
	return 0;
}

/* ---- life ---- */

void
redis_link_locate(struct redis_link *l, const struct redis_link_locator *loc, void *arg)
{
	l->loc = loc;
	l->loc_arg = arg;
	l->loc_host[0] = '\0';
	l->host = l->loc_host;
}

void
redis_link_kick(struct redis_link *l, int now)
{
	if (l->state != REDIS_LINK_DOWN)
		return;
	if (now) {
		event_del(l->timer);
		l->backoff_ms = REDIS_BACKOFF_START_MS;
		redis_link_arm(l->timer, 0);
	} else if (!evtimer_pending(l->timer, NULL)) {
		redis_link_arm(l->timer, redis_link_jitter(l->backoff_ms));
	}
}

int
redis_link_init(struct redis_link *l, const char *name, int has_sync,
                const struct redis_link_ops *ops, void *owner, struct event_base *base,
                struct evdns_base **dnsp, const char *host, int port, uint64_t connect_timeout_ms,
                uint64_t reconnect_max_ms, uint64_t max_reply)
{
	memset(l, 0, sizeof(*l));
	l->owner = owner;
	l->ops = ops;
	l->name = name;
	l->has_sync = has_sync;
	l->base = base;
	l->dnsp = dnsp;
	l->host = host;
	l->port = port;
	l->connect_timeout_ms = connect_timeout_ms;
	l->reconnect_max_ms = reconnect_max_ms;
	l->max_reply = max_reply;
	l->backoff_ms = REDIS_BACKOFF_START_MS;
	STAILQ_INIT(&l->fifo);
	if ((l->timer = evtimer_new(base, redis_link_timer, l)) == NULL)
		return -1;
	return 0;
}

void
redis_link_free(struct redis_link *l)
{
	redis_link_cancel_dns(l);
	redis_link_drop(l);
	if (l->timer != NULL) {
		event_free(l->timer);
		l->timer = NULL;
	}
}
