#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <syslog.h>

#include <libconfig.h>

#include "cidr.h"
#include "config.h"
#include "util.h"

/* The built-in defaults, kept only here: the parser uses these macros and
 * config_defaults[] shows the same values the way netechod.conf(5) writes
 * them. */
#define DEFAULT_LOG_LEVEL "info"
#define DEFAULT_SHUTDOWN_TIMEOUT 5
#define DEFAULT_ADDRESS "*"
#define DEFAULT_ENABLED true
#define DEFAULT_MAX_CLIENTS 256
#define DEFAULT_PER_SOURCE 0
#define DEFAULT_IDLE_TIMEOUT 300
#define DEFAULT_BACKLOG 128
#define DEFAULT_WORKERS 1
#define DEFAULT_RATE_LIMIT 0
#define DEFAULT_MAX_LINE 1024

#define SHUTDOWN_TIMEOUT_MAX 3600

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define BOOL_STR(b) ((b) ? "true" : "false")

const struct config_default config_defaults[] = {
	{ "log_level", DEFAULT_LOG_LEVEL },
	{ "shutdown_timeout", STRINGIFY(DEFAULT_SHUTDOWN_TIMEOUT) },
	{ "address", DEFAULT_ADDRESS },
	{ "enabled", BOOL_STR(DEFAULT_ENABLED) },
	{ "max_clients", STRINGIFY(DEFAULT_MAX_CLIENTS) },
	{ "per_source", STRINGIFY(DEFAULT_PER_SOURCE) },
	{ "idle_timeout", STRINGIFY(DEFAULT_IDLE_TIMEOUT) },
	{ "backlog", STRINGIFY(DEFAULT_BACKLOG) },
	{ "workers", STRINGIFY(DEFAULT_WORKERS) },
	{ "rate_limit", STRINGIFY(DEFAULT_RATE_LIMIT) },
	{ "max_line", STRINGIFY(DEFAULT_MAX_LINE) },
};
const size_t config_n_defaults = ELEMENTSOF(config_defaults);

static const char *const protocol_names[_PROTOCOL_MAX] = {
	[PROTOCOL_TCP] = "tcp",
	[PROTOCOL_UDP] = "udp",
};

static const char *const model_names[_MODEL_MAX] = {
	[MODEL_FORK] = "fork",
	[MODEL_THREAD] = "thread",
	[MODEL_SELECT] = "select",
	[MODEL_POLL] = "poll",
	[MODEL_EPOLL] = "epoll",
};

static const char *const service_names[_SERVICE_MAX] = {
	[SERVICE_ECHO] = "echo",
	[SERVICE_CHAT] = "chat",
	[SERVICE_DISCARD] = "discard",
	[SERVICE_CHARGEN] = "chargen",
	[SERVICE_METRICS] = "metrics",
};

/* Indexed by syslog priority; only these five can be configured. */
static const char *const log_level_names[LOG_DEBUG + 1] = {
	[LOG_ERR] = "error",
	[LOG_WARNING] = "warning",
	[LOG_NOTICE] = "notice",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

static const char *
name_of(const char *const *names, size_t n, int i)
{
	if (i < 0 || (size_t)i >= n)
		return NULL;
	return names[i];
}

static int
index_of(const char *const *names, size_t n, const char *s)
{
	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (names[i] && strcmp(names[i], s) == 0)
			return (int)i;
	return -EINVAL;
}

const char *
protocol_to_string(enum protocol p)
{
	return name_of(protocol_names, ELEMENTSOF(protocol_names), (int)p);
}

int
protocol_from_string(const char *s)
{
	return index_of(protocol_names, ELEMENTSOF(protocol_names), s);
}

const char *
model_to_string(enum model m)
{
	return name_of(model_names, ELEMENTSOF(model_names), (int)m);
}

int
model_from_string(const char *s)
{
	return index_of(model_names, ELEMENTSOF(model_names), s);
}

const char *
service_to_string(enum service_kind s)
{
	return name_of(service_names, ELEMENTSOF(service_names), (int)s);
}

int
service_from_string(const char *s)
{
	return index_of(service_names, ELEMENTSOF(service_names), s);
}

const char *
log_level_to_string(int level)
{
	return name_of(log_level_names, ELEMENTSOF(log_level_names), level);
}

int
log_level_from_string(const char *s)
{
	return index_of(log_level_names, ELEMENTSOF(log_level_names), s);
}

/* "a, b, c" from a name table, skipping holes; descending lists log levels
 * from the most verbose as the man page does. */
static const char *
join_names(const char *const *names, size_t n, bool descending, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const char *name = names[descending ? n - 1 - i : i];

		if (!name)
			continue;
		used += (size_t)snprintf(buf + MIN(used, len - 1), len - MIN(used, len - 1),
					 "%s%s", used > 0 ? ", " : "", name);
	}
	return buf;
}

/* Listener settings, in the order messages list them. */
enum key {
	KEY_NAME,
	KEY_PROTOCOL,
	KEY_PORT,
	KEY_MODEL,
	KEY_SERVICE,
	KEY_ADDRESS,
	KEY_ENABLED,
	KEY_MAX_CLIENTS,
	KEY_PER_SOURCE,
	KEY_IDLE_TIMEOUT,
	KEY_BACKLOG,
	KEY_WORKERS,
	KEY_ALLOW,
	KEY_DENY,
	KEY_RATE_LIMIT,
	KEY_MAX_LINE,
	KEY_PREFIX,
	KEY_PROXY_PROTOCOL,
	KEY_PROXY_FROM,
	KEY_BACKEND,
	KEY_ROOM,
	_KEY_MAX,
};

enum kind {
	KIND_NAME,
	KIND_ENUM,
	KIND_INT,
	KIND_BOOL,
	KIND_ADDRESS,
	KIND_CIDRS,
	KIND_PREFIX,
	KIND_BACKEND,
	KIND_ROOM,
};

struct key_info {
	const char *name;
	enum kind kind;
	long long min, max; /* KIND_INT */
	long long def;      /* KIND_INT, KIND_BOOL */
	const char *const *names; /* KIND_ENUM */
	size_t n_names;
	bool required;
	bool in_defaults; /* may appear in the defaults group */
};

