/* The health check registry: what each check module declares about itself (its name, socket
 * type, which health options it needs, accepts or refuses, and its two functions) and the
 * name -> module lookup. Types and lookup only, no I/O and no threads, so that the config
 * loader validates and pools resolve their type through it without the prober. */
#ifndef LB_HEALTH_CHECK_TYPES_H
#define LB_HEALTH_CHECK_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cfg_health;

enum hc_result { HC_NEED_MORE = 0, HC_PASS = 1, HC_FAIL = 2 };

/* The health options that only some types read: the index into hc_check.options. */
enum hc_option {
	HC_OPT_SEND,
	HC_OPT_EXPECT,
	HC_OPT_PATH,
	HC_OPT_EXPECT_STATUS,
	HC_OPT_ROLE,
	HC_OPT_USER,
	HC_NOPTIONS
};
/* What a type does with an option. Refused is the zero value, so that a module names only the
 * options it reads. Required means present and non-empty. */
enum hc_use { HC_REFUSED = 0, HC_OPTIONAL, HC_REQUIRED };

struct hc_check {
	const char *name;
	/* SOCK_STREAM or SOCK_DGRAM; 0 for a type that never probes ("none"). */
	int socktype;
	/* enum hc_use for each enum hc_option; the config loader enforces it. */
	unsigned char options[HC_NOPTIONS];
	/* Write what to send once connected (for udp: the datagram) into buf, like snprintf:
	 * returns the full length even when it does not fit (call with len 0 to size it).
	 * host is the backend as configured ("db1:5432"), for protocols that name it.
	 * NULL = send nothing (the connect alone, or the server's greeting, decides). */
	size_t (*request)(const struct cfg_health *h, const char *host, uint8_t *buf, size_t len);
	/* Judge buf[0..len), every byte received so far (for udp: one datagram). Returns
	 * HC_NEED_MORE while undecided; on HC_FAIL writes a reason ("bad reply: ...").
	 * NULL = pass as soon as the connect completes (tcp). */
	enum hc_result (*parse)(const uint8_t *buf, size_t len, const struct cfg_health *h,
				char *reason, size_t rlen);
};

/* Name -> module ("none", "tcp", "send_expect", "http", "udp", "redis", "postgres",
 * "mysql"); NULL if unknown (or NULL). */
const struct hc_check *hc_find(const char *name);
/* The registered names, comma-separated in registry order ("none, tcp, ..."), into buf like
 * snprintf (cut to fit); for error messages. */
void hc_names(char *buf, size_t len);
/* True if the type runs active checks; false for "none" (passive checks only). */
bool hc_probes(const struct hc_check *c);

/* The modules (health/checks.c). */
extern const struct hc_check hc_check_none;
/* The plain connect check; the prober also uses it to bring back a backend of a `none`
 * pool that passive checks marked down. */
extern const struct hc_check hc_check_tcp;
extern const struct hc_check hc_check_send_expect;
extern const struct hc_check hc_check_http;
extern const struct hc_check hc_check_udp;
extern const struct hc_check hc_check_redis;
extern const struct hc_check hc_check_postgres;
extern const struct hc_check hc_check_mysql;
/* The agent check (pool "agent"): connect, read one line, judged by the prober itself (not
 * a health type: it changes weight and state, not health). */
extern const struct hc_check hc_check_agent;
/* The longest agent line lb reads. */
#define HC_AGENT_LINE_MAX 512

#endif
