ponder_library(ponder_rewards_code
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/code_extract.cc ${CMAKE_CURRENT_LIST_DIR}/code_rewards.cc
  DEPS ponder_rewards ponder_sandbox)
