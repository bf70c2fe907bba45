/* config_errors.h - the list of "FILE:LINE: message" errors a configuration load collects, so
 * every error is reported at once. Bottom layer: libc only, so the certificate and key loaders
 * (tls, security) report through it without depending on the config loader. */
#ifndef WSGATE_CONFIG_ERRORS_H
#define WSGATE_CONFIG_ERRORS_H

#include <stddef.h>

/* Collected errors, each "FILE:LINE: message" (or "FILE: message" when no line applies). */
struct config_errors {
	char **msgs;
	size_t n;
};

void config_errors_free(struct config_errors *errs);
/* Appends one formatted message (loaders of certificates and keys report through this too);
 * silently drops it when out of memory. errs may be NULL. */
void config_errors_add(struct config_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
