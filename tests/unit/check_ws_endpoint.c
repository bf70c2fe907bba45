/* check_ws_endpoint.c - the endpoint logic both roles share (ws_endpoint.c): frames queued
 * masked in the client role and plain in the server role, control frames ahead of data, close
 * payloads, and, on a fake side in each role: the read loop's role rule on masks, the close
 * handshake (answered, taken by the side, ours first, errors by role), ping and pong, the output
 * watermarks on both sides, and the heartbeat and liveness rules. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "check_runner.h"
#include "clock.h"
#include "ws_endpoint.h"
#include "ws_frame.h"
#include "ws_outq.h"
#include "ws_parser.h"

static struct event_base *base;
static struct bufferevent *bev;
static struct ws_outq q;

static void
setup(void)
{
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	bev = bufferevent_socket_new(base, -1, 0);
	ck_assert_ptr_nonnull(bev);
	memset(&q, 0, sizeof(q));
	ck_assert_int_eq(
	    ws_outq_attach(&q, bufferevent_get_output(bev), -1, WS_OUTQ_FRONT_FROZEN, 1000), 0);
}

static void
teardown(void)
{
	ws_outq_free(&q);
	bufferevent_free(bev);
	event_base_free(base);
}

/* Everything queued, output then pending queue, as one byte string. */
static size_t
queued(uint8_t *out, size_t cap)
{
	struct evbuffer *o = bufferevent_get_output(bev);
	size_t n = evbuffer_get_length(o);

	/* evbuffer_pullup as check_ws_outq does: evbuffer_copyout gave zeros here, from the
	 * output of a bufferevent that never connected. */
	ck_assert_uint_le(n, cap);
	if (n > 0)
		memcpy(out, evbuffer_pullup(o, -1), n);
	if (q.pend != NULL) {
		size_t m = evbuffer_get_length(q.pend);

		ck_assert_uint_le(n + m, cap);
		if (m > 0)
			memcpy(out + n, evbuffer_pullup(q.pend, -1), m);
		n += m;
	}
	return n;
}

START_TEST(server_role_frames_are_plain)
{
	uint8_t out[64];
	size_t n;

	ck_assert_uint_eq(
	    ws_endpoint_queue_frame(&q, 1, WS_OP_TEXT, (const uint8_t *)"hey", 3, NULL), 2);
	n = queued(out, sizeof(out));
	ck_assert_uint_eq(n, 5);
	ck_assert_int_eq(out[0], 0x81);
	ck_assert_int_eq(out[1], 3); /* no mask bit */
	ck_assert_int_eq(memcmp(out + 2, "hey", 3), 0);
}
END_TEST

