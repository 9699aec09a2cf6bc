/* Integration: UDP sessions through the real lb binary on the engine named by $LB_ENGINE —
 * replies reach the right client with the right payload, sessions spread by the algorithm and
 * stick to one backend, end after `idle`; empty and 65,507-byte datagrams; ACL drops counted;
 * max_conns; failover from a dead backend; kill; reload keeps sessions; IPv6 and a wildcard
 * listener answering from the address the client used; and real DNS (dnsmasq, queried with
 * dig) behind lb. Backends are the in-process TB_UDP_* test backends on loopback. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <net/if.h>
#include <netinet/udp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "support.h"

#define LB_WORKERS     2
#define TEST_TIMEOUT_S 60
#define REPLY_MS       2000 /* a reply on loopback takes well under a millisecond */
#define CLIENTS	       50
#define DATAGRAMS      100
#define CONVERGE_MS    5000
#define FAST_UDP_HEALTH                                                                            \
	"{\"type\":\"udp\",\"send\":\"ping\",\"expect\":\"ping\",\"interval\":\"100ms\","          \
	"\"timeout\":\"200ms\",\"rise\":1,\"fall\":1}"

static struct t_harness h;
static pid_t dns[2]; /* the dnsmasq servers of the DNS test */

/* ---- lb ---- */

/* lb with one udp listener "u" on listen_host:port (port chosen here) in front of pool "p"
 * holding the suite's backends; extra: more listener members, or NULL. */
static void start_lb(const char *listen_host, const char *algorithm, const char *health,
		     const char *extra)
{
	json_t *cfg = t_cfg_new(LB_WORKERS);

	h.port = t_free_port();
	ck_assert_int_gt(h.port, 0);
	t_cfg_set(cfg, "\"log\":{\"level\":\"debug\",\"access\":true}");
	t_cfg_set(t_cfg_listener(cfg, "u", "udp", listen_host, h.port, "p"), "%s",
		  extra ? extra : "");
	t_cfg_backends(t_cfg_pool(cfg, "p", algorithm, health ? health : T_HEALTH_NONE), &h.be);
	/* UDP sockets have no LISTEN state to wait for: lb logs "started" once every worker
	 * watches its sockets. */
	t_harness_start(&h, cfg, " started: ");
}

/* The value of one exact series ("name{labels}") in lb's metrics, or -1. */
static long long metric(const char *series)
{
	char *out = NULL;
	long long v = -1;

	if (t_lbctl(h.sock, &out, NULL, "metrics", NULL) == 0 && out) {
		size_t n = strlen(series);
		for (char *line = out; line && *line; line = strchr(line, '\n')) {
			line += *line == '\n';
			if (strncmp(line, series, n) == 0 && line[n] == ' ') {
				v = strtoll(line + n + 1, NULL, 10);
				break;
			}
		}
	}
	free(out);
	return v;
}

static bool wait_metric(const char *series, long long want, int timeout_ms)
{
	uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
	while (t_now_ms() < deadline) {
		if (metric(series) == want)
			return true;
		usleep(50 * 1000);
	}
	return false;
}

/* ---- clients ---- */

/* A UDP socket bound to src (an IPv4 or IPv6 literal) on an ephemeral port. */
static int client(const char *src)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

	if (inet_pton(AF_INET, src, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		len = sizeof(*s4);
	} else {
		ck_assert_int_eq(inet_pton(AF_INET6, src, &s6->sin6_addr), 1);
		s6->sin6_family = AF_INET6;
		len = sizeof(*s6);
	}
	int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, len), 0);
	int size = 1 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	return fd;
}

/* Send len bytes to dst:port (dst an IPv4 or IPv6 literal). */
static bool send_to(int fd, const char *dst, int port, const void *buf, size_t len)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

	if (inet_pton(AF_INET, dst, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		sl = sizeof(*s4);
	} else {
		inet_pton(AF_INET6, dst, &s6->sin6_addr);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*s6);
	}
	return sendto(fd, buf, len, 0, (struct sockaddr *)&ss, sl) == (ssize_t)len;
}

/* One datagram within timeout_ms: its length (0 is a valid, empty datagram), -1 on timeout.
 * from (may be NULL) receives the sender's address as text. */
static ssize_t recv_one(int fd, void *buf, size_t len, int timeout_ms, char *from, size_t flen)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (poll(&p, 1, timeout_ms) != 1)
		return -1;
	ssize_t n = recvfrom(fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&ss, &sl);
	if (n >= 0 && from) {
		char host[INET6_ADDRSTRLEN] = "?";
		if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host,
				  sizeof(host));
		else
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host,
				  sizeof(host));
		snprintf(from, flen, "%s", host);
	}
	return n;
}

/* A TB_UDP_TAGGED reply "<name>\n<payload>": the backend's index in h.be (-1 if unknown)
 * and whether the payload is want. */
static int tagged_reply(const char *buf, ssize_t n, const char *want, bool *payload_ok)
{
	const char *nl = n > 0 ? memchr(buf, '\n', (size_t)n) : NULL;
	char tag[64];

	*payload_ok = false;
	if (!nl || nl - buf >= (ptrdiff_t)sizeof(tag))
		return -1;
	memcpy(tag, buf, (size_t)(nl - buf));
	tag[nl - buf] = '\0';
	size_t plen = (size_t)(n - (nl + 1 - buf));
	*payload_ok = plen == strlen(want) && memcmp(nl + 1, want, plen) == 0;
	return t_backends_index(&h.be, tag);
}

/* Send want from fd to lb and return the index of the tagged backend that answered, or -1
 * (no reply within timeout_ms, or a wrong payload). */
static int ask(int fd, const char *want, int timeout_ms)
{
	char buf[512];
	bool ok;

	if (!send_to(fd, "127.0.0.1", h.port, want, strlen(want)))
		return -1;
	ssize_t n = recv_one(fd, buf, sizeof(buf), timeout_ms, NULL, 0);
	int idx = tagged_reply(buf, n, want, &ok);
	return ok ? idx : -1;
}

