/* crucible-c upstairs: the admin socket (admin=PATH), on the loop thread.
 *
 * A Unix socket of mode 0600 that answers one request per connection,
 * in the manner of Ceph's daemon admin socket: the client sends ONE line
 *
 *     VERSION FORMAT COMMAND [ARGS...]\n        e.g. "1 json status"
 *
 * (VERSION 1; FORMAT json or text; words of printable ASCII separated by
 * single spaces, at most UP_ADMIN_LINE bytes) and reads the reply until
 * the server closes: in json, one object and a newline,
 *     {"version":1,"ok":true,"command":"status","status":{...}}
 *     {"version":1,"ok":false,"error":"unknown command 'frob'"}
 * in text, human-readable lines, or one line "error: ..." for a refusal.
 * A later command (snapshot, extend, rekey) is one more name in the
 * table; a client that speaks another VERSION gets an error naming the
 * one we speak.
 *
 * The loop thread owns everything here, so a command reads the volume's
 * state (stats.c) without locks; nothing here blocks: a slow client is a
 * connection waiting for its line, closed after UP_ADMIN_IDLE_MS, and at
 * most UP_ADMIN_CONNS are open (more are closed at once).  Bad input is an
 * error reply, then close.  The socket file is removed at shutdown.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../common/log.h"
#include "upstairs_int.h"

#define UP_ADMIN_LINE 1024
#define UP_ADMIN_CONNS 16
#define UP_ADMIN_IDLE_MS 5000
#define UP_ADMIN_REPLY 16384

struct adm_conn {
  struct adm_conn *prev, *next; /* up->admin_head */
  uv_pipe_t pipe;
  uv_timer_t timer;
  uv_write_t wr;
  struct upstairs *up;
  char line[UP_ADMIN_LINE + 1];
  size_t len;
  bool answered;
  int closing; /* handles still to close */
  char out[UP_ADMIN_REPLY];
};

static void adm_closed(uv_handle_t *h)
{
  struct adm_conn *a = h->data;

  if (--a->closing == 0) {
    struct upstairs *up = a->up;
    if (a->prev)
      a->prev->next = a->next;
    else
      up->admin_head = a->next;
    if (a->next)
      a->next->prev = a->prev;
    up->admin_conns--;
    free(a);
  }
}

static void adm_close(struct adm_conn *a)
{
  if (a->closing)
    return;
  a->closing = 2;
  uv_close((uv_handle_t *) &a->pipe, adm_closed);
  uv_close((uv_handle_t *) &a->timer, adm_closed);
}

static void adm_written(uv_write_t *w, int status)
{
  (void) status;
  adm_close(w->data);
}

/* Send a->out (len bytes) and close once it is written. */
static void adm_send(struct adm_conn *a, size_t len)
{
  uv_buf_t b = uv_buf_init(a->out, (unsigned) len);

  a->answered = true;
  uv_read_stop((uv_stream_t *) &a->pipe);
  a->wr.data = a;
  if (uv_write(&a->wr, (uv_stream_t *) &a->pipe, &b, 1, adm_written) < 0)
    adm_close(a);
}

/* A refusal in the request's format (json unless it said text). */
static void adm_error(struct adm_conn *a, bool json, const char *why)
{
  int n;

  if (json)
    n = snprintf(a->out, sizeof a->out,
                 "{\"version\":1,\"ok\":false,\"error\":\"%s\"}\n", why);
  else
    n = snprintf(a->out, sizeof a->out, "error: %s\n", why);
  adm_send(a, n > 0 && (size_t) n < sizeof a->out ? (size_t) n
                                                    : sizeof a->out - 1);
}

/* Answer one whole request line (NUL-terminated, no newline). */
static void adm_request(struct adm_conn *a)
{
  char *words[8], why[160], *save = NULL, *p;
  unsigned n = 0;
  bool json = true;

  for (p = a->line; *p; p++)
    if (*p < 0x20 || *p > 0x7e) {
      adm_error(a, true, "the request is not one line of printable ASCII");
      return;
    }
  for (p = strtok_r(a->line, " ", &save); p && n < 8;
       p = strtok_r(NULL, " ", &save))
    words[n++] = p;
  if (n >= 2 && strcmp(words[1], "text") == 0)
    json = false;
  if (n < 3) {
    adm_error(a, json, "expected: VERSION FORMAT COMMAND [ARGS] "
              "(e.g. '1 json status')");
    return;
  }
  if (strcmp(words[0], "1") != 0) {
    adm_error(a, json, "admin protocol version not supported (this plugin "
              "speaks version 1)");
    return;
  }
  if (strcmp(words[1], "json") != 0 && strcmp(words[1], "text") != 0) {
    adm_error(a, true, "format must be json or text");
    return;
  }
  if (strcmp(words[2], "status") == 0) {
    size_t len;
    if (n != 3) {
      adm_error(a, json, "status takes no arguments");
      return;
    }
    len = up__status_render(a->up, json, a->out, sizeof a->out);
    if (len == 0) {
      adm_error(a, json, "status does not fit the reply");
      return;
    }
    adm_send(a, len);
    return;
  }
  snprintf(why, sizeof why, "unknown command '%.40s' (commands: status)",
           words[2]);
  adm_error(a, json, why);
}

