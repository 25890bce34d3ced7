/* crucible-downstairs: the subcommands (cli_serve.c, cli_inspect.c,
 * cli_image.c, cli_remote.c; main.c dispatches) and the helpers they
 * share (cli.c). */
#ifndef CRUCIBLE_DS_CLI_H
#define CRUCIBLE_DS_CLI_H

#include <stdint.h>

#include "progress.h"

#define PROG "crucible-downstairs"

struct auth_key;

/* The subcommand being run, for messages ("" before one is chosen). */
extern const char *cli_cmd;

/* One line on stderr: "crucible-downstairs: CMD: message". */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Usage error: one line naming the problem and --help; returns 2. */
int cli_usage(const char *fmt, const char *arg);
/* getopt's '?' and ':' results (c) as a usage error; returns 2. */
int cli_bad_option(int c, char **argv);
/* A whole number in 1..max for option opt, else a usage error and -1. */
int cli_parse_num(const char *opt, const char *s, uint64_t max, uint64_t *out);
/* Say in one line why region_open(dir) failed with r. */
void cli_open_error(const char *dir, int r);
/* --auth-key FILE into *k, or one error line and -1. */
int cli_load_auth_key(const char *path, struct auth_key *k);
/* A TCP socket bound to addr (an IP address or a host name) and port and
 * listening, in *fd; or one error line ("listen ADDR:PORT: address
 * already in use", "cannot resolve address 'X': ...") and -1. */
int cli_listen(const char *addr, uint16_t port, int *fd);
/* Progress on stderr, in the style its kind (terminal or not) wants. */
void cli_progress(struct progress *p, const char *label, uint64_t total);

/* Long options without a short letter, for every subcommand's
 * getopt_long table. */
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

/* The subcommands: argv[0] is the subcommand's name, optind 1; each
 * returns the exit status (0 ok, 1 failure, 2 usage). */
int cmd_create(int argc, char **argv); /* cli_serve.c */
int cmd_run(int argc, char **argv);
int cmd_dump(int argc, char **argv); /* cli_inspect.c */
int cmd_verify(int argc, char **argv);
int cmd_export(int argc, char **argv); /* cli_image.c */
int cmd_import(int argc, char **argv);
int cmd_clone(int argc, char **argv); /* cli_remote.c */
int cmd_status(int argc, char **argv);

#endif