static void add_tagged(size_t n)
{
	static const char *const names[] = {"u1", "u2", "u3", "u4"};
	t_backends_add_n(&h.be, TB_UDP_TAGGED, names, n);
}

/* ---- tests ---- */

START_TEST(test_sessions_spread_stick_and_expire_after_idle)
{
	static char buf[CLIENTS][512];
	int fds[CLIENTS], owner[CLIENTS];
	unsigned per_backend[3] = {0};

	add_tagged(3);
	start_lb("127.0.0.1", "round_robin", NULL, "\"timeouts\":{\"idle\":\"1s\"}");
	for (int c = 0; c < CLIENTS; c++) {
		fds[c] = client("127.0.0.1");
		owner[c] = -1;
	}
	/* Rounds: every client sends one datagram, then every reply is read and checked. */
	for (int d = 0; d < DATAGRAMS; d++) {
		for (int c = 0; c < CLIENTS; c++) {
			char msg[64];
			snprintf(msg, sizeof(msg), "client %d datagram %d", c, d);
			t_expect(&h, send_to(fds[c], "127.0.0.1", h.port, msg, strlen(msg)),
				 "send failed: %s", strerror(errno));
		}
		for (int c = 0; c < CLIENTS; c++) {
			char msg[64];
			bool ok;
			snprintf(msg, sizeof(msg), "client %d datagram %d", c, d);
			ssize_t n = recv_one(fds[c], buf[c], sizeof(buf[c]), REPLY_MS, NULL, 0);
			t_expect(&h, n >= 0, "client %d: no reply to datagram %d", c, d);
			int idx = tagged_reply(buf[c], n, msg, &ok);
			t_expect(&h, idx >= 0 && ok, "client %d: wrong reply to datagram %d: %.*s",
				 c, d, (int)n, buf[c]);
			if (owner[c] < 0) {
				owner[c] = idx;
				per_backend[idx]++;
			}
			t_expect(&h, owner[c] == idx,
				 "client %d moved from backend %d to %d at datagram %d", c,
				 owner[c], idx, d);
		}
	}
	/* round_robin over 50 sessions: 17/17/16 in some order. */
	for (int i = 0; i < 3; i++)
		t_expect(&h, per_backend[i] >= 16 && per_backend[i] <= 17,
			 "round robin gave sessions %u/%u/%u", per_backend[0], per_backend[1],
			 per_backend[2]);
	for (int i = 0; i < 3; i++)
		t_expect(&h, tb_accepted(h.be.tb[i]) == per_backend[i] * DATAGRAMS,
			 "backend %d saw %u datagrams, expected %u", i, tb_accepted(h.be.tb[i]),
			 per_backend[i] * DATAGRAMS);
	t_expect(&h, metric("lb_udp_sessions_active{listener=\"u\"}") == CLIENTS,
		 "sessions active is not %d", CLIENTS);
	t_expect(&h, metric("lb_listener_connections_total{listener=\"u\"}") == CLIENTS,
		 "listener counted other than %d sessions", CLIENTS);
	/* Idle 1 s: every session ends (and is logged), then a datagram starts a new one. */
	t_expect(&h, wait_metric("lb_udp_sessions_active{listener=\"u\"}", 0, 3000),
		 "sessions did not end after idle");
	t_expect(&h, lb_log_wait(&h.lb, "end=\"idle timeout\"", 1000), "no access log line");
	t_expect(&h, ask(fds[0], "again", REPLY_MS) >= 0, "no reply after the session expired");
	t_expect(&h, metric("lb_listener_connections_total{listener=\"u\"}") == CLIENTS + 1,
		 "the datagram after idle did not start a new session");
	for (int c = 0; c < CLIENTS; c++)
		close(fds[c]);
	t_harness_finish(&h);
}
END_TEST

#define IP_HASH_CLIENTS 24

START_TEST(test_ip_hash_keeps_a_client_ip_on_one_backend_across_sessions)
{
	add_tagged(3);
	start_lb("127.0.0.1", "ip_hash", NULL, NULL);
	/* 24 client IPs, 5 sessions (source ports) each, every one a new session. With 8 IPs
	 * the backends' random ports made a table that put all of them on one backend about
	 * once in 2,000 runs (measured over 4,000 tables: 2); with 24, about once in 10^11. */
	bool used[3] = {false};
	for (int ip = 0; ip < IP_HASH_CLIENTS; ip++) {
		char src[32];
		int first = -1;
		snprintf(src, sizeof(src), "127.0.1.%d", ip + 1);
		/* Open together, so that no two of one IP share a source port (a port the
		 * kernel hands out again would be the same session, not a new one). */
		int fds[5];
		for (int k = 0; k < 5; k++)
			fds[k] = client(src);
		for (int k = 0; k < 5; k++) {
			int got = ask(fds[k], "hi", REPLY_MS);
			close(fds[k]);
			t_expect(&h, got >= 0, "%s session %d: no reply", src, k);
			if (first < 0)
				first = got;
			t_expect(&h, got == first,
				 "%s: session %d went to backend %d, the first to %d", src, k, got,
				 first);
			used[got] = true;
		}
	}
	t_expect(&h, metric("lb_listener_connections_total{listener=\"u\"}") == IP_HASH_CLIENTS * 5,
		 "%d sessions were not counted", IP_HASH_CLIENTS * 5);
	t_expect(&h, used[0] + used[1] + used[2] >= 2, "%d client IPs all hashed to one backend",
		 IP_HASH_CLIENTS);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_a_burst_from_one_client_arrives_in_order)
{
	char buf[512];

	add_tagged(1);
	start_lb("127.0.0.1", "round_robin", NULL, NULL);
	int fd = client("127.0.0.1");
	/* Sent without waiting: lb reads them in batches and sends each session's share of a
	 * batch with one sendmmsg, which must keep their order. */
	for (int i = 0; i < 200; i++) {
		char msg[32];
		snprintf(msg, sizeof(msg), "burst %d", i);
		t_expect(&h, send_to(fd, "127.0.0.1", h.port, msg, strlen(msg)), "send %d failed",
			 i);
	}
	for (int i = 0; i < 200; i++) {
		char msg[32];
		bool ok;
		snprintf(msg, sizeof(msg), "burst %d", i);
		ssize_t n = recv_one(fd, buf, sizeof(buf), REPLY_MS, NULL, 0);
		t_expect(&h, n > 0, "reply %d missing", i);
		t_expect(&h, tagged_reply(buf, n, msg, &ok) == 0 && ok,
			 "reply %d out of order: %.*s", i, (int)n, buf);
	}
	close(fd);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_empty_and_largest_datagrams_pass_intact)
{
	static uint8_t big[65507], back[65536];
	char from[64];

	t_backends_add(&h.be, TB_UDP_ECHO, "echo");
	start_lb("127.0.0.1", "round_robin", NULL, NULL);
	int fd = client("127.0.0.1");
	int size = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	t_expect(&h, send_to(fd, "127.0.0.1", h.port, "", 0), "send of an empty datagram failed");
	ssize_t n = recv_one(fd, back, sizeof(back), REPLY_MS, from, sizeof(from));
	t_expect(&h, n == 0, "empty datagram: got %zd bytes back", n);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + (i >> 8));
	for (int round = 0; round < 3; round++) {
		t_expect(&h, send_to(fd, "127.0.0.1", h.port, big, sizeof(big)),
			 "send of 65507 bytes failed: %s", strerror(errno));
		n = recv_one(fd, back, sizeof(back), REPLY_MS, NULL, 0);
		t_expect(&h, n == (ssize_t)sizeof(big) && memcmp(back, big, sizeof(big)) == 0,
			 "65507-byte datagram %d came back as %zd bytes or changed", round, n);
	}
	close(fd);
	t_harness_finish(&h);
}
END_TEST

