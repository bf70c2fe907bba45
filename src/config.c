/* config.c - loads wsgate.ini into an immutable struct config: a line-counting reader feeds
 * inih, config_keys.c's tables say what each key is, one validation pass reports every error. */
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_ctx.h"
#include "config_keys.h"
#include "config_value.h"
#include "route_map.h"
#include "route_syntax.h"

extern char **environ;

/* Records "FILE:LINE: message", "FILE: message" (line 0) or "env NAME: message" (line < 0). */
void
cfg_error(struct cfg_ctx *c, int line, const char *fmt, ...)
{
	const char *env = line < 0 ? "env " : "";
	const char *who = line < 0 ? c->env[-line - 1].name : c->name;
	char num[16] = "", *msg;
	size_t nhead;
	va_list ap;
	int n;
	struct cfg_err *e;

	if (c->nerrs >= c->max_errors) {
		c->too_many = 1;
		return;
	}
	if (line > 0)
		snprintf(num, sizeof(num), ":%d", line);
	nhead = strlen(env) + strlen(who) + strlen(num) + 2;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (msg = malloc(nhead + (size_t)n + 1)) == NULL) {
		c->oom = 1;
		return;
	}
	snprintf(msg, nhead + 1, "%s%s%s: ", env, who, num);
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

/* Stores v into key k of the struct at base and reports a bad value at line. */
static void
cfg_store(struct cfg_ctx *c, const struct config_key *k, void *base, const char *v, int line)
{
	char why[256], q[1024];
	int r = config_key_store(k, base, v, line, why, sizeof(why));

	if (r == -1 && (k->flags & CFG_F_SECRET))
		cfg_error(c, line, "bad value for %s (%s)", k->name, why);
	else if (r == -1)
		cfg_error(c, line, "bad value for %s: '%s' (%s)", k->name,
		          config_value_quote(q, sizeof(q), v), why);
	else if (r == -2)
		c->oom = 1;
}

const struct config *
config_hold(const struct config *cfg)
{
	/* The snapshot is immutable to everyone; only this count moves, from any thread. */
	__atomic_add_fetch(&((struct config *)(uintptr_t)cfg)->refs, 1, __ATOMIC_RELAXED);
	return cfg;
}

void
config_release(const struct config *cfg)
{
	struct config *c = (struct config *)(uintptr_t)cfg;

	if (c != NULL && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(c);
}

void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	config_keys_free_fields(CFG_BASE_CONFIG, cfg);
	for (size_t i = 0; i < cfg->nroutes; i++) {
		config_keys_free_fields(CFG_BASE_ROUTE, &cfg->routes[i]);
		free(cfg->routes[i].path);
	}
	for (size_t i = 0; i < cfg->ntls_certs; i++) {
		config_keys_free_fields(CFG_BASE_TLS, &cfg->tls_certs[i]);
		free(cfg->tls_certs[i].name);
	}
	free(cfg->routes);
	free(cfg->tls_certs);
	free(cfg->file);
	free(cfg);
}

/* ---- section instances ---- */

/* The seen array of the instance a key of base b lands in: struct config's, or instance i's. */
static int *
cfg_seen(struct cfg_ctx *c, enum config_base b, size_t i)
{
	return b == CFG_BASE_CONFIG ? c->cfg_seen : c->seen[b][i];
}

/* A zeroed instance of base b (route or tls cert) at index at, with its seen row; -1 when
 * out of memory. */
static int
cfg_inst_new(struct cfg_ctx *c, enum config_base b, size_t at, int line)
{
	size_t n = b == CFG_BASE_ROUTE ? c->cfg->nroutes : c->cfg->ntls_certs;
	int *row = calloc(config_nkeys, sizeof(int)), **seen = NULL;
	void *inst = NULL;

	if (row != NULL && (seen = realloc(c->seen[b], (n + 1) * sizeof(*seen))) != NULL)
		c->seen[b] = seen;
	if (seen == NULL || (inst = config_keys_instance_insert(c->cfg, b, at)) == NULL) {
		free(row);
		c->oom = 1;
		return -1;
	}
	memmove(seen + at + 1, seen + at, (n - at) * sizeof(*seen));
	seen[at] = row;
	if (b == CFG_BASE_ROUTE) {
		((struct config_route *)inst)->line = line;
		((struct config_route *)inst)->type =
		    (enum route_type) - 1; /* until a valid line */
	} else {
		((struct config_tls_cert *)inst)->line = line;
	}
	return 0;
}

