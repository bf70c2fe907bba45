/* main.c - command line and wiring: parse argv, load the configuration, run the gateway. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "admin.h"
#include "config.h"
#include "gateway.h"
#include "log.h"
#include "route.h"
#include "route_map.h"
#include "service.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG SYSCONFDIR "/wsgate.ini"

static void
usage(FILE *f)
{
	fprintf(
	    f, "usage: wsgate [-t] [-c FILE]\n"
	       "  -c, --config FILE  configuration file (default " DEFAULT_CONFIG ")\n"
	       "  -t, --test         check the configuration, list every error as FILE:LINE, exit\n"
	       "  -v, --version      print the version and exit\n"
	       "  -h, --help         this text\n");
}

/* -t: what each route's clients can reach, as patterns, so an operator sees the whole map. */
static void
print_channel_map(const struct config *cfg)
{
	const char *prefix = cfg->redis.channel_prefix != NULL ? cfg->redis.channel_prefix : "";
	char pat[1024];

	printf("channel map (prefix '%s' before every name; %s* is wsgate's own):\n", prefix,
	       ROUTE_RESERVED_PREFIX);
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const struct config_route *r = &cfg->routes[i];

		printf("  route %s (%s, %s%s%s)\n", r->path, config_route_type_name(r->type),
		       r->auth == AUTH_JWT ? "auth jwt" : "no auth",
		       r->server_only ? ", server_only" : "",
		       r->shared_namespace ? ", shared_namespace" : "");
		if (r->type != ROUTE_PUBSUB) {
			printf("    no channels\n");
			continue;
		}
		for (size_t j = 0; j < r->nsubscribe; j++)
			printf("    subscribe %s -> %s (%s)\n", r->subscribe[j],
			       route_map_pattern(r, r->subscribe[j], pat, sizeof(pat)),
			       route_map_access(r, r->subscribe[j]));
		if (r->publish != NULL)
			printf("    publish   %s -> %s%s\n", r->publish,
			       route_map_pattern(r, r->publish, pat, sizeof(pat)),
			       r->nread_only > 0 ? " except its read_only channels" : "");
		else
			printf("    publish   none%s\n", r->server_only ? " (server_only)" : "");
		printf("    direct    %sconn:<own id> (receive only)\n", ROUTE_RESERVED_PREFIX);
	}
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"test", no_argument, NULL, 't'},
	    {"version", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *path = DEFAULT_CONFIG;
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	struct gateway gw;
	int ch, test = 0, status, nfds;

	/* Until the gateway's own handler is in place a reload request is dropped, not fatal (the
	 * default action of SIGHUP is to terminate). */
	signal(SIGHUP, SIG_IGN);
	(void)log_detect_journal();
	while ((ch = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'v':
			printf("wsgate %s\n", WSGATE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (config_load_file(path, &cfg, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		config_errors_free(&errs);
		return 1;
	}
	config_errors_free(&errs);
	/* -t loads what a start would: certificates, keys, CA bundles (FILE:LINE each). */
	if (test && reload_check_files(cfg, &errs) < 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		config_errors_free(&errs);
		config_free(cfg);
		return 1;
	}
	if (test) {
		printf("%s: configuration OK (%zu route(s))\n", path, cfg->nroutes);
		print_channel_map(cfg);
		config_free(cfg);
		return 0;
	}
	log_set_level(cfg->log_level);
	log_set_json(cfg->log_format == LOG_FORMAT_JSON);
	/* Before any thread: the sockets systemd passed (wsgate.socket), matched to listen lines.
	 */
	if ((nfds = service_listen_fds_take()) > 0)
		log_info("socket activation: %d listening socket(s) passed", nfds);
	/* The admin endpoints read the whole gateway: main wires them to it (the gateway does not
	 * know them), made after it and gone before it. */
	if (gateway_init(&gw, cfg, path) < 0 || (gw.admin = admin_new(&gw)) == NULL) {
		gateway_free(&gw);
		return 1;
	}
	status = gateway_run(&gw);
	admin_free(gw.admin);
	gw.admin = NULL;
	gateway_free(&gw);
	return status;
}
