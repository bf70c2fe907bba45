/* log.c - one line per event on stderr: UTC time, level, optional connection id, message.
 * Lines are written with a single write(2) so lines from threads never interleave. When stderr
 * is journald's stream (JOURNAL_STREAM), text lines carry a syslog priority and no time. */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_level_cur = LOG_LVL_INFO;
static int log_json;
static const char *const log_names[] = {"error", "warn", "info", "debug"};
/* sd-daemon(3)'s "<N>" prefixes, journald's priority of each level (LOG_ERR ... LOG_DEBUG). */
static const char *const log_prio[] = {"<3>", "<4>", "<6>", "<7>"};
static int log_journal; /* set once at start-up, before any thread */

int
log_detect_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char tail;

	/* systemd.exec(5): "DEVICE:INODE" of the stream it connected; only when stderr is that
	 * very stream (not redirected by a wrapper) does journald read the prefixes. */
	log_journal = e != NULL && sscanf(e, "%llu:%llu%c", &dev, &ino, &tail) == 2 &&
	              fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
	              (unsigned long long)st.st_ino == ino;
	return log_journal;
}

/* Set by the main loop (start, reload), read by every worker: relaxed atomics. */
void
log_set_json(int json)
{
	__atomic_store_n(&log_json, json, __ATOMIC_RELAXED);
}

void
log_set_level(enum log_level lvl)
{
	__atomic_store_n(&log_level_cur, lvl, __ATOMIC_RELAXED);
}

enum log_level
log_get_level(void)
{
	return __atomic_load_n(&log_level_cur, __ATOMIC_RELAXED);
}

int
log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (strcasecmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int
log_enabled(enum log_level lvl)
{
	return lvl <= log_get_level();
}

static void log_write(enum log_level, const struct log_ctx *, const char *, const char *, va_list)
    LOG_PRINTF(4, 0);
static void log_write_json(enum log_level, const struct log_ctx *, const char *,
                           const struct timeval *, const struct tm *, const char *, va_list)
    LOG_PRINTF(6, 0);

/* Appends s as the body of a JSON string (RFC 8259 escapes); returns the new length. */
static size_t
log_json_escape(char *out, size_t n, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	for (; *s != '\0' && n + 7 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			out[n++] = '\\';
			out[n++] = (char)ch;
		} else if (ch < 0x20) {
			out[n++] = '\\';
			out[n++] = 'u';
			out[n++] = '0';
			out[n++] = '0';
			out[n++] = hex[ch >> 4];
			out[n++] = hex[ch & 15];
		} else {
			out[n++] = (char)ch;
		}
	}
	return n;
}

static void
log_write_json(enum log_level lvl, const struct log_ctx *ctx, const char *errstr,
               const struct timeval *tv, const struct tm *tm, const char *fmt, va_list ap)
{
	char msg[1536], line[4096], ts[32];
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", tm);
	/* Under journald the priority prefix too (stripped by journald: the message stays one
	 * JSON object), so journalctl -p works whatever the format. */
	n = (size_t)snprintf(line, sizeof(line), "%s{\"time\":\"%s.%03ldZ\",\"level\":\"%s\"",
	                     log_journal ? log_prio[lvl] : "", ts, (long)(tv->tv_usec / 1000),
	                     log_names[lvl]);
	if (ctx != NULL && ctx->conn != 0) {
		n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"conn\":%llu",
		                      (unsigned long long)ctx->conn);
		if (ctx->peer != NULL) {
			n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"peer\":\"");
			n = log_json_escape(line, n, sizeof(line) - 8, ctx->peer);
			line[n++] = '"';
		}
		if (ctx->route != NULL) {
			n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"route\":\"");
			n = log_json_escape(line, n, sizeof(line) - 8, ctx->route);
			line[n++] = '"';
		}
	}
	n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"msg\":\"");
	n = log_json_escape(line, n, sizeof(line) - 8, msg);
	if (errstr != NULL) {
		n = log_json_escape(line, n, sizeof(line) - 8, ": ");
		n = log_json_escape(line, n, sizeof(line) - 8, errstr);
	}
	line[n++] = '"';
	line[n++] = '}';
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

static void
log_write(enum log_level lvl, const struct log_ctx *ctx, const char *errstr, const char *fmt,
          va_list ap)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	int r;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	if (__atomic_load_n(&log_json, __ATOMIC_RELAXED)) {
		log_write_json(lvl, ctx, errstr, &tv, &tm, fmt, ap);
		return;
	}
	if (log_journal) {
		/* journald stamps the time itself and reads the priority from the prefix. */
		r = snprintf(line, sizeof(line), "%s%-5s ", log_prio[lvl], log_names[lvl]);
		n = (size_t)r;
	} else {
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ", (long)(tv.tv_usec / 1000),
		             log_names[lvl]);
		n += (size_t)r;
	}
	if (ctx != NULL && ctx->conn != 0) {
		r = snprintf(line + n, sizeof(line) - n, "[conn %llu] ",
		             (unsigned long long)ctx->conn);
		n += (size_t)r;
	}
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r > 0)
		n = (n + (size_t)r < sizeof(line) - 1) ? n + (size_t)r : sizeof(line) - 2;
	if (errstr != NULL && n < sizeof(line) - 2) {
		r = snprintf(line + n, sizeof(line) - n, ": %s", errstr);
		if (r > 0)
			n = (n + (size_t)r < sizeof(line) - 1) ? n + (size_t)r : sizeof(line) - 2;
	}
	/* Who and where, after the message so "[conn N] text" stays greppable. */
	if (ctx != NULL && (ctx->peer != NULL || ctx->route != NULL) && n < sizeof(line) - 2) {
		r = snprintf(line + n, sizeof(line) - n, " (%s%s%s%s)", ctx->peer ? "peer " : "",
		             ctx->peer ? ctx->peer : "",
		             ctx->peer && ctx->route ? ", route "
		             : ctx->route            ? "route "
		                                     : "",
		             ctx->route ? ctx->route : "");
		if (r > 0)
			n = (n + (size_t)r < sizeof(line) - 1) ? n + (size_t)r : sizeof(line) - 2;
	}
	line[n++] = '\n';
	/* Nothing sensible to do if stderr is gone. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}

void
log_vmsg(enum log_level lvl, uint64_t conn_id, const char *fmt, va_list ap)
{
	if (!log_enabled(lvl))
		return;
	struct log_ctx ctx = {conn_id, NULL, NULL};

	log_write(lvl, &ctx, NULL, fmt, ap);
}

void
log_vctx(enum log_level lvl, const struct log_ctx *ctx, const char *fmt, va_list ap)
{
	if (!log_enabled(lvl))
		return;
	log_write(lvl, ctx, NULL, fmt, ap);
}

void
log_msg(enum log_level lvl, uint64_t conn_id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(lvl, conn_id, fmt, ap);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	if (!log_enabled(LOG_LVL_WARN))
		return;
	va_start(ap, fmt);
	log_write(LOG_LVL_WARN, NULL, strerror(saved), fmt, ap);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_WARN, 0, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_INFO, 0, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_DEBUG, 0, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	log_write(LOG_LVL_ERROR, NULL, strerror(saved), fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_write(LOG_LVL_ERROR, NULL, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
