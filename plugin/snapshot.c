/* crucible-c upstairs: snapshot create, delete and list (snapshot.h).
 *
 * A create is one SNAPSHOT job to every active downstairs, patched on
 * the loop like a FLUSH (the next flush number, the generation), decided
 * by the FLUSH rule (every full replica answered, two succeeded), so the
 * snapshot holds exactly what the FLUSH at that point would have made
 * durable.  A live-repair target gets it too (the flush must reach every
 * replica a FLUSH reaches: repair.c tracks it as one), but it holds only
 * part of the volume, so its snapshot is deleted again right after.  A
 * refusal (EEXIST, ENOENT, EINVAL) is the command's error, not the
 * replica's: it faults nobody (jobs.c).  Before a create the replicas
 * are listed: a name any of them has is refused, so no snapshot is ever
 * taken at two points of the job stream under one name.
 */
#include "snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/log.h"
#include "upstairs_int.h"

bool up__snap_is_flush(const struct up_job *job)
{
  return job->type == PROTO_T_SNAPSHOT && job->frame[16] == PROTO_SNAP_CREATE;
}

void up__snap_patch(struct upstairs *up, struct up_job *job)
{
  proto_le64(job->frame + 8, job->id);
  if (!up__snap_is_flush(job))
    return;
  job->flush_no = up->flush_no++;
  job->flush_dirty = up->wr_since_flush;
  up->wr_since_flush = false;
  proto_le64(job->frame + 24, job->flush_no);
  proto_le64(job->frame + 32, up->gen);
}

void up__on_snapshots(struct upstairs *up, struct cl *c,
                      const struct proto_snapshots *s)
{
  size_t len = (size_t) s->n * PROTO_SNAP_ENTRY_LEN;
  uint8_t *buf = s->err ? NULL : malloc(len ? len : 1);
  if (buf)
    memcpy(buf, s->entries, len);
  up__on_reply_buf(up, c, s->job_id, PROTO_T_SNAPSHOT,
                   s->err ? s->err
                   : buf  ? 0
                          : ENOMEM,
                   buf, s->n);
}

/* One SNAPSHOT job (only: to these downstairs, 0 all active); its
 * outcome and each downstairs' part into res. */
static int snap_job(struct upstairs *up, uint8_t op, const char *name,
                    unsigned only, struct up_snap_result *res)
{
  struct up_job *job = up__job_new(PROTO_T_SNAPSHOT, 0, 0, PROTO_SNAPSHOT_LEN);
  struct proto_snapshot s = {.op = op};
  int r;

  if (!job)
    return -ENOMEM;
  if (op == PROTO_SNAP_CREATE) {
    s.time = (uint64_t) time(NULL);
    s.gen = up->gen; /* patched again on the loop */
    res->time = s.time;
  }
  if (op != PROTO_SNAP_LIST)
    snprintf(s.name, sizeof s.name, "%s", name);
  proto_put_snapshot(job->frame, &s);
  job->only = only;
  up__run_jobs(up, &job, 1, &r);
  if (!job)
    return r;
  if (op == PROTO_SNAP_CREATE) {
    res->flush_no = job->flush_no;
    res->gen = up->gen;
  }
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    struct up_snap_ds *d = &res->ds[i];
    d->sent = (job->sent >> i) & 1;
    d->ok = (job->seen >> i) & 1;
    d->repairing = (job->lr_mask >> i) & 1;
    d->err = (job->failed >> i) & 1 ? job->ds_err[i] : 0;
    d->n = 0;
    if (op == PROTO_SNAP_LIST && d->ok && job->reply_buf[i]) {
      d->n =
          job->reply[i].n < PROTO_MAX_SNAPS ? job->reply[i].n : PROTO_MAX_SNAPS;
      for (unsigned k = 0; k < d->n; k++)
        proto_snap_entry_get(job->reply_buf[i] + k * PROTO_SNAP_ENTRY_LEN,
                             &d->e[k]);
    }
  }
  up__job_put(job);
  return r;
}

/* A delete that removed the snapshot somewhere and found it nowhere
 * else (ENOENT: that replica never had it, or lost it before). */
static bool snap_deleted(const struct up_snap_result *res)
{
  bool any = false;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    const struct up_snap_ds *d = &res->ds[i];
    if (d->err && d->err != ENOENT)
      return false;
    any |= d->ok;
  }
  return any;
}

static bool snap_listed(const struct up_snap_result *res, const char *name,
                        unsigned *count)
{
  bool found = false;
  *count = 0;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    if (res->ds[i].n > *count)
      *count = res->ds[i].n;
    for (unsigned k = 0; k < res->ds[i].n; k++)
      found |= strcmp(res->ds[i].e[k].name, name) == 0;
  }
  return found;
}

