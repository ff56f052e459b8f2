#include "facetrain/dist/group.h"

// c10d's Gloo header is behind USE_C10D_GLOO, which LibTorch's CMake config does not define (every
// LibTorch build facetrain supports has Gloo). NCCL's is behind USE_C10D_NCCL: CUDA builds only.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>

#include "facetrain/core/error.h"

namespace facetrain::dist {

namespace {

// --- the environment ----------------------------------------------------------------------------

int64_t parse_int(const std::string& name, const std::string& value, int64_t lo, int64_t hi) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value.size() || v < lo || v > hi)
    throw ConfigError(
        {ConfigIssue{"environment", 0, 0, name,
                     "'" + value + "' is not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]"}});
  return v;
}

[[noreturn]] void env_error(const std::string& name, const std::string& message) {
  throw ConfigError({ConfigIssue{"environment", 0, 0, name, message}});
}

}  // namespace

std::string Environment::describe() const {
  std::ostringstream out;
  out << "rank " << rank << " of " << world_size << " (local " << local_rank << " of " << local_world_size << ")";
  if (distributed()) out << ", master " << master_addr << ":" << master_port;
  out << ", from " << source;
  return out.str();
}

std::string first_slurm_host(const std::string& nodelist) {
  // "prefix[03-05,9]suffix,other" -> "prefix03suffix"; a plain "a,b" -> "a".
  std::string host;
  for (size_t i = 0; i < nodelist.size(); ++i) {
    const char c = nodelist[i];
    if (c == ',') break;
    if (c == '[') {
      const size_t close = nodelist.find(']', i);
      if (close == std::string::npos) throw ArgumentError("malformed SLURM node list '" + nodelist + "'");
      const std::string range = nodelist.substr(i + 1, close - i - 1);
      host += range.substr(0, range.find_first_of(",-"));
      i = close;
      continue;
    }
    host += c;
  }
  if (host.empty()) throw ArgumentError("empty SLURM node list '" + nodelist + "'");
  return host;
}

