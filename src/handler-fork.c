#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "acceptor.h"
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
	if (child_session)
		atomic_store(&child_session->stop_requested, true);
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

static void
on_conn(struct acceptor *a, int cfd, const union sockaddr_any *peer)
{
	struct fmodel *m = a->userdata;
	struct listener_rt *lst = m->lst;
	pid_t pid;

	pid = fork();
	if (pid < 0) {
		handler_release(lst, peer);
		handler_refuse(lst, cfd, peer, "cannot fork");
		return;
	}
	if (pid == 0) {
		struct session s;

		session_init(&s, cfd, lst, NULL, peer, loop_now(a->loop));
		/* The listener counts it, from fork to reap: a child that
		 * outlives a crashed listener must not decrement the count
		 * the dispatcher reset for the new one. */
		s.counted_elsewhere = true;
		child_session = &s;
		child_setup(m, cfd);
		handler_serve_blocking(&s);
		session_done(&s);
		_exit(0);
	}
	safe_close(cfd);
	if (track(m, pid, peer) < 0) {
		/* Cannot account for it: better to end it than to lose
		 * count of max_clients. */
		kill(pid, SIGKILL);
		handler_release(lst, peer);
		return;
	}
	STATS_ADD(lst, conns_total, 1);
	STATS_ADD(lst, conns_now, 1);
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
				handler_release(m->lst, &m->children[i].peer);
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
	sigset_t mask;
	int r;

	/* A shared room over TCP (chat): the hub is an event loop over
	 * the pumps' sockets. */
	if (lst->cfg.protocol == PROTOCOL_TCP && lst->service->shared_room)
		return handler_loop_ops.run(lst);

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	install_child_handlers();
	m.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (m.sfd < 0)
		return log_full_errno(LOG_ERR, errno, lst->cfg.name, NULL, "signalfd failed"), 1;
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

/* Fork model chat: each connection gets a child that only moves bytes
 * between the client and a socketpair; the listener process is the hub
 * that runs the room over the other ends. Client processes cannot see
 * each other, so lines meet in the hub, with its ordering and its
 * slow-consumer rule. */

#define PUMP_BUF (16 * 1024)

/* What the client's socket took, as the pump counts it for the hub: the
 * hub's unsent output is what it queued minus this, the same meaning as
 * in the models that write to the client themselves, whatever waits in
 * the socketpair and the pump meanwhile. The slots live in MAP_SHARED
 * pages the hub maps before it forks the pumps that use them; a slot is
 * reused only once the hub's session and the pump are both gone. One hub
 * per process, so the table is plain static state of the hub. */
struct pump_slot {
	_Atomic uint64_t delivered; /* written by the pump only */
	pid_t pid;                  /* hub only, as the rest */
	unsigned refs;              /* the session, the child; 0 = free */
};

static struct pump_slot **slot_pages;
static size_t n_slot_pages;

static size_t
slots_per_page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE) / sizeof(struct pump_slot);
}

