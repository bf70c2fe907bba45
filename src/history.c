/* history.c - positions, the wire prefix carrying them, since= parsing, the in-memory ring of
 * a channel's recent messages and the replay plan. Pure: callers add the locking and I/O. */
#include "history.h"

#include <openssl/evp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
history_epoch_valid(const char *s, size_t n)
{
	if (n == 0 || n > HISTORY_EPOCH_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return 0;
	}
	return 1;
}

/* Decimal uint64 of s[0..n), no sign, no leading '+', at most 20 digits. */
static int
history_parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

int
history_pos_parse(const char *s, size_t n, struct history_pos *p)
{
	const char *colon = memchr(s, ':', n);
	size_t elen;

	if (colon == NULL)
		return -1;
	elen = (size_t)(colon - s);
	if (!history_epoch_valid(s, elen) ||
	    history_parse_u64(colon + 1, n - elen - 1, &p->off) < 0)
		return -1;
	memcpy(p->epoch, s, elen);
	p->epoch[elen] = '\0';
	return 0;
}

size_t
history_pos_format(const struct history_pos *p, char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%s:%llu", p->epoch, (unsigned long long)p->off);

	if (n < 0)
		return 0;
	return (size_t)n < outsz ? (size_t)n : outsz - 1;
}

size_t
history_wire_header(const struct history_pos *p, uint8_t *out)
{
	size_t o = HISTORY_WIRE_MAGIC_LEN;

	memcpy(out, HISTORY_WIRE_MAGIC, HISTORY_WIRE_MAGIC_LEN);
	out[o++] = 'p';
	o += history_pos_format(p, (char *)out + o, HISTORY_POS_MAX);
	out[o++] = '\n';
	return o;
}

int
history_wire_needs_escape(const uint8_t *data, size_t len)
{
	return len >= HISTORY_WIRE_MAGIC_LEN &&
	       memcmp(data, HISTORY_WIRE_MAGIC, HISTORY_WIRE_MAGIC_LEN) == 0;
}

int
history_wire_decode(const uint8_t *msg, size_t len, struct history_pos *pos, const uint8_t **data,
                    size_t *dlen)
{
	const uint8_t *nl;
	size_t hl;

	if (!history_wire_needs_escape(msg, len)) {
		*data = msg;
		*dlen = len;
		return 0;
	}
	if (len < HISTORY_WIRE_MAGIC_LEN + 2)
		return -1;
	/* The header is short: look for its end only within the longest one there can be. */
	hl = len < HISTORY_WIRE_HDR_MAX ? len : HISTORY_WIRE_HDR_MAX;
	if ((nl = memchr(msg + HISTORY_WIRE_MAGIC_LEN + 1, '\n',
	                 hl - HISTORY_WIRE_MAGIC_LEN - 1)) == NULL)
		return -1;
	*data = nl + 1;
	*dlen = len - (size_t)(nl + 1 - msg);
	switch (msg[HISTORY_WIRE_MAGIC_LEN]) {
	case 'r':
		return nl == msg + HISTORY_WIRE_MAGIC_LEN + 1 ? 0 : -1;
	case 'p':
		if (history_pos_parse((const char *)msg + HISTORY_WIRE_MAGIC_LEN + 1,
		                      (size_t)(nl - msg) - HISTORY_WIRE_MAGIC_LEN - 1, pos) < 0 ||
		    pos->off == 0)
			return -1;
		return 1;
	default:
		return -1;
	}
}

static int
history_hexval(char h)
{
	if (h >= '0' && h <= '9')
		return h - '0';
	h = (char)(h | 0x20);
	return h >= 'a' && h <= 'f' ? h - 'a' + 10 : -1;
}

/* Copies s[0..n) into out (outsz bytes) decoding every %HH (any case): a client encodes the
 * value with encodeURIComponent() for the query and for a subprotocol token alike. -1 when it
 * does not fit, an escape is cut short or not hex, or it decodes to NUL. */
static int
history_since_unescape(const char *s, size_t n, char *out, size_t outsz, size_t *outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '%') {
			int h1, h2;
			if (n - i < 3)
				return -1;
			h1 = history_hexval(s[i + 1]);
			h2 = history_hexval(s[i + 2]);
			if (h1 < 0 || h2 < 0)
				return -1;
			ch = (char)(h1 << 4 | h2);
			i += 2;
		}
		if (ch == '\0' || o + 1 >= outsz)
			return -1;
		out[o++] = ch;
	}
	out[o] = '\0';
	*outlen = o;
	return 0;
}

#define HISTORY_SINCE_MAX 4096

