/* ws_frame.h - pure RFC 6455 frame header codec and masking. No I/O, no allocation.
 * Lengths are uint64_t, decoded byte by byte. */
#ifndef WSGATE_WS_FRAME_H
#define WSGATE_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xA,
};

#define WS_FRAME_HDR_MAX 14 /* 2 + 8 (64-bit length) + 4 (mask key) */
#define WS_CONTROL_MAX 125  /* RFC 6455 5.5 */
#define WS_OP_IS_CONTROL(op) (((op)&0x8) != 0)

/* Close codes (RFC 6455 7.4.1) used by the gateway. */
enum ws_close_code {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002,
	WS_CLOSE_UNSUPPORTED = 1003,
	WS_CLOSE_NO_STATUS = 1005, /* never sent on the wire */
	WS_CLOSE_ABNORMAL = 1006,  /* never sent on the wire */
	WS_CLOSE_INVALID_DATA = 1007,
	WS_CLOSE_POLICY = 1008,
	WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_INTERNAL = 1011,
	WS_CLOSE_RESTART = 1012,
	WS_CLOSE_TRY_AGAIN = 1013,
};

/* RSV1 in ws_frame_hdr.rsv: permessage-deflate's "compressed" bit (RFC 7692 6). */
#define WS_RSV1 4u

struct ws_frame_hdr {
	uint8_t fin;     /* 1 when this is the final fragment */
	uint8_t rsv;     /* the three RSV bits, as (b0 >> 4) & 7 */
	uint8_t opcode;  /* enum ws_opcode */
	uint8_t masked;  /* MASK bit */
	uint8_t mask[4]; /* masking key, valid when masked */
	uint64_t len;    /* payload length */
	size_t hdr_len;  /* bytes of header consumed, 2..14 */
};

enum ws_frame_status {
	WS_FRAME_OK = 0,
	WS_FRAME_NEED_MORE = 1,
	WS_FRAME_ERR_RSV = -1,      /* RSV bit set without a negotiated extension: 1002 */
	WS_FRAME_ERR_OPCODE = -2,   /* reserved opcode: 1002 */
	WS_FRAME_ERR_UNMASKED = -3, /* client frame without MASK: 1002 */
	WS_FRAME_ERR_CONTROL = -4,  /* control frame > 125 bytes or fragmented: 1002 */
	WS_FRAME_ERR_LENGTH =
	    -5, /* 64-bit length with the top bit set, or not minimally encoded: 1002 */
};

/* Decodes one header from p[0..n). rsv_allowed is the mask of RSV bits an extension negotiated
 * (0 without extensions). require_mask: 1 for frames from clients. On WS_FRAME_OK h is filled. */
enum ws_frame_status ws_frame_decode(const uint8_t *p, size_t n, unsigned rsv_allowed,
                                     int require_mask, struct ws_frame_hdr *h);

/* Encodes a header into out (>= WS_FRAME_HDR_MAX bytes); mask may be NULL for server frames.
 * Returns the header length. */
size_t ws_frame_encode(uint8_t *out, int fin, unsigned rsv, unsigned opcode, uint64_t len,
                       const uint8_t mask[4]);

/* XORs p[0..n) with the key, starting at key offset `offset` (position within the payload);
 * returns the offset after these bytes (so chunks can be unmasked one after another). */
uint64_t ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);

/* 1 when code may appear in a close frame on the wire (1000-1003, 1007-1011, 1012-1014, 3000-4999).
 */
int ws_close_code_valid(unsigned code);

/* Short English name of a frame status, for logs and close reasons. */
const char *ws_frame_strerror(enum ws_frame_status st);

#endif