Environment read_environment(const EnvLookup& lookup_fn) {
  EnvLookup lookup = lookup_fn ? lookup_fn : [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
  constexpr int64_t kMaxRanks = 1 << 20;
  Environment env;
  auto integer = [&](const std::string& name, int64_t fallback, int64_t lo, int64_t hi) {
    auto v = lookup(name);
    return v && !v->empty() ? parse_int(name, *v, lo, hi) : fallback;
  };

  if (auto world = lookup("WORLD_SIZE"); world && !world->empty()) {
    env.source = "environment (RANK, WORLD_SIZE, ...)";
    env.world_size = parse_int("WORLD_SIZE", *world, 1, kMaxRanks);
    if (!lookup("RANK") && env.world_size > 1) env_error("RANK", "not set, but WORLD_SIZE is " + *world);
    env.rank = integer("RANK", 0, 0, env.world_size - 1);
    env.local_rank = integer("LOCAL_RANK", env.rank, 0, env.world_size - 1);
    env.local_world_size = integer("LOCAL_WORLD_SIZE", env.world_size, 1, env.world_size);
    if (env.distributed()) {
      auto addr = lookup("MASTER_ADDR");
      if (!addr || addr->empty()) env_error("MASTER_ADDR", "not set, but WORLD_SIZE is " + *world);
      env.master_addr = *addr;
      if (!lookup("MASTER_PORT")) env_error("MASTER_PORT", "not set, but WORLD_SIZE is " + *world);
    }
    env.master_port = integer("MASTER_PORT", 29500, 1, 65535);
    auto agent = lookup("TORCHELASTIC_USE_AGENT_STORE");
    env.agent_store = agent && (*agent == "True" || *agent == "true" || *agent == "1");
    env.restart_count = integer("TORCHELASTIC_RESTART_COUNT", 0, 0, kMaxRanks);
    return env;
  }

  auto procid = lookup("SLURM_PROCID");
  auto ntasks = lookup("SLURM_NTASKS");
  if (procid && ntasks) {
    env.source = "SLURM (SLURM_PROCID, SLURM_NTASKS, ...)";
    env.world_size = parse_int("SLURM_NTASKS", *ntasks, 1, kMaxRanks);
    env.rank = parse_int("SLURM_PROCID", *procid, 0, env.world_size - 1);
    env.local_rank = integer("SLURM_LOCALID", 0, 0, env.world_size - 1);
    env.local_world_size = 1;
    if (auto per_node = lookup("SLURM_NTASKS_PER_NODE"); per_node && !per_node->empty()) {
      // "4" or "4(x2),2": the first count.
      const std::string first = per_node->substr(0, per_node->find_first_of("(,"));
      env.local_world_size = parse_int("SLURM_NTASKS_PER_NODE", first, 1, env.world_size);
    }
    if (auto addr = lookup("MASTER_ADDR"); addr && !addr->empty()) {
      env.master_addr = *addr;
    } else {
      auto nodes = lookup("SLURM_STEP_NODELIST");
      if (!nodes || nodes->empty()) nodes = lookup("SLURM_JOB_NODELIST");
      if (env.distributed() && (!nodes || nodes->empty()))
        env_error("MASTER_ADDR", "not set, and neither is SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST");
      if (nodes && !nodes->empty()) {
        try {
          env.master_addr = first_slurm_host(*nodes);
        } catch (const ArgumentError& e) {
          env_error("SLURM_JOB_NODELIST", e.what());
        }
      }
    }
    if (auto port = lookup("MASTER_PORT"); port && !port->empty()) {
      env.master_port = parse_int("MASTER_PORT", *port, 1, 65535);
    } else if (auto job = lookup("SLURM_JOB_ID"); job && !job->empty()) {
      env.master_port = 20000 + parse_int("SLURM_JOB_ID", *job, 0, INT64_MAX / 2) % 10000;
    }
    return env;
  }
  return env;
}

// --- groups -------------------------------------------------------------------------------------

namespace {

c10d::ReduceOp to_c10d(ReduceOp op) {
  return op == ReduceOp::kMax ? c10d::ReduceOp(c10d::ReduceOp::MAX) : c10d::ReduceOp(c10d::ReduceOp::SUM);
}

class SingleGroup : public Group {
 public:
  explicit SingleGroup(torch::Device device) : device_(device) {}
  int64_t rank() const override { return 0; }
  int64_t size() const override { return 1; }
  torch::Device device() const override { return device_; }
  std::string backend() const override { return "single"; }
  void all_reduce(torch::Tensor&, ReduceOp) override {}
  std::unique_ptr<Pending> all_reduce_async(torch::Tensor) override {
    struct Done : Pending {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  torch::Tensor all_gather(const torch::Tensor& tensor) override { return tensor; }
  void broadcast(torch::Tensor&, int64_t) override {}
  void barrier() override {}

 private:
  torch::Device device_;
};

// A c10d process group (LibTorch 1.13's ProcessGroup, 2.x's Backend: the same calls).
template <class Backend>
class C10dGroup : public Group {
 public:
  C10dGroup(c10::intrusive_ptr<Backend> pg, int64_t rank, int64_t size, torch::Device device, std::string backend,
            std::chrono::milliseconds timeout)
      : pg_(std::move(pg)),
        rank_(rank),
        size_(size),
        device_(device),
        backend_(std::move(backend)),
        timeout_(timeout) {}

  int64_t rank() const override { return rank_; }
  int64_t size() const override { return size_; }
  torch::Device device() const override { return device_; }
  std::string backend() const override { return backend_; }

  void all_reduce(torch::Tensor& tensor, ReduceOp op) override {
    check(tensor, "all_reduce");
    std::vector<torch::Tensor> ts{tensor};
    c10d::AllreduceOptions o;
    o.reduceOp = to_c10d(op);
    finish("all_reduce", [&] { return pg_->allreduce(ts, o); });
  }

  std::unique_ptr<Pending> all_reduce_async(torch::Tensor tensor) override {
    check(tensor, "all_reduce");
    std::vector<torch::Tensor> ts{tensor};
    c10::intrusive_ptr<c10d::Work> work;
    guard("all_reduce", [&] { work = pg_->allreduce(ts); });
    struct Started : Pending {
      C10dGroup* group;
      c10::intrusive_ptr<c10d::Work> work;
      Started(C10dGroup* g, c10::intrusive_ptr<c10d::Work> w) : group(g), work(std::move(w)) {}
      void wait() override {
        group->guard("all_reduce", [&] { work->wait(); });
      }
    };
    return std::make_unique<Started>(this, std::move(work));
  }

  torch::Tensor all_gather(const torch::Tensor& tensor) override {
    check(tensor, "all_gather");
    std::vector<torch::Tensor> in{tensor.contiguous()};
    std::vector<std::vector<torch::Tensor>> out(1);
    for (int64_t r = 0; r < size_; ++r) out[0].push_back(torch::empty_like(in[0]));
    finish("all_gather", [&] { return pg_->allgather(out, in); });
    return torch::cat(out[0], 0);
  }

  void broadcast(torch::Tensor& tensor, int64_t root) override {
    check(tensor, "broadcast");
    std::vector<torch::Tensor> ts{tensor};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    finish("broadcast", [&] { return pg_->broadcast(ts, o); });
  }

  void barrier() override {
    finish("barrier", [&] { return pg_->barrier(); });
  }

 private:
  void check(const torch::Tensor& t, const char* what) const {
    if (t.device() != device_)
      throw ArgumentError(std::string(what) + ": a tensor on " + t.device().str() + ", but the " + backend_ +
                          " group is on " + device_.str());
    if (!t.is_contiguous()) throw ArgumentError(std::string(what) + ": the tensor must be contiguous");
  }

  template <class Fn>
  void guard(const char* what, Fn&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      std::string cause = e.what();
      if (auto nl = cause.find("\nException raised from"); nl != std::string::npos) cause.resize(nl);
      throw Error("rank " + std::to_string(rank_) + " of " + std::to_string(size_) + ": " + what + " failed (" +
                  backend_ + ", timeout " + std::to_string(timeout_.count() / 1000) +
                  " s): another process died, hung or left: " + cause);
    }
  }

  template <class Start>
  void finish(const char* what, Start&& start) {
    guard(what, [&] { start()->wait(); });
  }

  c10::intrusive_ptr<Backend> pg_;
  int64_t rank_, size_;
  torch::Device device_;
  std::string backend_;
  std::chrono::milliseconds timeout_;
};

bool is_loopback(const std::string& addr) { return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1"; }

std::shared_ptr<Group> make_group(const c10::intrusive_ptr<c10d::Store>& base, int64_t rank, int64_t size,
                                  torch::Device device, std::chrono::milliseconds timeout, bool loopback) {
  auto store = c10::make_intrusive<c10d::PrefixStore>("facetrain", base);
  if (device.is_cuda()) {
#ifdef USE_C10D_NCCL
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, int(rank), int(size), options);
    return std::make_shared<C10dGroup<c10d::ProcessGroupNCCL>>(pg, rank, size, device, "nccl", timeout);
#else
    throw Error("a CUDA process group needs NCCL, and this build of facetrain has none (build with CUDA)");
#endif
  }
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
    std::string first(ifname);
    first = first.substr(0, first.find(','));
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(first));
  } else if (loopback) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, int(rank), int(size), options);
  return std::make_shared<C10dGroup<c10d::ProcessGroupGloo>>(pg, rank, size, device, "gloo", timeout);
}

}  // namespace

