/* Unit: the io_uring engine's connection operations (lb/engine_uring.c): accepts made in the
 * kernel hand over each connection with its peer's address, several per wait; a stopped
 * accept closes what it took too late; connects report success and refusal, a dropped one
 * never calls back; a ring close happens with the next wait, not before; and with
 * conn_ops 0 (LB_URING_CONN=0) the operations refuse, so that callers use the syscalls. */
#include <check.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lb/engine.h"
#include "support.h"

static struct engine *eng(long conn_ops)
{
	struct engine_params p = {.max_fds = 64,
				  .recv_bufs = ENGINE_DEFAULT,
				  .batch_nr = ENGINE_DEFAULT,
				  .batch_us = ENGINE_DEFAULT,
				  .conn_ops = conn_ops};
	struct engine *e = engine_uring.create(&p);
	ck_assert_ptr_nonnull(e);
	return e;
}

/* A listening socket on 127.0.0.1 and a free port; *sa gets its address. */
static int listen_any(struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	socklen_t len = sizeof(*sa);
	*sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)sa, sizeof(*sa)), 0);
	ck_assert_int_eq(listen(fd, 64), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)sa, &len), 0);
	return fd;
}

static int client_to(const struct sockaddr_in *sa, struct sockaddr_in *local)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	socklen_t len = sizeof(*local);
	ck_assert_int_eq(connect(fd, (const struct sockaddr *)sa, sizeof(*sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)local, &len), 0);
	return fd;
}

/* Wait and dispatch until *done reaches want, for at most 2 s. */
static void turn_until(struct engine *e, const int *done, int want)
{
	for (int i = 0; i < 200 && *done < want; i++) {
		ck_assert_int_eq(engine_uring.wait(e, 10), 0);
		engine_uring.dispatch(e);
	}
}

/* Run n loop turns. */
static void turns(struct engine *e, int n)
{
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(engine_uring.wait(e, 10), 0);
		engine_uring.dispatch(e);
	}
}

#define MAXC 16
struct taken {
	int n, fds[MAXC];
	struct sockaddr_in peers[MAXC];
	int err;
};

