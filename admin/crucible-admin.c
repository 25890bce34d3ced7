/* crucible-admin: one command to a running crucible volume's admin socket
 * (the plugin's admin=PATH; protocol in docs/DESIGN.md, "Admin socket").
 *
 *   crucible-admin -s PATH [--json] status
 *
 * Sends "1 json|text COMMAND ARGS...", prints the reply as it comes (the
 * server renders text and JSON itself, so this client parses nothing but
 * the first bytes of the reply to know whether it is a refusal).  Exit
 * status: 0 ok, 1 the command was refused or failed (its one error line
 * printed on stderr), 2 usage error or no answer from the socket.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define PROG "crucible-admin"
#define LINE_MAX_ 1024

static const char HELP[] =
    "Usage: " PROG " -s PATH [--json] COMMAND [ARGS...]\n"
    "Send one command to the admin socket of a running volume (the plugin's\n"
    "admin=PATH) and print the answer.\n"
    "  -s, --socket PATH      the admin socket\n"
    "  -j, --json             print the answer as JSON (default: text)\n"
    "  -h, --help             this text\n"
    "Commands:\n"
    "  status                 health, each downstairs' state, generation,\n"
    "                         flush number, jobs in flight, repair progress\n"
    "Exit status: 0 ok, 1 the command failed, 2 usage error or no answer.\n";

static int usage(const char *fmt, const char *arg)
{
  fprintf(stderr, "%s: ", PROG);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (try '%s --help')\n", PROG);
  return 2;
}

int main(int argc, char **argv)
{
  static const struct option opts[] = {
      {"socket", required_argument, NULL, 's'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},
      {0}};
  const char *path = NULL;
  bool json = false;
  char line[LINE_MAX_ + 2];
  size_t len;
  int c;

  while ((c = getopt_long(argc, argv, "+s:jh", opts, NULL)) != -1) {
    switch (c) {
    case 's': path = optarg; break;
    case 'j': json = true; break;
    case 'h': fputs(HELP, stdout); return 0;
    case ':': return usage("option '%s' needs a value", argv[optind - 1]);
    default: return usage("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (!path)
    return usage("%s", "missing -s PATH");
  if (optind >= argc)
    return usage("%s", "missing COMMAND");
  len = (size_t) snprintf(line, sizeof line, "1 %s", json ? "json" : "text");
  for (int i = optind; i < argc; i++) {
    if (!argv[i][0] || strchr(argv[i], ' ') || strchr(argv[i], '\n'))
      return usage("argument '%s' is empty or has a space or newline",
                   argv[i]);
    len += (size_t) snprintf(line + len, sizeof line - len, " %s", argv[i]);
    if (len >= LINE_MAX_)
      return usage("%s", "command line longer than 1024 bytes");
  }
  line[len++] = '\n';

  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path)
    return usage("socket path '%s' too long", path);
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  signal(SIGPIPE, SIG_IGN);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
    fprintf(stderr, "%s: %s: %s (is nbdkit running with admin=%s?)\n", PROG,
            path, strerror(errno), path);
    return 2;
  }
  struct timeval tv = {.tv_sec = 30};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (size_t off = 0; off < len;) {
    ssize_t n = write(fd, line + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      fprintf(stderr, "%s: %s: send: %s\n", PROG, path, strerror(errno));
      return 2;
    }
    off += (size_t) n;
  }
  /* The reply, to the end; a refusal is one line, printed on stderr. */
  static char reply[1 << 20];
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fd, reply + got, sizeof reply - 1 - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      fprintf(stderr, "%s: %s: no answer: %s\n", PROG, path, strerror(errno));
      return 2;
    }
    if (n == 0 || got + (size_t) n >= sizeof reply - 1) {
      got += (size_t) (n > 0 ? n : 0);
      break;
    }
    got += (size_t) n;
  }
  close(fd);
  reply[got] = '\0';
  if (got == 0) {
    fprintf(stderr, "%s: %s: the socket closed without an answer\n", PROG,
            path);
    return 2;
  }
  bool refused = json ? strncmp(reply, "{\"version\":1,\"ok\":false", 23) == 0
                      : strncmp(reply, "error: ", 7) == 0;
  if (refused && !json) {
    fprintf(stderr, "%s: %s", PROG, reply + 7);
    return 1;
  }
  fputs(reply, refused ? stderr : stdout);
  return refused ? 1 : 0;
}
