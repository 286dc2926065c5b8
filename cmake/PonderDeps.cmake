# Finds every third-party dependency once and exposes it as an imported target.
# LibTorch comes from the bootstrap venv (PONDER_PYTHON) or from Torch_DIR / CMAKE_PREFIX_PATH.

find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(fmt REQUIRED)
find_package(GTest REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS filesystem)
pkg_check_modules(SECCOMP REQUIRED IMPORTED_TARGET libseccomp)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)

set(PONDER_PYTHON "" CACHE FILEPATH "Python with torch (test oracles and LibTorch location)")
if(NOT Torch_DIR AND PONDER_PYTHON)
  execute_process(
    COMMAND ${PONDER_PYTHON} -c "import torch; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE torch_rc)
  if(NOT torch_rc EQUAL 0)
    message(FATAL_ERROR "PONDER_PYTHON=${PONDER_PYTHON} cannot import torch; run scripts/bootstrap")
  endif()
  list(APPEND CMAKE_PREFIX_PATH ${torch_prefix})
endif()
find_package(Torch REQUIRED)

add_library(ponder_torch INTERFACE)
target_link_libraries(ponder_torch INTERFACE ${TORCH_LIBRARIES})
target_compile_options(ponder_torch INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${TORCH_CXX_FLAGS}>)

# One precompiled <ATen/ATen.h> shared by every LibTorch target (REUSE_FROM needs equal flags,
# which is why paths reach tests through a generated header instead of -D definitions).
add_library(ponder_torch_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/pch_anchor.cc)
target_link_libraries(ponder_torch_pch PUBLIC ponder_torch)
target_precompile_headers(ponder_torch_pch PUBLIC <ATen/ATen.h>)
ponder_warnings(ponder_torch_pch)
