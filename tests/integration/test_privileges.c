/* Integration: least privilege. Started as root with "user"/"group", lb binds everything, then
 * runs as that user with no capability (or only CAP_NET_BIND_SERVICE on its main thread when
 * a listener port is below 1024), and still relays, answers lbctl, reloads and removes its
 * socket at exit. Not root, it refuses to become anyone else. Needs root, "nobody" and
 * "nogroup": without them each test prints why it is skipped and passes. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support.h"

#define LB_WORKERS     2
#define TEST_TIMEOUT_S 60
#define USER	       "nobody"
#define GROUP	       "nogroup"
/* CapEff of a thread that holds only CAP_NET_BIND_SERVICE (bit 10), as /proc prints it. */
#define CAPS_BIND_ONLY "0000000000000400"
#define CAPS_NONE      "0000000000000000"
#define SETPRIV	       "/usr/bin/setpriv"

static struct t_harness h;
static uid_t user_uid;
static gid_t group_gid;

/* Whether this test can run: root, with USER and GROUP on the host. Prints why not. */
static bool can_run(void)
{
	struct passwd *pw;
	struct group *gr;

	if (geteuid() != 0) {
		printf("skipped: not root (lb can only drop privileges it has)\n");
		return false;
	}
	pw = getpwnam(USER);
	gr = getgrnam(GROUP);
	if (!pw || !gr) {
		printf("skipped: no user \"%s\" or group \"%s\" on this host\n", USER, GROUP);
		return false;
	}
	user_uid = pw->pw_uid;
	group_gid = gr->gr_gid;
	return true;
}

/* A TCP port below 1024 free on 127.0.0.1, above after; 0 if none is. */
static int free_low_port(int after)
{
	for (int p = after + 1; p < 1024; p++) {
		struct sockaddr_in sin = {.sin_family = AF_INET,
					  .sin_port = htons((uint16_t)p),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int rc = bind(fd, (struct sockaddr *)&sin, sizeof(sin));
		close(fd);
		if (rc == 0)
			return p;
	}
	return 0;
}

/* The value of key ("Uid", "CapEff", ...) in the status file path, tabs and the trailing
 * blank kept as /proc writes them but the newline cut. false if absent. */
static bool status_field(const char *path, const char *key, char *out, size_t len)
{
	char line[512];
	size_t klen = strlen(key);
	FILE *f = fopen(path, "r");
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			snprintf(out, len, "%s", line + klen + 2); /* past ":\t" */
			out[strcspn(out, "\n")] = '\0';
			found = true;
		}
	fclose(f);
	return found;
}

static int by_gid(const void *a, const void *b)
{
	gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;
	return (x > y) - (x < y);
}

/* USER's supplementary groups with GROUP, as /proc prints them: sorted, each with a blank. */
static void want_groups(char *out, size_t len)
{
	gid_t groups[256];
	int n = 256;
	size_t off = 0;

	ck_assert_int_ge(getgrouplist(USER, group_gid, groups, &n), 0);
	qsort(groups, (size_t)n, sizeof(*groups), by_gid);
	out[0] = '\0';
	for (int i = 0; i < n && off < len; i++)
		off += (size_t)snprintf(out + off, len - off, "%u ", groups[i]);
}

/* Every thread of lb (workers, prober, any io_uring worker) runs as USER:GROUP with its
 * supplementary groups only; the main thread's effective and permitted capabilities are
 * main_caps, every other thread's none, or main_caps too if inherit (threads the main
 * thread starts after the drop, like the prober a reload restarts, inherit its set). */
static void expect_dropped(const char *main_caps, bool inherit)
{
	char want_uid[64], want_gid[64], want_grp[256], dir[64], path[320], v[256];
	unsigned nthreads = 0;
	struct dirent *de;
	DIR *d;

	snprintf(want_uid, sizeof(want_uid), "%u\t%u\t%u\t%u", user_uid, user_uid, user_uid,
		 user_uid);
	snprintf(want_gid, sizeof(want_gid), "%u\t%u\t%u\t%u", group_gid, group_gid, group_gid,
		 group_gid);
	want_groups(want_grp, sizeof(want_grp));
	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)h.lb.pid);
	d = opendir(dir);
	t_expect(&h, d != NULL, "cannot open %s", dir);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		bool main_thread = atoi(de->d_name) == (int)h.lb.pid;
		snprintf(path, sizeof(path), "%s/%s/status", dir, de->d_name);
		if (!status_field(path, "Uid", v, sizeof(v)))
			continue; /* the thread ended meanwhile */
		nthreads++;
		t_expect(&h, strcmp(v, want_uid) == 0, "thread %s: Uid %s, want %s", de->d_name, v,
			 want_uid);
		t_expect(&h, status_field(path, "Gid", v, sizeof(v)) && strcmp(v, want_gid) == 0,
			 "thread %s: Gid %s, want %s", de->d_name, v, want_gid);
		t_expect(&h,
			 status_field(path, "Groups", v, sizeof(v)) && atoi(v) == (int)group_gid,
			 "thread %s: Groups %s, want %u only", de->d_name, v, group_gid);
		const char *caps = main_thread ? main_caps : CAPS_NONE;
		const char *alt = main_thread || inherit ? main_caps : CAPS_NONE;
		t_expect(&h,
			 status_field(path, "CapEff", v, sizeof(v)) &&
			     (strcmp(v, caps) == 0 || strcmp(v, alt) == 0),
			 "thread %s: CapEff %s, want %s", de->d_name, v, alt);
		t_expect(&h,
			 status_field(path, "CapPrm", v, sizeof(v)) &&
			     (strcmp(v, caps) == 0 || strcmp(v, alt) == 0),
			 "thread %s: CapPrm %s, want %s", de->d_name, v, alt);
	}
	closedir(d);
	t_expect(&h, nthreads > LB_WORKERS, "saw only %u threads of lb", nthreads);
}

