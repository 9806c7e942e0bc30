#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include "dispatcher-internal.h"
#include "log.h"

/* Called once every socket is bound, before any handler is forked, so
 * no handler ever runs as root when the file names a user. */
int
dispatcher_drop_privileges(const char *user, const char *group)
{
	uid_t uid;
	gid_t gid;

	if (!user && !group)
		return 0;
	if (geteuid() != 0) {
		log_notice("not started as root, ignoring user/group");
		return 0;
	}
	if (user) {
		struct passwd *pw = getpwnam(user);

		if (!pw) {
			log_error("user '%s' does not exist", user);
			return -ESRCH;
		}
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	} else {
		uid = 0;
		gid = 0;
	}
	if (group) {
		struct group *gr = getgrnam(group);

		if (!gr) {
			log_error("group '%s' does not exist", group);
			return -ESRCH;
		}
		gid = gr->gr_gid;
	}
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0)
		return log_errno(LOG_ERR, errno, "cannot change group");
	if (user && setuid(uid) < 0)
		return log_errno(LOG_ERR, errno, "cannot change user");
	/* Verify: getting root back must fail. */
	if (user && uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
		log_error("still able to regain root after dropping privileges");
		return -EPERM;
	}
	log_info("running as uid %ld gid %ld", (long)getuid(), (long)getgid());
	return 0;
}
