/* http.h - pure HTTP/1.1 request parsing for the WebSocket upgrade (RFC 6455 4.2) and the
 * replies the gateway sends at the handshake stage. No I/O, no allocation: the request's
 * fields point into the caller's buffer. */
#ifndef WSGATE_HTTP_H
#define WSGATE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADER 8192  /* request line plus headers; larger: 431 */
#define HTTP_MAX_PROTOCOLS 16 /* offered subprotocols remembered */

struct http_str {
	const char *p; /* not NUL-terminated */
	size_t n;
};

struct http_request {
	struct http_str method;
	struct http_str target; /* as sent: path plus optional ?query */
	struct http_str path;   /* target up to '?' */
	struct http_str query;  /* after '?', may be empty */
	int version_minor;      /* HTTP/1.x */
	struct http_str host;
	struct http_str upgrade; /* raw header values, for logs and proxies */
	struct http_str connection;
	struct http_str key;        /* Sec-WebSocket-Key */
	struct http_str ws_version; /* Sec-WebSocket-Version */
	struct http_str origin;
	struct http_str cookie; /* the first Cookie line */
	size_t ncookies;        /* Cookie lines in the head (upstream_req joins them) */
	struct http_str authorization;
	struct http_str since;      /* Wsgate-Since: a pubsub client's resume position */
	struct http_str extensions; /* Sec-WebSocket-Extensions, joined if repeated: first only */
	struct http_str protocols[HTTP_MAX_PROTOCOLS]; /* Sec-WebSocket-Protocol tokens, in order */
	size_t nprotocols;
	int has_upgrade_websocket;  /* Upgrade token list contains "websocket" */
	int has_connection_upgrade; /* Connection token list contains "upgrade" */
	size_t header_len;          /* bytes up to and including the blank line */
};

enum http_parse_status {
	HTTP_PARSE_OK = 0,
	HTTP_PARSE_NEED_MORE = 1,  /* no blank line yet (and fewer than HTTP_MAX_HEADER bytes) */
	HTTP_PARSE_BAD = -1,       /* malformed: 400 */
	HTTP_PARSE_TOO_LARGE = -2, /* no end of headers within HTTP_MAX_HEADER bytes: 431 */
	HTTP_PARSE_VERSION = -3,   /* not HTTP/1.x: 505 (HTTP/1.0 parses; upgrades refuse it) */
};

/* Parses a request head from buf[0..n). Header names are case-insensitive; duplicate
 * Host/Upgrade/Origin/Sec-WebSocket-Key/Sec-WebSocket-Version are BAD. Leading/trailing whitespace
 * of values is trimmed. Obsolete line folding is BAD. */
enum http_parse_status http_parse_request(const char *buf, size_t n, struct http_request *req);

/* End of an HTTP head (request or response) in buf[0..lim): the length through the blank line,
 * 0 when it is not there yet, -1 at the first bare LF or CR not followed by LF. */
long http_head_end(const char *buf, size_t lim);

/* 1 when buf[from..n) holds a bare LF or a CR followed by anything but LF (buf[from - 1] is
 * looked at for the LF case; a CR as the last byte waits for the next). Lets a reader refuse
 * such a head at once instead of waiting for a blank line that will never come. */
int http_bad_line_ending(const char *buf, size_t from, size_t n);

/* Checks the parsed request as a WebSocket upgrade. Returns 0 when it is one, else the HTTP
 * status to answer (505 for HTTP/1.0, 400, 405, 426) and sets *why to a static explanation. A 426
 * reply must carry "Sec-WebSocket-Version: 13". */
int http_check_upgrade(const struct http_request *req, const char **why);

/* 1 when the comma-separated token list contains token (ASCII case-insensitive). */
int http_token_list_has(const char *list, size_t n, const char *token);

/* A client's Sec-WebSocket-Key (the proxy's, towards a backend): base64 of 16 random bytes from
 * OpenSSL, 24 chars plus NUL. -1 when OpenSSL's generator fails. */
int http_ws_client_key(char key[25]);
/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)), 28 chars plus NUL. Uses OpenSSL. */
void http_ws_accept(const char *key, size_t keylen, char out[29]);

/* 1 when key is base64 of exactly 16 bytes (24 chars, "==" padded). */
int http_ws_key_valid(const char *key, size_t keylen);

/* Formats a complete 101 reply into out; protocol may be NULL. Returns the length, or 0 when
 * out is too small. */
size_t http_format_101(char *out, size_t outsz, const char accept[29], const char *protocol,
                       size_t protocol_len);

/* Formats a complete error/simple reply: status line, Connection: close, Content-Type text/plain,
 * Content-Length, optional extra header lines (each ending in \r\n, may be NULL), and body
 * (NULL: the reason phrase plus \n). Returns the length, or 0 when out is too small. */
size_t http_format_reply(char *out, size_t outsz, int status, const char *extra_headers,
                         const char *body);

/* Reason phrase for a status code ("Not Found"). */
const char *http_reason(int status);

/* Compares an http_str with a C string. */
int http_str_eq(struct http_str s, const char *c);
int http_str_caseeq(struct http_str s, const char *c);

#endif
