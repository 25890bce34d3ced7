/* crucible-downstairs: command line (create, run, dump, verify, export,
 * import, clone).
 *
 * Exit codes: 0 ok, 1 failure, 2 usage.  Errors are one line on stderr:
 *   crucible-downstairs: create: DIR: region already exists
 * Normal output (summaries, dump, verify results) goes to stdout;
 * progress goes to stderr (downstairs/progress.h: redrawn on a terminal,
 * a plain line every 10 s otherwise, and a final summary line).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "../common/parse.h"
#include "cli.h"
#include "clone.h"
#include "extent.h"
#include "progress.h"
#include "region.h"
#include "region_json.h"
#include "server.h"
#include "snapshot.h"
#include "status.h"
#include "xfer.h"

#define MAX_DUMP_DIRS 8

static const char USAGE[] =
    "Usage: " PROG " COMMAND [OPTIONS]\n"
    "Commands:\n"
    "  create -d DIR [-u UUID] [--block-size BYTES] [--extent-size BLOCKS]\n"
    "         [--extent-count N] [--encrypted] [--preallocate]\n"
    "                                              create a new region\n"
    "  run -d DIR -p PORT [-a ADDR] [--log-level LEVEL] [--max-conns N]\n"
    "         [--idle-timeout SECS] [--handshake-timeout SECS]\n"
    "         [--auth-key FILE]                    serve a region\n"
    "  dump -d DIR [-d DIR...]                     per-extent metadata\n"
    "  verify -d DIR                               scrub a stopped region\n"
    "  export -d DIR -o FILE                       unencrypted region -> raw "
    "image\n"
    "  import -d DIR -i FILE [-u UUID] [--block-size N] [--extent-size N]\n"
    "                                              raw image -> unencrypted "
    "region\n"
    "  clone --source HOST:PORT -d DIR [--timeout SECS] [--auth-key FILE]\n"
    "                                              copy a running "
    "downstairs'\n"
    "                                              region into a new DIR\n"
    "  status -p PORT [-a ADDR] [--auth-key FILE] [--timeout SECS]\n"
    "                                              a running downstairs' "
    "region\n"
    "                                              and connections\n"
    "Exit status: 0 ok, 1 failure, 2 usage error.\n"
    "Run '" PROG " COMMAND --help' for a command's options.\n";

static const char CREATE_HELP[] =
    "Usage: " PROG " create -d DIR [OPTIONS]\n"
    "Create a region (one replica) in DIR (created if missing; must be "
    "empty).\n"
    "  -d, --dir DIR          region directory\n"
    "  -u, --uuid UUID        volume uuid (default: none; the region takes\n"
    "                         its volume's when the upstairs first starts)\n"
    "      --block-size N     bytes per block, power of two 512..65536 "
    "(4096)\n"
    "      --extent-size N    blocks per extent (32768)\n"
    "      --extent-count N   number of extents (8: 1 GiB at the defaults)\n"
    "      --encrypted        the upstairs encrypts (otherwise: plain, for "
    "tests)\n"
    "      --preallocate      allocate every extent file now (fallocate), "
    "with progress\n";

static const char RUN_HELP[] =
    "Usage: " PROG " run -d DIR -p PORT [OPTIONS]\n"
    "Serve the region in DIR until SIGINT/SIGTERM.\n"
    "  -d, --dir DIR          region directory\n"
    "  -p, --port PORT        TCP port\n"
    "  -a, --address ADDR     listen address (0.0.0.0)\n"
    "      --log-level LEVEL  error, warn, info (default) or debug\n"
    "      --max-conns N      connection cap (64)\n"
    "      --idle-timeout S   close connections silent for S seconds "
    "(120)\n"
    "      --handshake-timeout S  the same for connections not activated "
    "(10)\n"
    "      --auth-key FILE    serve only peers proving this shared secret "
    "(16..256\n"
    "                         bytes; the same file for the plugin's "
    "auth-key=+FILE\n"
    "                         and for every downstairs of the volume)\n";

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

static const char EXPORT_HELP[] =
    "Usage: " PROG " export -d DIR -o FILE [-s NAME]\n"
    "Write every block of a stopped, unencrypted region to FILE as a raw\n"
    "image (unwritten blocks read as zeroes; zero chunks of a regular file\n"
    "stay sparse).  Encrypted regions are refused: the downstairs has no "
    "key.\n"
    "  -d, --dir DIR          region directory\n"
    "  -o, --output FILE      image to write (created or overwritten)\n"
    "  -s, --snapshot NAME    the snapshot NAME instead of the live region\n";

static const char IMPORT_HELP[] =
    "Usage: " PROG " import -d DIR -i FILE [OPTIONS]\n"
    "Write the raw image FILE into a stopped, unencrypted region, which "
    "then\nreads back exactly the image (zero-padded to the region size). "
    "If DIR\nholds no region, one just big enough is created (options "
    "below).\nImport each of the three replicas of a volume the same "
    "way.\n"
    "  -d, --dir DIR          region directory\n"
    "  -i, --input FILE       raw image to read\n"
    "  -u, --uuid UUID        new region: volume uuid (default: none, taken\n"
    "                         from the volume at first start)\n"
    "      --block-size N     new region: bytes per block (4096)\n"
    "      --extent-size N    new region: blocks per extent (32768)\n";

static const char CLONE_HELP[] =
    "Usage: " PROG " clone --source HOST:PORT -d DIR [OPTIONS]\n"
    "Copy the whole region served by the running downstairs at HOST:PORT\n"
    "into the new region DIR (same uuid, geometry and encryption), to\n"
    "replace a dead replica; start it with 'run' and the upstairs brings\n"
    "it up to date.  The source keeps serving meanwhile; an extent that\n"
    "changes while it is copied is copied again.  DIR must not exist or\n"
    "be empty; the copy is built in DIR" DS_CLONE_SUFFIX " and renamed to DIR "
    "only\nwhen complete and synced.\n"
    "  -s, --source HOST:PORT the downstairs to copy ([v6addr]:port for "
    "IPv6)\n"
    "  -d, --dir DIR          new region directory\n"
    "      --timeout S        give up on a source silent for S seconds "
    "(30)\n"
    "      --auth-key FILE    prove this shared secret to a source run with "
    "--auth-key\n";

enum {
  OPT_BS = 256,
  OPT_ES,
  OPT_EC,
  OPT_ENC,
  OPT_LOG,
  OPT_MAXC,
  OPT_IDLE,
  OPT_PREALLOC,
  OPT_HS,
  OPT_AUTH,
  OPT_TIMEOUT
};

/* Allocate every extent data file of a new region (create
 * --preallocate): a full disk shows now, not at the first write. */
