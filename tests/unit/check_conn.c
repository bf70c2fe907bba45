/* check_conn.c - the connection state machine on its own: one struct conn over a socketpair,
 * handed a fake environment (env.h) instead of a worker and a gateway, driven by the bytes a
 * client writes and by its timer, and checked by its state, what comes back on the socket and
 * the environment's callbacks (live/dead lists, counters). Possible since issue 13: conn.c
 * reaches nothing above env.h. */
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "check_runner.h"
#include "config.h"
#include "conn.h"
#include "broker.h"
#include "env.h"
#include "heartbeat.h"
#include "http.h"
#include "hub.h"
#include "limit.h"
#include "metrics.h"
#include "security.h"
#include "target.h"
#include "transport.h"
#include "upstream.h"
#include "ws_frame.h"
#include "ws_outq.h"

static struct fake {
	struct env env;
	struct event_base *base;
	struct config *cfg;
	const struct config *cur;
	struct worker_stats stats;
	struct upstream_registry *upstreams;
	uint8_t draining;
	enum env_readiness ready;
	uint64_t next_id;
	int added, dead;
	struct conn *c; /* the one connection, until freed */
	int peer;       /* the client's end of the socketpair */
	int listener;   /* the proxy tests' backend: listening socket, then the accepted one */
	int backend;
	char scratch[4096];
} fk;

static uint64_t
fk_next_id(void *arg)
{
	(void)arg;
	return ++fk.next_id;
}

static const struct config *
fk_config_hold(void *arg)
{
	(void)arg;
	return config_hold(fk.cur);
}

static void
fk_conn_add(void *arg, struct conn *c)
{
	(void)arg;
	(void)c;
	fk.added++;
}

static void
fk_conn_dead(void *arg, struct conn *c)
{
	(void)arg;
	ck_assert_ptr_eq(c, fk.c);
	ck_assert_int_eq(c->state, CONN_CLOSED);
	fk.dead++;
}

static char *
fk_scratch(void *arg, size_t n)
{
	(void)arg;
	return n <= sizeof(fk.scratch) ? fk.scratch : NULL;
}

static enum env_readiness
fk_readiness(void *arg)
{
	(void)arg;
	return fk.ready;
}

static const char *conf_plain =
    "[gateway]\nlisten = 127.0.0.1:1\nhandshake_timeout = 200ms\nlog_level = error\n"
    "[route /echo]\ntype = echo\n";
static const char *conf_heartbeat =
    "[gateway]\nlisten = 127.0.0.1:1\nlog_level = error\n"
    "[heartbeat]\nping_interval = 100ms\npong_timeout = 5s\nidle_timeout = 400ms\n"
    "app_message = tick\n"
    "[route /echo]\ntype = echo\n";
static const char *conf_pubsub = "[gateway]\nlisten = 127.0.0.1:1\nlog_level = error\n"
                                 "[route /chat]\ntype = pubsub\nsubscribe = chat\npublish = chat\n";
/* The state table's: a handshake timer that fires only when the test fires it (a loaded
 * machine must not turn "nothing happens yet" into a 408). */
static const char *conf_states =
    "[gateway]\nlisten = 127.0.0.1:1\nhandshake_timeout = 60s\nlog_level = error\n"
    "[route /echo]\ntype = echo\n";
static const char *conf_text;

static void setup(void);

static void
setup_plain(void)
{
	conf_text = conf_plain;
	setup();
}

static void
setup_states(void)
{
	conf_text = conf_states;
	setup();
}

static void
setup_heartbeat(void)
{
	conf_text = conf_heartbeat;
	setup();
}

/* A proxy route to a backend played by the test on a loopback listener. */
static char conf_proxy[256];

static void
setup_proxy(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(l, 4), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)&sin, &len), 0);
	snprintf(conf_proxy, sizeof(conf_proxy),
	         "[gateway]\nlisten = 127.0.0.1:1\nlog_level = error\n"
	         "[heartbeat]\nping_interval = 0\n"
	         "[route /app]\ntype = proxy\nbackend = ws://127.0.0.1:%u/x\n",
	         (unsigned)ntohs(sin.sin_port));
	conf_text = conf_proxy;
	setup();
	fk.listener = l;
}

/* A pubsub route over a real hub and a lone in-process broker (no other worker). */
static void
setup_pubsub(void)
{
	conf_text = conf_pubsub;
	setup();
	fk.env.hub = hub_new(target_pubsub_deliver);
	ck_assert_ptr_nonnull(fk.env.hub);
	fk.env.broker = broker_local_new(fk.env.hub, NULL);
	ck_assert_ptr_nonnull(fk.env.broker);
	hub_set_broker(fk.env.hub, fk.env.broker);
}

