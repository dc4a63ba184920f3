// The reduction seam (reducer.hpp) over NCCL for GPU ranks, one rank per GPU, bootstrapped
// over MPI in the manner of llm.c: rank 0 creates the NCCL id, MPI_Bcast hands it to every
// rank, and each joins the communicator on the GPU of its rank on its machine.
//
// Status: compiled (CMake target eqpm_nccl, when MPI, the CUDA runtime and NCCL are found),
// never run: no machine with several GPUs has been available, and the CUDA backend does not
// call a Reducer yet. Its operations copy, never add across ranks, as MpiReducer does, so
// results would not depend on the rank count: gather is one broadcast per rank (NCCL has no
// all-gather of unequal parts), sum gathers every rank's values and adds them in rank order
// on every rank, max is NCCL's (exact). It takes host arrays, staging them through one
// device buffer that only grows; a CUDA backend would hand it device arrays instead.
#pragma once

#include "eqpm/reducer.hpp"

namespace eqpm {

class NcclReducer final : public Reducer {
 public:
  // MPI must be initialised (MpiSession); picks the GPU local_rank % visible devices.
  explicit NcclReducer(int local_rank);
  ~NcclReducer() override;
  NcclReducer(const NcclReducer&) = delete;
  NcclReducer& operator=(const NcclReducer&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void sum(double* values, long n) override;
  void max(double* values, long n) override;
  void gather(double* values, const long* offsets) override;

 private:
  struct Impl;
  Impl* impl_ = nullptr;
  int rank_ = 0, size_ = 1;
};

}  // namespace eqpm
