/* Persistent pthread pool and per-thread scratch.
 *
 * hf_parallel(fn, ctx, want) runs fn(ctx, tid, n) on n = min(want, threads) threads; the caller is
 * tid 0. Workers are created once (on first use or hf_set_num_threads) and then wait for work:
 * they spin briefly on a generation counter (cheap hand-off between the back-to-back GEMMs of a
 * forward pass) and then sleep on a condition variable. The hot path neither creates threads nor
 * allocates. A call made while the pool is busy (another caller thread) or from inside a task runs
 * serially on the caller: same results, since every task's output is independent of n.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* the spin-wait hint of the architecture (x86 pause, ARM yield) */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define hf_cpu_relax() _mm_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define hf_cpu_relax() __asm__ volatile("yield")
#else
#define hf_cpu_relax() ((void)0)
#endif

#define HF_MAX_THREADS 256
#define SPIN_ITERS 20000
#define CALLER_SPIN_ITERS 4000

static pthread_mutex_t g_cfg_lock = PTHREAD_MUTEX_INITIALIZER; /* configuration / thread creation */
static pthread_mutex_t g_run_lock = PTHREAD_MUTEX_INITIALIZER; /* one hf_parallel at a time */
static pthread_mutex_t g_sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;

static int g_nthreads = 0; /* configured threads (0 = not yet decided) */
static int g_nworkers = 0; /* worker threads created (tid 1..g_nworkers) */
static pthread_t g_workers[HF_MAX_THREADS];
static unsigned g_start_gen[HF_MAX_THREADS]; /* generation a worker was created at */

static atomic_uint g_generation;
/* (generation << 32) | CLOSED | joined: workers join a run only while it is open, so the caller
 * never waits for a worker that was descheduled before it could start (tasks claim their work
 * dynamically, so a run is complete whoever joined) */
#define CLOSED 0x80000000ull
static atomic_ullong g_state;
static atomic_int g_done;
static hf_task_fn g_fn;
static void *g_ctx;
static int g_n;
static int g_sleepers;
static atomic_int g_shutdown;

static _Thread_local int t_in_task = 0;

static int default_threads(void) {
    const char *names[2] = {"HF_FAST_NUM_THREADS", "OMP_NUM_THREADS"};
    for (int i = 0; i < 2; i++) {
        const char *e = getenv(names[i]);
        if (e && *e) {
            long v = strtol(e, NULL, 10);
            if (v >= 1) return v > HF_MAX_THREADS ? HF_MAX_THREADS : (int)v;
        }
    }
#ifdef CPU_COUNT
    {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0) {
            int c = CPU_COUNT(&set);
            if (c >= 1) return c > HF_MAX_THREADS ? HF_MAX_THREADS : c;
        }
    }
#endif
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    if (c < 1) c = 1;
    return c > HF_MAX_THREADS ? HF_MAX_THREADS : (int)c;
}

static void *worker_main(void *arg) {
    const int tid = (int)(intptr_t)arg;
    /* not the current value: a run may already have started since pthread_create */
    unsigned seen = g_start_gen[tid];
    t_in_task = 1; /* anything a worker calls runs serially */
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&g_generation, memory_order_acquire)) == seen) {
            if (atomic_load_explicit(&g_shutdown, memory_order_relaxed)) return NULL;
            if (++spins < SPIN_ITERS) {
                hf_cpu_relax();
                continue;
            }
            pthread_mutex_lock(&g_sleep_lock);
            g_sleepers++;
            while (atomic_load_explicit(&g_generation, memory_order_acquire) == seen &&
                   !atomic_load_explicit(&g_shutdown, memory_order_relaxed))
                pthread_cond_wait(&g_wake, &g_sleep_lock);
            g_sleepers--;
            pthread_mutex_unlock(&g_sleep_lock);
            spins = 0;
        }
        seen = gen;
        {
            unsigned long long st = atomic_load_explicit(&g_state, memory_order_acquire);
            int joined = 0;
            while ((unsigned)(st >> 32) == gen && !(st & CLOSED)) {
                if (atomic_compare_exchange_weak_explicit(&g_state, &st, st + 1, memory_order_acq_rel,
                                                          memory_order_acquire)) {
                    joined = 1;
                    break;
                }
            }
            if (joined) {
                g_fn(g_ctx, tid, g_n);
                atomic_fetch_add_explicit(&g_done, 1, memory_order_release);
            }
        }
    }
}

/* Create workers up to n-1 (called with g_cfg_lock held and no run in flight). */
static void ensure_workers(int n) {
    while (g_nworkers < n - 1) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 1 << 20);
        int tid = g_nworkers + 1;
        g_start_gen[tid] = atomic_load_explicit(&g_generation, memory_order_acquire);
        if (pthread_create(&g_workers[tid], &attr, worker_main, (void *)(intptr_t)tid) != 0) {
            pthread_attr_destroy(&attr);
            break; /* fewer workers: hf_parallel uses what exists */
        }
        pthread_attr_destroy(&attr);
        g_nworkers++;
    }
}

/* held shared by every engine run, exclusively across fork() (writer-preferring: a stream of runs on other threads
 * cannot starve the fork) */
static pthread_rwlock_t g_fork_gate;

static void fork_gate_init(void) {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
#ifdef __GLIBC__
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    pthread_rwlock_init(&g_fork_gate, &attr);
    pthread_rwlockattr_destroy(&attr);
}

