#include "facetrain/core/plot.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "facetrain/core/error.h"
#include "facetrain/core/files.h"

namespace facetrain {

namespace {
std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out += c;
  }
  return out;
}
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}
}  // namespace

void write_line_plot(const std::string& path, const std::string& title, const std::string& x_label,
                     const std::string& y_label, const std::vector<PlotSeries>& series) {
  const double W = 640, H = 400, L = 70, R = 20, T = 40, B = 50;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };

  static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-family='sans-serif'>\n"
      << "<rect width='100%' height='100%' fill='white'/>\n"
      << "<text x='" << W / 2 << "' y='24' text-anchor='middle' font-size='16'>" << escape(title) << "</text>\n"
      << "<line x1='" << L << "' y1='" << H - B << "' x2='" << W - R << "' y2='" << H - B << "' stroke='black'/>\n"
      << "<line x1='" << L << "' y1='" << T << "' x2='" << L << "' y2='" << H - B << "' stroke='black'/>\n";
  for (int i = 0; i <= 4; ++i) {
    double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
    svg << "<text x='" << px(xv) << "' y='" << H - B + 18 << "' text-anchor='middle' font-size='11'>" << num(xv)
        << "</text>\n<text x='" << L - 6 << "' y='" << py(yv) + 4 << "' text-anchor='end' font-size='11'>" << num(yv)
        << "</text>\n<line x1='" << L << "' y1='" << py(yv) << "' x2='" << W - R << "' y2='" << py(yv)
        << "' stroke='#ddd'/>\n";
  }
  svg << "<text x='" << (L + W - R) / 2 << "' y='" << H - 10 << "' text-anchor='middle' font-size='12'>"
      << escape(x_label) << "</text>\n<text x='16' y='" << (T + H - B) / 2
      << "' text-anchor='middle' font-size='12' transform='rotate(-90 16 " << (T + H - B) / 2 << ")'>"
      << escape(y_label) << "</text>\n";
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const char* colour = colours[k % 6];
    svg << "<polyline fill='none' stroke='" << colour << "' stroke-width='1.5' points='";
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) svg << px(s.x[i]) << "," << py(s.y[i]) << " ";
    }
    svg << "'/>\n<text x='" << W - R - 4 << "' y='" << T + 14 * (k + 1) << "' text-anchor='end' font-size='12' fill='"
        << colour << "'>" << escape(s.name) << "</text>\n";
  }
  svg << "</svg>\n";

  write_file_atomic(path, svg.str());
}

// ---------------------------------------------------------------------------------------------
// PNG figures.

