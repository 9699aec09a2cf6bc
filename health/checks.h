/* Health check types as modules behind one interface (SPEC.md "Health checks"): each type
 * says what to send once connected and judges the reply bytes as they arrive. The prober
 * (health/prober.c) owns sockets, timing and rise/fall; checks never do I/O. */
#ifndef LB_HEALTH_CHECKS_H
#define LB_HEALTH_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include "lb/config.h"

/* The most reply bytes any check reads; a reply still undecided at this size fails. */
#define HC_REPLY_MAX 4096
/* Room for a failure reason, e.g. "bad reply: \"-NOAUTH Authentication required.\"". */
#define HC_REASON_MAX 96

enum hc_result { HC_NEED_MORE = 0, HC_PASS = 1, HC_FAIL = 2 };

struct hc_check {
	const char *name;
	/* SOCK_STREAM or SOCK_DGRAM; 0 for a type that never probes ("none"). */
	int socktype;
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
 * "mysql"); NULL if unknown. */
const struct hc_check *hc_find(const char *name);

/* c->parse plus the size limit every check shares: undecided at HC_REPLY_MAX bytes is a
 * failure. A check without a parser passes. */
enum hc_result hc_judge(const struct hc_check *c, const uint8_t *buf, size_t len,
			const struct cfg_health *h, char *reason, size_t rlen);

/* Write `bad reply: "<first line of buf, escaped, cut>"` into reason. */
void hc_bad_reply(char *reason, size_t rlen, const uint8_t *buf, size_t len);

/* The plain connect check; the prober also uses it to bring back a backend of a `none`
 * pool that passive checks marked down. */
extern const struct hc_check hc_check_tcp;

#endif
