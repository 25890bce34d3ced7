/* crucible-sim: options and the run; the rules are in sim.h. */
#include "sim.h"

/* ---- the run ---------------------------------------------------------- */

void progress(struct sim *s)
{
  double t = now() - s->t_start;
  printf("crucible-sim: %5.0f s  ops %" PRIu64 " (r %" PRIu64 " w %" PRIu64
         " t %" PRIu64 " z %" PRIu64 " f %" PRIu64 ")  faults %" PRIu64
         "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64
         "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "\n",
         t, s->seq, s->nops[K_READ], s->nops[K_WRITE], s->nops[K_TRIM],
         s->nops[K_ZERO], s->nops[K_FLUSH], s->nfaults[0], s->nfaults[1],
         s->nfaults[2], s->nfaults[3], s->nfaults[4], s->nfaults[5],
         s->nfaults[6], s->nfaults[7], s->nfaults[8], s->nfaults[9]);
  fflush(stdout);
}

/* Drive ops and faults for the run's duration. */
void run_stream(struct sim *s)
{
  double end = s->t_start + s->o.seconds, next_report = now() + 10;
  fault_schedule(s);
  while (now() < end || s->fault_active) {
    fault_tick(s);
    struct op o;
    gen_op(s, &o);
    if (s->inject_pending && o.k == K_WRITE && s->seq >= 10) {
      o.inject = true;
      s->inject_pending = false;
    }
    log_op(s, &o);
    issue(s, &o);
    if (o.inject) {
      event(s, "op %" PRIu64 " read back of the injected write", s->seq);
      issue_read(s, (o.conn + 1) % NCONN, o.off, o.len);
    }
    s->seq++;
    if (now() > next_report) {
      progress(s);
      next_report += 10;
    }
  }
  drain(s);
}

/* Read the whole volume (nbdkit with verify=all) and check it. */
void final_read(struct sim *s)
{
  event(s, "final: whole volume read with verify=all");
  for (uint64_t o = 0; o < s->size; o += 4 * CHUNK)
    issue_read(s, (o / (4 * CHUNK)) % NCONN, o, min64(4 * CHUNK, s->size - o));
  drain(s);
}

/* verify -d on each replica, then the extent data files byte for byte. */
void final_replicas(struct sim *s)
{
  char log[600];
  snprintf(log, sizeof log, "%s/verify.log", s->o.dir);
  for (int i = 0; i < 3; i++) {
    char *argv[] = {(char *) s->o.ds_bin, "verify", "-d", s->ds_dir[i], NULL};
    if (run_cmd(s, argv, log, 600) != 0) {
      tail_file(log, 10);
      fail(s, "crucible-downstairs verify -d %s failed", s->ds_dir[i]);
    }
  }
  uint8_t *b[3];
  for (int i = 0; i < 3; i++)
    b[i] = xmalloc(CHUNK);
  for (uint32_t e = 0; e < s->o.extent_count; e++) {
    char rel[EXT_PATH_MAX], path[700];
    int fd[3];
    ext_path(e, rel);
    for (int i = 0; i < 3; i++) {
      snprintf(path, sizeof path, "%s/%s", s->ds_dir[i], rel);
      fd[i] = open(path, O_RDONLY);
      if (fd[i] < 0)
        fail(s, "%s: %s", path, strerror(errno));
    }
    for (uint64_t o = 0; o < s->extent_bytes; o += CHUNK) {
      for (int i = 0; i < 3; i++) {
        ssize_t r = pread(fd[i], b[i], CHUNK, o);
        if (r < 0)
          fail(s, "read extent %u of ds%d: %s", e, i + 1, strerror(errno));
        memset(b[i] + r, 0, CHUNK - r); /* short file: zeroes */
      }
      for (int i = 1; i < 3; i++)
        for (uint64_t k = 0; k < CHUNK; k += BLOCK)
          if (memcmp(b[0] + k, b[i] + k, BLOCK))
            fail(s,
                 "replicas differ: extent %u block %" PRIu64 " (lba %" PRIu64
                 "): ds1 vs ds%d",
                 e, (o + k) / BLOCK,
                 e * (s->extent_bytes / BLOCK) + (o + k) / BLOCK, i + 1);
    }
    for (int i = 0; i < 3; i++)
      close(fd[i]);
  }
  for (int i = 0; i < 3; i++)
    free(b[i]);
  event(s, "final: 3 replicas verify clean and hold identical extent data");
}

