/* Unit tests for lb/config.c: every key and default of SPEC.md "Config file", durations,
 * aliases, each validation error's JSON path, error collection, and the sample configs in
 * tests/configs/{good,bad} and examples/. The source tree is found through $LB_SRC_DIR. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lb/config.h"
#include "lb/log.h"
#include "support.h"

/* Smallest valid document with room for extra keys at each level (listener, pool, backend,
 * top level), so that each case below differs from a valid config in exactly one place. */
#define DOC(top, listener, pool, backend)                                                          \
	"{" top "\"listeners\":[{\"listen\":\"127.0.0.1:8080\",\"pool\":\"web\"" listener "}],"    \
	"\"pools\":[{\"name\":\"web\"" pool                                                        \
	",\"backends\":[{\"address\":\"127.0.0.1:9001\"" backend "}]}]}"

static bool errs_contain(const struct cfg_errors *e, const char *needle)
{
	for (size_t i = 0; i < e->n; i++)
		if (strstr(e->msg[i], needle))
			return true;
	return false;
}

static void errs_print(const struct cfg_errors *e)
{
	for (size_t i = 0; i < e->n; i++)
		fprintf(stderr, "  %s\n", e->msg[i]);
}

/* Loads json, asserting success; the caller frees the config. */
static struct config *load_ok(const char *json)
{
	struct cfg_errors errs = {0};
	struct config *cfg = NULL;
	int rc = config_load_string(json, "test.json", &cfg, &errs);

	if (rc != 0)
		errs_print(&errs);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(errs.n, 0);
	ck_assert_ptr_nonnull(cfg);
	cfg_errors_free(&errs);
	return cfg;
}

/* Loads json, asserting -EINVAL and an error containing needle. */
static void load_fails_with(const char *json, const char *needle)
{
	struct cfg_errors errs = {0};
	struct config *cfg = (struct config *)&errs; /* must stay untouched */
	int rc = config_load_string(json, "test.json", &cfg, &errs);

	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_ptr_eq(cfg, (struct config *)&errs);
	if (!errs_contain(&errs, needle)) {
		errs_print(&errs);
		ck_abort_msg("no error contains \"%s\"", needle);
	}
	cfg_errors_free(&errs);
}

static char *read_line_file(const char *path)
{
	char buf[512];
	FILE *f = fopen(path, "r");

	ck_assert_msg(f != NULL, "cannot open %s", path);
	ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return strdup(buf);
}

/* ---- a full config and the defaults ---- */

START_TEST(test_full_config_fills_every_field)
{
	char path[PATH_MAX];
	struct cfg_errors errs = {0};
	struct config *cfg = NULL;

	snprintf(path, sizeof(path), "%s/tests/configs/good/full.json", t_src_dir());
	ck_assert_int_eq(config_load(path, &cfg, &errs), 0);
	ck_assert_str_eq(cfg->path, path);
	ck_assert_int_eq(cfg->engine, CFG_ENGINE_EPOLL);
	ck_assert_int_eq(cfg->workers, 4);
	ck_assert_uint_eq(cfg->shutdown_grace_ms, 15000);
	ck_assert_str_eq(cfg->control_socket, "/run/lb/lb.sock");
	ck_assert_uint_eq(cfg->control_mode, 0600);
	ck_assert_str_eq(cfg->metrics_listen, "127.0.0.1:9100");
	ck_assert_int_eq(cfg->metrics_addr.ss.ss_family, AF_INET);
	ck_assert_int_eq(cfg->log_level, LOG_DEBUG);
	ck_assert_int_eq(cfg->log_format, CFG_LOG_JSON);
	ck_assert(cfg->log_access);

	ck_assert_uint_eq(cfg->nlisteners, 2);
	struct cfg_listener *l = &cfg->listeners[0];
	ck_assert_str_eq(l->name, "pg");
	ck_assert_int_eq(l->protocol, CFG_PROTO_TCP);
	ck_assert_str_eq(l->listen, "0.0.0.0:5432");
	ck_assert_str_eq(l->pool, "pg");
	ck_assert_uint_eq(l->pool_index, 0);
	ck_assert_int_eq(l->max_conns, 1000);
	ck_assert_uint_eq(l->nallow, 3);
	ck_assert_int_eq(l->allow[2].family, AF_INET6);
	ck_assert_uint_eq(l->ndeny, 1);
	ck_assert_uint_eq(l->deny[0].prefix, 16);
	ck_assert_int_eq(l->proxy_protocol, CFG_PROXY_V2);
	ck_assert_uint_eq(l->connect_timeout_ms, 500);
	ck_assert_uint_eq(l->idle_timeout_ms, 30 * 60 * 1000);
	l = &cfg->listeners[1];
	ck_assert_int_eq(l->protocol, CFG_PROTO_UDP);
	ck_assert_uint_eq(l->pool_index, 1);
	ck_assert_uint_eq(l->connect_timeout_ms, 1000);
	ck_assert_uint_eq(l->idle_timeout_ms, 10000);
	ck_assert_uint_eq(l->nallow + l->ndeny, 0);

	ck_assert_uint_eq(cfg->npools, 4);
	struct cfg_pool *p = &cfg->pools[0];
	ck_assert_str_eq(p->algorithm, "least_conn");
	ck_assert_int_eq(p->retries, 3);
	ck_assert_str_eq(p->health.type, "tcp");
	ck_assert_uint_eq(p->health.interval_ms, 3000);
	ck_assert_uint_eq(p->health.timeout_ms, 1000);
	ck_assert_int_eq(p->health.rise, 2);
	ck_assert_int_eq(p->health.fall, 3);
	ck_assert_uint_eq(p->nbackends, 3);
	ck_assert_str_eq(p->backends[0].name, "pg1");
	ck_assert_str_eq(p->backends[0].address, "10.0.0.11:5432");
	ck_assert_int_eq(p->backends[0].weight, 2);
	ck_assert_int_eq(p->backends[0].max_conns, 100);
	ck_assert(!p->backends[0].backup);
	ck_assert_int_eq(p->backends[2].weight, 0);
	ck_assert(p->backends[2].backup);
	p = &cfg->pools[1];
	ck_assert_str_eq(p->algorithm, "weighted_round_robin");
	ck_assert_int_eq(p->retries, 0);
	ck_assert_str_eq(p->health.type, "udp");
	ck_assert_uint_eq(p->health.interval_ms, 5000);
	ck_assert_str_eq(p->health.send, "ping");
	ck_assert_str_eq(p->health.expect, "pong");
	p = &cfg->pools[2];
	ck_assert_str_eq(p->health.type, "http");
	ck_assert_str_eq(p->health.path, "/healthz");
	ck_assert_int_eq(p->health.expect_status, 204);
	ck_assert_str_eq(p->backends[0].name, "10.0.2.1:80");
	p = &cfg->pools[3];
	ck_assert_str_eq(p->health.send, "HELLO\r\n");
	ck_assert_str_eq(p->health.expect, "OK");
	ck_assert_uint_eq(p->nbackends, 0);
	config_free(cfg);
	cfg_errors_free(&errs);
}
END_TEST

