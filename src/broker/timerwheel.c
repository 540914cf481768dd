/*
 * timerwheel.c - the hierarchical timing wheel (see timerwheel.h).
 *
 * Time is counted in ticks. Level L has N[L] slots, each W[L] ticks wide
 * (W[0] = 1). A timer due at tick d, with the wheel at tick n, lives at
 * the lowest level L where d / W[L] - n / W[L] < N[L], in slot
 * (d / W[L]) % N[L]. At every tick t the wheel first cascades, from the
 * top down, each level L >= 1 whose slot boundary t is on (t % W[L] == 0):
 * the slot (t / W[L]) % N[L] is emptied and its timers are added again,
 * landing lower. Then the level-0 slot t % N[0] fires.
 */
#include "broker/timerwheel.h"

#include "base/common.h"

#define LEVELS 4

static const uint32_t slots_of[LEVELS] = { 600, 60, 24, 64 };
static const int64_t width_of[LEVELS] = { 1, 600, 600 * 60, 600 * 60 * 24 };

struct tw_entry {
	int64_t due_ms;
	uint64_t id;
};

struct tw_slot {
	struct tw_entry *v;
	uint32_t n, cap;
};

struct cfx_twheel {
	int64_t tick_ms;
	int64_t now_tick;
	struct tw_slot *level[LEVELS];
	struct tw_slot overflow;
	struct tw_slot due; /* added already due: fire at the next advance */
	size_t count;
};

static void slot_push(struct tw_slot *s, const struct tw_entry *e)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 4;
		s->v = cfx_realloc(s->v, s->cap * sizeof *s->v);
	}
	s->v[s->n++] = *e;
}

struct cfx_twheel *cfx_twheel_new(int64_t tick_ms, int64_t now_ms)
{
	struct cfx_twheel *w = cfx_calloc(1, sizeof *w);

	CFX_ASSERT(tick_ms > 0);
	w->tick_ms = tick_ms;
	w->now_tick = now_ms / tick_ms;
	for (int l = 0; l < LEVELS; l++)
		w->level[l] = cfx_calloc(slots_of[l], sizeof(struct tw_slot));
	return w;
}

void cfx_twheel_free(struct cfx_twheel *w)
{
	if (!w)
		return;
	for (int l = 0; l < LEVELS; l++) {
		for (uint32_t i = 0; i < slots_of[l]; i++)
			cfx_free(w->level[l][i].v);
		cfx_free(w->level[l]);
	}
	cfx_free(w->overflow.v);
	cfx_free(w->due.v);
	cfx_free(w);
}

/* A timer fires at the end of the tick that holds its time, never before. */
static int64_t due_tick(const struct cfx_twheel *w, const struct tw_entry *e)
{
	return e->due_ms <= 0 ? 0 : (e->due_ms + w->tick_ms - 1) / w->tick_ms;
}

/* Places an entry relative to the current tick. */
static void place(struct cfx_twheel *w, const struct tw_entry *e)
{
	int64_t dt = due_tick(w, e);

	if (dt <= w->now_tick) {
		slot_push(&w->due, e);
		return;
	}
	for (int l = 0; l < LEVELS; l++) {
		int64_t d = dt / width_of[l], n = w->now_tick / width_of[l];
		if (d - n < (int64_t)slots_of[l]) {
			slot_push(&w->level[l][d % slots_of[l]], e);
			return;
		}
	}
	slot_push(&w->overflow, e);
}

void cfx_twheel_add(struct cfx_twheel *w, int64_t due_ms, uint64_t id)
{
	struct tw_entry e = { .due_ms = due_ms, .id = id };
	place(w, &e);
	w->count++;
}

/* Empties a slot and places its entries again (relative to now_tick). */
static void cascade(struct cfx_twheel *w, struct tw_slot *s)
{
	struct tw_slot old = *s;

	*s = (struct tw_slot){ 0 };
	for (uint32_t i = 0; i < old.n; i++)
		place(w, &old.v[i]);
	cfx_free(old.v);
}

static void fire_slot(struct cfx_twheel *w, struct tw_slot *s,
		      void (*fire)(void *arg, uint64_t id, int64_t due_ms), void *arg)
{
	/* Take the slot first: fire() may add timers to it. */
	struct tw_slot taken = *s;

	*s = (struct tw_slot){ 0 };
	for (uint32_t i = 0; i < taken.n; i++) {
		w->count--;
		fire(arg, taken.v[i].id, taken.v[i].due_ms);
	}
	cfx_free(taken.v);
}

void cfx_twheel_advance(struct cfx_twheel *w, int64_t now_ms,
			void (*fire)(void *arg, uint64_t id, int64_t due_ms), void *arg)
{
	int64_t target = now_ms / w->tick_ms;

	fire_slot(w, &w->due, fire, arg);
	while (w->now_tick < target) {
		int64_t t = ++w->now_tick;

		for (int l = LEVELS - 1; l >= 1; l--)
			if (t % width_of[l] == 0)
				cascade(w, &w->level[l][(t / width_of[l]) % slots_of[l]]);
		/* The top level wrapped: the overflow may fit now. */
		if (t % (width_of[LEVELS - 1] * slots_of[LEVELS - 1]) == 0)
			cascade(w, &w->overflow);
		fire_slot(w, &w->level[0][t % slots_of[0]], fire, arg);
		fire_slot(w, &w->due, fire, arg);
		/* Nothing pending: jump instead of walking empty ticks. */
		if (w->count == 0) {
			w->now_tick = target;
			break;
		}
	}
}

size_t cfx_twheel_count(const struct cfx_twheel *w)
{
	return w->count;
}

size_t cfx_twheel_memory(const struct cfx_twheel *w)
{
	size_t b = sizeof *w;

	for (int l = 0; l < LEVELS; l++) {
		b += slots_of[l] * sizeof(struct tw_slot);
		for (uint32_t i = 0; i < slots_of[l]; i++)
			b += w->level[l][i].cap * sizeof(struct tw_entry);
	}
	b += (w->overflow.cap + w->due.cap) * sizeof(struct tw_entry);
	return b;
}
