"""CPU kernels for the involution operator: a small C++ library built on first use, called via ctypes.

Why not `torch.utils.cpp_extension.load_inline`: including the torch headers costs ~47 s of
compile time on this 2-core machine; this source includes only the C++ standard library and
builds in ~3 s of CPU time (ctypes releases the GIL during calls). It works on raw, contiguous
fp32/fp64 buffers; the autograd wrapper in `involution.py` owns shapes, dtypes and allocation.

Threads: the caller works through the items itself and helpers (std::thread, one per extra
thread) join in when they get scheduled; the caller never waits for a helper that has not started.
On this shared machine an OpenMP fork-join region with 2 threads measured ~25 ms of wake-up
latency when the other core was busy; see `parallel_items` in SOURCE.

The build goes to a cache directory keyed by a hash of the source, flags, compiler and CPU, is
written atomically (concurrent sweep workers may race), and `load()` returns None (never raises)
when there is no compiler or the build fails, so callers fall back to the pure-torch path.
Environment: STABGAN_CACHE overrides the cache root (stabgan.cache); CXX picks the compiler.

Most of this module's length is SOURCE, the C++ of the kernels, kept beside the loader that
builds and calls it so that the two change together.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

from stabgan.cache import cache_root

# Three primitives on contiguous buffers (s = stride, p = (K-1)//2, g(c) = c // (C/G)):
#   forward:     y[b,c,i,j]       = sum_{u,v} k[b,g,u,v,i,j] * x[b,c,i*s+u-p, j*s+v-p]
#   grad_input:  gx[b,c,r,q]      = sum over taps/pixels hitting (r,q) of k[b,g,u,v,i,j] * gy[b,c,i,j]
#   grad_kernel: gk[b,g,u,v,i,j]  = sum_{c in g} gy[b,c,i,j] * x[b,c,i*s+u-p, j*s+v-p]
# Each output element is owned by one work item, so no atomics; the inner loops run along W
# and vectorise for stride 1.
SOURCE = r"""
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

typedef int64_t i64;

struct Geom {
  i64 B, C, H, W, G, K, S, Ho, Wo;
  i64 P() const { return (K - 1) / 2; }
  i64 Cg() const { return C / G; }
  // Output columns j whose input column j*S + v - P lies inside [0, W).
  void cols(i64 v, i64* lo, i64* hi) const {
    const i64 off = v - P(), last = W - 1 - off;  // last: largest j*S allowed
    *lo = off < 0 ? (-off + S - 1) / S : 0;
    *hi = last < 0 ? 0 : std::min(Wo, last / S + 1);
    if (*hi < *lo) *hi = *lo;
  }
};

// ---------------------------------------------------------------------------------------------
// Runs work(item) for item in [0, n) on the calling thread plus up to threads - 1 helpers, where
// `make()` builds one worker's `work` (with its own scratch). The caller never waits for a helper
// that has not started: on an oversubscribed machine a woken thread can take a scheduler slice
// (~25 ms measured here) to run, and a fork-join barrier (OpenMP) waits for it even when the
// caller has done all the work. Late helpers find no item left and exit; they own the shared
// counters, so they may outlive the call safely, and touch the caller's data only after claiming
// an item, which the caller waits for.
// ---------------------------------------------------------------------------------------------
struct Progress {
  std::atomic<i64> next{0}, done{0};
  std::mutex m;
  std::condition_variable cv;
};

template <typename Make>
static void parallel_items(i64 n, int threads, const Make& make) {
  if (n <= 0) return;
  auto st = std::make_shared<Progress>();
  auto run = [st, n, &make]() {
    i64 item = st->next.fetch_add(1);
    if (item >= n) return;
    i64 finished = 0;
    {
      auto work = make();
      for (; item < n; item = st->next.fetch_add(1), ++finished) work(item);
    }
    if (st->done.fetch_add(finished) + finished == n) {
      std::lock_guard<std::mutex> lock(st->m);
      st->cv.notify_all();
    }
  };
  for (int t = 1; t < threads && t < n; ++t) {
    try {
      std::thread(run).detach();
    } catch (...) {
      break;  // no more threads: the caller does the rest
    }
  }
  run();
  std::unique_lock<std::mutex> lock(st->m);
  st->cv.wait(lock, [&] { return st->done.load() == n; });
}

