/* Test support shared by the Check suites, the demo and the benchmark: in-process test
 * backends (threads), a handle on a running lb process, and small client helpers. Every
 * function returns an error value rather than aborting, so tests can assert on it; only
 * those in the Check section at the end fail the running test themselves. */
#ifndef LB_TEST_SUPPORT_H
#define LB_TEST_SUPPORT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "lb/config.h"

/* ---- test backends (each runs its own thread with its own poll loop) ---- */

enum tb_mode {
	TB_ECHO,   /* echo every byte back; half-close: after client FIN, finish echo, then FIN */
	TB_TAGGED, /* send "<name>\n" on accept, then behave as TB_ECHO */
	TB_HTTP,   /* answer each HTTP/1.1 request with 200 and body "<name>\n"; keep-alive */
	TB_SINK,   /* read and discard */
	TB_BLACKHOLE,  /* accept, never read, never write */
	TB_RECORD,     /* like TB_ECHO, and keep the first TB_RECORD_MAX bytes of each connection */
	TB_UDP_ECHO,   /* UDP: send every datagram back to its sender unchanged */
	TB_UDP_TAGGED, /* UDP: answer each datagram with "<name>\n" followed by the datagram */
	TB_UDP_ECHO_GRO, /* UDP_GRO on: send every message back as it came (a run of datagrams
			  * merged by GRO goes back as one UDP_SEGMENT message) */
};
#define TB_RECORD_MAX 512

struct tbackend;

/* Start a backend on addr ("127.0.0.1:0" picks a free port): TCP, or UDP for the TB_UDP_*
 * modes (tb_stop then closes the socket, so datagrams draw "port unreachable"; tb_accepted
 * counts datagrams received). NULL on failure. */
struct tbackend *tb_start(const char *addr, enum tb_mode mode, const char *name);
/* Close the listener and every open connection (connects are then refused). */
void tb_stop(struct tbackend *tb);
/* Listen again on the same address and port after tb_stop. 0 or -errno. */
int tb_restart(struct tbackend *tb);
void tb_free(struct tbackend *tb); /* stops if running, joins the thread, frees */
int tb_port(const struct tbackend *tb);
const char *tb_address(const struct tbackend *tb); /* "127.0.0.1:PORT" */
const char *tb_name(const struct tbackend *tb);
unsigned tb_accepted(struct tbackend *tb);    /* connections accepted so far */
unsigned tb_active(struct tbackend *tb);      /* connections open now */
unsigned tb_peak_active(struct tbackend *tb); /* most connections open at once so far */
/* Copy of the first bytes recorded on the i-th accepted connection (TB_RECORD). Returns the
 * length copied, or -1 if there is no such connection. */
int tb_recorded(struct tbackend *tb, unsigned i, uint8_t *buf, size_t len);
/* "echo", "tagged", "http", "sink", "blackhole", "record" -> enum tb_mode, or -1. */
int tb_mode_parse(const char *s);
const char *tb_mode_name(enum tb_mode mode);

/* A listener whose accept queue is full, so connects to it hang (for connect timeouts).
 * Returns the listening fd (close it to release) and its port in *port, or -1. */
int tb_blackhole_listener(int *port);

/* Wait up to timeout_ms until tb has exactly want connections open. true if it has. */
bool tb_wait_active(struct tbackend *tb, unsigned want, int timeout_ms);

/* A suite's test backends, in the order started; a tag names one of them. */
#define T_BACKENDS_MAX 8
struct t_backends {
	struct tbackend *tb[T_BACKENDS_MAX];
	size_t n;
};

/* Index in set of the backend named tag, or -1. */
int t_backends_index(const struct t_backends *set, const char *tag);
/* tb_free every backend of set and empty it. */
void t_backends_free(struct t_backends *set);
/* One connection to port from src (NULL = 127.0.0.1): the index in set of the TB_TAGGED
 * backend that answered, or -1 if the connection failed or brought no known tag. */