static int preallocate(const char *dir, const struct proto_region *def)
{
  uint64_t bytes = def->extent_size * def->block_size;
  struct progress p;
  int r = 0;
  cli_progress(&p, "preallocate", geom_size(def));
  for (uint32_t eid = 0; eid < def->extent_count && r == 0; eid++) {
    char rel[EXT_PATH_MAX], path[4096];
    ext_path(eid, rel);
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      r = -errno;
    else
      r = -posix_fallocate(fd, 0, (off_t) bytes);
    if (fd >= 0 && r == 0 && fsync(fd) < 0)
      r = -errno;
    if (fd >= 0)
      close(fd);
    if (r < 0)
      cli_error("%s: preallocate: %s", path, log_strerror(-r));
    progress_update(&p, (eid + 1) * bytes);
  }
  progress_end(&p, r == 0);
  return r;
}

static int cmd_create(int argc, char **argv)
{
  static const struct option opts[] = {
      {"dir", required_argument, NULL, 'd'},
      {"uuid", required_argument, NULL, 'u'},
      {"block-size", required_argument, NULL, OPT_BS},
      {"extent-size", required_argument, NULL, OPT_ES},
      {"extent-count", required_argument, NULL, OPT_EC},
      {"encrypted", no_argument, NULL, OPT_ENC},
      {"preallocate", no_argument, NULL, OPT_PREALLOC},
      {"help", no_argument, NULL, 'h'},
      {0}};
  struct proto_region def = {.block_size = GEOM_DEFAULT_BLOCK_SIZE,
                             .extent_size = GEOM_DEFAULT_EXTENT_SIZE,
                             .extent_count = 8};
  const char *dir = NULL;
  bool prealloc = false;
  uint64_t v;
  int c;
  while ((c = getopt_long(argc, argv, ":d:u:h", opts, NULL)) != -1) {
    switch (c) {
    case 'd': dir = optarg; break;
    case 'u':
      if (geom_uuid_parse(optarg, def.uuid) < 0 || geom_uuid_is_zero(def.uuid))
        return cli_usage("invalid uuid '%s'", optarg);
      break;
    case OPT_BS:
      if (cli_parse_num("--block-size", optarg, GEOM_MAX_BLOCK_SIZE, &v) < 0)
        return 2;
      def.block_size = (uint32_t) v;
      break;
    case OPT_ES:
      if (cli_parse_num("--extent-size", optarg, GEOM_MAX_EXTENT_SIZE, &v) < 0)
        return 2;
      def.extent_size = v;
      break;
    case OPT_EC:
      if (cli_parse_num("--extent-count", optarg, PROTO_MAX_EXTENTS, &v) < 0)
        return 2;
      def.extent_count = (uint32_t) v;
      break;
    case OPT_ENC: def.encrypted = 1; break;
    case OPT_PREALLOC: prealloc = true; break;
    case 'h': fputs(CREATE_HELP, stdout); return 0;
    default: return cli_bad_option(c, argv);
    }
  }
  if (optind < argc)
    return cli_usage("unexpected argument '%s'", argv[optind]);
  if (dir == NULL)
    return cli_usage("%s", "missing -d DIR");
  if (geom_check(&def) < 0)
    return cli_usage("%s", "invalid geometry: block size must be a power "
                           "of two in 512..65536");
  int r = region_create(dir, &def);
  if (r == -EEXIST)
    cli_error("%s: region already exists", dir);
  else if (r == -ENOTEMPTY)
    cli_error("%s: directory is not empty", dir);
  else if (r < 0)
    cli_error("%s: %s", dir, log_strerror(-r));
  if (r == 0 && prealloc)
    r = preallocate(dir, &def);
  if (r < 0)
    return 1;
  char uuid[37], size[32];
  geom_uuid_format(def.uuid, uuid);
  progress_bytes(geom_size(&def), size, sizeof size);
  printf("created %s: uuid %s, %s (%" PRIu64 " bytes), %" PRIu32
         " extents of %" PRIu64 " x %" PRIu32 "-byte blocks, %s\n",
         dir, uuid, size, geom_size(&def), def.extent_count, def.extent_size,
         def.block_size, def.encrypted ? "encrypted" : "unencrypted");
  return 0;
}

