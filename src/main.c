/* main.c - command line and wiring: parse argv, load the configuration, run the gateway. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "gateway.h"
#include "log.h"
#include "service.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG SYSCONFDIR "/wsgate.ini"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: wsgate [-t] [-c FILE]\n"
	    "  -c, --config FILE  configuration file (default " DEFAULT_CONFIG ")\n"
	    "  -t, --test         check the configuration, list every error as FILE:LINE, exit\n"
	    "  -v, --version      print the version and exit\n"
	    "  -h, --help         this text\n");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_CONFIG;
	struct config_errors errs = { NULL, 0 };
	struct config *cfg = NULL;
	struct gateway gw;
	int ch, test = 0, status, nfds;

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
	if (test) {
		printf("%s: configuration OK (%zu route(s))\n", path, cfg->nroutes);
		config_free(cfg);
		return 0;
	}
	log_set_level(cfg->log_level);
	log_set_json(cfg->log_format == LOG_FORMAT_JSON);
	/* Before any thread: the sockets systemd passed (wsgate.socket), matched to listen lines. */
	if ((nfds = service_listen_fds_take()) > 0)
		log_info("socket activation: %d listening socket(s) passed", nfds);
	if (gateway_init(&gw, cfg, path) < 0) {
		gateway_free(&gw);
		return 1;
	}
	status = gateway_run(&gw);
	gateway_free(&gw);
	return status;
}
