/* crucible-c upstairs: snapshot rollback (rollback.h; docs/DESIGN.md
 * "Snapshot rollback").
 *
 * The volume is put back to snapshot NAME by rewriting, through the
 * normal job path, every block whose bytes differ from NAME's: a block
 * NAME holds with data is written with that data, one NAME holds as
 * zeroes (or beyond NAME's size: an extend since) is trimmed.  These are
 * new writes (this generation, new versions) and a new flush, so every
 * rule that guards the volume holds as it is: versions only grow (the
 * freshness check, the version cache, reconciliation's newest version),
 * flush numbers only grow (state= sees progress, not a rollback, and
 * needs no exception), a replica away meanwhile is live-repaired at its
 * return like after any writes.  Only what changed since NAME moves;
 * the rest is compared (read from both) and left.  NAME is read through
 * a second upstairs in this process serving it read-only (snapserve.c),
 * so its reads are checked like every snapshot read.
 *
 * Atomic for the guest: the pass holds the range lock of the whole
 * volume (io.c) from before its first read to after its flush, so a
 * guest request runs wholly before or after it (and waits meanwhile, up
 * to the range lock's deadline).
 *
 * Kill -9 of any process at any moment: before its first write the pass
 * creates the marker snapshot ".NAME" (a name no user can give; it also
 * holds the volume as it was), and only after its flush deletes it.
 * up_start, once running and before the first guest request, finishes
 * the rollback any marker names (the newest, by flush) and deletes every
 * marker: the same pass, which rewrites whatever still differs.  A pass
 * that fails after its first write halts the volume (every request
 * -EIO, one log line) rather than serve a half-rolled-back volume; the
 * next start finishes it.
 */
#include "rollback.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/log.h"
#include "upstairs_int.h"

#define RB_CHUNK (4u * 1024 * 1024) /* compared per step */

static uint64_t now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t) t.tv_sec * 1000 + (uint64_t) t.tv_nsec / 1000000;
}

bool up__rollback_active(struct upstairs *up)
{
  return __atomic_load_n(&up->rb_active, __ATOMIC_SEQ_CST) != 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return false;
  return true;
}

/* A second upstairs serving snapshot name read-only, with this one's
 * downstairs, key and auth key. */
static int rb_reader(struct upstairs *up, const char *name,
                     struct upstairs **out, struct up_rollback_res *res)
{
  struct up_config c = up->cfg;
  struct upstairs *rd = NULL;
  int r;

  c.state_path[0] = c.stats_path[0] = c.admin_path[0] = '\0';
  c.gen = 0;
  c.accept_rollback = false;
  snprintf(c.snapshot, sizeof c.snapshot, "%s", name);
  if (up->key)
    crypt_key_copy(up->key, c.key);
  r = up_new(&c, &rd); /* wipes c.key */
  auth_key_wipe(&c.auth);
  if (r < 0) {
    snprintf(res->msg, sizeof res->msg, "cannot set up a reader: %s",
             log_strerror(-r));
    return r;
  }
  if ((r = up_start(rd)) < 0) {
    snprintf(res->msg, sizeof res->msg, "cannot read snapshot %s: %s", name,
             up_error(rd));
    up_free(rd);
    return r;
  }
  *out = rd;
  return 0;
}

/* Rewrite blocks [lba, lba+n) of the live volume where they differ from
 * the snapshot's bytes in sb (lb: the live bytes). */
static int rb_apply(struct upstairs *up, uint64_t lba, uint64_t n,
                    const uint8_t *sb, const uint8_t *lb,
                    struct up_rollback_res *res)
{
  size_t bs = up->region.block_size;
  int r = 0;

  for (uint64_t i = 0; i < n && r == 0;) {
    if (memcmp(sb + i * bs, lb + i * bs, bs) == 0) {
      i++;
      continue;
    }
    bool zero = all_zero(sb + i * bs, bs);
    uint64_t j = i + 1;
    while (j < n && memcmp(sb + j * bs, lb + j * bs, bs) != 0 &&
           all_zero(sb + j * bs, bs) == zero)
      j++;
    if (zero) {
      r = up__io_blocks(up, PROTO_T_TRIM, lba + i, j - i, NULL, NULL);
      res->trimmed += j - i;
    } else {
      r = up__io_blocks(up, PROTO_T_WRITE, lba + i, j - i, sb + i * bs, NULL);
      res->written += j - i;
    }
    i = j;
  }
  return r;
}

