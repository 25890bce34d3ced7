/* crucible-c: the one singly linked FIFO both sides use (job queues,
 * ready lists, corked frames): a head, a tail and a `next'-style field
 * named by the caller.  Header only, no allocation. */
#ifndef CRUCIBLE_LIST_H
#define CRUCIBLE_LIST_H

/* Append node to the FIFO (head, tail); field is its link member. */
#define FIFO_PUSH(head, tail, node, field)                                   \
  do {                                                                       \
    (node)->field = NULL;                                                    \
    if (tail)                                                                \
      (tail)->field = (node);                                                \
    else                                                                     \
      (head) = (node);                                                       \
    (tail) = (node);                                                         \
  } while (0)

#endif