START_TEST(test_minimal_config_gets_every_default)
{
	struct config *cfg = load_ok(DOC("", "", "", ""));
	struct cfg_listener *l = &cfg->listeners[0];
	struct cfg_pool *p = &cfg->pools[0];
	struct cfg_backend *b = &p->backends[0];

	ck_assert_int_eq(cfg->engine, CFG_ENGINE_AUTO);
	ck_assert_int_eq(cfg->workers, 0);
	ck_assert_uint_eq(cfg->shutdown_grace_ms, CFG_DEFAULT_SHUTDOWN_GRACE_MS);
	ck_assert_str_eq(cfg->control_socket, "lb.sock");
	ck_assert_uint_eq(cfg->control_mode, 0660);
	ck_assert_ptr_null(cfg->metrics_listen);
	ck_assert_int_eq(cfg->log_level, LOG_INFO);
	ck_assert_int_eq(cfg->log_format, CFG_LOG_TEXT);
	ck_assert(!cfg->log_access);

	ck_assert_str_eq(l->name, "127.0.0.1:8080");
	ck_assert_int_eq(l->protocol, CFG_PROTO_TCP);
	ck_assert_int_eq(l->max_conns, 0);
	ck_assert_uint_eq(l->nallow, 0);
	ck_assert_uint_eq(l->ndeny, 0);
	ck_assert_int_eq(l->proxy_protocol, CFG_PROXY_NONE);
	ck_assert_uint_eq(l->connect_timeout_ms, CFG_DEFAULT_CONNECT_MS);
	ck_assert_uint_eq(l->idle_timeout_ms, CFG_DEFAULT_TCP_IDLE_MS);

	ck_assert_str_eq(p->algorithm, "round_robin");
	ck_assert_int_eq(p->retries, CFG_DEFAULT_RETRIES);
	ck_assert_str_eq(p->health.type, "none");
	ck_assert_uint_eq(p->health.interval_ms, CFG_DEFAULT_HC_INTERVAL_MS);
	ck_assert_uint_eq(p->health.timeout_ms, CFG_DEFAULT_HC_TIMEOUT_MS);
	ck_assert_int_eq(p->health.rise, CFG_DEFAULT_HC_RISE);
	ck_assert_int_eq(p->health.fall, CFG_DEFAULT_HC_FALL);
	ck_assert_ptr_null(p->health.send);
	ck_assert_ptr_null(p->health.expect);
	ck_assert_int_eq(p->health.expect_status, 0);

	ck_assert_str_eq(b->name, "127.0.0.1:9001");
	ck_assert_str_eq(b->address, "127.0.0.1:9001");
	ck_assert_int_eq(b->weight, 1);
	ck_assert_int_eq(b->max_conns, 0);
	ck_assert(!b->backup);
	ck_assert_ptr_null(b->hash_key);
	ck_assert(!l->freebind);
	ck_assert_uint_eq(cfg->withdraw_delay_ms, 0);
	config_free(cfg);
}
END_TEST

START_TEST(test_fleet_keys_load)
{
	struct config *cfg = load_ok(DOC("\"withdraw_delay\":\"2s\",", ",\"freebind\":true", "",
					 ",\"hash_key\":\"db-primary\""));

	ck_assert_uint_eq(cfg->withdraw_delay_ms, 2000);
	ck_assert(cfg->listeners[0].freebind);
	ck_assert_str_eq(cfg->pools[0].backends[0].hash_key, "db-primary");
	config_free(cfg);
}
END_TEST

/* A user other than root that this host has ("nobody" where there is one): its name into
 * name, its uid and primary group. */
static void some_user(char *name, size_t len, uid_t *uid, gid_t *gid)
{
	const struct passwd *pw = getpwnam("nobody");

	if (!pw || pw->pw_uid == 0) {
		setpwent();
		while ((pw = getpwent()) && pw->pw_uid == 0)
			;
	}
	ck_assert_msg(pw != NULL, "no user other than root on this host");
	snprintf(name, len, "%s", pw->pw_name);
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	endpwent();
}

START_TEST(test_user_and_group_resolve_at_load)
{
	char user[256], doc[1024];
	uid_t uid;
	gid_t gid;

	some_user(user, sizeof(user), &uid, &gid);
	struct config *cfg = load_ok(DOC("", "", "", ""));

	ck_assert_ptr_null(cfg->user);
	ck_assert_ptr_null(cfg->group);
	config_free(cfg);

	snprintf(doc, sizeof(doc), DOC("\"user\":\"%s\",", "", "", ""), user);
	cfg = load_ok(doc);
	ck_assert_str_eq(cfg->user, user);
	ck_assert_ptr_null(cfg->group);
	ck_assert_uint_eq(cfg->uid, uid);
	ck_assert_uint_eq(cfg->gid, gid); /* the user's primary group */
	config_free(cfg);

	snprintf(doc, sizeof(doc), DOC("\"user\":\"%s\",\"group\":\"%s\",", "", "", ""), user,
		 getgrgid(0)->gr_name);
	cfg = load_ok(doc);
	ck_assert_str_eq(cfg->group, getgrgid(0)->gr_name);
	ck_assert_uint_eq(cfg->uid, uid);
	ck_assert_uint_eq(cfg->gid, 0);
	config_free(cfg);
}
END_TEST

START_TEST(test_keepalive_fills_defaults_and_checks_units)
{
	struct config *cfg = load_ok(DOC("", "", "", ""));
	ck_assert(!cfg->listeners[0].keepalive.on);
	config_free(cfg);

	cfg = load_ok(DOC("", ",\"keepalive\":{}", "", ""));
	ck_assert(cfg->listeners[0].keepalive.on);
	ck_assert_int_eq(cfg->listeners[0].keepalive.idle_s, 60);
	ck_assert_int_eq(cfg->listeners[0].keepalive.interval_s, 10);
	ck_assert_int_eq(cfg->listeners[0].keepalive.count, 6);
	config_free(cfg);

	cfg = load_ok(
	    DOC("", ",\"keepalive\":{\"idle\":\"2m\",\"interval\":5000,\"count\":3}", "", ""));
	ck_assert_int_eq(cfg->listeners[0].keepalive.idle_s, 120);
	ck_assert_int_eq(cfg->listeners[0].keepalive.interval_s, 5);
	ck_assert_int_eq(cfg->listeners[0].keepalive.count, 3);
	config_free(cfg);

	load_fails_with(DOC("", ",\"keepalive\":{\"idle\":\"1500ms\"}", "", ""),
			"listeners[0].keepalive.idle: expected whole seconds from 1s to 32767s");
	load_fails_with(DOC("", ",\"keepalive\":{\"interval\":\"10h\"}", "", ""),
			"listeners[0].keepalive.interval: expected whole seconds");
	load_fails_with(DOC("", ",\"keepalive\":{\"idle\":0}", "", ""),
			"listeners[0].keepalive.idle: expected a duration greater than 0");
	load_fails_with(DOC("", ",\"keepalive\":{\"count\":128}", "", ""),
			"listeners[0].keepalive.count: expected an integer 1-127");
	load_fails_with(
	    DOC("", ",\"keepalive\":{\"idel\":1}", "", ""),
	    "listeners[0].keepalive.idel: unknown key; allowed keys: idle, interval, count");
	load_fails_with(DOC("", ",\"protocol\":\"udp\",\"keepalive\":{}", "", ""),
			"listeners[0].keepalive: TCP keepalive is for tcp listeners");
	load_fails_with(DOC("", ",\"keepalive\":true", "", ""), "listeners[0].keepalive: expected");
}
END_TEST

START_TEST(test_queue_is_off_by_default_and_validated)
{
	struct config *cfg = load_ok(DOC("", "", "", ""));
	ck_assert_int_eq(cfg->pools[0].queue_max, 0);
	config_free(cfg);
	cfg = load_ok(DOC("", "", ",\"queue\":{\"max\":200}", ""));
	ck_assert_int_eq(cfg->pools[0].queue_max, 200);
	ck_assert_uint_eq(cfg->pools[0].queue_timeout_ms, 5000);
	config_free(cfg);
	cfg = load_ok(DOC("", "", ",\"queue\":{\"max\":1,\"timeout\":\"750ms\"}", ""));
	ck_assert_uint_eq(cfg->pools[0].queue_timeout_ms, 750);
	config_free(cfg);
	load_fails_with(DOC("", "", ",\"queue\":{\"timeout\":\"1s\"}", ""),
			"pools[0].queue.max: missing");
	load_fails_with(DOC("", "", ",\"queue\":{\"max\":0}", ""),
			"pools[0].queue.max: expected an integer 1-1000000");
	load_fails_with(DOC("", "", ",\"queue\":{\"max\":5,\"timeout\":0}", ""),
			"pools[0].queue.timeout: expected a duration greater than 0");
	load_fails_with(DOC("", "", ",\"queue\":{\"max\":5,\"wait\":1}", ""),
			"pools[0].queue.wait: unknown key; allowed keys: max, timeout");
	load_fails_with(DOC("", "", ",\"queue\":10", ""), "pools[0].queue: expected");
}
END_TEST

