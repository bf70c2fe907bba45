/* http_response.h - pure HTTP/1.1 response head parser (status line and header fields, bounded
 * to 8 KiB) and the RFC 6455 4.1 checks a client makes of a 101; used for backend upgrades. */
#ifndef WSGATE_HTTP_RESPONSE_H
#define WSGATE_HTTP_RESPONSE_H

#include <stddef.h>

#include "http.h"

#define HTTP_RESPONSE_MAX_HEADER 8192 /* status line plus fields, blank line included */
#define HTTP_RESPONSE_MAX_FIELDS 64   /* header lines kept; more is TOO_LARGE */

struct http_field {
	struct http_str name;  /* as sent, case preserved */
	struct http_str value; /* leading and trailing whitespace trimmed */
};

struct http_response {
	int version_minor; /* HTTP/1.x */
	int status;        /* 100..599 */
	struct http_str reason;
	struct http_field fields[HTTP_RESPONSE_MAX_FIELDS];
	size_t nfields;
	size_t header_len; /* bytes up to and including the blank line */
};

enum http_response_status {
	HTTP_RESPONSE_OK = 0,
	HTTP_RESPONSE_NEED_MORE =
	    1,                  /* no blank line yet, fewer than HTTP_RESPONSE_MAX_HEADER bytes */
	HTTP_RESPONSE_BAD = -1, /* malformed status line, field or line ending */
	HTTP_RESPONSE_TOO_LARGE = -2 /* no blank line within the limit, or too many fields */
};

/* Parses a response head from buf[0..n); fields point into buf. Line endings must be CRLF,
 * obsolete line folding is BAD, bytes after the blank line are not looked at. */
enum http_response_status http_response_parse(const char *buf, size_t n,
                                              struct http_response *resp);

/* Number of fields named name (ASCII case-insensitive); *first is set to the first one's value
 * when there is one (may be NULL). */
size_t http_response_field(const struct http_response *resp, const char *name,
                           struct http_str *first);

/* RFC 6455 4.1: status 101 over HTTP/1.1, Upgrade has "websocket", Connection has "upgrade",
 * exactly one Sec-WebSocket-Accept equal to accept, no extension (none is ever offered), and at
 * most one subprotocol, which must be one of offered[0..noffered). Returns 0 and sets *protocol (p
 * NULL when the server chose none), or -1 with *why set to a static explanation. */
int http_response_check_upgrade(const struct http_response *resp, const char *accept,
                                const struct http_str *offered, size_t noffered,
                                struct http_str *protocol, const char **why);

/* The backend's header lines the client is given with resp->status: Set-Cookie on 101,
 * WWW-Authenticate on 401, Retry-After on 429 and 503, each as "Name: value\r\n" (values
 * were checked by the parser: no CR, LF or other control). Whole lines only, as many as fit
 * in out (NUL-terminated). Returns the length, 0 when none. */
size_t http_response_passthrough(const struct http_response *resp, char *out, size_t outsz);

#endif
