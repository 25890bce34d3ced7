/* crucible-c upstairs: the caller side of the IO path.
 *
 * Runs on the caller's (nbdkit's) threads.  A request takes a range lock on
 * its blocks, is split into jobs that never cross an extent and carry at
 * most PROTO_MAX_JOB_BYTES, up to IO_BATCH jobs are queued at once, and the
 * caller waits on its own condvar with a deadline.  Encryption happens here,
 * straight into each job's frame buffer; read replies are verified and
 * decrypted into the caller's buffer by readcheck.c.  Partial blocks at the edges
 * of a write or trim are read, patched and rewritten under the range lock.
 *
 * Range lock invariant: two requests whose block ranges overlap never run
 * at the same time, so per-block versions (taken after the lock) increase
 * in the order the loop sends the jobs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "upstairs_int.h"

#define IO_BATCH 16     /* jobs queued before waiting */
#define IO_READ_TRIES 3 /* one per replica */

/* Wait (with a deadline) until no held range overlaps r, then hold r. */
int up__range_lock(struct upstairs *up, struct up_range *r)
{
  struct timespec dl;
  bool busy = true;

  up__deadline(up, &dl, 2 * up->cfg.timeout + UP_WAIT_SLACK_S);
  pthread_mutex_lock(&up->rl_lock);
  while (busy) {
    busy = false;
    for (struct up_range *h = up->ranges; h && !busy; h = h->next)
      busy = h->start < r->end && r->start < h->end;
    if (busy &&
        pthread_cond_timedwait(&up->rl_cond, &up->rl_lock, &dl) == ETIMEDOUT) {
      pthread_mutex_unlock(&up->rl_lock);
      log_error("request at block %llu: waited too long for an overlapping "
                "request",
                (unsigned long long) r->start);
      return -EIO;
    }
  }
  r->next = up->ranges;
  up->ranges = r;
  pthread_mutex_unlock(&up->rl_lock);
  return 0;
}

void up__range_unlock(struct upstairs *up, struct up_range *r)
{
  pthread_mutex_lock(&up->rl_lock);
  for (struct up_range **p = &up->ranges; *p; p = &(*p)->next)
    if (*p == r) {
      *p = r->next;
      break;
    }
  pthread_cond_broadcast(&up->rl_cond);
  pthread_mutex_unlock(&up->rl_lock);
}

void up__req_init(struct up_req *req)
{
  pthread_condattr_t ca;

  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&req->cond, &ca);
  pthread_condattr_destroy(&ca);
  req->pending = 0;
}

/* Wait for jobs[0..nj) of req; res[i] gets each outcome.  A job still
 * undecided at the deadline is abandoned (-EIO): the loop then finishes
 * it on its own and never touches req again.  The loop lowers pending
 * only at the end of its turn (jobs.c up__wake_flush), so a job may be
 * decided and still hold req: detaching it is what tells the loop. */
void up__req_wait(struct upstairs *up, struct up_req *req, struct up_job **jobs,
                  unsigned nj, int *res)
{
  struct timespec dl;
  bool late = false;

  up__deadline(up, &dl, up->cfg.timeout + UP_WAIT_SLACK_S);
  pthread_mutex_lock(&up->lock);
  while (req->pending > 0)
    if (pthread_cond_timedwait(&req->cond, &up->lock, &dl) == ETIMEDOUT)
      break;
  for (unsigned i = 0; i < nj; i++) {
    res[i] = jobs[i]->decided ? jobs[i]->result : -EIO;
    if (jobs[i]->req) {
      jobs[i]->req = NULL;
      req->pending--;
      late |= !jobs[i]->decided;
    }
  }
  pthread_mutex_unlock(&up->lock);
  if (late)
    log_error("request timed out after %u s", up->cfg.timeout);
}

int up__run_jobs(struct upstairs *up, struct up_job **jobs, unsigned nj,
                 int *res)
{
  struct up_req req;
  unsigned sent = 0;
  int r = 0;

  up__req_init(&req);
  for (; sent < nj && r == 0; sent++)
    if ((r = up__submit(up, &req, jobs[sent])) < 0)
      up__job_discard(jobs[sent]);
  if (r < 0)
    sent--;
  up__req_wait(up, &req, jobs, sent, res);
  for (unsigned i = sent; i < nj; i++) {
    if (i > sent)
      up__job_discard(jobs[i]);
    jobs[i] = NULL;
    res[i] = r;
  }
  pthread_cond_destroy(&req.cond);
  return r;
}