/* "[route PATH]": a new route, unless PATH is already defined. */
static void
cfg_route_open(struct cfg_ctx *c, const char *path, int line)
{
	struct config *cfg = c->cfg;
	const char *why = "";
	char q[1024];

	for (size_t i = 0; i < cfg->nroutes; i++) {
		if (cfg->routes[i].path != NULL && strcmp(cfg->routes[i].path, path) == 0) {
			cfg_error(c, line, "duplicate route %s (first defined at line %d)",
			          config_value_quote(q, sizeof(q), path), cfg->routes[i].line);
			return; /* c->cur stays CUR_IGNORE */
		}
	}
	if (!route_pattern_valid(path, &why))
		cfg_error(c, line, "bad route path '%s': %s",
		          config_value_quote(q, sizeof(q), path), why);
	/* a bad path still gets an instance, so its keys are checked too */
	if (cfg_inst_new(c, CFG_BASE_ROUTE, cfg->nroutes, line) < 0)
		return;
	c->idx = cfg->nroutes - 1;
	if ((cfg->routes[c->idx].path = config_value_strndup(path, strlen(path))) == NULL) {
		c->oom = 1;
		return;
	}
	c->cur = CUR_OK;
}

/* The index of the default [tls] certificate, created (first) when absent; -1 out of memory. */
static int
cfg_tls_default(struct cfg_ctx *c, int line)
{
	if (c->cfg->ntls_certs > 0 && c->cfg->tls_certs[0].name == NULL)
		return 0;
	return cfg_inst_new(c, CFG_BASE_TLS, 0, line);
}

/* "[tls]" (name NULL; repeated ones merge) or "[tls NAME]": one certificate instance. */
static void
cfg_tls_open(struct cfg_ctx *c, const char *name, int line)
{
	struct config *cfg = c->cfg;
	const char *h = name != NULL && strncmp(name, "*.", 2) == 0 ? name + 2 : name;
	char q[1024];

	if (name == NULL) {
		if (cfg_tls_default(c, line) == 0) {
			c->idx = 0;
			c->cur = CUR_OK;
		}
		return;
	}
	for (size_t i = 0; i < cfg->ntls_certs; i++) {
		if (cfg->tls_certs[i].name != NULL &&
		    config_value_strcaseeq(cfg->tls_certs[i].name, name)) {
			cfg_error(c, line, "duplicate section [tls %s] (first at line %d)",
			          config_value_quote(q, sizeof(q), name), cfg->tls_certs[i].line);
			return;
		}
	}
	/* an SNI name is a DNS name, never an address */
	if (!config_value_host_valid(h) || strspn(h, "0123456789.") == strlen(h))
		cfg_error(c, line, "bad tls name '%s': expected a host name or *.domain",
		          config_value_quote(q, sizeof(q), name));
	if (cfg_inst_new(c, CFG_BASE_TLS, cfg->ntls_certs, line) < 0)
		return;
	c->idx = cfg->ntls_certs - 1;
	if ((cfg->tls_certs[c->idx].name = config_value_strndup(name, strlen(name))) == NULL) {
		c->oom = 1;
		return;
	}
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
		was_space = config_value_is_space((unsigned char)*end);
	if (*end != ']') {
		cfg_error(c, c->lineno, "syntax error (missing ']')");
		return;
	}
	*end = '\0';
	rest = config_value_lskip(end + 1);
	if (*rest != '\0' && *rest != ';' && *rest != '#') {
		cfg_error(c, c->lineno, "syntax error (text after ']')");
		return;
	}
	name = config_value_rstrip(config_value_lskip(s + 1));
	for (arg = name; *arg != '\0' && !config_value_is_space((unsigned char)*arg); arg++)
		;
	if (*arg != '\0') {
		*arg = '\0';
		arg = config_value_lskip(arg + 1);
	}
	sec = config_section_find(name, *arg != '\0', &known);
	if (sec == NULL && !known) {
		cfg_error(c, c->lineno, "unknown section [%s%s%s]",
		          config_value_quote(q, sizeof(q), name), *arg != '\0' ? " " : "",
		          *arg != '\0' ? config_value_quote(q2, sizeof(q2), arg) : "");
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
		          config_value_quote(q, sizeof(q), arg));
		return;
	}
	c->sec = sec;
	if (c->sec_line[sec->kind] == 0)
		c->sec_line[sec->kind] = c->lineno;
	if (sec->arg == CFG_ARG_REQUIRED)
		snprintf(c->label, sizeof(c->label), "[%s %s]", sec->name,
		         config_value_quote(q, sizeof(q), arg));
	else
		snprintf(c->label, sizeof(c->label), "[%s]", sec->name);
	switch (sec->base) {
	case CFG_BASE_CONFIG:
		c->cur = CUR_OK; /* repeated singleton sections merge */
		break;
	case CFG_BASE_ROUTE:
		cfg_route_open(c, arg, c->lineno);
		break;
	case CFG_BASE_TLS:
		cfg_tls_open(c, sec->arg == CFG_ARG_NONE ? NULL : arg, c->lineno);
		break;
	case CFG_BASE_COUNT:
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

	config_value_rstrip(s);
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
		was_space = config_value_is_space((unsigned char)*p);
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
		while (q < line + len && config_value_is_space((unsigned char)*q))
			q++;
		/* a lost header: its keys must not land in the section before it */
		if (q < line + len && *q == '[')
			c->cur = CUR_IGNORE;
		return buf;
	}
	while (len > 0 && config_value_is_space((unsigned char)*line)) {
		line++;
		len--;
	}
	memcpy(buf, line, len);
	buf[len] = '\0';
	cfg_classify(c, buf);
	return buf;
}