static void
setup(void)
{
	struct config_errors errs = {NULL, 0};
	static const uint8_t seed[16];
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(40000)};
	struct transport *tr;
	int sv[2];

	memset(&fk, 0, sizeof(fk));
	fk.listener = fk.backend = -1;
	fk.base = event_base_new();
	ck_assert_ptr_nonnull(fk.base);
	ck_assert_int_eq(config_load_string("t.ini", conf_text, &fk.cfg, &errs), 0);
	fk.cur = fk.cfg;
	fk.env.base = fk.base;
	fk.env.wheel = timer_wheel_new(fk.base);
	ck_assert_ptr_nonnull(fk.env.wheel);
	fk.env.stats = &fk.stats;
	fk.env.upstreams = &fk.upstreams;
	fk.env.cfg = &fk.cur;
	fk.env.draining = &fk.draining;
	fk.env.limits = limit_new(0, seed);
	fk.env.sec = security_new(fk.cfg);
	ck_assert_ptr_nonnull(fk.env.sec);
	fk.env.instance_id = "test";
	fk.env.next_conn_id = fk_next_id;
	fk.env.config_hold = fk_config_hold;
	fk.env.conn_add = fk_conn_add;
	fk.env.conn_dead = fk_conn_dead;
	fk.env.scratch = fk_scratch;
	fk.env.readiness = fk_readiness;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	fk.peer = sv[1];
	tr = transport_server_new(fk.base, sv[0], NULL);
	ck_assert_ptr_nonnull(tr);
	fk.c = conn_new(&fk.env, tr, (struct sockaddr *)&sin, sizeof(sin));
	ck_assert_ptr_nonnull(fk.c);
	ck_assert_int_eq(fk.added, 1);
	ck_assert_int_eq(fk.c->state, CONN_HANDSHAKE);
}

static void
teardown(void)
{
	if (fk.c != NULL) {
		if (fk.c->state != CONN_CLOSED)
			conn_close(fk.c, "test over");
		conn_free(fk.c);
	}
	upstream_registry_free(fk.upstreams);
	if (fk.backend >= 0)
		close(fk.backend);
	if (fk.listener >= 0)
		close(fk.listener);
	close(fk.peer);
	if (fk.env.hub != NULL) {
		fk.env.broker->ops->free(fk.env.broker);
		hub_free(fk.env.hub);
	}
	security_free(fk.env.sec);
	limit_free(fk.env.limits);
	config_release(fk.cfg);
	timer_wheel_free(fk.env.wheel);
	event_base_free(fk.base);
}

/* A few loop turns: the bytes written reach the connection, its answers reach the socket. */
static void
turn(int n)
{
	while (n-- > 0)
		event_base_loop(fk.base, EVLOOP_NONBLOCK);
}

