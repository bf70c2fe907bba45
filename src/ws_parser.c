/* ws_parser.c - pure RFC 6455 receive side: turns fed bytes into message and control events.
 * Enforces fragmentation order, UTF-8 (fail-fast), close-frame rules and max_message; no I/O. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "ws_frame.h"
#include "ws_parser.h"

void
ws_parser_init(struct ws_parser *p, uint64_t max_message, int require_mask)
{
	memset(p, 0, sizeof(*p));
	p->state = WS_PS_HEADER;
	p->max_message = max_message;
	p->require_mask = require_mask;
	p->utf8 = UTF8_ACCEPT;
}

void
ws_parser_free(struct ws_parser *p)
{
	free(p->ctrl_buf);
	p->ctrl_buf = NULL;
}

uint64_t
ws_parser_wire_max(uint64_t max_message)
{
	/* zlib's deflateBound for any memLevel: a sender with a small memLevel cuts
	 * incompressible data into many small stored blocks. */
	uint64_t slack = (max_message >> 3) + (max_message >> 6) + 64;

	if (max_message == 0 || UINT64_MAX - max_message < slack)
		return 0;
	return max_message + slack;
}

void
ws_parser_pass_masked(struct ws_parser *p, int on)
{
	p->pass_masked = on != 0;
}

/* UTF-8 of masked bytes, read only: unmasked a block at a time on the stack. */
static uint32_t
ws_parser_utf8_masked(uint32_t st, const uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off)
{
	uint8_t blk[256];

	while (n > 0 && st != UTF8_REJECT) {
		size_t k = n < sizeof(blk) ? n : sizeof(blk);

		memcpy(blk, p, k);
		off = ws_mask(blk, k, mask, off);
		st = utf8_feed(st, blk, k);
		p += k;
		n -= k;
	}
	return st;
}

int
ws_parser_in_message(const struct ws_parser *p)
{
	return p->msg_opcode != 0;
}

/* The one way into WS_PS_FAILED; the error is kept so every later feed repeats it. */
static enum ws_ev_type
ws_parser_fail(struct ws_parser *p, struct ws_event *ev, uint16_t code, const char *reason)
{
	p->state = WS_PS_FAILED;
	p->err_code = code;
	p->err_reason = reason;
	ev->type = WS_EV_ERROR;
	ev->close_code = code;
	ev->reason = reason;
	return WS_EV_ERROR;
}

/* Header bytes needed, judged from what hdr_buf holds so far (the first two bytes decide). */
static size_t
ws_parser_hdr_need(const struct ws_parser *p)
{
	size_t need = 2;
	unsigned len7;

	if (p->hdr_len < 2)
		return need;
	len7 = p->hdr_buf[1] & 0x7f;
	if (len7 == 126)
		need += 2;
	else if (len7 == 127)
		need += 8;
	if (p->hdr_buf[1] & 0x80)
		need += 4;
	return need;
}

/*
 * A complete header: check that it fits the message in progress and the size limit, then
 * enter WS_PS_PAYLOAD.  The limit is judged on the announced length, so an oversized message
 * fails before any of its payload is read.
 */
static enum ws_ev_type
ws_parser_frame_start(struct ws_parser *p, struct ws_event *ev)
{
	struct ws_frame_hdr *fh = &p->fh;
	uint64_t max;

	p->frame_left = fh->len;
	p->mask_off = 0;
	p->ctrl_len = 0;
	p->state = WS_PS_PAYLOAD;

	/* RSV1 (permessage-deflate, when negotiated) marks a message's first frame only
	 * (RFC 7692 6.1). */
	if ((fh->rsv & WS_RSV1) && WS_OP_IS_CONTROL(fh->opcode))
		return ws_parser_fail(p, ev, WS_CLOSE_PROTOCOL, "RSV1 on a control frame");
	if ((fh->rsv & WS_RSV1) && fh->opcode == WS_OP_CONT)
		return ws_parser_fail(p, ev, WS_CLOSE_PROTOCOL, "RSV1 on a continuation frame");

	/* Control frames may sit between fragments and do not touch the message. */
	if (WS_OP_IS_CONTROL(fh->opcode))
		return WS_EV_NONE;

	if (fh->opcode == WS_OP_CONT) {
		if (p->msg_opcode == 0)
			return ws_parser_fail(p, ev, WS_CLOSE_PROTOCOL, "unexpected continuation");
	} else {
		p->msg_compressed = (fh->rsv & WS_RSV1) != 0;
		if (p->msg_opcode != 0)
			return ws_parser_fail(p, ev, WS_CLOSE_PROTOCOL, "expected continuation");
		p->msg_opcode = fh->opcode;
		p->msg_len = 0;
		p->msg_started = 0;
		p->utf8 = UTF8_ACCEPT;
	}

	/* msg_len <= the limit holds here, so the subtraction cannot wrap. A compressed message
	 * is judged again on its inflated size as it inflates. */
	max = p->msg_compressed ? ws_parser_wire_max(p->max_message) : p->max_message;
	if (max != 0 && fh->len > max - p->msg_len)
		return ws_parser_fail(p, ev, WS_CLOSE_TOO_BIG, "message too big");
	/* Without a limit, saturate rather than wrap: msg_len is only informative then. */
	if (UINT64_MAX - p->msg_len < fh->len)
		p->msg_len = UINT64_MAX;
	else
		p->msg_len += fh->len;
	return WS_EV_NONE;
}

