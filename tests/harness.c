#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "util.h"

extern char **environ;

#define NOTIFY_MSG_MAX 16384
#define EXCHANGE_CHUNK 65536

/* State a test never touches. It lives until the test process exits (the
 * registry frees it then), so harness_log_*() and harness_notify_*() keep
 * working after harness_stop() and a stack-allocated hdaemon never leaks. */
struct harness_priv {
	struct harness_priv *next;
	char vg_log[HARNESS_PATH_MAX + 32]; /* valgrind --log-file= option, or "" */
	pid_t pid;
	int pidfd;
	bool reaped;
	int status; /* exit code or 128 + signal */
	bool stopped;
	int stop_result;

	int notify_fd;
	int stop_fd; /* eventfd that ends the drain thread */
	pthread_t thread;
	bool thread_running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char **msgs;
	size_t n_msgs;
	size_t cap_msgs;

	/* Dumps the log and removes the temp dir if the test process dies
	 * without harness_stop(), e.g. on a failed ck_assert (Check then
	 * _exit()s without running teardown). */
	pid_t sentinel_pid;
	int sentinel_fd;

	char dir[HARNESS_DIR_MAX];
	char log_path[HARNESS_PATH_MAX];
	char *log_text; /* copy taken when the temp dir goes away */
	bool dir_removed;
};

static struct harness_priv *registry;
static bool atexit_done;

/* ---- small helpers ---- */

static int
ms_left(uint64_t deadline)
{
	uint64_t now = now_usec();

	if (now >= deadline)
		return 0;
	return (int)MIN((deadline - now + 999) / 1000, (uint64_t)INT32_MAX);
}

static uint64_t
deadline_in(int timeout_ms)
{
	return now_usec() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * USEC_PER_MSEC;
}

static int
exit_code(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return 255;
}

static void
close_from(int first)
{
	/* Async-signal-safe: used between fork() and exec(). */
	if (close_range((unsigned)first, ~0U, 0) == 0)
		return;
	for (int fd = first; fd < 4096; fd++)
		(void)close(fd);
}

static void
child_reset_signals(void)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t none;

	/* exec keeps ignored signals ignored; a test started from a
	 * background shell job would hand netechod an ignored SIGINT. */
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
}

static void
child_write(const char *s)
{
	(void)!write(STDERR_FILENO, s, strlen(s));
}