namespace {

// matplotlib's "tab10" colours, as BGR.
const cv::Scalar kColours[] = {{180, 119, 31}, {14, 127, 255},  {44, 160, 44},   {40, 39, 214},  {189, 103, 148},
                               {75, 86, 140},  {194, 119, 227}, {127, 127, 127}, {34, 189, 188}, {207, 190, 23}};
const cv::Scalar kBlack = cv::Scalar::all(0), kWhite = cv::Scalar::all(255), kGrid(200, 200, 200);
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr double kTickScale = 0.45, kLabelScale = 0.55, kTitleScale = 0.7, kLegendScale = 0.5;
// Curves are drawn with sub-pixel coordinates (4 fractional bits): log-scale curves stay smooth.
constexpr int kShift = 4;
constexpr int kMinPanelWidth = 160, kMinHeight = 120, kMaxPixels = 16384;
// Panel margins: title above, tick labels and the x label below.
constexpr int kTop = 50, kBottom = 70, kRight = 30, kMinLeft = 80;

cv::Size text_size(const std::string& text, double scale, int thickness = 1) {
  int baseline = 0;
  return cv::getTextSize(text, kFont, scale, thickness, &baseline);
}

void centred_text(cv::Mat& img, const std::string& text, cv::Point centre, double scale, int thickness = 1) {
  const cv::Size size = text_size(text, scale, thickness);
  cv::putText(img, text, {centre.x - size.width / 2, centre.y + size.height / 2}, kFont, scale, kBlack, thickness,
              cv::LINE_AA);
}

void dashed_line(cv::Mat& img, cv::Point a, cv::Point b, const cv::Scalar& colour) {
  const double length = std::hypot(b.x - a.x, b.y - a.y);
  const int dash = 4, gap = 4;
  for (double s = 0; s < length; s += dash + gap) {
    const double e = std::min(length, s + dash);
    cv::Point p(cvRound(a.x + (b.x - a.x) * s / length), cvRound(a.y + (b.y - a.y) * s / length));
    cv::Point q(cvRound(a.x + (b.x - a.x) * e / length), cvRound(a.y + (b.y - a.y) * e / length));
    cv::line(img, p, q, colour, 1, cv::LINE_AA);
  }
}

/// An axis in "units": the value itself on a linear axis, log10 of it on a log axis.
struct Axis {
  bool log = false;
  double lo = 0, hi = 1;  // in units, lo < hi
  double unit(double v) const { return log ? (v > 0 ? std::log10(v) : -std::numeric_limits<double>::infinity()) : v; }
  // Fraction of the way from lo to hi; halving first keeps hi - lo from overflowing.
  double fraction(double u) const { return (u / 2 - lo / 2) / (hi / 2 - lo / 2); }
};

struct Tick {
  double u;           // position in axis units
  std::string label;  // empty: a minor tick (shorter, no label, no grid line)
};

// "%.Nf" with as many decimals as the step needs; "%.Ng" where fixed notation would be too long.
std::string linear_label(double v, double step, double magnitude) {
  if (v == 0) v = 0;  // no "-0.0"
  char buf[40];
  if (magnitude >= 1e6 || step < 1e-4) {
    const int digits =
        std::clamp(static_cast<int>(std::floor(std::log10(magnitude)) - std::floor(std::log10(step))) + 1, 1, 15);
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  } else {
    const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  }
  return buf;
}

// Ticks every 1, 2 or 5 x 10^k units: the smallest such step that leaves at least `min_gap`
// pixels between ticks and, on a horizontal axis, room between neighbouring labels.
std::vector<Tick> linear_ticks(const Axis& axis, double length_px, double min_gap, bool horizontal) {
  const double px_per_unit = length_px / (axis.hi - axis.lo);
  const double magnitude = std::max(std::abs(axis.lo), std::abs(axis.hi));
  double decade = std::pow(10.0, std::floor(std::log10(min_gap / px_per_unit)));
  if (!(decade > 0) || !std::isfinite(decade)) decade = std::max(magnitude, 1e-300);
  for (int attempt = 0; attempt < 64; ++attempt, decade *= 10) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double step = m * decade;
      if (step * px_per_unit < min_gap * (1 - 1e-9)) continue;
      const double first = std::ceil(axis.lo / step - 1e-9), last = std::floor(axis.hi / step + 1e-9);
      std::vector<Tick> ticks;
      int widest = 0;
      // Counted, not `++k` on a double: far from 0, k + 1 may round back to k.
      const double count = std::min(last - first + 1, 1000.0);
      for (int i = 0; i < count; ++i) {
        const double v = (first + i) * step;
        if (!std::isfinite(v)) continue;
        ticks.push_back({v, linear_label(v, step, magnitude)});
        widest = std::max(widest, text_size(ticks.back().label, kTickScale).width);
      }
      if (!horizontal || widest + 12 <= step * px_per_unit || ticks.size() <= 1) return ticks;
    }
  }
  return {};
}

std::string decade_label(int e) {
  if (e >= 0 && e <= 2) return e == 0 ? "1" : e == 1 ? "10" : "100";
  return "1e" + std::to_string(e);
}

