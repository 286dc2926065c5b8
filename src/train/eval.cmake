# ponder_eval_metrics: pass@k / maj@k, shared by `ponder eval` and the trainer's periodic eval.
ponder_library(ponder_eval_metrics SOURCES ${CMAKE_CURRENT_LIST_DIR}/eval_metrics.cc DEPS ponder_core)
