/* ws_deflate.c - permessage-deflate with zlib: a client's message inflated under the size
 * limit and UTF-8-checked as it grows; a message compressed once with a per-thread stream. */
#include "ws_deflate.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "utf8.h"
#include "ws_frame.h"

/* RFC 7692 7.2.2: the sender removes this tail of its Z_SYNC_FLUSH output, the receiver puts
 * it back before inflating. */
static const uint8_t ws_deflate_tail[4] = {0x00, 0x00, 0xff, 0xff};

/* zlib 1.2.13's struct inflate_state is 7,160 bytes on LP64; rounded up. */
#define WS_INFLATE_STATE_COST 7424

/* Compressors kept per thread: one per (level, window) in use; a route set rarely has more. */
#define WS_DEFLATE_CACHE 4

struct ws_deflater {
	z_stream zs;
	int level;
	unsigned bits;
	int used; /* zs was initialised */
};

static _Thread_local struct ws_deflater ws_deflaters[WS_DEFLATE_CACHE];
static _Thread_local unsigned ws_deflaters_next; /* the one replaced when all are taken */
static _Thread_local uint8_t *ws_deflate_buf;
static _Thread_local size_t ws_deflate_cap;
/* For whole messages that arrive in one chunk without takeover: one inflater per thread. */
static _Thread_local z_stream *ws_inflate_scratch;

/* Kept inflate streams of every worker: the one process-wide number behind
 * compression_memory. */
static _Atomic uint64_t ws_deflate_budget;

size_t
ws_inflate_cost(unsigned bits)
{
	return sizeof(z_stream) + WS_INFLATE_STATE_COST + ((size_t)1 << bits);
}

int
ws_deflate_budget_take(uint64_t limit, size_t cost)
{
	uint64_t cur = atomic_load(&ws_deflate_budget);

	do {
		if (cur + cost > limit)
			return 0;
	} while (!atomic_compare_exchange_weak(&ws_deflate_budget, &cur, cur + cost));
	return 1;
}

void
ws_deflate_budget_give(size_t cost)
{
	atomic_fetch_sub(&ws_deflate_budget, cost);
}

uint64_t
ws_deflate_budget_used(void)
{
	return atomic_load(&ws_deflate_budget);
}

/* ---- inflate ---- */

static z_stream *
ws_inflate_new(unsigned bits)
{
	z_stream *zs = calloc(1, sizeof(*zs));

	if (zs == NULL)
		return NULL;
	if (inflateInit2(zs, -(int)bits) != Z_OK) {
		free(zs);
		return NULL;
	}
	return zs;
}

static void
ws_inflate_end(z_stream *zs)
{
	if (zs != NULL) {
		inflateEnd(zs);
		free(zs);
	}
}

/* Room for more output: doubles, never past max (0 = none) and at least by 1 KiB. */
static int
ws_inflate_grow(struct ws_inflater *in, uint64_t max)
{
	size_t cap = in->cap ? in->cap * 2 : 4096;
	uint8_t *p;

	if (max != 0 && cap > max)
		cap = (size_t)max;
	if (cap <= in->cap)
		return -1;
	if ((p = realloc(in->buf, cap)) == NULL)
		return -1;
	in->buf = p;
	in->cap = cap;
	return 0;
}

/* Runs zs over p[0..n) into buf, until the input is taken and zlib has no output pending.
 * Returns 0, or -1 with *code and *why set. */
static int
ws_inflate_run(struct ws_inflater *in, z_stream *zs, const uint8_t *p, size_t n, uint64_t max,
               uint16_t *code, const char **why)
{
	zs->next_in = (Bytef *)(uintptr_t)p;
	zs->avail_in = (uInt)n;
	for (;;) {
		size_t before, got;
		uint8_t probe;
		int r, full = 0;

		if (in->len == in->cap) {
			if (max != 0 && in->len >= max)
				full = 1; /* one more byte of output would make it too big */
			else if (ws_inflate_grow(in, max) < 0) {
				*code = WS_CLOSE_INTERNAL;
				*why = "out of memory";
				return -1;
			}
		}
		zs->next_out = full ? &probe : in->buf + in->len;
		zs->avail_out = full ? 1 : (uInt)(in->cap - in->len);
		before = zs->avail_out;
		r = inflate(zs, Z_SYNC_FLUSH);
		got = before - zs->avail_out;
		if (full && got > 0) {
			*code = WS_CLOSE_TOO_BIG;
			*why = "message too big (inflated)";
			return -1;
		}
		if (in->text && got > 0) {
			in->utf8 = utf8_feed(in->utf8, in->buf + in->len, got);
			if (in->utf8 == UTF8_REJECT) {
				*code = WS_CLOSE_INVALID_DATA;
				*why = "invalid UTF-8 in text message";
				return -1;
			}
		}
		in->len += got;
		if (r == Z_STREAM_END) {
			/* A final block (BFINAL) ends the deflate stream; what follows (at least
			 * the tail we append) starts a new one. */
			if (inflateReset(zs) != Z_OK)
				break;
			continue;
		}
		if (r != Z_OK && r != Z_BUF_ERROR)
			break;
		if (zs->avail_in == 0 && zs->avail_out > 0)
			return 0; /* input taken and nothing pending */
		if (r == Z_BUF_ERROR && got == 0 && zs->avail_out > 0)
			return 0;
	}
	*code = WS_CLOSE_INVALID_DATA;
	*why = "invalid compressed data";
	return -1;
}

