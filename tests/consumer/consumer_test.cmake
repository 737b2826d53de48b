# Packaging test: install a configured drt build into a scratch prefix, then configure, build and
# run tests/consumer against that prefix with find_package(drt CONFIG REQUIRED).
#
#   cmake -DDRT_BUILD_DIR=<drt build dir> [-DCMAKE_CXX_COMPILER=<c++>] -P tests/consumer/consumer_test.cmake
#
# Scratch files go to <drt build dir>/packaging-test (removed first).
cmake_minimum_required(VERSION 3.25)

if(NOT DRT_BUILD_DIR OR NOT EXISTS "${DRT_BUILD_DIR}/CMakeCache.txt")
  message(FATAL_ERROR "consumer_test: DRT_BUILD_DIR must be a configured drt build directory, got '${DRT_BUILD_DIR}'")
endif()
set(work "${DRT_BUILD_DIR}/packaging-test")
set(prefix "${work}/prefix")
file(REMOVE_RECURSE "${work}")

# Runs one step; on failure prints its output and stops.
function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer_test: ${what} failed (${rc}):\n${out}")
  endif()
  message(STATUS "consumer_test: ${what}: ok")
endfunction()

set(compiler)
if(CMAKE_CXX_COMPILER)
  set(compiler "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}")
endif()

step("install into ${prefix}" "${CMAKE_COMMAND}" --install "${DRT_BUILD_DIR}" --prefix "${prefix}")
step("configure consumer" "${CMAKE_COMMAND}" -S "${CMAKE_CURRENT_LIST_DIR}" -B "${work}/build"
     -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF ${compiler})

# The drt found must be the one just installed, not one elsewhere on the system.
file(STRINGS "${work}/build/CMakeCache.txt" drt_dir REGEX "^drt_DIR:")
string(REGEX REPLACE "^[^=]*=" "" drt_dir "${drt_dir}")
file(REAL_PATH "${prefix}" real_prefix)
file(REAL_PATH "${drt_dir}" drt_dir)
string(FIND "${drt_dir}" "${real_prefix}/" at)
if(NOT at EQUAL 0)
  message(FATAL_ERROR "consumer_test: find_package(drt) used '${drt_dir}', not the copy installed in '${prefix}'")
endif()

step("build consumer" "${CMAKE_COMMAND}" --build "${work}/build")
step("run consumer" "${work}/build/drt_consumer" "${work}/roundtrip.png")
