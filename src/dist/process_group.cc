#include "dist/process_group.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/util/Exception.h>
#include <fmt/core.h>

#include <charconv>
#include <cstdlib>
#include <exception>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "core/error.h"
#include "dist/backends.h"

namespace ponder::dist {
namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value && *value ? value : fallback;
}

std::int64_t env_int(const char* name, std::int64_t fallback, std::int64_t min, std::int64_t max) {
  const std::string text = env_or(name, "");
  if (text.empty()) return fallback;
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max)
    throw Error(fmt::format("environment variable {}='{}': expected an integer in [{}, {}]", name,
                            text, min, max));
  return value;
}

// c10 errors carry a C++ backtrace after the message; users need the message.
std::string message_of(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e))
    return c10_error->what_without_backtrace();
  return e.what();
}

}  // namespace

LaunchEnv launch_env() {
  LaunchEnv env;
  env.world_size = static_cast<int>(env_int("WORLD_SIZE", 1, 1, 1 << 20));
  env.launched = !env_or("WORLD_SIZE", "").empty();
  env.rank = static_cast<int>(env_int("RANK", 0, 0, env.world_size - 1));
  env.local_rank = static_cast<int>(env_int("LOCAL_RANK", env.rank, 0, env.world_size - 1));
  env.master_addr = env_or("MASTER_ADDR", env.master_addr);
  env.master_port = static_cast<std::uint16_t>(env_int("MASTER_PORT", env.master_port, 1, 65535));
  env.timeout = std::chrono::seconds(env_int("PONDER_DIST_TIMEOUT", 300, 1, 7 * 24 * 3600));
  return env;
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> gloo, nccl;  // CPU tensors; CUDA tensors (on first use)
};

ProcessGroup::ProcessGroup(const LaunchEnv& env) : env_(env), impl_(std::make_unique<Impl>()) {
  if (env_.world_size == 1 && !env_.launched) return;
  try {
    c10d::TCPStoreOptions options;
    options.port = env_.master_port;
    options.isServer = env_.rank == 0;
    options.numWorkers = env_.world_size;
    options.timeout = env_.timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, options);
    impl_->gloo = detail::make_gloo_backend(
        c10::make_intrusive<c10d::PrefixStore>("gloo", impl_->store), env_);
  } catch (const std::exception& e) {
    throw Error(fmt::format(
        "dist: rank {}/{}: rendezvous at {}:{} failed (every rank must start within {} s, "
        "PONDER_DIST_TIMEOUT): {}",
        env_.rank, env_.world_size, env_.master_addr, env_.master_port,
        std::chrono::duration_cast<std::chrono::seconds>(env_.timeout).count(), message_of(e)));
  }
}

ProcessGroup::~ProcessGroup() {
  try {
    shutdown();
  } catch (const std::exception&) {
    // Peers left first; the group is released regardless.
  }
}

at::Device ProcessGroup::local_device(at::DeviceType type) const {
  if (type != at::kCUDA) return at::kCPU;
  const auto* cuda = c10::impl::getDeviceGuardImpl(at::kCUDA);
  const c10::DeviceIndex count = cuda->deviceCount();
  if (env_.local_rank >= count)
    throw Error(fmt::format(
        "dist: rank {}/{} has LOCAL_RANK {} but this machine shows {} CUDA device(s); start at "
        "most one rank per GPU",
        env_.rank, env_.world_size, env_.local_rank, count));
  const at::Device device(at::kCUDA, static_cast<c10::DeviceIndex>(env_.local_rank));
  cuda->setDevice(device);
  return device;
}

c10d::Backend& ProcessGroup::backend_for(const at::Tensor& tensor) {
  if (!tensor.is_cuda()) return *impl_->gloo;
  if (!impl_->nccl) {
    local_device(at::kCUDA);
    impl_->nccl = detail::make_nccl_backend(
        c10::make_intrusive<c10d::PrefixStore>("nccl", impl_->store), env_);
  }
  return *impl_->nccl;
}

