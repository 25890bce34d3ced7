/* crucible-c upstairs: the admin socket (admin=PATH; docs/DESIGN.md
 * "Admin socket").
 *
 * A Unix stream socket, mode 0600, served by one thread of its own, so
 * no admin client can ever hold up IO: it takes one connection at a
 * time, reads ONE request line (at most ADM_LINE_MAX bytes, within
 * ADM_IO_MS), writes ONE reply (within ADM_IO_MS) and closes.  A slow or
 * hostile client costs other admin clients at most 2 * ADM_IO_MS.
 *
 *   request: "crucible-admin 1 FORMAT COMMAND [ARGS...]\n"
 *            FORMAT json | text
 *   reply (json): one JSON object and "\n":
 *            {"version":1,"ok":true,"command":"...",...}
 *            {"version":1,"ok":false,"code":"...","error":"..."}
 *   reply (text): "ok\n" then human text, or "error: MESSAGE\n".
 * A request whose format cannot be read is answered in json.
 *
 * Commands: status; scrub start [--rate MB/s]; scrub status; extend
 * SIZE (answered once the extend is committed or failed: seconds);
 * snapshot create|delete NAME, snapshot list (snapshot.c runs them),
 * snapshot rollback NAME (rollback.c; answered when done).  The state
 * status reports belongs to the loop thread: the admin thread asks the
 * loop to render it (adm_async, up__admin_on_async) and waits at most
 * ADM_LOOP_MS.  up__admin_stop runs before the loop stops, so adm_async
 * is never sent after it is closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../common/log.h"
#include "../common/parse.h"
#include "upstairs_int.h"

#define ADM_VERSION 1
#define ADM_LINE_MAX 1024
#define ADM_IO_MS 2000
#define ADM_LOOP_MS 5000
#define ADM_OUT_MAX (64 * 1024)
#define ADM_ARGS 8

enum adm_want { ADM_NONE = 0, ADM_TEXT, ADM_JSON };

struct up_admin {
  int lfd;     /* listening socket */
  int wake[2]; /* pipe: stop the thread */
  pthread_t thr;
  bool started;
  bool stopped; /* up__admin_stop ran (the struct lives on until
                      * up__admin_free: the loop may still run
                      * up__admin_on_async until it is joined) */
  /* The loop's answer to a status request (under mu). */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  enum adm_want want;
  bool done;
  struct up_jbuf out;
};

void up__admin_note(struct upstairs *up, const char *fmt, ...)
{
  char *slot, ts[32];
  time_t now = time(NULL);
  struct tm tm;
  va_list ap;
  size_t n;

  gmtime_r(&now, &tm);
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ ", &tm);
  pthread_mutex_lock(&up->adm_err_lock);
  slot = up->adm_err[up->adm_nerr % UP_ERR_RING];
  n = (size_t) snprintf(slot, UP_ERR_LEN, "%s", ts);
  va_start(ap, fmt);
  if (n < UP_ERR_LEN)
    vsnprintf(slot + n, UP_ERR_LEN - n, fmt, ap);
  va_end(ap);
  up->adm_nerr++;
  pthread_mutex_unlock(&up->adm_err_lock);
}

/* Is path a socket nobody listens on (left by a crash)?  0 if nothing
 * is there or it was stale (removed); else -1 and up->err says why. */
static int adm_clear_stale(struct upstairs *up, const char *path)
{
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  struct stat st;
  int fd, r;

  if (lstat(path, &st) < 0) {
    if (errno == ENOENT)
      return 0;
    snprintf(up->err, sizeof up->err, "admin=%.400s: %s", path,
             log_strerror(errno));
    return -1;
  }
  if (!S_ISSOCK(st.st_mode)) {
    snprintf(up->err, sizeof up->err,
             "admin=%.400s: exists and is not a "
             "socket (not removed)",
             path);
    return -1;
  }
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(up->err, sizeof up->err, "socket: %s", log_strerror(errno));
    return -1;
  }
  r = connect(fd, (struct sockaddr *) &sa, sizeof sa);
  close(fd);
  if (r == 0) {
    snprintf(up->err, sizeof up->err,
             "admin=%.400s: in use (another "
             "process serves it)",
             path);
    return -1;
  }
  if (errno != ECONNREFUSED || unlink(path) < 0) {
    snprintf(up->err, sizeof up->err,
             "admin=%.400s: exists and cannot be "
             "replaced: %s",
             path, log_strerror(errno));
    return -1;
  }
  log_info("admin socket %s: removed a stale socket", path);
  return 0;
}

