/* Integration: the mysql health check against a real MariaDB server (issue 17, item 3). The
 * suite runs its own mariadbd (mariadb-install-db into a temp datadir, loopback TCP on a free
 * port, a socket in the same dir, no system service) and reads the server's own count of
 * aborted connects: with "user" a check logs in and quits and costs nothing there; without,
 * every check is one aborted connect, which from another host counts against
 * max_connect_errors. Without the MariaDB binaries, or if the server does not start, the
 * suite is skipped (exit 77); in CI ($CI set) a server that does not start fails it. */
#include <check.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define TEST_TIMEOUT_S 60
#define SKIP_EXIT      77
/* Where Debian's mariadb-server and mariadb-client put them. */
#define MARIADBD   "/usr/sbin/mariadbd"
#define INSTALL_DB "/usr/bin/mariadb-install-db"
#define MARIADB	   "/usr/bin/mariadb"
/* mariadb-install-db takes about 4 s on the 2-CPU VM and the server answers about 1 s
 * later; both together get this long. */
#define START_MS  30000
#define CLIENT_MS 10000
/* Checks every 200 ms for 2 s: about ten checks per phase. */
#define INTERVAL_MS 200
#define TIMEOUT_MS  1000
#define RUN_MS	    2000
/* Fewer checks than this in RUN_MS means the prober did not run as configured. */
#define MIN_CHECKS 5
/* The first check decides; this covers a start-up on a loaded machine. */
#define UP_MS 5000

static struct t_harness h;
static struct {
	pid_t pid;
	int port;
	char dir[64], sock[96], log[96];
} db = {.pid = -1};

/* ---- the server ---- */

/* Stop the server and remove its datadir. */
static void db_stop(void)
{
	t_stop_child(&db.pid, SIGTERM, 10000);
	if (db.dir[0])
		t_remove_tree(db.dir);
	db.dir[0] = '\0';
}

static void dump_file(const char *path)
{
	char *text = NULL;
	char *const argv[] = {"/usr/bin/tail", "-n", "30", (char *)path, NULL};

	if (t_run(argv, &text, NULL, 2000) == 0)
		fprintf(stderr, "---- %s ----\n%s---- end ----\n", path, text);
	free(text);
}

/* Run sql as root over the server's socket; its output (-N -B: values only, tab-separated),
 * malloc'd; NULL if the client failed. */
static char *db_sql(const char *sql)
{
	char *out = NULL, *err = NULL, sock[128];
	snprintf(sock, sizeof(sock), "--socket=%s", db.sock);
	char *const argv[] = {MARIADB, "--no-defaults", sock, "-u", "root", "-N", "-B",
			      "-e",    (char *)sql,	NULL};
	int rc = t_run(argv, &out, &err, CLIENT_MS);

	if (rc != 0) {
		if (err)
			fprintf(stderr, "mariadb -e \"%s\": exit %d: %s\n", sql, rc, err);
		free(out);
		out = NULL;
	}
	free(err);
	return out;
}

/* A global status counter, e.g. Aborted_connects. */
static long db_status(const char *name)
{
	char sql[128], *out, *tab;
	long v;

	snprintf(sql, sizeof(sql), "SHOW GLOBAL STATUS LIKE '%s'", name);
	out = db_sql(sql);
	ck_assert_msg(out, "cannot read %s from the server", name);
	tab = strchr(out, '\t');
	ck_assert_msg(tab, "unexpected answer for %s: %s", name, out);
	v = strtol(tab + 1, NULL, 10);
	free(out);
	return v;
}

/* A throw-away server on a free loopback port, as root if we are root, with name resolution
 * off (accounts are written 'user'@'127.0.0.1', and no DNS is asked). Run by main, outside
 * the tests' processes, so that a failed test (which exits at once) leaves the server to
 * main's clean-up. False, with the reason on stderr, if it did not start. */
