/* conn_flush.h - plain-TCP output written once per loop turn, straight from the loop: a
 * connection whose output grew is marked, and one callback at the end of the turn writes every
 * marked connection's output with one send each, without the epoll_ctl pair a write event costs
 * per write. */
#ifndef WSGATE_CONN_FLUSH_H
#define WSGATE_CONN_FLUSH_H

struct conn;

/* c's output grew: write it at the end of this loop turn (plain TCP only: a TLS connection's
 * bufferevent writes its own; one already marked is on this turn's list). */
void conn_flush_mark(struct conn *c);
/* c is being freed: drop it from this turn's list. */
void conn_flush_forget(struct conn *c);

#endif
