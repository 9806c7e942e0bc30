#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <check.h>

#include "cidr.h"
#include "config.h"
#include "util.h"

/* One listener "a" on port 7, with extra settings spliced in. */
#define LISTENER(proto, model, service, extra)                                                   \
	"{ name = \"a\"; protocol = \"" proto "\"; port = 7; model = \"" model "\"; service = \"" \
	service "\"; " extra " }"
#define ONE(proto, model, service, extra)                                                        \
	"listeners = ( " LISTENER(proto, model, service, extra) " );\n"
#define TCP_ECHO(extra) ONE("tcp", "poll", "echo", extra)
#define TCP_CHAT(extra) ONE("tcp", "poll", "chat", extra)
#define UDP_ECHO(extra) ONE("udp", "poll", "echo", extra)
#define EPOLL(extra) ONE("tcp", "epoll", "echo", extra)
#define VALID TCP_ECHO("")
#define DEFAULTS(d, l) "defaults = { " d " };\n" l

/* Two listeners, "a" then "b" on the next line. */
#define TWO(a, b)                                                                                \
	"listeners = ( { name = \"a\"; " a " },\n"                                               \
	"  { name = \"b\"; " b " } );\n"
#define BIND(proto, addr)                                                                        \
	"protocol = \"" proto "\"; address = \"" addr "\"; model = \"poll\"; service = \"echo\"; "

#define NAME32 "abcdefghijklmnopqrstuvwxyz012345"
#define S64 "0123456789012345678901234567890123456789012345678901234567890123"
#define LABEL63 "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0"
#define LABEL61 "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxy"
#define HOST253 LABEL63 "." LABEL63 "." LABEL63 "." LABEL61

struct config_case {
	const char *name;
	const char *text;
	const char *error; /* substring of one error message; NULL: the config is valid */
	int line;          /* line of that error */
};

static void
dump_errors(const struct config_errors *e)
{
	for (size_t i = 0; i < e->n_errors; i++)
		fprintf(stderr, "  %s:%d: %s\n", e->errors[i].file, e->errors[i].line,
			e->errors[i].message);
}

static void
check_case(const struct config_case *t)
{
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };
	bool found = false;
	int r;

	r = config_load_string(t->text, "test.conf", NULL, &c, &e);
	if (!t->error) {
		if (r != 0 || e.n_errors != 0) {
			fprintf(stderr, "%s: unexpected errors:\n", t->name);
			dump_errors(&e);
		}
		ck_assert_msg(r == 0, "%s: expected valid, got %d", t->name, r);
		ck_assert_ptr_nonnull(c);
		ck_assert_uint_eq(e.n_errors, 0);
		return;
	}

	ck_assert_msg(r == CONFIG_E_INVALID, "%s: expected CONFIG_E_INVALID, got %d", t->name, r);
	ck_assert_ptr_null(c);
	for (size_t i = 0; i < e.n_errors; i++) {
		ck_assert_str_eq(e.errors[i].file, "test.conf");
		if (strstr(e.errors[i].message, t->error) && e.errors[i].line == t->line)
			found = true;
	}
	if (!found) {
		fprintf(stderr, "%s: no error \"%s\" at line %d among:\n", t->name, t->error,
			t->line);
		dump_errors(&e);
	}
	ck_assert_msg(found, "%s: expected error \"%s\" at line %d", t->name, t->error, t->line);
	config_errors_clear(&e);
}

#define CASE_TEST(fn, table)                                                                     \
	START_TEST(fn)                                                                           \
	{                                                                                        \
		check_case(&table[_i]);                                                          \
	}                                                                                        \
	END_TEST

static const struct config_case top_level_cases[] = {
	{ "minimal", VALID, NULL, 0 },
	{ "log_level_debug", "log_level = \"debug\";\n" VALID, NULL, 0 },
	{ "log_level_info", "log_level = \"info\";\n" VALID, NULL, 0 },
	{ "log_level_notice", "log_level = \"notice\";\n" VALID, NULL, 0 },
	{ "log_level_warning", "log_level = \"warning\";\n" VALID, NULL, 0 },
	{ "log_level_error", "log_level = \"error\";\n" VALID, NULL, 0 },
	{ "log_level_unknown", "log_level = \"verbose\";\n" VALID,
	  "log_level: unknown value 'verbose'; allowed: debug, info, notice, warning, error", 1 },
	{ "log_level_case", "log_level = \"INFO\";\n" VALID, "log_level: unknown value 'INFO'", 1 },
	{ "log_level_int", "log_level = 7;\n" VALID, "log_level: expected a string, got an integer", 1 },
	{ "user", "user = \"netechod\";\ngroup = \"netechod\";\n" VALID, NULL, 0 },
	{ "user_empty", "user = \"\";\n" VALID, "user: must not be empty", 1 },
	{ "user_int", "user = 0;\n" VALID, "user: expected a string, got an integer", 1 },
	{ "group_empty", "\ngroup = \"\";\n" VALID, "group: must not be empty", 2 },
	{ "group_bool", "group = true;\n" VALID, "group: expected a string, got a boolean", 1 },
	{ "shutdown_timeout_min", "shutdown_timeout = 0;\n" VALID, NULL, 0 },
	{ "shutdown_timeout_max", "shutdown_timeout = 3600;\n" VALID, NULL, 0 },
	{ "shutdown_timeout_int64", "shutdown_timeout = 60L;\n" VALID, NULL, 0 },
	{ "shutdown_timeout_below", "shutdown_timeout = -1;\n" VALID,
	  "shutdown_timeout: -1 is out of range; allowed: 0-3600", 1 },
	{ "shutdown_timeout_above", "shutdown_timeout = 3601;\n" VALID,
	  "shutdown_timeout: 3601 is out of range; allowed: 0-3600", 1 },
	{ "shutdown_timeout_int64_above", "shutdown_timeout = 5000000000L;\n" VALID,
	  "shutdown_timeout: 5000000000 is out of range; allowed: 0-3600", 1 },
	{ "shutdown_timeout_string", "shutdown_timeout = \"5\";\n" VALID,
	  "shutdown_timeout: expected an integer, got a string", 1 },
	{ "shutdown_timeout_float", "shutdown_timeout = 5.0;\n" VALID,
	  "shutdown_timeout: expected an integer, got a floating-point number", 1 },
	{ "unknown_top_level", "colour = \"red\";\n" VALID,
	  "unknown setting 'colour'; allowed: log_level, user, group, shutdown_timeout, defaults, "
	  "listeners",
	  1 },
	{ "unknown_top_level_group", VALID "extra = { a = 1; };\n", "unknown setting 'extra'", 2 },
	{ "defaults_not_group", "defaults = 5;\n" VALID, "defaults: expected a group", 1 },
	{ "listeners_missing", "log_level = \"info\";\n", "no listeners defined", 0 },
	{ "listeners_empty_list", "listeners = ( );\n", "no listeners defined", 1 },
	{ "listeners_empty_array", "\nlisteners = [ ];\n", "no listeners defined", 2 },
	{ "listeners_group", "listeners = { name = \"a\"; };\n",
	  "listeners: expected a list of groups", 1 },
	{ "listeners_string", "listeners = \"a\";\n", "listeners: expected a list of groups ( { ... }, ... ), got a string",
	  1 },
	{ "listener_not_group", "listeners = ( 5 );\n",
	  "listener #1: expected a group { name = ...; ... }, got an integer", 1 },
	{ "listener_array", "listeners = ( [ 1, 2 ] );\n", "listener #1: expected a group", 1 },
	{ "second_listener_not_group", "listeners = ( " LISTENER("tcp", "poll", "echo", "") ",\n"
				       "  \"b\" );\n",
	  "listener #2: expected a group { name = ...; ... }, got a string", 2 },
};
CASE_TEST(config_top_level, top_level_cases)

static const struct config_case required_cases[] = {
	{ "name_missing",
	  "listeners = ( { protocol = \"tcp\"; port = 7; model = \"poll\"; service = \"echo\"; } );\n",
	  "listener #1: missing required setting 'name'", 1 },
	{ "protocol_missing",
	  "listeners = ( { name = \"a\"; port = 7; model = \"poll\"; service = \"echo\"; } );\n",
	  "listener 'a': missing required setting 'protocol'; allowed: tcp, udp", 1 },
	{ "port_missing",
	  "listeners = ( { name = \"a\"; protocol = \"tcp\"; model = \"poll\"; service = \"echo\"; } );\n",
	  "listener 'a': missing required setting 'port'; allowed: 1-65535", 1 },
	{ "model_missing",
	  "listeners = ( { name = \"a\"; protocol = \"tcp\"; port = 7; service = \"echo\"; } );\n",
	  "listener 'a': missing required setting 'model'; allowed: fork, thread, select, poll, epoll",
	  1 },
	{ "service_missing",
	  "listeners = ( { name = \"a\"; protocol = \"tcp\"; port = 7; model = \"poll\"; } );\n",
	  "listener 'a': missing required setting 'service'; allowed: echo, chat, discard, chargen, metrics", 1 },
	{ "missing_at_group_line",
	  "log_level = \"info\";\nlisteners = (\n  {\n    name = \"a\";\n    protocol = \"tcp\";\n"
	  "    model = \"poll\";\n    service = \"echo\";\n  }\n);\n",
	  "listener 'a': missing required setting 'port'", 3 },
	{ "unknown_listener_key", TCP_ECHO("colour = \"red\";"),
	  "listener 'a': unknown setting 'colour'; allowed: name, protocol, port, model, service, "
	  "address, enabled, max_clients, per_source, idle_timeout, backlog, workers, allow, deny, "
	  "rate_limit, max_line, prefix",
	  1 },
	{ "unknown_listener_key_line",
	  "listeners = (\n  { name = \"a\"; protocol = \"tcp\"; port = 7; model = \"poll\";\n"
	  "    service = \"echo\";\n    colour = 1; }\n);\n",
	  "listener 'a': unknown setting 'colour'", 4 },
};
CASE_TEST(config_required_and_unknown, required_cases)

