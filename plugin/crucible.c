/* crucible-c: the nbdkit plugin entry points.
 *
 * nbdkit ./crucible.so downstairs=H:P downstairs=H:P downstairs=H:P
 *        [key=BASE64|-|+FILE] [gen=N] [write-quorum=2|3] [verify=fresh|one|all]
 *        [timeout=SECS] [state=FILE [accept-rollback=true]] [stats=FILE]
 *        [auth-key=+FILE|-] [max-behind=SIZE] [admin=PATH] [snapshot=NAME]
 *
 * One upstairs per nbdkit process, shared by every connection (so
 * can_multi_conn).  Everything real lives in upstairs.c; this file parses
 * parameters, maps errors to what nbdkit passes through and forwards log
 * lines.  Life cycle (docs/DESIGN.md, "nbdkit plugin surface"): allocate in
 * get_ready, start the loop thread in after_fork (a thread started earlier
 * dies when nbdkit forks), stop it in cleanup.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <openssl/crypto.h>

#include "../common/base64.h"
#include "../common/geom.h"
#include "../common/log.h"
#include "../common/parse.h"
#include "replygate.h"
#include "syslogline.h"
#include "upstairs.h"

#define CRUCIBLE_VERSION "0.1.0"

/* nbdkit -D crucible.io=1 (etc.) sets these. */
NBDKIT_DLL_PUBLIC int crucible_debug_io = 0;
NBDKIT_DLL_PUBLIC int crucible_debug_net = 0;
NBDKIT_DLL_PUBLIC int crucible_debug_repair = 0;

/* nbdkit 1.32.4 to 1.33.9 (Debian bookworm has 1.32.5) abort() in
 * raw_send_socket (`sock >= 0') when a client hangs up with several
 * replies of one connection in flight: one worker thread's send fails
 * with EPIPE and closes the socket while another, already past its
 * status check, waits for the write lock, then sends to fd -1.  It kills
 * nbdkit and every other client with it; nbdcopy hangs up like that at
 * its first EIO (any plugin: `nbdcopy -- [ nbdkit --filter=error pattern
 * 50M error-pread-rate=0.05 ] null:` aborts every time here).  Fixed
 * upstream by commit 9d82aa4f ("server: Don't assert on send if client
 * hangs up early", 1.33.10).  On those versions requests still run in
 * parallel, but their returns pass the reply gate (replygate.h): an
 * error waits until every earlier reply is out, and for a while after it
 * returns go one at a time.  parallel=false serializes each connection
 * instead (one worker, no race at all, at 0.31x rand read 4k qd32). */
#if NBDKIT_VERSION_MAJOR == 1 &&                                  \
    ((NBDKIT_VERSION_MINOR == 32 && NBDKIT_VERSION_MICRO >= 4) || \
     (NBDKIT_VERSION_MINOR == 33 && NBDKIT_VERSION_MICRO < 10))
#define CRUCIBLE_SEND_RACE 1
#else
#define CRUCIBLE_SEND_RACE 0
#endif

/* The gate's spacing and how long it stays after an error (replygate.h):
 * 20 ms is ~1000 times a reply's send here; 2 s covers a client's exit
 * after an error. */
#define CRUCIBLE_GATE_SPACE_NS (20u * 1000 * 1000)
#define CRUCIBLE_GATE_HOLD_NS (2000u * 1000 * 1000)
static struct replygate gate;

static struct up_config cfg;
static unsigned n_downstairs;
static bool gen_given;    /* gen= (refused with snapshot=) */
static int parallel = -1; /* parallel=: -1 unset (see crucible_thread_model) */
static struct upstairs *up;
static int dummy_handle;

/* Is fd 2 /dev/null?  Then nbdkit forked into the background without -v
 * and sends its own messages to syslog (server/background.c and
 * log.c of nbdkit 1.32). */
static bool crucible_stderr_is_null(void)
{
  struct stat a, b;

  return fstat(STDERR_FILENO, &a) == 0 && stat("/dev/null", &b) == 0 &&
         S_ISCHR(a.st_mode) && a.st_rdev == b.st_rdev;
}