static const struct key_info keys[_KEY_MAX] = {
	[KEY_NAME] = { .name = "name", .kind = KIND_NAME, .required = true },
	[KEY_PROTOCOL] = { .name = "protocol", .kind = KIND_ENUM, .names = protocol_names,
			   .n_names = _PROTOCOL_MAX, .required = true },
	[KEY_PORT] = { .name = "port", .kind = KIND_INT, .min = 1, .max = 65535, .required = true },
	[KEY_MODEL] = { .name = "model", .kind = KIND_ENUM, .names = model_names,
			.n_names = _MODEL_MAX, .required = true },
	[KEY_SERVICE] = { .name = "service", .kind = KIND_ENUM, .names = service_names,
			  .n_names = _SERVICE_MAX, .required = true },
	[KEY_ADDRESS] = { .name = "address", .kind = KIND_ADDRESS, .in_defaults = true },
	[KEY_ENABLED] = { .name = "enabled", .kind = KIND_BOOL, .def = DEFAULT_ENABLED },
	[KEY_MAX_CLIENTS] = { .name = "max_clients", .kind = KIND_INT, .min = 1, .max = 1048576,
			      .def = DEFAULT_MAX_CLIENTS, .in_defaults = true },
	[KEY_PER_SOURCE] = { .name = "per_source", .kind = KIND_INT, .min = 0, .max = 1048576,
			     .def = DEFAULT_PER_SOURCE, .in_defaults = true },
	[KEY_IDLE_TIMEOUT] = { .name = "idle_timeout", .kind = KIND_INT, .min = 0, .max = 2147483,
			       .def = DEFAULT_IDLE_TIMEOUT, .in_defaults = true },
	[KEY_BACKLOG] = { .name = "backlog", .kind = KIND_INT, .min = 1, .max = 65535,
			  .def = DEFAULT_BACKLOG, .in_defaults = true },
	[KEY_WORKERS] = { .name = "workers", .kind = KIND_INT, .min = 1, .max = 256,
			  .def = DEFAULT_WORKERS, .in_defaults = true },
	[KEY_ALLOW] = { .name = "allow", .kind = KIND_CIDRS, .in_defaults = true },
	[KEY_DENY] = { .name = "deny", .kind = KIND_CIDRS, .in_defaults = true },
	[KEY_RATE_LIMIT] = { .name = "rate_limit", .kind = KIND_INT, .min = 0, .max = 1000000,
			     .def = DEFAULT_RATE_LIMIT, .in_defaults = true },
	[KEY_MAX_LINE] = { .name = "max_line", .kind = KIND_INT, .min = 64, .max = 65536,
			   .def = DEFAULT_MAX_LINE, .in_defaults = true },
	[KEY_PREFIX] = { .name = "prefix", .kind = KIND_PREFIX, .in_defaults = true },
	/* Per listener only: which listeners sit behind a balancer is a
	 * property of each, and a default would reach udp ones too. */
	[KEY_PROXY_PROTOCOL] = { .name = "proxy_protocol", .kind = KIND_BOOL, .def = false },
	[KEY_PROXY_FROM] = { .name = "proxy_from", .kind = KIND_CIDRS },
	/* Per listener only: a default would reach every listener. */
	[KEY_BACKEND] = { .name = "backend", .kind = KIND_BACKEND },
	[KEY_ROOM] = { .name = "room", .kind = KIND_ROOM },
};

enum top_key {
	TOP_LOG_LEVEL,
	TOP_USER,
	TOP_GROUP,
	TOP_SHUTDOWN_TIMEOUT,
	TOP_DEFAULTS,
	TOP_LISTENERS,
	_TOP_MAX,
};

static const char *const top_names[_TOP_MAX] = {
	[TOP_LOG_LEVEL] = "log_level",
	[TOP_USER] = "user",
	[TOP_GROUP] = "group",
	[TOP_SHUTDOWN_TIMEOUT] = "shutdown_timeout",
	[TOP_DEFAULTS] = "defaults",
	[TOP_LISTENERS] = "listeners",
};

/* Long enough for every list of names or keys we print. */
#define ALLOWED_MAX 256

struct parser {
	const char *name;        /* the file, for settings libconfig has no file for */
	const char *include_dir; /* where libconfig looked for @include files */
	struct config_errors *errors;
	bool oom;
	char ctx[64]; /* "listener 'echo': ", put in front of each message */
};

/* What one group (a listener or defaults) says, before defaults apply. */
struct keyset {
	const config_setting_t *where[_KEY_MAX]; /* NULL when not set */
	bool ok[_KEY_MAX];                        /* set and valid */
	long long num[_KEY_MAX];                  /* KIND_INT, KIND_BOOL, KIND_ENUM */
	const char *str[_KEY_MAX];                /* strings, owned by libconfig */
	struct cidr *cidrs[_KEY_MAX];             /* KIND_CIDRS, owned */
	size_t n_cidrs[_KEY_MAX];
};

/* What the cross-listener checks need to know about earlier listeners. */
struct listener_state {
	const config_setting_t *group;
	const config_setting_t *name_setting;
	char label[LISTENER_NAME_MAX + 16]; /* "listener 'echo'" or "listener #3" */
	bool name_ok;
	bool bind_ok; /* enabled, and protocol, port and address are valid */
};

static void
keyset_done(struct keyset *ks)
{
	for (size_t k = 0; k < _KEY_MAX; k++) {
		free(ks->cidrs[k]);
		ks->cidrs[k] = NULL;
		ks->n_cidrs[k] = 0;
	}
}

/* libconfig 1.5 records an @include file by the name it was given, which is
 * relative to include_dir; show it by a path that works from anywhere. */
static char *
display_path(const struct parser *p, const char *file)
{
	if (!file)
		file = p->name;
	if (p->include_dir && strcmp(file, p->name) != 0 && strcmp(p->include_dir, ".") != 0) {
		char *s;

		if (asprintf(&s, "%s/%s", p->include_dir, file) < 0)
			return NULL;
		return s;
	}
	return strdup(file);
}

static const char *
setting_file(const config_setting_t *s)
{
	return s ? config_setting_source_file(s) : NULL;
}

static int
setting_line(const config_setting_t *s)
{
	return s ? (int)config_setting_source_line(s) : 0;
}

