/* The configuration: JSON file -> struct config, validated whole (SPEC.md "Config file").
 * A config is immutable once loaded; reload builds a new one beside the running one. */
#ifndef LB_CONFIG_H
#define LB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lb/addr.h"

enum cfg_engine { CFG_ENGINE_AUTO, CFG_ENGINE_IO_URING, CFG_ENGINE_EPOLL };
enum cfg_proto { CFG_PROTO_TCP, CFG_PROTO_UDP };
enum cfg_proxy { CFG_PROXY_NONE = 0, CFG_PROXY_V1 = 1, CFG_PROXY_V2 = 2 };
enum cfg_log_format { CFG_LOG_TEXT, CFG_LOG_JSON };
/* The replication role a redis check requires (INFO replication's role: line). */
enum cfg_redis_role { CFG_ROLE_ANY = 0, CFG_ROLE_MASTER, CFG_ROLE_SLAVE };
/* What a backend's open connections get when it is marked down: kept, or reset. */
enum cfg_on_down { CFG_ON_DOWN_KEEP = 0, CFG_ON_DOWN_SHUTDOWN = 1 };

/* Defaults from SPEC.md, in milliseconds. */
#define CFG_DEFAULT_SHUTDOWN_GRACE_MS 10000
#define CFG_DEFAULT_CONNECT_MS	      2000
#define CFG_DEFAULT_TCP_IDLE_MS	      3600000
#define CFG_DEFAULT_UDP_IDLE_MS	      30000
#define CFG_DEFAULT_RETRIES	      2
#define CFG_DEFAULT_HC_INTERVAL_MS    2000
#define CFG_DEFAULT_HC_TIMEOUT_MS     1000
#define CFG_DEFAULT_HC_RISE	      2
#define CFG_DEFAULT_HC_FALL	      3
#define CFG_MAX_WEIGHT		      1000
/* A pool's "queue": how long a client waits by default, and the most that may wait. */
#define CFG_DEFAULT_QUEUE_TIMEOUT_MS 5000
#define CFG_MAX_QUEUE		     1000000
/* Most connections per second or minute a per_client.rate may name. */
#define CFG_MAX_RATE 1000000
/* A pool's agent check: how often by default. */
#define CFG_DEFAULT_AGENT_INTERVAL_MS 2000
/* TCP keepalive of a listener's "keepalive" block, for keys left out (seconds, probes). */
#define CFG_DEFAULT_KA_IDLE_S	  60
#define CFG_DEFAULT_KA_INTERVAL_S 10
#define CFG_DEFAULT_KA_COUNT	  6
/* Longest backend hash_key: a name-sized string is plenty for a key. */
#define CFG_HASH_KEY_MAX 255
/* Longest listener, pool or backend name, in bytes (config, lbctl and the control socket). */
#define CFG_NAME_MAX 255
/* Longest mysql check user: MySQL's limit for user names (32 characters since 5.7.8). */
#define CFG_MYSQL_USER_MAX 32
/* Largest max_conns `add` accepts at run time (control API); the config file allows INT_MAX. */
#define CFG_ADD_MAX_CONNS 1000000000

struct cfg_health {
	char *type; /* "none" (default), "tcp", "send_expect", "http", "udp", ... */
	uint64_t interval_ms, timeout_ms;
	int rise, fall;
	char *send;	   /* send_expect, udp; NULL if unset; may hold NULs ("\u0000") */
	char *expect;	   /* send_expect, udp; NULL if unset; may hold NULs */
	size_t send_len;   /* bytes in send (a NUL follows them) */
	size_t expect_len; /* bytes in expect */
	char *path;	   /* http; default "/" */
	int expect_status; /* http; 0 = any 2xx/3xx */
	int port;	   /* check this port of each backend's host; 0 = the backend's port */
	int role;	   /* redis: enum cfg_redis_role the server must report */
	char *user;	   /* mysql: log in as this user, no password; NULL = greeting only */
};

struct cfg_backend {
	char *name;    /* defaults to the address string */
	char *address; /* as written */
	struct lb_addr addr;
	int weight;    /* 0..CFG_MAX_WEIGHT, default 1 */
	int max_conns; /* 0 = none */
	bool backup;
	char *hash_key; /* ip_hash key; NULL = the resolved address ("10.0.0.1:80") */
	int check_port; /* health checks go to this port of its host; 0 = the pool's health.port */
	uint64_t slow_start_ms; /* ramp after coming up or being added; 0 = the pool's */
	int agent_port;		/* its agent answers here; 0 = the pool's agent.port */
};

