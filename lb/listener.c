/* Listener sockets and admission counters; see listener.h. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lb/listener.h"
#include "lb/log.h"
#include "lb/udp_relay.h"

/* Accept backlog: the kernel clamps it to net.core.somaxconn. */
#define LISTEN_BACKLOG 4096
/* Receive buffer of a UDP listener: absorbs bursts while a worker is busy (SO_RCVBUFFORCE
 * as root; otherwise the kernel caps it at net.core.rmem_max). */
#define UDP_RCVBUF (8 << 20)
/* At most one rejection message per thread per interval; the rest are counted. */
#define REJECT_LOG_INTERVAL_MS 1000

const char *listener_reject_name(enum listener_reject r)
{
	static const char *const names[LISTENER_REJECT_COUNT] = {
	    [LISTENER_REJECT_ACL] = "acl",
	    [LISTENER_REJECT_MAX_CONNS] = "max_conns",
	    [LISTENER_REJECT_NO_BACKEND] = "no_backend",
	    [LISTENER_REJECT_RESOURCES] = "resources",
	    [LISTENER_REJECT_PER_CLIENT] = "max_conns_per_client",
	    [LISTENER_REJECT_PER_CLIENT_RATE] = "per_client_rate",
	    [LISTENER_REJECT_QUEUE_FULL] = "queue_full",
	    [LISTENER_REJECT_QUEUE_TIMEOUT] = "queue_timeout",
	    [LISTENER_REJECT_PROXY] = "proxy_header",
	};
	return r < LISTENER_REJECT_COUNT ? names[r] : "unknown";
}

void listener_reject(struct listener *l, enum listener_reject why, uint64_t n,
		     const struct sockaddr *client, const char *action, const char *how,
		     uint64_t now)
{
	static _Thread_local uint64_t last_log, suppressed;

	atomic_fetch_add_explicit(&l->rejected[why], n, memory_order_relaxed);
	if (!how)
		return;
	if (last_log && now - last_log < REJECT_LOG_INTERVAL_MS) {
		suppressed++;
		return;
	}
	char addr[ADDR_STR_MAX];
	addr_format_client(client, addr, sizeof(addr));
	log_warn("listener %s: %s from %s: %s (%llu more since last message)", l->cfg->name, action,
		 addr, how, (unsigned long long)suppressed);
	last_log = now;
	suppressed = 0;
}

int listener_create(const struct cfg_listener *lc, struct pool *p, struct listener **out)
{
	struct listener *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	atomic_init(&l->cfg, lc);
	atomic_init(&l->pool, p);
	client_count_init(&l->per_client);
	client_rate_init(&l->rate);
	*out = l;
	return 0;
}

void listener_destroy(struct listener *l)
{
	if (!l)
		return;
	client_count_destroy(&l->per_client);
	client_rate_destroy(&l->rate);
	free(l);
}

/* A quarter of the fds stays outside the UDP budget, and never fewer than this. */
#define SESSION_RESERVE_MIN	  64
#define SESSION_BUDGET_RECHECK_MS 100

static long session_budget_set(struct session_budget *b, long nofile)
{
	long reserve = nofile / 4 > SESSION_RESERVE_MIN ? nofile / 4 : SESSION_RESERVE_MIN;

	atomic_store_explicit(&b->max, nofile > reserve ? nofile - reserve : 0,
			      memory_order_relaxed);
	atomic_store_explicit(&b->nofile, nofile, memory_order_relaxed);
	return reserve;
}

long session_budget_size(struct session_budget *b, long nofile)
{
	atomic_init(&b->open, 0);
	atomic_init(&b->checked_ms, 0);
	return session_budget_set(b, nofile);
}

/* Read the fd limit again; log and resize if it changed. One caller at a time (the CAS on
 * checked_ms in session_budget_take). */
static void session_budget_recheck(struct session_budget *b)
{
	struct rlimit rl;
	long was = atomic_load_explicit(&b->nofile, memory_order_relaxed);

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
	    (long)rl.rlim_cur == was)
		return;
	long reserve = session_budget_set(b, (long)rl.rlim_cur);
	log_warn("fd limit changed from %ld to %ld: UDP sessions may now hold %ld fds, %ld stay "
		 "for TCP, control and metrics",
		 was, (long)rl.rlim_cur, atomic_load_explicit(&b->max, memory_order_relaxed),
		 reserve);
}

bool session_budget_take(struct session_budget *b, uint64_t now)
{
	uint64_t last = atomic_load_explicit(&b->checked_ms, memory_order_relaxed);

	if (now - last >= SESSION_BUDGET_RECHECK_MS &&
	    atomic_compare_exchange_strong_explicit(&b->checked_ms, &last, now,
						    memory_order_relaxed, memory_order_relaxed))
		session_budget_recheck(b);

	long n = atomic_load_explicit(&b->open, memory_order_relaxed);
	do {
		if (n >= atomic_load_explicit(&b->max, memory_order_relaxed))
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&b->open, &n, n + 1, memory_order_relaxed,
							memory_order_relaxed));
	return true;
}

