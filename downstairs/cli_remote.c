/* crucible-downstairs: the subcommands that talk to a running downstairs
 * over the network: clone (copy its region into a new directory, clone.c)
 * and status (its region and connections over the STATUS role,
 * status.c).  Dispatched by main.c; helpers in cli.c. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "../common/auth.h"
#include "../common/geom.h"
#include "../common/log.h"
#include "../common/parse.h"
#include "cli.h"
#include "clone.h"
#include "progress.h"
#include "status.h"

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

int cmd_clone(int argc, char **argv)
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
int cmd_status(int argc, char **argv)
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
