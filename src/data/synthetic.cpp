#include "facetrain/data/synthetic.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <unistd.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <system_error>
#include <thread>

#include "facetrain/config/reader.h"
#include "facetrain/core/error.h"
#include "facetrain/core/files.h"
#include "facetrain/data/recordio.h"

namespace facetrain::data {
namespace {

// =============================================================================================
// Counter-based random numbers. Every draw is a pure function of (seed, identity, variant,
// stream, position): no global or thread-local state, so images are the same on any thread.

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;
constexpr double kPi = 3.14159265358979323846;

uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

enum Stream : uint64_t {
  kStreamIdentity = 1,  // the identity's parameter vector
  kStreamMarks = 2,     // identity-stable details: freckle positions, hair strands
  kStreamNuisance = 3,  // per-image pose, expression, lighting, background, occlusion, quality
  kStreamClutter = 4,   // per-image background clutter
  kStreamNoise = 5,     // per-image sensor noise
  kStreamPairs = 6,     // validation pair plan
};

class Rng {
 public:
  Rng(uint64_t seed, uint64_t identity, uint64_t variant, uint64_t stream) {
    uint64_t h = mix64(seed + kGolden);
    h = mix64(h ^ (identity + 0x632be59bd9b4e019ull));
    h = mix64(h ^ (variant + 0x8cb92ba72f3d8dd7ull));
    h = mix64(h ^ (stream + 0x4f1bbcdcbfa53e0bull));
    state_ = h;
  }
  uint64_t next() {
    state_ += kGolden;
    return mix64(state_);
  }
  /// Uniform in [0, 1), 53 bits.
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform in [-amplitude, amplitude).
  double symmetric(double amplitude) { return amplitude * (2 * uniform() - 1); }
  bool chance(double p) { return uniform() < p; }
  int below(int n) { return static_cast<int>(uniform() * n); }
  /// Approximately standard normal (Irwin-Hall of 4 uniforms, variance 1): cheap, and free of
  /// transcendental functions whose last bits could differ between C libraries.
  double normal() { return (uniform() + uniform() + uniform() + uniform() - 2.0) * 1.7320508075688772; }

 private:
  uint64_t state_;
};

// =============================================================================================
// The identity parameter vector. Every entry is drawn uniformly from [0, 1) by the identity
// stream; the ranges below are what 0 and 1 map to (all distances in pixels of the 112x112
// output, before the pose warp). The ranges are deliberately narrow: every face shares the
// ArcFace-like template (eyes near (38, 52) and (74, 52), nose tip near (56, 72), mouth near
// y = 92), similar skin and hair colours, and identities differ in the combination of many
// small details.
enum Param : int {
  kFaceWidth,    // half width of the face outline, 36.5 .. 41.5
  kFaceHeight,   // half height of the face outline, 47 .. 53
  kJaw,          // narrowing of the lower face towards the chin, 0 (square) .. 1 (pointed)
  kCheeks,       // fullness of the cheeks (super-ellipse exponent of the sides)
  kSkinTone,     // skin lightness, from tan to fair (BGR (110,140,182) .. (168,192,228))
  kSkinHue,      // skin undertone, cool (more blue) .. warm (more red), +-9 levels
  kEyeHeight,    // eye centre y, 49.5 .. 54.5
  kEyeSpacing,   // distance between the eye centres, 32.5 .. 39.5
  kEyeSize,      // half width of an eye, 6 .. 8.5
  kEyeShape,     // eye opening: half height = half width * (0.36 .. 0.58)
  kEyeTilt,      // outer corners down (-7 deg) .. up (+7 deg)
  kIrisHue,      // iris colour along dark brown, brown, hazel, green, blue, grey
  kIrisDark,     // iris darkness, x 0.6 .. 1.1
  kBrowThick,    // eyebrow thickness, 1.6 .. 4.0
  kBrowAngle,    // outer end of the brow lower (-3.5) .. higher (+3.5) than the inner end
  kBrowHeight,   // gap between the eye centre and the brow, 7.5 .. 11.5
  kBrowArch,     // lift of the brow's middle, 0.4 .. 3.0
  kBrowLength,   // outer reach of the brow, 1.2 .. 1.55 eye half widths
  kNoseLength,   // nose tip y, 67.5 .. 76
  kNoseWidth,    // distance between the nostrils, 7.5 .. 12.5
  kNoseTip,      // size of the (lighter) nose tip, 0 .. 1
  kMouthWidth,   // half width of the mouth, 8.5 .. 12.5
  kLipThick,     // upper lip thickness, 1.5 .. 3.4 (lower lip x 1.35)
  kMouthCurve,   // corners down (-2 px) .. up (+2 px)
  kMouthHeight,  // mouth line y, 88.5 .. 94.5
  kLipColour,    // lips from skin-like to red
  kHairDark,     // hair from black to mid brown (mostly dark)
  kHairHue,      // hair undertone, neutral .. auburn
  kHairline,     // hairline y at the centre, 17 .. 30
  kHairStyle,    // one of 5 styles: short, fringe, side parting, long, receding
  kHairVolume,   // how far the hair rises above the head, 0 .. 1
  kEarSize,      // ear size, 0 .. 1
  kBeard,        // stubble above 0.75 (darker jaw and upper lip), none below
  kMoles,        // number of moles: 0, 1, 1, 2 or 3 (by fifths)
  kMole1X,       // mole positions on the face, x across the face width and y over 40 .. 98
  kMole1Y,
  kMole2X,
  kMole2Y,
  kMole3X,
  kMole3Y,
  kFreckles,  // freckles on the cheeks and nose: 0 .. 30, mostly few (cubic)
  kParamCount,
};

constexpr int kSize = 112;  // output side
constexpr int kScale = 2;   // faces are drawn at 224x224 and averaged down
constexpr int kCanvas = kSize * kScale;
constexpr int kShift = 4;  // sub-pixel bits for OpenCV drawing
constexpr double kFix = kScale * (1 << kShift);

double lerp(double a, double b, double t) { return a + (b - a) * t; }
double clamp01(double v) { return std::min(1.0, std::max(0.0, v)); }
/// Rounds to the nearest byte value, saturating (halves round up).
uint8_t to_byte(double v) { return static_cast<uint8_t>(std::min(255.0, std::max(0.0, v)) + 0.5); }

using Colour = cv::Vec3d;  // BGR, 0..255

Colour mix(const Colour& a, const Colour& b, double t) { return a + (b - a) * t; }
Colour scale(const Colour& c, double f) { return c * f; }
cv::Scalar scalar(const Colour& c) { return cv::Scalar(c[0], c[1], c[2]); }

// --- drawing into 8-bit coverage masks, then compositing them onto the canvas ---------------

/// An 8-bit coverage mask over a window of the canvas. Shapes are given in output pixels (the
/// 112x112 frame) and drawn anti-aliased with sub-pixel precision; only the window is stored and
/// touched, which keeps an image at about a millisecond.
class Mask {
 public:
  /// The window [x0, x1) x [y0, y1), in output pixels, clipped to the canvas.
  Mask(double x0, double y0, double x1, double y1) {
    const int a = std::clamp(static_cast<int>(std::floor(x0 * kScale)), 0, kCanvas);
    const int b = std::clamp(static_cast<int>(std::floor(y0 * kScale)), 0, kCanvas);
    const int c = std::clamp(static_cast<int>(std::ceil(x1 * kScale)), 0, kCanvas);
    const int d = std::clamp(static_cast<int>(std::ceil(y1 * kScale)), 0, kCanvas);
    roi_ = cv::Rect(a, b, std::max(0, c - a), std::max(0, d - b));
    mat_ = cv::Mat::zeros(roi_.height, roi_.width, CV_8UC1);
  }
  /// An empty mask over the same window.
  Mask like() const { return Mask(*this, 0); }

