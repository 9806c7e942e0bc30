#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "sdproto.h"

static int max_level = LOG_INFO;
static bool journal;
/* Shown where a message has no listener. */
static const char *const ident = "netechod";

/* JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected to our
 * stderr; only when it still matches stderr do we talk to journald
 * directly (a shell redirect in ExecStart= would break the match). */
static bool
stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_open(void)
{
	journal = stderr_is_journal();
}

void
log_set_max_level(int level)
{
	max_level = level;
}

int
log_get_max_level(void)
{
	return max_level;
}

bool
log_to_journal(void)
{
	return journal;
}

static int
journal_send(int level, const char *listener, const char *peer, const char *proxy,
	     const char *const *extra, const char *file, int line, const char *func,
	     const char *msg, int error)
{
	char prio[16], codefile[256], codeline[32], codefunc[128], id[64], lst[64],
		pr[SOCKADDR_STR_MAX + 8], px[SOCKADDR_STR_MAX + 8], msgf[2048], err[32];
	struct iovec iov[32];
	size_t n = 0;

#define IOV_STR(s) iov[n++] = (struct iovec){ .iov_base = (void *)(s), .iov_len = strlen(s) }
	/* The listener and peer lead the text too, so the short journal
	 * output reads like the stderr lines. */
	snprintf(msgf, sizeof(msgf), "MESSAGE=%s%s%s%s%s%s%s%s", listener ? listener : "",
		 listener ? ": " : "", peer ? peer : "", peer ? " " : "", proxy ? "PROXY=" : "",
		 proxy ? proxy : "", proxy ? " " : "", msg);
	IOV_STR(msgf);
	snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
	IOV_STR(prio);
	snprintf(id, sizeof(id), "SYSLOG_IDENTIFIER=%s", "netechod");
	IOV_STR(id);
	snprintf(codefile, sizeof(codefile), "CODE_FILE=%s", file);
	IOV_STR(codefile);
	snprintf(codeline, sizeof(codeline), "CODE_LINE=%d", line);
	IOV_STR(codeline);
	snprintf(codefunc, sizeof(codefunc), "CODE_FUNC=%s", func);
	IOV_STR(codefunc);
	if (listener) {
		snprintf(lst, sizeof(lst), "LISTENER=%s", listener);
		IOV_STR(lst);
	}
	if (peer) {
		snprintf(pr, sizeof(pr), "PEER=%s", peer);
		IOV_STR(pr);
	}
	if (proxy) {
		snprintf(px, sizeof(px), "PROXY=%s", proxy);
		IOV_STR(px);
	}
	if (error) {
		snprintf(err, sizeof(err), "ERRNO=%d", abs(error));
		IOV_STR(err);
	}
	for (size_t i = 0; extra && extra[i] && n < ELEMENTSOF(iov); i++)
		IOV_STR(extra[i]);
#undef IOV_STR
	return sdp_journal_sendv(iov, n);
}

static const char *
level_name(int level)
{
	const char *s = log_level_to_string(level);

	return s ? s : level < LOG_ERR ? "critical" : "debug";
}

int
log_internal(int level, int error, const char *listener, const char *peer,
	     const char *proxy, const char *const *extra, const char *file, int line,
	     const char *func, const char *fmt, ...)
{
	char msg[1536], ts[40], line_buf[2048];
	int saved_errno = errno;
	size_t len;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (error) {
		len = strlen(msg);
		snprintf(msg + len, sizeof(msg) - len, ": %s", strerror(abs(error)));
	}

	if (journal && journal_send(level, listener, peer, proxy, extra, file, line, func,
				    msg, error) >= 0)
		goto out;

	{
		uint64_t now = realtime_usec();
		time_t sec = (time_t)(now / USEC_PER_SEC);
		struct tm tm;
		int n;

		gmtime_r(&sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(line_buf, sizeof(line_buf), "%s.%03uZ %s %s: %s%s%s%s%s%s\n", ts,
			     (unsigned)(now % USEC_PER_SEC / 1000), level_name(level),
			     listener ? listener : ident, peer ? peer : "", peer ? " " : "",
			     proxy ? "PROXY=" : "", proxy ? proxy : "", proxy ? " " : "", msg);
		if (n > 0) {
			/* One write per line so lines from concurrent handlers
			 * never interleave. */
			(void)write_all(STDERR_FILENO, line_buf,
					MIN((size_t)n, sizeof(line_buf) - 1));
		}
	}
out:
	errno = saved_errno;
	return -abs(error);
}

bool
log_ratelimit_ok(struct log_ratelimit *r, uint64_t now, unsigned *ret_suppressed)
{
	if (r->begin == 0 || now - r->begin >= r->interval_usec) {
		*ret_suppressed = r->suppressed;
		r->begin = now;
		r->num = 1;
		r->suppressed = 0;
		return true;
	}
	if (r->num < r->burst) {
		r->num++;
		*ret_suppressed = 0;
		return true;
	}
	r->suppressed++;
	return false;
}