/* A new job with refs for the caller and the loop. */
struct up_job *up__job_new(uint16_t type, uint64_t lba, uint32_t n,
                           size_t frame_len)
{
  struct up_job *job = calloc(1, sizeof *job);

  if (!job)
    return NULL;
  job->frame = malloc(frame_len);
  if (!job->frame) {
    free(job);
    return NULL;
  }
  job->type = type;
  job->lba = lba;
  job->n = n;
  job->frame_len = frame_len;
  job->refs = 2;
  job->loop_refs = 1;
  return job;
}

/* Drop both references of a job that was never submitted. */
void up__job_discard(struct up_job *job)
{
  up__job_put(job);
  up__job_put(job);
}

/* Encrypt (or copy) n blocks of src into a WRITE frame. */
static int job_fill_write(struct upstairs *up, struct up_job *job,
                          const uint8_t *src)
{
  uint32_t bs = up->region.block_size;
  uint8_t *ctxp = job->frame + PROTO_IO_HDR_LEN;
  uint8_t *data = ctxp + (size_t) job->n * PROTO_CTX_LEN;
  uint64_t seq = __atomic_add_fetch(&up->seq, 1, __ATOMIC_SEQ_CST);
  struct proto_ctx ctx = {0};

  if (seq >= (1ull << 32)) {
    log_error("write sequence exhausted: restart to take a new generation");
    return -EIO;
  }
  ctx.version = (up->gen << 32) | seq;
  ctx.flags = PROTO_CTX_PRESENT;
  for (uint32_t i = 0; i < job->n; i++) {
    const uint8_t *p = src + (size_t) i * bs;
    uint8_t *d = data + (size_t) i * bs;
    if (up->key) {
      int r = crypt_block_encrypt(up->key, up->region.uuid, job->lba + i,
                                  ctx.version, p, bs, d, ctx.nonce, ctx.tag);
      if (r < 0)
        return r;
      ctx.hash = crypt_hash_cipher(ctx.nonce, ctx.tag, d, bs);
    } else {
      memcpy(d, p, bs);
      ctx.hash = crypt_hash_plain(d, bs);
    }
    proto_ctx_put(ctxp + (size_t) i * PROTO_CTX_LEN, &ctx);
  }
  return 0;
}

/* Build one job of the given type (ids are patched in by the loop). */
static int job_make(struct upstairs *up, uint16_t type, uint64_t lba,
                    uint32_t n, const uint8_t *src, struct up_job **out)
{
  uint32_t bs = up->region.block_size;
  size_t len = type == PROTO_T_WRITE
                   ? PROTO_IO_HDR_LEN + (size_t) n * (PROTO_CTX_LEN + bs)
               : type == PROTO_T_FLUSH ? PROTO_FLUSH_LEN
               : type == PROTO_T_TRIM  ? PROTO_TRIM_LEN
                                       : PROTO_IO_HDR_LEN;
  struct up_job *job = up__job_new(type, lba, n, len);
  int r = 0;

  if (!job)
    return -ENOMEM;
  memset(job->frame, 0, len < PROTO_IO_HDR_LEN ? len : PROTO_IO_HDR_LEN);
  if (type == PROTO_T_TRIM) {
    /* Versioned like a write: reconciliation tells a trim newer than a
     * write from an older one by it (docs/DESIGN.md). */
    uint64_t seq = __atomic_add_fetch(&up->seq, 1, __ATOMIC_SEQ_CST);
    job->version = (up->gen << 32) | seq;
    r = seq >= (1ull << 32) ? -EIO : 0;
  }
  if (type == PROTO_T_WRITE) {
    proto_put_write_hdr(job->frame, 0, lba, n, bs);
    r = job_fill_write(up, job, src);
  }
  if (r < 0) {
    up__job_discard(job);
    return r;
  }
  *out = job;
  return 0;
}

/* Blocks for the next job at lba (of left): inside one extent, within
 * the per-job limits. */
static uint32_t job_blocks(struct upstairs *up, uint16_t type, uint64_t lba,
                           uint64_t left)
{
  uint64_t n = geom_left_in_extent(&up->region, lba);
  uint64_t max = proto_max_job_blocks(type, up->region.block_size);

  if (n > left)
    n = left;
  if (n > max)
    n = max;
  return (uint32_t) n;
}

/* Check one block of a reply and put its plaintext into out.  NULL if
 * good (*ver = its version, 0 if never written), else the reason. */
