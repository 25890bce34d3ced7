/* crucible-sim: the processes under test (downstairs, nbdkit) and the stats file. */
#include "sim.h"

/* ---- processes -------------------------------------------------------- */

/* fork/exec argv with stdout and stderr appended to LOG; the child dies
 * with us (PR_SET_PDEATHSIG), so nothing outlives a crashed driver. */
pid_t spawn(struct sim *s, char *const argv[], const char *log)
{
  pid_t pid = fork();
  if (pid < 0)
    fail(s, "fork: %s", strerror(errno));
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int nul = open("/dev/null", O_RDONLY);
    if (fd < 0 || nul < 0)
      _exit(126);
    dup2(nul, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], argv);
    _exit(127);
  }
  return pid;
}

/* Wait up to SECS for pid to exit; its wait status, or -1 on timeout. */
int wait_exit(pid_t pid, double secs)
{
  double end = now() + secs;
  int st;
  do {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return st;
    if (r < 0)
      return 0;
    usleep(10000);
  } while (now() < end);
  return -1;
}

/* Signal p and wait (bounded) for it to exit; returns its wait status,
 * or -1 if it had to be SIGKILLed. */
int proc_stop(struct proc *p, int sig, double secs)
{
  if (p->pid <= 0)
    return 0;
  kill(p->pid, sig);
  if (p->stopped)
    kill(p->pid, SIGCONT);
  int st = wait_exit(p->pid, secs);
  if (st < 0) {
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
  }
  p->pid = 0;
  p->stopped = false;
  return st;
}

