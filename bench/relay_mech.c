/* Relay-mechanism micro-benchmark behind docs/ARCHITECTURE.md: moves a TCP stream
 * sender -> relay -> receiver over loopback, the relay using either splice(2) through a
 * pipe (what lb does) or read/write through a user-space buffer (what a copying proxy does),
 * and reports throughput and the relay thread's CPU seconds per GB.
 * usage: relay_mech splice|copy [MiB] [chunk-KiB] */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static size_t total, chunk;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, len) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &len) < 0)
		die("listen");
	*a = socket(AF_INET, SOCK_STREAM, 0);
	if (*a < 0 || connect(*a, (struct sockaddr *)&sa, len) < 0)
		die("connect");
	*b = accept(l, NULL, NULL);
	if (*b < 0)
		die("accept");
	close(l);
}

static void *sender(void *arg)
{
	int fd = *(int *)arg;
	char *buf = calloc(1, chunk);
	for (size_t sent = 0; sent < total;) {
		ssize_t n = write(fd, buf, chunk);
		if (n <= 0)
			die("send");
		sent += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	free(buf);
	return NULL;
}

static void *receiver(void *arg)
{
	int fd = *(int *)arg;
	char *buf = malloc(chunk);
	while (read(fd, buf, chunk) > 0)
		;
	free(buf);
	return NULL;
}

static double now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Blocking sockets keep the comparison about the copy, not the event loop. */
static void relay_splice(int src, int dst)
{
	int p[2];
	if (pipe(p) < 0)
		die("pipe");
	fcntl(p[1], F_SETPIPE_SZ, 256 * 1024);
	for (;;) {
		ssize_t n = splice(src, NULL, p[1], NULL, chunk, SPLICE_F_MOVE);
		if (n <= 0)
			break;
		while (n > 0) {
			ssize_t m = splice(p[0], NULL, dst, NULL, (size_t)n, SPLICE_F_MOVE);
			if (m <= 0)
				die("splice out");
			n -= m;
		}
	}
}

static void relay_copy(int src, int dst)
{
	char *buf = malloc(chunk);
	for (;;) {
		ssize_t n = read(src, buf, chunk);
		if (n <= 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t m = write(dst, buf + off, (size_t)(n - off));
			if (m <= 0)
				die("write");
			off += m;
		}
	}
	free(buf);
}

int main(int argc, char **argv)
{
	if (argc < 2 || (strcmp(argv[1], "splice") && strcmp(argv[1], "copy"))) {
		fprintf(stderr, "usage: relay_mech splice|copy [MiB] [chunk-KiB]\n");
		return 2;
	}
	total = (size_t)(argc > 2 ? atol(argv[2]) : 4096) << 20;
	chunk = (size_t)(argc > 3 ? atol(argv[3]) : 256) << 10;
	int s_out, r_in, r_out, d_in;
	tcp_pair(&s_out, &r_in);
	tcp_pair(&r_out, &d_in);
	pthread_t ts, tr;
	pthread_create(&ts, NULL, sender, &s_out);
	pthread_create(&tr, NULL, receiver, &d_in);
	double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID);
	if (!strcmp(argv[1], "splice"))
		relay_splice(r_in, r_out);
	else
		relay_copy(r_in, r_out);
	double cpu = now(CLOCK_THREAD_CPUTIME_ID) - c0, wall = now(CLOCK_MONOTONIC) - w0;
	shutdown(r_out, SHUT_WR);
	pthread_join(ts, NULL);
	pthread_join(tr, NULL);
	double gb = total / 1e9;
	printf("%s: %.2f Gbit/s, relay CPU %.3f s/GB\n", argv[1], gb * 8 / wall, cpu / gb);
	return 0;
}
