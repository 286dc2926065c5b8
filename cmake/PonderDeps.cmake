# Finds every third-party dependency once and exposes it as an imported target.
# LibTorch comes from the bootstrap venv (PONDER_PYTHON) or from Torch_DIR / CMAKE_PREFIX_PATH.

find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(GTest REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
# Boost.Filesystem is linked by the sandbox only. GPU machines that build just the kernels may
# lack it: PONDER_BOOST_FILESYSTEM=OFF skips the search and linking the sandbox then fails on a
# library named after this option.
option(PONDER_BOOST_FILESYSTEM "Look for Boost.Filesystem (needed by the sandbox)" ON)
if(PONDER_BOOST_FILESYSTEM)
  find_package(Boost 1.74 REQUIRED COMPONENTS filesystem)
else()
  find_package(Boost 1.74 REQUIRED)
  add_library(Boost::filesystem INTERFACE IMPORTED)
  set_target_properties(Boost::filesystem PROPERTIES
    INTERFACE_LINK_LIBRARIES ponder_needs_PONDER_BOOST_FILESYSTEM_ON)
endif()
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
# Without this LibTorch probes for a local GPU at configure time; kernels target Hopper.
if(NOT DEFINED TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "9.0a")
endif()
find_package(Torch REQUIRED)

# LibTorch ships fmt v12 headers in its include dir, which would shadow the system fmt in
# LibTorch targets only. Everyone uses LibTorch's copy, header-only, through one include dir.
set(ponder_fmt_dir ${PROJECT_BINARY_DIR}/fmt_include)
file(MAKE_DIRECTORY ${ponder_fmt_dir})
file(CREATE_LINK ${TORCH_INSTALL_PREFIX}/include/fmt ${ponder_fmt_dir}/fmt SYMBOLIC)
add_library(ponder_fmt INTERFACE)
target_include_directories(ponder_fmt SYSTEM BEFORE INTERFACE ${ponder_fmt_dir})
target_compile_definitions(ponder_fmt INTERFACE FMT_HEADER_ONLY)

add_library(ponder_torch INTERFACE)
target_link_libraries(ponder_torch INTERFACE ${TORCH_LIBRARIES} ponder_fmt)
target_compile_options(ponder_torch INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${TORCH_CXX_FLAGS}>)

# One precompiled <ATen/ATen.h> shared by every LibTorch target (REUSE_FROM needs equal flags,
# which is why paths reach tests through a generated header instead of -D definitions).
add_library(ponder_torch_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/pch_anchor.cc)
target_link_libraries(ponder_torch_pch PUBLIC ponder_torch)
target_precompile_headers(ponder_torch_pch PUBLIC <ATen/ATen.h>)
ponder_warnings(ponder_torch_pch)

# libtorch.so exports its own std::filesystem symbols, which would win over libstdc++'s (and
# crash) for every executable that lists libtorch first; libstdc++ goes first instead.
string(APPEND CMAKE_EXE_LINKER_FLAGS " -Wl,--push-state,--no-as-needed -lstdc++ -Wl,--pop-state")
