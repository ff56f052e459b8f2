// The README's snippets, compiled against the installed package.
#include <facetrain/backbones.h>
#include <facetrain/heads.h>
#include <facetrain/io.h>

#include <cstdio>
#include <iostream>

int main() {
  torch::manual_seed(0);
  auto head = facetrain::heads::make_head(YAML::Load("{type: arcface, scale: 64, margin: 0.5}"), /*embedding_size=*/512,
                                          /*num_classes=*/1000);
  torch::Tensor embeddings = torch::randn({8, 512});
  torch::Tensor labels = torch::randint(1000, {8}, torch::kLong);
  torch::Tensor logits = head->forward(embeddings /*[B, D] raw float32*/, labels /*[B] int64*/);  // [B, C]
  auto loss = torch::nn::functional::cross_entropy(logits, labels);
  loss.backward();
  std::shared_ptr<torch::nn::Module> as_module = head;
  if (logits.sizes() != torch::IntArrayRef({8, 1000}) || !head->weight.grad().defined() || !as_module) {
    std::cerr << "consumer: unexpected result\n";
    return 1;
  }
  std::cout << "consumer: " << *head << " loss " << loss.item<double>() << "\n";

  auto net = facetrain::backbones::make_backbone(YAML::Load("{type: mobilefacenet, embedding_size: 512}"));
  const std::string file = "consumer_backbone.pth";
  facetrain::io::save_state_dict(*net, file);
  auto copy = facetrain::backbones::make_backbone(YAML::Load("{type: mobilefacenet, embedding_size: 512}"));
  facetrain::io::load_state_dict(*copy, file);
  std::remove(file.c_str());
  net->eval();
  copy->eval();
  torch::Tensor images = torch::rand({2, 3, 112, 112}) * 2 - 1;
  torch::Tensor emb = copy->forward(images);  // [B, 512]
  if (emb.sizes() != torch::IntArrayRef({2, 512}) || !torch::equal(emb, net->forward(images))) {
    std::cerr << "consumer: backbone round trip differs\n";
    return 1;
  }
  std::cout << "consumer: " << *copy << " round trip ok\n";
  return 0;
}
