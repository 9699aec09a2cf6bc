/* A running lb under test: temp dir, config file, child process, its log, and a bounded
 * runner for other programs (lbctl, lb --check). Everything here waits with a deadline. */
#include "support.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long lb_start waits for the listeners; SPEC start-up is far quicker than this. */
#define LB_START_TIMEOUT_MS 5000
/* Poll period for child state and files; short enough not to slow the suites. */
#define POLL_STEP_MS	10
#define DIR_PLACEHOLDER "@DIR@"
/* How much of lb's log lb_log_dump prints: the end, where a failure shows. */
#define LB_DUMP_TAIL 16000
/* lbctl answers in milliseconds; this only bounds a hung test. */
#define LBCTL_TIMEOUT_MS 5000
/* Arguments t_lbctl passes after "-s SOCK": more than any lbctl command takes. */
#define LBCTL_MAX_ARGS 12

const char *t_engine(void)
{
	const char *e = getenv("LB_ENGINE");
	return e && *e ? e : "auto";
}

const char *t_lb_bin(void)
{
	const char *b = getenv("LB_BIN");
	return b && *b ? b : "./lb";
}

const char *t_lbctl_bin(void)
{
	const char *b = getenv("LBCTL_BIN");

	return b && *b ? b : "./lbctl";
}

const char *t_src_dir(void)
{
	const char *d = getenv("LB_SRC_DIR");

	return d && *d ? d : ".";
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Close every inherited fd above stderr in a child about to exec. */
static void close_inherited(void)
{
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
#endif
	for (int fd = 3; fd < 65536; fd++)
		close(fd);
}

/* json with every DIR_PLACEHOLDER replaced by dir; malloc'd. */
char *t_expand_dir(const char *json, const char *dir)
{
	size_t plen = strlen(DIR_PLACEHOLDER), dlen = strlen(dir), n = 0;

	for (const char *p = strstr(json, DIR_PLACEHOLDER); p;
	     p = strstr(p + plen, DIR_PLACEHOLDER))
		n++;
	char *out = malloc(strlen(json) + n * dlen + 1), *o = out;
	if (!out)
		return NULL;
	for (const char *p = json;;) {
		const char *hit = strstr(p, DIR_PLACEHOLDER);
		size_t chunk = hit ? (size_t)(hit - p) : strlen(p);
		memcpy(o, p, chunk);
		o += chunk;
		if (!hit)
			break;
		memcpy(o, dir, dlen);
		o += dlen;
		p = hit + plen;
	}
	*o = '\0';
	return out;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -1;
	size_t len = strlen(text);
	int rc = fwrite(text, 1, len, f) == len ? 0 : -1;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

/* Socket inodes held by pid, into inodes[0..*n). */
static void socket_inodes(pid_t pid, unsigned long *inodes, size_t *n, size_t cap)
{
	char path[64], link[64];
	struct dirent *de;
	DIR *d;

	*n = 0;
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return;
	while ((de = readdir(d)) && *n < cap) {
		char fdpath[320];
		snprintf(fdpath, sizeof(fdpath), "%s/%s", path, de->d_name);
		ssize_t len = readlink(fdpath, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		unsigned long ino;
		if (sscanf(link, "socket:[%lu]", &ino) == 1)
			inodes[(*n)++] = ino;
	}
	closedir(d);
}

static bool has_inode(const unsigned long *inodes, size_t n, unsigned long ino)
{
	for (size_t i = 0; i < n; i++)
		if (inodes[i] == ino)
			return true;
	return false;
}

/* Ask sock_diag for the LISTEN sockets of family: the kernel filters by state, so this stays
 * fast when /proc/net/tcp holds tens of thousands of TIME_WAIT entries (benchmarks running
 * beside the tests make reading it take most of a second). found[i] is set for each ports[i]
 * that one of the inodes listens on. Returns 0, or -1 if sock_diag is unavailable. */
static int diag_listeners(int family, const int *ports, size_t nports, const unsigned long *inodes,
			  size_t n, bool *found)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg = {
	    .nlh = {.nlmsg_len = sizeof(msg),
		    .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		    .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
	    .req = {.sdiag_family = (uint8_t)family,
		    .sdiag_protocol = IPPROTO_TCP,
		    .idiag_states = 1U << TCP_LISTEN},
	};
	static char buf[32768];
	int rc = -1;
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);

	if (fd < 0)
		return -1;
	struct timeval tv = {1, 0}; /* a dump answers at once; never hang on it */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (send(fd, &msg, sizeof(msg), 0) != (ssize_t)sizeof(msg))
		goto out;
	for (;;) {
		int len = (int)recv(fd, buf, sizeof(buf), 0);
		if (len <= 0)
			goto out;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len);
		     h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				rc = 0;
				goto out;
			}
			if (h->nlmsg_type == NLMSG_ERROR)
				goto out;
			const struct inet_diag_msg *d = NLMSG_DATA(h);
			for (size_t i = 0; i < nports; i++)
				if (ntohs(d->id.idiag_sport) == ports[i] &&
				    has_inode(inodes, n, d->idiag_inode))
					found[i] = true;
		}
	}
