/* ws_deflate.h - permessage-deflate's zlib side (RFC 7692 7.2): inflating a client's message
 * under max_message_size (checked while inflating) and compressing a message without context
 * takeover. No sockets: bytes in, bytes out.
 *
 * Memory: compression uses one zlib stream per thread and parameter set, reset between
 * messages (server_no_context_takeover), so no connection holds a compressor. A connection
 * holds an inflate stream only while one of its messages is being inflated, or for good when it
 * negotiated client context takeover (the window is the client's dictionary); those are counted
 * in a per-process budget (ws_deflate_budget_*). */
#ifndef WSGATE_WS_DEFLATE_H
#define WSGATE_WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

/* The receive side of one connection. Zeroed = ready; ws_inflater_free releases. */
struct ws_inflater {
	void *zs;         /* z_stream: NULL between messages unless takeover */
	uint8_t bits;     /* the client's window (8..15) */
	uint8_t takeover; /* the client keeps its context: zs lives between messages */
	uint8_t text;     /* the message in progress is text: UTF-8 checked as it inflates */
	uint8_t *buf;     /* the inflated message so far; freed after delivery */
	size_t len, cap;
	uint32_t utf8; /* UTF-8 state of buf */
};

enum ws_inflate_status {
	WS_INFLATE_MORE = 0,   /* this chunk was taken; the message goes on */
	WS_INFLATE_DONE = 1,   /* the message is whole in buf[0..len) */
	WS_INFLATE_ERROR = -1, /* *code / *why say how to fail the connection */
};

/* Feeds one chunk of a compressed message (first: a new message of opcode text or not; last:
 * the message ends here). max: largest inflated message, 0 = none. Output never grows past
 * max: the chunk that would make it is refused with 1009. */
enum ws_inflate_status ws_inflate_feed(struct ws_inflater *in, const uint8_t *p, size_t n,
                                       int first, int last, int text, uint64_t max, uint16_t *code,
                                       const char **why);
/* After a DONE message was delivered: drops buf, and zs unless takeover. */
void ws_inflate_done(struct ws_inflater *in);
void ws_inflater_free(struct ws_inflater *in);
/* Bytes a kept (takeover) inflate stream of window bits costs, for the budget. */
size_t ws_inflate_cost(unsigned bits);

/* Compresses data[0..len) as one message (no context takeover), with level and a window of
 * bits (9..15). Returns the payload to send with RSV1 (the trailing 00 00 ff ff removed) in a
 * per-thread buffer valid until the next call on this thread, or NULL (out of memory). */
const uint8_t *ws_deflate_message(int level, unsigned bits, const uint8_t *data, size_t len,
                                  size_t *outlen);
/* A message compressed as it is sent in fragments (no context takeover either): a stream
 * exists only while that message is in progress. feed returns the bytes for this fragment's
 * frame (possibly none) in the per-thread buffer; with last, the message ends there. */
void *ws_deflate_stream_new(int level, unsigned bits);
const uint8_t *ws_deflate_stream_feed(void *stream, const uint8_t *data, size_t len, int last,
                                      size_t *outlen);
void ws_deflate_stream_free(void *stream);
/* Bytes such a stream holds (counted in compression_memory while it exists). */
size_t ws_deflate_stream_cost(unsigned bits);

/* Frees this thread's compressors and buffer (a worker exiting; tests). */
void ws_deflate_thread_free(void);

/* The process-wide budget of kept inflate streams (compression_memory). take returns 1 when
 * cost fits under limit (and counts it), 0 when not. */
int ws_deflate_budget_take(uint64_t limit, size_t cost);
void ws_deflate_budget_give(size_t cost);
uint64_t ws_deflate_budget_used(void);

#endif
