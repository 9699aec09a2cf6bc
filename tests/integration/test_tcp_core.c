/* Integration: the TCP data path of the real lb binary on the engine named by $LB_ENGINE —
 * each balancing algorithm's distribution, retries, backups, byte-exact relaying, half-close
 * and connects after an idle spell. Every test starts its own lb (2 workers, so that cross-worker
 * state is exercised) in front of in-process tagged backends on loopback. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

/* Two data-plane threads: connections land on either, so shared pool state is tested. */
#define LB_WORKERS   2
#define MAX_BACKENDS 8
/* Per-test limit; the whole suite must stay well under a minute per engine. */
#define TEST_TIMEOUT_S 60
/* Health settings for tests that need state changes seen quickly. */
#define FAST_TCP_HEALTH                                                                            \
	"{\"type\":\"tcp\",\"interval\":\"100ms\",\"timeout\":\"200ms\",\"rise\":1,\"fall\":1}"
/* How long a test waits for lb to notice a backend going down or coming back. */
#define CONVERGE_MS 5000

struct bspec {
	const char *name;
	const char *address;
	int weight; /* < 0: leave out, i.e. the default */
	bool backup;
};

/* The lb and backends of the running test (each Check test runs in its own process). */
static struct t_harness h;
/* Extra JSON members for the test's listener, or NULL. */
static const char *listener_opts;

/* ---- diagnostics ---- */

/* "accepted a/b/c": connections each backend saw, to tell lb-side from backend-side trouble */
static const char *accepted_counts(void)
{
	static char buf[128];
	size_t off = 0;

	off += (size_t)snprintf(buf, sizeof(buf), "backends accepted");
	for (size_t i = 0; i < h.be.n && off < sizeof(buf); i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%u", i ? "/" : " ",
					tb_accepted(h.be.tb[i]));
	return buf;
}

/* ---- set-up and tear-down ---- */

static struct bspec spec_of(struct tbackend *tb)
{
	return (struct bspec){.name = tb_name(tb), .address = tb_address(tb), .weight = -1};
}

/* An address with nothing listening: connects are refused. */
static void refused_address(char *buf, size_t len)
{
	int port = t_free_port();
	ck_assert_int_gt(port, 0);
	snprintf(buf, len, "127.0.0.1:%d", port);
}

static void start_lb(const char *algorithm, const char *health, const struct bspec *b, size_t n)
{
	json_t *cfg = t_cfg_new(LB_WORKERS);

	h.port = t_free_port();
	ck_assert_int_gt(h.port, 0);
	/* debug: lb then logs every failed backend connect with its reason, for the log a failure
	 * prints */
	t_cfg_set(cfg, "\"log\":{\"level\":\"debug\"}");
	t_cfg_set(t_cfg_listener(cfg, "t", NULL, "127.0.0.1", h.port, "p"), "%s",
		  listener_opts ? listener_opts : "");
	json_t *pool = t_cfg_pool(cfg, "p", algorithm, health ? health : T_HEALTH_NONE);
	t_cfg_set(pool, "\"retries\":2");
	for (size_t i = 0; i < n; i++) {
		json_t *be = t_cfg_backend(pool, b[i].name, b[i].address);
		if (b[i].weight >= 0)
			t_cfg_set(be, "\"weight\":%d", b[i].weight);
		if (b[i].backup)
			t_cfg_set(be, "\"backup\":true");
	}
	t_harness_start(&h, cfg, NULL);
}

/* ---- client helpers ---- */

/* Repeat connections until one reaches backend want (bounded). */
static bool wait_for_backend(int want, int timeout_ms)
{
	uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;

	while (t_now_ms() < deadline) {
		if (t_fetch(&h.be, NULL, h.port) == want)
			return true;
		usleep(20 * 1000);
	}
	return false;
}

/* ---- byte streams ---- */

/* A reproducible pseudo-random byte stream (xorshift64*): the writer produces it, the
 * reader regenerates it to find the first differing byte. */
struct prng_stream {
	uint64_t s;
	uint8_t word[8];
	unsigned pos;
};

static void prng_init(struct prng_stream *p, uint64_t seed)
{
	p->s = seed ? seed : 0x9e3779b97f4a7c15ULL;
	p->pos = 8;
}