uint64_t up__rollback_agree(const uint64_t v[], unsigned mask)
{
  uint64_t got = UP_RB_UNKNOWN;
  if (__builtin_popcount(mask) < 2)
    return UP_RB_UNKNOWN;
  for (int d = 0; d < UP_DOWNSTAIRS; d++)
    if (mask & (1u << d)) {
      if (got != UP_RB_UNKNOWN && v[d] != got)
        return UP_RB_UNKNOWN;
      got = v[d];
    }
  return got;
}

/* Per block of [lba, lba+n) the version its replicas of u hold (newest
 * written or trimmed, from the metadata: READ CTX_ONLY|VERSIONS to every
 * full replica), where at least two answered and all that answered
 * agree (up__rollback_agree), else UP_RB_UNKNOWN.  0, or -errno. */
static int rb_versions(struct upstairs *u, uint64_t lba, uint32_t n,
                       uint64_t *ver)
{
  struct up_job *job = up__job_new(PROTO_T_READ, lba, n, PROTO_IO_HDR_LEN);
  unsigned mask;
  int res;

  if (!job)
    return -ENOMEM;
  memset(job->frame, 0, PROTO_IO_HDR_LEN);
  job->ctx_only = job->versions = true;
  job->only = (1u << UP_DOWNSTAIRS) - 1; /* the loop sends to the active */
  up__run_jobs(u, &job, 1, &res);
  if (!job)
    return res < 0 ? res : -EIO;
  pthread_mutex_lock(&u->lock);
  mask = job->seen & job->sent & ~job->lr_mask & ~job->failed;
  pthread_mutex_unlock(&u->lock);
  for (uint32_t i = 0; i < n; i++) {
    uint64_t v[UP_DOWNSTAIRS] = {0};
    unsigned m = 0;
    for (int d = 0; d < UP_DOWNSTAIRS; d++) {
      struct proto_ctx c;
      if (!(mask & (1u << d)) || job->reply[d].n != n)
        continue;
      proto_ctx_get(job->reply[d].ctxs + (size_t) i * PROTO_CTX_LEN, &c);
      v[d] = c.version;
      m |= 1u << d;
    }
    ver[i] = up__rollback_agree(v, m);
  }
  up__job_put(job);
  return 0;
}

/* Blocks [lba, lba+n) by their bytes: read from rd (zeroes past its
 * sblocks) and live, rewrite what differs. */
static int rb_blocks(struct upstairs *up, struct upstairs *rd, uint64_t lba,
                     uint64_t n, uint64_t sblocks, uint8_t *sb, uint8_t *lb,
                     const char *name, struct up_rollback_res *res)
{
  size_t bs = up->region.block_size;
  uint64_t sn = lba >= sblocks ? 0 : sblocks - lba < n ? sblocks - lba : n;
  int r = 0;

  if (sn && (r = up_read(rd, sb, (uint32_t) (sn * bs), lba * bs)) < 0) {
    snprintf(res->msg, sizeof res->msg,
             "cannot read snapshot %s at block %llu: %s", name,
             (unsigned long long) lba, log_strerror(-r));
    return r;
  }
  memset(sb + sn * bs, 0, (n - sn) * bs);
  r = up__io_blocks(up, PROTO_T_READ, lba, n, NULL, lb);
  if (r == 0)
    r = rb_apply(up, lba, n, sb, lb, res);
  if (r < 0 && !res->msg[0])
    snprintf(res->msg, sizeof res->msg, "cannot roll back block %llu: %s",
             (unsigned long long) lba, log_strerror(-r));
  return r;
}

/* One chunk: the blocks whose versions agree on both sides (the same
 * write or trim, or never written: the same bytes) are left; each run
 * of the others goes through rb_blocks.  Two replicas agreeing on each
 * side is what skipping a block rests on: one lying replica can only
 * make a block compared by its bytes. */
