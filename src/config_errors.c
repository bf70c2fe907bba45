/* config_errors.c - collecting every error of a configuration load (file, keys, certificates,
 * keys of JWT), each as one formatted line. */
#include "config_errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

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

void
config_errors_add(struct config_errors *errs, const char *fmt, ...)
{
	char **msgs;
	char *m;
	va_list ap;
	int r;

	if (errs == NULL)
		return;
	va_start(ap, fmt);
	r = vasprintf(&m, fmt, ap);
	va_end(ap);
	if (r < 0)
		return;
	if ((msgs = realloc(errs->msgs, (errs->n + 1) * sizeof(*msgs))) == NULL) {
		free(m);
		return;
	}
	errs->msgs = msgs;
	errs->msgs[errs->n++] = m;
}
