#include "facetrain/data/loader.h"

#include <spdlog/spdlog.h>
#include <torch/cuda.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "facetrain/config/reader.h"
#include "facetrain/core/error.h"

namespace facetrain::data {
namespace {

constexpr int kSide = 112;
constexpr int64_t kPlane = int64_t{kSide} * kSide;
constexpr int kMaxReplacements = 100;  // on_error skip: attempts to find a usable sample

// ---- deterministic randomness -------------------------------------------------------------------
// Everything random is drawn from counter-based streams (splitmix64 of a hash of the inputs), so
// the values depend only on (seed, epoch, position), never on threads or on the standard
// library's distributions (which differ between implementations).

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t mix(std::initializer_list<uint64_t> values) {
  uint64_t state = 0x5851f42d4c957f2dULL;
  uint64_t out = 0;
  for (uint64_t v : values) {
    state ^= v;
    out = splitmix64(state);
  }
  return out;
}

class Stream {
 public:
  explicit Stream(uint64_t seed) : state_(seed) {}
  uint64_t bits() { return splitmix64(state_); }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(bits() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject).
  uint64_t below(uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(bits()) * n;
    auto low = static_cast<uint64_t>(m);
    if (low < n) {
      uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(bits()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }
  bool chance(double p) { return p > 0 && uniform() < p; }

 private:
  uint64_t state_;
};

// (x / 255 - 0.5) / 0.5 in float32, the same operations as ToTensor + Normalize(0.5, 0.5).
const std::array<float, 256>& normalise_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int v = 0; v < 256; ++v) t[v] = (static_cast<float>(v) / 255.0f - 0.5f) / 0.5f;
    return t;
  }();
  return table;
}

/// Writes BGR pixels as normalised RGB planes, mirrored if `flip`.
void write_chw(const cv::Mat& bgr, bool flip, float* out) {
  const auto& table = normalise_table();
  float* r = out;
  float* g = out + kPlane;
  float* b = out + 2 * kPlane;
  for (int y = 0; y < kSide; ++y) {
    const uint8_t* row = bgr.ptr<uint8_t>(y);
    const int64_t base = int64_t{y} * kSide;
    for (int x = 0; x < kSide; ++x) {
      const uint8_t* px = row + 3 * (flip ? kSide - 1 - x : x);
      b[base + x] = table[px[0]];
      g[base + x] = table[px[1]];
      r[base + x] = table[px[2]];
    }
  }
}

}  // namespace