out:
	close(fd);
	return rc;
}

/* Fallback without sock_diag: is one of the inodes listening on port per a /proc table? */
static bool table_has_listener(const char *table, int port, const unsigned long *inodes, size_t n)
{
	char line[512];
	bool found = false;
	FILE *f = fopen(table, "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned lport, state;
		unsigned long ino;
		/* sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode */
		if (sscanf(line,
			   " %*u: %*[0-9A-Fa-f]:%X %*[0-9A-Fa-f]:%*X %X %*X:%*X %*X:%*X %*X %*u "
			   "%*u %lu",
			   &lport, &state, &ino) != 3)
			continue;
		found = lport == (unsigned)port && state == TCP_LISTEN && has_inode(inodes, n, ino);
	}
	fclose(f);
	return found;
}

/* Does pid itself hold a socket in LISTEN on every port? */
static bool all_listening(pid_t pid, const int *ports, size_t nports)
{
	static unsigned long inodes[4096];
	bool found[64] = {false};
	size_t n;

	if (nports > sizeof(found) / sizeof(found[0]))
		return false;
	socket_inodes(pid, inodes, &n, sizeof(inodes) / sizeof(inodes[0]));
	if (diag_listeners(AF_INET, ports, nports, inodes, n, found) == 0 &&
	    diag_listeners(AF_INET6, ports, nports, inodes, n, found) == 0) {
		for (size_t i = 0; i < nports; i++)
			if (!found[i])
				return false;
		return true;
	}
	for (size_t i = 0; i < nports; i++)
		if (!table_has_listener("/proc/net/tcp", ports[i], inodes, n) &&
		    !table_has_listener("/proc/net/tcp6", ports[i], inodes, n))
			return false;
	return true;
}

static pid_t spawn_lb(struct lbproc *lb)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	/* child: never returns */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(127);
	int fd = open(lb->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	int null = open("/dev/null", O_RDONLY);
	if (fd < 0 || null < 0)
		_exit(127);
	dup2(null, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	close_inherited();
	signal(SIGPIPE, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execl(t_lb_bin(), t_lb_bin(), "-c", lb->config_path, (char *)NULL);
	dprintf(STDERR_FILENO, "exec %s: %s\n", t_lb_bin(), strerror(errno));
	_exit(127);
}

int lb_start(struct lbproc *lb, const char *json, const int *ports, size_t nports)
{
	memset(lb, 0, sizeof(*lb));
	lb->pid = -1;
	snprintf(lb->dir, sizeof(lb->dir), "/tmp/lbtest.XXXXXX");
	if (!mkdtemp(lb->dir))
		return -1;
	snprintf(lb->config_path, sizeof(lb->config_path), "%s/lb.json", lb->dir);
	snprintf(lb->log_path, sizeof(lb->log_path), "%s/lb.log", lb->dir);

	char *text = t_expand_dir(json, lb->dir);
	if (!text || write_file(lb->config_path, text) < 0) {
		free(text);
		return -1;
	}
	free(text);

	pid_t pid = spawn_lb(lb);
	if (pid < 0)
		return -1;
	lb->pid = pid;
	uint64_t deadline = t_now_ms() + LB_START_TIMEOUT_MS;
	for (;;) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			lb->pid = -1; /* exited early: reaped */
			return -1;
		}
		if (all_listening(pid, ports, nports)) {
			lb->started_ms = t_now_ms();
			return 0;
		}
		if (t_now_ms() >= deadline)
			break;
		sleep_ms(POLL_STEP_MS);
	}
	lb_stop(lb, 1000);
	return -1;
}