START_TEST(test_slow_start_on_pool_and_backend)
{
	struct config *cfg = load_ok(DOC("", "", "", ""));
	ck_assert_uint_eq(cfg->pools[0].slow_start_ms, 0);
	config_free(cfg);
	cfg = load_ok(DOC("", "", ",\"slow_start\":\"30s\"", ",\"slow_start\":\"5s\""));
	ck_assert_uint_eq(cfg->pools[0].slow_start_ms, 30000);
	ck_assert_uint_eq(cfg->pools[0].backends[0].slow_start_ms, 5000);
	config_free(cfg);
	load_fails_with(DOC("", "", ",\"slow_start\":0", ""),
			"pools[0].slow_start: expected a duration greater than 0");
	load_fails_with(DOC("", "", "", ",\"slow_start\":\"soon\""),
			"pools[0].backends[0].slow_start: expected");
}
END_TEST

START_TEST(test_per_client_limits)
{
	struct config *cfg =
	    load_ok(DOC("", ",\"per_client\":{\"max_conns\":3,\"rate\":\"100/s\"}", "", ""));
	ck_assert_int_eq(cfg->listeners[0].max_conns_per_client, 3);
	ck_assert_uint_eq(cfg->listeners[0].per_client_rate, 100000);
	config_free(cfg);
	cfg = load_ok(DOC("", ",\"per_client\":{\"rate\":\"30/m\"}", "", ""));
	ck_assert_uint_eq(cfg->listeners[0].per_client_rate, 500);
	config_free(cfg);
	cfg = load_ok(DOC("", ",\"max_conns_per_client\":4", "", ""));
	ck_assert_int_eq(cfg->listeners[0].max_conns_per_client, 4);
	config_free(cfg);
	load_fails_with(DOC("", ",\"per_client\":{\"rate\":\"100\"}", "", ""),
			"listeners[0].per_client.rate: expected a rate like \"100/s\"");
	load_fails_with(DOC("", ",\"per_client\":{\"rate\":\"0/s\"}", "", ""),
			"listeners[0].per_client.rate: expected");
	load_fails_with(DOC("", ",\"per_client\":{\"rate\":\"5/h\"}", "", ""),
			"listeners[0].per_client.rate: expected");
	load_fails_with(
	    DOC("", ",\"per_client\":{\"max_conns\":2},\"max_conns_per_client\":2", "", ""),
	    "listeners[0].per_client: max_conns given twice");
	load_fails_with(
	    DOC("", ",\"per_client\":{\"burst\":2}", "", ""),
	    "listeners[0].per_client.burst: unknown key; allowed keys: max_conns, rate");
}
END_TEST

START_TEST(test_accept_proxy_is_tcp_only)
{
	struct config *cfg = load_ok(DOC("", "", "", ""));
	ck_assert_int_eq(cfg->listeners[0].accept_proxy, CFG_PROXY_NONE);
	config_free(cfg);
	cfg = load_ok(DOC("", ",\"accept_proxy\":\"v2\"", "", ""));
	ck_assert_int_eq(cfg->listeners[0].accept_proxy, CFG_PROXY_V2);
	config_free(cfg);
	load_fails_with(DOC("", ",\"accept_proxy\":\"v3\"", "", ""),
			"listeners[0].accept_proxy: expected one of");
	load_fails_with(DOC("", ",\"protocol\":\"udp\",\"accept_proxy\":\"v1\"", "", ""),
			"listeners[0].accept_proxy: PROXY headers come on tcp listeners only");
}
END_TEST

START_TEST(test_agent_settings)
{
	struct config *cfg =
	    load_ok(DOC("", "", ",\"agent\":{\"port\":9999}", ",\"agent_port\":9000"));
	ck_assert_int_eq(cfg->pools[0].agent_port, 9999);
	ck_assert_uint_eq(cfg->pools[0].agent_interval_ms, 2000);
	ck_assert_int_eq(cfg->pools[0].backends[0].agent_port, 9000);
	config_free(cfg);
	load_fails_with(DOC("", "", ",\"agent\":{\"interval\":\"1s\"}", ""),
			"pools[0].agent.port: missing");
	load_fails_with(DOC("", "", ",\"agent\":{\"port\":70000}", ""),
			"pools[0].agent.port: expected an integer 1-65535");
	load_fails_with(
	    DOC("", "", "", ",\"agent_port\":9000"),
	    "pools[0].backends[0].agent_port: an agent port needs the pool's \"agent\"");
}
END_TEST

START_TEST(test_lifetime_is_tcp_only_and_off_by_default)
{
	struct config *cfg = load_ok(DOC("", "", "", ""));
	ck_assert_uint_eq(cfg->listeners[0].lifetime_ms, 0);
	config_free(cfg);
	cfg = load_ok(DOC("", ",\"timeouts\":{\"lifetime\":\"1h\"}", "", ""));
	ck_assert_uint_eq(cfg->listeners[0].lifetime_ms, 3600000);
	config_free(cfg);
	load_fails_with(DOC("", ",\"timeouts\":{\"lifetime\":0}", "", ""),
			"listeners[0].timeouts.lifetime: expected a duration greater than 0");
	load_fails_with(
	    DOC("", ",\"protocol\":\"udp\",\"timeouts\":{\"lifetime\":\"1h\"}", "", ""),
	    "listeners[0].timeouts.lifetime: a connection lifetime is for tcp listeners");
}
END_TEST

START_TEST(test_health_port_and_check_port_are_ports)
{
	struct config *cfg = load_ok(
	    DOC("", "", ",\"health\":{\"type\":\"http\",\"port\":8008}", ",\"check_port\":8009"));
	ck_assert_int_eq(cfg->pools[0].health.port, 8008);
	ck_assert_int_eq(cfg->pools[0].backends[0].check_port, 8009);
	config_free(cfg);
	cfg = load_ok(DOC("", "", "", ""));
	ck_assert_int_eq(cfg->pools[0].health.port, 0);
	ck_assert_int_eq(cfg->pools[0].backends[0].check_port, 0);
	config_free(cfg);
	load_fails_with(DOC("", "", ",\"health\":{\"type\":\"tcp\",\"port\":0}", ""),
			"pools[0].health.port: expected an integer 1-65535");
	load_fails_with(DOC("", "", "", ",\"check_port\":70000"),
			"pools[0].backends[0].check_port: expected an integer 1-65535");
}
END_TEST

START_TEST(test_redis_role_is_master_or_slave_for_redis_only)
{
	struct config *cfg =
	    load_ok(DOC("", "", ",\"health\":{\"type\":\"redis\",\"role\":\"master\"}", ""));
	ck_assert_int_eq(cfg->pools[0].health.role, CFG_ROLE_MASTER);
	config_free(cfg);
	cfg = load_ok(DOC("", "", ",\"health\":{\"type\":\"redis\",\"role\":\"replica\"}", ""));
	ck_assert_int_eq(cfg->pools[0].health.role, CFG_ROLE_SLAVE);
	config_free(cfg);
	load_fails_with(DOC("", "", ",\"health\":{\"type\":\"redis\",\"role\":\"primary\"}", ""),
			"pools[0].health.role: expected one of master, slave, replica");
	load_fails_with(DOC("", "", ",\"health\":{\"type\":\"http\",\"role\":\"master\"}", ""),
			"pools[0].health.role: not used by health type \"http\"");
}
END_TEST

/* Two listeners on port 8080 with a pool "web": l1 and l2 are the listener objects' text. */
#define TWO_LISTENERS(l1, l2)                                                                      \
	"{\"listeners\":[{\"name\":\"a\",\"pool\":\"web\"," l1                                     \
	"},{\"name\":\"b\",\"pool\":\"web\"," l2                                                   \
	"}],\"pools\":[{\"name\":\"web\",\"backends\":[{\"address\":\"127.0.0.1:9001\"}]}]}"

