/* crucible-downstairs: command line: the usage text and the dispatch to
 * the subcommands (cli.h: create and run in cli_serve.c, dump and verify
 * in cli_inspect.c, export and import in cli_image.c, clone and status in
 * cli_remote.c).
 *
 * Exit codes: 0 ok, 1 failure, 2 usage.  Errors are one line on stderr:
 *   crucible-downstairs: create: DIR: region already exists
 * Normal output (summaries, dump, verify results) goes to stdout;
 * progress goes to stderr (downstairs/progress.h: redrawn on a terminal,
 * a plain line every 10 s otherwise, and a final summary line).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "../common/log.h"
#include "cli.h"

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
