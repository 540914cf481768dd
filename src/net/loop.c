/*
 * loop.c - the epoll event loop, its timer heap and its task queues.
 */
#include "net/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/common.h"
#include "base/err.h"
#include "base/log.h"

#define EVENTS_MAX 256
#define STALL_WARN_MS 100 /* an iteration longer than this is logged */

struct task {
	struct task *next;
	cfx_task_fn fn;
	void *arg;
};

struct cfx_loop {
	int epfd;
	struct cfx_io wake; /* eventfd for posted tasks and stop */
	char name[32];
	int64_t now_ms;
	int stopping;

	/* timers: binary min-heap on at_ms */
	struct cfx_timer **heap;
	uint32_t nheap, capheap;

	/* tasks posted from any thread */
	pthread_mutex_t post_mu;
	struct task *post_head, **post_tail;
	int post_pending; /* an eventfd write is outstanding */

	/* deferred to the end of the iteration */
	struct task *defer_head, **defer_tail;
};

static __thread struct cfx_loop *current_loop;

struct cfx_loop *cfx_loop_current(void)
{
	return current_loop;
}

/* ------------------------------------------------------------------------
 * Timers
 * ------------------------------------------------------------------------ */

static void heap_swap(struct cfx_loop *loop, uint32_t a, uint32_t b)
{
	struct cfx_timer *t = loop->heap[a];
	loop->heap[a] = loop->heap[b];
	loop->heap[b] = t;
	loop->heap[a]->heap_idx = a + 1;
	loop->heap[b]->heap_idx = b + 1;
}

static void heap_up(struct cfx_loop *loop, uint32_t i)
{
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (loop->heap[parent]->at_ms <= loop->heap[i]->at_ms)
			break;
		heap_swap(loop, parent, i);
		i = parent;
	}
}

static void heap_down(struct cfx_loop *loop, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, min = i;
		if (l < loop->nheap && loop->heap[l]->at_ms < loop->heap[min]->at_ms)
			min = l;
		if (r < loop->nheap && loop->heap[r]->at_ms < loop->heap[min]->at_ms)
			min = r;
		if (min == i)
			return;
		heap_swap(loop, i, min);
		i = min;
	}
}

void cfx_timer_stop(struct cfx_loop *loop, struct cfx_timer *t)
{
	uint32_t i;

	if (!t->heap_idx)
		return;
	i = t->heap_idx - 1;
	t->heap_idx = 0;
	loop->nheap--;
	if (i == loop->nheap)
		return;
	loop->heap[i] = loop->heap[loop->nheap];
	loop->heap[i]->heap_idx = i + 1;
	heap_down(loop, i);
	heap_up(loop, i);
}

void cfx_timer_start(struct cfx_loop *loop, struct cfx_timer *t, int64_t delay_ms, cfx_timer_cb cb,
		     void *data)
{
	cfx_timer_stop(loop, t);
	t->at_ms = cfx_clock_mono_ms() + (delay_ms > 0 ? delay_ms : 0);
	t->cb = cb;
	t->data = data;
	if (loop->nheap == loop->capheap) {
		loop->capheap = loop->capheap ? loop->capheap * 2 : 64;
		loop->heap = cfx_realloc(loop->heap, loop->capheap * sizeof *loop->heap);
	}
	loop->heap[loop->nheap] = t;
	t->heap_idx = ++loop->nheap;
	heap_up(loop, loop->nheap - 1);
}

/* Fires the timers that are due; returns how many fired. */
static uint32_t run_timers(struct cfx_loop *loop)
{
	uint32_t n = 0;

	while (loop->nheap && loop->heap[0]->at_ms <= loop->now_ms) {
		struct cfx_timer *t = loop->heap[0];
		cfx_timer_stop(loop, t);
		t->cb(loop, t);
		n++;
	}
	return n;
}

/* ------------------------------------------------------------------------
 * Tasks
 * ------------------------------------------------------------------------ */

/* Runs the tasks posted so far (not those they post); returns how many ran. */
static uint32_t run_posted(struct cfx_loop *loop)
{
	uint64_t v;
	ssize_t r = read(loop->wake.fd, &v, sizeof v);
	struct task *t;
	uint32_t n = 0;

	CFX_UNUSED(r);
	pthread_mutex_lock(&loop->post_mu);
	t = loop->post_head;
	loop->post_head = NULL;
	loop->post_tail = &loop->post_head;
	loop->post_pending = 0;
	pthread_mutex_unlock(&loop->post_mu);
	while (t) {
		struct task *next = t->next;
		t->fn(t->arg);
		cfx_free(t);
		t = next;
		n++;
	}
	return n;
}

static void wake_cb(struct cfx_loop *loop, struct cfx_io *io, unsigned events)
{
	CFX_UNUSED(io);
	CFX_UNUSED(events);
	run_posted(loop);
}

void cfx_loop_post(struct cfx_loop *loop, cfx_task_fn fn, void *arg)
{
	struct task *t = cfx_malloc(sizeof *t);
	int kick;

	t->next = NULL;
	t->fn = fn;
	t->arg = arg;
	pthread_mutex_lock(&loop->post_mu);
	*loop->post_tail = t;
	loop->post_tail = &t->next;
	kick = !loop->post_pending;
	loop->post_pending = 1;
	pthread_mutex_unlock(&loop->post_mu);
	if (kick) {
		uint64_t one = 1;
		ssize_t w = write(loop->wake.fd, &one, sizeof one);
		CFX_UNUSED(w);
	}
}

void cfx_loop_defer(struct cfx_loop *loop, cfx_task_fn fn, void *arg)
{
	struct task *t = cfx_malloc(sizeof *t);

	t->next = NULL;
	t->fn = fn;
	t->arg = arg;
	*loop->defer_tail = t;
	loop->defer_tail = &t->next;
}