/* lb with USER/GROUP on a listener at port (and its port in h.port), over backends a, b. */
static void start_dropping(int port)
{
	static const char *const names[] = {"a", "b"};
	json_t *cfg = t_cfg_new(LB_WORKERS);

	t_backends_add_n(&h.be, TB_TAGGED, names, 2);
	h.port = port;
	t_cfg_set(cfg, "\"user\":\"%s\",\"group\":\"%s\"", USER, GROUP);
	t_cfg_listener(cfg, "web", NULL, "127.0.0.1", port, "web");
	t_cfg_backends(t_cfg_pool(cfg, "web", NULL, T_HEALTH_NONE), &h.be);
	t_harness_start(&h, cfg, "privileges dropped");
	/* What an operator provides: a directory lb's user may write to (it removes its socket
	 * there at exit) and a config file it may read (for reloads). */
	t_expect(&h, chown(h.lb.dir, user_uid, group_gid) == 0, "chown %s: %s", h.lb.dir,
		 strerror(errno));
}

/* Reload into the running config plus listener "extra" on extra_port, and relay through it. */
static void reload_with_listener(int extra_port)
{
	unsigned counts[2] = {0};
	json_t *cfg = t_cfg_new(LB_WORKERS);

	t_cfg_set(cfg, "\"user\":\"%s\",\"group\":\"%s\"", USER, GROUP);
	t_cfg_listener(cfg, "web", NULL, "127.0.0.1", h.port, "web");
	t_cfg_listener(cfg, "extra", NULL, "127.0.0.1", extra_port, "web");
	t_cfg_backends(t_cfg_pool(cfg, "web", NULL, T_HEALTH_NONE), &h.be);
	t_rewrite_config(&h.lb, cfg);
	t_harness_lbctl_ok(&h, "reload", NULL);
	t_expect(&h, t_fetch_many(&h.be, extra_port, 4, counts) == 0,
		 "no traffic through the listener the reload added on port %d", extra_port);
}

/* SIGTERM: exit 0, and the socket file (root's when bound) is gone. */
static void stop_and_expect_socket_removed(void)
{
	int rc = lb_stop(&h.lb, 5000);

	t_expect(&h, rc == 0, "lb exited %d on SIGTERM", rc);
	t_expect(&h, access(h.sock, F_OK) < 0 && errno == ENOENT,
		 "%s is still there after lb stopped", h.sock);
	lb_cleanup(&h.lb);
	h.lb_started = false;
	t_backends_free(&h.be);
}

START_TEST(test_user_and_group_drop_every_capability_and_lb_still_works)
{
	unsigned counts[2] = {0};
	char *err = NULL;

	if (!can_run())
		return;
	start_dropping(t_free_port());
	expect_dropped(CAPS_NONE, false);
	t_expect(&h, lb_log_wait(&h.lb, "kept no capabilities", 1000),
		 "the log does not say that no capability was kept");
	t_expect(&h, t_fetch_many(&h.be, h.port, 4, counts) == 0 && counts[0] == 2,
		 "traffic did not flow after the drop (a %u, b %u of 4)", counts[0], counts[1]);
	t_harness_lbctl_ok(&h, "status", NULL);

	reload_with_listener(t_free_port());
	/* A config lb's user cannot read: the reload fails and says why; lb keeps running. */
	t_expect(&h, chmod(h.lb.config_path, 0600) == 0, "chmod: %s", strerror(errno));
	t_expect(&h, t_lbctl(h.sock, NULL, &err, "reload", NULL) == 1,
		 "reload of an unreadable config did not fail");
	t_expect(&h, err && strstr(err, "cannot read: Permission denied"),
		 "the failed reload does not say why: %s", err ? err : "");
	free(err);
	expect_dropped(CAPS_NONE, false);
	stop_and_expect_socket_removed();
}
END_TEST