/*
 * Gathers header bytes into hdr_buf, never taking a byte past the header, and decodes as soon
 * as two bytes are in so errors in them show without waiting for the rest.  Returns
 * WS_EV_NONE with the state still WS_PS_HEADER when the input ran out.
 */
static enum ws_ev_type
ws_parser_header(struct ws_parser *p, const uint8_t *buf, size_t n, size_t *pos,
                 struct ws_event *ev)
{
	enum ws_frame_status st;
	size_t need, k;

	for (;;) {
		need = ws_parser_hdr_need(p);
		if (p->hdr_len >= 2) {
			st = ws_frame_decode(p->hdr_buf, p->hdr_len, p->rsv_allowed,
			                     p->require_mask, &p->fh);
			if (st == WS_FRAME_OK) {
				p->hdr_len = 0;
				return ws_parser_frame_start(p, ev);
			}
			if (st != WS_FRAME_NEED_MORE)
				return ws_parser_fail(p, ev, WS_CLOSE_PROTOCOL,
				                      ws_frame_strerror(st));
		}
		if (*pos == n)
			return WS_EV_NONE;
		k = need - p->hdr_len;
		if (k > n - *pos)
			k = n - *pos;
		memcpy(p->hdr_buf + p->hdr_len, buf + *pos, k);
		p->hdr_len += k;
		*pos += k;
	}
}

/* A close frame's payload is complete (d, n): an empty one means 1005, else code [+ UTF-8
 * reason]. */
static enum ws_ev_type
ws_parser_close(struct ws_parser *p, const uint8_t *d, size_t n, struct ws_event *ev)
{
	unsigned code;

	ev->type = WS_EV_CLOSE;
	ev->data = d;
	if (n == 0) {
		ev->close_code = WS_CLOSE_NO_STATUS;
		ev->len = 0;
		return WS_EV_CLOSE;
	}
	if (n == 1)
		return ws_parser_fail(p, ev, WS_CLOSE_PROTOCOL, "close frame too short");
	code = (unsigned)d[0] << 8 | d[1];
	if (!ws_close_code_valid(code))
		return ws_parser_fail(p, ev, WS_CLOSE_PROTOCOL, "invalid close code");
	if (!utf8_valid(d + 2, n - 2))
		return ws_parser_fail(p, ev, WS_CLOSE_INVALID_DATA,
		                      "invalid UTF-8 in close reason");
	ev->close_code = code;
	ev->data = d + 2;
	ev->len = n - 2;
	return WS_EV_CLOSE;
}

/*
 * A control payload whole in buf is unmasked in place, as data is. One that straddles two
 * feeds is copied into ctrl_buf (allocated for it) and unmasked there, since the caller need
 * not keep the first part.  The event comes once the frame is whole.
 */
static enum ws_ev_type
ws_parser_control(struct ws_parser *p, uint8_t *buf, size_t n, size_t *pos, struct ws_event *ev)
{
	size_t k = n - *pos;
	const uint8_t *d;

	/* frame_left <= WS_CONTROL_MAX, ws_frame_decode saw to it. */
	if (k > p->frame_left)
		k = p->frame_left;
	if (p->ctrl_len == 0 && k == p->frame_left) { /* whole here: no copy */
		d = buf + *pos;
		if (p->fh.masked)
			ws_mask(buf + *pos, k, p->fh.mask, 0);
		*pos += k;
		p->frame_left = 0;
		p->ctrl_len = (uint8_t)k;
		goto whole;
	}
	if (k > 0 && p->ctrl_buf == NULL && (p->ctrl_buf = malloc(WS_CONTROL_MAX)) == NULL)
		return ws_parser_fail(p, ev, WS_CLOSE_INTERNAL, "out of memory");
	if (k > 0) {
		memcpy(p->ctrl_buf + p->ctrl_len, buf + *pos, k);
		if (p->fh.masked)
			p->mask_off =
			    ws_mask(p->ctrl_buf + p->ctrl_len, k, p->fh.mask, p->mask_off);
		p->ctrl_len += k;
		*pos += k;
		p->frame_left -= k;
	}
	if (p->frame_left > 0)
		return WS_EV_NONE;
	d = p->ctrl_buf;
whole:
	p->state = WS_PS_HEADER;
	switch (p->fh.opcode) {
	case WS_OP_PING:
		ev->type = WS_EV_PING;
		break;
	case WS_OP_PONG:
		ev->type = WS_EV_PONG;
		break;
	default:
		return ws_parser_close(p, d, p->ctrl_len, ev);
	}
	ev->data = d;
	ev->len = p->ctrl_len;
	return ev->type;
}

