# ponder_rewards_model: the `model` reward (a learned reward model; links LibTorch).
ponder_library(ponder_rewards_model TORCH
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/model_reward.cc
  DEPS ponder_rewards ponder_reward_model ponder_tokenizer ponder_core)