static void
format_uint(char *dst, unsigned long v)
{
	char tmp[24];
	int i = 0;

	do {
		tmp[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		*dst++ = tmp[--i];
	*dst = 0;
}

static bool
env_is_ours(const char *e)
{
	static const char *const prefixes[] = {
		"LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES=", "NOTIFY_SOCKET=",
		"JOURNAL_STREAM=", "WATCHDOG_USEC=", "WATCHDOG_PID=",
	};

	for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
		if (strncmp(e, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

/* environ without socket-activation, notify and journal variables, plus
 * extra. Only the array is allocated. */
static char **
env_build(char *const *extra, size_t n_extra)
{
	size_t n = 0, k = 0;
	char **env;

	for (char **e = environ; e && *e; e++)
		n++;
	env = calloc(n + n_extra + 1, sizeof(char *));
	if (!env)
		return NULL;
	for (char **e = environ; e && *e; e++)
		if (!env_is_ours(*e))
			env[k++] = *e;
	for (size_t i = 0; i < n_extra; i++)
		env[k++] = extra[i];
	env[k] = NULL;
	return env;
}

static char *
file_read(const char *path)
{
	FILE *f;
	char *buf = NULL;
	size_t len = 0, cap = 0;

	f = fopen(path, "re");
	if (!f)
		return NULL;
	for (;;) {
		size_t got;

		if (cap - len < 4096) {
			char *nbuf = realloc(buf, cap + 65536);
			if (!nbuf) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nbuf;
			cap += 65536;
		}
		got = fread(buf + len, 1, cap - len - 1, f);
		len += got;
		if (got == 0)
			break;
	}
	fclose(f);
	buf[len] = 0;
	return buf;
}

/* What netechod binds for "*": [::] dual-stack, 0.0.0.0 without IPv6. */
static bool
wildcard_is_ipv6(void)
{
	int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return false;
	safe_close(fd);
	return true;
}

static int
parse_literal(const char *address, uint16_t port, union sockaddr_any *ret)
{
	union sockaddr_any sa;

	memset(&sa, 0, sizeof(sa));
	if (strcmp(address, "*") == 0) {
		if (wildcard_is_ipv6()) {
			sa.in6.sin6_family = AF_INET6;
			sa.in6.sin6_addr = in6addr_any;
			sa.in6.sin6_port = htons(port);
		} else {
			sa.in.sin_family = AF_INET;
			sa.in.sin_addr.s_addr = htonl(INADDR_ANY);
			sa.in.sin_port = htons(port);
		}
	} else if (inet_pton(AF_INET, address, &sa.in.sin_addr) == 1) {
		sa.in.sin_family = AF_INET;
		sa.in.sin_port = htons(port);
	} else if (inet_pton(AF_INET6, address, &sa.in6.sin6_addr) == 1) {
		sa.in6.sin6_family = AF_INET6;
		sa.in6.sin6_port = htons(port);
	} else
		return -EINVAL;
	*ret = sa;
	return 0;
}

static int
socket_bound(int socktype, const union sockaddr_any *sa, bool reuse)
{
	_cleanup_(closep) int fd = -1;
	int one = 1, v6only;

	fd = socket(sa->sa.sa_family, socktype | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* [::] is "*": dual-stack, as netechod binds it. */
	v6only = sa->sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&sa->in6.sin6_addr) ? 0 : 1;
	if (sa->sa.sa_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
		return -errno;
	if (reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return -errno;
	if (bind(fd, &sa->sa, sockaddr_len(sa)) < 0)
		return -errno;
	return TAKE_FD(fd);
}

static int
socket_local_port(int fd, uint16_t *ret)
{
	union sockaddr_any sa;
	socklen_t len = sizeof(sa);

	if (getsockname(fd, &sa.sa, &len) < 0)
		return -errno;
	*ret = sockaddr_port(&sa);
	return 0;
}

static int
socktype_of(const char *protocol)
{
	if (protocol && strcmp(protocol, "tcp") == 0)
		return SOCK_STREAM;
	if (protocol && strcmp(protocol, "udp") == 0)
		return SOCK_DGRAM;
	return -EINVAL;
}

/* ---- /proc ---- */

struct proc_info {
	pid_t pid;
	pid_t ppid;
	char state;
	unsigned long long start;
	char comm[64];
};

static int
proc_read(pid_t pid, struct proc_info *ret)
{
	char path[64], buf[1024], *p, *q;
	struct proc_info info = { .pid = pid };
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	safe_close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	p = strchr(buf, '(');
	q = strrchr(buf, ')');
	if (!p || !q || q < p || q[1] != ' ')
		return -EIO;
	snprintf(info.comm, sizeof(info.comm), "%.*s", (int)(q - p - 1), p + 1);
	p = q + 2;
	/* Field 3 is the state; count from there. */
	for (field = 3; *p; field++) {
		if (field == 3)
			info.state = *p;
		else if (field == 4)
			info.ppid = (pid_t)strtol(p, NULL, 10);
		else if (field == 22) {
			info.start = strtoull(p, NULL, 10);
			break;
		}
		p = strchr(p, ' ');
		if (!p)
			break;
		p++;
	}
	*ret = info;
	return 0;
}

/* Every live (non-zombie) process: malloc()ed array in *ret. */
static int
proc_list(struct proc_info **ret, size_t *ret_n)
{
	DIR *dir;
	struct dirent *de;
	struct proc_info *list = NULL;
	size_t n = 0, cap = 0;

	dir = opendir("/proc");
	if (!dir)
		return -errno;
	while ((de = readdir(dir))) {
		struct proc_info info;
		unsigned long pid;

		if (parse_uint(de->d_name, INT32_MAX, &pid) < 0)
			continue;
		if (proc_read((pid_t)pid, &info) < 0 || info.state == 'Z')
			continue;
		if (n == cap) {
			struct proc_info *nl = realloc(list, (cap + 64) * sizeof(*list));
			if (!nl) {
				free(list);
				closedir(dir);
				return -ENOMEM;
			}
			list = nl;
			cap += 64;
		}
		list[n++] = info;
	}
	closedir(dir);
	*ret = list;
	*ret_n = n;
	return 0;
}

bool
harness_pid_in_tree(pid_t pid, pid_t ancestor)
{
	for (int depth = 0; depth < 64 && pid > 1; depth++) {
		struct proc_info info;

		if (pid == ancestor)
			return true;
		if (proc_read(pid, &info) < 0)
			return false;
		pid = info.ppid;
	}
	return false;
}

size_t
harness_socket_inodes(const char *proto, uint16_t port, unsigned long *ret, size_t max)
{
	char path[32], line[512];
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/net/%s", proto);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (!fgets(line, sizeof(line), f)) { /* header */
		fclose(f);
		return 0;
	}
	while (n < max && fgets(line, sizeof(line), f)) {
		char local[64], *colon;
		unsigned st, lport;
		unsigned long inode;

		/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
		if (sscanf(line, " %*s %63s %*s %x %*s %*s %*s %*u %*u %lu", local, &st,
			   &inode) != 3)
			continue;
		colon = strchr(local, ':');
		if (!colon || sscanf(colon + 1, "%x", &lport) != 1 || lport != port || inode == 0)
			continue;
		if (strcmp(proto, "tcp") == 0 && st != 0x0A) /* TCP_LISTEN */
			continue;
		ret[n++] = inode;
	}
	fclose(f);
	return n;
}

static bool
holds_inode(pid_t pid, const unsigned long *inodes, size_t n)
{
	char path[64];
	struct dirent *de;
	bool found = false;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return false;
	while (!found && (de = readdir(dir))) {
		char link[64];
		unsigned long inode;
		ssize_t k = readlinkat(dirfd(dir), de->d_name, link, sizeof(link) - 1);

		if (k <= 0)
			continue;
		link[k] = 0;
		if (sscanf(link, "socket:[%lu]", &inode) != 1)
			continue;
		for (size_t i = 0; i < n; i++)
			if (inodes[i] == inode)
				found = true;
	}
	closedir(dir);
	return found;
}

pid_t
harness_proc_ppid(pid_t pid)
{
	struct proc_info info;

	if (proc_read(pid, &info) < 0 || info.state == 'Z')
		return -1;
	return info.ppid;
}

pid_t
harness_handler_pid(pid_t daemon_pid, const char *proto, uint16_t port)
{
	unsigned long inodes[16];
	size_t n = harness_socket_inodes(proto, port, inodes, ELEMENTSOF(inodes));
	struct dirent *de;
	pid_t found = 0;
	DIR *dir;

	if (n == 0)
		return 0;
	dir = opendir("/proc");
	if (!dir)
		return 0;
	while (!found && (de = readdir(dir))) {
		unsigned long pid;
		struct proc_info info;

		if (parse_uint(de->d_name, INT32_MAX, &pid) < 0)
			continue;
		if (proc_read((pid_t)pid, &info) == 0 && info.state != 'Z' &&
		    info.ppid == daemon_pid && holds_inode((pid_t)pid, inodes, n))
			found = (pid_t)pid;
	}
	closedir(dir);
	return found;
}

/* Processes below root (not root itself). */
static int
proc_descendants(pid_t root, struct proc_info **ret, size_t *ret_n)
{
	struct proc_info *all = NULL, *out;
	size_t n_all = 0, n_out = 0;
	bool *in;
	bool changed = true;
	int r;

	r = proc_list(&all, &n_all);
	if (r < 0)
		return r;
	in = calloc(n_all + 1, sizeof(bool));
	out = calloc(n_all + 1, sizeof(*out));
	if (!in || !out) {
		free(in);
		free(out);
		free(all);
		return -ENOMEM;
	}
	for (size_t pass = 0; changed && pass <= n_all; pass++) {
		changed = false;
		for (size_t i = 0; i < n_all; i++) {
			if (in[i])
				continue;
			bool parent_in = all[i].ppid == root;
			for (size_t j = 0; !parent_in && j < n_all; j++)
				parent_in = in[j] && all[j].pid == all[i].ppid;
			if (parent_in) {
				in[i] = true;
				changed = true;
			}
		}
	}
	for (size_t i = 0; i < n_all; i++)
		if (in[i])
			out[n_out++] = all[i];
	free(in);
	free(all);
	*ret = out;
	*ret_n = n_out;
	return 0;
}

/* ---- notify messages ---- */

static bool
message_matches(const char *msg, const char *pattern)
{
	size_t plen = strlen(pattern);
	bool prefix = plen > 0 && pattern[plen - 1] == '=';
	const char *line = msg;

	while (*line) {
		const char *end = strchrnul(line, '\n');
		size_t len = (size_t)(end - line);

		if (prefix ? len >= plen && memcmp(line, pattern, plen) == 0
			   : len == plen && memcmp(line, pattern, plen) == 0)
			return true;
		line = *end ? end + 1 : end;
	}
	return false;
}

/* Called with p->lock held, from the drain thread and from waiters, so the
 * list keeps the order in which messages arrived. */
static void
drain_locked(struct harness_priv *p)
{
	char buf[NOTIFY_MSG_MAX];
	bool got = false;

	if (p->notify_fd < 0)
		return;
	for (int i = 0; i < 1024; i++) {
		ssize_t n = recv(p->notify_fd, buf, NOTIFY_MSG_MAX, MSG_DONTWAIT);
		char *copy;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p->n_msgs == p->cap_msgs) {
			size_t ncap = p->cap_msgs ? p->cap_msgs * 2 : 32;
			char **nm = realloc(p->msgs, ncap * sizeof(char *));
			if (!nm)
				break;
			p->msgs = nm;
			p->cap_msgs = ncap;
		}
		copy = strndup(buf, (size_t)n);
		if (!copy)
			break;
		p->msgs[p->n_msgs++] = copy;
		got = true;
	}
	if (got)
		pthread_cond_broadcast(&p->cond);
}

/* netechod's notifications must be read as they come: the kernel queues
 * only net.unix.max_dgram_qlen (often 10) datagrams, after which sd_notify()
 * in the daemon would block. */
static void *
drain_thread(void *arg)
{
	struct harness_priv *p = arg;
	sigset_t all;

	sigfillset(&all);
	(void)pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = p->notify_fd, .events = POLLIN },
			{ .fd = p->stop_fd, .events = POLLIN },
		};
		int r = poll(pfd, 2, 1000);

		if (r < 0 && errno != EINTR)
			break;
		pthread_mutex_lock(&p->lock);
		drain_locked(p);
		pthread_mutex_unlock(&p->lock);
		if (r > 0 && pfd[1].revents)
			break;
	}
	return NULL;
}

static int
find_locked(struct harness_priv *p, const char *pattern, size_t from)
{
	for (size_t i = from; i < p->n_msgs; i++)
		if (message_matches(p->msgs[i], pattern))
			return (int)i;
	return -1;
}

/* ---- process state ---- */

static bool
reap(struct hdaemon *d)
{
	struct harness_priv *p = d->priv;
	int wstatus;

	if (!p->reaped) {
		pid_t r = waitpid(p->pid, &wstatus, WNOHANG);
		if (r == p->pid) {
			p->reaped = true;
			p->status = exit_code(wstatus);
		} else if (r < 0 && errno == ECHILD) {
			p->reaped = true;
			p->status = 255;
		}
	}
	if (p->reaped) {
		d->exited = true;
		d->exit_status = p->status;
	}
	return p->reaped;
}

static int
wait_exit(struct hdaemon *d, int timeout_ms)
{
	struct harness_priv *p = d->priv;
	uint64_t deadline = deadline_in(timeout_ms);

	for (;;) {
		if (reap(d))
			return p->status;
		if (ms_left(deadline) == 0)
			return -ETIMEDOUT;
		if (p->pidfd >= 0) {
			struct pollfd pfd = { .fd = p->pidfd, .events = POLLIN };
			(void)poll(&pfd, 1, ms_left(deadline));
		} else
			(void)poll(NULL, 0, MIN(ms_left(deadline), 10));
	}
}

static void
thread_stop(struct harness_priv *p)
{
	uint64_t one = 1;

	if (!p->thread_running)
		return;
	(void)!write(p->stop_fd, &one, sizeof(one));
	pthread_join(p->thread, NULL);
	p->thread_running = false;
	pthread_mutex_lock(&p->lock);
	drain_locked(p);
	pthread_mutex_unlock(&p->lock);
}

static void
dir_remove(struct harness_priv *p)
{
	DIR *dir;
	struct dirent *de;

	if (p->dir_removed || !p->dir[0])
		return;
	if (!p->log_text)
		p->log_text = file_read(p->log_path);
	dir = opendir(p->dir);
	if (dir) {
		while ((de = readdir(dir))) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			(void)unlinkat(dirfd(dir), de->d_name, 0);
		}
		closedir(dir);
	}
	if (rmdir(p->dir) < 0)
		fprintf(stderr, "harness: cannot remove %s: %s\n", p->dir, strerror(errno));
	p->dir_removed = true;
}

static void
sentinel_release(struct harness_priv *p)
{
	if (p->sentinel_fd >= 0) {
		(void)!write(p->sentinel_fd, "c", 1);
		p->sentinel_fd = safe_close(p->sentinel_fd);
	}
	if (p->sentinel_pid > 0) {
		int wstatus;
		uint64_t deadline = deadline_in(2000);

		while (waitpid(p->sentinel_pid, &wstatus, WNOHANG) == 0) {
			if (ms_left(deadline) == 0) {
				(void)kill(p->sentinel_pid, SIGKILL);
				(void)waitpid(p->sentinel_pid, &wstatus, 0);
				break;
			}
			(void)poll(NULL, 0, 5);
		}
		p->sentinel_pid = 0;
	}
}

static void
priv_free(struct harness_priv *p)
{
	if (!p)
		return;
	thread_stop(p);
	safe_close(p->notify_fd);
	safe_close(p->stop_fd);
	safe_close(p->pidfd);
	safe_close(p->sentinel_fd);
	for (size_t i = 0; i < p->n_msgs; i++)
		free(p->msgs[i]);
	free(p->msgs);
	free(p->log_text);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

static void
harness_atexit(void)
{
	while (registry) {
		struct harness_priv *p = registry;

		registry = p->next;
		if (!p->reaped) {
			int wstatus;

			fprintf(stderr,
				"harness: netechod (pid %d) still running when the test ended; killing it\n",
				(int)p->pid);
			(void)kill(p->pid, SIGKILL);
			(void)waitpid(p->pid, &wstatus, 0);
			p->reaped = true;
		}
		/* A sentinel not released dumps the log and removes the dir. */
		if (p->sentinel_fd >= 0)
			p->sentinel_fd = safe_close(p->sentinel_fd);
		priv_free(p);
	}
}

/* ---- starting and stopping ---- */

const char *
harness_netechod_bin(void)
{
	static char buf[HARNESS_PATH_MAX];
	const char *e = getenv("NETECHOD_BIN");

	if (e && *e)
		return e;
	e = getenv("BUILD_ROOT");
	if (e && *e) {
		snprintf(buf, sizeof(buf), "%s/src/netechod", e);
		return buf;
	}
	return NULL;
}

const char *
harness_netecho_bin(void)
{
	static char buf[HARNESS_PATH_MAX];
	const char *e = getenv("NETECHO_BIN");

	if (e && *e)
		return e;
	e = getenv("BUILD_ROOT");
	if (e && *e) {
		snprintf(buf, sizeof(buf), "%s/src/netecho/netecho", e);
		return buf;
	}
	return NULL;
}

static const char *
listener_name(const struct hl_listener *l, size_t i, char *buf, size_t len)
{
	if (l->name)
		return l->name;
	snprintf(buf, len, "l%zu", i);
	return buf;
}

int
harness_write_config(struct hdaemon *d, const struct hl_listener *ls, size_t n,
		     const char *global_extra)
{
	char tmp[HARNESS_PATH_MAX + 8];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.new", d->conf_path);
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "# written by tests/harness.c\n");
	if (global_extra)
		fprintf(f, "%s\n", global_extra);
	fprintf(f, "listeners = (\n");
	for (size_t i = 0; i < n; i++) {
		const struct hl_listener *l = &ls[i];
		char name[24];

		fprintf(f, "\t{\n");
		fprintf(f, "\t\tname = \"%s\";\n", listener_name(l, i, name, sizeof(name)));
		fprintf(f, "\t\tprotocol = \"%s\";\n", l->protocol);
		fprintf(f, "\t\taddress = \"%s\";\n", l->address ? l->address : "127.0.0.1");
		fprintf(f, "\t\tport = %u;\n", l->port);
		fprintf(f, "\t\tmodel = \"%s\";\n", l->model);
		fprintf(f, "\t\tservice = \"%s\";\n", l->service ? l->service : "echo");
		if (l->extra)
			fprintf(f, "\t\t%s\n", l->extra);
		fprintf(f, "\t}%s\n", i + 1 < n ? "," : "");
	}
	fprintf(f, ");\n");
	if (fflush(f) != 0 || ferror(f)) {
		int r = -errno;
		fclose(f);
		return r ? r : -EIO;
	}
	fclose(f);
	/* rename() so a reload never reads a half-written file. */
	if (rename(tmp, d->conf_path) < 0)
		return -errno;
	return 0;
}

static int
make_temp_dir(struct hdaemon *d)
{
	const char *base = getenv("TMPDIR");

	/* sun_path is 108 bytes: keep the notify socket path short. */
	if (!base || !*base || strlen(base) > 60)
		base = "/tmp";
	snprintf(d->dir, sizeof(d->dir), "%s/netechod-test.XXXXXX", base);
	if (!mkdtemp(d->dir))
		return -errno;
	snprintf(d->conf_path, sizeof(d->conf_path), "%s/netechod.conf", d->dir);
	snprintf(d->log_path, sizeof(d->log_path), "%s/netechod.log", d->dir);
	snprintf(d->notify_path, sizeof(d->notify_path), "%s/notify", d->dir);
	return 0;
}

static int
notify_socket_open(const char *path)
{
	_cleanup_(closep) int fd = -1;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int size = 1 << 20;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		return -errno;
	return TAKE_FD(fd);
}

static int
sentinel_start(struct harness_priv *p)
{
	char header[HARNESS_PATH_MAX * 2];
	const char *footer = "harness: ---- end of netechod log ----\n";
	char *const rm_argv[] = { (char *)"rm", (char *)"-rf", (char *)"--", p->dir, NULL };
	char *const no_env[] = { NULL };
	int pfd[2];
	pid_t pid;

	snprintf(header, sizeof(header),
		 "harness: the test ended without stopping netechod (pid %d); its log %s:\n",
		 (int)p->pid, p->log_path);
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int r = -errno;
		safe_close(pfd[0]);
		safe_close(pfd[1]);
		return r;
	}
	if (pid == 0) {
		char c, buf[4096];
		ssize_t r;
		int fd;

		/* Own process group: Check kills the test's group when the
		 * test ends, and this process must outlive it. */
		(void)setpgid(0, 0);
		if (dup2(pfd[0], 3) < 0)
			_exit(1);
		close_from(4);
		do
			r = read(3, &c, 1);
		while (r < 0 && errno == EINTR);
		if (r == 1 && c == 'c')
			_exit(0);
		child_write(header);
		fd = open(p->log_path, O_RDONLY | O_CLOEXEC);
		while (fd >= 0 && (r = read(fd, buf, sizeof(buf))) > 0)
			(void)!write(STDERR_FILENO, buf, (size_t)r);
		child_write(footer);
		execve("/bin/rm", rm_argv, no_env);
		execve("/usr/bin/rm", rm_argv, no_env);
		_exit(1);
	}
	safe_close(pfd[0]);
	p->sentinel_fd = pfd[1];
	p->sentinel_pid = pid;
	return 0;
}

