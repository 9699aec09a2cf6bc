/* The configuration loader: JSON (jansson) -> struct config, validated whole. Every problem
 * becomes one message naming the file, the JSON path and what was expected; all of them are
 * collected, and a config with any error is freed, never returned half-built. */
#include "lb/config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "algorithms/algorithm.h"
#include "health/check_types.h"
#include "lb/config_json.h"
#include "lb/log.h"
#include "lb/resolve.h"
#include "lb/privs.h"

/* Upper bounds from the brief: enough for any real deployment, small enough to catch typos. */
#define CFG_MAX_WORKERS	  256
#define CFG_MAX_RETRIES	  100
#define CFG_MAX_RISE_FALL 100
/* Unix socket paths must fit sun_path, NUL included. */
#define CFG_SUN_PATH_MAX	 (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define CFG_DEFAULT_CONTROL_MODE 0660
#define CFG_DEFAULT_SOCKET_NAME	 "lb.sock"
#define CFG_DEFAULT_HTTP_PATH	 "/"
#define CFG_DEFAULT_ALGORITHM	 "round_robin"

#define ADDR_EXPECTED	 "\"host:port\" (port 1-65535) or \"[v6]:port\""
#define NUMERIC_EXPECTED "a numeric \"ip:port\" (port 1-65535) or \"[v6]:port\""

static const char *const top_keys[] = {
    "engine", "workers", "shutdown_grace", "withdraw_delay", "control", "metrics",
    "log",    "user",	 "group",	   "listeners",	     "pools",	NULL};
static const char *const control_keys[] = {"socket", "mode", NULL};
static const char *const metrics_keys[] = {"listen", NULL};
static const char *const log_keys[] = {"level", "format", "access", NULL};
static const char *const listener_keys[] = {"name",
					    "protocol",
					    "listen",
					    "pool",
					    "max_conns",
					    "allow",
					    "deny",
					    "proxy_protocol",
					    "timeouts",
					    "freebind",
					    "max_conns_per_client",
					    "per_client",
					    "accept_proxy",
					    "keepalive",
					    "ipv6only",
					    NULL};
static const char *const timeout_keys[] = {"connect", "idle", "lifetime", NULL};
static const char *const keepalive_keys[] = {"idle", "interval", "count", NULL};
static const char *const per_client_keys[] = {"max_conns", "rate", NULL};
static const char *const pool_keys[] = {
    "name",  "algorithm", "retries",  "on_down", "panic_threshold", "queue", "slow_start",
    "agent", "health",	  "backends", NULL};
static const char *const agent_keys[] = {"port", "interval", NULL};
static const char *const queue_keys[] = {"max", "timeout", NULL};
static const char *const health_keys[] = {"type", "interval", "timeout", "rise",	  "fall",
					  "send", "expect",   "path",	 "expect_status", "port",
					  "role", "user",     NULL};
static const char *const backend_keys[] = {"name",	 "address",  "weight",	   "max_conns",
					   "backup",	 "hash_key", "check_port", "slow_start",
					   "agent_port", NULL};

/* Enumerations: the index in each table is the enum value. */
static const char *const engine_names[] = {"auto", "io_uring", "epoll", NULL};
static const char *const proto_names[] = {"tcp", "udp", NULL};
static const char *const proxy_names[] = {"none", "v1", "v2", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
/* "replica" is Redis 5's name for "slave"; INFO still says role:slave. */
static const char *const role_names[] = {"master", "slave", "replica", NULL};
static const char *const on_down_names[] = {"keep", "shutdown", NULL};
static const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};

/* ---- top-level sections ---- */

/* "lb.sock" in the directory of file; just "lb.sock" when file has no directory part. */
static char *default_socket(struct cfg_ctx *c, const char *file)
{
	const char *slash = file ? strrchr(file, '/') : NULL;
	char *s;

	if (!slash)
		return cfg_strdup(c, CFG_DEFAULT_SOCKET_NAME);
	if (asprintf(&s, "%.*s%s", (int)(slash - file + 1), file, CFG_DEFAULT_SOCKET_NAME) < 0) {
		c->oom = true;
		return NULL;
	}
	return s;
}

static void parse_mode(struct cfg_ctx *c, const json_t *ctl, mode_t *mode)
{
	const char *what = "a string of octal digits like \"0660\"";
	const json_t *v = json_object_get(ctl, "mode");
	const char *s;

	if (!v)
		return;
	s = json_string_value(v);
	/* At most four digits: permission bits plus setuid/setgid/sticky (07777). */
	if (!s || !*s || strlen(s) > 4 || strspn(s, "01234567") != strlen(s)) {
		cfg_err_got(c, "control.mode", v, what);
		return;
	}
	*mode = (mode_t)strtoul(s, NULL, 8);
	/* Connecting to a Unix socket needs write permission: that would be every local user. */
	if (*mode & S_IWOTH)
		cfg_err_at(c, "control.mode",
			   "%s lets every local user connect and control lb (add backends, "
			   "reload); give access through the group instead, e.g. \"0660\"",
			   s);
}

static void parse_control(struct cfg_ctx *c, const json_t *root, struct config *cfg,
			  const char *file)
{
	const json_t *ctl = NULL;
	const char *sock = NULL;

	cfg->control_mode = CFG_DEFAULT_CONTROL_MODE;
	if (cfg_get_object(c, root, "", "control", &ctl) == CFG_OK) {
		cfg_check_keys(c, ctl, "control", control_keys);
		cfg_get_string(c, ctl, "control", "socket", "a socket path (string)", &sock);
		parse_mode(c, ctl, &cfg->control_mode);
	}
	if (sock && !*sock) {
		cfg_err_got(c, "control.socket", json_object_get(ctl, "socket"),
			    "a non-empty socket path");
		return;
	}
	cfg->control_socket = sock ? cfg_strdup(c, sock) : default_socket(c, file);
	if (cfg->control_socket && strlen(cfg->control_socket) > CFG_SUN_PATH_MAX)
		cfg_err_at(c, "control.socket",
			   "\"%s\" is longer than a Unix socket path may be (%zu bytes)%s",
			   cfg->control_socket, (size_t)CFG_SUN_PATH_MAX,
			   sock ? "" : "; set control.socket");
}

