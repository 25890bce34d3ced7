/* Unit test for plugin/vcache.c: the per-LBA newest-version cache that
 * makes verify=one reject an authentic but older block (a replica rolled
 * back while this activation runs).  Checks: older versions of a written
 * LBA are stale, equal and newer ones are not, unknown LBAs never are, a
 * trim forgets, a colliding LBA evicts (lossy, never a false positive). */
#include <stdlib.h>
#include <string.h>

#include "../../plugin/upstairs_int.h"
#include "test.h"

/* A WRITE job of n blocks at lba carrying version ver. */
static void note_write(struct upstairs *up, uint64_t lba, uint32_t n,
                       uint64_t ver)
{
  uint8_t frame[PROTO_IO_HDR_LEN + PROTO_CTX_LEN] = {0};
  struct proto_ctx c = {.version = ver, .flags = PROTO_CTX_PRESENT};
  struct up_job job = {
      .type = PROTO_T_WRITE, .lba = lba, .n = n, .frame = frame};

  proto_ctx_put(frame + PROTO_IO_HDR_LEN, &c);
  up__vcache_note(up, &job);
}

int main(void)
{
  struct upstairs *up = calloc(1, sizeof *up);
  struct up_job trim = {.type = PROTO_T_TRIM, .lba = 10, .n = 2};

  CHECK(up && up__vcache_init(up) == 0);
  CHECK(!up__vcache_stale(up, 7, 1)); /* nothing written yet */
  note_write(up, 5, 8, (2ull << 32) | 9);
  CHECK(up__vcache_stale(up, 7, (2ull << 32) | 8));  /* older: rollback */
  CHECK(up__vcache_stale(up, 12, 0));                /* missed the write */
  CHECK(up__vcache_stale(up, 5, (1ull << 32) | 99)); /* older generation */
  CHECK(!up__vcache_stale(up, 7, (2ull << 32) | 9)); /* the one written */
  CHECK(!up__vcache_stale(up, 13, 1));               /* not written */
  up__vcache_note(up, &trim);
  CHECK(!up__vcache_stale(up, 10, 0)); /* trimmed: forgotten */
  CHECK(up__vcache_stale(up, 9, 0));
  note_write(up, 9 + UP_VCACHE_SLOTS, 1, 5); /* same slot as 9 */
  CHECK(!up__vcache_stale(up, 9, 0));        /* evicted, no false alarm */
  CHECK(up__vcache_stale(up, 9 + UP_VCACHE_SLOTS, 4));
  up__vcache_free(up);
  free(up);
  return test_done("test_vcache");
}
