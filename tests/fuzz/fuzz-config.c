/* libFuzzer target for config_load_string() (src/config.h).
 *
 * The input is the text of a netechod.conf. Oracles:
 * - the result is 0 (with a config), CONFIG_E_INVALID (with at least one
 *   error, each naming a line and saying something), or -errno;
 * - a config that loads keeps every rule of SPEC section 3: names valid
 *   and unique, values in range, workers > 1 only where it means
 *   something, select within FD_SETSIZE, no two enabled listeners on one
 *   protocol+address+port, allow/deny entries that round-trip, a prefix
 *   with only %p %t %l %%;
 * - loading the same text again gives the same answer, and a copy of
 *   every listener compares equal to it.
 *
 * Inputs that mention @include are skipped: libconfig would open whatever
 * file they name (/dev/zero included), which tests nothing of ours. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <syslog.h>

#include "cidr.h"
#include "config.h"
#include "util.h"

#define FAIL(...)                                             \
	do {                                                  \
		fprintf(stderr, "fuzz-config: " __VA_ARGS__); \
		fputc('\n', stderr);                          \
		abort();                                      \
	} while (0)

static bool
mentions_include(const char *s)
{
	for (const char *p = s; (p = strchr(p, '@')); p++)
		if (strncasecmp(p + 1, "include", 7) == 0)
			return true;
	return false;
}

static bool
name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

static void
check_cidrs(const char *lname, const char *what, const struct cidr *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char buf[CIDR_STR_MAX];
		struct cidr back;

		cidr_to_string(&list[i], buf, sizeof(buf));
		if (cidr_parse(buf, &back) != 0 || !cidr_equal(&back, &list[i]))
			FAIL("listener '%s': %s entry %zu prints as '%s', which does not parse back",
			     lname, what, i, buf);
	}
}

static void
check_listener(const struct config *c, size_t i)
{
	const struct listener_config *l = &c->listeners[i];
	struct listener_config copy;

	if (!name_valid(l->name))
		FAIL("listener %zu has the invalid name '%s'", i, l->name);
	if ((unsigned)l->protocol >= _PROTOCOL_MAX || (unsigned)l->model >= _MODEL_MAX ||
	    (unsigned)l->service >= _SERVICE_MAX)
		FAIL("listener '%s': protocol/model/service out of range", l->name);
	if (l->port == 0)
		FAIL("listener '%s': port 0", l->name);
	if (!l->address || !*l->address)
		FAIL("listener '%s': no address", l->name);
	if (l->max_clients < 1 || l->backlog < 1 || l->workers < 1)
		FAIL("listener '%s': max_clients %u, backlog %u, workers %u", l->name,
		     l->max_clients, l->backlog, l->workers);
	if (l->max_line < 64 || l->max_line > 65536)
		FAIL("listener '%s': max_line %u outside 64-65536", l->name, l->max_line);
	if (l->workers > 1 && l->model != MODEL_EPOLL &&
	    !(l->protocol == PROTOCOL_UDP && (l->model == MODEL_FORK || l->model == MODEL_THREAD)))
		FAIL("listener '%s': workers = %u with %s/%s", l->name, l->workers,
		     protocol_to_string(l->protocol), model_to_string(l->model));
	if (l->model == MODEL_SELECT && l->protocol == PROTOCOL_TCP &&
	    l->max_clients > FD_SETSIZE - SELECT_RESERVED_FDS)
		FAIL("listener '%s': select with max_clients %u", l->name, l->max_clients);
	if (l->n_allow && !l->has_allow)
		FAIL("listener '%s': allow entries without has_allow", l->name);
	if ((l->n_allow && !l->allow) || (l->n_deny && !l->deny))
		FAIL("listener '%s': allow/deny counts without arrays", l->name);
	check_cidrs(l->name, "allow", l->allow, l->n_allow);
	check_cidrs(l->name, "deny", l->deny, l->n_deny);
	if (l->prefix) {
		if (l->service != SERVICE_ECHO)
			FAIL("listener '%s': a prefix on a %s listener", l->name,
			     service_to_string(l->service));
		for (const char *p = l->prefix; *p; p++)
			if (*p == '%') {
				p++;
				if (*p != 'p' && *p != 't' && *p != 'l' && *p != '%')
					FAIL("listener '%s': prefix '%s' has a bad %% sequence", l->name,
					     l->prefix);
			}
	}

	for (size_t j = 0; j < i; j++) {
		const struct listener_config *o = &c->listeners[j];

		if (strcmp(o->name, l->name) == 0)
			FAIL("two listeners named '%s'", l->name);
		if (o->enabled && l->enabled && o->protocol == l->protocol && o->port == l->port &&
		    strcmp(o->address, l->address) == 0)
			FAIL("listeners '%s' and '%s' both bind %s %s port %u", o->name, l->name,
			     protocol_to_string(l->protocol), l->address, l->port);
	}

	memset(&copy, 0, sizeof(copy));
	if (listener_config_copy(&copy, l) < 0)
		abort(); /* out of memory: nothing to learn */
	if (!listener_config_equal(&copy, l) || !listener_config_equal(l, &copy))
		FAIL("listener '%s': a copy does not compare equal", l->name);
	listener_config_done(&copy);
	if (config_find_listener(c, l->name) != l)
		FAIL("config_find_listener('%s') does not find it", l->name);
}

