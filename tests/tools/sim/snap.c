/* crucible-sim: the snapshot fault class (sim.h): snapshots of the live
 * volume and rollbacks to them, through crucible-admin, checked against
 * the model.  The model of a snapshot is a copy of M taken when its
 * create succeeded with nothing in flight and everything flushed (so M
 * is exactly what it holds); a rollback makes M that copy grown with
 * zeroes to the volume's size, and D = M (it ends with a flush). */
#include "sim.h"

/* Does path hold needle at or after byte off? */
static bool log_has_since(const char *path, long off, const char *needle)
{
  FILE *f = fopen(path, "r");
  char line[1024];
  bool found = false;
  if (!f)
    return false;
  if (fseek(f, off, SEEK_SET) == 0)
    while (!found && fgets(line, sizeof line, f))
      found = strstr(line, needle) != NULL;
  fclose(f);
  return found;
}

static long file_size(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 ? (long) st.st_size : 0;
}

/* crucible-admin ARGS... on nbdkit's admin socket; exit status. */
static int admin(struct sim *s, const char *a1, const char *a2, const char *a3)
{
  char log[600];
  snprintf(log, sizeof log, "%s/admin.log", s->o.dir);
  char *argv[] = {s->o.admin_bin, "-s",        s->asock, (char *) a1,
                  (char *) a2,    (char *) a3, NULL};
  int st = run_cmd(s, argv, log, 180);
  if (st != 0)
    tail_file(log, 5);
  return st;
}

/* Take snapshot simN of the volume now (nothing in flight, flushed). */
static void snap_take(struct sim *s)
{
  char name[32];
  if (s->snap_have) {
    if (admin(s, "snapshot", "delete", s->snap_name) != 0)
      fail(s, "snapshot delete %s failed", s->snap_name);
    event(s, "snapshot %s deleted", s->snap_name);
  }
  snprintf(name, sizeof name, "sim%u", ++s->snap_n);
  if (admin(s, "snapshot", "create", name) != 0)
    fail(s, "snapshot create %s failed", name);
  snprintf(s->snap_name, sizeof s->snap_name, "%s", name);
  model_copy(&s->S, &s->M);
  s->snap_have = true;
  event(s, "snapshot %s created at op %" PRIu64 " (%" PRIu64 " bytes)", name,
        s->seq, s->size);
}

/* The volume is now snapshot S: M, D and L say so. */
static void snap_adopt(struct sim *s)
{
  model_copy(&s->M, &s->S);
  model_grow(&s->M, s->size);
  model_copy(&s->D, &s->M);
  ulog_clear(&s->L);
  s->snap_rollbacks++;
}

/* Roll back to S; crash: kill -9 nbdkit 0-1000 ms after the command
 * was sent (a rollback of this volume takes about a second or more:
 * before, during or after it) and restart it: the volume is S if the
 * first nbdkit finished it or the second one finished it at start (its
 * log says which), else unchanged. */
static void snap_rollback(struct sim *s, bool crash)
{
  event(s, "fault snapshot rollback to %s%s", s->snap_name,
        crash ? ", nbdkit killed -9 meanwhile" : "");
  if (!crash) {
    if (admin(s, "snapshot", "rollback", s->snap_name) != 0)
      fail(s, "snapshot rollback %s failed", s->snap_name);
    snap_adopt(s);
    return;
  }
  char log[600], done[96], resumed[96];
  snprintf(log, sizeof log, "%s/admin.log", s->o.dir);
  snprintf(done, sizeof done, "rollback to %s done", s->snap_name);
  snprintf(resumed, sizeof resumed, "rollback to %s was interrupted",
           s->snap_name);
  char *argv[] = {s->o.admin_bin, "-s",         s->asock, "snapshot",
                  "rollback",     s->snap_name, NULL};
  long off = file_size(s->nblog);
  admin_crash(s, argv, log, 1000000);
  bool finished = log_has_since(s->nblog, off, done);
  long off2 = file_size(s->nblog);
  nbdkit_start(s, false);
  bool resumed_now = log_has_since(s->nblog, off2, resumed);
  event(s, "after the crash: the rollback %s",
        finished      ? "had finished"
        : resumed_now ? "was finished at start"
                      : "had not begun");
  if (finished || resumed_now)
    snap_adopt(s);
  if (resumed_now)
    s->snap_resumed++;
  flush_all(s);
  model_copy(&s->D, &s->M);
  ulog_clear(&s->L);
}

