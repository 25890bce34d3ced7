/* crucible-sim (tests/tools/sim/): the seeded, randomized whole-system test of crucible-c.
 *
 *   crucible-sim --dir DIR [--seed N] [--seconds S] [--extent-count N]
 *                [--timeout SECS] [--downstairs BIN] [--plugin SO]
 *                [--no CLASS]... [--inject-bug] [--lenient-crash]
 *
 * It creates three encrypted regions with create's default geometry
 * (128 MiB extents of 4 KiB blocks, --extent-count of them), runs three
 * real crucible-downstairs on free 127.0.0.1 ports and nbdkit with
 * crucible.so on a Unix socket, all under DIR, and drives NCONN (4) NBD
 * connections with a random mix of pread, pwrite (some FUA), trim, zero
 * (some FUA) and flush, 1 byte to 32 MiB (trims and zeroes up to the whole
 * volume), aligned, 512-aligned or byte-unaligned, a quarter of them
 * crossing an extent boundary, up to PER_CONN in flight per connection.
 * Every read is checked against a model of the volume.  Meanwhile it
 * injects faults from the same seed.  At the end it restarts nbdkit with
 * verify=all, reads and checks the whole volume, stops everything cleanly
 * and requires `crucible-downstairs verify` to pass on every replica and
 * the three replicas' extent data files to be identical.
 *
 * Model rule.  The model M holds, per byte, the id of the latest
 * acknowledged write covering it (0 = zeroes: a zero, a trim, or never
 * written); the content of write w at volume offset o is a pure function
 * of (w, o) (content()), so M needs no data.  M is stored per 512-byte
 * sector (one id, or an index into a table of 512 per-byte ids for a
 * sector that unaligned writes split; such a sector collapses back when
 * its ids agree again): 4 bytes a sector plus 2 KiB per split sector,
 * where per-byte ids everywhere would cost 4 bytes a byte.
 *   - Without a crash of nbdkit, a read must return exactly M.  To keep
 *     that exact with concurrency, ops whose byte ranges overlap are never
 *     in flight together (a range lock: the driver waits before issuing);
 *     a flush takes no lock.
 *   - A flush covers every write acknowledged before it was issued.  The
 *     log L lists, in acknowledgement order, the writes not yet known
 *     durable; a completed flush marks those acked before its issue
 *     durable, a FUA write is durable when acked.  The durable prefix of L
 *     is folded into D, the model of what a crash must keep.
  *   - Across a kill -9 of nbdkit, a byte may read as the newest
 *     acknowledged value covering it (M) or the value of a write in flight
 *     at the crash (added to L as such): an acknowledged write is on at
 *     least two replicas (write-quorum 2), whose downstairs outlive
 *     nbdkit, and reconciliation keeps each block's newest version, so
 *     nothing acknowledged may be lost, flushed or not.  (NBD would allow
 *     losing unflushed writes; --lenient-crash checks only that: the
 *     newest durable value, D or a durable entry of L, or any later
 *     entry.)  After the restart the driver reads every range
 *     L touches once, checks each byte against those candidates, adopts
 *     what it read into M (exact again), flushes, and sets D = M.
 *
 * Fault rules.  Fault classes: kill-ds (kill -9 a downstairs, restart it
 * after some ops), stop-ds (SIGSTOP; half the time SIGCONT after 0.1-2 s
 * with no new ops, below the upstairs' timeout, half the time after some
 * ops and once the upstairs faulted it), flip (stop a downstairs by
 * kill -9 or SIGSTOP, xor one byte of a random written 4 KiB block of its
 * extent file at the offset region.json gives, restart/continue),
 * kill-nbdkit (kill -9 with IO in flight, restart, reconnect), restart
 * (flush, SIGTERM nbdkit, SIGTERM the downstairs, start all again) and
 * down-crash (kill -9 a downstairs, 3-60 ops on the other two, half the
 * time with no flush among them, kill -9 nbdkit, start the downstairs
 * and then nbdkit: reconciliation meets a replica that missed
 * acknowledged writes, flushed or not) and away (a downstairs stops,
 * half the time by kill -9, half by a clean SIGTERM that must exit 0,
 * for 1-300 ops, then restarts on its port: the live repair of a short
 * outage, resyncing what changed while it was away under the ops that
 * follow; the time and ops from its return until the stats file shows
 * it active are logged, and the next fault waits for that, bounded) and
 * extend (faults.c: `crucible-admin extend` by one or two extents, with
 * nothing in flight; a third of the time with a downstairs killed -9
 * first and restarted after, levelled at its return; a third of the time
 * nbdkit is killed -9 0-250 ms after the command is sent, and the restart
 * must come up at the old or the new size with every region.json at
 * that count; the model grows with zeroes, every connection reconnects)
 * and
 * rollback (rollback.c: a replica put back to an older copy of its own
 * region with its extent metadata forged, so that nothing at its return
 * looks different: issue 12's attacker).  The fault begins with a copy:
 * every op issued so far is flushed (so the replica holds all of them),
 * it stops cleanly (SIGTERM, exit 0), its region directory is copied, and
 * it starts again at once (resynced like an away).  After 20-300 ops of
 * normal life it is put back: once it is active, every op so far is
 * flushed (every extent clean and level on all three), it stops cleanly,
 * the rows of each extent's metadata table (gen_number, flush_number,
 * dirty) are read (the values it reports now, which equal what the
 * others report: it was active until a moment ago and got every flush;
 * the others' databases cannot be opened while they run, SQLite
 * locking_mode=EXCLUSIVE, and one fault at a time keeps them running),
 * its directory is replaced by the copy (its current region.json kept),
 * each restored extent database gets those rows back (sqlite3 C API),
 * the copy is deleted, it starts again, and no op is issued until it is
 * active: its return looks like a clean restart, no extent is pending,
 * nothing is compared, and every block written, trimmed or zeroed since
 * the copy may be older there.  Only the read path's freshness check
 * stands between it and a read (verify=one, the pre-issue-12 default,
 * serves the old data: the class exists to prove the check).  The sim
 * passes no verify= to nbdkit during the run (the default mode) and
 * verify=all only for the final read, so the class never meets
 * verify=one on purpose; there is no option to pass other nbdkit
 * parameters.  A run ending inside the fault puts the replica back before
 * the final read.  And snapshot (snap.c: with nothing in flight and
 * everything flushed, `crucible-admin snapshot create simN` (deleting
 * the previous one) when there is none or a quarter of the time, else
 * `snapshot rollback` to it or (a quarter) a whole read of it served by
 * a second nbdkit with snapshot=NAME beside the live one, which must
 * return the snapshot's model at its size; a third of the rollbacks with nbdkit killed -9
 * 0-1000 ms after the command is sent and restarted: the model of a
 * snapshot is M when it was taken; after a rollback M is that, grown
 * with zeroes to the volume's size (extends since stay), and after a
 * crash it is that if nbdkit's log says the rollback finished, before
 * the kill or at the restart ("was interrupted"), else unchanged).
 * They come in rounds, each round a seeded permutation of the enabled
 * classes (away twice: a short outage is what a real volume meets most,
 * and a partial resync has more corners than a full copy), the next one
 * a seeded number of ops after the last ended.
 * Survivable: one fault at a time; before each one new ops wait (in-flight
 * ones complete) until the stats file shows phase running and all three
 * downstairs active; a killed downstairs must show as not active before
 * the run goes on.  A block is flipped at most once in a run (never on two
 * replicas), only if no op issued in the last MAX_INFLIGHT ops touched it
 * (so it is on that replica), and a replica holding a flipped block that
 * no write, trim or zero issued since touches is the only downstairs later
 * faults may take down.  Such an op rewrites the whole block on every
 * replica (the upstairs writes 4 KiB blocks, read-modify-write for parts);
 * a replica that was away gets it from the live repair of its changed
 * extent, one in flight at a crash of nbdkit from reconciliation if it
 * landed anywhere (if nowhere, the flip stays on its one replica: the rule
 * is a margin, not what correctness rests on).  A live repair alone heals
 * nothing: it compares only the extents that changed, not the flipped
 * one.  A rolled-back replica is special the same way: every block a
 * write, trim or zero issued since the copy touched (and every block
 * still stale on it when the copy was taken) is marked stale on it, a
 * write, trim or zero issued since the restore clears the blocks it
 * touches, and while any is marked, later faults (a second rollback
 * included) may take down only that replica: one replica holding
 * rolled-back blocks at a time, never a second one down or rolled back
 * beside it.  Corrupt and rolled-back replica are then always the same
 * one (each rule picks the other's replica while it holds).  Heals by
 * reads (the freshness check's) are not counted.
 *
 * Replay.  Ops and faults come from two PRNG streams of the seed and
 * faults fire at fixed op numbers (new ops wait for a fault's conditions),
 * so a seed replays the same op and fault sequence; only which ops are in
 * flight together at a given instant depends on timing.  A failure prints
 * the seed, the command line to replay it and the last HIST_SHOW events
 * (op number, kind, connection, offset, length, write id; faults with the
 * downstairs and pid); DIR/sim.log holds every event.  Exit status 0 all
 * good, 1 failure, 2 usage.
 *
 * --inject-bug is the self-check of the model: one write early in the run
 * is recorded in the model under a wrong write id and read back at once,
 * so the run must fail with MISMATCH.
 */
