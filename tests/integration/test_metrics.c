/* Integration: Prometheus metrics of the real lb on the engine named by $LB_ENGINE. The text
 * from GET /metrics and from `lbctl metrics` must pass a strict parser written here (names,
 * labels, escapes, values, one HELP and TYPE per family, before its samples, no duplicate
 * series), and its counters must match the traffic the test generated. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

#define TEST_TIMEOUT_S 60
#define MAX_SAMPLES    512
#define MAX_FAMILIES   64
/* Counters are bumped as bytes move; this bounds how long they may lag the client. */
#define SETTLE_MS 3000

struct sample {
	char name[128];
	char labels[512]; /* canonical: k="v",k="v" in the order given */
	double value;
};

struct family {
	char name[128];
	bool help, type;
	bool has_samples;
};

struct exposition {
	struct sample s[MAX_SAMPLES];
	size_t n;
	struct family f[MAX_FAMILIES];
	size_t nf;
	char err[256];
};

static bool is_name(const char *s, size_t len, bool colon)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			  (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

static struct family *family(struct exposition *e, const char *name, size_t len)
{
	for (size_t i = 0; i < e->nf; i++)
		if (strlen(e->f[i].name) == len && !strncmp(e->f[i].name, name, len))
			return &e->f[i];
	if (e->nf == MAX_FAMILIES || len >= sizeof(e->f[0].name))
		return NULL;
	struct family *f = &e->f[e->nf++];
	memset(f, 0, sizeof(*f));
	memcpy(f->name, name, len);
	return f;
}

static bool perr(struct exposition *e, int line, const char *what)
{
	snprintf(e->err, sizeof(e->err), "line %d: %s", line, what);
	return false;
}

/* "# HELP name text" / "# TYPE name type"; other comments are allowed. */
static bool parse_comment(struct exposition *e, const char *l, int ln)
{
	static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
	bool help = !strncmp(l, "# HELP ", 7), type = !strncmp(l, "# TYPE ", 7);
	if (!help && !type)
		return true;
	const char *name = l + 7, *sp = strchr(name, ' ');
	if (!sp || !is_name(name, (size_t)(sp - name), true))
		return perr(e, ln, "bad metric name in HELP/TYPE");
	struct family *f = family(e, name, (size_t)(sp - name));
	if (!f)
		return perr(e, ln, "too many families");
	if (help) {
		if (f->help)
			return perr(e, ln, "second HELP");
		f->help = true;
		return true;
	}
	if (f->type || f->has_samples)
		return perr(e, ln, "TYPE repeated or after samples");
	for (size_t i = 0; i < 5; i++)
		if (!strcmp(sp + 1, types[i])) {
			f->type = true;
			return true;
		}
	return perr(e, ln, "unknown TYPE");
}

/* name{k="v",...} value */
static bool parse_sample(struct exposition *e, const char *l, int ln)
{
	struct sample *s = &e->s[e->n];
	const char *p = l;
	size_t o = 0;

	if (e->n == MAX_SAMPLES)
		return perr(e, ln, "too many samples");
	while (*p && *p != '{' && *p != ' ')
		p++;
	if (!is_name(l, (size_t)(p - l), true) || (size_t)(p - l) >= sizeof(s->name))
		return perr(e, ln, "bad sample name");
	memcpy(s->name, l, (size_t)(p - l));
	s->name[p - l] = '\0';
	struct family *f = family(e, l, (size_t)(p - l));
	if (!f || !f->type || !f->help)
		return perr(e, ln, "sample without HELP and TYPE before it");
	f->has_samples = true;
	s->labels[0] = '\0';
	if (*p == '{') {
		p++;
		while (*p != '}') {
			const char *k = p;
			while (*p && *p != '=')
				p++;
			if (*p != '=' || !is_name(k, (size_t)(p - k), false) || p[1] != '"')
				return perr(e, ln, "bad label name");
			char key[64];
			snprintf(key, sizeof(key), "%.*s=\"", (int)(p - k), k);
			/* A label name twice in one sample is invalid. */
			char probe[72];
			snprintf(probe, sizeof(probe), "%s%s", o ? "," : "", key);
			if (strstr(s->labels, key) == s->labels || (o && strstr(s->labels, probe)))
				return perr(e, ln, "duplicate label");
			o += (size_t)snprintf(s->labels + o, sizeof(s->labels) - o, "%s%s",
					      o ? "," : "", key);
			for (p += 2; *p != '"'; p++) {
				if (!*p || *p == '\n')
					return perr(e, ln, "unterminated label value");
				if (*p == '\\') {
					p++;
					if (*p != '\\' && *p != '"' && *p != 'n')
						return perr(e, ln, "bad escape in label value");
					s->labels[o++] = '\\';
				}
				if (o + 3 >= sizeof(s->labels))
					return perr(e, ln, "labels too long");
				s->labels[o++] = *p;
			}
			s->labels[o++] = '"';
			s->labels[o] = '\0';
			p++;
			if (*p == ',')
				p++;
			else if (*p != '}')
				return perr(e, ln, "expected , or }");
		}
		p++;
	}
	if (*p != ' ')
		return perr(e, ln, "expected one space before the value");
	char *end;
	errno = 0;
	s->value = strtod(p + 1, &end);
	if (end == p + 1 || (*end && *end != ' ') || errno)
		return perr(e, ln, "bad value");
	for (size_t i = 0; i < e->n; i++)
		if (!strcmp(e->s[i].name, s->name) && !strcmp(e->s[i].labels, s->labels))
			return perr(e, ln, "duplicate series");
	e->n++;
	return true;
}

static bool parse_exposition(struct exposition *e, const char *text)
{
	int ln = 0;

	memset(e, 0, sizeof(*e));
	if (!*text || text[strlen(text) - 1] != '\n')
		return perr(e, 0, "text does not end with a newline");
	for (const char *l = text; *l;) {
		const char *nl = strchr(l, '\n');
		char line[2048];
		ln++;
		if ((size_t)(nl - l) >= sizeof(line))
			return perr(e, ln, "line too long");
		memcpy(line, l, (size_t)(nl - l));
		line[nl - l] = '\0';
		l = nl + 1;
		if (!line[0])
			return perr(e, ln, "empty line");
		if (!(line[0] == '#' ? parse_comment(e, line, ln) : parse_sample(e, line, ln)))
			return false;
	}
	return true;
}

/* The value of name{labels}, or NAN if absent. */
static double value(const struct exposition *e, const char *name, const char *labels)
{
	for (size_t i = 0; i < e->n; i++)
		if (!strcmp(e->s[i].name, name) && !strcmp(e->s[i].labels, labels))
			return e->s[i].value;
	return NAN;
}

/* ---- fetching ---- */

static char *http_get(int port, const char *path, int *status)
{
	char *body = t_http_get(port, path, status);

	ck_assert_msg(body, "no HTTP answer on port %d", port);
	return body;
}

static char *lbctl_metrics(const char *sock)
{
	char *out = NULL;
	int rc = t_lbctl(sock, &out, NULL, "metrics", NULL);
	ck_assert_msg(rc == 0, "lbctl metrics exited %d", rc);
	return out;
}

START_TEST(test_metrics_parse_strictly_and_match_generated_traffic)
{
	struct tbackend *a = tb_start("127.0.0.1:0", TB_TAGGED, "a");
	struct tbackend *b = tb_start("127.0.0.1:0", TB_TAGGED, "b\"q");
	struct lbproc lb;
	char sock[320];
	int port = t_free_port(), mport = t_free_port(), ports[2] = {port, mport}, status;
	struct exposition *e = malloc(sizeof(*e));

	json_t *cfg = t_cfg_new(2);
	t_cfg_set(cfg, "\"metrics\":{\"listen\":\"127.0.0.1:%d\"}", mport);
	t_cfg_listener(cfg, "web", NULL, "127.0.0.1", port, "web");
	t_cfg_listener(cfg, "dns", "udp", "127.0.0.1", t_free_port(), "web");
	json_t *pool =
	    t_cfg_pool(cfg, "web", "round_robin",
		       "{\"type\":\"tcp\",\"interval\":\"100ms\",\"rise\":1,\"fall\":1}");
	t_cfg_backend(pool, "a", tb_address(a));
	t_cfg_backend(pool, "b\"q", tb_address(b));
	t_lb_start(&lb, cfg, ports, 2);
	snprintf(sock, sizeof(sock), "%s/lb.sock", lb.dir);

	/* Both backends checked up first: a later health change would rebuild the snapshot
	 * and restart the rotation, making the split below uneven. */
	uint64_t deadline = t_now_ms() + SETTLE_MS;
	const char *la = "pool=\"web\",backend=\"a\"", *lbq = "pool=\"web\",backend=\"b\\\"q\"";
	char *text = NULL;
	for (bool up = false; !up && t_now_ms() < deadline;) {
		free(text);
		text = http_get(mport, "/metrics", &status);
		ck_assert_int_eq(status, 200);
		ck_assert_msg(parse_exposition(e, text), "GET /metrics: %s\n%s", e->err, text);
		up = !isnan(value(e, "lb_health_check_duration_seconds", la)) &&
		     !isnan(value(e, "lb_health_check_duration_seconds", lbq));
		if (!up)
			usleep(20 * 1000);
	}

	/* 10 connections, each: tag line in, 1000 bytes out and echoed back. */
	enum { CONNS = 10, BYTES = 1000 };
	char payload[BYTES], back[BYTES], tag[64];
	memset(payload, 'z', sizeof(payload));
	payload[BYTES - 1] = '\n';
	uint64_t tagbytes = 0;
	for (int i = 0; i < CONNS; i++) {
		int fd = t_connect(NULL, port);
		ck_assert_int_ge(fd, 0);
		int n = t_read_line(fd, tag, sizeof(tag), 3000);
		ck_assert_int_gt(n, 0);
		tagbytes += (uint64_t)n + 1;
		ck_assert_int_eq(send(fd, payload, BYTES, MSG_NOSIGNAL), BYTES);
		ck_assert_int_eq(t_read_line(fd, back, sizeof(back), 3000), BYTES - 1);
		close(fd);
	}

	/* Counters settled. */
	deadline = t_now_ms() + SETTLE_MS;
	bool settled = false;
	while (!settled && t_now_ms() < deadline) {
		free(text);
		text = http_get(mport, "/metrics", &status);
		ck_assert_int_eq(status, 200);
		ck_assert_msg(parse_exposition(e, text), "GET /metrics: %s\n%s", e->err, text);
		double act =
		    value(e, "lb_backend_active_connections", "pool=\"web\",backend=\"a\"") +
		    value(e, "lb_backend_active_connections", "pool=\"web\",backend=\"b\\\"q\"");
		settled = act == 0 &&
			  !isnan(value(e, "lb_health_check_duration_seconds",
				       "pool=\"web\",backend=\"a\"")) &&
			  value(e, "lb_backend_bytes_total",
				"pool=\"web\",backend=\"a\",direction=\"in\"") +
				  value(e, "lb_backend_bytes_total",
					"pool=\"web\",backend=\"b\\\"q\",direction=\"in\"") ==
			      (double)(tagbytes + CONNS * BYTES);
		if (!settled)
			usleep(50 * 1000);
	}
	ck_assert_msg(settled, "metrics never matched the traffic:\n%s", text);
	ck_assert(value(e, "lb_backend_connections_total", la) == CONNS / 2);
	ck_assert(value(e, "lb_backend_connections_total", lbq) == CONNS / 2);
	ck_assert(value(e, "lb_backend_bytes_total",
			"pool=\"web\",backend=\"a\",direction=\"out\"") == CONNS / 2 * BYTES);
	ck_assert(value(e, "lb_backend_up", la) == 1 && value(e, "lb_backend_up", lbq) == 1);
	ck_assert(value(e, "lb_backend_connect_failures_total", la) == 0);
	ck_assert(value(e, "lb_listener_connections_total", "listener=\"web\"") == CONNS);
	ck_assert(
	    value(e, "lb_listener_rejected_total", "listener=\"web\",reason=\"no_backend\"") == 0);
	ck_assert(value(e, "lb_udp_sessions_active", "listener=\"dns\"") == 0);
	double hc = value(e, "lb_health_check_duration_seconds", la);
	ck_assert_msg(hc >= 0 && hc < 1, "check duration %f", hc);
	char build[128];
	snprintf(build, sizeof(build), "version=\"%s\",engine=\"%s\"", "0.1.0",
		 strcmp(t_engine(), "epoll") == 0 ? "epoll" : "io_uring");
	ck_assert_msg(value(e, "lb_build_info", build) == 1, "no lb_build_info{%s}", build);
	free(text);

	/* lbctl metrics is the same text, and as strict. */
	text = lbctl_metrics(sock);
	ck_assert_msg(parse_exposition(e, text), "lbctl metrics: %s\n%s", e->err, text);
	ck_assert(value(e, "lb_backend_connections_total", la) == CONNS / 2);
	free(text);

	/* A rejected connection is counted under its reason. */
	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "disable", "web/a", NULL), 0);
	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "disable", "web/b\"q", NULL), 0);
	int fd = t_connect(NULL, port);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(t_wait_closed(fd, 3000), 0);
	close(fd);
	text = http_get(mport, "/metrics", &status);
	ck_assert_msg(parse_exposition(e, text), "%s", e->err);
	ck_assert(
	    value(e, "lb_listener_rejected_total", "listener=\"web\",reason=\"no_backend\"") == 1);
	ck_assert(value(e, "lb_backend_admin_state",
			"pool=\"web\",backend=\"a\",state=\"disabled\"") == 1);
	free(text);

	text = http_get(mport, "/other", &status);
	ck_assert_int_eq(status, 404);
	free(text);
	ck_assert_int_eq(lb_stop(&lb, 5000), 0);
	lb_cleanup(&lb);
	tb_free(a);
	tb_free(b);
	free(e);
}
END_TEST