START_TEST(test_low_port_keeps_only_net_bind_service_for_reloads)
{
	unsigned counts[2] = {0};

	if (!can_run())
		return;
	int port = free_low_port(0), extra = port ? free_low_port(port) : 0;
	if (!extra) {
		printf("skipped: no two free TCP ports below 1024 on 127.0.0.1\n");
		return;
	}
	start_dropping(port);
	expect_dropped(CAPS_BIND_ONLY, false);
	t_expect(&h, lb_log_wait(&h.lb, "kept CAP_NET_BIND_SERVICE", 1000),
		 "the log does not say that CAP_NET_BIND_SERVICE was kept");
	t_expect(&h, t_fetch_many(&h.be, h.port, 4, counts) == 0,
		 "traffic did not flow on port %d after the drop", port);
	reload_with_listener(extra);
	expect_dropped(CAPS_BIND_ONLY, true);
	stop_and_expect_socket_removed();
}
END_TEST

START_TEST(test_root_without_user_warns_once)
{
	if (!can_run())
		return;
	json_t *cfg = t_cfg_new(LB_WORKERS);
	t_backends_add(&h.be, TB_TAGGED, "a");
	h.port = t_free_port();
	t_cfg_listener(cfg, "web", NULL, "127.0.0.1", h.port, "web");
	t_cfg_backends(t_cfg_pool(cfg, "web", NULL, T_HEALTH_NONE), &h.be);
	t_harness_start(&h, cfg, "control socket");
	const char *warning = "running as root; set \"user\" to drop privileges after binding";
	t_expect(&h, lb_log_wait(&h.lb, warning, 2000), "no warning about running as root");
	char *log = lb_log(&h.lb);
	const char *first = strstr(log, warning);
	t_expect(&h, !strstr(first + 1, warning), "the root warning is repeated:\n%s", log);
	free(log);
	t_harness_finish(&h);
}
END_TEST

/* `lb -c path` run as USER:GROUP through setpriv, for at most timeout_ms: exit status (-1
 * if it had to be killed) and its stderr in *err. */
static int run_as_user(const char *path, char **err, int timeout_ms)
{
	char *argv[] = {SETPRIV,
			"--reuid=" USER,
			"--regid=" GROUP,
			"--clear-groups",
			(char *)t_lb_bin(),
			"-c",
			(char *)path,
			NULL};

	return t_run(argv, NULL, err, timeout_ms);
}

/* A config naming user, its listener on port and its socket in "@DIR@"; malloc'd. */
static char *user_config(const char *user, int port)
{
	char *doc = NULL;

	ck_assert_int_ge(asprintf(&doc,
				  "{\"user\":\"%s\",\"control\":{\"socket\":\"@DIR@/lb.sock\"},"
				  "\"listeners\":[{\"listen\":\"127.0.0.1:%d\",\"pool\":\"p\"}],"
				  "\"pools\":[{\"name\":\"p\",\"backends\":[{\"address\":"
				  "\"127.0.0.1:9\"}]}]}",
				  user, port),
			 0);
	return doc;
}

START_TEST(test_not_root_refuses_another_user_and_accepts_itself)
{
	char path[320], dir[320], *err = NULL;

	if (!can_run())
		return;
	if (access(SETPRIV, X_OK) < 0 || !getpwnam("daemon")) {
		printf("skipped: no %s or no user \"daemon\" to run lb as another user\n", SETPRIV);
		return;
	}
	int port = t_free_port();
	char *doc = user_config("daemon", port);
	t_write_config(doc, path, sizeof(path));
	free(doc);
	snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(path, '/') - path), path);
	ck_assert_int_eq(chown(dir, user_uid, group_gid), 0);

	int rc = run_as_user(path, &err, 5000);
	ck_assert_msg(rc == 1 && err && strstr(err, "lb runs as uid") &&
			  strstr(err, "cannot switch to another user"),
		      "lb as %s with \"user\":\"daemon\" exited %d: %s", USER, rc, err ? err : "");
	free(err);

	/* Itself: nothing to drop; it runs (and is killed when the time is up). */
	doc = user_config(USER, port);
	char *text = t_expand_dir(doc, dir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	free(text);
	free(doc);
	rc = run_as_user(path, &err, 1500);
	ck_assert_msg(rc == -1 && err && strstr(err, "already running as user " USER),
		      "lb as %s with \"user\":\"%s\" exited %d: %s", USER, USER, rc,
		      err ? err : "");
	free(err);
	t_remove_tree(dir);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    test_user_and_group_drop_every_capability_and_lb_still_works,
	    test_low_port_keeps_only_net_bind_service_for_reloads,
	    test_root_without_user_warns_once,
	    test_not_root_refuses_another_user_and_accepts_itself,
	    NULL,
	};

	signal(SIGPIPE, SIG_IGN);
	return t_run_suite(t_suite("privileges", TEST_TIMEOUT_S, NULL, NULL, tests), CK_ENV);
}