void session_budget_release(struct session_budget *b)
{
	atomic_fetch_sub_explicit(&b->open, 1, memory_order_relaxed);
}

bool listener_take(struct listener *l)
{
	int max = l->cfg->max_conns;

	if (max <= 0) {
		atomic_fetch_add_explicit(&l->active, 1, memory_order_relaxed);
		return true;
	}
	/* A CAS loop rather than add-then-undo (like backend_take): a transient overshoot would
	 * turn away another worker's connection while the count is still below the cap. */
	int cur = atomic_load_explicit(&l->active, memory_order_relaxed);
	do {
		if (cur >= max)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(
	    &l->active, &cur, cur + 1, memory_order_relaxed, memory_order_relaxed));
	return true;
}

void listener_release(struct listener *l)
{
	atomic_fetch_sub_explicit(&l->active, 1, memory_order_relaxed);
}

/* allow/deny and per_client.rate for client. */
static bool screen_addr(struct listener *l, const struct cfg_listener *lc,
			const struct sockaddr *client, uint64_t n, uint64_t now)
{
	if (!cidr_admit(lc->allow, lc->nallow, lc->deny, lc->ndeny, client)) {
		listener_reject(l, LISTENER_REJECT_ACL, n, client, NULL, NULL, now);
		return false;
	}
	if (lc->per_client_rate && !client_rate_take(&l->rate, client, lc->per_client_rate, now)) {
		listener_reject(l, LISTENER_REJECT_PER_CLIENT_RATE, n, client, NULL, NULL, now);
		return false;
	}
	return true;
}

/* A place under max_conns_per_client, counted only while a limit is set (a reload that
 * sets one counts from then on). */
static bool count_client(struct listener *l, const struct cfg_listener *lc,
			 const struct sockaddr *client, uint64_t n, uint64_t now, bool *per_client)
{
	*per_client = lc->max_conns_per_client > 0;
	if (*per_client && !client_count_take(&l->per_client, client, lc->max_conns_per_client)) {
		*per_client = false;
		listener_reject(l, LISTENER_REJECT_PER_CLIENT, n, client, NULL, NULL, now);
		return false;
	}
	return true;
}

bool listener_admit(struct listener *l, const struct sockaddr *client, uint64_t n, uint64_t now,
		    bool *per_client)
{
	const struct cfg_listener *lc = l->cfg;

	*per_client = false;
	atomic_fetch_add_explicit(&l->accepted, 1, memory_order_relaxed);
	if (!screen_addr(l, lc, client, n, now))
		return false;
	if (!listener_take(l)) {
		listener_reject(l, LISTENER_REJECT_MAX_CONNS, n, client, NULL, NULL, now);
		return false;
	}
	if (!count_client(l, lc, client, n, now, per_client)) {
		listener_release(l);
		return false;
	}
	return true;
}

bool listener_open(struct listener *l, const struct sockaddr *peer, uint64_t now)
{
	atomic_fetch_add_explicit(&l->accepted, 1, memory_order_relaxed);
	if (!listener_take(l)) {
		listener_reject(l, LISTENER_REJECT_MAX_CONNS, 1, peer, NULL, NULL, now);
		return false;
	}
	return true;
}

bool listener_screen(struct listener *l, const struct sockaddr *client, uint64_t now,
		     bool *per_client)
{
	const struct cfg_listener *lc = l->cfg;

	*per_client = false;
	return screen_addr(l, lc, client, 1, now) &&
	       count_client(l, lc, client, 1, now, per_client);
}

void listener_leave(struct listener *l, const struct sockaddr *client, bool per_client)
{
	if (per_client)
		client_count_release(&l->per_client, client);
	listener_release(l);
}

int listener_max_tries(const struct listener *l)
{
	int retries = atomic_load_explicit(&l->pool->retries, memory_order_relaxed);
	return retries + 1 < LISTENER_MAX_TRIES ? retries + 1 : LISTENER_MAX_TRIES;
}

struct backend *listener_pick_backend(struct listener *l, const struct sockaddr *client,
				      struct backend **tried, uint8_t *ntried, uint8_t avoided,
				      uint64_t *turn)
{
	struct pool *p = l->pool;
	int max = listener_max_tries(l) + avoided;

	if (max > LISTENER_MAX_TRIES)
		max = LISTENER_MAX_TRIES;
	while (*ntried < max) {
		struct pick_ctx ctx = {
		    .client = client,
		    .hash = addr_hash_ip(client),
		    .tried = tried,
		    .ntried = *ntried,
		    .turn = turn,
		};
		struct backend *b = pool_pick(p, &ctx);
		if (!b)
			return NULL;
		tried[(*ntried)++] = b;
		if (backend_take(b))
			return b;
		/* Filled up since the pick: try another. */
	}
	return NULL;
}

