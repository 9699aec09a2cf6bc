/* Least privilege: resolve "user"/"group" and drop root once everything is bound. The order
 * is the classic one (supplementary groups, gid, uid); glibc applies each of these calls to
 * every thread, so workers started before the drop lose root too. Capabilities are set with
 * the raw capset syscall (no libcap) on the calling thread only: the workers keep none, the
 * main thread and threads it starts later (the prober, on reload) the one kept. */
#include "lb/privs.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <netinet/in.h>

#include "lb/config.h"
#include "lb/log.h"

/* getpwnam_r/getgrnam_r buffer: start at the usual sysconf hint, grow on ERANGE up to a
 * limit no real entry reaches (a group with thousands of members). */
#define NSS_BUF_START 4096
#define NSS_BUF_MAX   (1 << 20)
/* Supplementary groups asked for first; getgrouplist says when there are more. */
#define GROUPS_START 64

int privs_user_lookup(const char *name, uid_t *uid, gid_t *gid)
{
	struct passwd pw, *res = NULL;
	size_t size = NSS_BUF_START;
	int rc;

	for (;;) {
		char *buf = malloc(size);
		if (!buf)
			return -ENOMEM;
		rc = getpwnam_r(name, &pw, buf, size, &res);
		if (rc == 0 && res) {
			*uid = pw.pw_uid;
			*gid = pw.pw_gid;
		}
		free(buf);
		if (rc != ERANGE || size >= NSS_BUF_MAX)
			break;
		size *= 2;
	}
	if (rc != 0)
		return -rc;
	return res ? 0 : -ENOENT;
}

int privs_group_lookup(const char *name, gid_t *gid)
{
	struct group gr, *res = NULL;
	size_t size = NSS_BUF_START;
	int rc;

	for (;;) {
		char *buf = malloc(size);
		if (!buf)
			return -ENOMEM;
		rc = getgrnam_r(name, &gr, buf, size, &res);
		if (rc == 0 && res)
			*gid = gr.gr_gid;
		free(buf);
		if (rc != ERANGE || size >= NSS_BUF_MAX)
			break;
		size *= 2;
	}
	if (rc != 0)
		return -rc;
	return res ? 0 : -ENOENT;
}

int privs_check(const struct config *cfg, char *why, size_t len)
{
	uid_t euid = geteuid();

	if (!cfg->user || euid == 0)
		return 0;
	if (cfg->uid == euid && (!cfg->group || cfg->gid == getegid()))
		return 0;
	snprintf(why, len,
		 "\"user\": \"%s\"%s%s%s: lb runs as uid %u, not root, and cannot switch to "
		 "another user or group; start it as root, or leave \"user\" out",
		 cfg->user, cfg->group ? ", \"group\": \"" : "", cfg->group ? cfg->group : "",
		 cfg->group ? "\"" : "", (unsigned)euid);
	return -EPERM;
}

/* A listener port below PRIVS_LOW_PORT, or 0 if there is none. */
static int low_port(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct sockaddr_storage *ss = &cfg->listeners[i].addr.ss;
		in_port_t p = ss->ss_family == AF_INET6
				  ? ((const struct sockaddr_in6 *)ss)->sin6_port
				  : ((const struct sockaddr_in *)ss)->sin_port;
		if (ntohs(p) < PRIVS_LOW_PORT)
			return ntohs(p);
	}
	return 0;
}

/* This thread's permitted and effective sets become exactly keep (a CAP_* bit mask of the
 * first 32), the inheritable set empty. */
static int set_caps(uint32_t keep)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {
	    {.effective = keep, .permitted = keep, .inheritable = 0}};

	return syscall(SYS_capset, &hdr, data) < 0 ? -errno : 0;
}

/* 0 if this thread's permitted and effective sets are exactly keep. */
static int caps_are(uint32_t keep)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &hdr, data) < 0)
		return -errno;
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
		uint32_t want = i == 0 ? keep : 0;
		if (data[i].effective != want || data[i].permitted != want)
			return -EPERM;
	}
	return 0;
}

/* setgroups to the user's supplementary groups (those listing it in the group database, plus
 * gid), as initgroups would. Returns how many, or -errno. */