static void
harness_init_once(void)
{
	if (atexit_done)
		return;
	atexit_done = true;
	(void)atexit(harness_atexit);
}

static struct harness_priv *
priv_new(void)
{
	struct harness_priv *p = calloc(1, sizeof(*p));
	pthread_condattr_t ca;

	if (!p)
		return NULL;
	p->pidfd = -1;
	p->notify_fd = -1;
	p->stop_fd = -1;
	p->sentinel_fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	return p;
}

static void
bind_error(const struct hl_listener *l, size_t i, int r)
{
	char name[24];

	fprintf(stderr, "harness: cannot bind %s listener %s on %s:%u: %s\n", l->protocol,
		listener_name(l, i, name, sizeof(name)), l->address ? l->address : "127.0.0.1",
		l->port, strerror(-r));
}

int
harness_start(struct hdaemon *d, struct hl_listener *ls, size_t n, const char *global_extra)
{
	const char *bin = harness_netechod_bin();
	const char *bin_exec = bin;
	struct harness_priv *p = NULL;
	int fds[HARNESS_MAX_LISTENERS];
	size_t order[HARNESS_MAX_LISTENERS], k = 0;
	const char *argv[32];
	size_t argc = 0;
	char listen_fds[32], listen_pid[32], notify_env[HARNESS_PATH_MAX + 16];
	char *fdnames = NULL, *env_extra[4];
	size_t n_env = 0;
	char **envp = NULL;
	int devnull = -1, logfd = -1, r;
	pid_t parent = getpid(), pid;

	for (size_t i = 0; i < HARNESS_MAX_LISTENERS; i++)
		fds[i] = -1;
	d->pid = 0;
	d->exited = false;
	d->exit_status = 0;
	d->notify_cursor = 0;
	d->priv = NULL;
	d->dir[0] = 0;
	if (n > HARNESS_MAX_LISTENERS)
		return -E2BIG;
	if (!bin || access(bin, X_OK) < 0) {
		fprintf(stderr, "harness: netechod binary %s is not executable (set NETECHOD_BIN)\n",
			bin ? bin : "(unset)");
		return -ENOENT;
	}
	harness_init_once();

	p = priv_new();
	if (!p)
		return -ENOMEM;
	r = make_temp_dir(d);
	if (r < 0) {
		fprintf(stderr, "harness: mkdtemp: %s\n", strerror(-r));
		goto fail;
	}
	snprintf(p->dir, sizeof(p->dir), "%s", d->dir);
	snprintf(p->log_path, sizeof(p->log_path), "%s", d->log_path);

	for (size_t i = 0; i < n; i++) {
		struct hl_listener *l = &ls[i];
		const char *address = l->address ? l->address : "127.0.0.1";
		int socktype = socktype_of(l->protocol);
		union sockaddr_any sa;

		if (socktype < 0 || !l->model) {
			fprintf(stderr, "harness: listener %zu needs a protocol and a model\n", i);
			r = -EINVAL;
			goto fail;
		}
		if (l->no_fd) {
			if (l->port == 0) {
				r = harness_free_port(socktype, address, &l->port);
				if (r < 0) {
					bind_error(l, i, r);
					goto fail;
				}
			}
			continue;
		}
		r = parse_literal(address, l->port, &sa);
		if (r < 0) {
			fprintf(stderr, "harness: passed sockets need a literal address, not %s\n",
				address);
			goto fail;
		}
		r = socket_bound(socktype, &sa, false);
		if (r < 0) {
			bind_error(l, i, r);
			goto fail;
		}
		fds[i] = r;
		if (socktype == SOCK_STREAM && listen(fds[i], 128) < 0) {
			r = -errno;
			bind_error(l, i, r);
			goto fail;
		}
		r = socket_local_port(fds[i], &l->port);
		if (r < 0)
			goto fail;
		order[k++] = i;
	}
	if (d->flags & HARNESS_REVERSE_FDS)
		for (size_t i = 0; i < k / 2; i++) {
			size_t t = order[i];
			order[i] = order[k - 1 - i];
			order[k - 1 - i] = t;
		}

	r = harness_write_config(d, ls, n, global_extra);
	if (r < 0) {
		fprintf(stderr, "harness: cannot write %s: %s\n", d->conf_path, strerror(-r));
		goto fail;
	}
	r = notify_socket_open(d->notify_path);
	if (r < 0) {
		fprintf(stderr, "harness: notify socket %s: %s\n", d->notify_path, strerror(-r));
		goto fail;
	}
	p->notify_fd = r;
	p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	logfd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (p->stop_fd < 0 || logfd < 0 || devnull < 0) {
		r = -errno;
		goto fail;
	}

	/* Everything the child needs is prepared here: between fork() and
	 * exec() a threaded process may only make async-signal-safe calls. */
	/* NETECHOD_VALGRIND=1 runs the daemon under memcheck (same pid, so
	 * LISTEN_PID still matches); harness_stop() fails the test when any
	 * of its processes reported an error or a definite leak. */
	if (getenv("NETECHOD_VALGRIND") && *getenv("NETECHOD_VALGRIND")) {
		snprintf(p->vg_log, sizeof(p->vg_log), "--log-file=%s/valgrind.%%p", d->dir);
		argv[argc++] = "/usr/bin/valgrind";
		argv[argc++] = "--quiet";
		argv[argc++] = "--leak-check=full";
		argv[argc++] = "--show-leak-kinds=definite";
		argv[argc++] = "--errors-for-leak-kinds=definite";
		argv[argc++] = "--error-exitcode=99";
		argv[argc++] = p->vg_log;
		bin_exec = "/usr/bin/valgrind";
	}
	argv[argc++] = bin;
	argv[argc++] = "-c";
	argv[argc++] = d->conf_path;
	for (size_t i = 0; d->args && d->args[i] && argc < ELEMENTSOF(argv) - 1; i++)
		argv[argc++] = d->args[i];
	argv[argc] = NULL;

	snprintf(notify_env, sizeof(notify_env), "NOTIFY_SOCKET=%s", d->notify_path);
	env_extra[n_env++] = notify_env;
	if (k > 0) {
		size_t len = strlen("LISTEN_FDNAMES=") + 1;

		for (size_t i = 0; i < n; i++)
			len += (ls[i].name ? strlen(ls[i].name) : 24) + 1;
		fdnames = calloc(1, len);
		if (!fdnames) {
			r = -ENOMEM;
			goto fail;
		}
		strcpy(fdnames, "LISTEN_FDNAMES=");
		for (size_t i = 0; i < k; i++) {
			char name[24];

			if (i > 0)
				strcat(fdnames, ":");
			strcat(fdnames, listener_name(&ls[order[i]], order[i], name, sizeof(name)));
		}
		snprintf(listen_fds, sizeof(listen_fds), "LISTEN_FDS=%zu", k);
		strcpy(listen_pid, "LISTEN_PID=");
		env_extra[n_env++] = listen_fds;
		env_extra[n_env++] = listen_pid;
		if (!(d->flags & HARNESS_NO_FDNAMES))
			env_extra[n_env++] = fdnames;
	}
	envp = env_build(env_extra, n_env);
	if (!envp) {
		r = -ENOMEM;
		goto fail;
	}

	pid = fork();
	if (pid < 0) {
		r = -errno;
		goto fail;
	}
	if (pid == 0) {
		int high[HARNESS_MAX_LISTENERS];

		/* The daemon stays in the test's process group (Check kills
		 * that group after each test) and dies with the test. */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		child_reset_signals();
		for (size_t i = 0; i < k; i++) {
			high[i] = fcntl(fds[order[i]], F_DUPFD, (int)(3 + k));
			if (high[i] < 0)
				_exit(127);
		}
		if (dup2(devnull, STDIN_FILENO) < 0 || dup2(logfd, STDOUT_FILENO) < 0 ||
		    dup2(logfd, STDERR_FILENO) < 0)
			_exit(127);
		for (size_t i = 0; i < k; i++)
			if (dup2(high[i], (int)(3 + i)) < 0)
				_exit(127);
		close_from((int)(3 + k));
		if (k > 0)
			format_uint(listen_pid + strlen("LISTEN_PID="), (unsigned long)getpid());
		execve(bin_exec, (char *const *)argv, envp);
		child_write("harness: cannot execute netechod\n");
		_exit(127);
	}

	free(envp);
	envp = NULL;
	free(fdnames);
	fdnames = NULL;
	for (size_t i = 0; i < n; i++)
		fds[i] = safe_close(fds[i]);
	logfd = safe_close(logfd);
	devnull = safe_close(devnull);

	p->pid = pid;
	d->pid = pid;
	d->priv = p;
#ifdef SYS_pidfd_open
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (p->pidfd < 0)
		p->pidfd = -1;
#endif
	p->next = registry;
	registry = p;

	r = sentinel_start(p);
	if (r < 0)
		fprintf(stderr, "harness: no log sentinel: %s\n", strerror(-r));
	r = -pthread_create(&p->thread, NULL, drain_thread, p);
	if (r < 0) {
		fprintf(stderr, "harness: pthread_create: %s\n", strerror(-r));
		(void)harness_stop(d, SIGKILL);
		return r;
	}
	p->thread_running = true;

	if (d->flags & HARNESS_NO_WAIT_READY)
		return 0;
	r = harness_wait_notify(d, "READY=1", HARNESS_START_TIMEOUT_MS);
	if (r >= 0)
		return 0;
	if (r == -ECHILD)
		fprintf(stderr, "harness: netechod exited with status %d before READY=1\n",
			d->exit_status);
	else
		fprintf(stderr, "harness: netechod sent no READY=1 within %d ms\n",
			HARNESS_START_TIMEOUT_MS);
	harness_log_dump(d);
	(void)harness_stop(d, SIGKILL);
	return r;

fail:
	for (size_t i = 0; i < n && i < HARNESS_MAX_LISTENERS; i++)
		safe_close(fds[i]);
	safe_close(logfd);
	safe_close(devnull);
	free(envp);
	free(fdnames);
	if (d->dir[0])
		dir_remove(p);
	priv_free(p);
	d->priv = NULL;
	return r;
}

