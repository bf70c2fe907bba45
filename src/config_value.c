/* config_value.c - pure parsers and checks of one configuration value: durations, sizes,
 * booleans, numbers, addresses, URLs, channel templates, origins, and small string helpers. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* inet_pton */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_value.h"

#define SEC_MS 1000ull
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)
#define CFG_TEMPLATE_MAX 128 /* expanded with values and a prefix, it must fit 256 bytes */

/* ---- characters and strings (ASCII: <ctype.h> would depend on the locale) ---- */

int
config_value_is_space(int ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

static int
cfg_is_digit(int ch)
{
	return ch >= '0' && ch <= '9';
}

static int
cfg_is_alpha(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* [A-Za-z0-9_]: placeholder names */
static int
cfg_is_name(int ch)
{
	return cfg_is_alpha(ch) || cfg_is_digit(ch) || ch == '_';
}

/* [A-Za-z0-9_.:-]: what a channel name (and so a filled placeholder) may hold */
static int
cfg_is_channel(int ch)
{
	return cfg_is_name(ch) || ch == '.' || ch == ':' || ch == '-';
}

/* RFC 7230 tchar: what a Sec-WebSocket-Protocol value may hold. */
static int
cfg_is_tchar(int ch)
{
	return cfg_is_alpha(ch) || cfg_is_digit(ch) ||
	       (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int
cfg_lower(int ch)
{
	return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

int
config_value_strcaseeq(const char *a, const char *b)
{
	while (*a && cfg_lower((unsigned char)*a) == cfg_lower((unsigned char)*b)) {
		a++;
		b++;
	}
	return *a == '\0' && *b == '\0';
}

char *
config_value_strndup(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

/* Quotes user text for a message: control bytes become \xNN so a log line stays one line. */
const char *
config_value_quote(char *buf, size_t bufsz, const char *s)
{
	size_t o = 0;

	for (; *s != '\0' && o + 5 < bufsz; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch < 0x20 || ch == 0x7f)
			o += (size_t)snprintf(buf + o, bufsz - o, "\\x%02x", ch);
		else
			buf[o++] = (char)ch;
	}
	buf[o] = '\0';
	return buf;
}

char *
config_value_rstrip(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && config_value_is_space((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

char *
config_value_lskip(char *s)
{
	while (*s != '\0' && config_value_is_space((unsigned char)*s))
		s++;
	return s;
}

static int
cfg_fail(const char **why, const char *msg)
{
	*why = msg;
	return -1;
}

/* ---- numbers ---- */

/* Decimal digits at *pp into *v; -1 on no digits or overflow. */
static int
cfg_digits(const char **pp, uint64_t *v)
{
	const char *p = *pp;
	uint64_t n = 0;

	if (!cfg_is_digit((unsigned char)*p))
		return -1;
	for (; cfg_is_digit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	*pp = p;
	*v = n;
	return 0;
}

int
config_parse_duration_ms(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		uint64_t ms;
	} units[] = {
	    {"", SEC_MS}, {"ms", 1}, {"s", SEC_MS}, {"m", MIN_MS}, {"h", HOUR_MS},
	};
	const char *p = s;
	uint64_t whole, frac = 0, scale = 1, unit = 0, ms, fms;
	size_t i;

	if (cfg_digits(&p, &whole) < 0)
		return -1;
	if (*p == '.') {
		/* up to three fraction digits ("1.5s", "0.25s") if the result is whole ms */
		p++;
		if (!cfg_is_digit((unsigned char)*p))
			return -1;
		for (; cfg_is_digit((unsigned char)*p); p++) {
			if (scale == 1000)
				return -1;
			frac = frac * 10 + (uint64_t)(*p - '0');
			scale *= 10;
		}
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].suffix) == 0) {
			unit = units[i].ms;
			break;
		}
	}
	if (unit == 0 || whole > UINT64_MAX / unit)
		return -1;
	ms = whole * unit;
	fms = frac * unit;
	if (fms % scale != 0)
		return -1;
	fms /= scale;
	if (ms > UINT64_MAX - fms)
		return -1;
	*out = ms + fms;
	return 0;
}

int
config_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = {
	    {"", 1},           {"k", 1ull << 10},   {"K", 1ull << 10}, {"KiB", 1ull << 10},
	    {"M", 1ull << 20}, {"MiB", 1ull << 20}, {"G", 1ull << 30}, {"GiB", 1ull << 30},
	};
	const char *p = s;
	uint64_t n;

	if (cfg_digits(&p, &n) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].suffix) == 0) {
			if (n > UINT64_MAX / units[i].mult)
				return -1;
			*out = n * units[i].mult;
			return 0;
		}
	}
	return -1;
}

int
config_parse_bool(const char *s, int *out)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (config_value_strcaseeq(s, yes[i])) {
			*out = 1;
			return 0;
		}
		if (config_value_strcaseeq(s, no[i])) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

int
config_parse_uint(const char *s, uint64_t *out)
{
	return cfg_digits(&s, out) < 0 || *s != '\0' ? -1 : 0;
}

/* ---- hosts, ports, addresses ---- */

int
config_value_host_valid(const char *h)
{
	struct in_addr a4;
	size_t label = 0;
	int only_num = 1;
	const char *p;

	if (*h == '\0')
		return 0;
	for (p = h;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0 || p[-1] == '-')
				return 0;
			if (*p == '\0')
				break;
			label = 0;
			continue;
		}
		if (!cfg_is_alpha((unsigned char)*p) && !cfg_is_digit((unsigned char)*p) &&
		    *p != '-' && *p != '_')
			return 0;
		if (label == 0 && *p == '-')
			return 0;
		if (!cfg_is_digit((unsigned char)*p))
			only_num = 0;
		label++;
	}
	return !only_num || inet_pton(AF_INET, h, &a4) == 1;
}

