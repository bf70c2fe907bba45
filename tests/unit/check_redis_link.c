/* check_redis_link.c - the Redis link's state machine against a scripted peer on a loopback
 * socket (the test plays Redis byte by byte): DOWN -> CONNECTING -> HANDSHAKE -> UP with a
 * reply routed to its command's callback, a reply nobody asked for fails the link (protocol
 * error, the down hook told the state it left), the peer closing takes it down, and a peer that
 * accepts but never answers is given up at the connect deadline, and one whose answer waits
 * unread when a busy loop reaches the deadline late is not. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <event2/event.h>

#include "check_runner.h"
#include "redis_link.h"

static struct {
	struct event_base *base;
	struct redis_link link;
	int lfd, peer, port;
	int connected, downs, replies;
	enum redis_link_state down_from, state_in_down;
	char reply[64];
} t;

static void
t_reply(struct redis_link *l, const redisReply *r, void *arg)
{
	(void)arg;
	t.replies++;
	snprintf(t.reply, sizeof(t.reply), "%.*s", (int)r->len, r->str != NULL ? r->str : "");
	(void)redis_link_up(l);
}

static void
t_connected(struct redis_link *l)
{
	const char *argv[] = {"PING"};
	const size_t lens[] = {4};

	t.connected++;
	ck_assert_int_eq(redis_link_command(l, 1, argv, lens, t_reply, NULL), 0);
}

static void
t_down(struct redis_link *l, enum redis_link_state was, char *extra, size_t n)
{
	(void)extra;
	(void)n;
	t.downs++;
	t.down_from = was;
	t.state_in_down = l->state;
}

static const struct redis_link_ops t_ops = {
    .connected = t_connected,
    .push = NULL, /* like the pub link: an unasked reply is a protocol error */
    .down = t_down,
    .oversized = NULL,
};

static void
setup(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sin);
	static const char host[] = "127.0.0.1";

	memset(&t, 0, sizeof(t));
	t.peer = -1;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t.lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(t.lfd, 0);
	ck_assert_int_eq(bind(t.lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(t.lfd, 4), 0);
	ck_assert_int_eq(getsockname(t.lfd, (struct sockaddr *)&sin, &sl), 0);
	t.port = ntohs(sin.sin_port);
	t.base = event_base_new();
	ck_assert_int_eq(redis_link_init(&t.link, "pub", 0, &t_ops, NULL, t.base, NULL, host,
	                                 t.port, 300, 10000, 1 << 20),
	                 0);
}

static void
teardown(void)
{
	redis_link_free(&t.link);
	if (t.peer >= 0)
		close(t.peer);
	close(t.lfd);
	event_base_free(t.base);
}

/* Loop turns until cond holds or ms pass. */
#define RUN_UNTIL(cond, ms)                                                                        \
	do {                                                                                       \
		for (int i_ = 0; i_ < (ms) / 5 && !(cond); i_++) {                                 \
			struct timeval tv_ = {0, 5000};                                            \
			event_base_loopexit(t.base, &tv_);                                         \
			event_base_dispatch(t.base);                                               \
		}                                                                                  \
	} while (0)

static void
peer_accept(void)
{
	struct pollfd p = {.fd = t.lfd, .events = POLLIN};

	for (int i = 0; i < 100 && poll(&p, 1, 0) == 0; i++) {
		struct timeval tv = {0, 10000};

		event_base_loopexit(t.base, &tv);
		event_base_dispatch(t.base);
	}
	t.peer = accept(t.lfd, NULL, NULL);
	ck_assert_int_ge(t.peer, 0);
}

