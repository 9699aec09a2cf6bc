/* fleet-client: the client side of tests/fleet/test_fleet.sh. It connects to one destination
 * from many source addresses (bound before connect, so that an ECMP router hashes each
 * source its own way) and reports which backend answered, or how connections failed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* lb-testsrv's tags are short names; a longer line is not a tag. */
#define TAG_MAX 64
/* Upper bounds that keep a typo from running for hours. */
#define MAX_SOURCES  65536
#define MAX_DURATION 600000

enum outcome {
	OUT_OK,
	OUT_REFUSED,	 /* ECONNREFUSED, or closed before a tag: nobody served it */
	OUT_RESET,	 /* reset after the connection was established */
	OUT_TIMEOUT,	 /* connect or read took longer than --timeout */
	OUT_UNREACHABLE, /* no route, host unreachable, any other error */
	OUT_COUNT,
};

static const char *const outcome_names[OUT_COUNT] = {"ok", "refused", "reset", "timeout",
						     "unreachable"};

struct options {
	const char *mode;
	struct sockaddr_in dst;
	struct in_addr src;
	unsigned count;
	int timeout_ms;
	int duration_ms;
	int every_ms;
};

struct result {
	enum outcome outcome;
	int err;       /* errno behind a failure, 0 if none */
	int after_tag; /* a reset that came after the tag was read */
	char tag[TAG_MAX];
};

/* set by SIGTERM/SIGINT: a stream stops after its current connection and prints totals */
static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(FILE *f)
{
	static const char text[] =
	    "usage: fleet-client tags   --dst IP:PORT --src IP --count N [--timeout MS]\n"
	    "       fleet-client stream --dst IP:PORT --src IP --count N --duration MS --every MS\n"
	    "                           [--timeout MS]\n"
	    "  tags:   one connection from each of N sources (IP, IP+1, ...); prints one line\n"
	    "          \"SRC TAG\" per source, or \"SRC !OUTCOME:ERRNO\"; exit 1 if any got no "
	    "tag.\n"
	    "  stream: for --duration, a new connection every --every ms from the next source\n"
	    "          in turn: read the tag, echo one line, close. Prints one line of totals;\n"
	    "          each failure also goes to stderr with its time. SIGTERM ends it early.\n";
	fputs(text, f);
}

static int parse_ipv4_port(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((unsigned short)port);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	if (argc < 2)
		return -1;
	o->mode = argv[1];
	if (strcmp(o->mode, "tags") != 0 && strcmp(o->mode, "stream") != 0)
		return -1;
	int have_dst = 0, have_src = 0;
	for (int i = 2; i < argc; i += 2) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		long v;
		if (!val)
			return -1;
		if (strcmp(opt, "--dst") == 0) {
			if (parse_ipv4_port(val, &o->dst) < 0)
				return -1;
			have_dst = 1;
		} else if (strcmp(opt, "--src") == 0) {
			if (inet_pton(AF_INET, val, &o->src) != 1)
				return -1;
			have_src = 1;
		} else if (strcmp(opt, "--count") == 0 && parse_int(val, 1, MAX_SOURCES, &v) == 0) {
			o->count = (unsigned)v;
		} else if (strcmp(opt, "--timeout") == 0 && parse_int(val, 1, 60000, &v) == 0) {
			o->timeout_ms = (int)v;
		} else if (strcmp(opt, "--duration") == 0 &&
			   parse_int(val, 1, MAX_DURATION, &v) == 0) {
			o->duration_ms = (int)v;
		} else if (strcmp(opt, "--every") == 0 && parse_int(val, 1, 60000, &v) == 0) {
			o->every_ms = (int)v;
		} else {
			return -1;
		}
	}
	if (!have_dst || !have_src || o->count == 0)
		return -1;
	if (strcmp(o->mode, "stream") == 0 && (o->duration_ms == 0 || o->every_ms == 0))
		return -1;
	return 0;
}

static struct in_addr nth_source(const struct options *o, unsigned i)
{
	struct in_addr a = {.s_addr = htonl(ntohl(o->src.s_addr) + i)};
	return a;
}

static enum outcome classify(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return OUT_REFUSED;
	case ECONNRESET:
	case EPIPE:
		return OUT_RESET;
	case ETIMEDOUT:
		return OUT_TIMEOUT;
	default:
		return OUT_UNREACHABLE;
	}
}

/* Waits for fd to become ready for events until deadline; 0, or -ETIMEDOUT. */
static int wait_fd(int fd, short events, long long deadline)
{
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = events};
		int n = poll(&p, 1, (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static int connect_from(const struct options *o, struct in_addr src, long long deadline)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	/* choose the source port at connect time, by the whole 4-tuple */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = src};
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	if (connect(fd, (const struct sockaddr *)&o->dst, sizeof(o->dst)) < 0) {
		if (errno != EINPROGRESS)
			goto fail;
		int rc = wait_fd(fd, POLLOUT, deadline);
		if (rc < 0) {
			close(fd);
			return rc;
		}
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			close(fd);
			return -err;
		}
	}
	return fd;
fail:;
	int err = errno;
	close(fd);
	return -err;
}

