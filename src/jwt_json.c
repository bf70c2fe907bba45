/* jwt_json.c - the small JSON reader of JWTs (jwt.h, jwt_json_object): one object of claims,
 * strings unescaped and UTF-8 checked, numbers kept as text, nesting bounded. Moved out of
 * jwt.c, which keeps the token and its verification. */
#include "jwt.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

struct jwt_jr {
	const char *p, *end;
	char *text; /* where stored strings and numbers go */
	size_t cap, len;
};

static void
jwt_jr_ws(struct jwt_jr *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static enum jwt_status
jwt_jr_emit(struct jwt_jr *r, int store, unsigned char b)
{
	if (!store)
		return JWT_OK;
	if (r->len >= r->cap)
		return JWT_ERR_TOO_LARGE;
	r->text[r->len++] = (char)b;
	return JWT_OK;
}

static int
jwt_jr_hex4(struct jwt_jr *r, uint32_t *cp)
{
	uint32_t v = 0;
	int i;

	if (r->end - r->p < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		unsigned char c = (unsigned char)*r->p++;

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	*cp = v;
	return 0;
}

/* One code point from a \u escape (a surrogate pair when needed) as UTF-8. */
static enum jwt_status
jwt_jr_escape_u(struct jwt_jr *r, int store, uint32_t *state)
{
	uint8_t u[4];
	uint32_t cp, lo;
	size_t n, i;
	enum jwt_status st;

	if (jwt_jr_hex4(r, &cp) < 0)
		return JWT_ERR_JSON;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return JWT_ERR_JSON; /* a lone low surrogate */
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u')
			return JWT_ERR_JSON;
		r->p += 2;
		if (jwt_jr_hex4(r, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
			return JWT_ERR_JSON;
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	if (cp < 0x80) {
		u[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xc0 | (cp >> 6));
		u[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xe0 | (cp >> 12));
		u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (uint8_t)(0xf0 | (cp >> 18));
		u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	/* An escape may not complete a raw multi-byte sequence left open before it. */
	if (*state != UTF8_ACCEPT)
		return JWT_ERR_JSON;
	for (i = 0; i < n; i++)
		if ((st = jwt_jr_emit(r, store, u[i])) != JWT_OK)
			return st;
	return JWT_OK;
}

/* A string starting at the opening quote; stored NUL-terminated when store. */
static enum jwt_status
jwt_jr_string(struct jwt_jr *r, int store, const char **out, size_t *outlen)
{
	size_t start = r->len;
	uint32_t state = UTF8_ACCEPT;
	enum jwt_status st;
	unsigned char c, b;

	r->p++; /* '"' */
	for (;;) {
		if (r->p >= r->end)
			return JWT_ERR_JSON;
		c = (unsigned char)*r->p++;
		if (c == '"')
			break;
		if (c < 0x20)
			return JWT_ERR_JSON;
		if (c != '\\') {
			state = utf8_feed(state, &c, 1);
			if (state == UTF8_REJECT)
				return JWT_ERR_JSON;
			if ((st = jwt_jr_emit(r, store, c)) != JWT_OK)
				return st;
			continue;
		}
		if (r->p >= r->end)
			return JWT_ERR_JSON;
		switch (*r->p++) {
		case '"':
			b = '"';
			break;
		case '\\':
			b = '\\';
			break;
		case '/':
			b = '/';
			break;
		case 'b':
			b = '\b';
			break;
		case 'f':
			b = '\f';
			break;
		case 'n':
			b = '\n';
			break;
		case 'r':
			b = '\r';
			break;
		case 't':
			b = '\t';
			break;
		case 'u':
			if ((st = jwt_jr_escape_u(r, store, &state)) != JWT_OK)
				return st;
			continue;
		default:
			return JWT_ERR_JSON;
		}
		if (state != UTF8_ACCEPT)
			return JWT_ERR_JSON;
		if ((st = jwt_jr_emit(r, store, b)) != JWT_OK)
			return st;
	}
	if (state != UTF8_ACCEPT)
		return JWT_ERR_JSON;
	if (store) {
		if ((st = jwt_jr_emit(r, store, '\0')) != JWT_OK)
			return st;
		*out = r->text + start;
		*outlen = r->len - start - 1;
	}
	return JWT_OK;
}

static int
jwt_jr_digit(const struct jwt_jr *r)
{
	return r->p < r->end && *r->p >= '0' && *r->p <= '9';
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? kept as text. */
static enum jwt_status
jwt_jr_number(struct jwt_jr *r, int store, const char **out, size_t *outlen)
{
	const char *s = r->p;
	size_t i, start = r->len;
	enum jwt_status st;

	if (r->p < r->end && *r->p == '-')
		r->p++;
	if (!jwt_jr_digit(r))
		return JWT_ERR_JSON;
	if (*r->p == '0')
		r->p++;
	else
		while (jwt_jr_digit(r))
			r->p++;
	if (r->p < r->end && *r->p == '.') {
		r->p++;
		if (!jwt_jr_digit(r))
			return JWT_ERR_JSON;
		while (jwt_jr_digit(r))
			r->p++;
	}
	if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
		r->p++;
		if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
			r->p++;
		if (!jwt_jr_digit(r))
			return JWT_ERR_JSON;
		while (jwt_jr_digit(r))
			r->p++;
	}
	if (!store)
		return JWT_OK;
	for (i = 0; s + i < r->p; i++)
		if ((st = jwt_jr_emit(r, 1, (unsigned char)s[i])) != JWT_OK)
			return st;
	if ((st = jwt_jr_emit(r, 1, '\0')) != JWT_OK)
		return st;
	*out = r->text + start;
	*outlen = r->len - start - 1;
	return JWT_OK;
}

static enum jwt_status
jwt_jr_literal(struct jwt_jr *r, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
		return JWT_ERR_JSON;
	r->p += n;
	return JWT_OK;
}

static enum jwt_status jwt_jr_value(struct jwt_jr *r, int depth, int store, struct jwt_claim *c);

/* An object or array inside a claim: checked, not kept. */
static enum jwt_status
jwt_jr_skip_container(struct jwt_jr *r, int depth)
{
	char close = *r->p == '{' ? '}' : ']';
	int object = close == '}';
	enum jwt_status st;
	const char *dummy;
	size_t dlen;

	if (depth >= JWT_JSON_MAX_DEPTH)
		return JWT_ERR_JSON;
	r->p++;
	jwt_jr_ws(r);
	if (r->p < r->end && *r->p == close) {
		r->p++;
		return JWT_OK;
	}
	for (;;) {
		jwt_jr_ws(r);
		if (object) {
			if (r->p >= r->end || *r->p != '"')
				return JWT_ERR_JSON;
			if ((st = jwt_jr_string(r, 0, &dummy, &dlen)) != JWT_OK)
				return st;
			jwt_jr_ws(r);
			if (r->p >= r->end || *r->p != ':')
				return JWT_ERR_JSON;
			r->p++;
		}
		if ((st = jwt_jr_value(r, depth + 1, 0, NULL)) != JWT_OK)
			return st;
		jwt_jr_ws(r);
		if (r->p >= r->end)
			return JWT_ERR_JSON;
		if (*r->p == close) {
			r->p++;
			return JWT_OK;
		}
		if (*r->p != ',')
			return JWT_ERR_JSON;
		r->p++;
	}
}

static enum jwt_status
jwt_jr_value(struct jwt_jr *r, int depth, int store, struct jwt_claim *c)
{
	const char *v = NULL;
	size_t vlen = 0;
	enum jwt_type type;
	enum jwt_status st;

	jwt_jr_ws(r);
	if (r->p >= r->end)
		return JWT_ERR_JSON;
	switch (*r->p) {
	case '"':
		type = JWT_STRING;
		st = jwt_jr_string(r, store, &v, &vlen);
		break;
	case '{':
	case '[':
		type = *r->p == '{' ? JWT_OBJECT : JWT_ARRAY;
		st = jwt_jr_skip_container(r, depth);
		break;
	case 't':
		type = JWT_TRUE;
		st = jwt_jr_literal(r, "true");
		break;
	case 'f':
		type = JWT_FALSE;
		st = jwt_jr_literal(r, "false");
		break;
	case 'n':
		type = JWT_NULL;
		st = jwt_jr_literal(r, "null");
		break;
	default:
		type = JWT_NUMBER;
		st = jwt_jr_number(r, store, &v, &vlen);
		break;
	}
	if (st == JWT_OK && c != NULL) {
		c->type = type;
		c->val = v;
		c->val_len = vlen;
	}
	return st;
}

enum jwt_status
jwt_json_object(const char *in, size_t n, struct jwt_claim *claims, size_t max, size_t *nclaims,
                char *text, size_t textsz, size_t *text_len)
{
	struct jwt_jr r = {in, in + n, text, textsz, 0};
	struct jwt_claim c;
	enum jwt_status st;
	size_t i;

	*nclaims = 0;
	*text_len = 0;
	jwt_jr_ws(&r);
	if (r.p >= r.end || *r.p != '{')
		return JWT_ERR_JSON;
	r.p++;
	jwt_jr_ws(&r);
	if (r.p < r.end && *r.p == '}') {
		r.p++;
		goto end;
	}
	for (;;) {
		jwt_jr_ws(&r);
		if (r.p >= r.end || *r.p != '"')
			return JWT_ERR_JSON;
		memset(&c, 0, sizeof(c));
		if ((st = jwt_jr_string(&r, 1, &c.name, &c.name_len)) != JWT_OK)
			return st;
		jwt_jr_ws(&r);
		if (r.p >= r.end || *r.p != ':')
			return JWT_ERR_JSON;
		r.p++;
		if ((st = jwt_jr_value(&r, 1, 1, &c)) != JWT_OK)
			return st;
		/* Two "exp" or two "sub" would let different readers see different tokens. */
		for (i = 0; i < *nclaims; i++)
			if (claims[i].name_len == c.name_len &&
			    memcmp(claims[i].name, c.name, c.name_len) == 0)
				return JWT_ERR_JSON;
		if (*nclaims == max)
			return JWT_ERR_TOO_LARGE;
		claims[(*nclaims)++] = c;
		jwt_jr_ws(&r);
		if (r.p >= r.end)
			return JWT_ERR_JSON;
		if (*r.p == '}') {
			r.p++;
			break;
		}
		if (*r.p != ',')
			return JWT_ERR_JSON;
		r.p++;
	}
end:
	jwt_jr_ws(&r);
	if (r.p != r.end)
		return JWT_ERR_JSON;
	*text_len = r.len;
	return JWT_OK;
}