cv::Mat decode_image(const std::string& bytes, const std::string& where) {
  if (bytes.empty()) throw DataError(where + ": empty image");
  cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
  cv::Mat image;
  try {
    image = cv::imdecode(raw, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    throw DataError(where + ": cannot decode the image (" + std::string(e.what()) + ")");
  }
  if (image.empty()) throw DataError(where + ": cannot decode the image (" + std::to_string(bytes.size()) + " bytes)");
  return image;
}

namespace {

void check_size(const cv::Mat& image, const std::string& where) {
  if (image.cols != kSide || image.rows != kSide || image.type() != CV_8UC3) {
    throw DataError(where + ": the image is " + std::to_string(image.cols) + "x" + std::to_string(image.rows) +
                    ", expected aligned 112x112 faces (see `facetrain data align`)");
  }
}

// ---- augmentations (AdaFace's augmenter.py, torchvision's parameter draws) ----------------------

// RandomResizedCrop.get_params(scale (0.2, 1), ratio (3/4, 4/3)); AdaFace keeps the crop where it
// was and blacks out the rest.
void crop_in_place(cv::Mat& image, Stream& rng) {
  const double area = double{kSide} * kSide;
  const double log_lo = std::log(3.0 / 4.0), log_hi = std::log(4.0 / 3.0);
  int h = kSide, w = kSide, top = 0, left = 0;
  bool found = false;
  for (int attempt = 0; attempt < 10 && !found; ++attempt) {
    double target = area * rng.uniform(0.2, 1.0);
    double aspect = std::exp(rng.uniform(log_lo, log_hi));
    int cw = static_cast<int>(std::lround(std::sqrt(target * aspect)));
    int ch = static_cast<int>(std::lround(std::sqrt(target / aspect)));
    if (cw > 0 && cw <= kSide && ch > 0 && ch <= kSide) {
      top = static_cast<int>(rng.below(static_cast<uint64_t>(kSide - ch + 1)));
      left = static_cast<int>(rng.below(static_cast<uint64_t>(kSide - cw + 1)));
      h = ch;
      w = cw;
      found = true;
    }
  }
  if (!found) return;  // torchvision falls back to the whole (square) image
  cv::Mat out = cv::Mat::zeros(image.size(), image.type());
  image(cv::Rect(left, top, w, h)).copyTo(out(cv::Rect(left, top, w, h)));
  image = out;
}

// Down to side * U(0.2, 1) and back up, each way with one of OpenCV's five interpolations.
void low_resolution(cv::Mat& image, Stream& rng) {
  static constexpr std::array<int, 5> kInterpolations{cv::INTER_NEAREST, cv::INTER_LINEAR, cv::INTER_AREA,
                                                      cv::INTER_CUBIC, cv::INTER_LANCZOS4};
  int small = std::max(1, static_cast<int>(rng.uniform(0.2, 1.0) * kSide));
  int down = kInterpolations[rng.below(kInterpolations.size())];
  int up = kInterpolations[rng.below(kInterpolations.size())];
  cv::Mat reduced;
  cv::resize(image, reduced, cv::Size(small, small), 0, 0, down);
  cv::resize(reduced, image, cv::Size(kSide, kSide), 0, 0, up);
}

// ColorJitter(brightness 0.5, contrast 0.5, saturation 0.5) in a random order, each factor in
// [0.5, 1.5], as PIL's ImageEnhance: blend with black, with the mean gray, with the gray image.
void photometric(cv::Mat& image, Stream& rng) {
  std::array<int, 3> order{0, 1, 2};
  for (int i = 2; i > 0; --i) std::swap(order[static_cast<size_t>(i)], order[rng.below(static_cast<uint64_t>(i + 1))]);
  std::array<double, 3> factor{rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5)};
  for (int op : order) {
    double f = factor[static_cast<size_t>(op)];
    cv::Mat gray;
    if (op == 0) {
      image.convertTo(image, CV_8UC3, f);
    } else if (op == 1) {
      cv::cvtColor(image, gray, cv::COLOR_BGR2GRAY);
      double mean = std::floor(cv::mean(gray)[0] + 0.5);
      image.convertTo(image, CV_8UC3, f, (1.0 - f) * mean);
    } else {
      cv::cvtColor(image, gray, cv::COLOR_BGR2GRAY);
      cv::cvtColor(gray, gray, cv::COLOR_GRAY2BGR);
      cv::addWeighted(image, f, gray, 1.0 - f, 0.0, image);
    }
  }
}

void grayscale(cv::Mat& image) {
  cv::Mat gray;
  cv::cvtColor(image, gray, cv::COLOR_BGR2GRAY);
  cv::cvtColor(gray, image, cv::COLOR_GRAY2BGR);
}

bool any_pixel_augmentation(const AugmentOptions& a) {
  return a.crop > 0 || a.low_res > 0 || a.photometric > 0 || a.grayscale > 0;
}

}  // namespace

void image_to_chw(const cv::Mat& bgr, bool flip, float* out, const std::string& where) {
  check_size(bgr, where);
  write_chw(bgr, flip, out);
}

void decode_to_chw(const std::string& bytes, bool flip, float* out, const std::string& where) {
  image_to_chw(decode_image(bytes, where), flip, out, where);
}

// ---- options ------------------------------------------------------------------------------------

void AugmentOptions::read(config::Section& section) {
  section.read("flip", flip);
  section.read("crop", crop);
  section.read("photometric", photometric);
  section.read("low_res", low_res);
  section.read("grayscale", grayscale);
}

config::OptionProblems AugmentOptions::problems() const {
  config::OptionProblems p;
  config::check_range(p, "crop", crop, 0, 1);
  config::check_range(p, "photometric", photometric, 0, 1);
  config::check_range(p, "low_res", low_res, 0, 1);
  config::check_range(p, "grayscale", grayscale, 0, 1);
  return p;
}

std::string AugmentOptions::describe() const {
  std::string out = std::string("flip=") + (flip ? "true" : "false");
  if (crop > 0) out += ", crop=" + config::fmt(crop);
  if (low_res > 0) out += ", low_res=" + config::fmt(low_res);
  if (photometric > 0) out += ", photometric=" + config::fmt(photometric);
  if (grayscale > 0) out += ", grayscale=" + config::fmt(grayscale);
  return out;
}

