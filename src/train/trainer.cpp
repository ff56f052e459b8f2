#include "facetrain/train/trainer.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "facetrain/core/error.h"
#include "facetrain/core/files.h"
#include "facetrain/core/plot.h"
#include "facetrain/core/progress.h"
#include "facetrain/core/tensorboard.h"
#include "facetrain/core/torch_compat.h"
#include "facetrain/data/dataset.h"
#include "facetrain/data/loader.h"
#include "facetrain/dist/data_parallel.h"
#include "facetrain/dist/model_parallel.h"
#include "facetrain/dist/partial_fc.h"
#include "facetrain/io/verification_bin.h"
#include "facetrain/train/checkpoint.h"
#include "facetrain/train/optimizer.h"
#include "facetrain/train/schedule.h"
#include "facetrain/version.h"

namespace facetrain::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// --- signals ------------------------------------------------------------------------------------

std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int sig) {
  g_signal.store(sig);
  std::signal(sig, SIG_DFL);  // a second signal stops at once (the last checkpoint stays intact)
}

// Installs the handlers for a run's lifetime, restores the previous ones after.
class SignalScope {
 public:
  explicit SignalScope(bool enabled) : enabled_(enabled) {
    if (!enabled_) return;
    g_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalScope() {
    if (!enabled_) return;
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  bool enabled_;
  struct sigaction old_int_ {
  }, old_term_{};
};

const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

// --- small helpers ------------------------------------------------------------------------------

[[noreturn]] void config_error(const Recipe& r, const std::string& key, const std::string& message) {
  throw ConfigError({ConfigIssue{r.source, 0, 0, key, message}});
}

torch::Device choose_device(const Recipe& r, const dist::Environment& env) {
  const std::string& d = r.train.device;
  // Several processes on one node: each takes the GPU of its local rank.
  const auto local = static_cast<c10::DeviceIndex>(env.distributed() ? env.local_rank : 0);
  if (d == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, local) : torch::Device(torch::kCPU);
  if (d == "cpu") return torch::kCPU;
  if (!torch::cuda::is_available())
    config_error(r, "train.device", "'" + d + "' asked for, but this build or machine has no CUDA device");
  torch::Device device(d == "cuda" ? "cuda:" + std::to_string(local) : d);
  if (device.index() >= static_cast<int>(torch::cuda::device_count()))
    config_error(r, "train.device",
                 "'" + d + "': there are only " + std::to_string(torch::cuda::device_count()) + " CUDA devices");
  return device;
}

std::string format_double(double v, const char* f = "%.6g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// The RNG states a run depends on (dropout; Partial FC's draws are keyed by the step instead).
io::StateDict rng_state(torch::Device device) {
  io::StateDict out;
  auto cpu = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(cpu.mutex());
    out.emplace_back("cpu", cpu.get_state());
  }
  if (device.is_cuda()) {
    auto gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    out.emplace_back(device.str(), gen.get_state());
  }
  return out;
}

void set_rng_state(const io::StateDict& state, torch::Device device, const std::string& source) {
  for (const auto& [name, tensor] : state) {
    if (name == "cpu") {
      auto cpu = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(cpu.mutex());
      cpu.set_state(tensor);
    } else if (device.is_cuda() && name == device.str()) {
      auto gen = at::globalContext().defaultGenerator(device);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(tensor);
    } else {
      spdlog::warn("{}: the random state of '{}' is not restored (this run uses {})", source, name, device.str());
    }
  }
}

// The one-number tensor `key` of `state`, or `fallback` when it is absent.
template <class T>
T scalar_of(const io::StateDict& state, const std::string& key, T fallback) {
  for (const auto& [name, t] : state) {
    if (name == key) return t.template item<T>();
  }
  return fallback;
}

// The head's tensors that hold one row per class: its parameters of C_local rows.
std::vector<std::string> class_row_parameters(heads::MarginHeadImpl& head) {
  std::vector<std::string> out;
  for (const auto& p : head.named_parameters()) {
    if (p.value().dim() >= 1 && p.value().size(0) == head.geometry().num_local_classes()) out.push_back(p.key());
  }
  return out;
}

// `name` is `param` itself or one of its optimizer slots ("param.momentum_buffer").
bool is_or_slot_of(const std::string& name, const std::string& param) {
  return name == param ||
         (name.size() > param.size() && name.compare(0, param.size(), param) == 0 && name[param.size()] == '.');
}

// Every rank's rows of a class-row tensor, concatenated: [C, ...] (rank shards may differ by one row).
torch::Tensor gather_class_rows(const torch::Tensor& local, dist::Group& group, int64_t num_classes) {
  if (group.size() == 1) return local;
  const int64_t rows = dist::class_shard(num_classes, 0, group.size()).size();  // the largest shard
  auto padded = torch::zeros(
      [&] {
        auto shape = local.sizes().vec();
        shape[0] = rows;
        return shape;
      }(),
      local.options());
  padded.narrow(0, 0, local.size(0)).copy_(local);
  auto all = group.all_gather(padded);
  std::vector<torch::Tensor> parts;
  for (int64_t r = 0; r < group.size(); ++r)
    parts.push_back(all.narrow(0, r * rows, dist::class_shard(num_classes, r, group.size()).size()));
  return torch::cat(parts, 0);
}

}  // namespace

EvalReport Evaluator::evaluate(backbones::BackboneImpl& net, torch::Device device, dist::Group& group) {
  EvalReport report;
  if (group.rank() == 0) report = evaluate(net, device);
  group.barrier();
  return report;
}

std::string latest_checkpoint(const std::string& output_dir) {
  auto all = list_checkpoints((fs::path(output_dir) / "checkpoints").string());
  return all.empty() ? std::string() : all.back();
}

// --- the state of a run -------------------------------------------------------------------------

struct Trainer::State {
  std::shared_ptr<spdlog::logger> log, previous_log;
  torch::Device device = torch::kCPU;
  std::shared_ptr<data::Dataset> dataset;
  std::unique_ptr<data::Loader> loader;
  backbones::Backbone backbone{nullptr};
  std::shared_ptr<heads::MarginHeadImpl> head;
  std::shared_ptr<dist::Group> group;
  dist::ClassShard shard;
  std::vector<std::string> class_rows;  // the head's per-class parameters ("weight", "bias")
  std::unique_ptr<dist::GradientSync> grad_sync;
  std::unique_ptr<dist::GroupBatchNormSync> bn_sync;
  bool rank0 = true;
  std::unique_ptr<Optimizer> optimizer;
  std::unique_ptr<Schedule> schedule;
  std::shared_ptr<Evaluator> evaluator;
  StepHook hook;
  std::unique_ptr<EventWriter> events;

