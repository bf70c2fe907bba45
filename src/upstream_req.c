/* upstream_req.c - builds the upgrade request a proxy route sends its backend: the client's
 * headers that matter to the application, the forwarding headers and the request text. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "upstream_req.h"

/* A growing string; err sticks after the first failed allocation. */
struct upstream_sb {
	char *p;
	size_t len, cap;
	int err;
};

static void
upstream_sb_add(struct upstream_sb *sb, const char *s, size_t n)
{
	char *p;
	size_t cap;

	if (sb->err)
		return;
	if (sb->len + n + 1 > sb->cap) {
		cap = sb->cap ? sb->cap : 256;
		while (cap < sb->len + n + 1)
			cap *= 2;
		if ((p = realloc(sb->p, cap)) == NULL) {
			sb->err = 1;
			return;
		}
		sb->p = p;
		sb->cap = cap;
	}
	if (n > 0)
		memcpy(sb->p + sb->len, s, n);
	sb->len += n;
	sb->p[sb->len] = '\0';
}

static void
upstream_sb_str(struct upstream_sb *sb, const char *s)
{
	upstream_sb_add(sb, s, strlen(s));
}

/* "Name: value\r\n" */
static void
upstream_sb_field(struct upstream_sb *sb, const char *name, const char *v, size_t vn)
{
	upstream_sb_str(sb, name);
	upstream_sb_add(sb, ": ", 2);
	upstream_sb_add(sb, v, vn);
	upstream_sb_add(sb, "\r\n", 2);
}

/* The string, or NULL (and nothing to free) after an allocation failure. */
static char *
upstream_sb_finish(struct upstream_sb *sb)
{
	if (sb->err || sb->p == NULL) {
		free(sb->p);
		return sb->err ? NULL : strdup("");
	}
	return sb->p;
}

static int
upstream_req_caseeq(const char *a, size_t an, const char *b)
{
	size_t bn = strlen(b);

	if (an != bn)
		return 0;
	for (size_t i = 0; i < an; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'Z')
			x += 'a' - 'A';
		if (y >= 'A' && y <= 'Z')
			y += 'a' - 'A';
		if (x != y)
			return 0;
	}
	return 1;
}

char *
upstream_req_head_field(const char *head, size_t n, const char *name)
{
	return upstream_req_head_field_sep(head, n, name, ", ");
}

char *
upstream_req_head_field_sep(const char *head, size_t n, const char *name, const char *sep)
{
	struct upstream_sb sb = {0};
	const char *line, *eol, *end = head + n, *colon, *v;
	size_t vn;

	line = memchr(head, '\n', n);
	for (line = line ? line + 1 : end; line < end; line = eol + 1) {
		if ((eol = memchr(line, '\n', (size_t)(end - line))) == NULL)
			break;
		colon = memchr(line, ':', (size_t)(eol - line));
		if (colon == NULL || !upstream_req_caseeq(line, (size_t)(colon - line), name))
			continue;
		v = colon + 1;
		vn = (size_t)(eol - v);
		if (vn > 0 && v[vn - 1] == '\r')
			vn--;
		while (vn > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vn--;
		}
		while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
			vn--;
		if (vn == 0)
			continue;
		if (sb.len > 0)
			upstream_sb_str(&sb, sep);
		upstream_sb_add(&sb, v, vn);
	}
	if (sb.len == 0 && !sb.err)
		return NULL;
	return upstream_sb_finish(&sb);
}

size_t
upstream_req_forwarded_node(const char *ip, char *out, size_t outsz)
{
	int n;

	/* RFC 7239 6: an IPv6 address is bracketed, and ':' is not a token char: quoted. */
	if (strchr(ip, ':') != NULL)
		n = snprintf(out, outsz, "\"[%s]\"", ip);
	else
		n = snprintf(out, outsz, "%s", ip);
	return n < 0 || (size_t)n >= outsz ? 0 : (size_t)n;
}

int
upstream_req_peer_ip(const char *peer, char *out, size_t outsz)
{
	const char *end;
	size_t n;

	if (peer[0] == '[') {
		if ((end = strchr(peer, ']')) == NULL)
			return -1;
		peer++;
	} else if ((end = strrchr(peer, ':')) == NULL) {
		return -1;
	}
	n = (size_t)(end - peer);
	if (n == 0 || n >= outsz)
		return -1;
	memcpy(out, peer, n);
	out[n] = '\0';
	return 0;
}

