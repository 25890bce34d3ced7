/* crucible-c: one-line logging with a replaceable sink. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level cur_level = LOG_INFO;
static log_sink_fn sink;
static const char *prog = "crucible";
static const char *const names[] = {"ERROR", "WARN", "NOTICE", "INFO", "DEBUG"};

void log_set_level(enum log_level level)
{
  cur_level = level;
}

enum log_level log_get_level(void)
{
  return cur_level;
}

int log_parse_level(const char *s, enum log_level *out)
{
  static const char *const lower[] = {"error", "warn", "notice", "info",
                                      "debug"};
  for (int i = 0; i < 5; i++)
    if (strcmp(s, lower[i]) == 0) {
      *out = (enum log_level) i;
      return 0;
    }
  return -EINVAL;
}

const char *log_strerror(int err)
{
  const char *d = strerrordesc_np(err < 0 ? -err : err);
  return d ? d : "Unknown error";
}

void log_set_sink(log_sink_fn fn)
{
  sink = fn;
}

void log_set_prog(const char *p)
{
  prog = p;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
  char msg[1024], line[1200];
  va_list ap;
  if (level > cur_level)
    return;
  int saved = errno; /* so callers may log and still use errno / %m */
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* One event, one line: fold any newline a caller let slip through. */
  for (char *p = msg; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';
  if (sink) {
    sink(level, msg);
  } else {
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(line, sizeof line, "%s %s %s: %s\n", when, prog,
                     names[level], msg);
    if (n > (int) sizeof line - 1)
      n = (int) sizeof line - 1;
    /* One write(2) per line keeps concurrent lines whole. */
    if (write(STDERR_FILENO, line, (size_t) n) < 0) {
      /* nowhere left to report it */
    }
  }
  errno = saved;
}