static const struct config_case name_cases[] = {
	{ "name_one_char", "listeners = ( { name = \"x\"; protocol = \"tcp\"; port = 7; "
			   "model = \"poll\"; service = \"echo\"; } );\n",
	  NULL, 0 },
	{ "name_32_chars", "listeners = ( { name = \"" NAME32 "\"; protocol = \"tcp\"; port = 7; "
			   "model = \"poll\"; service = \"echo\"; } );\n",
	  NULL, 0 },
	{ "name_all_classes", "listeners = ( { name = \"Az09_.-\"; protocol = \"tcp\"; port = 7; "
			      "model = \"poll\"; service = \"echo\"; } );\n",
	  NULL, 0 },
	{ "name_33_chars", "listeners = ( { name = \"" NAME32 "6\"; protocol = \"tcp\"; port = 7; "
			   "model = \"poll\"; service = \"echo\"; } );\n",
	  "listener #1: name: '" NAME32 "6' is not valid; allowed: 1-32 characters of A-Z a-z 0-9 _ . -",
	  1 },
	{ "name_empty", "listeners = ( { name = \"\"; protocol = \"tcp\"; port = 7; "
			"model = \"poll\"; service = \"echo\"; } );\n",
	  "listener #1: name: '' is not valid", 1 },
	{ "name_space", "listeners = ( { name = \"a b\"; protocol = \"tcp\"; port = 7; "
			"model = \"poll\"; service = \"echo\"; } );\n",
	  "name: 'a b' is not valid", 1 },
	{ "name_slash", "listeners = ( { name = \"a/b\"; protocol = \"tcp\"; port = 7; "
			"model = \"poll\"; service = \"echo\"; } );\n",
	  "name: 'a/b' is not valid", 1 },
	{ "name_non_ascii", "listeners = ( { name = \"caf\xc3\xa9\"; protocol = \"tcp\"; port = 7; "
			    "model = \"poll\"; service = \"echo\"; } );\n",
	  "is not valid; allowed: 1-32 characters", 1 },
	{ "name_int", "listeners = ( { name = 5; protocol = \"tcp\"; port = 7; "
		      "model = \"poll\"; service = \"echo\"; } );\n",
	  "listener #1: name: expected a string, got an integer", 1 },
	{ "name_invalid_listener_numbered",
	  "listeners = ( { name = \"a\"; protocol = \"tcp\"; port = 7; model = \"poll\"; "
	  "service = \"echo\"; },\n"
	  "  { name = \"b b\"; protocol = \"tcp\"; port = 8; model = \"poll\"; service = \"echo\"; "
	  "port2 = 1; } );\n",
	  "listener #2: unknown setting 'port2'", 2 },
	{ "name_valid_listener_named",
	  "listeners = ( { name = \"a\"; protocol = \"tcp\"; port = 7; model = \"poll\"; "
	  "service = \"echo\"; },\n"
	  "  { name = \"b\"; protocol = \"tcp\"; port = 8; model = \"poll\"; service = \"echo\"; "
	  "port2 = 1; } );\n",
	  "listener 'b': unknown setting 'port2'", 2 },
	{ "name_duplicate",
	  "listeners = ( { name = \"a\"; protocol = \"tcp\"; port = 7; model = \"poll\"; "
	  "service = \"echo\"; },\n"
	  "  { name = \"a\"; protocol = \"udp\"; port = 7; model = \"poll\"; service = \"echo\"; } );\n",
	  "listener 'a': name: 'a' is already used by the listener at line 1", 2 },
	{ "name_duplicate_disabled_too",
	  "listeners = ( { name = \"a\"; protocol = \"tcp\"; port = 7; model = \"poll\"; "
	  "service = \"echo\"; enabled = false; },\n\n"
	  "  { name = \"a\"; protocol = \"tcp\"; port = 8; model = \"poll\"; service = \"echo\"; } );\n",
	  "name: 'a' is already used by the listener at line 1", 3 },
	{ "name_differs_by_case",
	  "listeners = ( { name = \"a\"; protocol = \"tcp\"; port = 7; model = \"poll\"; "
	  "service = \"echo\"; },\n"
	  "  { name = \"A\"; protocol = \"tcp\"; port = 8; model = \"poll\"; service = \"echo\"; } );\n",
	  NULL, 0 },
};
CASE_TEST(config_names, name_cases)

static const struct config_case enum_cases[] = {
	{ "protocol_tcp", ONE("tcp", "poll", "echo", ""), NULL, 0 },
	{ "protocol_udp", ONE("udp", "poll", "echo", ""), NULL, 0 },
	{ "protocol_unknown", ONE("sctp", "poll", "echo", ""),
	  "listener 'a': protocol: unknown value 'sctp'; allowed: tcp, udp", 1 },
	{ "protocol_case", ONE("TCP", "poll", "echo", ""), "protocol: unknown value 'TCP'", 1 },
	{ "protocol_int", "listeners = ( { name = \"a\"; protocol = 6; port = 7; model = \"poll\"; "
			  "service = \"echo\"; } );\n",
	  "listener 'a': protocol: expected a string, got an integer", 1 },
	{ "model_fork", ONE("tcp", "fork", "echo", ""), NULL, 0 },
	{ "model_thread", ONE("tcp", "thread", "echo", ""), NULL, 0 },
	{ "model_select", ONE("tcp", "select", "echo", ""), NULL, 0 },
	{ "model_poll", ONE("tcp", "poll", "echo", ""), NULL, 0 },
	{ "model_epoll", ONE("tcp", "epoll", "echo", ""), NULL, 0 },
	{ "model_unknown", ONE("tcp", "kqueue", "echo", ""),
	  "listener 'a': model: unknown value 'kqueue'; allowed: fork, thread, select, poll, epoll",
	  1 },
	{ "model_empty", ONE("tcp", "", "echo", ""), "model: unknown value ''", 1 },
	{ "service_echo", ONE("tcp", "poll", "echo", ""), NULL, 0 },
	{ "service_chat", ONE("tcp", "poll", "chat", ""), NULL, 0 },
	{ "service_discard", ONE("tcp", "poll", "discard", ""), NULL, 0 },
	{ "service_discard_udp", ONE("udp", "fork", "discard", ""), NULL, 0 },
	{ "service_chargen", ONE("tcp", "thread", "chargen", ""), NULL, 0 },
	{ "service_chargen_udp", ONE("udp", "poll", "chargen", ""),
	  "listener 'a': service chargen is tcp only: udp chargen is a traffic amplifier; use protocol \"tcp\"",
	  1 },
	{ "service_metrics", ONE("tcp", "epoll", "metrics", "workers = 2;"), NULL, 0 },
	{ "service_metrics_udp", ONE("udp", "poll", "metrics", ""),
	  "listener 'a': service metrics is tcp only (HTTP); use protocol \"tcp\"", 1 },
	{ "service_unknown", ONE("tcp", "poll", "daytime", ""),
	  "listener 'a': service: unknown value 'daytime'; allowed: echo, chat, discard, chargen, metrics", 1 },
	{ "service_list", "listeners = ( { name = \"a\"; protocol = \"tcp\"; port = 7; "
			  "model = \"poll\"; service = ( \"echo\" ); } );\n",
	  "service: expected a string, got a list", 1 },
	{ "enabled_true", TCP_ECHO("enabled = true;"), NULL, 0 },
	{ "enabled_false", TCP_ECHO("enabled = false;"), NULL, 0 },
	{ "enabled_int", TCP_ECHO("enabled = 1;"),
	  "listener 'a': enabled: expected a boolean (true or false), got an integer", 1 },
	{ "enabled_string", TCP_ECHO("enabled = \"yes\";"),
	  "enabled: expected a boolean (true or false), got a string", 1 },
};
CASE_TEST(config_enums_and_booleans, enum_cases)

#define PORT(v)                                                                                  \
	"listeners = ( { name = \"a\"; protocol = \"tcp\"; port = " v "; model = \"poll\"; "     \
	"service = \"echo\"; } );\n"

static const struct config_case range_cases[] = {
	{ "port_min", PORT("1"), NULL, 0 },
	{ "port_max", PORT("65535"), NULL, 0 },
	{ "port_hex", PORT("0x1F90"), NULL, 0 },
	{ "port_int64", PORT("7L"), NULL, 0 },
	{ "port_below", PORT("0"), "listener 'a': port: 0 is out of range; allowed: 1-65535", 1 },
	{ "port_above", PORT("65536"), "listener 'a': port: 65536 is out of range; allowed: 1-65535", 1 },
	{ "port_far_above", PORT("70000"), "listener 'a': port: 70000 is out of range; allowed: 1-65535",
	  1 },
	{ "port_negative", PORT("-7"), "port: -7 is out of range", 1 },
	{ "port_int64_above", PORT("4294967303L"), "port: 4294967303 is out of range", 1 },
	{ "port_string", PORT("\"7\""), "listener 'a': port: expected an integer, got a string", 1 },
	{ "port_float", PORT("7.0"), "port: expected an integer, got a floating-point number", 1 },
	{ "port_bool", PORT("true"), "port: expected an integer, got a boolean", 1 },
	{ "port_array", PORT("[ 7 ]"), "port: expected an integer, got an array", 1 },
	{ "port_group", PORT("{ a = 7; }"), "port: expected an integer, got a group", 1 },
	{ "max_clients_min", TCP_ECHO("max_clients = 1;"), NULL, 0 },
	{ "max_clients_max", TCP_ECHO("max_clients = 1048576;"), NULL, 0 },
	{ "max_clients_below", TCP_ECHO("max_clients = 0;"),
	  "max_clients: 0 is out of range; allowed: 1-1048576", 1 },
	{ "max_clients_above", TCP_ECHO("max_clients = 1048577;"),
	  "max_clients: 1048577 is out of range; allowed: 1-1048576", 1 },
	{ "max_clients_string", TCP_ECHO("max_clients = \"many\";"),
	  "max_clients: expected an integer, got a string", 1 },
	{ "per_source_min", TCP_ECHO("per_source = 0;"), NULL, 0 },
	{ "per_source_max", TCP_ECHO("per_source = 1048576;"), NULL, 0 },
	{ "per_source_below", TCP_ECHO("per_source = -1;"),
	  "per_source: -1 is out of range; allowed: 0-1048576", 1 },
	{ "per_source_above", TCP_ECHO("per_source = 1048577;"),
	  "per_source: 1048577 is out of range; allowed: 0-1048576", 1 },
	{ "per_source_bool", TCP_ECHO("per_source = false;"),
	  "per_source: expected an integer, got a boolean", 1 },
	{ "idle_timeout_min", TCP_ECHO("idle_timeout = 0;"), NULL, 0 },
	{ "idle_timeout_max", TCP_ECHO("idle_timeout = 2147483;"), NULL, 0 },
	{ "idle_timeout_below", TCP_ECHO("idle_timeout = -1;"),
	  "idle_timeout: -1 is out of range; allowed: 0-2147483", 1 },
	{ "idle_timeout_above", TCP_ECHO("idle_timeout = 2147484;"),
	  "idle_timeout: 2147484 is out of range; allowed: 0-2147483", 1 },
	{ "idle_timeout_float", TCP_ECHO("idle_timeout = 1.5;"),
	  "idle_timeout: expected an integer, got a floating-point number", 1 },
	{ "backlog_min", TCP_ECHO("backlog = 1;"), NULL, 0 },
	{ "backlog_max", TCP_ECHO("backlog = 65535;"), NULL, 0 },
	{ "backlog_below", TCP_ECHO("backlog = 0;"), "backlog: 0 is out of range; allowed: 1-65535", 1 },
	{ "backlog_above", TCP_ECHO("backlog = 65536;"),
	  "backlog: 65536 is out of range; allowed: 1-65535", 1 },
	{ "backlog_string", TCP_ECHO("backlog = \"128\";"), "backlog: expected an integer, got a string",
	  1 },
	{ "workers_min", EPOLL("workers = 1;"), NULL, 0 },
	{ "workers_max", EPOLL("workers = 256;"), NULL, 0 },
	{ "workers_below", EPOLL("workers = 0;"), "workers: 0 is out of range; allowed: 1-256", 1 },
	{ "workers_above", EPOLL("workers = 257;"), "workers: 257 is out of range; allowed: 1-256", 1 },
	{ "workers_string", EPOLL("workers = \"2\";"), "workers: expected an integer, got a string", 1 },
	{ "rate_limit_min", UDP_ECHO("rate_limit = 0;"), NULL, 0 },
	{ "rate_limit_max", UDP_ECHO("rate_limit = 1000000;"), NULL, 0 },
	{ "rate_limit_below", UDP_ECHO("rate_limit = -1;"),
	  "rate_limit: -1 is out of range; allowed: 0-1000000", 1 },
	{ "rate_limit_above", UDP_ECHO("rate_limit = 1000001;"),
	  "rate_limit: 1000001 is out of range; allowed: 0-1000000", 1 },
	{ "rate_limit_string", UDP_ECHO("rate_limit = \"10\";"),
	  "rate_limit: expected an integer, got a string", 1 },
	{ "max_line_min", TCP_CHAT("max_line = 64;"), NULL, 0 },
	{ "max_line_max", TCP_CHAT("max_line = 65536;"), NULL, 0 },
	{ "max_line_below", TCP_CHAT("max_line = 63;"),
	  "max_line: 63 is out of range; allowed: 64-65536", 1 },
	{ "max_line_above", TCP_CHAT("max_line = 65537;"),
	  "max_line: 65537 is out of range; allowed: 64-65536", 1 },
	{ "max_line_float", TCP_CHAT("max_line = 100.0;"),
	  "max_line: expected an integer, got a floating-point number", 1 },
	{ "range_error_line", "listeners = (\n  { name = \"a\"; protocol = \"tcp\"; model = \"poll\";\n"
			      "    service = \"echo\";\n\n    port = 99999; }\n);\n",
	  "listener 'a': port: 99999 is out of range", 5 },
};
CASE_TEST(config_integer_ranges, range_cases)

