/* mailbox.c - a cross-thread queue owned by one event loop. Producers append a record to a
 * byte buffer under a mutex and write the eventfd only when the buffer was empty, so a burst
 * costs one wakeup; the owner swaps the buffer for its spare under the mutex and handles the
 * records without holding it. Both buffers are kept and reused: steady traffic allocates
 * nothing. */
#include "mailbox.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"

struct mailbox_rec {
	uint32_t type;
	uint32_t alen;
	uint64_t blen;
	uint64_t held; /* shared bytes the record keeps alive (mailbox_post_held) */
	               /* a, then b, then padding to 8 bytes */
};

struct mailbox {
	pthread_mutex_t mu;
	uint8_t *buf; /* filled by producers, under mu */
	size_t len, cap;
	uint8_t *spare; /* the owner's, handled outside mu */
	size_t spare_cap;
	size_t limit;
	size_t reserved;  /* bytes set aside by mailbox_reserve and not posted yet, under mu */
	size_t held;      /* shared bytes waiting records keep alive (counted), under mu */
	uint64_t refused; /* under mu */
	int efd;
	struct event *ev;
	mailbox_fn fn;
	void *arg;
};

#define MAILBOX_KEEP (1u << 20) /* a spare buffer larger than this is freed after use */
#define MAILBOX_ALIGN(n) (((n) + 7u) & ~(size_t)7u)

static void
mailbox_ready(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;

	(void)what;
	/* Reset the counter first: a post after this point wakes us again. */
	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	mailbox_drain(arg);
}