/* "prev, node" when prev (a chain from a trusted peer) is not NULL, else "node". */
static void
upstream_req_chain(struct upstream_sb *sb, const char *name, char *prev, const char *node,
                   size_t nn)
{
	upstream_sb_str(sb, name);
	upstream_sb_add(sb, ": ", 2);
	if (prev != NULL) {
		upstream_sb_str(sb, prev);
		upstream_sb_add(sb, ", ", 2);
		free(prev);
	}
	upstream_sb_add(sb, node, nn);
	upstream_sb_add(sb, "\r\n", 2);
}

static void
upstream_req_forwarding(struct upstream_sb *sb, const struct http_request *req,
                        const struct upstream_req_client *cl)
{
	const char *head = req->method.p, *proto = cl->tls ? "wss" : "ws";
	const char *hop = cl->peer_ip != NULL ? cl->peer_ip : cl->ip;
	char node[80], *prev, fwd[96];
	size_t n;

	/* What a trusted balancer says is kept and extended with the hop we saw; what anyone
	 * else says about itself is dropped: a client cannot choose its own address. */
	prev = cl->peer_trusted ? upstream_req_head_field(head, req->header_len, "X-Forwarded-For")
	                        : NULL;
	upstream_req_chain(sb, "X-Forwarded-For", prev, hop, strlen(hop));
	prev = cl->peer_trusted
	           ? upstream_req_head_field(head, req->header_len, "X-Forwarded-Proto")
	           : NULL;
	/* The balancer terminated the client's connection: its proto is the client's. */
	upstream_sb_field(sb, "X-Forwarded-Proto", prev != NULL ? prev : proto,
	                  strlen(prev != NULL ? prev : proto));
	free(prev);
	if (req->host.n > 0)
		upstream_sb_field(sb, "X-Forwarded-Host", req->host.p, req->host.n);
	upstream_sb_field(sb, "X-Real-IP", cl->ip, strlen(cl->ip));

	n = upstream_req_forwarded_node(hop, node, sizeof(node));
	snprintf(fwd, sizeof(fwd), "for=%s;proto=%s", n > 0 ? node : "unknown", proto);
	prev =
	    cl->peer_trusted ? upstream_req_head_field(head, req->header_len, "Forwarded") : NULL;
	upstream_req_chain(sb, "Forwarded", prev, fwd, strlen(fwd));
}

/* Trims OWS around s[0..*n). */
static const char *
upstream_req_trim(const char *s, size_t *n)
{
	while (*n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		(*n)--;
	}
	while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
		(*n)--;
	return s;
}

int
upstream_req_client_ip(const char *head, size_t n, const char *peer_ip, const struct cidr *trusted,
                       size_t ntrusted, char *out, size_t outsz)
{
	const char *best = peer_ip, *e, *why;
	size_t bestn = strlen(peer_ip), en;
	struct cidr probe;
	char *xff = NULL;

	if (cidr_match_text(trusted, ntrusted, peer_ip, strlen(peer_ip)) &&
	    (xff = upstream_req_head_field(head, n, "X-Forwarded-For")) != NULL) {
		/* Right to left: each trusted hop vouches for the one before it. */
		size_t end = strlen(xff);

		while (end > 0) {
			size_t start = end;

			while (start > 0 && xff[start - 1] != ',')
				start--;
			en = end - start;
			e = upstream_req_trim(xff + start, &en);
			if (en == 0 || memchr(e, '/', en) != NULL ||
			    cidr_parse(e, en, &probe, &why) < 0)
				break; /* not an address: trust stops at the hop before it */
			best = e;
			bestn = en;
			if (!cidr_match_text(trusted, ntrusted, e, en))
				break;
			end = start > 0 ? start - 1 : 0;
		}
	}
	if (bestn >= outsz) {
		free(xff);
		return -1;
	}
	memcpy(out, best, bestn);
	out[bestn] = '\0';
	free(xff);
	return 0;
}

int
upstream_req_copy(const struct http_request *req, const struct upstream_req_client *cl,
                  struct upstream_req *out)
{
	struct upstream_sb sb = {0};
	size_t total = 0, off = 0;

