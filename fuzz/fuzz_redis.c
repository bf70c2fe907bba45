/* fuzz_redis.c - libFuzzer target for the Redis broker (broker_redis.c, redis_link.c) as Redis
 * talks to it: the real broker, with its own connections and hiredis' redisReader as
 * redis_link.c sets them up, connects over loopback to a server played by this file, which
 * answers from the fuzz input: pushes and replies as Redis sends them (huge, split at any byte,
 * out of order, for channels never subscribed, errors, EOF), malformed RESP, and the broker's
 * own calls (publish, subscribe, unsubscribe) interleaved. Checks: nothing crashes or leaks,
 * every delivered message is one the server sent on a channel the broker subscribed, byte for
 * byte, no more often than sent, and nothing is delivered once the broker is being freed.
 *
 * The bytes go through a real socket, so the broker's read path (bufferevent, reader, the
 * max_message_size skip) is the one that runs in production; no seam in the broker is needed.
 *
 * By default the input may also write any bytes to either link (RAW): replies Redis never
 * sends, shaped oddly. That once reached hiredis 0.14's async-layer assert()s (the redis-*
 * seeds in fuzz/corpus/redis/); now they are protocol errors that rebuild the link. With
 * WSGATE_FUZZ_REDIS_RAW=0 the server sends only what Redis can send (well-formed RESP shaped as
 * Redis shapes pushes and replies) plus byte-level garbage the reader must refuse, and the
 * delivery count is checked exactly. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker.h"
#include "broker_redis.h"
#include "config.h"
#include "hub.h"
#include "log.h"
#include "ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FZ_CHECK(c)                                                                                \
	do {                                                                                       \
		if (!(c)) {                                                                        \
			fprintf(stderr, "fuzz_redis: check failed: %s (line %d)\n", #c, __LINE__); \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define FZ_NCHAN 6
#define FZ_MAX_BYTES (4u << 20) /* server output per input, all links */

static const char *const fz_chans[FZ_NCHAN] = {"c0", "room:1", "c2", "wsgate:probe:fz",
                                               "x",  "never"};

struct fz_link {
	int fd;    /* server side, -1 when closed */
	char *out; /* bytes not yet written to the broker */
	size_t outlen, outcap;
	char in[65536]; /* what the broker sent, for counting commands */
	size_t inlen;
	int commands; /* commands seen (each one reply owed) */
	int answered; /* replies sent */
};

static struct {
	struct event_base *base;
	struct config cfg;
	int lfd;
	int raw;
	int subscribed[FZ_NCHAN]; /* the sink's channel set */
	uint64_t sent[FZ_NCHAN];  /* messages the server pushed per channel */
	uint64_t delivered;
	uint64_t got[FZ_NCHAN]; /* messages delivered per channel */
	int freeing;            /* free() runs: nothing may be delivered any more */
	struct fz_link sub, pub;
	size_t budget;
} fz;

static int
fz_chan_index(const char *ch, size_t n)
{
	for (int i = 0; i < FZ_NCHAN; i++)
		if (strlen(fz_chans[i]) == n && memcmp(fz_chans[i], ch, n) == 0)
			return i;
	return -1;
}

/* Message bodies are a pattern the sink can verify: byte i of a message with seed s. */
static char
fz_body_byte(uint8_t seed, size_t i)
{
	return (char)('a' + (seed + i) % 26);
}

static void
fz_deliver(void *arg, const char *channel, size_t clen, const uint8_t *data, size_t len)
{
	int k = fz_chan_index(channel, clen);

	(void)arg;
	FZ_CHECK(!fz.freeing);
	FZ_CHECK(k >= 0 && k != 3); /* the canary channel is never handed on */
	/* RAW bytes may carry messages of their own: counted only for what was built here. */
	FZ_CHECK(++fz.got[k] <= fz.sent[k] || fz.raw);
	/* The first bytes name the seed; the rest follow the pattern (ASan sees every byte). */
	if (len > 0) {
		uint8_t seed = (uint8_t)(data[0] - 'a');

		for (size_t i = 0; i < len; i++)
			FZ_CHECK(data[i] == (uint8_t)fz_body_byte(seed, i));
	}
	fz.delivered++;
}

