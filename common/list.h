/* crucible-c: the lists both sides use.  FIFO_PUSH: the one singly
 * linked FIFO (job queues, ready lists, corked frames): a head, a tail
 * and a `next'-style field named by the caller.  DLIST_UNLINK: taking a
 * node off a doubly linked list with `prev' and `next' members (the
 * upstairs' in-flight jobs, the downstairs' scheduler and extent LRU).
 * Header only, no allocation. */
#ifndef CRUCIBLE_LIST_H
#define CRUCIBLE_LIST_H

/* Append node to the FIFO (head, tail); field is its link member. */
#define FIFO_PUSH(head, tail, node, field) \
  do {                                     \
    (node)->field = NULL;                  \
    if (tail)                              \
      (tail)->field = (node);              \
    else                                   \
      (head) = (node);                     \
    (tail) = (node);                       \
  } while (0)

/* Unlink node from the list (head, tail); its links end NULL. */
#define DLIST_UNLINK(head, tail, node)   \
  do {                                   \
    if ((node)->prev)                    \
      (node)->prev->next = (node)->next; \
    else                                 \
      (head) = (node)->next;             \
    if ((node)->next)                    \
      (node)->next->prev = (node)->prev; \
    else                                 \
      (tail) = (node)->prev;             \
    (node)->prev = (node)->next = NULL;  \
  } while (0)

#endif
