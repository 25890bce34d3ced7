/* crucible-admin: the command-line client of the plugin's admin socket
 * (admin=PATH; protocol in docs/DESIGN.md "Admin socket").
 *
 *   crucible-admin -s PATH [--json] status
 *   crucible-admin -s PATH [--json] scrub start [--rate MB/s]
 *   crucible-admin -s PATH [--json] scrub status
 *   crucible-admin -s PATH [--json] extend SIZE
 *   crucible-admin -s PATH [--json] snapshot create|delete NAME | list
 *
 * Sends one request line, prints the reply: the server renders both
 * forms, so this client parses no JSON.  A json reply starts with
 * {"version":1,"ok":true or "ok":false; a text reply with "ok\n" or
 * "error: ...".  Exit status 0 ok, 1 the command failed (the error in
 * one line on stderr), 2 usage or connection error.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ADM_REPLY_MAX (1024 * 1024)
/* The server bounds every command (extend, the slowest, by the volume's
 * timeout plus the time to make the new extents); this only stops a
 * hung server from hanging us. */
#define ADM_TIMEOUT_MS 120000
/* A rollback takes as long as comparing the volume (its progress is in
 * the server's log): waited for without a bound. */
static int timeout_ms = ADM_TIMEOUT_MS;

static void usage(FILE *f)
{
  fprintf(f, "usage: crucible-admin -s PATH [--json] status\n"
             "       crucible-admin -s PATH [--json] scrub start [--rate "
             "MB/s]\n"
             "       crucible-admin -s PATH [--json] scrub status\n"
             "       crucible-admin -s PATH [--json] extend SIZE\n"
             "       crucible-admin -s PATH [--json] snapshot create NAME\n"
             "       crucible-admin -s PATH [--json] snapshot delete NAME\n"
             "       crucible-admin -s PATH [--json] snapshot list\n"
             "       crucible-admin -s PATH [--json] snapshot rollback "
             "NAME\n");
}

/* Connect to path: the fd, or -1 (error printed). */
static int adm_connect(const char *path)
{
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int fd;

  if (strlen(path) >= sizeof sa.sun_path) {
    fprintf(stderr, "crucible-admin: %s: path too long\n", path);
    return -1;
  }
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
    fprintf(stderr, "crucible-admin: %s: %s\n", path, strerror(errno));
    if (fd >= 0)
      close(fd);
    return -1;
  }
  return fd;
}

/* Read the whole reply (until EOF) into a NUL-terminated buffer. */
static char *adm_read_reply(int fd, size_t *len)
{
  char *buf = malloc(ADM_REPLY_MAX + 1);
  size_t n = 0;

  if (!buf)
    return NULL;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    ssize_t k;
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      errno = r == 0 ? ETIMEDOUT : errno;
      free(buf);
      return NULL;
    }
    k = read(fd, buf + n, ADM_REPLY_MAX - n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0) {
      free(buf);
      return NULL;
    }
    if (k == 0 || (n += (size_t) k) == ADM_REPLY_MAX)
      break;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

int main(int argc, char **argv)
{
  const char *path = NULL;
  char line[1024];
  size_t len = 0, off = 0;
  bool json = false;
  char *reply;
  int i, fd, n;

  for (i = 1; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
      path = argv[++i];
    else if (strcmp(argv[i], "--json") == 0)
      json = true;
    else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (!path || i >= argc) {
    usage(stderr);
    return 2;
  }
  if (i + 1 < argc && strcmp(argv[i], "snapshot") == 0 &&
      strcmp(argv[i + 1], "rollback") == 0)
    timeout_ms = -1;
  /* The command line as it is; the server checks it.  Only refuse what
   * would break the one-line framing. */
  n = snprintf(line, sizeof line, "crucible-admin 1 %s",
               json ? "json" : "text");
  for (; i < argc; i++) {
    if (strpbrk(argv[i], " \t\r\n") || !argv[i][0]) {
      fprintf(stderr, "crucible-admin: argument '%s': no blanks allowed\n",
              argv[i]);
      return 2;
    }
    n += snprintf(line + n, sizeof line - (size_t) n, " %s", argv[i]);
    if ((size_t) n >= sizeof line - 1) {
      fprintf(stderr, "crucible-admin: command too long\n");
      return 2;
    }
  }
  line[n++] = '\n';
  if ((fd = adm_connect(path)) < 0)
    return 2;
  while (off < (size_t) n) {
    ssize_t k = send(fd, line + off, (size_t) n - off, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0) {
      fprintf(stderr, "crucible-admin: %s: send: %s\n", path, strerror(errno));
      close(fd);
      return 2;
    }
    off += (size_t) k;
  }
  shutdown(fd, SHUT_WR);
  reply = adm_read_reply(fd, &len);
  close(fd);
  if (!reply) {
    fprintf(stderr, "crucible-admin: %s: no reply: %s\n", path,
            strerror(errno));
    return 2;
  }
  if (json) {
    bool ok = strncmp(reply, "{\"version\":1,\"ok\":true", 22) == 0;
    bool err = strncmp(reply, "{\"version\":1,\"ok\":false", 23) == 0;
    if (!ok && !err) {
      fprintf(stderr, "crucible-admin: %s: not a crucible-admin reply\n", path);
      free(reply);
      return 2;
    }
    fwrite(reply, 1, len, stdout);
    free(reply);
    return ok ? 0 : 1;
  }
  if (strncmp(reply, "ok\n", 3) == 0) {
    fwrite(reply + 3, 1, len - 3, stdout);
    free(reply);
    return 0;
  }
  if (strncmp(reply, "error: ", 7) == 0) {
    char *nl = strchr(reply, '\n');
    if (nl)
      *nl = '\0';
    fprintf(stderr, "crucible-admin: %s\n", reply + 7);
    free(reply);
    return 1;
  }
  fprintf(stderr, "crucible-admin: %s: not a crucible-admin reply\n", path);
  free(reply);
  return 2;
}
