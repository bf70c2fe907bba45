/* fuzz_http_response.c - libFuzzer target for the backend's upgrade response: any input must
 * parse without reading outside it, every field must point back into the head, and the 101
 * checks must hold their promises (a chosen subprotocol is one we offered). */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "http_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* RFC 6455 1.3's key and its accept value: inputs may carry the right one. */
#define FUZZ_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static void
fuzz_check_str(struct http_str s, const char *buf, size_t n)
{
	if (s.p == NULL) {
		if (s.n != 0)
			abort();
		return;
	}
	if (s.p < buf || s.p > buf + n || s.n > (size_t)(buf + n - s.p))
		abort();
}

static void
fuzz_check_response(const struct http_response *r, const char *buf, size_t n)
{
	if (r->header_len > n || r->header_len > HTTP_RESPONSE_MAX_HEADER || r->header_len < 4 ||
	    memcmp(buf + r->header_len - 4, "\r\n\r\n", 4) != 0)
		abort();
	if (r->status < 100 || r->status > 599 || r->version_minor < 0 || r->version_minor > 9 ||
	    r->nfields > HTTP_RESPONSE_MAX_FIELDS)
		abort();
	fuzz_check_str(r->reason, buf, r->header_len);
	for (size_t i = 0; i < r->nfields; i++) {
		fuzz_check_str(r->fields[i].name, buf, r->header_len);
		fuzz_check_str(r->fields[i].value, buf, r->header_len);
		if (r->fields[i].name.n == 0 ||
		    memchr(r->fields[i].value.p ? r->fields[i].value.p : "", '\r',
		           r->fields[i].value.n) != NULL)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct http_str offered[2] = {{"chat", 4}, {"v2.proto", 8}}, proto;
	struct http_response r, again;
	const char *why = NULL;
	int ok;

	switch (http_response_parse(buf, size, &r)) {
	case HTTP_RESPONSE_OK:
		fuzz_check_response(&r, buf, size);
		/* The head alone parses the same: nothing after the blank line was looked at. */
		if (http_response_parse(buf, r.header_len, &again) != HTTP_RESPONSE_OK ||
		    again.header_len != r.header_len || again.nfields != r.nfields)
			abort();
		ok = http_response_check_upgrade(&r, FUZZ_ACCEPT, offered, 2, &proto, &why);
		if ((ok == 0) != (why == NULL) || (ok != 0 && ok != -1))
			abort();
		if (ok == 0) {
			if (r.status != 101 || r.version_minor != 1)
				abort();
			if (proto.p != NULL && !http_str_eq(proto, "chat") &&
			    !http_str_eq(proto, "v2.proto"))
				abort();
		}
		/* What passes back to the client: whole "Name: value" lines, no CR or LF inside. */
		{
			char pass[512];
			size_t pn = http_response_passthrough(&r, pass, sizeof(pass));

			if (pn >= sizeof(pass) || strlen(pass) != pn ||
			    (pn > 0 && (pn < 4 || memcmp(pass + pn - 2, "\r\n", 2) != 0)))
				abort();
			for (size_t i = 0; i + 1 < pn; i++)
				if ((pass[i] == '\r') != (pass[i + 1] == '\n') && pass[i] == '\r')
					abort();
		}
		/* Offering nothing, any chosen subprotocol is refused. */
		if (http_response_check_upgrade(&r, FUZZ_ACCEPT, NULL, 0, &proto, &why) == 0 &&
		    proto.p != NULL)
			abort();
		break;
	case HTTP_RESPONSE_NEED_MORE:
		if (size >= HTTP_RESPONSE_MAX_HEADER)
			abort();
		break;
	case HTTP_RESPONSE_TOO_LARGE:
	case HTTP_RESPONSE_BAD:
		break;
	default:
		abort();
	}
	return 0;
}
