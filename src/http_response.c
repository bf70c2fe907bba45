/* http_response.c - pure, strict HTTP/1.1 response head parser (RFC 7230 3.1.2, 3.2) and the
 * checks RFC 6455 4.1 asks of a client reading the server's 101. No I/O, no allocation. */
#include <string.h>

#include "http_response.h"
#include "http.h"

/* RFC 7230 3.2.6 tchar. */
static int
http_response_is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int
http_response_is_token(const char *p, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!http_response_is_tchar((unsigned char)p[i]))
			return 0;
	return 1;
}

/* field-vchar / reason-phrase bytes: HTAB, SP, VCHAR, obs-text; no other control. */
static int
http_response_text_ok(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

/* "HTTP/1.x SP 3DIGIT SP reason", the reason (and its SP) may be missing. */
static int
http_response_status_line(const char *p, size_t n, struct http_response *resp)
{
	if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ')
		return -1;
	resp->version_minor = p[7] - '0';
	for (size_t i = 9; i < 12; i++)
		if (p[i] < '0' || p[i] > '9')
			return -1;
	if (p[9] < '1' || p[9] > '5')
		return -1;
	resp->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	if (n == 12) {
		resp->reason.p = p + 12;
		resp->reason.n = 0;
		return 0;
	}
	if (p[12] != ' ' || !http_response_text_ok(p + 13, n - 13))
		return -1;
	resp->reason.p = p + 13;
	resp->reason.n = n - 13;
	return 0;
}

/* One "name: value" line without its CRLF. Whitespace before the colon or a line starting
 * with whitespace (obs-fold) fails the token check. */
static int
http_response_field_line(const char *p, size_t n, struct http_field *f)
{
	const char *colon = memchr(p, ':', n), *v;
	size_t vn;

	if (colon == NULL || !http_response_is_token(p, (size_t)(colon - p)))
		return -1;
	v = colon + 1;
	vn = n - (size_t)(v - p);
	if (!http_response_text_ok(v, vn))
		return -1;
	while (vn > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vn--;
	}
	while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
		vn--;
	f->name.p = p;
	f->name.n = (size_t)(colon - p);
	f->value.p = v;
	f->value.n = vn;
	return 0;
}

enum http_response_status
http_response_parse(const char *buf, size_t n, struct http_response *resp)
{
	size_t lim, pos, eol, end;
	const char *crlf;
	long r;

	memset(resp, 0, sizeof(*resp));
	lim = n < HTTP_RESPONSE_MAX_HEADER ? n : HTTP_RESPONSE_MAX_HEADER;
	if ((r = http_head_end(buf, lim)) < 0)
		return HTTP_RESPONSE_BAD;
	if (r == 0)
		return n >= HTTP_RESPONSE_MAX_HEADER ? HTTP_RESPONSE_TOO_LARGE
		                                     : HTTP_RESPONSE_NEED_MORE;
	end = (size_t)r;

	/* Every CR in buf[0..end) now starts a CRLF, so memchr below always finds one. */
	crlf = memchr(buf, '\r', end);
	eol = (size_t)(crlf - buf);
	if (http_response_status_line(buf, eol, resp) < 0)
		return HTTP_RESPONSE_BAD;
	for (pos = eol + 2; pos < end - 2; pos = eol + 2) {
		crlf = memchr(buf + pos, '\r', end - pos);
		eol = (size_t)(crlf - buf);
		if (resp->nfields == HTTP_RESPONSE_MAX_FIELDS)
			return HTTP_RESPONSE_TOO_LARGE;
		if (http_response_field_line(buf + pos, eol - pos, &resp->fields[resp->nfields]) <
		    0)
			return HTTP_RESPONSE_BAD;
		resp->nfields++;
	}
	resp->header_len = end;
	return HTTP_RESPONSE_OK;
}

size_t
http_response_field(const struct http_response *resp, const char *name, struct http_str *first)
{
	size_t count = 0;

	for (size_t i = 0; i < resp->nfields; i++) {
		if (!http_str_caseeq(resp->fields[i].name, name))
			continue;
		if (count == 0 && first != NULL)
			*first = resp->fields[i].value;
		count++;
	}
	return count;
}

/* 1 when any field named name holds token in its comma-separated list. */
static int
http_response_any_has(const struct http_response *resp, const char *name, const char *token)
{
	for (size_t i = 0; i < resp->nfields; i++)
		if (http_str_caseeq(resp->fields[i].name, name) &&
		    http_token_list_has(resp->fields[i].value.p, resp->fields[i].value.n, token))
			return 1;
	return 0;
}

int
http_response_check_upgrade(const struct http_response *resp, const char *accept,
                            const struct http_str *offered, size_t noffered,
                            struct http_str *protocol, const char **why)
{
	struct http_str v = {NULL, 0};
	size_t n;

	protocol->p = NULL;
	protocol->n = 0;
	if (resp->status != 101) {
		*why = "status is not 101";
		return -1;
	}
	/* RFC 6455 4.1: the upgrade is HTTP/1.1; a 1.0 server cannot have switched protocols. */
	if (resp->version_minor != 1) {
		*why = "101 is not HTTP/1.1";
		return -1;
	}
	if (!http_response_any_has(resp, "Upgrade", "websocket")) {
		*why = "Upgrade header lacks websocket";
		return -1;
	}
	if (!http_response_any_has(resp, "Connection", "upgrade")) {
		*why = "Connection header lacks upgrade";
		return -1;
	}
	n = http_response_field(resp, "Sec-WebSocket-Accept", &v);
	if (n != 1 || !http_str_eq(v, accept)) {
		*why = n == 0 ? "missing Sec-WebSocket-Accept" : "wrong Sec-WebSocket-Accept";
		return -1;
	}
	/* An empty value names no extension; anything else was never offered. */
	for (size_t i = 0; i < resp->nfields; i++)
		if (http_str_caseeq(resp->fields[i].name, "Sec-WebSocket-Extensions") &&
		    resp->fields[i].value.n > 0) {
			*why = "extension not offered";
			return -1;
		}
	n = http_response_field(resp, "Sec-WebSocket-Protocol", &v);
	if (n == 0)
		goto ok;
	if (n > 1 || !http_response_is_token(v.p, v.n)) {
		*why = "Sec-WebSocket-Protocol is not one token";
		return -1;
	}
	for (size_t i = 0; i < noffered; i++)
		if (offered[i].n == v.n && memcmp(offered[i].p, v.p, v.n) == 0) {
			*protocol = v;
			goto ok;
		}
	*why = "subprotocol not offered";
	return -1;
ok:
	*why = NULL;
	return 0;
}

/* Which backend fields the client must see with a status: the application's cookies on the
 * 101, its challenge on 401, its back-off on 429 and 503. Nothing else crosses. */
static int
http_response_passes(int status, struct http_str name)
{
	return (status == 101 && http_str_caseeq(name, "Set-Cookie")) ||
	       (status == 401 && http_str_caseeq(name, "WWW-Authenticate")) ||
	       ((status == 429 || status == 503) && http_str_caseeq(name, "Retry-After"));
}

size_t
http_response_passthrough(const struct http_response *resp, char *out, size_t outsz)
{
	size_t o = 0;

	if (outsz == 0)
		return 0;
	out[0] = '\0';
	for (size_t i = 0; i < resp->nfields; i++) {
		const struct http_field *f = &resp->fields[i];
		size_t need = f->name.n + 2 + f->value.n + 2;

		if (!http_response_passes(resp->status, f->name) || f->value.n == 0)
			continue;
		if (o + need >= outsz)
			break; /* whole lines only */
		memcpy(out + o, f->name.p, f->name.n);
		o += f->name.n;
		memcpy(out + o, ": ", 2);
		o += 2;
		memcpy(out + o, f->value.p, f->value.n);
		o += f->value.n;
		memcpy(out + o, "\r\n", 2);
		o += 2;
	}
	out[o] = '\0';
	return o;
}
