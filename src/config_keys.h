/* config_keys.h - the declarative description of wsgate.ini: which sections exist, which keys
 * each holds, their types, bounds, defaults and help. config.c interprets these tables. */
#ifndef WSGATE_CONFIG_KEYS_H
#define WSGATE_CONFIG_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* One value per kind of section. A new section ([redis], [tls], [tls NAME]) is one value here
 * and one row in config_sections[]. */
enum config_section_kind {
	CFG_SEC_GATEWAY = 0,
	CFG_SEC_HEARTBEAT,
	CFG_SEC_ROUTE,
	CFG_SEC_COUNT
};

/* Which struct a section's key offsets point into. */
enum config_base {
	CFG_BASE_CONFIG = 0,  /* struct config: singleton sections, keys merge when repeated */
	CFG_BASE_ROUTE,       /* struct config_route: one instance per [route PATH] */
};

enum config_sec_arg {
	CFG_ARG_NONE = 0,     /* "[gateway]" */
	CFG_ARG_REQUIRED,     /* "[route /path]": the argument names the instance */
};

struct config_section_def {
	enum config_section_kind kind;
	const char *name;              /* first word inside the brackets */
	enum config_sec_arg arg;
	const char *arg_example;       /* CFG_ARG_REQUIRED: "/path" in "as in [route /path]" */
	enum config_base base;
	const char *help;
};

enum config_type {
	CFG_T_STRING = 0,  /* char *, NULL when empty; must be UTF-8; min/max bound the length */
	CFG_T_DURATION,    /* uint64_t milliseconds; min/max in ms */
	CFG_T_SIZE,        /* uint64_t bytes; min/max in bytes */
	CFG_T_BOOL,        /* int 0/1 */
	CFG_T_ENUM,        /* int index into key->names */
	CFG_T_LIST,        /* char ** + size_t count: comma-separated HTTP tokens; min/max: items */
	CFG_T_LISTEN,      /* struct config_listen * + size_t count; one per line (repeatable) */
	CFG_T_LOGLEVEL,    /* enum log_level */
	CFG_T_ROUTE_TYPE,  /* enum route_type */
};

#define CFG_F_REPEATABLE 0x1u  /* may appear on several lines; each line adds a value */
#define CFG_F_RELOADABLE 0x2u  /* a reload may change it without a restart */
#define CFG_F_REQUIRED   0x4u  /* no default: an instance of the section must set it */

struct config_key {
	enum config_section_kind section;
	const char *name;
	enum config_type type;
	size_t off;                 /* offsetof into the section's base struct */
	size_t size;                /* sizeof that field (the table test compares it to type) */
	size_t off_n;               /* LIST, LISTEN: offsetof the count field */
	const char *def;            /* default, parsed like a value; NULL: zero or required */
	uint64_t min, max;          /* bounds in the type's unit; max 0 = unbounded */
	unsigned flags;             /* CFG_F_* */
	const char *const *names;   /* CFG_T_ENUM: NULL-terminated accepted words */
	const char *help;           /* one line */
};

extern const struct config_section_def config_sections[CFG_SEC_COUNT];
extern const struct config_key config_keys[];
extern const size_t config_nkeys;

/* The row for "[name]" or "[name arg]" (has_arg), or NULL. *name_known is set to 1 when a
 * section of that name exists but takes an argument the other way. */
const struct config_section_def *config_section_find(const char *name, int has_arg,
    int *name_known);
/* The key row for name in section kind, or NULL. */
const struct config_key *config_key_find(enum config_section_kind sec, const char *name);
/* The storage size a field of type t must have (for the table self-check). */
size_t config_type_size(enum config_type t);

#endif