static int
stray_check(struct hdaemon *d, const struct proc_info *before, size_t n_before)
{
	uint64_t deadline = deadline_in(HARNESS_STRAY_TIMEOUT_MS);
	size_t alive;

	for (;;) {
		alive = 0;
		for (size_t i = 0; i < n_before; i++) {
			struct proc_info now;

			if (proc_read(before[i].pid, &now) == 0 && now.state != 'Z' &&
			    now.start == before[i].start)
				alive++;
		}
		if (alive == 0)
			return 0;
		if (ms_left(deadline) == 0)
			break;
		(void)poll(NULL, 0, 20);
	}
	for (size_t i = 0; i < n_before; i++) {
		struct proc_info now;

		if (proc_read(before[i].pid, &now) == 0 && now.state != 'Z' &&
		    now.start == before[i].start) {
			fprintf(stderr,
				"harness: process %d (%s) started by netechod (pid %d) is still alive %d ms after it exited; killing it\n",
				(int)now.pid, now.comm, (int)d->pid, HARNESS_STRAY_TIMEOUT_MS);
			(void)kill(now.pid, SIGKILL);
		}
	}
	return -EBUSY;
}

/* Print every non-empty valgrind log of the run; true when there was one
 * (with --quiet memcheck writes only errors and leaks). */
static bool
valgrind_reports(struct hdaemon *d)
{
	DIR *dir = opendir(d->dir);
	struct dirent *de;
	bool found = false;

	if (!dir)
		return false;
	while ((de = readdir(dir))) {
		char path[HARNESS_PATH_MAX + 300], buf[4096];
		ssize_t n;
		int fd;

		if (strncmp(de->d_name, "valgrind.", 9) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", d->dir, de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		while ((n = read(fd, buf, sizeof(buf))) > 0) {
			if (!found)
				fprintf(stderr, "harness: valgrind reported problems:\n");
			found = true;
			(void)!write(STDERR_FILENO, buf, (size_t)n);
		}
		close(fd);
	}
	closedir(dir);
	return found;
}

int
harness_stop(struct hdaemon *d, int sig)
{
	struct harness_priv *p = d->priv;
	struct proc_info *tree = NULL;
	size_t n_tree = 0;
	int result;

	if (!p)
		return -EINVAL;
	if (p->stopped)
		return p->stop_result;

	if (!reap(d)) {
		(void)proc_descendants(p->pid, &tree, &n_tree);
		(void)kill(p->pid, sig);
		result = wait_exit(d, HARNESS_STOP_TIMEOUT_MS);
		if (result == -ETIMEDOUT) {
			fprintf(stderr,
				"harness: netechod (pid %d) did not exit within %d ms of signal %d (%s); killing it\n",
				(int)p->pid, HARNESS_STOP_TIMEOUT_MS, sig, strsignal(sig));
			(void)kill(p->pid, SIGKILL);
			(void)wait_exit(d, HARNESS_STOP_TIMEOUT_MS);
			result = -ETIMEDOUT;
		}
	} else
		result = p->status;

	if (tree) {
		int r = stray_check(d, tree, n_tree);
		if (r < 0 && result == 0)
			result = r;
		free(tree);
	}
	if (p->vg_log[0] && valgrind_reports(d) && result == 0)
		result = -EPROTO;

	thread_stop(p);
	p->notify_fd = safe_close(p->notify_fd);
	p->pidfd = safe_close(p->pidfd);
	if ((sig == SIGTERM || sig == SIGINT) && result != 0) {
		fprintf(stderr, "harness: stopping netechod with %s gave %d\n", strsignal(sig),
			result);
		harness_log_dump(d);
	}
	dir_remove(p);
	sentinel_release(p);
	p->stopped = true;
	p->stop_result = result;
	return result;
}

int
harness_signal(struct hdaemon *d, int sig)
{
	if (!d->priv || reap(d))
		return -ESRCH;
	if (kill(d->priv->pid, sig) < 0)
		return -errno;
	return 0;
}

int
harness_wait_exit(struct hdaemon *d, int timeout_ms)
{
	if (!d->priv)
		return -EINVAL;
	return wait_exit(d, timeout_ms);
}

bool
harness_running(struct hdaemon *d)
{
	return d->priv && !reap(d);
}

/* ---- notifications ---- */

int
harness_wait_notify_from(struct hdaemon *d, const char *pattern, size_t from, int timeout_ms)
{
	struct harness_priv *p = d->priv;
	uint64_t deadline = deadline_in(timeout_ms);
	bool gone = false;

	if (!p)
		return -EINVAL;
	for (;;) {
		struct timespec ts;
		uint64_t until;
		int idx;

		pthread_mutex_lock(&p->lock);
		drain_locked(p);
		idx = find_locked(p, pattern, from);
		if (idx >= 0 || gone || ms_left(deadline) == 0) {
			pthread_mutex_unlock(&p->lock);
			if (idx >= 0)
				return idx;
			return gone ? -ECHILD : -ETIMEDOUT;
		}
		/* Wake at least every 50 ms to notice an early exit. */
		until = MIN(deadline, now_usec() + 50 * USEC_PER_MSEC);
		ts.tv_sec = (time_t)(until / USEC_PER_SEC);
		ts.tv_nsec = (long)(until % USEC_PER_SEC * NSEC_PER_USEC);
		(void)pthread_cond_timedwait(&p->cond, &p->lock, &ts);
		pthread_mutex_unlock(&p->lock);
		/* After the exit, look once more: its last messages may still
		 * sit in the socket. */
		if (reap(d))
			gone = true;
	}
}

