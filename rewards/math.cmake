ponder_library(ponder_rewards_math
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/math_expression.cc ${CMAKE_CURRENT_LIST_DIR}/math_answer.cc
          ${CMAKE_CURRENT_LIST_DIR}/math_rewards.cc
          ${CMAKE_CURRENT_LIST_DIR}/countdown_reward.cc
  DEPS ponder_rewards)