static void parse_metrics(struct cfg_ctx *c, const json_t *root, struct config *cfg)
{
	const json_t *m = NULL;
	const char *listen, *why = "";

	if (cfg_get_object(c, root, "", "metrics", &m) != CFG_OK)
		return;
	cfg_check_keys(c, m, "metrics", metrics_keys);
	if (cfg_get_string(c, m, "metrics", "listen", NUMERIC_EXPECTED, &listen) != CFG_OK)
		return;
	if (addr_parse_numeric(listen, &cfg->metrics_addr, &why) < 0) {
		cfg_err_got_why(c, "metrics.listen", json_object_get(m, "listen"), NUMERIC_EXPECTED,
				why);
		return;
	}
	cfg->metrics_listen = cfg_strdup(c, listen);
}

static void parse_log(struct cfg_ctx *c, const json_t *root, struct config *cfg)
{
	const json_t *lg = NULL;
	int fmt = CFG_LOG_TEXT, level = LOG_INFO;

	cfg->log_level = LOG_INFO;
	cfg->log_format = CFG_LOG_TEXT;
	if (cfg_get_object(c, root, "", "log", &lg) != CFG_OK)
		return;
	cfg_check_keys(c, lg, "log", log_keys);
	/* The table above only builds the message; log_level_parse owns the mapping. */
	if (cfg_get_enum(c, lg, "log", "level", log_level_names, &level) == CFG_OK)
		cfg->log_level = log_level_parse(log_level_names[level]);
	if (cfg_get_enum(c, lg, "log", "format", log_format_names, &fmt) == CFG_OK)
		cfg->log_format = (enum cfg_log_format)fmt;
	cfg_get_bool(c, lg, "log", "access", &cfg->log_access);
}

static void parse_globals(struct cfg_ctx *c, const json_t *root, struct config *cfg)
{
	int engine = CFG_ENGINE_AUTO;

	if (cfg_get_enum(c, root, "", "engine", engine_names, &engine) == CFG_OK)
		cfg->engine = (enum cfg_engine)engine;
	cfg_get_int(c, root, "", "workers", 0, CFG_MAX_WORKERS, &cfg->workers);
	cfg->shutdown_grace_ms = CFG_DEFAULT_SHUTDOWN_GRACE_MS;
	cfg_get_duration(c, root, "", "shutdown_grace", false, &cfg->shutdown_grace_ms);
	cfg_get_duration(c, root, "", "withdraw_delay", false, &cfg->withdraw_delay_ms);
}

/* "user" and "group" are looked up now, so that a typo fails the load (and --check), not the
 * start after binding. "group" alone is refused: a daemon still root has no use for it. */
static void parse_user_group(struct cfg_ctx *c, const json_t *root, struct config *cfg)
{
	const char *user = NULL, *group = NULL;
	int ur = cfg_get_string(c, root, "", "user", "a user name (string)", &user);
	int gr = cfg_get_string(c, root, "", "group", "a group name (string)", &group);
	int rc;

	if (ur == CFG_OK) {
		rc = privs_user_lookup(user, &cfg->uid, &cfg->gid);
		if (rc == -ENOENT)
			cfg_err_got(c, "user", json_object_get(root, "user"),
				    "the name of a user on this host");
		else if (rc < 0)
			cfg_err_at(c, "user", "cannot look up \"%s\": %s", user, strerror(-rc));
		else if (cfg->uid == 0)
			cfg_err_at(c, "user",
				   "\"%s\" is root (uid 0); leave \"user\" out to run as root",
				   user);
		else
			cfg->user = cfg_strdup(c, user);
	}
	if (gr != CFG_OK)
		return;
	if (ur == CFG_ABSENT) {
		cfg_err_at(c, "group",
			   "needs \"user\" as well: lb changes its group only when it drops root "
			   "for a user");
		return;
	}
	rc = privs_group_lookup(group, &cfg->gid);
	if (rc == -ENOENT)
		cfg_err_got(c, "group", json_object_get(root, "group"),
			    "the name of a group on this host");
	else if (rc < 0)
		cfg_err_at(c, "group", "cannot look up \"%s\": %s", group, strerror(-rc));
	else
		cfg->group = cfg_strdup(c, group);
}

/* ---- listeners ---- */

static void parse_cidrs(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key,
			struct cidr **out, size_t *nout)
{
	const char *what = "a CIDR like \"10.0.0.0/8\" or \"2001:db8::/32\"";
	char path[CFG_PATH_MAX], epath[CFG_PATH_MAX];
	const json_t *arr = json_object_get(obj, key), *v;
	size_t i;

	if (!arr)
		return;
	cfg_path_key(path, parent, key);
	if (!json_is_array(arr)) {
		cfg_err_got(c, path, arr, "an array of CIDR strings");
		return;
	}
	*out = cfg_calloc(c, json_array_size(arr), sizeof(**out));
	if (!*out)
		return;
	*nout = json_array_size(arr);
	for (i = 0; i < json_array_size(arr); i++) {
		v = json_array_get(arr, i);
		if (json_is_string(v) && cidr_parse(json_string_value(v), &(*out)[i]) == 0)
			continue;
		cfg_path_index(epath, path, i);
		cfg_err_got(c, epath, v, what);
	}
}

/* "N/s" or "N/m", N 1..CFG_MAX_RATE: thousandths of a connection per second, or 0. */
static uint32_t parse_rate(const char *s)
{
	char *end;
	unsigned long n;

	if (!s || *s < '0' || *s > '9')
		return 0;
	n = strtoul(s, &end, 10);
	if (n < 1 || n > CFG_MAX_RATE || end[0] != '/' || end[2] != '\0')
		return 0;
	if (end[1] == 's')
		return (uint32_t)(n * 1000);
	if (end[1] == 'm')
		return (uint32_t)(n * 1000 / 60 ? n * 1000 / 60 : 1);
	return 0;
}

static void parse_per_client(struct cfg_ctx *c, const json_t *obj, const char *parent,
			     struct cfg_listener *l)
{
	char path[CFG_PATH_MAX], rpath[CFG_PATH_MAX];
	const json_t *pc = NULL, *v;

	if (cfg_get_object(c, obj, parent, "per_client", &pc) != CFG_OK)
		return;
	cfg_path_key(path, parent, "per_client");
	cfg_check_keys(c, pc, path, per_client_keys);
	if (json_object_get(pc, "max_conns") && json_object_get(obj, "max_conns_per_client"))
		cfg_err_at(c, path,
			   "max_conns given twice: here and in \"max_conns_per_client\" (its "
			   "older name); keep this one");
	cfg_get_int(c, pc, path, "max_conns", 0, INT_MAX, &l->max_conns_per_client);
	v = json_object_get(pc, "rate");
	if (!v)
		return;
	l->per_client_rate = parse_rate(json_string_value(v));
	if (!l->per_client_rate) {
		cfg_path_key(rpath, path, "rate");
		cfg_err_got(c, rpath, v, "a rate like \"100/s\" or \"600/m\" (1 to 1000000)");
	}
}

