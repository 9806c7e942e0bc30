#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "prefix.h"

size_t
prefix_expand(const char *prefix, const char *listener, char *buf, size_t size)
{
	const char *p = prefix;
	size_t n = 0;

	if (!p || size == 0)
		return 0;
	for (; *p && n + 1 < size; p++) {
		char tmp[24];
		const char *add = tmp;

		if (*p != '%') {
			buf[n++] = *p;
			continue;
		}
		switch (*++p) {
		case 'p':
			snprintf(tmp, sizeof(tmp), "%ld", (long)getpid());
			break;
		case 't':
			snprintf(tmp, sizeof(tmp), "%ld", (long)syscall(SYS_gettid));
			break;
		case 'l':
			add = listener;
			break;
		case '%':
			add = "%";
			break;
		default: /* config validation keeps anything else out */
			add = "";
			if (!*p)
				p--;
			break;
		}
		for (; *add && n + 1 < size; add++)
			buf[n++] = *add;
	}
	buf[n] = '\0';
	return n;
}
