/* Log lines to stderr, text or JSON. Every call formats one whole line in a stack buffer and
 * emits it with a single write(2): lines shorter than PIPE_BUF never interleave between
 * threads, and no lock is needed. The level and format are the only state (atomics). */
#include "lb/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Longest line we write, newline included; below PIPE_BUF (4096) so that a write to a pipe
 * is atomic. Longer messages are cut and marked with LOG_CUT_MARK. */
#define LOG_LINE_MAX 2048
#define LOG_CUT_MARK "..."
/* "2026-11-23T16:40:00.123Z" plus NUL */
#define LOG_TS_MAX 32

/* Written by log_setup (main thread), read by every thread. */
static _Atomic int log_min_level = LOG_INFO;
static _Atomic int log_json;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};
#define LOG_NLEVELS (sizeof(log_level_names) / sizeof(log_level_names[0]))

/* The output line being built; never overflows, remembers whether something was cut. */
struct line {
	char buf[LOG_LINE_MAX];
	size_t len;
	size_t limit; /* bytes usable for content, leaving room for the cut mark and ending */
	bool cut;
};

void log_setup(int level, int json)
{
	if (level < LOG_DEBUG)
		level = LOG_DEBUG;
	if (level > LOG_ERROR)
		level = LOG_ERROR;
	atomic_store_explicit(&log_min_level, level, memory_order_relaxed);
	atomic_store_explicit(&log_json, json ? 1 : 0, memory_order_relaxed);
}

int log_enabled(int level)
{
	return level >= atomic_load_explicit(&log_min_level, memory_order_relaxed);
}

int log_level_parse(const char *s)
{
	if (!s)
		return -1;
	for (size_t i = 0; i < LOG_NLEVELS; i++)
		if (strcmp(s, log_level_names[i]) == 0)
			return (int)i;
	return -1;
}

static const char *level_name(int level)
{
	if (level < 0 || (size_t)level >= LOG_NLEVELS)
		return "error";
	return log_level_names[level];
}

static void format_ts(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000);
	if (n < 0 || (size_t)n >= len) /* only with a clock beyond year 9999 */
		snprintf(buf, len, "?");
}

/* Appends n bytes only if all of them fit, so escapes and UTF-8 sequences are never split. */
static bool line_put(struct line *l, const char *s, size_t n)
{
	if (l->cut || l->len + n > l->limit) {
		l->cut = true;
		return false;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	return true;
}

static void line_puts(struct line *l, const char *s)
{
	line_put(l, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates), or 0. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xBF;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4;
	else
		return 0;
	if (c == 0xE0)
		lo = 0xA0;
	else if (c == 0xED)
		hi = 0x9F;
	else if (c == 0xF0)
		lo = 0x90;
	else if (c == 0xF4)
		hi = 0x8F;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return n;
}

/* JSON string body (RFC 8259): quotes, backslashes and control characters escaped; bytes that
 * are not valid UTF-8 become U+FFFD so the line always parses. */
static void put_json_escaped(struct line *l, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char esc[8];

	while (*p && !l->cut) {
		size_t n = utf8_len(p);
		if (n == 0) {
			line_puts(l, "\\ufffd");
			p++;
			continue;
		}
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			line_put(l, esc, 2);
		} else if (*p == '\n') {
			line_puts(l, "\\n");
		} else if (*p == '\r') {
			line_puts(l, "\\r");
		} else if (*p == '\t') {
			line_puts(l, "\\t");
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", *p);
			line_puts(l, esc);
		} else {
			line_put(l, (const char *)p, n);
		}
		p += n;
	}
}

/* Text lines stay one line: control characters (newlines included) become spaces. */
static void put_text(struct line *l, const char *s)
{
	for (; *s && !l->cut; s++) {
		char ch = *s;
		if (((unsigned char)ch < 0x20 && ch != '\t') || ch == 0x7f)
			ch = ' ';
		line_put(l, &ch, 1);
	}
}

static void line_write(const struct line *l)
{
	size_t off = 0;

	while (off < l->len) {
		ssize_t n = write(STDERR_FILENO, l->buf + off, l->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		off += (size_t)n;
	}
}

/* Builds the whole line into l; a cut message ends in LOG_CUT_MARK. */
static void line_build(struct line *l, int level, const char *msg, bool msg_cut, bool json)
{
	const char *end = json ? "\"}\n" : "\n";
	char ts[LOG_TS_MAX];

	format_ts(ts, sizeof(ts));
	l->limit = sizeof(l->buf) - strlen(LOG_CUT_MARK) - strlen(end);
	line_puts(l, json ? "{\"ts\":\"" : "");
	line_puts(l, ts);
	line_puts(l, json ? "\",\"level\":\"" : " ");
	line_puts(l, level_name(level));
	line_puts(l, json ? "\",\"msg\":\"" : " ");
	if (json)
		put_json_escaped(l, msg);
	else
		put_text(l, msg);
	/* The limit left room for the mark and the ending, so these always fit. */
	l->limit = sizeof(l->buf);
	if (l->cut || msg_cut) {
		l->cut = false;
		line_puts(l, LOG_CUT_MARK);
	}
	line_puts(l, end);
}

void log_msg(int level, const char *fmt, ...)
{
	char msg[LOG_LINE_MAX];
	struct line l = {.len = 0, .cut = false};
	int saved = errno, full;
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	full = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	line_build(&l, level, msg, full >= (int)sizeof(msg),
		   atomic_load_explicit(&log_json, memory_order_relaxed));
	line_write(&l);
	errno = saved;
}
