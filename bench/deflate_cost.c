/* deflate_cost.c - what compressing a broadcast costs per delivery, three ways (issue 19):
 * wsgate's (ws_deflate_message: one compression per message per worker, shared by every
 * subscriber), one compression per subscriber without context takeover, and one per subscriber
 * with a kept per-connection context (what most servers do). Same JSON messages as
 * pmd_fanout.py; reports ns per compression, bytes per message and the zlib memory a kept
 * context holds.
 * usage: deflate_cost [MSGS] [SIZE] [SUBS] [LEVEL]      (built by run-deflate.sh) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include "ws_deflate.h"

static size_t zmem; /* bytes zlib holds through the counting allocator */

static voidpf
count_alloc(voidpf opaque, uInt items, uInt size)
{
	size_t *p = malloc(sizeof(size_t) + (size_t)items * size);

	(void)opaque;
	if (p == NULL)
		return NULL;
	*p = (size_t)items * size;
	zmem += *p;
	return p + 1;
}

static void
count_free(voidpf opaque, voidpf addr)
{
	size_t *p = (size_t *)addr - 1;

	(void)opaque;
	zmem -= *p;
	free(p);
}

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static size_t
json_message(char *out, size_t size, int i)
{
	size_t n = 0;

	for (int k = 0; n < size; k++)
		n += (size_t)snprintf(
		    out + n, size + 256 - n,
		    "%s{\"seq\": %d, \"k\": %d, \"symbol\": \"ABC%d\", \"bid\": %.2f, \"ask\": "
		    "%.2f, "
		    "\"ts\": %lld}",
		    k ? "," : "", i, k, (i + k) % 50, 100 + ((i * 7 + k) % 300) / 7.0,
		    100.5 + ((i * 3 + k) % 300) / 7.0, 1764650000000LL + i * 10 + k);
	return size;
}

int
main(int argc, char **argv)
{
	int msgs = argc > 1 ? atoi(argv[1]) : 2000, size = argc > 2 ? atoi(argv[2]) : 1024;
	int subs = argc > 3 ? atoi(argv[3]) : 100, level = argc > 4 ? atoi(argv[4]) : 6;
	char *all = malloc((size_t)msgs * ((size_t)size + 256)), *buf;
	uint8_t out[1 << 16];
	double t0, t1;
	size_t bytes = 0, zlen;
	z_stream *zs = calloc((size_t)subs, sizeof(*zs));

	/* The messages first: their making is not what is timed. */
	for (int i = 0; i < msgs; i++)
		json_message(all + (size_t)i * ((size_t)size + 256), (size_t)size, i);
#define MSG(i) (all + (size_t)(i) * ((size_t)size + 256))
	/* Warm up the thread's compressor (its first use allocates it). */
	(void)ws_deflate_message(level, 15, (uint8_t *)MSG(0), (size_t)size, &zlen);

	/* 1. wsgate: one reset stream per thread, once per message. */
	t0 = now_ns();
	for (int i = 0; i < msgs; i++) {
		buf = MSG(i);
		if (ws_deflate_message(level, 15, (uint8_t *)buf, (size_t)size, &zlen) == NULL)
			return 1;
		bytes += zlen;
	}
	t1 = now_ns();
	printf("RESULT way=shared ns_per_compression=%.0f bytes_per_msg=%.1f "
	       "ns_per_delivery_at_%d_subs=%.1f context_bytes_per_conn=0\n",
	       (t1 - t0) / msgs, (double)bytes / msgs, subs, (t1 - t0) / msgs / subs);

	/* 2. per subscriber, no context takeover: the same compression, subs times. */
	bytes = 0;
	t0 = now_ns();
	for (int i = 0; i < msgs; i++) {
		buf = MSG(i);
		for (int s = 0; s < subs; s++) {
			if (ws_deflate_message(level, 15, (uint8_t *)buf, (size_t)size, &zlen) ==
			    NULL)
				return 1;
			bytes += zlen;
		}
	}
	t1 = now_ns();
	printf("RESULT way=per_subscriber ns_per_compression=%.0f bytes_per_msg=%.1f "
	       "ns_per_delivery_at_%d_subs=%.1f context_bytes_per_conn=0\n",
	       (t1 - t0) / msgs / subs, (double)bytes / msgs / subs, subs, (t1 - t0) / msgs / subs);

	/* 3. per subscriber with a kept context (server context takeover). */
	for (int s = 0; s < subs; s++) {
		zs[s].zalloc = count_alloc;
		zs[s].zfree = count_free;
		if (deflateInit2(&zs[s], level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
			return 1;
	}
	bytes = 0;
	t0 = now_ns();
	for (int i = 0; i < msgs; i++) {
		buf = MSG(i);
		for (int s = 0; s < subs; s++) {
			zs[s].next_in = (Bytef *)buf;
			zs[s].avail_in = (uInt)size;
			zs[s].next_out = out;
			zs[s].avail_out = sizeof(out);
			if (deflate(&zs[s], Z_SYNC_FLUSH) != Z_OK)
				return 1;
			bytes += sizeof(out) - zs[s].avail_out - 4;
		}
	}
	t1 = now_ns();
	printf("RESULT way=per_subscriber_takeover ns_per_compression=%.0f bytes_per_msg=%.1f "
	       "ns_per_delivery_at_%d_subs=%.1f context_bytes_per_conn=%zu\n",
	       (t1 - t0) / msgs / subs, (double)bytes / msgs / subs, subs, (t1 - t0) / msgs / subs,
	       zmem / (size_t)subs);
	for (int s = 0; s < subs; s++)
		deflateEnd(&zs[s]);
	ws_deflate_thread_free();
	free(zs);
	free(all);
	return 0;
}
