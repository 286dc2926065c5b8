// Ranks launched by torchrun (or the same environment contract), a TCPStore rendezvous and a c10d
// process group (Gloo on CPU, NCCL for CUDA tensors) behind blocking collectives that fail fast.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace c10d {
class Backend;
}

namespace ponder::dist {

// torchrun's contract: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. Without
// WORLD_SIZE the process runs alone; with it (even WORLD_SIZE=1, as `torchrun --nproc-per-node 1`
// sets) collectives go through real backends. PONDER_DIST_TIMEOUT (seconds) bounds the rendezvous
// and every collective, so a dead or missing rank turns into an error instead of a hang.
struct LaunchEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  bool launched = false;  // WORLD_SIZE was set
  std::string master_addr = "127.0.0.1";
  std::uint16_t master_port = 29500;
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
};

// Reads the variables above; a malformed or inconsistent value throws ponder::Error naming it.
LaunchEnv launch_env();

// One process group over all ranks, with two c10d backends over one TCPStore: Gloo for CPU
// tensors (metadata, metric sums, strings) and NCCL for CUDA tensors (gradients, parameters,
// expert all-to-all), created at the first collective on a CUDA tensor. A failure (a rank died,
// the timeout passed) throws ponder::Error naming this rank and the operation; Gloo collectives
// block until done, NCCL ones are ordered on the current CUDA stream (NCCL's watchdog ends the
// process when one does not finish within the timeout). A process not launched as a rank has no
// store or backend and its collectives act locally.
class ProcessGroup {
 public:
  explicit ProcessGroup(const LaunchEnv& env);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  int local_rank() const { return env_.local_rank; }
  bool is_main() const { return env_.rank == 0; }

  // Where this rank computes for a device type: the CPU, or the CUDA device of its LOCAL_RANK
  // (cuda:LOCAL_RANK, made the current device so custom kernels and NCCL use it too). Throws
  // ponder::Error when this machine has no such CUDA device.
  at::Device local_device(at::DeviceType type) const;

  void all_reduce_sum(at::Tensor& tensor);
  // input [world * n] -> output [n]: this rank's slice of the element-wise sum over ranks.
  void reduce_scatter_sum(at::Tensor& output, const at::Tensor& input);
  // input [n] -> output [world * n], rank r's input at [r * n, (r + 1) * n).
  void all_gather(at::Tensor& output, const at::Tensor& input);
  // Rows of input [sum(send_counts), ...] go to rank r in order; output [sum(recv_counts), ...]
  // holds what each rank sent here, in rank order.
  void all_to_all(at::Tensor& output, const at::Tensor& input,
                  const std::vector<std::int64_t>& recv_counts,
                  const std::vector<std::int64_t>& send_counts);
  void broadcast(at::Tensor& tensor, int root);
  void barrier();
  // Waits for every rank, then releases the backend and store; idempotent. After a failed
  // collective it skips the barrier (the peers may be gone).
  void shutdown();
  // Releases the backend and store without waiting for the other ranks, after an error on this
  // rank: they fail at their next collective instead of waiting for this one.
  void abort();

 private:
  struct Impl;
  // The backend for collectives on `tensor`'s device (NCCL for CUDA, created on first use).
  c10d::Backend& backend_for(const at::Tensor& tensor);
  template <typename Fn>
  void run(const char* what, c10d::Backend& backend, Fn&& fn);
  LaunchEnv env_;
  std::unique_ptr<Impl> impl_;
  bool failed_ = false;
};

}  // namespace ponder::dist
