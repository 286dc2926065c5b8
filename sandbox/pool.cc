#include "sandbox/pool.h"

#include <algorithm>
#include <thread>

#include "core/error.h"

namespace ponder::sandbox {
namespace {

std::size_t worker_count(std::size_t requested) {
  return requested != 0 ? requested : std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

SandboxPool::SandboxPool(const Sandbox& sandbox, std::size_t workers, std::size_t queue_capacity)
    : sandbox_(sandbox),
      pool_(worker_count(workers),
            queue_capacity != 0 ? queue_capacity : 2 * worker_count(workers)) {}

std::future<RunResponse> SandboxPool::submit(RunRequest request) {
  return pool_.submit([this, request = std::move(request)] {
    RunResponse response{.id = request.id};
    try {
      response.result = sandbox_.run(request.program, request.limits);
    } catch (const Error& e) {
      response.error = e.what();
    }
    return response;
  });
}

std::vector<RunResponse> SandboxPool::run_all(std::span<const RunRequest> requests) {
  std::vector<std::future<RunResponse>> pending;
  pending.reserve(requests.size());
  for (const RunRequest& request : requests) pending.push_back(submit(request));
  std::vector<RunResponse> responses;
  responses.reserve(requests.size());
  for (auto& future : pending) responses.push_back(future.get());
  return responses;
}

}  // namespace ponder::sandbox