int
history_since_find(const char *since, size_t len, const char *name, struct history_pos *p)
{
	char buf[HISTORY_SINCE_MAX];
	size_t n, nlen = name != NULL ? strlen(name) : 0;
	const char *s, *end;

	if (history_since_unescape(since, len, buf, sizeof(buf), &n) < 0)
		return -1;
	if (memchr(buf, '@', n) == NULL) {
		/* The single form names no channel: it is the route's one history channel. */
		if (memchr(buf, ',', n) != NULL || history_pos_parse(buf, n, p) < 0)
			return -1;
		return 1;
	}
	for (s = buf; s < buf + n; s = end + 1) {
		const char *at;
		if ((end = memchr(s, ',', (size_t)(buf + n - s))) == NULL)
			end = buf + n;
		if ((at = memchr(s, '@', (size_t)(end - s))) == NULL || at == s)
			return -1;
		if (nlen > 0 && (size_t)(at - s) == nlen && memcmp(s, name, nlen) == 0)
			return history_pos_parse(at + 1, (size_t)(end - at - 1), p) < 0 ? -1 : 1;
	}
	return 0;
}

int
history_since_protocol(const char *tok, size_t n, const char **val, size_t *vlen)
{
	size_t pl = sizeof(HISTORY_SINCE_PROTOCOL) - 1;

	/* Subprotocol tokens compare case-sensitively (RFC 6455 4.1): so does the prefix. */
	if (n <= pl || memcmp(tok, HISTORY_SINCE_PROTOCOL, pl) != 0)
		return 0;
	*val = tok + pl;
	*vlen = n - pl;
	return 1;
}

void
history_plan(const char *epoch, uint64_t first, uint64_t last, const struct history_pos *since,
             struct history_plan *pl)
{
	memset(pl, 0, sizeof(*pl));
	pl->from = 1;
	pl->to = 0;
	if (strcmp(epoch, since->epoch) != 0) {
		/* Everything the old epoch had after since is gone, and so is what the new one
		 * trimmed already; what it kept is resent. gap_to = 0: none of the new one lost. */
		pl->gap = HISTORY_GAP_EPOCH_CHANGED;
		pl->gap_from = 1;
		pl->gap_to = first > 1 ? first - 1 : 0;
		if (first <= last) {
			pl->from = first;
			pl->to = last;
		}
		return;
	}
	if (since->off >= last)
		return; /* up to date (or a position this epoch never gave: nothing to resend) */
	if (since->off + 1 < first) {
		pl->gap = HISTORY_GAP_TRIMMED;
		pl->gap_from = since->off + 1;
		pl->gap_to = first - 1;
		pl->from = first;
	} else {
		pl->from = since->off + 1;
	}
	pl->to = last;
}

const char *
history_gap_name(enum history_gap g)
{
	switch (g) {
	case HISTORY_GAP_TRIMMED:
		return "trimmed";
	case HISTORY_GAP_EPOCH_CHANGED:
		return "epoch_changed";
	case HISTORY_GAP_DROPPED:
		return "dropped";
	case HISTORY_GAP_NONE:
		break;
	}
	return "none";
}

size_t
history_json_escape(const uint8_t *s, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t ch = s[i];
		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch < 0x20) {
			out[o++] = '\\';
			out[o++] = 'u';
			out[o++] = '0';
			out[o++] = '0';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		} else {
			out[o++] = (char)ch;
		}
	}
	return o;
}

/* Index just past the JSON string starting at s[i] == '"', or n when unterminated. */
static size_t
history_json_skip_string(const uint8_t *s, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return n;
}

int
history_json_field(const uint8_t *s, size_t n, const char *name, const uint8_t **v, size_t *vlen)
{
	size_t i = 0, nl = strlen(name);
	int depth = 0, want_key = 0;

	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	if (i >= n || s[i] != '{')
		return 0;
	depth = 1;
	want_key = 1;
	for (i++; i < n && depth > 0;) {
		uint8_t ch = s[i];
		if (ch == '"') {
			size_t end = history_json_skip_string(s, n, i);
			if (depth == 1 && want_key) {
				size_t k = end, vs;
				int match = end - i - 2 == nl && memcmp(s + i + 1, name, nl) == 0;
				while (k < n && s[k] != ':')
					k++;
				want_key = 0;
				i = k + 1;
				if (!match || k >= n)
					continue;
				while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' ||
				                 s[i] == '\r'))
					i++;
				vs = i;
				/* The value ends at the ',' or '}' of this level. */
				for (int d = 0; i < n;) {
					if (s[i] == '"') {
						i = history_json_skip_string(s, n, i);
						continue;
					}
					if (s[i] == '{' || s[i] == '[')
						d++;
					else if (s[i] == '}' || s[i] == ']') {
						if (d == 0)
							break;
						d--;
					} else if (s[i] == ',' && d == 0)
						break;
					i++;
				}
				while (i > vs && (s[i - 1] == ' ' || s[i - 1] == '\t' ||
				                  s[i - 1] == '\n' || s[i - 1] == '\r'))
					i--;
				*v = s + vs;
				*vlen = i - vs;
				return i > vs;
			}
			i = end;
			continue;
		}
		if (ch == '{' || ch == '[')
			depth++;
		else if (ch == '}' || ch == ']')
			depth--;
		else if (ch == ',' && depth == 1)
			want_key = 1;
		i++;
	}
	return 0;
}

size_t
history_json_message_max(size_t clen, size_t len)
{
	return 96 + HISTORY_POS_MAX + 6 * clen + 6 * len + 4;
}