static _printf_(4, 0) void
verror_at(struct parser *p, const char *file, int line, const char *fmt, va_list ap)
{
	_cleanup_(freep) char *msg = NULL;
	_cleanup_(freep) char *full = NULL;
	_cleanup_(freep) char *path = NULL;
	struct config_error *e;

	if (p->oom)
		return;
	if (vasprintf(&msg, fmt, ap) < 0) {
		msg = NULL;
		goto oom;
	}
	if (asprintf(&full, "%s%s", p->ctx, msg) < 0) {
		full = NULL;
		goto oom;
	}
	path = display_path(p, file);
	if (!path)
		goto oom;
	e = reallocarray(p->errors->errors, p->errors->n_errors + 1, sizeof(*e));
	if (!e)
		goto oom;
	p->errors->errors = e;
	e[p->errors->n_errors++] = (struct config_error){
		.file = TAKE_PTR(path),
		.line = line,
		.message = TAKE_PTR(full),
	};
	return;
oom:
	p->oom = true;
}

static _printf_(4, 5) void
error_at(struct parser *p, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror_at(p, file, line, fmt, ap);
	va_end(ap);
}

/* An error about setting s, at its file and line. */
static _printf_(3, 4) void
error_s(struct parser *p, const config_setting_t *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror_at(p, setting_file(s), setting_line(s), fmt, ap);
	va_end(ap);
}

/* "line 3", or "other.conf:3" when b is in another file than a. */
static char *
location_of(const struct parser *p, const config_setting_t *a, const config_setting_t *b)
{
	const char *fa = setting_file(a), *fb = setting_file(b);
	_cleanup_(freep) char *path = NULL;
	char *s;

	if ((!fa && !fb) || (fa && fb && strcmp(fa, fb) == 0)) {
		if (asprintf(&s, "line %d", setting_line(b)) < 0)
			return NULL;
		return s;
	}
	path = display_path(p, fb);
	if (!path || asprintf(&s, "%s:%d", path, setting_line(b)) < 0)
		return NULL;
	return s;
}

static const char *
type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a floating-point number";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_GROUP:
		return "a group";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	default:
		return "nothing";
	}
}

static bool
get_int(struct parser *p, const config_setting_t *s, const char *key, long long min,
	long long max, long long *ret)
{
	long long v;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		v = config_setting_get_int(s);
		break;
	case CONFIG_TYPE_INT64:
		v = config_setting_get_int64(s);
		break;
	default:
		error_s(p, s, "%s: expected an integer, got %s", key,
			type_name(config_setting_type(s)));
		return false;
	}
	if (v < min || v > max) {
		error_s(p, s, "%s: %lld is out of range; allowed: %lld-%lld", key, v, min, max);
		return false;
	}
	*ret = v;
	return true;
}

static bool
get_bool(struct parser *p, const config_setting_t *s, const char *key, bool *ret)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		error_s(p, s, "%s: expected a boolean (true or false), got %s", key,
			type_name(config_setting_type(s)));
		return false;
	}
	*ret = config_setting_get_bool(s) != 0;
	return true;
}

static bool
get_string(struct parser *p, const config_setting_t *s, const char *key, const char **ret)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		error_s(p, s, "%s: expected a string, got %s", key,
			type_name(config_setting_type(s)));
		return false;
	}
	*ret = config_setting_get_string(s);
	return true;
}

static bool
get_enum(struct parser *p, const config_setting_t *s, const char *key, const char *const *names,
	 size_t n, bool descending, int *ret)
{
	char allowed[ALLOWED_MAX];
	const char *v;
	int i;

	if (!get_string(p, s, key, &v))
		return false;
	i = index_of(names, n, v);
	if (i < 0) {
		error_s(p, s, "%s: unknown value '%s'; allowed: %s", key, v,
			join_names(names, n, descending, allowed, sizeof(allowed)));
		return false;
	}
	*ret = i;
	return true;
}

static bool
char_is_name(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

static bool
name_is_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > LISTENER_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!char_is_name(*s))
			return false;
	return true;
}

/* RFC 1123 host name: dot-separated labels of 1-63 letters, digits and
 * hyphens, not starting or ending with a hyphen, at most 253 characters, one
 * trailing dot allowed. A last label of digits only is refused: that is a
 * mistyped IPv4 address, which the resolver would send to DNS. */
static bool
hostname_is_valid(const char *s)
{
	size_t n = strlen(s), label = 0;
	bool digits = true;

	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			digits = true;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
		if (c == '-' && label == 0)
			return false;
		if (c < '0' || c > '9')
			digits = false;
		if (++label > 63)
			return false;
	}
	return s[n - 1] != '-' && !digits;
}

static bool
address_is_valid(const char *s)
{
	uint8_t buf[16];

	return strcmp(s, "*") == 0 || inet_pton(AF_INET, s, buf) == 1 ||
	       inet_pton(AF_INET6, s, buf) == 1 || hostname_is_valid(s);
}

#define PREFIX_ESCAPES "%p (pid), %t (thread id), %l (listener name), %% (a percent sign)"

static bool
check_prefix(struct parser *p, const config_setting_t *s, const char *v)
{
	size_t n = strlen(v);

	if (n < 1 || n > PREFIX_MAX) {
		error_s(p, s, "prefix: must be 1-%d bytes long, got %zu", PREFIX_MAX, n);
		return false;
	}
	for (const char *c = v; *c; c++) {
		if (*c != '%')
			continue;
		c++;
		if (*c == '\0') {
			error_s(p, s, "prefix: '%s' ends with a lone '%%'; allowed escapes: %s", v,
				PREFIX_ESCAPES);
			return false;
		}
		if (!strchr("ptl%", *c)) {
			error_s(p, s,
				"prefix: '%%%c' is not a valid escape; allowed escapes: %s", *c,
				PREFIX_ESCAPES);
			return false;
		}
	}
	return true;
}

static bool
get_cidrs(struct parser *p, const config_setting_t *s, const char *key, struct cidr **ret,
	  size_t *ret_n)
{
	_cleanup_(freep) struct cidr *list = NULL;
	bool ok = true;
	int n;

	if (config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST) {
		error_s(p, s,
			"%s: expected an array of CIDR strings like [ \"10.0.0.0/8\" ], got %s",
			key, type_name(config_setting_type(s)));
		return false;
	}
	n = config_setting_length(s);
	list = calloc((size_t)MAX(n, 1), sizeof(*list));
	if (!list) {
		p->oom = true;
		return false;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v;

		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			error_s(p, e, "%s: entry %d: expected a string, got %s", key, i + 1,
				type_name(config_setting_type(e)));
			ok = false;
			continue;
		}
		v = config_setting_get_string(e);
		if (cidr_parse(v, &list[i]) < 0) {
			error_s(p, e,
				"%s: '%s' is not a valid CIDR (address/prefix with no host bits set)",
				key, v);
			ok = false;
		}
	}
	if (!ok)
		return false;
	*ret_n = (size_t)n;
	*ret = TAKE_PTR(list);
	return true;
}