/* Forward common/log.h lines to nbdkit.  nbdkit 1.32 has two channels
 * for plugins: nbdkit_error (always shown, as "error:") and nbdkit_debug
 * (only with -v).  Status worth seeing without -v (a downstairs active,
 * degraded, repaired) is not an error, so warnings and notices go where
 * nbdkit's own messages go, in its format but with their own level:
 * stderr ("nbdkit: crucible: notice: ...") or, when nbdkit runs in the
 * background, syslog at LOG_WARNING / LOG_NOTICE. */
static void crucible_log_sink(enum log_level level, const char *msg)
{
  if (level == LOG_ERROR) {
    nbdkit_error("%s", msg);
  } else if (level == LOG_WARN || level == LOG_NOTICE) {
    const char *tag = level == LOG_WARN ? "warning" : "notice";
    if (crucible_stderr_is_null())
      syslog_line(level == LOG_WARN, tag, msg);
    else
      fprintf(stderr, "nbdkit: crucible: %s: %s\n", tag, msg);
  } else {
    nbdkit_debug("%s", msg);
  }
}

static void crucible_load(void)
{
  log_set_sink(crucible_log_sink);
  log_set_level(LOG_DEBUG); /* nbdkit_debug shows only with -v */
  rg_init(&gate, 0, 0);     /* armed in config_complete */
}

/* Unload: wipe the key copy if get_ready never consumed it. */
static void crucible_unload(void)
{
  crypt_wipe(cfg.key, sizeof cfg.key);
  auth_key_wipe(&cfg.auth);
  rg_destroy(&gate);
}

/* A secret parameter (key=, auth-key=) as nbdkit_read_password takes it
 * (VALUE, -, -FD, +FILE) into *text (caller wipes and frees).  +FILE is
 * read here so that an error names the parameter. */
/* A secret file readable by group or others gets a warning (as ssh
 * warns of an unprotected private key); it is still used. */
static void crucible_check_secret_mode(const char *param, int fd,
                                       const char *path)
{
  struct stat st;

  if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0)
    log_warn("%s=+%s: the file is readable by group or others (mode %03o): "
             "chmod 600 it",
             param, path, (unsigned) (st.st_mode & 0777));
}

static int crucible_read_secret(const char *param, const char *value,
                                char **text)
{
  char buf[4096];
  size_t len = 0;
  int fd;

  if (value[0] != '+')
    return nbdkit_read_password(value, text);
  fd = open(value + 1, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    uint8_t probe[CRYPT_KEY_LEN + 4];
    size_t plen = 0;
    /* One base64 key in 64 starts with '+': given inline, it reads as
     * +FILE.  Never echo what may be a key. */
    if (e == ENOENT && base64_decode(value, probe, sizeof probe, &plen) == 0 &&
        plen == CRYPT_KEY_LEN) {
      crypt_wipe(probe, sizeof probe);
      nbdkit_error("%s=+...: no such file, and the value looks like an "
                   "inline key: a key that starts with '+' must be given "
                   "in a file (%s=+FILE)",
                   param, param);
      return -1;
    }
    crypt_wipe(probe, sizeof probe);
    nbdkit_error("%s=+%s: %s", param, value + 1, log_strerror(e));
    return -1;
  }
  crucible_check_secret_mode(param, fd, value + 1);
  while (len < sizeof buf - 1) {
    ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      nbdkit_error("%s=+%s: %s", param, value + 1, log_strerror(errno));
      close(fd);
      OPENSSL_cleanse(buf, sizeof buf);
      return -1;
    }
    if (n == 0)
      break;
    len += (size_t) n;
  }
  close(fd);
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
    len--; /* as nbdkit_read_password does for a file */
  buf[len] = '\0';
  *text = strdup(buf);
  OPENSSL_cleanse(buf, sizeof buf);
  if (!*text) {
    nbdkit_error("%s: out of memory", param);
    return -1;
  }
  return 0;
}

