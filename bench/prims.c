/* bench/prims.c: what each primitive of crucible-c's IO pipeline costs on
 * this machine, in CPU time and wall time per unit.
 *
 *   build/bench/prims [--json FILE] [--dir DIR] [--reps N]
 *
 * Built by `make bench` and run once per full bench run; bench/report.py
 * adds up these figures into a "model ceiling" (the lowest CPU per IO the
 * pipeline could have) and sets each crucible job's measured CPU per IO
 * against it (docs/PERFORMANCE.md, "Model ceiling").  Each primitive runs
 * in REPS batches of a fixed count; a figure is the median over batches
 * of (batch time / count).  CPU time is the measuring thread's
 * (CLOCK_THREAD_CPUTIME_ID), or the whole process's for the two-thread
 * hand-offs, so it is what /proc/PID/stat would charge to the process
 * doing the work: kernel work done elsewhere (writeback, the journal
 * thread) is in neither.  Files live in a fresh directory under DIR
 * (default $TMPDIR or /tmp: the filesystem the bench volumes live on),
 * removed at the end.
 *
 * The code mirrors what the pipeline does, not the fastest possible way:
 * GCM with one pre-keyed EVP context and a new IV per block (as
 * common/crypt.c's gcm_pooled), XXH3-64 as crypt_hash_plain, the
 * downstairs' SQLite schema, pragmas and INSERT OR REPLACE statement
 * (downstairs/extent_util.c, extent.c), TCP over 127.0.0.1 with
 * TCP_NODELAY (as the upstairs and the downstairs set it).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <xxhash.h>

#define BLK 4096
#define PIECE (64 * 1024)     /* the downstairs' pwrite piece */
#define FILE_SIZE (16u << 20) /* one bench extent: 4096 blocks */
#define NBLOCKS (FILE_SIZE / BLK)
#define MIB (1u << 20)
/* Message sizes close to the protocol's: a WRITE of one block carries a
 * frame header, the job header and a 48-byte context; replies and READ
 * requests are a few dozen bytes. */
#define MSG_HDR 96
#define MSG_SMALL 64
#define MAX_RESULTS 40

/* One measured batch: wall and CPU nanoseconds for count units. */
struct sample {
  double wall_ns, cpu_ns;
};

/* One primitive's result: medians per unit over the batches. */
struct result {
  const char *name, *desc;
  double cpu_us, wall_us;
};

static struct result results[MAX_RESULTS];
static int nresults;
static int reps = 5;
static char workdir[4096];