#define ADDRESS(v) TCP_ECHO("address = " v ";")

static const struct config_case address_cases[] = {
	{ "address_star", ADDRESS("\"*\""), NULL, 0 },
	{ "address_ipv4", ADDRESS("\"127.0.0.1\""), NULL, 0 },
	{ "address_ipv4_any", ADDRESS("\"0.0.0.0\""), NULL, 0 },
	{ "address_ipv6", ADDRESS("\"::1\""), NULL, 0 },
	{ "address_ipv6_any", ADDRESS("\"::\""), NULL, 0 },
	{ "address_ipv6_full", ADDRESS("\"2001:db8:0:0:0:0:0:1\""), NULL, 0 },
	{ "address_ipv4_mapped", ADDRESS("\"::ffff:127.0.0.1\""), NULL, 0 },
	{ "address_localhost", ADDRESS("\"localhost\""), NULL, 0 },
	{ "address_fqdn", ADDRESS("\"echo-1.example.com\""), NULL, 0 },
	{ "address_fqdn_dot", ADDRESS("\"echo.example.com.\""), NULL, 0 },
	{ "address_digit_label", ADDRESS("\"1and1.example.com\""), NULL, 0 },
	{ "address_label_63", ADDRESS("\"" LABEL63 ".com\""), NULL, 0 },
	{ "address_253", ADDRESS("\"" HOST253 "\""), NULL, 0 },
	{ "address_253_and_dot", ADDRESS("\"" HOST253 ".\""), NULL, 0 },
	{ "address_254", ADDRESS("\"" HOST253 "x\""), "listener 'a': address: '" HOST253 "x' is not valid",
	  1 },
	{ "address_label_64", ADDRESS("\"" LABEL63 "1.com\""), "is not valid", 1 },
	{ "address_empty", ADDRESS("\"\""),
	  "listener 'a': address: '' is not valid; allowed: \"*\" (all interfaces), an IPv4 or IPv6 "
	  "address, or a host name",
	  1 },
	{ "address_double_dot", ADDRESS("\"bad..host\""), "address: 'bad..host' is not valid", 1 },
	{ "address_leading_dot", ADDRESS("\".example.com\""), "address: '.example.com' is not valid",
	  1 },
	{ "address_only_dot", ADDRESS("\".\""), "address: '.' is not valid", 1 },
	{ "address_leading_hyphen", ADDRESS("\"-a.com\""), "address: '-a.com' is not valid", 1 },
	{ "address_trailing_hyphen", ADDRESS("\"a-.com\""), "address: 'a-.com' is not valid", 1 },
	{ "address_underscore", ADDRESS("\"my_host\""), "address: 'my_host' is not valid", 1 },
	{ "address_space", ADDRESS("\"my host\""), "address: 'my host' is not valid", 1 },
	{ "address_bad_ipv4", ADDRESS("\"10.0.0.256\""), "address: '10.0.0.256' is not valid", 1 },
	{ "address_short_ipv4", ADDRESS("\"10.1\""), "address: '10.1' is not valid", 1 },
	{ "address_with_port", ADDRESS("\"127.0.0.1:7\""), "address: '127.0.0.1:7' is not valid", 1 },
	{ "address_bracketed", ADDRESS("\"[::1]\""), "address: '[::1]' is not valid", 1 },
	{ "address_cidr", ADDRESS("\"10.0.0.0/8\""), "address: '10.0.0.0/8' is not valid", 1 },
	{ "address_star_star", ADDRESS("\"**\""), "address: '**' is not valid", 1 },
	{ "address_int", ADDRESS("0"), "listener 'a': address: expected a string, got an integer", 1 },
};
CASE_TEST(config_addresses, address_cases)

static const struct config_case workers_cases[] = {
	{ "workers_udp_fork", ONE("udp", "fork", "echo", "workers = 4;"), NULL, 0 },
	{ "workers_udp_thread", ONE("udp", "thread", "chat", "workers = 4;"), NULL, 0 },
	{ "workers_tcp_epoll", ONE("tcp", "epoll", "echo", "workers = 4;"), NULL, 0 },
	{ "workers_udp_epoll", ONE("udp", "epoll", "chat", "workers = 4;"), NULL, 0 },
	{ "workers_one_anywhere", ONE("tcp", "select", "echo", "workers = 1;"), NULL, 0 },
	{ "workers_tcp_fork", ONE("tcp", "fork", "echo", "workers = 2;"),
	  "listener 'a': workers: must be 1 for tcp/fork; workers > 1 applies to udp fork/thread "
	  "and to epoll",
	  1 },
	{ "workers_tcp_thread", ONE("tcp", "thread", "echo", "workers = 2;"),
	  "workers: must be 1 for tcp/thread", 1 },
	{ "workers_tcp_select", ONE("tcp", "select", "echo", "workers = 2;"),
	  "workers: must be 1 for tcp/select", 1 },
	{ "workers_tcp_poll", ONE("tcp", "poll", "echo", "workers = 2;"),
	  "listener 'a': workers: must be 1 for tcp/poll; workers > 1 applies to udp fork/thread "
	  "and to epoll",
	  1 },
	{ "workers_udp_select", ONE("udp", "select", "echo", "workers = 2;"),
	  "workers: must be 1 for udp/select", 1 },
	{ "workers_udp_poll", ONE("udp", "poll", "echo", "workers = 2;"),
	  "workers: must be 1 for udp/poll", 1 },
};
CASE_TEST(config_workers, workers_cases)

static const struct config_case select_cases[] = {
	{ "select_tcp_at_limit", ONE("tcp", "select", "echo", "max_clients = 960;"), NULL, 0 },
	{ "select_tcp_over_limit", ONE("tcp", "select", "echo", "max_clients = 961;"),
	  "listener 'a': max_clients: 961 does not fit select(2) (at most 960 with FD_SETSIZE 1024); "
	  "use model \"poll\" or \"epoll\"",
	  1 },
	{ "select_tcp_2000", ONE("tcp", "select", "chat", "max_clients = 2000;"),
	  "listener 'a': max_clients: 2000 does not fit select(2)", 1 },
	{ "poll_tcp_2000", ONE("tcp", "poll", "echo", "max_clients = 2000;"), NULL, 0 },
	{ "epoll_tcp_2000", ONE("tcp", "epoll", "echo", "max_clients = 2000;"), NULL, 0 },
	{ "select_udp_2000", ONE("udp", "select", "chat", "max_clients = 2000;"), NULL, 0 },
	{ "select_inherited",
	  "defaults = { max_clients = 2000; };\n"
	  "listeners = (\n  " LISTENER("tcp", "select", "echo", "") "\n);\n",
	  "listener 'a': max_clients: 2000 does not fit select(2) (at most 960 with FD_SETSIZE 1024); "
	  "use model \"poll\" or \"epoll\" (max_clients is inherited from defaults at line 1)",
	  3 },
	{ "select_inherited_overridden",
	  "defaults = { max_clients = 2000; };\n" ONE("tcp", "select", "echo", "max_clients = 100;"),
	  NULL, 0 },
	{ "select_inherited_by_poll_fine",
	  "defaults = { max_clients = 2000; };\n" ONE("tcp", "poll", "echo", ""), NULL, 0 },
};
CASE_TEST(config_select_fd_setsize, select_cases)

static const struct config_case service_key_cases[] = {
	{ "rate_limit_tcp_echo", ONE("tcp", "poll", "echo", "rate_limit = 5;"),
	  "listener 'a': rate_limit applies to udp listeners and to chat", 1 },
	{ "rate_limit_zero_tcp_echo", ONE("tcp", "fork", "echo", "rate_limit = 0;"),
	  "rate_limit applies to udp listeners and to chat", 1 },
	{ "rate_limit_tcp_chat", ONE("tcp", "poll", "chat", "rate_limit = 5;"), NULL, 0 },
	{ "rate_limit_udp_echo", ONE("udp", "poll", "echo", "rate_limit = 5;"), NULL, 0 },
	{ "rate_limit_udp_chat", ONE("udp", "poll", "chat", "rate_limit = 5;"), NULL, 0 },
	{ "max_line_chat", ONE("udp", "thread", "chat", "max_line = 512;"), NULL, 0 },
	{ "max_line_echo", ONE("tcp", "poll", "echo", "max_line = 512;"),
	  "listener 'a': max_line applies only to service chat", 1 },
	{ "max_line_udp_echo", ONE("udp", "poll", "echo", "max_line = 1024;"),
	  "max_line applies only to service chat", 1 },
	{ "prefix_echo", ONE("tcp", "fork", "echo", "prefix = \"%p: \";"), NULL, 0 },
	{ "prefix_udp_echo", ONE("udp", "fork", "echo", "prefix = \"[%l] \";"), NULL, 0 },
	{ "prefix_chat", ONE("tcp", "poll", "chat", "prefix = \"x\";"),
	  "listener 'a': prefix applies only to service echo", 1 },
	{ "rate_limit_udp_discard", ONE("udp", "poll", "discard", "rate_limit = 5;"),
	  "listener 'a': rate_limit applies to echo and chat, not to service discard", 1 },
	{ "rate_limit_chargen", ONE("tcp", "epoll", "chargen", "rate_limit = 5;"),
	  "rate_limit applies to echo and chat, not to service chargen", 1 },
	{ "max_line_discard", ONE("tcp", "poll", "discard", "max_line = 512;"),
	  "listener 'a': max_line applies only to service chat", 1 },
	{ "max_line_chargen", ONE("tcp", "fork", "chargen", "max_line = 512;"),
	  "max_line applies only to service chat", 1 },
	{ "prefix_discard", ONE("udp", "select", "discard", "prefix = \"x\";"),
	  "listener 'a': prefix applies only to service echo", 1 },
	{ "prefix_chargen", ONE("tcp", "select", "chargen", "prefix = \"x\";"),
	  "prefix applies only to service echo", 1 },
	{ "rate_limit_metrics", ONE("tcp", "poll", "metrics", "rate_limit = 5;"),
	  "rate_limit applies to echo and chat, not to service metrics", 1 },
	{ "max_line_metrics", ONE("tcp", "thread", "metrics", "max_line = 512;"),
	  "max_line applies only to service chat", 1 },
	{ "prefix_metrics", ONE("tcp", "fork", "metrics", "prefix = \"x\";"),
	  "prefix applies only to service echo", 1 },
	/* From defaults they apply only where they mean something. */
	{ "defaults_skip_discard_chargen",
	  "defaults = { rate_limit = 5; max_line = 100; prefix = \"x\"; };\n"
	  "listeners = (\n"
	  "  { name = \"d\"; protocol = \"udp\"; port = 9; model = \"poll\"; service = \"discard\"; },\n"
	  "  { name = \"c\"; protocol = \"tcp\"; port = 19; model = \"poll\"; service = \"chargen\"; }\n"
	  ");\n",
	  NULL, 0 },
	{ "service_key_line",
	  "listeners = (\n  { name = \"a\"; protocol = \"tcp\"; port = 7; model = \"poll\";\n"
	  "    service = \"echo\";\n    max_line = 100; }\n);\n",
	  "max_line applies only to service chat", 4 },
};
CASE_TEST(config_service_specific_keys, service_key_cases)

