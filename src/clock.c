/* clock.c - monotonic time (clock.h). The coarse clock is a vDSO read without a syscall: every
 * frame read and write asks for it. */
#include "clock.h"

#include <time.h>

#include <event2/event.h>

static uint64_t
clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
clock_now_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC_COARSE);
}

uint64_t
clock_fine_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

int
clock_timer_arm(struct event *ev, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

	return event_add(ev, &tv);
}
