// Training across processes: the MPI side of the reduction seam (reducer.hpp). Built only
// when CMake finds MPI (EQPM_MPI); the library eqpm_core never needs it.
#pragma once

#include <string>

#include "eqpm/reducer.hpp"

namespace eqpm {

// MPI for the life of the program: initialised only when the process was started by an MPI
// launcher (mpirun sets its environment), so a plain run never touches MPI.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  bool active() const { return active_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Ranks on this machine (for the default thread count).
  int local_size() const { return local_size_; }
  // Ends every rank with `code` (a failure on one rank must not leave the others waiting
  // in a collective call).
  [[noreturn]] void abort(int code) const;

 private:
  bool active_ = false;
  int rank_ = 0, size_ = 1, local_size_ = 1;
};

// Whether this process looks started by an MPI launcher (Open MPI, MPICH/Hydra, PMIx, Slurm
// under srun with PMI).
bool launched_by_mpi();

// The ranks of MPI_COMM_WORLD as places that hold agents.
class MpiReducer final : public Reducer {
 public:
  MpiReducer();
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // Every rank's values gathered and added in rank order (the same sum on every rank).
  void sum(double* values, long n) override;
  void max(double* values, long n) override;
  void gather(double* values, const long* offsets) override;
  // MPI_Allreduce with MPI_SUM and MPI_MAX (--fast-reduce).
  void fast_sum(double* values, long n) override;
  void fast_max(double* values, long n) override { max(values, n); }

 private:
  int rank_ = 0, size_ = 1;
};

}  // namespace eqpm
