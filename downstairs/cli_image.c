/* crucible-downstairs: the subcommands between a stopped, unencrypted
 * region and a raw image: export (the region or one of its snapshots to
 * a file) and import (a file into a region, created if missing).
 * Dispatched by main.c; helpers in cli.c, the copying in xfer.c. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "../common/geom.h"
#include "../common/log.h"
#include "cli.h"
#include "progress.h"
#include "region.h"
#include "xfer.h"

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

int cmd_export(int argc, char **argv)
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

int cmd_import(int argc, char **argv)
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