int t_fetch(const struct t_backends *set, const char *src, int port);
/* n sequential t_fetch from 127.0.0.1; counts[i] += hits on backend i. Returns the number
 * that failed. */
int t_fetch_many(const struct t_backends *set, int port, int n, unsigned *counts);

/* ---- a running lb ---- */

struct lbproc {
	pid_t pid;
	char dir[256];	       /* temp dir holding the config, socket and log */
	char config_path[300]; /* dir/lb.json */
	char log_path[300];    /* dir/lb.log: lb's stderr */
	uint64_t started_ms;   /* t_now_ms() when lb_start saw it listen, to date failures */
};

/* The engine the suite runs on: $LB_ENGINE, or "auto". */
const char *t_engine(void);
/* The lb binary: $LB_BIN, or "./lb". */
const char *t_lb_bin(void);
/* The lbctl binary: $LBCTL_BIN, or "./lbctl". */
const char *t_lbctl_bin(void);
/* The source tree (for tests/configs, examples): $LB_SRC_DIR, or ".". */
const char *t_src_dir(void);

/* Write json to a fresh temp dir's lb.json, start `lb -c` on it and wait (up to 5 s) until
 * every port in ports[0..nports) accepts TCP connections. 0 on success, -1 on failure (the
 * process is then reaped; lb->log_path still holds its output). Every "@DIR@" in json is
 * replaced by the temp dir first (e.g. "control":{"socket":"@DIR@/lb.sock"}). Readiness is
 * seen as lb's own socket in LISTEN state on each port, not by connecting, so that no probe
 * connection reaches a backend and disturbs what a test counts. lb gets SIGKILL if the
 * thread that started it dies (a failed Check test exits without cleaning up). */
int lb_start(struct lbproc *lb, const char *json, const int *ports, size_t nports);
/* SIGTERM, wait up to timeout_ms (then SIGKILL). Returns the exit status (WEXITSTATUS), or
 * -1 if it had to be killed or died by a signal. Keeps the temp dir. */
int lb_stop(struct lbproc *lb, int timeout_ms);
/* Remove path and everything below it (rm -rf), as far as it can. */
void t_remove_tree(const char *path);
/* Remove the temp dir (kept, and named on stderr, when $LB_TEST_KEEP is set and not "0"). */
void lb_cleanup(struct lbproc *lb);
/* Number of open fds of the process (from /proc/PID/fd), or -1. */
int lb_fd_count(const struct lbproc *lb);
/* Resident set size of process pid in kB (VmRSS), or -1. */
long lb_rss_kb(pid_t pid);
/* User + system clock ticks of the whole process pid so far, or -1. */
long lb_cpu_ticks(pid_t pid);
/* lb's stderr so far, NUL-terminated, malloc'd (caller frees). */
char *lb_log(const struct lbproc *lb);
/* Wait up to timeout_ms until lb's log contains needle. true if found. */
bool lb_log_wait(const struct lbproc *lb, const char *needle, int timeout_ms);
/* Print to stderr whether lb has died and the tail of its log, so that a failure explains
 * itself. Reaps lb if it has exited. NULL does nothing. */
void lb_log_dump(struct lbproc *lb);
/* json with every "@DIR@" replaced by dir, malloc'd (caller frees); NULL if out of memory. */
char *t_expand_dir(const char *json, const char *dir);
/* Remove what t_write_config (below) made: path, dir/lb.sock and dir. */
void t_remove_config(const char *path);

/* Wait up to timeout_ms for pid to exit. Its exit status, -1 if killed by a signal, -2 on
 * timeout. */
int t_wait_exit(pid_t pid, int timeout_ms);

struct passwd;
/* fork+exec argv (argv[0] a path), stdin from /dev/null, stdout and stderr appended to
 * log_path (NULL: /dev/null), as user pw if not NULL, for a server a test runs. The child
 * gets SIGKILL if the test process dies, so a failed test leaves no server behind. Its pid,
 * or -1. */
