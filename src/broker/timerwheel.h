/*
 * timerwheel.h - a hierarchical timing wheel: millions of pending timers,
 * each costing 16 bytes, added and fired in constant time, never scanned.
 *
 * Levels: 600 slots of one tick, 60 slots of 600 ticks, 24 slots of 36,000
 * ticks, 64 slots of 864,000 ticks; with the broker's 20 ms tick that is
 * 12 s, 12 min, 4.8 h and 12.8 days. A timer sits in the lowest level whose range covers it and moves
 * down a level (cascades) when the slot of the level above comes due; one
 * beyond the top level waits in an overflow list until it fits.
 *
 * Not thread-safe: the owner serializes access. Time is whatever clock the
 * owner passes in (milliseconds, non-decreasing).
 */
#ifndef CFX_BROKER_TIMERWHEEL_H
#define CFX_BROKER_TIMERWHEEL_H

#include <stddef.h>
#include <stdint.h>

struct cfx_twheel;

/* Creates a wheel whose time starts at `now_ms`, with ticks of `tick_ms`. */
struct cfx_twheel *cfx_twheel_new(int64_t tick_ms, int64_t now_ms);
void cfx_twheel_free(struct cfx_twheel *w);

/* Adds a timer; one already due fires at the next advance. */
void cfx_twheel_add(struct cfx_twheel *w, int64_t due_ms, uint64_t id);

/*
 * Advances the wheel's time to `now_ms` and calls fire(arg, id, due_ms) for
 * every timer due at or before the end of the current tick, earliest ticks
 * first. `fire` may add timers (they fire in a later tick or this one).
 */
void cfx_twheel_advance(struct cfx_twheel *w, int64_t now_ms,
			void (*fire)(void *arg, uint64_t id, int64_t due_ms), void *arg);

/* Timers pending. */
size_t cfx_twheel_count(const struct cfx_twheel *w);
/* Bytes of memory the wheel holds (for the per-timer cost). */
size_t cfx_twheel_memory(const struct cfx_twheel *w);

#endif