int lb_stop(struct lbproc *lb, int timeout_ms)
{
	int status;
	pid_t pid = lb->pid;

	if (pid <= 0)
		return -1;
	kill(pid, SIGTERM);
	uint64_t deadline = t_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid) {
			lb->pid = -1;
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		}
		if (r < 0) {
			lb->pid = -1;
			return -1;
		}
		if (t_now_ms() >= deadline)
			break;
		sleep_ms(POLL_STEP_MS);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	lb->pid = -1;
	return -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void t_remove_tree(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void lb_cleanup(struct lbproc *lb)
{
	const char *keep = getenv("LB_TEST_KEEP");

	if (keep && *keep && strcmp(keep, "0") != 0) {
		fprintf(stderr, "LB_TEST_KEEP: keeping %s\n", lb->dir);
		return;
	}
	if (lb->dir[0])
		t_remove_tree(lb->dir);
}

int lb_fd_count(const struct lbproc *lb)
{
	char path[64];
	struct dirent *de;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)lb->pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

long lb_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

long lb_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long ut = 0, st = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* the name may hold spaces */
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (long)(ut + st);
}

char *lb_log(const struct lbproc *lb)
{
	FILE *f = fopen(lb->log_path, "r");
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	if (!buf) {
		if (f)
			fclose(f);
		return NULL;
	}
	buf[0] = '\0';
	if (!f)
		return buf;
	for (;;) {
		if (cap - len < 4096) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		if (n == 0)
			break;
		len += n;
	}
	buf[len] = '\0';
	fclose(f);
	return buf;
}

bool lb_log_wait(const struct lbproc *lb, const char *needle, int timeout_ms)
{
	uint64_t deadline = t_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);

	for (;;) {
		char *log = lb_log(lb);
		bool found = log && strstr(log, needle);
		free(log);
		if (found)
			return true;
		if (t_now_ms() >= deadline)
			return false;
		sleep_ms(POLL_STEP_MS);
	}
}

/* ---- t_run ---- */

struct capture {
	int fd;
	char *buf;
	size_t len, cap;
};

/* Read what is available; false at EOF or error. */
static bool capture_read(struct capture *c)
{
	char tmp[4096];
	ssize_t n = read(c->fd, tmp, sizeof(tmp));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	if (c->len + (size_t)n + 1 > c->cap) {
		size_t cap = (c->cap ? c->cap : 4096);
		while (cap < c->len + (size_t)n + 1)
			cap *= 2;
		char *nb = realloc(c->buf, cap);
		if (!nb)
			return true; /* drop output rather than fail the run */
		c->buf = nb;
		c->cap = cap;
	}
	memcpy(c->buf + c->len, tmp, (size_t)n);
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	return true;
}

static char *capture_take(struct capture *c)
{
	if (!c->buf)
		return calloc(1, 1);
	return c->buf;
}