/* The sizes of the GSO test's datagrams, repeated: runs of one size that a shorter or a
 * longer datagram ends, and an empty one. */
static const size_t gso_sizes[] = {1000, 1000, 1000, 500, 1000, 1000, 1200, 1200, 0, 1000, 7};
#define GSO_DGRAMS 440

static void gso_fill(uint8_t *buf, size_t len, int seq)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seq * 31 + (int)i);
}

/* A client of lb's listener (to) with UDP_GRO on: it receives GSO messages as they were sent
 * (loopback does not split them for a socket that asks for them whole), so a test sees how
 * lb sent them. */
static int gro_client(struct sockaddr_in *to)
{
	int fd = client("127.0.0.1"), one = 1;
	ck_assert_int_eq(setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)), 0);
	*to = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)h.port)};
	inet_pton(AF_INET, "127.0.0.1", &to->sin_addr);
	return fd;
}

/* Send len bytes of buf from fd to to as one GSO message of seg-byte datagrams (a QUIC
 * stack's way); on loopback a socket with UDP_GRO, as lb's listener, receives it whole. */
static bool gso_send(int fd, struct sockaddr_in *to, const void *buf, size_t len, uint16_t seg)
{
	_Alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(uint16_t))] = {0};
	struct iovec v = {(void *)buf, len};
	struct msghdr mh = {.msg_name = to,
			    .msg_namelen = sizeof(*to),
			    .msg_iov = &v,
			    .msg_iovlen = 1,
			    .msg_control = ctl,
			    .msg_controllen = sizeof(ctl)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_UDP;
	cm->cmsg_type = UDP_SEGMENT;
	cm->cmsg_len = CMSG_LEN(sizeof(seg));
	memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
	return sendmsg(fd, &mh, 0) == (ssize_t)len;
}

static size_t gso_test_len(int i)
{
	return gso_sizes[(size_t)i % (sizeof(gso_sizes) / sizeof(*gso_sizes))];
}

/* Receive one message from fd (UDP_GRO on: it may carry several datagrams), split it and
 * check each datagram against out[*got...] (of the lengths len(i), total in all). How many
 * datagrams it carried, 0 if nothing came within REPLY_MS. */
static int gso_take(int fd, uint8_t (*out)[1200], size_t (*len_of)(int), int total, int *got)
{
	static uint8_t in[65536];
	_Alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(int))];
	struct iovec v = {in, sizeof(in)};
	struct msghdr mh = {
	    .msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
	struct pollfd p = {.fd = fd, .events = POLLIN};

	if (poll(&p, 1, REPLY_MS) != 1)
		return -1;
	ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
	t_expect(&h, n >= 0, "recvmsg: %s", strerror(errno));
	size_t seg = (size_t)n, off = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
			int size;
			memcpy(&size, CMSG_DATA(cm), sizeof(size));
			seg = (size_t)size;
		}
	}
	int count = 0;
	do {
		size_t len = (size_t)n - off < seg ? (size_t)n - off : seg;
		size_t want = len_of(*got);
		t_expect(&h, *got < total && len == want && memcmp(in + off, out[*got], len) == 0,
			 "datagram %d: %zu bytes (want %zu) or changed", *got, len, want);
		++*got;
		++count;
		off += len;
	} while (off < (size_t)n);
	return count;
}

START_TEST(test_runs_of_equal_datagrams_go_out_as_gso_and_arrive_whole)
{
	static uint8_t out[GSO_DGRAMS][1200];
	struct mmsghdr mm[40];
	struct iovec iov[40];
	int got = 0, coalesced = 0;

	t_backends_add(&h.be, TB_UDP_ECHO, "echo");
	start_lb("127.0.0.1", "round_robin", NULL, NULL);
	struct sockaddr_in to;
	int fd = gro_client(&to);
	/* Bursts of 40, each answered before the next: the echo backend's socket buffer holds
	 * one burst, not all of them. */
	for (int i = 0; i < GSO_DGRAMS; i += 40) {
		for (int j = 0; j < 40; j++) {
			size_t len =
			    gso_sizes[(size_t)(i + j) % (sizeof(gso_sizes) / sizeof(*gso_sizes))];
			gso_fill(out[i + j], len, i + j);
			iov[j] = (struct iovec){out[i + j], len};
			mm[j] = (struct mmsghdr){.msg_hdr = {.msg_name = &to,
							     .msg_namelen = sizeof(to),
							     .msg_iov = &iov[j],
							     .msg_iovlen = 1}};
		}
		t_expect(&h, sendmmsg(fd, mm, 40, 0) == 40, "sendmmsg: %s", strerror(errno));
		while (got < i + 40) {
			int c = gso_take(fd, out, gso_test_len, GSO_DGRAMS, &got);
			if (c == 0)
				break;
			coalesced += c > 1;
		}
	}
	t_expect(&h, got == GSO_DGRAMS, "%d of %d datagrams came back", got, GSO_DGRAMS);
	t_expect(&h, coalesced > 0, "no reply came as one GSO message: lb sent each alone");
	close(fd);
	t_harness_finish(&h);
}
END_TEST