static int cmd_run(int argc, char **argv)
{
  static const struct option opts[] = {
      {"dir", required_argument, NULL, 'd'},
      {"port", required_argument, NULL, 'p'},
      {"address", required_argument, NULL, 'a'},
      {"log-level", required_argument, NULL, OPT_LOG},
      {"max-conns", required_argument, NULL, OPT_MAXC},
      {"idle-timeout", required_argument, NULL, OPT_IDLE},
      {"handshake-timeout", required_argument, NULL, OPT_HS},
      {"auth-key", required_argument, NULL, OPT_AUTH},
      {"help", no_argument, NULL, 'h'},
      {0}};
  static struct auth_key auth; /* static: not on a stack left unwiped */
  const char *auth_path = NULL;
  struct ds_server_opts so = {.addr = "0.0.0.0",
                              .max_conns = 64,
                              .idle_timeout = 120,
                              .handshake_timeout = 10};
  enum log_level level;
  uint64_t v;
  int c;
  while ((c = getopt_long(argc, argv, ":d:p:a:h", opts, NULL)) != -1) {
    switch (c) {
    case 'd': so.dir = optarg; break;
    case 'p':
      if (cli_parse_num("--port", optarg, 65535, &v) < 0)
        return 2;
      so.port = (uint16_t) v;
      break;
    case 'a': so.addr = optarg; break;
    case OPT_LOG:
      if (log_parse_level(optarg, &level) < 0)
        return cli_usage("invalid log level '%s'", optarg);
      log_set_level(level);
      break;
    case OPT_MAXC:
      if (cli_parse_num("--max-conns", optarg, 65536, &v) < 0)
        return 2;
      so.max_conns = (unsigned) v;
      break;
    case OPT_IDLE:
      if (cli_parse_num("--idle-timeout", optarg, 86400, &v) < 0)
        return 2;
      so.idle_timeout = (unsigned) v;
      break;
    case OPT_HS:
      if (cli_parse_num("--handshake-timeout", optarg, 86400, &v) < 0)
        return 2;
      so.handshake_timeout = (unsigned) v;
      break;
    case OPT_AUTH: auth_path = optarg; break;
    case 'h': fputs(RUN_HELP, stdout); return 0;
    default: return cli_bad_option(c, argv);
    }
  }
  if (optind < argc)
    return cli_usage("unexpected argument '%s'", argv[optind]);
  if (so.dir == NULL)
    return cli_usage("%s", "missing -d DIR");
  if (so.port == 0)
    return cli_usage("%s", "missing -p PORT");
  if (auth_path) {
    if (cli_load_auth_key(auth_path, &auth) < 0)
      return 1;
    so.auth = &auth;
  }
  int r = region_open(so.dir, &so.region);
  if (r < 0) {
    auth_key_wipe(&auth);
    cli_open_error(so.dir, r);
    return 1;
  }
  if (cli_listen(so.addr, so.port, &so.listen_fd) < 0) {
    auth_key_wipe(&auth);
    region_close(so.region);
    return 2;
  }
  so.have_listen_fd = true;
  r = ds_server_run(&so);
  auth_key_wipe(&auth);
  region_close(so.region);
  if (r < 0) {
    cli_error("%s: %s", so.dir, log_strerror(-r));
    return 1;
  }
  return 0;
}

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