int up__admin_open(struct upstairs *up)
{
  const char *path = up->cfg.admin_path;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  struct up_admin *a;
  int fd;

  if (!path[0])
    return 0;
  if (strlen(path) >= sizeof sa.sun_path) {
    snprintf(up->err, sizeof up->err,
             "admin=%.400s: path longer than %zu "
             "bytes",
             path, sizeof sa.sun_path - 1);
    return -ENAMETOOLONG;
  }
  if (adm_clear_stale(up, path) < 0)
    return -EEXIST;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  /* Linux creates the socket file with the socket inode's mode: 0600
   * from the first instant, not after a chmod that races a connect. */
  if (fd < 0 || fchmod(fd, 0600) < 0 ||
      bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 ||
      chmod(path, 0600) < 0 || listen(fd, 8) < 0) {
    int e = errno;
    snprintf(up->err, sizeof up->err, "admin=%.400s: %s", path,
             log_strerror(e));
    if (fd >= 0)
      close(fd);
    return -e;
  }
  a = calloc(1, sizeof *a);
  if (a)
    a->out.b = malloc(ADM_OUT_MAX);
  if (!a || !a->out.b || pipe2(a->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
    if (a)
      free(a->out.b);
    free(a);
    close(fd);
    unlink(path);
    snprintf(up->err, sizeof up->err, "admin=%.400s: out of memory", path);
    return -ENOMEM;
  }
  a->out.cap = ADM_OUT_MAX;
  a->lfd = fd;
  pthread_mutex_init(&a->mu, NULL);
  {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
  }
  up->adm = a;
  return 0;
}

/* Milliseconds on CLOCK_MONOTONIC. */
static int64_t adm_now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read one request line into buf (NUL-terminated, no newline): 0, or
 * why not (a reply's error text). */
static const char *adm_read_line(int fd, char *buf, size_t cap)
{
  int64_t end = adm_now_ms() + ADM_IO_MS;
  size_t len = 0;

  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int64_t left = end - adm_now_ms();
    ssize_t n;
    char *nl;
    if (left <= 0)
      return "request not complete within 2 s";
    if (poll(&p, 1, (int) left) < 0 && errno != EINTR)
      return "poll failed";
    n = read(fd, buf + len, cap - 1 - len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n < 0)
      return "read failed";
    if (n == 0)
      return "connection closed before a whole request line";
    if (memchr(buf + len, '\0', (size_t) n))
      return "request is not text (NUL byte)";
    len += (size_t) n;
    buf[len] = '\0';
    if ((nl = strchr(buf, '\n'))) {
      *nl = '\0';
      if (nl > buf && nl[-1] == '\r')
        nl[-1] = '\0';
      return NULL;
    }
    if (len >= cap - 1)
      return "request line longer than 1024 bytes";
  }
}

/* Write all of buf within ADM_IO_MS (a client that does not read loses
 * its reply). */
static void adm_write_all(int fd, const char *buf, size_t len)
{
  int64_t end = adm_now_ms() + ADM_IO_MS;

  while (len > 0) {
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int64_t left = end - adm_now_ms();
    ssize_t n;
    if (left <= 0 || (poll(&p, 1, (int) left) < 0 && errno != EINTR))
      return;
    n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (n <= 0)
      return;
    buf += n;
    len -= (size_t) n;
  }
}

/* Half-close, then read and drop what the client still sends, for a
 * bounded time: closing with unread input would reset the connection
 * and the client could lose the reply (an over-long line, garbage). */
static void adm_linger(int fd)
{
  int64_t end = adm_now_ms() + 500;
  char junk[4096];
  size_t total = 0;

  shutdown(fd, SHUT_WR);
  while (total < 1024 * 1024) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int64_t left = end - adm_now_ms();
    ssize_t n;
    if (left <= 0 || poll(&p, 1, (int) left) <= 0)
      return;
    n = read(fd, junk, sizeof junk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    total += (size_t) n;
  }
}

/* A reply being built. */
struct adm_reply {
  struct up_jbuf j;
  bool json;
};

/* Set the reply to one error. */
static void adm_error(struct adm_reply *r, const char *code, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));
static void adm_error(struct adm_reply *r, const char *code, const char *fmt,
                      ...)
{
  char msg[300];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  r->j.len = 0;
  r->j.over = false;
  if (r->json) {
    up__jb_printf(&r->j,
                  "{\"version\":%d,\"ok\":false,\"code\":\"%s\","
                  "\"error\":",
                  ADM_VERSION, code);
    up__jb_str(&r->j, msg);
    up__jb_printf(&r->j, "}\n");
  } else {
    for (char *p = msg; *p; p++)
      if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
        *p = '?';
    up__jb_printf(&r->j, "error: %s\n", msg);
  }
}