/* The GRO test's datagrams: per round 61 in one GSO message, 60 of 1,000 bytes and one
 * of 500; more than the 32 one recvmmsg of lb takes. */
#define GRO_SEGS   61
#define GRO_ROUNDS 3
static size_t gro_test_len(int i)
{
	return i % GRO_SEGS == GRO_SEGS - 1 ? 500 : 1000;
}

/* A client that sends runs of datagrams with UDP GSO (a QUIC stack does) to lb, in front of
 * a backend that echoes each message as it came. Every datagram must come back whole and in
 * order. The most datagrams one reply message carried. */
static int gro_run(void)
{
	static uint8_t out[GRO_SEGS * GRO_ROUNDS][1200], buf[GRO_SEGS * 1000];
	int got = 0, most = 0;

	t_backends_add(&h.be, TB_UDP_ECHO_GRO, "echo");
	start_lb("127.0.0.1", "round_robin", NULL, NULL);
	struct sockaddr_in to;
	int fd = gro_client(&to);
	for (int r = 0; r < GRO_ROUNDS; r++) {
		size_t len = 0;
		for (int j = 0; j < GRO_SEGS; j++) {
			int i = r * GRO_SEGS + j;
			gso_fill(out[i], gro_test_len(i), i);
			memcpy(buf + len, out[i], gro_test_len(i));
			len += gro_test_len(i);
		}
		t_expect(&h, gso_send(fd, &to, buf, len, 1000), "GSO sendmsg: %s", strerror(errno));
		while (got < (r + 1) * GRO_SEGS) {
			int c = gso_take(fd, out, gro_test_len, GRO_SEGS * GRO_ROUNDS, &got);
			if (c == 0)
				break;
			most = c > most ? c : most;
		}
	}
	t_expect(&h, got == GRO_SEGS * GRO_ROUNDS, "%d of %d datagrams came back", got,
		 GRO_SEGS * GRO_ROUNDS);
	t_expect(&h, tb_accepted(h.be.tb[0]) == GRO_SEGS * GRO_ROUNDS,
		 "the backend counted %u datagrams, not %d", tb_accepted(h.be.tb[0]),
		 GRO_SEGS * GRO_ROUNDS);
	close(fd);
	return most;
}

/* lb receives each run whole (UDP_GRO) and sends it on whole: the client must get a reply
 * carrying more datagrams than one recvmmsg of lb's takes (32), which only a GRO receive
 * can produce. */
START_TEST(test_runs_a_client_sent_with_gso_are_received_and_sent_on_whole)
{
	int most = gro_run();
	t_expect(&h, most > 32,
		 "at most %d datagrams came back in one message: lb did not receive the runs "
		 "whole (GRO)",
		 most);
	t_harness_finish(&h);
}
END_TEST

/* With GSO off (LB_UDP_GSO=0), lb splits the runs it received whole into single datagrams:
 * every one must arrive, one by one. */
START_TEST(test_runs_received_whole_are_split_when_gso_is_off)
{
	setenv("LB_UDP_GSO", "0", 1);
	int most = gro_run();
	t_expect(&h, most == 1, "with LB_UDP_GSO=0 a reply carried %d datagrams", most);
	t_harness_finish(&h);
}
END_TEST

/* Move this test's process (single-threaded: Check forked it) into a network namespace of
 * its own whose loopback has a 1,280-byte MTU. False (with a line saying why) where it
 * cannot: not root, or tests not forked. */
