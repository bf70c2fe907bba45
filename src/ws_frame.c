/* ws_frame.c - pure RFC 6455 frame header codec, payload masking and close-code rules.
 * Headers are decoded byte by byte from untrusted input; nothing here allocates or does I/O. */
#include <stdint.h>
#include <string.h>

#include "ws_frame.h"

#define WS_B0_FIN 0x80
#define WS_B0_RSV_SHIFT 4
#define WS_B0_OPCODE 0x0f
#define WS_B1_MASK 0x80
#define WS_B1_LEN 0x7f
#define WS_LEN_16 126 /* 7-bit length value announcing a 16-bit length */
#define WS_LEN_64 127 /* ... and a 64-bit one */

static int
ws_frame_opcode_known(unsigned op)
{
	switch (op) {
	case WS_OP_CONT:
	case WS_OP_TEXT:
	case WS_OP_BINARY:
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		return 1;
	default:
		return 0;
	}
}

enum ws_frame_status
ws_frame_decode(const uint8_t *p, size_t n, unsigned rsv_allowed, int require_mask,
                struct ws_frame_hdr *h)
{
	unsigned fin, rsv, op, masked, len7;
	size_t need, i;
	uint64_t len;

	if (n < 2)
		return WS_FRAME_NEED_MORE;

	fin = (p[0] & WS_B0_FIN) != 0;
	rsv = (p[0] >> WS_B0_RSV_SHIFT) & 7;
	op = p[0] & WS_B0_OPCODE;
	masked = (p[1] & WS_B1_MASK) != 0;
	len7 = p[1] & WS_B1_LEN;

	/*
	 * Everything the first two bytes can condemn is checked before asking for more, so a
	 * bad frame fails without waiting for (or trusting) the rest of its header.
	 */
	if ((rsv & ~rsv_allowed) != 0)
		return WS_FRAME_ERR_RSV;
	if (!ws_frame_opcode_known(op))
		return WS_FRAME_ERR_OPCODE;
	/* A 126/127 length form means at least 126 bytes (or a non-minimal encoding): too long. */
	if (WS_OP_IS_CONTROL(op) && (!fin || len7 > WS_CONTROL_MAX))
		return WS_FRAME_ERR_CONTROL;
	if (require_mask && !masked)
		return WS_FRAME_ERR_UNMASKED;

	need = 2;
	if (len7 == WS_LEN_16)
		need += 2;
	else if (len7 == WS_LEN_64)
		need += 8;
	if (masked)
		need += 4;
	if (n < need)
		return WS_FRAME_NEED_MORE;

	i = 2;
	if (len7 == WS_LEN_16) {
		len = (uint64_t)p[2] << 8 | p[3];
		i += 2;
		if (len < WS_LEN_16)
			return WS_FRAME_ERR_LENGTH;
	} else if (len7 == WS_LEN_64) {
		len = 0;
		for (; i < 10; i++)
			len = len << 8 | p[i];
		/* RFC 6455 5.2: the most significant bit must be 0. */
		if (len >> 63)
			return WS_FRAME_ERR_LENGTH;
		if (len <= 0xffff)
			return WS_FRAME_ERR_LENGTH;
	} else
		len = len7;

	memset(h, 0, sizeof(*h));
	h->fin = fin;
	h->rsv = rsv;
	h->opcode = op;
	h->masked = masked;
	if (masked) {
		memcpy(h->mask, p + i, 4);
		i += 4;
	}
	h->len = len;
	h->hdr_len = i;
	return WS_FRAME_OK;
}

size_t
ws_frame_encode(uint8_t *out, int fin, unsigned rsv, unsigned opcode, uint64_t len,
                const uint8_t mask[4])
{
	size_t i = 2;
	int shift;

	out[0] = (fin ? WS_B0_FIN : 0) | (rsv & 7) << WS_B0_RSV_SHIFT | (opcode & WS_B0_OPCODE);
	out[1] = mask != NULL ? WS_B1_MASK : 0;

	/* Always the shortest form: peers (and our own decoder) reject the others. */
	if (len < WS_LEN_16)
		out[1] |= (uint8_t)len;
	else if (len <= 0xffff) {
		out[1] |= WS_LEN_16;
		out[i++] = (uint8_t)(len >> 8);
		out[i++] = (uint8_t)len;
	} else {
		out[1] |= WS_LEN_64;
		for (shift = 56; shift >= 0; shift -= 8)
			out[i++] = (uint8_t)(len >> shift);
	}

	if (mask != NULL) {
		memcpy(out + i, mask, 4);
		i += 4;
	}
	return i;
}

uint64_t
ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset)
{
	uint8_t kb[8];
	uint64_t key, w;
	size_t i = 0, j;

	/* Head: byte by byte up to an 8-byte boundary, so the wide loop stores aligned words. */
	while (i < n && ((uintptr_t)(p + i) & 7) != 0) {
		p[i] ^= mask[offset & 3];
		i++;
		offset++;
	}
	if (i == n)
		return offset;

	/*
	 * The key rotated to start at this offset, in memory order and repeated twice: since 8
	 * is a multiple of 4, the same word lines up with every following 8 bytes.  Building it
	 * through bytes and memcpy keeps it independent of endianness and free of aliasing.
	 */
	for (j = 0; j < 8; j++)
		kb[j] = mask[(offset + j) & 3];
	memcpy(&key, kb, sizeof(key));
	offset += n - i;

	for (; n - i >= 8; i += 8) {
		memcpy(&w, p + i, sizeof(w));
		w ^= key;
		memcpy(p + i, &w, sizeof(w));
	}

	/* Tail: whole words leave the rotation unchanged, so kb still lines up. */
	for (j = 0; i < n; i++, j++)
		p[i] ^= kb[j];

	return offset;
}

int
ws_close_code_valid(unsigned code)
{
	/*
	 * RFC 6455 7.4.1 and the IANA registry: 1004 is reserved, 1005, 1006 and 1015 are for
	 * reporting only and must never be sent; 1000-2999 beyond the registry are reserved for
	 * future standards; 3000-3999 are registered, 4000-4999 private use.
	 */
	if (code >= 3000 && code <= 4999)
		return 1;
	switch (code) {
	case 1000:
	case 1001:
	case 1002:
	case 1003:
	case 1007:
	case 1008:
	case 1009:
	case 1010:
	case 1011:
	case 1012:
	case 1013:
	case 1014:
		return 1;
	default:
		return 0;
	}
}

const char *
ws_frame_strerror(enum ws_frame_status st)
{
	switch (st) {
	case WS_FRAME_OK:
		return "ok";
	case WS_FRAME_NEED_MORE:
		return "incomplete frame header";
	case WS_FRAME_ERR_RSV:
		return "reserved bit set";
	case WS_FRAME_ERR_OPCODE:
		return "reserved opcode";
	case WS_FRAME_ERR_UNMASKED:
		return "unmasked client frame";
	case WS_FRAME_ERR_CONTROL:
		return "bad control frame";
	case WS_FRAME_ERR_LENGTH:
		return "bad payload length";
	}
	return "unknown frame error";
}