/* Start an ok reply for command cmd. */
static void adm_ok(struct adm_reply *r, const char *cmd)
{
  if (r->json)
    up__jb_printf(&r->j, "{\"version\":%d,\"ok\":true,\"command\":\"%s\"",
                  ADM_VERSION, cmd);
  else
    up__jb_printf(&r->j, "ok\n");
}

/* Loop thread: render what the admin thread asked for. */
void up__admin_on_async(uv_async_t *h)
{
  struct upstairs *up = h->data;
  struct up_admin *a = up->adm;
  struct up_jbuf *j;

  up__extend_on_async(up); /* up_extend's request, admin or not */
  if (!a)
    return;
  pthread_mutex_lock(&a->mu);
  j = &a->out;
  if (a->want != ADM_NONE && !a->done) {
    j->len = 0;
    j->over = false;
    if (a->want == ADM_TEXT) {
      up__status_text(up, j);
    } else {
      uint64_t nerr;
      bool first = true;
      up__jb_printf(j, ",\"status\":");
      up__stats_render(up, j);
      up__jb_printf(j, ",\"errors\":[");
      pthread_mutex_lock(&up->adm_err_lock);
      nerr = up->adm_nerr;
      for (uint64_t k = nerr > UP_ERR_RING ? nerr - UP_ERR_RING : 0; k < nerr;
           k++) {
        up__jb_printf(j, "%s", first ? "" : ",");
        up__jb_str(j, up->adm_err[k % UP_ERR_RING]);
        first = false;
      }
      pthread_mutex_unlock(&up->adm_err_lock);
      up__jb_printf(j, "],\"extend\":");
      up__extend_json(up, j);
    }
    a->done = true;
    pthread_cond_broadcast(&a->cv);
  }
  pthread_mutex_unlock(&a->mu);
}

/* status: the loop renders it into a->out; append it to r. */
static void adm_status(struct upstairs *up, struct adm_reply *r)
{
  struct up_admin *a = up->adm;
  struct timespec dl;
  bool done;

  clock_gettime(CLOCK_MONOTONIC, &dl);
  dl.tv_sec += ADM_LOOP_MS / 1000;
  pthread_mutex_lock(&a->mu);
  a->want = r->json ? ADM_JSON : ADM_TEXT;
  a->done = false;
  uv_async_send(&up->adm_async);
  while (!a->done && pthread_cond_timedwait(&a->cv, &a->mu, &dl) != ETIMEDOUT)
    ;
  done = a->done;
  a->want = ADM_NONE;
  if (done && !a->out.over) {
    adm_ok(r, "status");
    up__jb_printf(&r->j, "%.*s", (int) a->out.len, a->out.b);
    if (r->json)
      up__jb_printf(&r->j, "}\n");
  }
  pthread_mutex_unlock(&a->mu);
  if (!done)
    adm_error(r, "failed", "the volume's loop did not answer within %d s",
              ADM_LOOP_MS / 1000);
  else if (a->out.over)
    adm_error(r, "failed", "status too large to render");
}