START_TEST(test_ipv6only_is_for_ipv6_listeners_and_defaults_to_true)
{
	static const char v6[] = "{\"listeners\":[{\"listen\":\"[::]:8080\",\"pool\":\"web\"%s}],"
				 "\"pools\":[{\"name\":\"web\",\"backends\":[{\"address\":"
				 "\"127.0.0.1:9001\"}]}]}";
	char doc[512];
	struct config *cfg;

	snprintf(doc, sizeof(doc), v6, "");
	cfg = load_ok(doc);
	ck_assert(!cfg->listeners[0].dual_stack);
	config_free(cfg);
	snprintf(doc, sizeof(doc), v6, ",\"ipv6only\":false");
	cfg = load_ok(doc);
	ck_assert(cfg->listeners[0].dual_stack);
	config_free(cfg);
	snprintf(doc, sizeof(doc), v6, ",\"ipv6only\":true");
	cfg = load_ok(doc);
	ck_assert(!cfg->listeners[0].dual_stack);
	config_free(cfg);
	snprintf(doc, sizeof(doc), v6, ",\"protocol\":\"udp\",\"ipv6only\":false");
	cfg = load_ok(doc);
	ck_assert(cfg->listeners[0].dual_stack);
	config_free(cfg);
	snprintf(doc, sizeof(doc), v6, ",\"ipv6only\":\"no\"");
	load_fails_with(doc, "listeners[0].ipv6only: expected true or false");
	load_fails_with(DOC("", ",\"ipv6only\":false", "", ""),
			"listeners[0].ipv6only: only for an IPv6 listen address (\"[::]:port\"); "
			"127.0.0.1:8080 is IPv4");

	/* A dual-stack [::]:8080 takes the IPv4 clients 0.0.0.0:8080 or 127.0.0.1:8080 would. */
	load_fails_with(TWO_LISTENERS("\"listen\":\"[::]:8080\",\"ipv6only\":false",
				      "\"listen\":\"127.0.0.1:8080\""),
			"listeners[1].listen: \"127.0.0.1:8080\" and listeners[0]'s \"[::]:8080\" "
			"(tcp) would both take the same IPv4 clients: that one has \"ipv6only\": "
			"false");
	load_fails_with(TWO_LISTENERS("\"listen\":\"0.0.0.0:8080\"",
				      "\"listen\":\"[::ffff:127.0.0.1]:8080\",\"ipv6only\":false"),
			"would both take the same IPv4 clients: this one has");
	/* ...but not those of another port, protocol, or address, nor while IPv6-only. */
	cfg = load_ok(TWO_LISTENERS("\"listen\":\"[::]:8080\"", "\"listen\":\"0.0.0.0:8080\""));
	config_free(cfg);
	cfg = load_ok(TWO_LISTENERS("\"listen\":\"[::]:8080\",\"ipv6only\":false",
				    "\"listen\":\"0.0.0.0:8081\""));
	config_free(cfg);
	cfg = load_ok(TWO_LISTENERS("\"listen\":\"[::]:8080\",\"ipv6only\":false",
				    "\"listen\":\"0.0.0.0:8080\",\"protocol\":\"udp\""));
	config_free(cfg);
	cfg = load_ok(TWO_LISTENERS("\"listen\":\"[::ffff:127.0.0.2]:8080\",\"ipv6only\":false",
				    "\"listen\":\"127.0.0.1:8080\""));
	config_free(cfg);
}
END_TEST

START_TEST(test_mysql_user_is_a_short_name_for_mysql_only)
{
	struct config *cfg =
	    load_ok(DOC("", "", ",\"health\":{\"type\":\"mysql\",\"user\":\"lbcheck\"}", ""));
	ck_assert_str_eq(cfg->pools[0].health.user, "lbcheck");
	config_free(cfg);
	cfg = load_ok(DOC("", "", ",\"health\":{\"type\":\"mysql\"}", ""));
	ck_assert_ptr_null(cfg->pools[0].health.user);
	config_free(cfg);
	/* 32 bytes, MySQL's limit, loads; 33 does not */
	cfg = load_ok(DOC("", "",
			  ",\"health\":{\"type\":\"mysql\",\"user\":"
			  "\"abcdefghijklmnopqrstuvwxyz012345\"}",
			  ""));
	ck_assert_uint_eq(strlen(cfg->pools[0].health.user), CFG_MYSQL_USER_MAX);
	config_free(cfg);
	load_fails_with(DOC("", "",
			    ",\"health\":{\"type\":\"mysql\",\"user\":"
			    "\"abcdefghijklmnopqrstuvwxyz0123456\"}",
			    ""),
			"pools[0].health.user: expected a user name of 1-32 bytes, got "
			"\"abcdefghijklmnopqrstuvwxyz0123456\"");
	load_fails_with(DOC("", "", ",\"health\":{\"type\":\"mysql\",\"user\":\"\"}", ""),
			"pools[0].health.user: expected a user name of 1-32 bytes");
	load_fails_with(DOC("", "", ",\"health\":{\"type\":\"mysql\",\"user\":\"a\\u0000b\"}", ""),
			"pools[0].health.user: \\u0000 is only allowed in a health check's send");
	load_fails_with(DOC("", "", ",\"health\":{\"type\":\"mysql\",\"user\":7}", ""),
			"pools[0].health.user: expected a string, got 7");
	load_fails_with(DOC("", "", ",\"health\":{\"type\":\"postgres\",\"user\":\"lb\"}", ""),
			"pools[0].health.user: not used by health type \"postgres\"");
}
END_TEST

START_TEST(test_on_down_is_keep_or_shutdown)
{
	struct config *cfg = load_ok(DOC("", "", "", ""));
	ck_assert_int_eq(cfg->pools[0].on_down, CFG_ON_DOWN_KEEP);
	config_free(cfg);
	cfg = load_ok(DOC("", "", ",\"on_down\":\"shutdown\"", ""));
	ck_assert_int_eq(cfg->pools[0].on_down, CFG_ON_DOWN_SHUTDOWN);
	config_free(cfg);
	load_fails_with(DOC("", "", ",\"on_down\":\"close\"", ""),
			"pools[0].on_down: expected one of keep, shutdown, got \"close\"");
}
END_TEST

START_TEST(test_udp_listener_idle_defaults_to_30s)
{
	struct config *cfg = load_ok(DOC("", ",\"protocol\":\"udp\"", "", ""));

	ck_assert_uint_eq(cfg->listeners[0].idle_timeout_ms, 30000);
	config_free(cfg);
}
END_TEST