static void parse_timeouts(struct cfg_ctx *c, const json_t *obj, const char *parent,
			   struct cfg_listener *l)
{
	char path[CFG_PATH_MAX];
	const json_t *t = NULL;

	l->connect_timeout_ms = CFG_DEFAULT_CONNECT_MS;
	l->idle_timeout_ms =
	    l->protocol == CFG_PROTO_UDP ? CFG_DEFAULT_UDP_IDLE_MS : CFG_DEFAULT_TCP_IDLE_MS;
	if (cfg_get_object(c, obj, parent, "timeouts", &t) != CFG_OK)
		return;
	cfg_path_key(path, parent, "timeouts");
	cfg_check_keys(c, t, path, timeout_keys);
	cfg_get_duration(c, t, path, "connect", true, &l->connect_timeout_ms);
	cfg_get_duration(c, t, path, "idle", true, &l->idle_timeout_ms);
	if (cfg_get_duration(c, t, path, "lifetime", true, &l->lifetime_ms) == CFG_OK &&
	    l->protocol == CFG_PROTO_UDP) {
		char lpath[CFG_PATH_MAX];
		cfg_path_key(lpath, path, "lifetime");
		cfg_err_at(c, lpath,
			   "a connection lifetime is for tcp listeners; udp sessions end "
			   "by \"idle\"");
	}
}

/* The kernel's bounds: TCP_KEEPIDLE and TCP_KEEPINTVL 1..32767 s, TCP_KEEPCNT 1..127. */
#define KA_MAX_S     32767
#define KA_MAX_COUNT 127

/* A keepalive time: whole seconds (the kernel's unit), 1 s to KA_MAX_S. */
static void parse_ka_seconds(struct cfg_ctx *c, const json_t *ka, const char *parent,
			     const char *key, int *out)
{
	char path[CFG_PATH_MAX];
	uint64_t ms = 0;

	if (cfg_get_duration(c, ka, parent, key, true, &ms) != CFG_OK)
		return;
	if (ms % 1000 || ms / 1000 > KA_MAX_S) {
		cfg_path_key(path, parent, key);
		cfg_err_got(
		    c, path, json_object_get(ka, key),
		    "whole seconds from 1s to 32767s (the kernel's keepalive unit and limit)");
		return;
	}
	*out = (int)(ms / 1000);
}

static void parse_keepalive(struct cfg_ctx *c, const json_t *obj, const char *parent,
			    struct cfg_listener *l)
{
	char path[CFG_PATH_MAX];
	const json_t *ka = NULL;

	if (cfg_get_object(c, obj, parent, "keepalive", &ka) != CFG_OK)
		return;
	cfg_path_key(path, parent, "keepalive");
	if (l->protocol == CFG_PROTO_UDP) {
		cfg_err_at(c, path,
			   "TCP keepalive is for tcp listeners; udp sessions end by "
			   "\"timeouts\".\"idle\"");
		return;
	}
	cfg_check_keys(c, ka, path, keepalive_keys);
	l->keepalive = (struct cfg_keepalive){.on = true,
					      .idle_s = CFG_DEFAULT_KA_IDLE_S,
					      .interval_s = CFG_DEFAULT_KA_INTERVAL_S,
					      .count = CFG_DEFAULT_KA_COUNT};
	parse_ka_seconds(c, ka, path, "idle", &l->keepalive.idle_s);
	parse_ka_seconds(c, ka, path, "interval", &l->keepalive.interval_s);
	cfg_get_int(c, ka, path, "count", 1, KA_MAX_COUNT, &l->keepalive.count);
}

static void parse_listen(struct cfg_ctx *c, const json_t *obj, const char *parent,
			 struct cfg_listener *l)
{
	char path[CFG_PATH_MAX];
	const char *s, *why = "";
	int rc = cfg_get_string(c, obj, parent, "listen", NUMERIC_EXPECTED, &s);

	if (rc == CFG_ABSENT)
		cfg_err_missing(c, parent, "listen", NUMERIC_EXPECTED);
	if (rc != CFG_OK)
		return;
	if (addr_parse_numeric(s, &l->addr, &why) < 0) {
		cfg_path_key(path, parent, "listen");
		cfg_err_got_why(c, path, json_object_get(obj, "listen"), NUMERIC_EXPECTED, why);
		return;
	}
	l->listen = cfg_strdup(c, s);
}

/* "ipv6only" (default true, as nginx's): only an IPv6 address has the option. */
static void parse_ipv6only(struct cfg_ctx *c, const json_t *obj, const char *parent,
			   struct cfg_listener *l)
{
	char path[CFG_PATH_MAX];
	bool only = true;

	if (cfg_get_bool(c, obj, parent, "ipv6only", &only) != CFG_OK || !l->listen)
		return;
	if (l->addr.ss.ss_family != AF_INET6) {
		cfg_path_key(path, parent, "ipv6only");
		cfg_err_at(c, path,
			   "only for an IPv6 listen address (\"[::]:port\"); %s is IPv4, and an "
			   "IPv4 socket takes IPv4 clients only",
			   l->listen);
		return;
	}
	l->dual_stack = !only;
}

static void parse_listener(struct cfg_ctx *c, const json_t *obj, const char *path,
			   struct cfg_listener *l)
{
	int proto = CFG_PROTO_TCP, proxy = CFG_PROXY_NONE;
	const char *pool;