struct mailbox *
mailbox_new(struct event_base *base, mailbox_fn fn, void *arg, size_t limit)
{
	struct mailbox *mb;

	if ((mb = calloc(1, sizeof(*mb))) == NULL) {
		log_warn("mailbox_new");
		return NULL;
	}
	mb->fn = fn;
	mb->arg = arg;
	mb->limit = limit;
	mb->efd = -1;
	if (pthread_mutex_init(&mb->mu, NULL) != 0) {
		free(mb);
		return NULL;
	}
	if ((mb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		log_warn("eventfd");
		mailbox_free(mb);
		return NULL;
	}
	if (base != NULL) {
		mb->ev = event_new(base, mb->efd, EV_READ | EV_PERSIST, mailbox_ready, mb);
		if (mb->ev == NULL || event_add(mb->ev, NULL) < 0) {
			log_warnx("mailbox: cannot register its eventfd");
			mailbox_free(mb);
			return NULL;
		}
	}
	return mb;
}

void
mailbox_free(struct mailbox *mb)
{
	if (mb == NULL)
		return;
	if (mb->ev != NULL)
		event_free(mb->ev);
	if (mb->efd >= 0)
		close(mb->efd);
	pthread_mutex_destroy(&mb->mu);
	free(mb->buf);
	free(mb->spare);
	free(mb);
}

/* Room a record of alen + blen bytes takes in the buffer. */
static size_t
mailbox_need(size_t alen, size_t blen)
{
	return sizeof(struct mailbox_rec) + MAILBOX_ALIGN(alen + blen);
}

enum mailbox_mode {
	MAILBOX_CONTROL,  /* never refused for room */
	MAILBOX_BOUNDED,  /* refused when the limit would be passed */
	MAILBOX_RESERVED, /* room set aside earlier by mailbox_reserve */
};

static int
mailbox_put(struct mailbox *mb, unsigned type, const void *a, size_t alen, const void *b,
            size_t blen, enum mailbox_mode mode, size_t held)
{
	size_t need = mailbox_need(alen, blen);
	struct mailbox_rec rec = {(uint32_t)type, (uint32_t)alen, (uint64_t)blen, held};
	uint64_t one = 1;
	int wake;

	if (alen > UINT32_MAX)
		return -1;
	pthread_mutex_lock(&mb->mu);
	if (mode == MAILBOX_BOUNDED && mb->len + mb->reserved + mb->held + need > mb->limit) {
		mb->refused++;
		pthread_mutex_unlock(&mb->mu);
		return -1;
	}
	if (mode == MAILBOX_RESERVED) {
		/* What mailbox_reserve set aside: for a held record, the shared bytes. */
		size_t r = held > 0 ? mailbox_need(alen, held) : need;

		mb->reserved -= r < mb->reserved ? r : mb->reserved;
		mb->held += held;
	}
	if (mb->len + need > mb->cap) {
		size_t cap = mb->cap ? mb->cap : 4096;
		uint8_t *p;

		while (cap < mb->len + need)
			cap *= 2;
		if ((p = realloc(mb->buf, cap)) == NULL) {
			pthread_mutex_unlock(&mb->mu);
			return -1;
		}
		mb->buf = p;
		mb->cap = cap;
	}
	memcpy(mb->buf + mb->len, &rec, sizeof(rec));
	if (alen > 0)
		memcpy(mb->buf + mb->len + sizeof(rec), a, alen);
	if (blen > 0)
		memcpy(mb->buf + mb->len + sizeof(rec) + alen, b, blen);
	wake = mb->len == 0;
	mb->len += need;
	pthread_mutex_unlock(&mb->mu);
	/* Only the post that made the box non-empty pays for the wakeup. */
	if (wake && write(mb->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("mailbox: eventfd write");
	return 0;
}

int
mailbox_post(struct mailbox *mb, unsigned type, const void *a, size_t alen, const void *b,
             size_t blen, int bounded)
{
	return mailbox_put(mb, type, a, alen, b, blen, bounded ? MAILBOX_BOUNDED : MAILBOX_CONTROL,
	                   0);
}

int
mailbox_reserve(struct mailbox *mb, size_t alen, size_t blen)
{
	size_t need = mailbox_need(alen, blen);
	int rc = 0;

	if (alen > UINT32_MAX)
		return -1;
	pthread_mutex_lock(&mb->mu);
	if (mb->len + mb->reserved + mb->held + need > mb->limit) {
		mb->refused++;
		rc = -1;
	} else {
		mb->reserved += need;
	}
	pthread_mutex_unlock(&mb->mu);
	return rc;
}

void
mailbox_unreserve(struct mailbox *mb, size_t alen, size_t blen)
{
	size_t need = mailbox_need(alen, blen);

	pthread_mutex_lock(&mb->mu);
	mb->reserved -= need < mb->reserved ? need : mb->reserved;
	pthread_mutex_unlock(&mb->mu);
}

int
mailbox_post_reserved(struct mailbox *mb, unsigned type, const void *a, size_t alen, const void *b,
                      size_t blen)
{
	return mailbox_put(mb, type, a, alen, b, blen, MAILBOX_RESERVED, 0);
}

int
mailbox_post_held(struct mailbox *mb, unsigned type, const void *a, size_t alen, const void *b,
                  size_t blen, size_t held)
{
	return mailbox_put(mb, type, a, alen, b, blen, MAILBOX_RESERVED, held);
}

void
mailbox_drain(struct mailbox *mb)
{
	uint8_t *p;
	size_t len, cap, held = 0;

	pthread_mutex_lock(&mb->mu);
	p = mb->buf;
	len = mb->len;
	cap = mb->cap;
	mb->buf = mb->spare;
	mb->cap = mb->spare_cap;
	mb->len = 0;
	pthread_mutex_unlock(&mb->mu);
	for (size_t off = 0; off < len;) {
		struct mailbox_rec rec;

		memcpy(&rec, p + off, sizeof(rec));
		off += sizeof(rec);
		mb->fn(mb->arg, rec.type, p + off, rec.alen, p + off + rec.alen, (size_t)rec.blen);
		off += MAILBOX_ALIGN(rec.alen + (size_t)rec.blen);
		held += (size_t)rec.held;
	}
	if (held > 0) {
		/* Handled: the owner dropped or passed on its references to the shared bytes. */
		pthread_mutex_lock(&mb->mu);
		mb->held -= held < mb->held ? held : mb->held;
		pthread_mutex_unlock(&mb->mu);
	}
	/* The handled buffer becomes the spare for the next swap, unless a burst made it big:
	 * then it goes, so a quiet worker does not keep megabytes for nothing. */
	if (cap > MAILBOX_KEEP) {
		free(p);
		p = NULL;
		cap = 0;
	}
	mb->spare = p;
	mb->spare_cap = cap;
}

void
mailbox_counts(struct mailbox *mb, size_t *pending, uint64_t *refused)
{
	pthread_mutex_lock(&mb->mu);
	if (pending != NULL)
		*pending = mb->len + mb->held;
	if (refused != NULL)
		*refused = mb->refused;
	pthread_mutex_unlock(&mb->mu);
}
