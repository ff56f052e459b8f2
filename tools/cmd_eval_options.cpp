// The options `eval`, `eval ijb`, `embed` and `export` share: where the backbone comes from, and
// how images are embedded.
#include "commands.h"

namespace facetrain::tools {

void add_backbone_options(CLI::App& cmd, eval::BackboneSource& source, bool required) {
  auto* checkpoint = cmd.add_option("--checkpoint", source.checkpoint,
                                    "A facetrain checkpoint (.ckpt) or backbone weights (.pth, insightface names)");
  cmd.add_option("--model", source.model,
                 "Backbone type (iresnet50, r100, mbf, ...) or a YAML recipe; a .ckpt names its own");
  cmd.add_option("--set", source.sets, "Override a recipe key: --set model.embedding_size=256 (repeatable)");
  if (required) checkpoint->required();
}

void add_embed_options(CLI::App& cmd, eval::EmbedOptions& options, std::string& device) {
  cmd.add_option("--batch-size", options.batch_size, "Images per forward pass")->capture_default_str();
  cmd.add_option("--threads", options.threads, "Decode threads (0: one per core)")->capture_default_str();
  cmd.add_option("--device", device, "auto, cpu, cuda, cuda:N")->capture_default_str();
}

std::vector<ConfigIssue> embed_option_issues(const eval::EmbedOptions& options, const std::string& command) {
  std::vector<ConfigIssue> issues;
  if (options.batch_size < 1) issues.push_back({command, 0, 0, "--batch-size", "must be at least 1"});
  if (options.threads < 0) issues.push_back({command, 0, 0, "--threads", "must be 0 (one per core) or more"});
  return issues;
}

}  // namespace facetrain::tools
