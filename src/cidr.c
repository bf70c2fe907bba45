/* cidr.c - pure parsing and matching of address blocks (inet_pton does the address text). An
 * IPv4-mapped IPv6 address ("::ffff:192.0.2.1", what a dual-stack socket reports) matches the
 * IPv4 blocks. */
#include <arpa/inet.h>
#include <string.h>

#include "cidr.h"

/* The address text in s[0..n) into addr; its family, or 0 when it is not an address. */
static int
cidr_addr(const char *s, size_t n, uint8_t addr[16])
{
	char buf[64];

	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, addr) == 1)
		return 4;
	if (inet_pton(AF_INET6, buf, addr) == 1)
		return 6;
	return 0;
}

int
cidr_parse(const char *s, size_t n, struct cidr *out, const char **why)
{
	const char *slash = memchr(s, '/', n);
	size_t alen = slash != NULL ? (size_t)(slash - s) : n;
	unsigned bits = 0, max;

	memset(out, 0, sizeof(*out));
	if ((out->family = (uint8_t)cidr_addr(s, alen, out->addr)) == 0) {
		*why = "expected an address or address/bits, e.g. 10.0.0.0/8 or 2001:db8::/32";
		return -1;
	}
	max = out->family == 4 ? 32 : 128;
	if (slash == NULL) {
		bits = max;
	} else {
		const char *p = slash + 1, *end = s + n;

		if (p == end || end - p > 3) {
			*why = "the prefix length after '/' is a number";
			return -1;
		}
		for (; p < end; p++) {
			if (*p < '0' || *p > '9') {
				*why = "the prefix length after '/' is a number";
				return -1;
			}
			bits = bits * 10 + (unsigned)(*p - '0');
		}
		if (bits > max) {
			*why = "prefix length too long for the address family";
			return -1;
		}
	}
	out->bits = (uint8_t)bits;
	/* Host bits cleared, so "10.1.2.3/8" means 10.0.0.0/8. */
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;

		out->addr[i] &= (uint8_t)(0xff00u >> keep);
	}
	return 0;
}

static int
cidr_in(const struct cidr *c, const uint8_t *addr)
{
	unsigned full = c->bits / 8, rest = c->bits % 8;

	if (memcmp(c->addr, addr, full) != 0)
		return 0;
	return rest == 0 || (addr[full] & (uint8_t)(0xff00u >> rest)) == c->addr[full];
}

int
cidr_match(const struct cidr *set, size_t nset, int family, const uint8_t *addr)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (family == 6 && memcmp(addr, mapped, 12) == 0) {
		family = 4;
		addr += 12;
	}
	for (size_t i = 0; i < nset; i++)
		if (set[i].family == family && cidr_in(&set[i], addr))
			return 1;
	return 0;
}

int
cidr_match_text(const struct cidr *set, size_t nset, const char *ip, size_t n)
{
	uint8_t addr[16];
	int family = cidr_addr(ip, n, addr);

	return family != 0 && cidr_match(set, nset, family, addr);
}