static void
fz_foreach(void *arg, void (*fn)(void *, const char *, size_t), void *fnarg)
{
	(void)arg;
	for (int i = 0; i < FZ_NCHAN; i++)
		if (fz.subscribed[i])
			fn(fnarg, fz_chans[i], strlen(fz_chans[i]));
}

static size_t
fz_nchannels(void *arg)
{
	size_t n = 0;

	(void)arg;
	for (int i = 0; i < FZ_NCHAN; i++)
		n += fz.subscribed[i] != 0;
	return n;
}

/* A large message the broker framed as it streamed in: the same checks on its payload, and
 * the frame around it is whole. */
static void
fz_deliver_frame(void *arg, const char *channel, size_t clen, struct hub_frame *f, int is_text)
{
	struct ws_frame_hdr h;

	FZ_CHECK(ws_frame_decode(f->data, f->len, 0, 0, &h) == WS_FRAME_OK);
	FZ_CHECK(h.hdr_len + h.len == f->len && h.len == f->plen);
	FZ_CHECK(h.opcode == (is_text ? WS_OP_TEXT : WS_OP_BINARY));
	fz_deliver(arg, channel, clen, f->data + h.hdr_len, f->plen);
}

static const struct broker_sink fz_sink = {fz_deliver, fz_foreach, fz_nchannels, NULL,
                                           fz_deliver_frame};

static void
fz_on_up(void *arg)
{
	(void)arg;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);

	(void)argc;
	(void)argv;
	log_set_level(LOG_LVL_ERROR);
	signal(SIGPIPE, SIG_IGN); /* the broker writes to a socket the server may have reset */
	fz.raw = getenv("WSGATE_FUZZ_REDIS_RAW") == NULL ||
	         strcmp(getenv("WSGATE_FUZZ_REDIS_RAW"), "0") != 0;
	if ((fz.base = event_base_new()) == NULL)
		return 1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fz.lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    bind(fz.lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fz.lfd, 64) < 0 ||
	    getsockname(fz.lfd, (struct sockaddr *)&sa, &sl) < 0) {
		perror("fuzz_redis: listen");
		return 1;
	}
	strcpy(fz.cfg.redis.host, "127.0.0.1");
	snprintf(fz.cfg.redis.port, sizeof(fz.cfg.redis.port), "%d", ntohs(sa.sin_port));
	fz.cfg.redis.enabled = 1;
	fz.cfg.redis.publish_queue = 64 * 1024;
	fz.cfg.redis.probe_timeout_ms = 0;
	fz.cfg.redis.probe_interval_ms = 0; /* no canary timer: the input decides what arrives */
	fz.cfg.redis.connect_timeout_ms = 0;
	fz.cfg.redis.reconnect_max_ms = 60000;
	/* Below the largest message the input builds (~2 MiB): both delivery and the skip of an
	 * oversized message as it streams in are reached. */
	fz.cfg.redis.max_message_size = 1u << 20;
	return 0;
}

/* Runs the loop until nothing is pending (the broker's writes, reads, callbacks). */
static void
fz_pump(void)
{
	for (int i = 0; i < 4; i++)
		event_base_loop(fz.base, EVLOOP_NONBLOCK);
}

/* Reads what the broker sent on l and counts its commands (it sends each as a RESP array
 * of bulk strings; message bodies here never contain '*' at a line start). */