/* scrub start [--rate MB/s] | scrub status. */
static void adm_scrub(struct upstairs *up, struct adm_reply *r, char **arg,
                      int narg)
{
  uint64_t mbs = UP_SCRUB_DEFAULT_RATE;
  int e;

  if (narg >= 1 && strcmp(arg[0], "status") == 0 && narg == 1) {
    adm_ok(r, "scrub status");
    if (r->json) {
      up__jb_printf(&r->j, ",\"scrub\":");
      up__scrub_json(up, &r->j, true);
      up__jb_printf(&r->j, "}\n");
    } else {
      up__scrub_text(up, &r->j);
    }
    return;
  }
  if (narg < 1 || strcmp(arg[0], "start") != 0 || (narg != 1 && narg != 3) ||
      (narg == 3 && (strcmp(arg[1], "--rate") != 0 ||
                     parse_u64(arg[2], 100000, &mbs) < 0 || mbs == 0))) {
    adm_error(r, "usage",
              "usage: scrub start [--rate MB/s (1..100000)] | "
              "scrub status");
    return;
  }
  e = up__scrub_start(up, mbs * 1000000);
  if (e == -EBUSY)
    adm_error(r, "busy", "a scrub is already running (see scrub status)");
  else if (e == -EIO)
    adm_error(r, "failed", "the volume is not running");
  else if (e < 0)
    adm_error(r, "failed", "cannot start the scrub: %s", log_strerror(-e));
  else {
    adm_ok(r, "scrub start");
    if (r->json)
      up__jb_printf(&r->j, ",\"rate_mbs\":%llu}\n", (unsigned long long) mbs);
    else
      up__jb_printf(&r->j, "scrub started at %llu MB/s\n",
                    (unsigned long long) mbs);
  }
}

/* extend SIZE: grow the volume (waits until committed or failed). */
static void adm_extend(struct upstairs *up, struct adm_reply *r, char **arg,
                       int narg)
{
  struct up_extend_res res;
  uint64_t size;
  int e;

  if (narg != 1 || parse_size(arg[0], UINT64_MAX, &size) < 0) {
    adm_error(r, "usage",
              "usage: extend SIZE (bytes, or with a K M G T "
              "suffix: powers of 1024)");
    return;
  }
  e = up_extend(up, size, &res);
  if (e < 0) {
    adm_error(r,
              e == -EBUSY    ? "busy"
              : e == -EINVAL ? "usage"
                             : "failed",
              "%s", res.msg);
    return;
  }
  adm_ok(r, "extend");
  if (r->json)
    up__jb_printf(
        &r->j,
        ",\"requested\":%llu,\"old_size\":%llu,"
        "\"size\":%llu,\"ms\":%llu}\n",
        (unsigned long long) res.requested, (unsigned long long) res.old_size,
        (unsigned long long) res.new_size, (unsigned long long) res.took_ms);
  else if (res.new_size == res.old_size)
    up__jb_printf(&r->j, "the volume already has %llu bytes\n",
                  (unsigned long long) res.new_size);
  else
    up__jb_printf(
        &r->j, "extended from %llu to %llu bytes in %llu ms%s\n",
        (unsigned long long) res.old_size, (unsigned long long) res.new_size,
        (unsigned long long) res.took_ms,
        res.new_size != res.requested ? " (rounded up to a whole extent)" : "");
}

/* snapshot rollback NAME (rollback.c): answered when it is done. */
static void adm_rollback(struct upstairs *up, struct adm_reply *r,
                         const char *name)
{
  static struct up_rollback_res res; /* the admin thread's */
  int e = up__rollback(up, name, &res);
  if (e == -EROFS)
    adm_error(r, "failed",
              "serving snapshot %s read-only: snapshot commands go to the "
              "live volume's admin socket",
              up->cfg.snapshot);
  else if (e < 0)
    adm_error(r, e == -EBUSY ? "busy" : "failed", "rollback to %s: %s", name,
              res.msg[0] ? res.msg : log_strerror(-e));
  else {
    adm_ok(r, "snapshot rollback");
    if (r->json) {
      up__jb_printf(&r->j, ",\"name\":");
      up__jb_str(&r->j, name);
      up__jb_printf(
          &r->j,
          ",\"bytes\":%llu,\"compared\":%llu,\"written\":%llu,"
          "\"trimmed\":%llu,\"ms\":%llu}\n",
          (unsigned long long) res.bytes, (unsigned long long) res.compared,
          (unsigned long long) res.written, (unsigned long long) res.trimmed,
          (unsigned long long) res.ms);
    } else
      up__jb_printf(
          &r->j,
          "rolled back to %s: %llu bytes checked, %llu blocks "
          "compared, %llu blocks rewritten, %llu trimmed, paused "
          "%llu ms\n",
          name, (unsigned long long) res.bytes,
          (unsigned long long) res.compared, (unsigned long long) res.written,
          (unsigned long long) res.trimmed, (unsigned long long) res.ms);
  }
}

