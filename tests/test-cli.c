/* netechod's command line, exit statuses and start-up (SPEC sections 2, 3
 * and 6): options, `-t`, config errors naming FILE:LINE, a port in use,
 * binding without socket activation, host-name addresses, stop signals. */

#include <errno.h>
#include <libconfig.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <check.h>

#include "build-config.h"
#include "harness.h"
#include "util.h"

#define TCASE_TIMEOUT 60
#define EXIT_USAGE_CODE 64
#define EXIT_OSERR_CODE 71
#define EXIT_CONFIG_CODE 78

/* A scratch directory per test for config files. */
static char tmpdir[HARNESS_DIR_MAX];

static void
tmpdir_setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/netechod-cli.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
tmpdir_teardown(void)
{
	/* Only the files write_conf() may have made. */
	for (int i = 0; i < 16; i++) {
		char path[HARNESS_PATH_MAX];

		snprintf(path, sizeof(path), "%s/c%d.conf", tmpdir, i);
		(void)unlink(path);
	}
	(void)rmdir(tmpdir);
}

/* Write text to tmpdir/cN.conf and return the path (static per N). */
static const char *
write_conf(int n, const char *text)
{
	static char paths[16][HARNESS_PATH_MAX];
	FILE *f;

	ck_assert_int_lt(n, 16);
	snprintf(paths[n], sizeof(paths[n]), "%s/c%d.conf", tmpdir, n);
	f = fopen(paths[n], "we");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
	return paths[n];
}

/* Run netechod with the arguments (NULL-terminated) and wait (bounded). */
static struct harness_output
run_netechod(const char *arg, ...)
{
	const char *argv[32];
	size_t n = 0;
	struct harness_output res = { 0 };
	va_list ap;
	int r;

	argv[n++] = harness_netechod_bin();
	ck_assert_msg(argv[0], "NETECHOD_BIN is not set");
	va_start(ap, arg);
	for (const char *a = arg; a && n < ELEMENTSOF(argv) - 1; a = va_arg(ap, const char *))
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	r = harness_run((char *const *)argv, &res.out, &res.err, &res.status);
	ck_assert_msg(r == 0, "running %s %s: %s", argv[0], arg ? arg : "", strerror(-r));
	return res;
}

static bool
is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

/* tok appears in [line, end) as a whole word. */
static bool
has_token(const char *line, const char *end, const char *tok)
{
	size_t len = strlen(tok);

	for (const char *p = line; p + len <= end; p++) {
		if (memcmp(p, tok, len) != 0)
			continue;
		if ((p == line || !is_name_char(p[-1])) &&
		    (p + len == end || !is_name_char(p[len])))
			return true;
	}
	return false;
}

/* ":PORT" not followed by another digit. */
static bool
has_port(const char *line, const char *end, long port)
{
	char pat[16];
	size_t len;

	snprintf(pat, sizeof(pat), ":%ld", port);
	len = strlen(pat);
	for (const char *p = line; p + len <= end; p++)
		if (memcmp(p, pat, len) == 0 && (p + len == end || p[len] < '0' || p[len] > '9'))
			return true;
	return false;
}

/* A line of out showing this listener: name, protocol, :port, model, service. */
static bool
table_has_row(const char *out, const char *name, const char *protocol, long port,
	      const char *model, const char *service)
{
	for (const char *line = out; *line;) {
		const char *end = strchrnul(line, '\n');

		if (has_token(line, end, name) && has_token(line, end, protocol) &&
		    has_port(line, end, port) && has_token(line, end, model) &&
		    has_token(line, end, service))
			return true;
		line = *end ? end + 1 : end;
	}
	return false;
}

/* ---- options ---- */

static const char *const version_args[] = { "-V", "--version" };

START_TEST(cli_version_prints_version)
{
	struct harness_output r = run_netechod(version_args[_i], NULL);

	ck_assert_msg(r.status == 0, "%s: exit %d, expected 0", version_args[_i], r.status);
	ck_assert_msg(strstr(r.out, PACKAGE_VERSION), "%s: stdout '%s' lacks version %s",
		      version_args[_i], r.out, PACKAGE_VERSION);
	harness_output_free(&r);
}
END_TEST