const char *up__blk_check(struct upstairs *up, const struct proto_read_done *r,
                          uint32_t i, uint64_t lba, uint8_t *out, uint64_t *ver)
{
  uint32_t bs = up->region.block_size;
  const uint8_t *d = r->data + (size_t) i * bs;
  struct proto_ctx c;

  proto_ctx_get(r->ctxs + (size_t) i * PROTO_CTX_LEN, &c);
  *ver = 0;
  if (c.flags & PROTO_CTX_BAD)
    return "stored bytes match none of its contexts";
  if (!(c.flags & PROTO_CTX_PRESENT)) {
    memset(out, 0, bs);
    return NULL;
  }
  if (up->key) {
    /* No XXH3 pass here: the GCM tag authenticates nonce, tag and
     * ciphertext (and place and version), strictly more than the hash,
     * which is for the keyless downstairs (docs/PERFORMANCE.md). */
    if (crypt_block_decrypt(up->key, up->region.uuid, lba, c.version, d, bs,
                            c.nonce, c.tag, out) < 0)
      return "bad tag";
  } else {
    if (crypt_hash_plain(d, bs) != c.hash)
      return "bad hash";
    memcpy(out, d, bs);
  }
  *ver = c.version;
  return NULL;
}

/* Verify a decided READ job into dst, retrying other replicas on any
 * failure.  Takes over the caller's reference to job. */
static int read_finish(struct upstairs *up, struct up_job *job, int res,
                       uint8_t *dst)
{
  unsigned tried = 0, nbad = 0;
  uint64_t lba = job->lba;
  uint32_t n = job->n;
  int r = -EIO;
  struct up_job *bad[IO_READ_TRIES]; /* failed attempts, for heal.c */

  for (int attempt = 0;; attempt++) {
    struct up_req req;
    tried |= job->sent & ~job->vmask;
    if (res == 0)
      r = up__read_check(up, job, dst);
    if (r == 0 && nbad)
      up__heal_read(up, job, bad, nbad);
    if (r < 0 && res != -EROFS && nbad < IO_READ_TRIES)
      bad[nbad++] = job;
    else
      up__job_put(job);
    if (r == 0 || res == -EROFS || up->cfg.verify == UP_VERIFY_ALL ||
        attempt + 1 >= IO_READ_TRIES || tried == (1u << UP_DOWNSTAIRS) - 1)
      break;
    r = -EIO;
    if (job_make(up, PROTO_T_READ, lba, n, NULL, &job) < 0)
      break;
    job->tried = tried;
    up__req_init(&req);
    if (up__submit(up, &req, job) < 0) {
      up__job_discard(job);
      pthread_cond_destroy(&req.cond);
      break;
    }
    up__req_wait(up, &req, &job, 1, &res);
    pthread_cond_destroy(&req.cond);
  }
  while (nbad > 0)
    up__job_put(bad[--nbad]);
  if (r < 0)
    log_error("read lba %llu n %u: no downstairs returned good data",
              (unsigned long long) lba, n);
  return r == 0 ? 0 : -EIO;
}

/* Run nblk blocks at lba as jobs of one type, IO_BATCH at a time.
 * WRITE reads src, READ fills dst, TRIM and FLUSH use neither. */
static int io_run(struct upstairs *up, uint16_t type, uint64_t lba,
                  uint64_t nblk, const uint8_t *src, uint8_t *dst)
{
  size_t bs = up->region.block_size;
  struct up_job *jobs[IO_BATCH];
  uint64_t offs[IO_BATCH], done = 0;
  int res[IO_BATCH], ret = 0;
  unsigned nj = 0;
  struct up_req req;

  up__req_init(&req);
  while (done < nblk || nj > 0) {
    if (done < nblk && nj < IO_BATCH) {
      uint32_t n = type == PROTO_T_FLUSH
                       ? 1
                       : job_blocks(up, type, lba + done, nblk - done);
      struct up_job *job;
      int r =
          job_make(up, type, lba + done, n, src ? src + done * bs : NULL, &job);
      if (r == 0 && (r = up__submit(up, &req, job)) < 0)
        up__job_discard(job);
      if (r < 0) {
        ret = r;
        done = nblk;
        continue;
      }
      jobs[nj] = job;
      offs[nj++] = done;
      done += n;
      continue;
    }
    up__req_wait(up, &req, jobs, nj, res);
    for (unsigned i = 0; i < nj; i++) {
      int r = res[i];
      if (type == PROTO_T_READ)
        r = read_finish(up, jobs[i], r, dst + offs[i] * bs);
      else
        up__job_put(jobs[i]);
      if (r < 0 && ret == 0)
        ret = r;
    }
    nj = 0;
  }
  pthread_cond_destroy(&req.cond);
  return ret;
}

int up__io_blocks(struct upstairs *up, uint16_t type, uint64_t lba,
                  uint64_t nblk, const uint8_t *src, uint8_t *dst)
{
  return io_run(up, type, lba, nblk, src, dst);
}

/* Can IO start now?  -EROFS once fenced (writes), else -EIO (also once a
 * rollback stopped part-way: rollback.c). */