	memset(out, 0, sizeof(*out));
	if (req->query.p != NULL && req->query.n > 0 &&
	    (out->query = strndup(req->query.p, req->query.n)) == NULL)
		goto fail;

	/* The application's view of the client: who it says it is and where from. */
	if (req->origin.p != NULL)
		upstream_sb_field(&sb, "Origin", req->origin.p, req->origin.n);
	if (req->ncookies > 1) {
		/* RFC 6265 5.4: one Cookie line, its pairs separated by "; ". */
		char *all =
		    upstream_req_head_field_sep(req->method.p, req->header_len, "Cookie", "; ");

		/* NULL: every line was empty (or ENOMEM): no Cookie rather than a wrong one. */
		if (all != NULL)
			upstream_sb_field(&sb, "Cookie", all, strlen(all));
		free(all);
	} else if (req->cookie.p != NULL) {
		upstream_sb_field(&sb, "Cookie", req->cookie.p, req->cookie.n);
	}
	if (req->authorization.p != NULL)
		upstream_sb_field(&sb, "Authorization", req->authorization.p, req->authorization.n);
	if (req->nprotocols > 0) {
		upstream_sb_str(&sb, "Sec-WebSocket-Protocol: ");
		for (size_t i = 0; i < req->nprotocols; i++) {
			if (i > 0)
				upstream_sb_add(&sb, ", ", 2);
			upstream_sb_add(&sb, req->protocols[i].p, req->protocols[i].n);
		}
		upstream_sb_add(&sb, "\r\n", 2);
	}
	if (cl->forward && cl->ip != NULL)
		upstream_req_forwarding(&sb, req, cl);
	if ((out->headers = upstream_sb_finish(&sb)) == NULL)
		goto fail;

	if (req->nprotocols > 0) {
		for (size_t i = 0; i < req->nprotocols; i++)
			total += req->protocols[i].n;
		out->protocols = calloc(req->nprotocols, sizeof(*out->protocols));
		out->protobuf = malloc(total + 1);
		if (out->protocols == NULL || out->protobuf == NULL)
			goto fail;
		for (size_t i = 0; i < req->nprotocols; i++) {
			memcpy(out->protobuf + off, req->protocols[i].p, req->protocols[i].n);
			out->protocols[i].p = out->protobuf + off;
			out->protocols[i].n = req->protocols[i].n;
			off += req->protocols[i].n;
		}
		out->nprotocols = req->nprotocols;
	}
	return 0;
fail:
	upstream_req_free(out);
	return -1;
}

void
upstream_req_free(struct upstream_req *r)
{
	free(r->query);
	free(r->headers);
	free(r->protocols);
	free(r->protobuf);
	memset(r, 0, sizeof(*r));
}

char *
upstream_req_target(const char *path, const char *query)
{
	struct upstream_sb sb = {0};

	if (path == NULL || path[0] == '\0')
		path = "/";
	upstream_sb_str(&sb, path);
	if (query != NULL && query[0] != '\0') {
		upstream_sb_add(&sb, strchr(path, '?') != NULL ? "&" : "?", 1);
		upstream_sb_str(&sb, query);
	}
	return upstream_sb_finish(&sb);
}

char *
upstream_req_format(const char *target, const char *host, const char *port,
                    const char *default_port, const char *key, const char *headers, size_t *len)
{
	struct upstream_sb sb = {0};
	int v6 = strchr(host, ':') != NULL;
	char *out;

	upstream_sb_str(&sb, "GET ");
	upstream_sb_str(&sb, target);
	upstream_sb_str(&sb, " HTTP/1.1\r\nHost: ");
	upstream_sb_str(&sb, v6 ? "[" : "");
	upstream_sb_str(&sb, host);
	upstream_sb_str(&sb, v6 ? "]" : "");
	if (strcmp(port, default_port) != 0) {
		upstream_sb_add(&sb, ":", 1);
		upstream_sb_str(&sb, port);
	}
	upstream_sb_str(&sb, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	                     "Sec-WebSocket-Key: ");
	upstream_sb_str(&sb, key);
	upstream_sb_str(&sb, "\r\nSec-WebSocket-Version: 13\r\n");
	upstream_sb_str(&sb, headers != NULL ? headers : "");
	upstream_sb_add(&sb, "\r\n", 2);
	if ((out = upstream_sb_finish(&sb)) != NULL)
		*len = strlen(out);
	return out;
}
