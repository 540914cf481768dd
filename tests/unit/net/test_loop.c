/* Unit tests for src/net/loop.c: timers, posted and deferred tasks, fd watches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <unistd.h>

#include "base/clock.h"
#include "net/loop.h"

struct order {
	int seen[16];
	int n;
};

struct tmr {
	struct cfx_timer t;
	int id;
	struct order *o;
};

static void tmr_cb(struct cfx_loop *loop, struct cfx_timer *t)
{
	struct tmr *x = t->data;
	x->o->seen[x->o->n++] = x->id;
	if (x->o->n == 4)
		cfx_loop_stop(loop);
}

static void test_timers_fire_in_deadline_order(void **state)
{
	struct cfx_loop *loop;
	struct order o = { 0 };
	struct tmr t[5] = { 0 };
	int delays[5] = { 30, 10, 20, 5, 15 };
	(void)state;

	assert_int_equal(cfx_loop_new(&loop, "test"), 0);
	for (int i = 0; i < 5; i++) {
		t[i].id = i;
		t[i].o = &o;
		cfx_timer_start(loop, &t[i].t, delays[i], tmr_cb, &t[i]);
	}
	cfx_timer_stop(loop, &t[1].t); /* cancelled: never fires */
	assert_false(cfx_timer_is_armed(&t[1].t));
	cfx_loop_run(loop);
	assert_int_equal(o.n, 4);
	assert_int_equal(o.seen[0], 3);
	assert_int_equal(o.seen[1], 4);
	assert_int_equal(o.seen[2], 2);
	assert_int_equal(o.seen[3], 0);
	cfx_loop_free(loop);
}

struct post_state {
	struct cfx_loop *loop;
	pthread_t main_thread;
	int count;
	int on_loop_thread;
};

static void post_task(void *arg)
{
	struct post_state *ps = arg;
	ps->on_loop_thread += cfx_loop_current() == ps->loop;
	if (++ps->count == 1000)
		cfx_loop_stop(ps->loop);
}

static void *poster(void *arg)
{
	struct post_state *ps = arg;
	for (int i = 0; i < 500; i++)
		cfx_loop_post(ps->loop, post_task, ps);
	return NULL;
}

static void test_posts_from_threads_run_on_the_loop(void **state)
{
	struct post_state ps = { 0 };
	pthread_t a, b;
	(void)state;

	assert_int_equal(cfx_loop_new(&ps.loop, "test"), 0);
	pthread_create(&a, NULL, poster, &ps);
	pthread_create(&b, NULL, poster, &ps);
	cfx_loop_run(ps.loop);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	assert_int_equal(ps.count, 1000);
	assert_int_equal(ps.on_loop_thread, 1000);
	cfx_loop_free(ps.loop);
}

struct pipe_state {
	struct cfx_io io;
	char got[16];
	int deferred;
};

static void deferred_task(void *arg)
{
	struct pipe_state *p = arg;
	p->deferred++;
	cfx_loop_stop(cfx_loop_current());
}

static void pipe_cb(struct cfx_loop *loop, struct cfx_io *io, unsigned ev)
{
	struct pipe_state *p = io->data;
	assert_true(ev & CFX_IO_READ);
	assert_int_equal(read(io->fd, p->got, sizeof p->got), 5);
	cfx_io_stop(loop, io);
	cfx_loop_defer(loop, deferred_task, p);
	assert_int_equal(p->deferred, 0); /* not before the iteration ends */
}

static void test_fd_watch_and_defer(void **state)
{
	struct cfx_loop *loop;
	struct pipe_state p = { 0 };
	int fds[2];
	(void)state;

	assert_int_equal(pipe(fds), 0);
	assert_int_equal(cfx_loop_new(&loop, "test"), 0);
	p.io.fd = fds[0];
	p.io.cb = pipe_cb;
	p.io.data = &p;
	assert_int_equal(cfx_io_start(loop, &p.io, CFX_IO_READ), 0);
	assert_int_equal(write(fds[1], "hello", 5), 5);
	cfx_loop_run(loop);
	assert_memory_equal(p.got, "hello", 5);
	assert_int_equal(p.deferred, 1);
	cfx_loop_free(loop);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timers_fire_in_deadline_order),
		cmocka_unit_test(test_posts_from_threads_run_on_the_loop),
		cmocka_unit_test(test_fd_watch_and_defer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
