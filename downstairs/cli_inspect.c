/* crucible-downstairs: the subcommands that read a stopped region: dump
 * (per-extent metadata of up to 8 regions side by side, then their
 * snapshots) and verify (every written block against its contexts, no key
 * needed).  Dispatched by main.c; helpers in cli.c. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "cli.h"
#include "extent.h"
#include "progress.h"
#include "region.h"
#include "region_json.h"
#include "snapshot.h"

#define MAX_DUMP_DIRS 8

static const char DUMP_HELP[] =
    "Usage: " PROG " dump -d DIR [-d DIR...]\n"
    "Print gen, flush number and dirty flag of every extent, one column "
    "per\nregion; '*' marks extents where the regions differ.  Reads the "
    "extent\ndatabases read-only; meant for regions that are not running.\n"
    "  -d, --dir DIR          region directory (up to 8)\n"
    "Then each region's snapshots: name, seq, time, gen, flush, extents\n"
    "copied into it.\n";

static const char VERIFY_HELP[] =
    "Usage: " PROG " verify -d DIR\n"
    "Check every written block of a stopped region against its contexts\n"
    "(no key needed).  Prints each bad block as 'extent E block B' and\n"
    "'checked N blocks, M bad'; exits 1 if any block is bad.  The copies\n"
    "its snapshots hold are checked too ('snapshot S extent E block B').\n"
    "  -d, --dir DIR          region directory\n";

struct dump_region {
  const char *dir;
  struct region_meta m;
};

/* One extent row: values per region, '*' if they differ or one lacks it. */
static bool dump_row(const struct dump_region *rg, int n, uint32_t eid)
{
  struct proto_extent_state st[MAX_DUMP_DIRS], *ref = NULL;
  bool differ = false, ok = true;
  printf("%6" PRIu32, eid);
  for (int i = 0; i < n; i++) {
    int r = -ERANGE;
    if (eid < rg[i].m.def.extent_count)
      r = ext_read_meta(rg[i].dir, eid, true, &st[i], NULL);
    if (r == 0) {
      printf(" | %10" PRIu64 " %10" PRIu64 " %5u", st[i].gen, st[i].flush,
             st[i].dirty);
      if (ref && (ref->gen != st[i].gen || ref->flush != st[i].flush ||
                  ref->dirty != st[i].dirty))
        differ = true;
      ref = ref ? ref : &st[i];
    } else {
      printf(" | %10s %10s %5s", "-", r == -ERANGE ? "-" : "?", "-");
      differ = true;
      if (r != -ERANGE) {
        ok = false;
        log_error("%s: extent %" PRIu32 ": %s", rg[i].dir, eid,
                  log_strerror(-r));
      }
    }
  }
  puts(differ && n > 1 ? "  *" : "");
  return ok;
}

/* Region i's snapshots, one line each (nothing without any). */
static bool dump_snapshots(int i, const char *dir)
{
  static struct snap_cat cat;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int r = fd < 0 ? -errno : snap_cat_read(fd, &cat);
  for (unsigned k = 0; r == 0 && k < cat.n; k++) {
    const struct snap *s = &cat.v[k];
    uint64_t bytes = 0;
    uint32_t copies = 0;
    r = snap_usage(fd, s->seq, &bytes, &copies);
    printf("region %d: snapshot %s seq %" PRIu32 " time %" PRIu64
           " gen %" PRIu64 " flush %" PRIu64 " extents %" PRIu32
           " copied %" PRIu32 " bytes %" PRIu64 "\n",
           i, s->name, s->seq, s->time, s->gen, s->flush, s->extent_count,
           copies, bytes);
  }
  if (fd >= 0)
    close(fd);
  if (r < 0)
    log_error("%s: snapshots: %s", dir, log_strerror(-r));
  return r == 0;
}