/* What the link sent, once something arrived. */
static size_t
peer_read(char *buf, size_t cap)
{
	struct pollfd p = {.fd = t.peer, .events = POLLIN};
	ssize_t n;

	for (int i = 0; i < 100 && poll(&p, 1, 0) == 0; i++) {
		struct timeval tv = {0, 10000};

		event_base_loopexit(t.base, &tv);
		event_base_dispatch(t.base);
	}
	n = read(t.peer, buf, cap - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	return (size_t)n;
}

static void
bring_up(void)
{
	char buf[128];

	ck_assert_int_eq(t.link.state, REDIS_LINK_DOWN);
	redis_link_connect(&t.link);
	ck_assert_int_eq(t.link.state, REDIS_LINK_CONNECTING);
	peer_accept();
	peer_read(buf, sizeof(buf));
	ck_assert_int_eq(t.connected, 1);
	ck_assert_int_eq(t.link.state, REDIS_LINK_HANDSHAKE);
	ck_assert_str_eq(buf, "*1\r\n$4\r\nPING\r\n");
	ck_assert_int_eq(write(t.peer, "+PONG\r\n", 7), 7);
	RUN_UNTIL(t.replies == 1, 1000);
	ck_assert_str_eq(t.reply, "PONG");
	ck_assert_int_eq(t.link.state, REDIS_LINK_UP);
}

/* After going down the link comes back by itself (the backoff timer): a new connection and a
 * new handshake, with no help from the owner. */
static void
retry_reconnects(void)
{
	char buf[128];

	if (t.peer >= 0)
		close(t.peer);
	t.peer = -1;
	peer_accept();
	peer_read(buf, sizeof(buf));
	ck_assert_int_eq(t.connected, 2);
	ck_assert_str_eq(buf, "*1\r\n$4\r\nPING\r\n");
}

START_TEST(connect_handshake_up)
{
	bring_up();
	ck_assert_int_eq(t.downs, 0);
}
END_TEST

START_TEST(unasked_reply_fails_the_link)
{
	bring_up();
	ck_assert_int_eq(write(t.peer, "+SURPRISE\r\n", 11), 11);
	RUN_UNTIL(t.downs == 1, 1000);
	ck_assert_int_eq(t.downs, 1);
	ck_assert_int_eq(t.down_from, REDIS_LINK_UP);
	ck_assert_int_eq(t.state_in_down, REDIS_LINK_DOWN);
	retry_reconnects();
}
END_TEST

START_TEST(peer_close_takes_it_down)
{
	bring_up();
	close(t.peer);
	t.peer = -1;
	RUN_UNTIL(t.downs == 1, 1000);
	ck_assert_int_eq(t.downs, 1);
	ck_assert_int_eq(t.down_from, REDIS_LINK_UP);
	ck_assert_int_eq(t.state_in_down, REDIS_LINK_DOWN);
	retry_reconnects();
}
END_TEST

/* Liveness: a peer that accepts and never answers the handshake is given up at the connect
 * deadline (300 ms here), not waited for forever. */
START_TEST(silent_peer_hits_the_deadline)
{
	char buf[128];

	redis_link_connect(&t.link);
	peer_accept();
	peer_read(buf, sizeof(buf));
	ck_assert_int_eq(t.link.state, REDIS_LINK_HANDSHAKE);
	RUN_UNTIL(t.downs == 1, 2000);
	ck_assert_int_eq(t.downs, 1);
	ck_assert_int_eq(t.down_from, REDIS_LINK_HANDSHAKE);
	ck_assert_int_eq(t.state_in_down, REDIS_LINK_DOWN);
	ck_assert_int_eq(t.replies, 0);
}
END_TEST

/* Liveness is progress, not our loop's punctuality (#16: a storm of new sessions on the same
 * loop flapped the link). The peer answers in time, but the loop is busy past the deadline
 * (a real 400 ms turn of work) and reaches the deadline timer before the read that holds the
 * answer (an epoll batch that did not include this socket: the timer's callback runs first).
 * The unread answer is progress: the link comes up, it is not given up. */
START_TEST(busy_loop_late_deadline_reads_first)
{
	char buf[128];
	struct timeval t0, now;

	redis_link_connect(&t.link);
	peer_accept();
	peer_read(buf, sizeof(buf));
	ck_assert_int_eq(t.link.state, REDIS_LINK_HANDSHAKE);
	ck_assert_int_eq(write(t.peer, "+PONG\r\n", 7), 7);
	gettimeofday(&t0, NULL);
	do /* the loop's long turn: busy, not asleep */
		gettimeofday(&now, NULL);
	while ((now.tv_sec - t0.tv_sec) * 1000000 + (now.tv_usec - t0.tv_usec) < 400000);
	/* The deadline's callback as the loop runs it when epoll's batch left this socket out
	 * (libevent would otherwise re-queue an expired timer behind the read). */
	event_get_callback(t.link.timer)(-1, EV_TIMEOUT, event_get_callback_arg(t.link.timer));
	RUN_UNTIL(t.link.state == REDIS_LINK_UP || t.downs > 0, 1000);
	ck_assert_int_eq(t.downs, 0);
	ck_assert_int_eq(t.link.state, REDIS_LINK_UP);
	ck_assert_str_eq(t.reply, "PONG");
}
END_TEST

static Suite *
redis_link_suite(void)
{
	Suite *s = suite_create("redis_link");
	TCase *tc = tcase_create("state machine");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, connect_handshake_up);
	tcase_add_test(tc, unasked_reply_fails_the_link);
	tcase_add_test(tc, peer_close_takes_it_down);
	tcase_add_test(tc, silent_peer_hits_the_deadline);
	tcase_add_test(tc, busy_loop_late_deadline_reads_first);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(redis_link_suite());
}
