#pragma once
// Processes that train together: where a process stands (rank, world size, rendezvous address,
// read from torchrun's or SLURM's environment) and the collectives it runs with the others
// (LibTorch c10d: Gloo on the CPU, NCCL on CUDA).
//
// Every collective is blocking and bounded by the group's timeout: a peer that died makes it fail
// at once (Gloo sees the closed connection), a peer that hangs makes it fail after the timeout,
// and either way a facetrain::Error names the collective, this rank and the cause, instead of
// waiting forever.
//
// Example:
//   auto env = facetrain::dist::read_environment();            // RANK, WORLD_SIZE, ... or SLURM_*
//   auto group = facetrain::dist::Group::connect(env, torch::kCPU, std::chrono::seconds(300));
//   torch::Tensor t = torch::ones({4});
//   group->all_reduce(t);                                       // t == world_size everywhere

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace facetrain::dist {

/// Where this process stands among the processes of one run.
struct Environment {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;        ///< rank on this node (picks the CUDA device)
  int64_t local_world_size = 1;  ///< processes on this node
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  /// With torchrun's agent store (TORCHELASTIC_USE_AGENT_STORE=True): connect as a client under
  /// the prefix "/worker/attempt_<TORCHELASTIC_RESTART_COUNT>", as torch.distributed does.
  bool agent_store = false;
  int64_t restart_count = 0;
  /// Where these values came from: "single process", "environment (RANK, WORLD_SIZE, ...)" or
  /// "SLURM (SLURM_PROCID, SLURM_NTASKS, ...)".
  std::string source = "single process";

  bool distributed() const { return world_size > 1; }
  /// "rank 1 of 4 (local 1 of 4), master 127.0.0.1:29500, from environment (...)"
  std::string describe() const;
};

/// Looks a variable up; std::nullopt when it is not set. The default reads the process's environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

/// Reads the rendezvous from the environment:
///  - WORLD_SIZE set (torchrun, `facetrain launch`, or by hand): RANK, WORLD_SIZE, LOCAL_RANK
///    (default RANK), LOCAL_WORLD_SIZE (default WORLD_SIZE), MASTER_ADDR and MASTER_PORT
///    (required when WORLD_SIZE > 1);
///  - else SLURM_PROCID and SLURM_NTASKS set (srun): rank SLURM_PROCID, world SLURM_NTASKS,
///    local SLURM_LOCALID, local world SLURM_NTASKS_PER_NODE (its first count); MASTER_ADDR, or
///    the first host of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST; MASTER_PORT, or 20000 plus
///    the last four digits of SLURM_JOB_ID (so two jobs on one node do not collide);
///  - else one process.
/// Throws ConfigError naming the variable for a value that is not a number or out of range.
Environment read_environment(const EnvLookup& lookup = {});

/// The first host of a SLURM node list: "gpu[03-05,9],cpu1" -> "gpu03".
std::string first_slurm_host(const std::string& nodelist);

/// Which collective reduction.
enum class ReduceOp { kSum, kMax };

/// A started collective; wait() blocks until it is done (throws like the blocking calls).
class Pending {
 public:
  virtual ~Pending() = default;
  virtual void wait() = 0;
};

/// The processes of one run and their collectives. Tensors must live on the group's device;
/// every rank must call the same collectives in the same order with tensors of the same shape.
class Group {
 public:
  virtual ~Group() = default;

  /// Joins the processes of `env` (TCPStore rendezvous at master_addr:master_port; rank 0 hosts
  /// it unless torchrun's agent does). Gloo for a CPU `device`, NCCL for CUDA. Every collective
  /// fails after `timeout`. A one-process environment gives a group whose collectives are no-ops.
  /// Throws Error when the rendezvous fails (naming the address) or the backend is not built in.
  static std::shared_ptr<Group> connect(const Environment& env, torch::Device device,
                                        std::chrono::milliseconds timeout);

  /// A group of `size` ranks inside this process (threads), over an in-memory store named
  /// `name`: the size calls with the same name, each from its own thread, form one group.
  /// For tests; Gloo on loopback.
  static std::shared_ptr<Group> in_process(const std::string& name, int64_t rank, int64_t size,
                                           std::chrono::milliseconds timeout = std::chrono::seconds(60));

  /// One process alone: every collective returns its input.
  static std::shared_ptr<Group> single(torch::Device device = torch::kCPU);

  virtual int64_t rank() const = 0;
  virtual int64_t size() const = 0;
  virtual torch::Device device() const = 0;
  /// "gloo", "nccl" or "single".
  virtual std::string backend() const = 0;

  /// In place, over all ranks.
  virtual void all_reduce(torch::Tensor& tensor, ReduceOp op = ReduceOp::kSum) = 0;
  /// Starts an in-place sum; the tensor must stay alive and untouched until wait().
  virtual std::unique_ptr<Pending> all_reduce_async(torch::Tensor tensor) = 0;
  /// Every rank's `tensor` (same shape everywhere) concatenated along dim 0, in rank order.
  virtual torch::Tensor all_gather(const torch::Tensor& tensor) = 0;
  /// In place: every rank gets root's values.
  virtual void broadcast(torch::Tensor& tensor, int64_t root = 0) = 0;
  virtual void barrier() = 0;
};

}  // namespace facetrain::dist