/* The environment variable that overrides key k, or -1. */
int
cfg_env_find(const struct cfg_ctx *c, const struct config_key *k)
{
	for (size_t i = 0; i < c->nenv; i++) {
		if (c->env[i].key == k)
			return (int)i;
	}
	return -1;
}

static int
cfg_handler(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_ctx *c = user;
	const struct config_section_def *other;
	const struct config_key *k;
	char q[1024];
	int *seen;
	size_t idx;

	(void)section; /* always "": headers never reach inih, see cfg_classify */
	if (c->cur == CUR_NONE) {
		cfg_error(c, c->lineno, "key '%s' outside of any section",
		          config_value_quote(q, sizeof(q), name));
		return 1;
	}
	if (c->cur == CUR_IGNORE)
		return 1;
	if ((k = config_key_find(c->sec->kind, name)) == NULL) {
		if ((other = config_section_sibling(c->sec, name)) != NULL)
			cfg_error(c, c->lineno, "key '%s' is valid only in [%s], not in %s", name,
			          other->name, c->label);
		else
			cfg_error(c, c->lineno, "unknown key '%s' in %s",
			          config_value_quote(q, sizeof(q), name), c->label);
		return 1;
	}
	idx = (size_t)(k - config_keys);
	seen = cfg_seen(c, k->base, c->idx);
	if (seen[idx] != 0 && !(k->flags & CFG_F_REPEATABLE)) {
		cfg_error(c, c->lineno, "duplicate key '%s' (first set at line %d)",
		          config_value_quote(q, sizeof(q), name), seen[idx]);
		return 1;
	}
	if (seen[idx] == 0)
		seen[idx] = c->lineno;
	/* a singleton key set in the environment: the variable replaces this line */
	if (c->sec->arg == CFG_ARG_NONE && cfg_env_find(c, k) >= 0)
		return 1;
	cfg_store(c, k, config_keys_instance(c->cfg, k->base, c->idx), value, c->lineno);
	return 1; /* errors are ours to collect: inih's first-error line number is not used */
}

/* ---- the environment: WSGATE_<SECTION>_<KEY> of singleton sections ---- */

static void
cfg_env_collect(struct cfg_ctx *c, char *const *envp)
{
	const struct config_section_def *sec;
	const struct config_key *k;
	struct cfg_env *e;
	const char *eq;

	for (; envp != NULL && *envp != NULL; envp++) {
		char name[128];

		if ((eq = strchr(*envp, '=')) == NULL || (size_t)(eq - *envp) >= sizeof(name))
			continue;
		memcpy(name, *envp, (size_t)(eq - *envp));
		name[eq - *envp] = '\0';
		k = config_key_find_env(name, &sec);
		if (sec == NULL || (k != NULL && cfg_env_find(c, k) >= 0))
			continue; /* not ours, or a second copy of a name: the first wins */
		if ((e = realloc(c->env, (c->nenv + 1) * sizeof(*e))) == NULL) {
			c->oom = 1;
			return;
		}
		c->env = e;
		e[c->nenv].key = k;
		e[c->nenv].value = eq + 1;
		if ((e[c->nenv].name = config_value_strndup(name, strlen(name))) == NULL) {
			c->oom = 1;
			return;
		}
		c->nenv++;
		if (k == NULL) /* a typo would otherwise be ignored without a word */
			cfg_error(c, CFG_ENV_LINE(c->nenv - 1), "no such key in [%s]", sec->name);
	}
}

