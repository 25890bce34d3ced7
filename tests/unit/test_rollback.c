/* Unit test for the rule that decides, at start-up, whether a snapshot
 * rollback a crash interrupted must be finished (plugin/rollback.c,
 * up__rollback_pending): every combination of three replicas, each
 * silent, answering without the marker, or answering with it (beside an
 * ordinary snapshot), against a model written from the rule's words:
 * two holders pending, one holder with both others answering a finished
 * rollback's leftover, one holder and a silent replica not known; then
 * two markers (the newest pending one wins) and markers that only one
 * replica lists twice. */
#include <string.h>

#include "../../plugin/upstairs_int.h"
#include "test.h"

static struct up_snap_result ls;

static void add(int ds, const char *name, uint64_t flush)
{
  struct up_snap_ds *d = &ls.ds[ds];
  d->ok = true;
  snprintf(d->e[d->n].name, sizeof d->e[d->n].name, "%s", name);
  d->e[d->n].flush = flush;
  d->n++;
}

int main(void)
{
  const struct proto_snap_entry *pick, *stale;
  int seen[3] = {0};

  /* v: 0 silent, 1 answers without the marker, 2 answers with it. */
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 3; b++)
      for (int c = 0; c < 3; c++) {
        int v[3] = {a, b, c}, holders = 0, answered = 0;
        memset(&ls, 0, sizeof ls);
        for (int i = 0; i < 3; i++) {
          if (v[i] == 0)
            continue;
          answered++;
          add(i, "s1", 5);
          if (v[i] == 2) {
            add(i, ".s1", 8);
            holders++;
          }
        }
        int r = up__rollback_pending(&ls, &pick, &stale);
        if (holders >= 2) {
          CHECK(r == 0 && pick && strcmp(pick->name, ".s1") == 0 && !stale);
          seen[0]++;
        } else if (holders == 1 && answered == 3) {
          CHECK(r == 0 && !pick && stale && strcmp(stale->name, ".s1") == 0);
          seen[1]++;
        } else if (holders == 1) {
          CHECK(r == -EAGAIN && pick && strcmp(pick->name, ".s1") == 0);
          seen[2]++;
        } else {
          CHECK(r == 0 && !pick && !stale);
        }
      }
  CHECK(seen[0] && seen[1] && seen[2]);

  /* Two pending markers: the newest by flush. */
  memset(&ls, 0, sizeof ls);
  for (int i = 0; i < 3; i++) {
    add(i, ".old", 4);
    add(i, ".new", 9);
  }
  CHECK(up__rollback_pending(&ls, &pick, &stale) == 0 && pick &&
        strcmp(pick->name, ".new") == 0);
  /* A pending marker beside a finished one's leftover. */
  memset(&ls, 0, sizeof ls);
  add(0, ".a", 4);
  add(0, ".b", 9);
  add(1, ".b", 9);
  add(2, "s1", 2);
  CHECK(up__rollback_pending(&ls, &pick, &stale) == 0 && pick &&
        strcmp(pick->name, ".b") == 0 && stale &&
        strcmp(stale->name, ".a") == 0);
  /* A name that is no marker is never picked. */
  memset(&ls, 0, sizeof ls);
  for (int i = 0; i < 3; i++)
    add(i, "s.1", 4);
  CHECK(up__rollback_pending(&ls, &pick, &stale) == 0 && !pick && !stale);
  /* The version rule: every answer set of three replicas, each silent
   * or holding version 5 or 6, against "two or more, all the same". */
  for (unsigned mask = 0; mask < 8; mask++)
    for (unsigned sixes = 0; sixes < 8; sixes++) {
      uint64_t v[3];
      unsigned n = 0, n6 = 0;
      for (int d = 0; d < 3; d++) {
        v[d] = (sixes >> d) & 1 ? 6 : 5;
        if (mask & (1u << d)) {
          n++;
          n6 += (sixes >> d) & 1;
        }
      }
      uint64_t want = n < 2 || (n6 && n6 != n) ? UP_RB_UNKNOWN : n6 ? 6 : 5;
      CHECK(up__rollback_agree(v, mask) == want);
    }
  /* Markers are stored names but no user's (common/proto.c). */
  CHECK(proto_snap_stored_ok(".s1") && proto_snap_stored_ok("s1"));
  CHECK(!proto_snap_name_ok(".s1") && !proto_snap_stored_ok("..s1"));
  CHECK(!proto_snap_stored_ok(".") && !proto_snap_stored_ok(""));
  return test_done("test_rollback");
}
