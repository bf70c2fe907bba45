/* ws_parser.h - pure RFC 6455 receive side: frames -> message events.
 * Handles fragmentation with interleaved control frames, incremental UTF-8 (fails at the first
 * bad byte, even inside a partly received frame), close-frame validation and max_message_size.
 * No I/O: the caller feeds buffers and acts on events. Payload is unmasked in place, so data
 * events point into the caller's buffer (zero copy); so do control payloads that arrive whole in
 * one buffer. Only a control frame whose payload straddles two feeds is gathered, in a 125-byte
 * buffer allocated for it and freed by the next feed (an idle connection holds none). */
#ifndef WSGATE_WS_PARSER_H
#define WSGATE_WS_PARSER_H

#include <stddef.h>
#include <stdint.h>

#include "ws_frame.h"

enum ws_ev_type {
	WS_EV_NONE = 0, /* every byte fed was consumed; feed more */
	WS_EV_DATA,  /* a chunk of a text/binary message (possibly empty, e.g. a 0-byte message) */
	WS_EV_PING,  /* a complete ping; payload in data/len */
	WS_EV_PONG,  /* a complete pong */
	WS_EV_CLOSE, /* a valid close frame; close_code (1005 when empty) and reason in data/len */
	WS_EV_ERROR, /* protocol error: fail the connection with close_code; reason is static text
	              */
};

struct ws_event {
	enum ws_ev_type type;
	uint8_t opcode;      /* WS_EV_DATA: the message's opcode, WS_OP_TEXT or WS_OP_BINARY */
	uint8_t first;       /* WS_EV_DATA: first chunk of a message */
	uint8_t last;        /* WS_EV_DATA: last chunk: the message is complete */
	uint8_t compressed;  /* WS_EV_DATA: permessage-deflate data (RSV1 on its first frame):
	                      * not UTF-8-checked here, bounded by ws_parser_wire_max */
	uint8_t masked;      /* WS_EV_DATA with pass_masked: data is still masked with mask */
	uint8_t mask[4];     /* masked: the frame's key rotated to the chunk's first byte, so the
	                      * chunk alone is a frame payload masked with it */
	const uint8_t *data; /* chunk / control payload / close reason */
	size_t len;
	uint64_t frame_left; /* WS_EV_DATA: bytes of the current frame not yet delivered */
	uint16_t close_code; /* WS_EV_CLOSE, WS_EV_ERROR */
	const char *reason;  /* WS_EV_ERROR: static description, usable as a close reason */
};

enum ws_parser_state {
	WS_PS_HEADER = 0, /* gathering a frame header in hdr_buf */
	WS_PS_PAYLOAD,    /* inside a frame's payload */
	WS_PS_FAILED,     /* an error was reported; further input is ignored */
};

struct ws_parser {
	/* Ordered by size: one is in every connection (issue #12: idle memory). */
	uint64_t max_message;   /* 0 = unlimited; a larger message fails with 1009 */
	struct ws_frame_hdr fh; /* current frame */
	uint64_t frame_left;    /* payload bytes still to come for the current frame */
	uint64_t mask_off;      /* position within the current frame's payload, for unmasking */
	uint64_t msg_len;       /* bytes of the current data message so far */
	const char *err_reason; /* WS_PS_FAILED: its static reason */
	uint8_t *ctrl_buf;      /* WS_CONTROL_MAX bytes while a straddling control payload is
	                           gathered (and until the next feed); NULL otherwise */
	enum ws_parser_state state;
	unsigned rsv_allowed; /* RSV bits an extension negotiated */
	int require_mask;     /* 1 on the server side (frames from clients) */
	uint32_t utf8;        /* UTF-8 state of the current text message */
	uint16_t err_code;    /* WS_PS_FAILED: the close code reported, repeated on every feed */
	uint8_t pass_masked;  /* data payloads stay masked (ws_parser_pass_masked) */
	uint8_t msg_opcode;   /* 0 when no data message is in progress */
	uint8_t msg_started;  /* a WS_EV_DATA with first=1 was emitted for the current message */
	uint8_t
	    msg_compressed; /* the current message's first frame had RSV1 (permessage-deflate) */
	uint8_t hdr_len;    /* bytes gathered in hdr_buf */
	uint8_t ctrl_len;   /* bytes gathered in ctrl_buf */
	uint8_t hdr_buf[WS_FRAME_HDR_MAX];
};

void ws_parser_init(struct ws_parser *p, uint64_t max_message, int require_mask);
/* Frees what the parser holds (a control payload being gathered); it may be fed again after. */
void ws_parser_free(struct ws_parser *p);

/* Consumes bytes from buf[0..n) until one event is complete or the input is exhausted.
 * *used is set to the bytes consumed; the caller calls again with the remainder.
 * buf is modified (unmasked in place). Returns ev->type. An event's data stays valid
 * until the caller releases the bytes it points into, and (a control frame gathered across
 * feeds) until the next call. After WS_EV_ERROR the parser is FAILED and consumes nothing more. */
enum ws_ev_type ws_parser_feed(struct ws_parser *p, uint8_t *buf, size_t n, size_t *used,
                               struct ws_event *ev);

/* The most wire bytes a compressed message may take when max_message is the limit of its
 * inflated size: deflate's stored blocks expand incompressible data (by up to ~14% with a
 * sender's smallest memLevel); the inflated size is what is checked exactly. */
uint64_t ws_parser_wire_max(uint64_t max_message);

/* Data payloads are handed out still masked (ev->masked, ev->mask), for a relay that sends
 * them on masked (the proxy towards its backend): nothing is written to the buffer, text is
 * UTF-8-checked through a read-only unmasking pass, every other check is unchanged.
 * Control frames are always unmasked (they are read here). */
void ws_parser_pass_masked(struct ws_parser *p, int on);

/* 1 while a fragmented data message is in progress. */
int ws_parser_in_message(const struct ws_parser *p);

#endif
