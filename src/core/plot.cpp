#include "facetrain/core/plot.h"

#include <algorithm>
#include <cmath>
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

}  // namespace facetrain
