/* config_ctx.h - the state of one configuration load, shared by the loader (config.c: reading,
 * sections, keys, the environment) and its validation pass (config_check.c). Internal to those
 * two files: the cfg_ prefix is theirs. */
#ifndef WSGATE_CONFIG_CTX_H
#define WSGATE_CONFIG_CTX_H

#include <stddef.h>

#include "config.h"
#include "config_keys.h"

#define CFG_MAX_ERRORS 100            /* a garbage file should not yield a megabyte of errors */
#define CFG_MAX_FILE (1024 * 1024)    /* a config file larger than this is a mistake */
#define CFG_ENV_LINE(i) (-(int)(i)-1) /* the "line" of the i-th environment override */

struct cfg_err {
	int line;  /* 0: applies to the whole file; < 0: CFG_ENV_LINE */
	char *msg; /* "FILE:LINE: message" or "env WSGATE_X_Y: message" */
};

/* One WSGATE_<SECTION>_<KEY> variable: it replaces that key's lines in the file. */
struct cfg_env {
	char *name;
	const char *value;            /* into the caller's envp */
	const struct config_key *key; /* NULL: unknown key (reported) */
};

enum cfg_cur {
	CUR_NONE = 0, /* before the first section header: keys are errors */
	CUR_IGNORE,   /* inside a section already reported as bad: keys skipped */
	CUR_OK,       /* inside a valid section: sec (and idx) apply */
};

/* State of one load. The reader and the handler share it: inih calls the handler while the
 * line the reader returned last is being parsed, so lineno is the handler's line too. */
struct cfg_ctx {
	const char *name; /* file name used in messages */
	const char *p;    /* unread input */
	size_t left;
	int lineno;                  /* physical line last handed to inih */
	int route_headers;           /* [route ...] lines seen, valid or not */
	int sec_line[CFG_SEC_COUNT]; /* first header line of each section kind, 0 = absent */
	struct config *cfg;
	struct cfg_err *errs;
	size_t nerrs;
	size_t max_errors; /* CFG_MAX_ERRORS, raised at the end for the summary notes */
	int too_many;
	int oom;
	enum cfg_cur cur;
	const struct config_section_def *sec;
	size_t idx;      /* instance of sec->base being filled (route, tls cert) */
	char label[256]; /* "[gateway]", "[route /echo]" for messages */
	/* per key row, the line that set it (CFG_ENV_LINE for the environment), or 0: */
	int *cfg_seen;              /* for struct config */
	int **seen[CFG_BASE_COUNT]; /* per instance, parallel to cfg->routes and cfg->tls_certs */
	struct cfg_env *env;
	size_t nenv;
};

/* Records "FILE:LINE: message", "FILE: message" (line 0) or "env NAME: message" (line < 0). */
void cfg_error(struct cfg_ctx *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The environment variable that overrides key k, or -1. */
int cfg_env_find(const struct cfg_ctx *c, const struct config_key *k);
/* After the last line: defaults, required keys, cross-key rules (config_check.c). */
void cfg_validate(struct cfg_ctx *c);

#endif