void final_phase(struct sim *s)
{
  if (s->fault_active && s->fc == F_ROLLBACK)
    rollback_restore(s, s->fds); /* its replica is up: finish the attack */
  else if (s->fault_active)
    ds_up(s, s->fds);
  away_check(s, true);
  wait_healthy(s);
  stop_all(s, false);
  nbdkit_start(s, true);
  wait_healthy(s);
  final_read(s);
  stop_all(s, true);
  final_replicas(s);
}

void summary(struct sim *s)
{
  double t = now() - s->t_start, pm = 60.0 / (t > 0 ? t : 1);
  uint64_t total = s->seq;
  printf("crucible-sim: PASS seed %" PRIu64 " in %.0f s: %" PRIu64 " ops "
         "(%.0f/min): read %" PRIu64 " (%" PRIu64 " MiB) write %" PRIu64
         " (%" PRIu64 " MiB) trim %" PRIu64 " zero %" PRIu64 " flush %" PRIu64
         "\n",
         s->o.seed, t, total, total * pm, s->nops[K_READ],
         s->bytes[K_READ] >> 20, s->nops[K_WRITE], s->bytes[K_WRITE] >> 20,
         s->nops[K_TRIM], s->nops[K_ZERO], s->nops[K_FLUSH]);
  printf(
      "crucible-sim: faults kill-ds %" PRIu64 " stop-ds %" PRIu64
      " flip %" PRIu64 " (%" PRIu64 " blocks flipped) kill-nbdkit %" PRIu64
      " restart %" PRIu64 " down-crash %" PRIu64 " away %" PRIu64 " (%" PRIu64
      " by SIGTERM) rollback %" PRIu64 " (%" PRIu64 " restores) extend %" PRIu64
      " (%" PRIu64 " grew, to %" PRIu64 " MiB) snapshot %" PRIu64 " (%" PRIu64
      " rollbacks, %" PRIu64 " finished at a restart, %" PRIu64
      " whole reads); %" PRIu64 " MiB checked after crashes%s\n",
      s->nfaults[0], s->nfaults[1], s->nfaults[2], s->flips_done, s->nfaults[3],
      s->nfaults[4], s->nfaults[5], s->nfaults[6], s->away_clean, s->nfaults[7],
      s->rollbacks, s->nfaults[8], s->extends, s->size >> 20, s->nfaults[9],
      s->snap_rollbacks, s->snap_resumed, s->snap_reads, s->crash_checked >> 20,
      s->o.lenient ? " (lenient)" : "");
}

void __attribute__((noreturn)) usage(void)
{
  fprintf(stderr,
          "usage: crucible-sim --dir DIR [--seed N] [--seconds S] "
          "[--extent-count N]\n"
          "         [--timeout SECS] [--downstairs BIN] [--plugin SO]\n"
          "         [--no kill-ds|stop-ds|flip|kill-nbdkit|restart|down-crash|"
          "away|rollback]... [--inject-bug] [--lenient-crash]\n");
  exit(2);
}

uint64_t num(const char *s)
{
  char *end;
  errno = 0;
  uint64_t v = strtoull(s, &end, 0);
  if (errno || end == s || *end || *s == '-')
    usage();
  return v;
}