static void adm_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
  struct adm_conn *a = h->data;

  (void) hint;
  *b = uv_buf_init(a->line + a->len, (unsigned) (UP_ADMIN_LINE - a->len));
}

static void adm_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
  struct adm_conn *a = s->data;
  char *nl;

  (void) b;
  if (a->answered || a->closing)
    return;
  if (nread < 0) {
    adm_close(a);
    return;
  }
  a->len += (size_t) nread;
  a->line[a->len] = '\0';
  nl = memchr(a->line, '\n', a->len);
  if (nl) {
    *nl = '\0';
    if (nl > a->line && nl[-1] == '\r')
      nl[-1] = '\0';
    adm_request(a);
  } else if (a->len >= UP_ADMIN_LINE) {
    adm_error(a, true, "request longer than 1024 bytes");
  }
}

static void adm_idle(uv_timer_t *t)
{
  struct adm_conn *a = t->data;

  if (!a->answered)
    adm_error(a, true, "no request line within 5 s");
}

static void adm_connection(uv_stream_t *srv, int status)
{
  struct upstairs *up = srv->data;
  struct adm_conn *a;

  if (status < 0)
    return;
  a = calloc(1, sizeof *a);
  if (!a)
    return; /* the pending connection stays in the backlog */
  a->up = up;
  uv_pipe_init(&up->loop, &a->pipe, 0);
  uv_timer_init(&up->loop, &a->timer);
  a->pipe.data = a->timer.data = a;
  a->next = up->admin_head;
  if (a->next)
    a->next->prev = a;
  up->admin_head = a;
  up->admin_conns++;
  if (uv_accept(srv, (uv_stream_t *) &a->pipe) < 0 ||
      up->admin_conns > UP_ADMIN_CONNS) {
    adm_close(a);
    return;
  }
  uv_timer_start(&a->timer, adm_idle, UP_ADMIN_IDLE_MS, 0);
  if (uv_read_start((uv_stream_t *) &a->pipe, adm_alloc, adm_read) < 0)
    adm_close(a);
}

/* A file at path that is a socket nobody answers on is a stale one: 0
 * (removed, or none there), or -1 with why set. */
static int adm_clear(const char *path, char *why, size_t len)
{
  struct stat st;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int fd, r;

  if (lstat(path, &st) < 0) {
    if (errno == ENOENT)
      return 0;
    snprintf(why, len, "%s", log_strerror(errno));
    return -1;
  }
  if (!S_ISSOCK(st.st_mode)) {
    snprintf(why, len, "exists and is not a socket");
    return -1;
  }
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(why, len, "socket: %s", log_strerror(errno));
    return -1;
  }
  r = connect(fd, (struct sockaddr *) &sa, sizeof sa);
  close(fd);
  if (r == 0) {
    snprintf(why, len, "another process is serving it");
    return -1;
  }
  if (unlink(path) < 0 && errno != ENOENT) {
    snprintf(why, len, "removing a stale socket: %s", log_strerror(errno));
    return -1;
  }
  return 0;
}

int up__admin_start(struct upstairs *up)
{
  const char *path = up->cfg.admin_path;
  char why[160];
  mode_t old;
  int r;

  if (!path[0])
    return 0;
  if (strlen(path) >= sizeof ((struct sockaddr_un *) 0)->sun_path) {
    snprintf(up->err, sizeof up->err, "admin=%.400s: path too long for a "
             "Unix socket", path);
    return -ENAMETOOLONG;
  }
  if (adm_clear(path, why, sizeof why) < 0) {
    snprintf(up->err, sizeof up->err, "admin=%.200s: %.200s", path, why);
    return -EEXIST;
  }
  if ((r = uv_pipe_init(&up->loop, &up->admin, 0)) < 0)
    goto fail;
  up->admin.data = up;
  up->admin_on = true;
  /* Mode 0600 from its creation: no moment at which others may connect. */
  old = umask(077);
  r = uv_pipe_bind(&up->admin, path);
  umask(old);
  if (r == 0 && chmod(path, 0600) < 0)
    r = -errno;
  if (r == 0)
    r = uv_listen((uv_stream_t *) &up->admin, 8, adm_connection);
  if (r == 0) {
    log_info("admin socket %s", path);
    return 0;
  }
fail:
  snprintf(up->err, sizeof up->err, "admin=%.200s: %s", path,
           uv_strerror(r));
  return r;
}

void up__admin_stop(struct upstairs *up)
{
  if (!up->admin_on)
    return;
  up->admin_on = false;
  uv_close((uv_handle_t *) &up->admin, NULL);
  unlink(up->cfg.admin_path);
  for (struct adm_conn *a = up->admin_head; a; a = a->next)
    adm_close(a);
}