static bool
parse_value(struct parser *p, enum key k, const config_setting_t *s, struct keyset *ks)
{
	const struct key_info *ki = &keys[k];
	const char *v;
	bool b;
	int i;

	switch (ki->kind) {
	case KIND_INT:
		return get_int(p, s, ki->name, ki->min, ki->max, &ks->num[k]);
	case KIND_BOOL:
		if (!get_bool(p, s, ki->name, &b))
			return false;
		ks->num[k] = b;
		return true;
	case KIND_ENUM:
		if (!get_enum(p, s, ki->name, ki->names, ki->n_names, false, &i))
			return false;
		ks->num[k] = i;
		return true;
	case KIND_NAME:
		if (!get_string(p, s, ki->name, &v))
			return false;
		if (!name_is_valid(v)) {
			error_s(p, s,
				"name: '%s' is not valid; allowed: 1-%d characters of A-Z a-z 0-9 _ . -",
				v, LISTENER_NAME_MAX);
			return false;
		}
		ks->str[k] = v;
		return true;
	case KIND_ADDRESS:
		if (!get_string(p, s, ki->name, &v))
			return false;
		if (!address_is_valid(v)) {
			error_s(p, s,
				"address: '%s' is not valid; allowed: \"*\" (all interfaces), an IPv4 or IPv6 address, or a host name",
				v);
			return false;
		}
		ks->str[k] = v;
		return true;
	case KIND_PREFIX:
		if (!get_string(p, s, ki->name, &v) || !check_prefix(p, s, v))
			return false;
		ks->str[k] = v;
		return true;
	case KIND_BACKEND: {
		struct backend_url u;
		const char *why = NULL;

		if (!get_string(p, s, ki->name, &v))
			return false;
		if (backend_url_parse(v, &u, &why) < 0) {
			/* Never echo the value: it may hold a password. */
			error_s(p, s,
				"backend: %s; allowed: \"redis://[USER:PASSWORD@]HOST[:PORT][/DB]\" or \"unix:PATH[?db=N]\"",
				why ? why : "not a valid URL");
			return false;
		}
		ks->str[k] = v;
		return true;
	}
	case KIND_ROOM:
		if (!get_string(p, s, ki->name, &v))
			return false;
		if (!backend_room_valid(v)) {
			error_s(p, s,
				"room: '%s' is not valid; allowed: 1-%d characters of A-Z a-z 0-9 _ . -",
				v, LISTENER_NAME_MAX);
			return false;
		}
		ks->str[k] = v;
		return true;
	case KIND_CIDRS:
		if (!get_cidrs(p, s, ki->name, &ks->cidrs[k], &ks->n_cidrs[k]))
			return false;
		if (k == KEY_ALLOW && ks->n_cidrs[k] == 0) {
			error_s(p, s,
				"allow: an empty list would refuse every client; remove allow to serve everyone");
			return false;
		}
		if (k == KEY_PROXY_FROM && ks->n_cidrs[k] == 0) {
			error_s(p, s,
				"proxy_from: an empty list would refuse every connection; list the balancers that send the PROXY header");
			return false;
		}
		return true;
	}
	return false;
}

static const char *
join_keys(bool defaults_only, char *buf, size_t len)
{
	const char *names[_KEY_MAX];

	for (size_t k = 0; k < _KEY_MAX; k++)
		names[k] = !defaults_only || keys[k].in_defaults ? keys[k].name : NULL;
	return join_names(names, _KEY_MAX, false, buf, len);
}

static int
key_from_name(const char *name)
{
	for (size_t k = 0; k < _KEY_MAX; k++)
		if (strcmp(keys[k].name, name) == 0)
			return (int)k;
	return -EINVAL;
}

/* Read every setting of a listener or the defaults group into ks. */
static void
parse_keys(struct parser *p, const config_setting_t *group, bool is_defaults, struct keyset *ks)
{
	char allowed[ALLOWED_MAX];
	int n = config_setting_length(group);

	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s);
		int k = key_from_name(name);

		if (k < 0) {
			error_s(p, s, "unknown setting '%s'; allowed: %s", name,
				join_keys(is_defaults, allowed, sizeof(allowed)));
			continue;
		}
		if (is_defaults && !keys[k].in_defaults) {
			error_s(p, s,
				"'%s' cannot be set in defaults, only per listener; allowed: %s",
				name, join_keys(true, allowed, sizeof(allowed)));
			continue;
		}
		ks->where[k] = s;
		ks->ok[k] = parse_value(p, (enum key)k, s, ks);
	}
}

static bool
workers_allowed(long long protocol, long long model)
{
	return model == MODEL_EPOLL ||
	       (protocol == PROTOCOL_UDP && (model == MODEL_FORK || model == MODEL_THREAD));
}

static bool
is(const struct keyset *ks, enum key k, long long v)
{
	return ks->ok[k] && ks->num[k] == v;
}

/* Whether a value from the defaults group applies to this listener: the
 * service- and protocol-specific ones only where they mean something. */
static bool
default_applies(enum key k, const struct keyset *ks)
{
	switch (k) {
	case KEY_PREFIX:
		return is(ks, KEY_SERVICE, SERVICE_ECHO);
	case KEY_MAX_LINE:
		return is(ks, KEY_SERVICE, SERVICE_CHAT);
	case KEY_RATE_LIMIT:
		return (is(ks, KEY_PROTOCOL, PROTOCOL_UDP) && is(ks, KEY_SERVICE, SERVICE_ECHO)) ||
		       is(ks, KEY_SERVICE, SERVICE_CHAT);
	case KEY_WORKERS:
		return ks->ok[KEY_PROTOCOL] && ks->ok[KEY_MODEL] &&
		       workers_allowed(ks->num[KEY_PROTOCOL], ks->num[KEY_MODEL]);
	default:
		return true;
	}
}

/* Where key k's effective value comes from: the listener, the defaults, or
 * NULL for the built-in default (also when the listener's own value is
 * invalid: that is already an error). */