/* snapshot create NAME | snapshot delete NAME | snapshot list: one
 * SNAPSHOT job each (snapshot.c), answered when it is decided (a create
 * is a flush: well within the reply's time). */
static void adm_snapshot(struct upstairs *up, struct adm_reply *r, char **arg,
                         int narg)
{
  static struct up_snap_result res; /* the admin thread's, one at a time */
  uint8_t op = 0;
  if (narg == 2 && strcmp(arg[0], "create") == 0)
    op = PROTO_SNAP_CREATE;
  else if (narg == 2 && strcmp(arg[0], "delete") == 0)
    op = PROTO_SNAP_DELETE;
  else if (narg == 1 && strcmp(arg[0], "list") == 0)
    op = PROTO_SNAP_LIST;
  else if (narg == 2 && strcmp(arg[0], "rollback") == 0)
    op = PROTO_SNAP_OPEN; /* not a SNAPSHOT job: rollback.c */
  if (!op) {
    adm_error(r, "usage",
              "usage: snapshot create NAME | snapshot delete "
              "NAME | snapshot list | snapshot rollback NAME");
    return;
  }
  const char *name = narg == 2 ? arg[1] : "";
  /* A user's name (a leading '.' is a rollback marker's: rollback.c). */
  int e = op != PROTO_SNAP_LIST && !proto_snap_name_ok(name) ? -EINVAL : 0;
  if (e == 0 && op == PROTO_SNAP_OPEN) {
    adm_rollback(up, r, name);
    return;
  }
  if (e == 0)
    e = up__snapshot_run(up, op, name, &res);
  if (e == -EINVAL)
    adm_error(r, "usage",
              "bad snapshot name '%.64s' (1-63 of A-Z a-z 0-9 "
              ". _ -, not starting with '.')",
              name);
  else if (e == -EEXIST)
    adm_error(r, "failed", "snapshot '%s' exists", name);
  else if (e == -ENOENT)
    adm_error(r, "failed", "no snapshot '%s'", name);
  else if (e == -ENOSPC)
    adm_error(r, "failed", "too many snapshots (at most %d)", PROTO_MAX_SNAPS);
  else if (e == -EROFS)
    adm_error(r, "failed",
              "serving snapshot %s read-only: snapshot commands go to the "
              "live volume's admin socket",
              up->cfg.snapshot);
  else if (e == -EIO && up__phase(up) != UP_PH_RUNNING)
    adm_error(r, "failed", "the volume is not running");
  else if (e < 0)
    adm_error(r, "failed", "snapshot %s: %s", arg[0], log_strerror(-e));
  else {
    adm_ok(r, op == PROTO_SNAP_CREATE   ? "snapshot create"
              : op == PROTO_SNAP_DELETE ? "snapshot delete"
                                        : "snapshot list");
    up__snap_render(up, &res, op, name, r->json, &r->j);
  }
}