void parse_args(int argc, char **argv, struct opts *o)
{
  static const struct option lo[] = {{"seed", 1, 0, 's'},
                                     {"seconds", 1, 0, 't'},
                                     {"dir", 1, 0, 'd'},
                                     {"extent-count", 1, 0, 'e'},
                                     {"timeout", 1, 0, 'T'},
                                     {"downstairs", 1, 0, 'D'},
                                     {"plugin", 1, 0, 'P'},
                                     {"no", 1, 0, 'n'},
                                     {"inject-bug", 0, 0, 'i'},
                                     {"lenient-crash", 0, 0, 'l'},
                                     {0, 0, 0, 0}};
  bool seeded = false;
  int c;
  *o = (struct opts){.seconds = 60,
                     .extent_count = 3,
                     .timeout = 5,
                     .ds_bin = "./crucible-downstairs",
                     .plugin = "./crucible.so"};
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 's':
      o->seed = num(optarg);
      seeded = true;
      break;
    case 't': o->seconds = num(optarg); break;
    case 'd': o->dir = optarg; break;
    case 'e': o->extent_count = num(optarg); break;
    case 'T': o->timeout = num(optarg); break;
    case 'D': o->ds_bin = optarg; break;
    case 'P': o->plugin = optarg; break;
    case 'i': o->inject = true; break;
    case 'l': o->lenient = true; break;
    case 'n': {
      int k = 0;
      while (k < NFAULT && strcmp(optarg, fault_name[k]))
        k++;
      if (k == NFAULT)
        usage();
      o->disabled |= 1u << k;
      break;
    }
    default: usage();
    }
  }
  {
    size_t n = strlen(o->ds_bin);
    const char *sl = strrchr(o->ds_bin, '/');
    size_t dir = sl ? (size_t) (sl - o->ds_bin) + 1 : 0;
    (void) n;
    snprintf(o->admin_bin, sizeof o->admin_bin, "%.*scrucible-admin", (int) dir,
             o->ds_bin);
  }
  if (!o->dir || optind != argc || o->extent_count < 1 || o->timeout < 1)
    usage();
  if (!seeded) {
    FILE *f = fopen("/dev/urandom", "r");
    if (!f || fread(&o->seed, sizeof o->seed, 1, f) != 1)
      exit(1);
    fclose(f);
    o->seed %= 1000000000000ull; /* short enough to type */
  }
}

int main(int argc, char **argv)
{
  static struct sim sim;
  struct sim *s = &sim;
  char path[600];
  parse_args(argc, argv, &s->o);
  g_sim = s;
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);
  s->t_start = now();
  s->corrupt_ds = s->away_ds = s->stale_ds = -1;
  s->inject_pending = s->o.inject;
  rng_seed(&s->rops, s->o.seed);
  rng_seed(&s->rfault, s->o.seed ^ 0x6a09e667f3bcc909ull);
  snprintf(path, sizeof path, "%s/sim.log", s->o.dir);
  s->logf = fopen(path, "w");
  snprintf(s->sock, sizeof s->sock, "%s/nbd.sock", s->o.dir);
  snprintf(s->stats, sizeof s->stats, "%s/stats.json", s->o.dir);
  snprintf(s->nblog, sizeof s->nblog, "%s/nbdkit.log", s->o.dir);
  snprintf(s->asock, sizeof s->asock, "%s/admin.sock", s->o.dir);
  s->extent_count0 = s->o.extent_count;
  printf("crucible-sim: seed %" PRIu64 ", %u s, %u extents\n", s->o.seed,
         s->o.seconds, s->o.extent_count);
  fflush(stdout);
  event(s, "seed %" PRIu64, s->o.seed);
  setup_volume(s);
  read_geometry(s);
  model_init(&s->M, s->size);
  model_init(&s->D, s->size);
  s->blk_mod = calloc(s->size / BLOCK, sizeof *s->blk_mod);
  s->flipped = calloc(s->size / BLOCK, 1);
  s->stale = calloc(s->size / BLOCK, 1);
  s->snap_stale = calloc(s->size / BLOCK, 1);
  if (!s->blk_mod || !s->flipped || !s->stale || !s->snap_stale)
    fail(s, "out of memory");
  for (int i = 0; i < 3; i++)
    ds_start(s, i);
  nbdkit_start(s, false);
  run_stream(s);
  final_phase(s);
  summary(s);
  fclose(s->logf);
  return 0;
}