/* Run argv to completion (bounded), output to LOG; its exit status. */
int run_cmd(struct sim *s, char *const argv[], const char *log, double secs)
{
  pid_t pid = spawn(s, argv, log);
  int st = wait_exit(pid, secs);
  if (st < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int free_port(void)
{
  struct sockaddr_in a = {.sin_family = AF_INET};
  socklen_t alen = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && bind(fd, (struct sockaddr *) &a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *) &a, &alen) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

/* True if something listens on 127.0.0.1:port (from /proc/net/tcp, so
 * checking opens no connection the downstairs would log). */
bool listening(int port)
{
  char want[32], line[256];
  bool found = false;
  FILE *f = fopen("/proc/net/tcp", "r");
  if (!f)
    return false;
  snprintf(want, sizeof want, "0100007F:%04X", port);
  while (!found && fgets(line, sizeof line, f)) {
    char local[64], remote[64];
    unsigned st;
    if (sscanf(line, " %*d: %63s %63s %x", local, remote, &st) == 3 &&
        strcmp(local, want) == 0 && st == 0x0A)
      found = true;
  }
  fclose(f);
  return found;
}

void ds_log(struct sim *s, int i, char *buf, size_t n)
{
  snprintf(buf, n, "%s/ds%d.log", s->o.dir, i + 1);
}

/* Start downstairs i on its port and wait until it listens. */
void ds_start(struct sim *s, int i)
{
  char port[16], log[600];
  snprintf(port, sizeof port, "%d", s->port[i]);
  ds_log(s, i, log, sizeof log);
  char *argv[] = {
      (char *) s->o.ds_bin, "run", "-d", s->ds_dir[i], "-p", port, "-a",
      "127.0.0.1",          NULL};
  s->ds[i].pid = spawn(s, argv, log);
  s->ds[i].stopped = false;
  double end = now() + START_SECS;
  while (!listening(s->port[i])) {
    if (waitpid(s->ds[i].pid, NULL, WNOHANG) == s->ds[i].pid) {
      s->ds[i].pid = 0;
      tail_file(log, 10);
      fail(s, "downstairs ds%d exited at start", i + 1);
    }
    if (now() > end)
      fail(s, "downstairs ds%d not listening on %d after %d s", i + 1,
           s->port[i], START_SECS);
    usleep(20000);
  }
  event(s, "ds%d started pid %d port %d", i + 1, s->ds[i].pid, s->port[i]);
}

/* Create the three regions, the key file and the ports. */
void setup_volume(struct sim *s)
{
  char uuid[40], ec[16], log[600], cmd[64];
  uint8_t key[32];
  char key64[BASE64_ENCODED_LEN(32)];
  uint64_t x = s->o.seed ^ 0xc0ffee;
  uint64_t a = splitmix(&x), b = splitmix(&x);
  snprintf(uuid, sizeof uuid, "%08x-%04x-4%03x-8%03x-%012" PRIx64,
           (unsigned) (a >> 32), (unsigned) (a >> 16) & 0xffff,
           (unsigned) a & 0xfff, (unsigned) (b >> 52) & 0xfff,
           (uint64_t) (b & 0xffffffffffffull));
  for (int i = 0; i < 32; i += 8) {
    uint64_t k = splitmix(&x);
    memcpy(key + i, &k, 8);
  }
  base64_encode(key, sizeof key, key64);
  snprintf(s->key, sizeof s->key, "%s/key", s->o.dir);
  int fd = open(s->key, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || write(fd, key64, strlen(key64)) != (ssize_t) strlen(key64))
    fail(s, "%s: %s", s->key, strerror(errno));
  close(fd);
  snprintf(ec, sizeof ec, "%u", s->o.extent_count);
  snprintf(log, sizeof log, "%s/create.log", s->o.dir);
  for (int i = 0; i < 3; i++) {
    snprintf(s->ds_dir[i], sizeof s->ds_dir[i], "%s/ds%d", s->o.dir, i + 1);
    char *argv[] = {
        (char *) s->o.ds_bin, "create",         "-d", s->ds_dir[i], "-u", uuid,
        "--encrypted",        "--extent-count", ec,   NULL};
    if (run_cmd(s, argv, log, 120) != 0) {
      tail_file(log, 5);
      fail(s, "create %s failed", s->ds_dir[i]);
    }
    s->port[i] = free_port();
    if (s->port[i] < 0)
      fail(s, "no free port");
  }
  snprintf(cmd, sizeof cmd, "uuid %s", uuid);
  event(s, "%s, ports %d %d %d", cmd, s->port[0], s->port[1], s->port[2]);
}

/* Read extent size (blocks) from ds1's region.json; check block size. */
void read_geometry(struct sim *s)
{
  char path[600], buf[4096];
  snprintf(path, sizeof path, "%s/region.json", s->ds_dir[0]);
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = 0;
  const char *bs = strstr(buf, "\"block_size\":");
  const char *es = strstr(buf, "\"extent_size\":{\"value\":");
  if (!bs || !es || strtoull(bs + 13, NULL, 10) != BLOCK)
    fail(s, "%s: no block_size 4096 / extent_size: %s", path, buf);
  s->extent_bytes = strtoull(es + 23, NULL, 10) * BLOCK;
  s->size = s->extent_bytes * s->o.extent_count;
}

uint32_t region_count(struct sim *s, int i)
{
  char path[600], buf[4096];
  snprintf(path, sizeof path, "%s/region.json", s->ds_dir[i]);
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = 0;
  const char *c = strstr(buf, "\"extent_count\":");
  if (!c)
    fail(s, "%s: no extent_count: %s", path, buf);
  return (uint32_t) strtoul(c + 15, NULL, 10);
}

/* ---- stats file ------------------------------------------------------- */

/* Read phase and the three downstairs states; false if unreadable. */
bool read_stats(struct sim *s, char phase[32], char st[3][32])
{
  char buf[16384];
  FILE *f = fopen(s->stats, "r");
  if (!f)
    return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strstr(buf, "\"phase\":\"");
  const char *q = strstr(buf, "\"downstairs\"");
  if (!p || !q)
    return false;
  sscanf(p + 9, "%31[^\"]", phase);
  for (int i = 0; i < 3; i++) {
    q = strstr(q, "\"state\":\"");
    if (!q)
      return false;
    sscanf(q + 9, "%31[^\"]", st[i]);
    q += 9;
  }
  return true;
}

/* Wait until phase running and all three active (in-flight ops go on,
 * no new ones). */
void wait_healthy(struct sim *s)
{
  char phase[32] = "", st[3][32] = {"", "", ""};
  double end = now() + HEALTH_SECS, t0 = now();
  for (;;) {
    if (read_stats(s, phase, st) && strcmp(phase, "running") == 0 &&
        !strcmp(st[0], "active") && !strcmp(st[1], "active") &&
        !strcmp(st[2], "active"))
      break;
    if (now() > end)
      fail(s,
           "volume not healthy after %d s: phase %s, ds1 %s, ds2 %s, "
           "ds3 %s",
           HEALTH_SECS, phase, st[0], st[1], st[2]);
    pump(s, 50);
  }
  if (now() - t0 > 1)
    event(s, "waited %.1f s for all active", now() - t0);
}

/* The "repair" object of downstairs i in the stats file, as text (for
 * the log; whatever fields this build reports), or "?". */
void read_repair(struct sim *s, int i, char *out, size_t n)
{
  char buf[16384];
  FILE *f = fopen(s->stats, "r");
  size_t len = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  const char *p = buf, *e;
  if (f)
    fclose(f);
  buf[len] = 0;
  snprintf(out, n, "?");
  for (int k = 0; k <= i && p; k++)
    if ((p = strstr(p, "\"repair\":{")))
      p += 9;
  if (p && (e = strchr(p, '}')))
    snprintf(out, n, "%.*s", (int) (e - p + 1), p);
}

/* Wait until the stats file shows downstairs i not active. */
void wait_not_active(struct sim *s, int i, double secs)
{
  char phase[32] = "", st[3][32] = {"", "", ""};
  double end = now() + secs;
  while (!read_stats(s, phase, st) || strcmp(st[i], "active") == 0) {
    if (now() > end)
      fail(s, "ds%d still active %.0f s after it was killed or stopped", i + 1,
           secs);
    pump(s, 50);
  }
  event(s, "ds%d now %s", i + 1, st[i]);
}