/* Serve snapshot S read-only beside the live volume (a second nbdkit,
 * snapshot=NAME, which fences nobody) and read all of it: its size and
 * every byte must be S's, whatever the volume went through since. */
static void snap_read(struct sim *s)
{
  char sock[600], log[600], ds[3][64], key[600], snap[64], tmo[32];
  snprintf(sock, sizeof sock, "%s/snap.sock", s->o.dir);
  snprintf(log, sizeof log, "%s/nbdkit-snap.log", s->o.dir);
  for (int i = 0; i < 3; i++)
    snprintf(ds[i], sizeof ds[i], "downstairs=127.0.0.1:%d", s->port[i]);
  snprintf(key, sizeof key, "key=+%s", s->key);
  snprintf(snap, sizeof snap, "snapshot=%s", s->snap_name);
  snprintf(tmo, sizeof tmo, "timeout=%u", s->o.timeout);
  char *argv[] = {"nbdkit", "-f",  "-U",  sock, (char *) s->o.plugin,
                  ds[0],    ds[1], ds[2], key,  snap,
                  tmo,      NULL};
  event(s, "fault snapshot read of %s", s->snap_name);
  unlink(sock);
  struct proc p = {.pid = spawn(s, argv, log)};
  struct nbd_handle *h = NULL;
  for (int tries = 0; h == NULL; tries++) {
    if (wait_exit(p.pid, 0.1) >= 0) {
      p.pid = 0;
      tail_file(log, 5);
      fail(s, "the snapshot=%s nbdkit exited at start", s->snap_name);
    }
    if (tries > 600)
      fail(s, "the snapshot=%s nbdkit did not serve in 60 s", s->snap_name);
    h = nbd_create();
    if (h == NULL)
      fail(s, "nbd_create: %s", nbd_get_error());
    if (nbd_connect_unix(h, sock) < 0) {
      nbd_close(h);
      h = NULL;
    }
  }
  uint64_t size = (uint64_t) s->S.nsec * SECTOR;
  int64_t got = nbd_get_size(h);
  if (got < 0 || (uint64_t) got != size)
    fail(s, "snapshot %s serves %" PRId64 " bytes, its model %" PRIu64,
         s->snap_name, got, size);
  size_t chunk = 4u << 20;
  uint8_t *buf = xmalloc(chunk), *want = xmalloc(chunk);
  for (uint64_t off = 0; off < size; off += chunk) {
    size_t len = (size_t) min64(chunk, size - off);
    if (nbd_pread(h, buf, len, off, 0) < 0)
      fail(s, "snapshot %s: read at %" PRIu64 ": %s", s->snap_name, off,
           nbd_get_error());
    model_expect(&s->S, off, len, want);
    if (memcmp(buf, want, len) != 0) {
      size_t i = 0;
      while (buf[i] == want[i])
        i++;
      fail(s,
           "MISMATCH: snapshot %s at volume offset %" PRIu64 " (block %" PRIu64
           ") differs from its model (wid %u)",
           s->snap_name, off + i, (off + i) / BLOCK,
           model_wid_at(&s->S, off + i));
    }
  }
  free(buf);
  free(want);
  nbd_shutdown(h, 0);
  nbd_close(h);
  int st = proc_stop(&p, SIGTERM, 30);
  if (st != 0) {
    tail_file(log, 5);
    fail(s, "the snapshot=%s nbdkit exited with status %d", s->snap_name, st);
  }
  s->snap_reads++;
  event(s, "snapshot %s read whole: %" PRIu64 " bytes as its model",
        s->snap_name, size);
}

void snap_fault(struct sim *s)
{
  flush_all(s); /* M is then what a snapshot holds; L is durable */
  model_copy(&s->D, &s->M);
  ulog_clear(&s->L);
  uint64_t pick = rng_range(&s->rfault, 0, 4);
  if (!s->snap_have || pick == 0)
    snap_take(s);
  else if (pick == 4)
    snap_read(s);
  else
    snap_rollback(s, pick == 3);
}