/* Runs deferred work until none is left (it may defer more); returns how much ran. */
static uint32_t run_deferred(struct cfx_loop *loop)
{
	uint32_t n = 0;

	while (loop->defer_head) {
		struct task *t = loop->defer_head;
		loop->defer_head = NULL;
		loop->defer_tail = &loop->defer_head;
		while (t) {
			struct task *next = t->next;
			t->fn(t->arg);
			cfx_free(t);
			t = next;
			n++;
		}
	}
	return n;
}

static void stop_task(void *arg)
{
	((struct cfx_loop *)arg)->stopping = 1;
}

void cfx_loop_stop(struct cfx_loop *loop)
{
	cfx_loop_post(loop, stop_task, loop);
}

/* ------------------------------------------------------------------------
 * File descriptors
 * ------------------------------------------------------------------------ */

static uint32_t to_epoll(unsigned events)
{
	return (events & CFX_IO_READ ? EPOLLIN | EPOLLRDHUP : 0) |
	       (events & CFX_IO_WRITE ? EPOLLOUT : 0);
}

int cfx_io_start(struct cfx_loop *loop, struct cfx_io *io, unsigned events)
{
	struct epoll_event ev = { .events = to_epoll(events), .data.ptr = io };

	io->events = events;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) != 0)
		return cfx_err_from_errno(errno);
	return 0;
}

int cfx_io_modify(struct cfx_loop *loop, struct cfx_io *io, unsigned events)
{
	struct epoll_event ev = { .events = to_epoll(events), .data.ptr = io };

	if (events == io->events)
		return 0;
	io->events = events;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) != 0)
		return cfx_err_from_errno(errno);
	return 0;
}

void cfx_io_stop(struct cfx_loop *loop, struct cfx_io *io)
{
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->events = 0;
}

/* ------------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------------ */

int cfx_loop_new(struct cfx_loop **out, const char *name)
{
	struct cfx_loop *loop = cfx_calloc(1, sizeof *loop);
	int rc;

	snprintf(loop->name, sizeof loop->name, "%s", name);
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	loop->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->epfd < 0 || loop->wake.fd < 0) {
		rc = cfx_err_from_errno(errno);
		goto fail;
	}
	pthread_mutex_init(&loop->post_mu, NULL);
	loop->post_tail = &loop->post_head;
	loop->defer_tail = &loop->defer_head;
	loop->wake.cb = wake_cb;
	rc = cfx_io_start(loop, &loop->wake, CFX_IO_READ);
	if (rc)
		goto fail;
	loop->now_ms = cfx_clock_mono_ms();
	*out = loop;
	return 0;
fail:
	if (loop->epfd >= 0)
		close(loop->epfd);
	if (loop->wake.fd >= 0)
		close(loop->wake.fd);
	cfx_free(loop);
	return rc;
}

void cfx_loop_free(struct cfx_loop *loop)
{
	struct task *t;

	if (!loop)
		return;
	for (t = loop->post_head; t;) {
		struct task *next = t->next;
		cfx_free(t);
		t = next;
	}
	run_deferred(loop);
	close(loop->wake.fd);
	close(loop->epfd);
	pthread_mutex_destroy(&loop->post_mu);
	cfx_free(loop->heap);
	cfx_free(loop);
}

int64_t cfx_loop_now_ms(const struct cfx_loop *loop)
{
	return loop->now_ms;
}

const char *cfx_loop_name(const struct cfx_loop *loop)
{
	return loop->name;
}

void cfx_loop_run(struct cfx_loop *loop)
{
	struct epoll_event evs[EVENTS_MAX];

	current_loop = loop;
	loop->stopping = 0;
	while (!loop->stopping) {
		int timeout = -1, n;

		loop->now_ms = cfx_clock_mono_ms();
		if (loop->nheap) {
			int64_t d = loop->heap[0]->at_ms - loop->now_ms;
			timeout = d <= 0 ? 0 : d > 60000 ? 60000 : (int)d;
		}
		if (loop->defer_head)
			timeout = 0;
		n = epoll_wait(loop->epfd, evs, EVENTS_MAX, timeout);
		loop->now_ms = cfx_clock_mono_ms();
		int64_t start = loop->now_ms;
		for (int i = 0; i < n; i++) {
			struct cfx_io *io = evs[i].data.ptr;
			unsigned ev = 0;
			if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				ev |= CFX_IO_READ;
			if (evs[i].events & EPOLLOUT)
				ev |= CFX_IO_WRITE;
			if (evs[i].events & (EPOLLHUP | EPOLLERR))
				ev |= CFX_IO_ERROR;
			io->cb(loop, io, ev);
		}
		run_timers(loop);
		run_deferred(loop);
		int64_t took = cfx_clock_mono_ms() - start;
		if (took > STALL_WARN_MS)
			cfx_log_ratelimited(CFX_LOG_WARN, "net: loop %s stalled for %lld ms",
					    loop->name, (long long)took);
	}
	current_loop = NULL;
}

/*
 * One non-blocking pass for loops driven by their owner (tests, fuzzers):
 * the same order as an iteration of cfx_loop_run, minus epoll_wait.
 */
uint32_t cfx_loop_run_pending(struct cfx_loop *loop)
{
	struct cfx_loop *prev = current_loop;
	uint32_t n;

	current_loop = loop;
	loop->now_ms = cfx_clock_mono_ms();
	n = run_posted(loop);
	loop->now_ms = cfx_clock_mono_ms();
	n += run_timers(loop);
	n += run_deferred(loop);
	current_loop = prev;
	return n;
}