pid_t t_spawn(char *const argv[], const struct passwd *pw, const char *log_path);
/* Send sig to *pid, wait up to timeout_ms for it to exit, then SIGKILL it; *pid becomes -1.
 * Nothing if *pid <= 0. */
void t_stop_child(pid_t *pid, int sig, int timeout_ms);

/* Run argv (argv[0] a path) to completion with a timeout; stdout and stderr captured into
 * malloc'd strings (either pointer may be NULL). Returns exit status, or -1. */
int t_run(char *const argv[], char **out, char **err, int timeout_ms);

/* Run `lbctl -s sock ARGS...` (NULL-terminated, at most 12 arguments) to completion, 5 s at
 * most; out and err as for t_run. Its exit status, or -1. */
int t_lbctl(const char *sock, char **out, char **err, ...);
int t_lbctl_v(const char *sock, char **out, char **err, va_list ap);

/* ---- clients ---- */

/* A port that was free a moment ago on 127.0.0.1 (bind :0, read, close). */
int t_free_port(void);
/* A port that was free a moment ago on every address of both families, for a dual-stack
 * "[::]" listener: that one also collides with any IPv4 socket on the port (a client's
 * ephemeral port too). */
int t_free_port_any(void);
/* Blocking TCP connect to 127.0.0.1:port, from src_ip (e.g. "127.0.0.7") if not NULL.
 * Returns the fd or -1. A 5 s receive/send timeout is set on the socket. */
int t_connect(const char *src_ip, int port);
/* The same to dst_ip:port, dst_ip IPv4 or IPv6 ("::1"); src_ip, if not NULL, of the same
 * family. On failure -1 with errno from connect (ECONNREFUSED: nothing listens there). */
int t_connect_to(const char *src_ip, const char *dst_ip, int port);
/* Read one '\n'-terminated line (newline stripped) within timeout_ms. Returns its length,
 * 0 on EOF before any byte, -1 on error/timeout. */
int t_read_line(int fd, char *buf, size_t len, int timeout_ms);
/* Connect, read the tag line a TB_TAGGED backend sends, close. The tag is written to buf.
 * Returns 0, or -1 if the connection failed or closed without a tag. */
int t_fetch_tag(const char *src_ip, int port, char *buf, size_t len);
/* Wait until fd is closed by the peer (read returns 0 or error) within timeout_ms.
 * Returns 0 if closed (EOF), 1 if reset (ECONNRESET), -1 on timeout. */
int t_wait_closed(int fd, int timeout_ms);
/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t t_now_ms(void);
/* Send all of buf (MSG_NOSIGNAL). false if a send fails or returns 0 (errno tells why). */
bool t_send_all(int fd, const void *buf, size_t len);
/* Wait up to timeout_ms until fd is readable. */
bool t_wait_readable(int fd, int timeout_ms);
/* Read exactly len bytes within timeout_ms. false on timeout, EOF or error. */
bool t_recv_exact(int fd, void *buf, size_t len, int timeout_ms);
/* Send c and read it back within timeout_ms: the connection relays both ways. */
bool t_echo_byte(int fd, char c, int timeout_ms);
/* The local port fd is bound to, or -1. */
int t_local_port(int fd);
/* GET path from 127.0.0.1:port (HTTP/1.1, the server closes after answering): the body,
 * malloc'd, and the status code in *status; NULL (status 0) if no answer came. */
char *t_http_get(int port, const char *path, int *status);

/* ---- Check suites (these need Check: only the suites call them) ---- */

/* A hand-built pool config for the unit suites. */
#define T_POOL_MAX 100
struct t_pool_cfg {
	struct cfg_pool cp;
	struct cfg_backend be[T_POOL_MAX];
	char names[T_POOL_MAX][32];
};
struct pool;

/* Fill t: pool "test" with algorithm alg and backends prefix<i> for i in [0, n) but skip
 * (-1: none), so that a name keeps its identity across pools; each backend's address is its
 * name (unit tests never connect) and its weight weights[i] (NULL: all 1). Returns how many
 * backends t holds. Fails the test if n > T_POOL_MAX. */