static int rb_chunk(struct upstairs *up, struct upstairs *rd, uint64_t lba,
                    uint32_t n, uint64_t sblocks, uint64_t *lv, uint64_t *sv,
                    uint8_t *sb, uint8_t *lb, const char *name,
                    struct up_rollback_res *res)
{
  uint32_t sn = lba >= sblocks      ? 0
                : sblocks - lba < n ? (uint32_t) (sblocks - lba)
                                    : n;
  int r = rb_versions(up, lba, n, lv);

  if (r == 0 && sn)
    r = rb_versions(rd, lba, sn, sv);
  for (uint32_t i = sn; r == 0 && i < n; i++)
    sv[i] = 0; /* past the snapshot: never written there */
  if (r < 0) {
    snprintf(res->msg, sizeof res->msg,
             "cannot read the versions at block %llu: %s",
             (unsigned long long) lba, log_strerror(-r));
    return r;
  }
  for (uint32_t i = 0; i < n && r == 0;) {
    if (lv[i] != UP_RB_UNKNOWN && lv[i] == sv[i]) {
      i++;
      continue;
    }
    uint32_t j = i + 1;
    while (j < n && (lv[j] == UP_RB_UNKNOWN || lv[j] != sv[j]))
      j++;
    res->compared += j - i;
    r = rb_blocks(up, rd, lba + i, j - i, sblocks, sb, lb, name, res);
    i = j;
  }
  return r;
}

/* The pass: compare every block with rd's, rewrite what differs, flush.
 * *changed: a write or trim was sent. */
static int rb_pass(struct upstairs *up, struct upstairs *rd, const char *name,
                   struct up_rollback_res *res, bool *changed)
{
  size_t bs = up->region.block_size;
  uint64_t blocks = up_size(up) / bs, sblocks = up_size(rd) / bs;
  uint64_t step = RB_CHUNK / bs, next_pct = 10;
  uint8_t *sb = malloc(RB_CHUNK), *lb = malloc(RB_CHUNK);
  uint64_t *lv = malloc(step * sizeof *lv), *sv = malloc(step * sizeof *sv);
  int r = sb && lb && lv && sv ? 0 : -ENOMEM;

  res->bytes = blocks * bs;
  for (uint64_t lba = 0; lba < blocks && r == 0; lba += step) {
    uint64_t n = blocks - lba < step ? blocks - lba : step;
    uint64_t before = res->written + res->trimmed;
    r = rb_chunk(up, rd, lba, (uint32_t) n, sblocks, lv, sv, sb, lb, name, res);
    *changed |= res->written + res->trimmed != before;
    if (r == 0 && (lba + n) * 100 >= next_pct * blocks && lba + n < blocks) {
      log_notice("rollback to %s: %llu%% compared, %llu blocks rewritten, "
                 "%llu trimmed",
                 name, (unsigned long long) ((lba + n) * 100 / blocks),
                 (unsigned long long) res->written,
                 (unsigned long long) res->trimmed);
      next_pct = (lba + n) * 100 / blocks / 10 * 10 + 10;
    }
  }
  if (!sb || !lb || !lv || !sv)
    snprintf(res->msg, sizeof res->msg, "out of memory");
  free(sb);
  free(lb);
  free(lv);
  free(sv);
  if (r == 0 && (r = up__io_blocks(up, PROTO_T_FLUSH, 0, 1, NULL, NULL)) == 0)
    r = up__state_commit(up);
  if (r < 0 && !res->msg[0])
    snprintf(res->msg, sizeof res->msg, "flush: %s", log_strerror(-r));
  return r;
}

/* Is ls->ds[i].e[k]'s name listed before it (another replica's)? */
static bool rb_listed_before(const struct up_snap_result *ls, int i, unsigned k)
{
  for (int a = 0; a <= i; a++)
    for (unsigned b = 0; b < (a == i ? k : ls->ds[a].n); b++)
      if (strcmp(ls->ds[a].e[b].name, ls->ds[i].e[k].name) == 0)
        return true;
  return false;
}

/* Delete every marker the list in ls names (a finished rollback leaves
 * none: an older interrupted one is superseded by it).  0, or the first
 * error. */
