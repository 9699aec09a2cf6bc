/* Log lines to stderr, text or JSON, one line per event (SPEC.md log.*).
 * Each line is written with a single write(2) so lines from threads never interleave. */
#ifndef LB_LOG_H
#define LB_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_setup(int level, int json);
int log_enabled(int level);
/* printf-style message. */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Parse "debug" "info" "warn" "error"; returns the level or -1. */
int log_level_parse(const char *s);

#endif
