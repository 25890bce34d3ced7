/* crucible-c downstairs: the remembered "last bytes written since the
 * last flush" of an extent (struct ext_seen, extent.h): what a flush
 * keeps (extent.c "THE INVARIANT").  Open addressing, block -> hash. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../common/hash.h"
#include "../common/log.h"
#include "extent.h"
#include "extent_int.h"

/* --- the remembered "last written" table ------------------------------ */

static struct ext_seen_slot *seen_find(struct ext_seen *s, uint32_t block)
{
  uint32_t mask = s->cap - 1;
  uint32_t i = (block * 2654435761u) & mask;
  while (s->slots[i].state != EXT_SEEN_EMPTY && s->slots[i].block != block)
    i = (i + 1) & mask;
  return &s->slots[i];
}

static int seen_grow(struct ext_seen *s)
{
  struct ext_seen old = *s;
  uint32_t cap = old.cap ? old.cap * 2 : 64;
  s->slots = calloc(cap, sizeof *s->slots);
  if (s->slots == NULL) {
    *s = old;
    return -ENOMEM;
  }
  s->cap = cap;
  s->used = 0;
  for (uint32_t i = 0; i < old.cap; i++)
    if (old.slots[i].state != EXT_SEEN_EMPTY) {
      *seen_find(s, old.slots[i].block) = old.slots[i];
      s->used++;
    }
  free(old.slots);
  return 0;
}

/* Record block's newest state.  Updating an existing entry never fails;
 * on -ENOMEM a new block is simply not remembered (its contexts are kept
 * until a later open of the dirty extent or a later write+flush). */
int ext__seen_set(struct ext_seen *s, uint32_t block, uint32_t state,
                  uint64_t hash)
{
  struct ext_seen_slot *sl = s->cap ? seen_find(s, block) : NULL;
  if (sl == NULL || sl->state == EXT_SEEN_EMPTY) {
    /* A new entry: only this may need to grow the table.  If that fails
     * the block stays absent, and a flush leaves absent blocks alone. */
    if ((s->used + 1) * 2 > s->cap) {
      int r = seen_grow(s);
      if (r < 0)
        return r;
    }
    sl = seen_find(s, block);
    s->used++;
  }
  sl->block = block;
  sl->state = state;
  sl->hash = hash;
  return 0;
}

/* Mark [blk, blk+n) forgotten where remembered: a flush leaves their
 * contexts alone.  Blocks not in the table need nothing. */
void ext__seen_forget(struct ext_seen *s, uint64_t blk, uint64_t n)
{
  for (uint32_t i = 0; i < s->cap; i++)
    if (s->slots[i].state == EXT_SEEN_LIVE && s->slots[i].block >= blk &&
        s->slots[i].block - blk < n)
      s->slots[i].state = EXT_SEEN_FORGOTTEN;
}

bool ext__seen_live(const struct ext *e, uint32_t block, uint64_t *hash)
{
  const struct ext_seen *s = &e->seen;
  if (s->cap == 0)
    return false;
  const struct ext_seen_slot *sl = seen_find((struct ext_seen *) s, block);
  *hash = sl->hash;
  return sl->state == EXT_SEEN_LIVE;
}

bool ext__seen_zero(const struct ext *e, uint32_t block)
{
  const struct ext_seen *s = &e->seen;
  if (s->cap == 0)
    return false;
  const struct ext_seen_slot *sl = seen_find((struct ext_seen *) s, block);
  return sl->state == EXT_SEEN_LIVE && sl->hash == e->zero_hash;
}

void ext__seen_reset(struct ext_seen *s)
{
  free(s->slots);
  memset(s, 0, sizeof *s);
}