	if (!json_is_object(obj)) {
		cfg_err_got(c, path, obj, "a listener object");
		return;
	}
	cfg_check_keys(c, obj, path, listener_keys);
	if (cfg_get_enum(c, obj, path, "protocol", proto_names, &proto) == CFG_OK)
		l->protocol = (enum cfg_proto)proto;
	parse_listen(c, obj, path, l);
	if (cfg_get_name(c, obj, path, true, &l->name) == CFG_ABSENT && l->listen)
		l->name = cfg_strdup(c, l->listen);
	switch (cfg_get_string(c, obj, path, "pool", "a pool name (string)", &pool)) {
	case CFG_OK:
		l->pool = cfg_strdup(c, pool);
		break;
	case CFG_ABSENT:
		cfg_err_missing(c, path, "pool", "the name of a pool");
		break;
	}
	cfg_get_int(c, obj, path, "max_conns", 0, INT_MAX, &l->max_conns);
	cfg_get_int(c, obj, path, "max_conns_per_client", 0, INT_MAX, &l->max_conns_per_client);
	parse_per_client(c, obj, path, l);
	parse_cidrs(c, obj, path, "allow", &l->allow, &l->nallow);
	parse_cidrs(c, obj, path, "deny", &l->deny, &l->ndeny);
	if (cfg_get_enum(c, obj, path, "proxy_protocol", proxy_names, &proxy) == CFG_OK)
		l->proxy_protocol = (enum cfg_proxy)proxy;
	int accept = CFG_PROXY_NONE;
	if (cfg_get_enum(c, obj, path, "accept_proxy", proxy_names, &accept) == CFG_OK) {
		l->accept_proxy = (enum cfg_proxy)accept;
		if (l->protocol == CFG_PROTO_UDP && accept != CFG_PROXY_NONE) {
			char p[CFG_PATH_MAX];
			cfg_path_key(p, path, "accept_proxy");
			cfg_err_at(c, p, "PROXY headers come on tcp listeners only");
		}
	}
	if (l->protocol == CFG_PROTO_UDP && l->proxy_protocol != CFG_PROXY_NONE) {
		char p[CFG_PATH_MAX];
		cfg_path_key(p, path, "proxy_protocol");
		cfg_err_got(c, p, json_object_get(obj, "proxy_protocol"),
			    "\"none\" on a udp listener (PROXY headers are tcp only)");
	}
	parse_timeouts(c, obj, path, l);
	parse_keepalive(c, obj, path, l);
	cfg_get_bool(c, obj, path, "freebind", &l->freebind);
	parse_ipv6only(c, obj, path, l);
}

/* ---- pools ---- */

/* The check module's rule for an option (enum hc_use) against the health block: false, with
 * the error recorded, if the option is set but refused, or required but absent or empty. */
static bool hc_option_ok(struct cfg_ctx *c, const char *path, const struct hc_check *chk,
			 enum hc_option opt, const char *key, bool set, bool nonempty)
{
	char p[CFG_PATH_MAX];

	cfg_path_key(p, path, key);
	if (set && chk->options[opt] == HC_REFUSED) {
		cfg_err_at(c, p, "not used by health type \"%s\"", chk->name);
		return false;
	}
	if (!nonempty && chk->options[opt] == HC_REQUIRED) {
		cfg_err_at(c, p, "health type \"%s\" requires a non-empty \"%s\"", chk->name, key);
		return false;
	}
	return true;
}

/* A string option; duplicated into *out if the type reads it. With len, a payload that may
 * hold NUL bytes ("\u0000"; its length goes to *len); without, text. */
static void parse_hc_string(struct cfg_ctx *c, const json_t *hv, const char *path,
			    const struct hc_check *chk, enum hc_option opt, const char *key,
			    char **out, size_t *len)
{
	const char *s = NULL;
	const json_t *v = json_object_get(hv, key);
	int rc;

	if (len && json_is_string(v)) {
		s = json_string_value(v);
		rc = CFG_OK;
	} else {
		rc = cfg_get_string(c, hv, path, key, "a string", &s);
	}

	if (!chk || rc == CFG_BAD)
		return;
	size_t n = rc == CFG_OK ? (len ? json_string_length(v) : strlen(s)) : 0;
	if (!hc_option_ok(c, path, chk, opt, key, rc == CFG_OK, n > 0))
		return;
	if (rc != CFG_OK)
		return;
	*out = malloc(n + 1);
	if (!*out) {
		c->oom = true;
		return;
	}
	memcpy(*out, s, n);
	(*out)[n] = '\0';
	if (len)
		*len = n;
}

/* path starts with '/' and holds no spaces or control characters (it goes into the request
 * line verbatim), and is "/" when the type reads it but it is absent; expect_status 100-599. */
static void parse_hc_path_status(struct cfg_ctx *c, const json_t *hv, const char *path,
				 const struct hc_check *chk, struct cfg_health *h)
{
	char p[CFG_PATH_MAX];
	const json_t *pv = json_object_get(hv, "path");
	int rc;

	parse_hc_string(c, hv, path, chk, HC_OPT_PATH, "path", &h->path, NULL);
	if (h->path && (h->path[0] != '/' || strpbrk(h->path, " \t\r\n"))) {
		cfg_path_key(p, path, "path");
		cfg_err_got(c, p, pv, "a request path starting with '/' without spaces");
	}
	if (chk && chk->options[HC_OPT_PATH] != HC_REFUSED && !h->path)
		h->path = cfg_strdup(c, CFG_DEFAULT_HTTP_PATH);
	rc = cfg_get_int(c, hv, path, "expect_status", 100, 599, &h->expect_status);
	if (chk && rc != CFG_BAD)
		hc_option_ok(c, path, chk, HC_OPT_EXPECT_STATUS, "expect_status", rc == CFG_OK,
			     rc == CFG_OK);
}

/* user: a MySQL user name of 1 to CFG_MYSQL_USER_MAX bytes (a NUL, which would cut it in the
 * NUL-terminated login packet, is refused with every string but send and expect). */
static void parse_hc_user(struct cfg_ctx *c, const json_t *hv, const char *path,
			  const struct hc_check *chk, struct cfg_health *h)
{
	char p[CFG_PATH_MAX], what[64];
	const json_t *v = json_object_get(hv, "user");

	parse_hc_string(c, hv, path, chk, HC_OPT_USER, "user", &h->user, NULL);
	if (!h->user)
		return;
	if (h->user[0] && strlen(h->user) <= CFG_MYSQL_USER_MAX)
		return;
	cfg_path_key(p, path, "user");
	snprintf(what, sizeof(what), "a user name of 1-%d bytes", CFG_MYSQL_USER_MAX);
	cfg_err_got(c, p, v, what);
	free(h->user);
	h->user = NULL;
}

static void parse_health(struct cfg_ctx *c, const json_t *pool, const char *ppath,
			 struct cfg_health *h)
{
	char path[CFG_PATH_MAX], list[256], what[300];
	const struct hc_check *chk = NULL;
	const json_t *hv = NULL, *tv;

