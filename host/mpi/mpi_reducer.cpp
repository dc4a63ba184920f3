// MPI session and reducer (see mpi_reducer.hpp).
#include "mpi_reducer.hpp"

#include <mpi.h>

#include <cstdlib>
#include <limits>
#include <vector>

#include "eqpm/error.hpp"

namespace eqpm {
namespace {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(std::string(what) + ": " + std::string(text, static_cast<size_t>(len)));
}

int as_count(long n) {
  if (n < 0 || n > std::numeric_limits<int>::max())
    throw Error("MPI: a message of " + std::to_string(n) + " values is beyond an int count");
  return static_cast<int>(n);
}

}  // namespace

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  if (!launched_by_mpi()) return;
  int provided = 0;
  // Only the main thread calls MPI (OpenMP regions never do).
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return;
  active_ = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm local;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local) ==
      MPI_SUCCESS) {
    MPI_Comm_size(local, &local_size_);
    MPI_Comm_free(&local);
  }
}

MpiSession::~MpiSession() {
  if (active_) MPI_Finalize();
}

void MpiSession::abort(int code) const {
  if (active_) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

MpiReducer::MpiReducer() {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

void MpiReducer::sum(double* values, long n) {
  if (size_ == 1 || n == 0) return;
  const int count = as_count(n);
  std::vector<double> all(static_cast<size_t>(n) * static_cast<size_t>(size_));
  check(MPI_Allgather(values, count, MPI_DOUBLE, all.data(), count, MPI_DOUBLE, MPI_COMM_WORLD),
        "MPI_Allgather");
  add_in_place_order(all.data(), size_, n, values);
}

void MpiReducer::fast_sum(double* values, long n) {
  if (size_ == 1 || n == 0) return;
  check(MPI_Allreduce(MPI_IN_PLACE, values, as_count(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
        "MPI_Allreduce");
}

void MpiReducer::max(double* values, long n) {
  if (size_ == 1 || n == 0) return;
  check(MPI_Allreduce(MPI_IN_PLACE, values, as_count(n), MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD),
        "MPI_Allreduce");
}

void MpiReducer::gather(double* values, const long* offsets) {
  if (size_ == 1) return;
  std::vector<int> counts(static_cast<size_t>(size_)), displs(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r) {
    displs[static_cast<size_t>(r)] = as_count(offsets[r]);
    counts[static_cast<size_t>(r)] = as_count(offsets[r + 1] - offsets[r]);
  }
  check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, values, counts.data(), displs.data(),
                       MPI_DOUBLE, MPI_COMM_WORLD),
        "MPI_Allgatherv");
}

}  // namespace eqpm