  int64_t steps_per_epoch = 0, total = 0;
  int64_t step = 0, epoch = 0, epoch_batch = 0;  // epoch_batch: micro-batches of `epoch` consumed
  int64_t bad_in_row = 0;
  double loss_scale = 65536.0;  // fp16 only
  int64_t growth_tracker = 0;
  int64_t last_checkpoint_step = -1;
  std::string last_checkpoint;

  std::string checkpoint_dir, metrics_path;
  // Curves for the plot at the end.
  PlotSeries loss_curve{"loss", {}, {}};
  std::map<std::string, PlotSeries> accuracy_curves;
};

Trainer::Trainer(Recipe recipe, RunOptions run)
    : recipe_(std::move(recipe)), run_(std::move(run)), s_(std::make_unique<State>()) {
  auto& s = *s_;
  const Recipe& r = recipe_;
  if (run_.output_dir.empty()) throw ArgumentError("Trainer: no output directory");
  if (!run_.resume.empty() && !run_.finetune.empty())
    throw ConfigError({ConfigIssue{"command line", 0, 0, "--finetune", "cannot be combined with --resume"}});

  // With several processes, rank 0 alone writes the output directory and the log; the others
  // print their warnings and errors.
  const dist::Environment& env = run_.environment;
  s.rank0 = env.rank == 0;
  s.checkpoint_dir = (fs::path(run_.output_dir) / "checkpoints").string();
  s.metrics_path = (fs::path(run_.output_dir) / "metrics.jsonl").string();
  if (s.rank0) {
    std::error_code ec;
    fs::create_directories(run_.output_dir, ec);
    if (ec) throw DataError("cannot create the output directory '" + run_.output_dir + "': " + ec.message());
    fs::create_directories(s.checkpoint_dir, ec);
    if (ec) throw DataError("cannot create '" + s.checkpoint_dir + "': " + ec.message());
  }

  // Logging: the terminal, and OUTPUT/train.log.
  s.previous_log = spdlog::default_logger();
  auto sinks = s.previous_log->sinks();
  if (s.rank0)
    sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(
        (fs::path(run_.output_dir) / "train.log").string(), /*truncate=*/false));
  s.log = std::make_shared<spdlog::logger>("facetrain", sinks.begin(), sinks.end());
  s.log->set_level(s.rank0 ? s.previous_log->level() : std::max(s.previous_log->level(), spdlog::level::warn));
  s.log->flush_on(spdlog::level::info);  // train.log is complete whenever the run is stopped
  spdlog::set_default_logger(s.log);

  std::string resume = run_.resume;
  if (resume == "auto") {
    resume = latest_checkpoint(run_.output_dir);
    s.log->info(
        resume.empty() ? "resume auto: no checkpoint in {} yet, starting fresh" : "resume auto: continuing from {}",
        resume.empty() ? s.checkpoint_dir : resume);
  } else if (resume.empty() && !list_checkpoints(s.checkpoint_dir).empty()) {
    throw ConfigError({ConfigIssue{"command line", 0, 0, "--output",
                                   "'" + run_.output_dir + "' already holds checkpoints of a run (" +
                                       latest_checkpoint(run_.output_dir) +
                                       "); continue it with --resume auto, or choose another --output"}});
  }

