/* ws_deflate_ext.c - permessage-deflate offers (RFC 7692) parsed from Sec-WebSocket-Extensions
 * (RFC 6455 9.1 grammar) and the first acceptable one turned into the 101's answer. */
#include "ws_deflate_ext.h"

#include <stdio.h>
#include <string.h>

#define PMD_NAME "permessage-deflate"
#define PMD_MAX_PARAMS 16 /* more parameters than this in one offer: it is declined */
#define PMD_VALUE_MAX 16  /* a longer value is no window size: the offer is declined */

/* One extension-param as parsed: name, and its value unquoted (has_value 0: none). */
struct pmd_param {
	const char *name;
	size_t nlen;
	char value[PMD_VALUE_MAX + 1];
	int has_value;
	int value_ok; /* the value fitted in value[] */
};

static int
pmd_tchar(unsigned char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return 1;
	return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int
pmd_caseeq(const char *a, size_t n, const char *lit)
{
	size_t i;

	if (strlen(lit) != n)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)lit[i];
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (x != y)
			return 0;
	}
	return 1;
}

static void
pmd_ows(const char *v, size_t n, size_t *i)
{
	while (*i < n && (v[*i] == ' ' || v[*i] == '\t'))
		(*i)++;
}

/* A token at v[*i]; its length, 0 when there is none. */
static size_t
pmd_token(const char *v, size_t n, size_t *i)
{
	size_t start = *i;

	while (*i < n && pmd_tchar((unsigned char)v[*i]))
		(*i)++;
	return *i - start;
}

/* A param's value: a token or a quoted-string whose content, unescaped, is a token (RFC 6455
 * 9.1). Returns 0, or -1 on a syntax error. */
static int
pmd_value(const char *v, size_t n, size_t *i, struct pmd_param *p)
{
	size_t k = 0;

	p->has_value = 1;
	p->value_ok = 1;
	if (*i < n && v[*i] == '"') {
		(*i)++;
		for (;;) {
			unsigned char ch;
			if (*i >= n)
				return -1; /* unterminated */
			ch = (unsigned char)v[*i];
			if (ch == '"')
				break;
			if (ch == '\\') {
				if (++(*i) >= n)
					return -1;
				ch = (unsigned char)v[*i];
			}
			if (!pmd_tchar(ch))
				return -1;
			if (k < PMD_VALUE_MAX)
				p->value[k++] = (char)ch;
			else
				p->value_ok = 0;
			(*i)++;
		}
		(*i)++;
		if (k == 0)
			return -1; /* "" is no token */
	} else {
		size_t start = *i, len = pmd_token(v, n, i);
		if (len == 0)
			return -1;
		if (len > PMD_VALUE_MAX)
			p->value_ok = 0;
		else
			memcpy(p->value, v + start, (k = len));
	}
	p->value[k] = '\0';
	return 0;
}

/* "8".."15" exactly: no sign, no leading zero (RFC 7692 7.1.2.1). 0 when not. */
static unsigned
pmd_bits(const struct pmd_param *p)
{
	const char *s = p->value;

	if (!p->value_ok)
		return 0;
	if (s[0] >= '8' && s[0] <= '9' && s[1] == '\0')
		return (unsigned)(s[0] - '0');
	if (s[0] == '1' && s[1] >= '0' && s[1] <= '5' && s[2] == '\0')
		return 10 + (unsigned)(s[1] - '0');
	return 0;
}

/* One permessage-deflate offer judged (RFC 7692 5.1, 7.1): 1 and *out/resp filled when
 * acceptable, 0 to decline it (unknown or repeated parameter, a bad value, or what this route
 * cannot do). */
static int
pmd_offer(const struct pmd_param *ps, size_t np, const struct ws_pmd_policy *pol,
          struct ws_pmd_params *out)
{
	int seen_snt = 0, seen_cnt = 0, seen_smwb = 0, seen_cmwb = 0;
	unsigned smwb = 15, cmwb = 15, sbits, cbits;
	size_t i;
	for (i = 0; i < np; i++) {
		const struct pmd_param *p = &ps[i];
		if (pmd_caseeq(p->name, p->nlen, "server_no_context_takeover")) {
			if (seen_snt++ || p->has_value)
				return 0;
		} else if (pmd_caseeq(p->name, p->nlen, "client_no_context_takeover")) {
			if (seen_cnt++ || p->has_value)
				return 0;
		} else if (pmd_caseeq(p->name, p->nlen, "server_max_window_bits")) {
			if (seen_smwb++ || !p->has_value || (smwb = pmd_bits(p)) == 0)
				return 0;
		} else if (pmd_caseeq(p->name, p->nlen, "client_max_window_bits")) {
			if (seen_cmwb++ || (p->has_value && (cmwb = pmd_bits(p)) == 0))
				return 0;
		} else {
			return 0; /* unknown parameter */
		}
	}
	/* zlib cannot compress raw deflate with a 256-byte window (it would use 512). */
	sbits = smwb < pol->server_max_bits ? smwb : pol->server_max_bits;
	if (sbits < 9)
		return 0;
	/* Without client_max_window_bits in the offer the client may use 32 KiB, and nothing in
	 * the answer can make it use less. */
	cbits = cmwb < pol->client_max_bits ? cmwb : pol->client_max_bits;
	if (!seen_cmwb && cbits < 15)
		return 0;
	out->client_no_takeover = seen_cnt != 0 || !pol->allow_client_takeover;
	out->server_bits = (uint8_t)sbits;
	out->client_bits = (uint8_t)cbits;
	out->say_server_bits = seen_smwb != 0;
	out->say_client_bits = seen_cmwb && cbits < 15;
	return 1;
}