static void atfork_prepare(void) { pthread_rwlock_wrlock(&g_fork_gate); }
static void atfork_parent(void) { pthread_rwlock_unlock(&g_fork_gate); }

static void atfork_child(void) {
    /* a fresh gate, not an unlock: glibc records the writer's thread id, and the child's thread has a new one */
    fork_gate_init();
    /* threads do not survive fork: start over lazily in the child */
    g_nworkers = 0;
    g_sleepers = 0;
    pthread_mutex_init(&g_cfg_lock, NULL);
    pthread_mutex_init(&g_run_lock, NULL);
    pthread_mutex_init(&g_sleep_lock, NULL);
    pthread_cond_init(&g_wake, NULL);
}

static void init_once(void) {
    fork_gate_init();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

void hf_fork_gate_enter(void) {
    pthread_once(&g_once, init_once);
    pthread_rwlock_rdlock(&g_fork_gate);
}

void hf_fork_gate_exit(void) { pthread_rwlock_unlock(&g_fork_gate); }

int hf_get_num_threads(void) {
    pthread_once(&g_once, init_once);
    if (g_nthreads == 0) {
        pthread_mutex_lock(&g_cfg_lock);
        if (g_nthreads == 0) g_nthreads = default_threads();
        pthread_mutex_unlock(&g_cfg_lock);
    }
    return g_nthreads;
}

int hf_set_num_threads(int n) {
    pthread_once(&g_once, init_once);
    if (n < 1 || n > HF_MAX_THREADS)
        return hf_fail(HF_EINVAL, "set_num_threads: n=%d must be in [1, %d]", n, HF_MAX_THREADS);
    pthread_mutex_lock(&g_run_lock); /* not while a run is in flight */
    pthread_mutex_lock(&g_cfg_lock);
    g_nthreads = n;
    ensure_workers(n);
    pthread_mutex_unlock(&g_cfg_lock);
    pthread_mutex_unlock(&g_run_lock);
    return HF_OK;
}

int hf_parallel(hf_task_fn fn, void *ctx, int want) {
    int n = hf_get_num_threads();
    if (want < n) n = want;
    if (n <= 1 || t_in_task || pthread_mutex_trylock(&g_run_lock) != 0) {
        fn(ctx, 0, 1);
        return 1;
    }
    if (g_nworkers < n - 1) {
        pthread_mutex_lock(&g_cfg_lock);
        ensure_workers(n);
        pthread_mutex_unlock(&g_cfg_lock);
        if (g_nworkers < n - 1) n = g_nworkers + 1;
        if (n <= 1) {
            pthread_mutex_unlock(&g_run_lock);
            fn(ctx, 0, 1);
            return 1;
        }
    }
    g_fn = fn;
    g_ctx = ctx;
    g_n = n;
    {
        const unsigned gen = atomic_load_explicit(&g_generation, memory_order_relaxed) + 1;
        atomic_store_explicit(&g_done, 0, memory_order_relaxed);
        atomic_store_explicit(&g_state, (unsigned long long)gen << 32, memory_order_release);
        atomic_store_explicit(&g_generation, gen, memory_order_release);
    }
    pthread_mutex_lock(&g_sleep_lock);
    if (g_sleepers) pthread_cond_broadcast(&g_wake);
    pthread_mutex_unlock(&g_sleep_lock);

    t_in_task = 1;
    fn(ctx, 0, n);
    t_in_task = 0;
    {
        const int joined = (int)(atomic_fetch_or_explicit(&g_state, CLOSED, memory_order_acq_rel) & 0x7fffffffull);
        int spins = 0;
        while (atomic_load_explicit(&g_done, memory_order_acquire) < joined) {
            /* a joined worker that is still running finishes within microseconds; one that was
             * preempted mid-task needs a CPU: after a short spin, yield ours instead of burning it */
            if (++spins < CALLER_SPIN_ITERS)
                hf_cpu_relax();
            else
                sched_yield();
        }
    }
    pthread_mutex_unlock(&g_run_lock);
    return n;
}

/* ---- per-thread scratch ---- */
typedef struct {
    void *p[HF_SCRATCH_SLOTS];
    size_t n[HF_SCRATCH_SLOTS];
} scratch_t;

static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;

static void scratch_destroy(void *v) {
    scratch_t *s = (scratch_t *)v;
    if (!s) return;
    for (int i = 0; i < HF_SCRATCH_SLOTS; i++) hf_free(s->p[i]);
    free(s);
}
static void scratch_key_init(void) { pthread_key_create(&g_scratch_key, scratch_destroy); }

void *hf_scratch(int slot, size_t bytes) {
    scratch_t *s;
    if (slot < 0 || slot >= HF_SCRATCH_SLOTS) return NULL;
    pthread_once(&g_scratch_once, scratch_key_init);
    s = (scratch_t *)pthread_getspecific(g_scratch_key);
    if (!s) {
        s = (scratch_t *)calloc(1, sizeof *s);
        if (!s) return NULL;
        if (pthread_setspecific(g_scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->n[slot] < bytes) {
        size_t want = bytes + bytes / 4 + 4096; /* grow with headroom: few reallocations */
        void *p = hf_alloc(want);
        if (!p) return NULL;
        hf_free(s->p[slot]);
        s->p[slot] = p;
        s->n[slot] = want;
    }
    return s->p[slot];
}
