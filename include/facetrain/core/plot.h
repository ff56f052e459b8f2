#pragma once
// Line plots for results people would rather see than read (loss and accuracy curves, ROC):
// a minimal SVG writer, and PNG figures of one or more panels side by side (OpenCV drawing).
//
// Example:
//   facetrain::PlotPanel loss{"Training loss", "step", "loss", {{"train", steps, losses}}};
//   facetrain::PlotPanel acc{"Verification accuracy", "step", "accuracy",
//                            {{"lfw", eval_steps, lfw}, {"cfp_fp", eval_steps, cfp}}};
//   acc.y_min = 0.5, acc.y_max = 1;                       // fixed range; NaN ends follow the data
//   facetrain::write_plot_png("curves.png", {loss, acc});  // 1600x600: loss left, accuracy right

#include <limits>
#include <string>
#include <vector>

namespace facetrain {

/// One curve: its legend label and its points (x[i], y[i]); x and y have the same size.
struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
};

/// Writes an SVG line plot of `series` to `path` (atomically: a temporary file, then a rename).
/// Throws facetrain::DataError naming the path if the file cannot be written.
void write_line_plot(const std::string& path, const std::string& title, const std::string& x_label,
                     const std::string& y_label, const std::vector<PlotSeries>& series);

/// One panel of a PNG figure: axes, title, curves. Text is drawn with OpenCV's Hershey font,
/// which has ASCII glyphs only.
struct PlotPanel {
  std::string title, x_label, y_label;  ///< empty strings are not drawn
  std::vector<PlotSeries> series;       ///< drawn in order, in matplotlib's tab10 colours
  bool log_x = false;                   ///< log10 x axis; points with x <= 0 are skipped (see clamp_x)
  /// Axis ranges: NaN = from the data (linear: the data's range plus 5% on each side; log: the
  /// data's range widened to whole decades). Set both ends to fix an axis; a set end wins over the
  /// data. Data outside the ranges is clipped at the panel's frame.
  double x_min = std::numeric_limits<double>::quiet_NaN(), x_max = std::numeric_limits<double>::quiet_NaN();
  double y_min = std::numeric_limits<double>::quiet_NaN(), y_max = std::numeric_limits<double>::quiet_NaN();
  /// Draw points whose x lies outside [x_min, x_max] (on a log axis: x <= 0 too) on the nearest
  /// edge instead of clipping or skipping them: a ROC's (0, 0) on a log FPR axis.
  bool clamp_x = false;
  bool legend = true;  ///< a legend box with each series' name, in the corner the curves cross least
};

/// Draws `panels` side by side, each `panel_width` x `height` pixels, into one PNG at `path`
/// (`panels.size() * panel_width` x `height`, 8-bit BGR on white). Per panel: the title, axes with
/// ticks and tick labels (linear: steps of 1, 2 or 5 x 10^k, as many as fit; log: decades, with
/// minor ticks at 2..9 x 10^k), a light dashed grid, the curves 2 px wide in distinct colours
/// (tab10, restarting in each panel), and the legend (lower right unless the curves cross it more
/// than another corner; none when `legend` is false or there are no series).
/// Points with a non-finite x or y are skipped: the curve joins their finite neighbours, so a
/// series may hold NaN where it has no value (an accuracy evaluated every N steps). A series with a
/// single drawable point is drawn as a round marker.
/// Written atomically: a temporary file in the same folder, fsync, rename.
/// Throws facetrain::ArgumentError when there are no panels, a series' x and y differ in size, a
/// fixed range is empty or reversed (or not positive on a log axis), or panel_width < 160,
/// height < 120, or the figure is wider or higher than 16384 pixels; facetrain::DataError
/// "cannot write 'PATH': ..." when the image cannot be encoded or written.
void write_plot_png(const std::string& path, const std::vector<PlotPanel>& panels, int panel_width = 800,
                    int height = 600);

}  // namespace facetrain
