/* ws_deflate_ext.h - pure permessage-deflate negotiation (RFC 7692 5, 7.1): every offer of every
 * Sec-WebSocket-Extensions line of a request head, the first acceptable one under a route's
 * policy, and the response header. No I/O, no allocation, no zlib. */
#ifndef WSGATE_WS_DEFLATE_EXT_H
#define WSGATE_WS_DEFLATE_EXT_H

#include <stddef.h>
#include <stdint.h>

/* What a route accepts. */
struct ws_pmd_policy {
	unsigned server_max_bits;  /* largest window wsgate compresses with, 9..15 */
	unsigned client_max_bits;  /* largest window a client may compress with, 8..15 */
	int allow_client_takeover; /* 0: answer client_no_context_takeover to every offer (RFC 7692
	                            * 7.1.1.2 lets a server add it): no context kept for the client
	                            */
};

/* What was agreed. wsgate always answers server_no_context_takeover: a message it sends is
 * compressed on its own, so one compressed frame serves every subscriber. */
struct ws_pmd_params {
	uint8_t client_no_takeover; /* the client compresses each message on its own */
	uint8_t server_bits;        /* window wsgate compresses with (9..15) */
	uint8_t client_bits;        /* window the client may use (8..15): the inflate window */
	uint8_t say_server_bits;    /* the offer named server_max_window_bits: answer it */
	uint8_t say_client_bits;    /* answer client_max_window_bits=client_bits */
};

enum ws_pmd_status {
	WS_PMD_NONE = 0,   /* no offer, or none acceptable: no extension in the 101 */
	WS_PMD_ACCEPT = 1, /* *out and the response are filled */
	WS_PMD_BAD = -1,   /* a header line is not a valid extension list: 400 */
};

/* Longest response value ws_pmd_negotiate writes (plus NUL). */
#define WS_PMD_RESPONSE_MAX 192

/* Looks at every Sec-WebSocket-Extensions line of the request head head[0..len) (request line
 * and header lines, CRLF-separated, as http_parse_request accepted it). On WS_PMD_ACCEPT *out
 * holds the first acceptable offer's terms. */
enum ws_pmd_status ws_pmd_negotiate(const char *head, size_t len, const struct ws_pmd_policy *pol,
                                    struct ws_pmd_params *out);

/* The same for one header value (tests, fuzzing); *found is set once an offer was taken (by
 * this line or an earlier one, which is then kept). */
enum ws_pmd_status ws_pmd_negotiate_value(const char *v, size_t n, const struct ws_pmd_policy *pol,
                                          struct ws_pmd_params *out, int *found);

/* The Sec-WebSocket-Extensions value answering p, NUL-terminated, in resp[WS_PMD_RESPONSE_MAX]. */
void ws_pmd_response(const struct ws_pmd_params *p, char *resp);

#endif