static void
fz_read(struct fz_link *l)
{
	char buf[16384];
	ssize_t n;

	if (l->fd < 0)
		return;
	while ((n = read(l->fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			char prev = l->inlen > 0 ? l->in[(l->inlen - 1) % sizeof(l->in)] : '\n';

			if (buf[i] == '*' && prev == '\n')
				l->commands++;
			l->in[l->inlen++ % sizeof(l->in)] = buf[i];
		}
	}
}

static void
fz_queue(struct fz_link *l, const char *p, size_t n)
{
	if (l->fd < 0 || n > fz.budget)
		return;
	fz.budget -= n;
	if (l->outlen + n > l->outcap) {
		size_t cap = l->outcap ? l->outcap : 4096;

		while (cap < l->outlen + n)
			cap *= 2;
		FZ_CHECK((l->out = realloc(l->out, cap)) != NULL);
		l->outcap = cap;
	}
	memcpy(l->out + l->outlen, p, n);
	l->outlen += n;
}

/* One RESP bulk string. */
static void
fz_queue_bulk(struct fz_link *l, const char *s, size_t n)
{
	char head[64];
	int h = snprintf(head, sizeof(head), "$%zu\r\n", n);

	fz_queue(l, head, (size_t)h);
	fz_queue(l, s, n);
	fz_queue(l, "\r\n", 2);
}

/* Writes up to n queued bytes (all when n is 0), pumping the loop while the broker reads. */
static void
fz_flush(struct fz_link *l, size_t n)
{
	size_t off = 0;
	int idle = 0;

	if (n == 0 || n > l->outlen)
		n = l->outlen;
	/* Bounded: a broker that stopped reading (link given up, not yet reaped) ends the write. */
	while (l->fd >= 0 && off < n && idle < 1000) {
		ssize_t w = send(l->fd, l->out + off, n - off, MSG_NOSIGNAL);

		if (w > 0) {
			off += (size_t)w;
			idle = 0;
		} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
			break; /* the broker hung up */
		} else {
			idle++;
		}
		fz_pump();
		fz_read(&fz.sub);
		fz_read(&fz.pub);
	}
	if (off < n)
		n = off; /* the rest stays queued (and is dropped with the link) */
	if (n > 0)
		memmove(l->out, l->out + n, l->outlen - n);
	l->outlen -= n;
}

