/* http.c - pure, strict HTTP/1.1 request head parser for the WebSocket upgrade (RFC 6455 4.2,
 * RFC 7230 3), the Sec-WebSocket-Accept computation and the handshake-stage replies. */

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "http.h"
#include "base64.h"

#define HTTP_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* RFC 7230 3.2.6 tchar. */
static int
http_is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int
http_is_token(const char *p, size_t n)
{
	size_t i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (!http_is_tchar((unsigned char)p[i]))
			return 0;
	return 1;
}

static int
http_is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static unsigned char
http_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int
http_mem_caseeq(const char *a, size_t an, const char *b, size_t bn)
{
	size_t i;

	if (an != bn)
		return 0;
	for (i = 0; i < an; i++)
		if (http_lower((unsigned char)a[i]) != http_lower((unsigned char)b[i]))
			return 0;
	return 1;
}

static void
http_trim(const char **p, size_t *n)
{
	while (*n > 0 && http_is_ows(**p)) {
		(*p)++;
		(*n)--;
	}
	while (*n > 0 && http_is_ows((*p)[*n - 1]))
		(*n)--;
}

int
http_str_eq(struct http_str s, const char *c)
{
	size_t cn = strlen(c);

	/* A missing field (p NULL) compares equal to "" only; memcmp must not see NULL. */
	return s.n == cn && (cn == 0 || memcmp(s.p, c, cn) == 0);
}

int
http_str_caseeq(struct http_str s, const char *c)
{
	return http_mem_caseeq(s.p, s.n, c, strlen(c));
}

int
http_token_list_has(const char *list, size_t n, const char *token)
{
	size_t tn = strlen(token), i = 0, start, len;
	const char *e;

	while (i <= n && list != NULL) {
		start = i;
		while (i < n && list[i] != ',')
			i++;
		e = list + start;
		len = i - start;
		http_trim(&e, &len);
		if (http_mem_caseeq(e, len, token, tn))
			return 1;
		i++; /* past the comma, or past the end to stop */
	}
	return 0;
}

/*
 * Finds the end of the head in buf[0..lim). Line endings must be CRLF: a bare LF or a CR not
 * followed by LF is rejected as soon as it is seen rather than waiting for a "\r\n\r\n" that
 * such a client would never send. Returns the length through the blank line, 0 when it is not
 * there yet, or -1 on a bad line ending.
 */
long
http_head_end(const char *buf, size_t lim)
{
	size_t i;

	for (i = 0; i < lim; i++) {
		if (buf[i] == '\r') {
			if (i + 1 < lim && buf[i + 1] != '\n')
				return -1;
		} else if (buf[i] == '\n') {
			if (i == 0 || buf[i - 1] != '\r')
				return -1;
			if (i >= 3 && buf[i - 2] == '\n')
				return (long)(i + 1);
		}
	}
	return 0;
}

int
http_bad_line_ending(const char *buf, size_t from, size_t n)
{
	for (size_t i = from; i < n; i++) {
		if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
			return 1;
		if (buf[i] == '\r' && i + 1 < n && buf[i + 1] != '\n')
			return 1;
	}
	return 0;
}

/* "METHOD SP origin-form SP HTTP/1.x", single spaces, nothing else. */
static enum http_parse_status
http_parse_request_line(const char *p, size_t n, struct http_request *req)
{
	const char *sp, *v;
	size_t i, vn;

	sp = memchr(p, ' ', n);
	if (sp == NULL || !http_is_token(p, (size_t)(sp - p)))
		return HTTP_PARSE_BAD;
	req->method.p = p;
	req->method.n = (size_t)(sp - p);

	req->target.p = sp + 1;
	for (i = (size_t)(req->target.p - p); i < n && p[i] != ' '; i++) {
		/* Also rejects raw bytes >= 0x80, which a URI cannot hold (RFC 3986 2). */
		if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
			return HTTP_PARSE_BAD;
	}
	if (i == n)
		return HTTP_PARSE_BAD;
	req->target.n = (size_t)(p + i - req->target.p);
	if (req->target.n == 0 || req->target.p[0] != '/')
		return HTTP_PARSE_BAD;

	req->path = req->target;
	v = memchr(req->target.p, '?', req->target.n);
	if (v != NULL) {
		req->path.n = (size_t)(v - req->target.p);
		req->query.p = v + 1;
		req->query.n = req->target.n - req->path.n - 1;
	}

	v = p + i + 1;
	vn = n - i - 1;
	if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
	    v[7] < '0' || v[7] > '9')
		return HTTP_PARSE_BAD;
	/* HTTP/1.0 is parsed (health checkers such as HAProxy's httpchk still send it);
	 * http_check_upgrade() refuses it for WebSocket with 505. */
	if (v[5] != '1')
		return HTTP_PARSE_VERSION;
	req->version_minor = v[7] - '0';
	return HTTP_PARSE_OK;
}

