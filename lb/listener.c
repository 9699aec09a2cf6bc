/* Listener sockets and admission counters; see listener.h. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lb/listener.h"

/* Accept backlog: the kernel clamps it to net.core.somaxconn. */
#define LISTEN_BACKLOG 4096

const char *listener_reject_name(enum listener_reject r)
{
	static const char *const names[LISTENER_REJECT_COUNT] = {
	    [LISTENER_REJECT_ACL] = "acl",
	    [LISTENER_REJECT_MAX_CONNS] = "max_conns",
	    [LISTENER_REJECT_NO_BACKEND] = "no_backend",
	};
	return r < LISTENER_REJECT_COUNT ? names[r] : "unknown";
}

bool listener_take(struct listener *l)
{
	int max = l->cfg->max_conns;
	int now = atomic_fetch_add_explicit(&l->active, 1, memory_order_relaxed) + 1;
	if (max > 0 && now > max) {
		atomic_fetch_sub_explicit(&l->active, 1, memory_order_relaxed);
		return false;
	}
	return true;
}

void listener_release(struct listener *l)
{
	atomic_fetch_sub_explicit(&l->active, 1, memory_order_relaxed);
}

int listener_socket(const struct lb_addr *addr, int type, const char **why)
{
	int one = 1;
	int fd = socket(addr->ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*why = "socket";
		return -errno;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
		*why = "setsockopt";
		goto fail;
	}
	/* "[::]:port" means IPv6 only, so that "0.0.0.0:port" can be a separate listener. */
	if (addr->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) {
		*why = "setsockopt";
		goto fail;
	}
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0) {
		*why = "bind";
		goto fail;
	}
	if (type == SOCK_STREAM && listen(fd, LISTEN_BACKLOG) < 0) {
		*why = "listen";
		goto fail;
	}
	return fd;
fail:;
	int err = -errno;
	close(fd);
	return err;
}