static bool db_start(void)
{
	char data[96], arg[4][128], *out = NULL, *err = NULL, *text;
	uint64_t deadline = t_now_ms() + START_MS;
	int rc;

	snprintf(db.dir, sizeof(db.dir), "/tmp/lb-mysql-XXXXXX");
	if (!mkdtemp(db.dir)) {
		db.dir[0] = '\0';
		perror("mkdtemp");
		return false;
	}
	snprintf(data, sizeof(data), "%s/data", db.dir);
	snprintf(db.sock, sizeof(db.sock), "%s/mysqld.sock", db.dir);
	snprintf(db.log, sizeof(db.log), "%s/mysqld.log", db.dir);
	db.port = t_free_port();
	snprintf(arg[0], sizeof(arg[0]), "--datadir=%s", data);
	snprintf(arg[1], sizeof(arg[1]), "--port=%d", db.port);
	snprintf(arg[2], sizeof(arg[2]), "--socket=%s", db.sock);
	snprintf(arg[3], sizeof(arg[3]), "--log-error=%s", db.log);
	/* mariadbd refuses to run as root unless told to */
	char *user = geteuid() == 0 ? "--user=root" : NULL;
	char *const install[] = {
	    INSTALL_DB, "--no-defaults", arg[0], "--skip-test-db", "--skip-name-resolve", user,
	    NULL};
	rc = t_run(install, &out, &err, START_MS);
	if (rc != 0)
		fprintf(stderr, "mariadb-install-db failed (exit %d):\n%s\n%s\n", rc,
			out ? out : "", err ? err : "");
	free(out);
	free(err);
	if (rc != 0)
		return false;

	char *const argv[] = {MARIADBD,
			      "--no-defaults",
			      arg[0],
			      arg[1],
			      arg[2],
			      arg[3],
			      "--skip-networking=0",
			      "--bind-address=127.0.0.1",
			      "--skip-name-resolve",
			      "--innodb-buffer-pool-size=8M",
			      "--skip-log-bin",
			      user,
			      NULL};
	db.pid = t_spawn(argv, NULL, db.log);
	if (db.pid < 0)
		return false;
	while (!(text = db_sql("SELECT 1"))) {
		if (t_now_ms() >= deadline || waitpid(db.pid, NULL, WNOHANG) != 0) {
			dump_file(db.log);
			fprintf(stderr, "mariadbd did not answer on %s within %d ms\n", db.sock,
				START_MS);
			return false;
		}
		usleep(100 * 1000);
	}
	free(text);
	/* The check user, and the host known to the server: a host with no account at all
	 * gets an error instead of the greeting. */
	text = db_sql("CREATE USER 'lbcheck'@'127.0.0.1'");
	free(text);
	return text != NULL;
}

/* ---- lb ---- */

/* lb with one pool "p" holding the server as backend "db", checked by mysql with extra
 * (e.g. "\"user\":\"lbcheck\"") every INTERVAL_MS. */
static void start_lb(const char *extra)
{
	char health[256], address[32];
	json_t *cfg = t_cfg_new(1);

	snprintf(health, sizeof(health),
		 "{\"type\":\"mysql\"%s%s,\"interval\":\"%dms\",\"timeout\":\"%dms\"}",
		 extra ? "," : "", extra ? extra : "", INTERVAL_MS, TIMEOUT_MS);
	snprintf(address, sizeof(address), "127.0.0.1:%d", db.port);
	h.port = t_free_port();
	t_cfg_set(cfg, "\"log\":{\"level\":\"debug\"}");
	t_cfg_listener(cfg, "t", NULL, "127.0.0.1", h.port, "p");
	json_t *pool = t_cfg_pool(cfg, "p", "round_robin", health);
	t_cfg_backend(pool, "db", address);
	t_harness_start(&h, cfg, NULL);
}

static int log_count(const char *needle)
{
	char *log = lb_log(&h.lb);
	int n = 0;

	for (const char *s = log; s && (s = strstr(s, needle)); s += strlen(needle))
		n++;
	free(log);
	return n;
}

