/* sd_notify(3)'s protocol, spoken directly (lb/notify.h). */
#include "lb/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lb/log.h"

static int notify_fd = -1;
static bool notify_failed_logged;

int notify_open(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t len;

	if (!path || !*path)
		return 0;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sun.sun_path)) {
		log_warn("NOTIFY_SOCKET=%s: not a socket path; systemd will not hear from lb",
			 path);
		unsetenv("NOTIFY_SOCKET");
		return -EINVAL;
	}
	memcpy(sun.sun_path, path, len);
	if (path[0] == '@')
		sun.sun_path[0] = '\0'; /* the abstract namespace */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
		int err = errno;
		log_warn("NOTIFY_SOCKET=%s: %s; systemd will not hear from lb", path,
			 strerror(err));
		if (fd >= 0)
			close(fd);
		unsetenv("NOTIFY_SOCKET");
		return -err;
	}
	notify_fd = fd;
	unsetenv("NOTIFY_SOCKET");
	return 0;
}

void notify_send(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (notify_fd < 0)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	if (send(notify_fd, msg, (size_t)n, MSG_NOSIGNAL) < 0 && !notify_failed_logged) {
		notify_failed_logged = true;
		log_warn("cannot notify systemd: %s", strerror(errno));
	}
}

void notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	notify_send("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
		    (unsigned long long)ts.tv_sec * 1000000ULL +
			(unsigned long long)ts.tv_nsec / 1000);
}

void notify_close(void)
{
	if (notify_fd >= 0)
		close(notify_fd);
	notify_fd = -1;
}
