/* A configured listener at run time: its counters (shared by all workers) and the socket
 * set-up each worker repeats for its own SO_REUSEPORT copy. */
#ifndef LB_LISTENER_H
#define LB_LISTENER_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lb/client_count.h"
#include "lb/client_rate.h"
#include "lb/config.h"
#include "lb/pool.h"

enum listener_reject {
	LISTENER_REJECT_ACL,	    /* allow/deny said no */
	LISTENER_REJECT_MAX_CONNS,  /* listener max_conns reached */
	LISTENER_REJECT_NO_BACKEND, /* nothing usable, or every try failed */
	LISTENER_REJECT_RESOURCES,  /* lb itself ran out of fds or memory: no backend's fault */
	LISTENER_REJECT_PER_CLIENT, /* the client IP is at max_conns_per_client */
	LISTENER_REJECT_PER_CLIENT_RATE, /* the client IP opened per_client.rate already */
	LISTENER_REJECT_QUEUE_FULL,	 /* every backend full and the pool's queue too */
	LISTENER_REJECT_QUEUE_TIMEOUT,	 /* waited the pool's queue timeout for a slot */
	LISTENER_REJECT_PROXY,		 /* accept_proxy: a bad, late or missing PROXY header */
	LISTENER_REJECT_COUNT
};

struct listener {
	/* Atomic: a reload re-points a surviving listener at its new settings and pool while
	 * workers read them; the old config stays alive until shutdown. */
	_Atomic(const struct cfg_listener *) cfg;
	_Atomic(struct pool *) pool;
	_Atomic int active;
	_Atomic uint64_t accepted;
	_Atomic uint64_t rejected[LISTENER_REJECT_COUNT];
	_Atomic uint64_t accept_errors; /* accept failed for want of fds or memory */
	struct client_count per_client; /* for max_conns_per_client */
	struct client_rate rate;	/* for per_client.rate */
};

/* A listener object for lc, feeding pool p (counters at zero; no socket: each worker binds
 * its own with listener_socket). 0 and the listener in *out (free() it), or -ENOMEM. */
int listener_create(const struct cfg_listener *lc, struct pool *p, struct listener **out);
/* Free a listener no connection counts on any more. NULL: no-op. */
void listener_destroy(struct listener *l);

const char *listener_reject_name(enum listener_reject r);

/* The file descriptors UDP sessions may hold in all (one each): the fd limit less a reserve,
 * so that a UDP flood from many source ports cannot take the fds TCP connections, the
 * control socket and the metrics listener need. Shared by every worker. */
struct session_budget {
	_Atomic long open;
	_Atomic long max;
	_Atomic long nofile;	     /* the fd limit max was derived from */
	_Atomic uint64_t checked_ms; /* when the limit was last read */
};

/* Size b for an fd limit of nofile, before the workers start. Returns the reserve kept
 * outside it. */
long session_budget_size(struct session_budget *b, long nofile);
/* One more session under the budget (atomically). False = it is spent. now is the caller's
 * clock (ms): at most every SESSION_BUDGET_RECHECK_MS one caller reads the fd limit again and
 * resizes the budget, so a limit lowered (or raised) while lb runs is followed. */
bool session_budget_take(struct session_budget *b, uint64_t now);
void session_budget_release(struct session_budget *b);

/* Count n connections or datagrams (a run received whole) turned away for why. If how is
 * not NULL, also log "ACTION from CLIENT: HOW" (action: "closing connection", "dropping
 * datagram") at most once a second per thread, with how many went unlogged since; now is
 * the caller's clock (ms). */
void listener_reject(struct listener *l, enum listener_reject why, uint64_t n,
		     const struct sockaddr *client, const char *action, const char *how,
		     uint64_t now);

/* Admit one more connection under max_conns (atomically). False = over the cap. */
bool listener_take(struct listener *l);
void listener_release(struct listener *l);