static int set_groups(const char *user, gid_t gid)
{
	int n = GROUPS_START, want = n;
	gid_t *groups = NULL;

	for (;;) {
		gid_t *g = realloc(groups, (size_t)want * sizeof(*g));
		if (!g) {
			free(groups);
			return -ENOMEM;
		}
		groups = g;
		n = want;
		if (getgrouplist(user, gid, groups, &want) >= 0)
			break;
		if (want <= n) /* no growth asked for: give up rather than loop */
			want = n * 2;
	}
	int rc = setgroups((size_t)want, groups) < 0 ? -errno : want;
	free(groups);
	return rc;
}

/* Root must be out of reach now: every uid and gid is the target one, and setuid(0) fails. */
static int verify_dropped(const struct config *cfg, uint32_t keep, char *why, size_t len)
{
	uid_t r, e, s;
	gid_t rg, eg, sg;

	if (getresuid(&r, &e, &s) < 0 || getresgid(&rg, &eg, &sg) < 0 || r != cfg->uid ||
	    e != cfg->uid || s != cfg->uid || rg != cfg->gid || eg != cfg->gid || sg != cfg->gid) {
		snprintf(why, len, "user %s: the uids or gids did not all change", cfg->user);
		return -EPERM;
	}
	if (setuid(0) == 0 || seteuid(0) == 0) {
		snprintf(why, len, "user %s: root could be regained after the switch", cfg->user);
		return -EPERM;
	}
	if (caps_are(keep) < 0) {
		snprintf(why, len, "user %s: capabilities other than those meant to stay remain",
			 cfg->user);
		return -EPERM;
	}
	return 0;
}

/* One step of the switch failed: say which, with errno. */
static int failed(const char *step, const struct config *cfg, int err, char *why, size_t len)
{
	snprintf(why, len, "cannot switch to user %s: %s: %s", cfg->user, step, strerror(err));
	return -err;
}

int privs_drop(const struct config *cfg, char *why, size_t len)
{
	int port = low_port(cfg), ngroups;
	uint32_t keep = port ? 1u << CAP_NET_BIND_SERVICE : 0;

	if (!cfg->user) {
		if (geteuid() == 0)
			log_warn("running as root; set \"user\" to drop privileges after binding");
		return 0;
	}
	if (geteuid() != 0) { /* privs_check let it through: it is us already */
		log_info("already running as user %s (uid %u): nothing to drop", cfg->user,
			 (unsigned)cfg->uid);
		return 0;
	}
	/* Across setresuid, KEEPCAPS keeps this thread's permitted set (the others lose all). */
	if (keep && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		return failed("prctl(PR_SET_KEEPCAPS)", cfg, errno, why, len);
	ngroups = set_groups(cfg->user, cfg->gid);
	if (ngroups < 0)
		return failed("setgroups", cfg, -ngroups, why, len);
	if (setresgid(cfg->gid, cfg->gid, cfg->gid) < 0)
		return failed("setresgid", cfg, errno, why, len);
	if (setresuid(cfg->uid, cfg->uid, cfg->uid) < 0)
		return failed("setresuid", cfg, errno, why, len);
	int rc = set_caps(keep);
	if (rc < 0)
		return failed("capset", cfg, -rc, why, len);
	if (keep && prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		return failed("prctl(PR_SET_KEEPCAPS)", cfg, errno, why, len);
	/* lb never executes anything; should it ever, no setuid binary may lift it again. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return failed("prctl(PR_SET_NO_NEW_PRIVS)", cfg, errno, why, len);
	rc = verify_dropped(cfg, keep, why, len);
	if (rc < 0)
		return rc;
	if (keep)
		log_info(
		    "privileges dropped to user %s (uid %u), group %s (gid %u), %d "
		    "supplementary group(s); kept CAP_NET_BIND_SERVICE (listener port %d < %d: "
		    "a reload may bind new low ports)",
		    cfg->user, (unsigned)cfg->uid, cfg->group ? cfg->group : "of the user",
		    (unsigned)cfg->gid, ngroups, port, PRIVS_LOW_PORT);
	else
		log_info("privileges dropped to user %s (uid %u), group %s (gid %u), %d "
			 "supplementary group(s); kept no capabilities",
			 cfg->user, (unsigned)cfg->uid, cfg->group ? cfg->group : "of the user",
			 (unsigned)cfg->gid, ngroups);
	return 0;
}
