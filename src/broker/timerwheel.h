/*
 * timerwheel.h - a hierarchical timing wheel: millions of pending timers,
 * each costing 16 bytes, added and fired in constant time, never scanned.
 *
 * Levels (with the default 100 ms tick): 600 slots of one tick (1 min),
 * 60 slots of one minute (1 h), 24 slots of one hour (1 day), 64 slots of
 * one day. A timer sits in the lowest level whose range covers it and moves
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
