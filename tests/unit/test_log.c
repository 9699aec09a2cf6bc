/* Unit tests for lb/log.c: line format (text and JSON), escaping, level filtering and
 * truncation. stderr is redirected into a pipe for the duration of each capture. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lb/log.h"
#include "support.h"

/* Longest line the logger writes, newline included (log.c's LOG_LINE_MAX). */
#define LINE_MAX_BYTES 2048

struct capture {
	int saved, rd;
	char out[65536 + 1]; /* a whole pipe's worth */
};

static void capture_start(struct capture *c)
{
	int p[2];

	ck_assert_int_eq(pipe2(p, O_NONBLOCK), 0);
	c->saved = dup(STDERR_FILENO);
	ck_assert_int_ge(c->saved, 0);
	ck_assert_int_ge(dup2(p[1], STDERR_FILENO), 0);
	close(p[1]);
	c->rd = p[0];
}

/* Restores stderr and returns what was written, NUL-terminated. */
static const char *capture_end(struct capture *c)
{
	ssize_t n;

	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	size_t len = 0;
	while ((n = read(c->rd, c->out + len, sizeof(c->out) - 1 - len)) > 0)
		len += (size_t)n;
	close(c->rd);
	c->out[len] = '\0';
	return c->out;
}

static bool matches(const char *s, const char *pattern)
{
	regex_t re;
	bool ok;

	ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	ok = regexec(&re, s, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

static size_t count_char(const char *s, char ch)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == ch;
	return n;
}

/* Parses one JSON log line and returns its "msg" (malloc'd). */
static char *json_msg(const char *line, const char *want_level)
{
	json_error_t je;
	json_t *o = json_loads(line, 0, &je);
	char *msg;

	ck_assert_msg(o != NULL, "not JSON: %s (%s)", line, je.text);
	ck_assert_str_eq(json_string_value(json_object_get(o, "level")), want_level);
	ck_assert(matches(json_string_value(json_object_get(o, "ts")),
			  "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"));
	ck_assert_uint_eq(json_object_size(o), 3);
	msg = strdup(json_string_value(json_object_get(o, "msg")));
	json_decref(o);
	return msg;
}

START_TEST(test_text_line_has_timestamp_level_and_message)
{
	struct capture c;

	log_setup(LOG_INFO, 0);
	capture_start(&c);
	log_info("listener %s up on %d", "web", 8080);
	const char *out = capture_end(&c);
	ck_assert_msg(matches(out, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\."
				   "[0-9]{3}Z info listener web up on 8080\n$"),
		      "got: %s", out);
}
END_TEST

START_TEST(test_each_level_is_named)
{
	struct capture c;

	log_setup(LOG_DEBUG, 0);
	capture_start(&c);
	log_debug("a");
	log_info("b");
	log_warn("c");
	log_error("d");
	const char *out = capture_end(&c);
	ck_assert(matches(out, "Z debug a\n.*Z info b\n.*Z warn c\n.*Z error d\n$"));
	ck_assert_uint_eq(count_char(out, '\n'), 4);
}
END_TEST

START_TEST(test_lower_levels_are_filtered)
{
	struct capture c;

	log_setup(LOG_WARN, 0);
	ck_assert(!log_enabled(LOG_INFO));
	ck_assert(log_enabled(LOG_WARN));
	ck_assert(log_enabled(LOG_ERROR));
	capture_start(&c);
	log_debug("no");
	log_info("no");
	log_warn("yes1");
	log_error("yes2");
	const char *out = capture_end(&c);
	ck_assert_ptr_null(strstr(out, "no"));
	ck_assert_uint_eq(count_char(out, '\n'), 2);
}
END_TEST

START_TEST(test_text_message_stays_on_one_line)
{
	struct capture c;

	log_setup(LOG_INFO, 0);
	capture_start(&c);
	log_info("two\nlines\r and a\ttab");
	const char *out = capture_end(&c);
	ck_assert_uint_eq(count_char(out, '\n'), 1);
	ck_assert_ptr_nonnull(strstr(out, "info two lines  and a\ttab\n"));
}
END_TEST

START_TEST(test_json_line_parses_and_escapes_message)
{
	const char *msg = "quote \" backslash \\ newline \n tab \t bell \a utf8 \xc3\xa9";
	struct capture c;
	char *got;

	log_setup(LOG_INFO, 1);
	capture_start(&c);
	log_warn("%s", msg);
	const char *out = capture_end(&c);
	ck_assert(matches(out, "^\\{\"ts\":\"[^\"]+\",\"level\":\"warn\",\"msg\":\".*\"\\}\n$"));
	ck_assert_uint_eq(count_char(out, '\n'), 1);
	got = json_msg(out, "warn");
	ck_assert_str_eq(got, msg);
	free(got);
}
END_TEST

START_TEST(test_json_invalid_utf8_becomes_replacement_character)
{
	struct capture c;
	char *got;

	log_setup(LOG_INFO, 1);
	capture_start(&c);
	log_info("bad \xff\xc3 end \xed\xa0\x80!");
	got = json_msg(capture_end(&c), "info");
	ck_assert_str_eq(got,
			 "bad \xef\xbf\xbd\xef\xbf\xbd end \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!");
	free(got);
}
END_TEST

static char *long_message(size_t n, char fill)
{
	char *s = malloc(n + 1);

	memset(s, fill, n);
	s[n] = '\0';
	return s;
}

START_TEST(test_long_text_message_is_cut_to_one_marked_line)
{
	struct capture c;
	char *big = long_message(5000, 'x');

	log_setup(LOG_INFO, 0);
	capture_start(&c);
	log_info("%s", big);
	const char *out = capture_end(&c);
	ck_assert_uint_eq(count_char(out, '\n'), 1);
	ck_assert_uint_le(strlen(out), LINE_MAX_BYTES);
	ck_assert(matches(out, "xxx\\.\\.\\.\n$"));
	free(big);
}
END_TEST

/* Escaping expands quotes sixfold in the worst case; the cut must never split an escape. */
START_TEST(test_long_json_message_is_cut_and_still_parses)
{
	struct capture c;
	char *big = long_message(3000, '"');
	char *got;

	log_setup(LOG_INFO, 1);
	capture_start(&c);
	log_error("%s\x01", big);
	const char *out = capture_end(&c);
	ck_assert_uint_le(strlen(out), LINE_MAX_BYTES);
	got = json_msg(out, "error");
	ck_assert(matches(got, "^\"+\\.\\.\\.$"));
	free(got);
	free(big);
}
END_TEST

START_TEST(test_log_preserves_errno)
{
	struct capture c;

	log_setup(LOG_INFO, 0);
	capture_start(&c);
	errno = ECONNREFUSED;
	log_info("connect failed: %m");
	ck_assert_int_eq(errno, ECONNREFUSED);
	ck_assert_ptr_nonnull(strstr(capture_end(&c), "connect failed: Connection refused"));
}
END_TEST

/* 4 threads x 50 lines of ~100 bytes stay well inside the 64 KiB pipe, so nobody blocks. */
#define THREADS		 4
#define LINES_PER_THREAD 50

static void *log_burst(void *arg)
{
	int id = (int)(intptr_t)arg;

	for (int i = 0; i < LINES_PER_THREAD; i++)
		log_info("thread %d line %02d %s", id, i, "abcdefghijklmnopqrstuvwxyz0123456789");
	return NULL;
}

START_TEST(test_concurrent_lines_never_interleave)
{
	pthread_t th[THREADS];
	struct capture c;
	size_t lines = 0;

	log_setup(LOG_INFO, 0);
	capture_start(&c);
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, log_burst, (void *)(intptr_t)i), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	char *out = (char *)capture_end(&c), *save = NULL;
	for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		ck_assert_msg(matches(l, "Z info thread [0-9] line [0-9]{2} "
					 "abcdefghijklmnopqrstuvwxyz0123456789$"),
			      "mangled: %s", l);
		lines++;
	}
	ck_assert_uint_eq(lines, THREADS * LINES_PER_THREAD);
}
END_TEST

