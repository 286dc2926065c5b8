# ponder_sft: `ponder sft` (chat data, packing, the SFT loop) and `ponder rm train` (preference
# pairs, Bradley-Terry loop), sharing the run setup and the GRPO trainer's optimizer/checkpoints.
ponder_library(ponder_sft TORCH
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/run_setup.cc
    ${CMAKE_CURRENT_LIST_DIR}/sft_data.cc
    ${CMAKE_CURRENT_LIST_DIR}/sft_recipe.cc
    ${CMAKE_CURRENT_LIST_DIR}/sft_trainer.cc
    ${CMAKE_CURRENT_LIST_DIR}/rm_trainer.cc
  DEPS ponder_train ponder_reward_model ponder_model ponder_tokenizer ponder_datasets ponder_store ponder_core)