static const struct config_case prefix_cases[] = {
	{ "prefix_plain", TCP_ECHO("prefix = \">\";"), NULL, 0 },
	{ "prefix_all_escapes", TCP_ECHO("prefix = \"%p %t %l %% \";"), NULL, 0 },
	{ "prefix_64", TCP_ECHO("prefix = \"" S64 "\";"), NULL, 0 },
	{ "prefix_empty", TCP_ECHO("prefix = \"\";"),
	  "listener 'a': prefix: must be 1-64 bytes long, got 0", 1 },
	{ "prefix_65", TCP_ECHO("prefix = \"" S64 "x\";"), "prefix: must be 1-64 bytes long, got 65", 1 },
	{ "prefix_bad_escape", TCP_ECHO("prefix = \"%x: \";"),
	  "prefix: '%x' is not a valid escape; allowed escapes: %p (pid), %t (thread id), "
	  "%l (listener name), %% (a percent sign)",
	  1 },
	{ "prefix_format_escape", TCP_ECHO("prefix = \"%s\";"), "prefix: '%s' is not a valid escape", 1 },
	{ "prefix_upper_escape", TCP_ECHO("prefix = \"%P\";"), "prefix: '%P' is not a valid escape", 1 },
	{ "prefix_trailing_percent", TCP_ECHO("prefix = \"pid %p %\";"),
	  "prefix: 'pid %p %' ends with a lone '%'; allowed escapes: %p (pid)", 1 },
	{ "prefix_odd_percents", TCP_ECHO("prefix = \"%%%\";"), "ends with a lone '%'", 1 },
	{ "prefix_int", TCP_ECHO("prefix = 5;"), "listener 'a': prefix: expected a string, got an integer",
	  1 },
};
CASE_TEST(config_prefix, prefix_cases)

static const struct config_case cidr_cases[] = {
	{ "allow_array", TCP_ECHO("allow = [ \"127.0.0.0/8\", \"::1/128\" ];"), NULL, 0 },
	{ "allow_list", TCP_ECHO("allow = ( \"10.0.0.0/8\", \"192.168.1.1\" );"), NULL, 0 },
	{ "allow_mapped", TCP_ECHO("allow = [ \"::ffff:10.0.0.0/104\" ];"), NULL, 0 },
	{ "deny_array", TCP_ECHO("deny = [ \"10.0.0.0/8\" ];"), NULL, 0 },
	{ "deny_empty", TCP_ECHO("deny = [ ];"), NULL, 0 },
	{ "allow_and_deny", TCP_ECHO("allow = [ \"10.0.0.0/8\" ]; deny = [ \"10.1.0.0/16\" ];"), NULL,
	  0 },
	{ "allow_host_bits", TCP_ECHO("allow = [ \"10.0.0.1/8\" ];"),
	  "listener 'a': allow: '10.0.0.1/8' is not a valid CIDR (address/prefix with no host bits "
	  "set)",
	  1 },
	{ "deny_host_bits", TCP_ECHO("deny = [ \"2001:db8::1/32\" ];"),
	  "listener 'a': deny: '2001:db8::1/32' is not a valid CIDR", 1 },
	{ "allow_garbage", TCP_ECHO("allow = [ \"everyone\" ];"),
	  "allow: 'everyone' is not a valid CIDR", 1 },
	{ "allow_bad_length", TCP_ECHO("allow = [ \"10.0.0.0/33\" ];"),
	  "allow: '10.0.0.0/33' is not a valid CIDR", 1 },
	{ "allow_empty", TCP_ECHO("allow = [ ];"),
	  "listener 'a': allow: an empty list would refuse every client", 1 },
	{ "allow_empty_list", TCP_ECHO("allow = ( );"), "allow: an empty list would refuse every client",
	  1 },
	{ "allow_string", TCP_ECHO("allow = \"10.0.0.0/8\";"),
	  "listener 'a': allow: expected an array of CIDR strings", 1 },
	{ "deny_group", TCP_ECHO("deny = { a = 1; };"), "deny: expected an array of CIDR strings", 1 },
	{ "allow_array_of_ints", TCP_ECHO("allow = [ 10 ];"),
	  "allow: entry 1: expected a string, got an integer", 1 },
	{ "allow_mixed_list", TCP_ECHO("allow = ( \"10.0.0.0/8\", 5 );"),
	  "allow: entry 2: expected a string, got an integer", 1 },
	{ "allow_entry_line",
	  "listeners = (\n  { name = \"a\"; protocol = \"tcp\"; port = 7; model = \"poll\";\n"
	  "    service = \"echo\";\n    allow = [ \"10.0.0.0/8\",\n"
	  "              \"10.0.0.1/8\" ]; }\n);\n",
	  "allow: '10.0.0.1/8' is not a valid CIDR", 5 },
};
CASE_TEST(config_allow_deny, cidr_cases)

static const struct config_case proxy_cases[] = {
	{ "proxy_ok", TCP_ECHO("proxy_protocol = true; proxy_from = [ \"10.0.0.5/32\" ];"), NULL, 0 },
	{ "proxy_chat_fork", ONE("tcp", "fork", "chat",
				 "proxy_protocol = true; proxy_from = ( \"10.0.0.0/8\", \"::1\" );"),
	  NULL, 0 },
	{ "proxy_false", TCP_ECHO("proxy_protocol = false;"), NULL, 0 },
	{ "proxy_udp",
	  UDP_ECHO("proxy_protocol = true; proxy_from = [ \"10.0.0.5/32\" ];"),
	  "listener 'a': proxy_protocol applies only to tcp listeners: a udp datagram carries no PROXY header",
	  1 },
	{ "proxy_without_from", TCP_ECHO("proxy_protocol = true;"),
	  "listener 'a': proxy_protocol = true needs proxy_from, the balancers allowed to send the header",
	  1 },
	{ "proxy_from_without_proxy", TCP_ECHO("proxy_from = [ \"10.0.0.5/32\" ];"),
	  "listener 'a': proxy_from applies only with proxy_protocol = true", 1 },
	{ "proxy_from_with_false",
	  TCP_ECHO("proxy_protocol = false; proxy_from = [ \"10.0.0.5/32\" ];"),
	  "listener 'a': proxy_from applies only with proxy_protocol = true", 1 },
	{ "proxy_from_empty", TCP_ECHO("proxy_protocol = true; proxy_from = [ ];"),
	  "listener 'a': proxy_from: an empty list would refuse every connection", 1 },
	{ "proxy_from_bad_cidr", TCP_ECHO("proxy_protocol = true; proxy_from = [ \"10.0.0.1/8\" ];"),
	  "listener 'a': proxy_from: '10.0.0.1/8' is not a valid CIDR", 1 },
	{ "proxy_not_bool", TCP_ECHO("proxy_protocol = 1; proxy_from = [ \"10.0.0.5/32\" ];"),
	  "listener 'a': proxy_protocol: expected a boolean (true or false), got an integer", 1 },
	{ "proxy_in_defaults",
	  DEFAULTS("proxy_protocol = true;", VALID),
	  "defaults: 'proxy_protocol' cannot be set in defaults, only per listener", 1 },
	{ "proxy_from_in_defaults",
	  DEFAULTS("proxy_from = [ \"10.0.0.5/32\" ];", VALID),
	  "defaults: 'proxy_from' cannot be set in defaults, only per listener", 1 },
};
CASE_TEST(config_proxy, proxy_cases)

static const struct config_case backend_cases[] = {
	{ "backend_chat", ONE("tcp", "epoll", "chat", "backend = \"redis://127.0.0.1:6379/2\";"),
	  NULL, 0 },
	{ "backend_unix_room", ONE("tcp", "thread", "chat",
				   "backend = \"unix:/run/redis.sock\"; room = \"lobby.1\";"),
	  NULL, 0 },
	{ "backend_echo", ONE("tcp", "poll", "echo", "backend = \"redis://localhost\";"),
	  "listener 'a': backend applies only to service chat", 1 },
	{ "backend_udp_chat", ONE("udp", "poll", "chat", "backend = \"redis://localhost\";"),
	  NULL, 0 },
	{ "backend_udp_echo", ONE("udp", "fork", "echo", "backend = \"redis://localhost\";"),
	  "listener 'a': backend applies only to service chat", 1 },
	{ "backend_bad_port", ONE("tcp", "poll", "chat", "backend = \"redis://h:99999\";"),
	  "listener 'a': backend: port out of range", 1 },
	{ "backend_bad_scheme", ONE("tcp", "poll", "chat", "backend = \"http://h\";"),
	  "listener 'a': backend: ", 1 },
	{ "backend_no_password_echoed",
	  ONE("tcp", "poll", "chat", "backend = \"redis://u:s3cret@h:0\";"),
	  "listener 'a': backend: ", 1 },
	{ "backend_not_string", ONE("tcp", "poll", "chat", "backend = 5;"),
	  "listener 'a': backend: expected a string", 1 },
	{ "room_bad", ONE("tcp", "poll", "chat",
			  "backend = \"redis://h\"; room = \"no spaces\";"),
	  "listener 'a': room: 'no spaces' is not valid", 1 },
	{ "room_too_long", ONE("tcp", "poll", "chat",
			       "backend = \"redis://h\"; room = \"123456789012345678901234567890123\";"),
	  "listener 'a': room: '123456789012345678901234567890123' is not valid", 1 },
	{ "room_without_backend", ONE("tcp", "poll", "chat", "room = \"x\";"),
	  "listener 'a': room applies only with a backend", 1 },
	{ "backend_in_defaults", DEFAULTS("backend = \"redis://h\";", VALID),
	  "defaults: 'backend' cannot be set in defaults, only per listener", 1 },
};
CASE_TEST(config_backend, backend_cases)

START_TEST(config_backend_room_defaults_to_name)
{
	struct config *c = NULL;
	struct config_errors e = { 0 };
	int r = config_load_string(ONE("tcp", "epoll", "chat", "backend = \"redis://:pw@h/3\";"),
				   "t.conf", NULL, &c, &e);

	ck_assert_int_eq(r, 0);
	ck_assert(c->listeners[0].has_backend);
	ck_assert_str_eq(c->listeners[0].room, "a");
	ck_assert_str_eq(c->listeners[0].backend.password, "pw");
	ck_assert_uint_eq(c->listeners[0].backend.db, 3);
	config_free(c);
	config_errors_clear(&e);
}
END_TEST

START_TEST(config_backend_error_hides_the_password)
{
	struct config *c = NULL;
	struct config_errors e = { 0 };
	int r = config_load_string(ONE("tcp", "poll", "chat",
				       "backend = \"redis://u:s3cret@h:0\";"),
				   "t.conf", NULL, &c, &e);

	ck_assert_int_eq(r, CONFIG_E_INVALID);
	ck_assert_uint_ge(e.n_errors, 1);
	for (size_t i = 0; i < e.n_errors; i++)
		ck_assert_ptr_null(strstr(e.errors[i].message, "s3cret"));
	config_errors_clear(&e);
}
END_TEST