START_TEST(test_level_names_parse)
{
	ck_assert_int_eq(log_level_parse("debug"), LOG_DEBUG);
	ck_assert_int_eq(log_level_parse("info"), LOG_INFO);
	ck_assert_int_eq(log_level_parse("warn"), LOG_WARN);
	ck_assert_int_eq(log_level_parse("error"), LOG_ERROR);
	ck_assert_int_eq(log_level_parse("warning"), -1);
	ck_assert_int_eq(log_level_parse("INFO"), -1);
	ck_assert_int_eq(log_level_parse(""), -1);
	ck_assert_int_eq(log_level_parse(NULL), -1);
}
END_TEST

static Suite *log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");

	tcase_add_test(tc, test_text_line_has_timestamp_level_and_message);
	tcase_add_test(tc, test_each_level_is_named);
	tcase_add_test(tc, test_lower_levels_are_filtered);
	tcase_add_test(tc, test_text_message_stays_on_one_line);
	tcase_add_test(tc, test_json_line_parses_and_escapes_message);
	tcase_add_test(tc, test_json_invalid_utf8_becomes_replacement_character);
	tcase_add_test(tc, test_long_text_message_is_cut_to_one_marked_line);
	tcase_add_test(tc, test_long_json_message_is_cut_and_still_parses);
	tcase_add_test(tc, test_log_preserves_errno);
	tcase_add_test(tc, test_concurrent_lines_never_interleave);
	tcase_add_test(tc, test_level_names_parse);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(log_suite(), CK_NORMAL);
}
