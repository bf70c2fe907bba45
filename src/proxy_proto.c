/* proxy_proto.c - pure PROXY protocol v1/v2 parser
 * (haproxy.org/download/2.8/doc/proxy-protocol.txt). Strict: v1 addresses must be canonical dotted
 * quads or RFC 4291 text, ports decimal without leading zeros, single spaces, CRLF; v2 lengths are
 * checked against the address family. */
#include <arpa/inet.h>
#include <string.h>

#include "proxy_proto.h"

static const uint8_t proxy_proto_sig2[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                             0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* One space-separated field of a v1 line into out (NUL-terminated); -1 when empty or long. */
static int
proxy_proto_field(const char **p, const char *end, char *out, size_t outsz)
{
	size_t n = 0;

	while (*p < end && **p != ' ') {
		if (n + 1 >= outsz)
			return -1;
		out[n++] = *(*p)++;
	}
	out[n] = '\0';
	if (n == 0)
		return -1;
	if (*p < end)
		(*p)++; /* the space */
	return 0;
}

static int
proxy_proto_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;

	if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return -1;
	}
	*port = (uint16_t)v;
	return 0;
}

static enum proxy_proto_status
proxy_proto_v1(const uint8_t *buf, size_t n, struct proxy_proto_result *r)
{
	const char *p = (const char *)buf, *end, *lf;
	char proto[8], a[48], b[48], sp[8], dp[8];
	int af;

	lf = memchr(p, '\n', n < PROXY_PROTO_V1_MAX ? n : PROXY_PROTO_V1_MAX);
	if (lf == NULL)
		return n < PROXY_PROTO_V1_MAX ? PROXY_PROTO_NEED_MORE : PROXY_PROTO_BAD;
	if (lf == p || lf[-1] != '\r')
		return PROXY_PROTO_BAD;
	end = lf - 1;
	r->len = (size_t)(lf + 1 - p);
	p += 6; /* "PROXY " */
	if (proxy_proto_field(&p, end, proto, sizeof(proto)) < 0)
		return PROXY_PROTO_BAD;
	if (strcmp(proto, "UNKNOWN") == 0) {
		/* The rest of the line may hold anything: the receiver ignores it (spec 2.1). */
		r->local = 1;
		return PROXY_PROTO_OK;
	}
	if (strcmp(proto, "TCP4") == 0)
		af = AF_INET;
	else if (strcmp(proto, "TCP6") == 0)
		af = AF_INET6;
	else
		return PROXY_PROTO_BAD;
	if (proxy_proto_field(&p, end, a, sizeof(a)) < 0 ||
	    proxy_proto_field(&p, end, b, sizeof(b)) < 0 ||
	    proxy_proto_field(&p, end, sp, sizeof(sp)) < 0 ||
	    proxy_proto_field(&p, end, dp, sizeof(dp)) < 0 || p != end || end[-1] == ' ')
		return PROXY_PROTO_BAD;
	if (inet_pton(af, a, r->src) != 1 || inet_pton(af, b, r->dst) != 1 ||
	    proxy_proto_port(sp, &r->src_port) < 0 || proxy_proto_port(dp, &r->dst_port) < 0)
		return PROXY_PROTO_BAD;
	r->family = af == AF_INET ? 4 : 6;
	return PROXY_PROTO_OK;
}

static enum proxy_proto_status
proxy_proto_v2(const uint8_t *buf, size_t n, struct proxy_proto_result *r)
{
	size_t len;
	unsigned cmd, fam;

	if (n < 16)
		return PROXY_PROTO_NEED_MORE;
	if ((buf[12] & 0xf0) != 0x20)
		return PROXY_PROTO_BAD;
	cmd = buf[12] & 0x0f;
	fam = buf[13];
	len = (size_t)buf[14] << 8 | buf[15];
	if (cmd > 1 || 16 + len > PROXY_PROTO_MAX)
		return PROXY_PROTO_BAD;
	if (n < 16 + len)
		return PROXY_PROTO_NEED_MORE;
	r->len = 16 + len;
	if (cmd == 0) {
		/* LOCAL: the balancer's own health check; the connection's addresses stand. */
		r->local = 1;
		return PROXY_PROTO_OK;
	}
	switch (fam) {
	case 0x11: /* TCP over IPv4 */
		if (len < 12)
			return PROXY_PROTO_BAD;
		memcpy(r->src, buf + 16, 4);
		memcpy(r->dst, buf + 20, 4);
		r->src_port = (uint16_t)(buf[24] << 8 | buf[25]);
		r->dst_port = (uint16_t)(buf[26] << 8 | buf[27]);
		r->family = 4;
		return PROXY_PROTO_OK;
	case 0x21: /* TCP over IPv6 */
		if (len < 36)
			return PROXY_PROTO_BAD;
		memcpy(r->src, buf + 16, 16);
		memcpy(r->dst, buf + 32, 16);
		r->src_port = (uint16_t)(buf[48] << 8 | buf[49]);
		r->dst_port = (uint16_t)(buf[50] << 8 | buf[51]);
		r->family = 6;
		return PROXY_PROTO_OK;
	case 0x00: /* UNSPEC */
		r->local = 1;
		return PROXY_PROTO_OK;
	default:
		/* UDP or unix sockets in front of a TCP gateway: not ours to interpret. */
		return PROXY_PROTO_BAD;
	}
}

enum proxy_proto_status
proxy_proto_parse(const uint8_t *buf, size_t n, struct proxy_proto_result *r)
{
	size_t k;

	memset(r, 0, sizeof(*r));
	if (buf == NULL)
		return PROXY_PROTO_NEED_MORE;
	/* Which version: decided as soon as the bytes differ from both signatures. */
	k = n < sizeof(proxy_proto_sig2) ? n : sizeof(proxy_proto_sig2);
	if (memcmp(buf, proxy_proto_sig2, k) == 0)
		return k < sizeof(proxy_proto_sig2) ? PROXY_PROTO_NEED_MORE
		                                    : proxy_proto_v2(buf, n, r);
	k = n < 6 ? n : 6;
	if (memcmp(buf, "PROXY ", k) == 0)
		return k < 6 ? PROXY_PROTO_NEED_MORE : proxy_proto_v1(buf, n, r);
	return PROXY_PROTO_BAD;
}
