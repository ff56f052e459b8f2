# Every external dependency is found here, in one place. All come from Debian 12 packages
# (scripts/setup.sh installs them); on GPU machines Torch may come from a PyTorch install
# (pass -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')).

find_package(Torch REQUIRED)
# A LibTorch with CUDA (PyTorch's, on a GPU machine) defines the target torch_cuda; Debian's
# has none. With it, the facetrain_cuda target is built (src/CMakeLists.txt).
option(FACETRAIN_CUDA "Build the CUDA-only code when LibTorch has CUDA" ON)
if(FACETRAIN_CUDA AND TARGET torch_cuda)
  set(FACETRAIN_WITH_CUDA ON CACHE INTERNAL "facetrain_cuda is built")
else()
  set(FACETRAIN_WITH_CUDA OFF CACHE INTERNAL "facetrain_cuda is built")
endif()
message(STATUS "facetrain: LibTorch ${Torch_VERSION}, CUDA code ${FACETRAIN_WITH_CUDA}")
find_package(yaml-cpp REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(OpenCV REQUIRED COMPONENTS core imgproc imgcodecs)
find_package(nlohmann_json 3 REQUIRED)

if(FACETRAIN_BUILD_TOOLS)
  find_package(CLI11 REQUIRED)
endif()
if(FACETRAIN_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(FACETRAIN_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()

# yaml-cpp 0.7 exports the target `yaml-cpp`; newer releases call it yaml-cpp::yaml-cpp.
if(TARGET yaml-cpp::yaml-cpp)
  set(FACETRAIN_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(FACETRAIN_YAML_TARGET yaml-cpp)
endif()