/* Run lb with extra for RUN_MS after db's first check, and stop it; returns the checks that
 * passed. The backend must be up. */
static int run_checks(const char *extra)
{
	int passed;

	start_lb(extra);
	t_expect(&h,
		 lb_log_wait(&h.lb, "backend db (127.0.0.1:", UP_MS) &&
		     log_count("is UP (first check passed)") == 1,
		 "the server did not pass lb's first mysql check");
	usleep(RUN_MS * 1000);
	passed = log_count("check of db passed");
	t_expect(&h, passed >= MIN_CHECKS, "only %d checks passed in %d ms", passed, RUN_MS);
	t_expect(&h, log_count("check of db failed") == 0, "a check failed");
	t_harness_finish(&h);
	memset(&h, 0, sizeof(h));
	return passed;
}

/* ---- tests ---- */

START_TEST(test_mysql_check_with_user_costs_no_aborted_connect_and_without_one_does)
{
	long before, after, clients, grew;
	int n, m;

	/* With a user: each check logs in and quits; the server counts nothing against us. */
	before = db_status("Aborted_connects");
	clients = db_status("Aborted_clients");
	n = run_checks("\"user\":\"lbcheck\"");
	after = db_status("Aborted_connects");
	ck_assert_msg(after == before, "%d checks as lbcheck: Aborted_connects %ld -> %ld", n,
		      before, after);
	after = db_status("Aborted_clients");
	ck_assert_msg(after == clients, "%d checks as lbcheck: Aborted_clients %ld -> %ld", n,
		      clients, after);

	/* Without: the same checks, each an aborted connect. */
	before = db_status("Aborted_connects");
	m = run_checks(NULL);
	after = db_status("Aborted_connects");
	grew = after - before;
	fprintf(stderr,
		"mysql (%s): %d checks as lbcheck: Aborted_connects +0; %d checks "
		"without a user: Aborted_connects +%ld\n",
		t_engine(), n, m, grew);
	ck_assert_msg(grew >= m, "%d checks without a user: Aborted_connects %ld -> %ld", m, before,
		      after);
}
END_TEST

START_TEST(test_mysql_check_with_an_unknown_user_is_down_with_the_server_message)
{
	start_lb("\"user\":\"nobody\"");
	t_expect(&h,
		 lb_log_wait(&h.lb,
			     "is DOWN: error 1045: Access denied for user 'nobody'@'127.0.0.1'",
			     UP_MS),
		 "the backend was not marked down with the server's error");
	t_harness_finish(&h);
}
END_TEST

static void setup(void)
{
	memset(&h, 0, sizeof(h));
}

static void teardown(void)
{
	t_harness_finish(&h);
}

int main(void)
{
	const TTest *tests[] = {
	    test_mysql_check_with_user_costs_no_aborted_connect_and_without_one_does,
	    test_mysql_check_with_an_unknown_user_is_down_with_the_server_message,
	    NULL,
	};

	signal(SIGPIPE, SIG_IGN);
	if (access(MARIADBD, X_OK) != 0 || access(INSTALL_DB, X_OK) != 0 ||
	    access(MARIADB, X_OK) != 0) {
		fprintf(stderr,
			"test_mysql: skipped: needs %s, %s and %s (Debian packages "
			"mariadb-server, mariadb-client; `make test` installs them)\n",
			MARIADBD, INSTALL_DB, MARIADB);
		return SKIP_EXIT;
	}
	if (!db_start()) {
		db_stop();
		/* In CI (root, packages installed by `make test`) the suite must run. */
		fprintf(stderr, "test_mysql: %s: mariadbd did not start\n",
			getenv("CI") ? "failed" : "skipped");
		return getenv("CI") ? 1 : SKIP_EXIT;
	}
	int rc = t_run_suite(t_suite("mysql", TEST_TIMEOUT_S, setup, teardown, tests), CK_ENV);
	db_stop();
	return rc;
}