#ifndef CRUCIBLE_SIM_H
#define CRUCIBLE_SIM_H

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libnbd.h>

#include "../../../common/base64.h"
#include "../../../common/geom.h"
#include "../../../downstairs/extent.h"

#define NCONN 4    /* NBD connections, like nbdcopy */
#define PER_CONN 4 /* ops in flight per connection */
#define MAX_INFLIGHT (NCONN * PER_CONN)
#define MAX_IO (32u << 20) /* largest read or write */
#define SECTOR 512
#define BLOCK 4096
#define MIXED 0x80000000u /* sector id: index of per-byte ids */
#define FLIP_PENDING 1    /* flipped[]: corrupt on corrupt_ds */
#define FLIP_HEALED 2     /* flipped[]: rewritten since */
#define HIST 128          /* events kept in memory */
#define HIST_SHOW 50      /* events printed on failure */
#define CHUNK (1u << 20)  /* post-crash and final read size */
#define HEALTH_SECS 180   /* bound on waiting for all active */
#define START_SECS 120    /* bound on a process coming up */
#define STOP_SECS 60      /* bound on a clean stop */
#define NFAULT 10
#define ROUND_MAX (NFAULT + 1) /* away twice per round */

enum kind { K_READ, K_WRITE, K_TRIM, K_ZERO, K_FLUSH };
extern const char *const kind_name[5];
enum fclass {
  F_KILL_DS,
  F_STOP_DS,
  F_FLIP,
  F_KILL_NBDKIT,
  F_RESTART,
  F_DOWN_CRASH,
  F_AWAY,
  F_ROLLBACK,
  F_EXTEND,
  F_SNAPSHOT
};
extern const char *const fault_name[NFAULT];

