// The dist layer: the rendezvous read from torchrun's and SLURM's variables, c10d collectives
// over Gloo on loopback (ranks are threads of this process), the class split, the autograd
// all-gather, the distributed cross-entropy, and every head split over 2 and 3 ranks against the
// same head in one process (values, gradients, buffers); Partial FC (the draw, every head on its
// sampled classes, sharded and sampled against one process); compressed gradient sums.

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "facetrain/backbones/layers.h"
#include "facetrain/core/error.h"
#include "facetrain/dist/data_parallel.h"
#include "facetrain/dist/group.h"
#include "facetrain/dist/model_parallel.h"
#include "facetrain/dist/partial_fc.h"
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

/// Rank g's shard of head `yaml` (D, C), in float64, seeded 1 as the whole head is, with the
/// ShardReducer over g.
std::shared_ptr<heads::MarginHeadImpl> shard_head(const std::string& yaml, int64_t D, int64_t C, Group& g) {
  auto shard = dist::class_shard(C, g.rank(), g.size());
  std::shared_ptr<heads::MarginHeadImpl> head;
  {  // the global generator is shared by the rank threads: seed and draw under a lock
    static std::mutex mutex;
    std::lock_guard<std::mutex> lock(mutex);
    torch::manual_seed(1);
    head = heads::make_head(YAML::Load(yaml), heads::HeadGeometry(D, C, shard.begin, shard.end));
  }
  head->to(torch::kDouble);
  head->set_reducer(std::make_shared<dist::ShardReducer>(std::shared_ptr<Group>(&g, [](Group*) {})));
  return head;
}

class DistHeads : public ::testing::TestWithParam<std::string> {};