/*
 * Data payload: whatever of the frame is in buf is unmasked in place and checked before it is
 * handed out, so a bad UTF-8 byte fails the message before the caller sees it.  An empty
 * chunk makes an event only when it ends the message, so the caller always sees last=1.
 */
static enum ws_ev_type
ws_parser_data(struct ws_parser *p, uint8_t *buf, size_t n, size_t *pos, struct ws_event *ev)
{
	uint8_t *chunk;
	size_t k = n - *pos;
	int last, keep, text;

	if (k > p->frame_left)
		k = p->frame_left;
	if (k == 0 && p->frame_left > 0)
		return WS_EV_NONE; /* input exhausted mid-frame */

	/* Non-NULL here: k > 0, or a 0-length frame whose header came in this very buffer. */
	chunk = buf + *pos;
	keep = p->fh.masked && p->pass_masked;
	text = p->msg_opcode == WS_OP_TEXT && !p->msg_compressed;
	if (keep) {
		/* Left masked for the relay: the key rotated so the chunk starts a payload. */
		for (unsigned i = 0; i < 4; i++)
			ev->mask[i] = p->fh.mask[(p->mask_off + i) & 3];
		if (text)
			p->utf8 = ws_parser_utf8_masked(p->utf8, chunk, k, p->fh.mask, p->mask_off);
		p->mask_off += k;
	} else {
		if (p->fh.masked)
			p->mask_off = ws_mask(chunk, k, p->fh.mask, p->mask_off);
		if (text)
			p->utf8 = utf8_feed(p->utf8, chunk, k);
	}
	if (text && p->utf8 == UTF8_REJECT)
		return ws_parser_fail(p, ev, WS_CLOSE_INVALID_DATA,
		                      "invalid UTF-8 in text message");
	*pos += k;
	p->frame_left -= k;
	if (p->frame_left == 0)
		p->state = WS_PS_HEADER;

	last = p->frame_left == 0 && p->fh.fin;
	if (last && p->msg_opcode == WS_OP_TEXT && !p->msg_compressed && p->utf8 != UTF8_ACCEPT)
		return ws_parser_fail(p, ev, WS_CLOSE_INVALID_DATA,
		                      "truncated UTF-8 in text message");
	if (k == 0 && !last)
		return WS_EV_NONE; /* an empty non-final fragment: nothing to say */

	ev->type = WS_EV_DATA;
	ev->opcode = p->msg_opcode;
	ev->first = !p->msg_started;
	ev->last = last;
	ev->compressed = p->msg_compressed;
	ev->masked = (uint8_t)keep;
	ev->data = chunk;
	ev->len = k;
	ev->frame_left = p->frame_left;
	p->msg_started = 1;
	if (last) {
		p->msg_opcode = 0;
		p->msg_len = 0;
		p->msg_started = 0;
		p->msg_compressed = 0;
	}
	return WS_EV_DATA;
}

enum ws_ev_type
ws_parser_feed(struct ws_parser *p, uint8_t *buf, size_t n, size_t *used, struct ws_event *ev)
{
	enum ws_ev_type t = WS_EV_NONE;
	size_t pos = 0;

	memset(ev, 0, sizeof(*ev));
	/* The last event's gathered control payload is no longer the caller's to read. */
	if (p->ctrl_buf != NULL && !(p->state == WS_PS_PAYLOAD && WS_OP_IS_CONTROL(p->fh.opcode)))
		ws_parser_free(p);
	if (p->state == WS_PS_FAILED) {
		*used = 0;
		ev->type = WS_EV_ERROR;
		ev->close_code = p->err_code;
		ev->reason = p->err_reason;
		return WS_EV_ERROR;
	}

	/*
	 * Header, then payload, frame after frame, until an event completes or the input ends.
	 * A 0-length frame completes right after its header, even with no byte left.
	 */
	for (;;) {
		if (p->state == WS_PS_HEADER) {
			t = ws_parser_header(p, buf, n, &pos, ev);
			if (t != WS_EV_NONE || p->state == WS_PS_HEADER)
				break;
		}
		if (WS_OP_IS_CONTROL(p->fh.opcode))
			t = ws_parser_control(p, buf, n, &pos, ev);
		else
			t = ws_parser_data(p, buf, n, &pos, ev);
		if (t != WS_EV_NONE || p->state == WS_PS_PAYLOAD)
			break;
	}
	*used = pos;
	return t;
}