START_TEST(test_control_socket_defaults_beside_the_config_file)
{
	char dir[] = "/tmp/lb_test_config_XXXXXX", path[PATH_MAX], want[PATH_MAX];
	struct cfg_errors errs = {0};
	struct config *cfg = NULL;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/lb.json", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(DOC("", "", "", ""), f);
	fclose(f);
	ck_assert_int_eq(config_load(path, &cfg, &errs), 0);
	snprintf(want, sizeof(want), "%s/lb.sock", dir);
	ck_assert_str_eq(cfg->control_socket, want);
	config_free(cfg);
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(test_http_health_path_defaults_to_slash)
{
	struct config *cfg = load_ok(DOC("", "", ",\"health\":{\"type\":\"http\"}", ""));

	ck_assert_str_eq(cfg->pools[0].health.path, "/");
	ck_assert_int_eq(cfg->pools[0].health.expect_status, 0);
	config_free(cfg);
}
END_TEST

START_TEST(test_health_payloads_may_hold_nul_bytes)
{
	/* A DNS query's header is full of zero bytes: send/expect are byte strings. */
	struct config *cfg =
	    load_ok(DOC("", "",
			",\"health\":{\"type\":\"udp\",\"send\":\"\\u0000\\u0001ab\","
			"\"expect\":\"\\u0000\\u0001\"}",
			""));
	const struct cfg_health *h = &cfg->pools[0].health;

	ck_assert_uint_eq(h->send_len, 4);
	ck_assert_mem_eq(h->send, "\0\1ab", 5); /* and a terminating NUL */
	ck_assert_uint_eq(h->expect_len, 2);
	ck_assert_mem_eq(h->expect, "\0\1", 2);
	config_free(cfg);
}
END_TEST

START_TEST(test_weighted_alias_resolves_to_canonical_name)
{
	struct config *cfg = load_ok(DOC("", "", ",\"algorithm\":\"weighted\"", ""));

	ck_assert_str_eq(cfg->pools[0].algorithm, "weighted_round_robin");
	config_free(cfg);
}
END_TEST

static const char *const algorithms[] = {"round_robin", "weighted_round_robin", "least_conn",
					 "ip_hash", "random_two"};

START_TEST(test_every_algorithm_name_loads)
{
	char json[1024];
	struct config *cfg;

	snprintf(json, sizeof(json), DOC("", "", ",\"algorithm\":\"%s\"", ""), algorithms[_i]);
	cfg = load_ok(json);
	ck_assert_str_eq(cfg->pools[0].algorithm, algorithms[_i]);
	config_free(cfg);
}
END_TEST

START_TEST(test_pool_reference_is_resolved_to_index)
{
	struct config *cfg = load_ok("{\"listeners\":[{\"listen\":\"127.0.0.1:1\",\"pool\":\"b\"},"
				     "{\"listen\":\"127.0.0.1:2\",\"pool\":\"a\"}],"
				     "\"pools\":[{\"name\":\"a\"},{\"name\":\"b\"}]}");

	ck_assert_uint_eq(cfg->listeners[0].pool_index, 1);
	ck_assert_uint_eq(cfg->listeners[1].pool_index, 0);
	config_free(cfg);
}
END_TEST

START_TEST(test_same_port_on_tcp_and_udp_is_allowed)
{
	struct config *cfg = load_ok(
	    "{\"listeners\":[{\"listen\":\"127.0.0.1:53\",\"pool\":\"a\"},"
	    "{\"name\":\"u\",\"protocol\":\"udp\",\"listen\":\"127.0.0.1:53\",\"pool\":\"a\"}],"
	    "\"pools\":[{\"name\":\"a\"}]}");

	ck_assert_uint_eq(cfg->nlisteners, 2);
	config_free(cfg);
}
END_TEST

START_TEST(test_hostname_backend_is_resolved_at_load)
{
	struct config *cfg =
	    load_ok(DOC("", "", "", ",\"name\":\"n\"}, {\"address\":\"localhost:80\""));
	struct cfg_backend *b = &cfg->pools[0].backends[1];

	ck_assert_str_eq(b->address, "localhost:80");
	ck_assert_str_eq(b->name, "localhost:80");
	ck_assert_int_ne(b->addr.ss.ss_family, AF_UNSPEC);
	config_free(cfg);
}
END_TEST

/* ---- durations ---- */

static const struct {
	const char *in;
	int rc;
	uint64_t ms;
} durations[] = {
    {"250ms", 0, 250},
    {"2s", 0, 2000},
    {"5m", 0, 300000},
    {"1h", 0, 3600000},
    {"0s", 0, 0},
    {"0ms", 0, 0},
    {"007s", 0, 7000},
    {"18446744073709551615ms", 0, UINT64_MAX},
    {"18446744073709551616ms", -EINVAL, 0},
    {"99999999999999999h", -EINVAL, 0},
    {"", -EINVAL, 0},
    {"s", -EINVAL, 0},
    {"250", -EINVAL, 0},
    {"-1s", -EINVAL, 0},
    {"+1s", -EINVAL, 0},
    {"1.5s", -EINVAL, 0},
    {"2sec", -EINVAL, 0},
    {"2S", -EINVAL, 0},
    {"2d", -EINVAL, 0},
    {" 2s", -EINVAL, 0},
    {"2s ", -EINVAL, 0},
    {"2 s", -EINVAL, 0},
    {"1h30m", -EINVAL, 0},
};

START_TEST(test_durations_parse_or_reject)
{
	uint64_t ms = 12345;
	int rc = config_parse_duration(durations[_i].in, &ms);

	ck_assert_msg(rc == durations[_i].rc, "\"%s\": rc %d", durations[_i].in, rc);
	if (rc == 0)
		ck_assert_uint_eq(ms, durations[_i].ms);
	else
		ck_assert_uint_eq(ms, 12345);
}
END_TEST

START_TEST(test_duration_accepts_integer_milliseconds)
{
	struct config *cfg = load_ok(DOC(
	    "\"shutdown_grace\":1500,", ",\"timeouts\":{\"connect\":250,\"idle\":\"2h\"}", "", ""));

	ck_assert_uint_eq(cfg->shutdown_grace_ms, 1500);
	ck_assert_uint_eq(cfg->listeners[0].connect_timeout_ms, 250);
	ck_assert_uint_eq(cfg->listeners[0].idle_timeout_ms, 7200000);
	config_free(cfg);
}
END_TEST

START_TEST(test_zero_shutdown_grace_is_allowed_but_zero_timeouts_are_not)
{
	struct config *cfg = load_ok(DOC("\"shutdown_grace\":\"0s\",", "", "", ""));

	ck_assert_uint_eq(cfg->shutdown_grace_ms, 0);
	config_free(cfg);
	load_fails_with(DOC("", ",\"timeouts\":{\"connect\":0}", "", ""),
			"listeners[0].timeouts.connect: expected a duration greater than 0");
}
END_TEST

/* ---- validation errors: each names its JSON path ---- */

static const struct {
	const char *json, *needle;
} invalid[] = {
    {DOC("\"colour\":1,", "", "", ""), "test.json: colour: unknown key; allowed keys: engine"},
    {DOC("", ",\"timeouts\":{\"idel\":1}", "", ""),
     "listeners[0].timeouts.idel: unknown key; allowed keys: connect, idle, lifetime"},
    {DOC("", "", ",\"helth\":{}", ""), "pools[0].helth: unknown key"},
    {DOC("", "", "", ",\"wieght\":2"), "pools[0].backends[0].wieght: unknown key"},
    {DOC("\"control\":{\"sock\":\"x\"},", "", "", ""), "control.sock: unknown key"},
    {DOC("\"metrics\":{\"port\":9100},", "", "", ""), "metrics.port: unknown key"},
    {DOC("\"log\":{\"lvl\":\"info\"},", "", "", ""), "log.lvl: unknown key"},
    {DOC("", "", ",\"health\":{\"type\":\"tcp\",\"intervall\":1}", ""),
     "pools[0].health.intervall: unknown key"},
    {DOC("\"engine\":\"kqueue\",", "", "", ""),
     "engine: expected one of auto, io_uring, epoll, got \"kqueue\""},
    {DOC("\"workers\":-1,", "", "", ""), "workers: expected an integer 0-256, got -1"},
    {DOC("\"workers\":2.0,", "", "", ""), "workers: expected an integer 0-256, got 2.0"},
    {DOC("\"shutdown_grace\":\"10\",", "", "", ""), "shutdown_grace: expected a duration"},
    {DOC("\"shutdown_grace\":-5,", "", "", ""), "shutdown_grace: expected a duration"},
    {DOC("\"shutdown_grace\":\"87600001h\",", "", "", ""),
     "shutdown_grace: expected a duration of at most"},
    {DOC("\"control\":{\"mode\":\"660a\"},", "", "", ""),
     "control.mode: expected a string of octal"},
    {DOC("\"control\":{\"mode\":432},", "", "", ""), "control.mode"},
    {DOC("\"control\":{\"mode\":\"0777\"},", "", "", ""),
     "control.mode: 0777 lets every local user connect and control lb"},
    {DOC("\"control\":{\"mode\":\"602\"},", "", "", ""), "control.mode: 602 lets every"},
    {DOC("\"control\":{\"socket\":\"\"},", "", "", ""), "control.socket"},
    {DOC("\"metrics\":{\"listen\":\"localhost:9100\"},", "", "", ""),
     "metrics.listen: expected a numeric"},
    {DOC("\"log\":{\"level\":\"trace\"},", "", "", ""),
     "log.level: expected one of debug, info, warn, error"},
    {DOC("\"log\":{\"format\":\"xml\"},", "", "", ""), "log.format: expected one of text, json"},
    {DOC("\"log\":{\"access\":1},", "", "", ""), "log.access: expected true or false, got 1"},
    {DOC("", ",\"protocol\":\"sctp\"", "", ""), "listeners[0].protocol: expected one of tcp, udp"},
    {DOC("", ",\"name\":\"\"", "", ""), "listeners[0].name: expected a non-empty name"},
    {DOC("", ",\"name\":7", "", ""), "listeners[0].name: expected a name (string), got 7"},
    {DOC("", ",\"name\":\"a\\u0000b\"", "", ""),
     "listeners[0].name: \\u0000 is only allowed in a health check's send and expect"},
    {DOC("", ",\"max_conns\":-1", "", ""), "listeners[0].max_conns: expected an integer >= 0"},
    {DOC("", ",\"allow\":\"10.0.0.0/8\"", "", ""), "listeners[0].allow: expected an array of CIDR"},
    {DOC("", ",\"deny\":[\"10.0.0.0/8\",5]", "", ""), "listeners[0].deny[1]: expected a CIDR"},
    {DOC("", ",\"proxy_protocol\":\"v3\"", "", ""),
     "listeners[0].proxy_protocol: expected one of none, v1, v2"},
    {DOC("", ",\"protocol\":\"udp\",\"proxy_protocol\":\"v1\"", "", ""),
     "listeners[0].proxy_protocol"},
    {DOC("", ",\"timeouts\":{\"connect\":\"1.5s\"}", "", ""), "listeners[0].timeouts.connect"},
    {DOC("", ",\"timeouts\":[]", "", ""), "listeners[0].timeouts: expected an object, got []"},
    {DOC("", "", ",\"algorithm\":\"fastest\"", ""),
     "pools[0].algorithm: expected one of round_robin, weighted_round_robin, least_conn, ip_hash, "
     "random_two, got \"fastest\""},
    {DOC("", "", ",\"retries\":101", ""), "pools[0].retries: expected an integer 0-100, got 101"},
    {"{\"listeners\":[{\"listen\":\"127.0.0.1:1\",\"pool\":\"a\"}],\"pools\":[{\"name\":\"a\","
     "\"backends\":{}}]}",
     "pools[0].backends: expected an array of backend objects"},
    {DOC("", "", ",\"health\":{\"interval\":\"1s\"}", ""), "pools[0].health.type: missing"},
    {DOC("", "", ",\"health\":{\"type\":\"icmp\"}", ""),
     "pools[0].health.type: expected one of none, tcp, send_expect, http, udp, redis, postgres, "
     "mysql, got \"icmp\""},
    {DOC("", "", ",\"health\":{\"type\":\"tcp\",\"timeout\":0}", ""),
     "pools[0].health.timeout: expected a duration greater than 0"},
    {DOC("", "", ",\"health\":{\"type\":\"tcp\",\"fall\":101}", ""),
     "pools[0].health.fall: expected an integer 1-100"},
    {DOC("", "", ",\"health\":{\"type\":\"send_expect\"}", ""),
     "pools[0].health.expect: health type \"send_expect\" requires"},
    {DOC("", "", ",\"health\":{\"type\":\"udp\",\"send\":\"\"}", ""),
     "pools[0].health.send: health type \"udp\" requires"},
    {DOC("", "", ",\"health\":{\"type\":\"tcp\",\"path\":\"/\"}", ""),
     "pools[0].health.path: not used by health type \"tcp\""},
    {DOC("", "", ",\"health\":{\"type\":\"redis\",\"send\":\"PING\"}", ""),
     "pools[0].health.send: not used by health type \"redis\""},
    {DOC("", "", ",\"health\":{\"type\":\"http\",\"path\":\"health\"}", ""),
     "pools[0].health.path: expected a request path"},
    {DOC("", "", ",\"health\":{\"type\":\"tcp\",\"expect_status\":200}", ""),
     "pools[0].health.expect_status: not used by health type \"tcp\""},
    {DOC("", "", ",\"health\":{\"type\":\"none\",\"expect\":\"x\"}", ""),
     "pools[0].health.expect: not used by health type \"none\""},
    {DOC("", "", ",\"health\":{\"type\":\"http\",\"expect_status\":99}", ""),
     "pools[0].health.expect_status: expected an integer 100-599"},
    {"{\"listeners\":[{\"listen\":\"127.0.0.1:1\",\"pool\":\"a/b\"}],\"pools\":[{\"name\":\"a/"
     "b\"}]}",
     "pools[0].name: expected a name without '/'"},
    {"{\"listeners\":[{\"listen\":\"127.0.0.1:1\",\"pool\":\"a\"}],\"pools\":[{\"name\":\"a\","
     "\"backends\":[{\"address\":\"x:99999\"}]}]}",
     "test.json: pools[0].backends[0].address: expected \"host:port\" (port 1-65535) or "
     "\"[v6]:port\", got \"x:99999\""},
    {DOC("", "", "", ",\"weight\":1001"),
     "pools[0].backends[0].weight: expected an integer 0-1000, got 1001"},
    {DOC("", "", "", ",\"weight\":\"1\""),
     "pools[0].backends[0].weight: expected an integer 0-1000, got \"1\""},
    {DOC("", "", "", ",\"max_conns\":-3"),
     "pools[0].backends[0].max_conns: expected an integer >= 0"},
    {DOC("", "", "", ",\"backup\":null"),
     "pools[0].backends[0].backup: expected true or false, got null"},
    {"[]", "test.json: expected a JSON object at the top level, got []"},
    {"{\"pools\":[{\"name\":\"a\"}]}", "test.json: listeners: at least one listener is required"},
    {"{\"listeners\":[{\"listen\":\"127.0.0.1:1\",\"pool\":\"a\"}],\"pools\":[]}",
     "pools: at least one pool is required"},
    {"{\"listeners\":[{\"listen\":\"127.0.0.1:1\"}],\"pools\":[{\"name\":\"a\"}]}",
     "listeners[0].pool: missing"},
    {"{\"listeners\":[{\"pool\":\"a\"}],\"pools\":[{\"name\":\"a\"}]}",
     "listeners[0].listen: missing"},
    {"{\"listeners\":[{\"listen\":\"127.0.0.1:1\",\"pool\":\"a\"}],\"pools\":[{}]}",
     "pools[0].name: missing"},
    {"{\"listeners\":[5],\"pools\":[{\"name\":\"a\"}]}",
     "listeners[0]: expected a listener object, got 5"},
    {"{\"listeners\":[{\"listen\":\"127.0.0.1:1\",\"pool\":\"a\"}],\"pools\":[{\"name\":\"a\","
     "\"backends\":[\"127.0.0.1:80\"]}]}",
     "pools[0].backends[0]: expected a backend object, got \"127.0.0.1:80\""},
    {DOC("\"withdraw_delay\":\"soon\",", "", "", ""), "withdraw_delay: expected a duration"},
    {DOC("", ",\"freebind\":\"yes\"", "", ""), "listeners[0].freebind: expected true or false"},
    {DOC("", "", "", ",\"hash_key\":\"\""),
     "pools[0].backends[0].hash_key: expected a non-empty string of at most 255 bytes"},
    {DOC("", "", "", ",\"hash_key\":7"),
     "pools[0].backends[0].hash_key: expected a non-empty string of at most 255 bytes"},
    {DOC("\"user\":\"no-such-user-lb\",", "", "", ""),
     "test.json: user: expected the name of a user on this host, got \"no-such-user-lb\""},
    {DOC("\"user\":\"\",", "", "", ""), "user: expected the name of a user on this host, got \"\""},
    {DOC("\"user\":1000,", "", "", ""), "user: expected a user name (string), got 1000"},
    {DOC("\"user\":\"root\",", "", "", ""),
     "user: \"root\" is root (uid 0); leave \"user\" out to run as root"},
    {DOC("\"user\":\"root\",\"group\":\"no-such-group-lb\",", "", "", ""),
     "group: expected the name of a group on this host, got \"no-such-group-lb\""},
    {DOC("\"user\":\"root\",\"group\":[],", "", "", ""),
     "group: expected a group name (string), got []"},
    {DOC("\"group\":\"root\",", "", "", ""),
     "test.json: group: needs \"user\" as well: lb changes its group only when it drops root"},
};

START_TEST(test_validation_error_names_json_path)
{
	load_fails_with(invalid[_i].json, invalid[_i].needle);
}
END_TEST

START_TEST(test_unknown_key_is_rejected_with_path)
{
	load_fails_with(DOC("", "", "", ",\"colour\":\"red\""),
			"test.json: pools[0].backends[0].colour: unknown key; allowed keys: name, "
			"address, weight, max_conns, backup");
}
END_TEST

START_TEST(test_multiple_errors_are_collected)
{
	struct cfg_errors errs = {0};
	struct config *cfg = NULL;
	const char *json = "{\"engine\":\"x\",\"workers\":999,\"typo\":1,"
			   "\"listeners\":[{\"listen\":\"1.2.3.4:0\",\"pool\":\"nope\"}],"
			   "\"pools\":[{\"name\":\"a\",\"backends\":[{\"address\":\"1.2.3.4:1\","
			   "\"weight\":-1}]}]}";

	ck_assert_int_eq(config_load_string(json, "m.json", &cfg, &errs), -EINVAL);
	ck_assert_ptr_null(cfg);
	ck_assert_uint_eq(errs.n, 6);
	ck_assert(errs_contain(&errs, "m.json: typo: unknown key"));
	ck_assert(errs_contain(&errs, "m.json: engine:"));
	ck_assert(errs_contain(&errs, "m.json: workers:"));
	ck_assert(errs_contain(&errs, "m.json: listeners[0].listen:"));
	ck_assert(errs_contain(&errs, "m.json: listeners[0].pool:"));
	ck_assert(errs_contain(&errs, "m.json: pools[0].backends[0].weight:"));
	cfg_errors_free(&errs);
	ck_assert_uint_eq(errs.n, 0);
}
END_TEST

START_TEST(test_errors_append_to_existing_list)
{
	struct cfg_errors errs = {0};
	struct config *cfg = NULL;

	ck_assert_int_eq(config_load_string("{}", "a.json", &cfg, &errs), -EINVAL);
	ck_assert_uint_eq(errs.n, 2);
	ck_assert_int_eq(config_load_string("{\"x\":1}", "b.json", &cfg, &errs), -EINVAL);
	ck_assert_uint_eq(errs.n, 5);
	cfg_errors_free(&errs);
}
END_TEST

START_TEST(test_invalid_json_reports_line_and_column)
{
	load_fails_with("{\n  \"workers\": 1,\n  \"engine\": auto\n}",
			"test.json:3:16: invalid JSON: ");
	load_fails_with("{\"workers\": 1, \"workers\": 2}",
			"test.json:1:24: invalid JSON: duplicate object key");
	load_fails_with("", "test.json:1:0: invalid JSON");
	load_fails_with("{} trailing", "invalid JSON: end of file expected");
}
END_TEST

START_TEST(test_unreadable_file_returns_errno_and_message)
{
	struct cfg_errors errs = {0};
	struct config *cfg = NULL;

	ck_assert_int_eq(config_load("/nonexistent/lb.json", &cfg, &errs), -ENOENT);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_str_eq(errs.msg[0],
			 "/nonexistent/lb.json: cannot read: No such file or directory");
	cfg_errors_free(&errs);
	ck_assert_int_eq(config_load("/tmp", &cfg, &errs), -EISDIR);
	ck_assert_ptr_null(cfg);
	cfg_errors_free(&errs);
}
END_TEST

/* A FIFO would block the load (and with it start-up or a reload) until a writer came. */
START_TEST(test_fifo_is_refused_without_blocking)
{
	char dir[] = "/tmp/lbcfg.XXXXXX", path[64];
	struct cfg_errors errs = {0};
	struct config *cfg = NULL;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/lb.json", dir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	int rc = config_load(path, &cfg, &errs);
	unlink(path);
	rmdir(dir);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_ptr_null(cfg);
	ck_assert_uint_eq(errs.n, 1);
	ck_assert_msg(strstr(errs.msg[0], "cannot read: not a regular file"), "%s", errs.msg[0]);
	cfg_errors_free(&errs);
}
END_TEST

START_TEST(test_null_errs_is_allowed)
{
	struct config *cfg = NULL;

	ck_assert_int_eq(config_load_string("{", "x", &cfg, NULL), -EINVAL);
	ck_assert_int_eq(config_load_string(DOC("\"x\":1,", "", "", ""), "x", &cfg, NULL), -EINVAL);
	ck_assert_ptr_null(cfg);
}
END_TEST

START_TEST(test_control_mode_is_octal)
{
	struct config *cfg = load_ok(DOC("\"control\":{\"mode\":\"0600\"},", "", "", ""));

	ck_assert_uint_eq(cfg->control_mode, 0600);
	config_free(cfg);
	cfg = load_ok(DOC("\"control\":{\"mode\":\"755\"},", "", "", ""));
	ck_assert_uint_eq(cfg->control_mode, 0755);
	config_free(cfg);
}
END_TEST

START_TEST(test_duplicates_are_rejected)
{
	load_fails_with(
	    "{\"listeners\":[{\"name\":\"a\",\"listen\":\"127.0.0.1:1\",\"pool\":\"p\"},"
	    "{\"name\":\"a\",\"listen\":\"127.0.0.1:2\",\"pool\":\"p\"}],"
	    "\"pools\":[{\"name\":\"p\"}]}",
	    "listeners[1].name: duplicate listener name \"a\" (also listeners[0])");
	load_fails_with("{\"listeners\":[{\"listen\":\"[::1]:1\",\"pool\":\"p\"},"
			"{\"name\":\"b\",\"listen\":\"[0::1]:1\",\"pool\":\"p\"}],"
			"\"pools\":[{\"name\":\"p\"}]}",
			"listeners[1].listen: duplicate listen address");
	load_fails_with("{\"listeners\":[{\"listen\":\"127.0.0.1:1\",\"pool\":\"p\"}],"
			"\"pools\":[{\"name\":\"p\"},{\"name\":\"q\"},{\"name\":\"p\"}]}",
			"pools[2].name: duplicate pool name \"p\" (also pools[0])");
	load_fails_with(DOC("", "", "", "},{\"address\":\"127.0.0.1:9001\""),
			"pools[0].backends[1].name: duplicate backend name \"127.0.0.1:9001\"");
}
END_TEST

/* Every repeat of a name is reported against the first backend of that name, in file order;
 * and a pool of 100,000 backends is checked in well under a second (it used to be compared
 * pairwise: 200,000 backends took 82 s, which would run past this test's timeout). */
START_TEST(test_duplicate_backend_names_are_found_among_many)
{
	enum { N = 100000 };
	size_t cap = (size_t)N * 64 + 256, len = 0;
	char *json = malloc(cap);
	struct cfg_errors errs = {0};
	struct config *cfg = NULL;

	ck_assert_ptr_nonnull(json);
	len += (size_t)snprintf(json + len, cap - len,
				"{\"listeners\":[{\"listen\":\"127.0.0.1:1\",\"pool\":\"p\"}],"
				"\"pools\":[{\"name\":\"p\",\"backends\":[");
	for (int i = 0; i < N; i++) {
		/* 70000 and 90000 repeat b5; 80000 takes b99999 first, so 99999 repeats it */
		int name = i == 70000 || i == 90000 ? 5 : i == 80000 ? N - 1 : i;
		len += (size_t)snprintf(json + len, cap - len,
					"%s{\"name\":\"b%d\",\"address\":\"10.%d.%d.%d:80\"}",
					i ? "," : "", name, i >> 16, (i >> 8) & 255, i & 255);
	}
	snprintf(json + len, cap - len, "]}]}");
	ck_assert_int_lt(config_load_string(json, "big", &cfg, &errs), 0);
	ck_assert_uint_eq(errs.n, 3);
	ck_assert_str_eq(errs.msg[0], "big: pools[0].backends[70000].name: duplicate backend name "
				      "\"b5\" (also backends[5]); backend names must be unique "
				      "within a pool");
	ck_assert_msg(strstr(errs.msg[1], "backends[90000].name: duplicate backend name \"b5\" "
					  "(also backends[5])"),
		      "%s", errs.msg[1]);
	ck_assert_msg(strstr(errs.msg[2], "backends[99999].name: duplicate backend name "
					  "\"b99999\" (also backends[80000])"),
		      "%s", errs.msg[2]);
	cfg_errors_free(&errs);
	free(json);
}
END_TEST

/* Names are at most CFG_NAME_MAX bytes everywhere, as lbctl and the control socket require. */
START_TEST(test_names_longer_than_255_bytes_are_refused)
{
	char name[CFG_NAME_MAX + 2], json[1024];

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(json, sizeof(json),
		 "{\"listeners\":[{\"listen\":\"127.0.0.1:1\",\"pool\":\"p\"}],"
		 "\"pools\":[{\"name\":\"p\",\"backends\":[{\"name\":\"%s\","
		 "\"address\":\"127.0.0.1:2\"}]}]}",
		 name);
	load_fails_with(json, "pools[0].backends[0].name: expected a name of at most 255 bytes, "
			      "got 256 bytes");
	name[CFG_NAME_MAX] = '\0'; /* exactly 255: fine */
	snprintf(json, sizeof(json),
		 "{\"listeners\":[{\"listen\":\"127.0.0.1:1\",\"pool\":\"p\"}],"
		 "\"pools\":[{\"name\":\"%s\",\"backends\":[{\"address\":\"127.0.0.1:2\"}]}]}",
		 name);
	load_fails_with(json, "listeners[0].pool"); /* the pool is not "p" now */
}
END_TEST

/* ---- sample configs on disk ---- */

/* Calls fn for every .json file in dir, sorted; returns the number of files. */
static size_t for_each_json(const char *dir, void (*fn)(const char *path))
{
	struct dirent **names;
	char path[PATH_MAX];
	size_t count = 0;
	int n = scandir(dir, &names, NULL, alphasort);

	ck_assert_msg(n >= 0, "cannot read %s (set LB_SRC_DIR)", dir);
	for (int i = 0; i < n; i++) {
		size_t len = strlen(names[i]->d_name);
		if (len > 5 && strcmp(names[i]->d_name + len - 5, ".json") == 0) {
			int m = snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
			ck_assert_int_lt(m, (int)sizeof(path));
			fn(path);
			count++;
		}
		free(names[i]);
	}
	free(names);
	return count;
}

static void check_good(const char *path)
{
	struct cfg_errors errs = {0};
	struct config *cfg = NULL;
	int rc = config_load(path, &cfg, &errs);

	if (rc != 0)
		errs_print(&errs);
	ck_assert_msg(rc == 0, "%s failed to load", path);
	ck_assert_uint_gt(cfg->nlisteners, 0);
	config_free(cfg);
	cfg_errors_free(&errs);
}

/* One defect per file: exactly one error, and it contains the sidecar's text. */
static void check_bad(const char *path)
{
	struct cfg_errors errs = {0};
	struct config *cfg = NULL;
	char expect_path[PATH_MAX];
	char *needle;

	snprintf(expect_path, sizeof(expect_path), "%.*s.expect", (int)(strlen(path) - 5), path);
	needle = read_line_file(expect_path);
	ck_assert_msg(config_load(path, &cfg, &errs) == -EINVAL, "%s loaded", path);
	ck_assert_ptr_null(cfg);
	if (errs.n != 1 || !errs_contain(&errs, needle)) {
		errs_print(&errs);
		ck_abort_msg("%s: want exactly one error containing \"%s\"", path, needle);
	}
	ck_assert_ptr_nonnull(strstr(errs.msg[0], path));
	free(needle);
	cfg_errors_free(&errs);
}

START_TEST(test_every_good_config_loads)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s/tests/configs/good", t_src_dir());
	ck_assert_uint_ge(for_each_json(dir, check_good), 3);
}
END_TEST