/* key=BASE64 | - | +FILE: exactly 32 bytes; every copy wiped. */
static int crucible_config_key(const char *value)
{
  char *text = NULL;
  uint8_t buf[64];
  size_t len = 0;
  int r;

  if (crucible_read_secret("key", value, &text) == -1)
    return -1;
  r = base64_decode(text, buf, sizeof buf, &len);
  OPENSSL_cleanse(text, strlen(text));
  free(text);
  if (r < 0 || len != CRYPT_KEY_LEN) {
    if (r < 0 && r != -ENOSPC)
      nbdkit_error("key: not valid base64");
    else
      nbdkit_error("key must be 32 bytes (base64), got %zu",
                   r == -ENOSPC ? sizeof buf + 1 : len);
    crypt_wipe(buf, sizeof buf);
    return -1;
  }
  memcpy(cfg.key, buf, CRYPT_KEY_LEN);
  crypt_wipe(buf, sizeof buf);
  cfg.have_key = true;
  return 0;
}

/* auth-key=+FILE | - (or, discouraged, the secret itself): 16..256 bytes,
 * every copy wiped. */
static int crucible_config_auth_key(const char *value)
{
  char *text = NULL;
  const char *why = NULL;
  int r;

  if (crucible_read_secret("auth-key", value, &text) == -1)
    return -1;
  r = auth_key_set(&cfg.auth, text, strlen(text), &why);
  OPENSSL_cleanse(text, strlen(text));
  free(text);
  if (r < 0) {
    nbdkit_error("auth-key: %s", why ? why : "invalid");
    return -1;
  }
  return 0;
}

/* key=value as a whole decimal number in lo..hi, else one error line
 * naming the parameter and what it accepts. */
static int crucible_config_num(const char *key, const char *value, uint64_t lo,
                               uint64_t hi, const char *unit, uint64_t *out)
{
  if (parse_u64(value, hi, out) < 0 || *out < lo) {
    nbdkit_error("%s=%s: expected a number in %llu..%llu%s", key, value,
                 (unsigned long long) lo, (unsigned long long) hi, unit);
    return -1;
  }
  return 0;
}

/* key=BOOL: 1 or 0, or one error line naming the parameter.  The words
 * nbdkit_parse_bool takes, which would say only "could not decipher
 * boolean" without the parameter. */
static int crucible_config_bool(const char *key, const char *value)
{
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};

  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    if (strcasecmp(value, yes[i]) == 0)
      return 1;
    if (strcasecmp(value, no[i]) == 0)
      return 0;
  }
  nbdkit_error("%s=%s: expected true or false", key, value);
  return -1;
}

/* key=FILE as an absolute path into buf (nbdkit changes directory). */
static int crucible_config_path(const char *key, const char *value, char *buf,
                                size_t size)
{
  char *abs;

  if (!value[0]) {
    nbdkit_error("%s=: path empty", key);
    return -1;
  }
  abs = nbdkit_absolute_path(value);
  if (!abs)
    return -1;
  if (strlen(abs) + sizeof ".tmp" > size) {
    nbdkit_error("%s=%s: path empty or too long", key, value);
    free(abs);
    return -1;
  }
  snprintf(buf, size, "%s", abs);
  free(abs);
  return 0;
}

