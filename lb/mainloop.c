/* Accepting on the main loop's listening sockets without spinning when lb is out of file
 * descriptors (lb/mainloop.h). */
#include "lb/mainloop.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "lb/log.h"
#include "lb/timer.h"

/* Out of fds: stop watching the socket this long. A level-triggered epoll would otherwise
 * report the pending connection again at once, forever. */
#define ACCEPT_PAUSE_MS 100
/* At most one log line per socket this often, with the number left unlogged. */
#define ACCEPT_LOG_MS 1000

static void pause_accepting(int epfd, int fd, struct mainloop_handler *h, struct accept_guard *g,
			    int err)
{
	uint64_t now = timer_now_ms();

	g->errors++;
	g->resume_at = now + ACCEPT_PAUSE_MS;
	(void)mainloop_watch(epfd, EPOLL_CTL_MOD, fd, 0, h);
	if (now - g->last_log < ACCEPT_LOG_MS && g->last_log) {
		g->unlogged++;
		return;
	}
	log_warn("%s: accept: %s; not accepting for %d ms (%llu more since the last line)", g->what,
		 strerror(err), ACCEPT_PAUSE_MS, (unsigned long long)g->unlogged);
	g->last_log = now;
	g->unlogged = 0;
}

int mainloop_accept(int epfd, int fd, struct mainloop_handler *h, struct accept_guard *g)
{
	for (;;) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd >= 0)
			return cfd;
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno != EAGAIN)
			pause_accepting(epfd, fd, h, g, errno);
		return -1;
	}
}

int mainloop_accept_tick(int epfd, int fd, struct mainloop_handler *h, struct accept_guard *g)
{
	uint64_t now = timer_now_ms();

	if (!g->resume_at)
		return -1;
	if (now < g->resume_at)
		return (int)(g->resume_at - now);
	g->resume_at = 0;
	if (mainloop_watch(epfd, EPOLL_CTL_MOD, fd, EPOLLIN, h) < 0)
		log_error("%s: cannot watch the socket again: %s", g->what, strerror(errno));
	return -1;
}