  s.device = choose_device(r, env);
  if (r.train.amp == Amp::kFp16 && !s.device.is_cuda())
    config_error(r, "train.amp", "fp16 needs a CUDA device (use bf16 on the CPU)");
  if (s.device.is_cuda()) at::globalContext().setBenchmarkCuDNN(r.train.cudnn_benchmark);
  s.log->info("facetrain {} (LibTorch {}) | device {} | output {}", FACETRAIN_VERSION_STRING, compat::torch_version(),
              s.device.str(), run_.output_dir);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(r.dist.timeout_s * 1000));
  if (env.distributed()) s.log->info("processes: {}; connecting (timeout {} s)", env.describe(), r.dist.timeout_s);
  s.group = dist::Group::connect(env, s.device, timeout);
  if (env.distributed()) s.log->info("processes: {} group of {} connected", s.group->backend(), s.group->size());
  s.log->info("resolved config ({}):\n{}", r.source, r.yaml);
  if (s.rank0) write_file_atomic((fs::path(run_.output_dir) / "config.yaml").string(), r.yaml);

  // The data, synthesised first if the recipe asks for it (by rank 0; the others wait).
  if (s.rank0 && r.synthesize && !fs::exists(fs::path(r.data.dataset.path) / "train.rec")) {
    data::SynthDatasetOptions o = *r.synthesize;
    o.threads = std::max<int64_t>(1, std::thread::hardware_concurrency());
    o.progress = progress_logger("synthesize", "image", 10);
    s.log->info("writing the synthetic dataset ({}) to {}", o.describe(), o.out_dir);
    auto val = data::write_synthetic_dataset(o);
    io::write_verification_bin((fs::path(o.out_dir) / "synth_val.bin").string(), val.images, val.issame);
  }
  s.group->barrier();
  s.dataset = data::make_dataset(r.data.dataset);
  s.log->info("data: {}", s.dataset->describe());
  data::LoaderOptions loader_options = r.data.loader;
  loader_options.rank = s.group->rank();
  loader_options.world_size = s.group->size();
  s.loader = std::make_unique<data::Loader>(s.dataset, loader_options);
  s.steps_per_epoch = s.loader->steps_per_epoch() / r.train.grad_accum;
  if (s.steps_per_epoch < 1)
    config_error(r, "train.grad_accum",
                 "an epoch has " + std::to_string(s.loader->steps_per_epoch()) + " batches of " +
                     std::to_string(r.train.batch_size) + ", fewer than grad_accum " +
                     std::to_string(r.train.grad_accum));
  s.total = r.train.max_steps > 0 ? r.train.max_steps : r.train.epochs * s.steps_per_epoch;

  // The model, initialised from the seed.
  torch::manual_seed(r.train.seed);
  s.backbone = r.model.build();
  const int64_t num_classes = s.dataset->num_classes();
  try {
    s.shard = dist::class_shard(num_classes, s.group->rank(), s.group->size());
  } catch (const ArgumentError& e) {
    throw DataError(s.dataset->describe() + ": " + e.what());
  }
  s.head = r.head.build(heads::HeadGeometry(s.backbone->embedding_size(), num_classes, s.shard.begin, s.shard.end));
  if (s.group->size() > 1) s.head->set_reducer(std::make_shared<dist::ShardReducer>(s.group));
  s.class_rows = class_row_parameters(*s.head);
  if (r.model.sync_bn && s.group->size() > 1) s.bn_sync = std::make_unique<dist::GroupBatchNormSync>(s.group);
  if (r.train.amp != Amp::kNone)
    s.backbone->set_mixed_precision(r.train.amp == Amp::kBf16 ? torch::kBFloat16 : torch::kHalf);
  if (!run_.finetune.empty()) {
    io::load_state_dict(*s.backbone, read_backbone_weights(run_.finetune), run_.finetune);
    s.log->info("finetune: backbone weights from {}; head ({} classes), optimizer and schedule start fresh",
                run_.finetune, s.dataset->num_classes());
  }
  s.backbone->to(s.device);
  s.head->to(s.device);
  dist::broadcast_module(*s.backbone, *s.group);  // the same start everywhere, whatever each rank read
  s.backbone->train();
  s.head->train();

  // The optimizer: backbone, optionally its 1-D parameters without decay, and the head.
  const int64_t global_batch = r.train.batch_size * r.train.grad_accum * s.group->size();
  const double lr_scale =
      r.optimizer.lr_reference_batch > 0 ? double(global_batch) / double(r.optimizer.lr_reference_batch) : 1.0;
  const double lr = r.optimizer.lr * lr_scale;
  const double head_lr = r.optimizer.head_lr.value_or(r.optimizer.lr) * lr_scale;
  const double head_wd = r.optimizer.head_weight_decay.value_or(r.optimizer.weight_decay);
  std::vector<ParamGroup> groups = {{"backbone", {}, lr, r.optimizer.weight_decay},
                                    {"backbone_no_decay", {}, lr, 0.0},
                                    {"head", {}, head_lr, head_wd},
                                    {"head_no_decay", {}, head_lr, 0.0}};
  auto add = [&](torch::nn::Module& m, const std::string& prefix, size_t group) {
    for (const auto& p : m.named_parameters()) {
      const bool no_decay = r.optimizer.no_decay_bn_bias && p.value().dim() <= 1;
      groups[group + (no_decay ? 1 : 0)].params.emplace_back(prefix + p.key(), p.value());
    }
  };
  add(*s.backbone, "backbone.", 0);
  add(*s.head, "head.", 2);
  groups.erase(std::remove_if(groups.begin(), groups.end(), [](const ParamGroup& g) { return g.params.empty(); }),
               groups.end());
  s.optimizer = std::make_unique<Optimizer>(r.optimizer, groups);
  if (s.group->size() > 1) {
    std::vector<torch::Tensor> params;
    for (const auto& p : s.backbone->parameters()) params.push_back(p);
    std::optional<torch::Dtype> wire;
    if (r.dist.grad_compression == GradCompression::kFp16) wire = torch::kHalf;
    if (r.dist.grad_compression == GradCompression::kBf16) wire = torch::kBFloat16;
    try {
      s.grad_sync = std::make_unique<dist::GradientSync>(params, s.group, r.dist.bucket_mb, wire);
    } catch (const ArgumentError& e) {
      config_error(r, "dist.grad_compression", e.what());
    }
  }
  s.schedule = std::make_unique<Schedule>(r.schedule, r.optimizer.lr, s.total, s.steps_per_epoch);
  if (lr_scale != 1.0)
    s.log->info("lr scaled by global batch {} / {}: {} (head {})", global_batch, r.optimizer.lr_reference_batch,
                format_double(lr), format_double(head_lr));

  if (!resume.empty()) {
    Checkpoint c = read_checkpoint(resume);
    auto mismatch = [&](const std::string& what, const std::string& here, const std::string& there) {
      if (here != there)
        throw DataError("cannot resume from '" + resume + "': its " + what + " is " + there + ", this recipe's " +
                        here);
    };
    mismatch("backbone", s.backbone->type(), c.backbone_type);
    mismatch("head", s.head->type(), c.head_type);
    mismatch("class count", std::to_string(s.dataset->num_classes()), std::to_string(c.num_classes));
    io::load_state_dict(*s.backbone, c.backbone, resume);
    // Checkpoints hold every class; this rank takes its rows of the centres and of their
    // optimizer slots, whatever the world size that wrote them.
    auto take_rows = [&](io::StateDict& dict, const std::string& prefix) {
      for (auto& [name, t] : dict) {
        for (const auto& param : s.class_rows) {
          if (is_or_slot_of(name, prefix + param) && t.dim() >= 1 && t.size(0) == c.num_classes)
            t = t.narrow(0, s.shard.begin, s.shard.size()).clone();
        }
      }
    };
    take_rows(c.head, "");
    take_rows(c.optimizer, "head.");
    io::load_state_dict(*s.head, c.head, resume);
    s.optimizer->load_state_dict(c.optimizer, resume);
    s.loss_scale = scalar_of(c.scaler, "scale", s.loss_scale);
    s.growth_tracker = scalar_of<int64_t>(c.scaler, "growth_tracker", 0);
    s.bad_in_row = scalar_of<int64_t>(c.run, "bad_steps_in_row", 0);
    set_rng_state(c.rng, s.device, resume);
    s.step = c.step;
    s.epoch = c.epoch;
    s.epoch_batch = c.epoch_batch;
    s.last_checkpoint_step = c.step;
    s.last_checkpoint = resume;
    if (c.steps_per_epoch != s.steps_per_epoch)
      s.log->warn(
          "the checkpoint's epochs had {} steps, this recipe's have {}: the run continues from epoch {}, "
          "micro-batch {}, but not as the original run would have",
          c.steps_per_epoch, s.steps_per_epoch, c.epoch, c.epoch_batch);
    s.log->info("resumed from {} at step {} (epoch {}, batch {} of it)", resume, s.step, s.epoch, s.epoch_batch);
  }

  // metrics.jsonl: on resume, drop the records past the checkpoint (the run redoes those steps).
  if (s.rank0) {
    std::ifstream in(s.metrics_path);
    std::string kept, line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.contains("step") || !j["step"].is_number_integer()) continue;
      const int64_t step = j["step"].get<int64_t>();
      if (step > s.step || resume.empty()) continue;
      kept += line + "\n";
      if (j.contains("loss") && j["loss"].is_number()) {
        s.loss_curve.x.push_back(double(step));
        s.loss_curve.y.push_back(j["loss"].get<double>());
      }
      if (j.contains("eval") && j["eval"].is_object()) {
        for (const auto& [name, m] : j["eval"].items()) {
          if (!m.contains("accuracy")) continue;
          auto& c = s.accuracy_curves[name];
          c.name = name;
          c.x.push_back(double(step));
          c.y.push_back(m["accuracy"].get<double>());
        }
      }
    }
    write_file_atomic(s.metrics_path, kept);
  }
  if (r.log.tensorboard && s.rank0)
    s.events = std::make_unique<EventWriter>((fs::path(run_.output_dir) / "tensorboard").string());

  s.log->info("model: {} ({}) | head: {} ({}) | {} classes", s.backbone->type(), r.model.options, s.head->type(),
              r.head.options, s.dataset->num_classes());
  s.log->info("train: {} | optimizer: {} | schedule: {}", r.train.describe(), r.optimizer.describe(),
              r.schedule.describe());
  s.log->info("{} steps ({} per epoch of {} images, batch {} x {} accumulated x {} processes)", s.total,
              s.steps_per_epoch, s.dataset->size(), r.train.batch_size, r.train.grad_accum, s.group->size());
  if (s.group->size() > 1) {
    s.log->info("classes: rank {} holds [{}, {}) of {}{}", s.group->rank(), s.shard.begin, s.shard.end, num_classes,
                s.bn_sync ? "; BatchNorm synchronised" : "");
  }
  dist::MemoryPlanInput plan;
  plan.num_classes = num_classes;
  plan.embedding_size = s.backbone->embedding_size();
  plan.world_size = s.group->size();
  plan.global_batch = r.train.batch_size * s.group->size();
  plan.optimizer_slots = s.optimizer->slots_per_parameter();
  plan.sample_rate = r.sample_rate;
  plan.chunk = r.chunk_size;
  if (r.sample_rate < 1)
    s.log->info("Partial FC: sample_rate {}: at least {} of the {} classes of each rank in a step, every positive kept",
                format_double(r.sample_rate), dist::sampled_classes(s.shard.size(), r.sample_rate), s.shard.size());
  s.log->info("memory: {}", dist::plan_memory(plan).describe());
}