/* xoshiro256** seeded by splitmix64. */
struct rng {
  uint64_t s[4];
};

/* Per-byte write ids of the volume (see the header comment). */
struct model {
  uint32_t nsec;
  uint32_t *sec;           /* id, or MIXED | index into mix; owned */
  uint32_t (*mix)[SECTOR]; /* split sectors; owned */
  uint32_t nmix, capmix;
  uint32_t *freel; /* free indexes of mix; owned */
  uint32_t nfree;
};

/* One write, trim or zero of L (wid 0 for trim and zero). */
struct uentry {
  uint64_t off, len;
  uint32_t wid;
  bool durable;
  bool inflight; /* not acknowledged: in flight at a crash */
};

/* L: entries e[head..n) have absolute numbers base.. in ack order. */
struct ulog {
  struct uentry *e;
  size_t head, n, cap;
  uint64_t base;
};

struct op {
  bool used, done, inject;
  int err;
  enum kind k;
  unsigned conn;
  uint64_t seq, off, len, mark; /* mark: L's end when a flush was issued */
  uint32_t wid;
  bool fua;
  uint8_t *buf; /* owned */
  double t0;
};

struct proc {
  pid_t pid; /* 0: not running */
  bool stopped;
};

struct opts {
  uint64_t seed;
  unsigned seconds, extent_count, timeout;
  const char *dir, *ds_bin, *plugin;
  char admin_bin[600]; /* crucible-admin beside ds_bin */
  unsigned disabled;   /* bit per enum fclass */
  bool inject;
  bool lenient; /* --lenient-crash: NBD's rule only (header) */
};

