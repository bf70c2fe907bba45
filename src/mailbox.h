/* mailbox.h - messages into one event loop from any thread: the only way workers and the
 * main loop talk to each other (drain, stop, a new configuration snapshot, a message published
 * on another worker's in-process hub). Records are copied in under a mutex and handled by the
 * owning loop, in order, outside it. */
#ifndef WSGATE_MAILBOX_H
#define WSGATE_MAILBOX_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct mailbox;

/* Called by the owning loop for each record: a[0..alen) and b[0..blen) are valid only during
 * the call. */
typedef void (*mailbox_fn)(void *arg, unsigned type, const void *a, size_t alen, const void *b,
                           size_t blen);

/* A mailbox handled on base. limit: bytes that bounded posts may leave waiting (control
 * messages are never refused). NULL (logged) on failure. */
struct mailbox *mailbox_new(struct event_base *base, mailbox_fn fn, void *arg, size_t limit);
/* Drops what is still queued. The owning loop must not be running. */
void mailbox_free(struct mailbox *mb);

/* From any thread: queues one record and wakes the owner when the box was empty. bounded:
 * refuse (-1) when the records waiting already reach the limit; -1 also on ENOMEM. */
int mailbox_post(struct mailbox *mb, unsigned type, const void *a, size_t alen, const void *b,
                 size_t blen, int bounded) __attribute__((warn_unused_result));
/* All or none across several mailboxes (one broadcast to every worker): set aside room for a
 * bounded record of alen + blen bytes in each box first, then post into the reservations, or
 * give every one back. From any thread. reserve: 0, or -1 (counted as a refusal) when the room
 * is not there; post_reserved: -1 only on ENOMEM (the reservation is consumed either way). */
int mailbox_reserve(struct mailbox *mb, size_t alen, size_t blen)
    __attribute__((warn_unused_result));
void mailbox_unreserve(struct mailbox *mb, size_t alen, size_t blen);
int mailbox_post_reserved(struct mailbox *mb, unsigned type, const void *a, size_t alen,
                          const void *b, size_t blen) __attribute__((warn_unused_result));
/* Posts, into a reservation made with mailbox_reserve(mb, alen, held), a small record that
 * keeps alive held bytes shared with other boxes (a reference to one frame every worker
 * delivers): those bytes count against the limit until the owner has handled the record, as a
 * copy would, without being copied. -1 only on ENOMEM (the reservation is consumed). */
int mailbox_post_held(struct mailbox *mb, unsigned type, const void *a, size_t alen, const void *b,
                      size_t blen, size_t held) __attribute__((warn_unused_result));
/* Handles whatever is queued now, on the calling thread (tests; the loop does it itself). */
void mailbox_drain(struct mailbox *mb);

/* Bytes waiting and bounded posts refused so far (for metrics and tests; any thread). Either
 * pointer may be NULL. */
void mailbox_counts(struct mailbox *mb, size_t *pending, uint64_t *refused);

#endif