static void on_accept(void *owner, int fd, const struct sockaddr *sa, socklen_t len)
{
	struct taken *t = owner;
	if (fd < 0) {
		t->err = fd;
		return;
	}
	ck_assert_int_lt(t->n, MAXC);
	ck_assert_uint_eq(len, sizeof(struct sockaddr_in));
	ck_assert_int_ne(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	t->fds[t->n] = fd;
	memcpy(&t->peers[t->n++], sa, sizeof(struct sockaddr_in));
}

START_TEST(test_accepts_hand_over_each_connection_with_its_peer)
{
	struct engine *e = eng(1);
	struct sockaddr_in sa, local[12];
	int lfd = listen_any(&sa), cl[12];
	struct taken t = {0};

	struct engine_accept *a = engine_uring.accept_start(e, lfd, on_accept, &t);
	ck_assert_ptr_nonnull(a);
	/* More connections than accepts kept in the kernel (8): they are re-armed. */
	for (int i = 0; i < 12; i++)
		cl[i] = client_to(&sa, &local[i]);
	turn_until(e, &t.n, 12);
	ck_assert_int_eq(t.n, 12);
	ck_assert_int_eq(t.err, 0);
	for (int i = 0; i < 12; i++) {
		/* Each connection came with its own peer's address (ports are unique). */
		int found = 0;
		for (int j = 0; j < 12; j++)
			found += t.peers[j].sin_port == local[i].sin_port &&
				 t.peers[j].sin_addr.s_addr == local[i].sin_addr.s_addr;
		ck_assert_int_eq(found, 1);
	}
	engine_uring.accept_stop(e, a);
	turns(e, 3); /* the cancels complete */
	for (int i = 0; i < 12; i++) {
		close(t.fds[i]);
		close(cl[i]);
	}
	close(lfd);
	engine_uring.destroy(e);
}
END_TEST

START_TEST(test_a_stopped_accept_closes_what_it_took_too_late)
{
	struct engine *e = eng(1);
	struct sockaddr_in sa, local;
	int lfd = listen_any(&sa);
	struct taken t = {0};

	struct engine_accept *a = engine_uring.accept_start(e, lfd, on_accept, &t);
	ck_assert_ptr_nonnull(a);
	turns(e, 2); /* armed: the requests wait in the kernel */
	int cl = client_to(&sa, &local);
	/* The accept completes in this wait, but is not dispatched before the stop. */
	ck_assert_int_eq(engine_uring.wait(e, 1000), 0);
	engine_uring.accept_stop(e, a);
	turns(e, 5);
	ck_assert_int_eq(t.n, 0);
	/* The listener is still open: only the engine can have ended the connection. */
	struct pollfd p = {.fd = cl, .events = POLLIN};
	ck_assert_int_eq(poll(&p, 1, 2000), 1);
	char c;
	ck_assert_int_le(recv(cl, &c, 1, 0), 0); /* EOF or reset: nobody holds it */
	close(cl);
	close(lfd);
	engine_uring.destroy(e);
}
END_TEST

struct connected {
	int n, res;
};

static void on_connect(void *owner, int res)
{
	struct connected *c = owner;
	c->n++;
	c->res = res;
}

START_TEST(test_connects_report_success_and_refusal)
{
	struct engine *e = eng(1);
	struct sockaddr_in sa, gone;
	int lfd = listen_any(&sa);
	int closed = listen_any(&gone);
	close(closed); /* a port nobody listens on */

	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct connected c = {0};
	ck_assert_ptr_nonnull(
	    engine_uring.connect_start(e, fd, (struct sockaddr *)&sa, sizeof(sa), on_connect, &c));
	turn_until(e, &c.n, 1);
	ck_assert_int_eq(c.n, 1);
	ck_assert_int_eq(c.res, 0);
	struct sockaddr_in peer;
	socklen_t len = sizeof(peer);
	ck_assert_int_eq(getpeername(fd, (struct sockaddr *)&peer, &len), 0);
	ck_assert_int_eq(peer.sin_port, sa.sin_port);
	close(fd);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c = (struct connected){0};
	ck_assert_ptr_nonnull(engine_uring.connect_start(e, fd, (struct sockaddr *)&gone,
							 sizeof(gone), on_connect, &c));
	turn_until(e, &c.n, 1);
	ck_assert_int_eq(c.n, 1);
	ck_assert_int_eq(c.res, -ECONNREFUSED);
	close(fd);

	/* Dropped before its wait: never calls back. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c = (struct connected){0};
	struct engine_connect *k =
	    engine_uring.connect_start(e, fd, (struct sockaddr *)&sa, sizeof(sa), on_connect, &c);
	ck_assert_ptr_nonnull(k);
	engine_uring.connect_drop(e, k);
	turns(e, 10);
	ck_assert_int_eq(c.n, 0);
	close(fd);
	close(lfd);
	engine_uring.destroy(e);
}
END_TEST

START_TEST(test_a_ring_close_happens_with_the_next_wait)
{
	struct engine *e = eng(1);
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	ck_assert(engine_uring.close_fd(e, sv[0]));
	/* Not yet: the number stays taken until the close is submitted, so no new socket
	 * can get it while a queued request still names it. */
	ck_assert_int_ge(fcntl(sv[0], F_GETFD), 0);
	ck_assert_int_eq(engine_uring.wait(e, 0), 0);
	engine_uring.dispatch(e);
	errno = 0;
	ck_assert_int_eq(fcntl(sv[0], F_GETFD), -1);
	ck_assert_int_eq(errno, EBADF);
	char c;
	ck_assert_int_eq(recv(sv[1], &c, 1, 0), 0); /* the peer sees the end */
	close(sv[1]);
	engine_uring.destroy(e);
}
END_TEST

START_TEST(test_conn_ops_off_leaves_it_to_the_syscalls)
{
	struct engine *e = eng(0);
	struct sockaddr_in sa;
	int lfd = listen_any(&sa);
	struct taken t = {0};
	struct connected c = {0};

	errno = 0;
	ck_assert_ptr_null(engine_uring.accept_start(e, lfd, on_accept, &t));
	ck_assert_int_eq(errno, EOPNOTSUPP);
	ck_assert_ptr_null(
	    engine_uring.connect_start(e, lfd, (struct sockaddr *)&sa, sizeof(sa), on_connect, &c));
	ck_assert(!engine_uring.close_fd(e, lfd));
	close(lfd);
	engine_uring.destroy(e);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("engine_uring");
	TCase *tc = tcase_create("core");
	const char *why;

	if (engine_uring_probe(&why) < 0) {
		printf("io_uring unavailable here (%s): nothing to test\n", why);
		return 0;
	}
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_accepts_hand_over_each_connection_with_its_peer);
	tcase_add_test(tc, test_a_stopped_accept_closes_what_it_took_too_late);
	tcase_add_test(tc, test_connects_report_success_and_refusal);
	tcase_add_test(tc, test_a_ring_close_happens_with_the_next_wait);
	tcase_add_test(tc, test_conn_ops_off_leaves_it_to_the_syscalls);
	suite_add_tcase(s, tc);
	return t_run_suite(s, CK_NORMAL);
}
