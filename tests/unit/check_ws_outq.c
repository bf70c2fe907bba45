/* check_ws_outq.c - unit tests for ws_outq.c: data frames go straight to the output under the
 * level and queue past it; a control frame lands on a frame boundary ahead of the queue; the
 * pump moves whole frames only; bytes taken from the output are progress; a ping counts as sent
 * once its last byte is taken; the dead line moves with progress; the socket's send queue is
 * asked from the first look after a ping on, never as it is queued (linked with
 * -Wl,--wrap=ioctl: the test counts the asks). */
#include <check.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "check_runner.h"
#include "ws_frame.h"
#include "ws_outq.h"

static struct event_base *base;
static unsigned siocoutq_asks; /* SIOCOUTQ ioctls made through __wrap_ioctl */

int __real_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...);

int
__wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *argp;

	va_start(ap, req);
	argp = va_arg(ap, void *);
	va_end(ap);
	if (req == SIOCOUTQ)
		siocoutq_asks++;
	return __real_ioctl(fd, req, argp);
}
/* A transport's output without a socket: these tests drain it by hand, as the transport
 * would. */
static struct evbuffer *outb;
static struct ws_outq q;

static void
setup(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	outb = evbuffer_new();
	ck_assert_ptr_nonnull(outb);
	memset(&q, 0, sizeof(q));
	ck_assert_int_eq(ws_outq_attach(&q, outb, -1, 0, 1000), 0);
}

static void
teardown(void)
{
	ws_outq_free(&q);
	evbuffer_free(outb);
	event_base_free(base);
}

/* Appends one unmasked frame with a payload of n bytes of `fill`. */
static void
add_frame(struct evbuffer *to, unsigned opcode, size_t n, uint8_t fill)
{
	uint8_t hdr[WS_FRAME_HDR_MAX];
	uint8_t *p = malloc(n ? n : 1);
	size_t hlen = ws_frame_encode(hdr, 1, 0, opcode, n, NULL);

	memset(p, fill, n);
	evbuffer_add(to, hdr, hlen);
	evbuffer_add(to, p, n);
	free(p);
}

/* Splits the output into frames: their opcodes in order; fails on a cut frame. */
static size_t
output_opcodes(unsigned *ops, size_t max)
{
	struct evbuffer *out = outb;
	size_t len = evbuffer_get_length(out), off = 0, n = 0;
	const uint8_t *p = evbuffer_pullup(out, -1);
	struct ws_frame_hdr h;

	while (off < len && n < max) {
		ck_assert_int_eq(ws_frame_decode(p + off, len - off, 0, 0, &h), WS_FRAME_OK);
		ck_assert_uint_le(off + h.hdr_len + h.len, len);
		ops[n++] = h.opcode;
		off += h.hdr_len + (size_t)h.len;
	}
	ck_assert_uint_eq(off, len);
	return n;
}

START_TEST(data_under_level_goes_straight_out)
{
	add_frame(ws_outq_data(&q), WS_OP_TEXT, 100, 'a');
	ck_assert_uint_eq(evbuffer_get_length(outb), 102);
	ck_assert_uint_eq(ws_outq_len(&q), 102);
}
END_TEST

START_TEST(control_overtakes_queued_data_on_a_boundary)
{
	unsigned ops[16];
	size_t n;

	/* Three 40 KiB frames: the first two fill the output past the level, the third waits. */
	for (int i = 0; i < 3; i++)
		add_frame(ws_outq_data(&q), WS_OP_BINARY, 40 * 1024, (uint8_t)i);
	ck_assert_uint_lt(evbuffer_get_length(outb), ws_outq_len(&q));
	add_frame(ws_outq_control(&q), WS_OP_PING, 8, 'p');
	n = output_opcodes(ops, 16);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(ops[0], WS_OP_BINARY);
	ck_assert_uint_eq(ops[1], WS_OP_BINARY);
	ck_assert_uint_eq(ops[2], WS_OP_PING);
	/* The kernel takes everything; the pump brings the queued frame, whole. */
	evbuffer_drain(outb, evbuffer_get_length(outb));
	ws_outq_pump(&q);
	n = output_opcodes(ops, 16);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(ops[0], WS_OP_BINARY);
	ck_assert_uint_eq(ws_outq_len(&q), evbuffer_get_length(outb));
}
END_TEST

START_TEST(pump_moves_whole_frames_only)
{
	struct evbuffer *out = outb;
	unsigned ops[64];

	for (int i = 0; i < 40; i++)
		add_frame(ws_outq_data(&q), WS_OP_BINARY, 5000 + (size_t)i * 7, (uint8_t)i);
	for (int round = 0; round < 100 && ws_outq_len(&q) > 0; round++) {
		output_opcodes(ops, 64); /* asserts no frame is cut */
		/* The transport takes an arbitrary amount; the rest of a frame stays in front. */
		evbuffer_drain(out, evbuffer_get_length(out));
		ws_outq_pump(&q);
	}
	ck_assert_uint_eq(ws_outq_len(&q), 0);
}
END_TEST