static double clock_ns(clockid_t id)
{
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static void die(const char *what)
{
  fprintf(stderr, "prims: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

static double median(double *v, int n)
{
  qsort(v, (size_t) n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Record the medians of REPS samples of COUNT units each. */
static void add_result(const char *name, const char *desc,
                       const struct sample *s, long count)
{
  double cpu[64], wall[64];
  for (int i = 0; i < reps; i++) {
    cpu[i] = s[i].cpu_ns / (double) count / 1e3;
    wall[i] = s[i].wall_ns / (double) count / 1e3;
  }
  if (nresults == MAX_RESULTS)
    return;
  results[nresults++] =
      (struct result){name, desc, median(cpu, reps), median(wall, reps)};
  printf("%-22s %10.2f %10.2f  %s\n", name, median(cpu, reps),
         median(wall, reps), desc);
  fflush(stdout);
}

/* A single-threaded primitive: fn(arg, count) timed with this thread's
 * CPU clock, REPS times; prep (if not NULL) runs untimed before each. */
static void run_single(const char *name, const char *desc,
                       void (*fn)(void *, long), void (*prep)(void *),
                       void *arg, long count)
{
  struct sample s[64];
  for (int i = 0; i < reps; i++) {
    if (prep)
      prep(arg);
    double w0 = clock_ns(CLOCK_MONOTONIC);
    double c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    fn(arg, count);
    s[i].cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    s[i].wall_ns = clock_ns(CLOCK_MONOTONIC) - w0;
  }
  add_result(name, desc, s, count);
}

/* --- crypto and hashing ------------------------------------------------ */

struct gcm_arg {
  EVP_CIPHER_CTX *ctx;
  int enc;
  uint8_t in[BLK], out[BLK + 16], aad[32], iv[12], tag[16];
};

/* As gcm_pooled: only the IV is set per block, the key schedule is kept.
 * The decrypt direction checks a wrong tag (the data is random), which
 * costs the same pass; its failure is expected and ignored. */
static void prim_gcm(void *p, long n)
{
  struct gcm_arg *g = p;
  int len;
  for (long i = 0; i < n; i++) {
    memcpy(g->iv, &i, sizeof i);
    EVP_CipherInit_ex(g->ctx, NULL, NULL, NULL, g->iv, g->enc);
    EVP_CipherUpdate(g->ctx, NULL, &len, g->aad, sizeof g->aad);
    EVP_CipherUpdate(g->ctx, g->out, &len, g->in, BLK);
    if (g->enc) {
      EVP_CipherFinal_ex(g->ctx, g->out + BLK, &len);
      EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_GET_TAG, 16, g->tag);
    } else {
      EVP_CIPHER_CTX_ctrl(g->ctx, EVP_CTRL_GCM_SET_TAG, 16, g->tag);
      (void) EVP_CipherFinal_ex(g->ctx, g->out + BLK, &len);
    }
  }
}

static void run_gcm(int enc)
{
  static struct gcm_arg g;
  uint8_t key[32];
  RAND_bytes(key, sizeof key);
  RAND_bytes(g.in, sizeof g.in);
  g.enc = enc;
  g.ctx = EVP_CIPHER_CTX_new();
  if (!g.ctx ||
      EVP_CipherInit_ex(g.ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
      EVP_CIPHER_CTX_ctrl(g.ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
      EVP_CipherInit_ex(g.ctx, NULL, NULL, key, NULL, enc) != 1) {
    fprintf(stderr, "prims: EVP aes-256-gcm set-up failed\n");
    exit(1);
  }
  if (enc)
    run_single("gcm_enc_4k", "AES-256-GCM encrypt 4 KiB, pre-keyed context",
               prim_gcm, NULL, &g, 20000);
  else
    run_single("gcm_dec_4k", "AES-256-GCM decrypt+tag check 4 KiB", prim_gcm,
               NULL, &g, 20000);
  EVP_CIPHER_CTX_free(g.ctx);
}

static volatile uint64_t sink;

static void prim_xxh3(void *p, long n)
{
  const uint8_t *b = p;
  uint64_t h = 0;
  for (long i = 0; i < n; i++)
    h ^= XXH3_64bits(b, BLK);
  sink = h;
}

/* --- TCP over loopback ------------------------------------------------- */

/* All of p out (send) or in (recv). */
static int xfer_all(int fd, uint8_t *p, size_t len, bool out)
{
  while (len > 0) {
    ssize_t r = out ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    p += r, len -= (size_t) r;
  }
  return 0;
}

/* A connected pair over 127.0.0.1, both ends TCP_NODELAY (as the
 * upstairs and the downstairs set it: a reply must not wait for Nagle). */
static void tcp_pair(int fd[2])
{
  struct sockaddr_in a = {.sin_family = AF_INET};
  socklen_t alen = sizeof a;
  int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (l < 0 || bind(l, (struct sockaddr *) &a, sizeof a) < 0 ||
      listen(l, 1) < 0 || getsockname(l, (struct sockaddr *) &a, &alen) < 0)
    die("listen on 127.0.0.1");
  fd[0] = socket(AF_INET, SOCK_STREAM, 0);
  if (fd[0] < 0 || connect(fd[0], (struct sockaddr *) &a, sizeof a) < 0)
    die("connect");
  if ((fd[1] = accept(l, NULL, NULL)) < 0)
    die("accept");
  close(l);
  for (int i = 0; i < 2; i++)
    setsockopt(fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* The peer thread of a TCP measurement: reads count messages of len
 * bytes (one message per xfer_all, as a server reads frame by frame) and,
 * if reply > 0, answers each with reply bytes. */
struct tcp_peer {
  int fd;
  size_t len, reply;
  long count;
  uint8_t *buf;
  double cpu_ns;
  pthread_barrier_t *go;
};

static void *tcp_peer_main(void *p)
{
  struct tcp_peer *t = p;
  pthread_barrier_wait(t->go);
  double c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  for (long i = 0; i < t->count; i++) {
    if (xfer_all(t->fd, t->buf, t->len, false) < 0 ||
        (t->reply && xfer_all(t->fd, t->buf, t->reply, true) < 0))
      die("peer recv/send");
  }
  t->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
  return NULL;
}

/* One batch: this thread sends count messages of len bytes (waiting for
 * each reply of reply bytes when reply > 0) to a peer thread.  snd gets
 * this thread's time, rcv the peer's CPU (and the same wall time). */
static void tcp_batch(int fd[2], size_t len, size_t reply, long count,
                      struct sample *snd, struct sample *rcv)
{
  pthread_barrier_t go;
  pthread_t th;
  uint8_t *buf = malloc(len), *pbuf = malloc(len);
  struct tcp_peer t = {fd[1], len, reply, count, pbuf, 0, &go};
  if (!buf || !pbuf)
    die("malloc");
  memset(buf, 0x5a, len);
  pthread_barrier_init(&go, NULL, 2);
  if (pthread_create(&th, NULL, tcp_peer_main, &t) != 0)
    die("pthread_create");
  pthread_barrier_wait(&go);
  double w0 = clock_ns(CLOCK_MONOTONIC);
  double c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  for (long i = 0; i < count; i++) {
    if (xfer_all(fd[0], buf, len, true) < 0 ||
        (reply && xfer_all(fd[0], buf, reply, false) < 0))
      die("send/recv");
  }
  snd->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
  pthread_join(th, NULL);
  snd->wall_ns = rcv->wall_ns = clock_ns(CLOCK_MONOTONIC) - w0;
  rcv->cpu_ns = t.cpu_ns;
  pthread_barrier_destroy(&go);
  free(buf);
  free(pbuf);
}

/* Streaming (no reply): the cost of one send and of one receive when
 * messages queue up, as at a queue depth of 32; reply > 0: ping-pong,
 * one round trip with both sides sleeping and waking each time, as at
 * queue depth 1. */
static void run_tcp(const char *sname, const char *rname, const char *sdesc,
                    const char *rdesc, size_t len, size_t reply, long count)
{
  struct sample s[64], r[64];
  int fd[2];
  tcp_pair(fd);
  tcp_batch(fd, len, reply, count / 10 + 1, &s[0], &r[0]); /* warm up */
  for (int i = 0; i < reps; i++)
    tcp_batch(fd, len, reply, count, &s[i], &r[i]);
  add_result(sname, sdesc, s, count);
  add_result(rname, rdesc, r, count);
  close(fd[0]);
  close(fd[1]);
}

/* --- page cache, fsync ------------------------------------------------- */

struct file_arg {
  int fd;
  uint8_t *buf;
  size_t len;
  uint64_t rnd;
  off_t seq;
};

/* A FILE_SIZE file written in pieces of piece bytes (the downstairs
 * writes 64 KiB pieces; 1 MiB pieces leave large page-cache folios that
 * make later 4 KiB writes much dearer, see docs/PERFORMANCE.md). */
static int make_file(const char *name, size_t piece)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", workdir, name);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  uint8_t *b = malloc(piece);
  if (fd < 0 || !b)
    die(path);
  RAND_bytes(b, (int) piece);
  for (off_t o = 0; o < FILE_SIZE; o += (off_t) piece)
    if (pwrite(fd, b, piece, o) != (ssize_t) piece)
      die("pwrite");
  free(b);
  return fd;
}

static uint64_t next_rnd(uint64_t *s)
{
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

/* len bytes at random len-aligned offsets (rnd != 0) or in sequence. */
static off_t file_off(struct file_arg *f)
{
  if (f->rnd)
    return (off_t) (next_rnd(&f->rnd) % (FILE_SIZE / f->len)) * (off_t) f->len;
  f->seq = (f->seq + (off_t) f->len) % FILE_SIZE;
  return f->seq;
}

static void prim_pwrite(void *p, long n)
{
  struct file_arg *f = p;
  for (long i = 0; i < n; i++)
    if (pwrite(f->fd, f->buf, f->len, file_off(f)) != (ssize_t) f->len)
      die("pwrite");
}

static void prim_pread(void *p, long n)
{
  struct file_arg *f = p;
  for (long i = 0; i < n; i++)
    if (pread(f->fd, f->buf, f->len, file_off(f)) != (ssize_t) f->len)
      die("pread");
}

/* fdatasync of a file with one dirty 4 KiB block; only the sync is
 * timed, so the batch is timed here rather than by run_single. */
static void run_fdatasync(int fd, uint8_t *buf)
{
  struct sample s[64];
  const long count = 10;
  uint64_t rnd = 99;
  fdatasync(fd);
  for (int i = 0; i < reps; i++) {
    s[i].cpu_ns = s[i].wall_ns = 0;
    for (long k = 0; k < count; k++) {
      off_t o = (off_t) (next_rnd(&rnd) % NBLOCKS) * BLK;
      if (pwrite(fd, buf, BLK, o) != BLK)
        die("pwrite");
      double w0 = clock_ns(CLOCK_MONOTONIC);
      double c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
      if (fdatasync(fd) < 0)
        die("fdatasync");
      s[i].cpu_ns += clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
      s[i].wall_ns += clock_ns(CLOCK_MONOTONIC) - w0;
    }
  }
  add_result("fdatasync_4k", "fdatasync of a file with 4 KiB dirty", s, count);
}

/* Untimed before each pwrite batch: make every page of the file clean,
 * as after a flush or writeback.  A 4 KiB write into a clean large folio
 * (what 1 MiB pwrites leave) walks the buffer heads of the whole folio;
 * into an all-dirty one it does not, so the state matters. */
static void prep_clean(void *p)
{
  struct file_arg *f = p;
  if (fdatasync(f->fd) < 0)
    die("fdatasync");
}

static void run_files(void)
{
  static uint8_t buf[PIECE];
  int f64 = make_file("extent64k", PIECE);
  int f1m = make_file("extent1m", MIB);
  struct file_arg a = {f64, buf, BLK, 12345, 0};
  RAND_bytes(buf, sizeof buf);
  /* 1000 random writes into 4096 blocks: most land on clean pages. */
  run_single("pwrite_4k", "pwrite 4 KiB, random, clean file written in 64 KiB",
             prim_pwrite, prep_clean, &a, 1000);
  a = (struct file_arg){f1m, buf, BLK, 12345, 0};
  run_single("pwrite_4k_after_1m", "the same, file written in 1 MiB pieces",
             prim_pwrite, prep_clean, &a, 1000);
  a = (struct file_arg){f64, buf, PIECE, 0, 0};
  run_single("pwrite_64k", "pwrite 64 KiB, sequential (a 1 MiB write = 16)",
             prim_pwrite, prep_clean, &a, 256);
  a = (struct file_arg){f64, buf, BLK, 777, 0};
  run_single("pread_4k", "pread 4 KiB from the page cache, random", prim_pread,
             NULL, &a, 20000);
  a = (struct file_arg){f64, buf, PIECE, 0, 0};
  run_single("pread_64k", "pread 64 KiB from the page cache, sequential",
             prim_pread, NULL, &a, 2000);
  run_fdatasync(f64, buf);
  close(f64);
  close(f1m);
}

/* --- SQLite ------------------------------------------------------------ */

/* downstairs/extent_util.c's schema and downstairs/extent.c's pragmas. */
static const char SCHEMA[] =
    "CREATE TABLE metadata(name TEXT PRIMARY KEY, value INTEGER);"
    "INSERT INTO metadata VALUES('gen_number', 0), ('flush_number', 0),"
    " ('dirty', 1);"
    "CREATE TABLE block_context(block INTEGER, version INTEGER,"
    " hash INTEGER, nonce BLOB, tag BLOB, on_disk_hash INTEGER,"
    " PRIMARY KEY(block, on_disk_hash)) WITHOUT ROWID;";
static const char PRAGMAS[] = "PRAGMA locking_mode=EXCLUSIVE;"
                              "PRAGMA journal_mode=WAL;"
                              "PRAGMA synchronous=NORMAL;"
                              "PRAGMA cache_size=-512;"
                              "PRAGMA busy_timeout=5000;";

struct sql_arg {
  sqlite3 *db;
  sqlite3_stmt *begin, *commit, *insert, *select;
  int rows; /* rows per transaction or per range select */
  uint64_t rnd, version;
};

static void step(sqlite3_stmt *s, int want)
{
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW && want == SQLITE_ROW)
    ;
  if (rc != SQLITE_DONE) {
    fprintf(stderr, "prims: sqlite: %s\n", sqlite3_errstr(rc));
    exit(1);
  }
  sqlite3_reset(s);
}

/* One transaction as ext_write makes it once the extent is dirty and its
 * blocks have rows: BEGIN, one INSERT OR REPLACE per block, COMMIT.  A
 * new write brings a new on_disk_hash, so each row is a new key (the
 * stale ones go at the next flush), as in the running downstairs. */
static void prim_txn(void *p, long n)
{
  struct sql_arg *q = p;
  uint8_t nonce[12] = {1}, tag[16] = {2};
  for (long i = 0; i < n; i++) {
    uint64_t blk = q->rows == 1 ? next_rnd(&q->rnd) % NBLOCKS
                                : next_rnd(&q->rnd) % (NBLOCKS / 256) * 256;
    step(q->begin, SQLITE_DONE);
    for (int k = 0; k < q->rows; k++) {
      sqlite3_bind_int64(q->insert, 1, (sqlite3_int64) (blk + (uint64_t) k));
      sqlite3_bind_int64(q->insert, 2, (sqlite3_int64) ++q->version);
      sqlite3_bind_int64(q->insert, 3, (sqlite3_int64) next_rnd(&q->rnd));
      sqlite3_bind_blob(q->insert, 4, nonce, sizeof nonce, SQLITE_STATIC);
      sqlite3_bind_blob(q->insert, 5, tag, sizeof tag, SQLITE_STATIC);
      sqlite3_bind_int64(q->insert, 6, (sqlite3_int64) next_rnd(&q->rnd));
      step(q->insert, SQLITE_DONE);
    }
    step(q->commit, SQLITE_DONE);
  }
}

/* The range query of a read (and of a versions-only read). */
static void prim_select(void *p, long n)
{
  struct sql_arg *q = p;
  for (long i = 0; i < n; i++) {
    uint64_t blk = next_rnd(&q->rnd) % (NBLOCKS - (uint64_t) q->rows);
    sqlite3_bind_int64(q->select, 1, (sqlite3_int64) blk);
    sqlite3_bind_int64(q->select, 2,
                       (sqlite3_int64) (blk + (uint64_t) q->rows));
    step(q->select, SQLITE_ROW);
  }
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
  sqlite3_stmt *s;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) !=
      SQLITE_OK) {
    fprintf(stderr, "prims: prepare: %s\n", sqlite3_errmsg(db));
    exit(1);
  }
  return s;
}

static void run_sqlite(void)
{
  char path[4200];
  struct sql_arg q = {.rnd = 4242};
  snprintf(path, sizeof path, "%s/extent.db", workdir);
  if (sqlite3_open(path, &q.db) != SQLITE_OK ||
      sqlite3_exec(q.db, PRAGMAS, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_exec(q.db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK) {
    fprintf(stderr, "prims: sqlite set-up: %s\n", sqlite3_errmsg(q.db));
    exit(1);
  }
  q.begin = prepare(q.db, "BEGIN");
  q.commit = prepare(q.db, "COMMIT");
  q.insert = prepare(q.db, "INSERT OR REPLACE INTO block_context"
                           "(block, version, hash, nonce, tag, on_disk_hash)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  q.select = prepare(q.db, "SELECT block, version, hash, nonce, tag,"
                           " on_disk_hash FROM block_context"
                           " WHERE block >= ?1 AND block < ?2 ORDER BY block");
  q.rows = 256; /* every block written once: a filled extent */
  prim_txn(&q, NBLOCKS / 256);
  q.rows = 1;
  run_single("sqlite_txn_1", "BEGIN; INSERT OR REPLACE 1 row; COMMIT (WAL)",
             prim_txn, NULL, &q, 3000);
  q.rows = 256;
  run_single("sqlite_txn_256", "the same with 256 rows (one 1 MiB write)",
             prim_txn, NULL, &q, 40);
  /* Reads after a flush: the flush drops stale rows, one row per block
   * is left (the writes above left many per block). */
  if (sqlite3_exec(q.db, "DELETE FROM block_context", NULL, NULL, NULL) !=
      SQLITE_OK) {
    fprintf(stderr, "prims: sqlite delete: %s\n", sqlite3_errmsg(q.db));
    exit(1);
  }
  prim_txn(&q, NBLOCKS / 256);
  q.rows = 1;
  run_single("sqlite_select_1", "range SELECT of 1 block's rows", prim_select,
             NULL, &q, 20000);
  q.rows = 256;
  run_single("sqlite_select_256", "range SELECT of 256 blocks' rows",
             prim_select, NULL, &q, 300);
  sqlite3_finalize(q.begin);
  sqlite3_finalize(q.commit);
  sqlite3_finalize(q.insert);
  sqlite3_finalize(q.select);
  sqlite3_close(q.db);
}

/* --- thread hand-offs -------------------------------------------------- */

/* Cond ping-pong: a mutex-protected turn passed back and forth, each
 * pass a futex wake of the sleeping thread (how a worker hands a job to
 * another thread and waits). */
struct pingpong {
  pthread_mutex_t m;
  pthread_cond_t c;
  long turn, count;
};

static void *cond_peer(void *p)
{
  struct pingpong *pp = p;
  pthread_mutex_lock(&pp->m);
  for (long i = 0; i < pp->count; i++) {
    while (pp->turn % 2 == 0)
      pthread_cond_wait(&pp->c, &pp->m);
    pp->turn++;
    pthread_cond_signal(&pp->c);
  }
  pthread_mutex_unlock(&pp->m);
  return NULL;
}

/* eventfd + epoll ping-pong: each side writes the other's eventfd and
 * sleeps in epoll_wait on its own (how a thread wakes a libuv loop with
 * uv_async_send). */
struct efd_pair {
  int efd[2], ep[2];
  long count;
};

static void efd_wait(int ep, int efd)
{
  struct epoll_event ev;
  uint64_t v;
  while (epoll_wait(ep, &ev, 1, -1) < 1)
    ;
  if (read(efd, &v, sizeof v) != sizeof v)
    die("eventfd read");
}

static void efd_kick(int efd)
{
  uint64_t one = 1;
  if (write(efd, &one, sizeof one) != sizeof one)
    die("eventfd write");
}

static void *efd_peer(void *p)
{
  struct efd_pair *e = p;
  for (long i = 0; i < e->count; i++) {
    efd_wait(e->ep[1], e->efd[1]);
    efd_kick(e->efd[0]);
  }
  return NULL;
}

/* One batch of count round trips of kind 0 (cond) or 1 (eventfd), timed
 * with the process CPU clock: both threads' work. */
static void handoff_batch(int kind, long count, struct pingpong *pp,
                          struct efd_pair *e, struct sample *s)
{
  pthread_t th;
  double w0 = clock_ns(CLOCK_MONOTONIC);
  double c0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
  pp->turn = 0, pp->count = e->count = count;
  if (pthread_create(&th, NULL, kind ? efd_peer : cond_peer,
                     kind ? (void *) e : (void *) pp) != 0)
    die("pthread_create");
  for (long i = 0; i < count; i++) {
    if (kind) {
      efd_kick(e->efd[1]);
      efd_wait(e->ep[0], e->efd[0]);
      continue;
    }
    pthread_mutex_lock(&pp->m);
    pp->turn++;
    pthread_cond_signal(&pp->c);
    while (pp->turn % 2 == 1)
      pthread_cond_wait(&pp->c, &pp->m);
    pthread_mutex_unlock(&pp->m);
  }
  pthread_join(th, NULL);
  s->cpu_ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID) - c0;
  s->wall_ns = clock_ns(CLOCK_MONOTONIC) - w0;
}

static void run_handoffs(void)
{
  static struct pingpong pp = {PTHREAD_MUTEX_INITIALIZER,
                               PTHREAD_COND_INITIALIZER, 0, 0};
  struct efd_pair e;
  struct sample s[64];
  const long count = 20000;
  for (int i = 0; i < 2; i++) {
    struct epoll_event ev = {.events = EPOLLIN};
    e.efd[i] = eventfd(0, EFD_NONBLOCK);
    e.ep[i] = epoll_create1(0);
    if (e.efd[i] < 0 || e.ep[i] < 0 ||
        epoll_ctl(e.ep[i], EPOLL_CTL_ADD, e.efd[i], &ev) < 0)
      die("eventfd/epoll");
  }
  for (int kind = 0; kind < 2; kind++) {
    for (int i = 0; i < reps; i++)
      handoff_batch(kind, count, &pp, &e, &s[i]);
    /* A round trip is two hand-offs. */
    add_result(kind ? "eventfd_wake" : "cond_handoff",
               kind ? "eventfd write waking an epoll_wait, one way"
                    : "pthread cond signal waking a waiter, one way",
               s, 2 * count);
  }
  for (int i = 0; i < 2; i++) {
    close(e.efd[i]);
    close(e.ep[i]);
  }
}

/* --- output ------------------------------------------------------------ */

static void write_json(const char *path)
{
  FILE *f = fopen(path, "w");
  if (!f)
    die(path);
  fprintf(f,
          "{\n \"unit\": \"us per op\",\n \"reps\": %d,\n \"dir\": \"%s\",\n"
          " \"primitives\": {\n",
          reps, workdir);
  for (int i = 0; i < nresults; i++)
    fprintf(f,
            "  \"%s\": {\"cpu_us\": %.3f, \"wall_us\": %.3f, "
            "\"desc\": \"%s\"}%s\n",
            results[i].name, results[i].cpu_us, results[i].wall_us,
            results[i].desc, i + 1 < nresults ? "," : "");
  fprintf(f, " }\n}\n");
  if (fclose(f) != 0)
    die(path);
}

/* Remove the files this program made and their directory. */
static void remove_workdir(void)
{
  static const char *const names[] = {"extent64k", "extent1m", "extent.db",
                                      "extent.db-wal", "extent.db-shm"};
  char path[4200];
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", workdir, names[i]);
    if (unlink(path) < 0 && errno != ENOENT)
      fprintf(stderr, "prims: unlink %s: %s\n", path, strerror(errno));
  }
  if (rmdir(workdir) < 0)
    fprintf(stderr, "prims: rmdir %s: %s\n", workdir, strerror(errno));
}

static void usage(void)
{
  fprintf(stderr, "usage: prims [--json FILE] [--dir DIR] [--reps N]\n");
  exit(2);
}

int main(int argc, char **argv)
{
  const char *json = NULL, *dir = getenv("TMPDIR");
  static uint8_t blk[BLK];
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && strcmp(argv[i], "--json") == 0)
      json = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--dir") == 0)
      dir = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0)
      reps = atoi(argv[++i]);
    else
      usage();
  }
  if (reps < 1 || reps > 64)
    usage();
  snprintf(workdir, sizeof workdir, "%s/prims.XXXXXX", dir ? dir : "/tmp");
  if (!mkdtemp(workdir))
    die(workdir);

  printf("%-22s %10s %10s  %s\n", "primitive", "cpu us", "wall us",
         "(median of per-unit cost over batches)");
  run_gcm(1);
  run_gcm(0);
  RAND_bytes(blk, sizeof blk);
  run_single("xxh3_4k", "XXH3-64 of 4 KiB", prim_xxh3, NULL, blk, 100000);
  run_tcp("tcp_send_4k", "tcp_recv_4k", "send of a 4 KiB WRITE, streaming",
          "receive of a 4 KiB WRITE, streaming", BLK + MSG_HDR, 0, 20000);
  run_tcp("tcp_send_small", "tcp_recv_small",
          "send of a 64 B reply/request, streaming",
          "receive of a 64 B reply/request, streaming", MSG_SMALL, 0, 50000);
  run_tcp("tcp_send_1m", "tcp_recv_1m", "send of a 1 MiB WRITE, streaming",
          "receive of a 1 MiB WRITE, streaming", MIB + MSG_HDR, 0, 300);
  run_tcp("tcp_rtt_4k_client", "tcp_rtt_4k_server",
          "4 KiB sent + 64 B reply received, ping-pong (qd1), sender side",
          "the same, server side (receive 4 KiB + send 64 B)", BLK + MSG_HDR,
          MSG_SMALL, 3000);
  run_files();
  run_sqlite();
  run_handoffs();

  if (json)
    write_json(json);
  remove_workdir();
  return 0;
}