/* Reads one line into buf (without the newline); 0 = a line, 1 = EOF first, -errno. */
static int read_line(int fd, char *buf, size_t size, long long deadline)
{
	size_t len = 0;
	while (len + 1 < size) {
		ssize_t n = recv(fd, buf + len, 1, 0);
		if (n == 1) {
			if (buf[len] == '\n') {
				buf[len] = '\0';
				return 0;
			}
			len++;
			continue;
		}
		if (n == 0)
			return 1;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		int rc = wait_fd(fd, POLLIN, deadline);
		if (rc < 0)
			return rc;
	}
	return -EMSGSIZE;
}

static int write_all(int fd, const char *s, size_t len, long long deadline)
{
	while (len > 0) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
		if (n > 0) {
			s += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		int rc = wait_fd(fd, POLLOUT, deadline);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* One connection: read the tag; with echo, then send a line and expect it back. */
static void one_connection(const struct options *o, struct in_addr src, int echo, struct result *r)
{
	long long deadline = now_ms() + o->timeout_ms;
	memset(r, 0, sizeof(*r));
	int fd = connect_from(o, src, deadline);
	if (fd < 0) {
		r->err = -fd;
		r->outcome = classify(r->err);
		return;
	}
	int rc = read_line(fd, r->tag, sizeof(r->tag), deadline);
	if (rc == 0 && echo) {
		char back[TAG_MAX];
		static const char ping[] = "ping\n";
		r->after_tag = 1;
		rc = write_all(fd, ping, sizeof(ping) - 1, deadline);
		if (rc == 0)
			rc = read_line(fd, back, sizeof(back), deadline);
		if (rc == 0 && strcmp(back, "ping") != 0)
			rc = -EPROTO;
	}
	close(fd);
	if (rc == 0) {
		r->outcome = OUT_OK;
	} else if (rc == 1) {
		/* closed before a tag: lb had nowhere to send it; after it: the relay broke */
		r->outcome = r->after_tag ? OUT_RESET : OUT_REFUSED;
	} else {
		r->err = -rc;
		r->outcome = classify(r->err);
	}
}

static int run_tags(const struct options *o)
{
	int failed = 0;
	for (unsigned i = 0; i < o->count; i++) {
		struct in_addr src = nth_source(o, i);
		char ip[INET_ADDRSTRLEN];
		struct result r;
		one_connection(o, src, 0, &r);
		inet_ntop(AF_INET, &src, ip, sizeof(ip));
		if (r.outcome == OUT_OK) {
			printf("%s %s\n", ip, r.tag);
		} else {
			printf("%s !%s:%s\n", ip, outcome_names[r.outcome],
			       r.err ? strerrorname_np(r.err) : "EOF");
			failed = 1;
		}
	}
	return failed;
}

static void sleep_until(long long t)
{
	long long left = t - now_ms();
	if (left <= 0)
		return;
	struct timespec ts = {.tv_sec = left / 1000, .tv_nsec = (left % 1000) * 1000000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop_requested)
		;
}

static const char *reset_when(const struct result *r)
{
	if (r->outcome != OUT_RESET)
		return "";
	return r->after_tag ? " after the tag" : " before the tag";
}

static int run_stream(const struct options *o)
{
	unsigned long counts[OUT_COUNT] = {0};
	unsigned long resets_before_tag = 0;
	long long start = now_ms(), end = start + o->duration_ms;
	unsigned i = 0;
	struct sigaction sa = {.sa_handler = on_stop};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	for (long long next = start; next < end && !stop_requested; next += o->every_ms) {
		sleep_until(next);
		if (stop_requested)
			break;
		struct in_addr src = nth_source(o, i++ % o->count);
		struct result r;
		one_connection(o, src, 1, &r);
		counts[r.outcome]++;
		if (r.outcome == OUT_OK)
			continue;
		if (r.outcome == OUT_RESET && !r.after_tag)
			resets_before_tag++;
		char ip[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &src, ip, sizeof(ip));
		fprintf(stderr, "fleet-client: t=%lldms %s: %s (%s)%s\n", next - start, ip,
			outcome_names[r.outcome], r.err ? strerrorname_np(r.err) : "EOF",
			reset_when(&r));
		/* a slow failure (timeout) must not turn into a burst of catch-up connections */
		if (now_ms() > next + o->every_ms)
			next = now_ms() - o->every_ms;
	}
	unsigned long total = 0;
	for (int k = 0; k < OUT_COUNT; k++)
		total += counts[k];
	printf("connections=%lu ok=%lu refused=%lu reset=%lu reset_before_tag=%lu timeout=%lu "
	       "unreachable=%lu\n",
	       total, counts[OUT_OK], counts[OUT_REFUSED], counts[OUT_RESET], resets_before_tag,
	       counts[OUT_TIMEOUT], counts[OUT_UNREACHABLE]);
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = {.timeout_ms = 2000};
	if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		usage(stdout);
		return 0;
	}
	if (parse_args(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	return strcmp(o.mode, "tags") == 0 ? run_tags(&o) : run_stream(&o);
}
