/* config.c - loads wsgate.ini into an immutable struct config: a line-counting reader feeds
 * inih, config_keys.c's tables say what each key is, one validation pass reports every error. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* inet_pton */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_keys.h"
#include "route.h"
#include "utf8.h"

#define CFG_MAX_ERRORS 100            /* a garbage file should not yield a megabyte of errors */
#define CFG_MAX_FILE (1024 * 1024)    /* a config file larger than this is a mistake */

#define SEC_MS 1000ull
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)

struct cfg_err {
	int line;                     /* 0: applies to the whole file */
	char *msg;                    /* "FILE:LINE: message" */
};

enum cfg_cur {
	CUR_NONE = 0,                 /* before the first section header: keys are errors */
	CUR_IGNORE,                   /* inside a section already reported as bad: keys skipped */
	CUR_OK,                       /* inside a valid section: sec (and route_idx) apply */
};

/* State of one load. The reader and the handler share it: inih calls the handler while the
 * line the reader returned last is being parsed, so lineno is the handler's line too. */
struct cfg_ctx {
	const char *name;             /* file name used in messages */
	const char *p;                /* unread input */
	size_t left;
	int lineno;                   /* physical line last handed to inih */
	int route_headers;            /* [route ...] lines seen, valid or not */
	int sec_line[CFG_SEC_COUNT];  /* first header line of each section kind, 0 = absent */
	struct config *cfg;
	struct cfg_err *errs;
	size_t nerrs;
	size_t max_errors;            /* CFG_MAX_ERRORS, raised at the end for the summary notes */
	int too_many;
	int oom;
	enum cfg_cur cur;
	const struct config_section_def *sec;
	size_t route_idx;             /* CFG_BASE_ROUTE: index into cfg->routes */
	char label[256];              /* "[gateway]", "[route /echo]" for messages */
	int *cfg_seen;                /* per key row: line that set it in struct config, or 0 */
	int **route_seen;             /* the same per route, parallel to cfg->routes */
};

static const char *const route_type_names[] = { "echo", "pubsub", "proxy", NULL };

/* ASCII classes: <ctype.h> would depend on the locale and on a cast at every call. */
static int
cfg_is_space(int ch)
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