static void prng_fill(struct prng_stream *p, uint8_t *dst, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p->pos == 8) {
			p->s ^= p->s >> 12;
			p->s ^= p->s << 25;
			p->s ^= p->s >> 27;
			uint64_t v = p->s * 0x2545f4914f6cdd1dULL;
			memcpy(p->word, &v, 8);
			p->pos = 0;
		}
		dst[i] = p->word[p->pos++];
	}
}

#define FNV64_OFFSET 0xcbf29ce484222325ULL
#define FNV64_PRIME  0x100000001b3ULL

static uint64_t fnv1a(uint64_t h64, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		h64 = (h64 ^ p[i]) * FNV64_PRIME;
	return h64;
}

struct stream_result {
	uint64_t sent, received;
	uint64_t hash_sent, hash_received;
	int64_t first_mismatch; /* offset of the first wrong byte, -1 if none */
	bool eof;		/* the peer's FIN arrived after the data */
	const char *error;	/* NULL, or what went wrong */
	int err;		/* errno for error, if any */
};

/* Write total pseudo-random bytes to fd while reading the echo, without blocking either
 * way; then shutdown(SHUT_WR) and expect the rest of the echo followed by EOF. */
static void stream_echo(int fd, uint64_t total, int timeout_ms, struct stream_result *r)
{
	enum { CHUNK = 64 * 1024 };
	static uint8_t out[CHUNK], in[CHUNK], want[CHUNK];
	struct prng_stream tx, rx;
	size_t out_off = 0, out_len = 0;
	bool shut = false;
	uint64_t seed = t_now_ms() * 0x9e3779b97f4a7c15ULL;
	uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;

	memset(r, 0, sizeof(*r));
	r->first_mismatch = -1;
	r->hash_sent = r->hash_received = FNV64_OFFSET;
	prng_init(&tx, seed);
	prng_init(&rx, seed);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

	while (!r->eof) {
		if (out_len == 0 && r->sent < total) {
			out_len = total - r->sent < CHUNK ? (size_t)(total - r->sent) : CHUNK;
			out_off = 0;
			prng_fill(&tx, out, out_len);
		}
		if (out_len == 0 && !shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		uint64_t now = t_now_ms();
		if (now >= deadline) {
			r->error = "timeout";
			return;
		}
		struct pollfd pfd = {.fd = fd, .events = POLLIN | (out_len ? POLLOUT : 0)};
		if (poll(&pfd, 1, (int)(deadline - now)) < 0 && errno != EINTR) {
			r->error = "poll";
			r->err = errno;
			return;
		}
		if (out_len) {
			ssize_t n = send(fd, out + out_off, out_len, MSG_NOSIGNAL);
			if (n > 0) {
				r->hash_sent = fnv1a(r->hash_sent, out + out_off, (size_t)n);
				r->sent += (uint64_t)n;
				out_off += (size_t)n;
				out_len -= (size_t)n;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				r->error = "send";
				r->err = errno;
				return;
			}
		}
		ssize_t n = recv(fd, in, sizeof(in), 0);
		if (n > 0) {
			prng_fill(&rx, want, (size_t)n);
			if (r->first_mismatch < 0 && memcmp(in, want, (size_t)n) != 0) {
				size_t i = 0;
				while (in[i] == want[i])
					i++;
				r->first_mismatch = (int64_t)(r->received + i);
			}
			r->hash_received = fnv1a(r->hash_received, in, (size_t)n);
			r->received += (uint64_t)n;
			if (r->received > total) {
				r->error = "more bytes came back than were sent";
				return;
			}
		} else if (n == 0) {
			r->eof = true;
		} else if (errno != EAGAIN && errno != EINTR) {
			r->error = "recv";
			r->err = errno;
			return;
		}
	}
}

/* ---- tests ---- */

START_TEST(test_round_robin_gives_each_backend_an_equal_share)
{
	struct tbackend *b[3] = {t_backends_add(&h.be, TB_TAGGED, "b1"),
				 t_backends_add(&h.be, TB_TAGGED, "b2"),
				 t_backends_add(&h.be, TB_TAGGED, "b3")};
	struct bspec s[3] = {spec_of(b[0]), spec_of(b[1]), spec_of(b[2])};
	unsigned counts[MAX_BACKENDS] = {0};

	start_lb("round_robin", NULL, s, 3);
	int failed = t_fetch_many(&h.be, h.port, 30, counts);
	t_expect(&h, failed == 0, "%d of 30 connections failed", failed);
	t_expect(&h, counts[0] == 10 && counts[1] == 10 && counts[2] == 10,
		 "round_robin over 30 connections gave %u/%u/%u, want 10/10/10 (%s)", counts[0],
		 counts[1], counts[2], accepted_counts());
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_weighted_round_robin_follows_weights)
{
	struct tbackend *b[3] = {t_backends_add(&h.be, TB_TAGGED, "w1"),
				 t_backends_add(&h.be, TB_TAGGED, "w2"),
				 t_backends_add(&h.be, TB_TAGGED, "w3")};
	struct bspec s[3] = {spec_of(b[0]), spec_of(b[1]), spec_of(b[2])};
	unsigned counts[MAX_BACKENDS] = {0};

	for (int i = 0; i < 3; i++)
		s[i].weight = i + 1;
	start_lb("weighted_round_robin", NULL, s, 3);
	int failed = t_fetch_many(&h.be, h.port, 60, counts);
	t_expect(&h, failed == 0, "%d of 60 connections failed", failed);
	t_expect(&h, counts[0] == 10 && counts[1] == 20 && counts[2] == 30,
		 "weights 1:2:3 over 60 connections gave %u/%u/%u, want 10/20/30 (%s)", counts[0],
		 counts[1], counts[2], accepted_counts());
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_least_conn_avoids_backend_holding_connections)
{
	struct tbackend *b[3] = {t_backends_add(&h.be, TB_TAGGED, "l1"),
				 t_backends_add(&h.be, TB_TAGGED, "l2"),
				 t_backends_add(&h.be, TB_TAGGED, "l3")};
	struct bspec s[3] = {spec_of(b[0]), spec_of(b[1]), spec_of(b[2])};
	int fds[6], on[6], extra[7], extra_on[7];
	unsigned counts[3] = {0};

	start_lb("least_conn", NULL, s, 3);
	/* six held connections: each pick takes a least-loaded backend, so 2/2/2 */
	for (int i = 0; i < 6; i++) {
		fds[i] = t_hold(&h.lb, &h.be, h.port, &on[i]);
		counts[on[i]]++;
	}
	t_expect(&h, counts[0] == 2 && counts[1] == 2 && counts[2] == 2,
		 "6 held connections spread %u/%u/%u, want 2/2/2", counts[0], counts[1], counts[2]);

	/* keep the two on l1 open, close the rest: l1 is now the busiest backend */
	for (int i = 0; i < 6; i++)
		if (on[i] != 0)
			close(fds[i]);
	t_expect(&h, tb_wait_active(b[1], 0, 3000) && tb_wait_active(b[2], 0, 3000),
		 "closed connections still open at the backends (l2 %u, l3 %u)", tb_active(b[1]),
		 tb_active(b[2]));
	usleep(100 * 1000); /* lb counts its side closed right after the backend's */

	/* four new connections must all avoid l1 (2 active) and fill l2 and l3 to 2 each */
	unsigned fresh[3] = {0};
	for (int i = 0; i < 4; i++) {
		extra[i] = t_hold(&h.lb, &h.be, h.port, &extra_on[i]);
		fresh[extra_on[i]]++;
	}
	t_expect(&h, fresh[0] == 0 && fresh[1] == 2 && fresh[2] == 2,
		 "with l1 holding 2 connections, 4 new ones went %u/%u/%u, want 0/2/2", fresh[0],
		 fresh[1], fresh[2]);
	/* all equal again: the next three go one to each */
	unsigned third[3] = {0};
	for (int i = 4; i < 7; i++) {
		extra[i] = t_hold(&h.lb, &h.be, h.port, &extra_on[i]);
		third[extra_on[i]]++;
	}
	t_expect(&h, third[0] == 1 && third[1] == 1 && third[2] == 1,
		 "with 2/2/2 active, 3 new connections went %u/%u/%u, want 1/1/1", third[0],
		 third[1], third[2]);

	for (int i = 0; i < 6; i++)
		if (on[i] == 0)
			close(fds[i]);
	for (int i = 0; i < 7; i++)
		close(extra[i]);
	t_harness_finish(&h);
}
END_TEST

#define IP_HASH_CLIENTS 24

START_TEST(test_ip_hash_keeps_clients_and_moves_only_those_of_a_lost_backend)
{
	struct tbackend *b[4] = {
	    t_backends_add(&h.be, TB_TAGGED, "h1"), t_backends_add(&h.be, TB_TAGGED, "h2"),
	    t_backends_add(&h.be, TB_TAGGED, "h3"), t_backends_add(&h.be, TB_TAGGED, "h4")};
	struct bspec s[4] = {spec_of(b[0]), spec_of(b[1]), spec_of(b[2]), spec_of(b[3])};
	int home[IP_HASH_CLIENTS];
	unsigned per_backend[4] = {0};
	char ip[32];

	start_lb("ip_hash", NULL, s, 4);
	for (int c = 0; c < IP_HASH_CLIENTS; c++) {
		snprintf(ip, sizeof(ip), "127.0.0.%d", c + 2);
		home[c] = t_fetch(&h.be, ip, h.port);
		t_expect(&h, home[c] >= 0, "client %s: connection failed", ip);
		for (int rep = 0; rep < 3; rep++) {
			int again = t_fetch(&h.be, ip, h.port);
			t_expect(&h, again == home[c], "client %s went to %s, then to %d (%s); %s",
				 ip, tb_name(b[home[c]]), again,
				 again >= 0 ? tb_name(b[again]) : "-", accepted_counts());
		}
		per_backend[home[c]]++;
	}
	unsigned used = 0, victim = 0;
	for (unsigned i = 0; i < 4; i++) {
		used += per_backend[i] > 0;
		if (per_backend[i] > per_backend[victim])
			victim = i;
	}
	t_expect(&h, used >= 2, "24 client addresses all hashed to %u backend(s): %u/%u/%u/%u",
		 used, per_backend[0], per_backend[1], per_backend[2], per_backend[3]);

	tb_stop(b[victim]);
	for (int rep = 0; rep < 2; rep++) {
		for (int c = 0; c < IP_HASH_CLIENTS; c++) {
			snprintf(ip, sizeof(ip), "127.0.0.%d", c + 2);
			int now = t_fetch(&h.be, ip, h.port);
			if (home[c] != (int)victim)
				t_expect(&h, now == home[c],
					 "client %s of live %s moved to %d (%s) after %s stopped",
					 ip, tb_name(b[home[c]]), now,
					 now >= 0 ? tb_name(b[now]) : "-", tb_name(b[victim]));
			else
				t_expect(&h, now >= 0 && now != (int)victim,
					 "client %s of stopped %s got %d (%s), want a live backend",
					 ip, tb_name(b[victim]), now,
					 now >= 0 ? tb_name(b[now]) : "-");
		}
	}
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_random_two_skips_refused_and_zero_weight_backends)
{
	struct tbackend *b[4] = {
	    t_backends_add(&h.be, TB_TAGGED, "r1"), t_backends_add(&h.be, TB_TAGGED, "r2"),
	    t_backends_add(&h.be, TB_TAGGED, "down"), t_backends_add(&h.be, TB_TAGGED, "zero")};
	struct bspec s[4] = {spec_of(b[0]), spec_of(b[1]), spec_of(b[2]), spec_of(b[3])};
	unsigned counts[MAX_BACKENDS] = {0};

	tb_stop(b[2]); /* its port now refuses connections */
	s[3].weight = 0;
	start_lb("random_two", NULL, s, 4);
	int failed = t_fetch_many(&h.be, h.port, 40, counts);
	t_expect(&h, failed == 0, "%d of 40 connections failed", failed);
	t_expect(&h, counts[2] == 0 && counts[3] == 0, "refused/zero-weight backends got %u/%u",
		 counts[2], counts[3]);
	t_expect(&h, tb_accepted(b[3]) == 0, "weight 0 backend was connected to %u times",
		 tb_accepted(b[3]));
	t_expect(&h, counts[0] > 0 && counts[1] > 0, "40 random_two picks went %u/%u: not random",
		 counts[0], counts[1]);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_relays_64_mib_intact_both_ways)
{
	const uint64_t total = 64ULL << 20;
	struct tbackend *e = t_backends_add(&h.be, TB_ECHO, "e1");
	struct bspec s = spec_of(e);
	struct stream_result r;

	start_lb("round_robin", NULL, &s, 1);
	int fd = t_connect(NULL, h.port);
	t_expect(&h, fd >= 0, "connect to lb failed: %s", strerror(errno));
	uint64_t t0 = t_now_ms();
	stream_echo(fd, total, 40000, &r);
	close(fd);
	t_expect(&h, r.error == NULL,
		 "stream failed: %s (%s) after %llu sent, %llu received, %llu ms; %s", r.error,
		 strerror(r.err), (unsigned long long)r.sent, (unsigned long long)r.received,
		 (unsigned long long)(t_now_ms() - t0), accepted_counts());
	t_expect(&h, r.first_mismatch < 0, "echoed stream differs from byte %lld on",
		 (long long)r.first_mismatch);
	t_expect(&h, r.sent == total && r.received == total, "sent %llu, received %llu of %llu",
		 (unsigned long long)r.sent, (unsigned long long)r.received,
		 (unsigned long long)total);
	t_expect(&h, r.hash_sent == r.hash_received,
		 "FNV-1a differs: sent %016llx, received %016llx", (unsigned long long)r.hash_sent,
		 (unsigned long long)r.hash_received);
	t_harness_finish(&h);
}
END_TEST

/* Small messages take lb's recv/send path until the buffers back up and reads fill its
 * scratch buffer (then splice takes over mid-stream): a client that reads nothing until it
 * has written everything must still get every byte back, in order. */
START_TEST(test_small_messages_to_a_slow_reader_arrive_intact)
{
	enum { MSG = 1000, COUNT = 1000 };
	struct tbackend *e = t_backends_add(&h.be, TB_ECHO, "e1");
	struct bspec s = spec_of(e);
	static uint8_t sent[MSG * COUNT], got[MSG * COUNT];

	start_lb("round_robin", NULL, &s, 1);
	int fd = t_connect(NULL, h.port);
	t_expect(&h, fd >= 0, "connect to lb failed: %s", strerror(errno));
	for (size_t i = 0; i < sizeof(sent); i++)
		sent[i] = (uint8_t)(i * 2654435761u >> 13);
	/* 1 MB in 1000-byte writes, paced so that lb reads the first ones one by one, none
	 * read back until all are written. */
	for (int i = 0; i < COUNT; i++) {
		t_expect(&h, t_send_all(fd, sent + (size_t)i * MSG, MSG), "write %d failed: %s", i,
			 strerror(errno));
		if (i % 50 == 0)
			usleep(1000);
	}
	t_expect(&h, t_recv_exact(fd, got, sizeof(got), 10000), "echo incomplete: %s",
		 strerror(errno));
	t_expect(&h, memcmp(sent, got, sizeof(got)) == 0, "echoed bytes differ");
	close(fd);
	t_harness_finish(&h);
}
END_TEST

struct paced {
	int fd;
	const uint8_t *data;
	size_t msg, count;
	bool ok;
};

static void *send_paced(void *arg)
{
	struct paced *p = arg;
	p->ok = true;
	for (size_t i = 0; i < p->count && p->ok; i++) {
		p->ok = t_send_all(p->fd, p->data + i * p->msg, p->msg);
		usleep(50);
	}
	return NULL;
}

/* A backend that reads nothing for a while, as a busy database does, while the client keeps
 * sending small messages one by one. lb must hold what it took (on io_uring: received
 * buffers queued behind a send that cannot finish, then its readiness path) and, once the
 * backend reads again, deliver every byte once and in order. */
START_TEST(test_backend_that_stops_reading_still_gets_every_byte_in_order)
{
	/* 6 MB: more than the kernel lets lb queue towards a stalled peer (send buffers grow to
	 * tcp_wmem's 4 MB), so lb itself has to hold and then stop reading. */
	enum { MSG = 1000, COUNT = 6000 };
	static uint8_t sent[MSG * COUNT], got[MSG * COUNT];
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t slen = sizeof(sin);
	char addr[32];
	pthread_t th;

	/* The backend: a listener nobody accepts on until the client has sent for a while. */
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(lfd, 0);
	/* A small receive buffer (inherited by the queued connection): the backend's window
	 * closes after a few kilobytes. */
	int rcvbuf = 4096;
	ck_assert_int_eq(setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(lfd, 8), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sin, &slen), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sin.sin_port));
	struct bspec s = {.name = "stalled", .address = addr, .weight = -1};

	start_lb("round_robin", NULL, &s, 1);
	int fd = t_connect(NULL, h.port);
	t_expect(&h, fd >= 0, "connect to lb failed: %s", strerror(errno));
	for (size_t i = 0; i < sizeof(sent); i++)
		sent[i] = (uint8_t)(i * 2654435761u >> 11);
	struct paced p = {.fd = fd, .data = sent, .msg = MSG, .count = COUNT};
	ck_assert_int_eq(pthread_create(&th, NULL, send_paced, &p), 0);
	usleep(1000 * 1000);

	struct pollfd pfd = {.fd = lfd, .events = POLLIN};
	int bfd = poll(&pfd, 1, 3000) == 1 ? accept(lfd, NULL, NULL) : -1;
	bool complete = bfd >= 0 && t_recv_exact(bfd, got, sizeof(got), 20000);
	pthread_join(th, NULL);
	t_expect(&h, bfd >= 0, "lb never connected to the backend");
	t_expect(&h, p.ok, "the client's sends failed: %s", strerror(errno));
	t_expect(&h, complete, "the backend got fewer than %d bytes: %s", MSG * COUNT,
		 strerror(errno));
	t_expect(&h, memcmp(sent, got, sizeof(got)) == 0, "the backend got the bytes out of order");
	close(bfd);
	close(fd);
	close(lfd);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_half_close_still_delivers_the_reply_then_eof)
{
	const uint64_t total = 1 << 20;
	struct tbackend *e = t_backends_add(&h.be, TB_ECHO, "e1");
	struct bspec s = spec_of(e);
	struct stream_result r;
	char buf[16];

	start_lb("round_robin", NULL, &s, 1);

	/* a small request, then FIN at once: the reply must still come, then EOF */
	int fd = t_connect(NULL, h.port);
	t_expect(&h, fd >= 0, "connect to lb failed: %s", strerror(errno));
	t_expect(&h, send(fd, "ping\n", 5, MSG_NOSIGNAL) == 5, "send failed: %s", strerror(errno));
	t_expect(&h, shutdown(fd, SHUT_WR) == 0, "shutdown failed: %s", strerror(errno));
	int n = t_read_line(fd, buf, sizeof(buf), 3000);
	t_expect(&h, n == 4 && strcmp(buf, "ping") == 0,
		 "after our FIN the echo did not come back (read %d)", n);
	int closed = t_wait_closed(fd, 3000);
	t_expect(&h, closed == 0, "want EOF after the echo, got %s",
		 closed < 0 ? "nothing within 3 s" : "a reset");
	close(fd);

	/* 1 MiB in flight when the FIN is sent: all of it comes back before the EOF */
	fd = t_connect(NULL, h.port);
	t_expect(&h, fd >= 0, "connect to lb failed: %s", strerror(errno));
	stream_echo(fd, total, 10000, &r);
	close(fd);
	t_expect(&h, r.error == NULL,
		 "half-closed stream failed: %s (%s), %llu sent, %llu received", r.error,
		 strerror(r.err), (unsigned long long)r.sent, (unsigned long long)r.received);
	t_expect(&h, r.eof && r.received == total && r.first_mismatch < 0,
		 "after FIN: received %llu of %llu, eof %d, first mismatch %lld",
		 (unsigned long long)r.received, (unsigned long long)total, r.eof,
		 (long long)r.first_mismatch);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_retry_moves_past_a_refused_backend)
{
	struct tbackend *live = t_backends_add(&h.be, TB_TAGGED, "live");
	char dead_addr[64];
	unsigned counts[MAX_BACKENDS] = {0};

	refused_address(dead_addr, sizeof(dead_addr));
	struct bspec s[2] = {{.name = "dead", .address = dead_addr, .weight = -1}, spec_of(live)};
	start_lb("round_robin", NULL, s, 2);
	int failed = t_fetch_many(&h.be, h.port, 20, counts);
	t_expect(&h, failed == 0 && counts[0] == 20,
		 "with a refused first backend, %d of 20 connections failed, %u reached live",
		 failed, counts[0]);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_no_usable_backend_closes_the_client_at_once)
{
	char a1[64], a2[64];

	refused_address(a1, sizeof(a1));
	refused_address(a2, sizeof(a2));
	struct bspec s[2] = {{.name = "x1", .address = a1, .weight = -1},
			     {.name = "x2", .address = a2, .weight = -1}};
	start_lb("round_robin", NULL, s, 2);
	/* the first connections fail over all retries; later ones may find both marked down */
	for (int i = 0; i < 5; i++) {
		uint64_t t0 = t_now_ms();
		int fd = t_connect(NULL, h.port);
		t_expect(&h, fd >= 0, "connect to lb failed: %s", strerror(errno));
		int closed = t_wait_closed(fd, 1000);
		uint64_t took = t_now_ms() - t0;
		close(fd);
		t_expect(&h, closed >= 0 && took < 1000,
			 "connection %d with no usable backend not closed within 1 s (%llu ms)", i,
			 (unsigned long long)took);
	}
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_backup_serves_only_while_all_primaries_are_down)
{
	struct tbackend *b[3] = {t_backends_add(&h.be, TB_TAGGED, "p1"),
				 t_backends_add(&h.be, TB_TAGGED, "p2"),
				 t_backends_add(&h.be, TB_TAGGED, "bk")};
	struct bspec s[3] = {spec_of(b[0]), spec_of(b[1]), spec_of(b[2])};
	unsigned counts[MAX_BACKENDS] = {0};

	s[2].backup = true;
	start_lb("round_robin", FAST_TCP_HEALTH, s, 3);
	int failed = t_fetch_many(&h.be, h.port, 20, counts);
	t_expect(&h, failed == 0 && counts[2] == 0,
		 "primaries up: %d of 20 failed, backup got %u (p1 %u, p2 %u)", failed, counts[2],
		 counts[0], counts[1]);

	tb_stop(b[0]);
	tb_stop(b[1]);
	t_expect(&h, wait_for_backend(2, CONVERGE_MS),
		 "primaries down: backup never answered in %d ms", CONVERGE_MS);
	memset(counts, 0, sizeof(counts));
	failed = t_fetch_many(&h.be, h.port, 20, counts);
	t_expect(&h, failed == 0 && counts[2] == 20,
		 "primaries down: %d of 20 failed, backup got %u of 20", failed, counts[2]);

	t_expect(&h, tb_restart(b[0]) == 0, "cannot restart p1");
	t_expect(&h, wait_for_backend(0, CONVERGE_MS), "p1 back: it got no traffic within %d ms",
		 CONVERGE_MS);
	memset(counts, 0, sizeof(counts));
	failed = t_fetch_many(&h.be, h.port, 20, counts);
	t_expect(&h, failed == 0 && counts[0] == 20,
		 "p1 back: %d of 20 failed, p1 got %u, backup %u", failed, counts[0], counts[2]);
	t_harness_finish(&h);
}
END_TEST

