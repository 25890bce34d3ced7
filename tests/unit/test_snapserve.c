/* Unit test for the rule that picks the replicas a snapshot server
 * reads (plugin/snapshot.c, up__snap_serve_rule): every combination of
 * three answers (unknown, lacks, or holds one of three records) against
 * a model written from the rule's words: serve from the largest group of
 * replicas holding the same record if it has at least two members. */
#include <string.h>

#include "../../plugin/upstairs_int.h"
#include "test.h"

static struct up_snap_have rec(int v)
{
  struct up_snap_have h = {.kind = UP_SNAP_HAS};
  if (v == 0)
    h.kind = UP_SNAP_UNKNOWN;
  else if (v == 1)
    h.kind = UP_SNAP_LACKS;
  else if (v == 2) /* the record most hold */
    h.gen = 3, h.flush = 10, h.extent_count = 8;
  else if (v == 3) /* another flush */
    h.gen = 3, h.flush = 11, h.extent_count = 8;
  else /* the same flush, another extent count: not the same record */
    h.gen = 3, h.flush = 10, h.extent_count = 9;
  return h;
}

int main(void)
{
  int seen_ok = 0, seen_fail = 0;
  for (int a = 0; a < 5; a++)
    for (int b = 0; b < 5; b++)
      for (int c = 0; c < 5; c++) {
        int v[3] = {a, b, c}, pick;
        struct up_snap_have h[3] = {rec(a), rec(b), rec(c)};
        unsigned got = up__snap_serve_rule(h, &pick);
        /* Model: per record value (2..4) its holders. */
        unsigned want = 0;
        for (int r = 2; r <= 4; r++) {
          unsigned m = 0, n = 0;
          for (int i = 0; i < 3; i++)
            if (v[i] == r) {
              m |= 1u << i;
              n++;
            }
          if (n >= 2)
            want = m; /* at most one value can have two of three */
        }
        CHECK(got == want);
        if (got) {
          CHECK(pick >= 0 && pick < 3 && (got >> pick) & 1);
          seen_ok++;
        } else {
          CHECK(pick == -1);
          seen_fail++;
        }
      }
  /* Named cases. */
  struct up_snap_have all[3] = {rec(2), rec(2), rec(2)};
  int pick;
  CHECK(up__snap_serve_rule(all, &pick) == 7);
  struct up_snap_have one_lacks[3] = {rec(2), rec(1), rec(2)};
  CHECK(up__snap_serve_rule(one_lacks, &pick) == 5);
  struct up_snap_have disagree[3] = {rec(2), rec(3), rec(2)};
  CHECK(up__snap_serve_rule(disagree, &pick) == 5);
  struct up_snap_have two_differ[3] = {rec(2), rec(3), rec(0)};
  CHECK(up__snap_serve_rule(two_differ, &pick) == 0);
  struct up_snap_have alone[3] = {rec(2), rec(1), rec(1)};
  CHECK(up__snap_serve_rule(alone, &pick) == 0);
  CHECK(seen_ok > 0 && seen_fail > 0);
  return test_done("test_snapserve");
}