	h->interval_ms = CFG_DEFAULT_HC_INTERVAL_MS;
	h->timeout_ms = CFG_DEFAULT_HC_TIMEOUT_MS;
	h->rise = CFG_DEFAULT_HC_RISE;
	h->fall = CFG_DEFAULT_HC_FALL;
	if (cfg_get_object(c, pool, ppath, "health", &hv) != CFG_OK) {
		h->type = cfg_strdup(c, "none");
		return;
	}
	cfg_path_key(path, ppath, "health");
	cfg_check_keys(c, hv, path, health_keys);
	hc_names(list, sizeof(list));
	snprintf(what, sizeof(what), "one of %s", list);
	tv = json_object_get(hv, "type");
	if (!tv)
		cfg_err_missing(c, path, "type", what);
	else if (json_is_string(tv) && (chk = hc_find(json_string_value(tv))))
		h->type = cfg_strdup(c, chk->name);
	else {
		char tpath[CFG_PATH_MAX];
		cfg_path_key(tpath, path, "type");
		cfg_err_got(c, tpath, tv, what);
	}
	cfg_get_duration(c, hv, path, "interval", true, &h->interval_ms);
	cfg_get_duration(c, hv, path, "timeout", true, &h->timeout_ms);
	cfg_get_int(c, hv, path, "rise", 1, CFG_MAX_RISE_FALL, &h->rise);
	cfg_get_int(c, hv, path, "fall", 1, CFG_MAX_RISE_FALL, &h->fall);
	cfg_get_int(c, hv, path, "port", 1, 65535, &h->port);
	int role = -1;
	int rc = cfg_get_enum(c, hv, path, "role", role_names, &role);
	if (chk && rc != CFG_BAD &&
	    hc_option_ok(c, path, chk, HC_OPT_ROLE, "role", rc == CFG_OK, rc == CFG_OK) &&
	    rc == CFG_OK)
		h->role = role == 0 ? CFG_ROLE_MASTER : CFG_ROLE_SLAVE;
	parse_hc_string(c, hv, path, chk, HC_OPT_SEND, "send", &h->send, &h->send_len);
	parse_hc_string(c, hv, path, chk, HC_OPT_EXPECT, "expect", &h->expect, &h->expect_len);
	parse_hc_path_status(c, hv, path, chk, h);
	parse_hc_user(c, hv, path, chk, h);
}

static void parse_backend_address(struct cfg_ctx *c, const json_t *obj, const char *path,
				  struct cfg_backend *b)
{
	char p[CFG_PATH_MAX];
	const char *s, *why = "";
	int rc = cfg_get_string(c, obj, path, "address", ADDR_EXPECTED, &s);

	if (rc == CFG_ABSENT)
		cfg_err_missing(c, path, "address", ADDR_EXPECTED);
	if (rc != CFG_OK)
		return;
	cfg_path_key(p, path, "address");
	char host[ADDR_HOST_MAX];
	uint16_t port;
	/* A host name is looked up after parsing, with the others (resolve_backends). */
	rc = addr_parse_host(s, &b->addr, host, &port, &why);
	if (rc < 0) {
		cfg_err_got_why(c, p, json_object_get(obj, "address"), ADDR_EXPECTED, why);
		return;
	}
	b->address = cfg_strdup(c, s);
}

/* ip_hash's key for the backend: any non-empty string; the address when absent. */
static void parse_hash_key(struct cfg_ctx *c, const json_t *obj, const char *path,
			   struct cfg_backend *b)
{
	const char *what = "a non-empty string of at most 255 bytes";
	const char *s;
	char p[CFG_PATH_MAX];

	if (cfg_get_string(c, obj, path, "hash_key", what, &s) != CFG_OK)
		return;
	if (!*s || strlen(s) > CFG_HASH_KEY_MAX) {
		cfg_path_key(p, path, "hash_key");
		cfg_err_got(c, p, json_object_get(obj, "hash_key"), what);
		return;
	}
	b->hash_key = cfg_strdup(c, s);
}

static void parse_backend(struct cfg_ctx *c, const json_t *obj, const char *path,
			  struct cfg_backend *b)
{
	b->weight = 1;
	if (!json_is_object(obj)) {
		cfg_err_got(c, path, obj, "a backend object");
		return;
	}
	cfg_check_keys(c, obj, path, backend_keys);
	parse_backend_address(c, obj, path, b);
	if (cfg_get_name(c, obj, path, false, &b->name) == CFG_ABSENT && b->address)
		b->name = cfg_strdup(c, b->address);
	cfg_get_int(c, obj, path, "weight", 0, CFG_MAX_WEIGHT, &b->weight);
	cfg_get_int(c, obj, path, "max_conns", 0, INT_MAX, &b->max_conns);
	cfg_get_bool(c, obj, path, "backup", &b->backup);
	cfg_get_int(c, obj, path, "check_port", 1, 65535, &b->check_port);
	cfg_get_duration(c, obj, path, "slow_start", true, &b->slow_start_ms);
	cfg_get_int(c, obj, path, "agent_port", 1, 65535, &b->agent_port);
	parse_hash_key(c, obj, path, b);
}

static const struct cfg_pool *sort_pool; /* qsort has no context argument */

static int by_name_then_index(const void *a, const void *b)
{
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int d = strcmp(sort_pool->backends[i].name, sort_pool->backends[j].name);

	return d ? d : (i > j) - (i < j);
}

static int by_index(const void *a, const void *b)
{
	size_t i = *(const size_t *)a, j = *(const size_t *)b;

	return (i > j) - (i < j);
}

/* Names must be unique within a pool. Sorted, so that 200,000 backends take a moment, not
 * minutes; each repeat is reported against the first backend of that name. */
static void check_backend_names(struct cfg_ctx *c, const struct cfg_pool *p, const char *path)
{
	char bpath[CFG_PATH_MAX], npath[CFG_PATH_MAX];
	size_t *idx = calloc(p->nbackends ? p->nbackends : 1, sizeof(*idx)), n = 0;
	size_t *dup = calloc(p->nbackends ? p->nbackends : 1, 2 * sizeof(*dup)), ndup = 0;

	if (!idx || !dup) {
		cfg_err_at(c, path, "out of memory");
		free(idx);
		free(dup);
		return;
	}
	for (size_t i = 0; i < p->nbackends; i++)
		if (p->backends[i].name)
			idx[n++] = i;
	sort_pool = p;
	qsort(idx, n, sizeof(*idx), by_name_then_index);
	for (size_t k = 1, first = idx[0]; k < n; k++) {
		if (strcmp(p->backends[idx[k]].name, p->backends[first].name) != 0) {
			first = idx[k];
			continue;
		}
		dup[2 * ndup] = idx[k];
		dup[2 * ndup++ + 1] = first;
	}
	qsort(dup, ndup, 2 * sizeof(*dup), by_index); /* in file order */
	for (size_t k = 0; k < ndup; k++) {
		cfg_path_index(bpath, path, dup[2 * k]);
		cfg_path_key(npath, bpath, "name");
		cfg_err_at(c, npath,
			   "duplicate backend name \"%s\" (also backends[%zu]); backend names "
			   "must be unique within a pool",
			   p->backends[dup[2 * k]].name, dup[2 * k + 1]);
	}
	free(idx);
	free(dup);
}