enum ws_inflate_status
ws_inflate_feed(struct ws_inflater *in, const uint8_t *p, size_t n, int first, int last, int text,
                uint64_t max, uint16_t *code, const char **why)
{
	z_stream *zs;
	int scratch = 0;

	if (first) {
		in->len = 0;
		in->text = text != 0;
		in->utf8 = UTF8_ACCEPT;
	}
	zs = in->zs;
	if (zs == NULL && first && last && !in->takeover) {
		/* The whole message is here: the thread's inflater does it, nothing is kept. */
		if (ws_inflate_scratch == NULL)
			ws_inflate_scratch = ws_inflate_new(15);
		if ((zs = ws_inflate_scratch) != NULL && inflateReset2(zs, -(int)in->bits) != Z_OK)
			zs = NULL;
		scratch = 1;
	} else if (zs == NULL) {
		zs = in->zs = ws_inflate_new(in->bits);
	}
	if (zs == NULL) {
		*code = WS_CLOSE_INTERNAL;
		*why = "out of memory";
		return WS_INFLATE_ERROR;
	}
	if (ws_inflate_run(in, zs, p, n, max, code, why) < 0 ||
	    (last && ws_inflate_run(in, zs, ws_deflate_tail, sizeof(ws_deflate_tail), max, code,
	                            why) < 0)) {
		if (scratch)
			(void)inflateReset(zs);
		return WS_INFLATE_ERROR;
	}
	if (!last)
		return WS_INFLATE_MORE;
	if (in->text && in->utf8 != UTF8_ACCEPT) {
		*code = WS_CLOSE_INVALID_DATA;
		*why = "truncated UTF-8 in text message";
		return WS_INFLATE_ERROR;
	}
	return WS_INFLATE_DONE;
}

void
ws_inflate_done(struct ws_inflater *in)
{
	/* Idle connections keep no buffers, and no stream unless it is the client's context. */
	free(in->buf);
	in->buf = NULL;
	in->len = in->cap = 0;
	if (!in->takeover) {
		ws_inflate_end(in->zs);
		in->zs = NULL;
	}
}

void
ws_inflater_free(struct ws_inflater *in)
{
	free(in->buf);
	in->buf = NULL;
	in->len = in->cap = 0;
	ws_inflate_end(in->zs);
	in->zs = NULL;
}

/* ---- deflate ---- */