/* Longer than the connect timeout below: a timer armed with a clock read before the worker
 * went to sleep would already be due when the next connection wakes it. */
#define IDLE_SPELL_MS 700

START_TEST(test_connection_after_an_idle_spell_is_relayed)
{
	struct tbackend *b = t_backends_add(&h.be, TB_TAGGED, "i1");
	struct bspec s = spec_of(b);

	listener_opts = "\"timeouts\":{\"connect\":\"300ms\"}";
	start_lb("round_robin", NULL, &s, 1);
	for (int i = 0; i < 3; i++) {
		usleep(IDLE_SPELL_MS * 1000);
		int got = t_fetch(&h.be, NULL, h.port);
		t_expect(&h, got == 0,
			 "connection %d after %d ms without traffic was not relayed (%s)", i,
			 IDLE_SPELL_MS, accepted_counts());
	}
	t_harness_finish(&h);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    test_round_robin_gives_each_backend_an_equal_share,
	    test_weighted_round_robin_follows_weights,
	    test_least_conn_avoids_backend_holding_connections,
	    test_ip_hash_keeps_clients_and_moves_only_those_of_a_lost_backend,
	    test_random_two_skips_refused_and_zero_weight_backends,
	    test_relays_64_mib_intact_both_ways,
	    test_small_messages_to_a_slow_reader_arrive_intact,
	    test_backend_that_stops_reading_still_gets_every_byte_in_order,
	    test_half_close_still_delivers_the_reply_then_eof,
	    test_retry_moves_past_a_refused_backend,
	    test_no_usable_backend_closes_the_client_at_once,
	    test_backup_serves_only_while_all_primaries_are_down,
	    test_connection_after_an_idle_spell_is_relayed,
	    NULL,
	};

	signal(SIGPIPE, SIG_IGN);
	/* CK_VERBOSITY=verbose lists every test */
	return t_run_suite(t_suite("tcp_core", TEST_TIMEOUT_S, NULL, NULL, tests), CK_ENV);
}
