/* fuzz_ws_inflate.c - libFuzzer target for the inflate path: any compressed bytes, cut into
 * any chunks, with or without context takeover, as text or binary: no crash, no leak, output
 * never past the limit, and text that is delivered is valid UTF-8. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "utf8.h"
#include "ws_deflate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ws_inflater in = {0};
	uint64_t max;
	size_t off = 0;
	int text, first = 1;

	if (size < 2)
		return 0;
	/* Header: window bits, takeover, text, chunk size, then the limit. */
	in.bits = (uint8_t)(8 + data[0] % 8);
	in.takeover = (data[0] >> 3) & 1;
	text = (data[0] >> 4) & 1;
	max = (uint64_t)data[1] * 64 + 1;
	data += 2;
	size -= 2;
	while (off <= size) {
		size_t k = size - off;
		uint16_t code;
		const char *why;
		enum ws_inflate_status st;
		int last;

		/* A 0xfe byte ends a message (in the middle of a chunk sequence), 0xfd a chunk. */
		for (size_t i = off; i < size; i++)
			if (data[i] == 0xfe || data[i] == 0xfd) {
				k = i - off;
				break;
			}
		last = off + k >= size || data[off + k] == 0xfe;
		st = ws_inflate_feed(&in, data + off, k, first, last, text, max, &code, &why);
		if (in.len > max)
			abort();
		if (st == WS_INFLATE_ERROR) {
			ws_inflate_done(&in);
			break;
		}
		if (st == WS_INFLATE_DONE) {
			if (text && !utf8_valid(in.buf, in.len))
				abort();
			ws_inflate_done(&in);
		}
		first = last;
		off += k + 1;
	}
	ws_inflater_free(&in);
	ws_deflate_thread_free();
	return 0;
}
