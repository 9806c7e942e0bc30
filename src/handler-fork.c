#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "acceptor.h"
#include "admission.h"
#include "handler.h"
#include "log.h"
#include "loop.h"
#include "service.h"
#include "session.h"
#include "udp.h"

/* The fork model. TCP: the listener process accepts and forks one child
 * per connection; it keeps only the child's pid and peer (for max_clients
 * and per_source), reaps promptly and reports unexpected deaths. UDP:
 * `workers` pre-forked children share the socket. */

struct fchild {
	pid_t pid;
	union sockaddr_any peer;
};

struct fmodel {
	struct listener_rt *lst;
	struct loop *loop;
	struct acceptor acc;
	int sfd;
	struct fchild *children;
	size_t n_children, alloc;
	bool stopping;
	struct loop_timer deadline;
	uint64_t kill_at;
	unsigned restarts;
};

/* In the child: the connection (or socket) a SIGTERM must interrupt. */
static volatile sig_atomic_t child_fd = -1;
static volatile sig_atomic_t child_stop;
static struct session *child_session;

static void
child_on_term(int sig)
{
	child_stop = 1;
	/* session_request_stop() is not async-signal-safe; the store is,
	 * and the session applies it at its next step. */
	if (child_session)
		atomic_store(&child_session->stop_requested, SESSION_STOP_DRAIN);
	/* Async-signal-safe: makes the blocked read() return 0, so the
	 * child sends what it owes and ends like on a half-close. */
	if (child_fd >= 0)
		(void)shutdown(child_fd, SHUT_RD);
}

/* Empty; set up by install_child_handlers() in the listener process. */
static sigset_t child_mask;

/* Runs on every connection: each libc function it calls first is a page
 * fault in a fresh child, hence plain close() (errno is not needed) and a
 * mask prepared in the parent. */
static void
child_setup(struct fmodel *m, int keep_fd)
{
	/* A child serves one client: it keeps nothing of the parent's. */
	if (m->lst->cfg.protocol == PROTOCOL_TCP)
		for (size_t i = 0; i < m->lst->n_fds; i++)
			if (m->lst->fds[i] != keep_fd)
				(void)close(m->lst->fds[i]);
	(void)close(m->sfd);
	child_fd = keep_fd;
	/* The handlers are in place already (install_child_handlers) and
	 * SIGHUP and SIGUSR1 are ignored by every handler process: one
	 * syscall lets SIGTERM and SIGINT in. */
	sigprocmask(SIG_SETMASK, &child_mask, NULL);
}

/* Installed in the listener process, where SIGTERM and SIGINT stay blocked
 * and are read from the signalfd, so these only ever run in children. */
static void
install_child_handlers(void)
{
	struct sigaction sa = { .sa_handler = child_on_term };

	sigemptyset(&child_mask);
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a blocked recvmsg() must see EINTR. */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

/* The children table lives in a MAP_SHARED mapping: fork neither copies
 * its page tables nor write-protects it, so the listener's bookkeeping
 * right after each fork takes no copy-on-write fault. Children never
 * touch it. */
static size_t
table_bytes(size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (n * sizeof(struct fchild) + page - 1) / page * page;
}

static int
track(struct fmodel *m, pid_t pid, const union sockaddr_any *peer)
{
	if (m->n_children == m->alloc) {
		size_t want = table_bytes(m->alloc ? m->alloc * 2 : 64);
		/* Not mremap(): a shared anonymous mapping's object keeps
		 * its size, and the grown part would raise SIGBUS. */
		void *c = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			       -1, 0);

		if (c == MAP_FAILED)
			return -ENOMEM;
		if (m->children) {
			memcpy(c, m->children, m->n_children * sizeof(struct fchild));
			(void)munmap(m->children, table_bytes(m->alloc));
		}
		m->children = c;
		m->alloc = want / sizeof(struct fchild);
	}
	m->children[m->n_children++] = (struct fchild){ .pid = pid, .peer = *peer };
	return 0;
}

