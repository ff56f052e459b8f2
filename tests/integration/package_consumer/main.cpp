// The README's snippet, compiled against the installed package.
#include <facetrain/heads.h>

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
  return 0;
}
