#include "facetrain/train/recipe.h"

#include <filesystem>
#include <sstream>

namespace facetrain::train {

namespace fs = std::filesystem;
using config::check_positive;
using config::check_range;
using config::fmt;
using config::OptionProblems;

const char* amp_name(Amp amp) {
  switch (amp) {
    case Amp::kNone:
      return "none";
    case Amp::kBf16:
      return "bf16";
    case Amp::kFp16:
      return "fp16";
  }
  return "?";
}

namespace {

// Reads an integer >= 0 that is stored unsigned (seeds).
void read_seed(config::Section& s, const char* key, uint64_t& out) {
  int64_t v = static_cast<int64_t>(out);
  if (!s.read(key, v)) return;
  if (v < 0) {
    s.error(key, "must be >= 0, got " + std::to_string(v));
  } else {
    out = static_cast<uint64_t>(v);
  }
}

void check_min(OptionProblems& p, const char* key, int64_t v, int64_t lo) {
  if (v < lo) p.push_back({key, "must be >= " + std::to_string(lo) + ", got " + std::to_string(v)});
}

void report(config::Section& s, const OptionProblems& problems) {
  for (const auto& problem : problems) s.error(problem.key, problem.message);
}

bool valid_device(const std::string& d) {
  if (d == "cpu" || d == "cuda" || d == "auto") return true;
  if (d.rfind("cuda:", 0) != 0 || d.size() == 5) return false;
  return d.find_first_not_of("0123456789", 5) == std::string::npos;
}

// "{output}" -> output_dir, everywhere in `path`.
std::string substitute(std::string path, const std::string& output_dir) {
  const std::string key = "{output}";
  for (size_t at = path.find(key); at != std::string::npos; at = path.find(key, at + output_dir.size())) {
    path.replace(at, key.size(), output_dir);
  }
  return path;
}

// The folder verification targets named by a bare name live in: data.path, or its folder when
// data.path is a .rec file.
std::string data_folder(const data::DatasetOptions& d) {
  fs::path p(d.path);
  if (p.extension() == ".rec" || d.type == "list") return p.parent_path().string();
  return p.string();
}

}  // namespace

// --- train --------------------------------------------------------------------------------------

void TrainOptions::read(config::Section& s) {
  s.read("max_steps", max_steps);
  s.read("epochs", epochs);
  s.read("batch_size", batch_size);
  read_seed(s, "seed", seed);
  s.read("device", device);
  s.read_enum("amp", amp, {{"none", Amp::kNone}, {"bf16", Amp::kBf16}, {"fp16", Amp::kFp16}});
  s.read("grad_accum", grad_accum);
  s.read("clip_grad_norm", clip_grad_norm);
  s.read("max_bad_steps", max_bad_steps);
  s.read("cudnn_benchmark", cudnn_benchmark);
}

OptionProblems TrainOptions::problems() const {
  OptionProblems p;
  check_min(p, "max_steps", max_steps, 0);
  if (max_steps == 0) check_min(p, "epochs", epochs, 1);
  check_min(p, "batch_size", batch_size, 1);
  if (!valid_device(device))
    p.push_back({"device", "unknown device '" + device + "'; expected cpu, cuda, cuda:N or auto"});
  check_min(p, "grad_accum", grad_accum, 1);
  if (!(clip_grad_norm >= 0)) p.push_back({"clip_grad_norm", "must be >= 0 (0: off), got " + fmt(clip_grad_norm)});
  check_min(p, "max_bad_steps", max_bad_steps, 1);
  return p;
}

std::string TrainOptions::describe() const {
  std::ostringstream o;
  o << "max_steps=" << max_steps << ", epochs=" << epochs << ", batch_size=" << batch_size << ", seed=" << seed
    << ", device=" << device << ", amp=" << amp_name(amp) << ", grad_accum=" << grad_accum
    << ", clip_grad_norm=" << fmt(clip_grad_norm) << ", max_bad_steps=" << max_bad_steps
    << ", cudnn_benchmark=" << (cudnn_benchmark ? "true" : "false");
  return o.str();
}

// --- optimizer ----------------------------------------------------------------------------------

void OptimizerOptions::read(config::Section& s) {
  s.read_enum("type", type, {{"sgd", OptimizerType::kSgd}, {"adamw", OptimizerType::kAdamW}});
  s.read("lr", lr);
  s.read("momentum", momentum);
  s.read("nesterov", nesterov);
  s.read("weight_decay", weight_decay);
  std::vector<double> betas;
  if (s.read("betas", betas)) {
    if (betas.size() != 2) {
      s.error("betas", "expected two numbers [beta1, beta2], got " + std::to_string(betas.size()));
    } else {
      beta1 = betas[0];
      beta2 = betas[1];
    }
  }
  s.read("eps", eps);
  s.read("no_decay_bn_bias", no_decay_bn_bias);
  s.read("lr_reference_batch", lr_reference_batch);
  auto head = s.section("head");
  double v = 0;
  if (head.read("lr", v)) head_lr = v;
  if (head.read("weight_decay", v)) head_weight_decay = v;
  if (head_lr && !(*head_lr > 0)) head.error("lr", "must be > 0, got " + fmt(*head_lr));
  if (head_weight_decay && !(*head_weight_decay >= 0))
    head.error("weight_decay", "must be >= 0, got " + fmt(*head_weight_decay));
  head.finish();
}

OptionProblems OptimizerOptions::problems() const {
  OptionProblems p;
  check_positive(p, "lr", lr);
  check_range(p, "momentum", momentum, 0, 1, "0", "1)");
  if (momentum >= 1) p.push_back({"momentum", "must be < 1, got " + fmt(momentum)});
  if (nesterov && momentum <= 0) p.push_back({"nesterov", "needs momentum > 0"});
  if (!(weight_decay >= 0)) p.push_back({"weight_decay", "must be >= 0, got " + fmt(weight_decay)});
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
    p.push_back({"betas", "both must be in [0, 1), got [" + fmt(beta1) + ", " + fmt(beta2) + "]"});
  check_positive(p, "eps", eps);
  check_min(p, "lr_reference_batch", lr_reference_batch, 0);
  return p;
}

std::string OptimizerOptions::describe() const {
  std::ostringstream o;
  if (type == OptimizerType::kSgd) {
    o << "sgd: lr=" << fmt(lr) << ", momentum=" << fmt(momentum) << ", nesterov=" << (nesterov ? "true" : "false");
  } else {
    o << "adamw: lr=" << fmt(lr) << ", betas=[" << fmt(beta1) << ", " << fmt(beta2) << "], eps=" << fmt(eps);
  }
  o << ", weight_decay=" << fmt(weight_decay) << ", no_decay_bn_bias=" << (no_decay_bn_bias ? "true" : "false");
  if (lr_reference_batch > 0) o << ", lr_reference_batch=" << lr_reference_batch;
  if (head_lr) o << ", head.lr=" << fmt(*head_lr);
  if (head_weight_decay) o << ", head.weight_decay=" << fmt(*head_weight_decay);
  return o.str();
}

// --- schedule -----------------------------------------------------------------------------------

void ScheduleOptions::read(config::Section& s) {
  s.read_enum("type", type,
              {{"poly", ScheduleType::kPoly},
               {"cosine", ScheduleType::kCosine},
               {"step", ScheduleType::kStep},
               {"constant", ScheduleType::kConstant}});
  s.read_enum("unit", unit, {{"steps", ScheduleUnit::kSteps}, {"epochs", ScheduleUnit::kEpochs}});
  s.read("warmup", warmup);
  s.read("power", power);
  s.read("min_lr", min_lr);
  s.read("milestones", milestones);
  s.read("gamma", gamma);
}

OptionProblems ScheduleOptions::problems() const {
  OptionProblems p;
  if (!(warmup >= 0)) p.push_back({"warmup", "must be >= 0, got " + fmt(warmup)});
  check_positive(p, "power", power);
  if (!(min_lr >= 0)) p.push_back({"min_lr", "must be >= 0, got " + fmt(min_lr)});
  for (size_t i = 0; i < milestones.size(); ++i) {
    if (!(milestones[i] > 0) || (i > 0 && !(milestones[i] > milestones[i - 1]))) {
      p.push_back({"milestones", "must be positive and increasing"});
      break;
    }
  }
  if (type == ScheduleType::kStep && milestones.empty()) p.push_back({"milestones", "schedule.type step needs them"});
  check_positive(p, "gamma", gamma);
  return p;
}

std::string ScheduleOptions::describe() const {
  static const char* types[] = {"poly", "cosine", "step", "constant"};
  std::ostringstream o;
  o << types[static_cast<int>(type)] << " by " << (unit == ScheduleUnit::kSteps ? "steps" : "epochs")
    << ", warmup=" << fmt(warmup);
  if (type == ScheduleType::kPoly) o << ", power=" << fmt(power);
  if (type == ScheduleType::kPoly || type == ScheduleType::kCosine) o << ", min_lr=" << fmt(min_lr);
  if (type == ScheduleType::kStep) {
    o << ", milestones=[";
    for (size_t i = 0; i < milestones.size(); ++i) o << (i ? ", " : "") << fmt(milestones[i]);
    o << "], gamma=" << fmt(gamma);
  }
  return o.str();
}

// --- eval, checkpoint, log ----------------------------------------------------------------------

void EvalOptions::read(config::Section& s) {
  s.read("targets", targets);
  s.read("every_steps", every_steps);
  s.read("batch_size", batch_size);
}

OptionProblems EvalOptions::problems() const {
  OptionProblems p;
  check_min(p, "every_steps", every_steps, 0);
  check_min(p, "batch_size", batch_size, 1);
  return p;
}

std::string EvalOptions::describe() const {
  std::ostringstream o;
  o << "targets=[";
  for (size_t i = 0; i < targets.size(); ++i) o << (i ? ", " : "") << targets[i];
  o << "], every_steps=" << every_steps << ", batch_size=" << batch_size;
  return o.str();
}

void CheckpointOptions::read(config::Section& s) {
  s.read("every_steps", every_steps);
  s.read("keep_last", keep_last);
}

OptionProblems CheckpointOptions::problems() const {
  OptionProblems p;
  check_min(p, "every_steps", every_steps, 0);
  check_min(p, "keep_last", keep_last, 0);
  return p;
}

std::string CheckpointOptions::describe() const {
  return "every_steps=" + std::to_string(every_steps) + ", keep_last=" + std::to_string(keep_last);
}

void LogOptions::read(config::Section& s) {
  s.read("every_steps", every_steps);
  s.read("tensorboard", tensorboard);
}

OptionProblems LogOptions::problems() const {
  OptionProblems p;
  check_min(p, "every_steps", every_steps, 0);
  return p;
}

std::string LogOptions::describe() const {
  return "every_steps=" + std::to_string(every_steps) + ", tensorboard=" + (tensorboard ? "true" : "false");
}

void DistOptions::read(config::Section& s) {
  s.read("timeout_s", timeout_s);
  s.read("bucket_mb", bucket_mb);
  s.read_enum("grad_compression", grad_compression,
              {{"none", GradCompression::kNone}, {"fp16", GradCompression::kFp16}, {"bf16", GradCompression::kBf16}});
}

OptionProblems DistOptions::problems() const {
  OptionProblems p;
  if (!(timeout_s >= 1)) p.push_back({"timeout_s", "must be at least 1 (seconds), got " + fmt(timeout_s)});
  if (!(bucket_mb > 0)) p.push_back({"bucket_mb", "must be > 0, got " + fmt(bucket_mb)});
  return p;
}

std::string DistOptions::describe() const {
  const char* compression = grad_compression == GradCompression::kFp16   ? "fp16"
                            : grad_compression == GradCompression::kBf16 ? "bf16"
                                                                         : "none";
  return "timeout_s=" + fmt(timeout_s) + ", bucket_mb=" + fmt(bucket_mb) + ", grad_compression=" + compression;
}

// --- the recipe ---------------------------------------------------------------------------------

Recipe read_recipe(const config::Document& doc, const std::string& output_dir) {
  config::Diagnostics diag;
  config::Section root(doc, diag);
  Recipe r;
  r.source = doc.name();
  r.yaml = doc.dump();

  auto model = root.section("model");
  r.model = backbones::read_backbone(model);
  auto head = root.section("head");
  // Partial FC is the trainer's, for every head: read here, before the head's own keys.
  if (head.read("sample_rate", r.sample_rate) && !(r.sample_rate > 0 && r.sample_rate <= 1))
    head.error("sample_rate", "must be in (0, 1] (the share of each rank's classes in a step), got " +
                                  fmt(r.sample_rate));
  if (head.read("chunk_size", r.chunk_size) && r.chunk_size < 0)
    head.error("chunk_size", "must be >= 0 (classes per block; 0: all at once), got " + std::to_string(r.chunk_size));
  r.head = heads::read_head(head);

  auto train = root.section("train");
  r.train.read(train);
  report(train, r.train.problems());
  train.finish();

  auto data = root.section("data");
  if (data.has("batch_size")) {
    data.allow("batch_size");
    data.error("batch_size", "a training recipe sets the batch size as train.batch_size (per process)");
  }
  auto synth = data.section("synthesize");
  if (synth.node().IsDefined() && !synth.node().IsNull()) {
    data::SynthDatasetOptions s;
    s.read(synth);
    synth.read("val_identities", s.val_identities);
    synth.read("val_pairs", s.val_pairs);
    s.out_dir = "-";  // set below from data.path
    for (const auto& problem : s.problems()) {
      if (problem.key != "threads") synth.error(problem.key, problem.message);
    }
    synth.finish();
    r.synthesize = s;
  }
  r.data = data::read_data_config(data);
  r.data.dataset.path = substitute(r.data.dataset.path, output_dir);
  r.data.dataset.index = substitute(r.data.dataset.index, output_dir);
  r.data.loader.batch_size = r.train.batch_size;
  r.data.loader.seed = r.train.seed;
  if (r.synthesize) {
    if (r.data.dataset.type != "recordio") data.error("synthesize", "needs data.type recordio");
    r.synthesize->out_dir = r.data.dataset.path;
  } else if (!r.data.dataset.path.empty() && r.data.dataset.type != "synthetic") {
    std::error_code ec;
    if (!fs::exists(r.data.dataset.path, ec)) data.error("path", "'" + r.data.dataset.path + "' does not exist");
  }

  auto optimizer = root.section("optimizer");
  r.optimizer.read(optimizer);
  report(optimizer, r.optimizer.problems());
  optimizer.finish();

  auto schedule = root.section("schedule");
  r.schedule.read(schedule);
  report(schedule, r.schedule.problems());
  schedule.finish();

  auto eval = root.section("eval");
  r.eval.read(eval);
  report(eval, r.eval.problems());
  for (auto& target : r.eval.targets) {
    target = substitute(target, output_dir);
    const bool bare = target.find('/') == std::string::npos && fs::path(target).extension() != ".bin";
    if (bare) target = (fs::path(data_folder(r.data.dataset)) / (target + ".bin")).string();
    std::error_code ec;
    const bool made_later = r.synthesize && fs::path(target).parent_path() == fs::path(r.data.dataset.path);
    if (!made_later && !fs::exists(target, ec)) eval.error("targets", "'" + target + "' does not exist");
  }
  eval.finish();

  auto checkpoint = root.section("checkpoint");
  r.checkpoint.read(checkpoint);
  report(checkpoint, r.checkpoint.problems());
  checkpoint.finish();

  auto log = root.section("log");
  r.log.read(log);
  report(log, r.log.problems());
  log.finish();

  auto dist = root.section("dist");
  r.dist.read(dist);
  report(dist, r.dist.problems());
  dist.finish();

  root.finish();
  diag.throw_if_any();
  return r;
}

}  // namespace facetrain::train