static const struct keyset *
value_source(const struct keyset *ks, const struct keyset *d, enum key k)
{
	if (ks->where[k])
		return ks->ok[k] ? ks : NULL;
	if (d && d->ok[k] && default_applies(k, ks))
		return d;
	return NULL;
}

static long long
value_num(const struct keyset *ks, const struct keyset *d, enum key k)
{
	const struct keyset *src = value_source(ks, d, k);

	return src ? src->num[k] : keys[k].def;
}

static void *
memdup(const void *p, size_t n)
{
	void *q;

	if (n == 0)
		return NULL;
	q = malloc(n);
	if (q)
		memcpy(q, p, n);
	return q;
}

static bool
copy_cidrs(const struct keyset *src, enum key k, struct cidr **ret, size_t *ret_n)
{
	*ret = NULL;
	*ret_n = 0;
	if (!src || src->n_cidrs[k] == 0)
		return true;
	*ret = memdup(src->cidrs[k], src->n_cidrs[k] * sizeof(struct cidr));
	if (!*ret)
		return false;
	*ret_n = src->n_cidrs[k];
	return true;
}

/* Fill l from the listener's keys and the defaults. Returns false only on
 * allocation failure. */
static bool
build_listener(const struct keyset *ks, const struct keyset *d, const config_setting_t *group,
	       struct listener_config *l)
{
	const struct keyset *src;

	if (ks->ok[KEY_NAME])
		snprintf(l->name, sizeof(l->name), "%s", ks->str[KEY_NAME]);
	l->protocol = ks->ok[KEY_PROTOCOL] ? (enum protocol)ks->num[KEY_PROTOCOL] : PROTOCOL_TCP;
	l->port = ks->ok[KEY_PORT] ? (uint16_t)ks->num[KEY_PORT] : 0;
	l->model = ks->ok[KEY_MODEL] ? (enum model)ks->num[KEY_MODEL] : MODEL_FORK;
	l->service = ks->ok[KEY_SERVICE] ? (enum service_kind)ks->num[KEY_SERVICE] : SERVICE_ECHO;
	l->enabled = value_num(ks, d, KEY_ENABLED) != 0;
	l->max_clients = (unsigned)value_num(ks, d, KEY_MAX_CLIENTS);
	l->per_source = (unsigned)value_num(ks, d, KEY_PER_SOURCE);
	l->idle_timeout = (unsigned)value_num(ks, d, KEY_IDLE_TIMEOUT);
	l->backlog = (unsigned)value_num(ks, d, KEY_BACKLOG);
	l->workers = (unsigned)value_num(ks, d, KEY_WORKERS);
	l->rate_limit = (unsigned)value_num(ks, d, KEY_RATE_LIMIT);
	l->max_line = (unsigned)value_num(ks, d, KEY_MAX_LINE);
	l->line = setting_line(group);

	src = value_source(ks, d, KEY_ADDRESS);
	l->address = strdup(src ? src->str[KEY_ADDRESS] : DEFAULT_ADDRESS);
	if (!l->address)
		return false;

	src = value_source(ks, d, KEY_ALLOW);
	l->has_allow = src != NULL;
	if (!copy_cidrs(src, KEY_ALLOW, &l->allow, &l->n_allow))
		return false;
	if (!copy_cidrs(value_source(ks, d, KEY_DENY), KEY_DENY, &l->deny, &l->n_deny))
		return false;

	src = value_source(ks, d, KEY_PREFIX);
	if (src) {
		l->prefix = strdup(src->str[KEY_PREFIX]);
		if (!l->prefix)
			return false;
	}

	l->proxy_protocol = value_num(ks, d, KEY_PROXY_PROTOCOL) != 0;
	if (!copy_cidrs(value_source(ks, d, KEY_PROXY_FROM), KEY_PROXY_FROM, &l->proxy_from,
			&l->n_proxy_from))
		return false;

	/* Parsed once more: the keyset keeps the string only. */
	if (ks->ok[KEY_BACKEND] &&
	    backend_url_parse(ks->str[KEY_BACKEND], &l->backend, NULL) == 0)
		l->has_backend = true;
	snprintf(l->room, sizeof(l->room), "%s",
		 ks->ok[KEY_ROOM] ? ks->str[KEY_ROOM] : l->name);
	return true;
}