size_t t_pool_cfg_init(struct t_pool_cfg *t, const char *alg, const char *prefix, int n, int skip,
		       const int *weights);
/* pool_create on such a config; fails the test if it returns NULL. */
struct pool *t_pool_make(const char *alg, const char *prefix, int n, int skip, const int *weights);

struct Suite;
struct TTest;

/* Fail the running test with msg if cond is false, after lb_log_dump(lb) (lb may be NULL).
 * cond is evaluated once and must be free of side effects the message depends on. */
#define t_check_lb(lb, cond, ...)                                                                  \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			lb_log_dump(lb);                                                           \
			ck_abort_msg(__VA_ARGS__);                                                 \
		}                                                                                  \
	} while (0)

/* Start a backend on a free loopback port and add it to set; fails the test if it cannot. */
struct tbackend *t_backends_add(struct t_backends *set, enum tb_mode mode, const char *name);
/* Write json to a fresh temp dir's lb.json, "@DIR@" expanded as lb_start does, for runs
 * through t_run, which take a file rather than a config text; path receives dir/lb.json.
 * Fails the test if it cannot. */
void t_write_config(const char *json, char *path, size_t len);
/* Stop lb, which must exit 0 on SIGTERM within 5 s (else the test fails with its log), and
 * remove its temp dir. */
void t_stop_lb(struct lbproc *lb);
/* Connect to port through lb and read the tag of a TB_TAGGED backend in set, keeping the
 * connection: returns its fd, *idx = the backend's index. Fails the test (with lb's log) if
 * the connect fails, brings no tag, or a tag not in set. */
int t_hold(struct lbproc *lb, const struct t_backends *set, int port, int *idx);
/* A suite called name with one test case of that name holding tests (NULL-terminated), each
 * with a timeout of timeout_s and the checked fixture setup/teardown (either may be NULL). */
struct Suite *t_suite(const char *name, int timeout_s, void (*setup)(void), void (*teardown)(void),
		      const struct TTest *const *tests);
/* Add to s a test case called name with the one test t and a timeout of timeout_s. */
void t_add_test(struct Suite *s, const char *name, const struct TTest *t, int timeout_s);
/* Run every test of s (and free it) with Check's print mode (CK_ENV, CK_NORMAL, ...).
 * EXIT_SUCCESS if none failed, else EXIT_FAILURE: main's return value. */
int t_run_suite(struct Suite *s, int print_mode);

/* ---- real servers (servers.c); each fails the running test if it cannot start ---- */

/* Extra postgres options t_pg_start passes on, at most. */
#define T_PG_MAX_OPTS 16

/* Print the file at path to stderr, framed and labelled what (for a failure's context). */
void t_dump_file(const char *path, const char *what);
/* Connect to 127.0.0.1:port, send req, read until want bytes, EOF or 2 s. Returns the
 * number of bytes read into buf (NUL-terminated), or -1 if the connect failed. */
int t_exchange(int port, const void *req, size_t len, char *buf, size_t cap, size_t want);
/* Start redis-server on a free loopback port, without persistence; *pid gets its pid.
 * Returns the port. */
int t_redis_start(pid_t *pid);
/* PostgreSQL's bin directory (highest version installed) into buf, or false. */
bool t_pg_bindir(char *buf, size_t len);
/* The one byte PostgreSQL answers an SSLRequest with, or -1. */
int t_pg_ssl_answer(int port);
/* initdb a throw-away cluster in a fresh temp dir (its path into dir) and start postgres on
 * a free loopback port, trust authentication for user postgres, as user postgres when we
 * are root; opts (NULL-terminated, NULL for none) are further postgres arguments such as
 * "-c", "max_connections=4". *pid gets its pid. Returns the port. */
int t_pg_start(pid_t *pid, char *dir, size_t dirlen, const char *const *opts);
/* Stop a postgres t_pg_start started (fast shutdown) and remove its dir. */
void t_pg_stop(pid_t *pid, char *dir);