template <typename Fn>
void ProcessGroup::run(const char* what, c10d::Backend& backend, Fn&& fn) {
  if (failed_)
    throw Error(fmt::format("dist: rank {}/{}: {} after an earlier collective failed", env_.rank,
                            env_.world_size, what));
  try {
    fn(backend)->wait();
  } catch (const std::exception& e) {
    failed_ = true;
    throw Error(fmt::format(
        "dist: rank {}/{}: {} failed: {} (a collective fails when a rank exits or does not "
        "answer within {} s, PONDER_DIST_TIMEOUT)",
        env_.rank, env_.world_size, what, message_of(e),
        std::chrono::duration_cast<std::chrono::seconds>(env_.timeout).count()));
  }
}

void ProcessGroup::all_reduce_sum(at::Tensor& tensor) {
  if (!impl_->store) return;
  std::vector<at::Tensor> tensors{tensor};
  run("all_reduce", backend_for(tensor), [&](c10d::Backend& b) { return b.allreduce(tensors); });
}

namespace {

void check_same_device(const char* what, const at::Tensor& output, const at::Tensor& input) {
  if (output.device() != input.device())
    throw Error(fmt::format("dist: {}: output on {} but input on {}; both must be on one device",
                            what, output.device().str(), input.device().str()));
}

}  // namespace

void ProcessGroup::reduce_scatter_sum(at::Tensor& output, const at::Tensor& input) {
  if (input.numel() != output.numel() * env_.world_size)
    throw Error(fmt::format("dist: reduce_scatter: input has {} elements, expected {} x {} ranks",
                            input.numel(), output.numel(), env_.world_size));
  check_same_device("reduce_scatter", output, input);
  if (!impl_->store) {
    output.copy_(input);
    return;
  }
  at::Tensor in = input.contiguous().view(-1), out = output.view(-1);
  run("reduce_scatter", backend_for(in),
      [&](c10d::Backend& b) { return b._reduce_scatter_base(out, in); });
}

void ProcessGroup::all_gather(at::Tensor& output, const at::Tensor& input) {
  if (output.numel() != input.numel() * env_.world_size)
    throw Error(fmt::format("dist: all_gather: output has {} elements, expected {} x {} ranks",
                            output.numel(), input.numel(), env_.world_size));
  check_same_device("all_gather", output, input);
  if (!impl_->store) {
    output.copy_(input);
    return;
  }
  // Gloo splits the output along dim 0 into one input-shaped piece per rank: flat views.
  at::Tensor in = input.contiguous().view(-1), out = output.view(-1);
  run("all_gather", backend_for(in), [&](c10d::Backend& b) { return b._allgather_base(out, in); });
}

void ProcessGroup::all_to_all(at::Tensor& output, const at::Tensor& input,
                              const std::vector<std::int64_t>& recv_counts,
                              const std::vector<std::int64_t>& send_counts) {
  check_same_device("all_to_all", output, input);
  if (!impl_->store) {
    output.copy_(input);
    return;
  }
  at::Tensor in = input.contiguous();
  std::vector<std::int64_t> recv = recv_counts, send = send_counts;
  run("all_to_all", backend_for(in),
      [&](c10d::Backend& b) { return b.alltoall_base(output, in, recv, send); });
}

void ProcessGroup::broadcast(at::Tensor& tensor, int root) {
  if (!impl_->store) return;
  std::vector<at::Tensor> tensors{tensor};
  run("broadcast", backend_for(tensor), [&](c10d::Backend& b) {
    return b.broadcast(tensors, c10d::BroadcastOptions{.rootRank = root});
  });
}

void ProcessGroup::barrier() {
  if (!impl_->store) return;
  run("barrier", *impl_->gloo, [&](c10d::Backend& b) { return b.barrier(); });
}

void ProcessGroup::abort() {
  failed_ = true;
  shutdown();
}

void ProcessGroup::shutdown() {
  if (!impl_->store) return;
  std::exception_ptr error;
  if (!failed_) {
    try {
      barrier();
    } catch (const std::exception&) {
      error = std::current_exception();
    }
  }
  const c10::intrusive_ptr<c10d::Backend> nccl = std::move(impl_->nccl);
  impl_->gloo.reset();
  impl_->store.reset();
  if (nccl) failed_ ? nccl->abort() : nccl->shutdown();  // NCCL asks to be told which
  if (error) std::rethrow_exception(error);
}

}  // namespace ponder::dist