/* n bytes of decimal port at s into port[8]; 1 to 65535. */
static int
cfg_port(const char *s, size_t n, char port[8])
{
	const char *p = s;
	uint64_t v;

	if (n == 0 || n > 5 || cfg_digits(&p, &v) < 0 || p != s + n || v < 1 || v > 65535)
		return -1;
	snprintf(port, 8, "%u", (unsigned)v);
	return 0;
}

/* "host[:port]" or "[v6][:port]" (n bytes) into host (without brackets) and port ("" when
 * absent). */
static int
cfg_authority(const char *s, size_t n, char *host, size_t hostsz, char port[8], const char **why)
{
	const char *end = s + n, *hend, *colon = NULL;
	char buf[256];
	struct in6_addr a6;
	int v6 = n > 0 && s[0] == '[';

	if (v6) {
		if ((hend = memchr(s, ']', n)) == NULL)
			return cfg_fail(why, "missing ']' after the IPv6 address");
		hend++;
		if (hend < end && *hend != ':')
			return cfg_fail(why, "expected ':port' after the IPv6 address");
		colon = hend < end ? hend : NULL;
	} else {
		colon = memchr(s, ':', n);
		hend = colon != NULL ? colon : end;
	}
	if (hend == s)
		return cfg_fail(why, "missing host");
	if ((size_t)(hend - s) >= sizeof(buf) || (size_t)(hend - s) >= hostsz)
		return cfg_fail(why, "host name too long");
	memcpy(buf, s + v6, (size_t)(hend - s) - 2 * (size_t)v6);
	buf[(size_t)(hend - s) - 2 * (size_t)v6] = '\0';
	if (v6 ? inet_pton(AF_INET6, buf, &a6) != 1 : !config_value_host_valid(buf))
		return cfg_fail(why, v6 ? "bad IPv6 address" : "bad host name or address");
	memcpy(host, buf, strlen(buf) + 1);
	port[0] = '\0';
	if (colon != NULL && cfg_port(colon + 1, (size_t)(end - colon - 1), port) < 0)
		return cfg_fail(why, "the port must be a number from 1 to 65535");
	return 0;
}

