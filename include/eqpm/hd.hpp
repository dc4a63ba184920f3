// Portability macro for the maths shared by the CPU reference and the CUDA kernels:
// EQPM_HD_INLINE marks an inline function callable from host and device under nvcc and is
// plain `inline` in C++, so every header in include/eqpm/ compiles without the CUDA toolkit.
#pragma once

#if defined(__CUDACC__)
#define EQPM_HD_INLINE __host__ __device__ __forceinline__
#else
#define EQPM_HD_INLINE inline
#endif

namespace eqpm {

// Fixed upper bounds that let shared maths use stack arrays instead of allocation.
inline constexpr int kMaxHorizon = 64;     // H
inline constexpr int kMaxLayers = 8;       // linear layers of the MLP
inline constexpr int kMaxWidth = 1024;     // any layer width, input included
inline constexpr int kMaxSamples = 1024;   // S

}  // namespace eqpm
