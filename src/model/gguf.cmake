# ponder_gguf: GGUF reading and dequantisation (no LibTorch); `ponder convert` builds on it.
ponder_library(ponder_gguf SOURCES ${CMAKE_CURRENT_LIST_DIR}/gguf.cc ${CMAKE_CURRENT_LIST_DIR}/gguf_convert.cc DEPS ponder_core)