static int cmd_dump(int argc, char **argv)
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

static int cmd_verify(int argc, char **argv)
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

/* export -s NAME: the snapshot to export, or NULL. */
static const char *export_snap;

/* Parse "-d DIR -o/-i FILE" (+ new-region options for import). */
static int xfer_args(int argc, char **argv, bool import, const char **dir,
                     const char **file, struct proto_region *def,
                     bool *geometry)
{
  static const struct option export_opts[] = {
      {"dir", required_argument, NULL, 'd'},
      {"output", required_argument, NULL, 'o'},
      {"snapshot", required_argument, NULL, 's'},
      {"help", no_argument, NULL, 'h'},
      {0}};
  static const struct option import_opts[] = {
      {"dir", required_argument, NULL, 'd'},
      {"input", required_argument, NULL, 'i'},
      {"uuid", required_argument, NULL, 'u'},
      {"block-size", required_argument, NULL, OPT_BS},
      {"extent-size", required_argument, NULL, OPT_ES},
      {"help", no_argument, NULL, 'h'},
      {0}};
  uint64_t v;
  int c;
  while ((c = getopt_long(argc, argv, import ? ":d:i:u:h" : ":d:o:s:h",
                          import ? import_opts : export_opts, NULL)) != -1) {
    switch (c) {
    case 'd': *dir = optarg; break;
    case 'o':
    case 'i': *file = optarg; break;
    case 's': export_snap = optarg; break;
    case 'u':
      if (geom_uuid_parse(optarg, def->uuid) < 0 ||
          geom_uuid_is_zero(def->uuid))
        return cli_usage("invalid uuid '%s'", optarg);
      *geometry = true;
      break;
    case OPT_BS:
      if (cli_parse_num("--block-size", optarg, GEOM_MAX_BLOCK_SIZE, &v) < 0)
        return 2;
      def->block_size = (uint32_t) v, *geometry = true;
      break;
    case OPT_ES:
      if (cli_parse_num("--extent-size", optarg, GEOM_MAX_EXTENT_SIZE, &v) < 0)
        return 2;
      def->extent_size = v, *geometry = true;
      break;
    case 'h': fputs(import ? IMPORT_HELP : EXPORT_HELP, stdout); return 0;
    default: return cli_bad_option(c, argv);
    }
  }
  if (optind < argc)
    return cli_usage("unexpected argument '%s'", argv[optind]);
  if (*dir == NULL)
    return cli_usage("%s", "missing -d DIR");
  if (*file == NULL)
    return cli_usage("%s", import ? "missing -i FILE" : "missing -o FILE");
  return -1; /* go on */
}