static void
untrack_all(struct fmodel *m)
{
	if (m->children)
		(void)munmap(m->children, table_bytes(m->alloc));
	m->children = NULL;
	m->alloc = m->n_children = 0;
}

static const char *
on_conn(struct acceptor *a, int *fd, const struct conn_origin *o)
{
	int cfd = *fd;
	struct fmodel *m = a->userdata;
	struct listener_rt *lst = m->lst;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return "cannot fork";
	if (pid == 0) {
		struct session s;

		session_init(&s, cfd, lst, NULL, o, loop_now(a->loop));
		/* The listener counts it and holds its admission, from fork
		 * to reap: a child that outlives a crashed listener must not
		 * decrement the count the dispatcher reset for the new one. */
		s.counted_elsewhere = true;
		child_session = &s;
		child_setup(m, cfd);
		handler_serve_alone(&s, -1);
		_exit(0);
	}
	safe_close(cfd);
	if (track(m, pid, &o->peer) < 0) {
		/* Cannot account for it: better to end it than to lose
		 * count of max_clients. */
		kill(pid, SIGKILL);
		admission_release(lst, &o->peer);
		return NULL;
	}
	STATS_ADD(lst, conns_total, 1);
	STATS_ADD(lst, conns_now, 1);
	return NULL;
}

static void spawn_udp_workers(struct fmodel *m);

static void
reap(struct fmodel *m)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid <= 0)
			break;
		for (size_t i = 0; i < m->n_children; i++) {
			if (m->children[i].pid != pid)
				continue;
			if (m->lst->cfg.protocol == PROTOCOL_TCP) {
				admission_release(m->lst, &m->children[i].peer);
				STATS_SUB(m->lst, conns_now, 1);
			}
			m->children[i] = m->children[--m->n_children];
			break;
		}
		if (WIFSIGNALED(status) && !(m->stopping && WTERMSIG(status) == SIGKILL))
			log_listener(LOG_ERR, m->lst->cfg.name, NULL,
				     "child %ld killed by signal %d", (long)pid, WTERMSIG(status));
		else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
			log_listener(LOG_ERR, m->lst->cfg.name, NULL,
				     "child %ld exited with status %d", (long)pid,
				     WEXITSTATUS(status));
	}
	if (m->stopping) {
		if (m->n_children == 0)
			loop_quit(m->loop);
	} else if (m->lst->cfg.protocol == PROTOCOL_UDP)
		spawn_udp_workers(m);
}

static void
kill_all(struct fmodel *m, int sig)
{
	for (size_t i = 0; i < m->n_children; i++)
		(void)kill(m->children[i].pid, sig);
}

static void
on_deadline(struct loop *l, struct loop_timer *t, void *userdata)
{
	struct fmodel *m = userdata;

	if (m->n_children == 0) {
		loop_quit(l);
		return;
	}
	log_listener(LOG_WARNING, m->lst->cfg.name, NULL,
		     "%zu children still running after %u s, killing them", m->n_children,
		     m->lst->shutdown_timeout);
	kill_all(m, SIGKILL);
	/* SIGCHLD for each follows; reap() quits the loop. */
}

static void
on_signal(struct loop *l, int fd, unsigned events, void *userdata)
{
	struct fmodel *m = userdata;
	struct signalfd_siginfo si;

	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGCHLD) {
			reap(m);
			continue;
		}
		if (m->stopping)
			continue;
		m->stopping = true;
		if (m->lst->cfg.protocol == PROTOCOL_TCP)
			acceptor_stop(&m->acc);
		kill_all(m, SIGTERM);
		if (m->n_children == 0) {
			loop_quit(l);
			return;
		}
		loop_timer_set(l, &m->deadline,
			       loop_now(l) + (uint64_t)m->lst->shutdown_timeout * USEC_PER_SEC,
			       on_deadline, m);
	}
}