/* Rules that need several settings of one listener. */
static void
check_listener(struct parser *p, const struct keyset *ks, const struct keyset *d,
	       const config_setting_t *group)
{
	const unsigned select_max = FD_SETSIZE - SELECT_RESERVED_FDS;
	char allowed[ALLOWED_MAX];
	const struct keyset *src;

	for (size_t k = 0; k < _KEY_MAX; k++) {
		const struct key_info *ki = &keys[k];

		if (!ki->required || ks->where[k])
			continue;
		if (ki->kind == KIND_ENUM)
			error_s(p, group, "missing required setting '%s'; allowed: %s", ki->name,
				join_names(ki->names, ki->n_names, false, allowed,
					   sizeof(allowed)));
		else if (ki->kind == KIND_INT)
			error_s(p, group, "missing required setting '%s'; allowed: %lld-%lld",
				ki->name, ki->min, ki->max);
		else
			error_s(p, group, "missing required setting '%s'", ki->name);
	}

	if (ks->where[KEY_RATE_LIMIT] && is(ks, KEY_PROTOCOL, PROTOCOL_TCP) &&
	    is(ks, KEY_SERVICE, SERVICE_ECHO))
		error_s(p, ks->where[KEY_RATE_LIMIT],
			"rate_limit applies to udp listeners and to chat, not to tcp echo");
	else if (ks->where[KEY_RATE_LIMIT] && ks->ok[KEY_SERVICE] &&
		 !is(ks, KEY_SERVICE, SERVICE_ECHO) && !is(ks, KEY_SERVICE, SERVICE_CHAT))
		error_s(p, ks->where[KEY_RATE_LIMIT],
			"rate_limit applies to echo and chat, not to service %s",
			service_names[ks->num[KEY_SERVICE]]);
	if (ks->where[KEY_MAX_LINE] && ks->ok[KEY_SERVICE] && !is(ks, KEY_SERVICE, SERVICE_CHAT))
		error_s(p, ks->where[KEY_MAX_LINE], "max_line applies only to service chat");
	if (ks->where[KEY_PREFIX] && ks->ok[KEY_SERVICE] && !is(ks, KEY_SERVICE, SERVICE_ECHO))
		error_s(p, ks->where[KEY_PREFIX], "prefix applies only to service echo");
	if (ks->where[KEY_BACKEND] && ks->ok[KEY_SERVICE] && !is(ks, KEY_SERVICE, SERVICE_CHAT))
		error_s(p, ks->where[KEY_BACKEND], "backend applies only to service chat");
	else if (ks->where[KEY_ROOM] && !ks->where[KEY_BACKEND])
		error_s(p, ks->where[KEY_ROOM], "room applies only with a backend");
	/* RFC 864 over udp answers every datagram with up to 512 bytes: the
	 * textbook amplifier. */
	if (is(ks, KEY_SERVICE, SERVICE_CHARGEN) && is(ks, KEY_PROTOCOL, PROTOCOL_UDP))
		error_s(p, ks->where[KEY_SERVICE],
			"service chargen is tcp only: udp chargen is a traffic amplifier; use protocol \"tcp\"");
	/* HTTP runs over tcp. */
	if (is(ks, KEY_SERVICE, SERVICE_METRICS) && is(ks, KEY_PROTOCOL, PROTOCOL_UDP))
		error_s(p, ks->where[KEY_SERVICE],
			"service metrics is tcp only (HTTP); use protocol \"tcp\"");

	/* SPEC 10: the header is a stream's first bytes; a datagram has
	 * none, and a header from anyone would let anyone pick their address. */
	if (is(ks, KEY_PROXY_PROTOCOL, true) && is(ks, KEY_PROTOCOL, PROTOCOL_UDP))
		error_s(p, ks->where[KEY_PROXY_PROTOCOL],
			"proxy_protocol applies only to tcp listeners: a udp datagram carries no PROXY header");
	else if (is(ks, KEY_PROXY_PROTOCOL, true) && !ks->where[KEY_PROXY_FROM])
		error_s(p, ks->where[KEY_PROXY_PROTOCOL],
			"proxy_protocol = true needs proxy_from, the balancers allowed to send the header: without it any client could claim any address");
	else if (ks->where[KEY_PROXY_FROM] && !is(ks, KEY_PROXY_PROTOCOL, true) &&
		 (!ks->where[KEY_PROXY_PROTOCOL] || ks->ok[KEY_PROXY_PROTOCOL]))
		error_s(p, ks->where[KEY_PROXY_FROM],
			"proxy_from applies only with proxy_protocol = true");

	if (ks->ok[KEY_WORKERS] && ks->num[KEY_WORKERS] > 1 && ks->ok[KEY_PROTOCOL] &&
	    ks->ok[KEY_MODEL] && !workers_allowed(ks->num[KEY_PROTOCOL], ks->num[KEY_MODEL]))
		error_s(p, ks->where[KEY_WORKERS],
			"workers: must be 1 for %s/%s; workers > 1 applies to udp fork/thread and to epoll",
			protocol_names[ks->num[KEY_PROTOCOL]], model_names[ks->num[KEY_MODEL]]);

	/* Every tcp client of a select(2) listener is an fd under FD_SETSIZE;
	 * check the effective value, inherited ones too. */
	src = value_source(ks, d, KEY_MAX_CLIENTS);
	if (src && is(ks, KEY_MODEL, MODEL_SELECT) && is(ks, KEY_PROTOCOL, PROTOCOL_TCP) &&
	    src->num[KEY_MAX_CLIENTS] > select_max) {
		long long v = src->num[KEY_MAX_CLIENTS];
		_cleanup_(freep) char *loc = NULL;

		if (src == ks) {
			error_s(p, ks->where[KEY_MAX_CLIENTS],
				"max_clients: %lld does not fit select(2) (at most %u with FD_SETSIZE %d); use model \"poll\" or \"epoll\"",
				v, select_max, FD_SETSIZE);
			return;
		}
		loc = location_of(p, group, src->where[KEY_MAX_CLIENTS]);
		error_s(p, group,
			"max_clients: %lld does not fit select(2) (at most %u with FD_SETSIZE %d); use model \"poll\" or \"epoll\" (max_clients is inherited from defaults at %s)",
			v, select_max, FD_SETSIZE, loc ? loc : "?");
	}
}

/* Two bind addresses that would take the same port: equal, "*" against
 * anything, or an unspecified literal against a literal of its family. */
static bool
addresses_overlap(const char *a, const char *b)
{
	static const uint8_t zero[16];
	uint8_t x[16], y[16];
	int fam[] = { AF_INET, AF_INET6 };

	if (strcmp(a, "*") == 0 || strcmp(b, "*") == 0 || strcasecmp(a, b) == 0)
		return true;
	for (size_t i = 0; i < ELEMENTSOF(fam); i++) {
		size_t n = fam[i] == AF_INET ? 4 : 16;

		if (inet_pton(fam[i], a, x) != 1 || inet_pton(fam[i], b, y) != 1)
			continue;
		return memcmp(x, y, n) == 0 || memcmp(x, zero, n) == 0 || memcmp(y, zero, n) == 0;
	}
	return false;
}

/* Compare listener i with the ones before it: unique names, no two enabled
 * listeners on one protocol, port and address. */
static void
check_against_earlier(struct parser *p, const struct listener_config *ls,
		      const struct listener_state *st, size_t i)
{
	const struct listener_config *l = &ls[i];

	for (size_t j = 0; st[i].name_ok && j < i; j++) {
		_cleanup_(freep) char *loc = NULL;

		if (!st[j].name_ok || strcmp(ls[j].name, l->name) != 0)
			continue;
		loc = location_of(p, st[i].name_setting, st[j].name_setting);
		error_s(p, st[i].name_setting, "name: '%s' is already used by the listener at %s",
			l->name, loc ? loc : "?");
		break;
	}

	for (size_t j = 0; st[i].bind_ok && j < i; j++) {
		_cleanup_(freep) char *loc = NULL;

		if (!st[j].bind_ok || ls[j].protocol != l->protocol || ls[j].port != l->port ||
		    !addresses_overlap(ls[j].address, l->address))
			continue;
		loc = location_of(p, st[i].group, st[j].group);
		error_s(p, st[i].group,
			"%s port %u address '%s' conflicts with %s at %s (%s port %u address '%s'); disable one of them or change its port or address",
			protocol_names[l->protocol], l->port, l->address, st[j].label,
			loc ? loc : "?", protocol_names[ls[j].protocol], ls[j].port,
			ls[j].address);
		break;
	}
}