/* Say why an export or import failed, in one line. */
static void xfer_error(const char *dir, const char *file, int r)
{
  if (r == -EPERM || r == -EBUSY)
    cli_open_error(dir, r);
  else if (r == -EFBIG)
    cli_error("%s: image is larger than the region %s", file, dir);
  else
    cli_error("%s: %s", file, log_strerror(-r));
}

static int cmd_export(int argc, char **argv)
{
  const char *dir = NULL, *file = NULL;
  log_set_level(LOG_ERROR); /* one error line, ours, not region warnings */
  struct proto_region def = {0};
  bool geometry = false;
  int ret = xfer_args(argc, argv, false, &dir, &file, &def, &geometry);
  if (ret >= 0)
    return ret;
  struct region *r;
  if ((ret = region_open(dir, &r)) < 0) {
    cli_open_error(dir, ret);
    return 1;
  }
  if (region_def(r)->encrypted) {
    cli_open_error(dir, -EPERM);
    region_close(r);
    return 1;
  }
  int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    cli_error("%s: %s", file, log_strerror(errno));
    region_close(r);
    return 1;
  }
  struct progress p;
  uint64_t bad = 0;
  cli_progress(&p, "export", geom_size(region_def(r)));
  ret = xfer_export(r, export_snap, fd, &p, &bad);
  progress_end(&p, ret == 0);
  if (close(fd) < 0 && ret == 0)
    ret = -errno;
  region_close(r);
  if (ret == -EBADMSG)
    cli_error("%s: block %" PRIu64 ": data does not match its hash (run "
              "verify)",
              dir, bad);
  else if (ret == -ENOENT && export_snap)
    cli_error("%s: no snapshot '%s'", dir, export_snap);
  else if (ret < 0)
    xfer_error(dir, file, ret);
  return ret < 0 ? 1 : 0;
}

/* Open dir's region, or create one big enough for size bytes. */
static int import_open(const char *dir, uint64_t size, struct proto_region *def,
                       bool geometry, struct region **r, bool *blank)
{
  int ret = region_open(dir, r);
  *blank = false;
  if (ret == 0 && geometry) {
    region_close(*r);
    cli_error("%s: region exists: -u, --block-size and --extent-size only "
              "apply to a new region",
              dir);
    return 1;
  }
  if (ret == -ENOENT) {
    uint64_t ext = def->extent_size * def->block_size;
    uint64_t n = size / ext + (size % ext != 0);
    def->extent_count = (uint32_t) (n ? n : 1);
    if (n > PROTO_MAX_EXTENTS || geom_check(def) < 0) {
      cli_error("%s: no valid region geometry for this image", dir);
      return 1;
    }
    ret = region_create(dir, def);
    if (ret == 0)
      ret = region_open(dir, r);
    *blank = true;
  }
  if (ret < 0) {
    cli_open_error(dir, ret);
    return 1;
  }
  return 0;
}