START_TEST(ping_sent_when_taken_and_dead_line_moves)
{
	struct evbuffer *out = outb;

	ck_assert_uint_eq(ws_outq_dead_at(&q, 1000, 3000), UINT64_MAX);
	add_frame(ws_outq_data(&q), WS_OP_BINARY, 1000, 'd');
	add_frame(ws_outq_control(&q), WS_OP_PING, 8, 'p');
	ws_outq_ping_queued(&q, 2000);
	ck_assert(ws_outq_ping_outstanding(&q));
	ck_assert_uint_eq(q.ping_written_ms, 0);
	/* Nothing taken: dead pong_timeout after the ping was queued. */
	ck_assert_uint_eq(ws_outq_dead_at(&q, 2500, 3000), 5000);
	/* Part of the data taken: not the ping yet, but progress. */
	evbuffer_drain(out, 500);
	ck_assert_uint_eq(q.ping_written_ms, 0);
	ck_assert_uint_eq(ws_outq_dead_at(&q, 4000, 3000), 7000);
	/* The rest, the ping included: it is out now. */
	evbuffer_drain(out, evbuffer_get_length(out));
	ck_assert_uint_ne(q.ping_written_ms, 0);
	ws_outq_pong(&q);
	ck_assert(!ws_outq_ping_outstanding(&q));
	ck_assert_uint_eq(ws_outq_dead_at(&q, 9000, 3000), UINT64_MAX);
}
END_TEST

START_TEST(peer_bytes_are_progress)
{
	add_frame(ws_outq_control(&q), WS_OP_PING, 8, 'p');
	ws_outq_ping_queued(&q, 2000);
	ws_outq_rx(&q, 4500);
	ck_assert_uint_eq(ws_outq_dead_at(&q, 4500, 3000), 7500);
	/* The heartbeat looks at least every quarter of pong_timeout while a ping is out. */
	ck_assert_uint_eq(ws_outq_next_look(&q, 4500, 3000), 4500 + 750);
}
END_TEST

/* An idle connection's ping cycle (ping queued, pong back before the first look) asks the kernel
 * nothing; a slow reader's send queue going down is still progress from the first look on. */
START_TEST(send_queue_asked_after_the_ping_not_as_it_is_queued)
{
	struct evbuffer *sout = evbuffer_new();
	struct ws_outq sq;
	int sv[2];
	char buf[4096];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	ck_assert_ptr_nonnull(sout);
	memset(&sq, 0, sizeof(sq));
	ck_assert_int_eq(ws_outq_attach(&sq, sout, sv[0], 0, 1000), 0);
	/* Bytes in the socket's send queue the peer has not read (a slow reader). */
	memset(buf, 'x', sizeof(buf));
	ck_assert_int_eq(write(sv[0], buf, sizeof(buf)), (int)sizeof(buf));
	siocoutq_asks = 0;
	add_frame(ws_outq_control(&sq), WS_OP_PING, 8, 'p');
	ws_outq_ping_queued(&sq, 2000);
	ck_assert_uint_eq(ws_outq_next_look(&sq, 2000, 3000), 2750);
	ck_assert_uint_eq(siocoutq_asks, 0);
	/* The pong of a healthy peer: the cycle is over without a system call of ours. */
	ws_outq_pong(&sq);
	ck_assert_uint_eq(ws_outq_next_look(&sq, 2100, 3000), UINT64_MAX);
	ck_assert_uint_eq(siocoutq_asks, 0);
	/* Next ping, no pong: the first look takes the baseline (no progress yet)... */
	ws_outq_ping_queued(&sq, 5000);
	ck_assert_uint_eq(ws_outq_dead_at(&sq, 5750, 3000), 8000);
	ck_assert_uint_eq(siocoutq_asks, 1);
	/* ...and the peer reading its queue after it is progress at the next look. */
	ck_assert_int_eq(read(sv[1], buf, sizeof(buf)), (int)sizeof(buf));
	ck_assert_uint_eq(ws_outq_dead_at(&sq, 6500, 3000), 9500);
	ck_assert_uint_eq(siocoutq_asks, 2);
	ws_outq_free(&sq);
	evbuffer_free(sout);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* The worker's queued-bytes gauge is kept by the queues as bytes come and go (no walk of the
 * connections): output and queue alike, moved between them, taken, and given back on free. */