static void
parse_listener(struct parser *p, const config_setting_t *group, size_t index,
	       const struct keyset *d, struct listener_config *l, struct listener_state *st)
{
	const config_setting_t *name_setting;
	struct keyset ks = { 0 };

	snprintf(st->label, sizeof(st->label), "listener #%zu", index + 1);
	st->group = group;
	if (!config_setting_is_group(group)) {
		snprintf(p->ctx, sizeof(p->ctx), "%s: ", st->label);
		error_s(p, group, "expected a group { name = ...; ... }, got %s",
			type_name(config_setting_type(group)));
		return;
	}

	/* Messages name the listener when they can. */
	name_setting = config_setting_get_member(group, "name");
	if (name_setting && config_setting_type(name_setting) == CONFIG_TYPE_STRING &&
	    name_is_valid(config_setting_get_string(name_setting)))
		snprintf(st->label, sizeof(st->label), "listener '%s'",
			 config_setting_get_string(name_setting));
	snprintf(p->ctx, sizeof(p->ctx), "%s: ", st->label);

	parse_keys(p, group, false, &ks);
	check_listener(p, &ks, d, group);
	if (!build_listener(&ks, d, group, l))
		p->oom = true;

	st->name_setting = ks.where[KEY_NAME];
	st->name_ok = ks.ok[KEY_NAME];
	st->bind_ok = ks.ok[KEY_PROTOCOL] && ks.ok[KEY_PORT] &&
		      (!ks.where[KEY_ADDRESS] || ks.ok[KEY_ADDRESS]) &&
		      (!ks.where[KEY_ENABLED] || ks.ok[KEY_ENABLED]) && l->enabled;
	keyset_done(&ks);
}

static void
parse_listeners(struct parser *p, const config_setting_t *list, const struct keyset *d,
		struct config *c)
{
	_cleanup_(freep) struct listener_state *st = NULL;
	size_t n;

	if (!list) {
		error_at(p, p->name, 0, "no listeners defined; add listeners = ( { ... } );");
		return;
	}
	if (config_setting_type(list) != CONFIG_TYPE_LIST &&
	    config_setting_type(list) != CONFIG_TYPE_ARRAY) {
		error_s(p, list, "listeners: expected a list of groups ( { ... }, ... ), got %s",
			type_name(config_setting_type(list)));
		return;
	}
	n = (size_t)config_setting_length(list);
	if (n == 0) {
		error_s(p, list, "no listeners defined; add listeners = ( { ... } );");
		return;
	}
	if (n > CONFIG_LISTENERS_MAX) {
		error_s(p, list, "listeners: %zu listeners, at most %d are allowed", n,
			CONFIG_LISTENERS_MAX);
		return;
	}

	c->listeners = calloc(n, sizeof(*c->listeners));
	st = calloc(n, sizeof(*st));
	if (!c->listeners || !st) {
		p->oom = true;
		return;
	}
	for (size_t i = 0; i < n && !p->oom; i++) {
		parse_listener(p, config_setting_get_elem(list, (unsigned)i), i, d,
			       &c->listeners[i], &st[i]);
		c->n_listeners++;
		check_against_earlier(p, c->listeners, st, i);
		p->ctx[0] = '\0';
	}
}

static bool
set_string(struct parser *p, const config_setting_t *s, const char *key, char **ret)
{
	const char *v;

	if (!get_string(p, s, key, &v))
		return false;
	if (v[0] == '\0') {
		error_s(p, s, "%s: must not be empty", key);
		return false;
	}
	free(*ret);
	*ret = strdup(v);
	if (!*ret)
		p->oom = true;
	return *ret != NULL;
}

static void
parse_root(struct parser *p, const config_setting_t *root, struct config *c, struct keyset *d,
	   const config_setting_t **ret_listeners)
{
	char allowed[ALLOWED_MAX];
	int n = config_setting_length(root);
	long long v;
	int i;

	for (int m = 0; m < n; m++) {
		const config_setting_t *s = config_setting_get_elem(root, (unsigned)m);
		const char *name = config_setting_name(s);

		switch (index_of(top_names, _TOP_MAX, name)) {
		case TOP_LOG_LEVEL:
			if (get_enum(p, s, name, log_level_names, ELEMENTSOF(log_level_names), true,
				     &i))
				c->log_level = i;
			break;
		case TOP_USER:
			(void)set_string(p, s, name, &c->user);
			break;
		case TOP_GROUP:
			(void)set_string(p, s, name, &c->group);
			break;
		case TOP_SHUTDOWN_TIMEOUT:
			if (get_int(p, s, name, 0, SHUTDOWN_TIMEOUT_MAX, &v))
				c->shutdown_timeout = (unsigned)v;
			break;
		case TOP_DEFAULTS:
			if (!config_setting_is_group(s)) {
				error_s(p, s, "defaults: expected a group { ... }, got %s",
					type_name(config_setting_type(s)));
				break;
			}
			snprintf(p->ctx, sizeof(p->ctx), "defaults: ");
			parse_keys(p, s, true, d);
			p->ctx[0] = '\0';
			break;
		case TOP_LISTENERS:
			*ret_listeners = s;
			break;
		default:
			error_s(p, s, "unknown setting '%s'; allowed: %s", name,
				join_names(top_names, _TOP_MAX, false, allowed, sizeof(allowed)));
			break;
		}
	}
}

/* Walk a parsed libconfig tree into a struct config. */
static int
load_tree(struct parser *p, const config_t *cf, const char *path, struct config **ret)
{
	_cleanup_(config_freep) struct config *c = NULL;
	const config_setting_t *listeners = NULL;
	struct keyset d = { 0 };

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->log_level = log_level_from_string(DEFAULT_LOG_LEVEL);
	c->shutdown_timeout = DEFAULT_SHUTDOWN_TIMEOUT;
	if (path) {
		c->path = strdup(path);
		if (!c->path)
			return -ENOMEM;
	}

	parse_root(p, config_root_setting(cf), c, &d, &listeners);
	parse_listeners(p, listeners, &d, c);
	keyset_done(&d);

	if (p->oom)
		return -ENOMEM;
	if (p->errors->n_errors > 0)
		return CONFIG_E_INVALID;
	*ret = TAKE_PTR(c);
	return 0;
}

static void
parse_failed(struct parser *p, const config_t *cf)
{
	error_at(p, config_error_file(cf), config_error_line(cf), "%s",
		 config_error_text(cf) ? config_error_text(cf) : "parse error");
}