static int cmd_import(int argc, char **argv)
{
  const char *dir = NULL, *file = NULL;
  log_set_level(LOG_ERROR); /* one error line, ours, not region warnings */
  struct proto_region def = {.block_size = GEOM_DEFAULT_BLOCK_SIZE,
                             .extent_size = GEOM_DEFAULT_EXTENT_SIZE};
  bool geometry = false, blank;
  int ret = xfer_args(argc, argv, true, &dir, &file, &def, &geometry);
  if (ret >= 0)
    return ret;
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  off_t size = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);
  if (fd < 0 || size < 0) {
    cli_error("%s: %s", file, log_strerror(errno));
    if (fd >= 0)
      close(fd);
    return 1;
  }
  struct region *r;
  if ((ret = import_open(dir, (uint64_t) size, &def, geometry, &r, &blank)) !=
      0) {
    close(fd);
    return ret;
  }
  if (region_def(r)->encrypted) {
    cli_open_error(dir, -EPERM);
    region_close(r);
    close(fd);
    return 1;
  }
  struct progress p;
  cli_progress(&p, "import", (uint64_t) size);
  ret = xfer_import(r, fd, (uint64_t) size, blank, &p);
  progress_end(&p, ret == 0);
  close(fd);
  region_close(r);
  if (ret < 0) {
    xfer_error(dir, file, ret);
    return 1;
  }
  printf("imported %s into %s (%" PRIu64 " bytes)\n", file, dir,
         (uint64_t) size);
  return 0;
}

static int cmd_clone(int argc, char **argv)
{
  static const struct option opts[] = {
      {"source", required_argument, NULL, 's'},
      {"dir", required_argument, NULL, 'd'},
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {"auth-key", required_argument, NULL, OPT_AUTH},
      {"help", no_argument, NULL, 'h'},
      {0}};
  char host[PARSE_HOST_MAX];
  static struct auth_key auth; /* static: not on a stack left unwiped */
  const char *auth_path = NULL;
  struct ds_clone_opts o = {.host = host, .timeout_s = DS_CLONE_TIMEOUT_S};
  uint64_t v;
  int c;
  log_set_level(LOG_ERROR); /* one error line, ours */
  while ((c = getopt_long(argc, argv, ":s:d:h", opts, NULL)) != -1) {
    switch (c) {
    case 's':
      if (parse_hostport(optarg, host, &o.port) < 0)
        return cli_usage("invalid --source '%s' (want HOST:PORT)", optarg);
      o.source = optarg;
      break;
    case 'd': o.dir = optarg; break;
    case OPT_TIMEOUT:
      if (cli_parse_num("--timeout", optarg, 86400, &v) < 0)
        return 2;
      o.timeout_s = (unsigned) v;
      break;
    case OPT_AUTH: auth_path = optarg; break;
    case 'h': fputs(CLONE_HELP, stdout); return 0;
    default: return cli_bad_option(c, argv);
    }
  }
  if (optind < argc)
    return cli_usage("unexpected argument '%s'", argv[optind]);
  if (o.source == NULL)
    return cli_usage("%s", "missing --source HOST:PORT");
  if (o.dir == NULL)
    return cli_usage("%s", "missing -d DIR");
  if (auth_path) {
    if (cli_load_auth_key(auth_path, &auth) < 0)
      return 1;
    o.auth = &auth;
  }
  o.progress = stderr;
  o.tty = isatty(STDERR_FILENO);
  struct ds_clone_result res;
  char err[512];
  int r = ds_clone(&o, &res, err, sizeof err);
  auth_key_wipe(&auth);
  if (r < 0) {
    cli_error("%s", err);
    return 1;
  }
  char uuid[37], size[32];
  geom_uuid_format(res.def.uuid, uuid);
  progress_bytes(res.bytes, size, sizeof size);
  printf("cloned %s into %s: uuid %s, %" PRIu32 " extents, %s (%" PRIu64
         " bytes) in %.1f s, %" PRIu32 " extents re-fetched, %s\n",
         o.source, o.dir, uuid, res.def.extent_count, size, res.bytes, res.secs,
         res.refetched, res.def.encrypted ? "encrypted" : "unencrypted");
  return 0;
}

static const char STATUS_HELP[] =
    "Usage: " PROG " status -p PORT [-a ADDR] [--auth-key FILE] "
    "[--timeout SECS]\n"
    "Ask a running downstairs (no data key needed): region uuid, geometry,\n"
    "encrypted, highest generation, connections, the active upstairs\n"
    "session and its last activity.  Exit 2 if nothing answers there.\n"
    "  -p, --port PORT        its port\n"
    "  -a, --address ADDR     its address (127.0.0.1)\n"
    "      --auth-key FILE    the key of its --auth-key (required if it has "
    "one)\n"
    "      --timeout SECS     give up after SECS (10)\n";

