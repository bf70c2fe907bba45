/* fuzz_proxy_proto.c - libFuzzer target for the PROXY protocol v1/v2 parser: no crash, and a
 * header it accepts never claims more bytes than it was given. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_proto_result r;

	if (proxy_proto_parse(data, size, &r) == PROXY_PROTO_OK &&
	    (r.len == 0 || r.len > size || (r.family != 0 && r.local)))
		abort();
	return 0;
}