size_t
history_json_message(char *out, const char *channel, size_t clen, const struct history_pos *pos,
                     const uint8_t *data, size_t len, int is_text)
{
	size_t o = 0;

	memcpy(out, "{\"type\":\"message\",\"channel\":\"", 29);
	o = 29;
	o += history_json_escape((const uint8_t *)channel, clen, out + o);
	memcpy(out + o, "\",\"pos\":\"", 9);
	o += 9;
	o += history_pos_format(pos, out + o, HISTORY_POS_MAX);
	memcpy(out + o, "\",\"data\":\"", 10);
	o += 10;
	if (is_text)
		o += history_json_escape(data, len, out + o);
	else
		o += (size_t)EVP_EncodeBlock((unsigned char *)out + o, data, (int)len);
	if (is_text) {
		memcpy(out + o, "\"}", 2);
		o += 2;
	} else {
		memcpy(out + o, "\",\"binary\":true}", 16);
		o += 16;
	}
	return o;
}

size_t
history_json_gap(char *out, const char *channel, size_t clen, const char *epoch, uint64_t from,
                 uint64_t to, enum history_gap reason)
{
	size_t o;

	memcpy(out, "{\"type\":\"gap\",\"channel\":\"", 25);
	o = 25;
	o += history_json_escape((const uint8_t *)channel, clen, out + o);
	o += (size_t)snprintf(
	    out + o, 192 - 25, "\",\"epoch\":\"%s\",\"from\":%llu,\"to\":%llu,\"reason\":\"%s\"}",
	    epoch, (unsigned long long)from, (unsigned long long)to, history_gap_name(reason));
	return o;
}

struct history_entry {
	uint64_t ts_ms;
	size_t len;
	uint8_t *data;
};

struct history_ring {
	struct history_entry *e;
	size_t cap;     /* entries allocated: the most kept */
	size_t head;    /* index of the oldest */
	size_t n;       /* entries kept */
	uint64_t first; /* offset of e[head] */
	uint64_t ttl_ms;
};

struct history_ring *
history_ring_new(size_t cap, uint64_t ttl_ms)
{
	struct history_ring *r;

	if (cap == 0 || (r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	/* The entries are allocated by the first append: a channel whose history lives
	 * elsewhere (Redis) costs only this. */
	r->cap = cap;
	r->first = 1;
	r->ttl_ms = ttl_ms;
	return r;
}

void
history_ring_free(struct history_ring *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->e[(r->head + i) % r->cap].data);
	free(r->e);
	free(r);
}

int
history_ring_widen(struct history_ring *r, size_t cap, uint64_t ttl_ms)
{
	struct history_entry *ne;

	/* 0 is "no age limit": the widest. */
	if (r->ttl_ms != 0 && (ttl_ms == 0 || ttl_ms > r->ttl_ms))
		r->ttl_ms = ttl_ms;
	if (cap <= r->cap)
		return 0;
	if (r->e == NULL) {
		r->cap = cap;
		return 0;
	}
	if ((ne = calloc(cap, sizeof(*ne))) == NULL)
		return -1;
	for (size_t i = 0; i < r->n; i++)
		ne[i] = r->e[(r->head + i) % r->cap];
	free(r->e);
	r->e = ne;
	r->head = 0;
	r->cap = cap;
	return 0;
}

static void
history_ring_drop_oldest(struct history_ring *r)
{
	free(r->e[r->head].data);
	r->e[r->head].data = NULL;
	r->head = (r->head + 1) % r->cap;
	r->n--;
	r->first++;
}

uint64_t
history_ring_append(struct history_ring *r, const uint8_t *data, size_t len, uint64_t now_ms)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);
	struct history_entry *e;

	if (copy == NULL)
		return 0;
	if (r->e == NULL && (r->e = calloc(r->cap, sizeof(*r->e))) == NULL) {
		free(copy);
		return 0;
	}
	memcpy(copy, data, len);
	if (r->n == r->cap)
		history_ring_drop_oldest(r);
	e = &r->e[(r->head + r->n) % r->cap];
	e->data = copy;
	e->len = len;
	e->ts_ms = now_ms;
	r->n++;
	return r->first + r->n - 1;
}

void
history_ring_expire(struct history_ring *r, uint64_t now_ms)
{
	if (r->ttl_ms == 0)
		return;
	while (r->n > 0 && now_ms - r->e[r->head].ts_ms > r->ttl_ms)
		history_ring_drop_oldest(r);
}

uint64_t
history_ring_first(const struct history_ring *r)
{
	return r->first;
}

size_t
history_ring_cap(const struct history_ring *r)
{
	return r->cap;
}

uint64_t
history_ring_ttl(const struct history_ring *r)
{
	return r->ttl_ms;
}

uint64_t
history_ring_last(const struct history_ring *r)
{
	return r->first + r->n - 1;
}

int
history_ring_get(const struct history_ring *r, uint64_t off, const uint8_t **data, size_t *len)
{
	const struct history_entry *e;

	if (off < r->first || off - r->first >= r->n)
		return -1;
	e = &r->e[(r->head + (off - r->first)) % r->cap];
	*data = e->data;
	*len = e->len;
	return 0;
}
