/* lb under systemd's Type=notify: it tells $NOTIFY_SOCKET READY=1 once it serves,
 * RELOADING=1 (with MONOTONIC_USEC) and READY=1 again around every reload, rejected ones
 * included, and STOPPING=1 on SIGTERM; a path socket and an abstract one ("@name") alike. */
#include <check.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "support.h"

/* systemd answers nothing; a message is one datagram. */
#define MSG_WAIT_MS 5000

/* The receiving end of $NOTIFY_SOCKET, bound at name (a path, or "@..." abstract). */
static int notify_listen(const char *name)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t len = strlen(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_uint_lt(len, sizeof(sun.sun_path));
	memcpy(sun.sun_path, name, len);
	if (name[0] == '@')
		sun.sun_path[0] = '\0';
	else
		unlink(name);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
			 0);
	return fd;
}

/* The next message lb sent within MSG_WAIT_MS, into buf ("" on timeout). */
static const char *next_msg(int fd, char *buf, size_t len)
{
	buf[0] = '\0';
	if (!t_wait_readable(fd, MSG_WAIT_MS))
		return buf;
	ssize_t n = recv(fd, buf, len - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void notify_round(const char *name)
{
	struct tbackend *be = tb_start("127.0.0.1:0", TB_ECHO, "e");
	struct lbproc lb;
	int port = t_free_port(), fd = notify_listen(name);
	char msg[512], sock[320], want[64];

	ck_assert_ptr_nonnull(be);
	setenv("NOTIFY_SOCKET", name, 1);
	json_t *cfg = t_cfg_new(2);
	t_cfg_listener(cfg, "web", "tcp", "127.0.0.1", port, "web");
	t_cfg_backend(t_cfg_pool(cfg, "web", "round_robin", T_HEALTH_NONE), "e", tb_address(be));
	t_lb_start(&lb, cfg, &port, 1);
	unsetenv("NOTIFY_SOCKET");
	snprintf(sock, sizeof(sock), "%s/lb.sock", lb.dir);

	next_msg(fd, msg, sizeof(msg));
	snprintf(want, sizeof(want), "MAINPID=%d", (int)lb.pid);
	t_check_lb(&lb, strstr(msg, "READY=1") && strstr(msg, want),
		   "%s: first message is not READY=1 with %s: \"%s\"", name, want, msg);

	/* SIGHUP: RELOADING=1 with the monotonic time, then READY=1. */
	kill(lb.pid, SIGHUP);
	next_msg(fd, msg, sizeof(msg));
	t_check_lb(&lb, strstr(msg, "RELOADING=1") && strstr(msg, "MONOTONIC_USEC="),
		   "%s: SIGHUP did not send RELOADING=1 with MONOTONIC_USEC: \"%s\"", name, msg);
	next_msg(fd, msg, sizeof(msg));
	t_check_lb(&lb, strstr(msg, "READY=1") && strstr(msg, "STATUS=serving"),
		   "%s: no READY=1 after the reload: \"%s\"", name, msg);

	/* A rejected reload still ends in READY=1: the old config serves on. */
	FILE *f = fopen(lb.config_path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("{ not json", f);
	fclose(f);
	t_check_lb(&lb, t_lbctl(sock, NULL, NULL, "reload", NULL) == 1,
		   "a broken config was not refused");
	next_msg(fd, msg, sizeof(msg));
	t_check_lb(&lb, strstr(msg, "RELOADING=1") != NULL, "%s: no RELOADING=1: \"%s\"", name,
		   msg);
	next_msg(fd, msg, sizeof(msg));
	t_check_lb(&lb, strstr(msg, "READY=1") && strstr(msg, "reload rejected"),
		   "%s: no READY=1 after a rejected reload: \"%s\"", name, msg);

	t_stop_lb(&lb); /* SIGTERM, exit 0 */
	next_msg(fd, msg, sizeof(msg));
	t_check_lb(&lb, strstr(msg, "STOPPING=1") != NULL, "%s: SIGTERM sent no STOPPING=1: \"%s\"",
		   name, msg);
	close(fd);
	if (name[0] != '@')
		unlink(name);
	tb_free(be);
}

START_TEST(test_notify_socket_path)
{
	char name[64];

	snprintf(name, sizeof(name), "/tmp/lb-notify-%d.sock", (int)getpid());
	notify_round(name);
}
END_TEST

START_TEST(test_notify_socket_abstract)
{
	char name[64];

	snprintf(name, sizeof(name), "@lb-notify-%d", (int)getpid());
	notify_round(name);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {test_notify_socket_path, test_notify_socket_abstract, NULL};

	return t_run_suite(t_suite("systemd", 30, NULL, NULL, tests), CK_ENV);
}