/* One key=value parameter. */
static int crucible_config(const char *key, const char *value)
{
  uint64_t u;

  if (strcmp(key, "downstairs") == 0) {
    if (n_downstairs >= UP_DOWNSTAIRS) {
      n_downstairs++; /* counted, so config_complete says how many */
      return 0;
    }
    if (parse_hostport(value, cfg.host[n_downstairs], &cfg.port[n_downstairs]) <
            0 ||
        cfg.port[n_downstairs] == 0) {
      nbdkit_error("downstairs=%s: expected HOST:PORT", value);
      return -1;
    }
    n_downstairs++;
  } else if (strcmp(key, "key") == 0) {
    return crucible_config_key(value);
  } else if (strcmp(key, "auth-key") == 0) {
    return crucible_config_auth_key(value);
  } else if (strcmp(key, "gen") == 0) {
    if (crucible_config_num(key, value, 1, 0xffffffffu, "", &cfg.gen) < 0)
      return -1;
    gen_given = true;
  } else if (strcmp(key, "snapshot") == 0) {
    if (!proto_snap_name_ok(value)) {
      nbdkit_error("snapshot=%s: not a snapshot name (1 to %d of "
                   "A-Z a-z 0-9 . _ -, not starting with '.')",
                   value, PROTO_SNAP_NAME_LEN - 1);
      return -1;
    }
    snprintf(cfg.snapshot, sizeof cfg.snapshot, "%s", value);
  } else if (strcmp(key, "write-quorum") == 0) {
    if (crucible_config_num(key, value, 2, 3, "", &u) < 0)
      return -1;
    cfg.write_quorum = (unsigned) u;
  } else if (strcmp(key, "verify") == 0) {
    if (strcmp(value, "fresh") == 0)
      cfg.verify = UP_VERIFY_FRESH;
    else if (strcmp(value, "one") == 0)
      cfg.verify = UP_VERIFY_ONE;
    else if (strcmp(value, "all") == 0)
      cfg.verify = UP_VERIFY_ALL;
    else {
      nbdkit_error("verify=%s: expected fresh, one or all", value);
      return -1;
    }
  } else if (strcmp(key, "state") == 0) {
    return crucible_config_path(key, value, cfg.state_path,
                                sizeof cfg.state_path);
  } else if (strcmp(key, "stats") == 0) {
    return crucible_config_path(key, value, cfg.stats_path,
                                sizeof cfg.stats_path);
  } else if (strcmp(key, "admin") == 0) {
    return crucible_config_path(key, value, cfg.admin_path,
                                sizeof cfg.admin_path);
  } else if (strcmp(key, "accept-rollback") == 0) {
    int b = crucible_config_bool(key, value);
    if (b < 0)
      return -1;
    cfg.accept_rollback = b;
  } else if (strcmp(key, "parallel") == 0) {
    if ((parallel = crucible_config_bool(key, value)) < 0)
      return -1;
  } else if (strcmp(key, "timeout") == 0) {
    if (crucible_config_num(key, value, 1, 3600, " seconds", &u) < 0)
      return -1;
    cfg.timeout = (unsigned) u;
  } else if (strcmp(key, "max-behind") == 0) {
    int64_t sz = nbdkit_parse_size(value);
    if (sz < 0)
      return -1;
    if ((uint64_t) sz < UP_MIN_BEHIND || (uint64_t) sz > UP_MAX_BEHIND) {
      nbdkit_error("max-behind=%s: must be 16M..64G", value);
      return -1;
    }
    cfg.max_behind = (uint64_t) sz;
  } else {
    nbdkit_error("unknown parameter '%s' (nbdkit crucible --help lists "
                 "them)",
                 key);
    return -1;
  }
  return 0;
}

/* A downstairs= host name must resolve now: a name that does not exist
 * is a mistake to report at configuration, not an outage to wait out.
 * A temporary failure (EAI_AGAIN: no DNS yet) is left to the reconnects. */
static int crucible_check_host(const char *host, uint16_t port)
{
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
  struct addrinfo *res = NULL;
  int r = getaddrinfo(host, NULL, &hints, &res);

  if (res)
    freeaddrinfo(res);
  if (r == EAI_NONAME || r == EAI_FAIL || r == EAI_NODATA) {
    nbdkit_error("downstairs=%s:%u: cannot resolve host '%s': %s", host, port,
                 host, gai_strerror(r));
    return -1;
  }
  return 0;
}

/* Three downstairs=, all different: one replica named twice would count
 * twice toward every quorum (and its two connections would take over
 * from each other: the volume would fence itself). */