static const struct config_case bind_cases[] = {
	{ "bind_same_star", TWO("port = 7; " BIND("tcp", "*"), "port = 7; " BIND("tcp", "*")),
	  "listener 'b': tcp port 7 address '*' conflicts with listener 'a' at line 1", 2 },
	{ "bind_default_address", TWO("port = 7; " BIND("udp", "*"),
				      "port = 7; protocol = \"udp\"; model = \"poll\"; "
				      "service = \"chat\";"),
	  "listener 'b': udp port 7 address '*' conflicts with listener 'a' at line 1", 2 },
	{ "bind_star_vs_literal",
	  TWO("port = 7; " BIND("tcp", "*"), "port = 7; " BIND("tcp", "127.0.0.1")),
	  "listener 'b': tcp port 7 address '127.0.0.1' conflicts with listener 'a' at line 1 "
	  "(tcp port 7 address '*')",
	  2 },
	{ "bind_literal_vs_star",
	  TWO("port = 7; " BIND("tcp", "::1"), "port = 7; " BIND("tcp", "*")),
	  "conflicts with listener 'a' at line 1", 2 },
	{ "bind_same_literal",
	  TWO("port = 7; " BIND("tcp", "127.0.0.1"), "port = 7; " BIND("tcp", "127.0.0.1")),
	  "conflicts with listener 'a'", 2 },
	{ "bind_same_host_case",
	  TWO("port = 7; " BIND("tcp", "LocalHost"), "port = 7; " BIND("tcp", "localhost")),
	  "conflicts with listener 'a'", 2 },
	{ "bind_same_ipv6_spelled_differently",
	  TWO("port = 7; " BIND("udp", "::1"), "port = 7; " BIND("udp", "0:0::1")),
	  "conflicts with listener 'a'", 2 },
	{ "bind_unspecified_vs_literal",
	  TWO("port = 7; " BIND("tcp", "0.0.0.0"), "port = 7; " BIND("tcp", "127.0.0.1")),
	  "conflicts with listener 'a'", 2 },
	{ "bind_different_literals",
	  TWO("port = 7; " BIND("tcp", "127.0.0.1"), "port = 7; " BIND("tcp", "127.0.0.2")), NULL,
	  0 },
	{ "bind_different_protocol",
	  TWO("port = 7; " BIND("tcp", "*"), "port = 7; " BIND("udp", "*")), NULL, 0 },
	{ "bind_different_port", TWO("port = 7; " BIND("tcp", "*"), "port = 8; " BIND("tcp", "*")),
	  NULL, 0 },
	{ "bind_second_disabled",
	  TWO("port = 7; " BIND("tcp", "*"), "port = 7; enabled = false; " BIND("tcp", "*")), NULL,
	  0 },
	{ "bind_first_disabled",
	  TWO("port = 7; enabled = false; " BIND("tcp", "*"), "port = 7; " BIND("tcp", "*")), NULL,
	  0 },
	{ "bind_third_names_first",
	  "listeners = ( { name = \"a\"; port = 7; " BIND("tcp", "127.0.0.1") "},\n"
	  "  { name = \"b\"; port = 7; " BIND("udp", "127.0.0.1") "},\n"
	  "  { name = \"c\"; port = 7; " BIND("tcp", "*") "} );\n",
	  "listener 'c': tcp port 7 address '*' conflicts with listener 'a' at line 1", 3 },
	{ "bind_inherited_address",
	  "defaults = { address = \"127.0.0.1\"; };\n"
	  "listeners = ( { name = \"a\"; port = 7; protocol = \"tcp\"; model = \"poll\"; "
	  "service = \"echo\"; },\n"
	  "  { name = \"b\"; port = 7; " BIND("tcp", "127.0.0.1") "} );\n",
	  "listener 'b': tcp port 7 address '127.0.0.1' conflicts with listener 'a' at line 2", 3 },
};
CASE_TEST(config_duplicate_binds, bind_cases)


static const struct config_case defaults_cases[] = {
	{ "defaults_all_keys",
	  DEFAULTS("address = \"127.0.0.1\"; max_clients = 10; per_source = 1; idle_timeout = 5; "
		   "backlog = 4; workers = 2; allow = [ \"127.0.0.0/8\" ]; deny = [ ]; "
		   "rate_limit = 3; max_line = 100; prefix = \"%p \";",
		   VALID),
	  NULL, 0 },
	{ "defaults_empty", DEFAULTS("", VALID), NULL, 0 },
	{ "defaults_unknown", DEFAULTS("colour = 1;", VALID),
	  "defaults: unknown setting 'colour'; allowed: address, max_clients, per_source, "
	  "idle_timeout, backlog, workers, allow, deny, rate_limit, max_line, prefix",
	  1 },
	{ "defaults_name", DEFAULTS("name = \"x\";", VALID),
	  "defaults: 'name' cannot be set in defaults, only per listener; allowed: address, "
	  "max_clients",
	  1 },
	{ "defaults_protocol", DEFAULTS("protocol = \"tcp\";", VALID),
	  "defaults: 'protocol' cannot be set in defaults", 1 },
	{ "defaults_port", DEFAULTS("port = 7;", VALID), "defaults: 'port' cannot be set in defaults",
	  1 },
	{ "defaults_model", DEFAULTS("model = \"poll\";", VALID),
	  "defaults: 'model' cannot be set in defaults", 1 },
	{ "defaults_service", DEFAULTS("service = \"echo\";", VALID),
	  "defaults: 'service' cannot be set in defaults", 1 },
	{ "defaults_enabled", DEFAULTS("enabled = false;", VALID),
	  "defaults: 'enabled' cannot be set in defaults", 1 },
	{ "defaults_max_clients_range", DEFAULTS("max_clients = 0;", VALID),
	  "defaults: max_clients: 0 is out of range; allowed: 1-1048576", 1 },
	{ "defaults_workers_range", DEFAULTS("workers = 257;", VALID),
	  "defaults: workers: 257 is out of range; allowed: 1-256", 1 },
	{ "defaults_max_line_range", DEFAULTS("max_line = 63;", VALID),
	  "defaults: max_line: 63 is out of range; allowed: 64-65536", 1 },
	{ "defaults_type", DEFAULTS("idle_timeout = \"300\";", VALID),
	  "defaults: idle_timeout: expected an integer, got a string", 1 },
	{ "defaults_address", DEFAULTS("address = \"no way\";", VALID),
	  "defaults: address: 'no way' is not valid", 1 },
	{ "defaults_allow_empty", DEFAULTS("allow = [ ];", VALID),
	  "defaults: allow: an empty list would refuse every client", 1 },
	{ "defaults_bad_cidr", DEFAULTS("deny = [ \"10.0.0.1/8\" ];", VALID),
	  "defaults: deny: '10.0.0.1/8' is not a valid CIDR", 1 },
	{ "defaults_bad_prefix", DEFAULTS("prefix = \"%q\";", VALID),
	  "defaults: prefix: '%q' is not a valid escape", 1 },
	{ "defaults_own_line",
	  "defaults = {\n  max_clients = 10;\n  backlog = 0;\n};\n" VALID,
	  "defaults: backlog: 0 is out of range", 3 },
	{ "defaults_after_listeners", VALID "defaults = { max_clients = 2000; };\n", NULL, 0 },
	/* values that only mean something elsewhere are not applied, so no errors */
	{ "defaults_prefix_not_for_chat", DEFAULTS("prefix = \"%p\";", TCP_CHAT("")), NULL, 0 },
	{ "defaults_max_line_not_for_echo", DEFAULTS("max_line = 100;", TCP_ECHO("")), NULL, 0 },
	{ "defaults_rate_limit_not_for_tcp_echo", DEFAULTS("rate_limit = 5;", TCP_ECHO("")), NULL,
	  0 },
	{ "defaults_workers_not_for_tcp_poll", DEFAULTS("workers = 4;", TCP_ECHO("")), NULL, 0 },
	{ "defaults_workers_not_for_udp_select",
	  DEFAULTS("workers = 4;", ONE("udp", "select", "echo", "")), NULL, 0 },
	/* the listener's own value is still checked */
	{ "defaults_do_not_excuse_explicit",
	  DEFAULTS("workers = 4;", ONE("tcp", "poll", "echo", "workers = 4;")),
	  "listener 'a': workers: must be 1 for tcp/poll", 2 },
	{ "defaults_invalid_not_inherited_twice",
	  DEFAULTS("max_clients = 0;", ONE("tcp", "select", "echo", "")),
	  "defaults: max_clients: 0 is out of range", 1 },
};
CASE_TEST(config_defaults_group, defaults_cases)

static const struct config_case parse_cases[] = {
	{ "parse_error_line", "log_level = \"info\";\nlisteners = (\n  { name = \"a\" }\n;\n",
	  "syntax error", 4 },
	{ "parse_error_missing_value", "\n\nlog_level = ;\n" VALID, "syntax error", 3 },
	{ "parse_error_trailing_comma", "listeners = ( " LISTENER("tcp", "poll", "echo", "") ",\n);\n",
	  "syntax error", 2 },
	{ "parse_error_mixed_array", TCP_ECHO("allow = [ \"10.0.0.0/8\", 5 ];"),
	  "mismatched element type in array", 1 },
	{ "parse_error_duplicate", "log_level = \"info\";\nlog_level = \"debug\";\n" VALID,
	  "duplicate setting name", 2 },
	{ "parse_error_include_missing", "@include \"/nonexistent/netechod-test.conf\"\n" VALID,
	  "cannot open include file", 1 },
};
CASE_TEST(config_parse_errors, parse_cases)

START_TEST(config_parse_error_is_the_only_error)
{
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };

	ck_assert_int_eq(config_load_string("colour = 1;\nx = ;\n", NULL, NULL, &c, &e),
			 CONFIG_E_INVALID);
	ck_assert_uint_eq(e.n_errors, 1);
	ck_assert_str_eq(e.errors[0].file, "<string>");
	ck_assert_int_eq(e.errors[0].line, 2);
	config_errors_clear(&e);
	ck_assert_uint_eq(e.n_errors, 0);
	ck_assert_ptr_null(e.errors);
}
END_TEST

START_TEST(config_reports_every_error)
{
	static const char text[] =
		"log_level = \"info\";\n"
		"colour = \"red\";\n"
		"listeners = (\n"
		"  { name = \"echo\"; protocol = \"tcp\"; port = 70000;\n"
		"    model = \"kqueue\"; service = \"echo\"; }\n"
		");\n";
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };

	ck_assert_int_eq(config_load_string(text, "three.conf", NULL, &c, &e), CONFIG_E_INVALID);
	ck_assert_ptr_null(c);
	if (e.n_errors != 3)
		dump_errors(&e);
	ck_assert_uint_eq(e.n_errors, 3);
	ck_assert_str_eq(e.errors[0].file, "three.conf");
	ck_assert_int_eq(e.errors[0].line, 2);
	ck_assert_str_eq(e.errors[0].message, "unknown setting 'colour'; allowed: log_level, user, "
					      "group, shutdown_timeout, defaults, listeners");
	ck_assert_int_eq(e.errors[1].line, 4);
	ck_assert_str_eq(e.errors[1].message,
			 "listener 'echo': port: 70000 is out of range; allowed: 1-65535");
	ck_assert_int_eq(e.errors[2].line, 5);
	ck_assert_str_eq(e.errors[2].message, "listener 'echo': model: unknown value 'kqueue'; "
					      "allowed: fork, thread, select, poll, epoll");
	config_errors_clear(&e);
}
END_TEST

START_TEST(config_reports_errors_of_every_listener)
{
	static const char text[] =
		"listeners = (\n"
		"  { name = \"a\"; protocol = \"tcp\"; port = 0; model = \"poll\"; "
		"service = \"echo\"; },\n"
		"  { name = \"b\"; protocol = \"tcp\"; port = 8; model = \"poll\"; "
		"service = \"echo\"; },\n"
		"  { name = \"c\"; protocol = \"tcp\"; port = 9; model = \"poll\"; "
		"service = \"nope\"; }\n"
		");\n";
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };

	ck_assert_int_eq(config_load_string(text, "t", NULL, &c, &e), CONFIG_E_INVALID);
	ck_assert_uint_eq(e.n_errors, 2);
	ck_assert_int_eq(e.errors[0].line, 2);
	ck_assert_ptr_nonnull(strstr(e.errors[0].message, "listener 'a': port"));
	ck_assert_int_eq(e.errors[1].line, 4);
	ck_assert_ptr_nonnull(strstr(e.errors[1].message, "listener 'c': service"));
	config_errors_clear(&e);
}
END_TEST

