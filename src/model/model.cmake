# ponder_model: configs, safetensors, and the DeepSeek/Llama/Qwen2 transformer on LibTorch.
ponder_library(ponder_model TORCH
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/config.cc
    ${CMAKE_CURRENT_LIST_DIR}/safetensors.cc
    ${CMAKE_CURRENT_LIST_DIR}/checkpointing.cc
    ${CMAKE_CURRENT_LIST_DIR}/layers.cc
    ${CMAKE_CURRENT_LIST_DIR}/packed_attention.cc
    ${CMAKE_CURRENT_LIST_DIR}/fp8_linear.cc
    ${CMAKE_CURRENT_LIST_DIR}/attention_gqa.cc
    ${CMAKE_CURRENT_LIST_DIR}/attention_mla.cc
    ${CMAKE_CURRENT_LIST_DIR}/transformer.cc
    ${CMAKE_CURRENT_LIST_DIR}/init_model.cc
  DEPS ponder_kernels ponder_core)