static const char *const help_args[] = { "-h", "--help" };

START_TEST(cli_help_prints_usage)
{
	static const char *const options[] = { "--config", "--check", "--log-level",
					       "--version", "--help" };
	struct harness_output r = run_netechod(help_args[_i], NULL);

	ck_assert_msg(r.status == 0, "%s: exit %d, expected 0", help_args[_i], r.status);
	ck_assert_msg(strcasestr(r.out, "usage"), "%s: no usage on stdout: '%s'", help_args[_i],
		      r.out);
	for (size_t i = 0; i < ELEMENTSOF(options); i++)
		ck_assert_msg(strstr(r.out, options[i]), "%s: usage does not mention %s",
			      help_args[_i], options[i]);
	harness_output_free(&r);
}
END_TEST

static const char valid_conf[] =
	"listeners = (\n"
	"  { name = \"one\"; protocol = \"tcp\"; address = \"127.0.0.1\"; port = 7007;\n"
	"    model = \"poll\"; service = \"echo\"; }\n"
	");\n";

/* With -t and a valid file, so a missed usage error exits at once. */
static const struct usage_case {
	const char *what;
	const char *args[4];
} usage_cases[] = {
	{ "unknown long option", { "--bogus" } },
	{ "unknown short option", { "-x" } },
	{ "stray argument", { "stray" } },
	{ "bad log level", { "-l", "bogus" } },
	{ "bad --log-level", { "--log-level=loud" } },
	{ "-c without a file", { "-c" } },
};

START_TEST(cli_usage_errors_exit_64)
{
	const struct usage_case *c = &usage_cases[_i];
	const char *conf = write_conf(0, valid_conf);
	struct harness_output r;

	if (strcmp(c->args[0], "-c") == 0)
		r = run_netechod("-t", "-c", NULL);
	else
		r = run_netechod("-t", "-c", conf, c->args[0], c->args[1], NULL);
	ck_assert_msg(r.status == EXIT_USAGE_CODE, "%s: exit %d, expected %d; stderr '%s'",
		      c->what, r.status, EXIT_USAGE_CODE, r.err);
	ck_assert_msg(r.err[0], "%s: nothing on stderr", c->what);
	harness_output_free(&r);
}
END_TEST

/* ---- -t ---- */

START_TEST(cli_check_shipped_config_lists_every_listener)
{
	char path[HARNESS_PATH_MAX], dir[HARNESS_PATH_MAX];
	config_setting_t *list;
	config_t cfg;
	struct harness_output r;
	int n;

	snprintf(path, sizeof(path), "%s/conf/netechod.conf", SOURCE_ROOT);
	snprintf(dir, sizeof(dir), "%s/conf", SOURCE_ROOT);
	ck_assert_msg(access(path, R_OK) == 0, "%s is missing", path);

	/* The expected rows come from the file itself, read with libconfig. */
	config_init(&cfg);
	config_set_include_dir(&cfg, dir);
	ck_assert_msg(config_read_file(&cfg, path) == CONFIG_TRUE, "%s:%d: %s", path,
		      config_error_line(&cfg), config_error_text(&cfg));
	list = config_lookup(&cfg, "listeners");
	ck_assert_msg(list && config_setting_is_list(list), "%s has no listeners list", path);
	n = config_setting_length(list);
	ck_assert_int_gt(n, 0);

	r = run_netechod("-t", "-c", path, NULL);
	ck_assert_msg(r.status == 0, "-t on %s: exit %d, expected 0; stderr '%s'", path,
		      r.status, r.err);
	for (int i = 0; i < n; i++) {
		config_setting_t *l = config_setting_get_elem(list, (unsigned)i);
		const char *name = NULL, *protocol = NULL, *model = NULL, *service = NULL;
		int port = 0;

		ck_assert(config_setting_lookup_string(l, "name", &name));
		ck_assert(config_setting_lookup_string(l, "protocol", &protocol));
		ck_assert(config_setting_lookup_string(l, "model", &model));
		ck_assert(config_setting_lookup_string(l, "service", &service));
		ck_assert(config_setting_lookup_int(l, "port", &port));
		ck_assert_msg(table_has_row(r.out, name, protocol, port, model, service),
			      "-t output has no row for listener '%s' (%s :%d %s %s):\n%s", name,
			      protocol, port, model, service, r.out);
	}
	harness_output_free(&r);
	config_destroy(&cfg);
}
END_TEST

