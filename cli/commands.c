/* lbctl's commands: the table that parsing, --help and completion read (lbctl.h), and for
 * each command the function that turns its arguments into the request and the one that
 * prints the answer. Output formats are SPEC.md's; scripts read them, so they stay put. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/lbctl.h"
#include "lb/config.h"

/* Turns a numeric constant into a string literal, for help text built at compile time. */
#define STR_(x) #x
#define STR(x)	STR_(x)

#define MAX_COLS 16
/* One formatted cell: room for a readiness reason with a listener and a pool name. */
#define FMT_MAX 160

/* ---- aligned tables ---- */

struct table {
	size_t ncols, nrows;
	char **cells; /* nrows * ncols, row-major */
};

static void table_row(struct table *t, ...)
{
	va_list ap;
	char **c = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(*c));

	if (!c)
		return;
	t->cells = c;
	va_start(ap, t);
	for (size_t i = 0; i < t->ncols; i++) {
		const char *s = va_arg(ap, const char *);
		c[t->nrows * t->ncols + i] = strdup(s ? s : "");
	}
	va_end(ap);
	t->nrows++;
}

static void table_print(struct table *t)
{
	size_t w[MAX_COLS] = {0};

	for (size_t r = 0; r < t->nrows; r++)
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * t->ncols + i];
			size_t l = s ? strlen(s) : 0;
			if (l > w[i])
				w[i] = l;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * t->ncols + i];
			if (i + 1 < t->ncols)
				printf("%-*s  ", (int)w[i], s ? s : "");
			else
				printf("%s\n", s ? s : "");
		}
		for (size_t i = 0; i < t->ncols; i++)
			free(t->cells[r * t->ncols + i]);
	}
	free(t->cells);
	t->cells = NULL;
	t->nrows = 0;
}

/* ---- formatting ---- */

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static long long num(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) ? json_integer_value(v) : (long long)json_number_value(v);
}

/* Rotating static buffers: several formatted numbers may feed one table row. */
static char *fmtbuf(void)
{
	static char bufs[16][FMT_MAX];
	static unsigned i;
	return bufs[i++ % 16];
}

static const char *fmt_str(const char *fmt, const char *s)
{
	char *b = fmtbuf();
	snprintf(b, FMT_MAX, fmt, s);
	return b;
}

static const char *fmt_int(json_t *o, const char *key)
{
	char *b = fmtbuf();
	snprintf(b, FMT_MAX, "%lld", num(o, key));
	return b;
}

/* Bytes with an IEC suffix: 999B, 1.5KiB, 12MiB. */
static const char *fmt_bytes(long long v)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	char *b = fmtbuf();
	double d = (double)v;
	int u = 0;

	while (d >= 1024 && u < 5) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(b, FMT_MAX, "%lldB", v);
	else
		snprintf(b, FMT_MAX, d < 10 ? "%.1f%s" : "%.0f%s", d, unit[u]);
	return b;
}