/* status: one running downstairs, as STATUS answers it. */
static int cmd_status(int argc, char **argv)
{
  static const struct option opts[] = {
      {"port", required_argument, NULL, 'p'},
      {"address", required_argument, NULL, 'a'},
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {"auth-key", required_argument, NULL, OPT_AUTH},
      {"help", no_argument, NULL, 'h'},
      {0}};
  static struct auth_key auth; /* static: not on a stack left unwiped */
  const char *addr = "127.0.0.1", *auth_path = NULL;
  uint64_t v, port = 0, tmo = 10;
  struct proto_status st;
  char err[512], uuid[37], inst[37];
  int c, r;

  log_set_level(LOG_ERROR);
  while ((c = getopt_long(argc, argv, ":p:a:h", opts, NULL)) != -1) {
    switch (c) {
    case 'p':
      if (cli_parse_num("--port", optarg, 65535, &port) < 0)
        return 2;
      break;
    case 'a': addr = optarg; break;
    case OPT_TIMEOUT:
      if (cli_parse_num("--timeout", optarg, 3600, &v) < 0)
        return 2;
      tmo = v;
      break;
    case OPT_AUTH: auth_path = optarg; break;
    case 'h': fputs(STATUS_HELP, stdout); return 0;
    default: return cli_bad_option(c, argv);
    }
  }
  if (optind < argc)
    return cli_usage("unexpected argument '%s'", argv[optind]);
  if (port == 0)
    return cli_usage("%s", "missing -p PORT");
  if (auth_path && cli_load_auth_key(auth_path, &auth) < 0)
    return 1;
  r = ds_status_query(addr, (uint16_t) port, auth_path ? &auth : NULL,
                      (unsigned) tmo, &st, err, sizeof err);
  auth_key_wipe(&auth);
  if (r < 0) {
    cli_error("%s", err);
    return r == -EACCES || r == -EPROTO ? 1 : 2;
  }
  geom_uuid_format(st.region.uuid, uuid);
  geom_uuid_format(st.instance, inst);
  printf("region %s (instance %s): %" PRIu32 " extents of %" PRIu64
         " x %" PRIu32 "-byte blocks, %s\n",
         uuid, inst, st.region.extent_count, st.region.extent_size,
         st.region.block_size,
         st.region.encrypted ? "encrypted" : "unencrypted");
  printf("highest generation %" PRIu64 ", %" PRIu32 " connection%s\n",
         st.highest_gen, st.connections, st.connections == 1 ? "" : "s");
  if (st.has_active)
    printf("upstairs: session %016" PRIx64 " gen %" PRIu64 " from %s, "
           "last activity %.1f s ago\n",
           st.active_session, st.highest_gen, st.active_peer,
           (double) st.idle_ms / 1000.0);
  else
    printf("upstairs: none active\n");
  return 0;
}

int main(int argc, char **argv)
{
  static const struct {
    const char *name;
    int (*fn)(int, char **);
  } cmds[] = {{"create", cmd_create}, {"run", cmd_run},
              {"dump", cmd_dump},     {"verify", cmd_verify},
              {"export", cmd_export}, {"import", cmd_import},
              {"clone", cmd_clone},   {"status", cmd_status}};
  log_set_prog(PROG);
  if (argc < 2) {
    fputs(USAGE, stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fputs(USAGE, stdout);
    return 0;
  }
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (strcmp(argv[1], cmds[i].name) == 0) {
      cli_cmd = cmds[i].name;
      opterr = 0;
      optind = 1; /* parse argv[1..]: the subcommand plays argv[0] */
      return cmds[i].fn(argc - 1, argv + 1);
    }
  fprintf(stderr, "%s: unknown command '%s' (try '%s --help')\n", PROG, argv[1],
          PROG);
  return 2;
}
