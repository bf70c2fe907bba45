/* fuzz_http.c - libFuzzer target for the upgrade-request parser: any input must parse without
 * reading outside it, and every field the parser returns must point back into it. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
fuzz_check_request(const struct http_request *req, const char *buf, size_t n)
{
	size_t i;

	if (req->header_len > n || req->header_len > HTTP_MAX_HEADER || req->header_len < 4 ||
	    memcmp(buf + req->header_len - 4, "\r\n\r\n", 4) != 0)
		abort();
	/* Fields lie inside the head, not merely inside the input. */
	fuzz_check_str(req->method, buf, req->header_len);
	fuzz_check_str(req->target, buf, req->header_len);
	fuzz_check_str(req->path, buf, req->header_len);
	fuzz_check_str(req->query, buf, req->header_len);
	fuzz_check_str(req->host, buf, req->header_len);
	fuzz_check_str(req->upgrade, buf, req->header_len);
	fuzz_check_str(req->connection, buf, req->header_len);
	fuzz_check_str(req->key, buf, req->header_len);
	fuzz_check_str(req->ws_version, buf, req->header_len);
	fuzz_check_str(req->origin, buf, req->header_len);
	fuzz_check_str(req->cookie, buf, req->header_len);
	fuzz_check_str(req->authorization, buf, req->header_len);
	fuzz_check_str(req->extensions, buf, req->header_len);
	if (req->nprotocols > HTTP_MAX_PROTOCOLS)
		abort();
	for (i = 0; i < req->nprotocols; i++) {
		fuzz_check_str(req->protocols[i], buf, req->header_len);
		if (req->protocols[i].n == 0)
			abort();
	}
	if (req->method.n == 0 || req->target.n == 0 || req->target.p[0] != '/' ||
	    req->path.p != req->target.p || req->path.n > req->target.n || req->version_minor < 0 ||
	    req->version_minor > 9)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct http_request req, again;
	enum http_parse_status st;
	const char *why = NULL;
	char accept[29], out[2 * HTTP_MAX_HEADER];
	int status;

	st = http_parse_request(buf, size, &req);
	switch (st) {
	case HTTP_PARSE_OK:
		fuzz_check_request(&req, buf, size);
		/* The head alone parses the same: nothing after the blank line was looked at. */
		if (http_parse_request(buf, req.header_len, &again) != HTTP_PARSE_OK ||
		    again.header_len != req.header_len)
			abort();
		status = http_check_upgrade(&req, &why);
		/* 505: HTTP/1.0 parses (health checkers) but cannot upgrade */
		if (status != 0 && status != 400 && status != 405 && status != 426 && status != 505)
			abort();
		if ((status != 0) != (why != NULL))
			abort();
		if (status == 0) {
			if (!http_ws_key_valid(req.key.p, req.key.n))
				abort();
			http_ws_accept(req.key.p, req.key.n, accept);
			if (strlen(accept) != 28)
				abort();
			if (http_format_101(out, sizeof(out), accept,
			                    req.nprotocols ? req.protocols[0].p : NULL,
			                    req.nprotocols ? req.protocols[0].n : 0) == 0)
				abort();
		} else if (http_format_reply(out, sizeof(out), status, NULL, NULL) == 0)
			abort();
		break;
	case HTTP_PARSE_NEED_MORE:
		if (size >= HTTP_MAX_HEADER)
			abort();
		break;
	case HTTP_PARSE_TOO_LARGE:
		if (size < HTTP_MAX_HEADER)
			abort();
		break;
	case HTTP_PARSE_BAD:
	case HTTP_PARSE_VERSION:
		break;
	default:
		abort();
	}
	return 0;
}