  bool empty() const { return roi_.area() == 0; }
  const cv::Rect& roi() const { return roi_; }
  const cv::Mat& mat() const { return mat_; }

  void ellipse(double cx, double cy, double ax, double ay, double angle, int value = 255) {
    if (!empty()) {
      cv::ellipse(mat_, at(cx, cy), axes(ax, ay), angle, 0, 360, cv::Scalar(value), cv::FILLED, cv::LINE_AA, kShift);
    }
  }
  /// An arc of the ellipse from `start` to `end` degrees, `thickness` canvas pixels wide.
  void arc(double cx, double cy, double ax, double ay, double angle, double start, double end, int thickness,
           int value = 255) {
    if (!empty()) {
      cv::ellipse(mat_, at(cx, cy), axes(ax, ay), angle, start, end, cv::Scalar(value), thickness, cv::LINE_AA, kShift);
    }
  }
  void poly(const std::vector<cv::Point2d>& points, int value = 255) {
    if (empty()) return;
    std::vector<cv::Point> p;
    p.reserve(points.size());
    for (const auto& q : points) p.push_back(at(q.x, q.y));
    const cv::Point* data = p.data();
    const int n = static_cast<int>(p.size());
    cv::fillPoly(mat_, &data, &n, 1, cv::Scalar(value), cv::LINE_AA, kShift);
  }
  /// A polyline `width` output pixels wide (at least one canvas pixel).
  void line(const std::vector<cv::Point2d>& points, double width, int value = 255) {
    if (empty()) return;
    std::vector<cv::Point> p;
    for (const auto& q : points) p.push_back(at(q.x, q.y));
    const int thickness = std::max(1, static_cast<int>(std::lround(width * kScale)));
    cv::polylines(mat_, p, false, cv::Scalar(value), thickness, cv::LINE_AA, kShift);
  }
  void circle(double cx, double cy, double r, int value = 255) {
    if (!empty()) {
      cv::circle(mat_, at(cx, cy), static_cast<int>(std::lround(std::max(r, 0.05) * kFix)), cv::Scalar(value),
                 cv::FILLED, cv::LINE_AA, kShift);
    }
  }
  /// Softens the mask by a Gaussian of `sigma` output pixels (OpenCV's 8-bit Gaussian is
  /// bit-exact); the window should leave room for it.
  void soften(double sigma) {
    if (!empty() && sigma > 0) {
      cv::GaussianBlur(mat_, mat_, cv::Size(0, 0), sigma * kScale, sigma * kScale, cv::BORDER_REPLICATE);
    }
  }
  /// Keeps the coverage inside `other` (same window).
  void intersect(const Mask& other) {
    if (!empty()) cv::min(mat_, other.mat_, mat_);
  }
  /// Removes the coverage of `other` (same window).
  void subtract(const Mask& other) {
    if (!empty()) cv::subtract(mat_, other.mat_, mat_);
  }

 private:
  Mask(const Mask& other, int) : roi_(other.roi_), mat_(cv::Mat::zeros(other.roi_.height, other.roi_.width, CV_8UC1)) {}
  cv::Point at(double x, double y) const {
    return {static_cast<int>(std::lround(x * kFix)) - (roi_.x << kShift),
            static_cast<int>(std::lround(y * kFix)) - (roi_.y << kShift)};
  }
  static cv::Size axes(double ax, double ay) {
    return {static_cast<int>(std::lround(std::max(ax, 0.05) * kFix)),
            static_cast<int>(std::lround(std::max(ay, 0.05) * kFix))};
  }

