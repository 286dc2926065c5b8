# ponder_reward_model: the scalar-head reward model (HF ...ForSequenceClassification layout).
ponder_library(ponder_reward_model TORCH
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/reward_model.cc
  DEPS ponder_model ponder_tokenizer ponder_core)