static void parse_backends(struct cfg_ctx *c, const json_t *obj, const char *ppath,
			   struct cfg_pool *p)
{
	char path[CFG_PATH_MAX], bpath[CFG_PATH_MAX];
	const json_t *arr = json_object_get(obj, "backends"), *v;
	size_t i;

	if (!arr)
		return;
	cfg_path_key(path, ppath, "backends");
	if (!json_is_array(arr)) {
		cfg_err_got(c, path, arr, "an array of backend objects");
		return;
	}
	p->backends = cfg_calloc(c, json_array_size(arr), sizeof(*p->backends));
	if (!p->backends)
		return;
	p->nbackends = json_array_size(arr);
	for (i = 0; i < json_array_size(arr); i++) {
		v = json_array_get(arr, i);
		cfg_path_index(bpath, path, i);
		parse_backend(c, v, bpath, &p->backends[i]);
	}
	check_backend_names(c, p, path);
}

static void parse_algorithm(struct cfg_ctx *c, const json_t *obj, const char *path,
			    struct cfg_pool *p)
{
	char apath[CFG_PATH_MAX], what[300];
	const struct lb_algorithm *alg;
	const json_t *v = json_object_get(obj, "algorithm");

	alg = algorithm_find(v ? (json_is_string(v) ? json_string_value(v) : "")
			       : CFG_DEFAULT_ALGORITHM);
	if (!alg) {
		snprintf(what, sizeof(what), "one of %s", algorithm_names());
		cfg_path_key(apath, path, "algorithm");
		cfg_err_got(c, apath, v ? v : json_null(), what);
		return;
	}
	p->algorithm = cfg_strdup(c, alg->name);
}

static void parse_queue(struct cfg_ctx *c, const json_t *obj, const char *parent,
			struct cfg_pool *p)
{
	char path[CFG_PATH_MAX];
	const json_t *q = NULL;

	if (cfg_get_object(c, obj, parent, "queue", &q) != CFG_OK)
		return;
	cfg_path_key(path, parent, "queue");
	cfg_check_keys(c, q, path, queue_keys);
	p->queue_timeout_ms = CFG_DEFAULT_QUEUE_TIMEOUT_MS;
	if (cfg_get_int(c, q, path, "max", 1, CFG_MAX_QUEUE, &p->queue_max) == CFG_ABSENT)
		cfg_err_missing(c, path, "max", "how many clients may wait (1 or more)");
	cfg_get_duration(c, q, path, "timeout", true, &p->queue_timeout_ms);
}

/* "agent": {"port": N, "interval": "2s"}: HAProxy's agent protocol (lb/agent.c). */
static void parse_agent(struct cfg_ctx *c, const json_t *obj, const char *parent,
			struct cfg_pool *p)
{
	char path[CFG_PATH_MAX];
	const json_t *a = NULL;

	if (cfg_get_object(c, obj, parent, "agent", &a) != CFG_OK)
		return;
	cfg_path_key(path, parent, "agent");
	cfg_check_keys(c, a, path, agent_keys);
	p->agent_interval_ms = CFG_DEFAULT_AGENT_INTERVAL_MS;
	if (cfg_get_int(c, a, path, "port", 1, 65535, &p->agent_port) == CFG_ABSENT)
		cfg_err_missing(c, path, "port",
				"the port each backend's agent answers on (1-65535)");
	cfg_get_duration(c, a, path, "interval", true, &p->agent_interval_ms);
}

static void parse_pool(struct cfg_ctx *c, const json_t *obj, const char *path, struct cfg_pool *p)
{
	p->retries = CFG_DEFAULT_RETRIES;
	if (!json_is_object(obj)) {
		cfg_err_got(c, path, obj, "a pool object");
		return;
	}
	cfg_check_keys(c, obj, path, pool_keys);
	if (cfg_get_name(c, obj, path, false, &p->name) == CFG_ABSENT)
		cfg_err_missing(c, path, "name", "a pool name (string)");
	parse_algorithm(c, obj, path, p);
	cfg_get_int(c, obj, path, "retries", 0, CFG_MAX_RETRIES, &p->retries);
	cfg_get_int(c, obj, path, "panic_threshold", 0, 100, &p->panic_threshold);
	int on_down = CFG_ON_DOWN_KEEP;
	if (cfg_get_enum(c, obj, path, "on_down", on_down_names, &on_down) == CFG_OK)
		p->on_down = (enum cfg_on_down)on_down;
	parse_queue(c, obj, path, p);
	cfg_get_duration(c, obj, path, "slow_start", true, &p->slow_start_ms);
	parse_agent(c, obj, path, p);
	parse_health(c, obj, path, &p->health);
	parse_backends(c, obj, path, p);
	for (size_t i = 0; i < p->nbackends && !p->agent_port; i++)
		if (p->backends[i].agent_port) {
			char bpath[CFG_PATH_MAX];
			snprintf(bpath, sizeof(bpath), "%s.backends[%zu].agent_port", path, i);
			cfg_err_at(c, bpath, "an agent port needs the pool's \"agent\" block");
			break;
		}
}

/* ---- arrays and cross-checks ---- */

/* listeners / pools: a non-empty array; returns it or NULL (error recorded). */
static const json_t *get_list(struct cfg_ctx *c, const json_t *root, const char *key,
			      const char *noun)
{
	const json_t *arr = json_object_get(root, key);
	char what[64];

	if (arr && !json_is_array(arr)) {
		snprintf(what, sizeof(what), "an array of %s objects", noun);
		cfg_err_got(c, key, arr, what);
		return NULL;
	}
	if (!arr || json_array_size(arr) == 0) {
		cfg_err_at(c, key, "at least one %s is required", noun);
		return NULL;
	}
	return arr;
}

static void parse_listeners(struct cfg_ctx *c, const json_t *root, struct config *cfg)
{
	char path[CFG_PATH_MAX];
	const json_t *arr = get_list(c, root, "listeners", "listener"), *v;
	size_t i;

	if (!arr)
		return;
	cfg->listeners = cfg_calloc(c, json_array_size(arr), sizeof(*cfg->listeners));
	if (!cfg->listeners)
		return;
	cfg->nlisteners = json_array_size(arr);
	for (i = 0; i < json_array_size(arr); i++) {
		v = json_array_get(arr, i);
		cfg_path_index(path, "listeners", i);
		parse_listener(c, v, path, &cfg->listeners[i]);
	}
}

