#pragma once
// Minimal SVG line plots, for results people would rather see than read (loss curves, ROC).

#include <string>
#include <vector>

namespace facetrain {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
};

/// Writes an SVG line plot of `series` to `path` (atomically: a temporary file, then a rename).
/// Throws facetrain::DataError naming the path if the file cannot be written.
void write_line_plot(const std::string& path, const std::string& title, const std::string& x_label,
                     const std::string& y_label, const std::vector<PlotSeries>& series);

}  // namespace facetrain
