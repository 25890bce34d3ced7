/* crucible-c: one receive buffer of length-prefixed frames (proto.h).
 *
 * Used by both ends of a connection (plugin/client.c, downstairs/
 * server.c); no libuv.  The buffer grows to hold one whole frame, so a
 * frame is decoded in place, and a whole frame's buffer can be handed
 * off (to a job that keeps pointers into it) without copying the frame.
 *
 * Cycle: framebuf_space (room for the next read) -> the caller reads
 * into it -> framebuf_commit (n bytes arrived) -> framebuf_next until it
 * returns 0 (each whole frame, then framebuf_consume or framebuf_take).
 *
 * Guarantees: a frame's length is checked against the caller's max as
 * soon as its length field has arrived, and only a length that passed
 * sizes the buffer (a refused one never grows it); frames come out
 * whole and in arrival order; a frame handed off stays valid at the
 * address framebuf_next gave.  Every field belongs to the framebuf.
 */
#ifndef CRUCIBLE_FRAMEBUF_H
#define CRUCIBLE_FRAMEBUF_H

#include <stddef.h>
#include <stdint.h>

/* framebuf_space's stop_min when no frame's last read is stopped. */
#define FRAMEBUF_NO_STOP SIZE_MAX

struct framebuf {
  uint8_t *buf; /* owned; NULL until the first framebuf_space */
  size_t cap;
  size_t off;  /* start of the bytes not consumed yet (a frame's start) */
  size_t len;  /* bytes held from off */
  size_t want; /* length of the frame at off once checked, else 0 */
  size_t cur;  /* length of the frame framebuf_next returned, until
                * consumed or taken (0: none) */
};

/* Free the buffer; fb is then empty (and reusable). */
void framebuf_free(struct framebuf *fb);

/* Free space for the next read: at least min_room bytes (>= 1) and the
 * rest of the frame at off when its length is known, moving the held
 * bytes to the start only when the space after them is too small and
 * growing only then.  When that frame is at least stop_min long, the
 * space offered ends at the frame's end, so it can be handed off without
 * a tail to copy.  0 and *p, *n set, or -ENOMEM with *p NULL and *n 0
 * (an empty buffer: libuv then reports UV_ENOBUFS; fb unchanged). */
int framebuf_space(struct framebuf *fb, size_t min_room, size_t stop_min,
                   uint8_t **p, size_t *n);

/* n bytes were read into the space framebuf_space gave. */
void framebuf_commit(struct framebuf *fb, size_t n);

/* The next whole frame, at most max bytes long: 1 and *frame, *len set
 * (valid until framebuf_consume, or for good after framebuf_take); 0 if
 * it has not fully arrived; -EPROTO (length field below the header or
 * past PROTO_MAX_FRAME) or -EMSGSIZE (past max) with *len the length
 * field.  The previous frame must have been consumed or taken. */
int framebuf_next(struct framebuf *fb, size_t max, const uint8_t **frame,
                  size_t *len);

/* Drop the current frame (none: nothing happens, e.g. after a take). */
void framebuf_consume(struct framebuf *fb);

/* Hand off the buffer holding the current frame (the caller frees it;
 * the frame stays where framebuf_next put it: no copy).  Reading goes
 * on in a new buffer of max(ncap, tail) bytes holding the bytes that
 * followed the frame.  NULL (nothing changed) on ENOMEM or without a
 * current frame. */
uint8_t *framebuf_take(struct framebuf *fb, size_t ncap);

#endif
