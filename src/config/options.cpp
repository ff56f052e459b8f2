#include "facetrain/config/options.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "facetrain/core/error.h"

namespace facetrain::config {

void throw_if_invalid(const std::string& component, const OptionProblems& problems) {
  if (problems.empty()) return;
  std::string msg = component + ":";
  for (const auto& p : problems) msg += " " + p.key + " " + p.message + ";";
  msg.pop_back();
  throw ArgumentError(msg);
}

std::string fmt(double v) {
  char buf[48];
  int precision = 1;
  for (; precision < 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  // Plain digits for integers up to 1e15 ("1000", not "1e+03").
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
  }
  return buf;
}

std::string fmt_list(const std::vector<int64_t>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
  return out + "]";
}

void check_positive(OptionProblems& problems, const char* key, double v) {
  if (!(v > 0)) problems.push_back({key, "must be > 0, got " + fmt(v)});
}

void check_range(OptionProblems& problems, const char* key, double v, double lo, double hi, const char* lo_text,
                 const char* hi_text) {
  if (!(v >= lo && v <= hi))
    problems.push_back({key, std::string("must be in [") + lo_text + ", " + hi_text + "], got " + fmt(v)});
}

void check_range(OptionProblems& problems, const char* key, double v, double lo, double hi) {
  check_range(problems, key, v, lo, hi, fmt(lo).c_str(), fmt(hi).c_str());
}

}  // namespace facetrain::config