void listener_access_log(const struct listener *l, const struct sockaddr *client,
			 const struct backend *be, uint64_t bytes_up, uint64_t bytes_down,
			 uint64_t duration_ms, const char *how)
{
	char addr[ADDR_STR_MAX];

	addr_format_client(client, addr, sizeof(addr));
	log_info("access listener=%s client=%s backend=%s/%s bytes_up=%llu bytes_down=%llu "
		 "duration_ms=%llu end=\"%s\"",
		 l->cfg->name, addr, be ? be->pool->name : "-", be ? be->name : "-",
		 (unsigned long long)bytes_up, (unsigned long long)bytes_down,
		 (unsigned long long)duration_ms, how);
}

static bool is_wildcard(const struct lb_addr *addr)
{
	if (addr->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&addr->ss)->sin_addr.s_addr ==
		       htonl(INADDR_ANY);
	const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&addr->ss)->sin6_addr;
	return IN6_IS_ADDR_UNSPECIFIED(a6);
}

static int dgram_options(int fd, const struct lb_addr *addr)
{
	int one = 1, size = UDP_RCVBUF;

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	udp_relay_gro(fd, udp_relay_gro_wanted());
	if (!is_wildcard(addr))
		return 0;
	if (addr->ss.ss_family == AF_INET)
		return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
	return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
}

static int sock_type(const struct cfg_listener *lc)
{
	return lc->protocol == CFG_PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM;
}

int sock_keepalive(int fd, const struct cfg_keepalive *ka)
{
	int one = 1;

	if (!ka->on)
		return 0;
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &ka->idle_s, sizeof(ka->idle_s)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &ka->interval_s, sizeof(ka->interval_s)) <
		0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &ka->count, sizeof(ka->count)) < 0)
		return -errno;
	return 0;
}

/* Options every socket of lc needs before bind(): v6-only, freebind. */
static int bind_options(int fd, const struct cfg_listener *lc)
{
	int one = 1;
	bool v6 = lc->addr.ss.ss_family == AF_INET6;

	int v6only = !lc->dual_stack;

	/* "[::]:port" means IPv6 only, so that "0.0.0.0:port" can be a separate listener;
	 * "ipv6only": false takes IPv4 clients too (as ::ffff:a.b.c.d). */
	if (v6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
		return -1;
	if (!lc->freebind)
		return 0;
	if (v6)
		return setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
	return setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
}

int listener_socket(const struct cfg_listener *lc, const char **why)
{
	const struct lb_addr *addr = &lc->addr;
	int one = 1, type = sock_type(lc);
	int fd = socket(addr->ss.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*why = "socket";
		return -errno;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind_options(fd, lc) < 0) {
		*why = "setsockopt";
		goto fail;
	}
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0) {
		*why = "bind";
		goto fail;
	}
	if (type == SOCK_DGRAM && dgram_options(fd, addr) < 0) {
		*why = "setsockopt";
		goto fail;
	}
	/* Accepted sockets inherit TCP_NODELAY and keepalive: set once per listener socket, not
	 * per client. */
	if (type == SOCK_STREAM &&
	    (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	     sock_keepalive(fd, &lc->keepalive) < 0)) {
		*why = "setsockopt";
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

/* Without SO_REUSEPORT the probe's bind fails with EADDRINUSE against any socket holding the
 * port, SO_REUSEPORT or not. TCP keeps SO_REUSEADDR, which only lets it past connections in
 * TIME_WAIT (a predecessor's, after a restart), never past a listening socket; UDP must not
 * set it, since two UDP sockets with SO_REUSEADDR share a port. */
int listener_check_free(const struct cfg_listener *lc, const char **why)
{
	const struct lb_addr *addr = &lc->addr;
	int one = 1, type = sock_type(lc), err = 0;
	int fd = socket(addr->ss.ss_family, type | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		*why = "socket";
		return -errno;
	}
	if ((type == SOCK_STREAM &&
	     setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) ||
	    bind_options(fd, lc) < 0) {
		*why = "setsockopt";
		err = -errno;
	} else if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0) {
		*why = "bind";
		err = -errno;
	}
	close(fd);
	return err;
}

static in_port_t port_of(const struct lb_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_port;
	return ((const struct sockaddr_in6 *)&a->ss)->sin6_port;
}

bool listener_addrs_overlap(const struct lb_addr *a, const struct lb_addr *b)
{
	if (a->ss.ss_family != b->ss.ss_family || port_of(a) != port_of(b))
		return false;
	if (is_wildcard(a) || is_wildcard(b))
		return true;
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)&b->ss)->sin_addr.s_addr;
	return IN6_ARE_ADDR_EQUAL(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
				  &((const struct sockaddr_in6 *)&b->ss)->sin6_addr);
}

bool listener_cfgs_overlap(const struct cfg_listener *a, const struct cfg_listener *b)
{
	if (a->protocol != b->protocol)
		return false;
	return listener_addrs_overlap(&a->addr, &b->addr) ||
	       (a->dual_stack && addr_dual_covers(&a->addr, &b->addr)) ||
	       (b->dual_stack && addr_dual_covers(&b->addr, &a->addr));
}