  cv::Rect roi_;
  cv::Mat mat_;
};

/// canvas = canvas + (colour - canvas) * coverage * opacity / 255, in integer arithmetic.
void paint(cv::Mat& canvas, const Mask& mask, const Colour& colour, int opacity = 255) {
  int c[3];
  for (int k = 0; k < 3; ++k) c[k] = std::clamp(static_cast<int>(std::lround(colour[k])), 0, 255);
  const cv::Rect& r = mask.roi();
  for (int y = 0; y < r.height; ++y) {
    const uint8_t* m = mask.mat().ptr<uint8_t>(y);
    uint8_t* p = canvas.ptr<uint8_t>(r.y + y) + 3 * r.x;
    for (int x = 0; x < r.width; ++x, p += 3) {
      if (m[x] == 0) continue;
      const int a = (m[x] * opacity + 127) / 255;
      for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>((p[k] * (255 - a) + c[k] * a + 127) / 255);
    }
  }
}
/// Multiplies the canvas by (1 + gain * coverage / 255) (gain < 0 darkens).
void shade(cv::Mat& canvas, const Mask& mask, double gain) {
  const int g = static_cast<int>(std::lround(gain * 256));
  const cv::Rect& r = mask.roi();
  for (int y = 0; y < r.height; ++y) {
    const uint8_t* m = mask.mat().ptr<uint8_t>(y);
    uint8_t* p = canvas.ptr<uint8_t>(r.y + y) + 3 * r.x;
    for (int x = 0; x < r.width; ++x, p += 3) {
      if (m[x] == 0) continue;
      const int f = 65280 + g * m[x];  // 256 * 255 * (1 + gain * m / 255)
      for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(std::clamp((p[k] * f + 32640) / 65280, 0, 255));
    }
  }
}

// =============================================================================================
// Per-image nuisance: a pure function of (seed, identity, variant).

struct Nuisance {
  // pose-like changes inside the drawing
  double yaw, pitch;       // [-1, 1]: features shift sideways / vertically, near side widens
  double smile, eye_open;  // expression
  double brow_raise, gaze_x, gaze_y;
  // scene
  Colour bg1, bg2;
  double bg_angle, bg_blur;
  Colour shirt;
  double shirt_dy;
  int clutter;
  bool glasses;
  Colour glasses_colour;
  double light_side;  // -1 / +1: which side of the nose is shaded
  // geometric warp (applied to the drawn picture)
  double angle_deg, zoom, aspect, shear, persp_x, persp_y, shift_x, shift_y;
  // photometric
  double contrast, brightness, gamma, gradient, gradient_angle;
  std::array<double, 3> gains;
  double blur_sigma, noise_sigma;
  // occlusion
  int occlusion;  // 0 none, 1 rectangle, 2 horizontal bar, 3 round blob
  double occ_x, occ_y, occ_w, occ_h;
  Colour occ_colour;
  int jpeg_quality;
};

Colour random_colour(Rng& r, double lo, double hi) { return {r.uniform(lo, hi), r.uniform(lo, hi), r.uniform(lo, hi)}; }

Nuisance make_nuisance(uint64_t seed, uint64_t identity, uint64_t variant) {
  Rng r(seed, identity, variant, kStreamNuisance);
  Nuisance n;
  n.yaw = r.symmetric(1.0);
  n.pitch = r.symmetric(1.0);
  n.smile = r.symmetric(1.6);
  n.eye_open = r.chance(0.08) ? r.uniform(0.25, 0.55) : r.uniform(0.8, 1.12);
  n.brow_raise = r.symmetric(1.3);
  n.gaze_x = r.symmetric(1.0);
  n.gaze_y = r.symmetric(1.0);
  n.bg1 = random_colour(r, 30, 230);
  n.bg2 = mix(n.bg1, random_colour(r, 30, 230), r.uniform(0.2, 0.8));
  n.bg_angle = r.uniform(0, 2 * kPi);
  n.bg_blur = r.uniform(1.5, 4.0);
  n.shirt = random_colour(r, 20, 220);
  n.shirt_dy = r.symmetric(4);
  n.clutter = r.below(6);
  n.glasses = r.chance(0.15);
  n.glasses_colour =
      r.chance(0.6) ? Colour(r.uniform(15, 45), r.uniform(15, 45), r.uniform(15, 45)) : random_colour(r, 30, 200);
  n.light_side = r.chance(0.5) ? 1.0 : -1.0;
  n.angle_deg = r.symmetric(11);
  n.zoom = r.uniform(0.9, 1.1);
  n.aspect = r.symmetric(0.05);
  n.shear = r.symmetric(0.07);
  n.persp_x = r.symmetric(0.0016);
  n.persp_y = r.symmetric(0.0012);
  n.shift_x = r.symmetric(5.5);
  n.shift_y = r.symmetric(5.5);
  n.contrast = r.uniform(0.7, 1.2);
  n.brightness = r.symmetric(30);
  n.gamma = r.uniform(0.8, 1.25);
  n.gradient = r.uniform(0, 0.4);
  n.gradient_angle = r.uniform(0, 2 * kPi);
  for (auto& g : n.gains) g = r.uniform(0.92, 1.08);
  n.blur_sigma = r.chance(0.5) ? r.uniform(0.4, 1.4) : 0.0;
  n.noise_sigma = r.uniform(1, 8);
  const double occ = r.uniform();
  n.occlusion = occ < 0.10 ? 1 : occ < 0.17 ? 2 : occ < 0.24 ? 3 : 0;
  n.occ_x = r.uniform(10, 102);
  n.occ_y = r.uniform(25, 105);
  n.occ_w = r.uniform(14, 38);
  n.occ_h = r.uniform(14, 38);
  n.occ_colour = random_colour(r, 10, 245);
  n.jpeg_quality = 40 + r.below(56);  // 40 .. 95
  return n;
}

// =============================================================================================
// Drawing

std::vector<cv::Point2d> face_outline(double cx, double cy, double a_left, double a_right, double b, double jaw,
                                      double cheeks) {
  std::vector<cv::Point2d> pts;
  constexpr int kSteps = 96;
  const double exponent = lerp(1.0, 0.75, cheeks);  // < 1: fuller, squarer sides
  for (int i = 0; i < kSteps; ++i) {
    const double t = 2 * kPi * i / kSteps;
    const double c = std::cos(t), s = std::sin(t);
    double x = (c < 0 ? -1 : 1) * std::pow(std::abs(c), exponent);
    const double a = c < 0 ? a_left : a_right;
    if (s > 0) x *= 1.0 - lerp(0.12, 0.42, jaw) * s * s * s;  // lower half narrows to the chin
    pts.emplace_back(cx + a * x, cy + b * s);
  }
  return pts;
}

/// Points of the quadratic Bezier p0 -> p1 (control) -> p2.
cv::Point2d bezier(const cv::Point2d& p0, const cv::Point2d& p1, const cv::Point2d& p2, double t) {
  return (1 - t) * (1 - t) * p0 + 2 * (1 - t) * t * p1 + t * t * p2;
}

struct Palette {
  Colour skin, skin_dark, hair, brow, lips, iris;
};

Palette palette(const std::vector<double>& p) {
  Palette c;
  c.skin = mix(Colour(110, 140, 182), Colour(168, 192, 228), p[kSkinTone]);
  const double warm = (p[kSkinHue] - 0.5) * 18;
  c.skin += Colour(-warm * 0.8, 0, warm);
  c.skin_dark = scale(c.skin, 0.82);
  const double dark = std::pow(p[kHairDark], 1.6);
  c.hair = mix(Colour(22, 24, 28), Colour(55, 80, 118), dark);
  const double auburn = p[kHairHue] * p[kHairHue];
  c.hair += Colour(-8 * auburn, 0, 28 * auburn * (0.3 + dark));
  c.brow = mix(c.hair, Colour(30, 34, 44), 0.35);
  c.lips = mix(scale(c.skin, 0.86), Colour(95, 95, 185), lerp(0.15, 0.6, p[kLipColour]));
  static const Colour kIris[] = {{20, 38, 62},  {32, 62, 108},  {45, 100, 122},
                                 {78, 122, 88}, {150, 112, 70}, {128, 122, 115}};
  const double h = p[kIrisHue] * 5;
  const int i = std::min(4, static_cast<int>(h));
  c.iris = scale(mix(kIris[i], kIris[i + 1], h - i), lerp(0.6, 1.1, p[kIrisDark]));
  return c;
}

void draw_background(cv::Mat& canvas, const Nuisance& n, uint64_t seed, uint64_t identity, uint64_t variant) {
  // Drawn at a quarter of the canvas resolution (it is out of focus), blurred, then enlarged
  // (OpenCV's 8-bit bilinear resize is bit-exact).
  constexpr int kSmall = kCanvas / 4;
  cv::Mat small(kSmall, kSmall, CV_8UC3);
  const double ca = std::cos(n.bg_angle), sa = std::sin(n.bg_angle);
  for (int y = 0; y < kSmall; ++y) {
    uint8_t* p = small.ptr<uint8_t>(y);
    for (int x = 0; x < kSmall; ++x, p += 3) {
      const double t = clamp01(0.5 + ((x - kSmall / 2.0) * ca + (y - kSmall / 2.0) * sa) / kSmall);
      for (int c = 0; c < 3; ++c) p[c] = static_cast<uint8_t>(std::lround(lerp(n.bg1[c], n.bg2[c], t)));
    }
  }
  Rng r(seed, identity, variant, kStreamClutter);
  for (int i = 0; i < n.clutter; ++i) {
    const double x = r.uniform(-10, 122) / 4 * kScale, y = r.uniform(-10, 100) / 4 * kScale;
    const double w = r.uniform(6, 40) / 4 * kScale, h = r.uniform(6, 40) / 4 * kScale;
    const Colour c = random_colour(r, 20, 235);
    const bool box = r.chance(0.5);
    const double angle = r.uniform(0, 180);
    if (box) {
      cv::rectangle(small, cv::Point(static_cast<int>(x), static_cast<int>(y)),
                    cv::Point(static_cast<int>(x + w), static_cast<int>(y + h)), scalar(c), cv::FILLED, cv::LINE_8);
    } else {
      cv::ellipse(small, cv::Point(static_cast<int>(x), static_cast<int>(y)),
                  cv::Size(static_cast<int>(w / 2) + 1, static_cast<int>(h / 2) + 1), angle, 0, 360, scalar(c),
                  cv::FILLED, cv::LINE_8);
    }
  }
  const double sigma = n.bg_blur * kScale / 4;
  cv::GaussianBlur(small, small, cv::Size(0, 0), sigma, sigma, cv::BORDER_REPLICATE);
  cv::resize(small, canvas, cv::Size(kCanvas, kCanvas), 0, 0, cv::INTER_LINEAR);
}

void draw_face(cv::Mat& canvas, const std::vector<double>& p, const Nuisance& n, uint64_t seed, uint64_t identity) {
  const Palette col = palette(p);
  const double yaw = n.yaw, pitch = n.pitch;

  // Geometry of the head: the outline moves a little with the pose, the features more (they
  // stand out of the face), the nose most.
  const double a = lerp(36.5, 41.5, p[kFaceWidth]);
  const double b = lerp(47, 53, p[kFaceHeight]);
  const double cx = 56 + yaw * 1.5, cy = 60 + pitch * 1.0;
  const double a_left = a * (1 + 0.07 * yaw), a_right = a * (1 - 0.07 * yaw);
  const double fdx = yaw * 5.5, fdy = pitch * 3.0;
  const auto outline = face_outline(cx, cy, a_left, a_right, b, p[kJaw], p[kCheeks]);
  // A window around the whole head.
  const double hx0 = cx - a - 12, hx1 = cx + a + 12, hy0 = -2, hy1 = 116;

  // Shirt and shoulders (per image).
  {
    Mask m(0, 85, kSize, kSize);
    const double dy = n.shirt_dy, sx = yaw * 3;
    m.poly({{-8, 125},
            {-8, 104 + dy},
            {22 + sx, 97 + dy},
            {42 + sx, 101 + dy},
            {56 + sx, 111 + dy},
            {70 + sx, 101 + dy},
            {90 + sx, 97 + dy},
            {120, 104 + dy},
            {120, 125}});
    paint(canvas, m, n.shirt);
  }
  const int style = std::min(4, static_cast<int>(p[kHairStyle] * 5));
  const double volume = p[kHairVolume];
  // Long hair falls behind the face, down to the shoulders.
  if (style == 3) {
    Mask m(hx0, hy0, hx1, hy1);
    m.ellipse(cx, cy - 4, a + 7, b + 4 + volume * 2, 0);
    m.poly({{cx - a - 7, cy - 4},
            {cx + a + 7, cy - 4},
            {cx + a + 5, 104},
            {cx + a - 8, 108},
            {cx - a + 8, 108},
            {cx - a - 5, 104}});
    m.soften(0.5);
    paint(canvas, m, col.hair);
  }
  // Neck.
  {
    Mask m(cx - 20, 76, cx + 20, kSize);
    m.poly({{cx - 15, 80}, {cx + 15, 80}, {cx + 16.5, 115}, {cx - 16.5, 115}});
    paint(canvas, m, col.skin_dark);
  }
  // Ears.
  {
    const double ear = p[kEarSize];
    Mask m(hx0, 45, hx1, 82);
    m.ellipse(cx - a_left * 0.96, 63 + fdy * 0.5, 4.5 + 2.5 * ear, 9 + 3 * ear, -8);
    m.ellipse(cx + a_right * 0.96, 63 + fdy * 0.5, 4.5 + 2.5 * ear, 9 + 3 * ear, 8);
    m.soften(0.4);
    paint(canvas, m, scale(col.skin, 0.9));
  }
  // The face, with darker edges.
  Mask face(hx0, hy0, hx1, hy1);
  face.poly(outline);
  paint(canvas, face, col.skin);
  {
    Mask edge = face.like();
    std::vector<cv::Point2d> closed(outline);
    closed.push_back(outline.front());
    edge.line(closed, 7);
    edge.soften(2.5);
    edge.intersect(face);
    shade(canvas, edge, -0.3);
  }

  // Marks: moles and freckles (identity-stable positions).
  {
    static const int kMoleCount[] = {0, 1, 1, 2, 3};
    const int moles = kMoleCount[std::min(4, static_cast<int>(p[kMoles] * 5))];
    Mask m(hx0, hy0, hx1, hy1);
    for (int i = 0; i < moles; ++i) {
      const double mx = cx + fdx * 0.8 + (p[kMole1X + 2 * i] - 0.5) * 1.25 * a;
      const double my = 40 + fdy + p[kMole1Y + 2 * i] * 58;
      m.circle(mx, my, 0.9 + 0.4 * p[kMole1X + 2 * i]);
    }
    if (moles > 0) {
      m.soften(0.3);
      paint(canvas, m, Colour(38, 48, 75), 225);
    }
    Rng r(seed, identity, 0, kStreamMarks);
    const int freckles = static_cast<int>(std::pow(p[kFreckles], 3) * 30);
    if (freckles > 0) {
      Mask f(cx - 35, 50, cx + 35, 90);
      for (int i = 0; i < freckles; ++i) {
        const double side = r.chance(0.5) ? 1 : -1;
        f.circle(cx + fdx + side * r.uniform(5, 26), 60 + fdy + r.uniform(0, 18), r.uniform(0.5, 0.85));
      }
      paint(canvas, f, scale(col.skin, 0.68), 140);
    }
  }

  // Stubble.
  if (p[kBeard] > 0.75) {
    Mask m(hx0, 70, hx1, hy1);
    m.poly(outline);
    Mask upper = m.like();
    upper.poly({{-10, -10}, {122, -10}, {122, 81 + fdy}, {-10, 81 + fdy}});
    m.subtract(upper);
    m.soften(2.5);
    paint(canvas, m, scale(col.hair, 1.1), static_cast<int>((p[kBeard] - 0.75) * 4 * 95));
  }

  // Eyes.
  const double ey = lerp(49.5, 54.5, p[kEyeHeight]) + fdy;
  const double spacing = lerp(32.5, 39.5, p[kEyeSpacing]);
  const double ew0 = lerp(6, 8.5, p[kEyeSize]);
  for (int s = -1; s <= 1; s += 2) {
    const double ex = cx - 1.5 * yaw + fdx + s * spacing / 2;
    const double ew = ew0 * (1 - 0.2 * yaw * s);
    const double eh = ew0 * lerp(0.36, 0.58, p[kEyeShape]) * n.eye_open;
    const double tilt = -(p[kEyeTilt] - 0.5) * 14 * s;  // degrees; image y points down
    // Everything of this eye and its brow lies in this window.
    const double wx0 = ex - 18, wx1 = ex + 18, wy0 = ey - 26, wy1 = ey + 12;
    {  // socket shadow
      Mask m(wx0, wy0, wx1, wy1);
      m.ellipse(ex, ey - 1.5, ew * 1.45, ew * 0.8, tilt);
      m.soften(2.5);
      shade(canvas, m, -0.22);
    }
    Mask eye(wx0, wy0, wx1, wy1);
    eye.ellipse(ex, ey, ew, eh, tilt);
    paint(canvas, eye, Colour(222, 229, 236));
    Mask iris = eye.like();
    const double ir = std::min(ew * 0.55, ew0 * 0.5);
    const double ix = ex + n.gaze_x * ew * 0.25, iy = ey + n.gaze_y * eh * 0.25;
    iris.circle(ix, iy, ir);
    iris.intersect(eye);
    paint(canvas, iris, col.iris);
    Mask pupil = eye.like();
    pupil.circle(ix, iy, ir * 0.45);
    pupil.intersect(eye);
    paint(canvas, pupil, Colour(12, 12, 14));
    Mask glint = eye.like();
    glint.circle(ix + 0.35 * ir * n.light_side, iy - 0.35 * ir, ir * 0.18);
    glint.intersect(eye);
    paint(canvas, glint, Colour(250, 250, 250), 200);
    // Upper lid line (the lashes), crease, lower lid.
    Mask lid = eye.like();
    lid.arc(ex, ey, ew, eh, tilt, 180, 360, 2);
    paint(canvas, lid, Colour(28, 28, 36), 235);
    Mask crease = eye.like();
    crease.arc(ex, ey - eh * 0.35, ew * 1.05, eh * 1.55 + 1, tilt, 200, 340, 1);
    paint(canvas, crease, scale(col.skin, 0.7), 170);
    Mask lower = eye.like();
    lower.arc(ex, ey, ew, eh, tilt, 15, 165, 1);
    paint(canvas, lower, scale(col.skin, 0.72), 150);

    // Brow: a tapered Bezier stroke from the inner to the outer end.
    const double gap = lerp(7.5, 11.5, p[kBrowHeight]) + n.brow_raise;
    const double reach = lerp(1.2, 1.55, p[kBrowLength]);
    const cv::Point2d inner(ex - s * ew0 * 0.95, ey - gap);
    const cv::Point2d outer(ex + s * ew0 * reach, ey - gap - (p[kBrowAngle] - 0.5) * 7);
    const cv::Point2d control((inner.x + outer.x) / 2, std::min(inner.y, outer.y) - lerp(0.4, 3.0, p[kBrowArch]) * 2);
    const double thick = lerp(1.6, 4.0, p[kBrowThick]);
    std::vector<cv::Point2d> upper_edge, lower_edge;
    constexpr int kBrowSteps = 12;
    for (int i = 0; i <= kBrowSteps; ++i) {
      const double t = static_cast<double>(i) / kBrowSteps;
      const cv::Point2d q = bezier(inner, control, outer, t);
      const cv::Point2d d = bezier(inner, control, outer, std::min(1.0, t + 0.01)) -
                            bezier(inner, control, outer, std::max(0.0, t - 0.01));
      const double len = std::hypot(d.x, d.y);
      const cv::Point2d normal(-d.y / len, d.x / len);
      const double w = thick * lerp(0.6, 0.3, t);
      upper_edge.push_back(q + normal * w);
      lower_edge.push_back(q - normal * w);
    }
    std::vector<cv::Point2d> brow(upper_edge);
    brow.insert(brow.end(), lower_edge.rbegin(), lower_edge.rend());
    Mask m = eye.like();
    m.poly(brow);
    m.soften(0.45);
    paint(canvas, m, col.brow, 235);
  }

  // Nose.
  {
    const double tip_x = cx + yaw * 8.5 + fdx * 0.3, tip_y = lerp(67.5, 76, p[kNoseLength]) + pitch * 4.0;
    const double nw = lerp(7.5, 12.5, p[kNoseWidth]);
    const double bridge_x = cx + fdx;
    const double wx0 = std::min(bridge_x, tip_x) - 16, wx1 = std::max(bridge_x, tip_x) + 16;
    const double wy0 = ey - 6, wy1 = tip_y + 10;
    Mask bridge(wx0, wy0, wx1, wy1);
    bridge.line({{bridge_x + n.light_side * 3.5, ey + 2}, {tip_x + n.light_side * (nw * 0.45), tip_y - 2}}, 2.2);
    bridge.soften(1.6);
    shade(canvas, bridge, -0.3);
    Mask under = bridge.like();
    under.ellipse(tip_x, tip_y + 3.5, nw * 0.55, 1.8, 0);
    under.soften(1.2);
    shade(canvas, under, -0.3);
    Mask tip = bridge.like();
    tip.ellipse(tip_x, tip_y - 0.5, lerp(2.5, 4.5, p[kNoseTip]), lerp(2.0, 3.5, p[kNoseTip]), 0);
    tip.soften(1.0);
    shade(canvas, tip, 0.12);
    Mask wings = bridge.like();
    for (int s = -1; s <= 1; s += 2) {
      wings.arc(tip_x + s * nw * 0.5, tip_y + 0.5, 2.4, 2.4, 0, s < 0 ? 90 : -90, s < 0 ? 270 : 90, 2);
    }
    wings.soften(0.6);
    shade(canvas, wings, -0.35);
    Mask nostrils = bridge.like();
    for (int s = -1; s <= 1; s += 2) {
      nostrils.ellipse(tip_x + s * nw * 0.32, tip_y + 2.0, 1.5 + 0.5 * p[kNoseWidth], 0.95, s * 18);
    }
    nostrils.soften(0.3);
    paint(canvas, nostrils, Colour(40, 45, 68), 215);
  }

  // Mouth.
  {
    const double mx = cx + fdx * 0.85, my = lerp(88.5, 94.5, p[kMouthHeight]) + pitch * 3.0;
    const double mw = lerp(8.5, 12.5, p[kMouthWidth]) * (1 - 0.06 * std::abs(yaw));
    const double curve = (p[kMouthCurve] - 0.5) * 4 + n.smile;
    const double ut = lerp(1.5, 3.4, p[kLipThick]), lt = ut * 1.35;
    std::vector<cv::Point2d> line, top, bottom;
    constexpr int kSteps = 16;
    for (int i = 0; i <= kSteps; ++i) {
      const double u = -1 + 2.0 * i / kSteps;
      const double x = mx + u * mw;
      const double y = my - curve * u * u;
      const double round = std::sqrt(std::max(0.0, 1 - u * u));
      line.emplace_back(x, y);
      top.emplace_back(x, y - ut * round * (1 - 0.3 * std::exp(-u * u / 0.02)));
      bottom.emplace_back(x, y + lt * round);
    }
    std::vector<cv::Point2d> lips(top);
    lips.insert(lips.end(), bottom.rbegin(), bottom.rend());
    Mask shadow(mx - mw - 8, my - 12, mx + mw + 8, my + 16);
    shadow.ellipse(mx, my + lt + 2.5, mw * 0.5, 1.6, 0);
    shadow.soften(1.2);
    shade(canvas, shadow, -0.25);
    Mask m = shadow.like();
    m.poly(lips);
    m.soften(0.45);
    paint(canvas, m, col.lips);
    Mask l = shadow.like();
    l.line(line, 0.8);
    l.soften(0.3);
    paint(canvas, l, scale(col.lips, 0.45), 230);
  }

  // Hair in front: the head's top above a hairline that depends on the style.
  {
    Mask m(hx0, hy0, hx1, 75);
    m.ellipse(cx, cy - 3 - volume * 2, a + 2.5 + volume * 3, b + 3 + volume * 3.5, 0);
    const double h0 = lerp(17, 30, p[kHairline]) + fdy * 0.6;
    const double drop = std::max(0.0, 57 + fdy - h0);
    const double tilt = (p[kHairVolume] - 0.5) * 2;  // for the side parting
    std::vector<cv::Point2d> below;
    constexpr int kSteps = 48;
    for (int i = 0; i <= kSteps; ++i) {
      const double u = -1.25 + 2.5 * i / kSteps;
      const double au = std::min(1.0, std::abs(u));
      double y;
      switch (style) {
        case 1:  // fringe: low, flat, jagged
          y = h0 + 7 + drop * std::pow(au, 5) + 1.8 * std::abs(std::sin(u * 9));
          break;
        case 2:  // side parting: asymmetric sweep
          y = h0 + drop * std::pow(au, 3) + tilt * 5 * u + 2;
          break;
        case 4:  // receding: high, with deep temples
          y = h0 - 5 + 9 * std::sin(kPi * std::min(1.0, au * 1.4)) * (au < 0.72 ? 1 : 0.5) + drop * std::pow(au, 4);
          break;
        default:  // short and long
          y = h0 + drop * std::pow(au, 3);
          break;
      }
      below.emplace_back(cx + fdx * 0.5 + u * a, y);
    }
    below.emplace_back(150, 150);
    below.emplace_back(-40, 150);
    m.poly(below, 0);
    m.soften(0.5);
    paint(canvas, m, col.hair);
    // Identity-stable strands give the hair some texture.
    Rng r(seed, identity, 1, kStreamMarks);
    Mask strands = m.like();
    for (int i = 0; i < 14; ++i) {
      const double x0 = cx + r.symmetric(a), y0 = r.uniform(2, h0);
      strands.line({{x0, y0}, {x0 + r.symmetric(8), y0 + r.uniform(4, 12)}}, 0.6);
    }
    strands.intersect(m);
    paint(canvas, strands, scale(col.hair, 1.6), 90);
    if (style == 2) {
      Mask part = m.like();
      const double px = cx + (tilt >= 0 ? -1 : 1) * 12;
      part.line({{px, h0 - 2}, {px + 2, 0}}, 0.8);
      part.intersect(m);
      paint(canvas, part, scale(col.skin, 0.9), 160);
    }
  }

  // Glasses (per image).
  if (n.glasses) {
    Mask m(hx0, ey - 20, hx1, ey + 20);
    for (int s = -1; s <= 1; s += 2) {
      const double ex = cx - 1.5 * yaw + fdx + s * spacing / 2;
      m.arc(ex, ey + 1, ew0 * 1.6, ew0 * 1.15, 0, 0, 360, 2);
    }
    m.line({{cx + fdx - spacing / 2 + ew0 * 1.6, ey}, {cx + fdx + spacing / 2 - ew0 * 1.6, ey}}, 1.0);
    paint(canvas, m, n.glasses_colour, 240);
  }
}

void draw_occlusion(cv::Mat& canvas, const Nuisance& n) {
  if (n.occlusion == 0) return;
  Mask m(0, 0, kSize, kSize);
  switch (n.occlusion) {
    case 1:
      m.poly({{n.occ_x - n.occ_w / 2, n.occ_y - n.occ_h / 2},
              {n.occ_x + n.occ_w / 2, n.occ_y - n.occ_h / 2},
              {n.occ_x + n.occ_w / 2, n.occ_y + n.occ_h / 2},
              {n.occ_x - n.occ_w / 2, n.occ_y + n.occ_h / 2}});
      break;
    case 2: {
      const double h = n.occ_h * 0.35;
      m.poly({{-5, n.occ_y - h / 2},
              {117, n.occ_y - h / 2 + n.occ_w / 6},
              {117, n.occ_y + h / 2 + n.occ_w / 6},
              {-5, n.occ_y + h / 2}});
      break;
    }
    default:
      m.ellipse(n.occ_x, 112, n.occ_w * 0.7, n.occ_h * 1.1, 0);
      break;
  }
  m.soften(0.4);
  paint(canvas, m, n.occ_colour);
}

// --- geometric warp -------------------------------------------------------------------------

using Mat3 = std::array<double, 9>;

Mat3 mul(const Mat3& a, const Mat3& b) {
  Mat3 c{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) c[3 * i + j] = a[3 * i] * b[j] + a[3 * i + 1] * b[3 + j] + a[3 * i + 2] * b[6 + j];
  return c;
}

Mat3 inverse(const Mat3& m) {
  const double a = m[0], b = m[1], c = m[2], d = m[3], e = m[4], f = m[5], g = m[6], h = m[7], i = m[8];
  const double A = e * i - f * h, B = -(d * i - f * g), C = d * h - e * g;
  const double det = a * A + b * B + c * C;
  return {A / det, -(b * i - c * h) / det, (b * f - c * e) / det,
          B / det, (a * i - c * g) / det,  -(a * f - c * d) / det,
          C / det, -(a * h - b * g) / det, (a * e - b * d) / det};
}

int reflect(int i, int n) {
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
  return i;
}

/// Bilinear warp of the canvas by the pose homography (destination = H * source, in output
/// pixels around the image centre), then a 2x2 average down to 112x112. Written out by hand so the
/// result depends on nothing but IEEE double arithmetic.
cv::Mat warp_and_reduce(const cv::Mat& canvas, const Nuisance& n) {
  const double c = kSize / 2.0;
  const double th = n.angle_deg * kPi / 180;
  const double sx = n.zoom * (1 + n.aspect), sy = n.zoom * (1 - n.aspect);
  const Mat3 to_centre{1, 0, -c, 0, 1, -c, 0, 0, 1};
  const Mat3 perspective{1, 0, 0, 0, 1, 0, n.persp_x, n.persp_y, 1};
  const Mat3 shear{1, n.shear, 0, 0, 1, 0, 0, 0, 1};
  const Mat3 zoom{sx, 0, 0, 0, sy, 0, 0, 0, 1};
  const Mat3 rotate{std::cos(th), -std::sin(th), 0, std::sin(th), std::cos(th), 0, 0, 0, 1};
  const Mat3 back{1, 0, c + n.shift_x, 0, 1, c + n.shift_y, 0, 0, 1};
  const Mat3 h = mul(back, mul(rotate, mul(zoom, mul(shear, mul(perspective, to_centre)))));
  const Mat3 inv = inverse(h);

  cv::Mat big(kCanvas, kCanvas, CV_8UC3);
  for (int y = 0; y < kCanvas; ++y) {
    uint8_t* out = big.ptr<uint8_t>(y);
    const double v = (y + 0.5) / kScale;
    for (int x = 0; x < kCanvas; ++x, out += 3) {
      const double u = (x + 0.5) / kScale;
      const double w = inv[6] * u + inv[7] * v + inv[8];
      const double su = (inv[0] * u + inv[1] * v + inv[2]) / w * kScale - 0.5;
      const double sv = (inv[3] * u + inv[4] * v + inv[5]) / w * kScale - 0.5;
      const double qu = std::max(-1e6, std::min(1e6, su)), qv = std::max(-1e6, std::min(1e6, sv));
      int x0 = static_cast<int>(qu), y0 = static_cast<int>(qv);  // floor, without a library call
      x0 -= x0 > qu;
      y0 -= y0 > qv;
      const int ax = static_cast<int>((qu - x0) * 256), ay = static_cast<int>((qv - y0) * 256);
      const uint8_t *p00, *p01, *p10, *p11;
      if (x0 >= 0 && y0 >= 0 && x0 < kCanvas - 1 && y0 < kCanvas - 1) {
        p00 = canvas.ptr<uint8_t>(y0) + 3 * x0;
        p01 = p00 + 3;
        p10 = p00 + canvas.step[0];
        p11 = p10 + 3;
      } else {
        const int xa = reflect(x0, kCanvas), xb = reflect(x0 + 1, kCanvas);
        const int ya = reflect(y0, kCanvas), yb = reflect(y0 + 1, kCanvas);
        p00 = canvas.ptr<uint8_t>(ya) + 3 * xa;
        p01 = canvas.ptr<uint8_t>(ya) + 3 * xb;
        p10 = canvas.ptr<uint8_t>(yb) + 3 * xa;
        p11 = canvas.ptr<uint8_t>(yb) + 3 * xb;
      }
      for (int k = 0; k < 3; ++k) {
        const int top = p00[k] * (256 - ax) + p01[k] * ax;
        const int bottom = p10[k] * (256 - ax) + p11[k] * ax;
        out[k] = static_cast<uint8_t>((top * (256 - ay) + bottom * ay + 32768) >> 16);
      }
    }
  }
  cv::Mat small(kSize, kSize, CV_8UC3);
  for (int y = 0; y < kSize; ++y) {
    const uint8_t* r0 = big.ptr<uint8_t>(2 * y);
    const uint8_t* r1 = big.ptr<uint8_t>(2 * y + 1);
    uint8_t* out = small.ptr<uint8_t>(y);
    for (int x = 0; x < kSize * 3; ++x) {
      const int i = (x / 3) * 6 + x % 3;
      out[x] = static_cast<uint8_t>((r0[i] + r0[i + 3] + r1[i] + r1[i + 3] + 2) >> 2);
    }
  }
  return small;
}

/// Lighting (gamma, per-channel gain, contrast, brightness, a linear gradient), blur and noise.
void photometric(cv::Mat& img, const Nuisance& n, uint64_t seed, uint64_t identity, uint64_t variant) {
  std::array<std::array<double, 256>, 3> lut;
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) lut[c][v] = std::pow(v / 255.0, n.gamma) * 255.0 * n.gains[c];
  }
  const double ga = std::cos(n.gradient_angle), gb = std::sin(n.gradient_angle);
  for (int y = 0; y < kSize; ++y) {
    uint8_t* p = img.ptr<uint8_t>(y);
    for (int x = 0; x < kSize; ++x, p += 3) {
      const double light = 1 + n.gradient * ((x - 55.5) * ga + (y - 55.5) * gb) / 56.0;
      for (int c = 0; c < 3; ++c) {
        const double v = (lut[c][p[c]] - 128) * n.contrast * light + 128 + n.brightness;
        p[c] = to_byte(v);
      }
    }
  }
  if (n.blur_sigma > 0) cv::GaussianBlur(img, img, cv::Size(0, 0), n.blur_sigma, n.blur_sigma, cv::BORDER_REPLICATE);
  Rng r(seed, identity, variant, kStreamNoise);
  for (int y = 0; y < kSize; ++y) {
    uint8_t* p = img.ptr<uint8_t>(y);
    for (int x = 0; x < kSize; ++x, p += 3) {
      const double luma = r.normal() * n.noise_sigma;
      for (int c = 0; c < 3; ++c) {
        const double v = p[c] + luma + r.symmetric(n.noise_sigma * 0.52);  // chroma noise, sd 0.3 sigma
        p[c] = to_byte(v);
      }
    }
  }
}