void
ws_pmd_response(const struct ws_pmd_params *p, char *resp)
{
	int n;

	n = snprintf(resp, WS_PMD_RESPONSE_MAX, PMD_NAME "; server_no_context_takeover%s",
	             p->client_no_takeover ? "; client_no_context_takeover" : "");
	if (p->say_server_bits)
		n += snprintf(resp + n, WS_PMD_RESPONSE_MAX - (size_t)n,
		              "; server_max_window_bits=%u", p->server_bits);
	if (p->say_client_bits)
		snprintf(resp + n, WS_PMD_RESPONSE_MAX - (size_t)n, "; client_max_window_bits=%u",
		         p->client_bits);
}

enum ws_pmd_status
ws_pmd_negotiate_value(const char *v, size_t n, const struct ws_pmd_policy *pol,
                       struct ws_pmd_params *out, int *found)
{
	struct pmd_param ps[PMD_MAX_PARAMS];
	size_t i = 0;

	/* extension-list = 1#extension, empty elements tolerated (RFC 7230 7). */
	for (;;) {
		const char *name;
		size_t nlen, np = 0;
		int too_many = 0;

		pmd_ows(v, n, &i);
		if (i < n && v[i] == ',') {
			i++;
			continue;
		}
		if (i >= n)
			break;
		name = v + i;
		if ((nlen = pmd_token(v, n, &i)) == 0)
			return WS_PMD_BAD;
		for (;;) {
			struct pmd_param p;
			pmd_ows(v, n, &i);
			if (i >= n || v[i] != ';')
				break;
			i++;
			pmd_ows(v, n, &i);
			memset(&p, 0, sizeof(p));
			p.name = v + i;
			if ((p.nlen = pmd_token(v, n, &i)) == 0)
				return WS_PMD_BAD;
			pmd_ows(v, n, &i);
			if (i < n && v[i] == '=') {
				i++;
				pmd_ows(v, n, &i);
				if (pmd_value(v, n, &i, &p) < 0)
					return WS_PMD_BAD;
			}
			if (np < PMD_MAX_PARAMS)
				ps[np++] = p;
			else
				too_many = 1;
		}
		if (i < n && v[i] != ',')
			return WS_PMD_BAD;
		/* The whole line is checked even once an offer was taken: a bad one is a 400. */
		if (!*found && !too_many && pmd_caseeq(name, nlen, PMD_NAME) &&
		    pmd_offer(ps, np, pol, out))
			*found = 1;
	}
	return *found ? WS_PMD_ACCEPT : WS_PMD_NONE;
}

enum ws_pmd_status
ws_pmd_negotiate(const char *head, size_t len, const struct ws_pmd_policy *pol,
                 struct ws_pmd_params *out)
{
	static const char hname[] = "Sec-WebSocket-Extensions";
	size_t hn = sizeof(hname) - 1, pos = 0;
	int found = 0;

	/* Line by line; the request line never matches (it has no colon right after a name). */
	while (pos < len) {
		const char *line = head + pos, *eol = memchr(line, '\n', len - pos);
		size_t llen = eol != NULL ? (size_t)(eol - line) : len - pos, vs, ve;

		pos += llen + (eol != NULL);
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		if (llen <= hn || line[hn] != ':' ||
		    !pmd_caseeq(line, hn, "sec-websocket-extensions"))
			continue;
		vs = hn + 1;
		ve = llen;
		while (vs < ve && (line[vs] == ' ' || line[vs] == '\t'))
			vs++;
		while (ve > vs && (line[ve - 1] == ' ' || line[ve - 1] == '\t'))
			ve--;
		if (ws_pmd_negotiate_value(line + vs, ve - vs, pol, out, &found) == WS_PMD_BAD)
			return WS_PMD_BAD;
	}
	return found ? WS_PMD_ACCEPT : WS_PMD_NONE;
}