static int crucible_config_complete(void)
{
  if (n_downstairs != UP_DOWNSTAIRS) {
    nbdkit_error("need exactly 3 downstairs=, got %u", n_downstairs);
    return -1;
  }
  for (unsigned i = 0; i < UP_DOWNSTAIRS; i++)
    if (crucible_check_host(cfg.host[i], cfg.port[i]) < 0)
      return -1;
  for (unsigned i = 0; i < UP_DOWNSTAIRS; i++)
    for (unsigned j = i + 1; j < UP_DOWNSTAIRS; j++)
      if (cfg.port[i] == cfg.port[j] &&
          strcasecmp(cfg.host[i], cfg.host[j]) == 0) {
        nbdkit_error("downstairs=%s:%u given twice: the three downstairs= "
                     "must be three different replicas",
                     cfg.host[i], cfg.port[i]);
        return -1;
      }
  /* A snapshot reader activates nothing (gen= has no meaning) and
   * never flushes (state= records the live volume's flushes: a reader
   * would leave it behind the volume and its next start would see a
   * rollback). */
  if (cfg.snapshot[0] &&
      (gen_given || cfg.state_path[0] || cfg.accept_rollback)) {
    nbdkit_error("snapshot=%s: cannot be combined with %s (a snapshot is "
                 "served read-only and activates nothing)",
                 cfg.snapshot,
                 gen_given           ? "gen="
                 : cfg.state_path[0] ? "state="
                                     : "accept-rollback=");
    return -1;
  }
  /* A snapshot reader is what backups and clones copy from, and nbdcopy
   * hangs up with reads in flight whenever its other side fails (a full
   * or failing destination, the clone's nbdkit killed): on the racy
   * versions that aborted a parallel reader 4 times in 4, gate or no
   * gate (no error of ours precedes it; test-snapshot-clone).  So there
   * its connections run one request at a time unless parallel=true is
   * given; nbdcopy's four connections keep a copy at 0.8-0.9x. */
  if (parallel < 0)
    parallel = !(CRUCIBLE_SEND_RACE && cfg.snapshot[0]);
  if (CRUCIBLE_SEND_RACE && parallel != 0)
    rg_init(&gate, CRUCIBLE_GATE_SPACE_NS, CRUCIBLE_GATE_HOLD_NS);
  return 0;
}

/* One line per parameter (nbdkit crucible --help). */
#define crucible_config_help                                                 \
  "downstairs=HOST:PORT  (exactly 3) A downstairs serving a replica.\n"      \
  "key=BASE64|-|+FILE    32-byte AES key; omit for an unencrypted region.\n" \
  "gen=N                 Generation to activate (default: highest + 1).\n"   \
  "write-quorum=2|3      Acks needed before a write completes (2).\n"        \
  "verify=fresh|one|all  Data from one replica, versions from the others\n"  \
  "                      (fresh); one: no freshness check (weaker: a\n"      \
  "                      rolled-back replica can serve old data); all.\n"    \
  "timeout=SECS          Downstairs timeout in seconds, 1..3600 (30).\n"     \
  "max-behind=SIZE       Fault a downstairs that lags by SIZE (512M).\n"     \
  "state=FILE            Record flushes; refuse a whole-volume rollback.\n"  \
  "accept-rollback=true  Start even if state= detects a rollback.\n"         \
  "stats=FILE            Rewrite FILE every second with JSON statistics.\n"  \
  "admin=PATH            Unix socket (mode 600) for crucible-admin.\n"       \
  "parallel=true|false   Parallel requests per connection (true; false\n"    \
  "                      with snapshot= on nbdkit 1.32.4-1.33.9).\n"         \
  "auth-key=+FILE|-      Key the downstairs' --auth-key: prove it, demand "  \
  "proof.\n"                                                                 \
  "snapshot=NAME         Serve snapshot NAME read-only (no gen=, state=).\n" \
  "Debug: -D crucible.io=1 -D crucible.net=1 -D crucible.repair=1"

static void crucible_dump_plugin(void)
{
  printf("crucible_version=%s\n", CRUCIBLE_VERSION);
  printf("crucible_protocol=%d\n", PROTO_VERSION);
}