static struct ws_deflater *
ws_deflater_get(int level, unsigned bits)
{
	struct ws_deflater *d;
	unsigned i;

	for (i = 0; i < WS_DEFLATE_CACHE; i++) {
		d = &ws_deflaters[i];
		if (d->used && d->level == level && d->bits == bits) {
			if (deflateReset(&d->zs) != Z_OK)
				return NULL;
			return d;
		}
	}
	for (i = 0; i < WS_DEFLATE_CACHE && ws_deflaters[i].used; i++)
		;
	if (i == WS_DEFLATE_CACHE) {
		i = ws_deflaters_next++ % WS_DEFLATE_CACHE;
		deflateEnd(&ws_deflaters[i].zs);
		ws_deflaters[i].used = 0;
	}
	d = &ws_deflaters[i];
	memset(&d->zs, 0, sizeof(d->zs));
	/* memLevel 8 is zlib's default; the stream is per thread, not per connection. */
	if (deflateInit2(&d->zs, level, Z_DEFLATED, -(int)bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return NULL;
	d->level = level;
	d->bits = bits;
	d->used = 1;
	return d;
}

const uint8_t *
ws_deflate_message(int level, unsigned bits, const uint8_t *data, size_t len, size_t *outlen)
{
	struct ws_deflater *d;
	size_t need, out = 0;

	if ((d = ws_deflater_get(level, bits)) == NULL)
		return NULL;
	/* deflateBound covers Z_FINISH; a sync flush adds its empty block and some slack. */
	need = deflateBound(&d->zs, (uLong)len) + 16;
	if (need > ws_deflate_cap) {
		uint8_t *p = realloc(ws_deflate_buf, need);
		if (p == NULL)
			return NULL;
		ws_deflate_buf = p;
		ws_deflate_cap = need;
	}
	d->zs.next_in = (Bytef *)(uintptr_t)data;
	d->zs.avail_in = (uInt)len;
	d->zs.next_out = ws_deflate_buf;
	d->zs.avail_out = (uInt)ws_deflate_cap;
	if (deflate(&d->zs, Z_SYNC_FLUSH) != Z_OK || d->zs.avail_in != 0)
		return NULL;
	out = ws_deflate_cap - d->zs.avail_out;
	/* A sync flush ends in the empty stored block 00 00 ff ff; the receiver adds it back. */
	if (out >= 4 && memcmp(ws_deflate_buf + out - 4, ws_deflate_tail, 4) == 0)
		out -= 4;
	*outlen = out;
	return ws_deflate_buf;
}

/* ---- a message compressed as it streams (a relay's fragments) ---- */

size_t
ws_deflate_stream_cost(unsigned bits)
{
	/* deflateInit2's own sum for memLevel 8: window and prev (2 + 2 bytes a window byte),
	 * head (64 KiB), the pending buffer (64 KiB), its state. */
	return sizeof(z_stream) + 6016 + ((size_t)4 << bits) + ((size_t)1 << 17);
}

void *
ws_deflate_stream_new(int level, unsigned bits)
{
	z_stream *zs = calloc(1, sizeof(*zs));

	if (zs == NULL)
		return NULL;
	if (deflateInit2(zs, level, Z_DEFLATED, -(int)bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(zs);
		return NULL;
	}
	return zs;
}

const uint8_t *
ws_deflate_stream_feed(void *stream, const uint8_t *data, size_t len, int last, size_t *outlen)
{
	z_stream *zs = stream;
	size_t out = 0;

	zs->next_in = (Bytef *)(uintptr_t)data;
	zs->avail_in = (uInt)len;
	/* Until zlib has taken the input and, at the end, flushed everything: the buffer grows
	 * when it fills. Between fragments zlib may keep output back (Z_NO_FLUSH), so only the
	 * last fragment ends in the sync flush's 00 00 ff ff, which is removed. */
	for (;;) {
		int r;
		if (ws_deflate_cap - out < 64 || ws_deflate_cap < len / 2 + 1024) {
			size_t cap = ws_deflate_cap ? ws_deflate_cap * 2 : 16384;
			uint8_t *p;
			while (cap < len / 2 + 1024)
				cap *= 2;
			if ((p = realloc(ws_deflate_buf, cap)) == NULL)
				return NULL;
			ws_deflate_buf = p;
			ws_deflate_cap = cap;
		}
		zs->next_out = ws_deflate_buf + out;
		zs->avail_out = (uInt)(ws_deflate_cap - out);
		r = deflate(zs, last ? Z_SYNC_FLUSH : Z_NO_FLUSH);
		out = ws_deflate_cap - zs->avail_out;
		if (r != Z_OK && r != Z_BUF_ERROR)
			return NULL;
		if (zs->avail_in == 0 && zs->avail_out > 0)
			break;
	}
	if (last && out >= 4 && memcmp(ws_deflate_buf + out - 4, ws_deflate_tail, 4) == 0)
		out -= 4;
	*outlen = out;
	return ws_deflate_buf;
}

void
ws_deflate_stream_free(void *stream)
{
	if (stream != NULL) {
		deflateEnd(stream);
		free(stream);
	}
}

void
ws_deflate_thread_free(void)
{
	for (unsigned i = 0; i < WS_DEFLATE_CACHE; i++)
		if (ws_deflaters[i].used) {
			deflateEnd(&ws_deflaters[i].zs);
			ws_deflaters[i].used = 0;
		}
	free(ws_deflate_buf);
	ws_deflate_buf = NULL;
	ws_deflate_cap = 0;
	ws_inflate_end(ws_inflate_scratch);
	ws_inflate_scratch = NULL;
}
