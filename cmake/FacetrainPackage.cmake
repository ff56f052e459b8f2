# `cmake --install` produces a relocatable package: bin/facetrain, the headers, the static
# libraries and facetrainConfig.cmake, so an outside project can
#   find_package(facetrain REQUIRED)
#   target_link_libraries(app PRIVATE facetrain::facetrain)
include(CMakePackageConfigHelpers)

# facetrain::facetrain links every layer.
add_library(facetrain INTERFACE)
add_library(facetrain::facetrain ALIAS facetrain)
get_property(_layers GLOBAL PROPERTY FACETRAIN_LAYERS)
target_link_libraries(facetrain INTERFACE ${_layers})

install(TARGETS ${_layers} facetrain EXPORT facetrainTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/facetrain DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES "${PROJECT_BINARY_DIR}/include/facetrain/version.h"
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/facetrain)

set(_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/facetrain)
install(EXPORT facetrainTargets NAMESPACE facetrain:: DESTINATION ${_cmake_dir})
configure_package_config_file(cmake/facetrainConfig.cmake.in
  "${PROJECT_BINARY_DIR}/facetrainConfig.cmake" INSTALL_DESTINATION ${_cmake_dir})
write_basic_package_version_file("${PROJECT_BINARY_DIR}/facetrainConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/facetrainConfig.cmake"
              "${PROJECT_BINARY_DIR}/facetrainConfigVersion.cmake"
        DESTINATION ${_cmake_dir})