struct sim {
  struct opts o;
  struct rng rops, rfault;
  struct model M, D;
  struct ulog L;
  struct op slot[MAX_INFLIGHT];
  struct nbd_handle *h[NCONN];
  unsigned busy[NCONN];
  uint64_t size, extent_bytes, seq;
  uint32_t next_wid;
  uint64_t *blk_mod; /* per 4 KiB block: seq of the last op touching it */
  uint8_t *flipped;  /* per block: 0, FLIP_PENDING or FLIP_HEALED */
  bool crashing;
  /* processes */
  struct proc ds[3], nbdkit;
  int port[3];
  char ds_dir[3][512], sock[512], stats[512], key[512], nblog[512];
  char asock[512];        /* nbdkit's admin socket */
  uint64_t size_alt;      /* nonzero: a connection may also see this size
                         * (nbdkit killed during an extend) */
  uint64_t extends;       /* extend faults that grew the volume */
  unsigned extent_count0; /* the volume's extent count at creation */
  /* faults */
  bool fault_active, long_stop, via_kill;
  enum fclass fc;
  int fds;                /* target downstairs of the active fault */
  int corrupt_ds;         /* holds an unhealed flip, or -1 */
  uint64_t flips_pending; /* blocks flipped and not rewritten since */
  bool no_flush;          /* down-crash outage: flushes become writes */
  uint64_t fault_end, next_fault;
  int round[ROUND_MAX], round_pos, round_len;
  int away_ds;              /* returned from an away fault, not active yet */
  double away_t, away_next; /* when it returned; next stats look */
  uint64_t away_seq;        /* op number when it returned */
  /* rollback (rollback.c) */
  uint64_t snap_seq;      /* op number when DIR/snap was taken */
  uint8_t *snap_stale;    /* per block: stale on the copied replica */
  uint8_t *stale;         /* per block: may be older on stale_ds */
  int stale_ds;           /* holds rolled-back blocks, or -1 */
  uint64_t stale_pending; /* blocks marked in stale */
  bool inject_pending;
  /* counters */
  uint64_t nops[5], bytes[5], nfaults[NFAULT], crash_checked, flips_done;
  uint64_t away_clean; /* away faults that stopped it with SIGTERM */
  uint64_t rollbacks;  /* rollback faults that restored a copy */
  /* snapshot (snap.c) */
  struct model S;                        /* what snapshot snap_name holds */
  bool snap_have;                        /* snap_name exists */
  char snap_name[32];                    /* sim1, sim2, ... */
  unsigned snap_n;                       /* snapshots taken */
  uint64_t snap_rollbacks, snap_resumed; /* rollbacks; finished at start */
  uint64_t snap_reads;                   /* snapshot=NAME read whole */
  double t_start;
  FILE *logf;
  char hist[HIST][200];
  uint64_t nhist;
};

extern struct sim *g_sim; /* for the signal handler and cleanup */

/* Every function of the driver (one binary: no prefixes), by file. */
static inline uint64_t min64(uint64_t a, uint64_t b)
{
  return a < b ? a : b;
}
static inline uint64_t max64(uint64_t a, uint64_t b)
{
  return a > b ? a : b;
}

/* util.c */
double now(void);
uint64_t splitmix(uint64_t *x);
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_range(struct rng *r, uint64_t lo, uint64_t hi);
void on_signal(int sig);
void __attribute__((format(printf, 2, 3)))
event(struct sim *s, const char *fmt, ...);
void tail_file(const char *path, int n);
void __attribute__((noreturn, format(printf, 2, 3)))
fail(struct sim *s, const char *fmt, ...);
void *xmalloc(size_t n);

/* model.c */
uint64_t mix64(uint64_t z);
void content(uint32_t wid, uint64_t off, uint64_t len, uint8_t *buf);
void model_init(struct model *m, uint64_t size);
/* Grow to size bytes; the new sectors read as zeroes (id 0). */
void model_grow(struct model *m, uint64_t size);
void model_free(struct model *m);
void model_copy(struct model *dst, const struct model *src);
uint32_t mix_alloc(struct model *m, uint32_t fill);
void sector_apply_part(struct model *m, uint32_t s, unsigned lo, unsigned hi,
                       uint32_t wid);
void model_apply(struct model *m, uint64_t off, uint64_t len, uint32_t wid);
uint32_t model_wid_at(const struct model *m, uint64_t o);
void model_expect(const struct model *m, uint64_t off, uint64_t len,
                  uint8_t *buf);