static bool small_mtu_namespace(void)
{
	const char *fork = getenv("CK_FORK");
	if (fork && strcmp(fork, "no") == 0) {
		printf("skipped: CK_FORK=no (the test moves its process to another namespace)\n");
		return false;
	}
	if (unshare(CLONE_NEWNET) < 0) {
		printf("skipped: unshare(CLONE_NEWNET): %s\n", strerror(errno));
		return false;
	}
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	ck_assert_int_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	ck_assert_int_eq(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
	ifr.ifr_mtu = 1280;
	ck_assert_int_eq(ioctl(s, SIOCSIFMTU, &ifr), 0);
	close(s);
	return true;
}

/* A GSO send of datagrams larger than the path MTU fails (EINVAL): lb must send them one by
 * one (IP fragments them), not drop them. Each hop has its own pair of addresses (client
 * 127.0.0.2, lb 127.0.0.1, backend 127.0.0.3): IPv4 reassembles fragments by addresses,
 * protocol and IP ID only, and lb's session socket (connected: IDs from its own counter)
 * and the unconnected sockets (IDs from the kernel's counter per address pair) could
 * otherwise both have a datagram with one ID in flight, whose fragments then get mixed or
 * dropped. A network does not do that to a proxy; one address pair for every hop does. */
START_TEST(test_gso_falls_back_when_datagrams_exceed_the_mtu)
{
	static uint8_t out[10][1400], back[2048];
	struct mmsghdr mm[10];
	struct iovec iov[10];

	if (!small_mtu_namespace())
		return;
	struct tbackend *echo = tb_start("127.0.0.3:0", TB_UDP_ECHO, "echo");
	ck_assert_ptr_nonnull(echo);
	h.be.tb[h.be.n++] = echo;
	start_lb("127.0.0.1", "round_robin", NULL, NULL);
	int fd = client("127.0.0.2");
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h.port)};
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	for (int round = 0; round < 5; round++) {
		for (int j = 0; j < 10; j++) {
			memset(out[j], 'a' + round * 10 + j, sizeof(out[j]));
			iov[j] = (struct iovec){out[j], sizeof(out[j])};
			mm[j] = (struct mmsghdr){.msg_hdr = {.msg_name = &to,
							     .msg_namelen = sizeof(to),
							     .msg_iov = &iov[j],
							     .msg_iovlen = 1}};
		}
		t_expect(&h, sendmmsg(fd, mm, 10, 0) == 10, "sendmmsg: %s", strerror(errno));
		for (int j = 0; j < 10; j++) {
			ssize_t n = recv_one(fd, back, sizeof(back), REPLY_MS, NULL, 0);
			t_expect(&h,
				 n == (ssize_t)sizeof(out[j]) && memcmp(back, out[j], 1400) == 0,
				 "round %d datagram %d: %zd bytes back, or changed", round, j, n);
		}
	}
	close(fd);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_denied_client_is_dropped_and_counted)
{
	char buf[512];

	add_tagged(1);
	start_lb("127.0.0.1", "round_robin", NULL, "\"deny\":[\"127.0.0.9/32\"]");
	int bad = client("127.0.0.9"), good = client("127.0.0.1");
	for (int i = 0; i < 3; i++)
		t_expect(&h, send_to(bad, "127.0.0.1", h.port, "x", 1), "send failed");
	t_expect(&h, recv_one(bad, buf, sizeof(buf), 300, NULL, 0) < 0,
		 "a denied client got a reply");
	t_expect(&h, ask(good, "hello", REPLY_MS) == 0, "an allowed client got no reply");
	t_expect(&h,
		 wait_metric("lb_listener_rejected_total{listener=\"u\",reason=\"acl\"}", 3, 2000),
		 "3 denied datagrams were not counted as acl rejections");
	t_expect(&h, tb_accepted(h.be.tb[0]) == 1, "the backend saw %u datagrams, expected 1",
		 tb_accepted(h.be.tb[0]));
	close(bad);
	close(good);
	t_harness_finish(&h);
}
END_TEST

/* lb_listener_rejected_total counts datagrams for UDP: a run that lb's listener received
 * whole (GRO) from a denied client counts each of its datagrams, not the run as one. */
START_TEST(test_a_denied_run_counts_each_datagram)
{
	static const char run[20 * 100];
	struct sockaddr_in to = {.sin_family = AF_INET};

	add_tagged(1);
	start_lb("127.0.0.1", "round_robin", NULL, "\"deny\":[\"127.0.0.9/32\"]");
	to.sin_port = htons((uint16_t)h.port);
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	int bad = client("127.0.0.9");
	t_expect(&h, gso_send(bad, &to, run, sizeof(run), 100), "GSO sendmsg: %s", strerror(errno));
	t_expect(&h,
		 wait_metric("lb_listener_rejected_total{listener=\"u\",reason=\"acl\"}", 20, 2000),
		 "a denied run of 20 datagrams counted %lld acl rejections, not 20",
		 metric("lb_listener_rejected_total{listener=\"u\",reason=\"acl\"}"));
	t_expect(&h, tb_accepted(h.be.tb[0]) == 0, "the backend saw %u datagrams, expected 0",
		 tb_accepted(h.be.tb[0]));
	close(bad);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_max_conns_caps_sessions)
{
	char buf[512];
	int fds[3];

	add_tagged(1);
	start_lb("127.0.0.1", "round_robin", NULL, "\"max_conns\":2");
	for (int i = 0; i < 3; i++)
		fds[i] = client("127.0.0.1");
	t_expect(&h, ask(fds[0], "a", REPLY_MS) == 0 && ask(fds[1], "b", REPLY_MS) == 0,
		 "the first two sessions got no reply");
	t_expect(&h, send_to(fds[2], "127.0.0.1", h.port, "c", 1), "send failed");
	t_expect(&h, recv_one(fds[2], buf, sizeof(buf), 300, NULL, 0) < 0,
		 "a third session got through max_conns 2");
	t_expect(&h, metric("lb_listener_rejected_total{listener=\"u\",reason=\"max_conns\"}") == 1,
		 "the refused session was not counted");
	t_expect(&h, ask(fds[0], "a2", REPLY_MS) == 0, "an admitted session stopped working");
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	t_harness_finish(&h);
}
END_TEST

/* max_conns_per_client counts sessions per client IP, whatever their source ports. */
START_TEST(test_max_conns_per_client_caps_sessions_of_one_host)
{
	char buf[512];
	int fds[3];

	add_tagged(1);
	start_lb("127.0.0.1", "round_robin", NULL, "\"max_conns_per_client\":2");
	for (int i = 0; i < 3; i++)
		fds[i] = client("127.0.0.1");
	t_expect(&h, ask(fds[0], "a", REPLY_MS) == 0 && ask(fds[1], "b", REPLY_MS) == 0,
		 "the first two sessions of 127.0.0.1 got no reply");
	t_expect(&h, send_to(fds[2], "127.0.0.1", h.port, "c", 1), "send failed");
	t_expect(&h, recv_one(fds[2], buf, sizeof(buf), 300, NULL, 0) < 0,
		 "a third session of 127.0.0.1 got through max_conns_per_client 2");
	int other = client("127.0.0.2");
	t_expect(&h, ask(other, "d", REPLY_MS) == 0, "127.0.0.2 was refused for 127.0.0.1");
	t_expect(&h,
		 metric("lb_listener_rejected_total{listener=\"u\",reason=\"max_conns_per_"
			"client\"}") == 1,
		 "the refused session was not counted");
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	close(other);
	t_harness_finish(&h);
}
END_TEST

/* One host sending from many source ports must not take the fds that TCP, lbctl and the
 * metrics need: UDP sessions are held to the fd limit less a reserve (issue 13, item 4).
 * lb runs with a limit of 512 here; before the budget the 700 sessions took every fd. */