static int io_check(struct upstairs *up, bool write, uint32_t count,
                    uint64_t off)
{
  bool fenced, running;

  pthread_mutex_lock(&up->lock);
  fenced = up->fenced;
  running = up->phase == UP_PH_RUNNING && !up->stopping && !up->halted;
  pthread_mutex_unlock(&up->lock);
  if (fenced)
    return write ? -EROFS : -EIO;
  if (!running || __atomic_load_n(&up->n_active, __ATOMIC_SEQ_CST) < 2)
    return -EIO;
  if (off > up_size(up) || count > up_size(up) - off)
    return -EINVAL;
  return 0;
}

int up_read(struct upstairs *up, void *buf, uint32_t count, uint64_t off)
{
  uint32_t bs = up->region.block_size;
  struct up_range rg;
  uint8_t *bounce = NULL;
  int r = io_check(up, false, count, off);

  if (r < 0 || count == 0)
    return r;
  rg.start = off / bs;
  rg.end = (off + count + bs - 1) / bs;
  if (off % bs || count % bs) {
    bounce = malloc((rg.end - rg.start) * bs);
    if (!bounce)
      return -ENOMEM;
  }
  r = up__range_lock(up, &rg);
  if (r == 0) {
    r = io_run(up, PROTO_T_READ, rg.start, rg.end - rg.start, NULL,
               bounce ? bounce : buf);
    up__range_unlock(up, &rg);
  }
  if (r == 0 && bounce)
    memcpy(buf, bounce + off % bs, count);
  free(bounce);
  return r;
}

/* Write (src) or trim (src NULL) [off, off+count) under the range lock:
 * whole blocks directly, partial edge blocks by read-modify-write. */
static int io_modify(struct upstairs *up, const uint8_t *src, uint32_t count,
                     uint64_t off)
{
  uint32_t bs = up->region.block_size;
  uint64_t pos = off, end = off + count;
  uint8_t *tmp = NULL;
  int r = 0;

  while (pos < end && r == 0) {
    uint64_t blk = pos / bs;
    uint32_t in = (uint32_t) (pos % bs);
    if (in || end - pos < bs) {
      uint32_t len = (uint32_t) (end - pos < bs - in ? end - pos : bs - in);
      if (!tmp && !(tmp = malloc(bs)))
        return -ENOMEM;
      r = io_run(up, PROTO_T_READ, blk, 1, NULL, tmp);
      if (r == 0) {
        if (src)
          memcpy(tmp + in, src + (pos - off), len);
        else
          memset(tmp + in, 0, len);
        r = io_run(up, PROTO_T_WRITE, blk, 1, tmp, NULL);
      }
      pos += len;
    } else {
      uint64_t n = (end - pos) / bs;
      r = io_run(up, src ? PROTO_T_WRITE : PROTO_T_TRIM, blk, n,
                 src ? src + (pos - off) : NULL, NULL);
      pos += n * bs;
    }
  }
  free(tmp);
  return r;
}

/* Shared body of up_write and up_trim. */
static int io_write_or_trim(struct upstairs *up, const uint8_t *src,
                            uint32_t count, uint64_t off, bool fua)
{
  uint32_t bs = up->region.block_size;
  struct up_range rg;
  int r = io_check(up, true, count, off);

  if (r < 0)
    return r;
  if (count > 0) {
    rg.start = off / bs;
    rg.end = (off + count + bs - 1) / bs;
    r = up__range_lock(up, &rg);
    if (r < 0)
      return r;
    r = io_modify(up, src, count, off);
    up__range_unlock(up, &rg);
  }
  if (r == 0 && fua)
    r = up_flush(up);
  return r;
}

/* A snapshot is served read-only (nbdkit does not offer writes then;
 * this is for every other caller of the library). */
int up_write(struct upstairs *up, const void *buf, uint32_t count, uint64_t off,
             bool fua)
{
  if (up_snapshot_mode(up))
    return -EROFS;
  return io_write_or_trim(up, buf, count, off, fua);
}

int up_trim(struct upstairs *up, uint32_t count, uint64_t off, bool fua)
{
  if (up_snapshot_mode(up))
    return -EROFS;
  return io_write_or_trim(up, NULL, count, off, fua);
}

int up_flush(struct upstairs *up)
{
  int r = up_snapshot_mode(up) ? 0 : io_check(up, true, 0, 0);

  if (r < 0 || up_snapshot_mode(up)) /* a snapshot: nothing was written */
    return r;
  r = io_run(up, PROTO_T_FLUSH, 0, 1, NULL, NULL);
  return r < 0 ? r : up__state_commit(up); /* state= durable first */
}