/* ---- the integration harness (harness.c, config_builder.c) ---- */

/* The lb, control socket and test backends of the running test (each Check test runs in its
 * own process, so a suite keeps one in a static). */
struct t_harness {
	struct lbproc lb;
	bool lb_started;
	int port;	/* the first listener's port, chosen by the suite */
	char sock[320]; /* lb's control socket: lb.dir/lb.sock, as t_cfg_new puts it */
	struct t_backends be;
};

/* Fail the running test with msg unless cond, with th's lb log if th's lb was started. */
#define t_expect(th, cond, ...) t_check_lb((th)->lb_started ? &(th)->lb : NULL, cond, __VA_ARGS__)

/* The health object of a pool without health checks. */
#define T_HEALTH_NONE "{\"type\":\"none\"}"

/* A config with what every suite's lb has: "engine" t_engine(), "workers" (0: left out),
 * "shutdown_grace" 1s, "control" with its socket in lb's temp dir ("@DIR@/lb.sock"), and
 * empty "listeners" and "pools". json_decref it, or pass it to a function that takes it. */
json_t *t_cfg_new(int workers);
/* Add to obj the members in a printf-formatted JSON object text written without its braces,
 * replacing those already there: t_cfg_set(l, "\"timeouts\":{\"idle\":\"%dms\"}", ms).
 * NULL or "" adds nothing. Fails the test if the text is not JSON. */
void t_cfg_set(json_t *obj, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append listener {name, protocol (NULL: left out), listen "host:port", pool} to cfg.
 * Returns it (owned by cfg) for t_cfg_set. */
json_t *t_cfg_listener(json_t *cfg, const char *name, const char *protocol, const char *host,
		       int port, const char *pool);
/* Append pool {name, algorithm, health (JSON text, e.g. T_HEALTH_NONE), backends []} to cfg;
 * algorithm and health NULL are left out. Returns it (owned by cfg). */
json_t *t_cfg_pool(json_t *cfg, const char *name, const char *algorithm, const char *health);
/* Append backend {name (NULL: left out), address} to pool. Returns it (owned by pool). */
json_t *t_cfg_backend(json_t *pool, const char *name, const char *address);
/* One backend per test backend of set, named after it. */
void t_cfg_backends(json_t *pool, const struct t_backends *set);
/* cfg as compact JSON text, malloc'd (caller frees). */
char *t_cfg_text(const json_t *cfg);
/* t_write_config on cfg's text. Takes cfg. */
void t_cfg_write(json_t *cfg, char *path, size_t len);
/* Replace lb's config file with cfg ("@DIR@" expanded) atomically, as a deploy would; lb
 * reads it on its next reload. Takes cfg. */
void t_rewrite_config(const struct lbproc *lb, json_t *cfg);

/* lb_start on cfg's text; fails the test with lb's log and the config if it does not start.
 * Takes cfg. */
void t_lb_start(struct lbproc *lb, json_t *cfg, const int *ports, size_t nports);
/* Add n backends to set, each named names[its index in set], so repeated calls go on down
 * the list. */
void t_backends_add_n(struct t_backends *set, enum tb_mode mode, const char *const *names,
		      size_t n);
/* Start th's lb on cfg and wait until it listens on th->port (unless the first listener is
 * UDP: it has no LISTEN state) and, if log_line is not NULL, until its log shows log_line.
 * Sets th->sock. Takes cfg. Fails the test (with lb's log) if lb does not get there. */
void t_harness_start(struct t_harness *th, json_t *cfg, const char *log_line);
/* Stop th's lb, which must exit 0 on SIGTERM (t_stop_lb), and free its backends. */
void t_harness_finish(struct t_harness *th);
/* Run `lbctl -s th->sock ARGS...` (NULL-terminated); fails the test with lbctl's output
 * unless it exits 0. */
void t_harness_lbctl_ok(struct t_harness *th, ...) __attribute__((sentinel));

#endif
