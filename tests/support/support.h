/* Test support shared by the Check suites, the demo and the benchmark: in-process test
 * backends (threads), a handle on a running lb process, and small client helpers.
 * Every function returns an error value rather than aborting, so tests can assert on it. */
#ifndef LB_TEST_SUPPORT_H
#define LB_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- test backends (each runs its own thread with its own poll loop) ---- */

enum tb_mode {
	TB_ECHO,   /* echo every byte back; half-close: after client FIN, finish echo, then FIN */
	TB_TAGGED, /* send "<name>\n" on accept, then behave as TB_ECHO */
	TB_HTTP,   /* answer each HTTP/1.1 request with 200 and body "<name>\n"; keep-alive */
	TB_SINK,   /* read and discard */
	TB_BLACKHOLE, /* accept, never read, never write */
	TB_RECORD,    /* like TB_ECHO, and keep the first TB_RECORD_MAX bytes of each connection */
};
#define TB_RECORD_MAX 512

struct tbackend;

/* Start a TCP backend on addr ("127.0.0.1:0" picks a free port). NULL on failure. */
struct tbackend *tb_start(const char *addr, enum tb_mode mode, const char *name);
/* Close the listener and every open connection (connects are then refused). */
void tb_stop(struct tbackend *tb);
/* Listen again on the same address and port after tb_stop. 0 or -errno. */
int tb_restart(struct tbackend *tb);
void tb_free(struct tbackend *tb); /* stops if running, joins the thread, frees */
int tb_port(const struct tbackend *tb);
const char *tb_address(const struct tbackend *tb); /* "127.0.0.1:PORT" */
const char *tb_name(const struct tbackend *tb);
unsigned tb_accepted(struct tbackend *tb); /* connections accepted so far */
unsigned tb_active(struct tbackend *tb);   /* connections open now */
/* Copy of the first bytes recorded on the i-th accepted connection (TB_RECORD). Returns the
 * length copied, or -1 if there is no such connection. */
int tb_recorded(struct tbackend *tb, unsigned i, uint8_t *buf, size_t len);
/* "echo", "tagged", "http", "sink", "blackhole", "record" -> enum tb_mode, or -1. */
int tb_mode_parse(const char *s);
const char *tb_mode_name(enum tb_mode mode);

/* A listener whose accept queue is full, so connects to it hang (for connect timeouts).
 * Returns the listening fd (close it to release) and its port in *port, or -1. */
int tb_blackhole_listener(int *port);

/* ---- a running lb ---- */

struct lbproc {
	pid_t pid;
	char dir[256];	       /* temp dir holding the config, socket and log */
	char config_path[300]; /* dir/lb.json */
	char log_path[300];    /* dir/lb.log: lb's stderr */
};

/* The engine the suite runs on: $LB_ENGINE, or "auto". */
const char *t_engine(void);
/* The lb binary: $LB_BIN, or "./lb". */
const char *t_lb_bin(void);

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
/* Remove the temp dir (kept, and named on stderr, when $LB_TEST_KEEP is set and not "0"). */
void lb_cleanup(struct lbproc *lb);
/* Number of open fds of the process (from /proc/PID/fd), or -1. */
int lb_fd_count(const struct lbproc *lb);
/* lb's stderr so far, NUL-terminated, malloc'd (caller frees). */
char *lb_log(const struct lbproc *lb);
/* Wait up to timeout_ms until lb's log contains needle. true if found. */
bool lb_log_wait(const struct lbproc *lb, const char *needle, int timeout_ms);

/* Run argv (argv[0] a path) to completion with a timeout; stdout and stderr captured into
 * malloc'd strings (either pointer may be NULL). Returns exit status, or -1. */
int t_run(char *const argv[], char **out, char **err, int timeout_ms);

/* ---- clients ---- */

/* A port that was free a moment ago on 127.0.0.1 (bind :0, read, close). */
int t_free_port(void);
/* Blocking TCP connect to 127.0.0.1:port, from src_ip (e.g. "127.0.0.7") if not NULL.
 * Returns the fd or -1. A 5 s receive/send timeout is set on the socket. */
int t_connect(const char *src_ip, int port);
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

#endif
