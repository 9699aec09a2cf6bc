/* The main thread's epoll loop (DESIGN.md "Threads and data flow"): signals, the control
 * socket and the metrics HTTP listener each register fds with a handler. Level-triggered,
 * so a handler may do a bounded amount of work per call and be called again. */
#ifndef LB_MAINLOOP_H
#define LB_MAINLOOP_H

#include <stdint.h>
#include <sys/epoll.h>

struct mainloop_handler {
	void (*fn)(struct mainloop_handler *h, uint32_t events);
};

/* op: EPOLL_CTL_ADD or EPOLL_CTL_MOD. 0 or -1 with errno. */
static inline int mainloop_watch(int epfd, int op, int fd, uint32_t events,
				 struct mainloop_handler *h)
{
	struct epoll_event ev = {.events = events, .data.ptr = h};
	return epoll_ctl(epfd, op, fd, &ev);
}

/* Accepting on a listening socket of the main loop (control, metrics) when lb may be out of
 * file descriptors. */
struct accept_guard {
	const char *what;   /* "control socket", for the log */
	uint64_t errors;    /* accepts that failed for want of fds or memory */
	uint64_t resume_at; /* timer_now_ms() when to watch the socket again; 0 = watching */
	uint64_t last_log, unlogged;
};

/* Accept one connection on fd (watched by h on epfd, EPOLLIN). The new fd (non-blocking,
 * close-on-exec), or -1 when there is none to take now: EAGAIN, or an error such as EMFILE,
 * which is counted, logged at most once a second, and stops the watch on fd for a short
 * while (mainloop_accept_tick restores it) instead of letting epoll spin on it. */
int mainloop_accept(int epfd, int fd, struct mainloop_handler *h, struct accept_guard *g);
/* Watch fd again once its pause is over. Returns the ms until it is, or -1 if not paused. */
int mainloop_accept_tick(int epfd, int fd, struct mainloop_handler *h, struct accept_guard *g);

#endif
