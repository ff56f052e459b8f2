# Helpers shared by every facetrain target: warnings and the precompiled torch header.

function(facetrain_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
endfunction()

# The first library that asks gets a precompiled <torch/torch.h>; every later target reuses it
# (REUSE_FROM needs the same compile flags, which all our targets share: that is why no target
# sets POSITION_INDEPENDENT_CODE, since libraries would get -fPIC and executables -fPIE and GCC
# would reject the PCH; the compiler's default, PIE on Debian, serves both). Compiling the torch
# headers takes ~15 s per translation unit on these 2-core machines; with the PCH, ~2 s.
set(FACETRAIN_PCH_OWNER "" CACHE INTERNAL "target that owns the torch PCH")
function(facetrain_use_pch target)
  if(NOT FACETRAIN_USE_PCH)
    return()
  endif()
  if(FACETRAIN_PCH_OWNER STREQUAL "")
    target_precompile_headers(${target} PRIVATE <torch/torch.h> <yaml-cpp/yaml.h> <string> <vector>)
    set(FACETRAIN_PCH_OWNER ${target} CACHE INTERNAL "target that owns the torch PCH")
  else()
    target_precompile_headers(${target} REUSE_FROM ${FACETRAIN_PCH_OWNER})
  endif()
endfunction()

# A static library for one layer: sources, public headers under include/, warnings, PCH.
function(facetrain_layer name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(facetrain_${name} STATIC ${ARG_SOURCES})
  add_library(facetrain::${name} ALIAS facetrain_${name})
  target_include_directories(facetrain_${name} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(facetrain_${name} PUBLIC ${ARG_DEPS})
  set_target_properties(facetrain_${name} PROPERTIES EXPORT_NAME ${name})
  facetrain_warnings(facetrain_${name})
  facetrain_use_pch(facetrain_${name})
  set_property(GLOBAL APPEND PROPERTY FACETRAIN_LAYERS facetrain_${name})
endfunction()