int t_run(char *const argv[], char **out, char **err, int timeout_ms)
{
	int po[2], pe[2], status;
	struct capture cap[2] = {{.fd = -1}, {.fd = -1}};
	bool timed_out = false;

	if (out)
		*out = NULL;
	if (err)
		*err = NULL;
	if (pipe2(po, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(pe, O_CLOEXEC) < 0) {
		close(po[0]);
		close(po[1]);
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(po[0]);
		close(po[1]);
		close(pe[0]);
		close(pe[1]);
		return -1;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		dup2(po[1], STDOUT_FILENO);
		dup2(pe[1], STDERR_FILENO);
		close_inherited();
		signal(SIGPIPE, SIG_DFL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(argv[0], argv);
		dprintf(STDERR_FILENO, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	cap[0].fd = po[0];
	cap[1].fd = pe[0];

	uint64_t deadline = t_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	while (cap[0].fd >= 0 || cap[1].fd >= 0) {
		struct pollfd pfd[2];
		nfds_t n = 0;
		for (int i = 0; i < 2; i++)
			if (cap[i].fd >= 0)
				pfd[n++] = (struct pollfd){.fd = cap[i].fd, .events = POLLIN};
		uint64_t now = t_now_ms();
		if (now >= deadline) {
			timed_out = true;
			break;
		}
		int r = poll(pfd, n, (int)(deadline - now));
		if (r < 0 && errno != EINTR)
			break;
		for (nfds_t k = 0; r > 0 && k < n; k++) {
			if (!pfd[k].revents)
				continue;
			struct capture *c = pfd[k].fd == cap[0].fd ? &cap[0] : &cap[1];
			if (!capture_read(c)) {
				close(c->fd);
				c->fd = -1;
			}
		}
	}
	/* pipes closed (or deadline): reap within what is left of the deadline */
	int rc = -1;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid) {
			rc = WIFEXITED(status) && !timed_out ? WEXITSTATUS(status) : -1;
			break;
		}
		if (r < 0)
			break;
		if (timed_out || t_now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		sleep_ms(1);
	}
	for (int i = 0; i < 2; i++)
		if (cap[i].fd >= 0)
			close(cap[i].fd);
	if (out)
		*out = capture_take(&cap[0]);
	else
		free(cap[0].buf);
	if (err)
		*err = capture_take(&cap[1]);
	else
		free(cap[1].buf);
	return rc;
}

void lb_log_dump(struct lbproc *lb)
{
	int status;

	if (!lb)
		return;
	if (lb->pid > 0 && waitpid(lb->pid, &status, WNOHANG) == lb->pid) {
		if (WIFSIGNALED(status))
			fprintf(stderr, "lb DIED by signal %d\n", WTERMSIG(status));
		else
			fprintf(stderr, "lb EXITED with status %d\n", WEXITSTATUS(status));
		lb->pid = -1;
	}
	char *log = lb_log(lb);
	if (!log)
		return;
	size_t len = strlen(log);
	fprintf(stderr, "---- %s (engine %s", lb->log_path, t_engine());
	if (lb->started_ms)
		fprintf(stderr, "; failed %llu ms after lb was listening",
			(unsigned long long)(t_now_ms() - lb->started_ms));
	fprintf(stderr, ") ----\n%s\n---- end of lb.log ----\n",
		len > LB_DUMP_TAIL ? log + len - LB_DUMP_TAIL : log);
	free(log);
}

void t_remove_config(const char *path)
{
	char dir[300];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	unlink(path);
	slash = strrchr(dir, '/');
	if (!slash)
		return;
	strcpy(slash, "/lb.sock");
	unlink(dir);
	*slash = '\0';
	rmdir(dir);
}

int t_wait_exit(pid_t pid, int timeout_ms)
{
	uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		if (r < 0 || t_now_ms() >= deadline)
			return -2;
		usleep(10000);
	}
}

pid_t t_spawn(char *const argv[], const struct passwd *pw, const char *log_path)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	int out = open(log_path ? log_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
	int in = open("/dev/null", O_RDONLY);
	if (out < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
		_exit(127);
	close_range(3, ~0U, 0); /* no test backend's socket may stay open in the server */
	if (pw && (setgid(pw->pw_gid) < 0 || initgroups(pw->pw_name, pw->pw_gid) < 0 ||
		   setuid(pw->pw_uid) < 0))
		_exit(126);
	/* after setuid, which clears the parent-death signal */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(125);
	execv(argv[0], argv);
	_exit(127);
}

void t_stop_child(pid_t *pid, int sig, int timeout_ms)
{
	if (*pid <= 0)
		return;
	kill(*pid, sig);
	if (t_wait_exit(*pid, timeout_ms) == -2) {
		kill(*pid, SIGKILL);
		waitpid(*pid, NULL, 0);
	}
	*pid = -1;
}

int t_lbctl_v(const char *sock, char **out, char **err, va_list ap)
{
	char *argv[3 + LBCTL_MAX_ARGS + 1] = {(char *)t_lbctl_bin(), "-s", (char *)sock};
	int n = 3;

	for (char *a; n < 3 + LBCTL_MAX_ARGS && (a = va_arg(ap, char *));)
		argv[n++] = a;
	argv[n] = NULL;
	return t_run(argv, out, err, LBCTL_TIMEOUT_MS);
}

int t_lbctl(const char *sock, char **out, char **err, ...)
{
	va_list ap;
	int rc;

	va_start(ap, err);
	rc = t_lbctl_v(sock, out, err, ap);
	va_end(ap);
	return rc;
}