int cmd_dump(int argc, char **argv)
{
  static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  struct dump_region rg[MAX_DUMP_DIRS];
  int n = 0, c;
  while ((c = getopt_long(argc, argv, ":d:h", opts, NULL)) != -1) {
    switch (c) {
    case 'd':
      if (n == MAX_DUMP_DIRS)
        return cli_usage("%s", "too many -d (at most 8)");
      rg[n++].dir = optarg;
      break;
    case 'h': fputs(DUMP_HELP, stdout); return 0;
    default: return cli_bad_option(c, argv);
    }
  }
  if (optind < argc)
    return cli_usage("unexpected argument '%s'", argv[optind]);
  if (n == 0)
    return cli_usage("%s", "missing -d DIR");
  uint32_t max = 0;
  for (int i = 0; i < n; i++) {
    /* A running downstairs holds an exclusive flock on the directory and
     * exclusive SQLite locks on its open extents: say so instead of
     * waiting on them.  Our shared flock (kept until exit) also keeps a
     * downstairs from starting mid-dump. */
    int fd = open(rg[i].dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = fd < 0 ? -errno : 0;
    if (r == 0 && flock(fd, LOCK_SH | LOCK_NB) < 0)
      r = errno == EWOULDBLOCK ? -EBUSY : -errno;
    if (r == 0)
      r = region_meta_read(fd, &rg[i].m);
    if (r < 0) {
      cli_open_error(rg[i].dir, r);
      return 1;
    }
    char uuid[37];
    geom_uuid_format(rg[i].m.def.uuid, uuid);
    printf("region %d: %s uuid %s, %" PRIu32 " extents, highest_gen %" PRIu64
           "\n",
           i, rg[i].dir, uuid, rg[i].m.def.extent_count, rg[i].m.highest_gen);
    if (rg[i].m.def.extent_count > max)
      max = rg[i].m.def.extent_count;
  }
  printf("%6s", "EXT");
  for (int i = 0; i < n; i++)
    printf(" | %9s%d %9s%d %4s%d", "GEN", i, "FLUSH", i, "DIRTY", i);
  putchar('\n');
  bool ok = true;
  for (uint32_t eid = 0; eid < max; eid++)
    ok = dump_row(rg, n, eid) && ok;
  for (int i = 0; i < n; i++)
    ok = dump_snapshots(i, rg[i].dir) && ok;
  return ok ? 0 : 1;
}

struct verify_state {
  uint64_t bad;
  struct progress p;
};

static void verify_bad(uint32_t eid, uint64_t block, void *arg)
{
  struct verify_state *vs = arg;
  progress_clear(&vs->p);
  printf("extent %" PRIu32 " block %" PRIu64 "\n", eid, block);
  fflush(stdout);
  vs->bad++;
}

static void verify_snap_bad(const char *snap, uint32_t eid, uint64_t block,
                            void *arg)
{
  struct verify_state *vs = arg;
  progress_clear(&vs->p);
  printf("snapshot %s extent %" PRIu32 " block %" PRIu64 "\n", snap, eid,
         block);
  fflush(stdout);
  vs->bad++;
}

int cmd_verify(int argc, char **argv)
{
  static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  const char *dir = NULL;
  int c;
  while ((c = getopt_long(argc, argv, ":d:h", opts, NULL)) != -1) {
    switch (c) {
    case 'd': dir = optarg; break;
    case 'h': fputs(VERIFY_HELP, stdout); return 0;
    default: return cli_bad_option(c, argv);
    }
  }
  if (optind < argc)
    return cli_usage("unexpected argument '%s'", argv[optind]);
  if (dir == NULL)
    return cli_usage("%s", "missing -d DIR");
  struct region *r;
  int ret = region_open(dir, &r);
  if (ret < 0) {
    cli_open_error(dir, ret);
    return 1;
  }
  struct verify_state vs = {.bad = 0};
  const struct proto_region *def = region_def(r);
  uint64_t total = 0, checked;
  uint64_t ext_bytes = def->extent_size * def->block_size;
  cli_progress(&vs.p, "verify", geom_size(def));
  for (uint32_t eid = 0; eid < def->extent_count && ret == 0; eid++) {
    ret = region_verify_extent(r, eid, verify_bad, &vs, &checked);
    total += checked;
    if (ret < 0) {
      progress_clear(&vs.p);
      cli_error("%s: extent %" PRIu32 ": %s", dir, eid, log_strerror(-ret));
    }
    progress_update(&vs.p, (eid + 1) * ext_bytes);
  }
  if (ret == 0)
    ret = region_snapshot_verify(r, verify_snap_bad, &vs, &checked);
  if (ret < 0)
    cli_error("%s: snapshots: %s", dir, log_strerror(-ret));
  total += checked;
  progress_end(&vs.p, ret == 0);
  region_close(r);
  printf("checked %" PRIu64 " blocks, %" PRIu64 " bad\n", total, vs.bad);
  return ret < 0 || vs.bad > 0 ? 1 : 0;
}
