/* log.h - leveled logging to stderr with time, level and connection id.
 * OpenBSD style: *_warn appends strerror(errno), *_warnx does not; fatal only at startup. */
#ifndef WSGATE_LOG_H
#define WSGATE_LOG_H

#include <stdarg.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

#define LOG_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* text: "TIME LEVEL [conn N] message"; json: one object a line for log shippers. */
void log_set_json(int json);
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parses "error|warn|info|debug"; returns -1 when unknown. */
int log_level_parse(const char *s, enum log_level *out);
int log_enabled(enum log_level lvl);
/* Text lines become "<PRIO>level message" (no time) when stderr is the journal's stream
 * (JOURNAL_STREAM names its device:inode). Call once at start-up; returns 1 when so. */
int log_detect_journal(void);

/* Who a connection-scoped line is about. */
struct log_ctx {
	uint64_t conn;     /* 0: not connection-scoped */
	const char *peer;  /* "addr:port" or NULL */
	const char *route; /* route path or NULL */
};
void log_vctx(enum log_level lvl, const struct log_ctx *ctx, const char *fmt, va_list ap)
    LOG_PRINTF(3, 0);

void log_msg(enum log_level lvl, uint64_t conn_id, const char *fmt, ...) LOG_PRINTF(3, 4);
void log_vmsg(enum log_level lvl, uint64_t conn_id, const char *fmt, va_list ap) LOG_PRINTF(3, 0);

void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
__attribute__((noreturn)) void fatal(const char *fmt, ...) LOG_PRINTF(1, 2);
__attribute__((noreturn)) void fatalx(const char *fmt, ...) LOG_PRINTF(1, 2);

#endif