// ---------------------------------------------------------------------------------------------
// Stride 1: register-tiled, branch-free inner loops over zero-padded scratch copies.
// Work item = (batch, group, block of output rows); each item owns its output elements.
// JT columns (two AVX registers) x CB channels (or VB taps) of accumulators stay in registers.
// ---------------------------------------------------------------------------------------------
template <typename T> struct Tile {
  static constexpr int JT = 64 / sizeof(T);
  static constexpr int CB = 4;  // channels per register block (forward, grad_input)
  static constexpr int VB = 4;  // taps per register block (grad_kernel)
};

// Enough row blocks that every thread gets ~4 items even for batch 1 and one group.
static i64 row_blocks(const Geom& g, int threads) {
  const i64 want = 4 * (i64)threads, bg = g.B * g.G;
  if (bg == 0) return 1;
  return std::max<i64>(1, std::min<i64>((want + bg - 1) / bg, g.Ho));
}

// Copy rows [row0, row0 + R) of `n` planes (H x W, stride `plane`) into dst (n x R x Wp),
// at column offset P, zero everywhere else (rows outside [0, H) included).
template <typename T>
static void pad_rows(const T* src, i64 n, i64 plane, i64 H, i64 W, i64 row0, i64 R, i64 Wp,
                     i64 P, i64 n_total, T* dst) {
  std::fill(dst, dst + n_total * R * Wp, T(0));
  for (i64 c = 0; c < n; ++c)
    for (i64 rr = 0; rr < R; ++rr) {
      const i64 row = row0 + rr;
      if (row >= 0 && row < H)
        std::memcpy(dst + (c * R + rr) * Wp + P, src + c * plane + row * W, sizeof(T) * W);
    }
}

template <typename T>
static void forward_s1(const T* __restrict__ x, const T* __restrict__ k, T* __restrict__ y,
                       Geom g, int threads) {
  constexpr int JT = Tile<T>::JT, CB = Tile<T>::CB;
  const i64 Cg = g.Cg(), CgP = (Cg + CB - 1) / CB * CB, P = g.P(), K = g.K, H = g.H, W = g.W;
  const i64 plane = H * W, Wp = W + 2 * P, Wfull = W - W % JT;
  const i64 nrb = row_blocks(g, threads), rows = (H + nrb - 1) / nrb, items = g.B * g.G * nrb;
  parallel_items(items, threads, [&]() {
    return [&, buf = std::vector<T>(CgP * (rows + 2 * P) * Wp)](i64 it) mutable {
      const i64 bg = it / nrb, r0 = (it % nrb) * rows, r1 = std::min(H, r0 + rows);
      if (r0 >= r1) return;
      const i64 b = bg / g.G, grp = bg % g.G, R = r1 - r0 + 2 * P, cs = R * Wp;
      const T* kg = k + bg * K * K * plane;
      T* yg = y + (b * g.C + grp * Cg) * plane;
      T* xp = buf.data();  // xp[c][ii][jj] = x[c][r0 - P + ii][jj - P]
      pad_rows(x + (b * g.C + grp * Cg) * plane, Cg, plane, H, W, r0 - P, R, Wp, P, CgP, xp);
      for (i64 i = r0; i < r1; ++i) {
        const i64 ii = i - r0;
        for (i64 cb = 0; cb < CgP; cb += CB) {
          const i64 nc = std::min<i64>(CB, Cg - cb);
          for (i64 j0 = 0; j0 < Wfull; j0 += JT) {
            T acc[CB][JT] = {};
            for (i64 u = 0; u < K; ++u)
              for (i64 v = 0; v < K; ++v) {
                const T* kr = kg + (u * K + v) * plane + i * W + j0;
                const T* xr = xp + cb * cs + (ii + u) * Wp + j0 + v;
                for (int c = 0; c < CB; ++c)
#pragma omp simd
                  for (int l = 0; l < JT; ++l) acc[c][l] += kr[l] * xr[c * cs + l];
              }
            for (i64 c = 0; c < nc; ++c)
              std::memcpy(yg + (cb + c) * plane + i * W + j0, acc[c], sizeof(T) * JT);
          }
          for (i64 j = Wfull; j < W; ++j)
            for (i64 c = 0; c < nc; ++c) {
              T a = 0;
              for (i64 u = 0; u < K; ++u)
                for (i64 v = 0; v < K; ++v)
                  a += kg[(u * K + v) * plane + i * W + j] * xp[(cb + c) * cs + (ii + u) * Wp + j + v];
              yg[(cb + c) * plane + i * W + j] = a;
            }
        }
      }
    };
  });
}