START_TEST(test_a_udp_flood_cannot_take_the_fds_tcp_and_lbctl_need)
{
	enum { NOFILE = 512, SOURCES = 700 };
	struct rlimit rl = {.rlim_cur = NOFILE, .rlim_max = NOFILE};
	int tport = t_free_port(), sent = 0;

	/* This test's own process (Check forks one per test): lb inherits the limit. */
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	add_tagged(1);
	struct tbackend *echo = tb_start("127.0.0.1:0", TB_ECHO, "t1");
	ck_assert_ptr_nonnull(echo);
	json_t *cfg = t_cfg_new(LB_WORKERS);
	h.port = t_free_port();
	t_cfg_listener(cfg, "u", "udp", "127.0.0.1", h.port, "p");
	t_cfg_listener(cfg, "t", NULL, "127.0.0.1", tport, "tp");
	t_cfg_backends(t_cfg_pool(cfg, "p", NULL, T_HEALTH_NONE), &h.be);
	t_cfg_backend(t_cfg_pool(cfg, "tp", NULL, T_HEALTH_NONE), "t1", tb_address(echo));
	t_harness_start(&h, cfg, " started: ");

	for (int i = 0; i < SOURCES; i++) {
		int fd = client("127.0.0.1"); /* a new source port each time */
		sent += send_to(fd, "127.0.0.1", h.port, "x", 1);
		close(fd);
	}
	usleep(300 * 1000);
	int fds = lb_fd_count(&h.lb);
	long long dropped =
	    metric("lb_listener_rejected_total{listener=\"u\",reason=\"resources\"}");
	fprintf(stderr,
		"test_udp (%s): %d datagrams from new source ports: lb holds %d of %d fds, %lld "
		"dropped for the fd budget\n",
		t_engine(), sent, fds, NOFILE, dropped);
	t_expect(&h, fds > 0 && fds < NOFILE - 32, "lb holds %d of its %d fds", fds, NOFILE);
	t_expect(&h, dropped > 0, "no datagram was dropped for the fd budget");
	t_expect(&h, metric("lb_backend_connect_failures_total{pool=\"p\",backend=\"u1\"}") == 0,
		 "the backend was blamed for lb's fd budget");
	int c = t_connect(NULL, tport);
	t_expect(&h, c >= 0 && t_echo_byte(c, 'z', REPLY_MS), "TCP through lb failed in the flood");
	close(c);
	t_harness_finish(&h);
	tb_free(echo);
}
END_TEST

START_TEST(test_no_usable_backend_drops_and_counts_new_sessions_only)
{
	char buf[512];

	add_tagged(1);
	start_lb("127.0.0.1", "round_robin", NULL, NULL);
	int old = client("127.0.0.1"), late = client("127.0.0.1");
	t_expect(&h, ask(old, "before", REPLY_MS) == 0, "no reply before the disable");
	t_expect(&h, t_lbctl(h.sock, NULL, NULL, "disable", "p/u1", NULL) == 0, "disable failed");
	/* SPEC: a disabled backend takes no new sessions; open ones continue. */
	t_expect(&h, ask(old, "after", REPLY_MS) == 0, "the open session stopped at the disable");
	t_expect(&h, send_to(late, "127.0.0.1", h.port, "x", 1), "send failed");
	t_expect(&h, recv_one(late, buf, sizeof(buf), 300, NULL, 0) < 0,
		 "a new session reached a disabled backend");
	t_expect(&h,
		 wait_metric("lb_listener_rejected_total{listener=\"u\",reason=\"no_backend\"}", 1,
			     2000),
		 "the dropped datagram was not counted as no_backend");
	t_expect(&h, lb_log_wait(&h.lb, "dropping datagram from 127.0.0.1", 1000),
		 "the drop was not logged");
	close(old);
	close(late);
	t_harness_finish(&h);
}
END_TEST

/* Sessions of each backend, from clients that each made one. */
static void open_sessions(int *fds, int *owner, int n)
{
	for (int c = 0; c < n; c++) {
		fds[c] = client("127.0.0.1");
		owner[c] = ask(fds[c], "hello", REPLY_MS);
		t_expect(&h, owner[c] >= 0, "client %d got no reply", c);
	}
}

