/* fuzz_history.c - libFuzzer target for the resume-position parsers a client reaches (issue 11):
 * since= values from the query, the Wsgate-Since header and the "wsgate.since." subprotocol
 * token, checked against a naive reference decoder, and the position header inside messages. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(c)                                                                                \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

/* %HH decoded the obvious way: 0 and the result in out, or -1 (cut short, not hex, NUL). */
static int
fz_decode(const char *s, size_t n, char *out, size_t *on)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned v = (unsigned char)s[i];
		if (s[i] == '%') {
			char hex[3] = {0};
			char *end;
			if (n - i < 3)
				return -1;
			hex[0] = s[i + 1];
			hex[1] = s[i + 2];
			if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1]))
				return -1;
			v = (unsigned)strtoul(hex, &end, 16);
			i += 2;
		}
		if (v == 0)
			return -1;
		out[o++] = (char)v;
	}
	*on = o;
	return 0;
}

/* A position that parsed formats back to the same text, and is valid. */
static void
fz_pos_ok(const struct history_pos *p)
{
	char buf[HISTORY_POS_MAX];
	struct history_pos q;
	size_t n = history_pos_format(p, buf, sizeof(buf));

	FZ_CHECK(history_epoch_valid(p->epoch, strlen(p->epoch)));
	FZ_CHECK(history_pos_parse(buf, n, &q) == 0);
	FZ_CHECK(strcmp(q.epoch, p->epoch) == 0 && q.off == p->off);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *v, *nul;
	char name[256], *dec;
	struct history_pos p;
	const uint8_t *d;
	size_t vlen, dl, dn;
	int rc;

	/* the message header */
	rc = history_wire_decode(data, size, &p, &d, &dl);
	FZ_CHECK(rc >= -1 && rc <= 1);
	if (rc == 1) {
		fz_pos_ok(&p);
		FZ_CHECK(p.off > 0 && d >= data && d + dl == data + size);
	} else if (rc == 0) {
		FZ_CHECK(d >= data && d + dl <= data + size);
	}
	/* "name\0value": a channel name to look up, then a since value or subprotocol token */
	if ((nul = memchr(s, '\0', size)) == NULL || (size_t)(nul - s) >= sizeof(name))
		return 0;
	memcpy(name, s, (size_t)(nul - s));
	name[nul - s] = '\0';
	s = nul + 1;
	size -= (size_t)(nul - (const char *)data) + 1;
	if (history_since_protocol(s, size, &v, &vlen) == 1) {
		FZ_CHECK(v > s && v + vlen == s + size && vlen > 0);
		FZ_CHECK(memcmp(s, HISTORY_SINCE_PROTOCOL, sizeof(HISTORY_SINCE_PROTOCOL) - 1) ==
		         0);
		s = v;
		size = vlen;
	}
	rc = history_since_find(s, size, name[0] != '\0' ? name : NULL, &p);
	FZ_CHECK(rc >= -1 && rc <= 1);
	if (rc == 1)
		fz_pos_ok(&p);
	/* against the reference: a value that decodes and names no channel is exactly a position */
	if ((dec = malloc(size + 1)) == NULL)
		return 0;
	if (fz_decode(s, size, dec, &dn) < 0) {
		FZ_CHECK(rc == -1);
	} else if (dn < 4000 && memchr(dec, '@', dn) == NULL && memchr(dec, ',', dn) == NULL) {
		struct history_pos q;
		int ok = history_pos_parse(dec, dn, &q) == 0;
		FZ_CHECK(rc == (ok ? 1 : -1));
		if (ok)
			FZ_CHECK(strcmp(q.epoch, p.epoch) == 0 && q.off == p.off);
	}
	free(dec);
	return 0;
}