/* Sets *dst once; a second occurrence of a header that must be unique is BAD. */
static int
http_set_unique(struct http_str *dst, const char *v, size_t vn)
{
	if (dst->p != NULL)
		return -1;
	dst->p = v;
	dst->n = vn;
	return 0;
}

static void
http_set_first(struct http_str *dst, const char *v, size_t vn)
{
	if (dst->p == NULL) {
		dst->p = v;
		dst->n = vn;
	}
}

/* Appends the elements of one Sec-WebSocket-Protocol line; empty list elements are skipped
 * (RFC 7230 7), anything that is not a token is BAD. */
static int
http_add_protocols(struct http_request *req, const char *v, size_t vn)
{
	size_t i = 0, start, len;
	const char *e;

	while (i <= vn) {
		start = i;
		while (i < vn && v[i] != ',')
			i++;
		e = v + start;
		len = i - start;
		http_trim(&e, &len);
		if (len > 0) {
			if (!http_is_token(e, len) || req->nprotocols == HTTP_MAX_PROTOCOLS)
				return -1;
			req->protocols[req->nprotocols].p = e;
			req->protocols[req->nprotocols].n = len;
			req->nprotocols++;
		}
		i++;
	}
	return 0;
}

static int
http_all_zero(const char *v, size_t vn)
{
	size_t i;

	if (vn == 0)
		return 0;
	for (i = 0; i < vn; i++)
		if (v[i] != '0')
			return 0;
	return 1;
}

