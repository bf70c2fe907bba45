/* cidr.h - pure address blocks ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7") and membership
 * tests, for trusted_proxies: which peers may speak for the client. */
#ifndef WSGATE_CIDR_H
#define WSGATE_CIDR_H

#include <stddef.h>
#include <stdint.h>

struct cidr {
	uint8_t addr[16]; /* network address, host bits cleared; 4 bytes used for IPv4 */
	uint8_t family;   /* 4 or 6 */
	uint8_t bits;     /* prefix length */
};

/* Parses s[0..n): an address with an optional "/bits" (a bare address is a host). 0, or -1
 * with *why set. */
int cidr_parse(const char *s, size_t n, struct cidr *out, const char **why);

/* 1 when the address text ip[0..n) ("192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1") is in
 * one of set[0..nset); 0 when not or when ip is not an address. */
int cidr_match_text(const struct cidr *set, size_t nset, const char *ip, size_t n);

/* Same for raw bytes of family 4 or 6. */
int cidr_match(const struct cidr *set, size_t nset, int family, const uint8_t *addr);

#endif