/* A new connection or session from client, for TCP and UDP alike: count it, then check l's
 * allow/deny lists and take a place under max_conns and max_conns_per_client. True =
 * admitted: give it back with listener_leave(l, client, *per_client) when it ends; false =
 * turned away, counted (as n rejections: the datagrams it came with, 1 for a connection)
 * but not logged. */
bool listener_admit(struct listener *l, const struct sockaddr *client, uint64_t n, uint64_t now,
		    bool *per_client);
/* listener_admit in two steps, for a listener whose clients first send a PROXY header: at
 * accept, count the connection and take its place under max_conns (false: turned away);
 * once the header names the real client, check that address against allow/deny, the rate
 * and max_conns_per_client (false: turned away; give the place back with listener_leave(l,
 * client, false)). */
bool listener_open(struct listener *l, const struct sockaddr *peer, uint64_t now);
bool listener_screen(struct listener *l, const struct sockaddr *client, uint64_t now,
		     bool *per_client);
void listener_leave(struct listener *l, const struct sockaddr *client, bool per_client);

/* Most backends one connection or session tries: the first pick plus up to 15 retries (a
 * pool's retries beyond are capped), a backend ruled out beforehand included. */
#define LISTENER_MAX_TRIES 16

/* Backends one connection may try: its pool's retries + 1, at most LISTENER_MAX_TRIES. */
int listener_max_tries(const struct listener *l);

/* The next backend for client from l's pool: one not in tried[0, *ntried), which it joins,
 * with a place taken on it (backend_take; the caller releases it). NULL when the pool has
 * nothing usable left or the tries are used up: the pool's retries + 1, at most
 * LISTENER_MAX_TRIES, not counting the first `avoided` entries of tried (backends ruled out
 * before the first try). tried has room for LISTENER_MAX_TRIES. *turn is the connection's
 * place in a rotation, PICK_NO_TURN before its first pick; its retries keep it. */
struct backend *listener_pick_backend(struct listener *l, const struct sockaddr *client,
				      struct backend **tried, uint8_t *ntried, uint8_t avoided,
				      uint64_t *turn);

/* Log the access line of a connection or session that ended how (log.access: the same
 * line for TCP and UDP); be is NULL if it never had a backend. */
void listener_access_log(const struct listener *l, const struct sockaddr *client,
			 const struct backend *be, uint64_t bytes_up, uint64_t bytes_down,
			 uint64_t duration_ms, const char *how);

/* A non-blocking socket bound to lc's address with SO_REUSEPORT (and IP_FREEBIND if lc says
 * so): listening, for tcp; for udp with a large receive buffer, and reporting each datagram's
 * destination address (IP_PKTINFO / IPV6_RECVPKTINFO) when the address is a wildcard, so that
 * replies can leave from it. Returns the fd, or -errno with a reason for the log in *why. */
int listener_socket(const struct cfg_listener *lc, const char **why);
/* Turn on TCP keepalive on fd as ka says (nothing if !ka->on). 0 or -errno. Accepted
 * sockets inherit it from their listener socket; backend sockets get it one by one. */
int sock_keepalive(int fd, const struct cfg_keepalive *ka);

/* Check that no other socket holds lc's address and port, so that this lb does not join
 * another process's SO_REUSEPORT group by accident: binds a probe socket without
 * SO_REUSEPORT and closes it. 0, -EADDRINUSE (taken), or another -errno with *why set. */
int listener_check_free(const struct cfg_listener *lc, const char **why);

/* The two listener addresses cannot both be bound without SO_REUSEPORT: same family and
 * port, and the same address or a wildcard on either side. */
bool listener_addrs_overlap(const struct lb_addr *a, const struct lb_addr *b);
/* Two listeners cannot both be bound without SO_REUSEPORT: the same protocol, and addresses
 * that overlap, or one with "ipv6only": false takes the other's IPv4 clients. */
bool listener_cfgs_overlap(const struct cfg_listener *a, const struct cfg_listener *b);

#endif