int
harness_wait_notify(struct hdaemon *d, const char *pattern, int timeout_ms)
{
	int r = harness_wait_notify_from(d, pattern, d->notify_cursor, timeout_ms);

	if (r >= 0)
		d->notify_cursor = (size_t)r + 1;
	return r;
}

int
harness_notify_find(struct hdaemon *d, const char *pattern, size_t from)
{
	struct harness_priv *p = d->priv;
	int r;

	if (!p)
		return -1;
	pthread_mutex_lock(&p->lock);
	drain_locked(p);
	r = find_locked(p, pattern, from);
	pthread_mutex_unlock(&p->lock);
	return r;
}

size_t
harness_notify_count(struct hdaemon *d)
{
	struct harness_priv *p = d->priv;
	size_t n;

	if (!p)
		return 0;
	pthread_mutex_lock(&p->lock);
	drain_locked(p);
	n = p->n_msgs;
	pthread_mutex_unlock(&p->lock);
	return n;
}

char *
harness_notify_get(struct hdaemon *d, size_t i)
{
	struct harness_priv *p = d->priv;
	char *s = NULL;

	if (!p)
		return NULL;
	pthread_mutex_lock(&p->lock);
	if (i < p->n_msgs)
		s = strdup(p->msgs[i]);
	pthread_mutex_unlock(&p->lock);
	return s;
}

/* ---- log ---- */

char *
harness_log_read(struct hdaemon *d)
{
	struct harness_priv *p = d->priv;

	if (!p)
		return NULL;
	if (p->dir_removed)
		return p->log_text ? strdup(p->log_text) : NULL;
	return file_read(p->log_path);
}

bool
harness_log_contains(struct hdaemon *d, const char *s)
{
	_cleanup_(freep) char *text = harness_log_read(d);

	return text && strstr(text, s);
}

bool
harness_wait_log(struct hdaemon *d, const char *s, int timeout_ms)
{
	uint64_t deadline = deadline_in(timeout_ms);

	for (;;) {
		if (harness_log_contains(d, s))
			return true;
		if (ms_left(deadline) == 0)
			return false;
		(void)poll(NULL, 0, MIN(ms_left(deadline), 20));
	}
}

void
harness_log_dump(struct hdaemon *d)
{
	_cleanup_(freep) char *text = harness_log_read(d);

	fprintf(stderr, "harness: ---- netechod log (%s) ----\n%s%s", d->log_path,
		text ? text : "(unreadable)\n",
		text && *text && text[strlen(text) - 1] != '\n' ? "\n" : "");
	fprintf(stderr, "harness: ---- end of netechod log ----\n");
}

/* ---- running a command ---- */

static int
buf_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t ncap = MAX(*cap * 2, *len + n + 4096);
		char *nb = realloc(*buf, ncap);
		if (!nb)
			return -ENOMEM;
		*buf = nb;
		*cap = ncap;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = 0;
	return 0;
}

int
harness_run(char *const argv[], char **ret_stdout, char **ret_stderr, int *ret_status)
{
	int out[2] = { -1, -1 }, err[2] = { -1, -1 }, devnull = -1;
	char *obuf = NULL, *ebuf = NULL;
	size_t olen = 0, ocap = 0, elen = 0, ecap = 0;
	char **envp = NULL;
	uint64_t deadline = deadline_in(HARNESS_RUN_TIMEOUT_MS), exited_at = 0;
	bool exited = false;
	int wstatus = 0, r = 0;
	pid_t pid;

	if (buf_append(&obuf, &olen, &ocap, "", 0) < 0 ||
	    buf_append(&ebuf, &elen, &ecap, "", 0) < 0) {
		r = -ENOMEM;
		goto out;
	}
	envp = env_build(NULL, 0);
	if (!envp) {
		r = -ENOMEM;
		goto out;
	}
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0) {
		r = -errno;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		goto out;
	}
	if (pid == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		child_reset_signals();
		if (dup2(devnull, STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0 ||
		    dup2(err[1], STDERR_FILENO) < 0)
			_exit(127);
		close_from(3);
		execve(argv[0], argv, envp);
		child_write("harness: cannot execute ");
		child_write(argv[0]);
		child_write("\n");
		_exit(127);
	}
	out[1] = safe_close(out[1]);
	err[1] = safe_close(err[1]);

	while (out[0] >= 0 || err[0] >= 0 || !exited) {
		struct pollfd pfd[2] = {
			{ .fd = out[0], .events = POLLIN },
			{ .fd = err[0], .events = POLLIN },
		};
		int timeout = ms_left(deadline);

		if (!exited) {
			pid_t w = waitpid(pid, &wstatus, WNOHANG);
			if (w == pid) {
				exited = true;
				exited_at = now_usec();
			}
		}
		/* A grandchild may hold the pipes: stop reading shortly after
		 * the program itself exited. */
		if (exited && now_usec() - exited_at > 500 * USEC_PER_MSEC)
			break;
		if (timeout == 0)
			break;
		if (!exited)
			timeout = MIN(timeout, 20);
		else
			timeout = MIN(timeout, 50);
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR) {
			r = -errno;
			break;
		}
		for (int i = 0; i < 2; i++) {
			char chunk[4096];
			ssize_t n;

			if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			n = read(pfd[i].fd, chunk, sizeof(chunk));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				if (i == 0)
					out[0] = safe_close(out[0]);
				else
					err[0] = safe_close(err[0]);
				continue;
			}
			if (i == 0)
				r = buf_append(&obuf, &olen, &ocap, chunk, (size_t)n);
			else
				r = buf_append(&ebuf, &elen, &ecap, chunk, (size_t)n);
			if (r < 0)
				break;
		}
		if (r < 0)
			break;
	}
	if (!exited) {
		(void)kill(pid, SIGKILL);
		(void)waitpid(pid, &wstatus, 0);
		if (r == 0) {
			fprintf(stderr,
				"harness: %s did not exit within %d ms; killed. stdout:\n%s\nstderr:\n%s\n",
				argv[0], HARNESS_RUN_TIMEOUT_MS, obuf, ebuf);
			r = -ETIMEDOUT;
		}
	}
	if (r == 0) {
		*ret_status = exit_code(wstatus);
		if (ret_stdout)
			*ret_stdout = TAKE_PTR(obuf);
		if (ret_stderr)
			*ret_stderr = TAKE_PTR(ebuf);
	}
out:
	safe_close(out[0]);
	safe_close(out[1]);
	safe_close(err[0]);
	safe_close(err[1]);
	safe_close(devnull);
	free(envp);
	free(obuf);
	free(ebuf);
	return r;
}

void
harness_output_free(struct harness_output *o)
{
	free(o->out);
	free(o->err);
	*o = (struct harness_output){ 0 };
}

/* ---- network clients ---- */

bool
harness_have_ipv6(void)
{
	union sockaddr_any sa;
	int fd;

	if (parse_literal("::1", 0, &sa) < 0)
		return false;
	fd = socket_bound(SOCK_DGRAM, &sa, false);
	if (fd < 0)
		return false;
	safe_close(fd);
	return true;
}

int
harness_free_port(int socktype, const char *address, uint16_t *ret)
{
	union sockaddr_any addrs[8];
	size_t n = 0;
	union sockaddr_any sa;

	if (parse_literal(address, 0, &sa) == 0)
		addrs[n++] = sa;
	else {
		struct addrinfo hints = { .ai_socktype = socktype }, *res = NULL;

		if (getaddrinfo(address, NULL, &hints, &res) != 0)
			return -EADDRNOTAVAIL;
		for (struct addrinfo *ai = res; ai && n < ELEMENTSOF(addrs); ai = ai->ai_next) {
			if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
				continue;
			memset(&addrs[n], 0, sizeof(addrs[n]));
			memcpy(&addrs[n], ai->ai_addr, ai->ai_addrlen);
			n++;
		}
		freeaddrinfo(res);
		if (n == 0)
			return -EADDRNOTAVAIL;
	}

	/* A port free on every address; bounded number of tries. */
	for (int attempt = 0; attempt < 64; attempt++) {
		int fds[ELEMENTSOF(addrs)];
		uint16_t port = 0;
		bool ok = true;
		int r;

		for (size_t i = 0; i < n; i++)
			fds[i] = -1;
		for (size_t i = 0; i < n && ok; i++) {
			union sockaddr_any a = addrs[i];

			if (a.sa.sa_family == AF_INET)
				a.in.sin_port = htons(port);
			else
				a.in6.sin6_port = htons(port);
			r = socket_bound(socktype, &a, false);
			if (r < 0) {
				ok = false;
				if (i == 0) {
					for (size_t j = 0; j < n; j++)
						safe_close(fds[j]);
					return r;
				}
				break;
			}
			fds[i] = r;
			if (i == 0 && socket_local_port(fds[0], &port) < 0)
				ok = false;
		}
		for (size_t i = 0; i < n; i++)
			safe_close(fds[i]);
		if (ok) {
			*ret = port;
			return 0;
		}
	}
	return -EADDRINUSE;
}

