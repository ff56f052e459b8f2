// `facetrain data pack | unpack | inspect`: wiring only; the work is in data/dataset_tools.h and,
// for verification `.bin` files (`unpack` / `inspect` of FILE.bin), io/verification_bin.h.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "commands.h"
#include "facetrain/core/progress.h"
#include "facetrain/data/dataset_tools.h"
#include "facetrain/data/recordio.h"
#include "facetrain/io/verification_bin.h"

namespace facetrain::tools {
namespace {

int64_t default_threads() { return std::max<int64_t>(1, std::thread::hardware_concurrency()); }

// A progress callback logging `what: <meter line>` at every 2% (at most once a second) and at the end.
// Progress of a .rec: images with its .idx, bytes without.
std::string rec_unit(const std::string& rec) {
  std::error_code ec;
  return std::filesystem::exists(data::index_path_for(rec), ec) ? "image" : "byte";
}

// Verification sets are dispatched on their suffix, as insightface names them (lfw.bin, ...).
bool is_verification_bin(const std::string& path) {
  return path.size() >= 4 && path.compare(path.size() - 4, 4, ".bin") == 0;
}

}  // namespace

Runner add_data_pack_commands(CLI::App& data) {
  struct Args {
    std::string images, out, rec, unpack_out, target;
    int64_t threads = default_threads();
    int64_t inspect_threads = default_threads();
    bool json = false, decode = false;
  };
  auto args = std::make_shared<Args>();

  auto* pack =
      data.add_subcommand("pack", "Pack an image folder or list into MXNet RecordIO (insightface MS1M layout)");
  pack->add_option("--images", args->images,
                   "Image folder (one sub-folder per identity) or list file (mxnet .lst, insightface train.lst)")
      ->required();
  pack->add_option("--out", args->out, "Output prefix: writes PREFIX.rec, PREFIX.idx and property beside them")
      ->required();
  pack->add_option("--threads", args->threads, "Threads reading the image files (the output does not depend on it)")
      ->check(CLI::PositiveNumber);

  auto* unpack = data.add_subcommand(
      "unpack",
      "Write the images of a .rec as OUT/<label>/<key>.jpg, or of a verification .bin as OUT/<index>.jpg "
      "plus OUT/issame.txt (one line per pair, 1 = genuine, 0 = impostor); the bytes are unchanged");
  unpack->add_option("file", args->rec, "The .rec file (its .idx next to it, if any) or verification .bin")->required();
  unpack->add_option("--out", args->unpack_out, "Output folder")->required();

  auto* inspect = data.add_subcommand(
      "inspect",
      "Report images, identities and problems of a .rec or image folder, or the pairs, image sizes, encodings "
      "and pickle variant of a verification .bin");
  inspect->add_option("path", args->target, "A .rec file (with its .idx), an image folder or a verification .bin")
      ->required();
  inspect->add_flag("--json", args->json, "Print the report as JSON");
  inspect->add_flag("--decode", args->decode, "Also decode every image and report those that fail (slower)");
  inspect->add_option("--threads", args->inspect_threads, "Threads reading (and decoding) the images")
      ->check(CLI::PositiveNumber);

  return [args, pack, unpack, inspect] {
    if (pack->parsed()) {
      std::error_code ec;
      const auto list = std::filesystem::is_directory(args->images, ec) ? data::scan_image_folder(args->images)
                                                                        : data::read_image_list(args->images);
      spdlog::info("pack: {} image(s) of {} identities from {}", list.entries.size(), list.num_classes, args->images);
      data::PackOptions options;
      options.threads = args->threads;
      options.progress = progress_logger("pack", "image");
      const auto summary = data::pack_images(list, args->out, options);
      spdlog::info("packed {} image(s) of {} identities into {}.rec, {}.idx and property", summary.images,
                   summary.identities, args->out, args->out);
      return 0;
    }
    if (unpack->parsed() && is_verification_bin(args->rec)) {
      const auto bin = io::read_verification_bin(args->rec);
      io::unpack_verification_bin(bin, args->unpack_out);
      spdlog::info("unpacked {} image(s) of {} pair(s) into {} (<index>.jpg, issame.txt); pickle variant: {}",
                   bin.images.size(), bin.issame.size(), args->unpack_out, bin.variant);
      return 0;
    }
    if (unpack->parsed()) {
      const auto summary =
          data::unpack_records(args->rec, args->unpack_out, progress_logger("unpack", rec_unit(args->rec)));
      spdlog::info("unpacked {} image(s) of {} identities into {}{}", summary.images, summary.identities,
                   args->unpack_out,
                   summary.skipped ? ", skipped " + std::to_string(summary.skipped) + " record(s) that are not images"
                                   : std::string());
      return 0;
    }
    if (inspect->parsed()) {
      // stdout carries only the report; progress goes to stderr.
      auto log = std::make_shared<spdlog::logger>("inspect", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
      std::error_code ec;
      const bool folder = std::filesystem::is_directory(args->target, ec);
      data::InspectOptions options;
      options.decode = args->decode;
      options.threads = args->inspect_threads;
      std::string text;
      if (!folder && is_verification_bin(args->target)) {
        const auto bin = io::read_verification_bin(args->target);
        const auto report =
            data::inspect_verification_pairs(args->target, bin.variant, bin.images, bin.issame, options);
        text = args->json ? report.to_json().dump(2) + "\n" : report.to_text();
      } else {
        options.progress = progress_logger("inspect", folder ? "image" : rec_unit(args->target), 2, log);
        const auto report = data::inspect_dataset(args->target, options);
        text = args->json ? report.to_json().dump(2) + "\n" : report.to_text();
      }
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
      return 0;  // problems are reported, not failures
    }
    return 0;
  };
}

}  // namespace facetrain::tools