// One process: the whole head on the whole batch, torch's cross-entropy. W ranks: each rank
// embeds its part of the batch (here: takes its rows of x), gathers rows and labels, runs its
// class shard and the distributed cross-entropy (or the chunked one). Over three calls (the
// heads' buffers move), the losses, each rank's input gradient, each shard's weight gradient
// and every buffer agree.
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
    // chunk 0: the head's logits and dist::cross_entropy; 2: the chunked cross-entropy, blocks of 2
    // classes, across ranks through the ShardReducer.
    for (int64_t chunk : {0, 2}) run_ranks(world, [&](Group& g) {
      auto shard = dist::class_shard(C, g.rank(), g.size());
      auto head = shard_head(yaml, D, C, g);
      const std::string where = yaml + " on " + std::to_string(world) + " ranks, rank " + std::to_string(g.rank()) +
                                ", chunk " + std::to_string(chunk);
      for (int call = 0; call < 3; ++call) {
        Tensor x = in.x.narrow(0, g.rank() * b, b).clone().requires_grad_(true);
        Tensor y = in.y.narrow(0, g.rank() * b, b).clone();
        head->zero_grad();
        Tensor xs = dist::all_gather_rows(x, g);
        Tensor ys = g.all_gather(y);
        Tensor loss = chunk > 0 ? head->chunked_cross_entropy(xs, ys, chunk)
                                : dist::cross_entropy(head->forward(xs, ys), ys, shard.begin, g);
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

// --- Partial FC ---------------------------------------------------------------------------------

std::vector<int64_t> as_vector(const Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

TEST(PartialFc, KeepsEveryPositiveAndSamplesTheRequestedCount) {
  const int64_t C = 1000;
  const auto shard = dist::class_shard(C, 1, 2);  // [500, 1000)
  torch::manual_seed(5);
  Tensor labels = torch::randint(C, {64}, torch::kLong);
  labels[0] = 500;  // both ends of the shard, and one class twice
  labels[1] = 999;
  labels[2] = 999;
  std::set<int64_t> positives;
  for (int64_t y : as_vector(labels)) {
    if (y >= shard.begin && y < shard.end) positives.insert(y - shard.begin);
  }
  ASSERT_GT(positives.size(), 5u);
  for (double rate : {0.1, 0.3, 0.01}) {
    auto s = dist::sample_classes(labels, shard, rate, 42);
    const auto classes = as_vector(s.classes);
    const int64_t want = std::max<int64_t>(int64_t(rate * 500), int64_t(positives.size()));
    EXPECT_EQ(dist::sampled_classes(500, rate), std::max<int64_t>(1, int64_t(rate * 500)));
    EXPECT_EQ(int64_t(classes.size()), want) << rate;
    EXPECT_EQ(s.positives, int64_t(positives.size()));
    EXPECT_TRUE(std::is_sorted(classes.begin(), classes.end()));
    EXPECT_EQ(std::set<int64_t>(classes.begin(), classes.end()).size(), classes.size()) << "distinct";
    EXPECT_TRUE(std::all_of(classes.begin(), classes.end(), [](int64_t c) { return c >= 0 && c < 500; }));
    for (int64_t p : positives) EXPECT_TRUE(std::binary_search(classes.begin(), classes.end(), p)) << p;
    if (want == int64_t(positives.size()))  // more positives than the rate allows: only them
      EXPECT_EQ(classes, std::vector<int64_t>(positives.begin(), positives.end()));
    // Each row's target is the column of its class, or -1 when the class is on the other rank.
    const auto targets = as_vector(s.targets), ys = as_vector(labels);
    for (size_t i = 0; i < ys.size(); ++i) {
      if (ys[i] < shard.begin) {
        EXPECT_EQ(targets[i], -1) << i;
      } else {
        ASSERT_GE(targets[i], 0) << i;
        EXPECT_EQ(classes[size_t(targets[i])], ys[i] - shard.begin) << i;
      }
    }
  }
  // The draw is its seed's: the same again, another for another seed; rate 1 is every class.
  EXPECT_TRUE(torch::equal(dist::sample_classes(labels, shard, 0.1, 42).classes,
                           dist::sample_classes(labels, shard, 0.1, 42).classes));
  EXPECT_FALSE(torch::equal(dist::sample_classes(labels, shard, 0.1, 42).classes,
                            dist::sample_classes(labels, shard, 0.1, 43).classes));
  EXPECT_TRUE(torch::equal(dist::sample_classes(labels, shard, 1.0, 42).classes, torch::arange(500)));
  EXPECT_NE(dist::sample_seed(1, 2, 0, shard), dist::sample_seed(1, 3, 0, shard));
  EXPECT_NE(dist::sample_seed(1, 2, 0, shard), dist::sample_seed(1, 2, 1, shard));
  EXPECT_NE(dist::sample_seed(1, 2, 0, shard), dist::sample_seed(1, 2, 0, dist::class_shard(C, 0, 2)));
  for (double bad : {0.0, -0.5, 1.5}) EXPECT_THROW(dist::sample_classes(labels, shard, bad, 1), ArgumentError) << bad;
}

// Over many draws every negative class comes up equally often (uniform sampling without
// replacement): counts within 5 standard deviations of their expectation.
TEST(PartialFc, NegativesAreDrawnUniformly) {
  const int64_t C = 200, draws = 3000;
  const dist::ClassShard shard{0, C};
  Tensor labels = torch::tensor({3, 7, 7, 150}, torch::kLong);
  std::vector<int64_t> counts(C, 0);
  for (int64_t k = 0; k < draws; ++k) {
    for (int64_t c : as_vector(dist::sample_classes(labels, shard, 0.25, dist::sample_seed(9, k, 0, shard)).classes))
      ++counts[size_t(c)];
  }
  const double p = double(50 - 3) / double(C - 3), mean = p * double(draws);
  const double sigma = std::sqrt(double(draws) * p * (1 - p));
  for (int64_t c = 0; c < C; ++c) {
    if (c == 3 || c == 7 || c == 150) {
      EXPECT_EQ(counts[size_t(c)], draws) << "positive " << c;
    } else {
      EXPECT_NEAR(double(counts[size_t(c)]), mean, 5 * sigma) << "class " << c;
    }
  }
}

class PartialFcHeads : public ::testing::TestWithParam<std::string> {};

// One head on all classes against its twin on a sample of them: the sampled logits are the full
// logits' columns, and with the loss over those columns the gradients (x, every class row, zero
// for rows left out) and the buffers agree, over three calls.
TEST_P(PartialFcHeads, SampledLogitsAreTheColumnsOfTheFullOnes) {
  const std::string yaml = GetParam();
  const int64_t B = 12, D = 8, C = 10;
  auto in = make_inputs(B, D, C, 5, torch::kDouble);
  auto [full, part] = twin_heads(yaml, D, C, 1);
  for (int call = 0; call < 3; ++call) {
    auto s = dist::sample_classes(in.y, {0, C}, 0.7, dist::sample_seed(1, call, 0, {0, C}));
    ASSERT_LT(s.classes.size(0), C);
    const std::string where = yaml + ", call " + std::to_string(call);
    Tensor x1 = in.x.clone().requires_grad_(true), x2 = in.x.clone().requires_grad_(true);
    full->zero_grad();
    part->zero_grad();
    Tensor columns = full->forward(x1, in.y).index_select(1, s.classes);
    Tensor sampled = part->forward(x2, in.y, s.classes);
    ASSERT_EQ(sampled.sizes(), columns.sizes()) << where;
    EXPECT_TRUE(close(sampled, columns, 1e-13, where + " logits"));
    torch::nn::functional::cross_entropy(columns, s.targets).backward();
    torch::nn::functional::cross_entropy(sampled, s.targets).backward();
    EXPECT_TRUE(close(x2.grad(), x1.grad(), 1e-12, where + " d/dx"));
    for (const auto& p : full->named_parameters()) {
      Tensor g = part->named_parameters()[p.key()].grad();
      ASSERT_TRUE(g.defined()) << where << " " << p.key();
      EXPECT_TRUE(close(g, p.value().grad(), 1e-12, where + " d/d" + p.key()));
      auto left_out = torch::ones({C}, torch::kBool).index_fill_(0, s.classes, false);
      EXPECT_EQ(g.index({left_out}).abs().max().item<double>(), 0.0) << where << " rows left out";
    }
    for (const auto& [name, value] : buffers_of(*full))
      EXPECT_TRUE(close(part->named_buffers()[name], value, 1e-13, where + " buffer " + name));
  }
}

TEST(PartialFcHeadsInput, ClassesThatMissATargetOrAreUnsortedAreRefused) {
  auto head = heads::make_head(YAML::Load("{type: arcface}"), 4, 10);
  Tensor x = torch::randn({3, 4}), y = torch::tensor({1, 5, 8}, torch::kLong);
  try {
    head->forward(x, y, torch::tensor({1, 5}, torch::kLong));
    ADD_FAILURE() << "a missing target was accepted";
  } catch (const ArgumentError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("labels[2] = 8"), std::string::npos) << message;
    EXPECT_NE(message.find("every positive"), std::string::npos) << message;
  }
  EXPECT_THROW(head->forward(x, y, torch::tensor({5, 1, 8}, torch::kLong)), ArgumentError);
  EXPECT_THROW(head->forward(x, y, torch::tensor({1, 5, 5, 8}, torch::kLong)), ArgumentError);
  EXPECT_THROW(head->forward(x, y, torch::tensor({1, 5, 8, 10}, torch::kLong)), ArgumentError);
  EXPECT_THROW(head->forward(x, y, torch::tensor({1.0, 5.0, 8.0})), ArgumentError);
  EXPECT_EQ(head->forward(x, y, torch::tensor({0, 1, 5, 8}, torch::kLong)).sizes(), (std::vector<int64_t>{3, 4}));
}

// Every head split over 2 ranks, each computing its own sample of its classes, with the
// distributed cross-entropy over the sampled columns (or the chunked one, blocks of 2 sampled
// classes), against one process computing the union of the samples: loss, each rank's input
// gradient, each shard's class-row gradients, buffers.
TEST_P(PartialFcHeads, ShardedAndSampledEqualsOneProcessOnTheUnionOfTheSamples) {
  const std::string yaml = GetParam();
  const int64_t B = 12, D = 8, C = 10, W = 2, b = B / W;
  auto in = make_inputs(B, D, C, 6, torch::kDouble);
  torch::manual_seed(1);
  auto whole = heads::make_head(YAML::Load(yaml), D, C);
  whole->to(torch::kDouble);
  std::vector<dist::ClassSample> samples;
  std::vector<Tensor> union_parts;
  for (int64_t r = 0; r < W; ++r) {
    auto shard = dist::class_shard(C, r, W);
    samples.push_back(dist::sample_classes(in.y, shard, 0.6, dist::sample_seed(2, 0, 0, shard)));
    union_parts.push_back(samples.back().classes + shard.begin);
  }
  Tensor all = torch::cat(union_parts);
  ASSERT_LT(all.size(0), C);
  Tensor x = in.x.clone().requires_grad_(true);
  Tensor col = torch::searchsorted(all, in.y);
  Tensor expect = torch::nn::functional::cross_entropy(whole->forward(x, in.y).index_select(1, all), col);
  expect.backward();
  for (int64_t chunk : {0, 2}) run_ranks(W, [&](Group& g) {
    auto shard = dist::class_shard(C, g.rank(), g.size());
    auto head = shard_head(yaml, D, C, g);
    const auto& s = samples[size_t(g.rank())];
    Tensor xr = in.x.narrow(0, g.rank() * b, b).clone().requires_grad_(true);
    Tensor xs = dist::all_gather_rows(xr, g);
    Tensor ys = g.all_gather(in.y.narrow(0, g.rank() * b, b).clone());
    Tensor loss = chunk > 0 ? head->chunked_cross_entropy(xs, ys, chunk, s.classes)
                            : dist::cross_entropy_at(head->forward(xs, ys, s.classes), s.targets, g);
    loss.backward();
    const std::string where = yaml + ", rank " + std::to_string(g.rank()) + ", chunk " + std::to_string(chunk);
    EXPECT_NEAR(loss.item<double>(), expect.item<double>(), 1e-12) << where;
    EXPECT_TRUE(close(xr.grad(), x.grad().narrow(0, g.rank() * b, b), 1e-11, where + " d/dx"));
    for (const auto& p : whole->named_parameters())
      EXPECT_TRUE(close(head->named_parameters()[p.key()].grad(), p.value().grad().slice(0, shard.begin, shard.end),
                        1e-11, where + " d/d" + p.key()));
    for (const auto& [name, value] : buffers_of(*whole))
      EXPECT_TRUE(close(head->named_buffers()[name], value, 1e-12, where + " buffer " + name));
  });
}

INSTANTIATE_TEST_SUITE_P(AllHeads, PartialFcHeads, ::testing::ValuesIn(every_head_variant()),
                         [](const auto& info) { return "case" + std::to_string(info.index); });

TEST(PartialFc, CrossEntropyAtRefusesColumnsBeyondTheLogits) {
  auto g = Group::single();
  Tensor logits = torch::randn({2, 3});
  EXPECT_THROW(dist::cross_entropy_at(logits, torch::tensor({0, 3}, torch::kLong), *g), ArgumentError);
  EXPECT_THROW(dist::cross_entropy_at(logits, torch::tensor({0}, torch::kLong), *g), ArgumentError);
  Tensor loss = dist::cross_entropy_at(logits, torch::tensor({0, 2}, torch::kLong), *g);
  EXPECT_NEAR(loss.item<double>(),
              torch::nn::functional::cross_entropy(logits, torch::tensor({0, 2}, torch::kLong)).item<double>(), 1e-6);
}

// The memory plan counts the sampled share of the logits (or a block's, with chunk), the copies of
// the centres and the optimizer's temporary.
TEST(PartialFc, MemoryPlanCountsTheSample) {
  dist::MemoryPlanInput in;
  in.num_classes = 1000000;
  in.embedding_size = 512;
  in.world_size = 8;
  in.global_batch = 1024;
  auto full = dist::plan_memory(in);
  in.sample_rate = 0.1;
  auto part = dist::plan_memory(in);
  EXPECT_EQ(full.local_classes, 125000);
  EXPECT_EQ(full.logits, int64_t(5) * 1024 * 125000 * 4);
  EXPECT_EQ(full.centres, int64_t(125000) * 512 * 4);
  EXPECT_EQ(full.work, int64_t(2) * 125000 * 512 * 4 + full.centres);
  EXPECT_EQ(part.centres, full.centres);
  EXPECT_EQ(part.logits, int64_t(5) * 1024 * 12500 * 4);
  EXPECT_EQ(part.work, int64_t(3) * 12500 * 512 * 4 + full.centres);
  EXPECT_NE(part.describe().find("centre copies and optimizer temporaries"), std::string::npos) << part.describe();
  in.chunk = 4096;
  auto chunked = dist::plan_memory(in);
  EXPECT_EQ(chunked.logits, int64_t(5) * 1024 * 4096 * 4);
  EXPECT_EQ(chunked.work, int64_t(3) * 4096 * 512 * 4 + full.centres);
  EXPECT_EQ(chunked.total() - chunked.work - chunked.logits, full.total() - full.work - full.logits);
}

// --- gradient compression -----------------------------------------------------------------------

// With fp16 buckets, each rank's gradient is rounded to float16, summed, and widened back: exactly
// (g0.half() + g1.half()).float(), which differs from the float32 sum. (bf16 is NCCL's alone:
// Gloo refuses it, with a message.)
TEST(DistGradientSync, CompressedBucketsAreRoundedBeforeTheSum) {
  torch::manual_seed(8);
  Tensor g0 = 1 + torch::rand({300}) * 1e-2, g1 = 2 + torch::rand({300}) * 1e-2;
  for (auto wire : {torch::kHalf}) {
    run_ranks(2, [&](Group& g) {
      Tensor p = torch::zeros({300}, torch::requires_grad());
      Tensor q = torch::zeros({2, 5}, torch::requires_grad());  // a second bucket (tiny buckets)
      dist::GradientSync sync({p, q}, std::shared_ptr<Group>(&g, [](Group*) {}), 1e-5, wire);
      EXPECT_EQ(sync.num_buckets(), 2);
      sync.arm(true);
      ((p * (g.rank() == 0 ? g0 : g1)).sum() + q.sum()).backward();
      sync.finish();
      Tensor expect = (g0.to(wire) + g1.to(wire)).to(torch::kFloat);
      EXPECT_TRUE(torch::equal(p.grad(), expect)) << c10::toString(wire);
      EXPECT_FALSE(torch::equal(p.grad(), g0 + g1)) << "not rounded";
      EXPECT_TRUE(torch::equal(q.grad(), torch::full({2, 5}, 2.0f)));
      EXPECT_EQ(p.grad().scalar_type(), torch::kFloat);
    });
  }
  EXPECT_THROW(dist::GradientSync({torch::zeros({1}, torch::requires_grad())}, Group::single(), 1, torch::kDouble),
               ArgumentError);
  run_ranks(2, [&](Group& g) {
    try {
      dist::GradientSync sync({torch::zeros({1}, torch::requires_grad())}, std::shared_ptr<Group>(&g, [](Group*) {}),
                              1, torch::kBFloat16);
      ADD_FAILURE() << "bf16 on Gloo was accepted";
    } catch (const ArgumentError& e) {
      EXPECT_NE(std::string(e.what()).find("needs NCCL"), std::string::npos) << e.what();
    }
  });
}

}  // namespace
}  // namespace facetrain::testing