START_TEST(test_sessions_of_a_dead_backend_move_once_health_marks_it_down)
{
	int fds[6], owner[6];
	char *out = NULL, line[2][128];

	add_tagged(2);
	start_lb("127.0.0.1", "round_robin", FAST_UDP_HEALTH, NULL);
	for (int i = 0; i < 2; i++) {
		snprintf(line[i], sizeof(line[i]), "backend %s (%s) is UP", tb_name(h.be.tb[i]),
			 tb_address(h.be.tb[i]));
		t_expect(&h, lb_log_wait(&h.lb, line[i], CONVERGE_MS), "not logged: %s", line[i]);
	}
	open_sessions(fds, owner, 6);
	tb_stop(h.be.tb[0]);
	snprintf(line[0], sizeof(line[0]), "backend u1 (%s) is DOWN", tb_address(h.be.tb[0]));
	t_expect(&h, lb_log_wait(&h.lb, line[0], CONVERGE_MS), "u1 was not marked down");
	t_expect(&h, t_lbctl(h.sock, &out, NULL, "backends", NULL) == 0 && strstr(out, "down"),
		 "lbctl does not show u1 down: %s", out ? out : "");
	free(out);
	for (int c = 0; c < 6; c++) {
		int got = ask(fds[c], "after", REPLY_MS);
		t_expect(&h, got == 1, "client %d (on backend %d) got %d after u1 went down", c,
			 owner[c], got);
	}
	for (int c = 0; c < 6; c++)
		close(fds[c]);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_sessions_move_after_port_unreachable_without_health_checks)
{
	int fds[6], owner[6];
	char buf[512];

	add_tagged(2);
	start_lb("127.0.0.1", "round_robin", NULL, NULL);
	open_sessions(fds, owner, 6);
	tb_stop(h.be.tb[0]);
	for (int c = 0; c < 6; c++) {
		if (owner[c] == 0) {
			/* This one reaches a closed port; the ICMP answer tells lb. */
			t_expect(&h, send_to(fds[c], "127.0.0.1", h.port, "lost", 4),
				 "send failed");
			t_expect(&h, recv_one(fds[c], buf, sizeof(buf), 300, NULL, 0) < 0,
				 "a reply came from a stopped backend");
		}
		int got = ask(fds[c], "next", REPLY_MS);
		t_expect(&h, got == 1, "client %d (on backend %d): next datagram answered by %d", c,
			 owner[c], got);
	}
	for (int c = 0; c < 6; c++)
		close(fds[c]);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_kill_ends_sessions_and_reload_keeps_them)
{
	int fds[4], owner[4];

	add_tagged(2);
	start_lb("127.0.0.1", "round_robin", NULL, NULL);
	open_sessions(fds, owner, 4);
	t_expect(&h, t_lbctl(h.sock, NULL, NULL, "reload", NULL) == 0, "reload failed");
	for (int c = 0; c < 4; c++)
		t_expect(&h, ask(fds[c], "kept", REPLY_MS) == owner[c],
			 "client %d changed backend across a reload", c);
	t_expect(&h, metric("lb_listener_connections_total{listener=\"u\"}") == 4,
		 "a reload started new sessions");
	t_expect(&h, t_lbctl(h.sock, NULL, NULL, "kill", "p/u1", NULL) == 0, "kill failed");
	t_expect(&h, wait_metric("lb_udp_sessions_active{listener=\"u\"}", 2, 2000),
		 "kill did not end u1's two sessions");
	t_expect(&h, lb_log_wait(&h.lb, "end=\"killed\"", 1000), "no access log line for the kill");
	for (int c = 0; c < 4; c++)
		close(fds[c]);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_ipv6_and_wildcard_listener_reply_from_the_address_used)
{
	char from[64];
	char buf[512];
	bool ok;

	add_tagged(1);
	start_lb("0.0.0.0", "round_robin", NULL, NULL);
	/* A wildcard listener must answer from the address the client sent to. */
	int fd = client("127.0.0.1");
	t_expect(&h, send_to(fd, "127.0.0.5", h.port, "hi", 2), "send failed");
	ssize_t n = recv_one(fd, buf, sizeof(buf), REPLY_MS, from, sizeof(from));
	t_expect(&h, n > 0 && tagged_reply(buf, n, "hi", &ok) == 0 && ok, "no reply via 127.0.0.5");
	t_expect(&h, strcmp(from, "127.0.0.5") == 0, "reply came from %s, not 127.0.0.5", from);
	close(fd);
	t_harness_finish(&h);

	add_tagged(1);
	start_lb("[::]", "round_robin", NULL, NULL); /* wildcard: IPV6_PKTINFO replies */
	fd = client("::1");
	t_expect(&h, send_to(fd, "::1", h.port, "v6", 2), "send failed");
	n = recv_one(fd, buf, sizeof(buf), REPLY_MS, from, sizeof(from));
	t_expect(&h, n > 0 && tagged_reply(buf, n, "v6", &ok) == 0 && ok, "no reply over IPv6");
	t_expect(&h, strcmp(from, "::1") == 0, "reply came from %s", from);
	close(fd);
	t_harness_finish(&h);
}
END_TEST

/* "[::]" with "ipv6only": false also takes IPv4 clients: an IPv4 ACL holds for them (they
 * arrive as ::ffff:a.b.c.d) and each gets its reply from the IPv4 address it sent to. */
START_TEST(test_dual_stack_listener_serves_ipv4_clients_as_ipv4)
{
	char from[64], buf[512];
	bool ok;
	ssize_t n;
	int fd;

	add_tagged(1);
	start_lb("[::]", "round_robin", NULL, "\"ipv6only\":false,\"deny\":[\"127.0.0.9/32\"]");
	fd = client("127.0.0.1");
	t_expect(&h, send_to(fd, "127.0.0.5", h.port, "v4", 2), "send failed");
	n = recv_one(fd, buf, sizeof(buf), REPLY_MS, from, sizeof(from));
	t_expect(&h, n > 0 && tagged_reply(buf, n, "v4", &ok) == 0 && ok, "no reply over IPv4");
	t_expect(&h, strcmp(from, "127.0.0.5") == 0, "reply came from %s, not 127.0.0.5", from);
	close(fd);
	fd = client("::1");
	t_expect(&h, send_to(fd, "::1", h.port, "v6", 2), "send failed");
	n = recv_one(fd, buf, sizeof(buf), REPLY_MS, from, sizeof(from));
	t_expect(&h, n > 0 && tagged_reply(buf, n, "v6", &ok) == 0 && ok, "no reply over IPv6");
	t_expect(&h, strcmp(from, "::1") == 0, "reply came from %s", from);
	close(fd);
	fd = client("127.0.0.9");
	t_expect(&h, send_to(fd, "127.0.0.1", h.port, "no", 2), "send failed");
	t_expect(&h, recv_one(fd, buf, sizeof(buf), 300, NULL, 0) < 0,
		 "denied 127.0.0.9 got a reply");
	t_expect(&h,
		 wait_metric("lb_listener_rejected_total{listener=\"u\",reason=\"acl\"}", 1, 2000),
		 "the denied datagram was not counted");
	close(fd);
	t_harness_finish(&h);
}
END_TEST

/* ---- real DNS ---- */

/* A udp check that sends a DNS query (id 0x1234, ". NS") and passes on any reply echoing
 * the id: JSON "\u0000" escapes carry the header's zero bytes. */
#define DNS_HEALTH                                                                                 \
	"{\"type\":\"udp\",\"interval\":\"200ms\",\"send\":\"\\u00124\\u0001\\u0000\\u0000\\u0001" \
	"\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u0002\\u0000\\u0001\","         \
	"\"expect\":\"\\u00124\"}"

/* dnsmasq on 127.0.0.1:port answering who.lb.test with addr; its pid (killed at the end). */
static pid_t start_dnsmasq(int port, const char *addr)
{
	char portarg[32], rec[64];
	snprintf(portarg, sizeof(portarg), "--port=%d", port);
	snprintf(rec, sizeof(rec), "--host-record=who.lb.test,%s", addr);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, STDOUT_FILENO);
		execlp("dnsmasq", "dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv",
		       "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces",
		       "--pid-file=", "--user=root", portarg, rec, (char *)NULL);
		fprintf(stderr, "exec dnsmasq: %s (make test installs dnsmasq-base)\n",
			strerror(errno));
		_exit(127);
	}
	return pid;
}

