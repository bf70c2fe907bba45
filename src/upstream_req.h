/* upstream_req.h - pure building blocks of the upgrade request wsgate sends a backend: what is
 * copied from the client's request, the forwarding headers (X-Forwarded-*, RFC 7239) and the
 * request text. No I/O; results are heap strings the caller frees. */
#ifndef WSGATE_UPSTREAM_REQ_H
#define WSGATE_UPSTREAM_REQ_H

#include <stddef.h>

#include "cidr.h"
#include "http.h"

/* What outlives the handshake hook (the request is valid only during it). */
struct upstream_req {
	char *query;                /* the client's query string without '?', NULL when none */
	char *headers;              /* lines passed on, each "Name: value\r\n"; "" when none */
	struct http_str *protocols; /* subprotocols the client offered, into protobuf */
	size_t nprotocols;
	char *protobuf;
};

/* Where the client came from, for the forwarding headers. */
struct upstream_req_client {
	const char *ip; /* the client's address (upstream_req_client_ip): X-Real-IP */
	int tls;        /* the client speaks TLS: proto "wss", else "ws" */
	int forward;    /* add X-Forwarded-For/-Proto/-Host, X-Real-IP and Forwarded */
	const char
	    *peer_ip;     /* the socket's (or PROXY header's) peer, the hop wsgate saw; NULL: ip */
	int peer_trusted; /* peer_ip is in trusted_proxies: its forwarding chain is kept */
};

/* Copies Origin, every Cookie line (joined with "; ", RFC 6265 5.4), Authorization and the
 * offered subprotocols, and adds the forwarding headers: from a trusted peer its
 * X-Forwarded-For and Forwarded chains are kept and extended with peer_ip and its
 * X-Forwarded-Proto kept; from anyone else they are replaced by what wsgate saw.
 * 0, or -1 on ENOMEM. */
int upstream_req_copy(const struct http_request *req, const struct upstream_req_client *cl,
                      struct upstream_req *out) __attribute__((warn_unused_result));
void upstream_req_free(struct upstream_req *r);

/* The request target: the backend's path (which may carry its own query) plus the client's
 * query, joined with '?' or '&'. "/socket" + "q=1" -> "/socket?q=1". NULL on ENOMEM. */
char *upstream_req_target(const char *path, const char *query);

/* The complete upgrade request. host without brackets; the port is left out of Host when it
 * is the scheme's default_port. key is the 24-character Sec-WebSocket-Key. NULL on ENOMEM. */
char *upstream_req_format(const char *target, const char *host, const char *port,
                          const char *default_port, const char *key, const char *headers,
                          size_t *len);

/* The address part of a conn peer string: "192.0.2.1:5" -> "192.0.2.1", "[::1]:5" -> "::1".
 * 0, or -1 when peer has no address (unix sockets) or out is too small. */
int upstream_req_peer_ip(const char *peer, char *out, size_t outsz);

/* RFC 7239 node for an address: "192.0.2.1" stays, "2001:db8::1" becomes "\"[2001:db8::1]\"".
 * Returns the length, or 0 when out is too small. */
size_t upstream_req_forwarded_node(const char *ip, char *out, size_t outsz);

/* Values of every header line named name in a raw request head (head[0..n), request line
 * first), joined with ", ". NULL when there is none or on ENOMEM. */
char *upstream_req_head_field(const char *head, size_t n, const char *name);
/* Same, joined with sep. */
char *upstream_req_head_field_sep(const char *head, size_t n, const char *name, const char *sep);

/* The client's address: peer_ip itself unless the peer is in trusted[0..ntrusted); then the
 * X-Forwarded-For chain of head[0..n) read from the right, skipping trusted hops, up to the
 * first address that is not trusted (a malformed element stops the walk at the hop before
 * it). Writes the address text into out; 0, or -1 when it does not fit. */
int upstream_req_client_ip(const char *head, size_t n, const char *peer_ip,
                           const struct cidr *trusted, size_t ntrusted, char *out, size_t outsz);

#endif
