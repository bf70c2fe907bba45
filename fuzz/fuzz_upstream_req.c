/* fuzz_upstream_req.c - libFuzzer target for the backend request builder (upstream_req.c): a
 * fuzzed client request head, once http.c accepted it, goes through upstream_req_copy(), then
 * upstream_req_target() and upstream_req_format() as upstream_conn.c calls them. The request
 * sent to the backend must be one well-formed upgrade (nothing the client sent can add a line,
 * split the head or change the target's path), and carry the client's values unchanged.
 *
 * Input: byte 0 = flags (bit 0 TLS, bit 1 forward headers, bits 2-3 the peer, bit 4 a backend
 * path with its own query); the rest is the client's request head. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "upstream_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(c)                                                                                \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static const char *const fz_peers[] = {"192.0.2.7:40000", "[2001:db8::1]:443", "unix:", "[::1]:9"};

/* Each line of a header block is "Name: value\r\n" with no other CR or LF in it. */
static void
fz_check_lines(const char *h)
{
	const char *p = h, *eol;

	while (*p != '\0') {
		eol = strstr(p, "\r\n");
		FZ_CHECK(eol != NULL && eol > p);
		FZ_CHECK(memchr(p, '\n', (size_t)(eol - p)) == NULL);
		FZ_CHECK(memchr(p, '\r', (size_t)(eol - p)) == NULL);
		FZ_CHECK(memchr(p, ':', (size_t)(eol - p)) != NULL);
		p = eol + 2;
	}
}

static int
fz_same(struct http_str a, struct http_str b)
{
	return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
	struct http_request req, back;
	struct upstream_req out;
	struct upstream_req_client cl = {0};
	const char *peer, *why, *bpath;
	char ip[64], node[64], *target, *request, *f;
	size_t len = 0, i;
	int flags;

	if (size < 1)
		return 0;
	flags = data[0];
	data++;
	size--;
	if (http_parse_request((const char *)data, size, &req) != HTTP_PARSE_OK)
		return 0;

	peer = fz_peers[(flags >> 2) & 3];
	if (upstream_req_peer_ip(peer, ip, sizeof(ip)) < 0)
		ip[0] = '\0';
	FZ_CHECK(strchr(ip, ']') == NULL && strchr(ip, '[') == NULL);
	if (ip[0] != '\0') {
		size_t nn = upstream_req_forwarded_node(ip, node, sizeof(node));

		FZ_CHECK(nn == strlen(node) && nn > 0);
	}
	cl.ip = ip[0] ? ip : NULL;
	cl.peer_ip = cl.ip; /* the hop is the client: no trusted proxy spoke for it */
	cl.peer_trusted = (flags >> 6) & 1;
	cl.tls = flags & 1;
	cl.forward = (flags >> 1) & 1;

	if (upstream_req_copy(&req, &cl, &out) < 0)
		return 0; /* ENOMEM only */
	FZ_CHECK(out.headers != NULL);
	fz_check_lines(out.headers);
	FZ_CHECK(out.nprotocols == req.nprotocols);
	for (i = 0; i < out.nprotocols; i++)
		FZ_CHECK(fz_same(out.protocols[i], req.protocols[i]));
	if (req.query.n > 0)
		FZ_CHECK(out.query != NULL && strlen(out.query) <= req.query.n &&
		         memcmp(out.query, req.query.p, strlen(out.query)) == 0);
	else
		FZ_CHECK(out.query == NULL);

	/* From a trusted peer the forwarding headers it sent come back first, ours appended;
	 * from anyone else they are replaced (trusted_proxies). */
	if ((f = upstream_req_head_field((const char *)data, req.header_len, "X-Forwarded-For")) !=
	    NULL) {
		FZ_CHECK(!cl.forward || cl.ip == NULL || !cl.peer_trusted ||
		         strstr(out.headers, f) != NULL);
		free(f);
	}

	bpath = flags & 0x10 ? "/ws?backend=1" : "/socket";
	if ((target = upstream_req_target(bpath, out.query)) == NULL) {
		upstream_req_free(&out);
		return 0;
	}
	/* The client's query never changes the backend's path. */
	FZ_CHECK(strncmp(target, bpath, strlen(bpath)) == 0);
	request = upstream_req_format(target, flags & 0x20 ? "2001:db8::2" : "backend.example",
	                              "8080", "80", key, out.headers, &len);
	if (request != NULL) {
		FZ_CHECK(len == strlen(request));
		/* One request, whose head is everything we send: nothing smuggled after it. */
		if (len <= HTTP_MAX_HEADER) {
			FZ_CHECK(http_parse_request(request, len, &back) == HTTP_PARSE_OK);
			FZ_CHECK(back.header_len == len);
			FZ_CHECK(http_check_upgrade(&back, &why) == 0);
			FZ_CHECK(back.target.n == strlen(target) &&
			         memcmp(back.target.p, target, back.target.n) == 0);
			FZ_CHECK(fz_same(back.origin, req.origin));
			/* Every non-empty Cookie line, joined with "; " (RFC 6265): the first one
			 * leads (an empty first line is left out). */
			FZ_CHECK(fz_same(back.cookie, req.cookie) || req.cookie.n == 0 ||
			         (back.cookie.n > req.cookie.n + 2 &&
			          memcmp(back.cookie.p, req.cookie.p, req.cookie.n) == 0 &&
			          memcmp(back.cookie.p + req.cookie.n, "; ", 2) == 0));
			FZ_CHECK(fz_same(back.authorization, req.authorization));
			FZ_CHECK(back.nprotocols == req.nprotocols ||
			         req.nprotocols == HTTP_MAX_PROTOCOLS);
		}
		free(request);
	}
	free(target);
	upstream_req_free(&out);
	return 0;
}
