// Error checking and memory ownership for the CUDA backend: every CUDA and cuBLAS call goes
// through EQPM_CUDA_CHECK / EQPM_CUBLAS_CHECK, which turn a failure into an eqpm::Error that
// names the call and its file:line; device and pinned host memory live in move-only RAII
// buffers whose destructors never throw (they report on stderr instead).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdio>
#include <string>
#include <utility>

#include "eqpm/error.hpp"
#include "launch_config.hpp"

namespace eqpm::cuda {

[[noreturn]] inline void throw_call_failure(const char* api, const char* what, const char* expr,
                                            const char* file, int line) {
  std::string msg = file;
  msg.append(":").append(std::to_string(line)).append(": ").append(api).append(" call '");
  msg.append(expr).append("' failed: ").append(what);
  throw Error(msg);
}

// Errors that leave the CUDA context unusable: every later call in this process fails too,
// so the message says the failure is the first of a cascade, not a new one.
inline bool is_sticky(cudaError_t status) {
  switch (status) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
      return true;
    default:
      return false;
  }
}

inline std::string error_text(cudaError_t status) {
  std::string what = cudaGetErrorName(status);
  what.append(" (").append(cudaGetErrorString(status)).append(")");
  if (is_sticky(status))
    what.append(" [sticky: the CUDA context is unusable, later CUDA calls in this process fail]");
  return what;
}

// A failed call also sets the runtime's last error; it is read (and so cleared) here, so the
// next unrelated check (cudaGetLastError after a launch) does not report this failure again.
inline void check_cuda(cudaError_t status, const char* expr, const char* file, int line) {
  if (status == cudaSuccess) return;
  (void)cudaGetLastError();
  throw_call_failure("CUDA", error_text(status).c_str(), expr, file, line);
}

// After a kernel launch: a bad configuration (or an earlier asynchronous fault) shows up
// here, and the message names the kernel and its launch configuration.
inline void check_launch(const std::string& launch, const char* file, int line) {
  const cudaError_t status = cudaGetLastError();  // reads and clears the last error
  if (status == cudaSuccess) return;
  std::string msg = file;
  msg.append(":").append(std::to_string(line)).append(": launch of ").append(launch);
  msg.append(" failed: ").append(error_text(status));
  throw Error(msg);
}

inline void check_cublas(cublasStatus_t status, const char* expr, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw_call_failure("cuBLAS", cublasGetStatusString(status), expr, file, line);
}

// For destructors: report, never throw.
inline void report_cuda(cudaError_t status, const char* expr, const char* file, int line) {
  if (status == cudaSuccess) return;
  std::fprintf(stderr, "eqpm: %s:%d: CUDA call '%s' failed during cleanup: %s\n", file, line,
               expr, cudaGetErrorString(status));
}

}  // namespace eqpm::cuda

#define EQPM_CUDA_CHECK(expr) ::eqpm::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
#define EQPM_CUBLAS_CHECK(expr) ::eqpm::cuda::check_cublas((expr), #expr, __FILE__, __LINE__)
#define EQPM_CUDA_REPORT(expr) ::eqpm::cuda::report_cuda((expr), #expr, __FILE__, __LINE__)
// After a kernel launch: EQPM_CUDA_CHECK_KERNEL(config) for a LaunchConfig
// (launch_config.hpp), EQPM_CUDA_CHECK_LAUNCH(kernel, grid, block, smem) otherwise.
#define EQPM_CUDA_CHECK_KERNEL(config) \
  ::eqpm::cuda::check_launch(::eqpm::cuda::describe(config), __FILE__, __LINE__)
#define EQPM_CUDA_CHECK_LAUNCH(kernel, grid, block, smem)                                  \
  ::eqpm::cuda::check_launch(::eqpm::cuda::describe(::eqpm::cuda::LaunchConfig{            \
                                 kernel, static_cast<long>(dim3(grid).x),                  \
                                 static_cast<long>(dim3(grid).y),                          \
                                 static_cast<int>(dim3(block).x), std::size_t(smem), 0}),  \
                             __FILE__, __LINE__)

namespace eqpm::cuda {

// n elements of T in memory that Memory allocates (cudaMalloc or cudaMallocHost): owns it,
// moves, never copies. No construction: T must be trivially copyable.
template <class T, class Memory>
class CudaAllocation {
 public:
  CudaAllocation() = default;
  ~CudaAllocation() { release(); }
  CudaAllocation(const CudaAllocation&) = delete;
  CudaAllocation& operator=(const CudaAllocation&) = delete;
  CudaAllocation(CudaAllocation&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  CudaAllocation& operator=(CudaAllocation&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }

  // Frees what was held and allocates n elements (contents undefined).
  void allocate(std::size_t n) {
    release();
    if (n == 0) return;
    ptr_ = static_cast<T*>(Memory::allocate(n * sizeof(T)));
    size_ = n;
  }
  // Grow-only: keeps the allocation when it already holds n elements.
  void reserve(std::size_t n) {
    if (n > size_) allocate(n);
  }

  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  std::size_t size() const { return size_; }
  std::size_t bytes() const { return size_ * sizeof(T); }
  bool empty() const { return size_ == 0; }

 private:
  void release() noexcept {
    if (ptr_) Memory::release(ptr_);
    ptr_ = nullptr;
    size_ = 0;
  }
  T* ptr_ = nullptr;
  std::size_t size_ = 0;
};

struct DeviceMemory {
  static void* allocate(std::size_t bytes) {
    void* p = nullptr;
    EQPM_CUDA_CHECK(cudaMalloc(&p, bytes));
    return p;
  }
  static void release(void* p) noexcept { EQPM_CUDA_REPORT(cudaFree(p)); }
};

// Page-locked host memory, so that asynchronous copies (and copies inside CUDA graphs) are
// legal.
struct PinnedMemory {
  static void* allocate(std::size_t bytes) {
    void* p = nullptr;
    EQPM_CUDA_CHECK(cudaMallocHost(&p, bytes));
    return p;
  }
  static void release(void* p) noexcept { EQPM_CUDA_REPORT(cudaFreeHost(p)); }
};

// Device memory for n elements of T, with copies on a stream.
template <class T>
class DeviceBuffer : public CudaAllocation<T, DeviceMemory> {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) { this->allocate(n); }

  void upload(const T* host, std::size_t n, cudaStream_t stream) {
    if (n == 0) return;
    if (n > this->size())
      throw Error("DeviceBuffer::upload: " + std::to_string(n) + " elements into " +
                  std::to_string(this->size()));
    EQPM_CUDA_CHECK(cudaMemcpyAsync(this->data(), host, n * sizeof(T), cudaMemcpyHostToDevice, stream));
  }
  void download(T* host, std::size_t n, cudaStream_t stream) const {
    if (n == 0) return;
    if (n > this->size())
      throw Error("DeviceBuffer::download: " + std::to_string(n) + " elements from " +
                  std::to_string(this->size()));
    EQPM_CUDA_CHECK(cudaMemcpyAsync(host, this->data(), n * sizeof(T), cudaMemcpyDeviceToHost, stream));
  }
  void zero(cudaStream_t stream) {
    if (!this->empty()) EQPM_CUDA_CHECK(cudaMemsetAsync(this->data(), 0, this->bytes(), stream));
  }
};

// Page-locked host memory for n elements of T (grow-only through reserve), indexable.
template <class T>
class PinnedBuffer : public CudaAllocation<T, PinnedMemory> {
 public:
  T& operator[](std::size_t i) { return this->data()[i]; }
  const T& operator[](std::size_t i) const { return this->data()[i]; }
};

}  // namespace eqpm::cuda