/* `dig +short who.lb.test @127.0.0.1 -p port`: the answer line, or "" on failure. */
static void dig(int port, char *ans, size_t len)
{
	char portarg[16];
	char *out = NULL;
	snprintf(portarg, sizeof(portarg), "%d", port);
	char *const argv[] = {"/usr/bin/dig", "+short",	    "+time=1",	   "+tries=2", "-p",
			      portarg,	      "@127.0.0.1", "who.lb.test", "A",	       NULL};
	ans[0] = '\0';
	if (t_run(argv, &out, NULL, 10000) == 0 && out) {
		out[strcspn(out, "\n")] = '\0';
		snprintf(ans, len, "%s", out);
	}
	free(out);
}

static void stop_dns(void)
{
	for (int i = 0; i < 2; i++) {
		if (dns[i] > 0) {
			kill(dns[i], SIGTERM);
			t_wait_exit(dns[i], 2000);
		}
		dns[i] = 0;
	}
}

START_TEST(test_dns_servers_behind_lb_answer_dig)
{
	static const char *const answers[] = {"10.0.0.1", "10.0.0.2"};
	char json[2048], ans[64];
	int dport[2], seen[2] = {0, 0};

	for (int i = 0; i < 2; i++) {
		dport[i] = t_free_port();
		dns[i] = start_dnsmasq(dport[i], answers[i]);
		ck_assert_int_gt(dns[i], 0);
	}
	/* dnsmasq is up once it answers directly. */
	for (int i = 0; i < 2; i++) {
		uint64_t deadline = t_now_ms() + 5000;
		do
			dig(dport[i], ans, sizeof(ans));
		while (strcmp(ans, answers[i]) != 0 && t_now_ms() < deadline);
		if (strcmp(ans, answers[i]) != 0)
			stop_dns();
		ck_assert_msg(strcmp(ans, answers[i]) == 0, "dnsmasq %d did not answer: '%s'", i,
			      ans);
	}
	h.port = t_free_port();
	snprintf(
	    json, sizeof(json),
	    "{\"engine\":\"%s\",\"workers\":%d,\"log\":{\"level\":\"debug\"},"
	    "\"control\":{\"socket\":\"@DIR@/lb.sock\"},"
	    "\"listeners\":[{\"name\":\"dns\",\"protocol\":\"udp\",\"listen\":\"127.0.0.1:%d\","
	    "\"pool\":\"dns\",\"timeouts\":{\"idle\":\"5s\"}}],"
	    "\"pools\":[{\"name\":\"dns\",\"algorithm\":\"round_robin\",\"health\":" DNS_HEALTH
	    ",\"backends\":[{\"name\":\"ns1\",\"address\":"
	    "\"127.0.0.1:%d\"},{\"name\":\"ns2\",\"address\":\"127.0.0.1:%d\"}]}]}",
	    t_engine(), LB_WORKERS, h.port, dport[0], dport[1]);
	int rc = lb_start(&h.lb, json, NULL, 0);
	h.lb_started = rc == 0;
	bool started = rc == 0 && lb_log_wait(&h.lb, " started: ", 5000);
	/* Query once lb has seen both servers answer its DNS health check. */
	for (int i = 0; started && i < 2; i++) {
		char line[128];
		snprintf(line, sizeof(line), "backend ns%d (127.0.0.1:%d) is UP", i + 1, dport[i]);
		started = lb_log_wait(&h.lb, line, 5000);
	}
	if (!started)
		stop_dns();
	t_expect(&h, started, "lb did not start, or did not check both servers up");
	/* Each dig is a new client port, so a new session: round robin alternates servers. */
	for (int q = 0; q < 6; q++) {
		dig(h.port, ans, sizeof(ans));
		for (int i = 0; i < 2; i++)
			seen[i] += strcmp(ans, answers[i]) == 0;
		if (strcmp(ans, answers[0]) && strcmp(ans, answers[1])) {
			stop_dns();
			t_expect(&h, false, "query %d through lb: answer '%s'", q, ans);
		}
	}
	stop_dns();
	t_expect(&h, seen[0] == 3 && seen[1] == 3, "answers split %d/%d, expected 3/3", seen[0],
		 seen[1]);
	t_harness_finish(&h);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    test_sessions_spread_stick_and_expire_after_idle,
	    test_ip_hash_keeps_a_client_ip_on_one_backend_across_sessions,
	    test_a_burst_from_one_client_arrives_in_order,
	    test_empty_and_largest_datagrams_pass_intact,
	    test_runs_of_equal_datagrams_go_out_as_gso_and_arrive_whole,
	    test_gso_falls_back_when_datagrams_exceed_the_mtu,
	    test_runs_a_client_sent_with_gso_are_received_and_sent_on_whole,
	    test_runs_received_whole_are_split_when_gso_is_off,
	    test_denied_client_is_dropped_and_counted,
	    test_a_denied_run_counts_each_datagram,
	    test_max_conns_caps_sessions,
	    test_max_conns_per_client_caps_sessions_of_one_host,
	    test_a_udp_flood_cannot_take_the_fds_tcp_and_lbctl_need,
	    test_no_usable_backend_drops_and_counts_new_sessions_only,
	    test_sessions_of_a_dead_backend_move_once_health_marks_it_down,
	    test_sessions_move_after_port_unreachable_without_health_checks,
	    test_kill_ends_sessions_and_reload_keeps_them,
	    test_ipv6_and_wildcard_listener_reply_from_the_address_used,
	    test_dual_stack_listener_serves_ipv4_clients_as_ipv4,
	    test_dns_servers_behind_lb_answer_dig,
	    NULL,
	};

	signal(SIGPIPE, SIG_IGN);
	return t_run_suite(t_suite("udp", TEST_TIMEOUT_S, NULL, NULL, tests), CK_ENV);
}
