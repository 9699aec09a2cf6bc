/* Path-aware JSON reading for the config loader; see config_json.h. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb/config_json.h"

/* Longest "got <value>" excerpt in a message. */
#define CFG_GOT_MAX 80
/* Durations are capped at ten years so that converting them to nanoseconds (io_uring
 * timespecs, timerfd) can never overflow 64 bits. */
#define CFG_MAX_DURATION_MS (3650ULL * 24 * 3600 * 1000)
#define DURATION_EXPECTED                                                                          \
	"a duration like \"250ms\", \"2s\", \"5m\", \"1h\" or integer milliseconds"

/* ---- messages ---- */

void cfg_err_add(struct cfg_ctx *c, char *msg)
{
	char **m;

	if (!msg) {
		c->oom = true;
		return;
	}
	m = realloc(c->errs->msg, (c->errs->n + 1) * sizeof(*m));
	if (!m) {
		free(msg);
		c->oom = true;
		return;
	}
	c->errs->msg = m;
	c->errs->msg[c->errs->n++] = msg;
}

void cfg_err_at(struct cfg_ctx *c, const char *path, const char *fmt, ...)
{
	char *what = NULL, *msg = NULL;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&what, fmt, ap) < 0)
		what = NULL;
	va_end(ap);
	if (what && asprintf(&msg, "%s: %s%s%s", c->file, path, *path ? ": " : "", what) < 0)
		msg = NULL;
	free(what);
	cfg_err_add(c, msg);
}

/* Compact JSON text of v for "got ..." in messages, cut to CFG_GOT_MAX bytes. */
static void cfg_got_text(const json_t *v, char *buf, size_t len)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

	if (!s) {
		snprintf(buf, len, "?");
		return;
	}
	if (strlen(s) < len)
		snprintf(buf, len, "%s", s);
	else
		snprintf(buf, len, "%.*s...", (int)(len - 4), s);
	free(s);
}

/* "FILE: PATH: expected <what>, got <v>" */
void cfg_err_got(struct cfg_ctx *c, const char *path, const json_t *v, const char *what)
{
	char got[CFG_GOT_MAX];

	cfg_got_text(v, got, sizeof(got));
	cfg_err_at(c, path, "expected %s, got %s", what, got);
}

/* "FILE: PATH: expected <what>, got <v> (<why>)": why says which part of v is wrong. */
void cfg_err_got_why(struct cfg_ctx *c, const char *path, const json_t *v, const char *what,
		     const char *why)
{
	char got[CFG_GOT_MAX];

	cfg_got_text(v, got, sizeof(got));
	cfg_err_at(c, path, "expected %s, got %s (%s)", what, got, why);
}

/* Absurdly long paths (keys of hundreds of characters) are cut and end in "...". */
static void cfg_path_cut(char *out, int n)
{
	if (n >= CFG_PATH_MAX)
		memcpy(out + CFG_PATH_MAX - 4, "...", 4);
}

void cfg_path_key(char *out, const char *parent, const char *key)
{
	cfg_path_cut(out, snprintf(out, CFG_PATH_MAX, "%s%s%s", parent, *parent ? "." : "", key));
}

void cfg_path_index(char *out, const char *parent, size_t i)
{
	cfg_path_cut(out, snprintf(out, CFG_PATH_MAX, "%s[%zu]", parent, i));
}

void cfg_err_missing(struct cfg_ctx *c, const char *parent, const char *key, const char *what)
{
	char path[CFG_PATH_MAX];

	cfg_path_key(path, parent, key);
	cfg_err_at(c, path, "missing; expected %s", what);
}

/* "a, b, c" from a NULL-terminated list; into buf. */
static const char *cfg_join_names(const char *const *names, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; names[i] && off < len; i++) {
		int n = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", names[i]);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	return buf;
}

char *cfg_strdup(struct cfg_ctx *c, const char *s)
{
	char *d = strdup(s);

	if (!d)
		c->oom = true;
	return d;
}

void *cfg_calloc(struct cfg_ctx *c, size_t n, size_t size)
{
	void *p;

	if (n == 0)
		return NULL;
	p = calloc(n, size);
	if (!p)
		c->oom = true;
	return p;
}

/* ---- typed getters ---- */

static bool cfg_name_in(const char *s, const char *const *names)
{
	for (size_t i = 0; names[i]; i++)
		if (strcmp(s, names[i]) == 0)
			return true;
	return false;
}

/* Reports every key of obj that is not in allowed. */
void cfg_check_keys(struct cfg_ctx *c, const json_t *obj, const char *parent,
		    const char *const *allowed)
{
	char path[CFG_PATH_MAX], list[512];
	json_t *o = (json_t *)obj; /* jansson's iterator API is not const-qualified */

	for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
		const char *key = json_object_iter_key(it);
		if (cfg_name_in(key, allowed))
			continue;
		cfg_path_key(path, parent, key);
		cfg_err_at(c, path, "unknown key; allowed keys: %s",
			   cfg_join_names(allowed, list, sizeof(list)));
	}
}

/* Present and an object: CFG_OK with *out set; absent: CFG_ABSENT; else CFG_BAD. */
int cfg_get_object(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key,
		   const json_t **out)
{
	char path[CFG_PATH_MAX];
	const json_t *v = json_object_get(obj, key);

	if (!v)
		return CFG_ABSENT;
	if (!json_is_object(v)) {
		cfg_path_key(path, parent, key);
		cfg_err_got(c, path, v, "an object");
		return CFG_BAD;
	}
	*out = v;
	return CFG_OK;
}

