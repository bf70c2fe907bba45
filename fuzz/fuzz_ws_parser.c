/* fuzz_ws_parser.c - libFuzzer target: the receive-side parser over arbitrary bytes, fed whole
 * and in chunks, checking its promises and that both ways tell the same story. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "ws_frame.h"
#include "ws_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_MESSAGE 100 /* small, so the 1009 path is reachable */
#define FZ_CHECK(c)                                                                                \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

/*
 * What a run produced, serialised so runs with different chunking compare byte for byte:
 * data bytes as they come (0xff escaped), markers for message start and end, and control
 * events with their payloads.  The error, if any, is kept aside.
 */
struct fz_run {
	uint8_t *out;
	size_t len, cap;
	int failed;
	uint16_t err_code;
};

static void
fz_put(struct fz_run *r, uint8_t b)
{
	FZ_CHECK(r->len < r->cap);
	r->out[r->len++] = b;
}

static void
fz_mark(struct fz_run *r, uint8_t what)
{
	fz_put(r, 0xff);
	fz_put(r, what);
}

static void
fz_bytes(struct fz_run *r, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		fz_put(r, p[i]);
		if (p[i] == 0xff)
			fz_put(r, 0xff);
	}
}

/* What the caller of one parser can check on every event, whatever the chunking. */
struct fz_msg {
	int in_msg;
	uint8_t opcode;
	uint64_t len;
	uint32_t utf8;
};

static void
fz_event(struct fz_run *r, struct fz_msg *m, const struct ws_parser *p, const struct ws_event *ev,
         const uint8_t *win, size_t used)
{
	switch (ev->type) {
	case WS_EV_DATA:
		/* Never beyond what this call consumed of the buffer it was given. */
		FZ_CHECK(ev->len <= used);
		FZ_CHECK(ev->data >= win && ev->data + ev->len <= win + used);
		FZ_CHECK(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
		FZ_CHECK(ev->first == !m->in_msg);
		FZ_CHECK(!ev->last || ev->frame_left == 0);
		if (ev->first) {
			m->in_msg = 1;
			m->opcode = ev->opcode;
			m->len = 0;
			m->utf8 = UTF8_ACCEPT;
			fz_mark(r, 'S');
			fz_put(r, ev->opcode);
		}
		FZ_CHECK(ev->opcode == m->opcode);
		m->len += ev->len;
		if (p->max_message != 0)
			FZ_CHECK(m->len <= p->max_message);
		/* Text handed out is always a valid prefix, and valid when complete. */
		if (ev->opcode == WS_OP_TEXT) {
			m->utf8 = utf8_feed(m->utf8, ev->data, ev->len);
			FZ_CHECK(m->utf8 != UTF8_REJECT);
			FZ_CHECK(!ev->last || m->utf8 == UTF8_ACCEPT);
		}
		fz_bytes(r, ev->data, ev->len);
		if (ev->last) {
			m->in_msg = 0;
			fz_mark(r, 'E');
		}
		FZ_CHECK(ws_parser_in_message(p) == !ev->last);
		break;
	case WS_EV_PING:
	case WS_EV_PONG:
	case WS_EV_CLOSE:
		FZ_CHECK(ev->len <= WS_CONTROL_MAX);
		if (ev->type == WS_EV_CLOSE) {
			FZ_CHECK(ev->close_code == WS_CLOSE_NO_STATUS ||
			         ws_close_code_valid(ev->close_code));
			FZ_CHECK(utf8_valid(ev->data, ev->len));
		}
		fz_mark(r, ev->type == WS_EV_PING ? 'P' : ev->type == WS_EV_PONG ? 'O' : 'C');
		fz_put(r, ev->close_code >> 8);
		fz_put(r, ev->close_code & 0xff);
		fz_put(r, (uint8_t)ev->len);
		fz_bytes(r, ev->data, ev->len);
		break;
	default:
		abort();
	}
}

/*
 * Feeds in[0..n) as reads of `chunk` bytes, each fed from an exactly sized heap copy so
 * ASan sees any read past n.
 */
static void
fz_feed(const uint8_t *in, size_t n, size_t chunk, int require_mask, uint64_t max, struct fz_run *r)
{
	struct ws_parser p;
	struct ws_event ev;
	struct fz_msg m;
	enum ws_ev_type t;
	uint8_t *win;
	size_t pos = 0, end = 0, wn, used;

	memset(&m, 0, sizeof(m));
	ws_parser_init(&p, max, require_mask);
	while (end < n) {
		end = n - end < chunk ? n : end + chunk;
		while (pos < end) {
			wn = end - pos;
			win = malloc(wn);
			FZ_CHECK(win != NULL);
			memcpy(win, in + pos, wn);
			t = ws_parser_feed(&p, win, wn, &used, &ev);
			FZ_CHECK(t == ev.type && used <= wn);
			if (t == WS_EV_ERROR) {
				free(win);
				FZ_CHECK(p.state == WS_PS_FAILED && ev.reason != NULL);
				FZ_CHECK(ev.close_code == WS_CLOSE_PROTOCOL ||
				         ev.close_code == WS_CLOSE_INVALID_DATA ||
				         ev.close_code == WS_CLOSE_TOO_BIG);
				r->failed = 1;
				r->err_code = ev.close_code;
				/* Sticky: nothing consumed, the same code again. */
				FZ_CHECK(ws_parser_feed(&p, NULL, 0, &used, &ev) == WS_EV_ERROR);
				FZ_CHECK(used == 0 && ev.close_code == r->err_code);
				ws_parser_free(&p);
				return;
			}
			if (t == WS_EV_NONE) {
				FZ_CHECK(used == wn);
				free(win);
				pos = end;
				break;
			}
			fz_event(r, &m, &p, &ev, win, used);
			free(win);
			pos += used;
		}
	}
	ws_parser_free(&p);
}

/*
 * Input: byte 0 picks the read size (1..64), byte 1 the mode (mask required, a small
 * max_message), the rest is the peer's bytes.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_run whole, part;
	size_t chunk, n, cap;
	const uint8_t *in;
	int require_mask;
	uint64_t max;

	if (size < 2)
		return 0;
	chunk = (data[0] & 0x3f) + 1;
	require_mask = data[1] & 1;
	max = (data[1] & 2) ? FZ_MAX_MESSAGE : 0;
	in = data + 2;
	n = size - 2;

	/* Every event eats at least one input byte, and costs at most 2x it plus 8. */
	cap = 10 * n + 16;
	memset(&whole, 0, sizeof(whole));
	memset(&part, 0, sizeof(part));
	whole.out = malloc(cap);
	part.out = malloc(cap);
	FZ_CHECK(whole.out != NULL && part.out != NULL);
	whole.cap = part.cap = cap;

	fz_feed(in, n, n == 0 ? 1 : n, require_mask, max, &whole);
	fz_feed(in, n, chunk, require_mask, max, &part);

	/*
	 * Same errors, same events.  Only before a UTF-8 error may the chunked run have handed
	 * out more: fed in pieces, the valid bytes ahead of the bad one go out first.
	 */
	FZ_CHECK(whole.failed == part.failed && whole.err_code == part.err_code);
	if (whole.failed && whole.err_code == WS_CLOSE_INVALID_DATA) {
		FZ_CHECK(whole.len <= part.len);
		FZ_CHECK(memcmp(whole.out, part.out, whole.len) == 0);
	} else {
		FZ_CHECK(whole.len == part.len);
		FZ_CHECK(memcmp(whole.out, part.out, whole.len) == 0);
	}

	free(whole.out);
	free(part.out);
	return 0;
}
