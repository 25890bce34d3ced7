/* crucible-downstairs: what every subcommand shares (cli_*.c): one-line
 * errors naming the subcommand, usage errors (exit status 2), numeric
 * options, region open errors, auth key files, progress on stderr. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/auth.h"
#include "../common/log.h"
#include "../common/parse.h"

const char *cli_cmd = "";

/* --auth-key FILE into *k, or one error line and -1. */
int cli_load_auth_key(const char *path, struct auth_key *k)
{
  const char *why = NULL;
  int r = auth_key_load(k, path, &why);
  if (r < 0)
    cli_error("--auth-key %s: %s", path, why ? why : log_strerror(-r));
  return r < 0 ? -1 : 0;
}

/* Bind and listen on the first address addr resolves to that binds.
 * SO_REUSEADDR: a restarted downstairs must be able to bind its port
 * while connections of the previous instance sit in TIME_WAIT (up to
 * 60 s); it does not let two live listeners share the port (that would
 * be SO_REUSEPORT). */
int cli_listen(const char *addr, uint16_t port, int *fd)
{
  struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
                           .ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM};
  struct addrinfo *res, *ai;
  char service[8];
  int err = 0, one = 1;

  snprintf(service, sizeof service, "%u", port);
  int r = getaddrinfo(addr, service, &hints, &res);
  if (r != 0) {
    cli_error("cannot resolve address '%s' (-a): %s", addr,
              r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
    return -1;
  }
  for (ai = res; ai; ai = ai->ai_next) {
    int s =
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (s < 0) {
      err = errno;
      continue;
    }
    if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
        bind(s, ai->ai_addr, ai->ai_addrlen) == 0 && listen(s, 128) == 0) {
      freeaddrinfo(res);
      *fd = s;
      return 0;
    }
    err = errno;
    close(s);
  }
  freeaddrinfo(res);
  cli_error("listen %s:%u: %s", addr, port, log_strerror(err));
  return -1;
}

/* One line: "crucible-downstairs: CMD: message". */
void cli_error(const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "%s: %s: ", PROG, cli_cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* Usage error: one line naming the problem and --help; returns 2. */
int cli_usage(const char *fmt, const char *arg)
{
  fprintf(stderr, "%s: %s: ", PROG, cli_cmd);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (try '%s %s --help')\n", PROG, cli_cmd);
  return 2;
}

/* getopt's '?' and ':' results as our usage error. */
int cli_bad_option(int c, char **argv)
{
  char shortopt[3] = {'-', (char) optopt, '\0'};
  const char *last = argv[optind - 1];
  const char *opt = strncmp(last, "--", 2) == 0 || optopt <= 0 || optopt > 127
                        ? last
                        : shortopt;
  return cli_usage(
      c == ':' ? "option '%s' needs a value" : "unknown option '%s'", opt);
}

int cli_parse_num(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
  if (parse_u64(s, max, out) < 0 || *out == 0) {
    cli_usage("invalid value for %s", opt);
    return -1;
  }
  return 0;
}

/* Say why a region could not be opened, in one line. */
void cli_open_error(const char *dir, int r)
{
  struct stat st;
  if (stat(dir, &st) < 0)
    cli_error("%s: %s", dir, log_strerror(errno));
  else if (!S_ISDIR(st.st_mode))
    cli_error("%s: not a directory", dir);
  else if (r == -ENOENT)
    cli_error("%s: not a region (no region.json)", dir);
  else if (r == -EINVAL)
    cli_error("%s: invalid region.json", dir);
  else if (r == -EBUSY)
    cli_error("%s: region is in use by another process (a running "
              "downstairs?)",
              dir);
  else if (r == -EPERM)
    cli_error("%s: region is encrypted: only unencrypted regions can be "
              "exported or imported",
              dir);
  else
    cli_error("%s: %s", dir, log_strerror(-r));
}

/* Progress on stderr, in the style its kind (terminal or not) wants. */
void cli_progress(struct progress *p, const char *label, uint64_t total)
{
  progress_start(p, stderr, isatty(STDERR_FILENO), label, total);
}