int up__snapshot_run(struct upstairs *up, uint8_t op, const char *name,
                     struct up_snap_result *res)
{
  memset(res, 0, sizeof *res);
  int r = 0;
  if (up_snapshot_mode(up))
    r = -EROFS; /* a reader takes part in no job stream: ask the live one */
  else if (up__phase(up) != UP_PH_RUNNING)
    r = -EIO;
  else if (op != PROTO_SNAP_LIST && !proto_snap_stored_ok(name))
    r = -EINVAL;
  if (r == 0 && op == PROTO_SNAP_CREATE) {
    unsigned count;
    r = snap_job(up, PROTO_SNAP_LIST, NULL, 0, res);
    if (r == 0 && snap_listed(res, name, &count))
      r = -EEXIST;
    else if (r == 0 && count >= PROTO_MAX_SNAPS)
      r = -ENOSPC;
    memset(res, 0, sizeof *res);
  }
  if (r == 0)
    r = snap_job(up, op, name, 0, res);
  if (r < 0 && op == PROTO_SNAP_DELETE && snap_deleted(res))
    r = 0;
  if (op == PROTO_SNAP_CREATE) {
    unsigned lr = 0; /* answered or not: the delete follows it there */
    for (int i = 0; i < UP_DOWNSTAIRS; i++)
      if (res->ds[i].repairing && res->ds[i].sent)
        lr |= 1u << i;
    if (lr) {
      struct up_snap_result tmp;
      memset(&tmp, 0, sizeof tmp);
      int e = snap_job(up, PROTO_SNAP_DELETE, name, lr, &tmp);
      log_info("snapshot %s: not kept on live-repair target(s) %#x: %s", name,
               lr, e ? log_strerror(-e) : "deleted there");
      for (int i = 0; i < UP_DOWNSTAIRS; i++)
        if (lr & (1u << i))
          res->ds[i].ok = false;
    }
  }
  if (r == 0 && op == PROTO_SNAP_CREATE)
    log_info("snapshot %s created at flush %llu gen %llu", name,
             (unsigned long long) res->flush_no, (unsigned long long) res->gen);
  else if (r == 0 && op == PROTO_SNAP_DELETE)
    log_info("snapshot %s deleted", name);
  res->result = r;
  return r;
}

/* --- rendering (admin.c) ------------------------------------------------- */

/* The list merged by name: one row per snapshot any replica holds. */
struct snap_row {
  struct proto_snap_entry e; /* from the first replica holding it */
  unsigned holders;          /* bitmask */
  bool agree;                /* every holder has the same gen, flush, time */
};

static unsigned snap_rows(const struct up_snap_result *res,
                          struct snap_row *rows)
{
  unsigned n = 0;
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    for (unsigned k = 0; k < res->ds[i].n; k++) {
      const struct proto_snap_entry *e = &res->ds[i].e[k];
      unsigned r = 0;
      while (r < n && strcmp(rows[r].e.name, e->name) != 0)
        r++;
      if (r == n) {
        if (n == PROTO_MAX_SNAPS * UP_DOWNSTAIRS)
          continue;
        rows[n++] = (struct snap_row){.e = *e, .agree = true};
      } else if (rows[r].e.gen != e->gen || rows[r].e.flush != e->flush ||
                 rows[r].e.time != e->time) {
        rows[r].agree = false;
      }
      rows[r].holders |= 1u << i;
    }
  /* Oldest first (by flush: one counter for the volume). */
  for (unsigned a = 1; a < n; a++)
    for (unsigned b = a; b > 0 && rows[b - 1].e.flush > rows[b].e.flush; b--) {
      struct snap_row t = rows[b];
      rows[b] = rows[b - 1];
      rows[b - 1] = t;
    }
  return n;
}

static void render_ds(const struct up_snap_result *res, bool json,
                      struct up_jbuf *j)
{
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    const struct up_snap_ds *d = &res->ds[i];
    const char *st = d->ok          ? "ok"
                     : d->repairing ? "live-repair"
                     : d->err       ? log_strerror(d->err)
                     : d->sent      ? "no answer"
                                    : "not active";
    if (json)
      up__jb_printf(j, "%s{\"index\":%d,\"ok\":%s,\"state\":\"%s\"}",
                    i ? "," : "", i, d->ok ? "true" : "false", st);
    else if (!d->ok)
      up__jb_printf(j, "  downstairs %d: %s (it does not hold it)\n", i, st);
  }
}