// Decades, labelled every n-th one where they crowd; minor ticks at 2..9 x 10^k where there is
// room. A range holding fewer than two decades labels its minor ticks too, so it is never bare.
std::vector<Tick> log_ticks(const Axis& axis, double length_px, double min_gap) {
  const double px_per_decade = length_px / (axis.hi - axis.lo);
  const int first = static_cast<int>(std::ceil(axis.lo - 1e-9)), last = static_cast<int>(std::floor(axis.hi + 1e-9));
  const int every = std::max(1, static_cast<int>(std::ceil(min_gap / px_per_decade)));
  std::vector<Tick> ticks;
  for (int d = first; d <= last; ++d) ticks.push_back({static_cast<double>(d), d % every == 0 ? decade_label(d) : ""});
  if (px_per_decade < 30) return ticks;
  const bool label_minor = last - first + 1 < 2;
  double last_labelled = -std::numeric_limits<double>::infinity();
  for (const auto& t : ticks)
    if (!t.label.empty()) last_labelled = std::max(last_labelled, t.u);
  for (int d = static_cast<int>(std::floor(axis.lo)); d <= static_cast<int>(std::ceil(axis.hi)); ++d) {
    for (int k = 2; k <= 9; ++k) {
      const double u = d + std::log10(static_cast<double>(k));
      if (u < axis.lo - 1e-9 || u > axis.hi + 1e-9) continue;
      std::string label;
      if (label_minor && (u - last_labelled) * px_per_decade >= min_gap) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", k * std::pow(10.0, d));
        label = buf, last_labelled = u;
      }
      ticks.push_back({u, label});
    }
  }
  return ticks;
}

// The axis range in units: from the data (min and max in units, when there is any), widened by a
// margin (linear: 5% per side) or to whole decades (log), then overridden by the ends that are set.
Axis make_axis(bool log, double data_lo, double data_hi, double fixed_lo, double fixed_hi) {
  constexpr double kBig = std::numeric_limits<double>::max();
  Axis axis;
  axis.log = log;
  if (data_lo <= data_hi) {
    if (log) {
      axis.lo = std::floor(data_lo), axis.hi = std::ceil(data_hi);
      if (axis.lo == axis.hi) axis.lo -= 1, axis.hi += 1;
    } else if (data_lo == data_hi) {
      const double pad = data_lo != 0 ? std::abs(data_lo) * 0.1 : 1.0;
      axis.lo = data_lo - pad, axis.hi = data_hi + pad;
    } else {
      const double pad = 0.05 * data_hi - 0.05 * data_lo;
      axis.lo = std::max(-kBig, data_lo - pad), axis.hi = std::min(kBig, data_hi + pad);
    }
  } else {
    axis.lo = 0, axis.hi = 1;  // no data: 0..1 (log: 1..10)
  }
  const bool lo_set = !std::isnan(fixed_lo), hi_set = !std::isnan(fixed_hi);
  if (lo_set) axis.lo = axis.unit(fixed_lo);
  if (hi_set) axis.hi = axis.unit(fixed_hi);
  if (!(axis.lo < axis.hi)) {  // one end set, the data on its far side
    if (lo_set)
      axis.hi = log ? axis.lo + 1 : axis.lo + std::max(std::abs(axis.lo), 1.0);
    else
      axis.lo = log ? axis.hi - 1 : axis.hi - std::max(std::abs(axis.hi), 1.0);
  }
  return axis;
}

// Liang-Barsky: clips the segment a-b to the rectangle [x0, x1] x [y0, y1]; false if none is left.
bool clip_segment(cv::Point2d& a, cv::Point2d& b, double x0, double y0, double x1, double y1) {
  const double dx = b.x - a.x, dy = b.y - a.y;
  double t0 = 0, t1 = 1;
  const double p[] = {-dx, dx, -dy, dy}, q[] = {a.x - x0, x1 - a.x, a.y - y0, y1 - a.y};
  for (int i = 0; i < 4; ++i) {
    if (p[i] == 0) {
      if (q[i] < 0) return false;
    } else {
      const double r = q[i] / p[i];
      if (p[i] < 0)
        t0 = std::max(t0, r);
      else
        t1 = std::min(t1, r);
      if (t0 > t1) return false;
    }
  }
  const cv::Point2d start = a;
  if (t1 < 1) b = {start.x + t1 * dx, start.y + t1 * dy};
  if (t0 > 0) a = {start.x + t0 * dx, start.y + t0 * dy};
  return true;
}

cv::Point fixed_point(cv::Point2d p) { return {cvRound(p.x * (1 << kShift)), cvRound(p.y * (1 << kShift))}; }