START_TEST(cli_check_lists_listeners_and_does_not_bind)
{
	static const char text_fmt[] =
		"listeners = (\n"
		"  { name = \"tcp-one\"; protocol = \"tcp\"; address = \"127.0.0.1\"; port = %u;\n"
		"    model = \"fork\"; service = \"echo\"; },\n"
		"  { name = \"udp.two\"; protocol = \"udp\"; address = \"127.0.0.1\"; port = %u;\n"
		"    model = \"epoll\"; service = \"echo\"; workers = 2; },\n"
		"  { name = \"off_3\"; protocol = \"tcp\"; port = 7003; model = \"thread\";\n"
		"    service = \"chat\"; enabled = false; },\n"
		"  { name = \"behind-lb\"; protocol = \"tcp\"; port = 7004; model = \"epoll\";\n"
		"    service = \"echo\"; proxy_protocol = true;\n"
		"    proxy_from = [ \"10.0.0.5/32\", \"10.0.0.6/32\" ]; },\n"
		"  { name = \"shared\"; protocol = \"tcp\"; port = 7005; model = \"epoll\";\n"
		"    service = \"chat\"; backend = \"redis://bob:pa%%3Ass@[::1]:6380/2\";\n"
		"    room = \"hall\"; }\n"
		");\n";
	char text[1024];
	_cleanup_(closep) int busy_tcp = -1, busy_udp = -1;
	uint16_t tport, uport;
	struct harness_output r;

	/* The ports are in use: -t validates only, it must not bind (a
	 * reload runs it while the daemon holds every port). */
	busy_tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	busy_udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	{
		struct sockaddr_in sa = { .sin_family = AF_INET,
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		union sockaddr_any got;
		socklen_t len = sizeof(got);

		ck_assert_int_eq(bind(busy_tcp, (struct sockaddr *)&sa, sizeof(sa)), 0);
		ck_assert_int_eq(listen(busy_tcp, 1), 0);
		ck_assert_int_eq(getsockname(busy_tcp, &got.sa, &len), 0);
		tport = sockaddr_port(&got);
		ck_assert_int_eq(bind(busy_udp, (struct sockaddr *)&sa, sizeof(sa)), 0);
		len = sizeof(got);
		ck_assert_int_eq(getsockname(busy_udp, &got.sa, &len), 0);
		uport = sockaddr_port(&got);
	}
	snprintf(text, sizeof(text), text_fmt, tport, uport);
	r = run_netechod("-t", "-c", write_conf(0, text), NULL);
	ck_assert_msg(r.status == 0, "-t: exit %d, expected 0; stderr '%s'", r.status, r.err);
	ck_assert_msg(table_has_row(r.out, "tcp-one", "tcp", tport, "fork", "echo"),
		      "no row for tcp-one:\n%s", r.out);
	ck_assert_msg(table_has_row(r.out, "udp.two", "udp", uport, "epoll", "echo"),
		      "no row for udp.two:\n%s", r.out);
	ck_assert_msg(table_has_row(r.out, "off_3", "tcp", 7003, "thread", "chat"),
		      "no row for the disabled listener off_3:\n%s", r.out);
	/* A listener behind a balancer says so, and from how many. */
	ck_assert_msg(table_has_row(r.out, "behind-lb", "tcp", 7004, "epoll", "echo") &&
			      strstr(r.out, "proxy_protocol proxy_from=2"),
		      "no row saying behind-lb expects a PROXY header:\n%s", r.out);
	/* The backend shows, its password never (SPEC 12). */
	ck_assert_msg(table_has_row(r.out, "shared", "tcp", 7005, "epoll", "chat") &&
			      strstr(r.out, "backend=redis://bob:***@[::1]:6380/2 room=hall"),
		      "no row with shared's redacted backend and room:\n%s", r.out);
	ck_assert_msg(!strstr(r.out, "pa:ss") && !strstr(r.out, "pa%3Ass"),
		      "-t shows the backend's password:\n%s", r.out);
	harness_output_free(&r);
}
END_TEST

/* Config files with one problem each. Every setting sits on its own line:
 *   1 comment, 2 "listeners = (", 3 "{", 4 name, 5 protocol, 6 port,
 *   7 model, 8 service, 9 address, 10 extra, 11 "}" plus more listeners,
 *   12 ");", 13 top-level extra. */
struct bad_case {
	const char *what;
	const char *name, *protocol, *port, *model, *service;
	const char *extra;  /* line 10 */
	const char *more;   /* appended to line 11 after "}, " */
	const char *global; /* line 13 */
	int line;           /* where the error must point */
	const char *keyword;  /* must appear in the message */
	const char *keyword2; /* and this too, when set */
};

static const struct bad_case bad_cases[] = {
	{ .what = "unknown listener setting", .extra = "colour = \"blue\";", .line = 10,
	  .keyword = "colour" },
	{ .what = "unknown top-level setting", .global = "frobnicate = 1;", .line = 13,
	  .keyword = "frobnicate" },
	{ .what = "unknown model", .model = "\"bogus\"", .line = 7, .keyword = "model",
	  .keyword2 = "epoll" },
	{ .what = "unknown protocol", .protocol = "\"sctp\"", .line = 5, .keyword = "protocol",
	  .keyword2 = "udp" },
	{ .what = "unknown service", .service = "\"daytime\"", .line = 8, .keyword = "service",
	  .keyword2 = "chat" },
	{ .what = "port above 65535", .port = "70000", .line = 6, .keyword = "port" },
	{ .what = "port 0", .port = "0", .line = 6, .keyword = "port" },
	{ .what = "port as a string", .port = "\"7007\"", .line = 6, .keyword = "port" },
	{ .what = "invalid name", .name = "\"bad name!\"", .line = 4, .keyword = "name" },
	{ .what = "name too long", .name = "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"", .line = 4,
	  .keyword = "name" },
	{ .what = "workers on poll", .extra = "workers = 2;", .line = 10, .keyword = "workers" },
	{ .what = "select beyond FD_SETSIZE", .model = "\"select\"",
	  .extra = "max_clients = 100000;", .line = 10, .keyword = "max_clients",
	  .keyword2 = "epoll" },
	{ .what = "max_line too small", .extra = "max_line = 10;", .line = 10,
	  .keyword = "max_line" },
	{ .what = "bad CIDR in allow", .extra = "allow = [ \"300.1.2.3/8\" ];", .line = 10,
	  .keyword = "allow" },
	{ .what = "negative idle_timeout", .extra = "idle_timeout = -1;", .line = 10,
	  .keyword = "idle_timeout" },
	{ .what = "backlog 0", .extra = "backlog = 0;", .line = 10, .keyword = "backlog" },
	{ .what = "enabled as a string", .extra = "enabled = \"yes\";", .line = 10,
	  .keyword = "enabled" },
	{ .what = "bad log_level", .global = "log_level = \"loud\";", .line = 13,
	  .keyword = "log_level" },
	{ .what = "missing service", .service = "", .line = 3, .keyword = "service" },
	{ .what = "duplicate listener name",
	  .more = "{ name = \"one\"; protocol = \"udp\"; port = 7008; model = \"poll\"; service = \"echo\"; }",
	  .line = 11, .keyword = "one" },
	{ .what = "same protocol, address and port twice",
	  .more = "{ name = \"two\"; protocol = \"tcp\"; address = \"127.0.0.1\"; port = 7007; model = \"poll\"; service = \"echo\"; }",
	  .line = 11, .keyword = "7007" },
	{ .what = "proxy_protocol on udp", .protocol = "\"udp\"",
	  .extra = "proxy_protocol = true; proxy_from = [ \"10.0.0.5/32\" ];", .line = 10,
	  .keyword = "proxy_protocol", .keyword2 = "tcp" },
	{ .what = "proxy_protocol without proxy_from", .extra = "proxy_protocol = true;", .line = 10,
	  .keyword = "proxy_protocol", .keyword2 = "proxy_from" },
	{ .what = "backend on echo", .extra = "backend = \"redis://h\";", .line = 10,
	  .keyword = "backend", .keyword2 = "chat" },
	{ .what = "bad backend URL", .service = "\"chat\"", .extra = "backend = \"redis://h:0\";",
	  .line = 10, .keyword = "backend", .keyword2 = "port" },
	{ .what = "bad room", .service = "\"chat\"",
	  .extra = "backend = \"redis://h\"; room = \"a b\";", .line = 10, .keyword = "room" },
	{ .what = "syntax error", .extra = "port2 = ;", .line = 10 },
};

/* "key = value;", the default value when NULL, a comment when "". */
static void
setting(char *buf, size_t len, const char *key, const char *val, const char *def)
{
	if (val && !*val)
		snprintf(buf, len, "# (%s left out)", key);
	else
		snprintf(buf, len, "%s = %s;", key, val ? val : def);
}

static const char *
bad_conf(int n, const struct bad_case *c)
{
	char text[2048], name[128], protocol[64], port[64], model[64], service[64];

	setting(name, sizeof(name), "name", c->name, "\"one\"");
	setting(protocol, sizeof(protocol), "protocol", c->protocol, "\"tcp\"");
	setting(port, sizeof(port), "port", c->port, "7007");
	setting(model, sizeof(model), "model", c->model, "\"poll\"");
	setting(service, sizeof(service), "service", c->service, "\"echo\"");
	snprintf(text, sizeof(text),
		 "# test config with one problem\n"
		 "listeners = (\n"
		 "\t{\n"
		 "\t\t%s\n"
		 "\t\t%s\n"
		 "\t\t%s\n"
		 "\t\t%s\n"
		 "\t\t%s\n"
		 "\t\taddress = \"127.0.0.1\";\n"
		 "\t\t%s\n"
		 "\t}%s%s\n"
		 ");\n"
		 "%s\n",
		 name, protocol, port, model, service, c->extra ? c->extra : "# no extra",
		 c->more ? ", " : "", c->more ? c->more : "",
		 c->global ? c->global : "# no global");
	return write_conf(n, text);
}

START_TEST(cli_check_invalid_config_names_file_and_line)
{
	const struct bad_case *c = &bad_cases[_i];
	const char *path = bad_conf(0, c);
	char where[HARNESS_PATH_MAX + 16];
	struct harness_output r;

	r = run_netechod("-t", "-c", path, NULL);
	ck_assert_msg(r.status == EXIT_CONFIG_CODE, "%s: -t exit %d, expected %d; stderr '%s'",
		      c->what, r.status, EXIT_CONFIG_CODE, r.err);
	snprintf(where, sizeof(where), "%s:%d:", path, c->line);
	ck_assert_msg(strstr(r.err, where), "%s: stderr does not name '%s':\n%s", c->what, where,
		      r.err);
	if (c->keyword)
		ck_assert_msg(strstr(r.err, c->keyword), "%s: stderr does not mention '%s':\n%s",
			      c->what, c->keyword, r.err);
	if (c->keyword2)
		ck_assert_msg(strstr(r.err, c->keyword2),
			      "%s: stderr does not say what is allowed ('%s'):\n%s", c->what,
			      c->keyword2, r.err);
	harness_output_free(&r);

	/* Started for real, the same file is refused the same way. */
	r = run_netechod("-c", path, NULL);
	ck_assert_msg(r.status == EXIT_CONFIG_CODE, "%s: start exit %d, expected %d; stderr '%s'",
		      c->what, r.status, EXIT_CONFIG_CODE, r.err);
	harness_output_free(&r);
}
END_TEST

START_TEST(cli_check_prints_every_error)
{
	static const struct bad_case c = {
		.what = "three problems",
		.port = "70000",
		.extra = "colour = \"blue\";",
		.global = "frobnicate = 1;",
	};
	static const int lines[] = { 6, 10, 13 };
	const char *path = bad_conf(0, &c);
	struct harness_output r = run_netechod("-t", "-c", path, NULL);

	ck_assert_msg(r.status == EXIT_CONFIG_CODE, "exit %d, expected %d", r.status,
		      EXIT_CONFIG_CODE);
	for (size_t i = 0; i < ELEMENTSOF(lines); i++) {
		char where[HARNESS_PATH_MAX + 16];

		snprintf(where, sizeof(where), "%s:%d:", path, lines[i]);
		ck_assert_msg(strstr(r.err, where), "error at line %d not reported:\n%s", lines[i],
			      r.err);
	}
	harness_output_free(&r);
}
END_TEST

START_TEST(cli_missing_config_exits_78)
{
	char path[HARNESS_PATH_MAX];
	struct harness_output r;

	snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
	r = run_netechod("-t", "-c", path, NULL);
	ck_assert_msg(r.status == EXIT_CONFIG_CODE, "-t: exit %d, expected %d", r.status,
		      EXIT_CONFIG_CODE);
	ck_assert_msg(strstr(r.err, path), "-t: stderr does not name %s: '%s'", path, r.err);
	harness_output_free(&r);

	r = run_netechod("-c", path, NULL);
	ck_assert_msg(r.status == EXIT_CONFIG_CODE, "start: exit %d, expected %d", r.status,
		      EXIT_CONFIG_CODE);
	harness_output_free(&r);
}
END_TEST

/* ---- starting for real ---- */

static const char *const protocols[] = { "tcp", "udp" };

START_TEST(cli_port_in_use_exits_71)
{
	const char *protocol = protocols[_i];
	bool tcp = strcmp(protocol, "tcp") == 0;
	_cleanup_(closep) int busy = -1;
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	union sockaddr_any got;
	socklen_t len = sizeof(got);
	char text[512], addr[64];
	uint16_t port;
	struct harness_output r;

	busy = socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(busy, 0);
	ck_assert_int_eq(bind(busy, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (tcp)
		ck_assert_int_eq(listen(busy, 1), 0);
	ck_assert_int_eq(getsockname(busy, &got.sa, &len), 0);
	port = sockaddr_port(&got);

	snprintf(text, sizeof(text),
		 "shutdown_timeout = 1;\n"
		 "listeners = ( { name = \"busy\"; protocol = \"%s\"; address = \"127.0.0.1\";\n"
		 "  port = %u; model = \"poll\"; service = \"echo\"; } );\n",
		 protocol, port);
	r = run_netechod("-c", write_conf(0, text), NULL);
	ck_assert_msg(r.status == EXIT_OSERR_CODE,
		      "%s port %u in use: exit %d, expected %d; stderr '%s'", protocol, port,
		      r.status, EXIT_OSERR_CODE, r.err);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	ck_assert_msg(strstr(r.err, addr), "%s: the error does not name %s:\n%s", protocol, addr,
		      r.err);
	harness_output_free(&r);
}
END_TEST

/* A user or group that does not exist is a configuration error (78, so
 * RestartPreventExitStatus stops the restart loop), found when started as
 * root, after binding and before anything is served. Tagged root: the
 * meson test cli-root runs it, and skips where it is not root. */
START_TEST(cli_unknown_user_exits_78)
{
	static const char *const keys[] = { "user", "group" };
	uint16_t port;
	char text[512];
	struct harness_output r;

	ck_assert_msg(geteuid() == 0, "needs root; run it through harness_main() \"root\"");
	ck_assert_int_eq(harness_free_port(SOCK_STREAM, "127.0.0.1", &port), 0);
	snprintf(text, sizeof(text),
		 "%s = \"netechod-no-such-%s\";\n"
		 "listeners = ( { name = \"e\"; protocol = \"tcp\"; address = \"127.0.0.1\";\n"
		 "  port = %u; model = \"poll\"; service = \"echo\"; } );\n",
		 keys[_i], keys[_i], port);
	r = run_netechod("-c", write_conf(0, text), NULL);
	ck_assert_msg(r.status == EXIT_CONFIG_CODE, "unknown %s: exit %d, expected %d; stderr '%s'",
		      keys[_i], r.status, EXIT_CONFIG_CODE, r.err);
	ck_assert_msg(strstr(r.err, "does not exist"), "unknown %s: stderr '%s'", keys[_i], r.err);
	harness_output_free(&r);
}
END_TEST

START_TEST(cli_binds_itself_without_socket_activation)
{
	struct hdaemon d = { 0 };
	struct hl_listener ls[2] = {
		{ .name = "self-tcp", .protocol = "tcp", .model = "poll", .no_fd = true },
		{ .name = "self-udp", .protocol = "udp", .model = "select", .no_fd = true },
	};
	_cleanup_(closep) int t = -1, u = -1;
	char got[16];
	ssize_t n;
	int r;

	r = harness_start(&d, ls, 2, "shutdown_timeout = 1;");
	ck_assert_msg(r == 0, "netechod binding its own sockets did not get ready: %s",
		      strerror(-r));
	t = harness_tcp_connect(ls[0].port);
	ck_assert_msg(t >= 0, "connect 127.0.0.1:%u: %s", ls[0].port, strerror(-t));
	ck_assert_int_eq(harness_send_all(t, "self", 4, HARNESS_IO_TIMEOUT_MS), 0);
	n = harness_recv_exact(t, got, 4, HARNESS_IO_TIMEOUT_MS);
	ck_assert_msg(n == 4 && memcmp(got, "self", 4) == 0, "tcp echo: %zd", n);

	u = harness_udp_socket(ls[1].port);
	ck_assert_int_ge(u, 0);
	n = harness_udp_roundtrip(u, "dgram", 5, got, sizeof(got), HARNESS_IO_TIMEOUT_MS);
	ck_assert_msg(n == 5 && memcmp(got, "dgram", 5) == 0, "udp echo: %zd", n);

	r = harness_stop(&d, SIGTERM);
	ck_assert_msg(r == 0, "SIGTERM: exit %d, expected 0", r);
	ck_assert_msg(harness_notify_find(&d, "STOPPING=1", 0) >= 0, "no STOPPING=1");
}
END_TEST

static void
echo_via(const char *address, const char *protocol, uint16_t port)
{
	char got[16];
	ssize_t n;
	int fd;

	if (strcmp(protocol, "tcp") == 0) {
		fd = harness_tcp_connect_addr(address, port);
		ck_assert_msg(fd >= 0, "localhost listener: connect [%s]:%u: %s", address, port,
			      strerror(-fd));
		ck_assert_int_eq(harness_send_all(fd, "lo", 2, HARNESS_IO_TIMEOUT_MS), 0);
		n = harness_recv_exact(fd, got, 2, HARNESS_IO_TIMEOUT_MS);
	} else {
		fd = harness_udp_socket_addr(address, 0, port);
		ck_assert_int_ge(fd, 0);
		n = harness_udp_roundtrip(fd, "lo", 2, got, sizeof(got), HARNESS_IO_TIMEOUT_MS);
	}
	safe_close(fd);
	ck_assert_msg(n == 2 && memcmp(got, "lo", 2) == 0,
		      "localhost listener: no %s echo via [%s]:%u (%zd)", protocol, address, port,
		      n);
}

START_TEST(cli_localhost_gets_a_socket_per_address)
{
	struct hdaemon d = { 0 };
	struct hl_listener ls[2] = {
		{ .name = "lo-tcp", .protocol = "tcp", .model = "epoll", .address = "localhost",
		  .no_fd = true },
		{ .name = "lo-udp", .protocol = "udp", .model = "poll", .address = "localhost",
		  .no_fd = true },
	};
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	bool v4 = false, v6 = false;
	int r;

	ck_assert_int_eq(getaddrinfo("localhost", NULL, &hints, &res), 0);
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		char host[64];

		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), NULL, 0,
				NI_NUMERICHOST) != 0)
			continue;
		v4 |= strcmp(host, "127.0.0.1") == 0;
		v6 |= strcmp(host, "::1") == 0;
	}
	freeaddrinfo(res);
	ck_assert_msg(v4, "localhost does not resolve to 127.0.0.1 here");
	if (v6 && !harness_have_ipv6()) {
		fprintf(stderr, "localhost resolves to ::1 but IPv6 loopback is unavailable\n");
		v6 = false;
	}
	if (!v6)
		fprintf(stderr,
			"localhost does not give a usable ::1 here: checking 127.0.0.1 only\n");

	r = harness_start(&d, ls, 2, NULL);
	ck_assert_msg(r == 0, "netechod with address \"localhost\" did not get ready: %s",
		      strerror(-r));
	for (size_t i = 0; i < ELEMENTSOF(ls); i++) {
		echo_via("127.0.0.1", ls[i].protocol, ls[i].port);
		if (v6)
			echo_via("::1", ls[i].protocol, ls[i].port);
	}
	r = harness_stop(&d, SIGTERM);
	ck_assert_msg(r == 0, "SIGTERM: exit %d, expected 0", r);
}
END_TEST