void up__snap_render(struct upstairs *up, const struct up_snap_result *res,
                     uint8_t op, const char *name, bool json, struct up_jbuf *j)
{
  static struct snap_row rows[PROTO_MAX_SNAPS * UP_DOWNSTAIRS];
  unsigned held = 0;
  (void) up;
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    held += res->ds[i].ok;
  if (op != PROTO_SNAP_LIST) {
    const char *verb = op == PROTO_SNAP_CREATE ? "created" : "deleted";
    if (json) {
      up__jb_printf(j, ",\"name\":");
      up__jb_str(j, name);
      if (op == PROTO_SNAP_CREATE)
        up__jb_printf(j, ",\"flush\":%llu,\"gen\":%llu,\"time\":%llu",
                      (unsigned long long) res->flush_no,
                      (unsigned long long) res->gen,
                      (unsigned long long) res->time);
      up__jb_printf(j, ",\"downstairs\":[");
      render_ds(res, true, j);
      up__jb_printf(j, "]}\n");
    } else {
      up__jb_printf(j, "snapshot %s %s", name, verb);
      if (op == PROTO_SNAP_CREATE)
        up__jb_printf(j, " at flush %llu gen %llu",
                      (unsigned long long) res->flush_no,
                      (unsigned long long) res->gen);
      up__jb_printf(j, " on %u of %d downstairs\n", held, UP_DOWNSTAIRS);
      render_ds(res, false, j);
    }
    return;
  }
  unsigned n = snap_rows(res, rows);
  if (json)
    up__jb_printf(j, ",\"snapshots\":[");
  else
    up__jb_printf(j, "%-24s %-20s %6s %10s %12s %s\n", "NAME", "TIME", "GEN",
                  "FLUSH", "BYTES", "DOWNSTAIRS");
  for (unsigned r = 0; r < n; r++) {
    const struct snap_row *w = &rows[r];
    uint64_t bytes = 0;
    for (int i = 0; i < UP_DOWNSTAIRS; i++)
      for (unsigned k = 0; k < res->ds[i].n; k++)
        if (strcmp(res->ds[i].e[k].name, w->e.name) == 0 &&
            res->ds[i].e[k].bytes > bytes)
          bytes = res->ds[i].e[k].bytes;
    if (json) {
      up__jb_printf(j, "%s{\"name\":", r ? "," : "");
      up__jb_str(j, w->e.name);
      up__jb_printf(
          j,
          ",\"time\":%llu,\"gen\":%llu,\"flush\":%llu,"
          "\"bytes\":%llu,\"downstairs\":[",
          (unsigned long long) w->e.time, (unsigned long long) w->e.gen,
          (unsigned long long) w->e.flush, (unsigned long long) bytes);
      for (int i = 0, first = 1; i < UP_DOWNSTAIRS; i++)
        if (w->holders & (1u << i)) {
          up__jb_printf(j, "%s%d", first ? "" : ",", i);
          first = 0;
        }
      /* Complete: on two replicas at least that agree (what a quorum
       * read of it would need); fewer: an upstairs that died in the
       * middle of the create, or replicas away: delete it. */
      up__jb_printf(j, "],\"consistent\":%s,\"complete\":%s}",
                    w->agree ? "true" : "false",
                    w->agree && __builtin_popcount(w->holders) >= 2 ? "true"
                                                                    : "false");
    } else {
      char when[32] = "?";
      time_t t = (time_t) w->e.time;
      struct tm tm;
      if (gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
      char who[UP_DOWNSTAIRS + 1];
      for (int i = 0; i < UP_DOWNSTAIRS; i++)
        who[i] = (w->holders & (1u << i)) ? (char) ('0' + i) : '-';
      who[UP_DOWNSTAIRS] = '\0';
      up__jb_printf(
          j, "%-24s %-20s %6llu %10llu %12llu %s%s\n", w->e.name, when,
          (unsigned long long) w->e.gen, (unsigned long long) w->e.flush,
          (unsigned long long) bytes, who,
          !w->agree                            ? " (replicas disagree)"
          : __builtin_popcount(w->holders) < 2 ? " (incomplete: on one replica)"
                                               : "");
    }
  }
  if (json) {
    up__jb_printf(j, "],\"downstairs\":[");
    render_ds(res, true, j);
    up__jb_printf(j, "]}\n");
  }
}

static bool snap_have_same(const struct up_snap_have *a,
                           const struct up_snap_have *b)
{
  return a->kind == UP_SNAP_HAS && b->kind == UP_SNAP_HAS && a->gen == b->gen &&
         a->flush == b->flush && a->extent_count == b->extent_count;
}

unsigned up__snap_serve_rule(const struct up_snap_have have[UP_DOWNSTAIRS],
                             int *pick)
{
  unsigned best = 0, best_n = 0;
  *pick = -1;
  for (int i = 0; i < UP_DOWNSTAIRS; i++) {
    unsigned mask = 0, n = 0;
    for (int k = 0; k < UP_DOWNSTAIRS; k++)
      if (snap_have_same(&have[i], &have[k])) {
        mask |= 1u << k;
        n++;
      }
    if (n > best_n) {
      best = mask;
      best_n = n;
      *pick = i;
    }
  }
  if (best_n < 2) {
    *pick = -1;
    return 0;
  }
  return best;
}
