/* fuzz_ws_deflate_ext.c - libFuzzer target for the permessage-deflate offer parser: no crash,
 * and an accepted offer's terms stay within the policy, and its answer, read back as an offer,
 * is accepted with the same terms (the answer is itself a valid extension list). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_deflate_ext.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ws_pmd_policy pol = {15, 15, 1};
	struct ws_pmd_params p, q;
	char resp[WS_PMD_RESPONSE_MAX];
	enum ws_pmd_status st;

	/* The first byte picks the policy; the rest is a request head. */
	if (size > 0) {
		pol.server_max_bits = 9 + data[0] % 7;
		pol.client_max_bits = 8 + (data[0] >> 3) % 8;
		pol.allow_client_takeover = data[0] >> 7;
		data++;
		size--;
	}
	st = ws_pmd_negotiate((const char *)data, size, &pol, &p);
	if (st != WS_PMD_ACCEPT)
		return 0;
	if (p.server_bits < 9 || p.server_bits > pol.server_max_bits || p.client_bits < 8 ||
	    p.client_bits > pol.client_max_bits ||
	    (!pol.allow_client_takeover && !p.client_no_takeover))
		abort();
	ws_pmd_response(&p, resp);
	{
		int found = 0;
		struct ws_pmd_policy all = {15, 15, 1};
		if (ws_pmd_negotiate_value(resp, strlen(resp), &all, &q, &found) != WS_PMD_ACCEPT)
			abort();
		if (q.client_no_takeover != p.client_no_takeover)
			abort();
	}
	return 0;
}
