// NcclReducer (see nccl_reducer.hpp): compiled, not yet run on GPUs.
#include "nccl_reducer.hpp"

#include <mpi.h>
#include <nccl.h>

#include <string>
#include <vector>

#include "cuda_check.hpp"
#include "eqpm/error.hpp"

namespace eqpm {
namespace {

void check_nccl(ncclResult_t rc, const char* expr, const char* file, int line) {
  if (rc == ncclSuccess) return;
  cuda::throw_call_failure("NCCL", ncclGetErrorString(rc), expr, file, line);
}

#define EQPM_NCCL_CHECK(expr) check_nccl((expr), #expr, __FILE__, __LINE__)

}  // namespace

struct NcclReducer::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cuda::DeviceBuffer<double> staging;  // host arrays pass through it; grows, never shrinks

  // The host array onto the device (staging[0, n)), and back once the stream has run.
  double* to_device(const double* host, size_t n) {
    staging.reserve(n);
    staging.upload(host, n, stream);
    return staging.data();
  }
  void to_host(double* host, size_t n) {
    staging.download(host, n, stream);
    EQPM_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
};

NcclReducer::NcclReducer(int local_rank) : impl_(new Impl) {
  try {
    if (MPI_Comm_rank(MPI_COMM_WORLD, &rank_) != MPI_SUCCESS ||
        MPI_Comm_size(MPI_COMM_WORLD, &size_) != MPI_SUCCESS)
      throw Error("NCCL: MPI is not initialised (the reducer is bootstrapped over MPI)");
    int devices = 0;
    EQPM_CUDA_CHECK(cudaGetDeviceCount(&devices));
    if (devices < 1) throw Error("NCCL: no CUDA device visible to rank " + std::to_string(rank_));
    // One rank per GPU: NCCL refuses two ranks of one communicator on one device.
    EQPM_CUDA_CHECK(cudaSetDevice(local_rank % devices));
    ncclUniqueId id;
    if (rank_ == 0) EQPM_NCCL_CHECK(ncclGetUniqueId(&id));
    if (MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
      throw Error("NCCL: MPI_Bcast of the NCCL unique id failed");
    EQPM_NCCL_CHECK(ncclCommInitRank(&impl_->comm, size_, id, rank_));
    EQPM_CUDA_CHECK(cudaStreamCreate(&impl_->stream));
  } catch (...) {
    delete impl_;
    impl_ = nullptr;
    throw;
  }
}

NcclReducer::~NcclReducer() {
  if (!impl_) return;
  // Destructors only release (errors are reported, not thrown); the staging buffer goes
  // with impl_.
  if (impl_->stream) EQPM_CUDA_REPORT(cudaStreamDestroy(impl_->stream));
  if (impl_->comm) ncclCommDestroy(impl_->comm);
  delete impl_;
}

void NcclReducer::sum(double* values, long n) {
  if (size_ == 1 || n <= 0) return;
  const size_t count = static_cast<size_t>(n), all = count * static_cast<size_t>(size_);
  impl_->staging.reserve(all);
  double* own = impl_->staging.data() + count * static_cast<size_t>(rank_);
  EQPM_CUDA_CHECK(cudaMemcpyAsync(own, values, count * sizeof(double), cudaMemcpyHostToDevice,
                                  impl_->stream));
  EQPM_NCCL_CHECK(ncclAllGather(own, impl_->staging.data(), count, ncclDouble, impl_->comm,
                                impl_->stream));
  std::vector<double> gathered(all);
  impl_->to_host(gathered.data(), all);
  add_in_place_order(gathered.data(), size_, n, values);
}

void NcclReducer::max(double* values, long n) {
  if (size_ == 1 || n <= 0) return;
  const size_t count = static_cast<size_t>(n);
  double* d = impl_->to_device(values, count);
  EQPM_NCCL_CHECK(ncclAllReduce(d, d, count, ncclDouble, ncclMax, impl_->comm, impl_->stream));
  impl_->to_host(values, count);
}

void NcclReducer::gather(double* values, const long* offsets) {
  if (size_ == 1) return;
  const size_t total = static_cast<size_t>(offsets[size_]);
  if (total == 0) return;
  double* d = impl_->to_device(values, total);
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