START_TEST(test_strict_parser_rejects_malformed_text)
{
	struct exposition *e = malloc(sizeof(*e));
	static const char *const bad[] = {
	    "x 1\n", /* no HELP/TYPE */
	    "# HELP x h\n# TYPE x gauge\nx{a=\"1} 1\n",
	    "# HELP x h\n# TYPE x gauge\nx{a=\"\\q\"} 1\n",
	    "# HELP x h\n# TYPE x gauge\nx 1\nx 2\n",
	    "# HELP x h\n# TYPE x gauge\nx{a=\"1\",a=\"2\"} 1\n",
	    "# HELP x h\n# TYPE x gauge\nx one\n",
	    "# HELP x h\n# TYPE x gauge\nx 1",
	    "# HELP x h\n# TYPE x sometimes\nx 1\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!parse_exposition(e, bad[i]), "accepted bad text %zu", i);
	ck_assert(parse_exposition(e, "# HELP x h\n# TYPE x gauge\nx{a=\"\\\"\\n\\\\\"} 1.5\n"));
	ck_assert(value(e, "x", "a=\"\\\"\\n\\\\\"") == 1.5);
	free(e);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    test_strict_parser_rejects_malformed_text,
	    test_metrics_parse_strictly_and_match_generated_traffic,
	    NULL,
	};

	signal(SIGPIPE, SIG_IGN);
	return t_run_suite(t_suite("metrics", TEST_TIMEOUT_S, NULL, NULL, tests), CK_ENV);
}