/* 1 when the n bytes at s are printable ASCII without spaces. */
static int
cfg_printable(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	}
	return 1;
}

int
config_parse_listen(const char *s, struct config_listen *out)
{
	char addr[128];
	struct in6_addr a6;
	const char *p = s, *tok, *host, *port;
	size_t hostlen, toklen;
	char *colon, *close;
	uint64_t portnum;

	memset(out, 0, sizeof(*out));
	while (config_value_is_space((unsigned char)*p))
		p++;
	for (tok = p; *p != '\0' && !config_value_is_space((unsigned char)*p); p++)
		;
	toklen = (size_t)(p - tok);
	if (toklen == 0 || toklen >= sizeof(addr))
		return -1;
	memcpy(addr, tok, toklen);
	addr[toklen] = '\0';
	/* flags after the address, in any order, each once: "tls", "proxy_protocol" */
	while (*p != '\0') {
		while (config_value_is_space((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		for (tok = p; *p != '\0' && !config_value_is_space((unsigned char)*p); p++)
			;
		toklen = (size_t)(p - tok);
		if (toklen == 3 && strncmp(tok, "tls", 3) == 0 && !out->tls)
			out->tls = 1;
		else if (toklen == 14 && strncmp(tok, "proxy_protocol", 14) == 0 &&
		         !out->proxy_protocol)
			out->proxy_protocol = 1;
		else
			return -1;
	}

	if (addr[0] == '[') {
		close = strchr(addr, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		*close = '\0';
		host = addr + 1;
		port = close + 2;
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return -1;
	} else {
		colon = strchr(addr, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			return -1; /* a bare IPv6 address: the port would be ambiguous */
		if (colon != NULL) {
			*colon = '\0';
			host = addr;
			port = colon + 1;
		} else {
			host = "";
			port = addr;
		}
		if (*host == '\0')
			host = "0.0.0.0";
		else if (!config_value_host_valid(host))
			return -1;
	}
	hostlen = strlen(host);
	if (hostlen >= sizeof(out->host))
		return -1;
	if (strlen(port) > 5 || cfg_digits(&port, &portnum) < 0 || *port != '\0' || portnum < 1 ||
	    portnum > 65535)
		return -1;
	memcpy(out->host, host, hostlen + 1);
	snprintf(out->port, sizeof(out->port), "%u", (unsigned)portnum);
	return 0;
}

const struct config_listen *
config_listen_dup(const struct config_listen *a, size_t i, const struct config_listen *b, size_t nb)
{
	for (size_t j = 0; j < i + nb; j++) {
		const struct config_listen *y = j < i ? &a[j] : &b[j - i];

		if (config_value_strcaseeq(a[i].host, y->host) && strcmp(a[i].port, y->port) == 0)
			return y;
	}
	return NULL;
}

const char *
config_listen_fmt(char *buf, size_t sz, const struct config_listen *l)
{
	int v6 = strchr(l->host, ':') != NULL;

	snprintf(buf, sz, "%s%s%s:%s", v6 ? "[" : "", l->host, v6 ? "]" : "", l->port);
	return buf;
}

/* ---- URLs, origins, templates ---- */

int
config_parse_redis_url(const char *s, struct config_redis *out, const char **why)
{
	const char *p = s + 8, *at, *slash, *end, *q;
	char host[sizeof(out->host)], port[sizeof(out->port)], *url, *password = NULL;
	uint64_t db = 0;

	int tls = strncmp(s, "rediss://", 9) == 0;

	if (tls)
		p++;
	else if (strncmp(s, "redis://", 8) != 0)
		return cfg_fail(why,
		                "expected redis://[:password@]host[:port][/db] (or rediss://)");
	if (!cfg_printable(s, strlen(s)))
		return cfg_fail(why, "spaces and control characters are not allowed");
	/* a host never holds '@', a password may: the last '@' ends the password */
	if ((at = strrchr(p, '@')) != NULL) {
		if (*p != ':')
			return cfg_fail(why, "only a password goes before '@': redis://:pw@host");
		if (at == p + 1)
			return cfg_fail(why, "empty password");
		p = at + 1;
	}
	slash = strchr(p, '/');
	end = slash != NULL ? slash : p + strlen(p);
	if (cfg_authority(p, (size_t)(end - p), host, sizeof(host), port, why) < 0)
		return -1;
	if (slash != NULL && slash[1] != '\0') {
		q = slash + 1;
		if (cfg_digits(&q, &db) < 0 || *q != '\0' || db > 1000000)
			return cfg_fail(why, "the database after '/' must be a number");
	}
	if ((url = config_value_strndup(s, strlen(s))) == NULL)
		return -2;
	if (at != NULL &&
	    (password = config_value_strndup(s + 9 + tls, (size_t)(at - s - 9 - tls))) == NULL) {
		free(url);
		return -2;
	}
	free(out->url);
	free(out->password);
	out->url = url;
	out->password = password;
	memcpy(out->host, host, sizeof(host));
	snprintf(out->port, sizeof(out->port), "%s", port[0] != '\0' ? port : "6379");
	out->db = (int)db;
	out->url_tls = tls;
	return 0;
}

int
config_parse_hostport(const char *s, size_t n, char *host, size_t hostsz, int *port,
                      const char **why)
{
	char p[8];

	if (cfg_authority(s, n, host, hostsz, p, why) < 0)
		return -1;
	if (p[0] == '\0')
		return cfg_fail(why, "a port is required: host:port");
	*port = atoi(p);
	return 0;
}

int
config_parse_backend(const char *s, size_t n, struct config_backend *out, const char **why)
{
	static const struct {
		const char *prefix;
		enum backend_scheme scheme;
	} schemes[] = {
	    {"ws://", BACKEND_WS},
	    {"wss://", BACKEND_WSS},
	    {"tcp://", BACKEND_TCP},
	};
	const char *end = s + n, *p = NULL, *q;
	size_t i, plen = 0;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]) && p == NULL; i++) {
		plen = strlen(schemes[i].prefix);
		if (n >= plen && memcmp(s, schemes[i].prefix, plen) == 0) {
			p = s + plen;
			out->scheme = schemes[i].scheme;
		}
	}
	if (p == NULL)
		return cfg_fail(why,
		                "expected ws://host[:port][/path], wss://... or tcp://host:port");
	if (!cfg_printable(s, n) || memchr(s, '#', n) != NULL)
		return cfg_fail(why, "spaces, control characters and '#' are not allowed");
	for (q = p; q < end && *q != '/' && *q != '?'; q++)
		;
	if (memchr(p, '@', (size_t)(q - p)) != NULL)
		return cfg_fail(why, "user@ is not supported in a backend address");
	if (cfg_authority(p, (size_t)(q - p), out->host, sizeof(out->host), out->port, why) < 0)
		return -1;
	if (out->scheme == BACKEND_TCP) {
		if (out->port[0] == '\0')
			return cfg_fail(why, "a tcp:// backend needs a port");
		if (q != end)
			return cfg_fail(why, "a tcp:// backend has no path");
	} else {
		if (out->port[0] == '\0')
			snprintf(out->port, sizeof(out->port), "%s",
			         out->scheme == BACKEND_WSS ? "443" : "80");
		/* "ws://h?x=1" is "ws://h/?x=1", as in a browser */
		out->path = malloc((size_t)(end - q) + 2);
		if (out->path != NULL)
			snprintf(out->path, (size_t)(end - q) + 2, "%s%.*s",
			         q == end || *q == '?' ? "/" : "", (int)(end - q), q);
	}
	out->url = config_value_strndup(s, n);
	if (out->url == NULL || (out->scheme != BACKEND_TCP && out->path == NULL)) {
		config_backend_clear(out);
		return -2;
	}
	return 0;
}

void
config_backend_clear(struct config_backend *b)
{
	free(b->path);
	free(b->url);
	b->path = NULL;
	b->url = NULL;
}

int
config_parse_origin(const char *s, size_t n, const char **why)
{
	char host[256], port[8];
	const char *p;
	size_t skip;

	if (n == 1 && s[0] == '*')
		return 0;
	if (n >= 8 && memcmp(s, "https://", 8) == 0)
		skip = 8;
	else if (n >= 7 && memcmp(s, "http://", 7) == 0)
		skip = 7;
	else
		return cfg_fail(why, "an origin is https://host[:port], http://host[:port] or *");
	p = s + skip;
	if (memchr(p, '/', n - skip) != NULL)
		return cfg_fail(why, "an origin has no path: https://host[:port]");
	if (n - skip >= 2 && p[0] == '*' && p[1] == '.')
		skip += 2; /* "*.example.org": any subdomain */
	return cfg_authority(s + skip, n - skip, host, sizeof(host), port, why);
}

int
config_parse_token(const char *s, size_t n, const char **why)
{
	for (size_t i = 0; i < n; i++) {
		if (!cfg_is_tchar((unsigned char)s[i]))
			return cfg_fail(why, "expected a comma-separated list of tokens");
	}
	return n > 0 ? 0 : cfg_fail(why, "expected a comma-separated list of tokens");
}

int
config_parse_channel(const char *s, size_t n, const char **why)
{
	for (size_t i = 0; i < n; i++) {
		if (!cfg_is_channel((unsigned char)s[i]))
			return cfg_fail(why, "use only [A-Za-z0-9_.:-]");
	}
	return 0;
}

int
config_parse_template(const char *s, size_t n, const char **why)
{
	const char *p = s, *end = s + n, *close, *name;

	if (n == 0)
		return cfg_fail(why, "empty channel template");
	if (n > CFG_TEMPLATE_MAX)
		return cfg_fail(why, "a channel template is at most 128 characters");
	for (; p < end; p++) {
		if (*p == '}')
			return cfg_fail(why, "'}' without '{'");
		if (*p != '{') {
			if (!cfg_is_channel((unsigned char)*p))
				return cfg_fail(why, "channel names use only [A-Za-z0-9_.:-] and "
				                     "{placeholders}");
			continue;
		}
		if ((close = memchr(p, '}', (size_t)(end - p))) == NULL)
			return cfg_fail(why, "'{' without '}'");
		name = p + 1;
		if (close - name > 6 && memcmp(name, "query.", 6) == 0)
			name += 6;
		else if (close - name > 4 && memcmp(name, "jwt.", 4) == 0)
			name += 4;
		if (name == close)
			return cfg_fail(why, "empty placeholder");
		for (; name < close; name++) {
			if (!cfg_is_name((unsigned char)*name))
				return cfg_fail(why, "a placeholder is {name}, {query.name} or "
				                     "{jwt.name} with a name of [A-Za-z0-9_]");
		}
		p = close;
	}
	return 0;
}

int
config_value_readable(const char *path)
{
	struct stat st;
	int fd, err = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return errno;
	if (fstat(fd, &st) < 0)
		err = errno;
	else if (S_ISDIR(st.st_mode))
		err = EISDIR;
	close(fd);
	return err;
}

int
config_template_unbound(const char *tmpl, const char *path, int jwt, char *ph, size_t phsz)
{
	const char *p, *close;

	for (p = strchr(tmpl, '{'); p != NULL; p = strchr(close, '{')) {
		close = strchr(p, '}');
		snprintf(ph, phsz, "%.*s", (int)(close - p + 1), p);
		if (strncmp(p, "{jwt.", 5) == 0 && !jwt)
			return 2;
		if (strncmp(p, "{jwt.", 5) != 0 && strncmp(p, "{query.", 7) != 0 &&
		    strstr(path, ph) == NULL)
			return 1; /* a valid path's placeholders are whole segments: "{x}" is one */
	}
	return 0;
}