Trainer::~Trainer() {
  if (s_ && s_->previous_log) spdlog::set_default_logger(s_->previous_log);
}

void Trainer::set_evaluator(std::shared_ptr<Evaluator> evaluator) { s_->evaluator = std::move(evaluator); }
void Trainer::set_step_hook(StepHook hook) { s_->hook = std::move(hook); }
backbones::BackboneImpl& Trainer::backbone() { return *s_->backbone; }
heads::MarginHeadImpl& Trainer::head() { return *s_->head; }
dist::Group& Trainer::group() { return *s_->group; }
torch::Device Trainer::device() const { return s_->device; }
int64_t Trainer::steps_per_epoch() const { return s_->steps_per_epoch; }
int64_t Trainer::total_steps() const { return s_->total; }

StepStats Trainer::step(const std::function<data::Batch()>& next) {
  auto& s = *s_;
  const Recipe& r = recipe_;
  const bool fp16 = r.train.amp == Amp::kFp16;
  s.optimizer->set_lr_factor(s.schedule->factor(s.step));
  s.optimizer->zero_grad();

  // Forward and backward over the micro-batches; the loss is divided by their count.
  double loss_sum = 0;
  std::string bad;  // what went non-finite
  int64_t samples = 0;
  const int64_t world = s.group->size();
  const bool sampling = r.sample_rate < 1;
  const bool chunked = r.chunk_size > 0;
  std::vector<torch::Tensor> sampled;  // Partial FC: each micro-batch's classes of this rank
  for (int64_t k = 0; k < r.train.grad_accum; ++k) {
    auto batch = next();
    samples += batch.valid;
    auto images = batch.images.to(s.device, /*non_blocking=*/true);
    auto labels = batch.labels.to(s.device, /*non_blocking=*/true);
    // Several processes: the backbone's gradients are summed over ranks during the last
    // micro-batch's backward only (no_sync before it).
    if (s.grad_sync) s.grad_sync->arm(k == r.train.grad_accum - 1);
    torch::Tensor loss;
    if (world == 1 && !sampling && !chunked) {
      auto embeddings = s.backbone->forward(images);
      auto logits = s.head->forward(embeddings, labels);
      loss = torch::nn::functional::cross_entropy(logits.to(torch::kFloat), labels);
    } else {
      // The whole global batch through this rank's classes; the loss is its mean (model_parallel.h).
      torch::Tensor embeddings;
      {
        backbones::SyncBatchNormScope sync_bn(s.bn_sync.get());
        embeddings = s.backbone->forward(images);
      }
      auto all_embeddings = dist::all_gather_rows(embeddings, *s.group);
      auto all_labels = s.group->all_gather(labels);
      dist::ClassSample sample;
      if (sampling) {
        // Partial FC: this rank's positives and sampled negatives (partial_fc.h).
        sample = dist::sample_classes(all_labels, s.shard, r.sample_rate,
                                      dist::sample_seed(r.train.seed, s.step, k, s.shard));
        sampled.push_back(sample.classes);
      }
      if (chunked) {
        // Blocks of chunk_size classes, across ranks through the head's reducer (margin_head.h).
        loss = s.head->chunked_cross_entropy(all_embeddings, all_labels, r.chunk_size, sample.classes);
      } else if (sampling) {
        auto logits = s.head->forward(all_embeddings, all_labels, sample.classes);
        loss = world == 1 ? torch::nn::functional::cross_entropy(logits.to(torch::kFloat), sample.targets)
                          : dist::cross_entropy_at(logits.to(torch::kFloat), sample.targets, *s.group);
      } else {
        auto logits = s.head->forward(all_embeddings, all_labels);
        loss = dist::cross_entropy(logits.to(torch::kFloat), all_labels, s.shard.begin, *s.group);
      }
    }
    const double value = loss.item<double>();
    if (!std::isfinite(value)) {
      if (bad.empty()) bad = "the loss (" + format_double(value) + ")";
      continue;
    }
    loss_sum += value;
    auto scaled = loss / double(r.train.grad_accum);
    if (fp16) scaled = scaled * s.loss_scale;
    scaled.backward();
    if (s.hook) {
      StepContext ctx{s.step, s.backbone.get(), s.head.get()};
      s.hook(ctx);
    }
  }

  if (s.grad_sync) s.grad_sync->finish();

  // Unscale (fp16), check every gradient, clip, step.
  std::vector<torch::Tensor> grads;
  std::vector<bool> of_head;
  for (const auto& g : s.optimizer->groups()) {
    for (const auto& [name, p] : g.params) {
      if (p.grad().defined()) {
        grads.push_back(p.grad());
        of_head.push_back(name.rfind("head.", 0) == 0);
      }
    }
  }
  double grad_norm = 0;
  if (world > 1) {
    // Backbone gradients are the same on every rank, head gradients are each rank's classes':
    // the norm counts rank 0's backbone and every rank's head. Every rank gets the same number,
    // and so takes the same decisions (skip, clip). The real sample count travels along.
    torch::NoGradGuard no_grad;
    if (fp16 && bad.empty()) {
      const float inv = static_cast<float>(1.0 / s.loss_scale);
      for (auto& g : grads) g.mul_(inv);
    }
    double sq[2] = {0, 0};
    if (bad.empty()) {
      for (size_t i = 0; i < grads.size(); ++i) {
        if (of_head[i] || s.group->rank() == 0)
          sq[of_head[i] ? 1 : 0] += grads[i].to(torch::kDouble).square().sum().item<double>();
      }
    }
    auto t = torch::tensor({sq[0], sq[1], double(samples)}, torch::kDouble).to(s.device);
    s.group->all_reduce(t);
    t = t.cpu();
    grad_norm = std::sqrt(t[0].item<double>() + t[1].item<double>());
    samples = static_cast<int64_t>(t[2].item<double>());
  } else if (bad.empty() && !grads.empty()) {
    torch::NoGradGuard no_grad;
    if (fp16) {
      const float inv = static_cast<float>(1.0 / s.loss_scale);
      for (auto& g : grads) g.mul_(inv);
    }
    std::vector<torch::Tensor> norms;
    for (const auto& g : grads) norms.push_back(g.norm(2));
    grad_norm = torch::stack(norms).norm(2).item<double>();
  }
  if (bad.empty() && !grads.empty()) {
    if (!std::isfinite(grad_norm)) {
      for (const auto& g : s.optimizer->groups()) {
        for (const auto& [name, p] : g.params) {
          if (bad.empty() && p.grad().defined() && !torch::isfinite(p.grad()).all().item<bool>())
            bad = "the gradient of " + name;
        }
      }
      if (bad.empty()) bad = "the gradient norm";
    }
  }
  bool stepped = false, overflow = false;
  if (bad.empty()) {
    if (r.train.clip_grad_norm > 0) {
      const double coef = r.train.clip_grad_norm / (grad_norm + 1e-6);
      if (coef < 1) {
        torch::NoGradGuard no_grad;
        for (auto& g : grads) g.mul_(coef);
      }
    }
    if (sampling && !sampled.empty()) {
      // The centres no micro-batch sampled, and their optimizer slots, stay as they are.
      auto rows = std::get<0>(at::_unique(torch::cat(sampled), /*sorted=*/true));
      for (const auto& param : s.class_rows) s.optimizer->set_rows("head." + param, rows);
    }
    s.optimizer->step();
    stepped = true;
    s.bad_in_row = 0;
    if (fp16 && ++s.growth_tracker >= 2000) {
      s.loss_scale *= 2;
      s.growth_tracker = 0;
    }
  } else if (fp16 && bad.rfind("the gradient", 0) == 0) {
    // An fp16 overflow: the loss scale backs off, as PyTorch's GradScaler does; not a bad step.
    s.loss_scale *= 0.5;
    s.growth_tracker = 0;
    overflow = true;
    s.log->debug("step {}: fp16 overflow in {}; loss scale now {}", s.step + 1, bad, s.loss_scale);
  } else {
    ++s.bad_in_row;
    s.log->warn("step {}: skipped, {} is not finite ({} in a row, the limit is {})", s.step + 1, bad, s.bad_in_row,
                r.train.max_bad_steps);
    if (s.bad_in_row >= r.train.max_bad_steps)
      throw Error("stopping at step " + std::to_string(s.step + 1) + ": " + std::to_string(s.bad_in_row) +
                  " steps in a row were not finite (the last: " + bad +
                  "); lower optimizer.lr, set train.clip_grad_norm, or check the data. The last checkpoint is " +
                  (s.last_checkpoint.empty() ? std::string("none") : s.last_checkpoint));
  }
  s.optimizer->zero_grad();
  ++s.step;
  StepStats out;
  out.loss = stepped ? loss_sum / double(r.train.grad_accum) : std::nan("");
  out.samples = samples;
  out.grad_norm = grad_norm;
  out.stepped = stepped;
  out.overflow = overflow;
  out.bad = bad;
  return out;
}