/* Effective values of the first listener, after defaults. */
struct values_case {
	const char *name;
	const char *text;
	const char *address;
	bool enabled;
	unsigned max_clients, per_source, idle_timeout, backlog, workers, rate_limit, max_line;
	size_t n_allow, n_deny;
	bool has_allow;
	const char *prefix;
};

#define ALL_DEFAULTS                                                                             \
	"defaults = { address = \"127.0.0.1\"; max_clients = 10; per_source = 2; "              \
	"idle_timeout = 60; backlog = 5; workers = 4; allow = [ \"10.0.0.0/8\" ]; "             \
	"deny = [ \"10.1.0.0/16\", \"10.2.0.0/16\" ]; rate_limit = 9; max_line = 100; "         \
	"prefix = \"%p: \"; };\n"

static const struct values_case values_cases[] = {
	{ "builtin_defaults", VALID, "*", true, 256, 0, 300, 128, 1, 0, 1024, 0, 0, false, NULL },
	{ "builtin_defaults_udp_chat", ONE("udp", "fork", "chat", ""), "*", true, 256, 0, 300, 128,
	  1, 0, 1024, 0, 0, false, NULL },
	{ "disabled", TCP_ECHO("enabled = false;"), "*", false, 256, 0, 300, 128, 1, 0, 1024, 0, 0,
	  false, NULL },
	{ "defaults_tcp_poll_echo", ALL_DEFAULTS ONE("tcp", "poll", "echo", ""), "127.0.0.1", true,
	  10, 2, 60, 5, 1, 0, 1024, 1, 2, true, "%p: " },
	{ "defaults_udp_fork_echo", ALL_DEFAULTS ONE("udp", "fork", "echo", ""), "127.0.0.1", true,
	  10, 2, 60, 5, 4, 9, 1024, 1, 2, true, "%p: " },
	{ "defaults_udp_thread_chat", ALL_DEFAULTS ONE("udp", "thread", "chat", ""), "127.0.0.1",
	  true, 10, 2, 60, 5, 4, 9, 100, 1, 2, true, NULL },
	{ "defaults_tcp_thread_chat", ALL_DEFAULTS ONE("tcp", "thread", "chat", ""), "127.0.0.1",
	  true, 10, 2, 60, 5, 1, 9, 100, 1, 2, true, NULL },
	{ "defaults_tcp_epoll_echo", ALL_DEFAULTS ONE("tcp", "epoll", "echo", ""), "127.0.0.1", true,
	  10, 2, 60, 5, 4, 0, 1024, 1, 2, true, "%p: " },
	{ "defaults_udp_select_echo", ALL_DEFAULTS ONE("udp", "select", "echo", ""), "127.0.0.1",
	  true, 10, 2, 60, 5, 1, 9, 1024, 1, 2, true, "%p: " },
	{ "listener_wins",
	  ALL_DEFAULTS ONE("tcp", "epoll", "chat",
			   "address = \"::1\"; max_clients = 3; per_source = 0; idle_timeout = 0; "
			   "backlog = 1; workers = 2; allow = [ \"::1\", \"::2\", \"::3\" ]; "
			   "deny = [ ]; rate_limit = 1; max_line = 200;"),
	  "::1", true, 3, 0, 0, 1, 2, 1, 200, 3, 0, true, NULL },
	{ "listener_prefix_wins", ALL_DEFAULTS ONE("udp", "poll", "echo", "prefix = \"%l> \";"),
	  "127.0.0.1", true, 10, 2, 60, 5, 1, 9, 1024, 1, 2, true, "%l> " },
	{ "defaults_partial", "defaults = { idle_timeout = 0; };\n" TCP_ECHO(""), "*", true, 256, 0,
	  0, 128, 1, 0, 1024, 0, 0, false, NULL },
};

START_TEST(config_effective_values)
{
	const struct values_case *t = &values_cases[_i];
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };
	const struct listener_config *l;
	int r;

	r = config_load_string(t->text, "values.conf", NULL, &c, &e);
	if (r != 0)
		dump_errors(&e);
	ck_assert_msg(r == 0, "%s: %d", t->name, r);
	ck_assert_uint_eq(c->n_listeners, 1);
	l = &c->listeners[0];
	ck_assert_str_eq(l->address, t->address);
	ck_assert(l->enabled == t->enabled);
	ck_assert_uint_eq(l->max_clients, t->max_clients);
	ck_assert_uint_eq(l->per_source, t->per_source);
	ck_assert_uint_eq(l->idle_timeout, t->idle_timeout);
	ck_assert_uint_eq(l->backlog, t->backlog);
	ck_assert_uint_eq(l->workers, t->workers);
	ck_assert_uint_eq(l->rate_limit, t->rate_limit);
	ck_assert_uint_eq(l->max_line, t->max_line);
	ck_assert_uint_eq(l->n_allow, t->n_allow);
	ck_assert_uint_eq(l->n_deny, t->n_deny);
	ck_assert(l->has_allow == t->has_allow);
	ck_assert(t->n_allow == 0 || l->allow);
	ck_assert(t->n_deny == 0 || l->deny);
	if (t->prefix)
		ck_assert_str_eq(l->prefix, t->prefix);
	else
		ck_assert_ptr_null(l->prefix);
}
END_TEST

START_TEST(config_fills_every_field)
{
	static const char text[] =
		"log_level = \"debug\";\n"
		"user = \"nobody\";\n"
		"group = \"nogroup\";\n"
		"shutdown_timeout = 30;\n"
		"listeners = (\n"
		"  { name = \"echo\"; protocol = \"tcp\"; port = 7007; model = \"poll\";\n"
		"    service = \"echo\"; },\n"
		"  {\n"
		"    name = \"lobby\"; protocol = \"udp\"; port = 65535;\n"
		"    model = \"epoll\"; service = \"chat\";\n"
		"    allow = [ \"127.0.0.0/8\", \"::1/128\" ]; deny = [ \"127.0.0.2\" ];\n"
		"  }\n"
		");\n";
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };
	const struct listener_config *l;
	char buf[CIDR_STR_MAX];

	ck_assert_int_eq(config_load_string(text, "full.conf", NULL, &c, &e), 0);
	ck_assert_uint_eq(e.n_errors, 0);
	ck_assert_str_eq(c->path, "full.conf");
	ck_assert_int_eq(c->log_level, LOG_DEBUG);
	ck_assert_str_eq(c->user, "nobody");
	ck_assert_str_eq(c->group, "nogroup");
	ck_assert_uint_eq(c->shutdown_timeout, 30);
	ck_assert_uint_eq(c->n_listeners, 2);

	l = &c->listeners[0];
	ck_assert_str_eq(l->name, "echo");
	ck_assert_int_eq(l->protocol, PROTOCOL_TCP);
	ck_assert_uint_eq(l->port, 7007);
	ck_assert_int_eq(l->model, MODEL_POLL);
	ck_assert_int_eq(l->service, SERVICE_ECHO);
	ck_assert_int_eq(l->line, 6);
	ck_assert_ptr_null(l->allow);
	ck_assert(!l->has_allow);

	l = &c->listeners[1];
	ck_assert_str_eq(l->name, "lobby");
	ck_assert_int_eq(l->protocol, PROTOCOL_UDP);
	ck_assert_uint_eq(l->port, 65535);
	ck_assert_int_eq(l->model, MODEL_EPOLL);
	ck_assert_int_eq(l->service, SERVICE_CHAT);
	ck_assert_int_eq(l->line, 8);
	ck_assert(l->has_allow);
	ck_assert_uint_eq(l->n_allow, 2);
	ck_assert_str_eq(cidr_to_string(&l->allow[0], buf, sizeof(buf)), "127.0.0.0/8");
	ck_assert_str_eq(cidr_to_string(&l->allow[1], buf, sizeof(buf)), "::1/128");
	ck_assert_uint_eq(l->n_deny, 1);
	ck_assert_str_eq(cidr_to_string(&l->deny[0], buf, sizeof(buf)), "127.0.0.2/32");
}
END_TEST

START_TEST(config_builtin_top_level_defaults)
{
	_cleanup_(config_freep) struct config *c = NULL;

	ck_assert_int_eq(config_load_string(VALID, NULL, NULL, &c, NULL), 0);
	ck_assert_ptr_null(c->path);
	ck_assert_int_eq(c->log_level, LOG_INFO);
	ck_assert_ptr_null(c->user);
	ck_assert_ptr_null(c->group);
	ck_assert_uint_eq(c->shutdown_timeout, 5);
}
END_TEST

static const struct {
	const char *key;
	const char *value;
} expected_defaults[] = {
	{ "log_level", "info" },    { "shutdown_timeout", "5" }, { "address", "*" },
	{ "enabled", "true" },      { "max_clients", "256" },    { "per_source", "0" },
	{ "idle_timeout", "300" },  { "backlog", "128" },        { "workers", "1" },
	{ "rate_limit", "0" },      { "max_line", "1024" },
};

static const char *
default_of(const char *key)
{
	for (size_t i = 0; i < config_n_defaults; i++)
		if (strcmp(config_defaults[i].key, key) == 0)
			return config_defaults[i].value;
	return NULL;
}

START_TEST(config_defaults_table_matches_man_page)
{
	ck_assert_uint_eq(config_n_defaults, ELEMENTSOF(expected_defaults));
	for (size_t i = 0; i < ELEMENTSOF(expected_defaults); i++) {
		const char *v = default_of(expected_defaults[i].key);

		ck_assert_msg(v, "no default for %s", expected_defaults[i].key);
		ck_assert_str_eq(v, expected_defaults[i].value);
	}
}
END_TEST

/* The table and the parser share one source: what the table says is what a
 * listener that sets nothing gets. */
START_TEST(config_defaults_table_matches_parser)
{
	_cleanup_(config_freep) struct config *c = NULL;
	const struct listener_config *l;

	ck_assert_int_eq(config_load_string(ONE("udp", "fork", "chat", ""), NULL, NULL, &c, NULL),
			 0);
	l = &c->listeners[0];
	{
		const struct {
			const char *key;
			unsigned value;
		} nums[] = {
			{ "shutdown_timeout", c->shutdown_timeout },
			{ "max_clients", l->max_clients },
			{ "per_source", l->per_source },
			{ "idle_timeout", l->idle_timeout },
			{ "backlog", l->backlog },
			{ "workers", l->workers },
			{ "rate_limit", l->rate_limit },
			{ "max_line", l->max_line },
		};

		for (size_t i = 0; i < ELEMENTSOF(nums); i++)
			ck_assert_msg(strtoul(default_of(nums[i].key), NULL, 10) == nums[i].value,
				      "%s", nums[i].key);
	}
	ck_assert_str_eq(default_of("log_level"), log_level_to_string(c->log_level));
	ck_assert_str_eq(default_of("address"), l->address);
	ck_assert_str_eq(default_of("enabled"), l->enabled ? "true" : "false");
}
END_TEST

START_TEST(config_enum_strings_round_trip)
{
	for (int p = 0; p < _PROTOCOL_MAX; p++)
		ck_assert_int_eq(protocol_from_string(protocol_to_string((enum protocol)p)), p);
	for (int m = 0; m < _MODEL_MAX; m++)
		ck_assert_int_eq(model_from_string(model_to_string((enum model)m)), m);
	for (int s = 0; s < _SERVICE_MAX; s++)
		ck_assert_int_eq(service_from_string(service_to_string((enum service_kind)s)), s);

	ck_assert_str_eq(protocol_to_string(PROTOCOL_UDP), "udp");
	ck_assert_str_eq(model_to_string(MODEL_EPOLL), "epoll");
	ck_assert_str_eq(service_to_string(SERVICE_CHAT), "chat");
	ck_assert_int_eq(model_from_string("select"), MODEL_SELECT);

	ck_assert_ptr_null(protocol_to_string(_PROTOCOL_MAX));
	ck_assert_ptr_null(model_to_string(_MODEL_MAX));
	ck_assert_ptr_null(service_to_string(_SERVICE_MAX));
	ck_assert_int_eq(protocol_from_string("sctp"), -EINVAL);
	ck_assert_int_eq(protocol_from_string("TCP"), -EINVAL);
	ck_assert_int_eq(model_from_string(""), -EINVAL);
	ck_assert_int_eq(service_from_string(NULL), -EINVAL);
}
END_TEST

