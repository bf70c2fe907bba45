/* transport.h - how bytes reach a client: plain TCP through a socket transport of our own, TLS
 * through bufferevent_openssl. The rest of the gateway sees only these calls; nothing outside
 * transport*.c and tls.c touches the socket's events or OpenSSL's connection objects.
 *
 * Why plain TCP is not a libevent socket bufferevent (issue #12 items 4-6, measured in
 * bench/results/tls-idle-memory.md): an idle socket bufferevent holds ~1,000 bytes (its private
 * struct with two events, two evbuffers, their callbacks), and every read asks FIONREAD first and
 * reads at most 4096 bytes. This one holds one event and the output; the input exists only while
 * bytes wait in it (a read borrows the thread's spare), and a read is one recv of up to
 * TRANSPORT_READ_MAX. The semantics the connection code relies on are the bufferevent's: read
 * and write callbacks, EOF and errors as events, a write low watermark, enable and disable. */
#ifndef WSGATE_TRANSPORT_H
#define WSGATE_TRANSPORT_H

#include <stddef.h>

struct bufferevent;
struct event_base;
struct evbuffer;
struct tls_server;
struct transport;

/* What the event callback is told; the values are libevent's BEV_EVENT_* (transport.c checks). */
#define TRANSPORT_EOF 0x10
#define TRANSPORT_ERROR 0x20

/* One read of a plain socket takes at most this much; more waits for the next loop turn. */
#define TRANSPORT_READ_MAX (64 * 1024)
/* One write by the transport's own write event gives the kernel at most this much. */
#define TRANSPORT_WRITE_MAX (256 * 1024 + 1024)

struct transport_cbs {
	void (*read)(struct transport *t, void *arg);  /* bytes were added to the input */
	void (*write)(struct transport *t, void *arg); /* the output fell to the write low mark */
	void (*event)(struct transport *t, short what, void *arg); /* TRANSPORT_EOF, _ERROR */
};

/* A transport for an accepted socket: plain when tls is NULL, else a TLS server session. Takes
 * ownership of fd (closed on failure). Reading and writing start disabled. */
struct transport *transport_server_new(struct event_base *base, int fd, struct tls_server *tls);
/* Closes the socket and frees everything. Not from inside t's own callbacks. */
void transport_free(struct transport *t);
/* cbs is kept (it must outlive t); NULL stops every callback. */
void transport_setcb(struct transport *t, const struct transport_cbs *cbs, void *arg);
/* EV_READ and/or EV_WRITE, as bufferevent_enable/disable. */
void transport_enable(struct transport *t, short what);
void transport_disable(struct transport *t, short what);

/* The input: what was read and not yet drained. Never NULL (made when asked while empty). */
struct evbuffer *transport_input(struct transport *t);
size_t transport_input_len(const struct transport *t);
/* The output: what is added here is written (see transport_write_soon). */
struct evbuffer *transport_output(struct transport *t);
/* The socket, or -1. */
int transport_fd(const struct transport *t);
/* The write callback runs after a write by the transport leaves at most low bytes. */
void transport_set_write_low(struct transport *t, size_t low);

/* Plain only (a TLS session arms its own writes): bytes were added to the output and nobody
 * wrote them in this turn: the write event takes them. */
void transport_write_soon(struct transport *t);
/* Plain only: someone wrote the output directly (conn_flush.c). Empty: no write event; else
 * the write event takes the rest. */
void transport_written(struct transport *t);
/* 1 while the write event waits for the socket to take the output (tests). */
int transport_write_pending(const struct transport *t);

/* All queued output was written and nothing more will be: tell the peer (FIN for plain TCP,
 * close_notify for TLS) while still reading until its EOF. */
void transport_finish(struct transport *t);
/* 1 when the transport speaks TLS. */
int transport_is_tls(const struct transport *t);

/* For a libevent socket bufferevent (a backend's, upstream_conn.c): libevent 2.1 reads a socket
 * at most EVBUFFER_MAX_READ (4096) bytes at a time, each read after an ioctl(FIONREAD). When
 * the last read filled those 4096 bytes, this reads what else the socket holds (up to
 * TRANSPORT_READ_MORE) with one readv into bev's input, no FIONREAD. Plain socket bufferevents
 * only (a TLS one's socket carries records). An EOF or an error is left to libevent's next read
 * to report. Returns the bytes added. */
#define TRANSPORT_READ_MORE (60 * 1024)
size_t transport_read_more(struct bufferevent *bev);
/* Whether the read that led to this callback may have been cut at libevent's 4096 bytes: the
 * input grew by that much since the last callback left it at *left (kept by the caller). */
int transport_read_was_cut(size_t len, size_t left);

#endif
