/* The config builder the integration suites share: a test names the listeners, pools and
 * backends it needs and the few members it varies, instead of writing JSON by hand. Built on
 * jansson, so names are escaped; needs Check, like suite.c (a failure fails the test). */
#include "support.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

json_t *t_cfg_new(int workers)
{
	json_t *cfg =
	    json_pack("{s:s, s:s, s:{s:s}, s:[], s:[]}", "engine", t_engine(), "shutdown_grace",
		      "1s", "control", "socket", "@DIR@/lb.sock", "listeners", "pools");

	ck_assert_ptr_nonnull(cfg);
	if (workers > 0)
		ck_assert_int_eq(json_object_set_new(cfg, "workers", json_integer(workers)), 0);
	return cfg;
}

void t_cfg_set(json_t *obj, const char *fmt, ...)
{
	char *members = NULL, *text = NULL;
	json_error_t err;
	va_list ap;
	int n;

	if (!fmt || !*fmt)
		return;
	va_start(ap, fmt);
	n = vasprintf(&members, fmt, ap);
	va_end(ap);
	ck_assert_int_ge(n, 0);
	if (!*members) {
		free(members);
		return;
	}
	ck_assert_int_ge(asprintf(&text, "{%s}", members), 0);
	json_t *add = json_loads(text, 0, &err);
	ck_assert_msg(add != NULL, "bad config members '%s': %s", members, err.text);
	ck_assert_int_eq(json_object_update(obj, add), 0);
	json_decref(add);
	free(text);
	free(members);
}

/* Append a new object to obj's array member key; returns the object (owned by the array). */
static json_t *append(json_t *obj, const char *key, json_t *item)
{
	json_t *arr = json_object_get(obj, key);

	ck_assert_ptr_nonnull(item);
	ck_assert_msg(json_is_array(arr), "config has no array \"%s\"", key);
	ck_assert_int_eq(json_array_append_new(arr, item), 0);
	return item;
}

json_t *t_cfg_listener(json_t *cfg, const char *name, const char *protocol, const char *host,
		       int port, const char *pool)
{
	char listen[128];
	json_t *l = json_object();

	snprintf(listen, sizeof(listen), "%s:%d", host, port);
	ck_assert_ptr_nonnull(l);
	json_object_set_new(l, "name", json_string(name));
	if (protocol)
		json_object_set_new(l, "protocol", json_string(protocol));
	json_object_set_new(l, "listen", json_string(listen));
	json_object_set_new(l, "pool", json_string(pool));
	return append(cfg, "listeners", l);
}

json_t *t_cfg_pool(json_t *cfg, const char *name, const char *algorithm, const char *health)
{
	json_t *p = json_pack("{s:s}", "name", name);

	ck_assert_ptr_nonnull(p);
	if (algorithm)
		json_object_set_new(p, "algorithm", json_string(algorithm));
	if (health)
		t_cfg_set(p, "\"health\":%s", health);
	json_object_set_new(p, "backends", json_array());
	return append(cfg, "pools", p);
}

json_t *t_cfg_backend(json_t *pool, const char *name, const char *address)
{
	json_t *b = json_object();

	ck_assert_ptr_nonnull(b);
	if (name)
		json_object_set_new(b, "name", json_string(name));
	json_object_set_new(b, "address", json_string(address));
	return append(pool, "backends", b);
}

void t_cfg_backends(json_t *pool, const struct t_backends *set)
{
	for (size_t i = 0; i < set->n; i++)
		t_cfg_backend(pool, tb_name(set->tb[i]), tb_address(set->tb[i]));
}

char *t_cfg_text(const json_t *cfg)
{
	char *text = json_dumps(cfg, JSON_COMPACT | JSON_PRESERVE_ORDER);

	ck_assert_ptr_nonnull(text);
	return text;
}

void t_cfg_write(json_t *cfg, char *path, size_t len)
{
	char *text = t_cfg_text(cfg);

	t_write_config(text, path, len);
	free(text);
	json_decref(cfg);
}
