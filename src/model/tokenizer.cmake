#ponder_tokenizer : byte - level BPE from tokenizer.json and chat templates(no LibTorch).
ponder_library(ponder_tokenizer SOURCES ${CMAKE_CURRENT_LIST_DIR} /
               tokenizer.cc ${CMAKE_CURRENT_LIST_DIR} /
               chat_template.cc DEPS ponder_core PkgConfig::PCRE2)