cv::Mat render_image(uint64_t seed, uint64_t identity, uint64_t variant, const std::vector<double>& params,
                     const Nuisance& n) {
  cv::Mat canvas(kCanvas, kCanvas, CV_8UC3);
  draw_background(canvas, n, seed, identity, variant);
  draw_face(canvas, params, n, seed, identity);
  draw_occlusion(canvas, n);
  cv::Mat img = warp_and_reduce(canvas, n);
  photometric(img, n, seed, identity, variant);
  return img;
}

std::string encode_jpeg(const cv::Mat& img, int quality) {
  std::vector<uint8_t> buf;
  if (!cv::imencode(".jpg", img, buf, {cv::IMWRITE_JPEG_QUALITY, quality})) {
    throw DataError("synthetic faces: JPEG encoding failed");
  }
  return std::string(buf.begin(), buf.end());
}

// =============================================================================================
// Writing the dataset

/// Renders items [0, count) on `threads` threads in blocks and hands them to `consume` in index
/// order on the calling thread, so the output does not depend on the thread count.
void render_ordered(int64_t count, int64_t threads, const std::function<std::string(int64_t)>& render,
                    const std::function<void(int64_t, const std::string&)>& consume) {
  const int64_t block = std::max<int64_t>(64, threads * 32);
  std::vector<std::string> results;
  for (int64_t begin = 0; begin < count; begin += block) {
    const int64_t end = std::min(count, begin + block);
    results.assign(static_cast<size_t>(end - begin), std::string());
    std::atomic<int64_t> next{begin};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto work = [&] {
      try {
        for (int64_t i; (i = next.fetch_add(1)) < end;) results[static_cast<size_t>(i - begin)] = render(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next = end;
      }
    };
    const int64_t helpers = std::min<int64_t>(threads, end - begin) - 1;
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < helpers; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
    for (int64_t i = begin; i < end; ++i) consume(i, results[static_cast<size_t>(i - begin)]);
  }
}

}  // namespace

