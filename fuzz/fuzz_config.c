/* fuzz_config.c - libFuzzer target for the config loader: any bytes as a wsgate.ini must give
 * either a snapshot or a list of errors, without crashing, leaking or reading out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What validation promises about every snapshot it lets through. */
static int
fuzz_snapshot_ok(const struct config *cfg)
{
	int has_default_tls = cfg->ntls_certs > 0 && cfg->tls_certs[0].name == NULL;

	if (cfg->nroutes == 0 || cfg->nlistens == 0)
		return 0;
	for (size_t i = 0; i < cfg->nlistens; i++) {
		if (cfg->listens[i].tls && !has_default_tls)
			return 0;
	}
	for (size_t i = 0; i < cfg->ntls_certs; i++) {
		if (cfg->tls_certs[i].cert == NULL || cfg->tls_certs[i].key == NULL)
			return 0;
	}
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const struct config_route *r = &cfg->routes[i];

		if ((unsigned)r->type > ROUTE_PROXY || r->njwt_from == 0 ||
		    (r->type == ROUTE_PUBSUB && r->nsubscribe == 0 && r->publish == NULL) ||
		    (r->type == ROUTE_PROXY && r->nbackends == 0) ||
		    (r->auth == AUTH_JWT && (r->jwt_secret == NULL) == (r->jwt_public_key == NULL)))
			return 0;
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	struct config_errors errs = {NULL, 0};
	char *text = malloc(size + 1);

	if (text == NULL)
		return 0;
	/* config_load_string takes a C string: an embedded NUL ends the input early */
	memcpy(text, data, size);
	text[size] = '\0';
	/* no environment: the result must depend on the input alone */
	if (config_load_string_env("fuzz.ini", text, NULL, &cfg, &errs) == 0) {
		if (cfg == NULL || errs.n != 0 || !fuzz_snapshot_ok(cfg))
			abort();
		config_free(cfg);
	} else if (cfg != NULL || errs.n == 0) {
		abort();
	}
	config_errors_free(&errs);
	free(text);
	return 0;
}
