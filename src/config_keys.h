/* config_keys.h - the declarative description of wsgate.ini: which sections exist, which keys
 * each holds, their types, bounds, defaults and help. config.c interprets these tables. */
#ifndef WSGATE_CONFIG_KEYS_H
#define WSGATE_CONFIG_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* One value per kind of section. A new section is one value here and one row in
 * config_sections[]. */
enum config_section_kind {
	CFG_SEC_GATEWAY = 0,
	CFG_SEC_HEARTBEAT,
	CFG_SEC_REDIS,
	CFG_SEC_TLS,     /* [tls]: the default certificate and the TLS settings */
	CFG_SEC_TLS_SNI, /* [tls NAME]: a certificate chosen by SNI */
	CFG_SEC_ROUTE,
	CFG_SEC_COUNT
};

/* Which struct a key's offset points into, and which struct an instance of a section is. */
enum config_base {
	CFG_BASE_CONFIG = 0, /* struct config: singleton sections, keys merge when repeated */
	CFG_BASE_ROUTE,      /* struct config_route: one instance per [route PATH] */
	CFG_BASE_TLS,        /* struct config_tls_cert: [tls] (name NULL) and one per [tls NAME] */
	CFG_BASE_COUNT
};

enum config_sec_arg {
	CFG_ARG_NONE = 0, /* "[gateway]": a singleton; settable from the environment */
	CFG_ARG_REQUIRED, /* "[route /path]": the argument names the instance */
};

struct config_section_def {
	enum config_section_kind kind;
	const char *name; /* first word inside the brackets */
	enum config_sec_arg arg;
	const char *arg_example; /* CFG_ARG_REQUIRED: "/path" in "as in [route /path]" */
	enum config_base base;   /* what an instance of the section is */
	const char *help;
};

enum config_type {
	CFG_T_STRING = 0, /* char *, NULL when empty; must be UTF-8; min/max bound the length */
	CFG_T_DURATION,   /* uint64_t milliseconds; min/max in ms */
	CFG_T_SIZE,       /* uint64_t bytes; min/max in bytes */
	CFG_T_BOOL,       /* int 0/1 */
	CFG_T_ENUM,       /* int index into key->names */
	CFG_T_LIST,       /* char ** + size_t count: comma-separated HTTP tokens; min/max: items */
	CFG_T_LISTEN,     /* struct config_listen * + size_t count; one per line (repeatable) */
	CFG_T_LOGLEVEL,   /* enum log_level */
	CFG_T_ROUTE_TYPE, /* enum route_type */
	CFG_T_UINT,       /* uint64_t whole number; with CFG_F_AUTO the word "auto" stores 0 */
	CFG_T_ADMIN_LISTEN,  /* as CFG_T_LISTEN, without the tls flag */
	CFG_T_PATH,          /* char *, NULL when empty; the file must be readable at load time */
	CFG_T_CHANNEL,       /* char *, NULL when empty; [A-Za-z0-9_.:-]; max bounds the length */
	CFG_T_TEMPLATE,      /* char *, NULL when empty: a channel template, "room:{room}" */
	CFG_T_TEMPLATE_LIST, /* char ** + count: comma-separated channel templates */
	CFG_T_ORIGIN_LIST,   /* char ** + count: comma-separated "https://host[:port]" or "*" */
	CFG_T_ENUM_LIST,    /* int array + count: comma-separated words of key->names, no repeats */
	CFG_T_BACKEND_LIST, /* struct config_backend * + count: comma list; lines accumulate */
	CFG_T_REDIS_URL,    /* struct config_redis: fills url, host, port, db, password */
	CFG_T_CIDR_LIST,    /* struct cidr * + count: comma-separated address blocks */
	CFG_T_ALLOW_LIST,   /* char ** + count: comma-separated "NAME:[SET]" (route_allow_parse) */
};

#define CFG_F_REPEATABLE 0x01u /* may appear on several lines; each line adds values */
#define CFG_F_RELOADABLE 0x02u /* a reload may change it without a restart */
#define CFG_F_REQUIRED 0x04u   /* no default: an instance of the section must set it */
#define CFG_F_AUTO 0x08u       /* CFG_T_UINT: "auto" is accepted and stored as 0 */
#define CFG_F_SECRET 0x10u     /* never echo the value in a message */
#define CFG_F_PUBSUB 0x20u     /* a route key meaningful only for type = pubsub */
#define CFG_F_PROXY 0x40u      /* a route key meaningful only for type = proxy */

struct config_key {
	enum config_section_kind section;
	const char *name;
	enum config_type type;
	enum config_base base;    /* the struct off points into (may differ from the section's) */
	size_t off;               /* offsetof into that struct */
	size_t size;              /* sizeof that field (the table test compares it to type) */
	size_t off_n;             /* list types: offsetof the count field */
	const char *def;          /* default, parsed like a value; NULL: zero or required */
	uint64_t min, max;        /* bounds in the type's unit; max 0 = unbounded */
	unsigned flags;           /* CFG_F_* */
	const char *const *names; /* CFG_T_ENUM, CFG_T_ENUM_LIST: NULL-terminated words */
	const char *help;         /* one line */
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
/* The other section of cur's name holding key ("[tls]" for min_version in [tls NAME]), or NULL. */
const struct config_section_def *config_section_sibling(const struct config_section_def *cur,
                                                        const char *key);
/* 0 when route key k is meant for another type than t (CFG_F_PUBSUB, CFG_F_PROXY). */
int config_key_fits_route(const struct config_key *k, enum route_type t);
/* For an environment variable WSGATE_<SECTION>_<KEY> of a singleton section: the key row, or
 * NULL. *sec is the section its prefix names (NULL when none, i.e. not a config variable). */
const struct config_key *config_key_find_env(const char *var,
                                             const struct config_section_def **sec);
/* Instance i of base b: a route, a tls cert, or cfg itself for CFG_BASE_CONFIG. */
void *config_keys_instance(struct config *cfg, enum config_base b, size_t i);
/* Inserts a zeroed route or tls cert at index at (later ones move up); NULL out of memory. */
void *config_keys_instance_insert(struct config *cfg, enum config_base b, size_t at);
/* The storage size a field of type t must have (for the table self-check). */
size_t config_type_size(enum config_type t);
/* 1 when row k is the first one storing into its field (rows of [tls] and [tls NAME] share
 * fields): generic walkers free each field once. */
int config_key_owns_field(const struct config_key *k);
/* Stores the text v of key k into the struct at base (the key's base struct); line is the
 * value's origin for types that keep it (listen). 0; -1 with why set on a bad value (earlier
 * values of a repeatable key are kept); -2 when out of memory. */
int config_key_store(const struct config_key *k, void *base, const char *v, int line, char *why,
                     size_t whysz) __attribute__((warn_unused_result));
/* Frees what the field of k in the struct at base owns, and zeroes it. */
void config_key_free(const struct config_key *k, void *base);
/* Frees every field the key table says the struct at base (of kind b) owns. */
void config_keys_free_fields(enum config_base b, void *base);

#endif
