// TEMPORARY: per-phase stopwatch for the recovery breakdown. Not committed.
#pragma once
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>
#include <cstdio>
namespace rapport::tmp {
inline double WallNow() { timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
inline double CpuNow() { timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
inline long Flt() { rusage u; getrusage(RUSAGE_THREAD, &u); return u.ru_minflt; }
struct Phase {
  const char* name; double w0 = WallNow(), c0 = CpuNow(); long f0 = Flt();
  explicit Phase(const char* n) : name(n) {}
  ~Phase() { std::fprintf(stderr, "PHASE %-28s wall %8.3f ms  cpu %8.3f ms  flt %7ld MB  [%.6f,%.6f] tid %ld\n", name, (WallNow() - w0) * 1e3, (CpuNow() - c0) * 1e3, (Flt() - f0) * 4 / 1024, w0, WallNow(), (long)gettid()); }
};
struct Acc { const char* name; double w = 0, c = 0; long n = 0; explicit Acc(const char* s) : name(s) {}
  ~Acc() { std::fprintf(stderr, "ACC   %-28s wall %8.3f ms  cpu %8.3f ms  n=%ld\n", name, w * 1e3, c * 1e3, n); } };
struct AccScope { Acc& a; double w0 = WallNow(), c0 = CpuNow(); explicit AccScope(Acc& x) : a(x) {}
  ~AccScope() { a.w += WallNow() - w0; a.c += CpuNow() - c0; ++a.n; } };
}
