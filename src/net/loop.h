/*
 * loop.h - the event loop: one per network thread.
 *
 * A loop watches file descriptors (epoll), runs timers (a binary heap,
 * millisecond resolution), runs tasks posted from other threads (a queue
 * and an eventfd), and runs deferred work at the end of each iteration
 * (freeing connections outside their own callbacks). It never blocks on
 * anything but epoll_wait.
 *
 * Everything here is @thread loop (the thread running cfx_loop_run) except
 * cfx_loop_post and cfx_loop_stop, which any thread may call.
 */
#ifndef CFX_NET_LOOP_H
#define CFX_NET_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct cfx_loop;

#define CFX_IO_READ 0x1u
#define CFX_IO_WRITE 0x2u
#define CFX_IO_ERROR 0x4u /* hang-up or error: reported with READ */

struct cfx_io;
typedef void (*cfx_io_cb)(struct cfx_loop *loop, struct cfx_io *io, unsigned events);

/* A watched file descriptor; owned by the caller, registered with the loop. */
struct cfx_io {
	int fd;
	unsigned events; /* what is watched now */
	cfx_io_cb cb;
	void *data;
};

struct cfx_timer;
typedef void (*cfx_timer_cb)(struct cfx_loop *loop, struct cfx_timer *t);

/* A one-shot timer; owned by the caller. Zero-initialise before first use. */
struct cfx_timer {
	int64_t at_ms;	  /* monotonic deadline */
	uint32_t heap_idx; /* position in the heap + 1; 0 = not armed */
	cfx_timer_cb cb;
	void *data;
};

typedef void (*cfx_task_fn)(void *arg);

/* Creates a loop; `name` labels its log lines. Returns 0 or an error. */
int cfx_loop_new(struct cfx_loop **out, const char *name);
/* Frees a loop that is not running. Posted tasks not run yet are dropped. */
void cfx_loop_free(struct cfx_loop *loop);

/* Runs until cfx_loop_stop. */
void cfx_loop_run(struct cfx_loop *loop);
/*
 * Runs what is ready without waiting: the tasks posted so far (from any
 * thread), the timers that are due, then deferred work until none is left.
 * Returns how many tasks, timers and deferred items ran (0 = nothing was
 * ready). For loops that no thread runs with cfx_loop_run: tests and
 * fuzzers drive a loop this way on their own thread, together with memory
 * connections (conn.h). File descriptors are not polled.
 * @thread the loop's owner, never while cfx_loop_run runs it
 */
uint32_t cfx_loop_run_pending(struct cfx_loop *loop);
/* Asks the loop to return from cfx_loop_run. @thread any */
void cfx_loop_stop(struct cfx_loop *loop);

/* Runs fn(arg) on the loop's thread soon. @thread any */
void cfx_loop_post(struct cfx_loop *loop, cfx_task_fn fn, void *arg);
/* Runs fn(arg) at the end of the current iteration. */
void cfx_loop_defer(struct cfx_loop *loop, cfx_task_fn fn, void *arg);

/* The loop's clock (monotonic ms, refreshed each iteration). */
int64_t cfx_loop_now_ms(const struct cfx_loop *loop);
const char *cfx_loop_name(const struct cfx_loop *loop);

/* Watches io->fd for `events`. Returns 0 or an error. */
int cfx_io_start(struct cfx_loop *loop, struct cfx_io *io, unsigned events);
/* Changes what is watched (0 = nothing, but stays registered). */
int cfx_io_modify(struct cfx_loop *loop, struct cfx_io *io, unsigned events);
/* Stops watching; the caller closes the fd. */
void cfx_io_stop(struct cfx_loop *loop, struct cfx_io *io);

/* Arms (or re-arms) `t` to fire after `delay_ms`. */
void cfx_timer_start(struct cfx_loop *loop, struct cfx_timer *t, int64_t delay_ms, cfx_timer_cb cb,
		     void *data);
void cfx_timer_stop(struct cfx_loop *loop, struct cfx_timer *t);
static inline int cfx_timer_is_armed(const struct cfx_timer *t)
{
	return t->heap_idx != 0;
}

/* The loop running on this thread, or NULL. */
struct cfx_loop *cfx_loop_current(void);

#endif
