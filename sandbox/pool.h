// A worker pool running sandboxed programs in parallel, one worker per core and a bounded
// queue: submit() blocks when the queue is full; run_all() returns results in request order.
#pragma once

#include <cstdint>
#include <future>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "sandbox/sandbox.h"

namespace ponder::sandbox {

struct RunRequest {
  std::uint64_t id = 0;
  Program program;
  Limits limits;
};

struct RunResponse {
  std::uint64_t id = 0;
  RunResult result;
  std::string error;  // set when the sandbox itself failed (the program never ran)
};

class SandboxPool {
 public:
  // workers == 0: one per hardware core; queue_capacity == 0: twice the workers.
  explicit SandboxPool(const Sandbox& sandbox, std::size_t workers = 0,
                       std::size_t queue_capacity = 0);

  std::future<RunResponse> submit(RunRequest request);
  std::vector<RunResponse> run_all(std::span<const RunRequest> requests);
  std::size_t workers() const { return pool_.size(); }

 private:
  const Sandbox& sandbox_;
  ThreadPool pool_;
};

}  // namespace ponder::sandbox
