/* netecho(1): companion client of netechod. One binary, three subcommands:
 * echo (a monitoring-plugin probe), chat (interactive line client) and
 * bench (an epoll load generator). Each lives in its own netecho-*.c. */

#include <signal.h>
#include <stdio.h>
#include <string.h>

#ifndef PACKAGE_VERSION
#include "build-config.h"
#endif

#include "netecho-common.h"
#include "util.h"

static const struct {
	const char *name;
	int (*main)(int argc, char **argv);
} commands[] = {
	{ "echo", netecho_echo_main },
	{ "chat", netecho_chat_main },
	{ "bench", netecho_bench_main },
};

static void
usage(FILE *f)
{
	fputs("Usage: netecho echo [-u] [-t TIMEOUT] HOST PORT [MESSAGE]\n"
	      "       netecho chat [-u] HOST PORT NAME\n"
	      "       netecho bench [-u] HOST PORT [-c CONNS] [-s SIZE] [-d SECONDS]\n"
	      "                     [-P PIPELINE] [-T THREADS] [-t TIMEOUT] [--connect]\n"
	      "       netecho bench --chat [-u | --irc] HOST PORT [--also HOST:PORT]...\n"
	      "                     [-c MEMBERS] [-S SENDERS] [-r RATE] [-s SIZE] [-d SECONDS]\n"
	      "       netecho -h | --help\n"
	      "       netecho -V | --version\n"
	      "\n"
	      "  echo   send MESSAGE, verify the echo; monitoring-plugin output and exit\n"
	      "         codes (0 OK, 2 CRITICAL, 3 UNKNOWN)\n"
	      "  chat   interactive chat: lines from stdin go to the server, lines from\n"
	      "         the server go to stdout\n"
	      "  bench  load generator: ping-pong, pipelined, connect-rate or UDP;\n"
	      "         verifies every echoed byte; --chat loads a chat room and checks\n"
	      "         that every member gets every line once and in order\n"
	      "\n"
	      "'netecho COMMAND -h' describes the options of a command. See netecho(1).\n",
	      f);
}

int
main(int argc, char **argv)
{
	/* Writes to a closed peer must fail with EPIPE, not kill us. */
	(void)signal(SIGPIPE, SIG_IGN);

	if (argc < 2) {
		usage(stderr);
		return NETECHO_EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return NETECHO_EXIT_OK;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("netecho %s\n", PACKAGE_VERSION);
		return NETECHO_EXIT_OK;
	}
	for (size_t i = 0; i < ELEMENTSOF(commands); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].main(argc - 1, argv + 1);

	if (argv[1][0] == '-')
		fprintf(stderr, "netecho: unknown option '%s'\n", argv[1]);
	else
		fprintf(stderr, "netecho: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return NETECHO_EXIT_USAGE;
}
