#pragma once
// facetrain's margin heads: one include for all of them.
//
//   #include <facetrain/heads.h>
//   auto head = facetrain::heads::make_head(
//       YAML::Load("{type: arcface, scale: 64, margin: 0.5}"), /*embedding_size=*/512, /*num_classes=*/1000);
//   torch::Tensor logits = head->forward(embeddings /*[B, D] float32*/, labels /*[B] int64*/);  // [B, C]
//   auto loss = torch::nn::functional::cross_entropy(logits, labels);
//
// See docs/heads.md for the exact semantics of every head.

#include <yaml-cpp/yaml.h>

#include "facetrain/heads/adaface.h"
#include "facetrain/heads/arcface.h"
#include "facetrain/heads/circleloss.h"
#include "facetrain/heads/combined.h"
#include "facetrain/heads/cosface.h"
#include "facetrain/heads/curricularface.h"
#include "facetrain/heads/margin_head.h"
#include "facetrain/heads/mv_softmax.h"
#include "facetrain/heads/normface.h"
#include "facetrain/heads/registry.h"
#include "facetrain/heads/softmax.h"
#include "facetrain/heads/sphereface.h"
