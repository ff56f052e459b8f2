#pragma once
// Backbones: images [B, 3, 112, 112] -> embeddings [B, D], weight-compatible with insightface.
//
// Example:
//   #include <facetrain/backbones.h>
//   auto net = facetrain::backbones::make_backbone(YAML::Load("{type: iresnet50, embedding_size: 512}"));
//   torch::Tensor emb = net->forward(images);   // [B, 512]

#include "facetrain/backbones/backbone.h"
#include "facetrain/backbones/iresnet.h"
#include "facetrain/backbones/layers.h"
#include "facetrain/backbones/mobilefacenet.h"
#include "facetrain/backbones/registry.h"
#include "facetrain/backbones/summary.h"
