# ponder_sft: `ponder sft` (chat data, packing, the SFT loop), `ponder rm train` (preference
# pairs, Bradley-Terry loop) and `ponder distill` (teacher traces, logit and on-policy
# distillation), sharing the run setup and the GRPO trainer's optimizer/checkpoints.
ponder_library(ponder_sft TORCH
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/sft_data.cc
    ${CMAKE_CURRENT_LIST_DIR}/sft_recipe.cc
    ${CMAKE_CURRENT_LIST_DIR}/sft_trainer.cc
    ${CMAKE_CURRENT_LIST_DIR}/rm_trainer.cc
    ${CMAKE_CURRENT_LIST_DIR}/distill_recipe.cc
    ${CMAKE_CURRENT_LIST_DIR}/distill_traces.cc
    ${CMAKE_CURRENT_LIST_DIR}/distill_loss.cc
    ${CMAKE_CURRENT_LIST_DIR}/logit_cache.cc
    ${CMAKE_CURRENT_LIST_DIR}/distill_trainer.cc
  DEPS ponder_train ponder_eval ponder_engine ponder_rewards_builtin ponder_reward_model ponder_model ponder_tokenizer ponder_datasets ponder_store ponder_core)
