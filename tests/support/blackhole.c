/* A loopback listener whose accept queue is full, so that connects to it hang in SYN_SENT:
 * what tests of connect timeouts need, without any firewall rule or unroutable address. */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

/* How long a filler connect may take before we call the queue full. */
#define FILL_WAIT_MS 200
/* Backlog 0 queues one connection; a few more attempts cover kernels that queue two. */
#define MAX_FILLERS 8

/* Connect a throw-away client to port; true if the handshake completes within ms. */
static bool connect_completes(int port, int ms, int *fd_out)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	*fd_out = fd;
	if (fd < 0)
		return false;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
		return true;
	if (errno != EINPROGRESS)
		return false;
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	int err = 0;
	socklen_t elen = sizeof(err);
	if (poll(&pfd, 1, ms) != 1)
		return false;
	return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0;
}

int tb_blackhole_listener(int *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int fillers[MAX_FILLERS], nfill = 0;
	bool full = false;

	if (fd < 0)
		return -1;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* backlog 0: the accept queue holds one connection, and nobody ever accepts */
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 0) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(sin.sin_port);
	/* Fill the queue. Closed fillers stay queued (unaccepted), so the queue stays full and
	 * the kernel drops further SYNs: connects hang until their timeout. */
	while (nfill < MAX_FILLERS) {
		int cfd;
		bool ok = connect_completes(*port, FILL_WAIT_MS, &cfd);
		if (cfd >= 0)
			fillers[nfill++] = cfd;
		if (!ok) {
			full = true;
			break;
		}
	}
	for (int i = 0; i < nfill; i++)
		close(fillers[i]);
	if (!full) {
		close(fd);
		return -1;
	}
	return fd;
}