TrainResult Trainer::run() {
  auto& s = *s_;
  const Recipe& r = recipe_;
  SignalScope signals(run_.handle_signals);
  TrainResult result;
  const bool fp16 = r.train.amp == Amp::kFp16;
  const int64_t micro_per_epoch = s.steps_per_epoch * r.train.grad_accum;
  const int64_t first_step = s.step;

  auto append_metrics = [&](const nlohmann::json& record) {
    if (!s.rank0) return;
    std::ofstream out(s.metrics_path, std::ios::app);
    out << record.dump() << "\n";
    out.flush();
    if (!out) throw DataError("cannot append to '" + s.metrics_path + "'");
  };

  auto save = [&]() {
    Checkpoint c;
    c.facetrain_version = FACETRAIN_VERSION_STRING;
    c.torch_version = compat::torch_version();
    c.config = r.yaml;
    c.step = s.step;
    c.epoch = s.epoch;
    c.epoch_batch = s.epoch_batch;
    c.steps_per_epoch = s.steps_per_epoch;
    c.backbone_type = s.backbone->type();
    c.head_type = s.head->type();
    c.num_classes = s.dataset->num_classes();
    c.embedding_size = s.backbone->embedding_size();
    c.backbone = io::module_state_dict(*s.backbone);
    c.head = io::module_state_dict(*s.head);
    c.optimizer = s.optimizer->state_dict();
    // Every rank's class rows (centres and their optimizer slots) into one world-size-free file.
    // Every rank takes part; rank 0 writes.
    auto gather_rows = [&](io::StateDict& dict, const std::string& prefix) {
      if (s.group->size() == 1) return;
      for (auto& [name, t] : dict) {
        for (const auto& param : s.class_rows) {
          if (is_or_slot_of(name, prefix + param) && t.dim() >= 1 && t.size(0) == s.shard.size())
            t = gather_class_rows(t.contiguous(), *s.group, s.dataset->num_classes());
        }
      }
    };
    gather_rows(c.head, "");
    gather_rows(c.optimizer, "head.");

    c.scaler = {{"scale", torch::tensor(s.loss_scale, torch::kDouble)},
                {"growth_tracker", torch::tensor(s.growth_tracker, torch::kLong)}};
    c.rng = rng_state(s.device);
    c.run = {{"bad_steps_in_row", torch::tensor(s.bad_in_row, torch::kLong)}};
    const std::string path = (fs::path(s.checkpoint_dir) / checkpoint_name(s.step)).string();
    if (s.rank0) write_checkpoint(c, path);
    s.last_checkpoint_step = s.step;
    s.last_checkpoint = path;
    result.checkpoint = path;
    if (!s.rank0) return;
    auto pruned = prune_checkpoints(s.checkpoint_dir, r.checkpoint.keep_last);
    s.log->info("checkpoint: {}{}", path,
                pruned.empty() ? "" : " (" + std::to_string(pruned.size()) + " older removed)");
  };

  auto evaluate = [&]() {
    if (!s.evaluator) return;
    torch::NoGradGuard no_grad;
    s.backbone->eval();
    auto t0 = Clock::now();
    // Every rank takes part (the evaluator may split the work); rank 0 reports.
    EvalReport report = s.group->size() == 1 ? s.evaluator->evaluate(*s.backbone, s.device)
                                             : s.evaluator->evaluate(*s.backbone, s.device, *s.group);
    s.backbone->train();
    if (!s.rank0) return;
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    s.log->info("evaluation at step {} ({:.1f}s):\n{}", s.step, seconds, report.text);
    append_metrics({{"step", s.step}, {"epoch", s.epoch}, {"eval", report.sets}});
    if (s.events) {
      std::vector<std::pair<std::string, double>> scalars;
      for (const auto& [tag, v] : report.scalars) scalars.emplace_back("eval/" + tag, v);
      s.events->add_scalars(scalars, s.step);
      s.events->flush();
    }
    for (const auto& [name, m] : report.sets.items()) {
      if (!m.contains("accuracy")) continue;
      auto& c = s.accuracy_curves[name];
      c.name = name;
      c.x.push_back(double(s.step));
      c.y.push_back(m["accuracy"].get<double>());
    }
    result.last_eval = std::move(report);
  };

  ProgressMeter meter(std::max<int64_t>(1, s.total - first_step), "step");
  double window_loss = 0;
  int64_t window_steps = 0, window_samples = 0;
  auto window_start = Clock::now();

  if (s.step < s.total) {
    s.log->info("training from step {} to {}", s.step, s.total);
    s.loader->start_epoch(s.epoch, std::min(s.epoch_batch, s.loader->steps_per_epoch()));
  }
  while (s.step < s.total) {
    if (s.epoch_batch >= micro_per_epoch) {
      ++s.epoch;
      s.epoch_batch = 0;
      s.loader->start_epoch(s.epoch, 0);
    }
    StepStats st = step([&] {
      auto batch = s.loader->next();
      if (!batch) throw Error("the data loader ended epoch " + std::to_string(s.epoch) + " early");
      ++s.epoch_batch;
      return std::move(*batch);
    });
    if (!st.bad.empty() && !st.overflow) ++result.skipped_steps;
    ++result.steps_run;
    if (st.stepped) {
      window_loss += st.loss;
      ++window_steps;
    }
    window_samples += st.samples;

    const bool last = s.step == s.total;
    if ((r.log.every_steps > 0 && s.step % r.log.every_steps == 0) || last) {
      const double seconds = std::chrono::duration<double>(Clock::now() - window_start).count();
      const double rate = seconds > 0 ? double(window_samples) / seconds : 0;
      const double loss = window_steps > 0 ? window_loss / double(window_steps) : std::nan("");
      const double lr = s.optimizer->lr(0);
      const int64_t done = s.step - first_step;
      s.log->info("step {}/{} ({:.1f}%) | epoch {} | loss {:.4f} | lr {} | {:.1f} img/s | elapsed {} | ETA {}", s.step,
                  s.total, 100.0 * double(s.step) / double(s.total), s.epoch, loss, format_double(lr, "%.5g"), rate,
                  ProgressMeter::format_duration(meter.elapsed_seconds()),
                  ProgressMeter::format_duration(meter.eta_seconds(done)));
      nlohmann::json record = {{"step", s.step},
                               {"epoch", s.epoch},
                               {"loss", std::isfinite(loss) ? nlohmann::json(loss) : nlohmann::json(nullptr)},
                               {"lr", lr},
                               {"samples_per_sec", rate},
                               {"grad_norm", st.grad_norm}};
      if (fp16) record["loss_scale"] = s.loss_scale;
      append_metrics(record);
      if (s.events) {
        std::vector<std::pair<std::string, double>> scalars = {
            {"train/loss", loss}, {"train/lr", lr}, {"train/samples_per_sec", rate}};
        s.events->add_scalars(scalars, s.step);
        s.events->flush();
      }
      if (std::isfinite(loss)) {
        s.loss_curve.x.push_back(double(s.step));
        s.loss_curve.y.push_back(loss);
      }
      result.last_loss = loss;
      window_loss = 0;
      window_steps = 0;
      window_samples = 0;
      window_start = Clock::now();
    }
    if (!last && r.eval.every_steps > 0 && s.step % r.eval.every_steps == 0) evaluate();
    if (!last && r.checkpoint.every_steps > 0 && s.step % r.checkpoint.every_steps == 0) save();

    int sig = g_signal.load();
    if (s.group->size() > 1) {
      // Every rank stops at the same step, even when only some got the signal.
      auto t = torch::tensor({double(sig)}, torch::kDouble).to(s.device);
      s.group->all_reduce(t, dist::ReduceOp::kMax);
      sig = static_cast<int>(t.cpu().item<double>());
    }
    if (sig != 0) {
      result.signal = sig;
      s.log->warn("{} received: step {} finished, writing a checkpoint", signal_name(sig), s.step);
      if (s.last_checkpoint_step != s.step) save();
      s.log->warn("stopped at step {} of {}; continue with --resume auto (or --resume {})", s.step, s.total,
                  s.last_checkpoint);
      break;
    }
  }
  result.step = s.step;
  if (result.signal != 0) return result;

  if (s.last_checkpoint_step != s.step) save();
  evaluate();
  if (s.rank0 && !s.loss_curve.x.empty()) {
    PlotPanel loss{"training loss", "step", "loss", {s.loss_curve}};
    loss.legend = false;
    std::vector<PlotPanel> panels = {loss};
    if (!s.accuracy_curves.empty()) {
      PlotPanel acc{"verification accuracy", "step", "accuracy", {}};
      for (auto& [name, c] : s.accuracy_curves) acc.series.push_back(c);
      panels.push_back(acc);
    }
    const std::string plot = (fs::path(run_.output_dir) / "curves.png").string();
    write_plot_png(plot, panels);
    s.log->info("curves: {}", plot);
  }
  s.log->info("done: {} steps, last checkpoint {}", s.step, s.last_checkpoint);
  result.checkpoint = s.last_checkpoint;
  return result;
}

}  // namespace facetrain::train
