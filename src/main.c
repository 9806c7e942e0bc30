#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "build-config.h"
#include "config.h"
#include "dispatcher.h"
#include "listener.h"
#include "log.h"

static void
usage(FILE *f)
{
	fprintf(f,
		"Usage: netechod [-c FILE] [-t] [-l LEVEL] [-V] [-h]\n"
		"Network echo and chat daemon.\n\n"
		"  -c, --config FILE      config file (default: %s)\n"
		"  -t, --check            parse and validate FILE, print the listener table, exit\n"
		"  -l, --log-level LEVEL  override log_level (debug|info|notice|warning|error)\n"
		"  -V, --version          print version and exit\n"
		"  -h, --help             print this help and exit\n\n"
		"See netechod(8) and netechod.conf(5).\n",
		DEFAULT_CONFIG);
}

static void
print_table(const struct config *c)
{
	printf("%-16s %-5s %-28s %-7s %-7s %-7s %-11s %-5s %s\n", "NAME", "PROTO", "ADDRESS",
	       "MODEL", "SERVICE", "WORKERS", "MAX_CLIENTS", "IDLE", "OPTIONS");
	for (size_t i = 0; i < c->n_listeners; i++) {
		const struct listener_config *l = &c->listeners[i];
		char where[300], opts[512] = "", idle[16];
		size_t o = 0;

#define OPT(...) o += (size_t)snprintf(opts + o, o < sizeof(opts) ? sizeof(opts) - o : 0, __VA_ARGS__)
		if (!l->enabled)
			OPT("disabled ");
		if (l->per_source)
			OPT("per_source=%u ", l->per_source);
		if (l->rate_limit)
			OPT("rate_limit=%u/s ", l->rate_limit);
		if (l->service == SERVICE_CHAT)
			OPT("max_line=%u ", l->max_line);
		if (l->backlog != 128)
			OPT("backlog=%u ", l->backlog);
		if (l->has_allow)
			OPT("allow=%zu ", l->n_allow);
		if (l->n_deny)
			OPT("deny=%zu ", l->n_deny);
		if (l->prefix)
			OPT("prefix=\"%s\" ", l->prefix);
		if (l->proxy_protocol)
			OPT("proxy_protocol proxy_from=%zu ", l->n_proxy_from);
		if (l->has_backend) {
			char url[BACKEND_URL_STR_MAX];

			backend_url_redacted(&l->backend, url, sizeof(url));
			OPT("backend=%s room=%s ", url, l->room);
		}
#undef OPT
		if (o > 0 && o < sizeof(opts))
			opts[o - 1] = '\0';
		if (l->idle_timeout)
			snprintf(idle, sizeof(idle), "%us", l->idle_timeout);
		else
			snprintf(idle, sizeof(idle), "never");
		printf("%-16s %-5s %-28s %-7s %-7s %-7u %-11u %-5s %s\n", l->name,
		       protocol_to_string(l->protocol), listener_format_bind(l, where, sizeof(where)),
		       model_to_string(l->model), service_to_string(l->service), l->workers,
		       l->max_clients, idle, opts[0] ? opts : "-");
	}
}

/* Over 80 lines: one getopt switch over every option and then the
 * checks between them read best in one piece, in the order the manual
 * lists them; the work itself is in the functions above. */
int
main(int argc, char *argv[])
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 't' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_CONFIG;
	struct config_errors errs = { 0 };
	struct config *c = NULL;
	int level = -1, opt, r;
	bool check = false;
	sigset_t mask;

	/* Block the signals the dispatcher reads from a signalfd now, so a
	 * SIGTERM during start-up is handled (exit 0), not fatal. */
	dispatcher_block_signals(&mask);

	log_open();
	while ((opt = getopt_long(argc, argv, "c:tl:Vh", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = true;
			break;
		case 'l':
			level = log_level_from_string(optarg);
			if (level < 0) {
				fprintf(stderr,
					"netechod: invalid log level '%s'; allowed: debug, info, notice, warning, error\n",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'V':
			printf("netechod %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "netechod: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}

	r = config_load(path, &c, &errs);
	if (r != 0) {
		for (size_t i = 0; i < errs.n_errors; i++) {
			const struct config_error *e = &errs.errors[i];
			char where[512];

			if (e->line > 0)
				snprintf(where, sizeof(where), "%s:%d", e->file, e->line);
			else
				snprintf(where, sizeof(where), "%s", e->file);
			if (check || !log_to_journal())
				fprintf(stderr, "%s: %s\n", where, e->message);
			else
				log_error("%s: %s", where, e->message);
		}
		if (check)
			fprintf(stderr, "%s: %zu error%s\n", path, errs.n_errors,
				errs.n_errors == 1 ? "" : "s");
		config_errors_clear(&errs);
		return EXIT_CONFIG;
	}
	if (check) {
		print_table(c);
		config_free(c);
		return 0;
	}
	return dispatcher_run(c, level);
}
