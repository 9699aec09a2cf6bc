/* Real servers the integration suites run: redis-server and throw-away PostgreSQL clusters,
 * on free loopback ports, plus the small helpers that talk to them. */
#include <check.h>
#include <glob.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define REDIS_WAIT_MS 10000
#define PG_WAIT_MS    30000
#define INITDB_MS     120000
/* Where make test's packages put the servers. */
#define PG_GLOB "/usr/lib/postgresql/*/bin/postgres"

void t_dump_file(const char *path, const char *what)
{
	char buf[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return;
	fprintf(stderr, "---- %s (%s) ----\n", what, path);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fprintf(stderr, "---- end of %s ----\n", what);
	fclose(f);
}

/* Connect to 127.0.0.1:port, send req, read until want bytes, EOF or 2 s. Returns the
 * number of bytes read into buf (NUL-terminated), or -1 if the connect failed. */
int t_exchange(int port, const void *req, size_t len, char *buf, size_t cap, size_t want)
{
	int fd = t_connect(NULL, port);
	size_t got = 0;
	uint64_t deadline = t_now_ms() + 2000;

	if (fd < 0)
		return -1;
	(void)t_send_all(fd, req, len);
	while (got < want && got < cap - 1 && t_now_ms() < deadline) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = recv(fd, buf + got, cap - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	close(fd);
	return (int)got;
}

static const char *find_redis(void)
{
	static const char *const paths[] = {"/usr/bin/redis-server", "/usr/local/bin/redis-server",
					    "/usr/sbin/redis-server"};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

/* Start redis-server on a free loopback port, without persistence; returns the port. */
int t_redis_start(pid_t *pid)
{
	const char *bin = find_redis();
	char port_s[16], buf[64];
	int port = t_free_port();
	uint64_t deadline;

	ck_assert_msg(bin, "redis-server is not installed: this suite checks the redis health "
			   "check against a real server; `make test` installs it (Debian package "
			   "redis-server)");
	snprintf(port_s, sizeof(port_s), "%d", port);
	char *const argv[] = {
	    (char *)bin,    "--port", port_s,	     "--bind", "127.0.0.1",	   "--save", "",
	    "--appendonly", "no",     "--daemonize", "no",     "--protected-mode", "yes",    NULL};
	*pid = t_spawn(argv, NULL, NULL);
	ck_assert_int_ge(*pid, 0);
	deadline = t_now_ms() + REDIS_WAIT_MS;
	while (t_exchange(port, "PING\r\n", 6, buf, sizeof(buf), 7) != 7 ||
	       strcmp(buf, "+PONG\r\n") != 0) {
		ck_assert_msg(t_now_ms() < deadline,
			      "redis-server (%s) did not answer PING on port "
			      "%d within %d ms",
			      bin, port, REDIS_WAIT_MS);
		ck_assert_msg(waitpid(*pid, NULL, WNOHANG) == 0, "redis-server exited at start");
		usleep(20 * 1000);
	}
	return port;
}

/* PostgreSQL's bin directory (highest version installed), or false. */
bool t_pg_bindir(char *buf, size_t len)
{
	glob_t g;
	bool ok = false;

	if (glob(PG_GLOB, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
		snprintf(buf, len, "%s", g.gl_pathv[g.gl_pathc - 1]);
		*strrchr(buf, '/') = '\0';
		ok = true;
	}
	globfree(&g);
	return ok;
}

static const char *find_runuser(void)
{
	return access("/usr/sbin/runuser", X_OK) == 0 ? "/usr/sbin/runuser" : "/sbin/runuser";
}

/* initdb as the postgres user (through runuser when we are root). */
static void pg_initdb(const char *bindir, const char *data, bool via_runuser)
{
	char initdb[300], *out = NULL, *err = NULL;
	char *argv[20] = {(char *)find_runuser(), "-u", "postgres", "--"};
	char *const cmd[] = {initdb,	 "-D", (char *)data, "-A",	   "trust",	"-U",
			     "postgres", "-E", "UTF8",	     "--locale=C", "--no-sync", NULL};
	int rc;

	snprintf(initdb, sizeof(initdb), "%s/initdb", bindir);
	memcpy(argv + 4, cmd, sizeof(cmd));
	rc = t_run(via_runuser ? argv : argv + 4, &out, &err, INITDB_MS);
	ck_assert_msg(rc == 0, "initdb failed (exit %d):\n%s\n%s", rc, out ? out : "",
		      err ? err : "");
	free(out);
	free(err);
}

/* The one byte PostgreSQL answers an SSLRequest with, or -1. */
int t_pg_ssl_answer(int port)
{
	char buf[8];

	if (t_exchange(port, "\x00\x00\x00\x08\x04\xd2\x16\x2f", 8, buf, sizeof(buf), 1) != 1)
		return -1;
	return (unsigned char)buf[0];
}

/* initdb a throw-away cluster in a temp dir and start postgres on a free loopback port
 * (as the postgres user when we are root: PostgreSQL refuses to run as root). */
int t_pg_start(pid_t *pid, char *dir, size_t dirlen, const char *const *opts)
{
	char bindir[256], data[128], log[128], bin[300], port_s[16];
	struct passwd *pw = NULL;
	int port = t_free_port(), a;
	uint64_t deadline;

	ck_assert_msg(t_pg_bindir(bindir, sizeof(bindir)),
		      "PostgreSQL is not installed (no %s): this suite checks the postgres "
		      "health check against a real server; `make test` installs it (Debian "
		      "package postgresql)",
		      PG_GLOB);
	if (geteuid() == 0) {
		pw = getpwnam("postgres");
		ck_assert_msg(pw, "no user postgres to run PostgreSQL as; `make test` installs "
				  "the postgresql package, which creates it");
	}
	snprintf(dir, dirlen, "/tmp/lb-pg-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	if (pw)
		ck_assert_int_eq(chown(dir, pw->pw_uid, pw->pw_gid), 0);
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(log, sizeof(log), "%s/postgres.log", dir);
	snprintf(bin, sizeof(bin), "%s/postgres", bindir);
	snprintf(port_s, sizeof(port_s), "%d", port);
	pg_initdb(bindir, data, pw != NULL);
	/* -h listen address, -k unix socket directory, -F fsync off, -N max connections */
	char *argv[T_PG_MAX_OPTS + 16] = {bin,	"-D", data, "-p", port_s, "-h", "127.0.0.1",
					  "-k", dir,  "-F", "-N", "20",	  NULL};
	for (size_t i = 0, n = 12; opts && opts[i] && i < T_PG_MAX_OPTS; i++)
		argv[n++] = (char *)opts[i];
	*pid = t_spawn(argv, pw, log);
	ck_assert_int_ge(*pid, 0);
	deadline = t_now_ms() + PG_WAIT_MS;
	while ((a = t_pg_ssl_answer(port)) != 'N' && a != 'S') {
		if (t_now_ms() >= deadline || waitpid(*pid, NULL, WNOHANG) != 0) {
			t_dump_file(log, "postgres log");
			ck_abort_msg("postgres did not answer on port %d within %d ms", port,
				     PG_WAIT_MS);
		}
		usleep(50 * 1000);
	}
	return port;
}

void t_pg_stop(pid_t *pid, char *dir)
{
	t_stop_child(pid, SIGINT, 10000); /* fast shutdown */
	if (dir[0])
		t_remove_tree(dir);
	dir[0] = '\0';
}