START_TEST(client_role_frames_are_masked)
{
	static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
	uint8_t out[64];
	size_t n;

	ck_assert_uint_eq(
	    ws_endpoint_queue_frame(&q, 0, WS_OP_BINARY, (const uint8_t *)"abcde", 5, key), 6);
	n = queued(out, sizeof(out));
	ck_assert_uint_eq(n, 11);
	ck_assert_int_eq(out[0], 0x02); /* fin 0, binary */
	ck_assert_int_eq(out[1], 0x80 | 5);
	ck_assert_int_eq(memcmp(out + 2, key, 4), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(out[6 + i] ^ key[i & 3], "abcde"[i]);
}
END_TEST

/* A ping overtakes data that waits in the queue (the output above WS_OUTQ_LEVEL). */
START_TEST(control_frames_overtake_queued_data)
{
	static uint8_t big[WS_OUTQ_LEVEL + 10];
	uint8_t *out = malloc(2 * sizeof(big));
	size_t n;

	ck_assert_ptr_nonnull(out);
	ws_endpoint_queue_frame(&q, 1, WS_OP_BINARY, big, sizeof(big), NULL);
	ws_endpoint_queue_frame(&q, 1, WS_OP_BINARY, (const uint8_t *)"x", 1, NULL);
	ws_endpoint_queue_frame(&q, 1, WS_OP_PING, (const uint8_t *)"p", 1, NULL);
	n = queued(out, 2 * sizeof(big));
	/* The big frame (a 64-bit length: 10 header bytes), then the ping, then the small data
	 * frame that waited in the queue. */
	ck_assert_uint_eq(n, 10 + sizeof(big) + 3 + 3);
	ck_assert_int_eq(out[10 + sizeof(big)], 0x89);
	ck_assert_int_eq(out[10 + sizeof(big) + 3], 0x82);
	free(out);
}
END_TEST

START_TEST(close_payloads)
{
	uint8_t p[WS_CONTROL_MAX];
	char longr[200];

	ck_assert_uint_eq(ws_endpoint_close_payload(p, WS_CLOSE_NO_STATUS, "x", 1), 0);
	ck_assert_uint_eq(ws_endpoint_close_payload(p, 1001, "bye", 3), 5);
	ck_assert_int_eq(p[0], 0x03);
	ck_assert_int_eq(p[1], 0xe9);
	ck_assert_int_eq(memcmp(p + 2, "bye", 3), 0);
	memset(longr, 'r', sizeof(longr));
	ck_assert_uint_eq(ws_endpoint_close_payload(p, 1000, longr, sizeof(longr)), WS_CONTROL_MAX);
}
END_TEST

/* ---- the endpoint on a fake side, in both roles ---- */

static struct fake {
	enum ws_ep_state st;
	int paused; /* the side's own pause */
	int events, errors, closes, data, high, stop_after, close_after_data;
	int drained, resumed, flushed, pinged, rtts, take_close;
	int answered;         /* answer_close calls */
	unsigned answer_code; /* the code our answer carried */
	int gone;             /* peer_closed calls */
	enum ws_ep_state gone_prev;
	int expired[3];
	uint64_t armed;     /* last timer_arm, UINT64_MAX: none */
	int queued_ops[16]; /* opcodes queued, in order */
	int nqueued;
	char last_reason[64];
	char text[64];
} fk;

static enum ws_ep_state
fk_state(void *side)
{
	(void)side;
	return fk.st;
}

static void
fk_set_state(void *side, enum ws_ep_state st)
{
	(void)side;
	fk.st = st;
}

static int
fk_reading(void *side)
{
	(void)side;
	return !fk.paused;
}

static void
fk_queue_server(void *side, int fin, unsigned opcode, const uint8_t *data, size_t len)
{
	(void)side;
	if (fk.nqueued < 16)
		fk.queued_ops[fk.nqueued++] = (int)opcode;
	ws_endpoint_queue_frame(&q, fin, opcode, data, len, NULL);
}

static void
fk_queue_client(void *side, int fin, unsigned opcode, const uint8_t *data, size_t len)
{
	static const uint8_t key[4] = {1, 2, 3, 4};

	(void)side;
	if (fk.nqueued < 16)
		fk.queued_ops[fk.nqueued++] = (int)opcode;
	ws_endpoint_queue_frame(&q, fin, opcode, data, len, key);
}

static int
fk_data(void *side, const struct ws_event *ev)
{
	(void)side;
	fk.events++;
	fk.data++;
	strncat(fk.text, (const char *)ev->data, ev->len < 16 ? ev->len : 16);
	if (fk.close_after_data != 0 && fk.data >= fk.close_after_data)
		fk.st = WS_EP_CLOSED; /* the side closed itself inside the event */
	if (fk.stop_after != 0 && fk.data >= fk.stop_after)
		return -1;
	return 0;
}

static int
fk_peer_close(void *side, const struct ws_event *ev)
{
	(void)side;
	fk.events++;
	if (ev->type == WS_EV_ERROR) {
		fk.errors++;
		snprintf(fk.last_reason, sizeof(fk.last_reason), "%s", ev->reason);
	} else {
		fk.closes++;
	}
	return fk.take_close;
}

static const struct ws_endpoint_ops *cur_ops;
static struct ws_parser cur_parser;
static struct ws_liveness cur_live;

static void fk_view(struct ws_endpoint *ep);

static void
fk_answer_close(void *side, unsigned code, const char *reason, size_t rlen)
{
	struct ws_endpoint ep;

	(void)side;
	fk.answered++;
	fk.answer_code = code;
	fk_view(&ep);
	ck_assert_int_eq(ws_endpoint_close(&ep, code, reason, rlen, 1), 0);
}

static void
fk_peer_closed(void *side, const struct ws_event *ev, enum ws_ep_state prev)
{
	(void)side;
	(void)ev;
	fk.gone++;
	fk.gone_prev = prev;
	if (cur_ops->error_ends_closing && ev->type == WS_EV_ERROR && prev == WS_EP_CLOSING)
		fk.st = WS_EP_CLOSED; /* the client role's teardown */
}

static void
fk_pause_output(void *side)
{
	(void)side;
	fk.high++;
	fk.paused = 1;
}

static void
fk_drained(void *side)
{
	(void)side;
	fk.drained++;
}

static void
fk_resume_output(void *side)
{
	(void)side;
	fk.resumed++;
	fk.paused = 0;
}

static void
fk_flushed(void *side)
{
	(void)side;
	fk.flushed++;
}

static void
fk_timer_arm(void *side, uint64_t ms)
{
	(void)side;
	fk.armed = ms;
}

static void
fk_pinged(void *side)
{
	(void)side;
	fk.pinged++;
}

static void
fk_rtt(void *side, uint64_t rtt)
{
	(void)side;
	(void)rtt;
	fk.rtts++;
}

static void
fk_expired(void *side, enum ws_hb_end why)
{
	(void)side;
	fk.expired[why]++;
}

#define FK_OPS(r, q, answer, ends)                                                                 \
	{                                                                                          \
		.role = r, .out_high = 1 << 20, .out_low = 64, .answer_while_closing = answer,     \
		.error_ends_closing = ends, .state = fk_state, .set_state = fk_set_state,          \
		.reading = fk_reading, .queue = q, .data = fk_data, .peer_close = fk_peer_close,   \
		.answer_close = fk_answer_close, .peer_closed = fk_peer_closed,                    \
		.pause_output = fk_pause_output, .drained = fk_drained,                            \
		.resume_output = fk_resume_output, .flushed = fk_flushed,                          \
		.timer_arm = fk_timer_arm, .pinged = fk_pinged, .rtt = fk_rtt,                     \
		.expired = fk_expired,                                                             \
	}

/* The two roles as conn.c and upstream_conn.c set them. */
static const struct ws_endpoint_ops server_ops = FK_OPS(WS_ROLE_SERVER, fk_queue_server, 0, 0);
static const struct ws_endpoint_ops client_ops = FK_OPS(WS_ROLE_CLIENT, fk_queue_client, 1, 1);

static size_t cur_high = 1 << 20;
static struct ws_endpoint_ops cur_copy;

static void
fk_view(struct ws_endpoint *ep)
{
	cur_copy = *cur_ops;
	cur_copy.out_high = cur_high;
	ep->ops = &cur_copy;
	ep->side = &fk;
	ep->parser = &cur_parser;
	ep->outq = &q;
	ep->live = &cur_live;
	ep->ping_interval_ms = 1000;
	ep->pong_timeout_ms = 400;
	ep->idle_timeout_ms = cur_ops->role == WS_ROLE_SERVER ? 5000 : 0;
}

static void
fk_begin(enum ws_role role)
{
	memset(&fk, 0, sizeof(fk));
	memset(&cur_live, 0, sizeof(cur_live));
	fk.st = WS_EP_OPEN;
	fk.armed = UINT64_MAX;
	cur_high = 1 << 20;
	cur_ops = role == WS_ROLE_SERVER ? &server_ops : &client_ops;
	ws_endpoint_parser_init(&cur_parser, role, 1 << 20);
}

static void
run_read(enum ws_role role, struct evbuffer *in, size_t high)
{
	struct ws_endpoint ep;

	(void)role;
	cur_high = high;
	fk_view(&ep);
	ws_endpoint_read(&ep, in);
}

static void
add_frame(struct evbuffer *in, unsigned opcode, const char *s, int masked)
{
	static const uint8_t key[4] = {9, 8, 7, 6};
	uint8_t f[256];
	size_t n = strlen(s), h = ws_frame_encode(f, 1, 0, opcode, n, masked ? key : NULL);

	for (size_t i = 0; i < n; i++)
		f[h + i] = (uint8_t)s[i] ^ (masked ? key[i & 3] : 0);
	evbuffer_add(in, f, h + n);
}

START_TEST(server_role_reads_masked_frames_only)
{
	struct evbuffer *in = evbuffer_new();

	fk_begin(WS_ROLE_SERVER);
	add_frame(in, WS_OP_TEXT, "one", 1);
	add_frame(in, WS_OP_TEXT, "two", 1);
	add_frame(in, WS_OP_TEXT, "bad", 0);
	add_frame(in, WS_OP_TEXT, "never", 1);
	run_read(WS_ROLE_SERVER, in, SIZE_MAX);
	ck_assert_int_eq(fk.data, 2);
	ck_assert_str_eq(fk.text, "onetwo");
	ck_assert_int_eq(fk.errors, 1);
	/* The error failed the session: our close answered, FLUSHING. */
	ck_assert_int_eq(fk.answered, 1);
	ck_assert_int_eq(fk.st, WS_EP_FLUSHING);
	/* Reading stopped at the error: what follows stays unread. */
	ck_assert_uint_gt(evbuffer_get_length(in), 0);
	evbuffer_free(in);
}
END_TEST

START_TEST(client_role_refuses_masked_frames)
{
	struct evbuffer *in = evbuffer_new();

	fk_begin(WS_ROLE_CLIENT);
	add_frame(in, WS_OP_TEXT, "plain", 0);
	add_frame(in, WS_OP_TEXT, "masked", 1);
	run_read(WS_ROLE_CLIENT, in, SIZE_MAX);
	ck_assert_int_eq(fk.data, 1);
	ck_assert_str_eq(fk.text, "plain");
	ck_assert_int_eq(fk.errors, 1);
	ck_assert_str_eq(fk.last_reason, "masked frame from the server");
	ck_assert_int_eq(fk.answer_code, WS_CLOSE_PROTOCOL);
	ck_assert_int_eq(fk.gone, 1);
	evbuffer_free(in);
}
END_TEST

/* The peer's close in OPEN: our close answers with its code, then FLUSHING, in both roles. */
START_TEST(close_is_answered_then_flushing)
{
	for (int r = 0; r < 2; r++) {
		struct evbuffer *in = evbuffer_new();

		fk_begin((enum ws_role)r);
		add_frame(in, WS_OP_TEXT, "a", r == WS_ROLE_SERVER);
		add_frame(in, WS_OP_CLOSE, "\x0f\xa0", r == WS_ROLE_SERVER); /* 4000 */
		add_frame(in, WS_OP_TEXT, "after", r == WS_ROLE_SERVER);
		run_read((enum ws_role)r, in, SIZE_MAX);
		ck_assert_int_eq(fk.closes, 1);
		ck_assert_str_eq(fk.text, "a");
		ck_assert_int_eq(fk.answered, 1);
		ck_assert_uint_eq(fk.answer_code, 4000);
		ck_assert_int_eq(fk.queued_ops[fk.nqueued - 1], WS_OP_CLOSE);
		ck_assert_int_eq(fk.st, WS_EP_FLUSHING);
		ck_assert_int_eq(fk.gone, 1);
		ck_assert_int_eq(fk.gone_prev, WS_EP_OPEN);
		evbuffer_free(in);
		ws_outq_free(&q);
		memset(&q, 0, sizeof(q));
		ck_assert_int_eq(
		    ws_outq_attach(&q, bufferevent_get_output(bev), -1, WS_OUTQ_FRONT_FROZEN, 1000),
		    0);
	}
}
END_TEST

/* A side that answers the close itself (a target with a code of its own): no answer of ours. */
START_TEST(close_taken_by_the_side)
{
	struct evbuffer *in = evbuffer_new();

	fk_begin(WS_ROLE_SERVER);
	fk.take_close = 1;
	add_frame(in, WS_OP_CLOSE, "\x03\xe8", 1);
	run_read(WS_ROLE_SERVER, in, SIZE_MAX);
	ck_assert_int_eq(fk.closes, 1);
	ck_assert_int_eq(fk.answered, 0);
	ck_assert_int_eq(fk.gone, 0);
	ck_assert_int_eq(fk.st, WS_EP_OPEN);
	evbuffer_free(in);
}
END_TEST

/* Our close first: OPEN -> CLOSING; a second close is refused until the peer's comes; the
 * peer's close then moves to FLUSHING without another close of ours. */
START_TEST(our_close_then_theirs)
{
	for (int r = 0; r < 2; r++) {
		struct evbuffer *in = evbuffer_new();
		struct ws_endpoint ep;

		fk_begin((enum ws_role)r);
		fk_view(&ep);
		ck_assert_int_eq(ws_endpoint_close(&ep, 1000, "bye", 3, 0), 0);
		ck_assert_int_eq(fk.st, WS_EP_CLOSING);
		ck_assert_int_eq(ws_endpoint_close(&ep, 1000, "again", 5, 0), -1);
		ck_assert_int_eq(fk.nqueued, 1);
		add_frame(in, WS_OP_TEXT, "late", r == WS_ROLE_SERVER);
		add_frame(in, WS_OP_CLOSE, "\x03\xe8", r == WS_ROLE_SERVER);
		run_read((enum ws_role)r, in, SIZE_MAX);
		ck_assert_int_eq(fk.st, WS_EP_FLUSHING);
		ck_assert_int_eq(fk.answered, 0);
		ck_assert_int_eq(fk.nqueued, 1);
		ck_assert_int_eq(fk.gone_prev, WS_EP_CLOSING);
		/* Nothing is closed outside OPEN and CLOSING. */
		ck_assert_int_eq(ws_endpoint_close(&ep, 1000, NULL, 0, 1), -1);
		fk.st = WS_EP_NONE;
		ck_assert_int_eq(ws_endpoint_close(&ep, 1000, NULL, 0, 1), -1);
		evbuffer_free(in);
	}
}
END_TEST

/* A protocol error after our close: the server role flushes, the client role ends at once. */
START_TEST(error_while_closing_by_role)
{
	for (int r = 0; r < 2; r++) {
		struct ws_endpoint ep;

		fk_begin((enum ws_role)r);
		fk.st = WS_EP_CLOSING;
		fk_view(&ep);
		ws_endpoint_fail(&ep, WS_CLOSE_TOO_BIG, "too big");
		ck_assert_int_eq(fk.errors, 1);
		ck_assert_int_eq(fk.answered, 0);
		ck_assert_int_eq(fk.st, r == WS_ROLE_SERVER ? WS_EP_FLUSHING : WS_EP_CLOSED);
	}
}
END_TEST

/* Pings are answered with their payload and count as the peer's keepalive; after our close
 * only the client role still answers them. */
START_TEST(pings_answered_by_role)
{
	for (int r = 0; r < 2; r++) {
		for (int closing = 0; closing < 2; closing++) {
			struct evbuffer *in = evbuffer_new();

			fk_begin((enum ws_role)r);
			fk.st = closing ? WS_EP_CLOSING : WS_EP_OPEN;
			add_frame(in, WS_OP_PING, "hb", r == WS_ROLE_SERVER);
			run_read((enum ws_role)r, in, SIZE_MAX);
			ck_assert_uint_gt(cur_live.last_msg_ms, 0);
			ck_assert_int_eq(fk.nqueued, !closing || r == WS_ROLE_CLIENT ? 1 : 0);
			if (fk.nqueued)
				ck_assert_int_eq(fk.queued_ops[0], WS_OP_PONG);
			ck_assert_uint_eq(evbuffer_get_length(in), 0);
			evbuffer_free(in);
		}
	}
}
END_TEST

/* A pong ends the outstanding ping and gives its round trip; an unsolicited one is ignored. */
START_TEST(pong_ends_the_ping)
{
	struct evbuffer *in = evbuffer_new();
	uint8_t p[8], f[16];
	size_t h;

	fk_begin(WS_ROLE_CLIENT);
	add_frame(in, WS_OP_PONG, "x", 0);
	run_read(WS_ROLE_CLIENT, in, SIZE_MAX);
	ck_assert_int_eq(fk.rtts, 0);
	ws_outq_ping_queued(&q, clock_now_ms());
	ck_assert_int_eq(ws_outq_ping_outstanding(&q), 1);
	ws_endpoint_ping_payload(p, clock_now_ms());
	h = ws_frame_encode(f, 1, 0, WS_OP_PONG, 8, NULL);
	memcpy(f + h, p, 8);
	evbuffer_add(in, f, h + 8);
	run_read(WS_ROLE_CLIENT, in, SIZE_MAX);
	ck_assert_int_eq(ws_outq_ping_outstanding(&q), 0);
	ck_assert_int_eq(fk.rtts, 1);
	evbuffer_free(in);
}
END_TEST

/* An endpoint closed inside an event gets no further event, and its input is not drained
 * (it is no longer the loop's). */
START_TEST(closed_inside_an_event_stops_at_once)
{
	struct evbuffer *in = evbuffer_new();

	fk_begin(WS_ROLE_CLIENT);
	fk.close_after_data = 1;
	add_frame(in, WS_OP_TEXT, "x", 0);
	add_frame(in, WS_OP_TEXT, "y", 0);
	run_read(WS_ROLE_CLIENT, in, SIZE_MAX);
	ck_assert_int_eq(fk.events, 1);
	ck_assert_uint_eq(evbuffer_get_length(in), 2 * 3);
	evbuffer_free(in);
}
END_TEST

/* Our output above out_high stops reading (OPEN; CLOSING only in the client role, which still
 * answers pings there); the side's own pause stops it too. */
START_TEST(output_above_watermark_pauses)
{
	for (int r = 0; r < 2; r++) {
		for (int closing = 0; closing < 2; closing++) {
			struct evbuffer *in = evbuffer_new();

			fk_begin((enum ws_role)r);
			fk.st = closing ? WS_EP_CLOSING : WS_EP_OPEN;
			ws_endpoint_queue_frame(&q, 1, WS_OP_TEXT, (const uint8_t *)"0123456789",
			                        10, NULL);
			add_frame(in, WS_OP_PING, "x", r == WS_ROLE_SERVER);
			add_frame(in, WS_OP_PING, "y", r == WS_ROLE_SERVER);
			run_read((enum ws_role)r, in, 4);
			ck_assert_int_eq(fk.high, !closing || r == WS_ROLE_CLIENT ? 1 : 0);
			evbuffer_free(in);
			ws_outq_free(&q);
			memset(&q, 0, sizeof(q));
			ck_assert_int_eq(ws_outq_attach(&q, bufferevent_get_output(bev), -1,
			                                WS_OUTQ_FRONT_FROZEN, 1000),
			                 0);
		}
	}
	/* Paused by the side: nothing is read. */
	{
		struct evbuffer *in = evbuffer_new();

		fk_begin(WS_ROLE_SERVER);
		fk.paused = 1;
		add_frame(in, WS_OP_TEXT, "x", 1);
		run_read(WS_ROLE_SERVER, in, SIZE_MAX);
		ck_assert_int_eq(fk.data, 0);
		ck_assert_uint_eq(evbuffer_get_length(in), 7);
		evbuffer_free(in);
	}
}
END_TEST

/* The write side: FLUSHING and empty is flushed; under out_low the drained wait and the output
 * pause end; above it nothing happens. */
START_TEST(written_by_state_and_level)
{
	struct ws_endpoint ep;
	static uint8_t big[200];

	/* (The output of a bufferevent that never connected cannot be drained: the cases go from
	 * empty to full.) */
	fk_begin(WS_ROLE_SERVER);
	fk_view(&ep);
	ws_endpoint_written(&ep);
	ck_assert_int_eq(fk.drained, 1);
	ck_assert_int_eq(fk.resumed, 1);
	fk.st = WS_EP_FLUSHING;
	ws_endpoint_written(&ep);
	ck_assert_int_eq(fk.flushed, 1);
	ck_assert_int_eq(fk.drained, 1); /* no drained wait ends while flushing */
	ws_endpoint_queue_frame(&q, 1, WS_OP_BINARY, big, sizeof(big), NULL);
	ws_endpoint_written(&ep);
	ck_assert_int_eq(fk.flushed, 1); /* not empty */
	fk.st = WS_EP_OPEN;
	ws_endpoint_written(&ep);
	ck_assert_int_eq(fk.drained, 1); /* above out_low */
	ck_assert_int_eq(fk.resumed, 1);
}
END_TEST

/* The heartbeat: the first ping at ping_interval, one ping at a time, dead after pong_timeout
 * without progress, idle after idle_timeout (server role only), the drain time first. */
START_TEST(heartbeat_rules)
{
	struct ws_endpoint ep;
	uint64_t t0 = 100000;

	fk_begin(WS_ROLE_SERVER);
	fk_view(&ep);
	ws_endpoint_start(&ep, t0);
	ck_assert_uint_eq(fk.armed, 1000);
	ws_endpoint_tick(&ep, t0 + 1000);
	ck_assert_int_eq(fk.nqueued, 1);
	ck_assert_int_eq(fk.queued_ops[0], WS_OP_PING);
	ck_assert_int_eq(fk.pinged, 1);
	ck_assert_int_eq(ws_outq_ping_outstanding(&q), 1);
	/* Next look: a quarter of pong_timeout while the ping is out. */
	ck_assert_uint_eq(fk.armed, 100);
	/* The ping is not answered; the next ping time passes: no second ping. */
	ws_outq_rx(&q, t0 + 1900);
	ws_endpoint_tick(&ep, t0 + 2000);
	ck_assert_int_eq(fk.nqueued, 1);
	ck_assert_int_eq(fk.pinged, 2);
	ck_assert_int_eq(fk.expired[WS_HB_DEAD], 0);
	/* No progress for pong_timeout: dead. */
	ws_endpoint_tick(&ep, t0 + 2300);
	ck_assert_int_eq(fk.expired[WS_HB_DEAD], 1);

	/* Idle: no message for idle_timeout (pings answered keep it away: they count). */
	fk_begin(WS_ROLE_SERVER);
	fk_view(&ep);
	ws_endpoint_start(&ep, t0);
	ws_outq_pong(&q);
	ws_endpoint_tick(&ep, t0 + 5000);
	ck_assert_int_eq(fk.expired[WS_HB_IDLE], 1);
	/* The client role has no idle time. */
	fk_begin(WS_ROLE_CLIENT);
	fk_view(&ep);
	ws_endpoint_start(&ep, t0);
	ws_outq_pong(&q);
	ws_endpoint_tick(&ep, t0 + 5000);
	ck_assert_int_eq(fk.expired[WS_HB_IDLE], 0);
	ck_assert_int_eq(fk.queued_ops[0], WS_OP_PING);
	/* The drain time comes before anything else. */
	fk_begin(WS_ROLE_SERVER);
	fk_view(&ep);
	ws_endpoint_start(&ep, t0);
	cur_live.drain_at_ms = t0 + 10;
	ws_endpoint_schedule(&ep, t0);
	ck_assert_uint_eq(fk.armed, 10);
	ws_endpoint_tick(&ep, t0 + 10);
	ck_assert_int_eq(fk.expired[WS_HB_DRAIN], 1);
}
END_TEST

START_TEST(ping_payload_round_trip)
{
	uint8_t p[8];
	uint64_t rtt = 0;

	ws_endpoint_ping_payload(p, 123456789);
	ck_assert_int_eq(ws_endpoint_pong_rtt(p, 8, 123456789 + 42, &rtt), 1);
	ck_assert_uint_eq(rtt, 42);
	/* Not ours: a send time in the future, too old, or not 8 bytes. */
	ck_assert_int_eq(ws_endpoint_pong_rtt(p, 8, 123456788, &rtt), 0);
	ck_assert_int_eq(ws_endpoint_pong_rtt(p, 8, 123456789 + 3600 * 1000, &rtt), 0);
	ck_assert_int_eq(ws_endpoint_pong_rtt(p, 7, 123456790, &rtt), 0);
}
END_TEST

static Suite *
ws_endpoint_suite(void)
{
	Suite *s = suite_create("ws_endpoint");
	TCase *tc = tcase_create("both roles");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, server_role_frames_are_plain);
	tcase_add_test(tc, client_role_frames_are_masked);
	tcase_add_test(tc, control_frames_overtake_queued_data);
	tcase_add_test(tc, close_payloads);
	tcase_add_test(tc, server_role_reads_masked_frames_only);
	tcase_add_test(tc, client_role_refuses_masked_frames);
	tcase_add_test(tc, close_is_answered_then_flushing);
	tcase_add_test(tc, close_taken_by_the_side);
	tcase_add_test(tc, our_close_then_theirs);
	tcase_add_test(tc, error_while_closing_by_role);
	tcase_add_test(tc, pings_answered_by_role);
	tcase_add_test(tc, pong_ends_the_ping);
	tcase_add_test(tc, closed_inside_an_event_stops_at_once);
	tcase_add_test(tc, output_above_watermark_pauses);
	tcase_add_test(tc, written_by_state_and_level);
	tcase_add_test(tc, heartbeat_rules);
	tcase_add_test(tc, ping_payload_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(ws_endpoint_suite());
}
