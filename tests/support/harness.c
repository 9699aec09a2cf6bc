/* The integration harness: one running lb, its control socket and the test backends of the
 * running Check test, started and finished the same way by every suite. Needs Check, like
 * suite.c: a failure fails the test with lb's log. */
#include "support.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long t_harness_start waits for the log line that says lb is ready; start-up takes
 * milliseconds. */
#define T_READY_LOG_MS 5000
/* Room for an lbctl command line in a failure message. */
#define T_ARGS_MAX 256

void t_backends_add_n(struct t_backends *set, enum tb_mode mode, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		t_backends_add(set, mode, names[set->n]);
}

/* lb opens its control socket a moment after its listeners: a test that runs lbctl right
 * after the listeners are up must wait for it (lb logs "control socket" once it listens). */
static bool control_ready(const struct lbproc *lb, const json_t *cfg)
{
	return !json_object_get(cfg, "control") ||
	       lb_log_wait(lb, "control socket", T_READY_LOG_MS);
}

void t_lb_start(struct lbproc *lb, json_t *cfg, const int *ports, size_t nports)
{
	char *text = t_cfg_text(cfg);
	int rc = lb_start(lb, text, ports, nports);

	t_check_lb(lb, rc == 0, "lb did not start; config: %s", text);
	t_check_lb(lb, control_ready(lb, cfg), "lb never opened its control socket; config: %s",
		   text);
	json_decref(cfg);
	free(text);
}

/* true if cfg's first listener is UDP: it has no LISTEN state for lb_start to wait for. */
static bool first_listener_udp(const json_t *cfg)
{
	const json_t *l = json_array_get(json_object_get(cfg, "listeners"), 0);
	const char *proto = json_string_value(json_object_get(l, "protocol"));

	return proto && strcmp(proto, "udp") == 0;
}

void t_harness_start(struct t_harness *th, json_t *cfg, const char *log_line)
{
	char *text = t_cfg_text(cfg);
	bool udp = first_listener_udp(cfg);
	int rc = lb_start(&th->lb, text, udp ? NULL : &th->port, udp ? 0 : 1);

	th->lb_started = true;
	t_expect(th, rc == 0, "lb did not start; config: %s", text);
	t_expect(th, control_ready(&th->lb, cfg), "lb never opened its control socket; config: %s",
		 text);
	json_decref(cfg);
	snprintf(th->sock, sizeof(th->sock), "%s/lb.sock", th->lb.dir);
	if (log_line)
		t_expect(th, lb_log_wait(&th->lb, log_line, T_READY_LOG_MS),
			 "lb did not start (never logged '%s'); config: %s", log_line, text);
	free(text);
}

void t_harness_finish(struct t_harness *th)
{
	if (th->lb_started) {
		t_stop_lb(&th->lb);
		th->lb_started = false;
	}
	t_backends_free(&th->be);
}

void t_harness_lbctl_ok(struct t_harness *th, ...)
{
	char args[T_ARGS_MAX] = "", *out = NULL, *err = NULL;
	size_t off = 0;
	va_list ap;
	int rc;

	va_start(ap, th);
	for (const char *a = va_arg(ap, const char *); a && off < sizeof(args);
	     a = va_arg(ap, const char *))
		off += (size_t)snprintf(args + off, sizeof(args) - off, " %s", a);
	va_end(ap);
	va_start(ap, th);
	rc = t_lbctl_v(th->sock, &out, &err, ap);
	va_end(ap);
	t_expect(th, rc == 0, "lbctl%s exited %d: %s%s", args, rc, out ? out : "", err ? err : "");
	free(out);
	free(err);
}

void t_rewrite_config(const struct lbproc *lb, json_t *cfg)
{
	char tmp[sizeof(lb->config_path) + 8];
	char *text = t_cfg_text(cfg), *expanded = t_expand_dir(text, lb->dir);
	FILE *f;

	json_decref(cfg);
	ck_assert_ptr_nonnull(expanded);
	snprintf(tmp, sizeof(tmp), "%s.tmp", lb->config_path);
	f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs(expanded, f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(rename(tmp, lb->config_path), 0);
	free(expanded);
	free(text);
}