START_TEST(test_every_example_config_loads)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s/examples", t_src_dir());
	ck_assert_uint_ge(for_each_json(dir, check_good), 3);
}
END_TEST

START_TEST(test_every_bad_config_fails_with_its_expected_message)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s/tests/configs/bad", t_src_dir());
	ck_assert_uint_ge(for_each_json(dir, check_bad), 18);
}
END_TEST

START_TEST(test_quickstart_example_matches_the_readme_promise)
{
	char path[PATH_MAX];
	struct config *cfg = NULL;

	snprintf(path, sizeof(path), "%s/examples/quickstart.json", t_src_dir());
	ck_assert_int_eq(config_load(path, &cfg, NULL), 0);
	ck_assert_str_eq(cfg->listeners[0].name, "demo");
	ck_assert_str_eq(cfg->listeners[0].listen, "127.0.0.1:8080");
	ck_assert_str_eq(cfg->pools[0].algorithm, "round_robin");
	ck_assert_str_eq(cfg->pools[0].health.type, "none");
	ck_assert_uint_eq(cfg->pools[0].nbackends, 3);
	for (size_t i = 0; i < 3; i++) {
		char name[8], addr[32];
		snprintf(name, sizeof(name), "web%zu", i + 1);
		snprintf(addr, sizeof(addr), "127.0.0.1:%zu", 9001 + i);
		ck_assert_str_eq(cfg->pools[0].backends[i].name, name);
		ck_assert_str_eq(cfg->pools[0].backends[i].address, addr);
	}
	config_free(cfg);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *load = tcase_create("load");
	TCase *dur = tcase_create("durations");
	TCase *bad = tcase_create("errors");
	TCase *files = tcase_create("files");

	tcase_add_test(load, test_full_config_fills_every_field);
	tcase_add_test(load, test_minimal_config_gets_every_default);
	tcase_add_test(load, test_fleet_keys_load);
	tcase_add_test(load, test_user_and_group_resolve_at_load);
	tcase_add_test(load, test_udp_listener_idle_defaults_to_30s);
	tcase_add_test(load, test_keepalive_fills_defaults_and_checks_units);
	tcase_add_test(load, test_on_down_is_keep_or_shutdown);
	tcase_add_test(load, test_redis_role_is_master_or_slave_for_redis_only);
	tcase_add_test(load, test_mysql_user_is_a_short_name_for_mysql_only);
	tcase_add_test(load, test_ipv6only_is_for_ipv6_listeners_and_defaults_to_true);
	tcase_add_test(load, test_health_port_and_check_port_are_ports);
	tcase_add_test(load, test_lifetime_is_tcp_only_and_off_by_default);
	tcase_add_test(load, test_queue_is_off_by_default_and_validated);
	tcase_add_test(load, test_per_client_limits);
	tcase_add_test(load, test_accept_proxy_is_tcp_only);
	tcase_add_test(load, test_agent_settings);
	tcase_add_test(load, test_slow_start_on_pool_and_backend);
	tcase_add_test(load, test_control_socket_defaults_beside_the_config_file);
	tcase_add_test(load, test_http_health_path_defaults_to_slash);
	tcase_add_test(load, test_health_payloads_may_hold_nul_bytes);
	tcase_add_test(load, test_weighted_alias_resolves_to_canonical_name);
	tcase_add_loop_test(load, test_every_algorithm_name_loads, 0,
			    sizeof(algorithms) / sizeof(algorithms[0]));
	tcase_add_test(load, test_pool_reference_is_resolved_to_index);
	tcase_add_test(load, test_same_port_on_tcp_and_udp_is_allowed);
	tcase_add_test(load, test_hostname_backend_is_resolved_at_load);
	tcase_add_test(load, test_control_mode_is_octal);
	suite_add_tcase(s, load);

	tcase_add_loop_test(dur, test_durations_parse_or_reject, 0,
			    sizeof(durations) / sizeof(durations[0]));
	tcase_add_test(dur, test_duration_accepts_integer_milliseconds);
	tcase_add_test(dur, test_zero_shutdown_grace_is_allowed_but_zero_timeouts_are_not);
	suite_add_tcase(s, dur);

	tcase_add_loop_test(bad, test_validation_error_names_json_path, 0,
			    sizeof(invalid) / sizeof(invalid[0]));
	tcase_add_test(bad, test_unknown_key_is_rejected_with_path);
	tcase_add_test(bad, test_multiple_errors_are_collected);
	tcase_add_test(bad, test_errors_append_to_existing_list);
	tcase_add_test(bad, test_invalid_json_reports_line_and_column);
	tcase_add_test(bad, test_unreadable_file_returns_errno_and_message);
	tcase_add_test(bad, test_fifo_is_refused_without_blocking);
	tcase_add_test(bad, test_null_errs_is_allowed);
	tcase_add_test(bad, test_duplicates_are_rejected);
	tcase_add_test(bad, test_duplicate_backend_names_are_found_among_many);
	tcase_add_test(bad, test_names_longer_than_255_bytes_are_refused);
	suite_add_tcase(s, bad);

	tcase_add_test(files, test_every_good_config_loads);
	tcase_add_test(files, test_every_example_config_loads);
	tcase_add_test(files, test_every_bad_config_fails_with_its_expected_message);
	tcase_add_test(files, test_quickstart_example_matches_the_readme_promise);
	suite_add_tcase(s, files);
	return s;
}

int main(void)
{
	return t_run_suite(config_suite(), CK_NORMAL);
}
