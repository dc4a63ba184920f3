// Entry points of the CUDA backend (kernels/), compiled only when nvcc is found.
// host/backend.cpp calls them behind EQPM_WITH_CUDA; nothing else needs this header except
// the GPU benchmarks (device memory). No CUDA types appear here: plain C++ may include it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "eqpm/backend.hpp"

namespace eqpm::cuda {

std::unique_ptr<Backend> make_cuda_backend();
int device_count();                              // 0 when no driver or device
std::vector<std::string> device_descriptions();  // "0: NVIDIA H200, 139.8 GiB, sm_90, ..."
// Bytes of device memory in use on the current device (total minus free, every process
// included); 0 when no device is visible.
std::size_t device_memory_in_use();

}  // namespace eqpm::cuda
