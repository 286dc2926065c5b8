# Helpers that give every ponder target the same standard, warnings and test wiring.

function(ponder_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers>)
endfunction()

# ponder_library(NAME SOURCES ... [DEPS ...] [TORCH])
# TORCH: links LibTorch and precompiles <ATen/ATen.h> so heavy headers are parsed once.
function(ponder_library name)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/src ${PROJECT_BINARY_DIR}/generated)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  if(ARG_TORCH)
    target_link_libraries(${name} PUBLIC ponder_torch)
    target_precompile_headers(${name} REUSE_FROM ponder_torch_pch)
  endif()
  ponder_warnings(${name})
endfunction()

# ponder_test(NAME SOURCES ... [DEPS ...] [TORCH]): one GoogleTest binary registered with CTest.
function(ponder_test name)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  if(ARG_TORCH)
    target_link_libraries(${name} PRIVATE ponder_torch)
    target_precompile_headers(${name} REUSE_FROM ponder_torch_pch)
  endif()
  target_compile_definitions(${name} PRIVATE
    PONDER_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    PONDER_BINARY="$<TARGET_FILE:ponder>")
  ponder_warnings(${name})
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 120 PROPERTIES ENVIRONMENT
    "PONDER_PYTHON=${PONDER_PYTHON}")
endfunction()