// gx[c][r][q] = sum_{u,v} k[u,v][r-u+P][q-v+P] * gy[c][r-u+P][q-v+P]  (gather form: no scatter).
template <typename T>
static void grad_input_s1(const T* __restrict__ gy, const T* __restrict__ k, T* __restrict__ gx,
                          Geom g, int threads) {
  constexpr int JT = Tile<T>::JT, CB = Tile<T>::CB;
  const i64 Cg = g.Cg(), CgP = (Cg + CB - 1) / CB * CB, P = g.P(), K = g.K, H = g.H, W = g.W;
  const i64 plane = H * W, Wp = W + 2 * P, Wfull = W - W % JT, KK = K * K;
  const i64 nrb = row_blocks(g, threads), rows = (H + nrb - 1) / nrb, items = g.B * g.G * nrb;
  parallel_items(items, threads, [&]() {
    return [&, kbuf = std::vector<T>(KK * (rows + 2 * P) * Wp),
            gbuf = std::vector<T>(CgP * (rows + 2 * P) * Wp)](i64 it) mutable {
      const i64 bg = it / nrb, r0 = (it % nrb) * rows, r1 = std::min(H, r0 + rows);
      if (r0 >= r1) return;
      const i64 b = bg / g.G, grp = bg % g.G, R = r1 - r0 + 2 * P, cs = R * Wp;
      T* gxg = gx + (b * g.C + grp * Cg) * plane;
      // kp[t][ii][jj] = k[t][r0 - P + ii][jj - P]; gp[c][ii][jj] = gy[c][r0 - P + ii][jj - P]
      T* kp = kbuf.data();
      T* gp = gbuf.data();
      pad_rows(k + bg * KK * plane, KK, plane, H, W, r0 - P, R, Wp, P, KK, kp);
      pad_rows(gy + (b * g.C + grp * Cg) * plane, Cg, plane, H, W, r0 - P, R, Wp, P, CgP, gp);
      for (i64 r = r0; r < r1; ++r) {
        const i64 rr = r - r0 + 2 * P;  // padded row of tap u is rr - u
        for (i64 cb = 0; cb < CgP; cb += CB) {
          const i64 nc = std::min<i64>(CB, Cg - cb);
          for (i64 q0 = 0; q0 < Wfull; q0 += JT) {
            T acc[CB][JT] = {};
            for (i64 u = 0; u < K; ++u)
              for (i64 v = 0; v < K; ++v) {
                const i64 off = (rr - u) * Wp + q0 + 2 * P - v;
                const T* kr = kp + (u * K + v) * cs + off;
                const T* gr = gp + cb * cs + off;
                for (int c = 0; c < CB; ++c)
#pragma omp simd
                  for (int l = 0; l < JT; ++l) acc[c][l] += kr[l] * gr[c * cs + l];
              }
            for (i64 c = 0; c < nc; ++c)
              std::memcpy(gxg + (cb + c) * plane + r * W + q0, acc[c], sizeof(T) * JT);
          }
          for (i64 q = Wfull; q < W; ++q)
            for (i64 c = 0; c < nc; ++c) {
              T a = 0;
              for (i64 u = 0; u < K; ++u)
                for (i64 v = 0; v < K; ++v) {
                  const i64 off = (rr - u) * Wp + q + 2 * P - v;
                  a += kp[(u * K + v) * cs + off] * gp[(cb + c) * cs + off];
                }
              gxg[(cb + c) * plane + r * W + q] = a;
            }
        }
      }
    };
  });
}

