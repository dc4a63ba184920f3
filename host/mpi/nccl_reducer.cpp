// NcclReducer (see nccl_reducer.hpp): compiled, not yet run on GPUs.
#include "nccl_reducer.hpp"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <string>
#include <vector>

#include "eqpm/error.hpp"

namespace eqpm {
namespace {

void check_cuda(cudaError_t rc, const char* what, const char* file, int line) {
  if (rc == cudaSuccess) return;
  throw Error(std::string(what) + ": " + cudaGetErrorString(rc) + " (" + file + ":" +
              std::to_string(line) + ")");
}

void check_nccl(ncclResult_t rc, const char* what, const char* file, int line) {
  if (rc == ncclSuccess) return;
  throw Error(std::string(what) + ": " + ncclGetErrorString(rc) + " (" + file + ":" +
              std::to_string(line) + ")");
}

#define EQPM_NCCL_CUDA(expr) check_cuda((expr), #expr, __FILE__, __LINE__)
#define EQPM_NCCL_CHECK(expr) check_nccl((expr), #expr, __FILE__, __LINE__)

}  // namespace

struct NcclReducer::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  double* device = nullptr;  // staging for host arrays; grows, never shrinks
  size_t capacity = 0;

  double* reserve(size_t n) {
    if (n > capacity) {
      if (device) EQPM_NCCL_CUDA(cudaFree(device));
      device = nullptr;
      EQPM_NCCL_CUDA(cudaMalloc(&device, n * sizeof(double)));
      capacity = n;
    }
    return device;
  }
  void to_device(const double* host, size_t n) {
    EQPM_NCCL_CUDA(cudaMemcpyAsync(reserve(n), host, n * sizeof(double), cudaMemcpyHostToDevice, stream));
  }
  void to_host(double* host, size_t n) {
    EQPM_NCCL_CUDA(cudaMemcpyAsync(host, device, n * sizeof(double), cudaMemcpyDeviceToHost, stream));
    EQPM_NCCL_CUDA(cudaStreamSynchronize(stream));
  }
};

NcclReducer::NcclReducer(int local_rank) : impl_(new Impl) {
  try {
    if (MPI_Comm_rank(MPI_COMM_WORLD, &rank_) != MPI_SUCCESS ||
        MPI_Comm_size(MPI_COMM_WORLD, &size_) != MPI_SUCCESS)
      throw Error("NCCL: MPI is not initialised (the reducer is bootstrapped over MPI)");
    int devices = 0;
    EQPM_NCCL_CUDA(cudaGetDeviceCount(&devices));
    if (devices < 1) throw Error("NCCL: no CUDA device visible to rank " + std::to_string(rank_));
    // One rank per GPU: NCCL refuses two ranks of one communicator on one device.
    EQPM_NCCL_CUDA(cudaSetDevice(local_rank % devices));
    ncclUniqueId id;
    if (rank_ == 0) EQPM_NCCL_CHECK(ncclGetUniqueId(&id));
    if (MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
      throw Error("NCCL: MPI_Bcast of the NCCL unique id failed");
    EQPM_NCCL_CHECK(ncclCommInitRank(&impl_->comm, size_, id, rank_));
    EQPM_NCCL_CUDA(cudaStreamCreate(&impl_->stream));
  } catch (...) {
    delete impl_;
    impl_ = nullptr;
    throw;
  }
}

NcclReducer::~NcclReducer() {
  if (!impl_) return;
  // Destructors only release (errors are not thrown from here).
  if (impl_->device) cudaFree(impl_->device);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
  if (impl_->comm) ncclCommDestroy(impl_->comm);
  delete impl_;
}

void NcclReducer::sum(double* values, long n) {
  if (size_ == 1 || n <= 0) return;
  const size_t count = static_cast<size_t>(n), all = count * static_cast<size_t>(size_);
  double* d = impl_->reserve(all);
  EQPM_NCCL_CUDA(cudaMemcpyAsync(d + count * static_cast<size_t>(rank_), values, count * sizeof(double),
                                 cudaMemcpyHostToDevice, impl_->stream));
  EQPM_NCCL_CHECK(ncclAllGather(d + count * static_cast<size_t>(rank_), d, count, ncclDouble,
                                impl_->comm, impl_->stream));
  std::vector<double> gathered(all);
  EQPM_NCCL_CUDA(cudaMemcpyAsync(gathered.data(), d, all * sizeof(double), cudaMemcpyDeviceToHost,
                                 impl_->stream));
  EQPM_NCCL_CUDA(cudaStreamSynchronize(impl_->stream));
  // Rank order, the same on every rank (never ring order).
  for (size_t i = 0; i < count; ++i) {
    double s = 0.0;
    for (int r = 0; r < size_; ++r) s += gathered[static_cast<size_t>(r) * count + i];
    values[i] = s;
  }
}

void NcclReducer::max(double* values, long n) {
  if (size_ == 1 || n <= 0) return;
  const size_t count = static_cast<size_t>(n);
  impl_->to_device(values, count);
  EQPM_NCCL_CHECK(ncclAllReduce(impl_->device, impl_->device, count, ncclDouble, ncclMax,
                                impl_->comm, impl_->stream));
  impl_->to_host(values, count);
}

void NcclReducer::gather(double* values, const long* offsets) {
  if (size_ == 1) return;
  const size_t total = static_cast<size_t>(offsets[size_]);
  if (total == 0) return;
  impl_->to_device(values, total);
  double* d = impl_->device;
  EQPM_NCCL_CHECK(ncclGroupStart());
  for (int r = 0; r < size_; ++r) {
    const size_t begin = static_cast<size_t>(offsets[r]);
    const size_t count = static_cast<size_t>(offsets[r + 1] - offsets[r]);
    if (count > 0)
      EQPM_NCCL_CHECK(ncclBroadcast(d + begin, d + begin, count, ncclDouble, r, impl_->comm,
                                    impl_->stream));
  }
  EQPM_NCCL_CHECK(ncclGroupEnd());
  impl_->to_host(values, total);
}

}  // namespace eqpm