// =============================================================================================

SyntheticFaces::SyntheticFaces(uint64_t seed) : seed_(seed) {}

SyntheticIdentity SyntheticFaces::identity(uint64_t identity) const {
  Rng r(seed_, identity, 0, kStreamIdentity);
  SyntheticIdentity out;
  out.params.resize(kParamCount);
  for (auto& v : out.params) v = r.uniform();
  return out;
}

cv::Mat SyntheticFaces::render(uint64_t identity, uint64_t variant) const {
  return render_image(seed_, identity, variant, this->identity(identity).params,
                      make_nuisance(seed_, identity, variant));
}

std::string SyntheticFaces::render_jpeg(uint64_t identity, uint64_t variant) const {
  const Nuisance n = make_nuisance(seed_, identity, variant);
  return encode_jpeg(render_image(seed_, identity, variant, this->identity(identity).params, n), n.jpeg_quality);
}

void SyntheticOptions::read(config::Section& section) {
  section.read("identities", identities);
  section.read("images_per_identity", images_per_identity);
  int64_t s = static_cast<int64_t>(seed);
  if (section.read("seed", s)) {
    if (s < 0) {
      section.error("seed", "must be >= 0, got " + std::to_string(s));
    } else {
      seed = static_cast<uint64_t>(s);
    }
  }
}