static int rb_unmark(struct upstairs *up, const struct up_snap_result *ls)
{
  static struct up_snap_result tmp; /* one rollback at a time */
  int ret = 0;
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    for (unsigned k = 0; k < ls->ds[i].n; k++) {
      const char *m = ls->ds[i].e[k].name;
      if (m[0] != '.' || rb_listed_before(ls, i, k))
        continue;
      int r = up__snapshot_run(up, PROTO_SNAP_DELETE, m, &tmp);
      unsigned gone = 0; /* replicas that no longer hold it */
      for (int d = 0; d < UP_DOWNSTAIRS; d++)
        gone += tmp.ds[d].ok || tmp.ds[d].err == ENOENT;
      if (r == 0 && gone < 2)
        r = -EIO;
      if (r < 0) {
        log_warn("rollback: cannot delete marker %s: %s", m, log_strerror(-r));
        ret = ret ? ret : r;
      }
    }
  return ret;
}

/* Halt the volume: a rollback stopped part-way must not be served. */
static void rb_halt(struct upstairs *up, const char *name, const char *why)
{
  pthread_mutex_lock(&up->lock);
  up->halted = true;
  pthread_mutex_unlock(&up->lock);
  log_error("rollback to %s failed part-way (%s): the volume takes no IO "
            "until nbdkit restarts, which finishes the rollback",
            name, why);
}

/* The whole rollback to name; resume: the marker is there already. */
static int rb_run(struct upstairs *up, const char *name, bool resume,
                  struct up_rollback_res *res)
{
  static struct up_snap_result ls, mk; /* one rollback at a time */
  char marker[PROTO_SNAP_NAME_LEN];
  struct upstairs *rd = NULL;
  struct up_range rg = {.start = 0, .end = UINT64_MAX};
  bool changed = false;
  uint64_t t0;
  int r;

  if (strlen(name) + 1 >= sizeof marker) {
    snprintf(res->msg, sizeof res->msg,
             "snapshot %s: a name of %zu bytes leaves no room for the "
             "rollback marker (at most %zu)",
             name, strlen(name), sizeof marker - 2);
    return -EINVAL;
  }
  snprintf(marker, sizeof marker, ".%s", name);
  if ((r = rb_reader(up, name, &rd, res)) < 0)
    return r;
  if ((r = up__range_lock(up, &rg)) < 0) {
    snprintf(res->msg, sizeof res->msg, "guest requests did not finish");
    up_free(rd);
    return r;
  }
  t0 = now_ms();
  log_notice("rollback to %s %s: %llu bytes (%llu of them in the snapshot)",
             name, resume ? "resumed" : "started",
             (unsigned long long) up_size(up),
             (unsigned long long) up_size(rd));
  r = up__snapshot_run(up, PROTO_SNAP_CREATE, marker, &mk);
  if (r == -EEXIST && resume)
    r = 0;
  if (r < 0)
    snprintf(res->msg, sizeof res->msg, "cannot record the rollback: %s",
             log_strerror(-r));
  else if ((r = rb_pass(up, rd, name, res, &changed)) == 0 &&
           (r = up__snapshot_run(up, PROTO_SNAP_LIST, "", &ls)) == 0)
    r = rb_unmark(up, &ls);
  if (r < 0 && !res->msg[0])
    snprintf(res->msg, sizeof res->msg, "cannot delete the marker: %s",
             log_strerror(-r));
  res->ms = now_ms() - t0;
  if (r < 0 && (changed || resume))
    rb_halt(up, name, res->msg);
  if (r == 0) { /* a rollback that failed before is superseded */
    pthread_mutex_lock(&up->lock);
    up->halted = false;
    pthread_mutex_unlock(&up->lock);
  } else if (r < 0 &&
             up__snapshot_run(up, PROTO_SNAP_DELETE, marker, &mk) < 0 &&
             mk.result != -ENOENT)
    log_warn("rollback to %s: marker %s left: the next start finishes the "
             "rollback",
             name, marker);
  up__range_unlock(up, &rg);
  up_free(rd);
  if (r == 0)
    log_notice("rollback to %s done: %llu bytes checked, %llu blocks "
               "compared, %llu blocks rewritten, %llu trimmed, paused %llu ms",
               name, (unsigned long long) res->bytes,
               (unsigned long long) res->compared,
               (unsigned long long) res->written,
               (unsigned long long) res->trimmed, (unsigned long long) res->ms);
  else
    log_error("rollback to %s failed: %s", name, res->msg);
  return r;
}