/* One "name: value" line, without its CRLF. */
static int
http_parse_header(const char *p, size_t n, struct http_request *req)
{
	const char *colon, *v;
	size_t nn, vn, i;

	/* obs-fold (RFC 7230 3.2.4) and whitespace before the colon fail the token check. */
	colon = memchr(p, ':', n);
	if (colon == NULL || !http_is_token(p, (size_t)(colon - p)))
		return -1;
	nn = (size_t)(colon - p);
	v = colon + 1;
	vn = n - nn - 1;
	for (i = 0; i < vn; i++) {
		unsigned char c = (unsigned char)v[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -1;
	}
	http_trim(&v, &vn);

#define NAME_IS(s) http_mem_caseeq(p, nn, s, sizeof(s) - 1)
	if (NAME_IS("Host"))
		return http_set_unique(&req->host, v, vn);
	if (NAME_IS("Upgrade")) {
		req->has_upgrade_websocket = http_token_list_has(v, vn, "websocket");
		return http_set_unique(&req->upgrade, v, vn);
	}
	if (NAME_IS("Connection")) {
		/* May be repeated (RFC 7230 3.2.2): any line naming "upgrade" counts. */
		if (http_token_list_has(v, vn, "upgrade"))
			req->has_connection_upgrade = 1;
		http_set_first(&req->connection, v, vn);
		return 0;
	}
	if (NAME_IS("Sec-WebSocket-Key"))
		return http_set_unique(&req->key, v, vn);
	if (NAME_IS("Sec-WebSocket-Version"))
		return http_set_unique(&req->ws_version, v, vn);
	if (NAME_IS("Sec-WebSocket-Protocol"))
		return http_add_protocols(req, v, vn);
	if (NAME_IS("Sec-WebSocket-Extensions"))
		http_set_first(&req->extensions, v, vn);
	else if (NAME_IS("Origin"))
		/* Two Origins: which one would the check see, and which the backend? Neither. */
		return http_set_unique(&req->origin, v, vn);
	else if (NAME_IS("Cookie")) {
		/* Several lines are allowed (RFC 6265 5.4 says one, clients send more); the proxy
		 * joins them all from the raw head. */
		http_set_first(&req->cookie, v, vn);
		req->ncookies++;
	} else if (NAME_IS("Authorization"))
		http_set_first(&req->authorization, v, vn);
	else if (NAME_IS("Wsgate-Since"))
		/* Two resume positions: which one did the client mean? Neither. */
		return http_set_unique(&req->since, v, vn);
	else if (NAME_IS("Content-Length")) {
		/* A GET upgrade has no body; bytes after the head are not ours to skip. */
		if (!http_all_zero(v, vn))
			return -1;
	} else if (NAME_IS("Transfer-Encoding"))
		return -1;
#undef NAME_IS
	return 0;
}

enum http_parse_status
http_parse_request(const char *buf, size_t n, struct http_request *req)
{
	enum http_parse_status st;
	size_t lim, pos, eol, end;
	long r;
	const char *crlf;

	memset(req, 0, sizeof(*req));
	lim = n < HTTP_MAX_HEADER ? n : HTTP_MAX_HEADER;
	r = http_head_end(buf, lim);
	if (r < 0)
		return HTTP_PARSE_BAD;
	if (r == 0)
		return n >= HTTP_MAX_HEADER ? HTTP_PARSE_TOO_LARGE : HTTP_PARSE_NEED_MORE;
	end = (size_t)r;

	/* Every CR in buf[0..end) is now known to start a CRLF. */
	crlf = memchr(buf, '\r', end);
	eol = (size_t)(crlf - buf);
	st = http_parse_request_line(buf, eol, req);
	if (st != HTTP_PARSE_OK)
		return st;

	for (pos = eol + 2; pos < end - 2; pos = eol + 2) {
		crlf = memchr(buf + pos, '\r', end - pos);
		eol = (size_t)(crlf - buf);
		if (http_parse_header(buf + pos, eol - pos, req) != 0)
			return HTTP_PARSE_BAD;
	}
	req->header_len = end;
	return HTTP_PARSE_OK;
}

int
http_check_upgrade(const struct http_request *req, const char **why)
{
	/* Order fixed by the gateway's contract: HTTP version, method, Host, Upgrade, Connection,
	 * WebSocket version, key. */
	if (req->version_minor < 1) {
		*why = "WebSocket needs HTTP/1.1";
		return 505;
	}
	if (!http_str_eq(req->method, "GET")) {
		*why = "method is not GET";
		return 405;
	}
	if (req->host.p == NULL || req->host.n == 0) {
		*why = "missing Host header";
		return 400;
	}
	if (req->upgrade.p == NULL) {
		*why = "missing Upgrade header";
		return 426;
	}
	if (!req->has_upgrade_websocket) {
		*why = "Upgrade header lacks websocket";
		return 400;
	}
	if (!req->has_connection_upgrade) {
		*why = "Connection header lacks upgrade";
		return 400;
	}
	if (!http_str_eq(req->ws_version, "13")) {
		*why = req->ws_version.p == NULL ? "missing Sec-WebSocket-Version header"
		                                 : "unsupported Sec-WebSocket-Version";
		return 426;
	}
	if (req->key.p == NULL) {
		*why = "missing Sec-WebSocket-Key header";
		return 400;
	}
	if (!http_ws_key_valid(req->key.p, req->key.n)) {
		*why = "invalid Sec-WebSocket-Key";
		return 400;
	}
	*why = NULL;
	return 0;
}

int
http_ws_key_valid(const char *key, size_t keylen)
{
	size_t i;
	int v = 0;

	/* 16 bytes are 21 full sextets plus 4 bits in the 22nd, then "==". */
	if (key == NULL || keylen != 24 || key[22] != '=' || key[23] != '=')
		return 0;
	for (i = 0; i < 22; i++)
		if ((v = base64_sextet((unsigned char)key[i], BASE64_STD)) < 0)
			return 0;
	/* Canonical only: the unused low 4 bits of the last sextet must be zero. */
	return (v & 0x0f) == 0;
}

void
http_ws_accept(const char *key, size_t keylen, char out[29])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx;
	int ok;

	/* Streamed rather than EVP_Digest over a copy so no key length can overflow a buffer. If
	 * OpenSSL fails (allocation), out is "", which no client accepts: the handshake fails. */
	out[0] = '\0';
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return;
	ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, key, keylen) == 1 &&
	     EVP_DigestUpdate(ctx, HTTP_WS_GUID, sizeof(HTTP_WS_GUID) - 1) == 1 &&
	     EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 20;
	EVP_MD_CTX_free(ctx);
	if (ok)
		EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 chars plus NUL */
}