// gk[u,v][i][j] = sum_{c in group} gy[c][i][j] * x[c][i+u-P][j+v-P]
template <typename T>
static void grad_kernel_s1(const T* __restrict__ gy, const T* __restrict__ x, T* __restrict__ gk,
                           Geom g, int threads) {
  constexpr int JT = Tile<T>::JT, VB = Tile<T>::VB;
  const i64 Cg = g.Cg(), P = g.P(), K = g.K, H = g.H, W = g.W;
  // VB extra zero columns let the last tap block read past v = K - 1 without a branch.
  const i64 plane = H * W, Wp = W + 2 * P + VB, Wfull = W - W % JT;
  const i64 nrb = row_blocks(g, threads), rows = (H + nrb - 1) / nrb, items = g.B * g.G * nrb;
  parallel_items(items, threads, [&]() {
    return [&, buf = std::vector<T>(Cg * (rows + 2 * P) * Wp)](i64 it) mutable {
      const i64 bg = it / nrb, r0 = (it % nrb) * rows, r1 = std::min(H, r0 + rows);
      if (r0 >= r1) return;
      const i64 b = bg / g.G, grp = bg % g.G, R = r1 - r0 + 2 * P, cs = R * Wp;
      const T* gyg = gy + (b * g.C + grp * Cg) * plane;
      T* gkg = gk + bg * K * K * plane;
      T* xp = buf.data();  // xp[c][ii][jj] = x[c][r0 - P + ii][jj - P]
      pad_rows(x + (b * g.C + grp * Cg) * plane, Cg, plane, H, W, r0 - P, R, Wp, P, Cg, xp);
      for (i64 i = r0; i < r1; ++i) {
        const i64 ii = i - r0;
        for (i64 u = 0; u < K; ++u) {
          for (i64 v0 = 0; v0 < K; v0 += VB) {
            const i64 nv = std::min<i64>(VB, K - v0);
            for (i64 j0 = 0; j0 < Wfull; j0 += JT) {
              T acc[VB][JT] = {};
              for (i64 c = 0; c < Cg; ++c) {
                const T* gr = gyg + c * plane + i * W + j0;
                const T* xr = xp + c * cs + (ii + u) * Wp + j0 + v0;
                for (int t = 0; t < VB; ++t)
#pragma omp simd
                  for (int l = 0; l < JT; ++l) acc[t][l] += gr[l] * xr[t + l];
              }
              for (i64 t = 0; t < nv; ++t)
                std::memcpy(gkg + (u * K + v0 + t) * plane + i * W + j0, acc[t], sizeof(T) * JT);
            }
            for (i64 j = Wfull; j < W; ++j)
              for (i64 t = 0; t < nv; ++t) {
                T a = 0;
                for (i64 c = 0; c < Cg; ++c)
                  a += gyg[c * plane + i * W + j] * xp[c * cs + (ii + u) * Wp + j + v0 + t];
                gkg[(u * K + v0 + t) * plane + i * W + j] = a;
              }
          }
        }
      }
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Any stride: plain loops along W, one work item per output plane.
// ---------------------------------------------------------------------------------------------
template <typename T>
static void forward_any(const T* __restrict__ x, const T* __restrict__ k, T* __restrict__ y,
                        Geom g, int threads) {
  const i64 cg = g.Cg(), plane = g.Ho * g.Wo, P = g.P();
  parallel_items(g.B * g.C, threads, [&]() {
    return [&](i64 bc) {
      const i64 b = bc / g.C, grp = (bc % g.C) / cg;
      const T* xc = x + bc * g.H * g.W;
      const T* kg = k + (b * g.G + grp) * g.K * g.K * plane;
      T* yc = y + bc * plane;
      std::fill(yc, yc + plane, T(0));
      for (i64 u = 0; u < g.K; ++u)
        for (i64 v = 0; v < g.K; ++v) {
          i64 lo, hi;
          g.cols(v, &lo, &hi);
          const T* kt = kg + (u * g.K + v) * plane;
          for (i64 i = 0; i < g.Ho; ++i) {
            const i64 row = i * g.S + u - P;
            if (row < 0 || row >= g.H) continue;
            const T* kr = kt + i * g.Wo;
            const T* xr = xc + row * g.W + (v - P);
            T* yr = yc + i * g.Wo;
            for (i64 j = lo; j < hi; ++j) yr[j] += kr[j] * xr[j * g.S];
          }
        }
    };
  });
}

template <typename T>
static void grad_input_any(const T* __restrict__ gy, const T* __restrict__ k, T* __restrict__ gx,
                           Geom g, int threads) {
  const i64 cg = g.Cg(), plane = g.Ho * g.Wo, P = g.P();
  parallel_items(g.B * g.C, threads, [&]() {
    return [&](i64 bc) {
      const i64 b = bc / g.C, grp = (bc % g.C) / cg;
      const T* gyc = gy + bc * plane;
      const T* kg = k + (b * g.G + grp) * g.K * g.K * plane;
      T* gxc = gx + bc * g.H * g.W;
      std::fill(gxc, gxc + g.H * g.W, T(0));
      for (i64 u = 0; u < g.K; ++u)
        for (i64 v = 0; v < g.K; ++v) {
          i64 lo, hi;
          g.cols(v, &lo, &hi);
          const T* kt = kg + (u * g.K + v) * plane;
          for (i64 i = 0; i < g.Ho; ++i) {
            const i64 row = i * g.S + u - P;
            if (row < 0 || row >= g.H) continue;
            const T* kr = kt + i * g.Wo;
            const T* gr = gyc + i * g.Wo;
            T* xr = gxc + row * g.W + (v - P);
            for (i64 j = lo; j < hi; ++j) xr[j * g.S] += kr[j] * gr[j];
          }
        }
    };
  });
}

template <typename T>
static void grad_kernel_any(const T* __restrict__ gy, const T* __restrict__ x, T* __restrict__ gk,
                            Geom g, int threads) {
  const i64 cg = g.Cg(), plane = g.Ho * g.Wo, P = g.P();
  // One item per (b, group, tap row u): the planes it writes are disjoint from others'.
  parallel_items(g.B * g.G * g.K, threads, [&]() {
    return [&](i64 bgu) {
      const i64 bg = bgu / g.K, u = bgu % g.K, b = bg / g.G, grp = bg % g.G;
      for (i64 v = 0; v < g.K; ++v) {
        i64 lo, hi;
        g.cols(v, &lo, &hi);
        T* kt = gk + (bg * g.K * g.K + u * g.K + v) * plane;
        std::fill(kt, kt + plane, T(0));
        for (i64 c = grp * cg; c < (grp + 1) * cg; ++c) {
          const T* xc = x + (b * g.C + c) * g.H * g.W;
          const T* gyc = gy + (b * g.C + c) * plane;
          for (i64 i = 0; i < g.Ho; ++i) {
            const i64 row = i * g.S + u - P;
            if (row < 0 || row >= g.H) continue;
            T* kr = kt + i * g.Wo;
            const T* gr = gyc + i * g.Wo;
            const T* xr = xc + row * g.W + (v - P);
            for (i64 j = lo; j < hi; ++j) kr[j] += gr[j] * xr[j * g.S];
          }
        }
      }
    };
  });
}

#define GEOM Geom{B, C, H, W, G, K, S, Ho, Wo}
#define ARGS i64 B, i64 C, i64 H, i64 W, i64 G, i64 K, i64 S, i64 Ho, i64 Wo, int threads
#define EXPORT(T, suffix)                                                                  \
  extern "C" void inv_forward_##suffix(const T* x, const T* k, T* y, ARGS) {               \
    if (S == 1) forward_s1<T>(x, k, y, GEOM, threads);                                     \
    else forward_any<T>(x, k, y, GEOM, threads);                                           \
  }                                                                                        \
  extern "C" void inv_grad_input_##suffix(const T* gy, const T* k, T* gx, ARGS) {          \
    if (S == 1) grad_input_s1<T>(gy, k, gx, GEOM, threads);                                \
    else grad_input_any<T>(gy, k, gx, GEOM, threads);                                      \
  }                                                                                        \
  extern "C" void inv_grad_kernel_##suffix(const T* gy, const T* x, T* gk, ARGS) {         \
    if (S == 1) grad_kernel_s1<T>(gy, x, gk, GEOM, threads);                               \
    else grad_kernel_any<T>(gy, x, gk, GEOM, threads);                                     \
  }
EXPORT(float, f32)
EXPORT(double, f64)
"""

# -fopenmp-simd honours the `omp simd` hints without linking an OpenMP runtime.
_FLAG_SETS = (["-O3", "-march=native", "-fopenmp-simd", "-pthread"], ["-O3", "-pthread"])
_lock = threading.Lock()
_state: dict[str, object] = {}


def _cpu_signature() -> str:
    """CPU model and flags: a shared cache must not serve a -march=native build to another CPU."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def _compiler_version(cxx: str) -> str:
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _build(cxx: str, flags: list[str], target: Path) -> None:
    """Compile SOURCE into `target` atomically (write to a temp name, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "involution_cpu.cpp"
        src.write_text(SOURCE)
        out = Path(tmp) / target.name
        cmd = [cxx, *flags, "-std=c++17", "-shared", "-fPIC", str(src), "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        os.replace(out, target)


def _try_load(cxx: str, flags: list[str], root: Path) -> ctypes.CDLL:
    key = hashlib.sha256("\0".join(
        [SOURCE, cxx, _compiler_version(cxx), " ".join(flags), _cpu_signature()]).encode())
    target = root / f"involution_cpu_{key.hexdigest()[:16]}.so"
    if not target.exists():
        _build(cxx, flags, target)
    lib = ctypes.CDLL(str(target))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for name in ("forward", "grad_input", "grad_kernel"):
        for suffix in ("f32", "f64"):
            fn = getattr(lib, f"inv_{name}_{suffix}")
            fn.argtypes = [ptr, ptr, ptr] + [i64] * 9 + [ctypes.c_int]
            fn.restype = None
    return lib


def load() -> ctypes.CDLL | None:
    """The compiled library, building it on first use; None if it cannot be built here."""
    with _lock:
        if "lib" in _state:
            return _state["lib"]  # type: ignore[return-value]
        lib, errors = None, []
        cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
        if cxx is None:
            errors.append("no C++ compiler found (set CXX or install g++)")
        else:
            uid = getattr(os, "getuid", lambda: 0)()
            roots = [cache_root() / "ext", Path(tempfile.gettempdir()) / f"stabgan-ext-{uid}"]
            for flags in _FLAG_SETS:
                for root in roots:
                    try:
                        lib = _try_load(cxx, flags, root)
                        break
                    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                        errors.append(f"{root} {flags}: {exc}")
                if lib is not None:
                    break
        if lib is None:
            warnings.warn("stabgan: the compiled involution kernel is unavailable, using the "
                          "slower pure-torch path. Reasons:\n" + "\n".join(errors), RuntimeWarning,
                          stacklevel=3)
        _state["lib"] = lib
        return lib