int up__rollback(struct upstairs *up, const char *name,
                 struct up_rollback_res *res)
{
  int r;

  memset(res, 0, sizeof *res);
  if (up_snapshot_mode(up))
    return -EROFS;
  if (!proto_snap_name_ok(name)) {
    snprintf(res->msg, sizeof res->msg, "bad snapshot name");
    return -EINVAL;
  }
  if (up__phase(up) != UP_PH_RUNNING) {
    snprintf(res->msg, sizeof res->msg, "the volume is not running");
    return -EIO;
  }
  if (__atomic_exchange_n(&up->rb_active, 1, __ATOMIC_SEQ_CST)) {
    snprintf(res->msg, sizeof res->msg, "a rollback is running");
    return -EBUSY;
  }
  r = rb_run(up, name, false, res);
  __atomic_store_n(&up->rb_active, 0, __ATOMIC_SEQ_CST);
  return r;
}

int up__rollback_pending(const struct up_snap_result *ls,
                         const struct proto_snap_entry **pick,
                         const struct proto_snap_entry **stale)
{
  unsigned answered = 0;
  *pick = *stale = NULL;
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    answered += ls->ds[i].ok;
  for (int i = 0; i < UP_DOWNSTAIRS; i++)
    for (unsigned k = 0; k < ls->ds[i].n; k++) {
      const struct proto_snap_entry *e = &ls->ds[i].e[k];
      unsigned holders = 0;
      if (e->name[0] != '.' || rb_listed_before(ls, i, k))
        continue;
      for (int d = 0; d < UP_DOWNSTAIRS; d++)
        for (unsigned b = 0; b < ls->ds[d].n; b++)
          holders += strcmp(ls->ds[d].e[b].name, e->name) == 0;
      if (holders >= 2 && (!*pick || e->flush > (*pick)->flush))
        *pick = e;
      else if (holders == 1 && answered == UP_DOWNSTAIRS)
        *stale = e;
      else if (holders == 1)
        return *pick = e, -EAGAIN;
    }
  return 0;
}

/* up__rollback_resume with rb_active held. */
static int rb_resume(struct upstairs *up)
{
  static struct up_snap_result ls, tmp;
  static struct up_rollback_res res;
  const struct proto_snap_entry *pick, *stale;
  int r;

  if ((r = up__snapshot_run(up, PROTO_SNAP_LIST, "", &ls)) < 0) {
    snprintf(up->err, sizeof up->err, "cannot list snapshots: %s",
             log_strerror(-r));
    return r;
  }
  if (up__rollback_pending(&ls, &pick, &stale) < 0) {
    snprintf(up->err, sizeof up->err,
             "rollback to %s: its marker is on one replica and a downstairs "
             "did not answer, so whether the rollback finished is not known: "
             "start with all three downstairs",
             pick->name + 1);
    return -EAGAIN;
  }
  if (stale && !pick) {
    log_notice("rollback to %s: a finished rollback's marker was left on one "
               "replica (away at its end): deleted",
               stale->name + 1);
    if (up__snapshot_run(up, PROTO_SNAP_DELETE, stale->name, &tmp) < 0)
      log_warn("rollback: cannot delete marker %s", stale->name);
  }
  if (!pick)
    return 0;
  log_warn("rollback to %s was interrupted: finishing it before serving",
           pick->name + 1);
  memset(&res, 0, sizeof res);
  r = rb_run(up, pick->name + 1, true, &res);
  if (r < 0)
    snprintf(up->err, sizeof up->err,
             "rollback to %s was interrupted and cannot finish: %s",
             pick->name + 1, res.msg);
  return r;
}

int up__rollback_resume(struct upstairs *up)
{
  int r;

  if (up_snapshot_mode(up))
    return 0;
  /* An admin rollback that came first (the admin thread runs already)
   * supersedes an interrupted one: it deletes every marker. */
  if (__atomic_exchange_n(&up->rb_active, 1, __ATOMIC_SEQ_CST))
    return 0;
  r = rb_resume(up);
  __atomic_store_n(&up->rb_active, 0, __ATOMIC_SEQ_CST);
  return r;
}
