#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "config.h"
#include "dispatcher.h"
#include "util.h"

/* The man pages against the code: netechod.conf(5) states every built-in
 * default of config_defaults[] and documents every setting and value the
 * parser accepts; netechod(8) documents every option and exit status.
 * Pages are read as mdoc source lines, never as rendered text:
 *
 * - a setting is an item ".It Ic KEY ..." whose body has a text line
 *   "Default: VALUE." (VALUE may be quoted);
 * - the table of built-in defaults has rows ".It Cm KEY Ta Li VALUE";
 * - an option is an item ".It Fl X ... , Fl \-LONG ...";
 * - an exit status is an item ".It Li N" in section EXIT STATUS. */

#define MAX_WORDS 64
#define MAX_KEYS 64

struct page {
	char *text;
	char **lines;
	size_t n_lines;
	char path[1024];
};

static struct page conf5, daemon8;

static const char *
source_root(void)
{
	const char *e = getenv("SOURCE_ROOT");

	if (e && *e)
		return e;
#ifdef SOURCE_ROOT
	return SOURCE_ROOT;
#else
	return ".";
#endif
}

static void
page_load(struct page *p, const char *rel)
{
	FILE *f;
	long size;
	size_t cap = 256;

	snprintf(p->path, sizeof(p->path), "%s/%s", source_root(), rel);
	f = fopen(p->path, "re");
	ck_assert_msg(f, "cannot open %s", p->path);
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	size = ftell(f);
	ck_assert_int_ge(size, 0);
	rewind(f);
	p->text = calloc(1, (size_t)size + 1);
	ck_assert_ptr_nonnull(p->text);
	ck_assert_uint_eq(fread(p->text, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	ck_assert_msg(size > 0, "%s is empty", p->path);

	p->lines = calloc(cap, sizeof(char *));
	ck_assert_ptr_nonnull(p->lines);
	p->n_lines = 0;
	for (char *s = p->text; s && *s;) {
		char *nl = strchr(s, '\n');

		if (nl)
			*nl = '\0';
		if (p->n_lines == cap) {
			cap *= 2;
			p->lines = realloc(p->lines, cap * sizeof(char *));
			ck_assert_ptr_nonnull(p->lines);
		}
		p->lines[p->n_lines++] = s;
		s = nl ? nl + 1 : NULL;
	}
}

static void
page_free(struct page *p)
{
	free(p->lines);
	free(p->text);
	*p = (struct page){ 0 };
}

static void
setup(void)
{
	page_load(&conf5, "man/netechod.conf.5");
	page_load(&daemon8, "man/netechod.8");
}

static void
teardown(void)
{
	page_free(&conf5);
	page_free(&daemon8);
}

/* Undo the roff escapes the pages use in macro arguments. */
static void
unescape(char *s)
{
	static const struct {
		const char *from, *to;
	} esc[] = {
		{ "\\&", "" }, { "\\-", "-" }, { "\\(dq", "\"" }, { "\\e", "\\" },
		{ "\\(en", "-" }, { "\\ ", " " },
	};
	char *out = s;

	while (*s) {
		size_t i;

		for (i = 0; i < ELEMENTSOF(esc); i++) {
			size_t n = strlen(esc[i].from);

			if (strncmp(s, esc[i].from, n) == 0) {
				size_t m = strlen(esc[i].to);

				memcpy(out, esc[i].to, m);
				out += m;
				s += n;
				break;
			}
		}
		if (i == ELEMENTSOF(esc))
			*out++ = *s++;
	}
	*out = '\0';
}

/* Split a macro line into words ("It", "Ic", "max_clients", ...: the
 * leading dot goes, so a macro reads the same first or called), with
 * double-quoted arguments kept whole. Returns the number of words; they
 * point into buf. */
static size_t
words(const char *line, char *buf, size_t size, char *ret[MAX_WORDS])
{
	size_t n = 0;
	char *s;

	snprintf(buf, size, "%s", line[0] == '.' ? line + 1 : line);
	s = buf;
	while (n < MAX_WORDS) {
		char *start;

		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s)
			break;
		if (*s == '"') {
			start = ++s;
			while (*s && *s != '"')
				s++;
		} else {
			start = s;
			while (*s && *s != ' ' && *s != '\t')
				s++;
		}
		if (*s)
			*s++ = '\0';
		unescape(start);
		ret[n++] = start;
	}
	return n;
}

/* An mdoc macro name: "Cm", "Ns", "Pq"... */
static bool
is_macro_name(const char *w)
{
	size_t n = strlen(w);

	return (n == 2 || n == 3) && isupper((unsigned char)w[0]) && islower((unsigned char)w[1]);
}

/* Do the words call `macro` with `value` among its arguments, as in
 * ".Cm fork , thread" or ".Ic address , max_clients"? The arguments run up
 * to the next macro. */
static bool
macro_names(char *const *w, size_t n, const char *macro, const char *value)
{
	for (size_t k = 0; k < n; k++) {
		if (strcmp(w[k], macro) != 0)
			continue;
		for (size_t j = k + 1; j < n && !is_macro_name(w[j]); j++)
			if (strcmp(w[j], value) == 0)
				return true;
	}
	return false;
}

static bool
is_macro(const char *line, const char *name)
{
	size_t n = strlen(name);

	return line[0] == '.' && strncmp(line + 1, name, n) == 0 &&
	       (line[1 + n] == ' ' || line[1 + n] == '\t' || line[1 + n] == '\0');
}

/* Lines [*ret_begin, *ret_end) of section `name` (".Sh NAME"). */
static bool
section(const struct page *p, const char *name, size_t *ret_begin, size_t *ret_end)
{
	for (size_t i = 0; i < p->n_lines; i++) {
		const char *title = p->lines[i] + 3;

		if (!is_macro(p->lines[i], "Sh"))
			continue;
		/* ".Sh EXIT STATUS": compare the rest of the line. */
		title += strspn(title, " \t");
		if (strcmp(title, name) != 0)
			continue;
		*ret_begin = i + 1;
		for (i = i + 1; i < p->n_lines && !is_macro(p->lines[i], "Sh"); i++)
			;
		*ret_end = i;
		return true;
	}
	return false;
}

/* The line of ".It Ic KEY ..." in lines [begin, end), or -1. */
static long
find_item(const struct page *p, size_t begin, size_t end, const char *key)
{
	long found = -1;

	for (size_t i = begin; i < end; i++) {
		char buf[512], *w[MAX_WORDS];
		size_t n;

		if (!is_macro(p->lines[i], "It"))
			continue;
		n = words(p->lines[i], buf, sizeof(buf), w);
		if (n >= 3 && strcmp(w[1], "Ic") == 0 && strcmp(w[2], key) == 0) {
			ck_assert_msg(found < 0, "%s:%zu: second item for '%s' (first at line %ld)",
				      p->path, i + 1, key, found + 1);
			found = (long)i;
		}
	}
	return found;
}

/* The value of the "Default: VALUE." text line in the body of the item at
 * line `item`, into ret; false when the body has none. Nested lists are
 * part of the body; the next item of the same list or the end of the list
 * ends it. */
static bool
item_default(const struct page *p, long item, char *ret, size_t size)
{
	static const char tag[] = "Default: ";
	int depth = 0;

	for (size_t i = (size_t)item + 1; i < p->n_lines; i++) {
		const char *l = p->lines[i];
		char *e;

		if (is_macro(l, "Bl"))
			depth++;
		else if (is_macro(l, "El")) {
			if (depth-- == 0)
				return false;
		} else if ((is_macro(l, "It") && depth == 0) || is_macro(l, "Sh"))
			return false;
		if (strncmp(l, tag, sizeof(tag) - 1) != 0)
			continue;

		l += sizeof(tag) - 1;
		if (*l == '"') {
			snprintf(ret, size, "%s", l + 1);
			e = strchr(ret, '"');
			ck_assert_msg(e, "%s:%zu: unterminated quote", p->path, i + 1);
			*e = '\0';
			return true;
		}
		snprintf(ret, size, "%s", l);
		ret[strcspn(ret, " \t;,")] = '\0';
		e = ret + strlen(ret);
		while (e > ret && e[-1] == '.')
			*--e = '\0';
		return true;
	}
	return false;
}

/* The value of the ".It Cm KEY Ta VALUE" row of a table into ret; false
 * when there is no such row. */
static bool
table_row(const struct page *p, const char *key, char *ret, size_t size)
{
	for (size_t i = 0; i < p->n_lines; i++) {
		char buf[512], *w[MAX_WORDS];
		size_t n, k = 4, len = 0;

		if (!is_macro(p->lines[i], "It"))
			continue;
		n = words(p->lines[i], buf, sizeof(buf), w);
		if (n < 5 || strcmp(w[1], "Cm") != 0 || strcmp(w[2], key) != 0 ||
		    strcmp(w[3], "Ta") != 0)
			continue;
		/* A font macro in front of the value is not part of it. */
		if (strcmp(w[k], "Li") == 0 || strcmp(w[k], "Ql") == 0 || strcmp(w[k], "Dq") == 0)
			k++;
		ret[0] = '\0';
		for (; k < n; k++) {
			size_t at = MIN(len, size - 1);

			len += (size_t)snprintf(ret + at, size - at, "%s%s", len ? " " : "", w[k]);
		}
		return true;
	}
	return false;
}

/* ---- what the code accepts, learnt from its own error messages ---- */

struct names {
	char *v[MAX_KEYS];
	size_t n;
	char buf[2048];
};

/* Find the error containing `marker` and split what follows "allowed: ". */
static void
allowed_list(const struct config_errors *e, const char *marker, struct names *ret)
{
	for (size_t i = 0; i < e->n_errors; i++) {
		const char *m = e->errors[i].message, *a;
		char *s;

		if (!strstr(m, marker) || !(a = strstr(m, "allowed: ")))
			continue;
		snprintf(ret->buf, sizeof(ret->buf), "%s", a + strlen("allowed: "));
		ret->n = 0;
		for (s = strtok(ret->buf, ", "); s && ret->n < MAX_KEYS; s = strtok(NULL, ", "))
			ret->v[ret->n++] = s;
		return;
	}
	for (size_t i = 0; i < e->n_errors; i++)
		fprintf(stderr, "  %s:%d: %s\n", e->errors[i].file, e->errors[i].line,
			e->errors[i].message);
	ck_abort_msg("no error mentions '%s' with a list of allowed values", marker);
}

/* Load `text`, which must fail, and return the errors. */
static void
load_invalid(const char *text, struct config_errors *ret)
{
	struct config *c = NULL;
	int r;

	*ret = (struct config_errors){ 0 };
	r = config_load_string(text, "probe.conf", NULL, &c, ret);
	ck_assert_int_eq(r, CONFIG_E_INVALID);
	ck_assert_ptr_null(c);
}

#define PROBE_LISTENER                                                                   \
	"name = \"p\"; protocol = \"tcp\"; port = 7; model = \"poll\"; service = \"echo\";"

static void
top_level_keys(struct names *ret)
{
	struct config_errors e;

	load_invalid("zz_probe = 1;\nlisteners = ( { " PROBE_LISTENER " } );\n", &e);
	allowed_list(&e, "unknown setting 'zz_probe'", ret);
	config_errors_clear(&e);
}

static void
listener_keys(struct names *ret)
{
	struct config_errors e;

	load_invalid("listeners = ( { " PROBE_LISTENER " zz_probe = 1; } );\n", &e);
	allowed_list(&e, "unknown setting 'zz_probe'", ret);
	config_errors_clear(&e);
}

static void
defaults_keys(struct names *ret)
{
	struct config_errors e;

	load_invalid("defaults = { zz_probe = 1; };\nlisteners = ( { " PROBE_LISTENER " } );\n",
		     &e);
	allowed_list(&e, "unknown setting 'zz_probe'", ret);
	config_errors_clear(&e);
}

/* ---- netechod.conf(5) ---- */

START_TEST(docs_conf_states_every_default)
{
	const struct config_default *d = &config_defaults[_i];
	char item_value[256], table_value[256];
	long item;

	item = find_item(&conf5, 0, conf5.n_lines, d->key);
	ck_assert_msg(item >= 0, "%s: no \".It Ic %s\" item", conf5.path, d->key);
	ck_assert_msg(item_default(&conf5, item, item_value, sizeof(item_value)),
		      "%s:%ld: the item for '%s' has no \"Default: %s.\" line", conf5.path,
		      item + 1, d->key, d->value);
	ck_assert_msg(strcmp(item_value, d->value) == 0,
		      "%s:%ld: '%s' is documented with default '%s', the code has '%s'",
		      conf5.path, item + 1, d->key, item_value, d->value);

	ck_assert_msg(table_row(&conf5, d->key, table_value, sizeof(table_value)),
		      "%s: the table of defaults has no \".It Cm %s Ta Li %s\" row", conf5.path,
		      d->key, d->value);
	ck_assert_msg(strcmp(table_value, d->value) == 0,
		      "%s: the table of defaults gives '%s' = '%s', the code has '%s'",
		      conf5.path, d->key, table_value, d->value);
}
END_TEST

START_TEST(docs_conf_table_has_no_stale_defaults)
{
	for (size_t i = 0; i < conf5.n_lines; i++) {
		char buf[512], *w[MAX_WORDS];
		bool known = false;
		size_t n;

		if (!is_macro(conf5.lines[i], "It"))
			continue;
		n = words(conf5.lines[i], buf, sizeof(buf), w);
		if (n < 4 || strcmp(w[1], "Cm") != 0 || strcmp(w[3], "Ta") != 0)
			continue;
		for (size_t k = 0; k < config_n_defaults; k++)
			known = known || strcmp(config_defaults[k].key, w[2]) == 0;
		ck_assert_msg(known, "%s:%zu: table row for '%s', which has no built-in default",
			      conf5.path, i + 1, w[2]);
	}
}
END_TEST

static void
check_documented(const struct names *keys, const char *what)
{
	ck_assert_msg(keys->n > 0, "the code lists no %s", what);
	for (size_t i = 0; i < keys->n; i++) {
		long item = find_item(&conf5, 0, conf5.n_lines, keys->v[i]);
		char value[256];

		ck_assert_msg(item >= 0, "%s: %s '%s' has no \".It Ic %s\" item", conf5.path,
			      what, keys->v[i], keys->v[i]);
		ck_assert_msg(item_default(&conf5, item, value, sizeof(value)),
			      "%s:%ld: the item for '%s' has no \"Default:\" line", conf5.path,
			      item + 1, keys->v[i]);
	}
}

START_TEST(docs_conf_documents_every_global_setting)
{
	struct names keys;

	top_level_keys(&keys);
	check_documented(&keys, "global setting");
}
END_TEST

START_TEST(docs_conf_documents_every_listener_setting)
{
	struct names keys;

	listener_keys(&keys);
	check_documented(&keys, "listener setting");
}
END_TEST

START_TEST(docs_conf_lists_the_keys_defaults_may_hold)
{
	size_t begin, end;
	struct names keys;

	defaults_keys(&keys);
	ck_assert_msg(section(&conf5, "DEFAULTS", &begin, &end), "%s: no DEFAULTS section",
		      conf5.path);
	for (size_t i = 0; i < keys.n; i++) {
		bool found = false;

		for (size_t l = begin; l < end && !found; l++) {
			char buf[512], *w[MAX_WORDS];
			size_t n;

			if (conf5.lines[l][0] != '.')
				continue;
			n = words(conf5.lines[l], buf, sizeof(buf), w);
			found = macro_names(w, n, "Ic", keys.v[i]);
		}
		ck_assert_msg(found, "%s: DEFAULTS does not name '%s', which defaults may hold",
			      conf5.path, keys.v[i]);
	}
}
END_TEST

/* Every value of an enumerated setting appears as "Cm VALUE" in its item. */
#define PROBE_WITH(protocol, model, service)                                            \
	"listeners = ( { name = \"p\"; protocol = \"" protocol "\"; port = 7; model = \"" \
	model "\"; service = \"" service "\"; } );\n"

static const struct {
	const char *key;
	const char *probe; /* a config with an unknown value for key */
} enum_probes[] = {
	{ "log_level", "log_level = \"zz_probe\";\nlisteners = ( { " PROBE_LISTENER " } );\n" },
	{ "protocol", PROBE_WITH("zz_probe", "poll", "echo") },
	{ "model", PROBE_WITH("tcp", "zz_probe", "echo") },
	{ "service", PROBE_WITH("tcp", "poll", "zz_probe") },
};

START_TEST(docs_conf_documents_every_enum_value)
{
	struct config_errors e;
	struct names values;
	long item, next;

	load_invalid(enum_probes[_i].probe, &e);
	allowed_list(&e, "unknown value 'zz_probe'", &values);
	config_errors_clear(&e);

	item = find_item(&conf5, 0, conf5.n_lines, enum_probes[_i].key);
	ck_assert_msg(item >= 0, "%s: no item for '%s'", conf5.path, enum_probes[_i].key);
	/* The item's body: up to the next item of any list or section. */
	for (next = item + 1; (size_t)next < conf5.n_lines; next++)
		if (is_macro(conf5.lines[next], "Sh") ||
		    strncmp(conf5.lines[next], ".It Ic ", 7) == 0)
			break;
	for (size_t v = 0; v < values.n; v++) {
		bool found = false;

		for (long l = item; l < next && !found; l++) {
			char buf[512], *w[MAX_WORDS];
			size_t n = words(conf5.lines[l], buf, sizeof(buf), w);

			found = macro_names(w, n, "Cm", values.v[v]);
		}
		ck_assert_msg(found, "%s:%ld: the item for '%s' does not name the value '%s'",
			      conf5.path, item + 1, enum_probes[_i].key, values.v[v]);
	}
}
END_TEST

/* ---- netechod(8) ---- */

struct option_doc {
	char shrt;
	char lng[32];
};

/* The options from `netechod -h` when the binary is at hand, else the
 * ones of SPEC section 2. */
static size_t
daemon_options(struct option_doc *ret, size_t max)
{
	static const struct option_doc spec[] = {
		{ 'c', "config" }, { 't', "check" }, { 'l', "log-level" },
		{ 'V', "version" }, { 'h', "help" },
	};
	const char *bin = getenv("NETECHOD_BIN");
	char cmd[1200], line[512];
	size_t n = 0;
	FILE *f;

	if (bin && *bin && access(bin, X_OK) == 0) {
		snprintf(cmd, sizeof(cmd), "'%s' -h", bin);
		f = popen(cmd, "r");
		ck_assert_ptr_nonnull(f);
		while (fgets(line, sizeof(line), f) && n < max) {
			char s, l[32];

			/* "  -c, --config FILE      config file ..." */
			if (sscanf(line, " -%c, --%31[A-Za-z0-9-]", &s, l) == 2) {
				ret[n].shrt = s;
				snprintf(ret[n].lng, sizeof(ret[n].lng), "%s", l);
				n++;
			}
		}
		ck_assert_int_eq(pclose(f), 0);
		ck_assert_msg(n > 0, "'%s -h' lists no options", bin);
		return n;
	}
	for (; n < ELEMENTSOF(spec) && n < max; n++)
		ret[n] = spec[n];
	return n;
}

START_TEST(docs_daemon_documents_every_option)
{
	struct option_doc opts[32];
	size_t n = daemon_options(opts, ELEMENTSOF(opts)), begin, end, sb, se;

	ck_assert_msg(section(&daemon8, "OPTIONS", &begin, &end), "%s: no OPTIONS section",
		      daemon8.path);
	ck_assert_msg(section(&daemon8, "SYNOPSIS", &sb, &se), "%s: no SYNOPSIS section",
		      daemon8.path);
	for (size_t o = 0; o < n; o++) {
		char shrt[2] = { opts[o].shrt, '\0' }, lng[40];
		bool item = false, synopsis = false;

		snprintf(lng, sizeof(lng), "-%s", opts[o].lng);
		for (size_t i = begin; i < end && !item; i++) {
			char buf[512], *w[MAX_WORDS];
			bool has_short = false, has_long = false;
			size_t k;

			if (!is_macro(daemon8.lines[i], "It"))
				continue;
			k = words(daemon8.lines[i], buf, sizeof(buf), w);
			for (size_t j = 0; j + 1 < k; j++) {
				if (strcmp(w[j], "Fl") != 0)
					continue;
				has_short = has_short || strcmp(w[j + 1], shrt) == 0;
				has_long = has_long || strcmp(w[j + 1], lng) == 0;
			}
			item = has_short && has_long;
		}
		ck_assert_msg(item, "%s: OPTIONS has no item \".It Fl %c ... , Fl \\-%s\"",
			      daemon8.path, opts[o].shrt, opts[o].lng);

		/* SYNOPSIS: ".Op Fl htV" or ".Op Fl c Ar file". */
		for (size_t i = sb; i < se && !synopsis; i++) {
			char buf[512], *w[MAX_WORDS];
			size_t k = words(daemon8.lines[i], buf, sizeof(buf), w);

			for (size_t j = 0; j + 1 < k; j++)
				if (strcmp(w[j], "Fl") == 0 && w[j + 1][0] != '-' &&
				    strchr(w[j + 1], opts[o].shrt))
					synopsis = true;
		}
		ck_assert_msg(synopsis, "%s: SYNOPSIS does not show -%c", daemon8.path,
			      opts[o].shrt);
	}
}
END_TEST

static const int exit_codes[] = { 0, EXIT_USAGE, EXIT_CONFIG, EXIT_OSERR, 1 };

START_TEST(docs_daemon_documents_every_exit_status)
{
	char want[16];
	size_t begin, end;
	bool found = false;

	snprintf(want, sizeof(want), "%d", exit_codes[_i]);
	ck_assert_msg(section(&daemon8, "EXIT STATUS", &begin, &end),
		      "%s: no EXIT STATUS section", daemon8.path);
	for (size_t i = begin; i < end && !found; i++) {
		char buf[512], *w[MAX_WORDS];
		size_t n;

		if (!is_macro(daemon8.lines[i], "It"))
			continue;
		n = words(daemon8.lines[i], buf, sizeof(buf), w);
		found = (n == 3 && strcmp(w[1], "Li") == 0 && strcmp(w[2], want) == 0) ||
			(n == 2 && strcmp(w[1], want) == 0);
	}
	ck_assert_msg(found, "%s: EXIT STATUS has no item \".It Li %s\"", daemon8.path, want);
}
END_TEST

START_TEST(docs_daemon_names_the_status_the_unit_does_not_restart_on)
{
	char want[64];
	size_t begin, end;
	bool found = false;

	snprintf(want, sizeof(want), "RestartPreventExitStatus=%d", EXIT_CONFIG);
	ck_assert(section(&daemon8, "EXIT STATUS", &begin, &end));
	for (size_t i = begin; i < end && !found; i++)
		found = strstr(daemon8.lines[i], want) != NULL;
	ck_assert_msg(found, "%s: EXIT STATUS does not mention %s", daemon8.path, want);
}
END_TEST

static const char *const signals[] = { "SIGHUP", "SIGTERM", "SIGINT", "SIGUSR1" };

START_TEST(docs_daemon_documents_every_signal)
{
	size_t begin, end;
	bool found = false;

	ck_assert_msg(section(&daemon8, "SIGNALS", &begin, &end), "%s: no SIGNALS section",
		      daemon8.path);
	for (size_t i = begin; i < end && !found; i++) {
		char buf[512], *w[MAX_WORDS];
		size_t n;

		if (!is_macro(daemon8.lines[i], "It"))
			continue;
		n = words(daemon8.lines[i], buf, sizeof(buf), w);
		found = macro_names(w, n, "Dv", signals[_i]);
	}
	ck_assert_msg(found, "%s: SIGNALS has no item for %s", daemon8.path, signals[_i]);
}
END_TEST

static Suite *
docs_suite(void)
{
	Suite *s = suite_create("docs");
	TCase *tc;

	tc = tcase_create("conf");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, docs_conf_states_every_default, 0, (int)config_n_defaults);
	tcase_add_test(tc, docs_conf_table_has_no_stale_defaults);
	tcase_add_test(tc, docs_conf_documents_every_global_setting);
	tcase_add_test(tc, docs_conf_documents_every_listener_setting);
	tcase_add_test(tc, docs_conf_lists_the_keys_defaults_may_hold);
	tcase_add_loop_test(tc, docs_conf_documents_every_enum_value, 0,
			    (int)ELEMENTSOF(enum_probes));
	suite_add_tcase(s, tc);

	tc = tcase_create("daemon");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, docs_daemon_documents_every_option);
	tcase_add_loop_test(tc, docs_daemon_documents_every_exit_status, 0,
			    (int)ELEMENTSOF(exit_codes));
	tcase_add_test(tc, docs_daemon_names_the_status_the_unit_does_not_restart_on);
	tcase_add_loop_test(tc, docs_daemon_documents_every_signal, 0, (int)ELEMENTSOF(signals));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(docs_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
