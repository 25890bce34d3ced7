/* crucible-c: progress reports for long command-line work.
 *
 * Used by crucible-downstairs create --preallocate, verify, export and
 * import.  On a terminal the report is one line redrawn in place (at most
 * PROGRESS_TTY_INTERVAL apart) with a bar, bytes done, rate and ETA; on
 * anything else (a log file, a pipe, journald) a plain line every
 * PROGRESS_LOG_INTERVAL seconds, so logs stay readable.  progress_end
 * leaves one final summary line after success ("export: 64 MiB in 1.2 s,
 * 53 MiB/s").
 *
 * Invariants: done <= total at every report (updates are clamped);
 * nothing is printed before the first interval has passed except by
 * progress_end; the redrawn terminal line is erased before any other output
 * (progress_clear).  No libuv, no nbdkit: plain stdio and
 * clock_gettime(CLOCK_MONOTONIC); not thread-safe (one caller thread).
 */
#ifndef CRUCIBLE_PROGRESS_H
#define CRUCIBLE_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PROGRESS_TTY_INTERVAL 0.2  /* seconds between redraws */
#define PROGRESS_LOG_INTERVAL 10.0 /* seconds between plain lines */
#define PROGRESS_LINE_MAX 160

struct progress {
  const char *label; /* borrowed; "export", "verify" ... */
  FILE *out;         /* borrowed; NULL: report nothing */
  bool tty;          /* redraw in place, else plain periodic lines */
  bool drawn;        /* a terminal line is on screen */
  uint64_t total;    /* bytes (or units) of the whole job; 0 = unknown */
  uint64_t done;
  double start; /* seconds, monotonic */
  double last;  /* time of the last report */
};

/* Start a report on out (normally stderr); tty decides the style (callers
 * pass isatty(fileno(out))). */
void progress_start(struct progress *p, FILE *out, bool tty, const char *label,
                    uint64_t total);
/* done so far (absolute, clamped to total): report if an interval passed. */
void progress_update(struct progress *p, uint64_t done);
/* Same, with the clock given (seconds since start): for tests. */
void progress_update_at(struct progress *p, uint64_t done, double now);
/* Erase the terminal line so other output can be printed. */
void progress_clear(struct progress *p);
/* Erase the bar; if ok, a final line "LABEL: SIZE in T s, RATE/s" (on
 * failure nothing: the caller prints the one error line). */
void progress_end(struct progress *p, bool ok);

/* The report text for done of total after elapsed seconds, without
 * newline: tty style has a bar.  Pure; returns the length. */
int progress_format(char *buf, size_t len, const char *label, bool tty,
                    uint64_t done, uint64_t total, double elapsed);
/* Byte count for people: "0 bytes", "1 GiB", "1.5 MiB". */
void progress_bytes(uint64_t v, char *buf, size_t len);
/* Seconds for people: "0:07", "1:02:03"; "--:--" if unknown (< 0). */
void progress_duration(double secs, char *buf, size_t len);

#endif
