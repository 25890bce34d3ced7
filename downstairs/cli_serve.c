/* crucible-downstairs: the subcommands that make and serve a region:
 * create (a new region, optionally preallocated with progress) and run
 * (serve it until SIGINT/SIGTERM).  Dispatched by main.c; helpers in
 * cli.c. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "../common/auth.h"
#include "../common/geom.h"
#include "../common/log.h"
#include "cli.h"
#include "extent.h"
#include "progress.h"
#include "region.h"
#include "server.h"

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

int cmd_create(int argc, char **argv)
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

int cmd_run(int argc, char **argv)
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