static void
set_timeouts(int fd)
{
	struct timeval tv = {
		.tv_sec = HARNESS_IO_TIMEOUT_MS / 1000,
		.tv_usec = (HARNESS_IO_TIMEOUT_MS % 1000) * 1000,
	};

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A client socket bound to src (SO_REUSEADDR when reuse), with the I/O
 * timeouts, connected to dst. */
static int
socket_connected(int socktype, const union sockaddr_any *src, bool reuse,
		 const union sockaddr_any *dst)
{
	_cleanup_(closep) int fd = -1;

	fd = socket_bound(socktype, src, reuse);
	if (fd < 0)
		return fd;
	set_timeouts(fd);
	if (connect(fd, &dst->sa, sockaddr_len(dst)) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int
harness_tcp_connect_addr(const char *address, uint16_t port)
{
	_cleanup_(closep) int fd = -1;
	union sockaddr_any sa;
	int r;

	r = parse_literal(address, port, &sa);
	if (r < 0)
		return r;
	fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	set_timeouts(fd);
	if (connect(fd, &sa.sa, sockaddr_len(&sa)) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int
harness_tcp_connect_from(const char *src, uint16_t port)
{
	union sockaddr_any from, to;
	int r;

	r = parse_literal(src, 0, &from);
	if (r < 0)
		return r;
	r = parse_literal("127.0.0.1", port, &to);
	if (r < 0)
		return r;
	return socket_connected(SOCK_STREAM, &from, false, &to);
}

int
harness_tcp_connect(uint16_t port)
{
	return harness_tcp_connect_addr("127.0.0.1", port);
}

int
harness_udp_socket_addr(const char *address, uint16_t src_port, uint16_t port)
{
	union sockaddr_any src, dst;
	int r;

	r = parse_literal(address, src_port, &src);
	if (r < 0)
		return r;
	r = parse_literal(address, port, &dst);
	if (r < 0)
		return r;
	return socket_connected(SOCK_DGRAM, &src, src_port != 0, &dst);
}

int
harness_udp_client(const char *address, uint16_t port, bool do_connect,
		   struct sockaddr_storage *ret_to)
{
	_cleanup_(closep) int fd = -1;
	union sockaddr_any to;
	int r, zero = 0;

	r = parse_literal(address, port, &to);
	if (r < 0)
		return r;
	fd = socket(to.sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (to.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&to.in6.sin6_addr) &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		return -errno;
	set_timeouts(fd);
	if (do_connect && connect(fd, &to.sa, sockaddr_len(&to)) < 0)
		return -errno;
	if (ret_to)
		memcpy(ret_to, &to.storage, sizeof(*ret_to));
	return TAKE_FD(fd);
}

int
harness_udp_socket(uint16_t port)
{
	return harness_udp_socket_addr("127.0.0.1", 0, port);
}

int
harness_send_all(int fd, const void *buf, size_t len, int timeout_ms)
{
	const uint8_t *b = buf;
	uint64_t deadline = deadline_in(timeout_ms);
	size_t done = 0;

	while (done < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		ssize_t n;
		int r;

		r = poll(&pfd, 1, ms_left(deadline));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -ETIMEDOUT;
		n = send(fd, b + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

ssize_t
harness_recv_timeout(int fd, void *buf, size_t len, int timeout_ms)
{
	return harness_recvfrom_timeout(fd, buf, len, NULL, timeout_ms);
}

ssize_t
harness_recvfrom_timeout(int fd, void *buf, size_t len, struct sockaddr_storage *ret_from,
			 int timeout_ms)
{
	uint64_t deadline = deadline_in(timeout_ms);

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		socklen_t alen = sizeof(struct sockaddr_storage);
		ssize_t n;
		int r;

		r = poll(&pfd, 1, ms_left(deadline));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -ETIMEDOUT;
		if (ret_from)
			memset(ret_from, 0, sizeof(*ret_from));
		n = recvfrom(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)ret_from,
			     ret_from ? &alen : NULL);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		return n;
	}
}

ssize_t
harness_recv_exact(int fd, void *buf, size_t len, int timeout_ms)
{
	uint64_t deadline = deadline_in(timeout_ms);
	uint8_t *b = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = harness_recv_timeout(fd, b + got, len - got, ms_left(deadline));

		if (n < 0)
			return n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int
harness_reader_expect_line(struct harness_reader *r, const char *want, int timeout_ms)
{
	uint64_t deadline = deadline_in(timeout_ms);

	for (;;) {
		char *hit, *eol;
		ssize_t n;

		r->buf[r->have] = '\0';
		hit = strstr(r->buf, want);
		if (hit && (eol = strchr(hit, '\n'))) {
			size_t used = (size_t)(eol + 1 - r->buf);

			memmove(r->buf, eol + 1, r->have - used);
			r->have -= used;
			r->buf[r->have] = '\0';
			return 0;
		}
		if (r->have >= sizeof(r->buf) - 1)
			return -EMSGSIZE;
		n = harness_recv_timeout(r->fd, r->buf + r->have, sizeof(r->buf) - 1 - r->have,
					 ms_left(deadline));
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return (int)n;
		r->have += (size_t)n;
	}
}

ssize_t
harness_recv_until_eof(int fd, char **ret, size_t max, int timeout_ms)
{
	uint64_t deadline = deadline_in(timeout_ms);
	char *buf = NULL;
	size_t len = 0, cap = 0;

	if (buf_append(&buf, &len, &cap, "", 0) < 0)
		return -ENOMEM;
	for (;;) {
		char chunk[16384];
		ssize_t n = harness_recv_timeout(fd, chunk, sizeof(chunk), ms_left(deadline));

		if (n < 0) {
			free(buf);
			return n;
		}
		if (n == 0)
			break;
		if (len + (size_t)n > max) {
			free(buf);
			return -EMSGSIZE;
		}
		if (buf_append(&buf, &len, &cap, chunk, (size_t)n) < 0) {
			free(buf);
			return -ENOMEM;
		}
	}
	*ret = buf;
	return (ssize_t)len;
}

ssize_t
harness_udp_roundtrip(int fd, const void *buf, size_t len, void *reply, size_t reply_max,
		      int timeout_ms)
{
	uint64_t deadline = deadline_in(timeout_ms);

	if (send(fd, buf, len, MSG_NOSIGNAL) < 0)
		return -errno;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int r;

		r = poll(&pfd, 1, ms_left(deadline));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -ETIMEDOUT;
		n = recv(fd, reply, reply_max, MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		return n;
	}
}

void
harness_fill_pattern(void *buf, size_t len, uint32_t seed)
{
	uint8_t *b = buf;
	uint32_t x = seed * 2654435761u + 0x9e3779b9u;

	if (x == 0)
		x = 1;
	for (size_t i = 0; i < len; i++) {
		/* xorshift32 */
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b[i] = (uint8_t)(x >> 24);
	}
}

struct exchange {
	size_t sent;
	size_t rcvd;
	bool eof;
};

int
harness_tcp_exchange(const int *fds, size_t n, const void *const *bufs, const size_t *lens,
		     int timeout_ms, char *reterr, size_t reterr_len)
{
	uint64_t deadline = deadline_in(timeout_ms);
	struct exchange *st = calloc(n, sizeof(*st));
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	uint8_t *chunk = malloc(EXCHANGE_CHUNK);
	size_t done = 0;
	int r = 0;

	if (!st || !pfd || !chunk) {
		r = -ENOMEM;
		snprintf(reterr, reterr_len, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		(void)fd_set_nonblock(fds[i], true);
		if (lens[i] == 0)
			done++;
	}
	while (done < n) {
		int pr;

		for (size_t i = 0; i < n; i++) {
			bool want = st[i].rcvd < lens[i];
			pfd[i].fd = want ? fds[i] : -1;
			pfd[i].events = (short)(POLLIN | (st[i].sent < lens[i] ? POLLOUT : 0));
			pfd[i].revents = 0;
		}
		if (ms_left(deadline) == 0) {
			size_t worst = 0;
			for (size_t i = 0; i < n; i++)
				if (st[i].rcvd < lens[i]) {
					worst = i;
					break;
				}
			snprintf(reterr, reterr_len,
				 "timeout after %d ms: socket %zu of %zu sent %zu and got back %zu of %zu bytes; %zu of %zu sockets complete",
				 timeout_ms, worst, n, st[worst].sent, st[worst].rcvd, lens[worst],
				 done, n);
			r = -ETIMEDOUT;
			goto out;
		}
		pr = poll(pfd, (nfds_t)n, MIN(ms_left(deadline), 1000));
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			snprintf(reterr, reterr_len, "poll: %s", strerror(errno));
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			const uint8_t *want = bufs[i];
			ssize_t k;

			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			if ((pfd[i].revents & POLLOUT) && st[i].sent < lens[i]) {
				k = send(fds[i], want + st[i].sent,
					 MIN(lens[i] - st[i].sent, (size_t)EXCHANGE_CHUNK),
					 MSG_NOSIGNAL | MSG_DONTWAIT);
				if (k < 0 && errno != EAGAIN && errno != EINTR) {
					r = -errno;
					snprintf(reterr, reterr_len,
						 "socket %zu: send after %zu bytes sent, %zu received: %s",
						 i, st[i].sent, st[i].rcvd, strerror(errno));
					goto out;
				}
				if (k > 0)
					st[i].sent += (size_t)k;
			}
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
				size_t room = MIN(lens[i] - st[i].rcvd, (size_t)EXCHANGE_CHUNK);

				k = recv(fds[i], chunk, room, MSG_DONTWAIT);
				if (k < 0) {
					if (errno == EAGAIN || errno == EINTR)
						continue;
					r = -errno;
					snprintf(reterr, reterr_len,
						 "socket %zu: recv after %zu of %zu bytes: %s", i,
						 st[i].rcvd, lens[i], strerror(errno));
					goto out;
				}
				if (k == 0) {
					r = -ECONNRESET;
					snprintf(reterr, reterr_len,
						 "socket %zu: EOF after %zu of %zu bytes echoed (%zu sent)",
						 i, st[i].rcvd, lens[i], st[i].sent);
					goto out;
				}
				if (memcmp(chunk, want + st[i].rcvd, (size_t)k) != 0) {
					size_t off = 0;
					while (chunk[off] == want[st[i].rcvd + off])
						off++;
					r = -EBADMSG;
					snprintf(reterr, reterr_len,
						 "socket %zu: byte %zu differs: got 0x%02x, expected 0x%02x",
						 i, st[i].rcvd + off, chunk[off],
						 want[st[i].rcvd + off]);
					goto out;
				}
				st[i].rcvd += (size_t)k;
				if (st[i].rcvd == lens[i])
					done++;
			}
		}
	}
out:
	for (size_t i = 0; i < n; i++)
		(void)fd_set_nonblock(fds[i], false);
	free(st);
	free(pfd);
	free(chunk);
	return r;
}

/* ---- counters ---- */

static size_t
count_occurrences(const char *text, const char *needle)
{
	size_t n = 0;

	for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

int
harness_counters(struct hdaemon *d, const char *listener, struct harness_counters *ret)
{
	uint64_t deadline = now_usec() + (uint64_t)HARNESS_IO_TIMEOUT_MS * USEC_PER_MSEC;
	char needle[96], *text = NULL, *line = NULL, *p;
	unsigned long long now_c, total, bin, bout, refused, dropped;
	size_t seen, now = 0;
	int r;

	snprintf(needle, sizeof(needle), " %s: connections now ", listener);
	text = harness_log_read(d);
	seen = count_occurrences(text, needle);
	r = harness_signal(d, SIGUSR1);
	if (r < 0)
		goto out;
	for (;;) {
		free(text);
		text = harness_log_read(d);
		now = count_occurrences(text, needle);
		if (now > seen || now_usec() >= deadline)
			break;
		(void)poll(NULL, 0, 10);
	}
	if (now <= seen) {
		fprintf(stderr, "harness: no counters for listener %s within %d ms of SIGUSR1\n",
			listener, HARNESS_IO_TIMEOUT_MS);
		r = -ETIMEDOUT;
		goto out;
	}
	for (p = text; (p = strstr(p, needle)); p++)
		line = p;
	p = line + strlen(needle) - strlen("connections now ");
	if (sscanf(p, "connections now %llu total %llu, bytes in %llu out %llu, refused %llu, dropped %llu",
		   &now_c, &total, &bin, &bout, &refused, &dropped) != 6) {
		fprintf(stderr, "harness: cannot read the counters of %s in '%.200s'\n", listener,
			line);
		r = -EBADMSG;
		goto out;
	}
	ret->conns_now = now_c;
	ret->conns_total = total;
	ret->bytes_in = bin;
	ret->bytes_out = bout;
	ret->refused = refused;
	ret->dropped = dropped;
	r = 0;
out:
	free(text);
	return r;
}

int
harness_wait_discarded(struct hdaemon *d, const char *listener, uint64_t min, int timeout_ms,
		       struct harness_counters *ret)
{
	uint64_t deadline = now_usec() + (uint64_t)timeout_ms * USEC_PER_MSEC;
	struct harness_counters c = { 0 };
	int r;

	for (;;) {
		r = harness_counters(d, listener, &c);
		if (r < 0)
			return r;
		if (c.refused + c.dropped >= min)
			break;
		if (now_usec() >= deadline) {
			fprintf(stderr,
				"harness: %s discarded %llu datagrams within %d ms, expected %llu\n",
				listener, (unsigned long long)(c.refused + c.dropped), timeout_ms,
				(unsigned long long)min);
			*ret = c;
			return -ETIMEDOUT;
		}
		(void)poll(NULL, 0, 20);
	}
	*ret = c;
	return 0;
}

/* ---- what a case needs from the host ---- */

int
harness_main(struct Suite *s, int argc, char **argv)
{
	const char *need = argc > 1 ? argv[1] : NULL;
	const char *include = NULL, *exclude = NULL;
	SRunner *sr = srunner_create(s);
	int run, failed;

	if (!need)
		exclude = HARNESS_TAG_ROOT " " HARNESS_TAG_IPV6;
	else if (strcmp(need, HARNESS_TAG_ROOT) == 0 && argc == 2) {
		if (geteuid() != 0) {
			printf("not root: the cases tagged %s are skipped\n", need);
			srunner_free(sr);
			return HARNESS_EXIT_SKIP;
		}
		include = need;
	} else if (strcmp(need, HARNESS_TAG_IPV6) == 0 && argc == 2) {
		if (!harness_have_ipv6()) {
			printf("no IPv6 loopback (::1): the cases tagged %s are skipped\n", need);
			srunner_free(sr);
			return HARNESS_EXIT_SKIP;
		}
		include = need;
	} else {
		fprintf(stderr, "usage: %s [%s|%s]\n", argv[0], HARNESS_TAG_ROOT,
			HARNESS_TAG_IPV6);
		srunner_free(sr);
		return EXIT_FAILURE;
	}
	srunner_run_tagged(sr, NULL, NULL, include, exclude, CK_ENV);
	run = srunner_ntests_run(sr);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	if (failed > 0)
		return EXIT_FAILURE;
	/* Nothing selected is a mistake in the test, unless CK_RUN_CASE or
	 * CK_RUN_SUITE narrowed the run. */
	if (run == 0 && !getenv("CK_RUN_CASE") && !getenv("CK_RUN_SUITE")) {
		fprintf(stderr, "%s: no case selected for '%s'\n", argv[0], need ? need : "");
		return EXIT_FAILURE;
	}
	return EXIT_SUCCESS;
}

/* ---- the model x protocol matrix ---- */

#define COMBO(proto, model, label, workers) \
	{ proto "-" label, proto, model, workers, label }

static const struct harness_combo combos[] = {
	COMBO("tcp", "fork", "fork", 0),     COMBO("tcp", "thread", "thread", 0),
	COMBO("tcp", "select", "select", 0), COMBO("tcp", "poll", "poll", 0),
	COMBO("tcp", "epoll", "epoll", 0),   COMBO("tcp", "epoll", "epoll-w2", 2),
	COMBO("udp", "fork", "fork", 0),     COMBO("udp", "fork", "fork-w2", 2),
	COMBO("udp", "thread", "thread", 0), COMBO("udp", "thread", "thread-w2", 2),
	COMBO("udp", "select", "select", 0), COMBO("udp", "poll", "poll", 0),
	COMBO("udp", "epoll", "epoll", 0),   COMBO("udp", "epoll", "epoll-w2", 2),
};

static const struct harness_combo *current_combo;

size_t
harness_combo_count(void)
{
	return ELEMENTSOF(combos);
}

const struct harness_combo *
harness_combo_at(size_t i)
{
	return i < ELEMENTSOF(combos) ? &combos[i] : NULL;
}

size_t
harness_combo_index(const struct harness_combo *c)
{
	return (size_t)(c - combos);
}

static bool
combo_selected(const struct harness_combo *c, unsigned mask)
{
	unsigned proto = strcmp(c->protocol, "tcp") == 0 ? HARNESS_COMBO_TCP : HARNESS_COMBO_UDP;

	return (mask & proto) && (!c->workers || (mask & HARNESS_COMBO_WORKERS));
}

const struct harness_combo *
harness_combo_next(const struct harness_combo *prev, unsigned mask)
{
	for (size_t i = prev ? harness_combo_index(prev) + 1 : 0; i < ELEMENTSOF(combos); i++)
		if (combo_selected(&combos[i], mask))
			return &combos[i];
	return NULL;
}

const struct harness_combo *
harness_combo_find(const char *name)
{
	for (size_t i = 0; i < ELEMENTSOF(combos); i++)
		if (strcmp(combos[i].tcase, name) == 0)
			return &combos[i];
	return NULL;
}

struct hl_listener
harness_combo_listener(const struct harness_combo *c, const char *name, const char *service,
		       const char *extra, char *buf, size_t len)
{
	if (c->workers)
		snprintf(buf, len, "workers = %u; %s", c->workers, extra ? extra : "");
	else
		snprintf(buf, len, "%s", extra ? extra : "");
	return (struct hl_listener){
		.name = name,
		.protocol = c->protocol,
		.model = c->model,
		.service = service ? service : "echo",
		.extra = buf[0] ? buf : NULL,
	};
}

const struct harness_combo *
harness_combo_current(void)
{
	return current_combo;
}

void
harness_combo_use(const struct harness_combo *c)
{
	current_combo = c;
}

/* What the fixture of the n-th TCase harness_combo_tcase() made does. */
static struct combo_tcase {
	const struct harness_combo *combo;
	void (*setup)(const struct harness_combo *);
	char name[48];
} combo_tcases[HARNESS_MAX_COMBO_TCASES];
static size_t n_combo_tcases;

static void
combo_fixture(size_t n)
{
	current_combo = combo_tcases[n].combo;
	if (combo_tcases[n].setup)
		combo_tcases[n].setup(current_combo);
}

/* A fixture takes no argument: one function per slot, fixture_ABC for
 * slot A * 16 + B * 4 + C, and their table. */
#define FIXTURE1(a, b, c)                          \
	static void fixture_##a##b##c(void)        \
	{                                          \
		combo_fixture(a * 16 + b * 4 + c); \
	}
#define FIXTURE4(a, b) FIXTURE1(a, b, 0) FIXTURE1(a, b, 1) FIXTURE1(a, b, 2) FIXTURE1(a, b, 3)
#define FIXTURE16(a) FIXTURE4(a, 0) FIXTURE4(a, 1) FIXTURE4(a, 2) FIXTURE4(a, 3)
FIXTURE16(0)
FIXTURE16(1)
FIXTURE16(2)
FIXTURE16(3)

#define NAME1(a, b, c) fixture_##a##b##c,
#define NAME4(a, b) NAME1(a, b, 0) NAME1(a, b, 1) NAME1(a, b, 2) NAME1(a, b, 3)
#define NAME16(a) NAME4(a, 0) NAME4(a, 1) NAME4(a, 2) NAME4(a, 3)
static void (*const fixtures[])(void) = { NAME16(0) NAME16(1) NAME16(2) NAME16(3) };
_Static_assert(ELEMENTSOF(fixtures) == HARNESS_MAX_COMBO_TCASES, "one fixture per slot");

TCase *
harness_tcase(Suite *s, const char *name, const char *tags, void (*setup)(void),
	      void (*teardown)(void), int timeout_s)
{
	TCase *tc = tcase_create(name);

	if (tags)
		tcase_set_tags(tc, tags);
	if (setup || teardown)
		tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout_s);
	suite_add_tcase(s, tc);
	return tc;
}

TCase *
harness_combo_tcase(Suite *s, const struct harness_combo *c, const char *suffix,
		    void (*setup)(const struct harness_combo *), void (*teardown)(void),
		    int timeout_s)
{
	struct combo_tcase *t;

	if (n_combo_tcases >= ELEMENTSOF(combo_tcases)) {
		fprintf(stderr, "harness: more than %d combination TCases\n",
			HARNESS_MAX_COMBO_TCASES);
		abort();
	}
	t = &combo_tcases[n_combo_tcases];
	*t = (struct combo_tcase){ .combo = c, .setup = setup };
	/* Check keeps the name, not a copy. */
	snprintf(t->name, sizeof(t->name), "%s%s", c->tcase, suffix ? suffix : "");
	return harness_tcase(s, t->name, NULL, fixtures[n_combo_tcases++], teardown, timeout_s);
}

void
harness_combo_add_loop_test(TCase *tc, const TTest *t, unsigned mask)
{
	const struct harness_combo *first = harness_combo_next(NULL, mask), *last = NULL;
	size_t n = 0;

	HARNESS_FOR_EACH_COMBO(c, mask) {
		last = c;
		n++;
	}
	if (!first || harness_combo_index(last) + 1 - harness_combo_index(first) != n) {
		fprintf(stderr, "harness: the combinations 0x%x are none or not contiguous\n",
			mask);
		abort();
	}
	tcase_add_loop_test(tc, t, (int)harness_combo_index(first),
			    (int)harness_combo_index(last) + 1);
}

/* ---- a real redis-server ---- */

const char *
harness_redis_server_bin(void)
{
	static const char *const where[] = { "/usr/bin/redis-server", "/usr/sbin/redis-server",
					     "/usr/local/bin/redis-server" };
	const char *env = getenv("REDIS_SERVER_BIN");

	if (env && *env)
		return access(env, X_OK) == 0 ? env : NULL;
	for (size_t i = 0; i < ELEMENTSOF(where); i++)
		if (access(where[i], X_OK) == 0)
			return where[i];
	return NULL;
}

int
harness_redis_ping(const struct hredis *r, int timeout_ms)
{
	_cleanup_(closep) int fd = -1;
	uint64_t deadline = deadline_in(timeout_ms);
	char buf[16];
	size_t have = 0;
	int rr;

	fd = harness_tcp_connect(r->port);
	if (fd < 0)
		return fd;
	rr = harness_send_all(fd, "PING\r\n", 6, ms_left(deadline));
	if (rr < 0)
		return rr;
	/* "+PONG\r\n" may come in pieces; at most sizeof(buf) reads. */
	while (have < 7) {
		ssize_t n = harness_recv_timeout(fd, buf + have, sizeof(buf) - 1 - have,
						 ms_left(deadline));

		if (n < 0)
			return (int)n;
		if (n == 0)
			return -ECONNRESET;
		have += (size_t)n;
	}
	buf[have] = '\0';
	return strcmp(buf, "+PONG\r\n") == 0 ? 0 : -EBADMSG;
}

/* Between fork() and exec(): async-signal-safe calls only. */
static void
redis_child(const struct hredis *r, const char *bin, pid_t parent)
{
	char port[8];
	const char *argv[20];
	size_t n = 0;
	int fd;

	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	child_reset_signals();
	fd = open(r->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0) {
		(void)dup2(fd, STDOUT_FILENO);
		(void)dup2(fd, STDERR_FILENO);
	}
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		(void)dup2(fd, STDIN_FILENO);
	close_from(3);
	format_uint(port, r->port);
	argv[n++] = "redis-server";
	argv[n++] = "--port";
	argv[n++] = port;
	argv[n++] = "--bind";
	argv[n++] = "127.0.0.1";
	argv[n++] = "--save";
	argv[n++] = "";
	argv[n++] = "--appendonly";
	argv[n++] = "no";
	argv[n++] = "--daemonize";
	argv[n++] = "no";
	argv[n++] = "--dir";
	argv[n++] = r->dir;
	if (r->unix_socket) {
		argv[n++] = "--unixsocket";
		argv[n++] = r->unix_path;
		argv[n++] = "--unixsocketperm";
		argv[n++] = "700";
	}
	argv[n] = NULL;
	execv(bin, (char *const *)argv);
	child_write("redis-server: exec failed\n");
	_exit(127);
}

static void
redis_log_dump(const struct hredis *r)
{
	char *log = file_read(r->log_path);

	fprintf(stderr, "---- redis-server log (%s) ----\n%s\n----\n", r->log_path,
		log ? log : "(unreadable)");
	free(log);
}

/* Bounded: waits until ping answers, the server exits, or the deadline. */
static int
redis_wait_up(struct hredis *r)
{
	uint64_t deadline = deadline_in(HARNESS_START_TIMEOUT_MS);
	int status, last = 0;

	for (;;) {
		pid_t w = waitpid(r->pid, &status, WNOHANG);

		if (w == r->pid) {
			r->pid = 0;
			fprintf(stderr, "redis-server exited at start with %d\n", exit_code(status));
			redis_log_dump(r);
			return -ECHILD;
		}
		last = harness_redis_ping(r, MIN(ms_left(deadline), 1000));
		if (last == 0)
			return 0;
		if (ms_left(deadline) == 0)
			break;
		(void)poll(NULL, 0, 20);
	}
	fprintf(stderr, "redis-server on port %u did not answer PING within %d ms: %s\n",
		r->port, HARNESS_START_TIMEOUT_MS, strerror(-last));
	redis_log_dump(r);
	(void)harness_redis_kill(r);
	return -ETIMEDOUT;
}

int
harness_redis_start(struct hredis *r)
{
	const char *bin = harness_redis_server_bin();
	pid_t parent = getpid();
	int rr;

	if (!bin)
		return -ENOENT;
	if (r->pid > 0)
		return -EALREADY;
	if (!r->dir[0]) {
		snprintf(r->dir, sizeof(r->dir), "/tmp/netechod-redis.XXXXXX");
		if (!mkdtemp(r->dir)) {
			rr = -errno;
			r->dir[0] = '\0';
			return rr;
		}
		snprintf(r->unix_path, sizeof(r->unix_path), "%s/redis.sock", r->dir);
		snprintf(r->log_path, sizeof(r->log_path), "%s/redis.log", r->dir);
	}
	if (!r->port) {
		rr = harness_free_port(SOCK_STREAM, "127.0.0.1", &r->port);
		if (rr < 0)
			return rr;
	}
	r->pid = fork();
	if (r->pid < 0) {
		rr = -errno;
		r->pid = 0;
		return rr;
	}
	if (r->pid == 0)
		redis_child(r, bin, parent);
	return redis_wait_up(r);
}

/* Wait up to timeout_ms for r->pid: its exit code, or -ETIMEDOUT. */
static int
redis_reap(struct hredis *r, int timeout_ms)
{
	uint64_t deadline = deadline_in(timeout_ms);
	int status;

	for (;;) {
		pid_t w = waitpid(r->pid, &status, WNOHANG);

		if (w == r->pid) {
			r->pid = 0;
			return exit_code(status);
		}
		if (w < 0 && errno == ECHILD) {
			r->pid = 0;
			return -ECHILD;
		}
		if (w < 0 && errno != EINTR)
			return -errno;
		if (ms_left(deadline) == 0)
			return -ETIMEDOUT;
		(void)poll(NULL, 0, 10);
	}
}

int
harness_redis_kill(struct hredis *r)
{
	int rr;

	if (r->pid <= 0)
		return 0;
	(void)kill(r->pid, SIGKILL);
	rr = redis_reap(r, HARNESS_STOP_TIMEOUT_MS);
	return rr == 128 + SIGKILL ? 0 : rr;
}

static void
redis_dir_remove(struct hredis *r)
{
	DIR *d;
	struct dirent *de;

	if (!r->dir[0])
		return;
	d = opendir(r->dir);
	if (d) {
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				(void)unlinkat(dirfd(d), de->d_name, 0);
		closedir(d);
	}
	(void)rmdir(r->dir);
	r->dir[0] = '\0';
}

int
harness_redis_stop(struct hredis *r)
{
	int rr = 0;

	if (r->pid > 0) {
		(void)kill(r->pid, SIGTERM);
		(void)kill(r->pid, SIGCONT);
		rr = redis_reap(r, HARNESS_STOP_TIMEOUT_MS);
		if (rr == -ETIMEDOUT) {
			fprintf(stderr, "redis-server %d ignored SIGTERM for %d ms: killed\n",
				(int)r->pid, HARNESS_STOP_TIMEOUT_MS);
			(void)harness_redis_kill(r);
		}
	}
	redis_dir_remove(r);
	return rr;
}

int
harness_redis_restart(struct hredis *r)
{
	int rr = harness_redis_kill(r);

	if (rr < 0)
		return rr;
	return harness_redis_start(r);
}

int
harness_redis_signal(struct hredis *r, int sig)
{
	if (r->pid <= 0)
		return -ESRCH;
	return kill(r->pid, sig) < 0 ? -errno : 0;
}