bool model_block_written(const struct model *m, uint64_t b);
void ulog_push(struct ulog *l, uint64_t off, uint64_t len, uint32_t wid,
               bool durable, bool inflight);
uint64_t ulog_end(const struct ulog *l);
void ulog_settle(struct ulog *l, struct model *D);
void ulog_flushed(struct ulog *l, struct model *D, uint64_t mark);
void ulog_clear(struct ulog *l);

/* proc.c */
pid_t spawn(struct sim *s, char *const argv[], const char *log);
int wait_exit(pid_t pid, double secs);
int proc_stop(struct proc *p, int sig, double secs);
int run_cmd(struct sim *s, char *const argv[], const char *log, double secs);
int free_port(void);
bool listening(int port);
void ds_log(struct sim *s, int i, char *buf, size_t n);
void ds_start(struct sim *s, int i);
void setup_volume(struct sim *s);
void read_geometry(struct sim *s);
bool read_stats(struct sim *s, char phase[32], char st[3][32]);
void read_repair(struct sim *s, int i, char *out, size_t n);
void wait_healthy(struct sim *s);
void wait_not_active(struct sim *s, int i, double secs);

/* ops.c */
int on_done(void *ud, int *error);
void conns_close(struct sim *s);
void conn_open(struct sim *s, int c);
void nbdkit_start(struct sim *s, bool verify_all);
int64_t submit(struct sim *s, struct op *o);
void explain_byte(struct sim *s, uint64_t o, uint8_t got);
void check_read(struct sim *s, struct op *o);
void acked(struct sim *s, struct op *o);
void retire(struct sim *s, struct op *o);
unsigned inflight(const struct sim *s);
void pump(struct sim *s, int ms);
void drain(struct sim *s);
bool overlaps(const struct sim *s, uint64_t off, uint64_t len);
void issue(struct sim *s, const struct op *t);
uint64_t gen_len(struct rng *r, uint64_t max);
void gen_range(struct sim *s, uint64_t max, uint64_t *off, uint64_t *len);
void gen_op(struct sim *s, struct op *o);
void log_op(struct sim *s, const struct op *o);
void issue_read(struct sim *s, unsigned c, uint64_t off, uint64_t len);
void flush_all(struct sim *s);
/* faults.c: the volume grew to size: model, per-block tables, count. */
void sim_grow(struct sim *s, uint64_t size);
/* proc.c: extent count in region.json of downstairs i. */
uint32_t region_count(struct sim *s, int i);

/* faults.c */
/* Run crucible-admin argv (output to log), kill -9 nbdkit 0..max_us
 * later, wait for the command to end; nbdkit is left stopped. */
void admin_crash(struct sim *s, char *const argv[], const char *log,
                 uint64_t max_us);
bool flip_block(struct sim *s, int i);
void heal_flips(struct sim *s, uint64_t off, uint64_t len);
void ds_stop_clean(struct sim *s, int i);
void away_check(struct sim *s, bool wait);
void away_back(struct sim *s, int i);
void ds_down(struct sim *s, int i, bool kill9);
void ds_up(struct sim *s, int i);
void check_chunk(struct sim *s, uint64_t off, uint64_t n, const uint8_t *got);
int cmp_entry(const void *a, const void *b);
void crash_check(struct sim *s);
void crash_nbdkit(struct sim *s, int ds);
void stop_all(struct sim *s, bool downstairs);
void restart_all(struct sim *s);
enum fclass next_class(struct sim *s);
void fault_begin(struct sim *s);
void fault_schedule(struct sim *s);
void fault_tick(struct sim *s);

/* rollback.c */
int special_ds(struct sim *s);
void rollback_copy(struct sim *s, int i);
void rollback_restore(struct sim *s, int i);
void heal_stale(struct sim *s, uint64_t off, uint64_t len);

/* snap.c */
void snap_fault(struct sim *s);

/* main.c */
void progress(struct sim *s);
void run_stream(struct sim *s);
void final_read(struct sim *s);
void final_replicas(struct sim *s);
void final_phase(struct sim *s);
void summary(struct sim *s);
void __attribute__((noreturn)) usage(void);
uint64_t num(const char *s);
void parse_args(int argc, char **argv, struct opts *o);

#endif