/* Everything the connection wrote so far (NUL-terminated for the HTTP checks). */
static size_t
peer_read(uint8_t *buf, size_t cap)
{
	size_t got = 0;
	ssize_t n;

	while (got < cap - 1 && (n = read(fk.peer, buf + got, cap - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	return got;
}

static void
peer_write(const void *p, size_t n)
{
	ck_assert_int_eq(write(fk.peer, p, n), (ssize_t)n);
	turn(3);
}

static const char upgrade[] =
    "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";
static const char upgrade_chat[] =
    "GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

/* One client frame, masked unless mask is 0. */
static size_t
client_frame(uint8_t *out, unsigned opcode, const void *payload, size_t len, int mask)
{
	static const uint8_t key[4] = {1, 2, 3, 4};
	size_t h = ws_frame_encode(out, 1, 0, opcode, len, mask ? key : NULL);

	for (size_t i = 0; i < len; i++)
		out[h + i] = ((const uint8_t *)payload)[i] ^ (mask ? key[i & 3] : 0);
	return h + len;
}

/* The first frame in buf (n bytes) is a close frame with code; masked: the gateway's client
 * role wrote it (towards the backend). */
static void
assert_close(const uint8_t *buf, size_t n, unsigned code, int masked)
{
	const uint8_t *p = buf + 2 + (masked ? 4 : 0);

	ck_assert_uint_ge(n, (size_t)(p + 2 - buf));
	ck_assert_int_eq(buf[0], 0x88);
	ck_assert_int_eq((buf[1] & 0x80) != 0, masked);
	ck_assert_uint_eq(
	    (unsigned)(((p[0] ^ (masked ? buf[2] : 0)) << 8) | (p[1] ^ (masked ? buf[3] : 0))),
	    code);
}

static void
open_session(void)
{
	uint8_t buf[1024];

	peer_write(upgrade, sizeof(upgrade) - 1);
	peer_read(buf, sizeof(buf));
	ck_assert_msg(strncmp((char *)buf, "HTTP/1.1 101 ", 13) == 0, "got %s", buf);
	ck_assert(strstr((char *)buf, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != NULL);
	ck_assert_int_eq(fk.c->state, CONN_OPEN);
	ck_assert_uint_eq(fk.stats.upgraded, 1);
}

START_TEST(test_upgrade_echo_close)
{
	uint8_t f[64], buf[256];
	size_t n;

	open_session();
	n = client_frame(f, WS_OP_TEXT, "hi", 2, 1);
	peer_write(f, n);
	n = peer_read(buf, sizeof(buf));
	/* Server frames are not masked: 0x81 0x02 'h' 'i'. */
	ck_assert_uint_eq(n, 4);
	ck_assert_int_eq(buf[0], 0x81);
	ck_assert_int_eq(buf[1], 2);
	ck_assert_int_eq(memcmp(buf + 2, "hi", 2), 0);
	/* The client closes: the close is answered with the same code, then FIN. */
	n = client_frame(f, WS_OP_CLOSE, "\x03\xe8", 2, 1);
	peer_write(f, n);
	n = peer_read(buf, sizeof(buf));
	ck_assert_uint_ge(n, 4);
	ck_assert_int_eq(buf[0], 0x88);
	ck_assert_int_eq(buf[2], 0x03);
	ck_assert_int_eq(buf[3], 0xe8);
	ck_assert(fk.c->peer_closed);
	ck_assert(fk.c->state == CONN_FLUSHING || fk.c->state == CONN_CLOSED);
	shutdown(fk.peer, SHUT_WR);
	turn(5);
	ck_assert_int_eq(fk.c->state, CONN_CLOSED);
	ck_assert_int_eq(fk.dead, 1);
}
END_TEST

/* The end-of-turn writer (conn_flush.c) writes in the turn that queued the frame, and leaves no
 * write event armed: a socket bufferevent's output is frozen at the front between its own
 * writes, and a frozen evbuffer_write wrote nothing, so every frame waited for the write event
 * (a loop turn and an epoll_ctl pair later). */
START_TEST(test_flush_echo_in_the_same_turn)
{
	uint8_t f[64], buf[256];
	size_t n;

	open_session();
	n = client_frame(f, WS_OP_BINARY, "abc", 3, 1);
	ck_assert_int_eq(write(fk.peer, f, n), (ssize_t)n);
	/* One pass of the loop: one epoll_wait and the callbacks it made active. */
	event_base_loop(fk.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	n = peer_read(buf, sizeof(buf));
	ck_assert_uint_eq(n, 5);
	ck_assert_int_eq(buf[0], 0x82);
	ck_assert_int_eq(memcmp(buf + 2, "abc", 3), 0);
	ck_assert_int_eq(transport_write_pending(fk.c->tr), 0);
}
END_TEST

/* Every ioctl of the process, libevent's included (this definition comes first in symbol
 * lookup): FIONREAD asks are counted. */
static int fionread_asks;

int
ioctl(int fd, unsigned long req, ...)
{
	static int (*real)(int, unsigned long, ...);
	va_list ap;
	void *argp;

	va_start(ap, req);
	argp = va_arg(ap, void *);
	va_end(ap);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "ioctl");
	if (req == FIONREAD)
		fionread_asks++;
	return real(fd, req, argp);
}

/* A plain connection's read is one recv into the thread's buffer: no FIONREAD first (a libevent
 * socket bufferevent asked the kernel how much was readable before every read, a system call per
 * message: issue #12), and a message larger than one read (64 KiB) still arrives whole. */
START_TEST(test_plain_read_asks_nothing_first)
{
	static uint8_t f[100 * 1024 + 16], payload[100 * 1024], buf[100 * 1024 + 16];
	size_t n, got = 0;
	ssize_t r;

	open_session();
	fionread_asks = 0;
	n = client_frame(f, WS_OP_BINARY, "abc", 3, 1);
	ck_assert_int_eq(write(fk.peer, f, n), (ssize_t)n);
	event_base_loop(fk.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_uint_eq(peer_read(buf, sizeof(buf)), 5);
	ck_assert_int_eq(fionread_asks, 0);
	memset(payload, 'z', sizeof(payload));
	n = client_frame(f, WS_OP_BINARY, payload, sizeof(payload), 1);
	ck_assert_int_eq(write(fk.peer, f, n), (ssize_t)n);
	for (int i = 0; i < 50 && got < sizeof(payload) + 10; i++) {
		event_base_loop(fk.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		while ((r = read(fk.peer, buf + got, sizeof(buf) - got)) > 0)
			got += (size_t)r;
	}
	ck_assert_uint_eq(got, sizeof(payload) + 10); /* a 64-bit length: 2 + 8 */
	ck_assert_int_eq(fionread_asks, 0);
}
END_TEST

/* RFC 6455 5.1: a client frame without a mask fails the connection with 1002. */
START_TEST(test_unmasked_frame_is_protocol_error)
{
	uint8_t f[64], buf[256];
	size_t n;

	open_session();
	n = client_frame(f, WS_OP_TEXT, "hi", 2, 0);
	peer_write(f, n);
	n = peer_read(buf, sizeof(buf));
	assert_close(buf, n, 1002, 0);
	ck_assert_uint_eq(fk.stats.protocol_errors, 1);
	ck_assert(fk.c->state == CONN_CLOSING || fk.c->state == CONN_FLUSHING ||
	          fk.c->state == CONN_CLOSED);
}
END_TEST

/* A request that is not an upgrade is refused over HTTP; the connection flushes and closes. */
START_TEST(test_bad_request_refused)
{
	static const char req[] = "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n";
	uint8_t buf[1024];

	peer_write(req, sizeof(req) - 1);
	peer_read(buf, sizeof(buf));
	ck_assert_msg(strncmp((char *)buf, "HTTP/1.1 4", 10) == 0, "got %s", buf);
	ck_assert(fk.c->state == CONN_FLUSHING || fk.c->state == CONN_CLOSED);
	shutdown(fk.peer, SHUT_WR);
	turn(5);
	ck_assert_int_eq(fk.c->state, CONN_CLOSED);
	ck_assert_int_eq(fk.dead, 1);
}
END_TEST

/* /readyz on a client listener answers what the environment says (not a process global). */
START_TEST(test_readyz_asks_the_environment)
{
	static const char req[] = "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n";
	uint8_t buf[1024];

	fk.ready = ENV_DRAINING;
	peer_write(req, sizeof(req) - 1);
	peer_read(buf, sizeof(buf));
	ck_assert_msg(strncmp((char *)buf, "HTTP/1.1 503", 12) == 0, "got %s", buf);
	ck_assert(strstr((char *)buf, "draining") != NULL);
}
END_TEST

/* An upgrade that arrives after the process began shutting down, before this worker's drain
 * message reached it, is refused (503, Retry-After), not upgraded and closed with 1001 a moment
 * later (test_shutdown.py's test_new_connections_refused_after_signal, 1 run in the fresh
 * container). */
START_TEST(test_upgrade_refused_while_the_process_drains)
{
	uint8_t buf[1024];

	fk.ready = ENV_DRAINING; /* the process; fk.draining (this worker) still 0 */
	peer_write(upgrade, sizeof(upgrade) - 1);
	peer_read(buf, sizeof(buf));
	ck_assert_msg(strncmp((char *)buf, "HTTP/1.1 503", 12) == 0, "got %s", buf);
	ck_assert(strstr((char *)buf, "Retry-After: 1\r\n") != NULL);
	ck_assert_uint_eq(fk.stats.upgraded, 0);
	ck_assert(fk.c->state == CONN_FLUSHING || fk.c->state == CONN_CLOSED);
}
END_TEST

/* Silence during the handshake: the handshake timer closes it (HANDSHAKE -> CLOSED via
 * a 408 or a plain close), whatever the client does not do. */
START_TEST(test_handshake_timeout)
{
	struct timeval tv = {0, 300 * 1000};

	event_base_loopexit(fk.base, &tv);
	event_base_dispatch(fk.base);
	turn(3);
	ck_assert(fk.c->state == CONN_FLUSHING || fk.c->state == CONN_CLOSED);
}
END_TEST

/* A frame queued during a loop turn is written at that turn's end (conn_flush): on the socket
 * when the turn returns, the bufferevent's write event disarmed again. Before the flush thawed
 * the output that a socket bufferevent keeps frozen, its write failed without a syscall, and
 * the frame waited for the write event: an epoll_ctl to arm it, a wait, the write, another
 * epoll_ctl, per delivery. */
static void
send_in_turn(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	ck_assert_int_eq(conn_send(fk.c, WS_OP_TEXT, (const uint8_t *)"now", 3), 0);
}

START_TEST(test_flush_writes_in_the_same_turn)
{
	struct timeval zero = {0, 0};
	uint8_t buf[64];

	open_session();
	ck_assert_int_eq(event_base_once(fk.base, -1, EV_TIMEOUT, send_in_turn, NULL, &zero), 0);
	event_base_loop(fk.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	ck_assert_int_eq(read(fk.peer, buf, sizeof(buf)), 5);
	ck_assert_int_eq(buf[0], 0x81);
	ck_assert_int_eq(memcmp(buf + 2, "now", 3), 0);
	ck_assert_int_eq(conn_output_len(fk.c), 0);
	ck_assert(!transport_write_pending(fk.c->tr));
}
END_TEST

/* A backlogged turn's broadcast frames leave in one write (issue 12): at 1,000 subscribers x
 * 1,000 msg/s one turn queues hundreds of small shared frames per subscriber. Held by reference,
 * each was a chain of its own (an allocation, an iovec): a writev takes at most 128 of them, so
 * the turn's flush wrote 128 frames and the rest waited for the write event, and the chains'
 * allocations were most of the profile. Copied (conn_send_shared, <= CONN_SHARED_COPY_MAX), they
 * sit side by side and one write takes the turn's frames; a large frame still goes by
 * reference, released once written. */
#define TURN_FRAMES 300
#define TURN_FRAME_LEN 70
static int turn_released, turn_released_queued, turn_writes;

static void
turn_release(const void *frame, size_t len, void *arg)
{
	(void)frame;
	(void)len;
	(void)arg;
	turn_released++;
}

/* Each write the transport makes drains the output once. */
static void
turn_count_writes(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	(void)buf;
	(void)arg;
	if (info->n_deleted > 0)
		turn_writes++;
}

static void
send_turn_of_frames(evutil_socket_t fd, short what, void *arg)
{
	static uint8_t frame[TURN_FRAME_LEN];
	const uint8_t *big = arg;

	(void)fd;
	(void)what;
	frame[0] = 0x81;
	frame[1] = TURN_FRAME_LEN - 2;
	memset(frame + 2, 'm', TURN_FRAME_LEN - 2);
	for (int i = 0; i < TURN_FRAMES; i++)
		ck_assert_int_eq(conn_send_shared(fk.c, frame, sizeof(frame), turn_release, NULL),
		                 0);
	ck_assert_int_eq(conn_send_shared(fk.c, big, 4 + 2000, turn_release, NULL), 0);
	turn_released_queued = turn_released;
}

START_TEST(test_flush_turn_of_small_frames_in_one_write)
{
	static uint8_t big[4 + 2000], buf[TURN_FRAMES * TURN_FRAME_LEN + sizeof(big) + 64];
	struct timeval zero = {0, 0};
	size_t got = 0;
	ssize_t n;

	big[0] = 0x82;
	big[1] = 126;
	big[2] = 2000 >> 8;
	big[3] = 2000 & 0xff;
	open_session();
	turn_released = turn_writes = 0;
	ck_assert_ptr_nonnull(evbuffer_add_cb(transport_output(fk.c->tr), turn_count_writes, NULL));
	ck_assert_int_eq(event_base_once(fk.base, -1, EV_TIMEOUT, send_turn_of_frames, big, &zero),
	                 0);
	/* One pass of the loop: the callback queues the turn's frames, the turn's end writes. */
	event_base_loop(fk.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	while ((n = read(fk.peer, buf + got, sizeof(buf) - got)) > 0)
		got += (size_t)n;
	ck_assert_uint_eq(got, TURN_FRAMES * TURN_FRAME_LEN + sizeof(big));
	ck_assert_int_eq(turn_writes, 1);
	/* The small ones were copied (released as they were queued), the large one was held
	 * until written. */
	ck_assert_int_eq(turn_released_queued, TURN_FRAMES);
	ck_assert_int_eq(turn_released, TURN_FRAMES + 1);
	for (int i = 0; i < TURN_FRAMES; i++)
		ck_assert_int_eq(buf[i * TURN_FRAME_LEN], 0x81);
	ck_assert_int_eq(buf[TURN_FRAMES * TURN_FRAME_LEN], 0x82);
	ck_assert_int_eq(conn_output_len(fk.c), 0);
}
END_TEST

/* The public id: prefixed with the environment's instance id, stable for the connection. */
START_TEST(test_public_id)
{
	char a[64], b[64];

	ck_assert_ptr_nonnull(conn_public_id(fk.c, a, sizeof(a)));
	ck_assert_ptr_nonnull(conn_public_id(fk.c, b, sizeof(b)));
	ck_assert_str_eq(a, b);
	ck_assert_int_eq(strncmp(a, "test-", 5), 0);
	ck_assert_uint_eq(strlen(a), 5 + 32);
}
END_TEST

/* Let the loop run for ms (timers fire), then a few more turns. */
static void
run_for(unsigned ms)
{
	struct timeval tv = {0, (suseconds_t)ms * 1000};

	event_base_loopexit(fk.base, &tv);
	event_base_dispatch(fk.base);
	turn(3);
}

/* After ping_interval of silence a ping goes out carrying its send time; the client's pong
 * answers it (nothing outstanding) and gives a round trip. */
START_TEST(test_heartbeat_ping_and_pong)
{
	uint8_t buf[256], f[64];
	size_t n;

	open_session();
	run_for(250);
	n = peer_read(buf, sizeof(buf));
	ck_assert_uint_ge(n, 10);
	ck_assert_int_eq(buf[0], 0x89);
	ck_assert_int_eq(buf[1], 8);
	ck_assert(ws_outq_ping_outstanding(&fk.c->outq));
	n = client_frame(f, WS_OP_PONG, buf + 2, 8, 1);
	peer_write(f, n);
	ck_assert(!ws_outq_ping_outstanding(&fk.c->outq));
	ck_assert_uint_eq(fk.stats.rtt_count, 1);
	ck_assert_int_eq(fk.c->state, CONN_OPEN);
}
END_TEST

/* Pongs are not messages: with only pongs from the client, idle_timeout closes with 1001 and
 * is counted. */
START_TEST(test_heartbeat_idle_timeout)
{
	uint8_t buf[512];
	size_t n;
	int saw_close = 0;

	open_session();
	run_for(600);
	n = peer_read(buf, sizeof(buf));
	for (size_t i = 0; i + 1 < n;) {
		size_t len = buf[i + 1] & 0x7f;

		if (buf[i] == 0x88 && len >= 2 && i + 4 <= n)
			saw_close = ((buf[i + 2] << 8) | buf[i + 3]) == 1001;
		i += 2 + len;
	}
	ck_assert(saw_close);
	ck_assert_uint_eq(fk.stats.idle_timeouts, 1);
	ck_assert(fk.c->state == CONN_CLOSING || fk.c->state == CONN_CLOSED);
}
END_TEST

/* Draining: at the drain time the client gets close 1001 with a retry hint; the app_message
 * went out with the ping before it. The drain is set once the ping has gone: set ahead of time,
 * a loop that stalls ~50 ms (a loaded machine) made both fall due in one turn, and the drain
 * won (1 run in ~7). */
START_TEST(test_heartbeat_drain_and_app_message)
{
	uint8_t buf[512];
	size_t n = 0;
	int saw_ping = 0, saw_app = 0, saw_close = 0;

	open_session();
	run_for(250);
	n = peer_read(buf, sizeof(buf));
	ck_assert_int_eq(fk.c->state, CONN_OPEN);
	heartbeat_drain_at(fk.c, conn_now_ms() + 20);
	run_for(100);
	n += peer_read(buf + n, sizeof(buf) - n);
	for (size_t i = 0; i + 1 < n;) {
		size_t len = buf[i + 1] & 0x7f;

		saw_ping |= buf[i] == 0x89;
		saw_app |= buf[i] == 0x81 && len == 4 && memcmp(buf + i + 2, "tick", 4) == 0;
		/* the close is the last frame: nothing after it */
		ck_assert(!saw_close);
		if (buf[i] == 0x88 && len >= 2 + 6)
			saw_close = ((buf[i + 2] << 8) | buf[i + 3]) == 1001 &&
			            memcmp(buf + i + 4, "retry=", 6) == 0;
		i += 2 + len;
	}
	ck_assert(saw_ping);
	ck_assert(saw_app);
	ck_assert(saw_close);
	ck_assert_int_eq(fk.c->state, CONN_CLOSING);
}
END_TEST

/* The pubsub target: the client's message is published on its route's channel and comes back
 * to every subscriber of it, this client included; its public id names its direct channel. */
START_TEST(test_pubsub_publish_reaches_subscribers)
{
	uint8_t buf[1024], f[64];
	size_t n;

	peer_write(upgrade_chat, sizeof(upgrade_chat) - 1);
	peer_read(buf, sizeof(buf));
	ck_assert_msg(strncmp((char *)buf, "HTTP/1.1 101 ", 13) == 0, "got %s", buf);
	ck_assert_int_eq(fk.c->state, CONN_OPEN);
	n = client_frame(f, WS_OP_TEXT, "hello", 5, 1);
	peer_write(f, n);
	n = peer_read(buf, sizeof(buf));
	ck_assert_uint_eq(n, 7);
	ck_assert_int_eq(buf[0], 0x81);
	ck_assert_int_eq(memcmp(buf + 2, "hello", 5), 0);
	/* Closing unsubscribes: the hub is then empty and can be freed (teardown). */
	conn_close(fk.c, "test over");
	ck_assert_int_eq(fk.c->state, CONN_CLOSED);
}
END_TEST

/* ---- every event in every state ---- */

enum ev_kind {
	EV_PEER_EOF,    /* the client's FIN */
	EV_TIMER,       /* the connection's one timer fires */
	EV_CLOSE_FRAME, /* the client's close frame (1000) */
	EV_PING,        /* the client's ping */
	EV_BAD_FRAME,   /* an unmasked frame: a protocol error */
	EV_TEXT,        /* a text message (echoed in OPEN) */
	EV_SEND,        /* conn_send from a target */
	EV_SEND_CLOSE,  /* conn_send_close(1000) */
	EV_HTTP_REPLY,  /* conn_http_reply(503) */
	EV_CLOSE,       /* conn_close */
	EV_N
};

static const char *const ev_names[EV_N] = {
    "peer EOF",  "timer",           "close frame",     "ping",       "bad frame", "text",
    "conn_send", "conn_send_close", "conn_http_reply", "conn_close",
};

/* Brings the connection to st the way a real session gets there. */
static void
reach(enum conn_state st)
{
	uint8_t f[64], buf[1024];
	size_t n;

	if (st == CONN_HANDSHAKE)
		return;
	if (st == CONN_CLOSED) {
		conn_close(fk.c, "test");
		return;
	}
	open_session();
	if (st == CONN_CLOSING) {
		conn_send_close(fk.c, WS_CLOSE_NORMAL, "bye");
		turn(2);
	} else if (st == CONN_FLUSHING) {
		n = client_frame(f, WS_OP_CLOSE, "\x03\xe8", 2, 1);
		peer_write(f, n);
	}
	peer_read(buf, sizeof(buf));
	ck_assert_int_eq(fk.c->state, st);
}

/* Applies ev; returns what conn_send returned (EV_SEND), else 0. */
static int
apply(enum ev_kind ev)
{
	uint8_t f[64];
	size_t n;
	int r = 0;

	switch (ev) {
	case EV_PEER_EOF:
		shutdown(fk.peer, SHUT_WR);
		turn(3);
		break;
	case EV_TIMER:
		timer_wheel_expire(fk.env.wheel, &fk.c->timer);
		turn(2);
		break;
	case EV_CLOSE_FRAME:
		n = client_frame(f, WS_OP_CLOSE, "\x03\xe8", 2, 1);
		peer_write(f, n);
		break;
	case EV_PING:
		n = client_frame(f, WS_OP_PING, "p", 1, 1);
		peer_write(f, n);
		break;
	case EV_BAD_FRAME:
		n = client_frame(f, WS_OP_TEXT, "x", 1, 0);
		peer_write(f, n);
		break;
	case EV_TEXT:
		n = client_frame(f, WS_OP_TEXT, "hi", 2, 1);
		peer_write(f, n);
		break;
	case EV_SEND:
		r = conn_send(fk.c, WS_OP_TEXT, (const uint8_t *)"s", 1);
		turn(2);
		break;
	case EV_SEND_CLOSE:
		conn_send_close(fk.c, WS_CLOSE_NORMAL, "bye");
		turn(2);
		break;
	case EV_HTTP_REPLY:
		conn_http_reply(fk.c, 503, NULL, "test");
		turn(2);
		break;
	case EV_CLOSE:
		conn_close(fk.c, "test");
		turn(2);
		break;
	case EV_N:
		break;
	}
	return r;
}

/* The state after each event in each state (H: handshake, O: open, C: closing, F: flushing,
 * X: closed). In HANDSHAKE frame bytes are a request without its blank line yet: nothing
 * happens until the handshake timer (408) or the client's FIN. */
static const char expect[CONN_CLOSED + 1][EV_N + 1] = {
    /*                 EOF tmr close ping bad text send sclose http close */
    [CONN_HANDSHAKE] = "XFHHHHHHFX", [CONN_OPEN] = "XOFOFOOCOX",   [CONN_CLOSING] = "XXFCFCCCCX",
    [CONN_FLUSHING] = "XXFFFFFFFX",  [CONN_CLOSED] = "XXXXXXXXXX",
};

static enum conn_state
state_of(char ch)
{
	switch (ch) {
	case 'H':
		return CONN_HANDSHAKE;
	case 'O':
		return CONN_OPEN;
	case 'C':
		return CONN_CLOSING;
	case 'F':
		return CONN_FLUSHING;
	default:
		return CONN_CLOSED;
	}
}

/* _i: the state (outer) and the event (inner) of the loop test. */
START_TEST(test_every_event_in_every_state)
{
	enum conn_state st = (enum conn_state)(_i / EV_N);
	enum ev_kind ev = (enum ev_kind)(_i % EV_N);
	enum conn_state want = state_of(expect[st][ev]);
	int r;

	reach(st);
	r = apply(ev);
	ck_assert_msg(fk.c->state == want, "%s + %s: %s, expected %s", conn_state_name(st),
	              ev_names[ev], conn_state_name(fk.c->state), conn_state_name(want));
	/* Only an OPEN connection sends. */
	if (ev == EV_SEND)
		ck_assert_int_eq(r, st == CONN_OPEN ? 0 : -1);
	/* Every way to CLOSED tells the environment once, with no internal error. */
	ck_assert_int_eq(fk.dead, fk.c->state == CONN_CLOSED ? 1 : 0);
	ck_assert_uint_eq(fk.stats.internal_errors, 0);
}
END_TEST

/* An illegal transition (a broken invariant) closes that one connection and is counted; it
 * does not abort (a release build). */
START_TEST(test_illegal_transition_closes)
{
	open_session();
	conn_set_state(fk.c, CONN_HANDSHAKE);
	ck_assert_int_eq(fk.c->state, CONN_CLOSED);
	ck_assert_uint_eq(fk.stats.internal_errors, 1);
	ck_assert_int_eq(fk.dead, 1);
}
END_TEST

/* What the client sees in each answer of the close handshake: its close answered with the same
 * code and then FIN; ours first, then theirs, ends in FLUSHING with one close frame of ours. */
START_TEST(test_close_handshake_ours_first)
{
	uint8_t f[64], buf[256];
	size_t n;

	open_session();
	conn_send_close(fk.c, 4001, "bye");
	turn(2);
	n = peer_read(buf, sizeof(buf));
	ck_assert_uint_eq(n, 2 + 2 + 3);
	ck_assert_int_eq(buf[0], 0x88);
	ck_assert_int_eq((buf[2] << 8) | buf[3], 4001);
	ck_assert_int_eq(fk.c->state, CONN_CLOSING);
	/* Data after our close is ignored; a ping is not answered any more. */
	n = client_frame(f, WS_OP_TEXT, "late", 4, 1);
	peer_write(f, n);
	n = client_frame(f, WS_OP_PING, "p", 1, 1);
	peer_write(f, n);
	ck_assert_uint_eq(peer_read(buf, sizeof(buf)), 0);
	n = client_frame(f, WS_OP_CLOSE, "\x03\xe8", 2, 1);
	peer_write(f, n);
	ck_assert_int_eq(fk.c->state, CONN_FLUSHING);
	ck_assert_uint_eq(peer_read(buf, sizeof(buf)), 0); /* no second close */
	shutdown(fk.peer, SHUT_WR);
	turn(3);
	ck_assert_int_eq(fk.c->state, CONN_CLOSED);
}
END_TEST

/* ---- the proxy target: the endpoint's client role towards a backend ---- */

static const char upgrade_app[] =
    "GET /app HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

/* Reads what the gateway sent the backend, turning the loop until something came. */
static size_t
backend_read(uint8_t *buf, size_t cap)
{
	size_t got = 0;
	ssize_t n;

	for (int i = 0; i < 200 && got == 0; i++) {
		turn(1);
		while (got < cap - 1 && (n = read(fk.backend, buf + got, cap - 1 - got)) > 0)
			got += (size_t)n;
		if (got == 0)
			usleep(1000);
	}
	buf[got] = '\0';
	return got;
}

static void
backend_write(const void *p, size_t n)
{
	ck_assert_int_eq(write(fk.backend, p, n), (ssize_t)n);
	turn(3);
}

/* The client upgrades; the gateway connects to the backend, which answers 101; the client then
 * gets its 101. */
static void
proxy_open(void)
{
	uint8_t buf[2048];
	char resp[256], acc[29];
	const char *k;

	peer_write(upgrade_app, sizeof(upgrade_app) - 1);
	for (int i = 0; i < 200 && fk.backend < 0; i++) {
		turn(1);
		fk.backend = accept(fk.listener, NULL, NULL);
		if (fk.backend < 0)
			usleep(1000);
	}
	ck_assert_int_ge(fk.backend, 0);
	fcntl(fk.backend, F_SETFL, O_NONBLOCK);
	ck_assert_uint_gt(backend_read(buf, sizeof(buf)), 0);
	ck_assert_msg(strncmp((char *)buf, "GET /x HTTP/1.1\r\n", 17) == 0, "got %s", buf);
	k = strstr((char *)buf, "Sec-WebSocket-Key: ");
	ck_assert_ptr_nonnull(k);
	http_ws_accept(k + 19, 24, acc);
	snprintf(resp, sizeof(resp),
	         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	         "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
	         acc);
	backend_write(resp, strlen(resp));
	turn(3);
	peer_read(buf, sizeof(buf));
	ck_assert_msg(strncmp((char *)buf, "HTTP/1.1 101 ", 13) == 0, "got %s", buf);
	ck_assert_int_eq(fk.c->state, CONN_OPEN);
}

/* Messages both ways: masked towards the backend (client role), plain towards the client
 * (server role); a backend's ping is answered with a masked pong by the gateway, not relayed. */
START_TEST(test_proxy_relays_both_ways)
{
	uint8_t f[64], buf[256];
	size_t n;

	proxy_open();
	n = client_frame(f, WS_OP_TEXT, "up", 2, 1);
	peer_write(f, n);
	n = backend_read(buf, sizeof(buf));
	ck_assert_uint_eq(n, 2 + 4 + 2);
	ck_assert_int_eq(buf[0], 0x81);
	ck_assert_int_eq(buf[1], 0x80 | 2); /* masked */
	ck_assert_int_eq(buf[6] ^ buf[2], 'u');
	ck_assert_int_eq(buf[7] ^ buf[3], 'p');
	n = client_frame(f, WS_OP_TEXT, "down", 4, 0);
	backend_write(f, n);
	n = peer_read(buf, sizeof(buf));
	ck_assert_uint_eq(n, 6);
	ck_assert_int_eq(buf[1], 4); /* not masked */
	ck_assert_int_eq(memcmp(buf + 2, "down", 4), 0);
	n = client_frame(f, WS_OP_PING, "hb", 2, 0);
	backend_write(f, n);
	n = backend_read(buf, sizeof(buf));
	ck_assert_uint_eq(n, 2 + 4 + 2);
	ck_assert_int_eq(buf[0], 0x8a);
	ck_assert_int_eq(buf[1], 0x80 | 2);
	ck_assert_uint_eq(peer_read(buf, sizeof(buf)), 0);
}
END_TEST

/* The backend closes: the gateway answers it with the same code (masked) and passes the close
 * on to the client. */
START_TEST(test_proxy_backend_close_answered_and_passed_on)
{
	uint8_t f[64], buf[256];
	size_t n;

	proxy_open();
	n = client_frame(f, WS_OP_CLOSE, "\x0f\xa1gone", 6, 0); /* 4001 */
	backend_write(f, n);
	n = backend_read(buf, sizeof(buf));
	assert_close(buf, n, 4001, 1);
	n = peer_read(buf, sizeof(buf));
	assert_close(buf, n, 4001, 0);
}
END_TEST

/* A masked frame from the backend is a protocol error (RFC 6455 5.1): our close 1002 to the
 * backend, and the client is told with 1011. */
START_TEST(test_proxy_masked_backend_frame_fails)
{
	uint8_t f[64], buf[256];
	size_t n;

	proxy_open();
	n = client_frame(f, WS_OP_TEXT, "bad", 3, 1);
	backend_write(f, n);
	n = backend_read(buf, sizeof(buf));
	assert_close(buf, n, 1002, 1);
	n = peer_read(buf, sizeof(buf));
	assert_close(buf, n, 1011, 0);
}
END_TEST

/* The client closes: passed on to the backend (masked); the backend's answer completes both
 * close handshakes. */
START_TEST(test_proxy_client_close_passed_on)
{
	uint8_t f[64], buf[256];
	size_t n;

	proxy_open();
	n = client_frame(f, WS_OP_CLOSE, "\x03\xe8", 2, 1);
	peer_write(f, n);
	n = backend_read(buf, sizeof(buf));
	assert_close(buf, n, 1000, 1);
	n = client_frame(f, WS_OP_CLOSE, "\x03\xe8", 2, 0);
	backend_write(f, n);
	n = peer_read(buf, sizeof(buf));
	assert_close(buf, n, 1000, 0);
	ck_assert(fk.c->state == CONN_FLUSHING || fk.c->state == CONN_CLOSED);
}
END_TEST

static Suite *
conn_suite(void)
{
	Suite *s = suite_create("conn");
	TCase *tc = tcase_create("state machine");
	TCase *hb = tcase_create("heartbeat");
	TCase *ps = tcase_create("pubsub target");
	TCase *px = tcase_create("proxy target");
	TCase *st = tcase_create("every event in every state");

	tcase_add_checked_fixture(hb, setup_heartbeat, teardown);
	tcase_add_test(hb, test_heartbeat_ping_and_pong);
	tcase_add_test(hb, test_heartbeat_idle_timeout);
	tcase_add_test(hb, test_heartbeat_drain_and_app_message);
	suite_add_tcase(s, hb);
	tcase_add_checked_fixture(ps, setup_pubsub, teardown);
	tcase_add_test(ps, test_pubsub_publish_reaches_subscribers);
	suite_add_tcase(s, ps);
	tcase_add_checked_fixture(px, setup_proxy, teardown);
	tcase_add_test(px, test_proxy_relays_both_ways);
	tcase_add_test(px, test_proxy_backend_close_answered_and_passed_on);
	tcase_add_test(px, test_proxy_masked_backend_frame_fails);
	tcase_add_test(px, test_proxy_client_close_passed_on);
	suite_add_tcase(s, px);
	tcase_add_checked_fixture(tc, setup_plain, teardown);
	tcase_add_test(tc, test_upgrade_echo_close);
	tcase_add_test(tc, test_flush_echo_in_the_same_turn);
	tcase_add_test(tc, test_plain_read_asks_nothing_first);
	tcase_add_test(tc, test_unmasked_frame_is_protocol_error);
	tcase_add_test(tc, test_bad_request_refused);
	tcase_add_test(tc, test_readyz_asks_the_environment);
	tcase_add_test(tc, test_upgrade_refused_while_the_process_drains);
	tcase_add_test(tc, test_handshake_timeout);
	tcase_add_test(tc, test_public_id);
	tcase_add_test(tc, test_flush_writes_in_the_same_turn);
	tcase_add_test(tc, test_flush_turn_of_small_frames_in_one_write);
	tcase_add_test(tc, test_illegal_transition_closes);
	tcase_add_test(tc, test_close_handshake_ours_first);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(st, setup_states, teardown);
	tcase_add_loop_test(st, test_every_event_in_every_state, 0, (CONN_CLOSED + 1) * EV_N);
	suite_add_tcase(s, st);
	return s;
}

int
main(void)
{
	return check_runner_main(conn_suite());
}