std::string panel_name(size_t k, const PlotPanel& panel) {
  return "write_plot_png: panel " + std::to_string(k) + " ('" + panel.title + "')";
}

void check_range(size_t k, const PlotPanel& panel, const char* axis, double lo, double hi, bool log) {
  for (double v : {lo, hi}) {
    if (std::isnan(v)) continue;
    if (!std::isfinite(v) || (log && v <= 0))
      throw ArgumentError(panel_name(k, panel) + ": " + axis + " range end " + num(v) + " is not " +
                          (log ? "positive and finite (log axis)" : "finite"));
  }
  if (!std::isnan(lo) && !std::isnan(hi) && !(lo < hi))
    throw ArgumentError(panel_name(k, panel) + ": " + axis + " range [" + num(lo) + ", " + num(hi) +
                        "] is empty or reversed");
}

void draw_panel(cv::Mat& img, const PlotPanel& panel) {
  const int width = img.cols, height = img.rows;
  const int top = kTop, bottom = kBottom, plot_h = height - top - bottom;

  // The data's ranges in axis units, over the points that are drawn.
  const double inf = std::numeric_limits<double>::infinity();
  double x_lo = inf, x_hi = -inf, y_lo = inf, y_hi = -inf;
  Axis x_units;
  x_units.log = panel.log_x;
  for (const auto& s : panel.series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      const double u = x_units.unit(s.x[i]);  // -inf: x <= 0 on a log axis, drawn only when clamped
      if (!std::isfinite(u) && !panel.clamp_x) continue;
      if (std::isfinite(u)) x_lo = std::min(x_lo, u), x_hi = std::max(x_hi, u);
      y_lo = std::min(y_lo, s.y[i]), y_hi = std::max(y_hi, s.y[i]);
    }
  const Axis x_axis = make_axis(panel.log_x, x_lo, x_hi, panel.x_min, panel.x_max);
  const Axis y_axis = make_axis(false, y_lo, y_hi, panel.y_min, panel.y_max);

  // y ticks first: their labels' width sets the left margin, which sets the plot's width.
  const std::vector<Tick> y_ticks = linear_ticks(y_axis, plot_h, 30, false);
  int widest_y = 0;
  for (const auto& t : y_ticks) widest_y = std::max(widest_y, text_size(t.label, kTickScale).width);
  const cv::Size y_label_size = text_size(panel.y_label, kLabelScale);
  const int left = std::min(width / 2, std::max(kMinLeft, 8 + y_label_size.height + 12 + widest_y + 16));
  const int plot_w = width - left - kRight;
  const std::vector<Tick> x_ticks =
      panel.log_x ? log_ticks(x_axis, plot_w, 45) : linear_ticks(x_axis, plot_w, 50, true);

  auto px = [&](double u) { return left + x_axis.fraction(u) * plot_w; };
  auto py = [&](double v) { return top + plot_h - y_axis.fraction(v) * plot_h; };
  auto near_edge = [](double p, int a, int b) { return std::abs(p - a) < 1.5 || std::abs(p - b) < 1.5; };

  // Grid, ticks and tick labels.
  for (const auto& t : x_ticks) {
    const double xd = px(t.u);
    const int x = static_cast<int>(std::lround(xd));
    const bool major = !t.label.empty() || (panel.log_x && t.u == std::round(t.u));
    if (major && !near_edge(xd, left, left + plot_w)) dashed_line(img, {x, top}, {x, top + plot_h}, kGrid);
    cv::line(img, {x, top + plot_h}, {x, top + plot_h + (major ? 6 : 3)}, kBlack, 1);
    if (!t.label.empty()) centred_text(img, t.label, {x, top + plot_h + 18}, kTickScale);
  }
  for (const auto& t : y_ticks) {
    const double yd = py(t.u);
    const int y = static_cast<int>(std::lround(yd));
    if (!near_edge(yd, top, top + plot_h)) dashed_line(img, {left, y}, {left + plot_w, y}, kGrid);
    cv::line(img, {left - 6, y}, {left, y}, kBlack, 1);
    const cv::Size size = text_size(t.label, kTickScale);
    cv::putText(img, t.label, {left - 10 - size.width, y + size.height / 2}, kFont, kTickScale, kBlack, 1, cv::LINE_AA);
  }
  cv::rectangle(img, {left, top}, {left + plot_w, top + plot_h}, kBlack, 1);

  // Curves, clipped a little outside the frame so a curve along an edge keeps its full width.
  // `mask` records where they run, to place the legend where it hides the least.
  cv::Mat mask(img.size(), CV_8UC1, cv::Scalar(0));
  const double cx0 = left - 3, cy0 = top - 3, cx1 = left + plot_w + 3, cy1 = top + plot_h + 3;
  std::vector<bool> marker(panel.series.size(), false);
  for (size_t k = 0; k < panel.series.size(); ++k) {
    const auto& s = panel.series[k];
    const cv::Scalar& colour = kColours[k % 10];
    std::vector<std::vector<cv::Point>> lines;
    cv::Point2d previous;
    size_t drawable = 0;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      double u = x_axis.unit(s.x[i]);
      if (panel.clamp_x)
        u = std::clamp(u, x_axis.lo, x_axis.hi);
      else if (!std::isfinite(u))
        continue;
      const cv::Point2d p(px(u), py(s.y[i]));
      if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
      if (drawable++ > 0) {
        cv::Point2d a = previous, b = p;
        if (clip_segment(a, b, cx0, cy0, cx1, cy1)) {
          const cv::Point fa = fixed_point(a), fb = fixed_point(b);
          if (lines.empty() || lines.back().back() != fa) lines.push_back({fa});
          if (lines.back().back() != fb || lines.back().size() == 1) lines.back().push_back(fb);
        }
      }
      previous = p;
    }
    if (drawable == 1) {
      marker[k] = true;
      if (previous.x >= cx0 && previous.x <= cx1 && previous.y >= cy0 && previous.y <= cy1) {
        cv::circle(img, fixed_point(previous), 4 << kShift, colour, cv::FILLED, cv::LINE_AA, kShift);
        cv::circle(mask, fixed_point(previous), 5 << kShift, cv::Scalar(255), cv::FILLED, cv::LINE_8, kShift);
      }
    } else if (!lines.empty()) {
      cv::polylines(img, lines, false, colour, 2, cv::LINE_AA, kShift);
      cv::polylines(mask, lines, false, cv::Scalar(255), 3, cv::LINE_8, kShift);
    }
  }

  // Title, shrunk to the panel's width if need be, and the axis labels.
  if (!panel.title.empty()) {
    double scale = kTitleScale;
    while (scale > 0.3 && text_size(panel.title, scale, 2).width > width - 10) scale *= 0.9;
    centred_text(img, panel.title, {width / 2, top / 2}, scale, 2);
  }
  if (!panel.x_label.empty())
    centred_text(img, panel.x_label, {left + plot_w / 2, height - bottom / 2 + 12}, kLabelScale);
  if (!panel.y_label.empty()) {  // rotated: drawn horizontally on its own canvas, then turned
    int baseline = 0;
    const cv::Size size = cv::getTextSize(panel.y_label, kFont, kLabelScale, 1, &baseline);
    cv::Mat text(size.height + baseline + 4, size.width + 4, CV_8UC3, kWhite);
    cv::putText(text, panel.y_label, {2, size.height + 2}, kFont, kLabelScale, kBlack, 1, cv::LINE_AA);
    cv::Mat turned;
    cv::rotate(text, turned, cv::ROTATE_90_COUNTERCLOCKWISE);
    const int x = 8, y = top + (plot_h - turned.rows) / 2;
    if (y >= 0 && x + turned.cols <= width && y + turned.rows <= height)
      turned.copyTo(img(cv::Rect(x, y, turned.cols, turned.rows)));
  }

  // Legend: lower right (as insightface's ROC plots) unless another corner hides less of the curves.
  if (panel.legend && !panel.series.empty()) {
    int widest = 0, line_h = 0;
    for (const auto& s : panel.series) {
      int baseline = 0;
      const cv::Size size = cv::getTextSize(s.name, kFont, kLegendScale, 1, &baseline);
      widest = std::max(widest, size.width);
      line_h = std::max(line_h, size.height + baseline + 6);
    }
    const int box_w = widest + 50, box_h = static_cast<int>(panel.series.size()) * line_h + 10;
    const int right_x = left + plot_w - box_w - 10, left_x = left + 10;
    const int lower_y = top + plot_h - box_h - 10, upper_y = top + 10;
    const cv::Point corners[] = {{right_x, lower_y}, {right_x, upper_y}, {left_x, upper_y}, {left_x, lower_y}};
    cv::Point best = corners[0];
    int best_hidden = std::numeric_limits<int>::max();
    for (const cv::Point& c : corners) {
      const cv::Rect box = cv::Rect(c.x, c.y, box_w, box_h) & cv::Rect(0, 0, width, height);
      const int hidden = box.area() > 0 ? cv::countNonZero(mask(box)) : 0;
      if (hidden < best_hidden) best = c, best_hidden = hidden;
    }
    const int bx = best.x, by = best.y;
    cv::rectangle(img, {bx, by}, {bx + box_w, by + box_h}, kWhite, cv::FILLED);
    cv::rectangle(img, {bx, by}, {bx + box_w, by + box_h}, kGrid, 1);
    for (size_t k = 0; k < panel.series.size(); ++k) {
      const int y = by + 5 + static_cast<int>(k) * line_h + line_h / 2;
      if (marker[k])
        cv::circle(img, {bx + 22, y}, 4, kColours[k % 10], cv::FILLED, cv::LINE_AA);
      else
        cv::line(img, {bx + 8, y}, {bx + 36, y}, kColours[k % 10], 2, cv::LINE_AA);
      cv::putText(img, panel.series[k].name, {bx + 42, y + 5}, kFont, kLegendScale, kBlack, 1, cv::LINE_AA);
    }
  }
}

}  // namespace