void LoaderOptions::read(config::Section& section) {
  section.read("batch_size", batch_size);
  section.read("workers", workers);
  section.read("prefetch", prefetch);
  section.read("shuffle", shuffle);
  section.read("drop_last", drop_last);
  section.read("pin_memory", pin_memory);
  section.read_enum("on_error", on_error, {{"fail", OnError::kFail}, {"skip", OnError::kSkip}});
  if (section.has("augment")) {
    auto augment_section = section.section("augment");
    augment.read(augment_section);
    for (const auto& problem : augment.problems()) augment_section.error(problem.key, problem.message);
    augment_section.finish();
  }
}

config::OptionProblems LoaderOptions::problems() const {
  config::OptionProblems p;
  config::check_positive(p, "batch_size", static_cast<double>(batch_size));
  config::check_positive(p, "workers", static_cast<double>(workers));
  config::check_positive(p, "prefetch", static_cast<double>(prefetch));
  config::check_positive(p, "world_size", static_cast<double>(world_size));
  if (rank < 0 || rank >= world_size) {
    p.push_back(
        {"rank", "must be in [0, world_size = " + std::to_string(world_size) + "), got " + std::to_string(rank)});
  }
  for (auto& problem : augment.problems()) p.push_back({"augment." + problem.key, problem.message});
  return p;
}

std::string LoaderOptions::describe() const {
  std::ostringstream out;
  out << "batch_size=" << batch_size << ", workers=" << workers << ", prefetch=" << prefetch
      << ", shuffle=" << (shuffle ? "true" : "false") << ", drop_last=" << (drop_last ? "true" : "false")
      << ", on_error=" << (on_error == OnError::kSkip ? "skip" : "fail") << ", augment: " << augment.describe();
  if (world_size > 1) out << ", rank " << rank << " of " << world_size;
  return out.str();
}

DataConfig read_data_config(config::Section& data) {
  DataConfig out;
  out.dataset.read(data);
  out.loader.read(data);
  for (const auto& problem : out.dataset.problems()) data.error(problem.key, problem.message);
  for (const auto& problem : out.loader.problems()) {
    if (problem.key.rfind("augment.", 0) != 0) data.error(problem.key, problem.message);  // augment: reported above
  }
  data.finish();
  return out;
}

// ---- the loader ---------------------------------------------------------------------------------

struct Loader::State {
  // Fixed for the loader's life.
  int64_t samples_per_rank = 0;
  int64_t steps = 0;

  // The current epoch; set by start_epoch while no worker runs.
  int64_t epoch = 0;
  std::vector<int64_t> order;  // this rank's indices, padded to steps * batch_size when !drop_last
  bool pin = false;

  std::mutex mutex;
  std::condition_variable ready;  // a batch was finished, or a worker failed
  std::condition_variable room;   // a batch was taken, or stop
  bool stop = false;
  int64_t next_claim = 0;    // next step a worker takes
  int64_t next_deliver = 0;  // next step next() returns
  std::map<int64_t, Batch> done;
  std::exception_ptr failure;
  int64_t failure_step = -1;
  std::vector<std::thread> workers;

  std::atomic<int64_t> skipped{0};

  // Batch tensors are recycled once the consumer has dropped them: a fresh 19 MB tensor per
  // batch costs page faults on first touch that were a third of the loader's time (perf).
  std::mutex pool_mutex;
  std::vector<torch::Tensor> pool;

  torch::Tensor images_tensor(int64_t batch, size_t max_pool) {
    std::lock_guard<std::mutex> lock(pool_mutex);
    for (auto& t : pool) {
      if (t.use_count() == 1) return t;  // only the pool holds it: nobody else can take it back
    }
    auto t = torch::empty({batch, 3, kSide, kSide}, torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(pin));
    if (pool.size() < max_pool) pool.push_back(t);
    return t;
  }
};