static void parse_pools(struct cfg_ctx *c, const json_t *root, struct config *cfg)
{
	char path[CFG_PATH_MAX];
	const json_t *arr = get_list(c, root, "pools", "pool"), *v;
	size_t i;

	if (!arr)
		return;
	cfg->pools = cfg_calloc(c, json_array_size(arr), sizeof(*cfg->pools));
	if (!cfg->pools)
		return;
	cfg->npools = json_array_size(arr);
	for (i = 0; i < json_array_size(arr); i++) {
		v = json_array_get(arr, i);
		cfg_path_index(path, "pools", i);
		parse_pool(c, v, path, &cfg->pools[i]);
	}
}

static void check_pool_names(struct cfg_ctx *c, const struct config *cfg)
{
	char path[CFG_PATH_MAX];

	for (size_t i = 0; i < cfg->npools; i++) {
		for (size_t j = 0; j < i && cfg->pools[i].name; j++) {
			if (!cfg->pools[j].name || strcmp(cfg->pools[i].name, cfg->pools[j].name))
				continue;
			snprintf(path, sizeof(path), "pools[%zu].name", i);
			cfg_err_at(c, path, "duplicate pool name \"%s\" (also pools[%zu])",
				   cfg->pools[i].name, j);
			break;
		}
	}
}

/* six, with "ipv6only": false, takes the IPv4 clients of v4 too: the two would share them
 * by the kernel's choice. */
static bool dual_stack_covers(const struct cfg_listener *six, const struct cfg_listener *v4)
{
	return six->dual_stack && addr_dual_covers(&six->addr, &v4->addr);
}

/* Duplicate names, duplicate addresses (same protocol) among listeners before l. */
static void check_listener_unique(struct cfg_ctx *c, const struct config *cfg, size_t i)
{
	const struct cfg_listener *l = &cfg->listeners[i];
	char path[CFG_PATH_MAX];

	for (size_t j = 0; j < i; j++) {
		const struct cfg_listener *o = &cfg->listeners[j];
		if (l->name && o->name && strcmp(l->name, o->name) == 0) {
			snprintf(path, sizeof(path), "listeners[%zu].name", i);
			cfg_err_at(c, path, "duplicate listener name \"%s\" (also listeners[%zu])",
				   l->name, j);
		}
		if (l->listen && o->listen && l->protocol == o->protocol &&
		    addr_equal(&l->addr, &o->addr)) {
			snprintf(path, sizeof(path), "listeners[%zu].listen", i);
			cfg_err_at(c, path,
				   "duplicate listen address \"%s\" (%s; also listeners[%zu])",
				   l->listen, proto_names[l->protocol], j);
		}
		if (l->listen && o->listen && l->protocol == o->protocol &&
		    (dual_stack_covers(l, o) || dual_stack_covers(o, l))) {
			snprintf(path, sizeof(path), "listeners[%zu].listen", i);
			cfg_err_at(c, path,
				   "\"%s\" and listeners[%zu]'s \"%s\" (%s) would both take the "
				   "same IPv4 clients: %s has \"ipv6only\": false",
				   l->listen, j, o->listen, proto_names[l->protocol],
				   l->dual_stack ? "this one" : "that one");
		}
	}
}

static void resolve_pool_ref(struct cfg_ctx *c, struct config *cfg, size_t i)
{
	struct cfg_listener *l = &cfg->listeners[i];
	char path[CFG_PATH_MAX];

	if (!l->pool)
		return;
	for (size_t j = 0; j < cfg->npools; j++) {
		if (cfg->pools[j].name && strcmp(cfg->pools[j].name, l->pool) == 0) {
			l->pool_index = j;
			return;
		}
	}
	snprintf(path, sizeof(path), "listeners[%zu].pool", i);
	cfg_err_at(c, path, "expected the name of a pool defined in \"pools\", got \"%s\"",
		   l->pool);
}

static void check_metrics_addr(struct cfg_ctx *c, const struct config *cfg)
{
	if (!cfg->metrics_listen)
		return;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];
		if (l->listen && l->protocol == CFG_PROTO_TCP &&
		    addr_equal(&l->addr, &cfg->metrics_addr))
			cfg_err_at(c, "metrics.listen",
				   "address \"%s\" is already used by listeners[%zu]",
				   cfg->metrics_listen, i);
	}
}

static void cross_check(struct cfg_ctx *c, struct config *cfg)
{
	check_pool_names(c, cfg);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		check_listener_unique(c, cfg, i);
		/* With no pools at all that error is already reported once; don't repeat it. */
		if (cfg->npools > 0)
			resolve_pool_ref(c, cfg, i);
	}
	check_metrics_addr(c, cfg);
}

/* ---- loading ---- */

static void parse_root(struct cfg_ctx *c, const json_t *root, struct config *cfg, const char *file)
{
	if (!json_is_object(root)) {
		cfg_err_got(c, "", root, "a JSON object at the top level");
		return;
	}
	cfg_check_keys(c, root, "", top_keys);
	parse_globals(c, root, cfg);
	parse_control(c, root, cfg, file);
	parse_metrics(c, root, cfg);
	parse_log(c, root, cfg);
	parse_user_group(c, root, cfg);
	parse_listeners(c, root, cfg);
	parse_pools(c, root, cfg);
	cross_check(c, cfg);
}

/* The backends whose address holds a host name: parsed, not yet looked up. */
static bool backend_unresolved(const struct cfg_backend *b)
{
	return b->address && b->addr.len == 0;
}

/* Look up every backend host name at once, RESOLVE_TIMEOUT_MS for them all, so that a
 * resolver that never answers costs a load seconds, not 10 s or more per name. */
static void resolve_backends(struct cfg_ctx *c, struct config *cfg)
{
	size_t n = 0, k = 0;

	for (size_t i = 0; i < cfg->npools; i++)
		for (size_t j = 0; j < cfg->pools[i].nbackends; j++)
			n += backend_unresolved(&cfg->pools[i].backends[j]);
	if (!n)
		return;
	struct resolve_name *names = cfg_calloc(c, n, sizeof(*names));
	if (!names)
		return;
	for (size_t i = 0; i < cfg->npools; i++)
		for (size_t j = 0; j < cfg->pools[i].nbackends; j++)
			if (backend_unresolved(&cfg->pools[i].backends[j]))
				names[k++].address = cfg->pools[i].backends[j].address;
	resolve_names(names, n, RESOLVE_TIMEOUT_MS);
	k = 0;
	for (size_t i = 0; i < cfg->npools; i++) {
		for (size_t j = 0; j < cfg->pools[i].nbackends; j++) {
			struct cfg_backend *b = &cfg->pools[i].backends[j];
			char p[CFG_PATH_MAX];
			if (!backend_unresolved(b))
				continue;
			const struct resolve_name *rn = &names[k++];
			snprintf(p, sizeof(p), "pools[%zu].backends[%zu].address", i, j);
			if (rn->err == 0) {
				b->addr = rn->addr;
			} else if (rn->err == -ETIMEDOUT) {
				cfg_err_at(c, p,
					   "backend \"%s\": cannot resolve \"%s\" within %d s",
					   b->address, rn->host, RESOLVE_TIMEOUT_MS / 1000);
			} else {
				json_t *v = json_string(b->address);
				cfg_err_got_why(c, p, v, "a resolvable host name", rn->why);
				json_decref(v);
			}
		}
	}
	free(names);
}