/* Hand the collected errors to the caller (or drop them) and settle r. */
static int
finish(struct parser *p, int r, struct config_errors *reterr)
{
	if (p->oom) {
		config_errors_clear(p->errors);
		r = -ENOMEM;
	}
	if (reterr)
		*reterr = *p->errors;
	else
		config_errors_clear(p->errors);
	return r;
}

static char *
dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* reterr is overwritten, not appended to: clear it between calls. */
int
config_load(const char *path, struct config **ret, struct config_errors *reterr)
{
	struct config_errors errors = { 0 };
	struct parser p = { .name = path, .errors = &errors };
	_cleanup_(freep) char *dir = NULL;
	struct stat st;
	config_t cf;
	int fd, r;

	/* libconfig only says "file I/O error"; find out why before it tries. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		r = -errno;
	else {
		r = fstat(fd, &st) < 0 ? -errno : S_ISDIR(st.st_mode) ? -EISDIR : 0;
		(void)safe_close(fd);
	}
	if (r < 0) {
		char buf[128];

		error_at(&p, path, 0, "cannot read: %s", strerror_r(-r, buf, sizeof(buf)));
		return finish(&p, r, reterr);
	}

	dir = dir_of(path);
	if (!dir)
		return finish(&p, -ENOMEM, reterr);
	p.include_dir = dir;

	config_init(&cf);
	config_set_include_dir(&cf, dir);
	errno = 0;
	if (!config_read_file(&cf, path)) {
		if (config_error_type(&cf) == CONFIG_ERR_FILE_IO) {
			char buf[128];

			r = errno > 0 ? -errno : -EIO;
			error_at(&p, path, 0, "cannot read: %s", strerror_r(-r, buf, sizeof(buf)));
		} else {
			parse_failed(&p, &cf);
			r = CONFIG_E_INVALID;
		}
	} else
		r = load_tree(&p, &cf, path, ret);
	config_destroy(&cf);
	return finish(&p, r, reterr);
}

int
config_load_string(const char *text, const char *name, const char *include_dir,
		   struct config **ret, struct config_errors *reterr)
{
	struct config_errors errors = { 0 };
	struct parser p = {
		.name = name ? name : "<string>",
		.include_dir = include_dir,
		.errors = &errors,
	};
	config_t cf;
	int r;

	config_init(&cf);
	if (include_dir)
		config_set_include_dir(&cf, include_dir);
	if (!config_read_string(&cf, text)) {
		parse_failed(&p, &cf);
		r = CONFIG_E_INVALID;
	} else
		r = load_tree(&p, &cf, name, ret);
	config_destroy(&cf);
	return finish(&p, r, reterr);
}

struct config *
config_free(struct config *c)
{
	if (!c)
		return NULL;
	for (size_t i = 0; i < c->n_listeners; i++)
		listener_config_done(&c->listeners[i]);
	free(c->listeners);
	free(c->path);
	free(c->user);
	free(c->group);
	free(c);
	return NULL;
}

void
config_freep(struct config **c)
{
	*c = config_free(*c);
}

void
config_errors_clear(struct config_errors *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->n_errors; i++) {
		free(e->errors[i].file);
		free(e->errors[i].message);
	}
	free(e->errors);
	e->errors = NULL;
	e->n_errors = 0;
}

static bool
streq_null(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool
cidrs_equal(const struct cidr *a, size_t na, const struct cidr *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!cidr_equal(&a[i], &b[i]))
			return false;
	return true;
}

bool
listener_config_equal(const struct listener_config *a, const struct listener_config *b)
{
	return strcmp(a->name, b->name) == 0 && a->protocol == b->protocol &&
	       streq_null(a->address, b->address) && a->port == b->port && a->model == b->model &&
	       a->service == b->service && a->enabled == b->enabled &&
	       a->max_clients == b->max_clients && a->per_source == b->per_source &&
	       a->idle_timeout == b->idle_timeout && a->backlog == b->backlog &&
	       a->workers == b->workers && a->rate_limit == b->rate_limit &&
	       a->max_line == b->max_line && a->has_allow == b->has_allow &&
	       cidrs_equal(a->allow, a->n_allow, b->allow, b->n_allow) &&
	       cidrs_equal(a->deny, a->n_deny, b->deny, b->n_deny) &&
	       streq_null(a->prefix, b->prefix) && a->proxy_protocol == b->proxy_protocol &&
	       cidrs_equal(a->proxy_from, a->n_proxy_from, b->proxy_from, b->n_proxy_from) &&
	       a->has_backend == b->has_backend &&
	       (!a->has_backend || memcmp(&a->backend, &b->backend, sizeof(a->backend)) == 0) &&
	       strcmp(a->room, b->room) == 0;
}

const struct listener_config *
config_find_listener(const struct config *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->n_listeners; i++)
		if (strcmp(c->listeners[i].name, name) == 0)
			return &c->listeners[i];
	return NULL;
}

int
listener_config_copy(struct listener_config *dst, const struct listener_config *src)
{
	struct listener_config l = *src;

	l.address = NULL;
	l.prefix = NULL;
	l.allow = NULL;
	l.deny = NULL;
	l.proxy_from = NULL;
	if (src->address && !(l.address = strdup(src->address)))
		goto oom;
	if (src->prefix && !(l.prefix = strdup(src->prefix)))
		goto oom;
	if (src->n_allow > 0 && !(l.allow = memdup(src->allow, src->n_allow * sizeof(struct cidr))))
		goto oom;
	if (src->n_deny > 0 && !(l.deny = memdup(src->deny, src->n_deny * sizeof(struct cidr))))
		goto oom;
	if (src->n_proxy_from > 0 &&
	    !(l.proxy_from = memdup(src->proxy_from, src->n_proxy_from * sizeof(struct cidr))))
		goto oom;
	*dst = l;
	return 0;
oom:
	listener_config_done(&l);
	return -ENOMEM;
}

void
listener_config_done(struct listener_config *l)
{
	if (!l)
		return;
	free(l->address);
	l->address = NULL;
	free(l->prefix);
	l->prefix = NULL;
	free(l->allow);
	l->allow = NULL;
	l->n_allow = 0;
	l->has_allow = false;
	free(l->deny);
	l->deny = NULL;
	l->n_deny = 0;
	free(l->proxy_from);
	l->proxy_from = NULL;
	l->n_proxy_from = 0;
}