START_TEST(config_log_level_strings)
{
	static const struct {
		const char *name;
		int level;
	} levels[] = {
		{ "debug", LOG_DEBUG },     { "info", LOG_INFO }, { "notice", LOG_NOTICE },
		{ "warning", LOG_WARNING }, { "error", LOG_ERR },
	};

	for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
		ck_assert_int_eq(log_level_from_string(levels[i].name), levels[i].level);
		ck_assert_str_eq(log_level_to_string(levels[i].level), levels[i].name);
	}
	ck_assert_int_eq(log_level_from_string("err"), -EINVAL);
	ck_assert_int_eq(log_level_from_string("crit"), -EINVAL);
	ck_assert_int_eq(log_level_from_string(NULL), -EINVAL);
	ck_assert_ptr_null(log_level_to_string(LOG_CRIT));
	ck_assert_ptr_null(log_level_to_string(-1));
	ck_assert_ptr_null(log_level_to_string(8));
}
END_TEST

static const char two_listeners[] =
	"listeners = (\n"
	"  { name = \"a\"; protocol = \"tcp\"; port = 7; model = \"poll\"; service = \"echo\";\n"
	"    allow = [ \"10.0.0.0/8\" ]; deny = [ \"10.1.0.0/16\" ]; prefix = \"%p \"; },\n"
	"  { name = \"b\"; protocol = \"udp\"; port = 7; model = \"fork\"; service = \"chat\"; }\n"
	");\n";

START_TEST(config_find_listener_by_name)
{
	_cleanup_(config_freep) struct config *c = NULL;

	ck_assert_int_eq(config_load_string(two_listeners, NULL, NULL, &c, NULL), 0);
	ck_assert_ptr_eq(config_find_listener(c, "a"), &c->listeners[0]);
	ck_assert_ptr_eq(config_find_listener(c, "b"), &c->listeners[1]);
	ck_assert_ptr_null(config_find_listener(c, "c"));
	ck_assert_ptr_null(config_find_listener(c, "A"));
	ck_assert_ptr_null(config_find_listener(NULL, "a"));
	ck_assert_ptr_null(config_find_listener(c, NULL));
}
END_TEST

START_TEST(config_listener_copy_is_deep)
{
	_cleanup_(config_freep) struct config *c = NULL;
	struct listener_config copy;
	const struct listener_config *a;

	ck_assert_int_eq(config_load_string(two_listeners, NULL, NULL, &c, NULL), 0);
	a = &c->listeners[0];
	ck_assert_int_eq(listener_config_copy(&copy, a), 0);
	ck_assert(listener_config_equal(&copy, a));
	ck_assert_ptr_ne(copy.address, a->address);
	ck_assert_ptr_ne(copy.prefix, a->prefix);
	ck_assert_ptr_ne(copy.allow, a->allow);
	ck_assert_ptr_ne(copy.deny, a->deny);

	copy.allow[0].prefixlen = 9;
	copy.prefix[0] = '#';
	ck_assert_uint_eq(a->allow[0].prefixlen, 8);
	ck_assert_str_eq(a->prefix, "%p ");
	ck_assert(!listener_config_equal(&copy, a));
	listener_config_done(&copy);
	ck_assert_ptr_null(copy.address);
	ck_assert_ptr_null(copy.allow);
	ck_assert_uint_eq(copy.n_allow, 0);
	listener_config_done(&copy);

	/* a listener without heap fields besides the address */
	ck_assert_int_eq(listener_config_copy(&copy, &c->listeners[1]), 0);
	ck_assert(listener_config_equal(&copy, &c->listeners[1]));
	ck_assert_ptr_null(copy.allow);
	ck_assert_ptr_null(copy.prefix);
	listener_config_done(&copy);
}
END_TEST

/* Each variant changes one thing in a listener: base settings give both
 * configs, change only the second (max_line needs chat, workers > 1 epoll). */
static const struct {
	const char *base;
	const char *change;
} equal_variants[] = {
	{ NULL, "name = \"x\";" },
	{ NULL, "protocol = \"udp\";" },
	{ NULL, "port = 8;" },
	{ NULL, "model = \"thread\";" },
	{ NULL, "service = \"chat\";" },
	{ NULL, "address = \"::1\";" },
	{ NULL, "enabled = false;" },
	{ NULL, "max_clients = 9;" },
	{ NULL, "per_source = 1;" },
	{ NULL, "idle_timeout = 1;" },
	{ NULL, "backlog = 1;" },
	{ "model = \"epoll\";", "workers = 2;" },
	{ "service = \"chat\";", "rate_limit = 1;" },
	{ "service = \"chat\";", "max_line = 64;" },
	{ NULL, "allow = [ \"10.0.0.0/9\" ];" },
	{ NULL, "allow = [ \"10.0.0.0/8\", \"::1\" ];" },
	{ NULL, "deny = [ ];" },
	{ NULL, "deny = [ \"10.1.0.0/17\" ];" },
	{ NULL, "prefix = \"%t \";" },
};

static bool
setting_is(const char *setting, const char *key)
{
	size_t n = strlen(key);

	return setting && strncmp(setting, key, n) == 0 && setting[n] == ' ';
}

/* Listener "a" from default parts, overridden by base and then change. */
static void
variant_text(char *buf, size_t len, const char *base, const char *change)
{
	static const struct {
		const char *key, *value;
	} parts[] = {
		{ "name", "name = \"a\";" },
		{ "protocol", "protocol = \"tcp\";" },
		{ "port", "port = 7;" },
		{ "model", "model = \"poll\";" },
		{ "service", "service = \"echo\";" },
		{ "allow", "allow = [ \"10.0.0.0/8\" ];" },
		{ "deny", "deny = [ \"10.1.0.0/16\" ];" },
		{ "prefix", "prefix = \"%p \";" },
	};
	const char *extra[] = { base, change };
	bool used_extra[2] = { false, false };
	bool chat = setting_is(base, "service") || setting_is(change, "service");
	size_t used;

	used = (size_t)snprintf(buf, len, "listeners = ( { ");
	for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
		const char *v = parts[i].value;

		for (size_t j = 0; j < 2; j++)
			if (setting_is(extra[j], parts[i].key)) {
				v = extra[j];
				used_extra[j] = true;
			}
		if (chat && strcmp(parts[i].key, "prefix") == 0)
			continue;
		used += (size_t)snprintf(buf + used, len - used, "%s ", v);
	}
	for (size_t j = 0; j < 2; j++)
		if (extra[j] && !used_extra[j])
			used += (size_t)snprintf(buf + used, len - used, "%s ", extra[j]);
	snprintf(buf + used, len - used, "} );\n");
}

START_TEST(config_listener_equal_notices_each_field)
{
	_cleanup_(config_freep) struct config *a = NULL;
	_cleanup_(config_freep) struct config *b = NULL;
	struct config_errors e = { 0 };
	char text[1024];

	variant_text(text, sizeof(text), equal_variants[_i].base, NULL);
	if (config_load_string(text, "base", NULL, &a, &e) != 0)
		dump_errors(&e);
	ck_assert_msg(a, "base did not load: %s", text);
	variant_text(text, sizeof(text), equal_variants[_i].base, equal_variants[_i].change);
	if (config_load_string(text, "variant", NULL, &b, &e) != 0)
		dump_errors(&e);
	ck_assert_msg(b, "variant did not load: %s", text);
	ck_assert_msg(!listener_config_equal(&a->listeners[0], &b->listeners[0]),
		      "variant '%s' compares equal", equal_variants[_i].change);
	ck_assert_msg(!listener_config_equal(&b->listeners[0], &a->listeners[0]),
		      "variant '%s' compares equal", equal_variants[_i].change);
	ck_assert(listener_config_equal(&a->listeners[0], &a->listeners[0]));
}
END_TEST

START_TEST(config_listener_equal_ignores_line_and_spelling)
{
	_cleanup_(config_freep) struct config *a = NULL;
	_cleanup_(config_freep) struct config *b = NULL;

	/* listener "a" of two_listeners, moved down, written differently, with
	 * explicit defaults */
	static const char moved[] =
		"\n\n\nlisteners = (\n"
		"  { service = \"echo\"; model = \"poll\"; port = 0x7;\n"
		"    protocol = \"tcp\"; name = \"a\"; enabled = true;\n"
		"    max_clients = 256; prefix = \"%p \"; workers = 1;\n"
		"    allow = ( \"::ffff:10.0.0.0/104\" );\n"
		"    deny = [ \"10.1.0.0/16\" ]; idle_timeout = 300; }\n"
		");\n";

	ck_assert_int_eq(config_load_string(two_listeners, NULL, NULL, &a, NULL), 0);
	ck_assert_int_eq(config_load_string(moved, NULL, NULL, &b, NULL), 0);
	ck_assert_int_ne(a->listeners[0].line, b->listeners[0].line);
	ck_assert(listener_config_equal(&a->listeners[0], &b->listeners[0]));
	ck_assert(!listener_config_equal(&a->listeners[0], &a->listeners[1]));
}
END_TEST

START_TEST(config_listener_equal_allow_given_vs_not)
{
	struct listener_config x = { .name = "a", .address = (char *)"*" };
	struct listener_config y = x;

	ck_assert(listener_config_equal(&x, &y));
	y.has_allow = true;
	ck_assert(!listener_config_equal(&x, &y));
	y = x;
	y.prefix = (char *)"p";
	ck_assert(!listener_config_equal(&x, &y));
	ck_assert(!listener_config_equal(&y, &x));
	x.prefix = (char *)"p";
	ck_assert(listener_config_equal(&x, &y));
	y.line = 99;
	ck_assert(listener_config_equal(&x, &y));
}
END_TEST

START_TEST(config_free_accepts_null)
{
	struct config *c = NULL;

	ck_assert_ptr_null(config_free(NULL));
	config_freep(&c);
	config_errors_clear(NULL);
	listener_config_done(NULL);
}
END_TEST

START_TEST(config_success_clears_errors_and_allows_null_reterr)
{
	_cleanup_(config_freep) struct config *c = NULL;
	_cleanup_(config_freep) struct config *d = NULL;
	struct config_errors e = { .errors = NULL, .n_errors = 0 };

	ck_assert_int_eq(config_load_string(VALID, NULL, NULL, &c, &e), 0);
	ck_assert_uint_eq(e.n_errors, 0);
	ck_assert_ptr_null(e.errors);
	ck_assert_int_eq(config_load_string("x = 1;\n", NULL, NULL, &d, NULL), CONFIG_E_INVALID);
	ck_assert_ptr_null(d);
}
END_TEST

/* Files: a fresh directory per test. */
static char tmpdir[PATH_MAX];

static void
tmpdir_setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/netechod-test-config-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static const char *const tmp_files[] = {
	"netechod.conf", "listeners.conf", "bad.conf", "sub/inner.conf", "sub",
};

static void
tmpdir_teardown(void)
{
	char p[PATH_MAX + 64];

	for (size_t i = 0; i < ELEMENTSOF(tmp_files); i++) {
		snprintf(p, sizeof(p), "%s/%s", tmpdir, tmp_files[i]);
		if (unlink(p) < 0)
			(void)rmdir(p);
	}
	(void)rmdir(tmpdir);
}