static void
check_errors(const struct config_errors *e, int r)
{
	if (r == CONFIG_E_INVALID && e->n_errors == 0)
		FAIL("CONFIG_E_INVALID without an error message");
	for (size_t i = 0; i < e->n_errors; i++) {
		const struct config_error *ce = &e->errors[i];

		if (!ce->message || !*ce->message)
			FAIL("error %zu of %zu has no message", i, e->n_errors);
		if (ce->line < 0)
			FAIL("error %zu ('%s') has line %d", i, ce->message, ce->line);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c = NULL, *c2 = NULL;
	struct config_errors e = { 0 }, e2 = { 0 };
	char *text;
	int r, r2;

	/* libconfig reads a C string: NULs would only cut the input. */
	if (memchr(data, '\0', size))
		return 0;
	text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	if (mentions_include(text)) {
		free(text);
		return 0;
	}

	r = config_load_string(text, "fuzz.conf", "/nonexistent", &c, &e);
	if (r != 0 && r != CONFIG_E_INVALID && r >= 0)
		FAIL("config_load_string returned %d", r);
	if (r == 0) {
		if (!c)
			FAIL("success without a config");
		if (c->log_level < LOG_ERR || c->log_level > LOG_DEBUG)
			FAIL("log_level %d", c->log_level);
		if (c->n_listeners && !c->listeners)
			FAIL("%zu listeners without an array", c->n_listeners);
		for (size_t i = 0; i < c->n_listeners; i++)
			check_listener(c, i);
	} else {
		if (c)
			FAIL("failure %d with a config", r);
		check_errors(&e, r);
	}

	r2 = config_load_string(text, "fuzz.conf", "/nonexistent", &c2, &e2);
	if (r2 != r || e2.n_errors != e.n_errors)
		FAIL("loading twice: %d with %zu errors, then %d with %zu errors", r, e.n_errors, r2,
		     e2.n_errors);
	if (r == 0 && c2->n_listeners != c->n_listeners)
		FAIL("loading twice: %zu listeners, then %zu", c->n_listeners, c2->n_listeners);
	for (size_t i = 0; r == 0 && i < c->n_listeners; i++)
		if (!listener_config_equal(&c->listeners[i], &c2->listeners[i]))
			FAIL("loading twice: listener %zu differs", i);

	config_free(c);
	config_free(c2);
	config_errors_clear(&e);
	config_errors_clear(&e2);
	free(text);
	return 0;
}
