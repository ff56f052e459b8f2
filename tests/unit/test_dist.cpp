// The dist layer: the rendezvous read from torchrun's and SLURM's variables, c10d collectives
// over Gloo on loopback (ranks are threads of this process), the class split, the autograd
// all-gather, the distributed cross-entropy, and every head split over 2 and 3 ranks against the
// same head in one process (values, gradients, buffers).

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "facetrain/backbones/layers.h"
#include "facetrain/core/error.h"
#include "facetrain/dist/data_parallel.h"
#include "facetrain/dist/group.h"
#include "facetrain/dist/model_parallel.h"
#include "facetrain/heads.h"
#include "head_testing.h"

namespace facetrain::testing {
namespace {

using dist::Group;
using torch::Tensor;

// --- running ranks as threads ------------------------------------------------------------------

/// Runs fn(group) on `world` threads, each with its rank's in-process Gloo group; rethrows the
/// first exception (after every thread ended).
void run_ranks(int64_t world, const std::function<void(Group&)>& fn,
               std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  static std::atomic<int> counter{0};
  const std::string name = "test" + std::to_string(counter++);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        auto group = Group::in_process(name, r, world, timeout);
        fn(*group);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

dist::EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string config_error_of(const std::map<std::string, std::string>& vars) {
  try {
    dist::read_environment(env_of(vars));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

// --- the environment ----------------------------------------------------------------------------

TEST(DistEnvironment, NoVariablesIsOneProcess) {
  auto env = dist::read_environment(env_of({}));
  EXPECT_EQ(env.world_size, 1);
  EXPECT_EQ(env.rank, 0);
  EXPECT_FALSE(env.distributed());
  EXPECT_EQ(env.source, "single process");
}

TEST(DistEnvironment, TorchrunVariables) {
  auto env = dist::read_environment(env_of({{"RANK", "5"},
                                            {"WORLD_SIZE", "8"},
                                            {"LOCAL_RANK", "1"},
                                            {"LOCAL_WORLD_SIZE", "4"},
                                            {"MASTER_ADDR", "node7"},
                                            {"MASTER_PORT", "29512"},
                                            {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                            {"TORCHELASTIC_RESTART_COUNT", "2"}}));
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 4);
  EXPECT_EQ(env.master_addr, "node7");
  EXPECT_EQ(env.master_port, 29512);
  EXPECT_TRUE(env.agent_store);
  EXPECT_EQ(env.restart_count, 2);
  EXPECT_TRUE(env.distributed());
  EXPECT_EQ(env.describe(), "rank 5 of 8 (local 1 of 4), master node7:29512, from environment (RANK, WORLD_SIZE, ...)");
}

TEST(DistEnvironment, SlurmVariables) {
  auto env = dist::read_environment(env_of({{"SLURM_PROCID", "6"},
                                            {"SLURM_NTASKS", "8"},
                                            {"SLURM_LOCALID", "2"},
                                            {"SLURM_NTASKS_PER_NODE", "4(x2)"},
                                            {"SLURM_JOB_NODELIST", "gpu[07-08]"},
                                            {"SLURM_JOB_ID", "1234567"}}));
  EXPECT_EQ(env.rank, 6);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 2);
  EXPECT_EQ(env.local_world_size, 4);
  EXPECT_EQ(env.master_addr, "gpu07");
  EXPECT_EQ(env.master_port, 20000 + 4567);
  // torchrun's variables win over SLURM's (torchrun inside an allocation).
  auto both = dist::read_environment(
      env_of({{"SLURM_PROCID", "6"}, {"SLURM_NTASKS", "8"}, {"WORLD_SIZE", "1"}, {"RANK", "0"}}));
  EXPECT_EQ(both.world_size, 1);
}

TEST(DistEnvironment, FirstSlurmHost) {
  EXPECT_EQ(dist::first_slurm_host("gpu[03-05,9],cpu1"), "gpu03");
  EXPECT_EQ(dist::first_slurm_host("a,b"), "a");
  EXPECT_EQ(dist::first_slurm_host("node[12,4]x"), "node12x");
  EXPECT_EQ(dist::first_slurm_host("solo"), "solo");
  EXPECT_THROW(dist::first_slurm_host("gpu[03"), ArgumentError);
}

TEST(DistEnvironment, BadValuesNameTheVariable) {
  EXPECT_NE(config_error_of({{"WORLD_SIZE", "two"}}).find("WORLD_SIZE: 'two' is not an integer"), std::string::npos);
  EXPECT_NE(config_error_of({{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}})
                .find("RANK: '2' is not an integer in [0, 1]"),
            std::string::npos);
  EXPECT_NE(config_error_of({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_PORT", "1"}}).find("MASTER_ADDR: not set"),
            std::string::npos);
  EXPECT_NE(config_error_of({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "h"}}).find("MASTER_PORT: not set"),
            std::string::npos);
  EXPECT_NE(config_error_of({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}).find("RANK: not set"),
            std::string::npos);
  EXPECT_NE(config_error_of({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}})
                .find("MASTER_PORT: '70000'"),
            std::string::npos);
  EXPECT_NE(config_error_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}).find("MASTER_ADDR: not set"),
            std::string::npos);
}

// --- collectives --------------------------------------------------------------------------------

TEST(DistGroup, CollectivesOverGlooOnLoopback) {
  for (int64_t world : {2, 3}) {
    run_ranks(world, [world](Group& g) {
      EXPECT_EQ(g.size(), world);
      EXPECT_EQ(g.backend(), "gloo");
      const double r = double(g.rank());
      Tensor sum = torch::tensor({r, 1.0}, torch::kDouble);
      g.all_reduce(sum);
      EXPECT_EQ(sum[0].item<double>(), double(world * (world - 1) / 2));
      EXPECT_EQ(sum[1].item<double>(), double(world));
      Tensor max = torch::tensor({r, -r}, torch::kFloat);
      g.all_reduce(max, dist::ReduceOp::kMax);
      EXPECT_EQ(max[0].item<float>(), float(world - 1));
      EXPECT_EQ(max[1].item<float>(), 0.0f);
      Tensor gathered = g.all_gather(torch::full({2, 3}, r));
      ASSERT_EQ(gathered.sizes(), (std::vector<int64_t>{2 * world, 3}));
      for (int64_t k = 0; k < world; ++k) EXPECT_EQ(gathered[2 * k + 1][2].item<float>(), float(k));
      Tensor b = torch::full({4}, r + 10);
      g.broadcast(b, world - 1);
      EXPECT_TRUE(torch::equal(b, torch::full({4}, double(world - 1 + 10))));
      Tensor a = torch::full({3}, 2.0);
      auto pending = g.all_reduce_async(a);
      pending->wait();
      EXPECT_TRUE(torch::equal(a, torch::full({3}, 2.0 * double(world))));
      g.barrier();
    });
  }
}

TEST(DistGroup, SingleProcessGroupIsTheIdentity) {
  auto g = Group::single();
  Tensor t = torch::tensor({1.5, 2.5});
  g->all_reduce(t);
  EXPECT_TRUE(torch::equal(t, torch::tensor({1.5, 2.5})));
  EXPECT_TRUE(torch::equal(g->all_gather(t), t));
  EXPECT_EQ(g->backend(), "single");
}

TEST(DistGroup, AHangingRankFailsTheOthersWithinTheTimeout) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string message;
  try {
    run_ranks(
        2,
        [](Group& g) {
          if (g.rank() == 1) return;  // never joins the collective
          Tensor t = torch::ones({2});
          g.all_reduce(t);
        },
        std::chrono::seconds(3));
  } catch (const Error& e) {
    message = e.what();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(message.find("rank 0 of 2: all_reduce failed (gloo, timeout 3 s): another process died, hung or left"),
            std::string::npos)
      << message;
  EXPECT_LT(seconds, 30.0);
}

TEST(DistGroup, TensorsOnTheWrongDeviceOrNotContiguousAreRefused) {
  run_ranks(2, [](Group& g) {
    Tensor t = torch::ones({3, 2}).t();
    EXPECT_THROW(g.all_reduce(t), ArgumentError);
  });
}

// --- the class split ----------------------------------------------------------------------------

TEST(DistModelParallel, ClassShardsAreInsightfacesSplit) {
  std::vector<std::pair<int64_t, int64_t>> got;
  for (int64_t r = 0; r < 3; ++r) {
    auto s = dist::class_shard(10, r, 3);
    got.emplace_back(s.begin, s.end);
  }
  EXPECT_EQ(got, (std::vector<std::pair<int64_t, int64_t>>{{0, 4}, {4, 7}, {7, 10}}));
  EXPECT_EQ(dist::class_shard(8, 1, 4).begin, 2);
  EXPECT_EQ(dist::class_shard(8, 1, 4).end, 4);
  EXPECT_THROW(dist::class_shard(2, 0, 3), ArgumentError);
}

TEST(DistModelParallel, ShardInitialisationDoesNotDependOnTheSplit) {
  const int64_t D = 4, C = 2 * heads::kClassInitBlock + 300;
  for (const char* type : {"arcface", "softmax"}) {
    torch::manual_seed(7);
    auto whole = heads::make_head(YAML::Load(std::string("{type: ") + type + "}"), D, C);
    std::vector<Tensor> parts;
    for (int64_t r = 0; r < 3; ++r) {
      torch::manual_seed(7);
      auto s = dist::class_shard(C, r, 3);
      parts.push_back(
          heads::make_head(YAML::Load(std::string("{type: ") + type + "}"), heads::HeadGeometry(D, C, s.begin, s.end))
              ->weight.detach());
    }
    EXPECT_TRUE(torch::equal(torch::cat(parts, 0), whole->weight.detach())) << type;
    // and the draw is still the documented distribution
    const double std = whole->weight.std().item<double>();
    if (std::string(type) == "arcface") {
      EXPECT_NEAR(std, 0.01, 0.001);
    } else {
      EXPECT_NEAR(std, std::sqrt(6.0 / double(D + C)) / std::sqrt(3.0), 0.002);
    }
  }
}

// --- gathered rows and the distributed cross-entropy ---------------------------------------------

TEST(DistModelParallel, AllGatherRowsSendsEachRankItsRowsGradient) {
  run_ranks(3, [](Group& g) {
    Tensor local = torch::full({2, 2}, double(g.rank()), torch::kDouble).requires_grad_(true);
    Tensor all = dist::all_gather_rows(local, g);
    ASSERT_EQ(all.size(0), 6);
    // Rank r weighs every row by (r + 1): the summed gradient of row i is 1 + 2 + 3 = 6 times its weight.
    Tensor w = torch::arange(6, torch::kDouble).unsqueeze(1).expand({6, 2});
    (all * w * double(g.rank() + 1)).sum().backward();
    Tensor expect = w.narrow(0, 2 * g.rank(), 2) * 6.0;
    EXPECT_TRUE(torch::equal(local.grad(), expect)) << local.grad();
  });
}

TEST(DistModelParallel, CrossEntropyEqualsTheSingleProcessOneInValueAndGradient) {
  const int64_t B = 12, C = 10;
  torch::manual_seed(3);
  Tensor logits = torch::randn({B, C}, torch::kDouble) * 5;
  Tensor labels = torch::randint(C, {B}, torch::kLong);
  labels[0] = 0;
  labels[1] = C - 1;
  Tensor whole = logits.clone().requires_grad_(true);
  Tensor expect = torch::nn::functional::cross_entropy(whole, labels);
  (expect * 3.0).backward();
  for (int64_t world : {1, 2, 3}) {
    run_ranks(world, [&](Group& g) {
      auto s = dist::class_shard(C, g.rank(), g.size());
      Tensor mine = logits.slice(1, s.begin, s.end).clone().requires_grad_(true);
      Tensor loss = dist::cross_entropy(mine, labels, s.begin, g);
      EXPECT_NEAR(loss.item<double>(), expect.item<double>(), 1e-13) << "world " << world;
      (loss * 3.0).backward();
      EXPECT_TRUE(close(mine.grad(), whole.grad().slice(1, s.begin, s.end), 1e-13, "gradient"));
    });
  }
  // float32 as the trainer runs it
  run_ranks(2, [&](Group& g) {
    auto s = dist::class_shard(C, g.rank(), g.size());
    Tensor loss = dist::cross_entropy(logits.slice(1, s.begin, s.end).to(torch::kFloat), labels, s.begin, g);
    EXPECT_NEAR(loss.item<double>(), expect.item<double>(), 1e-5);
  });
}

// --- synchronised BatchNorm ----------------------------------------------------------------------

// BatchNorm2d on a batch split over W ranks (W = 1: the sync arithmetic alone) against the plain
// BatchNorm2d on the whole batch: outputs, input gradients, weight and bias gradients (summed over
// ranks, as the gradient sync does) and running statistics, in float64.
TEST(DistSyncBatchNorm, EqualsBatchNormOnTheWholeBatch) {
  const int64_t N = 12, C = 3;
  torch::manual_seed(4);
  Tensor x = torch::randn({N, C, 5, 4}, torch::kDouble) * 3 + 1;
  Tensor up = torch::randn({N, C, 5, 4}, torch::kDouble);
  auto make_bn = [&] {
    auto bn = torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(C).momentum(0.1));
    bn->to(torch::kDouble);
    torch::NoGradGuard no_grad;
    bn->weight.copy_(torch::tensor({0.5, 1.5, 2.0}, torch::kDouble));
    bn->bias.copy_(torch::tensor({0.1, -0.2, 0.3}, torch::kDouble));
    return bn;
  };
  auto whole = make_bn();
  Tensor xw = x.clone().requires_grad_(true);
  Tensor yw = backbones::run_layer(*whole, xw);
  (yw * up).sum().backward();
  for (int64_t world : {1, 2, 3}) {
    const int64_t b = N / world;
    std::vector<Tensor> gw(static_cast<size_t>(world)), gb(static_cast<size_t>(world));
    run_ranks(world, [&](Group& g) {
      auto bn = make_bn();
      dist::GroupBatchNormSync sync(std::shared_ptr<Group>(&g, [](Group*) {}));
      Tensor xr = x.narrow(0, g.rank() * b, b).clone().requires_grad_(true);
      Tensor yr;
      {
        backbones::SyncBatchNormScope scope(&sync);
        yr = backbones::run_layer(*bn, xr);
      }
      (yr * up.narrow(0, g.rank() * b, b)).sum().backward();
      const std::string where = std::to_string(world) + " ranks, rank " + std::to_string(g.rank());
      EXPECT_TRUE(close(yr, yw.narrow(0, g.rank() * b, b), 1e-12, where + " output"));
      EXPECT_TRUE(close(xr.grad(), xw.grad().narrow(0, g.rank() * b, b), 1e-12, where + " d/dx"));
      EXPECT_TRUE(close(bn->running_mean, whole->running_mean, 1e-12, where + " running_mean"));
      EXPECT_TRUE(close(bn->running_var, whole->running_var, 1e-12, where + " running_var"));
      EXPECT_EQ(bn->num_batches_tracked.item<int64_t>(), 1);
      gw[static_cast<size_t>(g.rank())] = bn->weight.grad().clone();
      gb[static_cast<size_t>(g.rank())] = bn->bias.grad().clone();
    });
    EXPECT_TRUE(close(torch::stack(gw).sum(0), whole->weight.grad(), 1e-12, "d/dweight"));
    EXPECT_TRUE(close(torch::stack(gb).sum(0), whole->bias.grad(), 1e-12, "d/dbias"));
  }
}

// --- every head, split over ranks ---------------------------------------------------------------

class DistHeads : public ::testing::TestWithParam<std::string> {};

// One process: the whole head on the whole batch, torch's cross-entropy. W ranks: each rank
// embeds its part of the batch (here: takes its rows of x), gathers rows and labels, runs its
// class shard and the distributed cross-entropy. Over three calls (the heads' buffers move), the
// losses, each rank's input gradient, each shard's weight gradient and every buffer agree.
TEST_P(DistHeads, ShardedOverRanksEqualsOneProcess) {
  const std::string yaml = GetParam();
  const int64_t B = 12, D = 8, C = 10;
  auto in = make_inputs(B, D, C, 5, torch::kDouble);
  torch::manual_seed(1);
  auto whole = heads::make_head(YAML::Load(yaml), D, C);
  whole->to(torch::kDouble);
  struct Call {
    double loss;
    Tensor grad_x;
    std::map<std::string, Tensor> grads, buffers;  // parameters' gradients (rows = classes)
  };
  std::vector<Call> expect;
  for (int call = 0; call < 3; ++call) {
    Tensor x = in.x.clone().requires_grad_(true);
    whole->zero_grad();
    Tensor loss = torch::nn::functional::cross_entropy(whole->forward(x, in.y), in.y);
    loss.backward();
    std::map<std::string, Tensor> grads;
    for (const auto& p : whole->named_parameters()) {
      if (p.value().grad().defined()) grads[p.key()] = p.value().grad().clone();
    }
    expect.push_back({loss.item<double>(), x.grad(), grads, buffers_of(*whole)});
  }
  for (int64_t world : {2, 3}) {
    const int64_t b = B / world;
    run_ranks(world, [&](Group& g) {
      auto shard = dist::class_shard(C, g.rank(), g.size());
      std::shared_ptr<heads::MarginHeadImpl> head;
      {  // the global generator is shared by the rank threads: seed and draw under a lock
        static std::mutex mutex;
        std::lock_guard<std::mutex> lock(mutex);
        torch::manual_seed(1);
        head = heads::make_head(YAML::Load(yaml), heads::HeadGeometry(D, C, shard.begin, shard.end));
      }
      head->to(torch::kDouble);
      auto group = std::shared_ptr<Group>(&g, [](Group*) {});
      head->set_reducer(std::make_shared<dist::ShardReducer>(group));
      const std::string where = yaml + " on " + std::to_string(world) + " ranks, rank " + std::to_string(g.rank());
      for (int call = 0; call < 3; ++call) {
        Tensor x = in.x.narrow(0, g.rank() * b, b).clone().requires_grad_(true);
        Tensor y = in.y.narrow(0, g.rank() * b, b).clone();
        head->zero_grad();
        Tensor xs = dist::all_gather_rows(x, g);
        Tensor ys = g.all_gather(y);
        Tensor loss = dist::cross_entropy(head->forward(xs, ys), ys, shard.begin, g);
        loss.backward();
        const Call& e = expect[static_cast<size_t>(call)];
        EXPECT_NEAR(loss.item<double>(), e.loss, 1e-12) << where;
        EXPECT_TRUE(close(x.grad(), e.grad_x.narrow(0, g.rank() * b, b), 1e-11, where + " d/dx"));
        for (const auto& [name, grad] : e.grads)
          EXPECT_TRUE(close(head->named_parameters()[name].grad(), grad.slice(0, shard.begin, shard.end), 1e-11,
                            where + " d/d" + name));
        for (const auto& [name, value] : e.buffers)
          EXPECT_TRUE(close(head->named_buffers()[name], value, 1e-12, where + " buffer " + name));
      }
    });
  }
}

INSTANTIATE_TEST_SUITE_P(AllHeads, DistHeads, ::testing::ValuesIn(every_head_variant()),
                         [](const auto& info) { return "case" + std::to_string(info.index); });

}  // namespace
}  // namespace facetrain::testing