static void
udp_child(struct fmodel *m)
{
	struct listener_rt *lst = m->lst;
	struct udp_worker w;
	int ret = 0;

	child_setup(m, -1);
	/* A restarted handler forks new workers: never leave old ones. */
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (udp_worker_init(&w, lst) < 0)
		_exit(1);
	while (!child_stop) {
		int r = udp_worker_block(&w, lst->fds, lst->n_addrs, 200);

		if (r < 0 && r != -EAGAIN && r != -EINTR) {
			log_full_errno(LOG_ERR, r, lst->cfg.name, NULL, "receive failed");
			ret = 1;
			break;
		}
		udp_worker_tick(&w, lst->fds[0]);
	}
	udp_worker_done(&w);
	_exit(ret);
}

static void
spawn_udp_workers(struct fmodel *m)
{
	static const union sockaddr_any none;

	while (m->n_children < m->lst->cfg.workers) {
		pid_t pid;

		if (m->restarts > 0 && m->restarts % 10 == 0)
			log_listener(LOG_WARNING, m->lst->cfg.name, NULL,
				     "UDP workers keep dying (%u restarts)", m->restarts);
		pid = fork();
		if (pid < 0) {
			log_full_errno(LOG_ERR, errno, m->lst->cfg.name, NULL, "cannot fork worker");
			return;
		}
		if (pid == 0)
			udp_child(m);
		if (track(m, pid, &none) < 0) {
			kill(pid, SIGKILL);
			return;
		}
		m->restarts++;
	}
}

static int
fork_model_run(struct listener_rt *lst)
{
	struct fmodel m = { .lst = lst };
	int r;

	/* A shared room over TCP (chat): the hub is an event loop over
	 * the pumps' sockets (handler-fork-hub.c). */
	if (lst->cfg.protocol == PROTOCOL_TCP && lst->service->shared_room)
		return handler_loop_run(lst, &handler_fork_hub_ops);

	m.sfd = handler_signalfd(true, SFD_NONBLOCK);
	if (m.sfd < 0)
		return log_full_errno(LOG_ERR, m.sfd, lst->cfg.name, NULL, "signalfd failed"), 1;
	install_child_handlers();
	r = loop_new(&m.loop, LOOP_BACKEND_POLL);
	if (r < 0)
		goto fail;
	r = loop_add(m.loop, m.sfd, LOOP_READ, on_signal, &m);
	if (r < 0)
		goto fail;
	if (lst->cfg.protocol == PROTOCOL_TCP) {
		m.acc = (struct acceptor){
			.lst = lst,
			.loop = m.loop,
			.fds = lst->fds,
			.n_fds = lst->n_addrs,
			.events = LOOP_READ,
			.on_conn = on_conn,
			.userdata = &m,
		};
		r = acceptor_start(&m.acc);
		if (r < 0)
			goto fail;
	} else {
		for (size_t i = 0; i < lst->n_addrs; i++) {
			struct timeval tv = { .tv_usec = 200000 };

			/* One process reading several sockets must not
			 * block on any single one. */
			(void)fd_set_nonblock(lst->fds[i], lst->n_addrs > 1);
			(void)setsockopt(lst->fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		}
		spawn_udp_workers(&m);
		m.restarts = 0;
	}
	handler_notify_ready(lst);
	r = loop_run(m.loop);
	if (r < 0)
		goto fail;
	if (lst->cfg.protocol == PROTOCOL_UDP)
		udp_shutdown_notice(lst);
	loop_free(m.loop);
	untrack_all(&m);
	safe_close(m.sfd);
	return 0;
fail:
	log_full_errno(LOG_ERR, r, lst->cfg.name, NULL, "fork model failed");
	kill_all(&m, SIGKILL);
	loop_free(m.loop);
	untrack_all(&m);
	safe_close(m.sfd);
	return 1;
}

const struct model_ops handler_fork_ops = {
	.name = "fork",
	.run = fork_model_run,
};