START_TEST(gauge_follows_what_the_queue_holds)
{
	struct evbuffer *out = outb;
	uint64_t g = 5; /* other connections' bytes */

	add_frame(ws_outq_data(&q), WS_OP_TEXT, 100, 'a'); /* queued before the gauge is set */
	ws_outq_gauge(&q, &g);
	ck_assert_uint_eq(g, 5 + 102);
	/* Two 40 KiB frames fill the output past the level, the third waits in the queue. */
	for (int i = 0; i < 3; i++)
		add_frame(ws_outq_data(&q), WS_OP_BINARY, 40 * 1024, (uint8_t)i);
	add_frame(ws_outq_control(&q), WS_OP_PING, 8, 'p');
	ck_assert_ptr_nonnull(q.pend);
	ck_assert_uint_gt(evbuffer_get_length(q.pend), 0);
	ck_assert_uint_eq(g, 5 + ws_outq_len(&q));
	evbuffer_drain(out, 1000); /* the kernel takes part */
	ck_assert_uint_eq(g, 5 + ws_outq_len(&q));
	evbuffer_drain(out, evbuffer_get_length(out));
	ws_outq_pump(&q); /* queue -> output: no change in total */
	ck_assert_uint_eq(g, 5 + ws_outq_len(&q));
	ck_assert_uint_gt(g, 5);
	ws_outq_free(&q); /* what is left goes with the connection */
	ck_assert_uint_eq(g, 5);
}
END_TEST

/* Reads what the peer got so far (non-blocking), returns its byte count. */
static size_t
drain_peer(int fd)
{
	static char buf[65536];
	size_t total = 0;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += (size_t)n;
	return total;
}

/* One connection's share of a loop turn is WS_OUTQ_TURN_BYTES however much its socket would
 * take (a non-reading subscriber's loopback buffers took megabytes each: 20 of them held a
 * loop ~100 ms); the rest is left in the output (returned: the caller's transport writes it
 * under its write event), and the next turn goes on where this one stopped, the queue
 * refilling the output on the way. */
START_TEST(write_now_gives_one_turn_its_share)
{
	struct evbuffer *sout = evbuffer_new();
	struct ws_outq sq;
	int sv[2], sndbuf = 4 << 20;
	socklen_t sl = sizeof(sndbuf);
	size_t total, got;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
	ck_assert_int_eq(getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl), 0);
	/* The kernel must take more than one share, or there is nothing to bound (Debian's
	 * default net.core.wmem_max gives 416 KiB here). */
	ck_assert_int_gt(sndbuf, WS_OUTQ_TURN_BYTES + 64 * 1024);
	ck_assert_ptr_nonnull(sout);
	memset(&sq, 0, sizeof(sq));
	ck_assert_int_eq(ws_outq_attach(&sq, sout, sv[0], 0, 1000), 0);
	/* 100 KiB frames: the first in the output, the rest queued behind it. */
	for (int i = 0; i < 6; i++)
		add_frame(ws_outq_data(&sq), WS_OP_BINARY, 100 * 1024, (uint8_t)i);
	total = ws_outq_len(&sq);
	ck_assert_ptr_nonnull(sq.pend);
	ck_assert_uint_gt(ws_outq_write_now(&sq, SIZE_MAX), 0); /* left in the output */
	got = drain_peer(sv[1]);
	ck_assert_uint_eq(got, WS_OUTQ_TURN_BYTES);
	ck_assert_uint_eq(ws_outq_len(&sq), total - got);
	/* A smaller budget (what a batched send left of the share) is kept too. */
	ws_outq_write_now(&sq, 1000);
	ck_assert_uint_eq(drain_peer(sv[1]), 1000);
	got += 1000;
	/* Turn after turn, the rest goes, and the write event with it. */
	while (ws_outq_len(&sq) > 0) {
		size_t n, left;

		left = ws_outq_write_now(&sq, SIZE_MAX);
		ck_assert_uint_eq(left, evbuffer_get_length(sout));
		n = drain_peer(sv[1]);
		ck_assert_uint_gt(n, 0);
		ck_assert_uint_le(n, WS_OUTQ_TURN_BYTES);
		got += n;
	}
	ck_assert_uint_eq(got, total);
	ck_assert_uint_eq(evbuffer_get_length(sout), 0);
	ws_outq_free(&sq);
	evbuffer_free(sout);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("ws_outq");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, data_under_level_goes_straight_out);
	tcase_add_test(tc, control_overtakes_queued_data_on_a_boundary);
	tcase_add_test(tc, pump_moves_whole_frames_only);
	tcase_add_test(tc, ping_sent_when_taken_and_dead_line_moves);
	tcase_add_test(tc, peer_bytes_are_progress);
	tcase_add_test(tc, send_queue_asked_after_the_ping_not_as_it_is_queued);
	tcase_add_test(tc, gauge_follows_what_the_queue_holds);
	tcase_add_test(tc, write_now_gives_one_turn_its_share);
	suite_add_tcase(s, tc);
	return check_runner_main(s);
}