/* Parse and run one request line into r. */
static void adm_request(struct upstairs *up, char *line, struct adm_reply *r)
{
  char *tok[ADM_ARGS + 4], *save = NULL;
  int n = 0;

  for (char *p = line; *p; p++)
    if ((unsigned char) *p < 0x20 && *p != '\t') {
      adm_error(r, "usage", "request is not one line of text");
      return;
    }
  for (char *t = strtok_r(line, " \t", &save); t;
       t = strtok_r(NULL, " \t", &save)) {
    if (n == (int) (sizeof tok / sizeof tok[0])) {
      adm_error(r, "usage", "too many arguments");
      return;
    }
    tok[n++] = t;
  }
  if (n < 1 || strcmp(tok[0], "crucible-admin") != 0) {
    adm_error(r, "usage",
              "not a crucible-admin request (expected "
              "'crucible-admin %d json|text COMMAND [ARGS]')",
              ADM_VERSION);
    return;
  }
  if (n < 2 || strcmp(tok[1], "1") != 0) {
    adm_error(r, "version",
              "unsupported protocol version '%.20s' (this "
              "server speaks %d)",
              n < 2 ? "" : tok[1], ADM_VERSION);
    return;
  }
  if (n < 3 || (strcmp(tok[2], "json") != 0 && strcmp(tok[2], "text") != 0)) {
    adm_error(r, "usage", "format must be json or text");
    return;
  }
  r->json = strcmp(tok[2], "json") == 0;
  if (n < 4) {
    adm_error(r, "usage",
              "no command (status, scrub start, scrub status, "
              "extend SIZE, snapshot create|delete|list|rollback)");
    return;
  }
  if (strcmp(tok[3], "status") != 0 && up__rollback_active(up))
    adm_error(r, "busy",
              "a snapshot rollback is running (the log shows its "
              "progress)");
  else if (strcmp(tok[3], "status") == 0 && n == 4)
    adm_status(up, r);
  else if (strcmp(tok[3], "scrub") == 0)
    adm_scrub(up, r, tok + 4, n - 4);
  else if (strcmp(tok[3], "extend") == 0)
    adm_extend(up, r, tok + 4, n - 4);
  else if (strcmp(tok[3], "snapshot") == 0)
    adm_snapshot(up, r, tok + 4, n - 4);
  else
    adm_error(r, "unknown-command",
              "unknown command '%.40s' (status, scrub "
              "start, scrub status, extend SIZE, snapshot "
              "create|delete|list|rollback)",
              tok[3]);
}

/* One connection: one request, one reply, close. */
static void adm_serve(struct upstairs *up, int fd)
{
  char line[ADM_LINE_MAX + 1], buf[ADM_OUT_MAX + 512];
  struct adm_reply r = {.j = {.b = buf, .cap = sizeof buf}, .json = true};
  const char *why = adm_read_line(fd, line, sizeof line);

  if (why)
    adm_error(&r, "usage", "%s", why);
  else
    adm_request(up, line, &r);
  if (r.j.over)
    adm_error(&r, "failed", "reply too large");
  adm_write_all(fd, r.j.b, r.j.len);
  adm_linger(fd);
}

static void *adm_thread(void *arg)
{
  struct upstairs *up = arg;
  struct up_admin *a = up->adm;

  for (;;) {
    struct pollfd p[2] = {{.fd = a->lfd, .events = POLLIN},
                          {.fd = a->wake[0], .events = POLLIN}};
    int fd;
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      log_error("admin socket: poll: %s", log_strerror(errno));
      return NULL;
    }
    if (p[1].revents)
      return NULL;
    fd = accept4(a->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
      continue; /* EAGAIN, ECONNABORTED, EMFILE: the next poll */
    adm_serve(up, fd);
    close(fd);
  }
}

int up__admin_start(struct upstairs *up)
{
  struct up_admin *a = up->adm;
  int r;

  if (!a)
    return 0;
  r = -pthread_create(&a->thr, NULL, adm_thread, up);
  if (r < 0) {
    snprintf(up->err, sizeof up->err,
             "admin socket: cannot start its "
             "thread: %s",
             log_strerror(-r));
    return r;
  }
  a->started = true;
  log_info("admin socket %s: listening", up->cfg.admin_path);
  return 0;
}

void up__admin_stop(struct upstairs *up)
{
  struct up_admin *a = up->adm;

  if (!a || a->stopped)
    return;
  a->stopped = true;
  if (a->started) {
    ssize_t n = write(a->wake[1], "x", 1);
    (void) n; /* a full pipe wakes it as well */
    pthread_join(a->thr, NULL);
  }
  close(a->lfd);
  close(a->wake[0]);
  close(a->wake[1]);
  unlink(up->cfg.admin_path);
}

void up__admin_free(struct upstairs *up)
{
  struct up_admin *a = up->adm;

  if (!a)
    return;
  pthread_mutex_destroy(&a->mu);
  pthread_cond_destroy(&a->cv);
  free(a->out.b);
  free(a);
  up->adm = NULL;
}