int
http_ws_client_key(char key[25])
{
	unsigned char raw[16];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw)); /* 24 chars and a NUL */
	return 0;
}

size_t
http_format_101(char *out, size_t outsz, const char accept[29], const char *protocol,
                size_t protocol_len)
{
	int r;

	/* A protocol longer than out cannot fit; the check also keeps %.*s within an int. */
	if (protocol != NULL && (protocol_len >= outsz || protocol_len > INT_MAX))
		return 0;
	if (protocol != NULL && protocol_len > 0)
		r = snprintf(out, outsz,
		             "HTTP/1.1 101 Switching Protocols\r\n"
		             "Upgrade: websocket\r\n"
		             "Connection: Upgrade\r\n"
		             "Sec-WebSocket-Accept: %s\r\n"
		             "Sec-WebSocket-Protocol: %.*s\r\n"
		             "\r\n",
		             accept, (int)protocol_len, protocol);
	else
		r = snprintf(out, outsz,
		             "HTTP/1.1 101 Switching Protocols\r\n"
		             "Upgrade: websocket\r\n"
		             "Connection: Upgrade\r\n"
		             "Sec-WebSocket-Accept: %s\r\n"
		             "\r\n",
		             accept);
	if (r < 0 || (size_t)r >= outsz)
		return 0;
	return (size_t)r;
}

size_t
http_format_reply(char *out, size_t outsz, int status, const char *extra_headers, const char *body)
{
	const char *reason = http_reason(status);
	char defbody[64];
	int r;

	if (body == NULL) {
		snprintf(defbody, sizeof(defbody), "%s\n", reason);
		body = defbody;
	}
	r = snprintf(out, outsz,
	             "HTTP/1.1 %d %s\r\n"
	             "Connection: close\r\n"
	             "Content-Type: text/plain\r\n"
	             "Content-Length: %zu\r\n"
	             "%s"
	             "\r\n"
	             "%s",
	             status, reason, strlen(body), extra_headers != NULL ? extra_headers : "",
	             body);
	if (r < 0 || (size_t)r >= outsz)
		return 0;
	return (size_t)r;
}

/* clang-format off */
static const struct {
	int status;
	const char *reason;
} http_reasons[] = {
	{ 101, "Switching Protocols" },
	{ 200, "OK" },
	{ 400, "Bad Request" },
	{ 401, "Unauthorized" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 408, "Request Timeout" },
	{ 426, "Upgrade Required" },
	{ 429, "Too Many Requests" },
	{ 431, "Request Header Fields Too Large" },
	{ 500, "Internal Server Error" },
	{ 502, "Bad Gateway" },
	{ 503, "Service Unavailable" },
	{ 505, "HTTP Version Not Supported" },
};
/* clang-format on */

const char *
http_reason(int status)
{
	size_t i;

	for (i = 0; i < sizeof(http_reasons) / sizeof(http_reasons[0]); i++)
		if (http_reasons[i].status == status)
			return http_reasons[i].reason;
	return "Unknown";
}
