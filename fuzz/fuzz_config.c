/* fuzz_config.c - libFuzzer target for the config loader: any bytes as a wsgate.ini must give
 * either a snapshot or a list of errors, without crashing, leaking or reading out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	struct config_errors errs = { NULL, 0 };
	char *text = malloc(size + 1);

	if (text == NULL)
		return 0;
	/* config_load_string takes a C string: an embedded NUL ends the input early */
	memcpy(text, data, size);
	text[size] = '\0';
	if (config_load_string("fuzz.ini", text, &cfg, &errs) == 0) {
		if (cfg == NULL || errs.n != 0 || cfg->nroutes == 0 || cfg->nlistens == 0)
			abort();
		config_free(cfg);
	} else if (cfg != NULL || errs.n == 0) {
		abort();
	}
	config_errors_free(&errs);
	free(text);
	return 0;
}