struct cfg_pool {
	char *name;
	char *algorithm; /* canonical module name, aliases resolved */
	int retries;
	enum cfg_on_down on_down;
	int panic_threshold; /* percent of backends that must be up; 0 = no panic mode */
	/* "queue": clients wait for a free slot when every usable backend is at max_conns. */
	uint64_t slow_start_ms; /* a backend that comes up ramps its weight over this; 0 = off */
	int agent_port;		/* "agent": HAProxy's agent protocol on this port; 0 = off */
	uint64_t agent_interval_ms; /* ... asked this often */
	int queue_max;		    /* waiting clients at most; 0 = no queue (refuse at once) */
	uint64_t queue_timeout_ms;  /* how long one waits before it is closed */
	struct cfg_health health;
	struct cfg_backend *backends;
	size_t nbackends;
};

/* TCP keepalive on both sides of a listener's connections (SO_KEEPALIVE, TCP_KEEPIDLE,
 * TCP_KEEPINTVL, TCP_KEEPCNT). */
struct cfg_keepalive {
	bool on;	/* the listener has a "keepalive" block */
	int idle_s;	/* idle time before the first probe */
	int interval_s; /* between probes */
	int count;	/* unanswered probes before the connection is dropped */
};

struct cfg_listener {
	char *name;
	enum cfg_proto protocol;
	char *listen; /* as written */
	struct lb_addr addr;
	char *pool;	   /* pool name */
	size_t pool_index; /* index into config.pools */
	int max_conns;
	int max_conns_per_client;    /* per client IP; 0 = none (per_client.max_conns) */
	enum cfg_proxy accept_proxy; /* PROXY header clients must send first; none = off */
	uint32_t per_client_rate;    /* per_client.rate: new connections per client IP, in
				      * thousandths per second; 0 = none */
	struct cidr *allow, *deny;
	size_t nallow, ndeny;
	enum cfg_proxy proxy_protocol;
	uint64_t connect_timeout_ms;
	uint64_t idle_timeout_ms; /* protocol-specific default applied */
	uint64_t lifetime_ms;	  /* tcp: close connections this old at a quiet moment; 0 = never */
	bool freebind;		  /* IP_FREEBIND: bind before the address exists on the host */
	/* "ipv6only": false: an IPv6 listener that also takes IPv4 clients, which it sees as
	 * ::ffff:a.b.c.d (IPV6_V6ONLY off); false for every IPv4 listener */
	bool dual_stack;
	struct cfg_keepalive keepalive;
};

struct config {
	char *path; /* the file it came from */
	enum cfg_engine engine;
	int workers; /* 0 = one per online CPU (resolved by main, not here) */
	uint64_t shutdown_grace_ms;
	uint64_t withdraw_delay_ms; /* SIGTERM: not ready, still accepting, this long (0 = none) */
	char *control_socket;	    /* default: "lb.sock" in the config file's directory */
	mode_t control_mode;	    /* default 0660 */
	char *metrics_listen;	    /* NULL = off */
	struct lb_addr metrics_addr;
	int log_level; /* enum log_level from log.h */
	enum cfg_log_format log_format;
	bool log_access;
	char *user;  /* drop root to this user once bound; NULL = stay as started */
	char *group; /* with user: this group, not the user's primary one; NULL = that one */
	uid_t uid;   /* user's, resolved at load */
	gid_t gid;   /* group's, or user's primary group */
	struct cfg_listener *listeners;
	size_t nlisteners;
	struct cfg_pool *pools;
	size_t npools;
};

/* Human-readable validation errors, one per entry, each naming file and JSON path. */
struct cfg_errors {
	char **msg;
	size_t n;
};

/* Load and validate path. On success returns 0 and *out (caller frees with config_free).
 * On failure returns -EINVAL (or -errno if unreadable) with every error collected in errs,
 * and *out untouched. errs must be zeroed by the caller; free with cfg_errors_free. */
int config_load(const char *path, struct config **out, struct cfg_errors *errs);
/* Same, from a string (for tests); name is used in messages in place of a file name. */
int config_load_string(const char *json, const char *name, struct config **out,
		       struct cfg_errors *errs);
void config_free(struct config *cfg);
/* Free the strings h owns, not h itself (config_free does it for each pool; pools for the
 * copies they keep). */
void cfg_health_free(struct cfg_health *h);
void cfg_errors_free(struct cfg_errors *errs);

/* "250ms", "2s", "5m", "1h" -> milliseconds. Returns 0 or -EINVAL. */
int config_parse_duration(const char *s, uint64_t *ms);

#endif