std::shared_ptr<Group> Group::single(torch::Device device) { return std::make_shared<SingleGroup>(device); }

std::shared_ptr<Group> Group::connect(const Environment& env, torch::Device device, std::chrono::milliseconds timeout) {
  if (!env.distributed()) return single(device);
  c10::intrusive_ptr<c10d::Store> store;
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(env.master_port);
    o.isServer = env.rank == 0 && !env.agent_store;
    o.numWorkers = env.agent_store ? c10::nullopt : c10::optional<std::size_t>(env.world_size);
    o.waitWorkers = !env.agent_store;
    o.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
    store = tcp;
    if (env.agent_store)
      store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + std::to_string(env.restart_count), tcp);
  } catch (const std::exception& e) {
    std::string cause = e.what();
    if (auto nl = cause.find("\nException raised from"); nl != std::string::npos) cause.resize(nl);
    throw Error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) + ": the rendezvous at " +
                where + " failed within " + std::to_string(timeout.count() / 1000) + " s (" + cause +
                "); check MASTER_ADDR/MASTER_PORT and that every rank was started");
  }
  try {
    return make_group(store, env.rank, env.world_size, device, timeout, is_loopback(env.master_addr));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string cause = e.what();
    if (auto nl = cause.find("\nException raised from"); nl != std::string::npos) cause.resize(nl);
    throw Error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
                ": connecting the process group through " + where + " failed: " + cause);
  }
}

std::shared_ptr<Group> Group::in_process(const std::string& name, int64_t rank, int64_t size,
                                         std::chrono::milliseconds timeout) {
  if (size < 1 || rank < 0 || rank >= size)
    throw ArgumentError("Group::in_process: rank " + std::to_string(rank) + " of " + std::to_string(size));
  if (size == 1) return single();
  static std::mutex mutex;
  static std::map<std::string, c10::intrusive_ptr<c10d::Store>> stores;
  c10::intrusive_ptr<c10d::Store> store;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto& s = stores[name];
    if (!s) s = c10::make_intrusive<c10d::HashStore>();
    store = s;
  }
  store->setTimeout(timeout);
  return make_group(store, rank, size, torch::kCPU, timeout, /*loopback=*/true);
}

}  // namespace facetrain::dist