static const char *fmt_duration(long long s)
{
	char *b = fmtbuf();
	if (s >= 86400)
		snprintf(b, FMT_MAX, "%lldd%02lldh%02lldm", s / 86400, s % 86400 / 3600,
			 s % 3600 / 60);
	else if (s >= 3600)
		snprintf(b, FMT_MAX, "%lldh%02lldm%02llds", s / 3600, s % 3600 / 60, s % 60);
	else if (s >= 60)
		snprintf(b, FMT_MAX, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(b, FMT_MAX, "%llds", s);
	return b;
}

static const char *fmt_check(json_t *b)
{
	char *out = fmtbuf();
	const char *res = str(b, "check");

	if (strcmp(res, "pass") == 0)
		snprintf(out, FMT_MAX, "pass %.1fms",
			 json_number_value(json_object_get(b, "check_latency_ms")));
	else if (strcmp(res, "fail") == 0)
		snprintf(out, FMT_MAX, "fail: %s", str(b, "check_reason"));
	else
		snprintf(out, FMT_MAX, "-");
	return out;
}

/* Pools whose algorithm keeps a table: its fingerprint, equal across a fleet that agrees. */
static void print_tables(json_t *tables)
{
	struct table tab = {.ncols = 3};
	json_t *t;
	size_t i;

	table_row(&tab, "POOL", "ALGORITHM", "TABLE FINGERPRINT");
	json_array_foreach (tables, i, t)
		if (json_is_string(json_object_get(t, "fingerprint")))
			table_row(&tab, str(t, "pool"), str(t, "algorithm"), str(t, "fingerprint"));
	if (tab.nrows > 1) {
		printf("\n");
		table_print(&tab);
	} else {
		table_print(&tab); /* frees the header row */
	}
}

/* "p99 <=50ms": the histogram bucket the 99th percentile wait falls in. */
static const char *fmt_p99(json_t *q)
{
	json_t *v = json_object_get(q, "wait_p99_ms");
	char *b = fmtbuf();

	if (!v)
		snprintf(b, FMT_MAX, ">%lldms", num(q, "timeout_ms"));
	else
		snprintf(b, FMT_MAX, "<=%lldms", (long long)json_integer_value(v));
	return b;
}

/* Pools with a connection queue: who waits now, and how long clients waited. */
static void print_queues(json_t *queues)
{
	struct table tab = {.ncols = 8};
	json_t *q;
	size_t i;

	if (!json_array_size(queues))
		return;
	printf("\n");
	table_row(&tab, "POOL", "WAITING", "MAX", "SERVED", "FULL", "TIMEOUTS", "WAIT AVG",
		  "WAIT P99");
	json_array_foreach (queues, i, q) {
		char *avg = fmtbuf();
		snprintf(avg, FMT_MAX, "%.1fms",
			 json_number_value(json_object_get(q, "wait_avg_ms")));
		table_row(&tab, str(q, "pool"), fmt_int(q, "length"), fmt_int(q, "max"),
			  fmt_int(q, "served"), fmt_int(q, "full"), fmt_int(q, "timeouts"), avg,
			  fmt_p99(q));
	}
	table_print(&tab);
}

static void print_status(json_t *d)
{
	json_t *t = json_object_get(d, "totals"), *ls = json_object_get(d, "listeners"), *l;
	struct table tab = {.ncols = 2};
	size_t i;

	table_row(&tab, "version:", str(d, "version"));
	table_row(&tab, "engine:", str(d, "engine"));
	table_row(&tab, "workers:", fmt_int(d, "workers"));
	table_row(&tab, "pid:", fmt_int(d, "pid"));
	table_row(&tab, "uptime:", fmt_duration(num(d, "uptime_s")));
	table_row(&tab, "config:", str(d, "config"));
	table_row(&tab, "pools:", fmt_int(d, "pools"));
	table_row(&tab, "backends:", fmt_int(d, "backends"));
	table_row(&tab, "ready:",
		  json_is_true(json_object_get(d, "ready"))
		      ? "yes"
		      : fmt_str("no: %s", str(d, "ready_reason")));
	table_row(&tab, "connections:", fmt_int(t, "connections"));
	table_row(&tab, "active:", fmt_int(t, "active"));
	table_row(&tab, "rejected:", fmt_int(t, "rejected"));
	char io[112];
	snprintf(io, sizeof(io), "%s / %s", fmt_bytes(num(t, "bytes_in")),
		 fmt_bytes(num(t, "bytes_out")));
	table_row(&tab, "bytes in/out:", io);
	table_print(&tab);
	printf("\n");
	tab.ncols = 7;
	table_row(&tab, "LISTENER", "PROTOCOL", "LISTEN", "POOL", "ACTIVE", "ACCEPTED", "REJECTED");
	json_array_foreach (ls, i, l) {
		json_t *rej = json_object_get(l, "rejected"), *v;
		const char *k;
		long long sum = 0;
		json_object_foreach (rej, k, v)
			sum += json_integer_value(v);
		char *r = fmtbuf();
		snprintf(r, FMT_MAX, "%lld", sum);
		table_row(&tab, str(l, "name"), str(l, "protocol"), str(l, "listen"),
			  str(l, "pool"), fmt_int(l, "active"), fmt_int(l, "accepted"), r);
	}
	table_print(&tab);
	print_queues(json_object_get(d, "queues"));
	print_tables(json_object_get(d, "tables"));
}

static void print_backends(json_t *d)
{
	struct table tab = {.ncols = 12};
	json_t *b;
	size_t i;

	table_row(&tab, "POOL", "NAME", "ADDRESS", "STATE", "ADMIN", "WEIGHT", "ACTIVE", "TOTAL",
		  "IN", "OUT", "FAILURES", "CHECK");
	json_array_foreach (d, i, b) {
		char *w = fmtbuf();
		json_t *ramp = json_object_get(b, "slow_start_pct");
		char rs[40] = "";
		if (ramp)
			snprintf(rs, sizeof(rs), " (slow start %lld%%)",
				 (long long)json_integer_value(ramp));
		json_t *agw = json_object_get(json_object_get(b, "agent"), "weight_pct");
		char as[40] = "";
		if (agw && json_integer_value(agw) != 100)
			snprintf(as, sizeof(as), " (agent %lld%%)",
				 (long long)json_integer_value(agw));
		snprintf(w, FMT_MAX, "%lld%s%s%s", num(b, "weight"), rs, as,
			 json_is_true(json_object_get(b, "backup")) ? " (backup)" : "");
		const char *state = str(b, "state");
		if (strcmp(str(b, "health_source"), "forced") == 0)
			state = fmt_str("%s (forced)", state);
		/* The agent check: its down, its drain/maint and its weight percent. */
		json_t *ag = json_object_get(b, "agent");
		const char *admin = str(b, "admin");
		if (ag) {
			if (json_is_true(json_object_get(ag, "down")))
				state = fmt_str("%s, agent down", state);
			if (strcmp(str(ag, "admin"), "enabled") != 0)
				admin = fmt_str("agent %s", str(ag, "admin"));
		}
		table_row(&tab, str(b, "pool"), str(b, "name"), str(b, "address"), state, admin, w,
			  fmt_int(b, "active"), fmt_int(b, "total"), fmt_bytes(num(b, "bytes_in")),
			  fmt_bytes(num(b, "bytes_out")), fmt_int(b, "failures"), fmt_check(b));
		if (tab.nrows >= 64)
			table_print(&tab); /* bounded memory; widths then restart per block */
	}
	table_print(&tab);
	const char *last = NULL;
	json_array_foreach (d, i, b) {
		const char *fp = json_string_value(json_object_get(b, "fingerprint"));
		if (!fp || (last && strcmp(last, str(b, "pool")) == 0))
			continue;
		last = str(b, "pool");
		printf("pool %s: table fingerprint %s\n", last, fp);
	}
	last = NULL;
	json_array_foreach (d, i, b) {
		json_t *q = json_object_get(b, "queue");
		if (!q || (last && strcmp(last, str(b, "pool")) == 0))
			continue;
		last = str(b, "pool");
		printf("pool %s: queue %lld waiting (max %lld), wait avg %.1fms p99 %s, %lld timed "
		       "out, %lld refused full\n",
		       last, num(q, "length"), num(q, "max"),
		       json_number_value(json_object_get(q, "wait_avg_ms")), fmt_p99(q),
		       num(q, "timeouts"), num(q, "full"));
	}
}

static void print_metrics(json_t *d)
{
	fputs(json_string_value(d) ? json_string_value(d) : "", stdout);
}

static void print_killed(json_t *d)
{
	printf("%s/%s: closing %lld connections\n", str(d, "pool"), str(d, "backend"),
	       num(d, "killed"));
}

static void print_removed(json_t *d)
{
	printf("%s/%s: removed%s\n", str(d, "pool"), str(d, "backend"),
	       num(d, "killed") ? " (its connections are being closed)" : "");
}

static void print_algorithm(json_t *d)
{
	printf("%s: algorithm %s (was %s)\n", str(d, "pool"), str(d, "algorithm"),
	       str(d, "previous"));
}

static void print_weight(json_t *d)
{
	printf("%s/%s: weight %lld\n", str(d, "pool"), str(d, "name"), num(d, "weight"));
}

static void print_added(json_t *d)
{
	printf("%s/%s: added (%s, weight %lld)\n", str(d, "pool"), str(d, "name"),
	       str(d, "address"), num(d, "weight"));
}

static void print_readiness(json_t *d, const char *prefix)
{
	if (json_is_true(json_object_get(d, "ready")))
		printf("%sready\n", prefix);
	else
		printf("%snot ready: %s\n", prefix, str(d, "reason"));
}

static void print_ready(json_t *d)
{
	print_readiness(d, "");
}

static void print_withdrawn(json_t *d)
{
	print_readiness(d, "withdrawn: ");
}

static void print_rejoined(json_t *d)
{
	print_readiness(d, "rejoined: ");
}

/* `lbctl ready` answers in its exit status too, for watchdogs and track scripts. */
static int status_ready(json_t *d)
{
	return json_is_true(json_object_get(d, "ready")) ? LBCTL_OK : LBCTL_ERROR;
}

static void print_health(json_t *d)
{
	printf("%s/%s: %s (%s)\n", str(d, "pool"), str(d, "name"), str(d, "state"),
	       strcmp(str(d, "health_source"), "forced") == 0 ? "forced" : "decided by the prober");
}

/* enable, disable, drain answer with the backend; anything else (reload's summary of what
 * changed) is shown as it came. */
static void print_admin_or_raw(json_t *d)
{
	if (json_is_object(d) && json_object_get(d, "admin")) {
		printf("%s/%s: %s\n", str(d, "pool"), str(d, "name"), str(d, "admin"));
		return;
	}
	char *s = json_dumps(d, JSON_INDENT(2) | JSON_ENCODE_ANY);
	if (s)
		puts(s);
	free(s);
}

/* ---- command line -> request ---- */

static bool parse_num(const char *s, long long min, long long max, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* "POOL/BACKEND" -> members pool and backend. */
static bool set_target(json_t *req, const char *s)
{
	const char *slash = strchr(s, '/');
	if (!slash || slash == s || !slash[1])
		return false;
	json_object_set_new(req, "pool", json_stringn(s, (size_t)(slash - s)));
	json_object_set_new(req, "backend", json_string(slash + 1));
	return true;
}

static int build_backends(const struct lbctl_cmd *c, const struct lbctl_args *a, json_t *req)
{
	(void)c;
	if (a->npos == 1)
		json_object_set_new(req, "pool", json_string(a->pos[0]));
	return 0;
}

/* enable, disable, drain, kill, remove: one POOL/BACKEND (remove also --force). */
static int build_target(const struct lbctl_cmd *c, const struct lbctl_args *a, json_t *req)
{
	(void)c;
	if (!set_target(req, a->pos[0]))
		return lbctl_usage_error("expected POOL/BACKEND, got \"%s\"", a->pos[0]);
	if (a->opt[OPT_FORCE])
		json_object_set_new(req, "force", json_true());
	return 0;
}

static int build_weight(const struct lbctl_cmd *c, const struct lbctl_args *a, json_t *req)
{
	long long v;

	if (!set_target(req, a->pos[0]) || !parse_num(a->pos[1], 0, CFG_MAX_WEIGHT, &v))
		return lbctl_cmd_usage(c, "(N from 0 to " STR(CFG_MAX_WEIGHT) ")");
	json_object_set_new(req, "weight", json_integer(v));
	return 0;
}

static int build_add(const struct lbctl_cmd *c, const struct lbctl_args *a, json_t *req)
{
	const char *weight = a->opt[OPT_WEIGHT], *max_conns = a->opt[OPT_MAX_CONNS];
	long long v;

	(void)c;
	json_object_set_new(req, "pool", json_string(a->pos[0]));
	json_object_set_new(req, "name", json_string(a->pos[1]));
	json_object_set_new(req, "address", json_string(a->pos[2]));
	if (weight) {
		if (!parse_num(weight, 0, CFG_MAX_WEIGHT, &v))
			return lbctl_usage_error("--weight takes 0 to %d, not \"%s\"",
						 CFG_MAX_WEIGHT, weight);
		json_object_set_new(req, "weight", json_integer(v));
	}
	if (max_conns) {
		if (!parse_num(max_conns, 0, CFG_ADD_MAX_CONNS, &v))
			return lbctl_usage_error("--max-conns takes a number >= 0, not \"%s\"",
						 max_conns);
		json_object_set_new(req, "max_conns", json_integer(v));
	}
	if (a->opt[OPT_BACKUP])
		json_object_set_new(req, "backup", json_true());
	if (a->opt[OPT_HASH_KEY])
		json_object_set_new(req, "hash_key", json_string(a->opt[OPT_HASH_KEY]));
	return 0;
}

/* The state word was checked against the spec's choices before this runs. */
static int build_health(const struct lbctl_cmd *c, const struct lbctl_args *a, json_t *req)
{
	if (!set_target(req, a->pos[0]))
		return lbctl_cmd_usage(c, NULL);
	json_object_set_new(req, "state", json_string(a->pos[1]));
	return 0;
}

static int build_algorithm(const struct lbctl_cmd *c, const struct lbctl_args *a, json_t *req)
{
	(void)c;
	json_object_set_new(req, "pool", json_string(a->pos[0]));
	json_object_set_new(req, "algorithm", json_string(a->pos[1]));
	return 0;
}

/* ---- the tables ---- */

const struct lbctl_opt lbctl_opts[OPT_COUNT] = {
    [OPT_SOCKET] = {"--socket", "-s", "SOCKET", true,
		    "control socket (default: $LB_SOCKET, else " LBCTL_DEFAULT_SOCKET
		    ", else " LBCTL_SERVICE_SOCKET ")"},
    [OPT_JSON] = {"--json", NULL, NULL, true, "print the response's raw data as JSON"},
    [OPT_HELP] = {"--help", "-h", NULL, true, "this text"},
    [OPT_WEIGHT] = {"--weight", NULL, "N", false,
		    "add: the backend's weight, 0 to " STR(CFG_MAX_WEIGHT) " (default 1)"},
    [OPT_MAX_CONNS] = {"--max-conns", NULL, "N", false,
		       "add: at most N connections at once (default 0: no limit)"},
    [OPT_BACKUP] = {"--backup", NULL, NULL, false,
		    "add: a backup, used only when no primary is usable"},
    [OPT_HASH_KEY] = {"--hash-key", NULL, "K", false,
		      "add: the key ip_hash places it by (default its address)"},
    [OPT_FORCE] = {"--force", "-f", NULL, false,
		   "remove: even while it has connections (they are closed)"},
    [OPT_ITERATIONS] = {"--iterations", "-n", "N", false,
			"top: stop after N refreshes (default: until q or Ctrl-C)"},
};

#define ADD_OPTS                                                                                   \
	(OPT_BIT(OPT_WEIGHT) | OPT_BIT(OPT_MAX_CONNS) | OPT_BIT(OPT_BACKUP) | OPT_BIT(OPT_HASH_KEY))

/* ---- top ---- */

#define TOP_REFRESH_MS 1000

static volatile sig_atomic_t top_stop;

static void top_signal(int sig)
{
	(void)sig;
	top_stop = 1;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The backend of prev with b's pool and name, or NULL. */
static json_t *top_prev(json_t *prev, json_t *b)
{
	json_t *p;
	size_t i;

	json_array_foreach (prev, i, p)
		if (strcmp(str(p, "pool"), str(b, "pool")) == 0 &&
		    strcmp(str(p, "name"), str(b, "name")) == 0)
			return p;
	return NULL;
}

/* key's growth per second since p (dt seconds ago); "-" without a previous sample. */
static const char *top_rate(json_t *b, json_t *p, const char *key, double dt, bool bytes)
{
	char *out = fmtbuf();
	if (!p || dt <= 0)
		return "-";
	double r = (double)(num(b, key) - num(p, key)) / dt;
	if (r < 0)
		r = 0;
	if (bytes) {
		const char *v = fmt_bytes((long long)(r + 0.5)); /* another rotating buffer */
		size_t n = strlen(v);
		if (n > FMT_MAX - 3)
			n = FMT_MAX - 3;
		memcpy(out, v, n);
		memcpy(out + n, "/s", 3);
	} else
		snprintf(out, FMT_MAX, "%.1f", r);
	return out;
}

static void top_render(json_t *d, json_t *prev, double dt, bool tty, const char *sock)
{
	struct table tab = {.ncols = 10};
	char when[32];
	time_t t = time(NULL);
	json_t *b;
	size_t i;

	strftime(when, sizeof(when), "%H:%M:%S", localtime(&t));
	if (tty)
		fputs("\033[H\033[2J", stdout);
	printf("lbctl top  %s  %s  every %d s%s\n\n", when, sock, TOP_REFRESH_MS / 1000,
	       tty ? ", q quits" : "");
	table_row(&tab, "POOL", "NAME", "STATE", "ADMIN", "WEIGHT", "ACTIVE", "CONN/S", "IN/S",
		  "OUT/S", "CHECK");
	json_array_foreach (d, i, b) {
		json_t *p = top_prev(prev, b);
		table_row(&tab, str(b, "pool"), str(b, "name"), str(b, "state"), str(b, "admin"),
			  fmt_int(b, "weight"), fmt_int(b, "active"),
			  top_rate(b, p, "total", dt, false), top_rate(b, p, "bytes_in", dt, true),
			  top_rate(b, p, "bytes_out", dt, true), fmt_check(b));
		if (tab.nrows >= 64)
			table_print(&tab);
	}
	table_print(&tab);
	if (!tty)
		putchar('\n');
	fflush(stdout);
}

/* Wait one refresh period; true if the user pressed q (raw: stdin is a terminal we read). */
static bool top_wait(bool raw)
{
	double until = now_s() + TOP_REFRESH_MS / 1000.0;

	while (!top_stop) {
		double left = until - now_s();
		if (left <= 0)
			return false;
		struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
		int n = poll(&pfd, raw ? 1 : 0, (int)(left * 1000) + 1);
		char ch;
		if (n > 0 && read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q'))
			return true;
	}
	return true;
}

/* `lbctl top`: backends every second with rates from the counters' growth. On a terminal
 * the screen is redrawn and q quits; otherwise each refresh is printed as plain text. */
static int run_top(const struct lbctl_args *a)
{
	const struct lbctl_cmd backends = {.name = "backends", .build = build_backends};
	bool tty = isatty(STDOUT_FILENO);
	bool raw = false;
	struct termios saved;
	long iterations = 0;
	json_t *prev = NULL;
	double prev_t = 0;
	int rc = LBCTL_OK;

	if (a->opt[OPT_ITERATIONS]) {
		char *end;
		errno = 0;
		iterations = strtol(a->opt[OPT_ITERATIONS], &end, 10);
		if (errno || *end || end == a->opt[OPT_ITERATIONS] || iterations < 1)
			return lbctl_usage_error(
			    "--iterations takes a number of refreshes, 1 or more");
	}
	if (tty && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
		struct termios t = saved;
		t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
	}
	signal(SIGINT, top_signal);
	signal(SIGTERM, top_signal);
	const char *sock = a->opt[OPT_SOCKET] ? a->opt[OPT_SOCKET] : "";
	for (long i = 0; !top_stop && (!iterations || i < iterations); i++) {
		json_t *resp;
		rc = lbctl_call(&backends, a, &resp);
		if (rc)
			break;
		double t = now_s();
		json_t *d = json_object_get(resp, "data");
		top_render(d, prev, prev ? t - prev_t : 0, tty, sock);
		json_decref(prev);
		prev = json_incref(d);
		prev_t = t;
		json_decref(resp);
		if ((!iterations || i + 1 < iterations) && top_wait(raw))
			break;
	}
	json_decref(prev);
	if (raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	return rc;
}

/* The order here is the order of --help and of the completion candidates. */
const struct lbctl_cmd lbctl_cmds[] = {
    {.name = "status",
     .args = "",
     .print = print_status,
     .help = "version, engine, uptime, listeners, totals"},
    {.name = "backends",
     .args = "[POOL]",
     .build = build_backends,
     .print = print_backends,
     .help = "backends with state, counters, last check"},
    {.name = "enable",
     .args = "POOL/BACKEND",
     .build = build_target,
     .print = print_admin_or_raw,
     .help = "take new connections again"},
    {.name = "disable",
     .args = "POOL/BACKEND",
     .build = build_target,
     .print = print_admin_or_raw,
     .help = "no new connections; open ones carry on"},
    {.name = "drain",
     .args = "POOL/BACKEND",
     .build = build_target,
     .print = print_admin_or_raw,
     .help = "as disable, shown as draining"},
    {.name = "kill",
     .args = "POOL/BACKEND",
     .build = build_target,
     .print = print_killed,
     .help = "close the backend's open connections"},
    {.name = "weight",
     .args = "POOL/BACKEND N",
     .build = build_weight,
     .print = print_weight,
     .help = "set the weight (0-" STR(CFG_MAX_WEIGHT) ")"},
    {.name = "add",
     .args = "POOL NAME ADDRESS",
     .opts = ADD_OPTS,
     .build = build_add,
     .print = print_added,
     .help = "add a backend to the pool"},
    {.name = "remove",
     .args = "POOL/BACKEND",
     .opts = OPT_BIT(OPT_FORCE),
     .build = build_target,
     .print = print_removed,
     .help = "refused while busy unless --force"},
    {.name = "algorithm",
     .args = "POOL NAME",
     .build = build_algorithm,
     .print = print_algorithm,
     .help = "switch the pool's algorithm"},
    {.name = "reload",
     .args = "",
     .print = print_admin_or_raw,
     .help = "re-read the configuration file"},
    {.name = "metrics",
     .args = "",
     .print = print_metrics,
     .help = "Prometheus text, as GET /metrics"},
    {.name = "health",
     .args = "POOL/BACKEND up|down|auto",
     .build = build_health,
     .print = print_health,
     .help = "force the health (a shared verdict); auto =\nthe prober decides again"},
    {.name = "ready",
     .args = "",
     .print = print_ready,
     .status = status_ready,
     .help = "ready for traffic? (as GET /ready; exit 1 if not)"},
    {.name = "withdraw",
     .args = "",
     .print = print_withdrawn,
     .help = "report not ready (routes go), keep serving"},
    {.name = "rejoin",
     .args = "",
     .print = print_rejoined,
     .help = "report readiness again after withdraw"},
    {.name = "top",
     .args = "[POOL]",
     .opts = OPT_BIT(OPT_ITERATIONS),
     .run = run_top,
     .help = "live view of the backends, refreshed every second: connections/s and\n"
	     "bytes/s; q quits (plain text when not on a terminal)"},
    {.name = "completion",
     .args = "bash",
     .run = lbctl_completion,
     .help = "print the bash completion script:\nsource <(lbctl completion bash)"},
};

const size_t lbctl_ncmds = sizeof(lbctl_cmds) / sizeof(lbctl_cmds[0]);