static struct pump_slot *
slot_get(void)
{
	size_t per = slots_per_page();
	struct pump_slot **pages, *p;

	for (size_t i = 0; i < n_slot_pages; i++)
		for (size_t j = 0; j < per; j++)
			if (slot_pages[i][j].refs == 0)
				return &slot_pages[i][j];
	pages = realloc(slot_pages, (n_slot_pages + 1) * sizeof(*pages));
	if (!pages)
		return NULL;
	slot_pages = pages;
	p = mmap(NULL, per * sizeof(*p), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	slot_pages[n_slot_pages++] = p;
	return p;
}

static void
slot_unref(struct pump_slot *p)
{
	if (p && p->refs > 0 && --p->refs == 0)
		p->pid = 0;
}

void
handler_fork_pump_done(const _Atomic uint64_t *delivered)
{
	if (delivered)
		slot_unref(container_of(delivered, struct pump_slot, delivered));
}

void
handler_fork_pump_reaped(pid_t pid)
{
	size_t per = slots_per_page();

	for (size_t i = 0; i < n_slot_pages; i++)
		for (size_t j = 0; j < per; j++)
			if (slot_pages[i][j].refs > 0 && slot_pages[i][j].pid == pid) {
				slot_unref(&slot_pages[i][j]);
				return;
			}
}

/* drain_ms: how long the client may take to read what the hub sent last,
 * once the hub is done with it (the listener's shutdown_timeout). */
static void
pump(int client, int hub, int drain_ms, _Atomic uint64_t *delivered)
{
	uint8_t to_hub[PUMP_BUF], to_client[PUMP_BUF];
	size_t n_to_hub = 0, n_to_client = 0;
	uint64_t sent = 0;
	bool client_eof = false, hub_eof = false, hub_shut = false;

	(void)fd_set_nonblock(client, true);
	(void)fd_set_nonblock(hub, true);
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = client, .events = (short)((!client_eof && n_to_hub < PUMP_BUF ? POLLIN : 0) |
							  (n_to_client ? POLLOUT : 0)) },
			{ .fd = hub, .events = (short)((!hub_eof && n_to_client < PUMP_BUF ? POLLIN : 0) |
						       (n_to_hub ? POLLOUT : 0)) },
		};
		ssize_t n;
		int r;

		/* poll() reports POLLHUP and POLLERR even for a side we want
		 * nothing from, and would return at once forever: leave such
		 * a side out. */
		for (int i = 0; i < 2; i++)
			if (!p[i].events)
				p[i].fd = -1;
		/* The client half-closed and the hub has all it sent: pass the
		 * half-close on, and keep carrying the hub's answers. */
		if (client_eof && n_to_hub == 0 && !hub_shut) {
			(void)shutdown(hub, SHUT_WR);
			hub_shut = true;
		}
		/* The hub is done with this client and it has everything. */
		if (hub_eof && n_to_client == 0)
			return;
		r = poll(p, 2, hub_eof ? drain_ms : -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return; /* or a client that stopped reading after the hub was done */
		if (p[0].revents & (POLLIN | POLLERR | POLLHUP) && p[0].events & POLLIN) {
			n = read(client, to_hub + n_to_hub, PUMP_BUF - n_to_hub);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				client_eof = true;
			else if (n > 0)
				n_to_hub += (size_t)n;
		}
		if (p[1].revents & (POLLIN | POLLERR | POLLHUP) && p[1].events & POLLIN) {
			n = read(hub, to_client + n_to_client, PUMP_BUF - n_to_client);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				hub_eof = true;
			else if (n > 0)
				n_to_client += (size_t)n;
		}
		if (n_to_hub && p[1].revents & (POLLOUT | POLLERR | POLLHUP)) {
			n = send(hub, to_hub, n_to_hub, MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return;
			if (n > 0) {
				memmove(to_hub, to_hub + n, n_to_hub - (size_t)n);
				n_to_hub -= (size_t)n;
			}
		}
		if (n_to_client && p[0].revents & (POLLOUT | POLLERR | POLLHUP)) {
			n = send(client, to_client, n_to_client, MSG_NOSIGNAL);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return; /* the client is gone */
			if (n > 0) {
				memmove(to_client, to_client + n, n_to_client - (size_t)n);
				n_to_client -= (size_t)n;
				sent += (uint64_t)n;
				atomic_store_explicit(delivered, sent, memory_order_relaxed);
			}
		}
	}
}

/* Close every fd but stdio and the two given, which end up as 3 and 4: a
 * pump must not keep the hub's ends of other clients' socketpairs open
 * (their pumps would never see the hub close). */
static int
keep_only(int *a, int *b)
{
	struct rlimit rl;
	int ta, tb;

	ta = fcntl(*a, F_DUPFD, 5);
	if (ta < 0)
		return -errno;
	tb = fcntl(*b, F_DUPFD, 5);
	if (tb < 0 || dup2(ta, 3) < 0 || dup2(tb, 4) < 0)
		return -errno;
	*a = 3;
	*b = 4;
	if (syscall(SYS_close_range, 5u, ~0u, 0u) == 0)
		return 0;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		rl.rlim_cur = 65536;
	for (rlim_t i = 5; i < rl.rlim_cur; i++)
		(void)close((int)i);
	return 0;
}

int
handler_fork_pump(struct listener_rt *l, int cfd, int *ret_hub_fd, pid_t *ret_pid,
		  const _Atomic uint64_t **ret_delivered)
{
	int sp[2], small = 16 * 1024;
	struct pump_slot *slot;
	pid_t pid;

	slot = slot_get();
	if (!slot)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return -errno;
	/* Taken before the fork, so the child has the page and the count. */
	atomic_store_explicit(&slot->delivered, 0, memory_order_relaxed);
	slot->refs = 2;
	/* Small socket buffers: a client that stops reading backs up to
	 * the hub quickly, where the 64 KiB slow-consumer rule applies. */
	for (int i = 0; i < 2; i++) {
		(void)setsockopt(sp[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
		(void)setsockopt(sp[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	}
	pid = fork();
	if (pid < 0) {
		int r = -errno;
		safe_close(sp[0]);
		safe_close(sp[1]);
		slot->refs = 0;
		return r;
	}
	if (pid == 0) {
		int hub = sp[1];
		sigset_t none;

		if (keep_only(&cfd, &hub) < 0)
			_exit(1);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		handler_tune_stream(cfd);
		pump(cfd, hub, (int)MIN(l->shutdown_timeout, 3600u) * 1000, &slot->delivered);
		_exit(0);
	}
	safe_close(sp[1]);
	slot->pid = pid;
	*ret_hub_fd = sp[0];
	*ret_pid = pid;
	*ret_delivered = &slot->delivered;
	return 0;
}