static int
cfg_lower(int ch)
{
	return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

static int
cfg_strcaseeq(const char *a, const char *b)
{
	while (*a && cfg_lower((unsigned char)*a) == cfg_lower((unsigned char)*b)) {
		a++;
		b++;
	}
	return *a == '\0' && *b == '\0';
}

static char *
cfg_strndup(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static char *
cfg_rstrip(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && cfg_is_space((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

static char *
cfg_lskip(char *s)
{
	while (*s != '\0' && cfg_is_space((unsigned char)*s))
		s++;
	return s;
}

/* Quotes user text for a message: control bytes become \xNN so a log line stays one line. */
static const char *
cfg_quote(char *buf, size_t bufsz, const char *s)
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

static void cfg_error(struct cfg_ctx *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records "FILE:LINE: message" (or "FILE: message" when line is 0). */
static void
cfg_error(struct cfg_ctx *c, int line, const char *fmt, ...)
{
	char head[64], *msg;
	size_t nhead;
	va_list ap;
	int n;
	struct cfg_err *e;

	if (c->nerrs >= c->max_errors) {
		c->too_many = 1;
		return;
	}
	if (line > 0)
		snprintf(head, sizeof(head), ":%d: ", line);
	else
		snprintf(head, sizeof(head), ": ");
	nhead = strlen(c->name) + strlen(head);
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (msg = malloc(nhead + (size_t)n + 1)) == NULL) {
		c->oom = 1;
		return;
	}
	snprintf(msg, nhead + 1, "%s%s", c->name, head);
	va_start(ap, fmt);
	vsnprintf(msg + nhead, (size_t)n + 1, fmt, ap);
	va_end(ap);
	e = realloc(c->errs, (c->nerrs + 1) * sizeof(*e));
	if (e == NULL) {
		free(msg);
		c->oom = 1;
		return;
	}
	c->errs = e;
	e[c->nerrs].line = line;
	e[c->nerrs].msg = msg;
	c->nerrs++;
}

/* ---- value parsers ---- */

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
	static const struct { const char *suffix; uint64_t ms; } units[] = {
		{ "", SEC_MS }, { "ms", 1 }, { "s", SEC_MS }, { "m", MIN_MS }, { "h", HOUR_MS },
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
	static const struct { const char *suffix; uint64_t mult; } units[] = {
		{ "", 1 },
		{ "k", 1ull << 10 }, { "K", 1ull << 10 }, { "KiB", 1ull << 10 },
		{ "M", 1ull << 20 }, { "MiB", 1ull << 20 },
		{ "G", 1ull << 30 }, { "GiB", 1ull << 30 },
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
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (cfg_strcaseeq(s, yes[i])) {
			*out = 1;
			return 0;
		}
		if (cfg_strcaseeq(s, no[i])) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* A host name for getaddrinfo: dot-separated labels of [A-Za-z0-9_-], no label starting or
 * ending with '-'; all digits and dots means a dotted quad, which must then be valid. */
static int
cfg_host_valid(const char *h)
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
	while (cfg_is_space((unsigned char)*p))
		p++;
	for (tok = p; *p != '\0' && !cfg_is_space((unsigned char)*p); p++)
		;
	toklen = (size_t)(p - tok);
	if (toklen == 0 || toklen >= sizeof(addr))
		return -1;
	memcpy(addr, tok, toklen);
	addr[toklen] = '\0';
	/* the only word allowed after the address is "tls" */
	while (cfg_is_space((unsigned char)*p))
		p++;
	if (*p != '\0') {
		if (strncmp(p, "tls", 3) != 0)
			return -1;
		for (p += 3; cfg_is_space((unsigned char)*p); p++)
			;
		if (*p != '\0')
			return -1;
		out->tls = 1;
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
		else if (!cfg_host_valid(host))
			return -1;
	}
	hostlen = strlen(host);
	if (hostlen >= sizeof(out->host))
		return -1;
	if (strlen(port) > 5 || cfg_digits(&port, &portnum) < 0 || *port != '\0' ||
	    portnum < 1 || portnum > 65535)
		return -1;
	memcpy(out->host, host, hostlen + 1);
	snprintf(out->port, sizeof(out->port), "%u", (unsigned)portnum);
	return 0;
}

const char *
config_route_type_name(enum route_type t)
{
	if ((size_t)t < sizeof(route_type_names) / sizeof(route_type_names[0]) - 1)
		return route_type_names[t];
	return "?";
}

static int
cfg_names_find(const char *const *names, const char *s)
{
	for (int i = 0; names[i] != NULL; i++) {
		if (strcmp(names[i], s) == 0)
			return i;
	}
	return -1;
}

/* RFC 7230 tchar: what a Sec-WebSocket-Protocol value may hold. */
static int
cfg_is_tchar(int ch)
{
	return cfg_is_alpha(ch) || cfg_is_digit(ch) ||
	    (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Appends the comma-separated tokens of s to *items. 0, -1 on a bad list, -2 out of memory. */
static int
cfg_parse_list(const char *s, char ***items, size_t *n)
{
	const char *p = s, *b, *e;
	char **v;

	while (cfg_is_space((unsigned char)*p))
		p++;
	if (*p == '\0')
		return 0;
	for (;;) {
		while (cfg_is_space((unsigned char)*p))
			p++;
		for (b = p; *p != '\0' && *p != ','; p++)
			;
		for (e = p; e > b && cfg_is_space((unsigned char)e[-1]); e--)
			;
		if (e == b)
			return -1;
		for (const char *q = b; q < e; q++) {
			if (!cfg_is_tchar((unsigned char)*q))
				return -1;
		}
		if ((v = realloc(*items, (*n + 1) * sizeof(*v))) == NULL)
			return -2;
		*items = v;
		if ((v[*n] = cfg_strndup(b, (size_t)(e - b))) == NULL)
			return -2;
		(*n)++;
		if (*p == '\0')
			return 0;
		p++; /* ',' */
	}
}

static void
cfg_fmt_duration(char *buf, size_t sz, uint64_t ms)
{
	if (ms != 0 && ms % HOUR_MS == 0)
		snprintf(buf, sz, "%lluh", (unsigned long long)(ms / HOUR_MS));
	else if (ms != 0 && ms % MIN_MS == 0)
		snprintf(buf, sz, "%llum", (unsigned long long)(ms / MIN_MS));
	else if (ms % SEC_MS == 0)
		snprintf(buf, sz, "%llus", (unsigned long long)(ms / SEC_MS));
	else
		snprintf(buf, sz, "%llums", (unsigned long long)ms);
}

static void
cfg_fmt_size(char *buf, size_t sz, uint64_t n)
{
	if (n != 0 && n % (1ull << 30) == 0)
		snprintf(buf, sz, "%lluGiB", (unsigned long long)(n >> 30));
	else if (n != 0 && n % (1ull << 20) == 0)
		snprintf(buf, sz, "%lluMiB", (unsigned long long)(n >> 20));
	else if (n != 0 && n % (1ull << 10) == 0)
		snprintf(buf, sz, "%lluKiB", (unsigned long long)(n >> 10));
	else
		snprintf(buf, sz, "%llu", (unsigned long long)n);
}

/* Bounds check of v against k->min/max; on failure writes "must be ..." into why. */
static int
cfg_check_range(const struct config_key *k, uint64_t v, const char *unit, char *why, size_t whysz)
{
	char lo[32], hi[32];

	if (v >= k->min && (k->max == 0 || v <= k->max))
		return 0;
	if (k->type == CFG_T_DURATION) {
		cfg_fmt_duration(lo, sizeof(lo), k->min);
		cfg_fmt_duration(hi, sizeof(hi), k->max);
	} else if (k->type == CFG_T_SIZE) {
		cfg_fmt_size(lo, sizeof(lo), k->min);
		cfg_fmt_size(hi, sizeof(hi), k->max);
	} else {
		snprintf(lo, sizeof(lo), "%llu", (unsigned long long)k->min);
		snprintf(hi, sizeof(hi), "%llu", (unsigned long long)k->max);
	}
	if (k->max == 0)
		snprintf(why, whysz, "must be at least %s%s", lo, unit);
	else if (k->min == 0)
		snprintf(why, whysz, "must be at most %s%s", hi, unit);
	else
		snprintf(why, whysz, "must be between %s and %s%s", lo, hi, unit);
	return -1;
}

/* Stores value v of key k into the struct at base. 0 on success; -1 with why set on a bad
 * value; -2 when out of memory. */
static int
cfg_store(const struct config_key *k, void *base, const char *v, int line, char *why,
    size_t whysz)
{
	char *field = (char *)base + k->off;
	size_t *count = (size_t *)((char *)base + k->off_n);
	uint64_t u;
	int i;

	switch (k->type) {
	case CFG_T_STRING: {
		size_t len = strlen(v);

		if (!utf8_valid((const uint8_t *)v, len)) {
			snprintf(why, whysz, "must be valid UTF-8");
			return -1;
		}
		if (cfg_check_range(k, len, " bytes", why, whysz) < 0)
			return -1;
		free(*(char **)field);
		*(char **)field = NULL;
		if (len > 0 && (*(char **)field = cfg_strndup(v, len)) == NULL)
			return -2;
		return 0;
	}
	case CFG_T_DURATION:
	case CFG_T_SIZE:
		if ((k->type == CFG_T_DURATION ? config_parse_duration_ms(v, &u)
		                               : config_parse_size(v, &u)) < 0) {
			snprintf(why, whysz, k->type == CFG_T_DURATION
			    ? "expected a duration such as 200ms, 10s, 1m"
			    : "expected a size such as 65536, 64KiB, 1MiB");
			return -1;
		}
		if (cfg_check_range(k, u, "", why, whysz) < 0)
			return -1;
		*(uint64_t *)field = u;
		return 0;
	case CFG_T_BOOL:
		if (config_parse_bool(v, &i) < 0) {
			snprintf(why, whysz, "expected yes or no");
			return -1;
		}
		*(int *)field = i;
		return 0;
	case CFG_T_ENUM:
		if ((i = cfg_names_find(k->names, v)) < 0) {
			size_t o = (size_t)snprintf(why, whysz, "expected one of:");
			for (int j = 0; k->names[j] != NULL && o < whysz; j++)
				o += (size_t)snprintf(why + o, whysz - o, " %s", k->names[j]);
			return -1;
		}
		*(int *)field = i;
		return 0;
	case CFG_T_LIST: {
		size_t before = *count;

		i = cfg_parse_list(v, (char ***)field, count);
		if (i == 0 && cfg_check_range(k, *count, " items", why, whysz) == 0)
			return 0;
		/* undo this line's items so a bad line leaves nothing half-parsed */
		while (*count > before)
			free((*(char ***)field)[--*count]);
		if (i == -2)
			return -2;
		if (i == -1)
			snprintf(why, whysz, "expected a comma-separated list of tokens");
		return -1;
	}
	case CFG_T_LISTEN: {
		struct config_listen l, *arr;

		if (config_parse_listen(v, &l) < 0) {
			snprintf(why, whysz,
			    "expected host:port, [v6]:port or :port, optionally followed by tls");
			return -1;
		}
		l.line = line;
		arr = realloc(*(struct config_listen **)field, (*count + 1) * sizeof(*arr));
		if (arr == NULL)
			return -2;
		arr[(*count)++] = l;
		*(struct config_listen **)field = arr;
		return 0;
	}
	case CFG_T_LOGLEVEL: {
		enum log_level lvl;

		if (log_level_parse(v, &lvl) < 0) {
			snprintf(why, whysz, "expected error, warn, info or debug");
			return -1;
		}
		*(enum log_level *)field = lvl;
		return 0;
	}
	case CFG_T_ROUTE_TYPE:
		if ((i = cfg_names_find(route_type_names, v)) < 0) {
			snprintf(why, whysz, "expected echo, pubsub or proxy");
			return -1;
		}
		*(enum route_type *)field = (enum route_type)i;
		return 0;
	}
	snprintf(why, whysz, "internal error: unknown type");
	return -1;
}

/* Frees what the key table says the struct at base owns. */
static void
cfg_free_fields(enum config_base b, void *base)
{
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		char *field = (char *)base + k->off;

		if (config_sections[k->section].base != b)
			continue;
		switch (k->type) {
		case CFG_T_STRING:
		case CFG_T_LISTEN:
			free(*(void **)field);
			break;
		case CFG_T_LIST: {
			char **v = *(char ***)field;
			size_t n = *(size_t *)((char *)base + k->off_n);

			for (size_t j = 0; j < n; j++)
				free(v[j]);
			free(v);
			break;
		}
		default:
			break;
		}
	}
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	cfg_free_fields(CFG_BASE_CONFIG, cfg);
	for (size_t i = 0; i < cfg->nroutes; i++) {
		cfg_free_fields(CFG_BASE_ROUTE, &cfg->routes[i]);
		free(cfg->routes[i].path);
	}
	free(cfg->routes);
	free(cfg->file);
	free(cfg);
}

void
config_errors_free(struct config_errors *errs)
{
	if (errs == NULL)
		return;
	for (size_t i = 0; i < errs->n; i++)
		free(errs->msgs[i]);
	free(errs->msgs);
	errs->msgs = NULL;
	errs->n = 0;
}

/* ---- the section instance being filled ---- */

static void *
cfg_cur_base(struct cfg_ctx *c)
{
	if (c->sec->base == CFG_BASE_ROUTE)
		return &c->cfg->routes[c->route_idx];
	return c->cfg;
}

static int *
cfg_cur_seen(struct cfg_ctx *c)
{
	return c->sec->base == CFG_BASE_ROUTE ? c->route_seen[c->route_idx] : c->cfg_seen;
}

/* "[route PATH]": a new route, unless PATH is already defined. */
static void
cfg_route_open(struct cfg_ctx *c, const char *path, int line)
{
	struct config *cfg = c->cfg;
	struct config_route *r;
	const char *why = "";
	char q[1024];
	int **seen;

	for (size_t i = 0; i < cfg->nroutes; i++) {
		if (strcmp(cfg->routes[i].path, path) == 0) {
			cfg_error(c, line, "duplicate route %s (first defined at line %d)",
			    cfg_quote(q, sizeof(q), path), cfg->routes[i].line);
			return; /* c->cur stays CUR_IGNORE */
		}
	}
	if (!route_pattern_valid(path, &why))
		cfg_error(c, line, "bad route path '%s': %s", cfg_quote(q, sizeof(q), path), why);
	/* a bad path still gets an instance, so its keys are checked too */
	if ((r = realloc(cfg->routes, (cfg->nroutes + 1) * sizeof(*r))) == NULL) {
		c->oom = 1;
		return;
	}
	cfg->routes = r;
	if ((seen = realloc(c->route_seen, (cfg->nroutes + 1) * sizeof(*seen))) == NULL) {
		c->oom = 1;
		return;
	}
	c->route_seen = seen;
	r = &cfg->routes[cfg->nroutes];
	memset(r, 0, sizeof(*r));
	r->line = line;
	r->path = cfg_strndup(path, strlen(path));
	seen[cfg->nroutes] = calloc(config_nkeys, sizeof(int));
	if (r->path == NULL || seen[cfg->nroutes] == NULL) {
		free(r->path);
		free(seen[cfg->nroutes]);
		c->oom = 1;
		return;
	}
	c->route_idx = cfg->nroutes++;
	c->cur = CUR_OK;
}

/* A "[...]" line (s starts with '['). Mirrors inih: the header ends at the first ']', and a
 * ';' after whitespace starts a comment before it. */
static void
cfg_section_line(struct cfg_ctx *c, char *s)
{
	const struct config_section_def *sec;
	char *end, *name, *arg, *rest, q[1024], q2[1024];
	int was_space = 0, known;

	c->cur = CUR_IGNORE;
	for (end = s + 1; *end != '\0' && *end != ']' && !(was_space && *end == ';'); end++)
		was_space = cfg_is_space((unsigned char)*end);
	if (*end != ']') {
		cfg_error(c, c->lineno, "syntax error (missing ']')");
		return;
	}
	*end = '\0';
	rest = cfg_lskip(end + 1);
	if (*rest != '\0' && *rest != ';' && *rest != '#') {
		cfg_error(c, c->lineno, "syntax error (text after ']')");
		return;
	}
	name = cfg_rstrip(cfg_lskip(s + 1));
	for (arg = name; *arg != '\0' && !cfg_is_space((unsigned char)*arg); arg++)
		;
	if (*arg != '\0') {
		*arg = '\0';
		arg = cfg_lskip(arg + 1);
	}
	sec = config_section_find(name, *arg != '\0', &known);
	if (sec == NULL && !known) {
		cfg_error(c, c->lineno, "unknown section [%s%s%s]", cfg_quote(q, sizeof(q), name),
		    *arg != '\0' ? " " : "", *arg != '\0' ? cfg_quote(q2, sizeof(q2), arg) : "");
		return;
	}
	if (sec == NULL)
		sec = config_section_find(name, *arg == '\0', &known);
	if (sec->base == CFG_BASE_ROUTE)
		c->route_headers++;
	if (sec->arg == CFG_ARG_REQUIRED && *arg == '\0') {
		cfg_error(c, c->lineno, "section [%s] needs an argument, as in [%s %s]", name, name,
		    sec->arg_example);
		return;
	}
	if (sec->arg == CFG_ARG_NONE && *arg != '\0') {
		cfg_error(c, c->lineno, "section [%s] takes no argument (got '%s')", name,
		    cfg_quote(q, sizeof(q), arg));
		return;
	}
	c->sec = sec;
	if (c->sec_line[sec->kind] == 0)
		c->sec_line[sec->kind] = c->lineno;
	if (sec->arg == CFG_ARG_REQUIRED)
		snprintf(c->label, sizeof(c->label), "[%s %s]", sec->name,
		    cfg_quote(q, sizeof(q), arg));
	else
		snprintf(c->label, sizeof(c->label), "[%s]", sec->name);
	switch (sec->base) {
	case CFG_BASE_CONFIG:
		c->cur = CUR_OK; /* repeated singleton sections merge */
		break;
	case CFG_BASE_ROUTE:
		cfg_route_open(c, arg, c->lineno);
		break;
	}
}

/* Looks at one physical line (leading whitespace gone) before inih does. Section headers,
 * comments and broken lines are handled here and blanked; "key = value" goes on to inih. */
static void
cfg_classify(struct cfg_ctx *c, char *s)
{
	int was_space = 0;
	char *p;

	cfg_rstrip(s);
	if (*s == '\0' || *s == ';' || *s == '#') {
		*s = '\0';
		return;
	}
	if (*s == '[') {
		cfg_section_line(c, s);
		*s = '\0';
		return;
	}
	/* what inih will do: the name ends at the first '=' or ':' unless a comment comes first */
	for (p = s; *p != '\0' && *p != '=' && *p != ':' && !(was_space && *p == ';'); p++)
		was_space = cfg_is_space((unsigned char)*p);
	if (*p != '=' && *p != ':')
		cfg_error(c, c->lineno, "syntax error (expected key = value)");
	else if (p == s)
		cfg_error(c, c->lineno, "syntax error (missing key name)");
	else
		return;
	*s = '\0';
}

/* The ini_reader: hands inih one physical line at a time, so c->lineno is the line inih is
 * parsing. Leading whitespace is removed (inih would treat an indented line as a continuation
 * of the previous value). Anything this function rejects reaches inih as an empty line. */
static char *
cfg_reader(char *buf, int num, void *stream)
{
	struct cfg_ctx *c = stream;
	const char *line, *nl;
	size_t len, max;

	if (c->left == 0 || num < 2)
		return NULL;
	max = (size_t)num - 1;
	line = c->p;
	nl = memchr(line, '\n', c->left);
	len = nl != NULL ? (size_t)(nl - line) : c->left;
	c->p += len + (nl != NULL);
	c->left -= len + (nl != NULL);
	c->lineno++;
	buf[0] = '\0';
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (c->lineno == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
		line += 3;
		len -= 3;
	}
	if (len > max || memchr(line, '\0', len) != NULL) {
		const char *q = line;

		if (len > max)
			cfg_error(c, c->lineno, "line too long (max %zu characters)", max);
		else
			cfg_error(c, c->lineno, "NUL byte in line");
		while (q < line + len && cfg_is_space((unsigned char)*q))
			q++;
		/* a lost header: its keys must not land in the section before it */
		if (q < line + len && *q == '[')
			c->cur = CUR_IGNORE;
		return buf;
	}
	while (len > 0 && cfg_is_space((unsigned char)*line)) {
		line++;
		len--;
	}
	memcpy(buf, line, len);
	buf[len] = '\0';
	cfg_classify(c, buf);
	return buf;
}

static int
cfg_handler(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_ctx *c = user;
	const struct config_key *k;
	char why[256], q[1024];
	int *seen, r;
	size_t idx;

	(void)section; /* always "": headers never reach inih, see cfg_classify */
	if (c->cur == CUR_NONE) {
		cfg_error(c, c->lineno, "key '%s' outside of any section",
		    cfg_quote(q, sizeof(q), name));
		return 1;
	}
	if (c->cur == CUR_IGNORE)
		return 1;
	if ((k = config_key_find(c->sec->kind, name)) == NULL) {
		cfg_error(c, c->lineno, "unknown key '%s' in %s", cfg_quote(q, sizeof(q), name),
		    c->label);
		return 1;
	}
	idx = (size_t)(k - config_keys);
	seen = cfg_cur_seen(c);
	if (seen[idx] != 0 && !(k->flags & CFG_F_REPEATABLE)) {
		cfg_error(c, c->lineno, "duplicate key '%s' (first set at line %d)",
		    cfg_quote(q, sizeof(q), name), seen[idx]);
		return 1;
	}
	if (seen[idx] == 0)
		seen[idx] = c->lineno;
	r = cfg_store(k, cfg_cur_base(c), value, c->lineno, why, sizeof(why));
	if (r == -1)
		cfg_error(c, c->lineno, "bad value for %s: '%s' (%s)", k->name,
		    cfg_quote(q, sizeof(q), value), why);
	else if (r == -2)
		c->oom = 1;
	return 1; /* errors are ours to collect: inih's first-error line number is not used */
}

/* ---- after the last line: defaults, required keys, cross-key rules ---- */

/* Applies defaults to the keys of base b that no line set; reports required ones. For a
 * route, what is "route /x" and line its header; for struct config, what is NULL and a
 * required key is required only when its section appears. */
static void
cfg_finish_instance(struct cfg_ctx *c, enum config_base b, void *base, const int *seen,
    const char *what, int line)
{
	char why[256], sec[64];

	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		int r;

		if (config_sections[k->section].base != b || seen[i] != 0)
			continue;
		if (k->def != NULL) {
			r = cfg_store(k, base, k->def, 0, why, sizeof(why));
			if (r == -1)
				cfg_error(c, 0, "internal error: bad default for %s: %s", k->name,
				    why);
			else if (r == -2)
				c->oom = 1;
		} else if ((k->flags & CFG_F_REQUIRED) && what != NULL) {
			cfg_error(c, line, "%s has no %s", what, k->name);
		} else if ((k->flags & CFG_F_REQUIRED) && c->sec_line[k->section] > 0) {
			snprintf(sec, sizeof(sec), "[%s]", config_sections[k->section].name);
			cfg_error(c, c->sec_line[k->section], "%s has no %s", sec, k->name);
		}
	}
}

static int
cfg_seen_line(const int *seen, enum config_section_kind sec, const char *name)
{
	const struct config_key *k = config_key_find(sec, name);

	return k != NULL ? seen[k - config_keys] : 0;
}

static void
cfg_validate(struct cfg_ctx *c)
{
	struct config *cfg = c->cfg;
	char what[1024], q[1024];
	int line;

	cfg_finish_instance(c, CFG_BASE_CONFIG, cfg, c->cfg_seen, NULL, 0);
	for (size_t i = 0; i < cfg->nroutes; i++) {
		struct config_route *r = &cfg->routes[i];

		snprintf(what, sizeof(what), "route %s", cfg_quote(q, sizeof(q), r->path));
		cfg_finish_instance(c, CFG_BASE_ROUTE, r, c->route_seen[i], what, r->line);
		/* until target_pubsub and upstream exist, only echo can be served */
		line = cfg_seen_line(c->route_seen[i], CFG_SEC_ROUTE, "type");
		if (r->type != ROUTE_ECHO && line > 0)
			cfg_error(c, line, "route type %s is not supported yet",
			    config_route_type_name(r->type));
	}
	if (c->route_headers == 0)
		cfg_error(c, 0, "no [route] section: nothing to serve");
	if (cfg->ping_interval_ms > 0 && cfg->pong_timeout_ms == 0)
		cfg_error(c, cfg_seen_line(c->cfg_seen, CFG_SEC_HEARTBEAT, "pong_timeout"),
		    "pong_timeout must be > 0 when ping_interval is set");
	for (size_t i = 0; i < cfg->nlistens; i++) {
		const struct config_listen *a = &cfg->listens[i];

		for (size_t j = 0; j < i; j++) {
			const struct config_listen *b = &cfg->listens[j];

			if (cfg_strcaseeq(a->host, b->host) && strcmp(a->port, b->port) == 0) {
				int v6 = strchr(a->host, ':') != NULL;

				cfg_error(c, a->line,
				    "duplicate listen address %s%s%s:%s (first at line %d)",
				    v6 ? "[" : "", a->host, v6 ? "]" : "", a->port, b->line);
				break;
			}
		}
	}
	cfg->app_message_len = cfg->app_message != NULL ? strlen(cfg->app_message) : 0;
	if (cfg->app_message_len > cfg->max_message_size)
		cfg_error(c, cfg_seen_line(c->cfg_seen, CFG_SEC_HEARTBEAT, "app_message"),
		    "app_message is %zu bytes, more than max_message_size (%llu)",
		    cfg->app_message_len, (unsigned long long)cfg->max_message_size);
}

/* ---- load ---- */

static int
cfg_ctx_init(struct cfg_ctx *c, const char *name)
{
	memset(c, 0, sizeof(*c));
	c->name = name != NULL ? name : "(config)";
	c->max_errors = CFG_MAX_ERRORS;
	c->cfg = calloc(1, sizeof(*c->cfg));
	c->cfg_seen = calloc(config_nkeys, sizeof(int));
	if (c->cfg != NULL)
		c->cfg->file = cfg_strndup(c->name, strlen(c->name));
	if (c->cfg == NULL || c->cfg_seen == NULL || c->cfg->file == NULL) {
		config_free(c->cfg);
		free(c->cfg_seen);
		return -1;
	}
	return 0;
}

static void
cfg_parse(struct cfg_ctx *c, const char *text, size_t len)
{
	int r;

	c->p = text;
	c->left = len;
	r = ini_parse_stream(cfg_reader, c, cfg_handler, c);
	if (r > 0) {
		/* a backstop: the reader blanks every line it finds broken. inih counts the same
		 * lines as the reader, so its number is ours. */
		int dup = 0;

		for (size_t i = 0; i < c->nerrs; i++)
			dup |= c->errs[i].line == r;
		if (!dup)
			cfg_error(c, r, "syntax error");
	} else if (r == -2) {
		c->oom = 1;
	}
	if (c->oom == 0)
		cfg_validate(c);
}

/* Hands the snapshot or the sorted errors to the caller and frees the rest of c. */
static int
cfg_finish(struct cfg_ctx *c, struct config **out, struct config_errors *errs)
{
	int rc;

	c->max_errors += 2; /* room for these last two notes */
	if (c->too_many)
		cfg_error(c, 0, "too many errors, stopped after %d", CFG_MAX_ERRORS);
	if (c->oom)
		cfg_error(c, 0, "out of memory");
	/* by line (whole-file messages last), keeping report order within a line */
	for (size_t i = 1; i < c->nerrs; i++) {
		struct cfg_err t = c->errs[i];
		unsigned tl = t.line > 0 ? (unsigned)t.line : ~0u;
		size_t j = i;

		for (; j > 0; j--) {
			unsigned pl = c->errs[j - 1].line > 0 ? (unsigned)c->errs[j - 1].line : ~0u;

			if (pl <= tl)
				break;
			c->errs[j] = c->errs[j - 1];
		}
		c->errs[j] = t;
	}
	rc = c->nerrs > 0 || c->oom ? -1 : 0;
	if (errs != NULL) {
		errs->msgs = NULL;
		errs->n = 0;
		if (c->nerrs > 0 && (errs->msgs = malloc(c->nerrs * sizeof(char *))) != NULL) {
			for (size_t i = 0; i < c->nerrs; i++)
				errs->msgs[i] = c->errs[i].msg;
			errs->n = c->nerrs;
			c->nerrs = 0;
		}
	}
	for (size_t i = 0; i < c->nerrs; i++)
		free(c->errs[i].msg);
	free(c->errs);
	if (c->cfg != NULL) {
		for (size_t i = 0; i < c->cfg->nroutes; i++)
			free(c->route_seen[i]);
	}
	free(c->route_seen);
	free(c->cfg_seen);
	if (rc == 0) {
		*out = c->cfg;
	} else {
		*out = NULL;
		config_free(c->cfg);
	}
	return rc;
}

static int
cfg_oom(struct config **out, struct config_errors *errs)
{
	*out = NULL;
	if (errs != NULL) {
		errs->msgs = NULL;
		errs->n = 0;
	}
	return -1;
}

int
config_load_string(const char *name, const char *text, struct config **out,
    struct config_errors *errs)
{
	struct cfg_ctx c;

	if (cfg_ctx_init(&c, name) < 0)
		return cfg_oom(out, errs);
	cfg_parse(&c, text, strlen(text));
	return cfg_finish(&c, out, errs);
}

int
config_load_file(const char *path, struct config **out, struct config_errors *errs)
{
	struct cfg_ctx c;
	FILE *f;
	char *text = NULL;
	size_t len = 0, cap = 0, n;

	if (cfg_ctx_init(&c, path) < 0)
		return cfg_oom(out, errs);
	if ((f = fopen(path, "rb")) == NULL) {
		cfg_error(&c, 0, "cannot open: %s", strerror(errno));
		return cfg_finish(&c, out, errs);
	}
	/* the whole file in memory: the reader then sees embedded NULs and exact line ends */
	for (;;) {
		char *t;

		if (len == cap) {
			cap = cap == 0 ? 16384 : cap * 2;
			if (cap > CFG_MAX_FILE + 1)
				cap = CFG_MAX_FILE + 1;
			if ((t = realloc(text, cap)) == NULL) {
				c.oom = 1;
				break;
			}
			text = t;
		}
		if ((n = fread(text + len, 1, cap - len, f)) == 0 || (len += n) > CFG_MAX_FILE)
			break;
	}
	if (ferror(f))
		cfg_error(&c, 0, "read error: %s", strerror(errno));
	else if (len > CFG_MAX_FILE)
		cfg_error(&c, 0, "file too large (max %d bytes)", CFG_MAX_FILE);
	else if (!c.oom)
		cfg_parse(&c, text, len);
	fclose(f);
	free(text);
	return cfg_finish(&c, out, errs);
}