static void
write_file(const char *name, const char *text, char *ret_path, size_t len)
{
	char p[PATH_MAX + 64];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
	f = fopen(p, "we");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
	if (ret_path)
		snprintf(ret_path, len, "%s", p);
}

START_TEST(config_load_file)
{
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };
	char path[PATH_MAX + 64];

	write_file("netechod.conf", "shutdown_timeout = 9;\n" VALID, path, sizeof(path));
	ck_assert_int_eq(config_load(path, &c, &e), 0);
	ck_assert_uint_eq(e.n_errors, 0);
	ck_assert_str_eq(c->path, path);
	ck_assert_uint_eq(c->shutdown_timeout, 9);
	ck_assert_uint_eq(c->n_listeners, 1);
}
END_TEST

START_TEST(config_load_file_errors_name_the_file)
{
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };
	char path[PATH_MAX + 64];

	write_file("netechod.conf", "\ncolour = 1;\n" VALID, path, sizeof(path));
	ck_assert_int_eq(config_load(path, &c, &e), CONFIG_E_INVALID);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(e.n_errors, 1);
	ck_assert_str_eq(e.errors[0].file, path);
	ck_assert_int_eq(e.errors[0].line, 2);
	config_errors_clear(&e);
}
END_TEST

START_TEST(config_load_parse_error_in_file)
{
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };
	char path[PATH_MAX + 64];

	write_file("netechod.conf", "log_level = \"info\";\n\nlisteners = ( { ;\n", path,
		   sizeof(path));
	ck_assert_int_eq(config_load(path, &c, &e), CONFIG_E_INVALID);
	ck_assert_uint_eq(e.n_errors, 1);
	ck_assert_str_eq(e.errors[0].file, path);
	ck_assert_int_eq(e.errors[0].line, 3);
	ck_assert_str_eq(e.errors[0].message, "syntax error");
	config_errors_clear(&e);
}
END_TEST

START_TEST(config_load_missing_file)
{
	struct config *c = NULL;
	struct config_errors e = { 0 };
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
	ck_assert_int_eq(config_load(path, &c, &e), -ENOENT);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(e.n_errors, 1);
	ck_assert_str_eq(e.errors[0].file, path);
	ck_assert_int_eq(e.errors[0].line, 0);
	ck_assert_str_eq(e.errors[0].message, "cannot read: No such file or directory");
	config_errors_clear(&e);

	ck_assert_int_eq(config_load(path, &c, NULL), -ENOENT);
}
END_TEST

START_TEST(config_load_directory)
{
	struct config *c = NULL;
	struct config_errors e = { 0 };

	ck_assert_int_eq(config_load(tmpdir, &c, &e), -EISDIR);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(e.n_errors, 1);
	ck_assert_ptr_nonnull(strstr(e.errors[0].message, "cannot read: "));
	config_errors_clear(&e);
}
END_TEST

START_TEST(config_include_is_relative_to_the_file)
{
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };
	char path[PATH_MAX + 64], sub[PATH_MAX + 64];

	snprintf(sub, sizeof(sub), "%s/sub", tmpdir);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	write_file("sub/inner.conf", "  { name = \"inner\"; protocol = \"udp\"; port = 9; "
				     "model = \"thread\"; service = \"chat\"; }\n",
		   NULL, 0);
	write_file("listeners.conf", "listeners = (\n" LISTENER("tcp", "poll", "echo", "") ",\n"
				     "@include \"sub/inner.conf\"\n);\n",
		   NULL, 0);
	write_file("netechod.conf", "log_level = \"notice\";\n@include \"listeners.conf\"\n", path,
		   sizeof(path));
	/* the working directory is not the config's */
	ck_assert_int_eq(chdir("/"), 0);
	ck_assert_int_eq(config_load(path, &c, &e), 0);
	ck_assert_int_eq(c->log_level, LOG_NOTICE);
	ck_assert_uint_eq(c->n_listeners, 2);
	ck_assert_str_eq(c->listeners[1].name, "inner");
	ck_assert_int_eq(c->listeners[1].line, 1);
}
END_TEST

START_TEST(config_include_errors_name_the_included_file)
{
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };
	char path[PATH_MAX + 64], inc[PATH_MAX + 64];

	write_file("listeners.conf", "# listeners\nlisteners = ( " LISTENER("tcp", "poll", "echo",
									   "port2 = 1;") " );\n",
		   inc, sizeof(inc));
	write_file("netechod.conf", "log_level = \"info\";\n@include \"listeners.conf\"\n", path,
		   sizeof(path));
	ck_assert_int_eq(config_load(path, &c, &e), CONFIG_E_INVALID);
	ck_assert_uint_eq(e.n_errors, 1);
	ck_assert_str_eq(e.errors[0].file, inc);
	ck_assert_int_eq(e.errors[0].line, 2);
	config_errors_clear(&e);
}
END_TEST

START_TEST(config_include_parse_error_names_the_included_file)
{
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };
	char path[PATH_MAX + 64], inc[PATH_MAX + 64];

	write_file("bad.conf", "a = 1;\n\nb = ;\n", inc, sizeof(inc));
	write_file("netechod.conf", "@include \"bad.conf\"\n" VALID, path, sizeof(path));
	ck_assert_int_eq(config_load(path, &c, &e), CONFIG_E_INVALID);
	ck_assert_uint_eq(e.n_errors, 1);
	ck_assert_str_eq(e.errors[0].file, inc);
	ck_assert_int_eq(e.errors[0].line, 3);
	config_errors_clear(&e);
}
END_TEST

START_TEST(config_duplicate_across_include_names_the_other_file)
{
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };
	char path[PATH_MAX + 64], inc[PATH_MAX + 64], want[PATH_MAX * 2];

	write_file("listeners.conf", LISTENER("tcp", "poll", "echo", "") "\n", inc, sizeof(inc));
	write_file("netechod.conf", "listeners = (\n@include \"listeners.conf\"\n,\n"
				    "  " LISTENER("udp", "poll", "echo", "") "\n);\n",
		   path, sizeof(path));
	ck_assert_int_eq(config_load(path, &c, &e), CONFIG_E_INVALID);
	ck_assert_uint_eq(e.n_errors, 1);
	ck_assert_str_eq(e.errors[0].file, path);
	ck_assert_int_eq(e.errors[0].line, 4);
	snprintf(want, sizeof(want), "name: 'a' is already used by the listener at %s:1", inc);
	ck_assert_msg(strstr(e.errors[0].message, want), "%s", e.errors[0].message);
	config_errors_clear(&e);
}
END_TEST

START_TEST(config_load_string_include_dir)
{
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };

	write_file("listeners.conf", VALID, NULL, 0);
	ck_assert_int_eq(config_load_string("@include \"listeners.conf\"\n", "inline", tmpdir, &c,
					    &e),
			 0);
	ck_assert_uint_eq(c->n_listeners, 1);
}
END_TEST

START_TEST(config_shipped_file_is_valid)
{
#ifdef SOURCE_ROOT
	_cleanup_(config_freep) struct config *c = NULL;
	struct config_errors e = { 0 };
	const char *path = SOURCE_ROOT "/conf/netechod.conf";
	int r;

	/* The file is part of the tree: missing, it is a failure, not a skip. */
	ck_assert_msg(access(path, F_OK) == 0, "%s: %s", path, strerror(errno));
	r = config_load(path, &c, &e);
	if (r != 0)
		dump_errors(&e);
	ck_assert_int_eq(r, 0);
	ck_assert_uint_gt(c->n_listeners, 0);
#else
	ck_abort_msg("built without SOURCE_ROOT: the shipped config cannot be found");
#endif
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

#define LOOP(name, fn, table)                                                                    \
	do {                                                                                     \
		tc = tcase_create(name);                                                         \
		tcase_add_loop_test(tc, fn, 0, (int)ELEMENTSOF(table));                          \
		suite_add_tcase(s, tc);                                                          \
	} while (0)

	LOOP("top_level", config_top_level, top_level_cases);
	LOOP("required_and_unknown", config_required_and_unknown, required_cases);
	LOOP("names", config_names, name_cases);
	LOOP("enums_and_booleans", config_enums_and_booleans, enum_cases);
	LOOP("integer_ranges", config_integer_ranges, range_cases);
	LOOP("addresses", config_addresses, address_cases);
	LOOP("workers", config_workers, workers_cases);
	LOOP("select_fd_setsize", config_select_fd_setsize, select_cases);
	LOOP("service_specific_keys", config_service_specific_keys, service_key_cases);
	LOOP("prefix", config_prefix, prefix_cases);
	LOOP("allow_deny", config_allow_deny, cidr_cases);
	LOOP("proxy", config_proxy, proxy_cases);
	LOOP("backend", config_backend, backend_cases);
	tcase_add_test(tc, config_backend_room_defaults_to_name);
	tcase_add_test(tc, config_backend_error_hides_the_password);
	LOOP("duplicate_binds", config_duplicate_binds, bind_cases);
	LOOP("defaults_group", config_defaults_group, defaults_cases);
	LOOP("parse_errors", config_parse_errors, parse_cases);
	tcase_add_test(tc, config_parse_error_is_the_only_error);
#undef LOOP

	tc = tcase_create("all_errors");
	tcase_add_test(tc, config_reports_every_error);
	tcase_add_test(tc, config_reports_errors_of_every_listener);
	suite_add_tcase(s, tc);

	tc = tcase_create("effective_values");
	tcase_add_loop_test(tc, config_effective_values, 0, (int)ELEMENTSOF(values_cases));
	tcase_add_test(tc, config_fills_every_field);
	tcase_add_test(tc, config_builtin_top_level_defaults);
	suite_add_tcase(s, tc);

	tc = tcase_create("defaults_table");
	tcase_add_test(tc, config_defaults_table_matches_man_page);
	tcase_add_test(tc, config_defaults_table_matches_parser);
	suite_add_tcase(s, tc);

	tc = tcase_create("strings");
	tcase_add_test(tc, config_enum_strings_round_trip);
	tcase_add_test(tc, config_log_level_strings);
	suite_add_tcase(s, tc);

	tc = tcase_create("listener_helpers");
	tcase_add_test(tc, config_find_listener_by_name);
	tcase_add_test(tc, config_listener_copy_is_deep);
	tcase_add_loop_test(tc, config_listener_equal_notices_each_field, 0,
			    (int)ELEMENTSOF(equal_variants));
	tcase_add_test(tc, config_listener_equal_ignores_line_and_spelling);
	tcase_add_test(tc, config_listener_equal_allow_given_vs_not);
	tcase_add_test(tc, config_free_accepts_null);
	tcase_add_test(tc, config_success_clears_errors_and_allows_null_reterr);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_checked_fixture(tc, tmpdir_setup, tmpdir_teardown);
	tcase_add_test(tc, config_load_file);
	tcase_add_test(tc, config_load_file_errors_name_the_file);
	tcase_add_test(tc, config_load_parse_error_in_file);
	tcase_add_test(tc, config_load_missing_file);
	tcase_add_test(tc, config_load_directory);
	tcase_add_test(tc, config_include_is_relative_to_the_file);
	tcase_add_test(tc, config_include_errors_name_the_included_file);
	tcase_add_test(tc, config_include_parse_error_names_the_included_file);
	tcase_add_test(tc, config_duplicate_across_include_names_the_other_file);
	tcase_add_test(tc, config_load_string_include_dir);
	suite_add_tcase(s, tc);

	tc = tcase_create("shipped");
	tcase_add_test(tc, config_shipped_file_is_valid);
	suite_add_tcase(s, tc);

	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