int cfg_get_string(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key,
		   const char *what, const char **out)
{
	char path[CFG_PATH_MAX];
	const json_t *v = json_object_get(obj, key);

	if (!v)
		return CFG_ABSENT;
	if (!json_is_string(v)) {
		cfg_path_key(path, parent, key);
		cfg_err_got(c, path, v, what);
		return CFG_BAD;
	}
	*out = json_string_value(v);
	return CFG_OK;
}

/* Integer in [min, max]; max == INT_MAX reads as "no upper bound" in the message. */
int cfg_get_int(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key, int min,
		int max, int *out)
{
	char path[CFG_PATH_MAX], what[64];
	const json_t *v = json_object_get(obj, key);

	if (!v)
		return CFG_ABSENT;
	if (json_is_integer(v) && json_integer_value(v) >= min && json_integer_value(v) <= max) {
		*out = (int)json_integer_value(v);
		return CFG_OK;
	}
	if (max == INT_MAX)
		snprintf(what, sizeof(what), "an integer >= %d", min);
	else
		snprintf(what, sizeof(what), "an integer %d-%d", min, max);
	cfg_path_key(path, parent, key);
	cfg_err_got(c, path, v, what);
	return CFG_BAD;
}

int cfg_get_bool(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key,
		 bool *out)
{
	char path[CFG_PATH_MAX];
	const json_t *v = json_object_get(obj, key);

	if (!v)
		return CFG_ABSENT;
	if (!json_is_boolean(v)) {
		cfg_path_key(path, parent, key);
		cfg_err_got(c, path, v, "true or false");
		return CFG_BAD;
	}
	*out = json_is_true(v);
	return CFG_OK;
}

/* One of names (NULL-terminated); *out is the index. */
int cfg_get_enum(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key,
		 const char *const *names, int *out)
{
	char path[CFG_PATH_MAX], list[256], what[300];
	const json_t *v = json_object_get(obj, key);

	if (!v)
		return CFG_ABSENT;
	if (json_is_string(v)) {
		for (int i = 0; names[i]; i++) {
			if (strcmp(json_string_value(v), names[i]) == 0) {
				*out = i;
				return CFG_OK;
			}
		}
	}
	snprintf(what, sizeof(what), "one of %s", cfg_join_names(names, list, sizeof(list)));
	cfg_path_key(path, parent, key);
	cfg_err_got(c, path, v, what);
	return CFG_BAD;
}

/* A duration string or integer milliseconds, at most CFG_MAX_DURATION_MS; positive excludes 0. */
int cfg_get_duration(struct cfg_ctx *c, const json_t *obj, const char *parent, const char *key,
		     bool positive, uint64_t *out)
{
	char path[CFG_PATH_MAX];
	const json_t *v = json_object_get(obj, key);
	uint64_t ms = 0;
	bool ok = false;

	if (!v)
		return CFG_ABSENT;
	cfg_path_key(path, parent, key);
	if (json_is_string(v))
		ok = config_parse_duration(json_string_value(v), &ms) == 0;
	else if (json_is_integer(v) && json_integer_value(v) >= 0) {
		ms = (uint64_t)json_integer_value(v);
		ok = true;
	}
	if (!ok) {
		cfg_err_got(c, path, v, DURATION_EXPECTED);
		return CFG_BAD;
	}
	if (ms > CFG_MAX_DURATION_MS) {
		cfg_err_got(c, path, v, "a duration of at most 3650 days");
		return CFG_BAD;
	}
	if (positive && ms == 0) {
		cfg_err_got(c, path, v, "a duration greater than 0");
		return CFG_BAD;
	}
	*out = ms;
	return CFG_OK;
}

/* Names identify things in lbctl ("POOL/BACKEND") and in metrics labels. */
static bool cfg_check_name(struct cfg_ctx *c, const char *path, const json_t *v, bool allow_slash)
{
	const char *s = json_string_value(v);

	for (const char *p = s; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f || (*p == '/' && !allow_slash)) {
			cfg_err_got(c, path, v,
				    allow_slash ? "a name without control characters"
						: "a name without '/' or control characters");
			return false;
		}
	}
	if (!*s) {
		cfg_err_got(c, path, v, "a non-empty name");
		return false;
	}
	if (strlen(s) > CFG_NAME_MAX) {
		cfg_err_at(c, path, "expected a name of at most %d bytes, got %zu bytes",
			   CFG_NAME_MAX, strlen(s));
		return false;
	}
	return true;
}

/* Optional name string, duplicated into *out; CFG_OK, CFG_ABSENT or CFG_BAD. */
int cfg_get_name(struct cfg_ctx *c, const json_t *obj, const char *parent, bool allow_slash,
		 char **out)
{
	char path[CFG_PATH_MAX];
	const char *s;
	int rc = cfg_get_string(c, obj, parent, "name", "a name (string)", &s);

	if (rc != CFG_OK)
		return rc;
	cfg_path_key(path, parent, "name");
	if (!cfg_check_name(c, path, json_object_get(obj, "name"), allow_slash))
		return CFG_BAD;
	*out = cfg_strdup(c, s);
	return CFG_OK;
}

/* ---- durations ---- */

int config_parse_duration(const char *s, uint64_t *ms)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}};
	uint64_t v = 0;
	const char *p = s;

	if (!s || !ms || *p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(p, units[i].unit) != 0)
			continue;
		if (v > UINT64_MAX / units[i].ms)
			return -EINVAL;
		*ms = v * units[i].ms;
		return 0;
	}
	return -EINVAL;
}