void write_plot_png(const std::string& path, const std::vector<PlotPanel>& panels, int panel_width, int height) {
  if (panels.empty()) throw ArgumentError("write_plot_png: no panels to draw");
  if (panel_width < kMinPanelWidth || height < kMinHeight)
    throw ArgumentError("write_plot_png: panels of " + std::to_string(panel_width) + " x " + std::to_string(height) +
                        " pixels are too small (at least " + std::to_string(kMinPanelWidth) + " x " +
                        std::to_string(kMinHeight) + ")");
  const int64_t width = static_cast<int64_t>(panel_width) * static_cast<int64_t>(panels.size());
  if (width > kMaxPixels || height > kMaxPixels)
    throw ArgumentError("write_plot_png: the figure would be " + std::to_string(width) + " x " +
                        std::to_string(height) + " pixels (at most " + std::to_string(kMaxPixels) + " each way)");
  for (size_t k = 0; k < panels.size(); ++k) {
    const PlotPanel& panel = panels[k];
    for (const auto& s : panel.series)
      if (s.x.size() != s.y.size())
        throw ArgumentError(panel_name(k, panel) + ": series '" + s.name + "' has " + std::to_string(s.x.size()) +
                            " x and " + std::to_string(s.y.size()) + " y values");
    check_range(k, panel, "x", panel.x_min, panel.x_max, panel.log_x);
    check_range(k, panel, "y", panel.y_min, panel.y_max, false);
  }

  cv::Mat img(height, static_cast<int>(width), CV_8UC3, kWhite);
  for (size_t k = 0; k < panels.size(); ++k) {
    cv::Mat view = img(cv::Rect(static_cast<int>(k) * panel_width, 0, panel_width, height));  // clips to the panel
    draw_panel(view, panels[k]);
  }

  std::vector<uchar> png;
  bool encoded = false;
  try {
    encoded = cv::imencode(".png", img, png);
  } catch (const cv::Exception& e) {
    throw DataError("cannot write '" + path + "': PNG encoding failed: " + e.what());
  }
  if (!encoded) throw DataError("cannot write '" + path + "': PNG encoding failed");
  // A temporary file in the same folder, then a rename: a reader never sees half an image.
  write_file_atomic(path, std::string(png.begin(), png.end()));
}

}  // namespace facetrain
