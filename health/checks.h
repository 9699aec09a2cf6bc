/* Health check types as modules behind one interface (SPEC.md "Health checks"): each type
 * says what to send once connected and judges the reply bytes as they arrive. The prober
 * (health/prober.c) owns sockets, timing and rise/fall; checks never do I/O. */
#ifndef LB_HEALTH_CHECKS_H
#define LB_HEALTH_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include "health/check_types.h"
#include "lb/config.h"

/* The most reply bytes any check reads; a reply still undecided at this size fails. */
#define HC_REPLY_MAX 4096
/* Room for a failure reason, e.g. "bad reply: \"-NOAUTH Authentication required.\"". */
#define HC_REASON_MAX 96

/* c->parse plus the size limit every check shares: undecided at HC_REPLY_MAX bytes is a
 * failure. A check without a parser passes. */
enum hc_result hc_judge(const struct hc_check *c, const uint8_t *buf, size_t len,
			const struct cfg_health *h, char *reason, size_t rlen);

/* Write `bad reply: "<first line of buf, escaped, cut>"` into reason. */
void hc_bad_reply(char *reason, size_t rlen, const uint8_t *buf, size_t len);

#endif
