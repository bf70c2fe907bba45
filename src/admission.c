/* admission.c - the pure arithmetic of the admission budget: the token bucket, the ramp, batch
 * sizes, the instance's share and the retry window and its jitter. No clock, no randomness,
 * no I/O: the caller passes them in (admission_fleet.c), the unit tests drive them. */
#include "admission.h"

#include <stdio.h>

void
admission_bucket_init(struct admission_bucket *b, double rate, double burst, uint64_t now_ms)
{
	b->rate = rate;
	b->burst = burst;
	b->tokens = burst;
	b->ts_ms = now_ms;
}

uint64_t
admission_bucket_take(struct admission_bucket *b, uint64_t want, uint64_t now_ms)
{
	uint64_t got;

	/* A clock that went back refills nothing, and never takes tokens away. */
	if (now_ms > b->ts_ms) {
		b->tokens += (double)(now_ms - b->ts_ms) * b->rate / 1000.0;
		if (b->tokens > b->burst)
			b->tokens = b->burst;
		b->ts_ms = now_ms;
	}
	if (b->tokens < 1.0)
		return 0;
	got = (uint64_t)b->tokens;
	if (got > want)
		got = want;
	b->tokens -= (double)got;
	return got;
}

double
admission_burst(uint64_t rate)
{
	double burst = (double)rate / 10.0;
	double batch = (double)admission_batch(rate, 1.0);

	return burst > batch ? burst : batch;
}

double
admission_ramp_factor(uint64_t ms_since_ready, uint64_t ramp_ms)
{
	double f;

	if (ramp_ms == 0 || ms_since_ready >= ramp_ms)
		return 1.0;
	f = (double)ms_since_ready / (double)ramp_ms;
	return f < 0.05 ? 0.05 : f;
}

uint64_t
admission_batch(uint64_t rate, double factor)
{
	/* One tick's worth: one request per tick at most, so Redis sees ~20 calls a second per
	 * instance and pool, whatever the handshake rate. */
	double b = (double)rate * factor * ADMISSION_TICK_MS / 1000.0;
	uint64_t n = (uint64_t)(b + 0.999);

	return n < 1 ? 1 : n;
}

uint64_t
admission_hold(uint64_t rate, double f, uint64_t live)
{
	double h = (double)rate * f / (double)(live > 0 ? live : 1) * ADMISSION_HOLD_MS / 1000.0;
	uint64_t n = (uint64_t)(h + 0.999), batch = admission_batch(rate, f);

	return n > batch ? n : batch;
}

uint64_t
admission_want(uint64_t rate, double f, uint64_t live, uint64_t have, uint64_t elapsed_ms)
{
	uint64_t hold = admission_hold(rate, f, live), n;

	if (have >= hold)
		return 0;
	/* What the fleet's rate gave since the last ask: a loop that ticks late catches up
	 * (one 50 ms batch per tick admitted a third of the budget on a loaded machine). At
	 * least a tick's worth, at most a second's. */
	if (elapsed_ms < ADMISSION_TICK_MS)
		elapsed_ms = ADMISSION_TICK_MS;
	if (elapsed_ms > 1000)
		elapsed_ms = 1000;
	n = (uint64_t)((double)rate * f * (double)elapsed_ms / 1000.0 + 0.999);
	return n < hold - have ? n : hold - have;
}

uint64_t
admission_share(uint64_t rate, uint64_t configured_share, uint64_t live)
{
	uint64_t s;

	if (configured_share > 0)
		return configured_share;
	s = rate / (live > 0 ? live : 1);
	return s < 1 ? 1 : s;
}

uint64_t
admission_slot(uint64_t now, uint64_t next, uint64_t share, uint64_t max_ms, uint64_t *after)
{
	uint64_t step = 1000 / (share > 0 ? share : 1), slot = next > now ? next : now;

	if (slot - now > max_ms) /* the queue is longer than anyone is told to wait */
		slot = now + max_ms;
	*after = slot + (step > 0 ? step : 1);
	return slot;
}

uint64_t
admission_jitter_ms(uint64_t window_ms, uint32_t rnd)
{
	uint64_t ms = window_ms * (uint64_t)rnd >> 32;

	return ms < 100 ? 100 : ms;
}

uint64_t
admission_retry_after_s(uint64_t ms)
{
	uint64_t s = (ms + 999) / 1000;

	return s < 1 ? 1 : s;
}

size_t
admission_format_retry(char *buf, size_t n, uint64_t ms)
{
	int len = snprintf(buf, n, "retry=%llu.%llu", (unsigned long long)(ms / 1000),
	                   (unsigned long long)(ms % 1000 / 100));

	return len < 0 ? 0 : (size_t)len < n ? (size_t)len : n - 1;
}
