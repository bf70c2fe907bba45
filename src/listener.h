/* listener.h - accepting sockets for one worker: bind, accept, hand the fd to conn_new;
 * pauses accepting on EMFILE/ENFILE and resumes from a timer instead of spinning. */
#ifndef WSGATE_LISTENER_H
#define WSGATE_LISTENER_H

#include "config.h"

struct worker;
struct listener;

struct listener *listener_new(struct worker *w, const struct config_listen *cl);
void listener_free(struct listener *l);

#endif
