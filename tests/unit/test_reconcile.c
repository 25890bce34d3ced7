/* Unit test for the block rule of plugin/reconcile.c (up__rec_decide):
 * which replica's copy of a block wins at start-up reconciliation, and who
 * must receive it.  Hand-written cases pin the bugs this rule fixed; then
 * every combination of what three replicas can say of one block (answered
 * or not, candidate or behind on flushes, zero or written at various
 * versions, BAD) and every exclusion set is checked against properties a
 * naive model states: the winner is the newest version of any replica
 * that answered and is not BAD or excluded (candidates only break ties:
 * a higher extent number does not prove a replica holds everything),
 * nothing ineligible ever wins, and applying the copies makes every
 * replica that answered hold the winner's contents. */
#include <string.h>

#include "../../plugin/upstairs_int.h"
#include "test.h"

#define P PROTO_CTX_PRESENT
#define BAD PROTO_CTX_BAD

static struct up_rec_blk blk(bool cand, uint32_t flags, uint64_t ver)
{
  return (struct up_rec_blk){.ok = true,
                             .cand = cand,
                             .flags = flags,
                             .version = ver,
                             .hash = ver * 7 + 1};
}

/* Do two replies name the same contents (the model's own statement)? */
static bool same(const struct up_rec_blk *a, const struct up_rec_blk *b)
{
  if ((a->flags | b->flags) & BAD)
    return false;
  if (!(a->flags & P) && !(b->flags & P))
    return true;
  return (a->flags & P) && (b->flags & P) && a->version == b->version &&
         a->hash == b->hash;
}

static void hand_cases(void)
{
  struct up_rec_blk b[3];
  unsigned t;

  /* All equal: nothing to do. */
  b[0] = b[1] = b[2] = blk(true, P, 5);
  CHECK(up__rec_decide(b, 0, &t) == 0 && t == 0);
  /* Replica 0's copy is corrupt (BAD): it receives, never gives. */
  b[0].flags |= BAD;
  CHECK(up__rec_decide(b, 0, &t) == 1 && t == 1u);
  /* A on replica 0, B (newer) on 1 and 2: B wins whatever the index. */
  b[0] = blk(true, P, 5);
  b[1] = b[2] = blk(true, P, 9);
  CHECK(up__rec_decide(b, 0, &t) == 1 && t == 1u);
  /* A trim newer than a write wins; an older one loses. */
  b[0] = blk(true, P, 5);
  b[1] = b[2] = blk(true, 0, 6);
  CHECK(up__rec_decide(b, 0, &t) == 1 && t == 1u);
  b[1] = b[2] = blk(true, 0, 4);
  CHECK(up__rec_decide(b, 0, &t) == 0 && t == 6u);
  /* Zeroes from different trims (or never written) are equal. */
  b[0] = blk(true, 0, 0);
  b[1] = blk(true, 0, 4);
  b[2] = blk(true, 0, 8);
  CHECK(up__rec_decide(b, 0, &t) == 2 && t == 0);
  /* A replica behind on flushes never wins, even with a higher version
   * (it missed a flushed trim: "never written" on the others is newer). */
  b[0] = blk(false, P, 9);
  b[1] = b[2] = blk(true, 0, 0);
  CHECK(up__rec_decide(b, 0, &t) == 1 && t == 1u);
  /* A winner whose data failed our check is excluded and overwritten. */
  b[0] = blk(true, P, 9);
  b[1] = b[2] = blk(true, P, 7);
  CHECK(up__rec_decide(b, 0, &t) == 0 && t == 6u);
  CHECK(up__rec_decide(b, 1u, &t) == 1 && t == 1u);
  /* One that did not answer is neither winner nor target. */
  b[0].ok = false;
  CHECK(up__rec_decide(b, 0, &t) == 1 && t == 0);
  /* A replica rolled back to before a trim that the others flushed (their
   * zeroes lost the trim's version): two zeroes outvote the old write,
   * one against one is undecided. */
  b[0] = blk(true, P, 9);
  b[1] = b[2] = blk(true, 0, 0);
  CHECK(up__rec_decide(b, 0, &t) == 1 && t == 1u);
  b[2].ok = false;
  CHECK(up__rec_decide(b, 0, &t) == -2);
  /* A write two hold beats a replica that never saw it. */
  b[0] = b[1] = blk(true, P, 9);
  b[2] = blk(true, 0, 0);
  CHECK(up__rec_decide(b, 0, &t) == 0 && t == 4u);
  /* No eligible copy at all: no winner, nothing moves. */
  b[0] = blk(true, P | BAD, 9);
  b[1] = blk(false, P, 3);
  b[1].ok = false;
  b[2].ok = false;
  CHECK(up__rec_decide(b, 0, &t) == -1 && t == 0);
  /* The soak's bug (seed 20261202): replica 1 was rolled back to before a
   * write, then healed on other blocks of the extent, so the next flush
   * raised only its extent number: it alone is a candidate.  Its zeroes
   * must not trim the write the two others hold. */
  b[0] = blk(false, P, 9);
  b[1] = blk(true, 0, 0);
  b[2] = blk(false, P, 9);
  CHECK(up__rec_decide(b, 0, &t) == 0 && t == 2u);
  /* Also a newer write than the candidate's. */
  b[1] = blk(true, P, 7);
  CHECK(up__rec_decide(b, 0, &t) == 0 && t == 2u);
  /* One against one: the candidate's side decides (a replica behind on
   * flushes may have missed the trim), whichever side it is on. */
  b[1] = blk(true, 0, 0);
  b[2].ok = false;
  CHECK(up__rec_decide(b, 0, &t) == 1 && t == 1u);
  b[0] = blk(true, P, 9);
  b[1] = blk(false, 0, 0);
  CHECK(up__rec_decide(b, 0, &t) == 0 && t == 2u);
  /* ... and two candidates split one against one stay undecided. */
  b[1] = blk(true, 0, 0);
  CHECK(up__rec_decide(b, 0, &t) == -2);
}

