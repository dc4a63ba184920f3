// Links the NCCL reducer against libnccl and the CUDA runtime, so that a renamed or missing
// symbol fails the build; built with eqpm_nccl and never run (it would need GPUs and mpirun).
#include "nccl_reducer.hpp"

int main(int argc, char**) {
  if (argc > 1000) {  // never taken: only the references matter
    eqpm::NcclReducer reducer(0);
    double v = 0;
    reducer.max(&v, 1);
    reducer.sum(&v, 1);
    const long offsets[2] = {0, 1};
    reducer.gather(&v, offsets);
    return reducer.size();
  }
  return 0;
}