/* After the file: each variable's value replaces the key's lines (those were skipped). A
 * repeatable key takes several values separated by commas. */
static void
cfg_env_apply(struct cfg_ctx *c)
{
	for (size_t i = 0; i < c->nenv && !c->oom; i++) {
		const struct config_key *k = c->env[i].key;
		const char *v = c->env[i].value, *end;
		char piece[256];
		void *base;

		if (k == NULL || (k->base == CFG_BASE_TLS && cfg_tls_default(c, 0) < 0))
			continue;
		/* singletons: struct config, or the default [tls] (instance 0) */
		base = config_keys_instance(c->cfg, k->base, 0);
		cfg_seen(c, k->base, 0)[k - config_keys] = CFG_ENV_LINE(i);
		if (!(k->flags & CFG_F_REPEATABLE)) {
			cfg_store(c, k, base, v, CFG_ENV_LINE(i));
			continue;
		}
		for (;; v = end + 1) {
			end = strchr(v, ',');
			snprintf(piece, sizeof(piece), "%.*s",
			         (int)(end != NULL ? (size_t)(end - v) : strlen(v)), v);
			cfg_store(c, k, base, piece, CFG_ENV_LINE(i));
			if (end == NULL)
				break;
		}
	}
}

/* ---- load ---- */

static int
cfg_ctx_init(struct cfg_ctx *c, const char *name, char *const *envp)
{
	memset(c, 0, sizeof(*c));
	c->name = name != NULL ? name : "(config)";
	c->max_errors = CFG_MAX_ERRORS;
	c->cfg = calloc(1, sizeof(*c->cfg));
	if (c->cfg != NULL)
		c->cfg->refs = 1; /* the loader's */
	c->cfg_seen = calloc(config_nkeys, sizeof(int));
	if (c->cfg != NULL)
		c->cfg->file = config_value_strndup(c->name, strlen(c->name));
	if (c->cfg == NULL || c->cfg_seen == NULL || c->cfg->file == NULL) {
		config_free(c->cfg);
		free(c->cfg_seen);
		return -1;
	}
	cfg_env_collect(c, envp);
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
	cfg_env_apply(c);
	if (c->oom == 0)
		cfg_validate(c);
}

/* Order of messages: environment first, then by line, whole-file messages last. */
static uint64_t
cfg_err_rank(int line)
{
	if (line < 0)
		return (uint64_t) - (int64_t)line;
	return line > 0 ? (1ull << 32) + (uint64_t)line : UINT64_MAX;
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
	/* stable insertion sort: report order is kept within a line */
	for (size_t i = 1; i < c->nerrs; i++) {
		struct cfg_err t = c->errs[i];
		size_t j = i;

		for (; j > 0 && cfg_err_rank(c->errs[j - 1].line) > cfg_err_rank(t.line); j--)
			c->errs[j] = c->errs[j - 1];
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
	for (size_t i = 0; c->cfg != NULL && i < c->cfg->nroutes; i++)
		free(c->seen[CFG_BASE_ROUTE][i]);
	for (size_t i = 0; c->cfg != NULL && i < c->cfg->ntls_certs; i++)
		free(c->seen[CFG_BASE_TLS][i]);
	for (size_t b = 0; b < CFG_BASE_COUNT; b++)
		free(c->seen[b]);
	for (size_t i = 0; i < c->nenv; i++)
		free(c->env[i].name);
	free(c->env);
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
config_load_string_env(const char *name, const char *text, char *const *envp, struct config **out,
                       struct config_errors *errs)
{
	struct cfg_ctx c;

	if (cfg_ctx_init(&c, name, envp) < 0)
		return cfg_oom(out, errs);
	cfg_parse(&c, text, strlen(text));
	return cfg_finish(&c, out, errs);
}

int
config_load_string(const char *name, const char *text, struct config **out,
                   struct config_errors *errs)
{
	return config_load_string_env(name, text, environ, out, errs);
}

int
config_load_file(const char *path, struct config **out, struct config_errors *errs)
{
	struct cfg_ctx c;
	FILE *f;
	char *text = NULL;
	size_t len = 0, cap = 0, n;

	if (cfg_ctx_init(&c, path, environ) < 0)
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