/* Every combination against the model's properties. */
static void all_cases(void)
{
  static const struct {
    uint32_t flags;
    uint64_t ver;
  } what[] = {{0, 0}, {0, 5}, {P, 3}, {P, 5}, {P, 7}, {P | BAD, 9}, {BAD, 6}};
  enum { NW = sizeof what / sizeof what[0], NS = 3 * NW }; /* + !ok, cand */
  unsigned combos = 0;

  for (unsigned c = 0; c < NS * NS * NS; c++)
    for (unsigned ex = 0; ex < 8; ex++) {
      struct up_rec_blk b[3];
      unsigned t, k = c, elig = 0;
      uint64_t best = 0;
      for (int i = 0; i < 3; i++, k /= NS) {
        unsigned s = k % NS;
        b[i] = blk(s / NW == 1, what[s % NW].flags, what[s % NW].ver);
        b[i].ok = s / NW != 2;
        if (b[i].ok && !(b[i].flags & BAD) && !(ex >> i & 1)) {
          if (!elig || b[i].version > best)
            best = b[i].version;
          elig |= 1u << i;
        }
      }
      int w = up__rec_decide(b, ex, &t);
      combos++;
      if (!elig) {
        CHECK(w == -1 && t == 0);
        continue;
      }
      /* The newest copy of any replica that answered, is not BAD and not
       * excluded (a candidate first on ties), unless it is a write and
       * zeroes of version 0 are held by more (they win) or as many (the
       * side with candidates when the other has none, else undecided). */
      int nw = -1;
      unsigned hold = 0, z0 = 0, chold = 0, cz0 = 0;
      for (int i = 0; i < 3; i++)
        if ((elig >> i & 1) && b[i].version == best &&
            (nw < 0 || (b[i].cand && !b[nw].cand)))
          nw = i;
      if (b[nw].flags & P)
        for (int i = 0; i < 3; i++) {
          if (!(elig >> i & 1))
            continue;
          if (same(&b[i], &b[nw])) {
            hold++;
            chold += b[i].cand;
          } else if (!(b[i].flags & P) && b[i].version == 0) {
            z0++;
            cz0 += b[i].cand;
          }
        }
      bool zero_wins = z0 > hold || (z0 && z0 == hold && cz0 && !chold);
      bool write_wins = !zero_wins && !(z0 && z0 == hold && !(chold && !cz0));
      if (!zero_wins && !write_wins) {
        CHECK(w == -2);
        continue;
      }
      if (zero_wins) {
        CHECK(w >= 0 && (elig >> w & 1) && !(b[w].flags & P) &&
              b[w].version == 0);
      } else {
        CHECK(w >= 0 && (elig >> w & 1) && b[w].version == best);
      }
      CHECK(!(t >> w & 1));
      for (int i = 0; i < 3; i++) {
        if (!b[i].ok)
          CHECK(!(t >> i & 1));
        else if (i != w && !(t >> i & 1))
          CHECK(same(&b[i], &b[w]) && !(ex >> i & 1));
        else if (i != w)
          CHECK(!same(&b[i], &b[w]) || (ex >> i & 1));
      }
    }
  CHECK(combos == 21u * 21 * 21 * 8);
}

int main(void)
{
  hand_cases();
  all_cases();
  return test_done("test_reconcile");
}