config::OptionProblems SyntheticOptions::problems() const {
  config::OptionProblems p;
  if (identities < 2) p.push_back({"identities", "must be >= 2, got " + std::to_string(identities)});
  if (images_per_identity < 1) {
    p.push_back({"images_per_identity", "must be >= 1, got " + std::to_string(images_per_identity)});
  }
  // Keys and class ranges are stored as float32 labels: keep them exact.
  constexpr int64_t kMaxKey = int64_t{1} << 24;
  if (identities >= 2 && images_per_identity >= 1 &&
      (identities > kMaxKey || images_per_identity > kMaxKey || identities * (images_per_identity + 1) + 1 > kMaxKey)) {
    p.push_back({"identities",
                 "identities * (images_per_identity + 1) + 1 must be <= 16777216 (record keys are "
                 "stored as float32 labels), got " +
                     std::to_string(identities) + " identities of " + std::to_string(images_per_identity) + " images"});
  }
  return p;
}

std::string SyntheticOptions::describe() const {
  return "identities=" + std::to_string(identities) + ", images_per_identity=" + std::to_string(images_per_identity) +
         ", seed=" + std::to_string(seed);
}

config::OptionProblems SynthDatasetOptions::problems() const {
  config::OptionProblems p = SyntheticOptions::problems();
  if (out_dir.empty()) p.push_back({"out_dir", "must be given"});
  if (val_identities < 2) p.push_back({"val_identities", "must be >= 2, got " + std::to_string(val_identities)});
  if (val_pairs <= 0 || val_pairs % 2 != 0 || val_pairs > (int64_t{1} << 30)) {
    p.push_back({"val_pairs", "must be even and in [2, 2^30], got " + std::to_string(val_pairs)});
  }
  if (threads < 1 || threads > 1024) p.push_back({"threads", "must be in [1, 1024], got " + std::to_string(threads)});
  return p;
}