static const int stop_signals[] = { SIGTERM, SIGINT };

START_TEST(cli_stop_signal_exits_0)
{
	int sig = stop_signals[_i];
	struct hdaemon d = { 0 };
	struct hl_listener l = { .name = "sig", .protocol = "tcp", .model = "thread" };
	int r;

	r = harness_start(&d, &l, 1, NULL);
	ck_assert_msg(r == 0, "netechod did not start: %s", strerror(-r));
	r = harness_stop(&d, sig);
	ck_assert_msg(r == 0, "%s: exit %d, expected 0", strsignal(sig), r);
	ck_assert_msg(harness_notify_find(&d, "STOPPING=1", 0) >
			      harness_notify_find(&d, "READY=1", 0),
		      "%s: no STOPPING=1 after READY=1", strsignal(sig));
}
END_TEST

static Suite *
cli_suite(void)
{
	Suite *s = suite_create("cli");
	TCase *tc;

	tc = tcase_create("options");
	tcase_add_checked_fixture(tc, tmpdir_setup, tmpdir_teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_loop_test(tc, cli_version_prints_version, 0, ELEMENTSOF(version_args));
	tcase_add_loop_test(tc, cli_help_prints_usage, 0, ELEMENTSOF(help_args));
	tcase_add_loop_test(tc, cli_usage_errors_exit_64, 0, ELEMENTSOF(usage_cases));
	suite_add_tcase(s, tc);

	tc = tcase_create("check");
	tcase_add_checked_fixture(tc, tmpdir_setup, tmpdir_teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_test(tc, cli_check_shipped_config_lists_every_listener);
	tcase_add_test(tc, cli_check_lists_listeners_and_does_not_bind);
	tcase_add_loop_test(tc, cli_check_invalid_config_names_file_and_line, 0,
			    ELEMENTSOF(bad_cases));
	tcase_add_test(tc, cli_check_prints_every_error);
	tcase_add_test(tc, cli_missing_config_exits_78);
	suite_add_tcase(s, tc);

	tc = tcase_create("check-root");
	tcase_set_tags(tc, HARNESS_TAG_ROOT);
	tcase_add_checked_fixture(tc, tmpdir_setup, tmpdir_teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_loop_test(tc, cli_unknown_user_exits_78, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("start");
	tcase_add_checked_fixture(tc, tmpdir_setup, tmpdir_teardown);
	tcase_set_timeout(tc, TCASE_TIMEOUT);
	tcase_add_loop_test(tc, cli_port_in_use_exits_71, 0, ELEMENTSOF(protocols));
	tcase_add_test(tc, cli_binds_itself_without_socket_activation);
	tcase_add_test(tc, cli_localhost_gets_a_socket_per_address);
	tcase_add_loop_test(tc, cli_stop_signal_exits_0, 0, ELEMENTSOF(stop_signals));
	suite_add_tcase(s, tc);
	return s;
}

int
main(int argc, char **argv)
{
	return harness_main(cli_suite(), argc, argv);
}
