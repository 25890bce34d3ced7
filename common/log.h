/* crucible-c: one-line logging with a replaceable sink.
 *
 * The downstairs logs to stderr ("2026-11-25T10:00:00Z crucible-downstairs
 * INFO: message").  The plugin installs a sink that forwards to
 * nbdkit_error / nbdkit_debug, so common and upstairs code never include
 * nbdkit headers.  Messages are one line; never log key material.
 */
#ifndef CRUCIBLE_LOG_H
#define CRUCIBLE_LOG_H

/* NOTICE: a normal event an operator should see without debug output
 * (the plugin's per-downstairs status lines while the volume runs). */
enum log_level {
  LOG_ERROR = 0,
  LOG_WARN = 1,
  LOG_NOTICE = 2,
  LOG_INFO = 3,
  LOG_DEBUG = 4
};

typedef void (*log_sink_fn)(enum log_level level, const char *msg);

/* Messages above level are dropped (default LOG_INFO). */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* "error", "warn", "info", "debug" -> 0, or -EINVAL. */
int log_parse_level(const char *s, enum log_level *out);
/* NULL restores the stderr sink.  prog names the stderr prefix. */
void log_set_sink(log_sink_fn fn);
void log_set_prog(const char *prog);

/* Description of a positive errno, safe on any thread: unlike
 * strerror(3) it takes no locale lock (a loop thread calling strerror while
 * another thread runs exit handlers deadlocked nbdkit under ASan). */
const char *log_strerror(int err);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