static void
fz_close_link(struct fz_link *l)
{
	struct linger lg = {1, 0};

	if (l->fd < 0)
		return;
	/* RST: no TIME_WAIT piles up over millions of runs. */
	setsockopt(l->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(l->fd);
	l->fd = -1;
}

static int
fz_accept(void)
{
	struct pollfd pfd = {fz.lfd, POLLIN, 0};
	int fd, tries;

	/* The connect is non-blocking: libevent must run for the broker to finish it. */
	for (tries = 0; tries < 200; tries++) {
		fz_pump();
		if (poll(&pfd, 1, 5) == 1)
			break;
	}
	if (tries == 200 || (fd = accept(fz.lfd, NULL, NULL)) < 0)
		return -1;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/* Drops connections left in the backlog (a reconnect timer that fired on a slow run). */
static void
fz_drain_backlog(void)
{
	struct pollfd pfd = {fz.lfd, POLLIN, 0};
	int fd;

	while (poll(&pfd, 1, 0) == 1 && (fd = accept(fz.lfd, NULL, NULL)) >= 0) {
		struct fz_link l = {.fd = fd};

		fz_close_link(&l);
	}
}

/* A Redis-shaped reply for the pub link: what PUBLISH, SELECT or AUTH can get back. */
static void
fz_pub_reply(uint8_t k, uint8_t v)
{
	static const char *const errs[] = {
	    "-ERR wrong number of arguments\r\n", "-NOAUTH Authentication required.\r\n",
	    "-LOADING Redis is loading the dataset in memory\r\n",
	    "-READONLY You can't write against a read only replica.\r\n"};
	char num[32];

	switch (k % 6) {
	case 0:
		fz_queue(&fz.pub, "+OK\r\n", 5);
		break;
	case 1:
		fz_queue(&fz.pub, num, (size_t)snprintf(num, sizeof(num), ":%d\r\n", v));
		break;
	case 2:
		fz_queue(&fz.pub, errs[v % 4], strlen(errs[v % 4]));
		break;
	case 3:
		fz_queue(&fz.pub, "$-1\r\n", 5);
		break;
	case 4:
		fz_queue(&fz.pub, "*0\r\n", 4);
		break;
	default:
		fz_queue(&fz.pub, ":-9223372036854775808\r\n", 23);
		break;
	}
}

/* Byte-level garbage hiredis' reader must refuse at its first byte, so that it never counts as
 * a reply (the link then drops; it must not assert): type bytes RESP2 does not have (RESP3's
 * included, which hiredis 0.14 does not know), nesting deeper than the reader allows, and a
 * bulk length no one can send (the reader waits for it; later bytes are its body). */
static void
fz_garbage(struct fz_link *l, uint8_t k)
{
	static const char *const bad[] = {
	    "?what\r\n",
	    "\r\n",
	    "#t\r\n",
	    "%1\r\n+a\r\n+b\r\n",
	    ",1.5\r\n",
	    ">3\r\n",
	    "_\r\n",
	    "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
	    "$9999999999999999999999\r\n",
	    "\x00\r\n"};
	const char *s = bad[k % 10];

	fz_queue(l, s, k % 10 == 9 ? 3 : strlen(s));
}

/* ["message", channel, body] as Redis pushes it. len may be large (up to ~2 MiB). */
static void
fz_push_message(int k, size_t len, uint8_t seed)
{
	const char *ch = fz_chans[k];
	char *body;

	if (fz.sub.fd < 0 || len + 64 > fz.budget)
		return;
	FZ_CHECK((body = malloc(len + 1)) != NULL);
	for (size_t i = 0; i < len; i++)
		body[i] = fz_body_byte(seed % 26, i);
	fz_queue(&fz.sub, "*3\r\n$7\r\nmessage\r\n", 17);
	fz_queue_bulk(&fz.sub, ch, strlen(ch));
	fz_queue_bulk(&fz.sub, body, len);
	free(body);
	fz.sent[k]++;
}

static void
fz_push_confirm(const char *kind, int k, uint8_t count)
{
	const char *ch = fz_chans[k];
	char num[32];

	fz_queue(&fz.sub, "*3\r\n", 4);
	fz_queue_bulk(&fz.sub, kind, strlen(kind));
	fz_queue_bulk(&fz.sub, ch, strlen(ch));
	fz_queue(&fz.sub, num, (size_t)snprintf(num, sizeof(num), ":%u\r\n", count));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct broker *b;
	struct broker_redis_stats st;
	size_t i = 0;
	int a, c, k;
	uint8_t pubdata[256];

	if (size < 1)
		return 0;
	memset(fz.subscribed, 0, sizeof(fz.subscribed));
	memset(fz.sent, 0, sizeof(fz.sent));
	memset(fz.got, 0, sizeof(fz.got));
	fz.delivered = 0;
	fz.freeing = 0;
	fz.budget = FZ_MAX_BYTES;
	for (k = 0; k < FZ_NCHAN; k++)
		fz.subscribed[k] = k != 3 && (data[0] >> k) & 1;
	i = 1;

	b = broker_redis_new(&fz_sink, NULL, fz.base, &fz.cfg, "fz", fz_on_up, NULL);
	FZ_CHECK(b != NULL);
	/* Which accepted socket is which: sub sends SUBSCRIBE, pub sends SELECT. */
	fz.sub.fd = fz.pub.fd = -1;
	fz.sub.inlen = fz.pub.inlen = 0;
	fz.sub.commands = fz.pub.commands = 0;
	fz.sub.answered = fz.pub.answered = 0;
	fz.sub.outlen = fz.pub.outlen = 0;
	a = fz_accept();
	c = fz_accept();
	FZ_CHECK(a >= 0 && c >= 0);
	{
		struct fz_link la = {.fd = a}, lc = {.fd = c};
		int spins;

		for (spins = 0; spins < 200 && (la.inlen == 0 || lc.inlen == 0); spins++) {
			fz_pump();
			fz_read(&la);
			fz_read(&lc);
			if (la.inlen == 0 || lc.inlen == 0)
				poll(NULL, 0, 1);
		}
		FZ_CHECK(la.inlen > 0 && lc.inlen > 0);
		if (memmem(la.in, la.inlen < sizeof(la.in) ? la.inlen : sizeof(la.in), "SUBSCRIBE",
		           9) != NULL) {
			fz.sub.fd = a;
			fz.pub.fd = c;
			memcpy(fz.sub.in, la.in, sizeof(la.in));
			memcpy(fz.pub.in, lc.in, sizeof(lc.in));
			fz.sub.inlen = la.inlen, fz.sub.commands = la.commands;
			fz.pub.inlen = lc.inlen, fz.pub.commands = lc.commands;
		} else {
			fz.sub.fd = c;
			fz.pub.fd = a;
			memcpy(fz.sub.in, lc.in, sizeof(lc.in));
			memcpy(fz.pub.in, la.in, sizeof(la.in));
			fz.sub.inlen = lc.inlen, fz.sub.commands = lc.commands;
			fz.pub.inlen = la.inlen, fz.pub.commands = la.commands;
		}
	}

	while (i < size) {
		uint8_t op = data[i++];
		uint8_t x = i < size ? data[i++] : 0;
		uint8_t y = i < size ? data[i++] : 0;
		int ch = x % FZ_NCHAN;

		switch (op % 16) {
		case 0: /* a message, small */
			fz_push_message(ch, y, x);
			break;
		case 1: /* a message, large: up to ~2 MiB (read in slices, skipped or not) */
			fz_push_message(ch, (size_t)y << 13 | x, y);
			break;
		case 2:
			fz_push_confirm("subscribe", ch, y);
			break;
		case 3: /* the canary channel is never unsubscribed: Redis counts at least 1 left */
			fz_push_confirm("unsubscribe", ch, fz.raw ? y : (uint8_t)(y | 1));
			break;
		case 4: /* a reply the pub link is owed (never one it is not: see RAW) */
			fz_read(&fz.pub);
			if (fz.pub.answered < fz.pub.commands) {
				fz_pub_reply(x, y);
				fz.pub.answered++;
			}
			break;
		case 5: /* what Redis answers on a subscribed link besides pushes */
			fz_queue(&fz.sub, y & 1 ? "+PONG\r\n" : ":1\r\n", y & 1 ? 7 : 4);
			break;
		case 6:
			fz_garbage(x & 1 ? &fz.sub : &fz.pub, y);
			break;
		case 7: /* the broker publishes */
			for (size_t j = 0; j < sizeof(pubdata); j++)
				pubdata[j] = (uint8_t)fz_body_byte(y, j);
			(void)b->ops->publish(b, fz_chans[ch], strlen(fz_chans[ch]), pubdata,
			                      y % sizeof(pubdata));
			break;
		case 8:
			if (ch != 3) {
				fz.subscribed[ch] = 1;
				(void)b->ops->subscribe(b, fz_chans[ch], strlen(fz_chans[ch]));
			}
			break;
		case 9:
			if (ch != 3 && fz.subscribed[ch]) {
				fz.subscribed[ch] = 0;
				b->ops->unsubscribe(b, fz_chans[ch], strlen(fz_chans[ch]));
			}
			break;
		case 10: /* part of what is queued: replies cut at any byte */
			fz_flush(x & 1 ? &fz.sub : &fz.pub, (size_t)y + 1);
			break;
		case 11:
			fz_flush(&fz.sub, 0);
			fz_flush(&fz.pub, 0);
			break;
		case 12: /* Redis goes away */
			if (x & 1) {
				fz_flush(&fz.sub, 0);
				fz_close_link(&fz.sub);
				fz_pump();
			} else {
				fz_flush(&fz.pub, 0);
				fz_close_link(&fz.pub);
				fz_pump();
			}
			break;
		case 13:
			(void)b->ops->ready(b);
			broker_redis_stats(b, &st);
			FZ_CHECK(st.queue_bytes <= fz.cfg.redis.publish_queue);
			break;
		case 14: /* an error on the sub link, as Redis sends for a refused command */
			fz_queue(&fz.sub, "-ERR max number of clients reached\r\n", 36);
			break;
		default: /* RAW: any bytes, on either link */
			if (fz.raw && i < size) {
				size_t n = (size_t)y < size - i ? (size_t)y : size - i;

				fz_queue(x & 1 ? &fz.sub : &fz.pub, (const char *)data + i, n);
				i += n;
			}
			break;
		}
	}
	fz_flush(&fz.sub, 0);
	fz_flush(&fz.pub, 0);
	fz_pump();
	broker_redis_stats(b, &st);
	FZ_CHECK(st.delivered == fz.delivered);
	fz_close_link(&fz.sub);
	fz_close_link(&fz.pub);
	fz_pump();
	fz.freeing = 1;
	b->ops->free(b);
	fz_pump();
	fz_drain_backlog();
	return 0;
}