Loader::Loader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(std::move(options)), state_(std::make_unique<State>()) {
  if (!dataset_) throw ArgumentError("Loader: no dataset");
  config::throw_if_invalid("data loader", options_.problems());
  const int64_t n = dataset_->size();
  if (n < options_.world_size) {
    throw ArgumentError("Loader: " + dataset_->describe() + " has fewer samples than the " +
                        std::to_string(options_.world_size) + " ranks");
  }
  const int64_t global = options_.batch_size * options_.world_size;
  state_->steps = options_.drop_last ? n / global : (n + global - 1) / global;
  state_->samples_per_rank = state_->steps * options_.batch_size;
  if (state_->steps == 0) {
    throw ArgumentError("Loader: the global batch (batch_size " + std::to_string(options_.batch_size) + " x " +
                        std::to_string(options_.world_size) + " ranks = " + std::to_string(global) +
                        ") is larger than the " + std::to_string(n) +
                        " samples of an epoch, and drop_last leaves no batch (lower data.batch_size, or set "
                        "data.drop_last: false)");
  }
  state_->pin = options_.pin_memory && torch::cuda::is_available();
}

Loader::~Loader() {
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->stop = true;
  lock.unlock();
  state_->room.notify_all();
  for (auto& worker : state_->workers) worker.join();
}

int64_t Loader::samples_per_rank() const { return state_->samples_per_rank; }
int64_t Loader::steps_per_epoch() const { return state_->steps; }
int64_t Loader::skipped() const { return state_->skipped.load(); }

std::vector<int64_t> Loader::epoch_indices(int64_t epoch) const {
  // A permutation of the dataset (or its order), padded by repeating its start to a whole number
  // of global batches (batch_size x world_size); global batch k is dealt to the ranks in order,
  // rank r taking its positions [k*G + r*b, k*G + (r+1)*b). The global batches are thus the same
  // whatever the world size.
  const int64_t n = dataset_->size();
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = i;
  if (options_.shuffle) {
    Stream rng(mix({options_.seed, static_cast<uint64_t>(epoch), 0x5348554646ULL}));  // "SHUFF"
    for (int64_t i = n - 1; i > 0; --i) {
      auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i + 1)));
      std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
    }
  }
  std::vector<int64_t> mine;
  mine.reserve(static_cast<size_t>(state_->samples_per_rank));
  for (int64_t k = 0; k < state_->samples_per_rank; ++k) {
    mine.push_back(perm[static_cast<size_t>(global_position(k) % n)]);
  }
  return mine;
}

int64_t Loader::global_position(int64_t position) const {
  const int64_t b = options_.batch_size;
  return (position / b) * b * options_.world_size + options_.rank * b + position % b;
}

void Loader::start_epoch(int64_t epoch, int64_t step) {
  if (epoch < 0) throw ArgumentError("Loader::start_epoch: epoch must be >= 0, got " + std::to_string(epoch));
  if (step < 0 || step > state_->steps) {
    throw ArgumentError("Loader::start_epoch: step " + std::to_string(step) + " is outside [0, " +
                        std::to_string(state_->steps) + "] (steps per epoch)");
  }
  State& s = *state_;
  {  // Stop the previous epoch's workers.
    std::unique_lock<std::mutex> lock(s.mutex);
    s.stop = true;
  }
  s.room.notify_all();
  for (auto& worker : s.workers) worker.join();
  s.workers.clear();

  s.epoch = epoch;
  s.order = epoch_indices(epoch);
  const auto needed = static_cast<size_t>(s.steps * options_.batch_size);
  for (size_t k = 0; s.order.size() < needed; ++k) s.order.push_back(s.order[k]);  // pad the last batch
  s.stop = false;
  s.next_claim = step;
  s.next_deliver = step;
  s.done.clear();
  s.failure = nullptr;
  s.failure_step = -1;

  auto work = [this] {
    State& st = *state_;
    for (;;) {
      int64_t step_to_make;
      {
        std::unique_lock<std::mutex> lock(st.mutex);
        st.room.wait(lock, [&] {
          return st.stop || st.next_claim >= st.steps || st.next_claim < st.next_deliver + options_.prefetch;
        });
        if (st.stop || st.next_claim >= st.steps || st.failure) return;
        step_to_make = st.next_claim++;
      }
      try {
        Batch batch = make_batch(step_to_make);
        std::lock_guard<std::mutex> lock(st.mutex);
        st.done.emplace(step_to_make, std::move(batch));
      } catch (...) {
        std::lock_guard<std::mutex> lock(st.mutex);
        if (!st.failure || step_to_make < st.failure_step) {
          st.failure = std::current_exception();
          st.failure_step = step_to_make;
        }
      }
      st.ready.notify_all();
    }
  };
  const int64_t threads = std::min(options_.workers, std::max<int64_t>(1, s.steps - step));
  for (int64_t i = 0; i < threads && step < s.steps; ++i) s.workers.emplace_back(work);
}