VerificationPairs write_synthetic_dataset(const SynthDatasetOptions& options) {
  config::throw_if_invalid("synthetic dataset", options.problems());
  namespace fs = std::filesystem;
  const fs::path dir(options.out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    throw DataError(options.out_dir + ": cannot create the output folder" + (ec ? ": " + ec.message() : ""));
  }

  const SyntheticFaces faces(options.seed);
  const int64_t k = options.identities, per = options.images_per_identity, n = k * per;
  const int64_t total = n + 2 * options.val_pairs;
  int64_t done = 0;
  auto report = [&] {
    ++done;
    if (options.progress) options.progress(done, total);
  };

  // train.rec / train.idx: meta record first, images 1..N by identity, then identity records.
  {
    RecordIOWriter writer((dir / "train.rec").string());
    writer.write(0, RecordHeader::with_labels({static_cast<float>(n + 1), static_cast<float>(n + 1 + k)}), {});
    render_ordered(
        n, options.threads,
        [&](int64_t i) { return faces.render_jpeg(static_cast<uint64_t>(i / per), static_cast<uint64_t>(i % per)); },
        [&](int64_t i, const std::string& jpeg) {
          const uint64_t key = static_cast<uint64_t>(i + 1);
          writer.write(key, RecordHeader::with_labels({static_cast<float>(i / per), 1.0f}, key), jpeg);
          report();
        });
    for (int64_t c = 0; c < k; ++c) {
      const uint64_t key = static_cast<uint64_t>(n + 1 + c);
      writer.write(
          key, RecordHeader::with_labels({static_cast<float>(1 + c * per), static_cast<float>(1 + (c + 1) * per)}, key),
          {});
    }
    writer.finish();
  }
  write_file_atomic((dir / "property").string(), std::to_string(k) + ",112,112\n");

  // Validation pairs of unseen identities, genuine and impostor alternating.
  struct Side {
    uint64_t identity, variant;
  };
  std::vector<Side> plan;
  VerificationPairs val;
  const int64_t m = options.val_identities;
  for (int64_t i = 0; i < options.val_pairs; ++i) {
    Rng r(options.seed, 0, static_cast<uint64_t>(i), kStreamPairs);
    const bool same = i % 2 == 0;
    const int64_t first = (i / 2 + r.below(static_cast<int>(std::min<int64_t>(m, 1 << 30)))) % m;
    const int64_t second =
        same ? first : (first + 1 + r.below(static_cast<int>(std::min<int64_t>(m - 1, 1 << 30)))) % m;
    plan.push_back({kSyntheticValidationIdBase + static_cast<uint64_t>(first), static_cast<uint64_t>(2 * i)});
    plan.push_back({kSyntheticValidationIdBase + static_cast<uint64_t>(second), static_cast<uint64_t>(2 * i + 1)});
    val.issame.push_back(same);
  }
  val.images.reserve(plan.size());
  render_ordered(
      static_cast<int64_t>(plan.size()), options.threads,
      [&](int64_t i) {
        return faces.render_jpeg(plan[static_cast<size_t>(i)].identity, plan[static_cast<size_t>(i)].variant);
      },
      [&](int64_t, const std::string& jpeg) {
        val.images.push_back(jpeg);
        report();
      });
  return val;
}

}  // namespace facetrain::data