/* Builds the config from parsed JSON; file is NULL when loading from a string. */
static int config_build(json_t *root, const char *name, const char *file, struct config **out,
			struct cfg_errors *errs)
{
	struct cfg_ctx c = {.file = name, .errs = errs};
	size_t nerr = errs->n;
	struct config *cfg = calloc(1, sizeof(*cfg));

	if (!cfg)
		return -ENOMEM;
	cfg->path = cfg_strdup(&c, file ? file : name);
	parse_root(&c, root, cfg, file);
	if (!c.oom)
		resolve_backends(&c, cfg);
	if (c.oom || errs->n > nerr) {
		config_free(cfg);
		return c.oom ? -ENOMEM : -EINVAL;
	}
	*out = cfg;
	return 0;
}

static void err_json(struct cfg_ctx *c, const json_error_t *je)
{
	char *msg = NULL;

	if (je->line > 0) {
		if (asprintf(&msg, "%s:%d:%d: invalid JSON: %s", c->file, je->line, je->column,
			     je->text) < 0)
			msg = NULL;
	} else if (asprintf(&msg, "%s: invalid JSON: %s", c->file, je->text) < 0) {
		msg = NULL;
	}
	cfg_err_add(c, msg);
}

/* Documents load with JSON_ALLOW_NUL so that a health check's send/expect can carry binary
 * payloads ("\u0000", e.g. a DNS query); every other string must be NUL-free text. */
static void reject_nul(struct cfg_ctx *c, const json_t *v, const char *path, const char *key)
{
	char p[CFG_PATH_MAX];
	const char *k;
	const json_t *m;
	size_t i;

	if (json_is_string(v) && strlen(json_string_value(v)) != json_string_length(v) &&
	    !(key && (strcmp(key, "send") == 0 || strcmp(key, "expect") == 0)))
		cfg_err_at(c, path, "\\u0000 is only allowed in a health check's send and expect");
	json_object_foreach ((json_t *)v, k, m) {
		cfg_path_key(p, path, k);
		reject_nul(c, m, p, k);
	}
	json_array_foreach (v, i, m) {
		cfg_path_index(p, path, i);
		reject_nul(c, m, p, NULL);
	}
}

static int load_with(json_t *root, const json_error_t *je, const char *name, const char *file,
		     struct config **out, struct cfg_errors *errs)
{
	struct cfg_ctx c = {.file = name, .errs = errs};
	int rc;

	if (!root) {
		err_json(&c, je);
		return c.oom ? -ENOMEM : -EINVAL;
	}
	size_t before = errs->n;
	reject_nul(&c, root, "", NULL);
	if (errs->n > before || c.oom) {
		json_decref(root);
		return c.oom ? -ENOMEM : -EINVAL;
	}
	rc = config_build(root, name, file, out, errs);
	json_decref(root);
	return rc;
}

/* Open path for reading only if it is a regular file: a FIFO would block lb (and a reload)
 * until a writer came, a directory or device is no config. NULL with -errno in *rc. */
static FILE *open_config(const char *path, int *rc)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	FILE *fp;

	if (fd < 0) {
		*rc = -errno;
		return NULL;
	}
	if (fstat(fd, &st) < 0)
		*rc = -errno;
	else if (!S_ISREG(st.st_mode))
		*rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
	if (*rc < 0) {
		close(fd);
		return NULL;
	}
	fp = fdopen(fd, "r");
	if (!fp) {
		*rc = -errno;
		close(fd);
	}
	return fp;
}

int config_load(const char *path, struct config **out, struct cfg_errors *errs)
{
	struct cfg_errors local = {0};
	struct cfg_ctx c = {.file = path, .errs = errs ? errs : &local};
	json_error_t je;
	int rc = 0;
	FILE *fp = open_config(path, &rc);

	if (!fp) {
		cfg_err_at(&c, "", "cannot read: %s",
			   rc == -EINVAL ? "not a regular file" : strerror(-rc));
		cfg_errors_free(&local);
		return rc;
	}
	json_t *root = json_loadf(fp, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	fclose(fp);
	rc = load_with(root, &je, path, path, out, c.errs);
	cfg_errors_free(&local);
	return rc;
}

int config_load_string(const char *json, const char *name, struct config **out,
		       struct cfg_errors *errs)
{
	struct cfg_errors local = {0};
	json_error_t je;
	json_t *root;
	int rc;

	if (!name)
		name = "<string>";
	root = json_loads(json ? json : "", JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	rc = load_with(root, &je, name, NULL, out, errs ? errs : &local);
	cfg_errors_free(&local);
	return rc;
}

/* ---- freeing ---- */

void cfg_health_free(struct cfg_health *h)
{
	free(h->type);
	free(h->send);
	free(h->expect);
	free(h->path);
	free(h->user);
}

static void pool_free_fields(struct cfg_pool *p)
{
	for (size_t i = 0; i < p->nbackends; i++) {
		free(p->backends[i].name);
		free(p->backends[i].address);
		free(p->backends[i].hash_key);
	}
	free(p->backends);
	free(p->name);
	free(p->algorithm);
	cfg_health_free(&p->health);
}

static void listener_free_fields(struct cfg_listener *l)
{
	free(l->name);
	free(l->listen);
	free(l->pool);
	free(l->allow);
	free(l->deny);
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->nlisteners; i++)
		listener_free_fields(&cfg->listeners[i]);
	free(cfg->listeners);
	for (size_t i = 0; i < cfg->npools; i++)
		pool_free_fields(&cfg->pools[i]);
	free(cfg->pools);
	free(cfg->path);
	free(cfg->control_socket);
	free(cfg->metrics_listen);
	free(cfg->user);
	free(cfg->group);
	free(cfg);
}

void cfg_errors_free(struct cfg_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->n; i++)
		free(errs->msg[i]);
	free(errs->msg);
	errs->msg = NULL;
	errs->n = 0;
}