/* Validate and allocate: the last place errors reach the user early. */
static int crucible_get_ready(void)
{
  int r;

  cfg.debug_io = crucible_debug_io != 0;
  cfg.debug_net = crucible_debug_net != 0;
  cfg.debug_repair = crucible_debug_repair != 0;
  /* A core dump (or a debugger attached by the same user) of this process
   * would hold the expanded AES key in plain text: with a key, make the
   * process non-dumpable (no core file, no ptrace by non-root). */
  if (cfg.have_key && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
    nbdkit_debug("prctl(PR_SET_DUMPABLE): %s", log_strerror(errno));
  r = up_new(&cfg, &up);
  crypt_wipe(cfg.key, sizeof cfg.key);
  auth_key_wipe(&cfg.auth);
  if (r < 0) {
    nbdkit_error("cannot set up the upstairs: %s", log_strerror(-r));
    return -1;
  }
  return 0;
}

/* Start the loop thread (after nbdkit forked) and activate. */
static int crucible_after_fork(void)
{
  /* Request and frame buffers of up to a few MiB come and go on every
   * write: nbdkit mallocs each request's buffer and we malloc each job's
   * frame.  Keep them on the heap (glibc's default would mmap and unmap
   * each one and fault its pages in again: 7.6% of nbdkit's CPU on seq
   * write) and keep freed memory up to 64 MiB per arena instead of
   * trimming after every burst; the same rule as the downstairs
   * (docs/PERFORMANCE.md, Decisions 7 and 18). */
  mallopt(M_MMAP_THRESHOLD, 8 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
  if (up_start(up) < 0) {
    nbdkit_error("%s", up_error(up));
    return -1;
  }
  return 0;
}

/* Stop: flush, then stop the loop.  nbdkit does not flush at close or
 * exit (SIGTERM, SIGINT, --exit-with-parent): without this, writes that
 * no client flushed leave every extent they touched dirty on every
 * downstairs, and the next start reconciles them all.  up_flush is
 * bounded by timeout; it fails at once if the volume never ran. */
static void crucible_cleanup(void)
{
  int r;

  /* A snapshot reader wrote nothing: nothing to flush. */
  if (up && up_running(up) && !up_snapshot_mode(up)) {
    r = up_flush(up);
    if (r < 0)
      nbdkit_error("flush at stop: %s (extents written since the last "
                   "flush stay dirty and are reconciled at the next start)",
                   log_strerror(-r));
    else
      nbdkit_debug("flushed at stop");
  }
  up_free(up);
  up = NULL;
}

static void *crucible_open(int readonly)
{
  (void) readonly;
  return &dummy_handle;
}

static int64_t crucible_get_size(void *handle)
{
  (void) handle;
  return (int64_t) up_size(up);
}

static int crucible_block_size(void *handle, uint32_t *minimum,
                               uint32_t *preferred, uint32_t *maximum)
{
  uint32_t bs = up_block_size(up);
  (void) handle;

  /* Advertise 512-byte sectors, not the region block size: clients that
   * honour the minimum (libnbd strict mode, nbdfuse under mkfs, a kernel
   * /dev/nbd0 exported as a USB disk to hosts that expect 512-byte
   * sectors) then just work, and the rare sub-block IO is done by
   * read-modify-write.  The preferred size steers everyone else to whole
   * blocks. */
  *minimum = GEOM_MIN_BLOCK_SIZE;
  *preferred = bs > 4096 ? bs : 4096;
  *maximum = 0xffffffff;
  return 0;
}

/* A request succeeded (the reply gate, see CRUCIBLE_SEND_RACE). */
static int crucible_ok(void)
{
  rg_return(&gate, false);
  return 0;
}

/* Set errno from a negative return, as one nbdkit passes through. */
static int crucible_err(int r)
{
  rg_return(&gate, true);
  switch (-r) {
  case EIO:
  case EROFS:
  case ENOSPC:
  case ENOMEM:
  case EPERM: errno = -r; break;
  default: errno = EIO;
  }
  return -1;
}

static int crucible_pread(void *handle, void *buf, uint32_t count,
                          uint64_t offset, uint32_t flags)
{
  int r = up_read(up, buf, count, offset);
  (void) handle;
  (void) flags;
  return r < 0 ? crucible_err(r) : crucible_ok();
}

static int crucible_pwrite(void *handle, const void *buf, uint32_t count,
                           uint64_t offset, uint32_t flags)
{
  int r = up_write(up, buf, count, offset, flags & NBDKIT_FLAG_FUA);
  (void) handle;
  return r < 0 ? crucible_err(r) : crucible_ok();
}

static int crucible_flush(void *handle, uint32_t flags)
{
  int r = up_flush(up);
  (void) handle;
  (void) flags;
  return r < 0 ? crucible_err(r) : crucible_ok();
}

static int crucible_trim(void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags)
{
  int r = up_trim(up, count, offset, flags & NBDKIT_FLAG_FUA);
  (void) handle;
  return r < 0 ? crucible_err(r) : crucible_ok();
}

/* Zero = trim: unwritten blocks read as zeroes. */
static int crucible_zero(void *handle, uint32_t count, uint64_t offset,
                         uint32_t flags)
{
  int r = up_trim(up, count, offset, flags & NBDKIT_FLAG_FUA);
  (void) handle;
  return r < 0 ? crucible_err(r) : crucible_ok();
}

/* One run of up_extents into nbdkit's list. */
static int crucible_add_extent(void *arg, uint64_t off, uint64_t len, bool zero)
{
  if (nbdkit_add_extent(arg, off, len,
                        zero ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO : 0) < 0)
    return errno ? -errno : -EIO;
  return 0;
}

/* Block status: holes where every answering replica holds nothing. */
static int crucible_extents(void *handle, uint32_t count, uint64_t offset,
                            uint32_t flags, struct nbdkit_extents *extents)
{
  int r = up_extents(up, count, offset, flags & NBDKIT_FLAG_REQ_ONE,
                     crucible_add_extent, extents);
  (void) handle;
  return r < 0 ? crucible_err(r) : crucible_ok();
}

static int crucible_can_true(void *handle)
{
  (void) handle;
  return 1;
}

static int crucible_can_fua(void *handle)
{
  (void) handle;
  return cfg.snapshot[0] ? NBDKIT_FUA_NONE : NBDKIT_FUA_NATIVE;
}

/* Write, flush, trim, zero: not on a snapshot (read-only export). */
static int crucible_can_change(void *handle)
{
  (void) handle;
  return !cfg.snapshot[0];
}

/* Block status: not on a snapshot.  The downstairs' block map is the
 * live volume's, not the snapshot's: a block written in the snapshot and
 * trimmed live since would be reported a hole, and nbdcopy (which skips
 * holes) would silently lose it.  Without extents every block is data. */
static int crucible_can_extents(void *handle)
{
  (void) handle;
  return !cfg.snapshot[0];
}

/* The most a connection may get; .thread_model may lower it. */
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* The thread model (nbdkit asks after config_complete): parallel unless
 * parallel=false (see CRUCIBLE_SEND_RACE for the price measured). */
static int crucible_thread_model(void)
{
  return parallel != 0 ? NBDKIT_THREAD_MODEL_PARALLEL
                       : NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS;
}

static struct nbdkit_plugin plugin = {
    .name = "crucible",
    .version = CRUCIBLE_VERSION,
    .longname = "crucible replicated encrypted block store",
    .load = crucible_load,
    .unload = crucible_unload,
    .config = crucible_config,
    .config_complete = crucible_config_complete,
    .config_help = crucible_config_help,
    .dump_plugin = crucible_dump_plugin,
    .thread_model = crucible_thread_model,
    .get_ready = crucible_get_ready,
    .after_fork = crucible_after_fork,
    .cleanup = crucible_cleanup,
    .open = crucible_open,
    .get_size = crucible_get_size,
    .block_size = crucible_block_size,
    .pread = crucible_pread,
    .pwrite = crucible_pwrite,
    .flush = crucible_flush,
    .trim = crucible_trim,
    .zero = crucible_zero,
    .can_write = crucible_can_change,
    .can_multi_conn = crucible_can_true,
    .can_flush = crucible_can_change,
    .can_fua = crucible_can_fua,
    .can_trim = crucible_can_change,
    .can_zero = crucible_can_change,
    .can_extents = crucible_can_extents,
    .extents = crucible_extents,
    .errno_is_preserved = 1,
};

NBDKIT_REGISTER_PLUGIN(plugin)
