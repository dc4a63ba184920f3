// Entry points of the CUDA backend (kernels/), compiled only when nvcc is found.
// host/backend.cpp calls them behind EQPM_WITH_CUDA; nothing else needs this header.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "eqpm/backend.hpp"

namespace eqpm::cuda {

std::unique_ptr<Backend> make_cuda_backend();
int device_count();                              // 0 when no driver or device
std::vector<std::string> device_descriptions();  // "0: NVIDIA H200, 139.8 GiB, sm_90"

}  // namespace eqpm::cuda