std::optional<Batch> Loader::next() {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mutex);
  if (s.next_deliver >= s.steps) return std::nullopt;
  if (s.workers.empty()) throw ArgumentError("Loader::next: call start_epoch first");
  const int64_t step = s.next_deliver;
  s.ready.wait(lock, [&] { return s.done.count(step) > 0 || (s.failure && s.failure_step <= step); });
  auto it = s.done.find(step);
  if (it == s.done.end()) std::rethrow_exception(s.failure);
  Batch batch = std::move(it->second);
  s.done.erase(it);
  ++s.next_deliver;
  lock.unlock();
  s.room.notify_all();
  return batch;
}

LoaderPosition Loader::position() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->next_deliver >= state_->steps) return {state_->epoch + 1, 0};
  return {state_->epoch, state_->next_deliver};
}

Batch Loader::make_batch(int64_t step) const {
  const State& s = *state_;
  const int64_t b = options_.batch_size;
  Batch batch;
  batch.epoch = s.epoch;
  batch.step = step;
  batch.images = state_->images_tensor(b, static_cast<size_t>(options_.workers + options_.prefetch + 2));
  batch.labels = torch::empty({b}, torch::kInt64);
  batch.indices.resize(static_cast<size_t>(b));
  batch.valid = std::clamp<int64_t>(dataset_->size() - global_position(step * b), 0, b);
  float* images = batch.images.data_ptr<float>();
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  for (int64_t row = 0; row < b; ++row) {
    const int64_t position = step * b + row;
    int64_t index = s.order[static_cast<size_t>(position)];
    // Keyed by the position in the epoch's global order: the same augmentation whatever the world
    // size. (The 0 once held the rank; keeping it keeps one-process runs' augmentations unchanged.)
    const uint64_t key = mix(
        {options_.seed, static_cast<uint64_t>(s.epoch), uint64_t{0}, static_cast<uint64_t>(global_position(position))});
    for (int attempt = 0;; ++attempt) {
      try {
        labels[row] = load_sample(index, key, images + row * 3 * kPlane);
        break;
      } catch (const DataError& e) {
        if (options_.on_error == OnError::kFail) throw;
        int64_t count = ++state_->skipped;
        if (count <= 20 || count % 1000 == 0) {
          spdlog::warn("skipping a sample ({} so far, data.on_error: skip): {}", count, e.what());
        }
        if (attempt + 1 >= kMaxReplacements) {
          throw DataError("data.on_error skip: " + std::to_string(kMaxReplacements) +
                          " samples in a row could not be used, the last: " + std::string(e.what()));
        }
        // A replacement drawn from the sample's own stream: the same whatever the threads.
        Stream pick(mix({key, static_cast<uint64_t>(attempt), 0x534b4950ULL}));  // "SKIP"
        index = static_cast<int64_t>(pick.below(static_cast<uint64_t>(dataset_->size())));
      }
    }
    batch.indices[static_cast<size_t>(row)] = index;
  }
  return batch;
}

int64_t Loader::load_sample(int64_t index, uint64_t key, float* out) const {
  Sample sample = dataset_->get(index);
  const AugmentOptions& a = options_.augment;
  Stream rng(key);
  const bool flip = a.flip && rng.uniform() < 0.5;
  const bool crop = rng.chance(a.crop);
  const bool low_res = rng.chance(a.low_res);
  const bool jitter = rng.chance(a.photometric);
  const bool gray = rng.chance(a.grayscale);
  if (!sample.encoded.empty() && !any_pixel_augmentation(a)) {
    decode_to_chw(sample.encoded, flip, out, dataset_->where(index));  // the fast path
    return sample.label;
  }
  cv::Mat image = sample.encoded.empty() ? sample.pixels : decode_image(sample.encoded, dataset_->where(index));
  check_size(image, dataset_->where(index));
  if (crop || low_res || jitter || gray) {
    image = image.clone();
    if (crop) crop_in_place(image, rng);
    if (low_res) low_resolution(image, rng);
    if (jitter) photometric(image, rng);
    if (gray) grayscale(image);
  }
  write_chw(image, flip, out);
  return sample.label;
}

}  // namespace facetrain::data
