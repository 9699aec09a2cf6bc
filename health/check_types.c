/* The health check registry: the one place that maps a configured type name to its module,
 * so that the config loader, pools and the prober never switch on a check's name. */
#include "health/check_types.h"

#include <stdio.h>
#include <string.h>

/* Registry order is the order hc_names() lists them in error messages. */
static const struct hc_check *const hc_checks[] = {
    &hc_check_none, &hc_check_tcp,   &hc_check_send_expect, &hc_check_http,
    &hc_check_udp,  &hc_check_redis, &hc_check_postgres,    &hc_check_mysql,
};
#define HC_NCHECKS (sizeof(hc_checks) / sizeof(hc_checks[0]))

const struct hc_check *hc_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < HC_NCHECKS; i++)
		if (strcmp(hc_checks[i]->name, name) == 0)
			return hc_checks[i];
	return NULL;
}

void hc_names(char *buf, size_t len)
{
	size_t off = 0;

	if (!len)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < HC_NCHECKS && off < len; i++) {
		int n = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", hc_checks[i]->name);
		if (n < 0)
			break;
		off += (size_t)n;
	}
}

bool hc_probes(const struct hc_check *c)
{
	return c->socktype != 0;
}
